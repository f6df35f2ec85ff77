// gen_series: writes a synthetic, realistic snapshot series for the report benchmark, with the
// collector's own writer (tests/synth). One host, one netns, about --sockets sockets per
// snapshot, --interval seconds apart, split into files as cron would write them.
//
//   gen_series --out DIR [--snapshots 1440] [--sockets 1000] [--interval 60] [--files N]
//
// The mix: ~62% ESTABLISHED TCP with tcp_info and skmem (2% of them replaced every snapshot by
// new connections with new cookies; the closed ones show up as TIME_WAIT), 7 listeners (80 and
// 443 occasionally with a short accept queue), ~8% TIME_WAIT (new each snapshot), ~8% UDP (DNS
// queries come and go), ~20% unix (stream pairs, listeners, /dev/log), 20 processes, kernel
// counters growing with the traffic and the usual limits. Three planted conditions, so that the
// report has something to find:
//   1. rx_queue_growth: report-worker's Kafka connection 10.0.0.5:41234 -> 10.0.0.30:9092,
//      whose Recv-Q grows by 4 KiB per snapshot from 5% of the series on;
//   2. accept_queue_backlog (+ unaccepted_connection, listen_overflow): api's 0.0.0.0:8080
//      listener (backlog 128) whose accept queue holds 20-40 connections (inode 0, no owner)
//      from 25% of the series on, full (129) for 10 snapshots at 75% with ListenOverflows
//      rising by 40-60 per interval;
//   3. close_wait_leak: legacy-sync gains one CLOSE_WAIT connection to 10.0.0.40:8443 every
//      20 snapshots and never closes any.
// Deterministic for a given --seed. Prints the files written on stdout.

#include <CLI/CLI.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <random>
#include <stdexcept>
#include <string>
#include <synth/synth.hpp>
#include <unordered_map>
#include <vector>

