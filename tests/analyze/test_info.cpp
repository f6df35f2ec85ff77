#include "support.hpp"

#include <sockrewind/analyze/info.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

using namespace sockrewind;

namespace {

// A file with `n` snapshots of host `host`, `step_s` seconds apart (boottime), one gap.
std::string make_file(const std::filesystem::path& dir,
                      const std::string& name,
                      const std::string& host,
                      int n,
                      int64_t start_s) {
  const std::string path = (dir / name).string();
  store::Db db = store::Db::create(path);
  store::migrate(db);
  auto ins = db.prepare("INSERT INTO snapshots VALUES (NULL,?1,'boot-1','6.1',?2,?3,?2,?3,1,0,"
                        "'self','tcp:sock_diag',?4,0,NULL,NULL)");
  for (int i = 0; i < n; ++i) {
    const int64_t t = start_s + (i == n - 1 ? i + 10 : i) * int64_t{60}; // last one after a gap
    ins.bind(1, host)
        .bind(2, t * 1'000'000'000 + 1'700'000'000'000'000'000)
        .bind(3, t * 1'000'000'000)
        .bind(4, int64_t{100 + i})
        .run();
  }
  db.exec("INSERT INTO capture_issues VALUES (1, NULL, 'proc_fd', 'denied', 2, '/proc/1/fd')");
  return path;
}

// The exit status (-1 if killed or not run) and what `cmd` printed on stdout and stderr.
std::pair<int, std::string> run(const std::string& cmd) {
  const test::CmdResult r = test::run_cmd_output(cmd + " 2>&1");
  return {WIFEXITED(r.status) ? WEXITSTATUS(r.status) : -1, r.out};
}

} // namespace

TEST_CASE("analyze::info merges files per host, dedupes and finds gaps", "[analyze]") {
  test::TempDir dir;
  const std::string a = make_file(dir.path(), "a.sqlite", "web1", 6, 0);
  // The same file copied: its snapshots must be counted once.
  std::filesystem::copy_file(a, dir.path() / "copy.sqlite");
  make_file(dir.path(), "b.sqlite", "db\x1b[31m", 3, 0);
  std::ostringstream out;
  analyze::write_info(analyze::expand_paths({dir.path().string()}), out);
  const std::string text = out.str();
  INFO(text);
  CHECK_THAT(text, Catch::Contains("files: 3, snapshots: 9 (6 seen twice, counted once)"));
  CHECK_THAT(text, Catch::Contains("host web1"));
  CHECK_THAT(text, Catch::Contains("interval: median 60.0 s"));
  CHECK_THAT(text, Catch::Contains("gap: 660.0 s"));
  CHECK_THAT(text, Catch::Contains("sockets per snapshot: 100..105"));
  CHECK_THAT(text, Catch::Contains("proc_fd denied: 6, /proc/1/fd"));
  // A hostile host name cannot emit an escape sequence.
  CHECK_THAT(text, Catch::Contains("host db\\x1b[31m"));
  CHECK(text.find('\x1b') == std::string::npos);
}

TEST_CASE("analyze::bad input is exit 3 with one line naming the file", "[analyze]") {
  test::TempDir dir;
  const std::string garbage = (dir.path() / "garbage.sqlite").string();
  std::ofstream(garbage) << "this is not a database, just text that is long enough......";
  const std::string empty = (dir.path() / "empty.sqlite").string();
  std::ofstream{empty};
  const std::string bin = SOCKREWIND_ANALYZE_BIN;
  for (const std::string& f : {garbage, empty}) {
    const auto [code, out] = run(bin + " info " + f);
    INFO(out);
    CHECK(code == 3);
    CHECK(out.rfind("sockrewind-analyze: error: " + f + ": ", 0) == 0);
    CHECK(std::count(out.begin(), out.end(), '\n') == 1);
  }
  const auto [code, out] = run(bin + " info " + (dir.path() / "missing").string());
  CHECK(code == 3);
  CHECK_THAT(out, Catch::Contains("no such file or directory"));
  CHECK(run(bin + " info").first == 2); // usage error
}

TEST_CASE("analyze::future schema versions are refused clearly", "[analyze]") {
  test::TempDir dir;
  const std::string f = make_file(dir.path(), "future.sqlite", "h", 2, 0);
  {
    store::Db db = store::Db::create(f);
    db.exec("PRAGMA user_version = 99");
  }
  CHECK_THROWS_WITH(analyze::load_snapshot_index(f), Catch::Contains("newer than this sockrewind"));
}
