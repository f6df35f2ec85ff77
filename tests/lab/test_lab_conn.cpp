// Lab scenarios for the connection detectors (research/detectors.md): a sender behind a zero
// window (E3) and toward a black-holed peer (E9) for tx_queue_stall, a server that never closes
// (E4) for close_wait_leak, a closed socket stuck in FIN-WAIT-1 (E10) for orphan_pressure,
// random loss during a bulk transfer (E8) for retransmissions, and tcp_mem lowered for ~2 s
// (E13, a GLOBAL sysctl restored by an RAII guard) for tcp_memory_pressure.
//
// Not reproduced here, covered by the synth unit tests instead: orphans over tcp_max_orphans and
// TCPAbortOnMemory (tcp_max_orphans is global and lowering it would reset other tests' orphans on
// this shared host), and tcp_mem[max] exhaustion (would make every TCP socket on the host fail).
#include "lab/lab.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

using namespace sockrewind::test;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) {
    s.pop_back();
  }
  return s;
}

// sockstat "TCP: ... mem N" (pages, host-global).
long tcp_mem_pages() {
  std::ifstream in("/proc/net/sockstat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("TCP:", 0) == 0) {
      const size_t at = line.find(" mem ");
      if (at != std::string::npos) {
        return std::stol(line.substr(at + 5));
      }
    }
  }
  return -1;
}

// Sets the GLOBAL net.ipv4.tcp_mem and restores the original value when it goes out of scope,
// also when the test fails or throws. restore() may be called earlier to keep the change short.
class TcpMemGuard {
public:
  TcpMemGuard() : m_saved(read_text(k_path)) {}

  TcpMemGuard(const TcpMemGuard&) = delete;
  TcpMemGuard& operator=(const TcpMemGuard&) = delete;
  TcpMemGuard(TcpMemGuard&&) = delete;
  TcpMemGuard& operator=(TcpMemGuard&&) = delete;

  ~TcpMemGuard() { restore(); }

  const std::string& saved() const { return m_saved; }

  long saved_max() const {
    std::istringstream in(m_saved);
    long a = 0;
    long b = 0;
    long c = 0;
    in >> a >> b >> c;
    return c;
  }

  void set(long min, long pressure, long max) {
    std::lock_guard<std::mutex> lock(m_mutex);
    std::ofstream out(k_path);
    out << min << " " << pressure << " " << max << "\n";
    m_changed = true;
  }

  void restore() {
    std::lock_guard<std::mutex> lock(m_mutex);
    if (m_changed && !m_saved.empty()) {
      std::ofstream out(k_path);
      out << m_saved << "\n";
      m_changed = false;
    }
  }

private:
  static constexpr const char* k_path = "/proc/sys/net/ipv4/tcp_mem";
  std::string m_saved;
  std::mutex m_mutex;
  bool m_changed = false;
};

} // namespace

