// The progress line of long loads and analyses: on a terminal only, erased when done.
#include "support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

namespace fs = std::filesystem;

const std::string k_samples = (fs::path(SOCKREWIND_SOURCE_DIR) / "samples").string();

// What `cmd` printed on stdout; checks that it exited 0 (-1 when it could not be run).
std::string run_capture(const std::string& cmd) {
  const sockrewind::test::CmdResult r = sockrewind::test::run_cmd_output(cmd);
  CHECK(r.status == 0);
  return r.out;
}

} // namespace

TEST_CASE("progress: silent when stderr is not a terminal, drawn and erased when it is",
          "[progress]") {
  sockrewind::test::TempDir dir;
  const std::string err = (dir.path() / "err").string();
  const std::string bin = SOCKREWIND_ANALYZE_BIN;

  // Not a terminal (a file): nothing on stderr, the JSON untouched.
  const std::string json = run_capture("env -u SOCKREWIND_PROGRESS " + bin + " report " + k_samples
                                       + " --format json 2>" + err);
  CHECK(sockrewind::test::read_file(err).empty());
  CHECK(nlohmann::json::parse(json).contains("findings"));

  // Forced on: both phases drawn on stderr, the line erased at the end, stdout unchanged.
  const std::string forced = run_capture("SOCKREWIND_PROGRESS=1 " + bin + " report " + k_samples
                                         + " --format json 2>" + err);
  const std::string drawn = sockrewind::test::read_file(err);
  CHECK(drawn.find("\rloading files [") != std::string::npos);
  CHECK(drawn.find("\ranalyzing [") != std::string::npos);
  CHECK(drawn.find("] 7/7") != std::string::npos); // seven sample files
  // The evidence read back while analyzing loads files without a bar of its own.
  CHECK(drawn.find("\rloading files [", drawn.find("\ranalyzing [")) == std::string::npos);
  CHECK(drawn.size() >= 6);
  CHECK(drawn.substr(drawn.size() - 4) == "\r\033[K");
  CHECK(forced == json);

  // A real terminal: script(1) gives the analyzer a pseudo-terminal as stderr.
  if (std::system("command -v script >/dev/null 2>&1") != 0) { // NOLINT(concurrency-mt-unsafe)
    WARN("script(1) not installed: the pseudo-terminal case is not checked");
    return;
  }
  const std::string tty =
      run_capture("env -u SOCKREWIND_PROGRESS TERM=xterm script -qfec '" + bin + " report "
                  + k_samples + " --format json >/dev/null' " + "/dev/null");
  CHECK(tty.find("loading files [") != std::string::npos);
  CHECK(tty.find("\033[K") != std::string::npos);
  const std::string dumb =
      run_capture("env -u SOCKREWIND_PROGRESS TERM=dumb script -qfec '" + bin + " report "
                  + k_samples + " --format json >/dev/null' " + "/dev/null");
  CHECK(dumb.find("loading files") == std::string::npos);
}
