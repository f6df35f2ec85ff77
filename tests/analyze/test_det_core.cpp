// rx_queue_growth and accept_queue_backlog on one-minute synthetic series.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sstream>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

synth::Snap minute(int i) {
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
  return s;
}

synth::Sock conn(uint32_t rx, uint32_t rmem, uint64_t received) {
  return {.lport = 8080,
          .rport = 40000,
          .rx = rx,
          .tx = 0,
          .inode = 900,
          .cookie = 31,
          .rmem_alloc = rmem,
          .rcvbuf = 1048576,
          .drops = 0,
          .tcp_info = {{"bytes_received", received}},
          .owners = {{42, 5}}};
}

} // namespace

TEST_CASE("rx_queue_growth: a Recv-Q rising every minute names the owner",
          "[det][rx_queue_growth]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = minute(i);
    const auto rx = static_cast<uint32_t>(20000 * i);
    s.sockets.push_back(conn(rx, rx + 1000, 1'000'000 + rx));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "rx_queue_growth");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].subject["local"] == "127.0.0.1:8080");
  CHECK(f[0].subject["pid"] == 42);
  CHECK(f[0].subject["comm"] == "app");
  CHECK(f[0].evidence["shape"] == "growing");
  CHECK(f[0].evidence["slope_bytes_per_s"].get<double>() == Approx(20000.0 / 60).epsilon(0.05));
  CHECK(f[0].evidence["series"].size() == 12);
  CHECK(f[0].first_seen_ns == k_t0);
}

TEST_CASE("rx_queue_growth: a full buffer with nothing received is a stall",
          "[det][rx_queue_growth]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = minute(i);
    s.sockets.push_back(conn(1'000'000, 1'040'000, 5'000'000));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "rx_queue_growth");
  REQUIRE(f.size() == 1);
  CHECK(f[0].evidence["shape"] == "stalled_full");
  CHECK(f[0].severity == Severity::critical); // 7 minutes >= critical_seconds (300)
  // With a longer bar for critical it is a warning.
  const auto g = run_detector(snaps, "rx_queue_growth", {"rx_queue_growth.critical_seconds=3600"});
  REQUIRE(g.size() == 1);
  CHECK(g[0].severity == Severity::warning);
}

TEST_CASE("rx_queue_growth: a batch reader's sawtooth and an inode-0 child stay quiet",
          "[det][rx_queue_growth]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = minute(i);
    const auto rx = static_cast<uint32_t>((i % 3) * 200000);
    s.sockets.push_back(conn(rx, rx, 1'000'000 + static_cast<uint64_t>(i) * 300000));
    synth::Sock child = conn(static_cast<uint32_t>(20000 * i), 0, 0);
    child.inode = 0;
    child.cookie = 32;
    child.rport = 40001;
    child.owners.clear();
    s.sockets.push_back(child);
    snaps.push_back(s);
  }
  CHECK(run_detector(snaps, "rx_queue_growth").empty());
}

namespace {

// Snapshot i of a series `step` apart with the app process (pid 42).
synth::Snap every(int i, int64_t step) {
  synth::Snap s = minute(0);
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  return s;
}

} // namespace

TEST_CASE("rx_queue_growth: a stopped reader is not critical for zero-window probes",
          "[det][rx_queue_growth]") {
  // The kernel discards zero-window probes and counts them in the socket's drops: no data is
  // lost (TCPRcvQDrop and TCPZeroWindowDrop stay 0). 40 s at the limit is a warning.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 41; ++i) {
    synth::Snap s = every(i, k_second);
    synth::Sock c = conn(1'000'000, 1'040'000, 5'000'000);
    c.drops = static_cast<uint32_t>(3 * i);
    s.sockets.push_back(c);
    s.counters["TcpExt.TCPRcvQDrop"] = 0;
    s.counters["TcpExt.TCPZeroWindowDrop"] = 0;
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "rx_queue_growth");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].evidence["shape"] == "stalled_full");
  CHECK(f[0].summary.find("the application read nothing") != std::string::npos);
  CHECK(f[0].evidence["socket_drops_increased"] == true);
  // 10 s of it is still info: a rate-limited reader (curl --limit-rate) pauses that long.
  const std::vector<synth::Snap> first_ten(snaps.begin(), snaps.begin() + 11);
  const auto brief = run_detector(first_ten, "rx_queue_growth");
  REQUIRE(brief.size() == 1);
  CHECK(brief[0].severity == Severity::info);
  // Segments the netns really dropped for want of room make it critical.
  for (size_t i = 0; i < snaps.size(); ++i) {
    snaps[i].counters["TcpExt.TCPRcvQDrop"] = static_cast<int64_t>(2 * i);
  }
  const auto lost = run_detector(snaps, "rx_queue_growth");
  REQUIRE(lost.size() == 1);
  CHECK(lost[0].severity == Severity::critical);
  CHECK(lost[0].evidence["netns_receive_drops"] == 80);
}

