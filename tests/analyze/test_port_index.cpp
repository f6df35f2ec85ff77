// The archives' indexes by port (store::create_archive_indexes): `pack --port-index` writes
// them, plain packs, the fold's archives and minute files have none; `timeline --port` finds a
// quiet port's runs through them (EXPLAIN QUERY PLAN) and gives the same rows as the scan of a
// copy without them.
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/collect/fold.hpp>
#include <sockrewind/store/archive.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

using namespace sockrewind;
namespace fs = std::filesystem;

namespace {

// 2026-01-01T10:00:00Z
constexpr int64_t k_t0 = 1'767'261'600;

const std::vector<std::string> k_index_names = {
    "sock_ident_local_port", "sock_ident_remote_port", "sock_runs_ident"};

std::vector<std::string> indexes_of(const std::string& path) {
  store::Db db = store::Db::open_readonly(path, false);
  store::Stmt st = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'index' AND "
                              "name NOT LIKE 'sqlite_autoindex_%' ORDER BY name");
  std::vector<std::string> out;
  while (st.step()) {
    out.push_back(st.get_text(0));
  }
  return out;
}

// `count` snapshots `step_s` apart from `t0`: an sshd (port 22) with a session every 10
// snapshots that lives 25, an outgoing ssh (remote port 22) from 30 to 80, and a busy nginx
// (port 443: 40 connections at a time, each living 7 snapshots, far more than 1/8 of the
// identities), a long-lived service on 8080; queues change now and then, so sockets have
// several runs.
std::vector<synth::Snap> day(int count, int64_t t0, int64_t step_s) {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < count; ++i) {
    synth::Snap s{.realtime_ns = (t0 + i * step_s) * 1'000'000'000,
                  .boottime_ns = 1'000'000'000'000 + i * step_s * 1'000'000'000};
    s.sockets.push_back({.state = 10,
                         .local = "0.0.0.0",
                         .lport = 22,
                         .remote = "0.0.0.0",
                         .rx = static_cast<uint32_t>(i / 9 % 3),
                         .tx = 128,
                         .inode = 100,
                         .cookie = 100,
                         .owners = {{500, 3}}});
    for (int k = 0; k * 10 <= i; ++k) {
      if (i < k * 10 + 25) {
        s.sockets.push_back({.local = "10.0.0.1",
                             .lport = 22,
                             .remote = "10.0.9.9",
                             .rport = static_cast<uint16_t>(50000 + k),
                             .rx = static_cast<uint32_t>((i - k * 10) / 6),
                             .tx = 0,
                             .inode = static_cast<uint64_t>(1000 + k),
                             .cookie = static_cast<uint64_t>(1000 + k),
                             .owners = {{600 + k, 4}}});
      }
    }
    if (i >= 30 && i <= 80) {
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = 40022,
                           .remote = "10.0.7.7",
                           .rport = 22,
                           .rx = 0,
                           .tx = static_cast<uint32_t>(i % 4 == 0 ? 36 : 0),
                           .inode = 2000,
                           .cookie = 2000,
                           .owners = {{700, 3}}});
    }
    for (int c = 0; c < 40; ++c) {
      const int born = i - (i + c) % 7; // each connection lives 7 snapshots
      const auto id = static_cast<uint64_t>(10000 + born * 40 + c);
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = 443,
                           .remote = "192.0.2.1",
                           .rport = static_cast<uint16_t>(1024 + (born * 40 + c) % 60000),
                           .rx = 0,
                           .tx = static_cast<uint32_t>((i + c) % 3),
                           .inode = id,
                           .cookie = id,
                           .owners = {{800, static_cast<int32_t>(10 + c)}}});
    }
    for (int c = 0; c < 20; ++c) {
      s.sockets.push_back({.local = "127.0.0.1",
                           .lport = 8080,
                           .remote = "127.0.0.1",
                           .rport = static_cast<uint16_t>(30000 + c),
                           .rx = 0,
                           .tx = 0,
                           .inode = static_cast<uint64_t>(3000 + c),
                           .cookie = static_cast<uint64_t>(3000 + c),
                           .owners = {{900, 5 + c}}});
    }
    s.procs.push_back({.pid = 500, .start_ticks = 1, .comm = "sshd", .socket_fds = 1});
    s.procs.push_back({.pid = 800, .start_ticks = 2, .comm = "nginx", .socket_fds = 40});
    snaps.push_back(std::move(s));
  }
  return snaps;
}

