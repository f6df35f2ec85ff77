// syn_sent_stuck on synthetic series (research/detectors.md): minute and one-second series, near
// misses, resets.
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

synth::Sock syn_sent(uint16_t lport,
                     uint64_t cookie,
                     uint32_t retrans,
                     const std::string& remote = "10.0.0.5",
                     uint16_t rport = 5432) {
  return {.state = 2,
          .local = "10.0.0.1",
          .lport = lport,
          .remote = remote,
          .rport = rport,
          .rx = 0,
          .tx = 1,
          .inode = 8000 + cookie,
          .cookie = cookie,
          .timer = 1,
          .retrans = retrans,
          .owners = {{200, static_cast<int32_t>(cookie)}}};
}

synth::Sock estab(uint16_t lport, uint64_t cookie) {
  return {.local = "10.0.0.1",
          .lport = lport,
          .remote = "10.0.0.5",
          .rport = 5432,
          .rx = 0,
          .tx = 0,
          .inode = 8000 + cookie,
          .cookie = cookie,
          .owners = {{200, static_cast<int32_t>(cookie)}}};
}

} // namespace

TEST_CASE("syn_sent_stuck: every connect to a dead database stays SYN-SENT: critical",
          "[det][syn_sent_stuck]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = snap_at(i);
    // A pool retrying: a new connect each minute plus the long-stuck first one.
    s.sockets.push_back(syn_sent(50000, 11, static_cast<uint32_t>(2 + i)));
    s.sockets.push_back(
        syn_sent(static_cast<uint16_t>(50001 + i), 20 + static_cast<uint64_t>(i), 1));
    s.limits.emplace("net.ipv4.tcp_syn_retries", "6");
    snaps.push_back(std::move(s));
  }
  const auto fs = run_detector(snaps, "syn_sent_stuck");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::critical);
  CHECK(f.subject["remote"] == "10.0.0.5:5432");
  CHECK(f.subject["state"] == "SYN-SENT");
  CHECK(f.subject["pid"] == 200);
  CHECK(f.pid == 200);
  CHECK(f.evidence["identities"] == 5);
  CHECK(f.evidence["max_retrans"] == 5);
  CHECK(f.evidence["longest_run"] == 4);
  CHECK(f.evidence["connects"][0]["local"] == "10.0.0.1:50000");
  CHECK(f.evidence["connects"][0]["stuck_s"].get<double>() == Approx(180));
  REQUIRE(f.evidence["series"].size() == 4);
  CHECK(f.evidence["series"][0]["syn_sent"] == 2);
  CHECK(f.evidence["series"][0]["syn_sent_ratio"].get<double>() == Approx(1.0));
}

TEST_CASE("syn_sent_stuck: 3 of 8 connects stuck for 6 seconds is a warning",
          "[det][syn_sent_stuck]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = snap_at(i, k_second);
    for (uint16_t k = 0; k < 5; ++k) {
      s.sockets.push_back(estab(static_cast<uint16_t>(50100 + k), 300U + k));
    }
    for (uint16_t k = 0; k < 3; ++k) {
      s.sockets.push_back(
          syn_sent(static_cast<uint16_t>(50200 + k), 400U + k, static_cast<uint32_t>(i)));
    }
    snaps.push_back(std::move(s));
  }
  const auto fs = run_detector(snaps, "syn_sent_stuck");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK(fs[0].evidence["series"][0]["attempts"] == 8);
  CHECK(fs[0].evidence["series"][0]["syn_sent"] == 3);
  CHECK(fs[0].evidence["identities"] == 3);
}

TEST_CASE("syn_sent_stuck: a slow handshake seen in one or two snapshots stays quiet",
          "[det][syn_sent_stuck]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = snap_at(i);
    s.sockets.push_back(estab(50100, 300));
    if (i == 1 || i == 2) {
      s.sockets.push_back(
          syn_sent(static_cast<uint16_t>(50300 + i), 500U + static_cast<uint64_t>(i), 1));
    }
    if (i == 4) {
      s.sockets.push_back(syn_sent(50310, 510, 2, "10.0.0.9", 80));
    }
    snaps.push_back(std::move(s));
  }
  CHECK(run_detector(snaps, "syn_sent_stuck").empty());
  // But one connect with 3 SYN retries is enough.
  snaps[4].sockets.back().retrans = 3;
  const auto fs = run_detector(snaps, "syn_sent_stuck");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].subject["remote"] == "10.0.0.9:80");
  CHECK(fs[0].severity == Severity::warning);
}

TEST_CASE("syn_sent_stuck: a busy client's brand-new SYN-SENT sockets in every snapshot stay "
          "quiet",
          "[det][syn_sent_stuck]") {
  // Every snapshot catches two handshakes in flight (new ports, no retry) among 20 ESTAB
  // connections toward the same destination: no connect is stuck.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = snap_at(i, k_second);
    for (uint16_t k = 0; k < 20; ++k) {
      s.sockets.push_back(estab(static_cast<uint16_t>(50100 + k), 300U + k));
    }
    for (uint16_t k = 0; k < 2; ++k) {
      const auto n = static_cast<uint16_t>(2 * i + k);
      s.sockets.push_back(syn_sent(static_cast<uint16_t>(51000 + n), 600U + n, 0));
    }
    snaps.push_back(std::move(s));
  }
  CHECK(run_detector(snaps, "syn_sent_stuck").empty());
}

