// close_wait_leak on one-minute synthetic series: persistence, counts, growth, gaps.
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

// A server-side CLOSE-WAIT socket 127.0.0.1:8080 <- 10.0.0.9:port, owned by pid 42.
synth::Sock close_wait(uint64_t cookie, uint16_t rport, uint64_t acked = 5000) {
  return {.state = 8,
          .lport = 8080,
          .remote = "10.0.0.9",
          .rport = rport,
          .rx = 4,
          .tx = 0,
          .inode = 1000 + cookie,
          .cookie = cookie,
          .tcp_info = {{"bytes_acked", acked}},
          .owners = {{42, static_cast<int32_t>(10 + cookie % 1000)}}};
}

} // namespace

TEST_CASE("close_wait_leak: CLOSE-WAIT sockets that stay are a warning on their process",
          "[det][close_wait_leak]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = minute(i);
    for (uint16_t k = 0; k < 5; ++k) {
      s.sockets.push_back(close_wait(100 + k, static_cast<uint16_t>(50000 + k)));
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "close_wait_leak");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].subject["pid"] == 42);
  CHECK(f[0].subject["comm"] == "app");
  CHECK(f[0].subject["local"] == "127.0.0.1:8080");
  CHECK(!f[0].subject.contains("remote")); // every client port differs
  CHECK(f[0].subject["state"] == "CLOSE-WAIT");
  CHECK(f[0].pid == 42);
  CHECK(f[0].evidence["close_wait_now"] == 5);
  CHECK(f[0].evidence["persistent"] == true);
  CHECK(f[0].evidence["oldest_age_s"].get<double>() == Approx(300));
  REQUIRE(f[0].evidence["series"].size() == 6);
  CHECK(f[0].evidence["series"][0]["close_wait"] == 5);
  CHECK(f[0].evidence["series"][0]["persistent"] == 0);
  CHECK(f[0].evidence["series"][2]["persistent"] == 5);
  CHECK(f[0].evidence["series"][5]["fds"] == 50);
  CHECK(f[0].evidence["oldest_sockets"].size() == 5);
  CHECK(f[0].evidence["oldest_sockets"][0]["rx_queue"] == 4);
}

TEST_CASE("close_wait_leak: a fast-growing pile-up is critical (count or fd-limit ETA)",
          "[det][close_wait_leak]") {
  SECTION("count over count_critical") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = minute(i);
      for (int k = 0; k < 250 * i; ++k) {
        s.sockets.push_back(close_wait(uint64_t{1000} + static_cast<uint64_t>(k),
                                       static_cast<uint16_t>(20000 + k)));
      }
      snaps.push_back(s);
    }
    const auto f = run_detector(snaps, "close_wait_leak");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::critical);
    CHECK(f[0].evidence["close_wait_max"] == 1250);
    CHECK(f[0].evidence["growing"] == true);
  }
  SECTION("growth that reaches RLIMIT_NOFILE within the hour") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = minute(i);
      s.procs[0].fd_count = static_cast<uint32_t>(100 + 30 * i);
      for (int k = 0; k < 30 * i; ++k) {
        s.sockets.push_back(close_wait(uint64_t{1000} + static_cast<uint64_t>(k),
                                       static_cast<uint16_t>(20000 + k)));
      }
      snaps.push_back(s);
    }
    const auto f = run_detector(snaps, "close_wait_leak");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::critical);
    // (1024 - 250) fds left at 30/min: about 26 minutes.
    CHECK(f[0].evidence["eta_nofile_s"].get<double>() == Approx(774.0 * 2).epsilon(0.05));
  }
}

TEST_CASE("close_wait_leak: transient, unowned, inode-0 and still-sending CLOSE-WAIT are fine",
          "[det][close_wait_leak]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = minute(i);
    // A new CLOSE-WAIT every minute, closed by the next snapshot.
    s.sockets.push_back(
        close_wait(uint64_t{200} + static_cast<uint64_t>(i), static_cast<uint16_t>(51000 + i)));
    // Kernel-accepted, never accepted by the app: unaccepted_connection's.
    synth::Sock q = close_wait(300, 52000);
    q.inode = 0;
    q.owners = {};
    s.sockets.push_back(q);
    // A half-close protocol: the app keeps sending after EOF.
    s.sockets.push_back(
        close_wait(301, 52001, 5000 + uint64_t{100'000} * static_cast<uint64_t>(i)));
    snaps.push_back(s);
  }
  CHECK(run_detector(snaps, "close_wait_leak").empty());
}

TEST_CASE("close_wait_leak: persistence does not span a gap", "[det][close_wait_leak]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 10; ++i) {
    // A three-hour hole between snapshot 1 and 2; the socket only in 0, 1 and 2, 3.
    synth::Snap s = minute(i, i >= 2 ? 180 : 0);
    if (i < 4) {
      s.sockets.push_back(close_wait(400, 53000));
    }
    snaps.push_back(s);
  }
  CHECK(run_detector(snaps, "close_wait_leak").empty());
  // Another socket in three snapshots in a row after the hole: a warning.
  for (size_t i = 5; i < 8; ++i) {
    snaps[i].sockets.push_back(close_wait(401, 53001));
  }
  const auto g = run_detector(snaps, "close_wait_leak");
  REQUIRE(g.size() == 1);
  CHECK(g[0].severity == Severity::warning);
  CHECK(g[0].evidence["persistent"] == true);
  CHECK(g[0].evidence["close_wait_max"] == 1);
}