// A pack of 140 snapshots (three blocks of 64 run ids) written as minute files of 20, with the
// port indexes unless `port_index` is false.
std::string packed_day(const fs::path& dir, bool port_index = true) {
  const fs::path in = dir / (port_index ? "in" : "in-plain");
  fs::create_directories(in);
  const std::vector<synth::Snap> all = day(140, k_t0, 60);
  analyze::PackOptions opts;
  for (size_t first = 0; first < all.size(); first += 20) {
    const std::vector<synth::Snap> part(all.begin() + static_cast<std::ptrdiff_t>(first),
                                        all.begin() + static_cast<std::ptrdiff_t>(first + 20));
    opts.paths.push_back(synth::write_series(in.string(), synth::Host{}, part));
  }
  opts.out = (dir / (port_index ? "day.sqlite" : "day-plain.sqlite")).string();
  opts.port_index = port_index;
  analyze::write_pack(opts);
  return opts.out;
}

std::string
timeline(const std::string& path, int port, analyze::Format format = analyze::Format::json) {
  analyze::TimelineOptions o;
  o.paths = {path};
  o.port = port;
  o.format = format;
  std::ostringstream out;
  analyze::write_timeline(o, out);
  return out.str();
}

// The sockets of a loaded series in the order the loader made them (one line per socket: its
// identity, then each sample's snapshot and state).
std::vector<std::string> tracks_of(const analyze::Series& s) {
  std::vector<std::string> out;
  for (const analyze::Timeline& tl : s.timelines) {
    for (const analyze::Track& t : tl.tracks) {
      std::string line = std::to_string(t.cookie) + " " + std::to_string(t.local_port) + " "
                         + std::to_string(t.remote_port) + ":";
      for (const analyze::Sample& x : t.samples) {
        line += " " + std::to_string(x.snap) + "/" + std::to_string(x.state);
      }
      out.push_back(std::move(line));
    }
  }
  return out;
}

// The plan of the port filter's query as series.cpp builds it (the runs joined to their
// identities; in run order unless through the indexes), one line per step.
std::string plan(store::Db& db, const store::PortRuns& port) {
  store::Stmt st =
      db.prepare("EXPLAIN QUERY PLAN SELECT first_snapshot_id, local_port, pid "
                 "FROM sock_runs JOIN sock_ident USING (ident_id) WHERE "
                 + port.where + (port.indexed ? "" : " ORDER BY first_snapshot_id, run_id"));
  std::string out;
  while (st.step()) {
    out += st.get_text(3) + "\n";
  }
  return out;
}

// A copy of `path` without the archive indexes.
std::string without_indexes(const std::string& path) {
  const std::string copy = path + ".noindex.sqlite";
  fs::copy_file(path, copy);
  store::Db db = store::Db::create(copy);
  for (const std::string& name : k_index_names) {
    db.exec("DROP INDEX " + name);
  }
  return copy;
}

} // namespace

TEST_CASE("port index: pack --port-index writes the indexes, plain packs and minute files none",
          "[pack]") {
  test::TempDir dir;
  const std::string packed = packed_day(dir.path());
  CHECK(indexes_of(packed) == k_index_names);
  CHECK(indexes_of(packed_day(dir.path(), false)).empty());
  for (const auto& e : fs::directory_iterator(dir.path() / "in")) { // the minute files
    INFO(e.path());
    CHECK(indexes_of(e.path().string()).empty());
  }
}

TEST_CASE("port index: the fold's hourly archive stays without the indexes", "[pack]") {
  test::TempDir dir;
  // Three minute files of one ended hour, as the collector names them.
  const std::vector<synth::Snap> all = day(30, k_t0, 10);
  for (size_t first = 0; first < all.size(); first += 10) {
    synth::SeriesWriter w(dir.path().string());
    for (size_t i = first; i < first + 10; ++i) {
      w.add(all[i]);
    }
    w.commit();
  }
  const collect::FoldResult r = collect::fold_closed_hours(dir.path().string(), k_t0 + 7200);
  INFO(r.warnings.size());
  REQUIRE(r.archives == 1);
  const fs::path archive = dir.path() / collect::hour_archive_name("synth", k_t0);
  REQUIRE(fs::exists(archive));
  CHECK(indexes_of(archive.string()).empty());
}

