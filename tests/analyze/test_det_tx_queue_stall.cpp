// tx_queue_stall on one-minute synthetic series: zero window, dead peer, network-limited.
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

// The sender side of a connection 127.0.0.1:40000 -> 127.0.0.1:8080, owned by pid 42.
synth::Sock sender(uint32_t tx, uint8_t timer, uint32_t retrans, uint64_t acked, uint32_t snd_wnd) {
  return {.lport = 40000,
          .rport = 8080,
          .rx = 0,
          .tx = tx,
          .inode = 900,
          .cookie = 31,
          .timer = timer,
          .retrans = retrans,
          .sndbuf = 4194304,
          .wmem_queued = tx,
          .tcp_info = {{"bytes_acked", acked},
                       {"snd_wnd", snd_wnd},
                       {"backoff", timer == 4 ? 6 : 0},
                       {"last_ack_recv_ms", 100}},
          .owners = {{42, 5}}};
}

} // namespace

TEST_CASE("tx_queue_stall: a Send-Q stuck behind a zero window is a warning naming the sender",
          "[det][tx_queue_stall]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = minute(i);
    s.sockets.push_back(sender(4'160'000, 4, 0, 1'000'000, 0));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "tx_queue_stall");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].subject["local"] == "127.0.0.1:40000");
  CHECK(f[0].subject["remote"] == "127.0.0.1:8080");
  CHECK(f[0].subject["pid"] == 42);
  CHECK(f[0].pid == 42);
  CHECK(f[0].evidence["class"] == "zero_window");
  REQUIRE(f[0].evidence["series"].size() == 6);
  CHECK(f[0].evidence["series"][3]["tx_queue"] == 4'160'000);
  CHECK(f[0].evidence["series"][3]["timer"] == 4);
  CHECK(f[0].evidence["series"][3]["bytes_acked_delta"] == 0);
  CHECK(f[0].evidence["bytes_acked_delta"] == 0);
  CHECK(f[0].first_seen_ns == k_t0);
  CHECK(f[0].last_seen_ns == k_t0 + 5 * k_minute);

  // Ten minutes or more of it is critical.
  for (int i = 6; i < 12; ++i) {
    synth::Snap s = minute(i);
    s.sockets.push_back(sender(4'160'000, 4, 0, 1'000'000, 0));
    snaps.push_back(s);
  }
  const auto g = run_detector(snaps, "tx_queue_stall");
  REQUIRE(g.size() == 1);
  CHECK(g[0].severity == Severity::critical);
  CHECK(g[0].evidence["class"] == "zero_window");
}

TEST_CASE("tx_queue_stall: consecutive RTOs toward a silent peer are critical",
          "[det][tx_queue_stall]") {
  std::vector<synth::Snap> snaps;
  const uint32_t retrans[] = {0, 1, 2, 3, 4};
  for (int i = 0; i < 5; ++i) {
    synth::Snap s = minute(i);
    s.sockets.push_back(sender(5000, 1, retrans[i], 1'000'000, 65535));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "tx_queue_stall");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::critical);
  CHECK(f[0].evidence["class"] == "dead_peer");
  CHECK(f[0].evidence["max_unanswered"] == 4);
  CHECK(f[0].subject["pid"] == 42);
  // From the first unanswered RTO on: 3 minutes of silence.
  CHECK(f[0].first_seen_ns == k_t0 + k_minute);
  CHECK(f[0].evidence["silent_s"].get<double>() == Approx(180));
}

TEST_CASE("tx_queue_stall: healthy senders and near misses raise nothing",
          "[det][tx_queue_stall]") {
  SECTION("tr=1 with data in flight and acks advancing") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 8; ++i) {
      synth::Snap s = minute(i);
      s.sockets.push_back(sender(static_cast<uint32_t>(100'000 + (i % 2) * 50'000),
                                 1,
                                 static_cast<uint32_t>(i % 2),
                                 1'000'000 + uint64_t{500'000} * static_cast<uint64_t>(i),
                                 65535));
      snaps.push_back(s);
    }
    CHECK(run_detector(snaps, "tx_queue_stall").empty());
  }
  SECTION("a zero window in only two snapshots one second apart") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = minute(0);
      s.realtime_ns = k_t0 + i * k_second;
      s.boottime_ns = 1000 * k_minute + i * k_second;
      const bool zw = i == 2 || i == 3;
      s.sockets.push_back(
          sender(zw ? 400'000 : 1000,
                 zw ? 4 : 1,
                 0,
                 zw ? 2'000'000 : 1'000'000 + uint64_t{1'000'000} * static_cast<uint64_t>(i),
                 zw ? 0 : 65535));
      snaps.push_back(s);
    }
    CHECK(run_detector(snaps, "tx_queue_stall").empty());
  }
  SECTION("persist timer while the receiver still drains slowly (acked advancing)") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = minute(i);
      s.sockets.push_back(
          sender(300'000, 4, 0, 1'000'000 + uint64_t{20'000} * static_cast<uint64_t>(i), 0));
      snaps.push_back(s);
    }
    CHECK(run_detector(snaps, "tx_queue_stall").empty());
  }
  SECTION("a FIN alone (tx=1) in FIN-WAIT-1, and an inode-0 orphan, are not this detector's") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = minute(i);
      synth::Sock a = sender(1, 4, 0, 1'000'000, 0);
      a.state = 4;
      s.sockets.push_back(a);
      synth::Sock b = sender(3'000'000, 4, 0, 1'000'000, 0);
      b.state = 4;
      b.inode = 0;
      b.owners = {};
      b.cookie = 32;
      s.sockets.push_back(b);
      snaps.push_back(s);
    }
    CHECK(run_detector(snaps, "tx_queue_stall").empty());
  }
}

