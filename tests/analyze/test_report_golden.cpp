// Golden test: the whole `report --format json` object of a small synthetic series, through
// the real binary, against tests/analyze/golden/. The series has a full unix listener whose
// path holds ESC and a newline: data stays raw until a renderer escapes it, so JSON has the
// documented \u001b and \n (never the text renderer's \x1b), as `show --format json` does.
//
// When findings change on purpose, regenerate the golden file and review its diff:
//   SOCKREWIND_UPDATE_GOLDEN=1 build/tests/test_analyze '[golden]'
#include "analyze/det_support.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::test;
using Json = nlohmann::json;

namespace {

const std::string k_path = "/tmp/a\x1b"
                           "b\nc.sock"; // ESC and a newline

// Six one-minute snapshots of app (pid 42) whose listener on k_path is full: 3 queued of a
// backlog of 2, three embryo connections waiting.
std::string write_unix_series(const std::string& dir) {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s;
    s.realtime_ns = k_t0 + i * k_minute;
    s.boottime_ns = 1000 * k_minute + i * k_minute;
    s.procs.push_back({.pid = 42,
                       .start_ticks = 7,
                       .comm = "app",
                       .cmdline = "app --serve",
                       .fd_count = 10,
                       .socket_fds = 1,
                       .nofile_soft = 1024});
    s.limits["net.unix.max_dgram_qlen"] = "10";
    synth::Sock l{.family = 1, .type = 1, .proto = 0, .state = 10, .rx = 3, .tx = 2};
    l.inode = 5000;
    l.cookie = 105000;
    l.path = k_path;
    l.owners = {{42, 3}};
    s.sockets.push_back(l);
    for (int k = 0; k < 3; ++k) { // embryos: no inode, no owner, the listener's path
      synth::Sock e{.family = 1, .type = 1, .proto = 0, .state = 1, .rx = 0, .tx = 0};
      e.path = k_path;
      s.sockets.push_back(e);
    }
    snaps.push_back(std::move(s));
  }
  return synth::write_series(dir, synth::Host{}, snaps);
}

std::filesystem::path golden(const std::string& name) {
  return std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "tests/analyze/golden" / name;
}

// Compares `actual` with the golden file, or rewrites the file when SOCKREWIND_UPDATE_GOLDEN=1.
void check_golden(const Json& actual, const std::string& name) {
  const std::filesystem::path file = golden(name);
  const char* update = std::getenv("SOCKREWIND_UPDATE_GOLDEN"); // NOLINT(concurrency-mt-unsafe)
  if (update != nullptr && std::string(update) == "1") {
    std::ofstream(file) << actual.dump(2) << "\n";
    WARN("rewrote " + file.string());
    return;
  }
  INFO("golden file " + file.string()
       + " (regenerate with SOCKREWIND_UPDATE_GOLDEN=1 and review its diff)");
  REQUIRE(std::filesystem::exists(file));
  const Json expected = Json::parse(read_file(file));
  INFO("actual:\n" + actual.dump(2));
  CHECK(actual == expected);
}

} // namespace

TEST_CASE("golden: report --format json of a unix listener with ESC and a newline in its path",
          "[golden][report]") {
  TempDir dir;
  const std::string file = write_unix_series(dir.path().string());
  const Run r = run_with_timeout({SOCKREWIND_ANALYZE_BIN, "report", file, "--format", "json"});
  INFO("stderr: " + r.err);
  REQUIRE(r.code == 0);

  // The documented escaping, byte for byte in the output: JSON's own, pure ASCII.
  CHECK_THAT(r.out, Catch::Contains(R"("/tmp/a\u001bb\nc.sock")"));
  CHECK_THAT(r.out, !Catch::Contains(R"(\\x1b)"));
  CHECK(r.out.find('\x1b') == std::string::npos);

  Json report = Json::parse(r.out);
  // The one volatile field: the version of the build.
  REQUIRE(report.contains("version"));
  CHECK(report["version"].is_string());
  CHECK(!report["version"].get<std::string>().empty());
  report["version"] = "VERSION";
  // The path arrives raw in the parsed object.
  REQUIRE(report["findings"].size() >= 1);
  CHECK(report["findings"][0]["subject"]["local"] == k_path);
  check_golden(report, "report_unix_escape.json");
}

TEST_CASE("golden: the same path is escaped once by every renderer", "[golden][report]") {
  TempDir dir;
  const std::string file = write_unix_series(dir.path().string());
  // JSON: show and timeline print what report prints.
  const Run show = run_with_timeout({SOCKREWIND_ANALYZE_BIN, "show", file, "--format", "json"});
  REQUIRE(show.code == 0);
  CHECK_THAT(show.out, Catch::Contains(R"("/tmp/a\u001bb\nc.sock")"));
  // Text: \x1b and \x0a, once (not \\x1b), and no raw control byte.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"report", file},
        std::vector<std::string>{"show", file},
        std::vector<std::string>{"timeline", file, "--socket", "105000"}}) {
    std::vector<std::string> argv{SOCKREWIND_ANALYZE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    const Run r = run_with_timeout(argv);
    INFO(args[0] + "\nstdout: " + r.out + "\nstderr: " + r.err);
    CHECK(r.code == 0);
    CHECK_THAT(r.out, Catch::Contains(R"(/tmp/a\x1bb\x0ac.sock)"));
    CHECK_THAT(r.out, !Catch::Contains(R"(\\x1b)"));
    CHECK(r.out.find('\x1b') == std::string::npos);
  }
}