TEST_CASE("port index: a quiet port's runs are found through the indexes, same rows as the scan",
          "[timeline]") {
  test::TempDir dir;
  const std::string packed = packed_day(dir.path());
  const std::string bare = without_indexes(packed);
  {
    store::Db db = store::Db::open_readonly(packed, false);
    REQUIRE(store::has_runs_by_ident_index(db));
    // Port 22 (the sshd, its sessions and one outgoing ssh): through the port indexes, then
    // the runs of each identity.
    const store::PortRuns quiet = store::sql_port_runs(db, 22);
    const std::string p22 = plan(db, quiet);
    INFO(quiet.where << "\n" << p22);
    CHECK(quiet.indexed);
    CHECK(p22.find("USING INDEX sock_ident_local_port") != std::string::npos);
    CHECK(p22.find("USING INDEX sock_ident_remote_port") != std::string::npos);
    CHECK(p22.find("USING INDEX sock_runs_ident") != std::string::npos);
    CHECK(p22.find("SCAN sock_runs") == std::string::npos);
    // Port 443 holds most identities: every run, in order, costs less than a seek each.
    const store::PortRuns busy = store::sql_port_runs(db, 443);
    const std::string p443 = plan(db, busy);
    INFO(busy.where << "\n" << p443);
    CHECK(!busy.indexed);
    CHECK(p443.find("SCAN sock_runs") != std::string::npos);
    CHECK(p443.find("sock_runs_ident") == std::string::npos);
    // Any other query of the runs keeps the plan it has without the index (the export's join
    // without ORDER BY reads the runs in their own order).
    store::Stmt st = db.prepare("EXPLAIN QUERY PLAN SELECT first_snapshot_id, local_port "
                                "FROM sock_runs JOIN sock_ident USING (ident_id)");
    std::string unordered;
    while (st.step()) {
      unordered += st.get_text(3) + "\n";
    }
    INFO(unordered);
    CHECK(unordered.find("SCAN sock_runs\n") != std::string::npos);
  }
  {
    store::Db db = store::Db::open_readonly(bare, false);
    CHECK(!store::has_runs_by_ident_index(db));
    const store::PortRuns scan = store::sql_port_runs(db, 22);
    CHECK(!scan.indexed);
    CHECK(plan(db, scan).find("SCAN sock_runs") != std::string::npos);
  }
  // The same timeline with and without the indexes: quiet ports (22, a session's remote port,
  // the outgoing ssh's local port), busy ones, and one without sockets.
  for (const int port : {22, 443, 8080, 50003, 40022, 9}) {
    INFO("port " << port);
    analyze::SocketFilter filter;
    filter.port = static_cast<uint16_t>(port);
    const std::vector<std::string> tracks = tracks_of(analyze::load_series({packed}, filter));
    CHECK(tracks == tracks_of(analyze::load_series({bare}, filter)));
    CHECK(tracks.empty() == (port == 9));
    const std::string indexed = timeline(packed, port);
    CHECK(indexed == timeline(bare, port));
    int64_t samples = 0;
    const nlohmann::json parsed = nlohmann::json::parse(indexed);
    for (const nlohmann::json& at : parsed.at("series")) {
      samples += at.value("sockets", int64_t{0});
    }
    CHECK((samples > 0) == (port != 9));
  }
}

