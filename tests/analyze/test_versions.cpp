// Every command reads a capture the same whichever schema wrote it: version 1 and 2 (one row
// per socket per snapshot in tables) and version 3 (runs read through views), as a collector
// file and as a pack whose runs span snapshots.
#include "analyze/series_fixture.hpp"
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/info.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <sstream>
#include <string>

using namespace sockrewind;
namespace fs = std::filesystem;

namespace {

// Everything the commands print about `file`, with its name taken out.
std::string all_outputs(const std::string& file) {
  std::ostringstream out;
  analyze::ReportOptions rep;
  rep.paths = {file};
  rep.format = analyze::Format::json;
  (void)analyze::write_report(rep, out);
  analyze::ShowOptions show;
  show.path = file;
  show.snapshot = 4;
  analyze::write_show(show, out);
  for (const int port : {80, 5555}) {
    analyze::TimelineOptions tl;
    tl.paths = {file};
    tl.port = port;
    analyze::write_timeline(tl, out);
  }
  analyze::TimelineOptions tl;
  tl.paths = {file};
  tl.socket = "2";
  analyze::write_timeline(tl, out);
  analyze::DiffOptions diff;
  diff.paths = {file};
  diff.from = "1";
  diff.to = "6";
  analyze::write_diff(diff, out);
  std::string text = out.str();
  for (size_t at = text.find(file); at != std::string::npos; at = text.find(file, at)) {
    text.replace(at, file.size(), "FILE");
  }
  return text;
}

int64_t user_version(const std::string& file) {
  store::Db db = store::Db::open_readonly(file, false);
  return db.query_int("PRAGMA user_version");
}

} // namespace

TEST_CASE("versions: report, show, timeline and diff read schema 1, 2 and 3 files the same",
          "[versions]") {
  test::TempDir dir;
  const fs::path v3_dir = dir.path() / "v3";
  fs::create_directories(v3_dir);
  const std::string v3 = test::write_web1(v3_dir);
  REQUIRE(user_version(v3) == 3);
  const std::string expected = all_outputs(v3);
  CHECK_THAT(expected, Catch::Contains("listen_overflow"));

  for (const int version : {1, 2}) {
    const fs::path d = dir.path() / ("v" + std::to_string(version));
    fs::create_directories(d);
    const std::string f = test::write_web1(d);
    synth::rewrite_as_version(f, version);
    REQUIRE(user_version(f) == version);
    INFO("version " << version);
    CHECK(all_outputs(f) == expected);
  }

  // A pack joins the snapshots of unchanged sockets into runs: fewer rows, the same outputs.
  analyze::PackOptions p;
  p.paths = {v3};
  p.out = (dir.path() / "pack.sqlite").string();
  const analyze::PackResult r = analyze::write_pack(p);
  CHECK(r.snapshots == 6);
  {
    store::Db db = store::Db::open_readonly(p.out, false);
    const int64_t rows = db.query_int("SELECT count(*) FROM sockets");
    const int64_t runs = db.query_int("SELECT count(*) FROM sock_runs");
    CHECK(rows == static_cast<int64_t>(r.sockets));
    CHECK(runs < rows);
  }
  CHECK(all_outputs(p.out) == expected);
}
