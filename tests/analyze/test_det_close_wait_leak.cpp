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
  CHECK(f[0].evidence["group"]["count"] == 5);
  CHECK(f[0].evidence["unread_bytes"] == 3);
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
  const std::vector<std::string> set{"close_wait_leak.persist_seconds=90"};
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 10; ++i) {
    // A three-hour hole between snapshot 1 and 2; the socket only in 0, 1 and 2, 3.
    synth::Snap s = minute(i, i >= 2 ? 180 : 0);
    if (i < 4) {
      s.sockets.push_back(close_wait(400, 53000));
    }
    snaps.push_back(s);
  }
  CHECK(at_least(run_detector(snaps, "close_wait_leak", set), Severity::warning) == 0);
  // Another socket in three snapshots in a row after the hole: a warning.
  for (size_t i = 5; i < 8; ++i) {
    snaps[i].sockets.push_back(close_wait(401, 53001));
  }
  const auto g = run_detector(snaps, "close_wait_leak", set);
  REQUIRE(g.size() == 1);
  CHECK(g[0].severity == Severity::warning);
  CHECK(g[0].evidence["persistent"] == true);
  CHECK(g[0].evidence["close_wait_max"] == 1);
}

// ---- issue 12: persistence in seconds, accumulation, one finding per process

namespace {

synth::Snap at(int i, int64_t step) {
  synth::Snap s = minute(0);
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  return s;
}

} // namespace

TEST_CASE("close_wait_leak: one CLOSE-WAIT socket must persist in seconds, whatever the interval",
          "[det][close_wait_leak][issue12]") {
  const auto series = [](int n, int64_t step) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < n; ++i) {
      synth::Snap s = at(i, step);
      s.sockets.push_back(close_wait(500, 54000));
      snaps.push_back(s);
    }
    return snaps;
  };
  // An idle client whose server closed it, seen for 3 s: no warning.
  CHECK(at_least(run_detector(series(4, k_second), "close_wait_leak"), Severity::warning) == 0);
  // The same four snapshots a minute apart: 3 minutes, a warning.
  CHECK(at_least(run_detector(series(4, k_minute), "close_wait_leak"), Severity::warning) == 1);
  // 90 s at 1 s or at 30 s intervals: the same verdict.
  for (const int64_t step : {k_second, 30 * k_second}) {
    const auto f =
        run_detector(series(static_cast<int>(90 * k_second / step) + 1, step), "close_wait_leak");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::warning);
    CHECK(f[0].evidence["oldest_age_s"].get<double>() == Approx(90));
  }
}

TEST_CASE("close_wait_leak: CLOSE-WAIT sockets accumulating in a process are a warning within "
          "seconds",
          "[det][close_wait_leak][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = at(i, k_second);
    s.procs[0].nofile_soft = 1'000'000; // the fd limit is far: growth alone is a warning
    for (int k = 0; k < 4 + 4 * i; ++k) {
      s.sockets.push_back(
          close_wait(uint64_t{600} + static_cast<uint64_t>(k), static_cast<uint16_t>(55000 + k)));
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "close_wait_leak");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].evidence["growing"] == true);
  CHECK(f[0].evidence["close_wait_now"] == 24);
  CHECK(f[0].evidence["group"]["by"] == "process");
  CHECK(f[0].evidence["group"]["count"] == 24);
  CHECK(f[0].summary.find("pid 42 (app)") != std::string::npos);
}

TEST_CASE("close_wait_leak: a steady handful for a few seconds is info, not a warning",
          "[det][close_wait_leak][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = at(i, k_second);
    for (uint16_t k = 0; k < 5; ++k) {
      s.sockets.push_back(close_wait(100 + k, static_cast<uint16_t>(50000 + k)));
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "close_wait_leak");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::info);
  CHECK(f[0].evidence["group"]["count"] == 5);
}

TEST_CASE("close_wait_leak: many leaked sockets in one process are one finding with examples",
          "[det][close_wait_leak][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = at(i, k_minute);
    for (int k = 0; k < 50; ++k) {
      s.sockets.push_back(
          close_wait(uint64_t{700} + static_cast<uint64_t>(k), static_cast<uint16_t>(56000 + k)));
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "close_wait_leak");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].evidence["group"]["count"] == 50);
  CHECK(f[0].evidence["group"]["examples"].size() == 3);
  CHECK(f[0].subject["pid"] == 42);
}

TEST_CASE("close_wait_leak: a socket's streak counts from its first CLOSE-WAIT sample, not from "
          "the socket's first sample",
          "[det][close_wait_leak]") {
  // Four sockets, all ESTAB at minute 0; socket k in CLOSE-WAIT from minute k + 1 to minute 6.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 7; ++i) {
    synth::Snap s = minute(i);
    for (int k = 0; k < 4; ++k) {
      synth::Sock x =
          close_wait(uint64_t{800} + static_cast<uint64_t>(k), static_cast<uint16_t>(57000 + k));
      if (i < k + 1) {
        if (i > 0) {
          continue; // not yet in CLOSE-WAIT, not seen
        }
        x.state = 1; // ESTAB
      }
      s.sockets.push_back(x);
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "close_wait_leak");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].evidence["group"]["count"] == 4);
  // The oldest: 5 minutes, in CLOSE-WAIT from minute 1 to minute 6.
  CHECK(f[0].evidence["oldest_age_s"].get<double>() == Approx(300));
  CHECK(f[0].summary.find("in CLOSE-WAIT for 300 s (6 snapshots)") != std::string::npos);
  CHECK(f[0].first_seen_ns == k_t0 + k_minute);
  CHECK(f[0].last_seen_ns == k_t0 + 6 * k_minute);
  // Per snapshot: the sockets in CLOSE-WAIT, and those in it for persist_seconds (60 s) by then.
  const Json& rows = f[0].evidence["series"];
  REQUIRE(rows.size() == 7);
  const std::vector<int> close_wait{0, 1, 2, 3, 4, 4, 4};
  const std::vector<int> persistent{0, 0, 1, 2, 3, 4, 4};
  for (size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(i);
    CHECK(rows[i]["close_wait"] == close_wait[i]);
    CHECK(rows[i]["persistent"] == persistent[i]);
  }
}
