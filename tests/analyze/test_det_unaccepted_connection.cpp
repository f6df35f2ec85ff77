// unaccepted_connection on synthetic series (research/detectors.md): minute and one-second series,
// near misses, resets.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

synth::Sock
child(uint8_t state, uint16_t rport, uint64_t cookie, uint32_t rx = 100, uint64_t ack_ms = 1000) {
  return {.state = state,
          .local = "127.0.0.1",
          .lport = 8080,
          .remote = "127.0.0.1",
          .rport = rport,
          .rx = rx,
          .tx = 0,
          .inode = 0,
          .cookie = cookie,
          .tcp_info = {{"last_ack_recv_ms", ack_ms}}};
}

} // namespace

TEST_CASE("unaccepted_connection: the same child queued for minutes is critical",
          "[det][unaccepted_connection]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 5; ++i) {
    synth::Snap s = snap_at(i);
    s.sockets.push_back(listener(8080, 2, 128));
    s.sockets.push_back(child(1, 40001, 50, 1000, 5000 + 60000 * static_cast<uint64_t>(i)));
    s.sockets.push_back(child(1, static_cast<uint16_t>(40002 + i), 60 + static_cast<uint64_t>(i)));
    snaps.push_back(std::move(s));
  }
  const auto fs = run_detector(snaps, "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::critical);
  CHECK(f.subject["local"] == "0.0.0.0:8080");
  CHECK(f.subject["pid"] == 100);
  CHECK(f.pid == 100);
  CHECK(f.evidence["children_total"] == 6);
  CHECK(f.evidence["children_stuck"] == 1); // the five brand-new ones are not stuck
  CHECK(f.evidence["close_wait_children"] == 0);
  REQUIRE(!f.evidence["children"].empty());
  CHECK(f.evidence["children"][0]["peer"] == "127.0.0.1:40001"); // oldest first
  CHECK(f.evidence["children"][0]["rx_bytes"] == 1000);
  CHECK(f.evidence["children"][0]["age_s"].get<double>() == Approx(245));
  REQUIRE(f.evidence["series"].size() == 5);
  CHECK(f.evidence["series"][0]["unaccepted"] == 2);
  CHECK(f.evidence["series"][0]["queue"] == 2);
}

TEST_CASE("unaccepted_connection: a client that gave up while queued (CLOSE-WAIT) is critical",
          "[det][unaccepted_connection]") {
  const auto series = [](bool stuck) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 3; ++i) {
      synth::Snap s = snap_at(i);
      s.sockets.push_back(listener(8080, 1, 128));
      if (stuck) {
        s.sockets.push_back(child(1, 42001, 81, 10)); // the same child, 2 minutes
      }
      if (i == 1) {
        s.sockets.push_back(child(8, 42000, 80, 1));
      }
      snaps.push_back(std::move(s));
    }
    return snaps;
  };
  const auto fs = run_detector(series(true), "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::critical);
  CHECK(fs[0].evidence["close_wait_children"] == 1);
  CHECK(fs[0].summary.find("gave up") != std::string::npos);
  // A CLOSE-WAIT child caught once at a listener that accepts: a race, quiet.
  CHECK(run_detector(series(false), "unaccepted_connection").empty());
}

TEST_CASE("unaccepted_connection: brand-new children in consecutive one-second snapshots stay "
          "quiet",
          "[det][unaccepted_connection]") {
  // A busy listener (nginx under ab -c 20): every snapshot catches a few brand-new children,
  // each one queued for milliseconds; some child in 3 consecutive snapshots is not a stuck one.
  for (const int64_t step : {k_second, k_minute}) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = snap_at(i, step);
      s.sockets.push_back(listener(8080, 4, 511));
      for (int k = 0; k < 4; ++k) {
        const auto id = static_cast<uint64_t>(10 * i + k);
        s.sockets.push_back(child(1, static_cast<uint16_t>(41000 + id), 100 + id, 120, 2));
      }
      snaps.push_back(std::move(s));
    }
    CHECK(run_detector(snaps, "unaccepted_connection").empty());
  }
}

