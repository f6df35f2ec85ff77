// sockrewind-analyze: read snapshot files and report. Exit codes: 0 ok, 1 --fail-on met,
// 2 usage error, 3 unreadable, corrupt or incompatible input.
#include <sockrewind/analyze/info.hpp>
#include <sockrewind/analyze/load.hpp>

#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>

namespace {

int run(int argc, char** argv) {
  using namespace sockrewind::analyze;
  CLI::App app("Replays sockrewind snapshot files. PATH is a file or a directory of *.sqlite "
               "files; snapshots of all of them are merged per host in time order.",
               "sockrewind-analyze");
  app.set_version_flag("--version", std::string("sockrewind-analyze ") + SOCKREWIND_VERSION);
  app.require_subcommand(1);

  std::vector<std::string> info_paths;
  CLI::App* info = app.add_subcommand(
      "info", "Files, hosts, snapshot times, intervals and gaps, sources used, capture issues");
  info->add_option("PATH", info_paths, "Snapshot files or directories")->required();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error is exit 2 (CLI11 has its own codes).
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    if (info->parsed()) {
      write_info(expand_paths(info_paths), std::cout);
    }
    std::cout.flush();
    return 0;
  } catch (const LoadError& e) {
    (void)std::fprintf(stderr, "sockrewind-analyze: error: %s\n", escape_text(e.what()).c_str());
    return 3;
  }
}

} // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    (void)std::fprintf(stderr, "sockrewind-analyze: error: %s\n", e.what());
    return 3;
  } catch (...) {
    (void)std::fputs("sockrewind-analyze: error: unexpected failure\n", stderr);
    return 3;
  }
}