TEST_CASE("rx_queue_growth: a full buffer that keeps receiving is flow control, said truly",
          "[det][rx_queue_growth]") {
  // A rate-limited reader: the buffer stays full while 1 MB a second flows through it.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 11; ++i) {
    synth::Snap s = every(i, k_second);
    s.sockets.push_back(conn(1'000'000,
                             1'040'000,
                             uint64_t{5'000'000} + uint64_t{1'000'000} * static_cast<uint64_t>(i)));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "rx_queue_growth");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::info);
  CHECK(f[0].summary.find("read nothing") == std::string::npos);
  CHECK(f[0].summary.find("the application read 9.5 MiB meanwhile") != std::string::npos);
  CHECK(f[0].summary.find("reads slower than it receives") != std::string::npos);
}

TEST_CASE("rx_queue_growth: a reader falling behind slowly is found in a short series",
          "[det][rx_queue_growth]") {
  // Recv-Q rises by 1 KiB in every one of 6 one-second snapshots: 5 KiB in all, far below the
  // 64 KiB a long series needs.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = every(i, k_second);
    const auto rx = static_cast<uint32_t>(1024 * (i + 1));
    s.sockets.push_back(
        conn(rx, rx + 512, uint64_t{1'000'000} + uint64_t{4096} * static_cast<uint64_t>(i)));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "rx_queue_growth");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].evidence["shape"] == "growing");
  CHECK(f[0].summary.find("up in every one of 6 snapshots") != std::string::npos);
  // A flat queue with one step up is not growth.
  for (int i = 1; i < 6; ++i) {
    snaps[static_cast<size_t>(i)].sockets[0].rx = i < 3 ? 1024U : 2048U;
  }
  CHECK(run_detector(snaps, "rx_queue_growth").empty());
}

