// orphan_pressure on one-minute synthetic series: orphans vs limit, aborts, stuck orphans.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

// Snapshot i of a one-minute cron series (a gap of `gap_minutes` before it when given).
synth::Snap minute(int i, int gap_minutes = 0) {
  synth::Snap s;
  s.realtime_ns = k_t0 + (i + gap_minutes) * k_minute;
  s.boottime_ns = 1000 * k_minute + (i + gap_minutes) * k_minute;
  s.procs.push_back({.pid = 42,
                     .start_ticks = 7,
                     .comm = "app",
                     .cmdline = "app --serve",
                     .fd_count = 50,
                     .socket_fds = 20,
                     .nofile_soft = 1024});
  return s;
}

synth::Snap with_orphans(int i, int64_t orphans, int64_t aborts = 0) {
  synth::Snap s = minute(i);
  s.counters["TCP.orphan"] = orphans;
  s.counters["TcpExt.TCPAbortOnMemory"] = aborts;
  s.limits["net.ipv4.tcp_max_orphans"] = "1000";
  return s;
}

// An orphan (closed, inode 0, no owner) 127.0.0.1:41000 -> 127.0.0.1:8080.
synth::Sock orphan(uint8_t state, uint32_t tx, uint8_t timer) {
  return {.state = state,
          .lport = 41000,
          .rport = 8080,
          .rx = 0,
          .tx = tx,
          .inode = 0,
          .cookie = 77,
          .timer = timer,
          .retrans = 0,
          .tcp_info = {{"notsent_bytes", tx > 1 ? tx - 65536 : 0}, {"snd_wnd", 0}}};
}

} // namespace

TEST_CASE("orphan_pressure: orphans over 25% / 50% of tcp_max_orphans", "[det][orphan_pressure]") {
  std::vector<synth::Snap> snaps;
  snaps.reserve(16);
  const int64_t counts[] = {100, 300, 320, 340, 200, 150};
  for (int i = 0; i < 6; ++i) {
    snaps.push_back(with_orphans(i, counts[i]));
  }
  const auto f = run_detector(snaps, "orphan_pressure");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].subject["netns"] == 4026531840ULL);
  CHECK(f[0].evidence["peak_ratio"].get<double>() == Approx(0.34));
  CHECK(f[0].evidence["snapshots_over_warn"] == 3);
  REQUIRE(f[0].evidence["series"].size() == 5); // the three, plus one on each side
  CHECK(f[0].evidence["series"][1]["orphans"] == 300);
  CHECK(f[0].evidence["series"][1]["tcp_max_orphans"] == 1000);
  CHECK(f[0].first_seen_ns == k_t0 + k_minute);

  for (auto& s : snaps) {
    s.counters["TCP.orphan"] = 600;
  }
  const auto g = run_detector(snaps, "orphan_pressure");
  REQUIRE(g.size() == 1);
  CHECK(g[0].severity == Severity::critical);
}

TEST_CASE("orphan_pressure: TCPAbortOnMemory increases are critical, resets are not",
          "[det][orphan_pressure]") {
  std::vector<synth::Snap> snaps;
  snaps.reserve(16);
  const int64_t aborts[] = {10, 10, 64, 70, 70};
  for (int i = 0; i < 5; ++i) {
    snaps.push_back(with_orphans(i, 5, aborts[i]));
  }
  const auto f = run_detector(snaps, "orphan_pressure");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::critical);
  CHECK(f[0].evidence["abort_on_memory"] == 60);
  CHECK(f[0].evidence["series"][0]["abort_on_memory_delta"] == 0);
  CHECK(f[0].evidence["series"][1]["abort_on_memory_delta"] == 54);

  // A namespace re-created (counter back to 0) is a reset, not a negative or positive delta.
  const int64_t reset[] = {500, 500, 0, 0, 0};
  for (int i = 0; i < 5; ++i) {
    snaps[static_cast<size_t>(i)].counters["TcpExt.TCPAbortOnMemory"] = reset[i];
  }
  CHECK(run_detector(snaps, "orphan_pressure").empty());
}

