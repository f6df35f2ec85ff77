// port_exhaustion on synthetic series (research/detectors.md): minute and one-second series, near
// misses, resets.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/client_side.hpp>
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/analyze/toolkit.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

// `n_tw` client-side TIME-WAIT sockets 127.0.0.1:40000+k -> 127.0.0.1:9000 and `n_est`
// ESTAB ones owned by pid 200, range 40000-40049, with a listener on 9000.
std::vector<synth::Snap> churn(const std::vector<uint32_t>& n_tw,
                               uint32_t n_est,
                               const std::string& tw_reuse,
                               int64_t step = k_minute) {
  std::vector<synth::Snap> out;
  for (size_t i = 0; i < n_tw.size(); ++i) {
    synth::Snap s = snap_at(static_cast<int>(i), step);
    s.sockets.push_back(listener(9000, 0, 128));
    for (uint32_t k = 0; k < n_tw[i]; ++k) {
      s.sockets.push_back({.state = 6,
                           .local = "127.0.0.1",
                           .lport = static_cast<uint16_t>(40000 + k),
                           .remote = "127.0.0.1",
                           .rport = 9000,
                           .inode = 0,
                           .cookie = 1000 + k + 100 * i,
                           .timer = 3});
    }
    for (uint32_t k = 0; k < n_est; ++k) {
      const auto port = static_cast<uint16_t>(40049 - k);
      s.sockets.push_back({.local = "127.0.0.1",
                           .lport = port,
                           .remote = "127.0.0.1",
                           .rport = 9000,
                           .rx = 0,
                           .tx = 0,
                           .inode = 6000 + k,
                           .cookie = 500 + k,
                           .owners = {{200, 10 + static_cast<int32_t>(k)}}});
      // The server side of it: local port 9000 is a listener, not an ephemeral port.
      s.sockets.push_back({.local = "127.0.0.1",
                           .lport = 9000,
                           .remote = "127.0.0.1",
                           .rport = port,
                           .rx = 0,
                           .tx = 0,
                           .inode = 7000 + k,
                           .cookie = 700 + k,
                           .owners = {{100, 10 + static_cast<int32_t>(k)}}});
    }
    s.limits["net.ipv4.ip_local_port_range"] = "40000\t40049";
    s.limits["net.ipv4.ip_local_reserved_ports"] = "";
    s.limits["net.ipv4.tcp_tw_reuse"] = tw_reuse;
    s.limits["net.ipv4.tcp_timestamps"] = "1";
    out.push_back(std::move(s));
  }
  return out;
}

// The series of the late-listener test below, after `empty` snapshots without sockets.
std::vector<synth::Snap> late_listener(int empty) {
  std::vector<synth::Snap> snaps;
  for (int n = 0; n < empty + 12; ++n) {
    synth::Snap s = snap_at(n);
    s.limits["net.ipv4.ip_local_port_range"] = "40000\t40009";
    s.limits["net.ipv4.ip_local_reserved_ports"] = "";
    s.limits["net.ipv4.tcp_tw_reuse"] = "0";
    s.limits["net.ipv4.tcp_timestamps"] = "1";
    const int i = n - empty;
    if (i < 0) {
      snaps.push_back(std::move(s));
      continue;
    }
    for (uint16_t k = 0; k < 7; ++k) {
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = static_cast<uint16_t>(40000 + k),
                           .remote = "10.0.0.9",
                           .rport = 5432,
                           .inode = 8000U + k,
                           .cookie = 300U + k,
                           .owners = {{k < 6 ? 200 : 100, 10 + k}}});
    }
    if (i < 3) {
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = 40009,
                           .remote = "10.0.0.7",
                           .rport = 80,
                           .inode = 8010,
                           .cookie = 310,
                           .owners = {{200, 20}}});
    }
    if (i < 8) {
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = 40009,
                           .remote = "10.0.0.9",
                           .rport = 5432,
                           .inode = 8011,
                           .cookie = 311,
                           .owners = {{100, 21}}});
    }
    if (i >= 6) {
      s.sockets.push_back(listener(40009, 0, 128, 312));
    }
    snaps.push_back(std::move(s));
  }
  return snaps;
}
} // namespace

