// Loading and merging series (identity, duplicates, gaps, counter resets) and the shared
// detector primitives.
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;

namespace {

constexpr int64_t k_t0 = 1'795'341'600'000'000'000; // 2026-11-22T10:00:00Z
constexpr int64_t k_s = 1'000'000'000;

synth::Snap at(int64_t seconds) {
  synth::Snap s;
  s.realtime_ns = k_t0 + seconds * k_s;
  s.boottime_ns = 500 * k_s + seconds * k_s;
  return s;
}

const Track* find_port(const Timeline& tl, uint16_t lport, uint16_t rport) {
  for (const Track& t : tl.tracks) {
    if (t.local_port == lport && t.remote_port == rport) {
      return &t;
    }
  }
  return nullptr;
}

} // namespace

TEST_CASE("series: tracks follow cookies, files merge, duplicates count once", "[series]") {
  test::TempDir dir;
  std::vector<synth::Snap> a;
  std::vector<synth::Snap> b;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = at(i * 60);
    s.sockets.push_back({.lport = 80,
                         .rport = 5000,
                         .rx = static_cast<uint32_t>(100 * i),
                         .inode = 77,
                         .cookie = 9,
                         .owners = {{10, 4}}});
    s.procs.push_back({.pid = 10, .start_ticks = 1, .comm = "srv", .socket_fds = 1});
    (i < 4 ? a : b).push_back(s);
  }
  b.insert(b.begin(), a.back()); // the 4th snapshot is in both files
  synth::write_series(dir.path().string(), synth::Host{}, a);
  synth::write_series(dir.path().string(), synth::Host{}, b);
  const Series s = load_series(expand_paths({dir.path().string()}));
  REQUIRE(s.timelines.size() == 1);
  const Timeline& tl = s.timelines[0];
  CHECK(s.duplicate_snapshots == 1);
  REQUIRE(tl.snaps.size() == 6);
  REQUIRE(tl.tracks.size() == 1);
  const Track& t = tl.tracks[0];
  REQUIRE(t.samples.size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    CHECK(t.samples[i].snap == i);
    CHECK(t.samples[i].rx_queue == 100 * i);
    REQUIRE(t.samples[i].owner != k_na);
    CHECK(tl.procs[t.samples[i].owner].pid == 10);
  }
  CHECK(tl.median_interval_s == Approx(60));
  CHECK(endpoint(s, t, true) == "127.0.0.1:80");
}

TEST_CASE("series: without cookies, an accepted child keeps its identity 0 -> N", "[series]") {
  test::TempDir dir;
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = at(i);
    // Queued (inode 0) in the first two snapshots, accepted (inode 500) afterwards.
    s.sockets.push_back({.lport = 80, .rport = 6000, .rx = 0, .inode = i < 2 ? 0U : 500U});
    // A reused 4-tuple: inode 600 then 700 is a new socket.
    s.sockets.push_back({.lport = 81, .rport = 6001, .rx = 0, .inode = i < 2 ? 600U : 700U});
    snaps.push_back(s);
  }
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series s = load_series(expand_paths({dir.path().string()}));
  REQUIRE(s.timelines.size() == 1);
  const Timeline& tl = s.timelines[0];
  const Track* accepted = find_port(tl, 80, 6000);
  REQUIRE(accepted != nullptr);
  CHECK(accepted->samples.size() == 4);
  CHECK(accepted->samples.front().inode == 0);
  CHECK(accepted->samples.back().inode == 500);
  size_t reused = 0;
  for (const Track& t : tl.tracks) {
    reused += t.local_port == 81 ? 1 : 0;
  }
  CHECK(reused == 2);
}

TEST_CASE("series: gaps split runs, counter resets drop the interval", "[series]") {
  test::TempDir dir;
  std::vector<synth::Snap> snaps;
  const int64_t times[] = {0, 60, 120, 180, 900, 960};
  const int64_t values[] = {10, 20, 30, 5, 15, 15};
  for (size_t i = 0; i < 6; ++i) {
    synth::Snap s = at(times[i]);
    s.counters["TcpExt.ListenOverflows"] = values[i];
    s.limits["net.ipv4.tcp_rmem"] = "4096 131072 6291456";
    snaps.push_back(s);
  }
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series s = load_series(expand_paths({dir.path().string()}));
  const Timeline& tl = s.timelines.at(0);
  CHECK(tl.snaps[3].run == 0);
  CHECK(tl.snaps[4].run == 1); // 720 s > 2.5 x 60 s
  const auto steps = counter_steps(s, tl, 0, "TcpExt.ListenOverflows");
  REQUIRE(steps.size() == 4); // 10->20, 20->30, (30->5 reset dropped), 5->15, 15->15
  CHECK(steps[0].delta == 10);
  CHECK(steps[0].dt == Approx(60));
  CHECK(steps[2].from == 3);
  CHECK(steps[2].delta == 10);
  CHECK(steps[3].delta == 0);
  for (const CounterStep& c : steps) {
    CHECK(c.delta >= 0);
  }
  CHECK(limit_numbers(tl, 0, "net.ipv4.tcp_rmem", 2)
        == std::vector<int64_t>{4096, 131072, 6291456});
  CHECK(limit_numbers(tl, 0, "net.core.somaxconn", 2).empty());
}

