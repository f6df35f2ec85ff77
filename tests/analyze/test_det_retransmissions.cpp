// retransmissions on one-minute synthetic series: namespace ratio, per-peer, resets.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>
#include <string>
#include <utility>
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

// Cumulative counters after i minutes of `out` segments and `retrans` retransmits per minute.
void counters(synth::Snap& s, int i, int64_t out, int64_t retrans, int64_t timeouts = 0) {
  s.counters["Tcp.OutSegs"] = 1'000'000 + out * i;
  s.counters["Tcp.RetransSegs"] = 5000 + retrans * i;
  s.counters["TcpExt.TCPFastRetrans"] = 4000 + (retrans - timeouts) * i;
  s.counters["TcpExt.TCPTimeouts"] = 100 + timeouts * i;
}

// A bulk sender of pid 42 toward 10.1.2.3:443 with cumulative retrans/segs.
synth::Sock bulk(uint64_t cookie,
                 uint16_t lport,
                 uint64_t retrans,
                 uint64_t segs,
                 const std::string& remote = "10.1.2.3") {
  return {.lport = lport,
          .remote = remote,
          .rport = 443,
          .rx = 0,
          .tx = 100'000,
          .inode = 2000 + cookie,
          .cookie = cookie,
          .timer = 1,
          .retrans = 0,
          .tcp_info = {{"total_retrans", retrans}, {"segs_out", segs}},
          .owners = {{42, static_cast<int32_t>(cookie)}}};
}

} // namespace