TEST_CASE("port_exhaustion: 45 TIME-WAIT + 1 ESTAB of 50 ports toward one destination is "
          "critical",
          "[det][port_exhaustion]") {
  const auto fs = run_detector(churn({45, 45, 45}, 1, "0"), "port_exhaustion");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::critical);
  CHECK(f.subject["remote"] == "127.0.0.1:9000");
  CHECK(f.subject["local"] == "127.0.0.1:*");
  CHECK(f.subject["state"] == "TIME-WAIT");
  CHECK(f.subject["pid"] == 200);
  CHECK(f.pid == 200);
  CHECK(f.evidence["utilisation"].get<double>() == Approx(46.0 / 50));
  CHECK(f.evidence["capacity"] == 50);
  CHECK(f.evidence["used_ports"] == 46);
  CHECK(f.evidence["tw_reuse_applies"] == false);
  REQUIRE(f.evidence["series"].size() == 3);
  CHECK(f.evidence["series"][0]["time_wait"] == 45);
  CHECK(f.evidence["series"][0]["established"] == 1);
  CHECK(f.summary.find("EADDRNOTAVAIL") != std::string::npos);
}

TEST_CASE("port_exhaustion: reserved ports shrink the range", "[det][port_exhaustion]") {
  auto snaps = churn({28, 28}, 0, "0", k_second);
  const auto plain = run_detector(snaps, "port_exhaustion"); // 28 of 50
  REQUIRE(plain.size() == 1);
  CHECK(plain[0].severity == Severity::warning);
  for (auto& s : snaps) {
    s.limits["net.ipv4.ip_local_reserved_ports"] = "8080,40030-40049,60000-61000";
  }
  const auto fs = run_detector(snaps, "port_exhaustion"); // 28 of 30
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::critical);
  CHECK(fs[0].evidence["capacity"] == 30);
  CHECK(fs[0].evidence["reserved_ports_in_range"] == 20);
}

TEST_CASE("port_exhaustion: half the range is a warning, tw_reuse on loopback makes it info",
          "[det][port_exhaustion]") {
  const auto fs = run_detector(churn({30, 30, 31}, 0, "0", k_second), "port_exhaustion");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK(fs[0].subject["pid"].is_null()); // TIME-WAIT has no owner
  const auto fs2 = run_detector(churn({45, 45, 45}, 0, "2"), "port_exhaustion");
  REQUIRE(fs2.size() == 1);
  CHECK(fs2[0].severity == Severity::info);
  CHECK(fs2[0].evidence["tw_reuse_applies"] == true);
}

TEST_CASE("port_exhaustion: below half, or in one snapshot only, stays quiet",
          "[det][port_exhaustion]") {
  CHECK(run_detector(churn({20, 24, 20}, 0, "0"), "port_exhaustion").empty());
  CHECK(run_detector(churn({0, 45, 0}, 0, "0"), "port_exhaustion").empty());
}

TEST_CASE("port_exhaustion: one finding per destination names every process connected to it",
          "[det][port_exhaustion]") {
  auto snaps = churn({40, 40, 40}, 2, "0", k_second); // pid 200: 2 ESTAB
  for (auto& s : snaps) {
    // pid 100 also holds 3 connections toward the same destination from ephemeral ports.
    for (uint16_t k = 0; k < 3; ++k) {
      s.sockets.push_back({.local = "127.0.0.1",
                           .lport = static_cast<uint16_t>(40040 + k),
                           .remote = "127.0.0.1",
                           .rport = 9000,
                           .rx = 0,
                           .tx = 0,
                           .inode = 6500U + k,
                           .cookie = 900U + k,
                           .owners = {{100, 40 + static_cast<int32_t>(k)}}});
    }
  }
  const auto fs = run_detector(snaps, "port_exhaustion");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::critical); // 45 of 50 for 2 s
  CHECK(f.evidence["used_ports"] == 45);
  CHECK(f.evidence["group"]["by"] == "destination");
  CHECK(f.pid == 100); // the process with most connections toward it
  REQUIRE(f.subject["owners"].size() == 2);
  CHECK(f.subject["owners"][1]["pid"] == 200);
  CHECK(f.summary.find("pid 100 (server)") != std::string::npos);
  CHECK(f.summary.find("pid 200 (client)") != std::string::npos);
}