TEST_CASE("syn_sent_stuck: one finding per destination names every waiting process",
          "[det][syn_sent_stuck]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = snap_at(i, k_second);
    s.sockets.push_back(syn_sent(50000, 11, static_cast<uint32_t>(i)));
    synth::Sock other = syn_sent(50001, 12, static_cast<uint32_t>(i));
    other.owners = {{100, 30}};
    s.sockets.push_back(other);
    s.sockets.push_back(syn_sent(50002, 13, static_cast<uint32_t>(i)));
    snaps.push_back(std::move(s));
  }
  const auto fs = run_detector(snaps, "syn_sent_stuck");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::critical); // every attempt stuck for 5 s
  CHECK(f.evidence["stuck_connects"] == 3);
  CHECK(f.evidence["group"]["by"] == "destination");
  CHECK(f.pid == 200); // two of the three connects
  REQUIRE(f.subject["owners"].size() == 2);
  CHECK(f.subject["owners"][1]["pid"] == 100);
  CHECK(f.summary.find("pid 200 (client), pid 100 (server) are waiting") != std::string::npos);
}

TEST_CASE("syn_sent_stuck: the rule is in seconds, the same at 1 s and at 60 s snapshots",
          "[det][syn_sent_stuck]") {
  for (const int64_t step : {k_second, k_minute}) {
    INFO("step " << step / k_second << " s");
    // One connect in SYN-SENT in two consecutive snapshots (no retry counted), among 3 ESTAB.
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 4; ++i) {
      synth::Snap s = snap_at(i, step);
      for (uint16_t k = 0; k < 3; ++k) {
        s.sockets.push_back(estab(static_cast<uint16_t>(50100 + k), 300U + k));
      }
      if (i == 1 || i == 2) {
        s.sockets.push_back(syn_sent(50400, 700, 0));
      }
      snaps.push_back(std::move(s));
    }
    // Stuck for one interval: 1 s is a slow handshake, 60 s is stuck.
    const auto fs = run_detector(snaps, "syn_sent_stuck");
    CHECK(fs.size() == (step == k_minute ? 1U : 0U));
    // With the threshold at 0.5 s both are stuck, and both only warnings (1 of 4 attempts).
    const auto low = run_detector(snaps, "syn_sent_stuck", {"syn_sent_stuck.stuck_seconds=0.5"});
    REQUIRE(low.size() == 1);
    CHECK(low[0].severity == Severity::warning);
    CHECK(low[0].evidence["longest_stuck_s"].get<double>()
          == Approx(static_cast<double>(step / k_second)));
  }
}

namespace {

// Minute i: two connects stuck toward 10.0.0.5:5432 beside two connections to it.
synth::Snap two_stuck_two_connected(int i) {
  synth::Snap s = snap_at(i);
  const auto u = static_cast<uint32_t>(i);
  s.sockets.push_back(syn_sent(41000, 11, u));
  s.sockets.push_back(syn_sent(41001, 12, u));
  s.sockets.push_back(estab(41002, 13));
  s.sockets.push_back(estab(41003, 14));
  return s;
}

} // namespace

TEST_CASE("syn_sent_stuck: a listener that comes on a client's port later takes out exactly "
          "that client's attempts",
          "[det][syn_sent_stuck]") {
  // Twelve minutes in three files of four. Two connects stuck toward 10.0.0.5:5432 beside two
  // connections to it throughout. Port 41009 serves a connect stuck toward 10.0.0.7:80 in the
  // first file only, then a listener from minute 6; a connection from 41009 to 10.0.0.5:5432
  // until minute 7 is server-side by that listener. `report` counts the first file's connect
  // before it sees the listener and takes it out later, reading its snapshots back: the
  // connection to 10.0.0.5:5432 there, which it never counted (it closed after the listener
  // came), must stay out of that.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = two_stuck_two_connected(i);
    const auto u = static_cast<uint32_t>(i);
    if (i < 3) {
      s.sockets.push_back(syn_sent(41009, 15, u, "10.0.0.7", 80));
    }
    if (i < 8) {
      s.sockets.push_back(estab(41009, 16));
    }
    if (i >= 6) {
      s.sockets.push_back(listener(41009, 0, 128, 17));
    }
    snaps.push_back(std::move(s));
  }
  // (Loaded whole, the listener is known from the start: the same findings streamed.)
  const auto fs = run_detector(snaps, "syn_sent_stuck", {}, 4);
  REQUIRE(fs.size() == 1); // none toward 10.0.0.7:80
  const Finding& f = fs[0];
  CHECK(f.subject["remote"] == "10.0.0.5:5432");
  CHECK(f.evidence["identities"] == 2);
  REQUIRE(f.evidence["series"].size() == 12);
  for (const auto& row : f.evidence["series"]) {
    CHECK(row["syn_sent"] == 2);
    CHECK(row["attempts"] == 4);
  }
}

TEST_CASE("syn_sent_stuck: a connection counted toward a destination and taken out when its port "
          "turns out to be a listener's leaves the attempts as if never counted",
          "[det][syn_sent_stuck]") {
  // Twelve minutes in three files of four: two connects stuck toward 10.0.0.5:5432 beside two
  // connections to it throughout. A connection from port 41009 to it in the first three minutes
  // only, then a listener on 41009 from minute 6: streamed, the connection is counted first and
  // taken out again when the listener comes; the attempts stay 4 in every snapshot.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = two_stuck_two_connected(i);
    if (i < 3) {
      s.sockets.push_back(estab(41009, 16));
    }
    if (i >= 6) {
      s.sockets.push_back(listener(41009, 0, 128, 17));
    }
    snaps.push_back(std::move(s));
  }
  const auto fs = run_detector(snaps, "syn_sent_stuck", {}, 4);
  REQUIRE(fs.size() == 1);
  REQUIRE(fs[0].evidence["series"].size() == 12);
  for (const auto& row : fs[0].evidence["series"]) {
    CHECK(row["syn_sent"] == 2);
    CHECK(row["attempts"] == 4);
    CHECK(row["syn_sent_ratio"] == Approx(0.5));
  }
}
