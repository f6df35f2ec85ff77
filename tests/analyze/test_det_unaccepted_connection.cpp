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
  CHECK(f.evidence["longest_run"] == 5);
  CHECK(f.evidence["close_wait_children"] == 0);
  REQUIRE(!f.evidence["children"].empty());
  CHECK(f.evidence["children"][0]["peer"] == "127.0.0.1:40001"); // oldest first
  CHECK(f.evidence["children"][0]["rx_bytes"] == 1000);
  CHECK(f.evidence["children"][0]["age_s"].get<double>() == Approx(245));
  REQUIRE(f.evidence["series"].size() == 5);
  CHECK(f.evidence["series"][0]["unaccepted"] == 2);
  CHECK(f.evidence["series"][0]["queue"] == 2);
}

TEST_CASE("unaccepted_connection: short-lived children in 3 consecutive one-second snapshots "
          "warn",
          "[det][unaccepted_connection]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = snap_at(i, k_second);
    s.sockets.push_back(listener(8080, i >= 2 && i <= 4 ? 1 : 0, 128));
    if (i >= 2 && i <= 4) {
      s.sockets.push_back(
          child(1, static_cast<uint16_t>(41000 + i), 70 + static_cast<uint64_t>(i)));
    }
    snaps.push_back(std::move(s));
  }
  const auto fs = run_detector(snaps, "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK(fs[0].evidence["longest_run"] == 3);
  CHECK(fs[0].evidence["series"].size() == 5); // one snapshot either side
}

TEST_CASE("unaccepted_connection: a client that gave up while queued (CLOSE-WAIT) is critical",
          "[det][unaccepted_connection]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 3; ++i) {
    synth::Snap s = snap_at(i);
    s.sockets.push_back(listener(8080, i == 1 ? 1 : 0, 128));
    if (i == 1) {
      s.sockets.push_back(child(8, 42000, 80, 1));
    }
    snaps.push_back(std::move(s));
  }
  const auto fs = run_detector(snaps, "unaccepted_connection");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::critical);
  CHECK(fs[0].evidence["close_wait_children"] == 1);
  CHECK(fs[0].evidence["children"][0]["state"] == "CLOSE-WAIT");
  CHECK(fs[0].summary.find("gave up") != std::string::npos);
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