TEST_CASE("rx_queue_growth: a stall means the same at 1 s and 60 s intervals",
          "[det][rx_queue_growth]") {
  // Five snapshots of the same 64 unread bytes: 4 s at one-second snapshots is nothing yet,
  // 4 minutes at one-minute snapshots is a stall (stall_seconds = 30).
  const auto series = [](int64_t step) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 5; ++i) {
      synth::Snap s = every(i, step);
      s.sockets.push_back(conn(64, 1280, 77'000));
      snaps.push_back(s);
    }
    return snaps;
  };
  CHECK(run_detector(series(k_second), "rx_queue_growth").empty());
  const auto f = run_detector(series(k_minute), "rx_queue_growth");
  REQUIRE(f.size() == 1);
  CHECK(f[0].evidence["shape"] == "stalled_partial");
  CHECK(f[0].summary.find("for 240 s") != std::string::npos);
  // 40 one-second snapshots last 39 s: a stall too.
  std::vector<synth::Snap> long_series;
  for (int i = 0; i < 40; ++i) {
    synth::Snap s = every(i, k_second);
    s.sockets.push_back(conn(64, 1280, 77'000));
    long_series.push_back(s);
  }
  CHECK(run_detector(long_series, "rx_queue_growth").size() == 1);
}

TEST_CASE("rx_queue_growth: one cause, one finding, however many sockets",
          "[det][rx_queue_growth]") {
  // 600 idle connections with 64 unread bytes each, in 3 processes: 3 findings.
  constexpr int k_procs = 3;
  constexpr int k_per_proc = 200;
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = every(i, k_minute);
    s.procs.clear();
    for (int p = 0; p < k_procs; ++p) {
      s.procs.push_back({.pid = 300 + p,
                         .start_ticks = 9,
                         .comm = "pool" + std::to_string(p),
                         .fd_count = 300,
                         .socket_fds = k_per_proc,
                         .nofile_soft = 1024});
      for (int k = 0; k < k_per_proc; ++k) {
        synth::Sock c = conn(64, 1280, 77'000);
        c.rport = static_cast<uint16_t>(20000 + p * k_per_proc + k);
        c.inode = static_cast<uint64_t>(10000 + p * k_per_proc + k);
        c.cookie = c.inode;
        c.owners = {{300 + p, 10 + k}};
        s.sockets.push_back(c);
      }
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "rx_queue_growth");
  REQUIRE(f.size() == k_procs);
  for (const auto& x : f) {
    CHECK(x.evidence["group"]["by"] == "process");
    CHECK(x.evidence["group"]["count"] == k_per_proc);
    CHECK(x.evidence["group"]["examples"].size() == 3);
    CHECK(x.summary.starts_with("200 sockets with unread data in pid 30"));
  }
  // --fail-on and the exit code judge the grouped findings; the JSON has one per cause.
  TempDir dir;
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series s = load_series(expand_paths({dir.path().string()}));
  ReportOptions o;
  o.only = {"rx_queue_growth"};
  o.format = Format::json;
  o.fail_on = "warning";
  std::ostringstream json;
  CHECK(render_report(s, run_detectors(s, o), o, json) == 1);
  const auto doc = nlohmann::json::parse(json.str());
  CHECK(doc["findings"].size() == k_procs);
  o.fail_on = "critical";
  std::ostringstream quiet;
  CHECK(render_report(s, run_detectors(s, o), o, quiet) == 0);
}

TEST_CASE("accept_queue_backlog: backlogged is a warning, full is critical",
          "[det][accept_queue_backlog]") {
  const auto series = [](uint32_t queue) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 10; ++i) {
      synth::Snap s = minute(i);
      s.sockets.push_back({.state = 10,
                           .local = "0.0.0.0",
                           .lport = 443,
                           .remote = "0.0.0.0",
                           .rx = i == 4 ? 0 : queue,
                           .tx = 128,
                           .inode = 800,
                           .cookie = 1,
                           .owners = {{42, 3}}});
      s.counters["TcpExt.ListenOverflows"] = queue >= 128 ? 10 * i : 0;
      s.limits["net.core.somaxconn"] = "4096";
      snaps.push_back(s);
    }
    return snaps;
  };
  const auto warn = run_detector(series(20), "accept_queue_backlog");
  REQUIRE(warn.size() == 1);
  CHECK(warn[0].severity == Severity::warning);
  CHECK(warn[0].subject["local"] == "0.0.0.0:443");
  CHECK(warn[0].subject["pid"] == 42);
  CHECK(warn[0].evidence["snapshots_backlogged"] == 9);
  CHECK(warn[0].evidence["somaxconn"] == 4096);
  CHECK(warn[0].evidence["shape"] == "backlogged");

  const auto crit = run_detector(series(129), "accept_queue_backlog");
  REQUIRE(crit.size() == 1);
  CHECK(crit[0].severity == Severity::critical);
  CHECK(crit[0].evidence["listen_overflows"] == 90);
  CHECK(crit[0].evidence["series"][1]["listen_overflows_delta"] == 10);

  // A queue of 1 now and then is not a backlog.
  CHECK(run_detector(series(1), "accept_queue_backlog").empty());
}

namespace {

// A listener on :8080 (pid 100) with accept queue `q` of max 16 and min(q, 8) children queued;
// each child is brand-new (`fresh`) or the same one all along.
std::vector<synth::Snap>
accept_series(int n, int64_t step, uint32_t q, bool fresh, int64_t overflows_per_snap = 0) {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < n; ++i) {
    synth::Snap s = snap_at(i, step);
    s.sockets.push_back(listener(8080, q, 16));
    for (uint32_t k = 0; k < std::min<uint32_t>(q, 8); ++k) {
      const uint64_t id = fresh ? static_cast<uint64_t>(i) * 10 + k : k;
      s.sockets.push_back({.local = "127.0.0.1",
                           .lport = 8080,
                           .rport = static_cast<uint16_t>(30000 + id),
                           .rx = 100,
                           .tx = 0,
                           .inode = 0,
                           .cookie = 1000 + id,
                           .tcp_info = {{"last_ack_recv_ms", fresh ? 1 : 2}}});
    }
    s.counters["TcpExt.ListenOverflows"] = overflows_per_snap * i;
    snaps.push_back(std::move(s));
  }
  return snaps;
}

} // namespace