namespace {

using sockrewind::synth::Proc;
using sockrewind::synth::Snap;
using sockrewind::synth::Sock;

constexpr uint8_t k_estab = 1;
constexpr uint8_t k_time_wait = 6;
constexpr uint8_t k_close = 7;
constexpr uint8_t k_close_wait = 8;
constexpr uint8_t k_listen = 10;
constexpr int64_t k_ns = 1'000'000'000;

struct Options {
  std::string out;
  int snapshots = 1440;
  int sockets = 1000;
  int interval = 60;
  int files = 0; // 0: one per 60 snapshots
  std::string host = "synth-bench";
  int64_t start = 1'767'225'600; // 2026-01-01T00:00:00Z
  uint64_t seed = 1;
};

struct Process {
  int32_t pid;
  std::string comm;
  std::string cmdline;
  uint64_t nofile;
  uint32_t uid;
  int32_t next_fd = 10;
};

// A TCP connection that lives across snapshots, and how fast it moves data.
struct Conn {
  Sock s;
  uint32_t recv_per_s = 0;
  uint32_t send_per_s = 0;
};

enum class Role { nginx_in, app_out, api_out, ssh_in };

class Generator {
public:
  explicit Generator(const Options& o) : m_o(o), m_rng(o.seed) {
    const auto add =
        [&](int32_t pid, const char* comm, const char* cmd, uint64_t nofile, uint32_t uid) {
          m_procs.push_back({pid, comm, cmd, nofile, uid});
        };
    add(600, "dockerd", "/usr/bin/dockerd -H fd://", 1048576, 0);              // 0
    add(700, "systemd-resolve", "/lib/systemd/systemd-resolved", 524288, 101); // 1
    add(720, "rsyslogd", "/usr/sbin/rsyslogd -n -iNONE", 1024, 0);             // 2
    add(900, "sshd", "sshd: /usr/sbin/sshd -D", 1024, 0);                      // 3
    add(1000, "nginx", "nginx: master process /usr/sbin/nginx", 65536, 0);     // 4
    for (int i = 1; i <= 4; ++i) {                                             // 5..8
      add(1000 + i, "nginx", "nginx: worker process", 65536, 33);
    }
    add(2000, "api", "/srv/api/bin/api --listen :8080", 65536, 1000); // 9
    for (int i = 1; i <= 6; ++i) {                                    // 10..15
      add(2100 + i,
          "gunicorn",
          "/srv/app/venv/bin/python3 /srv/app/venv/bin/gunicorn app:wsgi",
          4096,
          1000);
    }
    add(3001, "report-worker", "/srv/reports/bin/report-worker --topic events", 4096, 1000); // 16
    add(4001, "legacy-sync", "/opt/legacy/bin/legacy-sync --daemon", 1024, 1000);            // 17
    add(5001, "statsd-agent", "/usr/bin/statsd-agent -c /etc/statsd.yml", 1024, 0);          // 18
    add(5101, "node_exporter", "/usr/bin/node_exporter", 1024, 65534);                       // 19

    const int n = o.sockets;
    m_target_estab = std::max(1, n * 62 / 100);
    m_target_tw = n * 8 / 100;
    m_target_udp = std::max(2, n * 8 / 100);
    m_target_unix = std::max(4, n * 20 / 100);

    listener("0.0.0.0", 80, 511, 4, true);
    listener("0.0.0.0", 443, 511, 4, true);
    listener("::", 443, 511, 4, true);
    m_api_listener = listener("0.0.0.0", 8080, 128, 9, false);
    listener("0.0.0.0", 22, 128, 3, false);
    listener("::", 22, 128, 3, false);
    listener("0.0.0.0", 9100, 4096, 19, false);

    // Planted 1: the consumer that stopped reading.
    m_stuck.s = tcp(k_estab, "10.0.0.5", 41234, "10.0.0.30", 9092, 16);
    m_stuck.recv_per_s = 0;

    while (static_cast<int>(m_conns.size()) < m_target_estab) {
      m_conns.push_back(new_conn());
    }
    for (int i = 0; i < m_target_unix / 2; ++i) {
      add_unix_pair();
    }
    unix_listener("/run/api.sock", 9);
    unix_listener("/var/run/docker.sock", 0);
    unix_listener("/run/systemd/resolve/io.systemd.Resolve", 1);
    Sock log = base_unix(2, 7, 2);
    log.path = "/dev/log";
    m_unix.push_back(log);
    m_udp.push_back(udp_stub("127.0.0.53"));
    m_udp.push_back(udp_stub("127.0.0.54"));
    while (static_cast<int>(m_udp.size()) < m_target_udp) {
      m_udp.push_back(new_udp());
    }
  }

