// tcp_memory_pressure on one-minute synthetic series: gauge vs tcp_mem, counters, resets.
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

synth::Snap mem_snap(int i, int64_t pages, int64_t pressures = 3, int64_t aborts = 0) {
  synth::Snap s = minute(i);
  s.counters["TCP.mem"] = pages;
  s.counters["TcpExt.TCPMemoryPressures"] = pressures;
  s.counters["TcpExt.TCPAbortOnMemory"] = aborts;
  s.counters["TcpExt.TCPRcvQDrop"] = 0;
  s.limits["net.ipv4.tcp_mem"] = "10000 15000 30000";
  // A stalled reader holding 6 MiB (pid 42), and a small idle socket (pid 43).
  s.sockets.push_back({.lport = 8080,
                       .rport = 40000,
                       .rx = 6'000'000,
                       .tx = 0,
                       .inode = 900,
                       .cookie = 31,
                       .rmem_alloc = 6'200'000,
                       .rcvbuf = 6'291'456,
                       .wmem_queued = 0,
                       .owners = {{42, 5}}});
  s.sockets.push_back({.lport = 9090,
                       .rport = 40001,
                       .rx = 0,
                       .tx = 0,
                       .inode = 901,
                       .cookie = 32,
                       .rmem_alloc = 0,
                       .rcvbuf = 131072,
                       .wmem_queued = 4096,
                       .owners = {{43, 5}}});
  s.procs.push_back({.pid = 43, .start_ticks = 9, .comm = "idle", .socket_fds = 1});
  return s;
}

} // namespace

TEST_CASE("tcp_memory_pressure: TCP memory over tcp_mem[pressure] is a warning with the top "
          "sockets",
          "[det][tcp_memory_pressure]") {
  std::vector<synth::Snap> snaps;
  snaps.reserve(16);
  const int64_t pages[] = {9000, 16000, 17000, 14000, 11000, 9000};
  for (int i = 0; i < 6; ++i) {
    snaps.push_back(mem_snap(i, pages[i]));
  }
  const auto f = run_detector(snaps, "tcp_memory_pressure");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].subject["netns"] == 4026531840ULL);
  // 16000, 17000, then 14000 (still >= 0.8 x 15000): three snapshots.
  CHECK(f[0].evidence["snapshots_over_pressure"] == 3);
  CHECK(f[0].evidence["peak_mem_pages"] == 17000);
  CHECK(f[0].evidence["tcp_mem"] == Json::array({10000, 15000, 30000}));
  REQUIRE(f[0].evidence["top_sockets"].size() == 2);
  CHECK(f[0].evidence["top_sockets"][0]["pid"] == 42);
  CHECK(f[0].evidence["top_sockets"][0]["local"] == "127.0.0.1:8080");
  CHECK(f[0].evidence["top_sockets"][0]["bytes"] == 6'200'000);
  CHECK(f[0].evidence["series"][1]["mem_pages"] == 16000);
  CHECK(f[0].evidence["series"][1]["pressure_pages"] == 15000);
  CHECK(f[0].evidence["series"][1]["over_pressure"] == true);
  CHECK(f[0].first_seen_ns == k_t0 + k_minute);
}

TEST_CASE("tcp_memory_pressure: near tcp_mem[max] or aborts are critical",
          "[det][tcp_memory_pressure]") {
  SECTION("over 90% of max for two minutes") {
    std::vector<synth::Snap> snaps;
    snaps.reserve(16);
    for (int i = 0; i < 4; ++i) {
      snaps.push_back(mem_snap(i, i == 2 ? 28000 : 20000));
    }
    auto f = run_detector(snaps, "tcp_memory_pressure");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::warning); // one snapshot near max
    CHECK(f[0].evidence["snapshots_near_max"] == 1);
    snaps[3] = mem_snap(3, 28000);
    f = run_detector(snaps, "tcp_memory_pressure");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::critical);
    CHECK(f[0].evidence["snapshots_near_max"] == 2);
  }
  SECTION("TCPAbortOnMemory rises while usage looks fine") {
    std::vector<synth::Snap> snaps;
    snaps.reserve(16);
    for (int i = 0; i < 4; ++i) {
      snaps.push_back(mem_snap(i, 5000, 3, i < 2 ? 0 : 7));
    }
    const auto f = run_detector(snaps, "tcp_memory_pressure");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::critical);
    CHECK(f[0].evidence["abort_on_memory"] == 7);
  }
  SECTION("one snapshot over pressure with TCPMemoryPressures +1 is a warning") {
    std::vector<synth::Snap> snaps;
    snaps.reserve(16);
    for (int i = 0; i < 4; ++i) {
      snaps.push_back(mem_snap(i, i == 2 ? 16000 : 5000, i < 2 ? 3 : 4));
    }
    const auto f = run_detector(snaps, "tcp_memory_pressure");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::warning);
    CHECK(f[0].evidence["memory_pressures"] == 1);
    CHECK(f[0].evidence["series"][1]["TCPMemoryPressures_delta"] == 0);
    CHECK(f[0].evidence["series"][2]["TCPMemoryPressures_delta"] == 1);
  }
}

TEST_CASE("tcp_memory_pressure: normal usage and counter resets raise nothing",
          "[det][tcp_memory_pressure]") {
  std::vector<synth::Snap> snaps;
  snaps.reserve(16);
  for (int i = 0; i < 6; ++i) {
    // Under pressure, one single snapshot over it, and counters that restart (netns re-created).
    snaps.push_back(mem_snap(i, i == 3 ? 15500 : 8000, i < 3 ? 40 : 2, i < 3 ? 9 : 0));
  }
  CHECK(run_detector(snaps, "tcp_memory_pressure").empty());
}

// ---- issue 12: durations in seconds, severity by fraction of the limit and time at it

namespace {

synth::Snap at(int i, int64_t step, int64_t pages, int64_t pressures = 3, int64_t aborts = 0) {
  synth::Snap s = mem_snap(0, pages, pressures, aborts);
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  return s;
}

} // namespace

TEST_CASE("tcp_memory_pressure: time over pressure is in seconds, the same at 1 s and 60 s",
          "[det][tcp_memory_pressure][issue12]") {
  // Over pressure in two snapshots one second apart (and the kernel counted no pressure event):
  // not yet.
  {
    std::vector<synth::Snap> snaps{at(0, k_second, 5000),
                                   at(1, k_second, 16000),
                                   at(2, k_second, 16000),
                                   at(3, k_second, 5000)};
    CHECK(run_detector(snaps, "tcp_memory_pressure").empty());
  }
  for (const int64_t step : {k_second, 5 * k_second}) {
    std::vector<synth::Snap> snaps;
    const int n = static_cast<int>(10 * k_second / step) + 1;
    for (int i = 0; i < n; ++i) {
      snaps.push_back(at(i, step, 16000));
    }
    const auto f = run_detector(snaps, "tcp_memory_pressure");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::warning);
    CHECK(f[0].evidence["seconds_over_pressure"].get<double>() == Approx(10));
    CHECK(f[0].evidence["group"]["by"] == "netns");
  }
}

TEST_CASE("tcp_memory_pressure: one snapshot near max is a warning, staying there is critical",
          "[det][tcp_memory_pressure][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    snaps.push_back(at(i, k_second, i == 2 ? 28000 : 5000));
  }
  auto f = run_detector(snaps, "tcp_memory_pressure");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  for (int i = 4; i < 10; ++i) {
    snaps.push_back(at(i, k_second, 28000));
  }
  f = run_detector(snaps, "tcp_memory_pressure");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::critical);
}
