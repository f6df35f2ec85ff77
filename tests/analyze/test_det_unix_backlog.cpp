// unix_backlog on synthetic one-minute series: listeners, stream Recv-Q, datagram senders.
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

synth::Snap unix_minute(int i) {
  synth::Snap s;
  s.realtime_ns = k_t0 + i * k_minute;
  s.boottime_ns = 1000 * k_minute + i * k_minute;
  s.procs.push_back({.pid = 42,
                     .start_ticks = 7,
                     .comm = "app",
                     .cmdline = "app --serve",
                     .fd_count = 10,
                     .socket_fds = 3,
                     .nofile_soft = 1024});
  s.procs.push_back({.pid = 77,
                     .start_ticks = 8,
                     .comm = "logd",
                     .cmdline = "logd",
                     .fd_count = 8,
                     .socket_fds = 2,
                     .nofile_soft = 1024});
  s.limits["net.unix.max_dgram_qlen"] = "10";
  return s;
}

synth::Sock unix_sock(uint8_t type,
                      uint8_t state,
                      std::optional<uint32_t> rx,
                      std::optional<uint32_t> tx,
                      uint64_t inode,
                      int32_t pid,
                      std::optional<std::string> path = std::nullopt,
                      uint64_t peer = 0) {
  synth::Sock s{.family = 1,
                .type = type,
                .proto = 0,
                .state = state,
                .rx = rx,
                .tx = tx,
                .inode = inode,
                .cookie = inode + 100000};
  s.path = std::move(path);
  if (peer != 0) {
    s.peer_inode = peer;
  }
  if (inode != 0 && pid > 0) {
    s.owners = {{pid, static_cast<int32_t>(inode % 1000)}};
  } else {
    s.cookie.reset();
  }
  return s;
}

std::vector<Finding> run_unix(const std::vector<synth::Snap>& snaps) {
  test::TempDir dir;
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series s = load_series(expand_paths({dir.path().string()}));
  ReportOptions o;
  o.only = {"unix_backlog"};
  return run_detectors(s, o);
}

} // namespace

TEST_CASE("unix_backlog: a full unix listener is critical, a backlogged one a warning",
          "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = unix_minute(i);
    s.sockets.push_back(unix_sock(1, 10, 3, 2, 5000, 42, "/run/app.sock"));
    for (int k = 0; k < 3; ++k) { // embryos: inode 0, the listener's path, no owner
      s.sockets.push_back(unix_sock(1, 1, 0, 0, 0, 0, "/run/app.sock"));
    }
    s.sockets.push_back(unix_sock(1, 10, 20, 128, 5001, 77, "/run/logd.sock"));
    snaps.push_back(std::move(s));
  }
  const auto found = run_unix(snaps);
  REQUIRE(found.size() == 2);
  const Finding& full = found[0]; // most severe first
  CHECK(full.severity == Severity::critical);
  CHECK(full.subject["local"] == "/run/app.sock");
  CHECK(full.subject["proto"] == "u_str");
  CHECK(full.subject["state"] == "LISTEN");
  CHECK(full.subject["pid"] == 42);
  CHECK(full.evidence["snapshots_full"] == 6);
  REQUIRE(full.evidence["series"].size() == 6);
  CHECK(full.evidence["series"][0]["queue"] == 3);
  CHECK(full.evidence["series"][0]["max_backlog"] == 2);
  CHECK(full.evidence["series"][0]["embryos"] == 3);
  const Finding& backlogged = found[1];
  CHECK(backlogged.severity == Severity::warning);
  CHECK(backlogged.subject["local"] == "/run/logd.sock");
  CHECK(backlogged.subject["pid"] == 77);
}

TEST_CASE("unix_backlog: an unread unix stream connection stalls, then turns critical",
          "[det][unix_backlog]") {
  const auto series = [](int n) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < n; ++i) {
      synth::Snap s = unix_minute(i);
      // app (42) never reads what logd (77) wrote into the connection.
      s.sockets.push_back(unix_sock(1, 1, 1000, 0, 6000, 42, "/run/app.sock", 6001));
      s.sockets.push_back(unix_sock(1, 1, 0, 1000, 6001, 77, std::nullopt, 6000));
      snaps.push_back(std::move(s));
    }
    return snaps;
  };
  auto found = run_unix(series(5));
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::warning); // 4 minutes
  CHECK(found[0].subject["pid"] == 42);
  CHECK(found[0].subject["remote"] == "6001");
  CHECK(found[0].subject["peer_pid"] == 77);
  CHECK(found[0].evidence["shape"] == "stream_stalled");
  CHECK(found[0].evidence["series"].size() == 5);
  CHECK(found[0].summary.find("pid 42 (app) is not reading") != std::string::npos);
  found = run_unix(series(10));
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::critical); // 9 minutes >= 300 s
}