TEST_CASE("primitives: GROW accepts a noisy rise and rejects sawtooth and flat", "[series]") {
  std::vector<double> t;
  std::vector<double> rise;
  std::vector<double> saw;
  std::vector<double> flat;
  for (int i = 0; i < 20; ++i) {
    t.push_back(60.0 * i);
    rise.push_back(10000.0 * i + (i % 3 == 0 ? -3000 : 0)); // small dips within tolerance
    saw.push_back((i % 4) * 50000.0);
    flat.push_back(70000);
  }
  const Trend r = grow_test(t, rise, 4096, 65536, 6);
  CHECK(r.grows);
  CHECK(r.tau > 0.9);
  CHECK(r.slope == Approx(10000.0 / 60).epsilon(0.1));
  CHECK_FALSE(grow_test(t, saw, 4096, 65536, 6).grows);
  CHECK_FALSE(grow_test(t, flat, 4096, 65536, 6).grows);
  // Too few points.
  CHECK_FALSE(grow_test(std::span(t).first(4), std::span(rise).first(4), 4096, 1, 6).grows);
}

TEST_CASE("primitives: may_grow is false only where GROW is false", "[series]") {
  // may_grow lets a detector skip the pairwise test; it must never skip a series that grows.
  std::vector<double> t(40);
  for (size_t i = 0; i < t.size(); ++i) {
    t[i] = 60.0 * static_cast<double>(i);
  }
  const auto noise = [](uint32_t seed) { return ((seed * 2654435761U) >> 16U) % 1000; };
  size_t grows = 0;
  size_t skipped = 0;
  for (uint32_t s = 0; s < 3000; ++s) {
    std::vector<double> x;
    const double step = static_cast<double>(s % 7) * 900.0 - 1800.0; // falling, flat, rising
    for (uint32_t i = 0; i < 40; ++i) {
      x.push_back(std::max(0.0, 50000.0 + step * i + static_cast<double>(noise(s * 40 + i)) * 14));
    }
    const size_t n = 3 + s % 38;
    const Trend tr = grow_test(std::span(t).first(n), std::span(x).first(n), 4096, 20000, 3);
    const bool may = may_grow(std::span(x).first(n), 4096, 20000, 3);
    INFO("series " << s << ", " << n << " points");
    CHECK((may || !tr.grows));
    grows += tr.grows ? 1 : 0;
    skipped += may ? 0 : 1;
  }
  // Both outcomes occur, so the check above is not vacuous.
  CHECK(grows > 100);
  CHECK(skipped > 100);
}

TEST_CASE("series: a socket listed twice in one snapshot, out of order, is one sample",
          "[series]") {
  // Found by fuzz_load: a row copied to the end of the table (read after other snapshots' rows)
  // used to land in its track a second time for the same snapshot.
  test::TempDir dir;
  const std::filesystem::path file = dir.path() / "dup.sqlite";
  std::filesystem::copy_file(
      std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "samples" / "udp-drops.sqlite", file);
  {
    store::Db db = store::Db::create(file.string());
    REQUIRE(db.query_int("SELECT count(DISTINCT snapshot_id) FROM sockets") >= 3);
    db.exec("CREATE TEMP TABLE t AS SELECT * FROM sockets WHERE sock_id = "
            "(SELECT min(sock_id) FROM sockets);"
            "UPDATE t SET sock_id = (SELECT max(sock_id) + 1 FROM sockets);"
            "INSERT INTO sockets SELECT * FROM t;");
  }
  const Series s = load_series({file.string()});
  size_t tracks = 0;
  for (const Timeline& tl : s.timelines) {
    std::vector<uint32_t> per_snap(tl.snaps.size(), 0);
    for (const Track& t : tl.tracks) {
      ++tracks;
      for (size_t i = 0; i < t.samples.size(); ++i) {
        CHECK((i == 0 || t.samples[i - 1].snap < t.samples[i].snap));
        ++per_snap[t.samples[i].snap];
      }
    }
    // The dropped copy is not counted either (fuzz_load found the count one too high).
    for (size_t i = 0; i < tl.snaps.size(); ++i) {
      CHECK(tl.snaps[i].sockets == per_snap[i]);
    }
  }
  CHECK(tracks > 0);
}