TEST_CASE("port_exhaustion: the rule is in seconds, the same at 1 s and at 60 s snapshots",
          "[det][port_exhaustion]") {
  for (const int64_t step : {k_second, k_minute}) {
    INFO("step " << step / k_second << " s");
    const auto snaps = churn({45, 45, 45}, 1, "0", step);
    const auto fs = run_detector(snaps, "port_exhaustion");
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].severity == Severity::critical);
    CHECK(fs[0].evidence["seconds_warn"].get<double>()
          == Approx(2.0 * static_cast<double>(step / k_second)));
    // Held for 100 s: only the one-minute series (120 s) qualifies.
    const auto longer = run_detector(snaps, "port_exhaustion", {"port_exhaustion.min_seconds=100"});
    CHECK(longer.size() == (step == k_minute ? 1U : 0U));
  }
}

TEST_CASE("port_exhaustion: a listener that comes on a client's port later takes out exactly "
          "that client's connections",
          "[det][port_exhaustion]") {
  // Twelve minutes in three files of four. 7 of the 10 ephemeral ports connected to
  // 10.0.0.9:5432 throughout (6 by pid 200, one by pid 100). Port 40009 serves a client of pid
  // 200 toward 10.0.0.7:80 in the first file only, then a listener of pid 100 from minute 6;
  // pid 100 also has a connection from 40009 to 10.0.0.9:5432 until minute 7, server-side by
  // that listener. `report` counts the first file's client before it sees the listener and
  // takes it out later, reading its snapshots back: the connection to 10.0.0.9:5432 there,
  // which it never counted (it closed after the listener came), must stay out of that.
  const std::vector<synth::Snap> snaps = late_listener(0);
  // (Loaded whole, the listener is known from the start: the same findings streamed.)
  const auto fs = run_detector(snaps, "port_exhaustion", {}, 4);
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.subject["remote"] == "10.0.0.9:5432");
  CHECK(f.severity == Severity::warning);
  CHECK(f.evidence["used_ports"] == 7);
  REQUIRE(f.evidence["series"].size() == 12);
  for (const auto& row : f.evidence["series"]) {
    CHECK(row["established"] == 7);
  }
  REQUIRE(f.evidence["owners"].size() == 2);
  CHECK(f.evidence["owners"][0]["pid"] == 200);
  CHECK(f.evidence["owners"][0]["connection_samples"] == 72);
  CHECK(f.evidence["owners"][1]["pid"] == 100);
  CHECK(f.evidence["owners"][1]["connection_samples"] == 12);
}

TEST_CASE("port_exhaustion: with the first snapshots empty, the same counts",
          "[det][port_exhaustion]") {
  // The late-listener series after three empty snapshots, in files of four: the first file's
  // snapshots but its last hold no socket.
  const auto fs = run_detector(late_listener(3), "port_exhaustion", {}, 4);
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.subject["remote"] == "10.0.0.9:5432");
  CHECK(f.evidence["used_ports"] == 7);
  REQUIRE(f.evidence["series"].size() == 12);
  for (const auto& row : f.evidence["series"]) {
    CHECK(row["established"] == 7);
  }
  REQUIRE(f.evidence["owners"].size() == 2);
  CHECK(f.evidence["owners"][0]["connection_samples"] == 72);
  CHECK(f.evidence["owners"][1]["connection_samples"] == 12);
}

namespace {

// Gives every socket reported gone during a load to one ClientPorts, as a pass is given them.
class GoneToClientPorts final : public TrackObserver {
public:
  void closed(Series& series, uint32_t timeline, const std::vector<uint32_t>& tracks) override {
    const Timeline& tl = series.timelines[timeline];
    const Context ctx(series, tl, m_params);
    for (const uint32_t idx : tracks) {
      const Track& t = tl.tracks[idx];
      ++calls;
      const bool client = ports.client_side(ctx, t);
      if (t.remote_port != 0) {
        (client ? clients : servers).push_back(t.local_port);
      }
    }
  }

  ClientPorts ports;
  size_t calls = 0;
  std::vector<uint16_t> clients; // local ports of the sockets said client-side
  std::vector<uint16_t> servers; // and of the others with a remote end

private:
  Params m_params;
};

} // namespace