TEST_CASE("unix_backlog: a growing unix stream Recv-Q is a warning", "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = unix_minute(i);
    s.sockets.push_back(
        unix_sock(1, 1, static_cast<uint32_t>(40000 * i), 0, 6000, 42, std::nullopt, 6001));
    snaps.push_back(std::move(s));
  }
  const auto found = run_unix(snaps);
  REQUIRE(found.size() == 1);
  CHECK(found[0].evidence["shape"] == "stream_growing");
  CHECK(found[0].evidence["slope_bytes_per_s"].get<double>() == Approx(40000.0 / 60));
}

TEST_CASE("unix_backlog: a datagram sender stuck behind a receiver names both",
          "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 5; ++i) { // 4 minutes: a warning (critical_seconds is 300)
    synth::Snap s = unix_minute(i);
    // Receiver /dev/log (logd, 77) shows only the first datagram; the sender (app, 42) holds 11.
    s.sockets.push_back(unix_sock(2, 7, 200, 0, 8000, 77, "/dev/log"));
    s.sockets.push_back(unix_sock(2, 1, 0, 14080, 8001, 42, std::nullopt, 8000));
    snaps.push_back(std::move(s));
  }
  const auto found = run_unix(snaps);
  REQUIRE(found.size() == 1);
  const Finding& f = found[0];
  CHECK(f.severity == Severity::warning);
  CHECK(f.subject["proto"] == "u_dgr");
  CHECK(f.subject["pid"] == 42);
  CHECK(f.subject["remote"] == "8000");
  CHECK(f.subject["peer_path"] == "/dev/log");
  CHECK(f.subject["peer_pid"] == 77);
  CHECK(f.pid == 77); // escalation follows the receiver that does not read
  CHECK(f.evidence["max_dgram_qlen"] == 10);
  REQUIRE(f.evidence["series"].size() == 5);
  CHECK(f.evidence["series"][0]["tx_queue"] == 14080);
  CHECK(f.evidence["series"][0]["receiver_rx_queue"] == 200);
  CHECK(f.summary.find("/dev/log") != std::string::npos);
}

TEST_CASE("unix_backlog: healthy unix traffic and near misses stay quiet", "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 10; ++i) {
    synth::Snap s = unix_minute(i);
    // A listener with a pending connection now and then.
    s.sockets.push_back(unix_sock(1, 10, i % 3 == 0 ? 1 : 0, 128, 5000, 42, "/run/app.sock"));
    // A busy connection whose Recv-Q changes every snapshot.
    s.sockets.push_back(
        unix_sock(1, 1, static_cast<uint32_t>((i * 7919) % 3000), 0, 6000, 42, std::nullopt, 6001));
    // A stream Recv-Q stuck for one minute only (stream_seconds is 120), then drained.
    s.sockets.push_back(unix_sock(1, 1, i < 2 ? 500 : 0, 0, 6002, 42, std::nullopt, 6003));
    // A datagram sender with a non-empty Send-Q for one minute (dgram_seconds is 120).
    s.sockets.push_back(unix_sock(2, 7, 0, 0, 8000, 77, "/dev/log"));
    s.sockets.push_back(
        unix_sock(2, 1, 0, i >= 3 && i < 5 ? 1280 : 0, 8001, 42, std::nullopt, 8000));
    // An embryo (accept queue) with unread bytes is the listener's business, not a stall.
    s.sockets.push_back(unix_sock(1, 1, 64, 0, 0, 0, "/run/app.sock"));
    snaps.push_back(std::move(s));
  }
  CHECK(run_unix(snaps).empty());
}

TEST_CASE("unix_backlog: a gap splits a datagram sender's streak", "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = unix_minute(i < 2 ? i : i + 60); // two before, two after an hour's gap
    s.sockets.push_back(unix_sock(2, 1, 0, 1280, 8001, 42, std::nullopt, 8000));
    snaps.push_back(std::move(s));
  }
  CHECK(run_unix(snaps).empty());
  // Without the gap the same four snapshots (3 minutes) are a backlog.
  std::vector<synth::Snap> dense;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = unix_minute(i);
    s.sockets.push_back(unix_sock(2, 1, 0, 1280, 8001, 42, std::nullopt, 8000));
    dense.push_back(std::move(s));
  }
  const auto found = run_unix(dense);
  REQUIRE(found.size() == 1);
  CHECK(!found[0].subject.contains("peer_pid")); // the receiver was not captured
  CHECK(found[0].pid == 42);
}

namespace {

synth::Snap unix_at(int i, int64_t step) {
  synth::Snap s = unix_minute(0);
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  return s;
}

} // namespace