TEST_CASE("accept_queue_backlog: a busy listener whose small queue drains stays quiet",
          "[det][accept_queue_backlog]") {
  // Three connections queued in every one-second snapshot, but never the same ones.
  CHECK(run_detector(accept_series(6, k_second, 3, true), "accept_queue_backlog").empty());
  // The same three, queued 5 s: the queue does not drain.
  const auto f = run_detector(accept_series(6, k_second, 3, false), "accept_queue_backlog");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].evidence["shape"] == "backlogged");
  CHECK(f[0].evidence["oldest_child_queued_s"].get<double>() == Approx(5));
  CHECK(f[0].summary.find("not accepted by pid 100 (server)") != std::string::npos);
}

TEST_CASE("accept_queue_backlog: full is critical when connections are lost, at any interval",
          "[det][accept_queue_backlog]") {
  for (const int64_t step : {k_second, k_minute}) {
    // At its max backlog for 5 snapshots with ListenOverflows rising: critical.
    auto f = run_detector(accept_series(6, step, 16, false, 3), "accept_queue_backlog");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::critical);
    CHECK(f[0].evidence["shape"] == "full");
    CHECK(f[0].evidence["listen_overflows"] == 15);
    CHECK(f[0].subject["owners"][0]["pid"] == 100);
    // Full but nobody knocking (no overflow counted): a warning until critical_seconds.
    f = run_detector(accept_series(6, step, 16, false, 0), "accept_queue_backlog");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == (step == k_second ? Severity::warning : Severity::critical));
  }
  // Full in one snapshot only: a burst, quiet.
  auto snaps = accept_series(4, k_second, 0, false);
  snaps[2].sockets[0].rx = 16;
  CHECK(run_detector(snaps, "accept_queue_backlog").empty());
}

TEST_CASE("accept_queue_backlog: SO_REUSEPORT sockets of one address are one finding",
          "[det][accept_queue_backlog]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = snap_at(i, k_second);
    for (uint64_t k = 0; k < 4; ++k) {
      s.sockets.push_back(listener(8080, 128, 128, 1 + k));
    }
    s.counters["TcpExt.ListenOverflows"] = 10 * i;
    snaps.push_back(std::move(s));
  }
  const auto f = run_detector(snaps, "accept_queue_backlog");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::critical);
  CHECK(f[0].evidence["group"]["by"] == "listener");
  CHECK(f[0].evidence["group"]["count"] == 4);
}

TEST_CASE("report options: unknown detectors and thresholds are usage errors", "[det]") {
  const Series empty;
  ReportOptions o;
  o.only = {"no_such_detector"};
  CHECK_THROWS_AS(run_detectors(empty, o), UsageError);
  o.only.clear();
  o.set = {"rx_queue_growth.nope=1"};
  CHECK_THROWS_AS(run_detectors(empty, o), UsageError);
  o.set = {"rx_queue_growth.stall_seconds=abc"};
  CHECK_THROWS_AS(run_detectors(empty, o), UsageError);
  o.set = {"rx_queue_growth.stall_seconds=3"};
  CHECK(run_detectors(empty, o).empty());
}