TEST_CASE("tx_queue_stall: a gap splits a zero-window run", "[det][tx_queue_stall]") {
  // Needs 90 s below the Send-Q limit: two snapshots (60 s) on each side of a hole are not.
  const std::vector<std::string> set{"tx_queue_stall.zero_window_seconds=90"};
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    // Two snapshots, a two-hour hole, two snapshots.
    synth::Snap s = minute(i, i >= 2 ? 120 : 0);
    s.sockets.push_back(sender(300'000, 4, 0, 1'000'000, 0));
    snaps.push_back(s);
  }
  // More regular snapshots so the median interval stays one minute.
  for (int i = 4; i < 8; ++i) {
    synth::Snap s = minute(i, 120);
    s.sockets.push_back(
        sender(1000, 1, 0, 2'000'000 + uint64_t{100'000} * static_cast<uint64_t>(i), 65535));
    snaps.push_back(s);
  }
  CHECK(run_detector(snaps, "tx_queue_stall", set).empty());
  // Without the hole the same four samples are a stall.
  for (int i = 0; i < 4; ++i) {
    snaps[static_cast<size_t>(i)].realtime_ns = k_t0 + i * k_minute;
    snaps[static_cast<size_t>(i)].boottime_ns = 1000 * k_minute + i * k_minute;
  }
  for (int i = 4; i < 8; ++i) {
    snaps[static_cast<size_t>(i)].realtime_ns = k_t0 + i * k_minute;
    snaps[static_cast<size_t>(i)].boottime_ns = 1000 * k_minute + i * k_minute;
  }
  const auto f = run_detector(snaps, "tx_queue_stall", set);
  REQUIRE(f.size() == 1);
  CHECK(f[0].evidence["class"] == "zero_window");
}

TEST_CASE("tx_queue_stall: a Send-Q growing while acks advance is network-limited info",
          "[det][tx_queue_stall]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = minute(i);
    s.sockets.push_back(sender(static_cast<uint32_t>(100'000 + 200'000 * i),
                               1,
                               0,
                               1'000'000 + uint64_t{5'000'000} * static_cast<uint64_t>(i),
                               65535));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "tx_queue_stall");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::info);
  CHECK(f[0].evidence["class"] == "network_limited");
  CHECK(f[0].evidence["slope_bytes_per_s"].get<double>() == Approx(200'000.0 / 60).epsilon(0.05));
}

// ---- issue 12: durations in seconds, severity by harm, one finding per destination

namespace {

// Snapshot i, `step` apart (pid 42 sends, pid 43 receives).
synth::Snap at(int i, int64_t step) {
  synth::Snap s = minute(0);
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  s.procs.push_back({.pid = 43, .start_ticks = 9, .comm = "reader", .socket_fds = 1});
  return s;
}

} // namespace

TEST_CASE("tx_queue_stall: a zero window is judged in seconds, the same at 1 s and 60 s intervals",
          "[det][tx_queue_stall][issue12]") {
  // A live peer that does not read: persist timer, probes answered (0), backoff rising, the
  // Send-Q well below its limit (the writer is not blocked).
  const auto series = [](int n, int64_t step) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < n; ++i) {
      synth::Snap s = at(i, step);
      synth::Sock x = sender(300'000, 4, 0, 1'000'000, 0);
      x.tcp_info["backoff"] = static_cast<uint64_t>(std::min(i, 6));
      s.sockets.push_back(x);
      snaps.push_back(s);
    }
    return snaps;
  };
  // Four snapshots: 3 s at one-second snapshots is no finding; 3 min at cron snapshots is.
  CHECK(at_least(run_detector(series(4, k_second), "tx_queue_stall"), Severity::warning) == 0);
  CHECK(at_least(run_detector(series(4, k_minute), "tx_queue_stall"), Severity::warning) == 1);
  // The same 120 s at either interval: the same verdict, a warning and not critical.
  for (const int64_t step : {k_second, 30 * k_second}) {
    const auto f =
        run_detector(series(static_cast<int>(120 * k_second / step) + 1, step), "tx_queue_stall");
    REQUIRE(f.size() == 1);
    CHECK(f[0].severity == Severity::warning);
    CHECK(f[0].evidence["class"] == "zero_window");
    CHECK(f[0].evidence["duration_s"].get<double>() == Approx(120));
  }
}

TEST_CASE("tx_queue_stall: a Send-Q at its limit behind a zero window for 30 s is a warning, a "
          "live peer is never critical within seconds, and 5 s is flow control",
          "[det][tx_queue_stall][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 31; ++i) {
    synth::Snap s = at(i, k_second);
    synth::Sock x = sender(4'160'000, 4, 0, 1'000'000, 0);
    x.tcp_info["backoff"] = static_cast<uint64_t>(i + 1); // moves in normal flow control
    x.tcp_info["probes"] = 0;                             // answered
    s.sockets.push_back(x);
    // The receiver, local: its Recv-Q full, owned by pid 43.
    s.sockets.push_back({.lport = 8080,
                         .rport = 40000,
                         .rx = 6'000'000,
                         .tx = 0,
                         .inode = 901,
                         .cookie = 32,
                         .owners = {{43, 4}}});
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "tx_queue_stall");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].evidence["at_limit"] == true);
  CHECK(f[0].evidence["peer_answers"] == true);
  const std::string s = f[0].summary;
  INFO(s);
  CHECK(s.find("dead") == std::string::npos);
  CHECK(s.find("nothing acknowledged") != std::string::npos);
  CHECK(s.find("pid 42 (app)") != std::string::npos);    // the sender
  CHECK(s.find("pid 43 (reader)") != std::string::npos); // the receiver that does not read
  // The first 5 s: a rate-limited reader pauses that long; no finding yet.
  const std::vector<synth::Snap> brief(snaps.begin(), snaps.begin() + 6);
  CHECK(run_detector(brief, "tx_queue_stall").empty());
}