  Snap snapshot(int i) {
    const double frac = m_o.snapshots > 1 ? static_cast<double>(i) / (m_o.snapshots - 1) : 0.0;
    Snap snap;
    const auto jitter = static_cast<int64_t>(uniform(0, 300)) * 1'000'000;
    snap.realtime_ns = (m_o.start + int64_t{i} * m_o.interval) * k_ns + jitter;
    snap.boottime_ns = (int64_t{3} * 86400 + int64_t{i} * m_o.interval) * k_ns + jitter;
    snap.duration_ns = (15 + static_cast<int64_t>(uniform(0, 20))) * 1'000'000;
    snap.cpu_user_us = 6000 + static_cast<int64_t>(uniform(0, 3000));
    snap.cpu_sys_us = 9000 + static_cast<int64_t>(uniform(0, 4000));
    std::vector<Sock>& out = snap.sockets;
    out.reserve(static_cast<size_t>(m_o.sockets) + 300);

    // Churn: ~2% of connections close (-> TIME_WAIT) and are replaced.
    std::vector<Sock> tw;
    if (i > 0) {
      const auto churn =
          static_cast<size_t>(std::lround(0.02 * static_cast<double>(m_conns.size())));
      for (size_t k = 0; k < churn && !m_conns.empty(); ++k) {
        const size_t victim = index(m_conns.size());
        tw.push_back(to_time_wait(m_conns[victim].s));
        m_conns[victim] = new_conn();
        m_active_opens += 1;
      }
    }
    // Other TIME_WAITs of short-lived outbound requests: new every snapshot.
    while (static_cast<int>(tw.size()) < m_target_tw) {
      Sock s = tcp(k_time_wait,
                   "10.0.0.5",
                   ephemeral(),
                   "10.0.3." + std::to_string(uniform(1, 40)),
                   443,
                   -1);
      s.timer = 3;
      s.expires_ms = static_cast<uint32_t>(uniform(0, 59'999));
      tw.push_back(std::move(s));
      m_active_opens += 1;
    }

    // Listeners: 80/443 occasionally have a short accept queue; planted 2 on 8080.
    const bool backlog = frac >= 0.25;
    const bool full =
        m_o.snapshots >= 8 && i >= m_o.snapshots * 3 / 4 && i < m_o.snapshots * 3 / 4 + 10;
    uint32_t api_q = 0;
    if (full) {
      api_q = 129;
      m_listen_overflows += static_cast<int64_t>(uniform(40, 60));
    } else if (backlog) {
      api_q = static_cast<uint32_t>(uniform(20, 40));
    }
    for (size_t l = 0; l < m_listeners.size(); ++l) {
      Sock s = m_listeners[l];
      if (l == m_api_listener) {
        s.rx = api_q;
        s.tcp_info["unacked"] = api_q;
      } else if (uniform(0, 99) < 5) {
        s.rx = static_cast<uint32_t>(uniform(1, 3));
        s.tcp_info["unacked"] = *s.rx;
      }
      out.push_back(std::move(s));
    }
    // The connections queued at 8080: ESTAB, inode 0, no owner. They drain slowly: keep most
    // of the previous ones (same cookie) and add new ones.
    while (m_api_children.size() > api_q) {
      m_api_children.erase(m_api_children.begin());
    }
    if (!m_api_children.empty() && api_q > 0) {
      const size_t drained = index(std::min<size_t>(m_api_children.size(), 5) + 1);
      m_api_children.erase(m_api_children.begin(),
                           m_api_children.begin() + static_cast<std::ptrdiff_t>(drained));
    }
    while (m_api_children.size() < api_q) {
      Sock c =
          tcp(k_estab,
              "10.0.0.5",
              8080,
              "10.1." + std::to_string(uniform(0, 255)) + "." + std::to_string(uniform(1, 254)),
              ephemeral(),
              -1);
      c.rx = static_cast<uint32_t>(uniform(200, 1400));
      c.tx = 0;
      c.uid = 0;
      m_api_children.push_back(std::move(c));
    }
    for (Sock& c : m_api_children) {
      c.tcp_info["last_ack_recv_ms"] += static_cast<uint64_t>(m_o.interval) * 1000;
      out.push_back(c);
    }

    // Established connections move data.
    int64_t in_segs = 0;
    int64_t out_segs = 0;
    for (Conn& c : m_conns) {
      advance(c);
      in_segs += int64_t{c.recv_per_s} * m_o.interval / 1400 + 1;
      out_segs += int64_t{c.send_per_s} * m_o.interval / 1400 + 1;
      out.push_back(c.s);
    }
    // Planted 1.
    if (frac >= 0.05) {
      const uint32_t rx = std::min<uint32_t>(m_stuck.s.rx.value_or(0) + 4096, 6'000'000);
      const uint32_t grew = rx - m_stuck.s.rx.value_or(0);
      m_stuck.s.rx = rx;
      m_stuck.s.rmem_alloc = std::min<uint32_t>(rx + rx / 4, 6'291'456);
      m_stuck.s.tcp_info["bytes_received"] += grew;
      m_stuck.s.tcp_info["last_data_recv_ms"] = 200;
    } else {
      advance(m_stuck);
    }
    out.push_back(m_stuck.s);
    // Planted 3.
    if (i % 20 == 0) {
      Sock cw = tcp(k_close_wait, "10.0.0.5", ephemeral(), "10.0.0.40", 8443, 17);
      cw.rx = 1;
      cw.tcp_info["bytes_received"] = static_cast<uint64_t>(uniform(2000, 9000));
      m_close_wait.push_back(std::move(cw));
    }
    for (Sock& cw : m_close_wait) {
      cw.tcp_info["last_data_recv_ms"] += static_cast<uint64_t>(m_o.interval) * 1000;
      cw.tcp_info["last_ack_recv_ms"] += static_cast<uint64_t>(m_o.interval) * 1000;
      out.push_back(cw);
    }
    out.insert(out.end(), tw.begin(), tw.end());

    // UDP: about 30% of the query sockets are new each snapshot.
    for (Sock& u : m_udp) {
      if (u.state == k_estab && uniform(0, 99) < 30) {
        u = new_udp();
      }
      out.push_back(u);
    }
    // Unix: 1% of the pairs are replaced.
    for (size_t k = 0; i > 0 && k < m_unix_pairs / 100 + 1; ++k) {
      replace_unix_pair(index(m_unix_pairs));
    }
    out.insert(out.end(), m_unix.begin(), m_unix.end());

    add_counters(snap, in_segs, out_segs, tw.size());
    add_limits(snap);
    add_procs(snap);
    return snap;
  }

private:
  uint64_t uniform(uint64_t lo, uint64_t hi) {
    return std::uniform_int_distribution<uint64_t>(lo, hi)(m_rng);
  }

  size_t index(size_t n) { return static_cast<size_t>(uniform(0, n - 1)); }

  uint16_t ephemeral() { return static_cast<uint16_t>(uniform(32768, 60999)); }

  // A TCP socket; proc < 0: no owner, inode 0.
  Sock tcp(uint8_t state,
           std::string local,
           uint16_t lport,
           std::string remote,
           uint16_t rport,
           int proc) {
    Sock s;
    s.state = state;
    s.family = local.find(':') != std::string::npos ? 10 : 2;
    s.local = std::move(local);
    s.lport = lport;
    s.remote = std::move(remote);
    s.rport = rport;
    s.rx = 0;
    s.tx = 0;
    s.cookie = ++m_cookie;
    if (proc >= 0) {
      Process& p = m_procs[static_cast<size_t>(proc)];
      s.inode = ++m_inode;
      s.uid = p.uid;
      s.owners = {{p.pid, p.next_fd++}};
    }
    if (state != k_time_wait) {
      s.rcvbuf = 131072;
      s.sndbuf = 87040;
      s.rmem_alloc = 0;
      s.wmem_queued = 0;
      s.drops = 0;
      s.tcp_info = {{"rto_us", 204'000},
                    {"rtt_us", uniform(200, 40'000)},
                    {"rttvar_us", 500},
                    {"snd_cwnd", 10},
                    {"unacked", 0},
                    {"backoff", 0},
                    {"probes", 0},
                    {"total_retrans", 0},
                    {"bytes_acked", 1},
                    {"bytes_received", 0},
                    {"segs_out", 1},
                    {"last_data_recv_ms", 0},
                    {"last_ack_recv_ms", 0},
                    {"snd_wnd", 65535}};
    }
    return s;
  }

  size_t
  listener(const std::string& addr, uint16_t port, uint32_t backlog, int proc, bool workers) {
    Sock s = tcp(k_listen, addr, port, addr, 0, proc);
    s.tx = backlog;
    s.tcp_info = {{"unacked", 0}, {"rto_us", 1'000'000}};
    if (workers) { // nginx workers inherit the master's listeners
      for (size_t w = 5; w <= 8; ++w) {
        s.owners.emplace_back(m_procs[w].pid, s.owners.front().second);
      }
    }
    m_listeners.push_back(std::move(s));
    return m_listeners.size() - 1;
  }

  Conn new_conn() {
    const uint64_t r = uniform(0, 99);
    const Role role = r < 55   ? Role::nginx_in
                      : r < 88 ? Role::app_out
                      : r < 98 ? Role::api_out
                               : Role::ssh_in;
    Conn c;
    const std::string client =
        "10.1." + std::to_string(uniform(0, 255)) + "." + std::to_string(uniform(1, 254));
    switch (role) {
    case Role::nginx_in: {
      const bool v6 = uniform(0, 9) == 0;
      const int worker = static_cast<int>(5 + uniform(0, 3));
      c.s = v6 ? tcp(k_estab,
                     "2001:db8::5",
                     443,
                     "2001:db8:1::" + std::to_string(uniform(1, 999)),
                     ephemeral(),
                     worker)
               : tcp(k_estab,
                     "10.0.0.5",
                     static_cast<uint16_t>(uniform(0, 1) ? 443 : 80),
                     client,
                     ephemeral(),
                     worker);
      c.recv_per_s = static_cast<uint32_t>(uniform(10, 2000));
      c.send_per_s = static_cast<uint32_t>(uniform(100, 50'000));
      break;
    }
    case Role::app_out: {
      const int worker = static_cast<int>(10 + uniform(0, 5));
      const bool pg = uniform(0, 2) != 0;
      c.s = tcp(k_estab,
                "10.0.0.5",
                ephemeral(),
                pg ? "10.0.0.20" : "10.0.0.21",
                pg ? 5432 : 6379,
                worker);
      c.recv_per_s = static_cast<uint32_t>(uniform(100, 20'000));
      c.send_per_s = static_cast<uint32_t>(uniform(50, 5000));
      break;
    }
    case Role::api_out:
      c.s =
          tcp(k_estab, "10.0.0.5", ephemeral(), "10.0.2." + std::to_string(uniform(1, 20)), 443, 9);
      c.recv_per_s = static_cast<uint32_t>(uniform(100, 10'000));
      c.send_per_s = static_cast<uint32_t>(uniform(50, 2000));
      break;
    case Role::ssh_in:
      c.s = tcp(k_estab, "10.0.0.5", 22, client, ephemeral(), 3);
      c.recv_per_s = 20;
      c.send_per_s = 200;
      break;
    }
    c.s.tcp_info["snd_cwnd"] = uniform(10, 80);
    return c;
  }

  void advance(Conn& c) {
    auto& ti = c.s.tcp_info;
    const auto secs = static_cast<uint64_t>(m_o.interval);
    ti["bytes_received"] += c.recv_per_s * secs;
    ti["bytes_acked"] += c.send_per_s * secs;
    ti["segs_out"] += c.send_per_s * secs / 1400 + 1;
    ti["last_data_recv_ms"] = uniform(0, 5000);
    ti["last_ack_recv_ms"] = uniform(0, 5000);
    if (uniform(0, 199) == 0) {
      ti["total_retrans"] += 1;
      m_retrans_segs += 1;
    }
    // Brief queues now and then, as a busy server shows.
    c.s.rx = uniform(0, 19) == 0 ? static_cast<uint32_t>(uniform(1, 3000)) : 0;
    c.s.tx = uniform(0, 9) == 0 ? static_cast<uint32_t>(uniform(1, 20'000)) : 0;
    c.s.rmem_alloc = *c.s.rx == 0 ? 0 : *c.s.rx + 768;
    c.s.wmem_queued = *c.s.tx == 0 ? 0 : *c.s.tx + 1280;
  }

  static Sock to_time_wait(const Sock& s) {
    Sock t;
    t.family = s.family;
    t.state = k_time_wait;
    t.local = s.local;
    t.lport = s.lport;
    t.remote = s.remote;
    t.rport = s.rport;
    t.rx = 0;
    t.tx = 0;
    t.cookie = s.cookie;
    t.timer = 3;
    t.expires_ms = 59'000;
    return t;
  }

  // A short-lived client socket: a query to the resolver stub, or statsd.
  Sock new_udp() {
    Sock s;
    s.type = 2;
    s.proto = 17;
    s.cookie = ++m_cookie;
    s.inode = ++m_inode;
    s.rx = 0;
    s.tx = 0;
    s.rcvbuf = 212'992;
    s.sndbuf = 212'992;
    s.rmem_alloc = 0;
    s.wmem_queued = 0;
    s.drops = 0;
    int proc = 18; // statsd
    s.state = k_estab;
    s.lport = ephemeral();
    if (uniform(0, 9) < 6) { // a resolver query
      proc = static_cast<int>(10 + uniform(0, 5));
      s.local = "127.0.0.1";
      s.remote = "127.0.0.53";
      s.rport = 53;
    } else {
      s.local = "10.0.0.5";
      s.remote = "10.0.0.50";
      s.rport = 8125;
    }
    Process& p = m_procs[static_cast<size_t>(proc)];
    s.uid = p.uid;
    s.owners = {{p.pid, p.next_fd++}};
    return s;
  }

  // systemd-resolved's stub listener (unconnected, lives for the whole series).
  Sock udp_stub(const char* addr) {
    Sock s = new_udp();
    s.state = k_close;
    s.local = addr;
    s.lport = 53;
    s.remote = "0.0.0.0";
    s.rport = 0;
    Process& p = m_procs[1];
    s.uid = p.uid;
    s.owners = {{p.pid, p.next_fd++}};
    return s;
  }

  Sock base_unix(uint8_t type, uint8_t state, int proc) {
    Sock s;
    s.family = 1;
    s.type = type;
    s.state = state;
    s.rx = 0;
    s.tx = 0;
    s.cookie = ++m_cookie;
    s.inode = ++m_inode;
    Process& p = m_procs[static_cast<size_t>(proc)];
    s.uid = p.uid;
    s.owners = {{p.pid, p.next_fd++}};
    return s;
  }

  void unix_listener(const char* path, int proc) {
    Sock s = base_unix(1, k_listen, proc);
    s.path = path;
    s.tx = 4096;
    m_unix.push_back(std::move(s));
  }

  // Pairs occupy m_unix[2k], m_unix[2k+1] for k < m_unix_pairs.
  std::pair<Sock, Sock> make_unix_pair() {
    static constexpr int k_servers[] = {0, 1, 2, 9, 9, 9};
    const int server = k_servers[uniform(0, 5)];
    const int client = static_cast<int>(uniform(5, 15));
    Sock a = base_unix(1, k_estab, server);
    Sock b = base_unix(1, k_estab, client);
    a.path = server == 0 ? "/var/run/docker.sock" : server == 9 ? "/run/api.sock" : "";
    if (a.path->empty()) {
      a.path.reset();
    }
    a.peer_inode = b.inode;
    b.peer_inode = a.inode;
    return {std::move(a), std::move(b)};
  }

  void add_unix_pair() {
    auto [a, b] = make_unix_pair();
    m_unix.insert(m_unix.begin() + static_cast<std::ptrdiff_t>(2 * m_unix_pairs), std::move(b));
    m_unix.insert(m_unix.begin() + static_cast<std::ptrdiff_t>(2 * m_unix_pairs), std::move(a));
    ++m_unix_pairs;
  }

  void replace_unix_pair(size_t k) {
    auto [a, b] = make_unix_pair();
    m_unix[2 * k] = std::move(a);
    m_unix[2 * k + 1] = std::move(b);
  }

  void add_counters(Snap& snap, int64_t in_segs, int64_t out_segs, size_t tw) {
    const auto secs = static_cast<int64_t>(m_o.interval);
    m_passive_opens +=
        static_cast<int64_t>(m_conns.size()) / 50 + static_cast<int64_t>(uniform(0, 5));
    m_in_segs += in_segs;
    m_out_segs += out_segs;
    m_udp_in += secs * static_cast<int64_t>(uniform(50, 80));
    m_udp_out += secs * static_cast<int64_t>(uniform(50, 80));
    m_timeouts += static_cast<int64_t>(uniform(0, 3));
    m_attempt_fails += static_cast<int64_t>(uniform(0, 1));
    m_estab_resets += static_cast<int64_t>(uniform(0, 2));
    m_out_rsts += static_cast<int64_t>(uniform(0, 6));
    m_no_ports += static_cast<int64_t>(uniform(0, 2));
    m_tw_total += static_cast<int64_t>(tw);
    auto& c = snap.counters;
    c["TcpExt.ListenOverflows"] = m_listen_overflows;
    c["TcpExt.ListenDrops"] = m_listen_overflows;
    c["TcpExt.TCPTimeouts"] = m_timeouts;
    c["TcpExt.TW"] = m_tw_total;
    c["TcpExt.TWRecycled"] = 0;
    c["TcpExt.TCPAbortOnClose"] = m_estab_resets / 3;
    c["TcpExt.TCPAbortOnTimeout"] = 0;
    c["TcpExt.TCPAbortOnMemory"] = 0;
    c["TcpExt.TCPSynRetrans"] = m_timeouts / 2;
    c["TcpExt.TCPReqQFullDoCookies"] = 0;
    c["TcpExt.TCPReqQFullDrop"] = 0;
    c["TcpExt.SyncookiesSent"] = 0;
    c["TcpExt.TCPToZeroWindowAdv"] = 0;
    c["TcpExt.TCPWantZeroWindowAdv"] = 0;
    c["TcpExt.TCPRcvQDrop"] = 0;
    c["IpExt.InOctets"] = m_in_segs * 900;
    c["IpExt.OutOctets"] = m_out_segs * 1200;
    c["Tcp.ActiveOpens"] = m_active_opens;
    c["Tcp.PassiveOpens"] = m_passive_opens;
    c["Tcp.AttemptFails"] = m_attempt_fails;
    c["Tcp.EstabResets"] = m_estab_resets;
    c["Tcp.CurrEstab"] = static_cast<int64_t>(m_conns.size() + m_api_children.size() + 1);
    c["Tcp.InSegs"] = m_in_segs;
    c["Tcp.OutSegs"] = m_out_segs;
    c["Tcp.RetransSegs"] = m_retrans_segs;
    c["Tcp.InErrs"] = 0;
    c["Tcp.OutRsts"] = m_out_rsts;
    c["Udp.InDatagrams"] = m_udp_in;
    c["Udp.OutDatagrams"] = m_udp_out;
    c["Udp.NoPorts"] = m_no_ports;
    c["Udp.InErrors"] = 0;
    c["Udp.RcvbufErrors"] = 0;
    c["Udp.SndbufErrors"] = 0;
    c["Udp6InDatagrams"] = m_udp_in / 10;
    c["Udp6RcvbufErrors"] = 0;
    c["sockets.used"] = static_cast<int64_t>(m_o.sockets);
    c["TCP.inuse"] = static_cast<int64_t>(m_conns.size() + m_listeners.size());
    c["TCP.orphan"] = static_cast<int64_t>(uniform(0, 3));
    c["TCP.tw"] = static_cast<int64_t>(tw);
    c["TCP.alloc"] = static_cast<int64_t>(m_conns.size() + m_listeners.size() + tw);
    c["TCP.mem"] = static_cast<int64_t>(uniform(40, 400));
    c["UDP.inuse"] = static_cast<int64_t>(m_udp.size());
    c["UDP.mem"] = static_cast<int64_t>(uniform(1, 20));
    c["TCP6.inuse"] = 3;
    c["UDP6.inuse"] = 0;
  }

  static void add_limits(Snap& snap) {
    auto& l = snap.limits;
    l["net.core.somaxconn"] = "4096";
    l["net.core.rmem_max"] = "212992";
    l["net.core.wmem_max"] = "212992";
    l["net.ipv4.tcp_mem"] = "190611 254150 381222";
    l["net.ipv4.tcp_rmem"] = "4096 131072 6291456";
    l["net.ipv4.tcp_wmem"] = "4096 16384 4194304";
    l["net.ipv4.ip_local_port_range"] = "32768 60999";
    l["net.ipv4.tcp_max_orphans"] = "65536";
    l["net.ipv4.tcp_max_syn_backlog"] = "1024";
    l["net.ipv4.tcp_fin_timeout"] = "60";
    l["net.ipv4.tcp_syncookies"] = "1";
    l["net.ipv4.tcp_tw_reuse"] = "2";
    l["net.ipv4.tcp_abort_on_overflow"] = "0";
    l["net.ipv4.udp_mem"] = "381222 508299 762444";
  }

  void add_procs(Snap& snap) {
    std::unordered_map<int32_t, uint32_t> socks;
    for (const Sock& s : snap.sockets) {
      for (const auto& owner : s.owners) {
        ++socks[owner.first];
      }
    }
    for (const Process& pr : m_procs) {
      Proc out;
      out.pid = pr.pid;
      out.start_ticks = 1000 + static_cast<uint64_t>(pr.pid);
      out.comm = pr.comm;
      out.cmdline = pr.cmdline;
      out.socket_fds = socks[pr.pid];
      out.fd_count = out.socket_fds + 12;
      out.nofile_soft = pr.nofile;
      out.nofile_hard = std::max<uint64_t>(pr.nofile, 524288);
      out.uid = pr.uid;
      out.ppid = pr.comm == "nginx" && pr.pid != 1000 ? 1000 : 1;
      snap.procs.push_back(std::move(out));
    }
  }

  const Options& m_o;
  std::mt19937_64 m_rng;
  std::vector<Process> m_procs;
  std::vector<Sock> m_listeners;
  size_t m_api_listener = 0;
  std::vector<Sock> m_api_children;
  std::vector<Conn> m_conns;
  Conn m_stuck;
  std::vector<Sock> m_close_wait;
  std::vector<Sock> m_udp;
  std::vector<Sock> m_unix;
  size_t m_unix_pairs = 0;
  int m_target_estab = 0;
  int m_target_tw = 0;
  int m_target_udp = 0;
  int m_target_unix = 0;
  uint64_t m_cookie = 0x10000;
  uint64_t m_inode = 100'000;
  int64_t m_listen_overflows = 17;
  int64_t m_active_opens = 120'000;
  int64_t m_passive_opens = 900'000;
  int64_t m_in_segs = 50'000'000;
  int64_t m_out_segs = 60'000'000;
  int64_t m_retrans_segs = 4000;
  int64_t m_udp_in = 2'000'000;
  int64_t m_udp_out = 2'000'000;
  int64_t m_timeouts = 300;
  int64_t m_attempt_fails = 40;
  int64_t m_estab_resets = 500;
  int64_t m_out_rsts = 2000;
  int64_t m_no_ports = 90;
  int64_t m_tw_total = 100'000;
};

int run(int argc, char** argv) {
  Options o;
  CLI::App app("Writes a synthetic sockrewind snapshot series (tests/bench/README.md).");
  app.add_option("--out", o.out, "output directory (created if missing)")->required();
  app.add_option("--snapshots", o.snapshots, "snapshots in all")->check(CLI::Range(1, 1'000'000));
  app.add_option("--sockets", o.sockets, "sockets per snapshot (about)")
      ->check(CLI::Range(20, 10'000'000));
  app.add_option("--interval", o.interval, "seconds between snapshots")
      ->check(CLI::Range(1, 86400));
  app.add_option("--files", o.files, "number of files (default: one per 60 snapshots)")
      ->check(CLI::Range(0, 1'000'000));
  app.add_option("--host", o.host, "host name");
  app.add_option("--start", o.start, "CLOCK_REALTIME of the first snapshot, Unix seconds");
  app.add_option("--seed", o.seed, "random seed");
  CLI11_PARSE(app, argc, argv);

  if (::mkdir(o.out.c_str(), 0755) != 0 && errno != EEXIST) {
    throw std::runtime_error("cannot create " + o.out);
  }
  const int files = o.files > 0 ? std::min(o.files, o.snapshots) : (o.snapshots + 59) / 60;
  const auto t0 = std::chrono::steady_clock::now();
  Generator gen(o);
  sockrewind::synth::Host host;
  host.hostname = o.host;
  int64_t rows = 0;
  int done = 0;
  for (int f = 0; f < files; ++f) {
    const int end = static_cast<int>(static_cast<int64_t>(o.snapshots) * (f + 1) / files);
    sockrewind::synth::SeriesWriter w(o.out, host);
    for (; done < end; ++done) {
      const Snap s = gen.snapshot(done);
      rows += static_cast<int64_t>(s.sockets.size());
      w.add(s);
    }
    (void)std::printf("%s\n", w.commit().c_str());
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  (void)std::fprintf(stderr,
                     "gen_series: %d files, %d snapshots, %lld socket rows in %.1f s\n",
                     files,
                     o.snapshots,
                     static_cast<long long>(rows),
                     secs);
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    (void)std::fprintf(stderr, "gen_series: error: %s\n", e.what());
  } catch (...) {
    (void)std::fprintf(stderr, "gen_series: error: unknown exception\n");
  }
  return 1;
}