TEST_CASE("unaccepted_connection: the same connection queued for seconds warns, at any interval",
          "[det][unaccepted_connection]") {
  // Seen queued in snapshots 4 s apart (one-second snapshots): a warning.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = snap_at(i, k_second);
    s.sockets.push_back(listener(8080, i >= 1 ? 1 : 0, 128));
    if (i >= 1) {
      s.sockets.push_back(child(1, 41001, 70, 100, 5));
    }
    snaps.push_back(std::move(s));
  }
  auto fs = run_detector(snaps, "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK(fs[0].evidence["oldest_queued_s"].get<double>() == Approx(4));
  CHECK(fs[0].evidence["series"].size() == 6); // one snapshot before the first
  CHECK(fs[0].summary.find("the oldest 4 s") != std::string::npos);
  // Seen once, but its last ACK says it has waited 10 s since the handshake.
  std::vector<synth::Snap> once;
  for (int i = 0; i < 3; ++i) {
    synth::Snap s = snap_at(i, k_second);
    s.sockets.push_back(listener(8080, i == 1 ? 1 : 0, 128));
    if (i == 1) {
      s.sockets.push_back(child(1, 41002, 71, 100, 10000));
    }
    once.push_back(std::move(s));
  }
  fs = run_detector(once, "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  // 120 s of the same child is critical at one-second and at one-minute snapshots alike.
  for (const int64_t step : {k_second, k_minute}) {
    std::vector<synth::Snap> long_run;
    const auto n = static_cast<int>(120 * k_second / step) + 1;
    for (int i = 0; i < n; ++i) {
      synth::Snap s = snap_at(i, step);
      s.sockets.push_back(listener(8080, 1, 128));
      s.sockets.push_back(child(1, 41003, 72, 100, 5));
      long_run.push_back(std::move(s));
    }
    fs = run_detector(long_run, "unaccepted_connection");
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].severity == Severity::critical);
    CHECK(fs[0].evidence["oldest_queued_s"].get<double>() == Approx(120));
  }
}

namespace {

// A listener shared by a master (100) and a worker (101), with one child stuck for 3 minutes.
std::vector<synth::Snap> shared_listener() {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = snap_at(i);
    s.procs.push_back({.pid = 101, .start_ticks = 9, .comm = "server", .fd_count = 20});
    synth::Sock l = listener(8080, 1, 128);
    l.owners = {{100, 3}, {101, 3}};
    s.sockets.push_back(l);
    s.sockets.push_back(child(1, 41004, 73));
    snaps.push_back(std::move(s));
  }
  return snaps;
}

} // namespace

TEST_CASE("unaccepted_connection: the finding names the listener's owners, one per listener",
          "[det][unaccepted_connection]") {
  const auto fs = run_detector(shared_listener(), "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].subject["pid"] == 100);
  REQUIRE(fs[0].subject["owners"].is_array());
  CHECK(fs[0].subject["owners"][0]["pid"] == 100);
  CHECK(fs[0].summary.find("not accepted by pid") != std::string::npos);
  CHECK(fs[0].evidence["group"]["by"] == "listener");
  CHECK(fs[0].evidence["group"]["count"] == 1);
}

TEST_CASE("unaccepted_connection: every owner of a shared listener is listed", "[det][owners]") {
  const auto fs = run_detector(shared_listener(), "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].subject["owners"].size() == 2);
  CHECK(fs[0].summary.find("pids 100, 101 (server)") != std::string::npos);
}

TEST_CASE("unaccepted_connection: a stopped worker among a listener's owners is the culprit",
          "[det][owners]") {
  // nginx-like: the master (100) and a worker (101) hold the listener; the worker is stopped.
  std::vector<synth::Snap> snaps = shared_listener();
  for (synth::Snap& s : snaps) {
    s.procs[0].state = 'S';
    s.procs[1].state = 'S';
    s.procs.back().state = 'T';
  }
  const auto fs = run_detector(snaps, "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].subject["pid"] == 101);
  REQUIRE(fs[0].subject["owners"].size() == 2);
  CHECK(fs[0].subject["owners"][1]["state"] == "T");
  CHECK(fs[0].summary.find("pid 101 (server, stopped) of pids 100, 101 (server)")
        != std::string::npos);
  CHECK(fs[0].pid == 101);
}

TEST_CASE("unaccepted_connection: accept races and accepted connections stay quiet",
          "[det][unaccepted_connection]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = snap_at(i);
    s.sockets.push_back(listener(8080, 0, 128));
    // Accepted connections (inode != 0, owned) all the time.
    s.sockets.push_back({.local = "127.0.0.1",
                         .lport = 8080,
                         .rport = 43000,
                         .rx = 0,
                         .tx = 0,
                         .inode = 9000,
                         .cookie = 90,
                         .owners = {{100, 9}}});
    // A child caught in two non-consecutive snapshots (different connections).
    if (i == 1 || i == 3) {
      s.sockets.push_back(
          child(1, static_cast<uint16_t>(44000 + i), 95 + static_cast<uint64_t>(i)));
    }
    // TIME-WAIT at the listener port is not queued.
    s.sockets.push_back({.state = 6,
                         .local = "127.0.0.1",
                         .lport = 8080,
                         .rport = 45000,
                         .inode = 0,
                         .cookie = 99,
                         .timer = 3});
    snaps.push_back(std::move(s));
  }
  CHECK(run_detector(snaps, "unaccepted_connection").empty());
}