TEST_CASE("unix_backlog: a full unix listener needs seconds, the same at 1 s and 60 s",
          "[det][unix_backlog]") {
  for (const int64_t step : {k_second, k_minute}) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = unix_at(i, step);
      s.sockets.push_back(unix_sock(1, 10, 3, 2, 5000, 42, "/run/app.sock"));
      snaps.push_back(std::move(s));
    }
    const auto found = run_unix(snaps);
    REQUIRE(found.size() == 1);
    CHECK(found[0].severity == Severity::critical);
    CHECK(found[0].summary.find("not accepted by pid 42 (app)") != std::string::npos);
  }
  // Full in one snapshot of three: a burst, quiet.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 3; ++i) {
    synth::Snap s = unix_at(i, k_second);
    s.sockets.push_back(unix_sock(1, 10, i == 1 ? 3 : 0, 2, 5000, 42, "/run/app.sock"));
    snaps.push_back(std::move(s));
  }
  CHECK(run_unix(snaps).empty());
}

TEST_CASE("unix_backlog: an unread stream for a few seconds is not a stall",
          "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) { // 5 s of one-second snapshots
    synth::Snap s = unix_at(i, k_second);
    s.sockets.push_back(unix_sock(1, 1, 1000, 0, 6000, 42, "/run/app.sock", 6001));
    snaps.push_back(std::move(s));
  }
  CHECK(run_unix(snaps).empty());
}

TEST_CASE("unix_backlog: many unread connections of one socket path are one finding",
          "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 5; ++i) {
    synth::Snap s = unix_minute(i);
    for (uint64_t k = 0; k < 10; ++k) { // app (42) accepted 10 connections and reads none
      s.sockets.push_back(
          unix_sock(1, 1, 1000 + static_cast<uint32_t>(k), 0, 6100 + k, 42, "/run/app.sock"));
    }
    snaps.push_back(std::move(s));
  }
  const auto found = run_unix(snaps);
  REQUIRE(found.size() == 1);
  CHECK(found[0].evidence["group"]["count"] == 10);
  CHECK(found[0].evidence["group"]["examples"].size() == 3);
  CHECK(found[0].summary.find("10 unread unix stream connections") != std::string::npos);
}

TEST_CASE("unix_backlog: the peer is read back where the finding shows it, gone or unowned",
          "[det][unix_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 10; ++i) {
    synth::Snap s = unix_minute(i);
    // A datagram sender (app, 42) stuck for 7 minutes behind /dev/log, whose reader (logd, 77)
    // lets go of it at minute 3 and is gone from minute 5.
    if (i < 8) {
      s.sockets.push_back(unix_sock(2, 1, 0, 14080, 8001, 42, std::nullopt, 8000));
    }
    if (i < 5) {
      synth::Sock r = unix_sock(2, 7, 100 + static_cast<uint32_t>(i), 0, 8000, 77, "/dev/log");
      if (i >= 3) {
        r.owners.clear();
      }
      s.sockets.push_back(std::move(r));
    }
    // A stream app (42) leaves unread for 7 minutes; its writer (logd, 77, no cookie: the /proc
    // fallback) hands the connection to app at minute 8, when the queue drains.
    s.sockets.push_back(unix_sock(1, 1, i < 8 ? 1000 : 0, 0, 6000, 42, std::nullopt, 6001));
    synth::Sock w = unix_sock(1, 1, 0, 0, 6001, i < 8 ? 77 : 42, std::nullopt, 6000);
    w.cookie.reset();
    s.sockets.push_back(std::move(w));
    snaps.push_back(std::move(s));
  }
  const auto found = run_detector(snaps, "unix_backlog");
  REQUIRE(found.size() == 2);
  const auto dgram = std::find_if(found.begin(), found.end(), [](const Finding& f) {
    return f.subject["kind"] == "dgram_sender";
  });
  REQUIRE(dgram != found.end());
  // Named by its last owner; its Recv-Q beside the sender's while it was there.
  CHECK(dgram->subject["peer_pid"] == 77);
  CHECK(dgram->pid == 77);
  CHECK(dgram->summary.find("receiver /dev/log (pid 77 (logd))") != std::string::npos);
  const Json& rows = dgram->evidence["series"];
  REQUIRE(rows.size() == 8);
  for (size_t i = 0; i < rows.size(); ++i) {
    CAPTURE(i);
    CHECK(rows[i]["receiver_rx_queue"] == (i < 5 ? Json(100 + i) : Json(nullptr)));
  }
  const auto stream = std::find_if(
      found.begin(), found.end(), [](const Finding& f) { return f.subject["kind"] == "stream"; });
  REQUIRE(stream != found.end());
  // The writer as it was where the stall ends (minute 7), not as it was last (app).
  CHECK(stream->subject["peer_pid"] == 77);
  CHECK(stream->summary.find("writer pid 77 (logd)") != std::string::npos);
}