TEST_CASE("lab: a sender behind a zero window is tx_queue_stall (E3)", "[lab][tx_queue_stall]") {
  Lab lab;
  Sock listener;
  Sock server;
  Sock client;
  lab.ns().run_in([&] {
    listener = tcp_listener(7201, 16);
    client = tcp_connect(7201);
    server = tcp_accept(listener); // accepted, never read
    set_nonblocking(client);
    pump(client);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  // A zero window with the Send-Q at its limit counts from tx_queue_stall.full_seconds (30 s;
  // flow control pauses for seconds): 8 snapshots 5 s apart span 35 s.
  lab.collect(8, 5.0, [&] {
    pump(client);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  });
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "tx_queue_stall", local_port(client), getpid());
  REQUIRE(found.size() == 1);
  // A warning; escalated to critical because this process is also the non-reading receiver
  // (rx_queue_growth names the same pid).
  CHECK(severity_rank(found[0]["severity"]) >= 1);
  CHECK((found[0]["severity"] == "warning" || found[0]["escalated"] == true));
  CHECK(found[0]["evidence"]["class"] == "zero_window");
  CHECK(found[0]["evidence"]["at_limit"] == true);
  CHECK(found[0]["evidence"]["peer_answers"] == true);
  CHECK(found[0]["evidence"]["duration_s"].get<double>() >= 30);
  CHECK(found[0]["subject"]["state"] == "ESTAB");
  CHECK(endpoint_port(found[0]["subject"]["remote"].get<std::string>()) == 7201);
  const auto& series = found[0]["evidence"]["series"];
  REQUIRE(series.size() >= 7);
  for (const auto& p : series) {
    CHECK(p["tx_queue"].get<long>() > 65536);
    CHECK(p["timer"] == 4);
  }
  CHECK(found[0]["evidence"]["bytes_acked_delta"] == 0);
  // The receiver is not the stalled sender.
  CHECK(findings_of(report, "tx_queue_stall", 7201).empty());
  // The receiver: 35 s at its buffer limit with nothing read is past rx_queue_growth's
  // stop_seconds (30 s): a warning (5 s of it is info, see test_lab_queues.cpp).
  const auto rx = findings_of(report, "rx_queue_growth", 7201, getpid());
  REQUIRE(rx.size() == 1);
  CHECK(severity_rank(rx[0]["severity"]) >= 1);
  CHECK((rx[0]["severity"] == "warning" || rx[0]["escalated"] == true)); // nothing lost
  CHECK(rx[0]["evidence"]["shape"] == "stalled_full");
  CHECK(rx[0]["evidence"]["netns_receive_drops"] == 0);
}

TEST_CASE("lab: a sender toward a black-holed peer is a critical tx_queue_stall (E9)",
          "[lab][tx_queue_stall]") {
  Lab lab;
  lab.sysctl("net.ipv4.tcp_retries2=4");
  Sock listener;
  Sock server;
  Sock client;
  lab.ns().run_in([&] {
    listener = tcp_listener(7202, 16);
    client = tcp_connect(7202);
    server = tcp_accept(listener);
  });
  nft(lab,
      "table inet lab {\n chain inp {\n  type filter hook input priority 0;\n"
      "  tcp dport 7202 drop\n }\n}\n");
  send_all(client, 20000); // never acknowledged
  lab.collect(6, 1.0);
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "tx_queue_stall", local_port(client), getpid());
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "critical");
  CHECK(found[0]["evidence"]["class"] == "dead_peer");
  CHECK(found[0]["evidence"]["max_retrans"].get<int>() >= 3);
  CHECK(found[0]["evidence"]["tcp_retries2"] == 4);
}