TEST_CASE("port index: every port of every sample capture packed with the indexes has the "
          "timeline of the scan",
          "[timeline][samples]") {
  test::TempDir dir;
  const fs::path samples = fs::path(SOCKREWIND_SOURCE_DIR) / "samples";
  size_t captures = 0;
  size_t split = 0; // ports read through the indexes with identities on both sides of the split
  size_t checked = 0;
  for (const auto& e : fs::directory_iterator(samples)) {
    if (e.path().extension() != ".sqlite") {
      continue;
    }
    ++captures;
    analyze::PackOptions opts;
    opts.paths = {e.path().string()};
    opts.out = (fs::path(dir.path()) / e.path().filename()).string();
    opts.port_index = true;
    analyze::write_pack(opts);
    const std::string bare = without_indexes(opts.out);
    std::vector<int64_t> ports;
    {
      store::Db db = store::Db::open_readonly(opts.out, false);
      REQUIRE(store::has_runs_by_ident_index(db));
      store::Stmt st = db.prepare(
          "SELECT port, count(*) FROM (SELECT local_port AS port FROM sock_ident "
          "WHERE family != 1 UNION ALL SELECT remote_port FROM sock_ident "
          "WHERE family != 1 AND remote_port != local_port) GROUP BY port ORDER BY port");
      while (st.step()) {
        ports.push_back(st.get_int(0));
        if (store::sql_port_runs(db, st.get_int(0)).indexed && st.get_int(1) >= 2) {
          ++split;
        }
      }
    }
    checked += ports.size(); // none in a capture of unix sockets only
    for (const int64_t port : ports) {
      INFO(e.path().filename().string() << " port " << port);
      analyze::SocketFilter filter;
      filter.port = static_cast<uint16_t>(port);
      const std::vector<std::string> tracks = tracks_of(analyze::load_series({opts.out}, filter));
      CHECK(tracks == tracks_of(analyze::load_series({bare}, filter)));
      // Both halves on the load's connection, as when no thread can be started.
      analyze::SocketFilter one = filter;
      one.split_threads = false;
      CHECK(tracks_of(analyze::load_series({opts.out}, one)) == tracks);
      for (const analyze::Format format : {analyze::Format::json, analyze::Format::text}) {
        CHECK(timeline(opts.out, static_cast<int>(port), format)
              == timeline(bare, static_cast<int>(port), format));
      }
      // The port's sockets are in it (not two empty timelines).
      size_t seen = 0;
      const nlohmann::json parsed =
          nlohmann::json::parse(timeline(opts.out, static_cast<int>(port)));
      for (const nlohmann::json& at : parsed.at("series")) {
        seen += at.at("sockets").get<size_t>() + at.at("listeners").size();
      }
      CHECK(seen > 0);
    }
  }
  CHECK(captures >= 7);
  CHECK(split > 0);
  CHECK(checked >= 40);
}

TEST_CASE("port index: a file replaced under its name while a port's runs are read in two halves "
          "is read whole from the connection the load holds",
          "[timeline][samples]") {
  test::TempDir dir;
  const fs::path samples = fs::path(SOCKREWIND_SOURCE_DIR) / "samples";
  analyze::PackOptions opts;
  opts.paths = analyze::expand_paths({samples.string()});
  opts.out = (fs::path(dir.path()) / "packed.sqlite").string();
  opts.port_index = true;
  analyze::write_pack(opts);
  // A port read in two halves: through the indexes, with identities on both sides.
  std::optional<uint16_t> port;
  {
    store::Db db = store::Db::open_readonly(opts.out, false);
    store::Stmt st = db.prepare("SELECT local_port, count(*) FROM sock_ident WHERE family != 1 "
                                "GROUP BY local_port ORDER BY count(*) DESC");
    while (st.step() && !port) {
      if (st.get_int(1) >= 2 && store::sql_port_runs(db, st.get_int(0)).indexed) {
        port = static_cast<uint16_t>(st.get_int(0));
      }
    }
  }
  REQUIRE(port);
  // Another file renamed over its name: a copy without the port's runs.
  const std::string copy = (fs::path(dir.path()) / "copy.sqlite").string();
  fs::copy_file(opts.out, copy);
  {
    store::Db db = store::Db::create(copy);
    store::Stmt del =
        db.prepare("DELETE FROM sock_runs WHERE ident_id IN "
                   "(SELECT ident_id FROM sock_ident WHERE local_port = ?1 OR remote_port = ?1)");
    del.bind(1, static_cast<int64_t>(*port));
    db.exec("PRAGMA foreign_keys = OFF");
    del.step();
  }
  // The file held open by a first load (as report holds its files), then the copy renamed over
  // its name: the held connection reads the file first read, a second one opened by the name
  // would read the copy. Both halves come from the held one.
  auto held = std::make_shared<analyze::OpenFiles>();
  analyze::SocketFilter filter;
  filter.port = port;
  filter.open_files = held;
  const std::vector<std::string> before = tracks_of(analyze::load_series({opts.out}, filter));
  REQUIRE(held->held() == 1);
  REQUIRE(!before.empty());
  fs::rename(copy, opts.out);
  CHECK(tracks_of(analyze::load_series({opts.out}, filter)) == before);
  filter.split_threads = false;
  CHECK(tracks_of(analyze::load_series({opts.out}, filter)) == before);
  // What the name holds now differs.
  analyze::SocketFilter by_name;
  by_name.port = port;
  CHECK(tracks_of(analyze::load_series({opts.out}, by_name)) != before);
}