TEST_CASE("orphan_pressure: a closed socket stuck in FIN-WAIT-1 with data",
          "[det][orphan_pressure]") {
  std::vector<synth::Snap> snaps;
  snaps.reserve(16);
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = with_orphans(i, 1);
    s.sockets.push_back(orphan(4, 3'780'000, 4));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "orphan_pressure");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::info);
  CHECK(f[0].subject["state"] == "FIN-WAIT-1");
  CHECK(f[0].subject["local"] == "127.0.0.1:41000");
  CHECK(f[0].subject["remote"] == "127.0.0.1:8080");
  CHECK(f[0].subject["inode"] == 0);
  CHECK(f[0].subject["pid"].is_null());
  CHECK(f[0].evidence["class"] == "stuck_FIN-WAIT-1");
  CHECK(f[0].evidence["series"].size() == 4);
  CHECK(f[0].evidence["series"][0]["tx_queue"] == 3'780'000);
  CHECK(f[0].evidence["orphans_host"] == 1);

  // Stuck for five minutes or more: a warning.
  for (int i = 4; i < 7; ++i) {
    synth::Snap s = with_orphans(i, 1);
    s.sockets.push_back(orphan(4, 3'780'000, 4));
    snaps.push_back(s);
  }
  const auto g = run_detector(snaps, "orphan_pressure");
  REQUIRE(g.size() == 1);
  CHECK(g[0].severity == Severity::warning);
}

TEST_CASE("orphan_pressure: few orphans, a FIN alone and short-lived orphans are fine",
          "[det][orphan_pressure]") {
  std::vector<synth::Snap> snaps;
  snaps.reserve(16);
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = with_orphans(i, 200); // 20%: under the 25% bar
    s.sockets.push_back(orphan(4, 1, 1)); // only the FIN is unacknowledged
    synth::Sock la = orphan(9, 1, 1);     // a LAST-ACK seen twice, then gone
    la.cookie = static_cast<uint64_t>(100 + i / 2);
    la.lport = static_cast<uint16_t>(42000 + i / 2);
    s.sockets.push_back(la);
    snaps.push_back(s);
  }
  // Each LAST-ACK was seen for a minute: info at most, and nothing about the FIN or the count.
  const auto f = run_detector(snaps, "orphan_pressure");
  CHECK(at_least(f, Severity::warning) == 0);
  for (const Finding& x : f) {
    CHECK(x.evidence["class"] == "stuck_LAST-ACK");
  }
}

// ---- issue 12: durations in seconds, severity by fraction of the limit and time at it

namespace {

synth::Snap at(int i, int64_t step, int64_t orphans) {
  synth::Snap s = with_orphans(0, orphans);
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  return s;
}

} // namespace

TEST_CASE("orphan_pressure: time over the ratio is in seconds, the same at 1 s and 60 s",
          "[det][orphan_pressure][issue12]") {
  const auto series = [](int n, int64_t step, int64_t orphans) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < n; ++i) {
      snaps.push_back(at(i, step, orphans));
    }
    return snaps;
  };
  // 30 % for one second (two snapshots): not yet.
  CHECK(run_detector(series(2, k_second, 300), "orphan_pressure").empty());
  // 30 % for 5 s at 1 s or at 5 s intervals: a warning either way.
  for (const int64_t step : {k_second, 5 * k_second}) {
    const auto f = run_detector(series(static_cast<int>(5 * k_second / step) + 1, step, 300),
                                "orphan_pressure");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::warning);
    CHECK(f[0].evidence["seconds_over_warn"].get<double>() == Approx(5));
    CHECK(f[0].evidence["group"]["by"] == "netns");
  }
  // 60 % for 5 s: critical.
  CHECK(run_detector(series(6, k_second, 600), "orphan_pressure")[0].severity
        == Severity::critical);
}

TEST_CASE("orphan_pressure: stuck orphans need seconds, and many toward one peer are one finding",
          "[det][orphan_pressure][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 3; ++i) {
    synth::Snap s = at(i, k_second, 1);
    s.sockets.push_back(orphan(4, 3'780'000, 4));
    snaps.push_back(s);
  }
  // Three snapshots one second apart: 2 s, not stuck yet.
  CHECK(run_detector(snaps, "orphan_pressure").empty());

  snaps.clear();
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = at(i, k_minute, 10);
    for (uint16_t k = 0; k < 10; ++k) {
      synth::Sock x = orphan(4, 100'000 + k, 4);
      x.lport = static_cast<uint16_t>(41000 + k);
      x.cookie = 200 + k;
      s.sockets.push_back(x);
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "orphan_pressure");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning); // 300 s
  CHECK(f[0].evidence["group"]["by"] == "destination");
  CHECK(f[0].evidence["group"]["count"] == 10);
}