TEST_CASE("lab: a server that never closes after EOF is close_wait_leak (E4)",
          "[lab][close_wait_leak]") {
  Lab lab;
  lab.sysctl("net.ipv4.tcp_fin_timeout=5");
  Sock listener;
  std::vector<Sock> accepted;
  lab.ns().run_in([&] {
    listener = tcp_listener(7203, 16);
    for (int i = 0; i < 5; ++i) {
      Sock c = tcp_connect(7203);
      send_all(c, 3);
      accepted.push_back(tcp_accept(listener)); // never read, never closed
      c.reset();                                // the client closes: server in CLOSE-WAIT
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  lab.collect(6, 1.0);
  lab.keep_sample("close-wait-leak");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "close_wait_leak", 7203, getpid());
  // Five sockets for 5 s, a steady count: the process has not called close() yet, which is
  // worth knowing (info) but not yet a leak (close_wait_leak.persist_seconds = 60, or growth).
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "info");
  CHECK(found[0]["subject"]["state"] == "CLOSE-WAIT");
  CHECK(found[0]["evidence"]["close_wait_now"] == 5);
  CHECK(found[0]["evidence"]["persistent"] == false);
  CHECK(found[0]["evidence"]["group"]["count"] == 5);
  const auto& series = found[0]["evidence"]["series"];
  REQUIRE(series.size() == 6);
  for (const auto& p : series) {
    CHECK(p["close_wait"] == 5);
  }
  CHECK(found[0]["evidence"]["unread_bytes"] == 3); // Recv-Q 4: 3 bytes + the FIN
}

TEST_CASE("lab: a closed socket stuck in FIN-WAIT-1 toward a non-reading peer is "
          "orphan_pressure (E10)",
          "[lab][orphan_pressure]") {
  Lab lab;
  Sock listener;
  Sock server;
  Sock client;
  uint16_t client_port = 0;
  lab.ns().run_in([&] {
    listener = tcp_listener(7204, 16);
    client = tcp_connect(7204);
    server = tcp_accept(listener); // never reads, stays open
    set_nonblocking(client);
    client_port = local_port(client);
    pump(client);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  pump(client);
  client.reset(); // close(): the orphan keeps the unsent data, FIN-WAIT-1
  lab.collect(6, 1.0);
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "orphan_pressure", client_port);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "info");
  CHECK(found[0]["evidence"]["class"] == "stuck_FIN-WAIT-1");
  CHECK(found[0]["subject"]["state"] == "FIN-WAIT-1");
  CHECK(found[0]["subject"]["inode"] == 0);
  CHECK(found[0]["subject"]["pid"].is_null());
  CHECK(endpoint_port(found[0]["subject"]["remote"].get<std::string>()) == 7204);
  const auto& series = found[0]["evidence"]["series"];
  REQUIRE(series.size() >= 5);
  for (const auto& p : series) {
    CHECK(p["tx_queue"].get<long>() > 65536);
  }
  CHECK(found[0]["evidence"]["orphans_host"].get<long>() >= 1);
}

TEST_CASE("lab: random loss during a bulk transfer is retransmissions (E8)",
          "[lab][retransmissions]") {
  Lab lab;
  Sock listener;
  Sock server;
  Sock client;
  lab.ns().run_in([&] {
    listener = tcp_listener(7205, 16);
    client = tcp_connect(7205);
    server = tcp_accept(listener);
  });
  nft(lab,
      "table inet lab {\n chain inp {\n  type filter hook input priority 0;\n"
      "  tcp dport 7205 numgen random mod 100 < 5 drop\n }\n}\n");
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    set_nonblocking(server);
    std::vector<char> buf(1 << 20);
    while (!stop.load()) {
      if (::recv(server.fd(), buf.data(), buf.size(), 0) <= 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
  });
  set_nonblocking(client);
  lab.collect(6, 1.0, [&] {
    if (pump(client) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  stop = true;
  reader.join();
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "retransmissions");
  REQUIRE(found.size() == 1);
  CHECK(severity_rank(found[0]["severity"]) >= 1);
  const auto& ev = found[0]["evidence"];
  CHECK(ev["ratio"].get<double>() > 0.01);
  // The rule: bad intervals in a row lasting >= retransmissions.min_seconds (3 s), less the
  // timer jitter Context::lasted allows (50 ms here): a capture timer may fire microseconds
  // early.
  CHECK(ev["seconds_over_warn"].get<double>() >= 3.0 - 0.05);
  CHECK(ev["intervals_over_warn"].get<int>() >= 3);
  REQUIRE(!ev["top_sockets"].empty());
  // Attribution: the bulk sender (this process) toward the lossy port.
  CHECK(endpoint_port(ev["top_sockets"][0]["remote"].get<std::string>()) == 7205);
  CHECK(ev["top_sockets"][0]["pid"] == getpid());
  CHECK(ev["top_peers"][0]["remote"] == "127.0.0.1");
}

TEST_CASE("lab: TCP memory over tcp_mem[pressure] is tcp_memory_pressure (E13, global sysctl "
          "for ~2 s)",
          "[lab][tcp_memory_pressure]") {
  Lab lab;
  TcpMemGuard guard; // restores net.ipv4.tcp_mem even if anything below fails
  REQUIRE(!guard.saved().empty());
  Sock listener;
  std::vector<Sock> servers;
  std::vector<Sock> clients;
  lab.ns().run_in([&] { listener = tcp_listener(7206, 64); });
  std::atomic<bool> lowered{false};
  std::exception_ptr err;
  // While the collector runs: lower tcp_mem[pressure] to just above the current use, build 20
  // stalled connections (receivers never read) that push the use over it, restore after ~2 s.
  std::thread scenario([&] {
    try {
      std::this_thread::sleep_for(std::chrono::milliseconds(700));
      const long now = tcp_mem_pages();
      guard.set(now, now + 500, guard.saved_max());
      lowered = true;
      lab.ns().run_in([&] {
        for (int i = 0; i < 20; ++i) {
          clients.push_back(tcp_connect(7206));
          servers.push_back(tcp_accept(listener));
          set_nonblocking(clients.back());
          pump(clients.back());
        }
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(1800));
      guard.restore();
    } catch (...) {
      guard.restore();
      err = std::current_exception();
    }
  });
  lab.collect(6, 1.0);
  scenario.join();
  guard.restore();
  if (err) {
    std::rethrow_exception(err);
  }
  REQUIRE(lowered.load());
  CHECK(read_text("/proc/sys/net/ipv4/tcp_mem") == guard.saved());
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "tcp_memory_pressure");
  REQUIRE(found.size() == 1);
  CHECK(severity_rank(found[0]["severity"]) >= 1);
  const auto& ev = found[0]["evidence"];
  CHECK(ev["snapshots_over_pressure"].get<int>() + ev["memory_pressures"].get<int>() >= 1);
  REQUIRE(!ev["top_sockets"].empty());
  CHECK(ev["top_sockets"][0]["pid"] == getpid());
}