TEST_CASE("retransmissions: a sustained retransmit ratio with attribution",
          "[det][retransmissions]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = minute(i);
    counters(s, i, 60'000, 1200, 100); // 2%, 20/s
    const auto u = static_cast<uint64_t>(i);
    s.sockets.push_back(bulk(1, 40001, 1000 * u, 50'000 * u));
    s.sockets.push_back(bulk(2, 40002, 10 * u, 5000 * u, "10.9.9.9"));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].subject["netns"] == 4026531840ULL);
  CHECK(f[0].evidence["ratio"].get<double>() == Approx(1200.0 / 61'200));
  CHECK(f[0].evidence["intervals_over_warn"] == 5);
  CHECK(f[0].evidence["seconds_over_crit"] == 0);
  CHECK(f[0].evidence["dominant"] == Json::array({"TCPFastRetrans"}));
  CHECK(f[0].summary.find("pid 42 (app)") != std::string::npos);
  CHECK(f[0].evidence["kinds"]["TCPTimeouts"] == 500);
  REQUIRE(f[0].evidence["series"].size() == 5);
  CHECK(f[0].evidence["series"][0]["retrans_segs_delta"] == 1200);
  CHECK(f[0].evidence["series"][0]["out_segs_delta"] == 60'000);
  CHECK(f[0].evidence["series"][0]["retrans_per_s"].get<double>() == Approx(20));
  REQUIRE(f[0].evidence["top_sockets"].size() == 2);
  CHECK(f[0].evidence["top_sockets"][0]["local"] == "127.0.0.1:40001");
  CHECK(f[0].evidence["top_sockets"][0]["remote"] == "10.1.2.3:443");
  CHECK(f[0].evidence["top_sockets"][0]["pid"] == 42);
  CHECK(f[0].evidence["top_sockets"][0]["retrans_delta"] == 5000);
  CHECK(f[0].evidence["top_peers"][0]["remote"] == "10.1.2.3");

  // 6% in every interval is critical.
  for (int i = 0; i < 6; ++i) {
    counters(snaps[static_cast<size_t>(i)], i, 60'000, 3600, 3000);
  }
  const auto g = run_detector(snaps, "retransmissions");
  REQUIRE(g.size() == 1);
  CHECK(g[0].severity == Severity::critical);
  CHECK(g[0].evidence["dominant"] == Json::array({"TCPTimeouts"}));
}

TEST_CASE("retransmissions: the top socket is named as it was at the storm's end",
          "[det][retransmissions]") {
  // Five bad minutes, then four without retransmits; the top socket goes on sending, its owner
  // is stopped from the minute after the storm, and its peer closes (CLOSE-WAIT) a minute
  // later.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 10; ++i) {
    synth::Snap s = minute(i);
    const int bad = std::min(i, 5);
    s.counters["Tcp.OutSegs"] = 1'000'000 + 60'000 * i;
    s.counters["Tcp.RetransSegs"] = 5000 + 1200 * bad;
    s.counters["TcpExt.TCPFastRetrans"] = 4000 + 1100 * bad;
    s.counters["TcpExt.TCPTimeouts"] = 100 + 100 * bad;
    const auto u = static_cast<uint64_t>(i);
    synth::Sock top = bulk(1, 40001, 1000 * static_cast<uint64_t>(bad), 50'000 * u);
    if (i >= 6) {
      s.procs[0].state = 'T';
    }
    if (i >= 7) {
      top.state = 8;
    }
    s.sockets.push_back(top);
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  REQUIRE(f[0].evidence["top_sockets"].size() == 1);
  CHECK(f[0].evidence["top_sockets"][0]["retrans_delta"] == 5000);
  CHECK(f[0].evidence["top_sockets"][0]["segs_out_delta"] == 250'000);
  CHECK(f[0].evidence["top_sockets"][0]["state"] == state_name(1));
  CHECK(f[0].evidence["top_sockets"][0]["owners"] == "pid 42 (app)");
  CHECK(f[0].last_seen_ns == snaps[5].realtime_ns);
}

TEST_CASE("retransmissions: a top socket missing from one snapshot counts the storm's intervals",
          "[det][retransmissions]") {
  // Five bad minutes; the top socket retransmits 100 a minute all along but is missing from
  // minute 2 (its interval 1 -> 3 is one step), so the storm (minutes 0 to 5) holds 500.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 9; ++i) {
    synth::Snap s = minute(i);
    const int bad = std::min(i, 5);
    s.counters["Tcp.OutSegs"] = 1'000'000 + 60'000 * i;
    s.counters["Tcp.RetransSegs"] = 5000 + 1200 * bad;
    s.counters["TcpExt.TCPFastRetrans"] = 4000 + 1200 * bad;
    const auto u = static_cast<uint64_t>(i);
    if (i != 2) {
      s.sockets.push_back(bulk(1, 40001, 100 * u, 50'000 * u));
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  CHECK(f[0].last_seen_ns == snaps[5].realtime_ns);
  REQUIRE(f[0].evidence["top_sockets"].size() == 1);
  CHECK(f[0].evidence["top_sockets"][0]["retrans_delta"] == 500);
  CHECK(f[0].evidence["top_sockets"][0]["segs_out_delta"] == 250'000);
}

TEST_CASE("retransmissions: a storm's top sockets hold what they sent within it, counters "
          "missing at its start",
          "[det][retransmissions][issue13]") {
  // Minutes 0-4 healthy by the counters, none captured at minutes 5-9, so the first bad interval
  // runs from minute 4 to 10; bad to minute 11, healthy after. Socket 1 retransmits 1000 a
  // minute before the storm and 100 a minute in it, and is gone after minute 6: streamed in files
  // of two minutes it closes before any counter after minute 4 is read, so what it sent in the
  // storm is kept undecided. Socket 2 retransmits 300 a minute from minute 5 on.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 14; ++i) {
    synth::Snap s = minute(i);
    if (i < 5 || i > 9) {
      const int bad = std::clamp(i - 4, 0, 7);
      s.counters["Tcp.OutSegs"] = 1'000'000 + 60'000 * i;
      s.counters["Tcp.RetransSegs"] = 5000 + 10 * i + 1200 * bad;
      s.counters["TcpExt.TCPFastRetrans"] = 4000 + 10 * i + 1200 * bad;
    }
    const auto u = static_cast<uint64_t>(i);
    if (i <= 6) {
      const uint64_t early = 1000 * std::min<uint64_t>(u, 4);
      s.sockets.push_back(
          bulk(1, 40001, early + 100 * (u > 4 ? u - 4 : 0), 50'000 * u, "10.7.7.7"));
    }
    s.sockets.push_back(bulk(2, 40002, 300 * (u > 4 ? u - 4 : 0), 50'000 * u));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions", {}, 2);
  REQUIRE(f.size() == 1);
  INFO(f[0].summary);
  CHECK(f[0].first_seen_ns == snaps[4].realtime_ns);
  CHECK(f[0].last_seen_ns == snaps[11].realtime_ns);
  const Json& top = f[0].evidence["top_sockets"];
  REQUIRE(top.size() == 2);
  CHECK(top[0]["local"] == "127.0.0.1:40002");
  CHECK(top[0]["retrans_delta"] == 2100);
  CHECK(top[0]["segs_out_delta"] == 350'000);
  CHECK(top[1]["local"] == "127.0.0.1:40001");
  CHECK(top[1]["retrans_delta"] == 200);
  CHECK(top[1]["segs_out_delta"] == 100'000);
  const Json& peers = f[0].evidence["top_peers"];
  REQUIRE(peers.size() == 2);
  CHECK(peers[1]["remote"] == "10.7.7.7");
  CHECK(peers[1]["retrans_delta"] == 200);
}

TEST_CASE("retransmissions: low rates, low ratios and short bursts are fine",
          "[det][retransmissions]") {
  SECTION("2% but only 5 retransmits per second") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = minute(i);
      counters(s, i, 15'000, 300);
      snaps.push_back(s);
    }
    CHECK(run_detector(snaps, "retransmissions").empty());
  }
  SECTION("0.5% at a high rate") {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = minute(i);
      counters(s, i, 600'000, 3000);
      snaps.push_back(s);
    }
    CHECK(run_detector(snaps, "retransmissions").empty());
  }
  SECTION("a burst in two one-second intervals only") {
    std::vector<synth::Snap> snaps;
    int64_t out = 1'000'000;
    int64_t re = 5000;
    for (int i = 0; i < 8; ++i) {
      synth::Snap s = minute(0);
      s.realtime_ns = k_t0 + i * k_second;
      s.boottime_ns = 1000 * k_minute + i * k_second;
      out += 1000;
      re += (i == 3 || i == 4) ? 100 : 0;
      s.counters["Tcp.OutSegs"] = out;
      s.counters["Tcp.RetransSegs"] = re;
      snaps.push_back(s);
    }
    CHECK(run_detector(snaps, "retransmissions").empty());
  }
}

TEST_CASE("retransmissions: a counter reset is dropped, not a spike", "[det][retransmissions]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = minute(i);
    // Healthy (0.1%), but the namespace is re-created after snapshot 3: counters restart low,
    // OutSegs restarts lower than RetransSegs was.
    const int base = i < 4 ? i : i - 4;
    s.counters["Tcp.OutSegs"] = (i < 4 ? 10'000'000 : 1000) + 60'000 * base;
    s.counters["Tcp.RetransSegs"] = (i < 4 ? 9'000'000 : 0) + 60 * base;
    snaps.push_back(s);
  }
  CHECK(run_detector(snaps, "retransmissions").empty());
}

TEST_CASE("retransmissions: one lossy peer diluted by healthy traffic", "[det][retransmissions]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = minute(i);
    counters(s, i, 6'000'000, 1500); // 0.025% host-wide
    const auto u = static_cast<uint64_t>(i);
    s.sockets.push_back(bulk(1, 40001, 300 * u, 6000 * u, "192.0.2.7")); // 5%
    s.sockets.push_back(bulk(2, 40002, 0, 1'000'000 * u, "10.9.9.9"));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  CHECK(f[0].severity == Severity::warning);
  CHECK(f[0].subject["remote"] == "192.0.2.7");
  CHECK(f[0].subject["pid"] == 42);
  CHECK(f[0].evidence["ratio"].get<double>() == Approx(0.05));
  CHECK(f[0].evidence["segs_out"] == 30'000);
  CHECK(f[0].evidence["intervals_over"] == 5);
}

TEST_CASE("retransmissions: a peer's intervals are summed over its sockets, gaps and all",
          "[det][retransmissions]") {
  // Two sockets toward one lossy peer: the second starts later and misses minute 4 (its
  // interval 3 -> 5 is two minutes long); a third, healthy, goes elsewhere.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = minute(i);
    counters(s, i, 6'000'000, 1500);
    const auto u = static_cast<uint64_t>(i);
    s.sockets.push_back(bulk(1, 40001, 100 * u, 2000 * u, "192.0.2.7"));
    if (i >= 2 && i != 4) {
      s.sockets.push_back(bulk(3, 40003, 50 * u, 1000 * u, "192.0.2.7"));
    }
    s.sockets.push_back(bulk(2, 40002, 0, 1'000'000 * u, "10.9.9.9"));
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  INFO(f[0].summary);
  CHECK(f[0].subject["remote"] == "192.0.2.7");
  CHECK(f[0].summary.find("over 2 socket(s)") != std::string::npos);
  CHECK(f[0].evidence["retrans"] == 950);
  CHECK(f[0].evidence["segs_out"] == 19'000);
  CHECK(f[0].evidence["intervals_over"] == 7);
  // Each interval a minute long (at minute 5, the later start of the two: minute 4).
  CHECK(f[0].evidence["seconds_over"].get<double>() == Approx(420));
  const Json& rows = f[0].evidence["series"];
  REQUIRE(rows.size() == 7);
  const std::vector<std::pair<int, int>> want = {
      {100, 2000}, {100, 2000}, {150, 3000}, {100, 2000}, {200, 4000}, {150, 3000}, {150, 3000}};
  for (size_t k = 0; k < want.size(); ++k) {
    INFO("row " << k);
    CHECK(rows[k]["retrans_delta"] == want[k].first);
    CHECK(rows[k]["segs_out_delta"] == want[k].second);
  }
  REQUIRE(f[0].evidence["top_sockets"].size() == 2);
  CHECK(f[0].evidence["top_sockets"][0]["local"] == "127.0.0.1:40001");
  CHECK(f[0].evidence["top_sockets"][0]["retrans_delta"] == 700);
  CHECK(f[0].evidence["top_sockets"][1]["retrans_delta"] == 250);
  CHECK(f[0].evidence["top_sockets"][1]["segs_out_delta"] == 5000);
}

TEST_CASE("retransmissions: a pool of sockets toward one peer is summed per interval, however "
          "many",
          "[det][retransmissions]") {
  // 80 sockets toward one lossy peer over 40 minutes, each retransmitting 10 of 200 segments a
  // minute; socket k misses minute 5 + k % 30 (its interval over it is two minutes long). The
  // peer's per-interval list outgrows its first size several times over.
  constexpr int n_socks = 80;
  constexpr int n_min = 40;
  const auto absent = [](int k, int i) { return i == 5 + k % 30; };
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < n_min; ++i) {
    synth::Snap s = minute(i);
    counters(s, i, 60'000'000, 1500);
    const auto u = static_cast<uint64_t>(i);
    for (int k = 0; k < n_socks; ++k) {
      if (!absent(k, i)) {
        s.sockets.push_back(bulk(static_cast<uint64_t>(10 + k),
                                 static_cast<uint16_t>(41000 + k),
                                 10 * u,
                                 200 * u,
                                 "192.0.2.9"));
      }
    }
    s.sockets.push_back(bulk(2, 40002, 0, 100'000'000 * u, "10.9.9.9"));
    snaps.push_back(s);
  }
  // What each snapshot's interval sums: every socket present there and at an earlier minute
  // adds 10 retransmits per minute since it was last seen.
  std::vector<int64_t> want(n_min, 0);
  for (int k = 0; k < n_socks; ++k) {
    int prev = -1;
    for (int i = 0; i < n_min; ++i) {
      if (absent(k, i)) {
        continue;
      }
      if (prev >= 0) {
        want[static_cast<size_t>(i)] += 10 * (i - prev);
      }
      prev = i;
    }
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  INFO(f[0].summary);
  CHECK(f[0].subject["remote"] == "192.0.2.9");
  const int64_t total = std::accumulate(want.begin(), want.end(), int64_t{0});
  CHECK(f[0].evidence["retrans"] == total);
  CHECK(f[0].evidence["segs_out"] == 20 * total);
  const Json& rows = f[0].evidence["series"];
  REQUIRE(rows.size() == static_cast<size_t>(n_min - 1));
  for (size_t k = 0; k < rows.size(); ++k) {
    INFO("row " << k);
    CHECK(rows[k]["retrans_delta"] == want[k + 1]);
    CHECK(rows[k]["segs_out_delta"] == 20 * want[k + 1]);
  }
}

// ---- issue 12: no ratio over 100 %, SYN retries named and tied to the listener, no silent ties

namespace {

synth::Snap at(int i, int64_t step) {
  synth::Snap s = minute(0);
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  s.procs.push_back({.pid = 100, .start_ticks = 3, .comm = "server", .socket_fds = 1});
  s.procs.push_back({.pid = 200, .start_ticks = 4, .comm = "client", .socket_fds = 3});
  return s;
}

// Snapshot i of a SYN-retry storm toward port 7102: three connects of pid 200 in SYN-SENT, and
// the listener (owned by `owner`, 0: not listening any more).
synth::Snap syn_storm(int i, int32_t owner) {
  synth::Snap s = at(i, k_second);
  s.procs.push_back({.pid = 300, .start_ticks = 5, .comm = "server2", .socket_fds = 1});
  s.counters["Tcp.OutSegs"] = 1000 + 1 * i;
  s.counters["Tcp.RetransSegs"] = 50 + 172 * i;
  s.counters["TcpExt.TCPTimeouts"] = 40 + 172 * i;
  s.counters["TcpExt.TCPSynRetrans"] = 30 + 172 * i;
  s.counters["TcpExt.TCPFastRetrans"] = 0;
  s.counters["TcpExt.ListenOverflows"] = 10 + 150 * i;
  s.counters["TcpExt.ListenDrops"] = 10 + 150 * i;
  if (owner != 0) {
    synth::Sock l = listener(7102, 5, 4);
    l.owners = {{owner, 3}};
    s.sockets.push_back(l);
  }
  const auto u = static_cast<uint64_t>(i);
  for (uint64_t k = 0; k < 3; ++k) {
    s.sockets.push_back({.state = 2,
                         .lport = static_cast<uint16_t>(51000 + k),
                         .rport = 7102,
                         .tx = 1,
                         .inode = 3000 + k,
                         .cookie = 60 + k,
                         .timer = 1,
                         .retrans = static_cast<uint32_t>(i),
                         .tcp_info = {{"total_retrans", u}, {"segs_out", u + 1}},
                         .owners = {{200, static_cast<int32_t>(5 + k)}}});
  }
  return s;
}

} // namespace

TEST_CASE("retransmissions: SYN retries toward an overflowing listener name the listener",
          "[det][retransmissions][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    // Almost nothing else is sent; every retransmit is a SYN retry (counted in TCPTimeouts too).
    snaps.push_back(syn_storm(i, 100));
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  INFO(f[0].summary);
  CHECK(f[0].evidence["ratio"].get<double>() <= 1.0);
  CHECK(f[0].evidence["ratio"].get<double>() == Approx(172.0 / 173));
  CHECK(f[0].evidence["dominant"] == Json::array({"TCPSynRetrans"}));
  CHECK(f[0].summary.find("SYN") != std::string::npos);
  CHECK(f[0].summary.find("RTO") == std::string::npos);
  CHECK(f[0].summary.find("%") != std::string::npos);
  CHECK(f[0].summary.find("17200") == std::string::npos);
  // Tied to the listener and its owner, and the connecting process named.
  CHECK(f[0].subject["local"] == "0.0.0.0:7102");
  CHECK(f[0].subject["pid"] == 100);
  CHECK(f[0].summary.find("pid 100 (server)") != std::string::npos);
  CHECK(f[0].summary.find("pid 200 (client)") != std::string::npos);
  CHECK(f[0].summary.find("ListenOverflows") != std::string::npos);
  CHECK(f[0].evidence["group"]["by"] == "listener");
}

TEST_CASE("retransmissions: a tie between kinds names both", "[det][retransmissions][issue12]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = minute(i);
    counters(s, i, 60'000, 1200, 600); // half RTOs, half fast retransmits
    s.counters["TcpExt.TCPSynRetrans"] = 0;
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  INFO(f[0].summary);
  CHECK(f[0].evidence["dominant"] == Json::array({"TCPTimeouts", "TCPFastRetrans"}));
  CHECK(f[0].summary.find("mostly") == std::string::npos);
  CHECK(f[0].summary.find("RTO") != std::string::npos);
  CHECK(f[0].summary.find("fast retransmit") != std::string::npos);
}

TEST_CASE("retransmissions: the ratio counts retransmits among all segments sent",
          "[det][retransmissions][issue12]") {
  for (const int64_t step : {k_second, k_minute}) {
    std::vector<synth::Snap> snaps;
    const int64_t per_s = 100;
    const int64_t secs = step / k_second;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = at(i, step);
      // Each interval: 100/s new segments, 300/s retransmitted (old rule: 300 %).
      s.counters["Tcp.OutSegs"] = 1000 + per_s * secs * i;
      s.counters["Tcp.RetransSegs"] = 1000 + 3 * per_s * secs * i;
      s.counters["TcpExt.TCPTimeouts"] = 3 * per_s * secs * i;
      s.counters["TcpExt.TCPSynRetrans"] = 0;
      snaps.push_back(s);
    }
    const auto f = run_detector(snaps, "retransmissions");
    REQUIRE(f.size() == 1);
    CHECK(f[0].evidence["ratio"].get<double>() == Approx(0.75));
    CHECK(f[0].summary.find("75% of segments") != std::string::npos);
    CHECK(f[0].severity == (step == k_second ? Severity::warning : Severity::critical));
  }
}

TEST_CASE("retransmissions: the listener of SYN retries is named as it was when they were seen",
          "[det][retransmissions]") {
  std::vector<synth::Snap> snaps;
  SECTION("its owner changed (the same socket handed to another process)") {
    for (int i = 0; i < 6; ++i) {
      snaps.push_back(syn_storm(i, i < 3 ? 100 : 300));
    }
    const auto f = run_detector(snaps, "retransmissions");
    REQUIRE(f.size() == 1);
    INFO(f[0].summary);
    CHECK(f[0].evidence["group"]["by"] == "listener");
    CHECK(f[0].subject["local"] == "0.0.0.0:7102");
    CHECK(f[0].subject["state"] == "LISTEN");
    CHECK(f[0].subject["inode"] == 5001);
    CHECK(f[0].subject["pid"] == 300);
    CHECK(f[0].summary.find("toward the listener 0.0.0.0:7102 of pid 300 (server2)")
          != std::string::npos);
  }
  SECTION("it stopped listening before the last of them") {
    for (int i = 0; i < 6; ++i) {
      snaps.push_back(syn_storm(i, i < 3 ? 100 : 0));
    }
    const auto f = run_detector(snaps, "retransmissions");
    REQUIRE(f.size() == 1);
    INFO(f[0].summary);
    CHECK(f[0].evidence["group"]["by"] == "netns");
    CHECK(f[0].summary.find("listener 0.0.0.0:7102") == std::string::npos);
  }
}

TEST_CASE("retransmissions: connects seen in SYN-SENT only as the storm began are tied to the "
          "listener",
          "[det][retransmissions][issue13]") {
  // The storm's first interval runs from snapshot 0; the connects are seen there only (the
  // snapshot that starts the window, kept although no bad interval ends there).
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = syn_storm(i, 100);
    if (i > 0) {
      std::erase_if(s.sockets, [](const synth::Sock& x) { return x.state == 2; });
    }
    snaps.push_back(s);
  }
  const auto f = run_detector(snaps, "retransmissions");
  REQUIRE(f.size() == 1);
  INFO(f[0].summary);
  CHECK(f[0].first_seen_ns == snaps[0].realtime_ns);
  CHECK(f[0].evidence["group"]["by"] == "listener");
  CHECK(f[0].evidence["connecting_sockets"] == 3);
  CHECK(f[0].summary.find("3 connect(s) to port 7102") != std::string::npos);
}

TEST_CASE("retransmissions: a peer looked at again reads its own host's files, and a file "
          "changed meanwhile is a LoadError naming it",
          "[det][retransmissions]") {
  // Two hosts in files of two snapshots each: on alpha one lossy peer diluted by healthy
  // traffic (its peer finding needs a second look at the files, the tracks being let go as
  // report streams), on beta healthy traffic only.
  const TempDir dir;
  const synth::Host alpha{.hostname = "alpha", .boot_id = "00000000-0000-0000-0000-00000000000a"};
  const synth::Host beta{.hostname = "beta", .boot_id = "00000000-0000-0000-0000-00000000000b"};
  std::vector<std::string> alpha_files;
  std::vector<std::string> beta_files;
  for (int f = 0; f < 4; ++f) {
    std::vector<synth::Snap> a;
    std::vector<synth::Snap> b;
    for (int i = 2 * f; i < 2 * f + 2; ++i) {
      const auto u = static_cast<uint64_t>(i);
      synth::Snap s = minute(i);
      counters(s, i, 6'000'000, 1500); // 0.025% host-wide
      s.sockets.push_back(bulk(2, 40002, 0, 1'000'000 * u, "10.9.9.9"));
      b.push_back(s);
      s.sockets.push_back(bulk(1, 40001, 300 * u, 6000 * u, "192.0.2.7")); // 5%
      a.push_back(s);
    }
    alpha_files.push_back(synth::write_series(dir.path().string(), alpha, a));
    beta_files.push_back(synth::write_series(dir.path().string(), beta, b));
  }
  ReportOptions o;
  o.only = {"retransmissions"};
  o.paths = expand_paths({dir.path().string()});
  const std::vector<Finding> whole = run_detectors(load_series(o.paths), o);
  REQUIRE(whole.size() == 1);
  CHECK(whole[0].subject["remote"] == "192.0.2.7");
  CHECK(whole[0].subject["host"] == "alpha");
  {
    // No file held open: each is read again by its name. beta's files are gone by the time
    // alpha's peer is looked at again, which reads alpha's files only.
    const BudgetForTest none(0);
    const std::vector<Finding> streamed = analyze_files(o, [&beta_files]() {
                                            for (const std::string& f : beta_files) {
                                              std::filesystem::remove(f);
                                            }
                                          }).findings;
    REQUIRE(streamed.size() == 1);
    CHECK(streamed[0].summary == whole[0].summary);
    CHECK(streamed[0].evidence == whole[0].evidence);
  }
  // Held open, but written to in place (its schema the same) before the second look: what it
  // holds now is not what was analysed.
  o.paths = alpha_files;
  const std::string changed = alpha_files[1];
  CHECK_THROWS_WITH(analyze_files(o,
                                  [&changed]() {
                                    store::Db db = store::Db::create(changed);
                                    db.exec("PRAGMA foreign_keys = OFF; DELETE FROM snapshots "
                                            "WHERE snapshot_id = (SELECT min(snapshot_id) FROM "
                                            "snapshots)");
                                  }),
                    Catch::StartsWith(changed + ": changed or went away during the report"));
}