TEST_CASE("port_exhaustion: listeners are looked for once per file placed, even after empty "
          "snapshots",
          "[det][port_exhaustion]") {
  // Four empty snapshots, then 20 with five short-lived client connections and three accepted
  // ones each: on listener 9000 from the fifth snapshot, on listener 9001 from the thirteenth.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 24; ++i) {
    synth::Snap s = snap_at(i);
    if (i >= 4) {
      s.sockets.push_back(listener(9000, 0, 128, 1));
    }
    if (i >= 12) {
      s.sockets.push_back(listener(9001, 0, 128, 2));
    }
    for (uint16_t k = 0; i >= 4 && k < 8; ++k) {
      const auto port = static_cast<uint16_t>(41000 + 10 * i + k);
      const bool accepted = k >= 5;
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = accepted ? static_cast<uint16_t>(i >= 12 ? 9001 : 9000) : port,
                           .remote = accepted ? "10.0.0.7" : "10.0.0.9",
                           .rport = accepted ? port : static_cast<uint16_t>(5432),
                           .inode = 20000U + 10U * static_cast<uint32_t>(i) + k,
                           .cookie = 20000U + 10U * static_cast<uint32_t>(i) + k,
                           .owners = {{accepted ? 100 : 200, 10 + k}}});
    }
    snaps.push_back(std::move(s));
  }
  TempDir dir;
  const std::vector<std::string> files = write_files(dir, snaps, 2); // 12 files
  GoneToClientPorts gone;
  (void)load_series(files, {}, &gone);
  CHECK(gone.calls == 160 + 2);
  CHECK(gone.clients.size() == 100);
  CHECK(
      std::all_of(gone.clients.begin(), gone.clients.end(), [](uint16_t p) { return p > 41000; }));
  // The listeners were seen in the timeline (they are given at the end of the load only).
  CHECK(gone.servers.size() == 60);
  CHECK(std::all_of(
      gone.servers.begin(), gone.servers.end(), [](uint16_t p) { return p == 9000 || p == 9001; }));
  // Not once per socket: the tracks are looked through again only once files were placed.
  CHECK(gone.ports.looks() <= files.size());
}

TEST_CASE("port_exhaustion: a late listener's port is read back snapshot by snapshot, over "
          "more snapshots than one read holds",
          "[det][port_exhaustion]") {
  // 320 one-second snapshots. Six of the ten ephemeral ports connected to 10.0.0.9:5432
  // throughout (pid 200). Port 40009 holds a connection to it too for the first 300 snapshots,
  // a new one every 7 snapshots, ESTAB and TIME-WAIT by turns; then a listener from snapshot
  // 310. Two snapshots to a file, `report` counts port 40009's connections before it sees the
  // listener and takes out what each added in each of its snapshots, read back in more than one
  // batch: a snapshot read in place of another takes out an ESTAB where a TIME-WAIT was counted.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 320; ++i) {
    synth::Snap s = snap_at(i, k_second);
    for (uint16_t k = 0; k < 6; ++k) {
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = static_cast<uint16_t>(40000 + k),
                           .remote = "10.0.0.9",
                           .rport = 5432,
                           .inode = 8000U + k,
                           .cookie = 300U + k,
                           .owners = {{200, 10 + k}}});
    }
    const auto turn = static_cast<uint32_t>(i / 7);
    if (i < 300 && turn % 2 == 0) {
      s.sockets.push_back({.local = "10.0.0.1",
                           .lport = 40009,
                           .remote = "10.0.0.9",
                           .rport = 5432,
                           .inode = 9000U + turn,
                           .cookie = 1000U + turn,
                           .owners = {{200, 30}}});
    } else if (i < 300) {
      s.sockets.push_back({.state = 6,
                           .local = "10.0.0.1",
                           .lport = 40009,
                           .remote = "10.0.0.9",
                           .rport = 5432,
                           .inode = 0,
                           .cookie = 1000U + turn,
                           .timer = 3});
    }
    if (i >= 310) {
      s.sockets.push_back(listener(40009, 0, 128, 2));
    }
    s.limits["net.ipv4.ip_local_port_range"] = "40000\t40009";
    s.limits["net.ipv4.ip_local_reserved_ports"] = "";
    s.limits["net.ipv4.tcp_tw_reuse"] = "0";
    s.limits["net.ipv4.tcp_timestamps"] = "1";
    snaps.push_back(std::move(s));
  }
  // (Loaded whole, the listener is known from the start: the same findings streamed.)
  const auto fs = run_detector(snaps, "port_exhaustion");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::warning);
  CHECK(f.evidence["used_ports"] == 6);
  REQUIRE(f.evidence["series"].size() == 320);
  for (const auto& row : f.evidence["series"]) {
    CHECK(row["established"] == 6);
    CHECK(row["time_wait"] == 0);
  }
  REQUIRE(f.evidence["owners"].size() == 1);
  CHECK(f.evidence["owners"][0]["connection_samples"] == 6 * 320);
}