TEST_CASE("tx_queue_stall: one burst of RTOs that recovers is not a dead peer",
          "[det][tx_queue_stall][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = at(i, k_second);
    const bool rto = i == 2;
    s.sockets.push_back(sender(rto ? 50'000 : 1000,
                               1,
                               rto ? 3 : 0,
                               1'000'000 + uint64_t{1'000'000} * static_cast<uint64_t>(i),
                               65535));
    snaps.push_back(s);
  }
  CHECK(at_least(run_detector(snaps, "tx_queue_stall"), Severity::warning) == 0);
}

TEST_CASE("tx_queue_stall: a silent peer (RTOs rising, nothing acked) at one-second snapshots",
          "[det][tx_queue_stall][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = at(i, k_second);
    synth::Sock x = sender(5000, 1, static_cast<uint32_t>(i + 1), 1'000'000, 65535);
    x.tcp_info["last_ack_recv_ms"] = static_cast<uint64_t>(2000 + 1000 * i);
    s.sockets.push_back(x);
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "tx_queue_stall");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::critical);
  CHECK(f[0].evidence["class"] == "dead_peer");
  CHECK(f[0].evidence["silent_s"].get<double>() == Approx(7));
  CHECK(f[0].summary.find("6 consecutive RTOs") != std::string::npos);
}

TEST_CASE("tx_queue_stall: many senders stalled toward one destination are one finding",
          "[det][tx_queue_stall][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = at(i, k_minute);
    for (uint16_t k = 0; k < 20; ++k) {
      synth::Sock x = sender(300'000 + k, 4, 0, 1'000'000, 0);
      x.lport = static_cast<uint16_t>(40000 + k);
      x.cookie = 100 + k;
      x.inode = 1000 + k;
      s.sockets.push_back(x);
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "tx_queue_stall");
  REQUIRE(f.size() == 1);
  CHECK(f[0].evidence["group"]["by"] == "destination");
  CHECK(f[0].evidence["group"]["count"] == 20);
  CHECK(f[0].evidence["group"]["examples"].size() == 3);
  CHECK(f[0].summary.find("127.0.0.1:8080") != std::string::npos);
}

TEST_CASE("tx_queue_stall: RTOs climbing to 4 in 3 s (tcp_retries2 4, research E9) are critical",
          "[det][tx_queue_stall][issue12]") {
  std::vector<synth::Snap> snaps;
  const uint32_t retrans[] = {0, 2, 3, 4};
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = at(i, k_second);
    synth::Sock x = sender(5000, 1, retrans[i], 1'000'000, 65535);
    x.tcp_info["last_ack_recv_ms"] = static_cast<uint64_t>(500 + 1000 * i);
    s.sockets.push_back(x);
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "tx_queue_stall");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::critical);
  CHECK(f[0].evidence["max_unanswered"] == 4);
}
