#pragma once
// A small synthetic series shared by the show, timeline and diff tests (written with
// tests/synth, i.e. the collector's own writer).
//
// Host web1, six snapshots 10 s apart starting 2026-11-22T10:00:00Z, with a gap of 170 s before
// the fifth (positions 1..4, gap, 5..6):
//   cookie 1  tcp LISTEN 0.0.0.0:80, accept queue 0,1,2,3,4,5 of 128, nginx/100 (+ extra owner
//             worker/300 from position 5 on)
//   cookie 2  tcp 10.0.0.1:80 <- 10.0.0.2:5555: ESTAB 1..3, CLOSE-WAIT 4..6 (Recv-Q 1), owner
//             nginx/100 in 1..4, worker/300 in 5..6; retransmit timer (2) at 6
//   cookie 3  tcp 10.0.0.1:80 <- 10.0.0.3:6000 ESTAB, new at 5, nginx/100
//   cookie 4  tcp TIME-WAIT 10.0.0.1:80 - 10.0.0.4:7000, inode 0, in 1..2 only
//   cookie 5  udp 0.0.0.0:53 UNCONN, dns/200 (start_ticks 7), in 1..3
//   cookie 6  udp 0.0.0.0:5353 UNCONN, mdns/200 (start_ticks 99: the pid was reused), in 4..6
//   cookie 7  tcp 10.0.0.1:40000 -> 10.0.0.9:80 ESTAB, nginx/100, in all, Send-Q 0,0,0,0,10,20
// Counters: TcpExt.ListenOverflows 0,0,5,5,7,7; Udp.RcvbufErrors 100,100,120,3,3,3 (reset);
// Tcp.CurrEstab 10,10,10,10,4,4 (a gauge); TcpExt.SyncookiesSent 2 (never changes).

#include "support.hpp"
#include "synth/synth.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace sockrewind::test {

inline constexpr int64_t k_t0_s = 1795341600; // 2026-11-22T10:00:00Z
inline constexpr int64_t k_ns = 1'000'000'000;

inline std::vector<synth::Snap> web1_snaps() {
  static constexpr std::array<int64_t, 6> k_at{0, 10, 20, 30, 200, 210};
  std::vector<synth::Snap> snaps;
  for (size_t i = 0; i < k_at.size(); ++i) {
    synth::Snap s;
    s.realtime_ns = (k_t0_s + k_at[i]) * k_ns;
    s.boottime_ns = (5000 + k_at[i]) * k_ns;
    const auto q = static_cast<uint32_t>(i);
    synth::Sock listener{.state = 10,
                         .local = "0.0.0.0",
                         .lport = 80,
                         .remote = "0.0.0.0",
                         .rx = q,
                         .tx = 128,
                         .inode = 1000,
                         .cookie = 1,
                         .owners = {{100, 3}}};
    if (i >= 4) {
      listener.owners.emplace_back(300, 3);
    }
    s.sockets.push_back(listener);
    s.sockets.push_back({.state = static_cast<uint8_t>(i < 3 ? 1 : 8),
                         .local = "10.0.0.1",
                         .lport = 80,
                         .remote = "10.0.0.2",
                         .rport = 5555,
                         .rx = i < 3 ? 0U : 1U,
                         .tx = 0,
                         .inode = 1001,
                         .cookie = 2,
                         .timer = static_cast<uint8_t>(i == 5 ? 1 : 0),
                         .expires_ms = i == 5 ? 1200U : 0U,
                         .retrans = i == 5 ? 2U : 0U,
                         .owners = {{i < 4 ? 100 : 300, 4}}});
    if (i >= 4) {
      s.sockets.push_back({.state = 1,
                           .local = "10.0.0.1",
                           .lport = 80,
                           .remote = "10.0.0.3",
                           .rport = 6000,
                           .rx = 0,
                           .tx = 0,
                           .inode = 1002,
                           .cookie = 3,
                           .owners = {{100, 5}}});
    }
    if (i < 2) {
      s.sockets.push_back({.state = 6,
                           .local = "10.0.0.1",
                           .lport = 80,
                           .remote = "10.0.0.4",
                           .rport = 7000,
                           .rx = 0,
                           .tx = 0,
                           .inode = 0,
                           .cookie = 4,
                           .timer = 3,
                           .expires_ms = 59000,
                           .retrans = 0});
    }
    if (i < 3) {
      s.sockets.push_back({.type = 2,
                           .proto = 17,
                           .state = 7,
                           .local = "0.0.0.0",
                           .lport = 53,
                           .remote = "0.0.0.0",
                           .rx = 0,
                           .inode = 1003,
                           .cookie = 5,
                           .owners = {{200, 6}}});
    } else {
      s.sockets.push_back({.type = 2,
                           .proto = 17,
                           .state = 7,
                           .local = "0.0.0.0",
                           .lport = 5353,
                           .remote = "0.0.0.0",
                           .rx = 0,
                           .inode = 1004,
                           .cookie = 6,
                           .owners = {{200, 6}}});
    }
    s.sockets.push_back({.state = 1,
                         .local = "10.0.0.1",
                         .lport = 40000,
                         .remote = "10.0.0.9",
                         .rport = 80,
                         .rx = 0,
                         .tx = i < 4 ? 0U : static_cast<uint32_t>(10 * (i - 3)),
                         .inode = 1005,
                         .cookie = 7,
                         .owners = {{100, 7}}});
    s.procs.push_back({.pid = 100,
                       .start_ticks = 5,
                       .comm = "nginx",
                       .cmdline = "nginx: master",
                       .fd_count = 50,
                       .socket_fds = 4,
                       .nofile_soft = 1024});
    if (i >= 4) {
      s.procs.push_back(
          {.pid = 300, .start_ticks = 8, .comm = "worker", .fd_count = 9, .socket_fds = 2});
    }
    s.procs.push_back({.pid = 200,
                       .start_ticks = i < 3 ? 7U : 99U,
                       .comm = i < 3 ? "dns" : "mdns",
                       .fd_count = static_cast<uint32_t>(10 + i),
                       .socket_fds = 1,
                       .nofile_soft = 4096});
    static constexpr std::array<int64_t, 6> k_overflows{0, 0, 5, 5, 7, 7};
    static constexpr std::array<int64_t, 6> k_rcvbuf{100, 100, 120, 3, 3, 3};
    s.counters["TcpExt.ListenOverflows"] = k_overflows[i];
    s.counters["Udp.RcvbufErrors"] = k_rcvbuf[i];
    s.counters["Tcp.CurrEstab"] = i < 4 ? 10 : 4;
    s.counters["TcpExt.SyncookiesSent"] = 2;
    snaps.push_back(std::move(s));
  }
  return snaps;
}

inline synth::Host web1_host() {
  synth::Host h;
  h.hostname = "web1";
  h.boot_id = "boot-web1-a";
  return h;
}

// Writes the web1 series into `dir`; returns the file.
inline std::string write_web1(const std::filesystem::path& dir) {
  return synth::write_series(dir.string(), web1_host(), web1_snaps());
}

} // namespace sockrewind::test
