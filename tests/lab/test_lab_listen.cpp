// Lab scenarios for the listener and connect detectors (research/detectors.md E1, E2, E5):
// listen_overflow, unaccepted_connection, syn_flood, port_exhaustion and syn_sent_stuck, each on
// loopback in the Lab's private netns with the real collector and analyzer.
#include "lab/lab.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <thread>

using namespace sockrewind::test;

TEST_CASE("lab: a listener that never accepts: listen_overflow, unaccepted_connection and "
          "syn_sent_stuck name it and its process",
          "[lab]") {
  // E1: listen(4); one client connects and gives up (closes) while queued -> an inode-0
  // CLOSE-WAIT child; 7 more non-blocking connects: 4 fill the queue (5 = backlog + 1), 3 stay
  // SYN-SENT and their SYN retries (1 s apart) count as ListenOverflows.
  Lab lab;
  Sock listener;
  std::vector<Sock> clients;
  lab.ns().run_in([&] {
    listener = tcp_listener(7201, 4);
    Sock gave_up = tcp_connect(7201);
    gave_up.reset();
    for (int i = 0; i < 7; ++i) {
      clients.push_back(connect_nonblocking(7201));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  lab.collect(6, 1.0);
  lab.keep_sample("listen-overflow-unaccepted");
  const auto report = lab.report();
  INFO(summarize(report));
  const int pid = getpid();

  // listen_overflow: netns-wide counter, attributed to the one full listener.
  const auto lo = findings_of(report, "listen_overflow", 7201, pid);
  REQUIRE(lo.size() == 1);
  CHECK(severity_rank(lo[0].at("severity")) >= 1);
  CHECK(lo[0]["subject"]["state"] == "LISTEN");
  CHECK(lo[0]["evidence"]["total"].get<int>() >= 3);
  // The full listener and every process holding it (here one: this test).
  const auto& full = lo[0]["evidence"]["listeners_full"];
  REQUIRE(full.size() == 1);
  CHECK(endpoint_port(full[0]["local"].get<std::string>()) == 7201);
  CHECK(full[0]["max_queue"] == 5);
  CHECK(full[0]["max_backlog"] == 4);
  REQUIRE(full[0]["owners"].size() == 1);
  CHECK(full[0]["owners"][0]["pid"] == pid);
  REQUIRE(lo[0]["subject"]["owners"].size() == 1);
  CHECK(lo[0]["subject"]["owners"][0]["pid"] == pid);

  // unaccepted_connection: the same 5 children queued for the whole capture (>= 3 s), one of
  // them in CLOSE-WAIT (its client gave up) -> critical.
  const auto uc = findings_of(report, "unaccepted_connection", 7201, pid);
  REQUIRE(uc.size() == 1);
  CHECK(uc[0]["severity"] == "critical");
  CHECK(uc[0]["evidence"]["close_wait_children"] == 1);
  CHECK(uc[0]["evidence"]["children_total"] == 5);
  CHECK(uc[0]["evidence"]["children_stuck"] == 5);
  CHECK(uc[0]["evidence"]["oldest_queued_s"].get<double>() >= 5.0); // 6 snapshots + 300 ms
  const auto& kids = uc[0]["evidence"]["children"];
  REQUIRE(kids.size() == 5);
  CHECK(std::count_if(kids.begin(),
                      kids.end(),
                      [](const nlohmann::json& k) { return k["state"] == "CLOSE-WAIT"; })
        == 1);
  // Per snapshot: "unaccepted" counts every queued child, the CLOSE-WAIT one included.
  const auto& series = uc[0]["evidence"]["series"];
  REQUIRE(series.size() == 6);
  for (const auto& p : series) {
    CHECK(p["unaccepted"] == 5);
    CHECK(p["close_wait"] == 1);
    CHECK(p["queue"] == 5);
  }

  // syn_sent_stuck: the 3 clients that did not get in, toward port 7201, owned by this process.
  const auto ss = findings_of(report, "syn_sent_stuck", 7201, pid, true);
  REQUIRE(ss.size() == 1);
  CHECK(severity_rank(ss[0].at("severity")) >= 1);
  CHECK(endpoint_port(ss[0]["subject"]["remote"].get<std::string>()) == 7201);
  CHECK(ss[0]["evidence"]["identities"] == 3);
  CHECK(ss[0]["evidence"]["max_retrans"].get<int>() >= 3);
}

TEST_CASE("lab: SYN-ACKs lost to a listener's clients is syn_flood at that listener", "[lab]") {
  // E2: an input-hook rule drops SYN-ACKs from port 7202 (the clients never complete the
  // handshake); listen(16) holds 17 SYN-RECV request sockets, the rest get syncookies.
  Lab lab;
  lab.sysctl("net.ipv4.tcp_syncookies=1");
  nft(lab,
      "table inet t {\n chain inp {\n  type filter hook input priority 0;\n"
      "  tcp sport 7202 tcp flags & (syn|ack) == syn|ack drop\n }\n}\n");
  Sock listener;
  std::vector<Sock> clients;
  lab.ns().run_in([&] {
    listener = tcp_listener(7202, 16);
    for (int i = 0; i < 40; ++i) {
      clients.push_back(connect_nonblocking(7202));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  lab.collect(6, 1.0);
  lab.keep_sample("syn-flood");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "syn_flood", 7202, getpid());
  REQUIRE(found.size() == 1);
  CHECK(severity_rank(found[0].at("severity")) >= 1);
  CHECK(found[0]["evidence"]["syn_recv_peak"] == 17);
  CHECK(found[0]["evidence"]["snapshots_over_bar"].get<int>() >= 5);
  CHECK(found[0]["evidence"]["reqq_full_do_cookies"].get<int>() > 0);
  for (const auto& p : found[0]["evidence"]["series"]) {
    CHECK(p["max_backlog"] == 16);
  }
}

TEST_CASE("lab: connect/close cycles to one destination exhaust a small port range", "[lab]") {
  // E5: ip_local_port_range 40000-40049 and tcp_tw_reuse=0 in the netns; 45 cycles where the
  // client closes first leave 45 client-side TIME-WAIT toward 127.0.0.1:7205 (60 s each).
  Lab lab;
  lab.sysctl("net.ipv4.ip_local_port_range='40000 40049'");
  lab.sysctl("net.ipv4.tcp_tw_reuse=0");
  Sock listener;
  lab.ns().run_in([&] {
    listener = tcp_listener(7205, 64);
    for (int i = 0; i < 45; ++i) {
      Sock c = tcp_connect(7205);
      Sock s = tcp_accept(listener);
      c.reset(); // the client closes first -> it ends in TIME-WAIT
      char b = 0;
      (void)::recv(s.fd(), &b, 1, 0); // EOF
      s.reset();
    }
  });
  lab.collect(6, 1.0);
  lab.keep_sample("port-exhaustion");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "port_exhaustion", 7205, std::nullopt, true);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "critical");
  CHECK(endpoint_port(found[0]["subject"]["remote"].get<std::string>()) == 7205);
  CHECK(found[0]["subject"]["pid"].is_null()); // TIME-WAIT has no owner
  CHECK(found[0]["evidence"]["capacity"] == 50);
  CHECK(found[0]["evidence"]["used_ports"].get<int>() >= 45);
  CHECK(found[0]["evidence"]["utilisation"].get<double>() >= 0.9);
  CHECK(found[0]["evidence"]["tw_reuse_applies"] == false);
  for (const auto& p : found[0]["evidence"]["series"]) {
    CHECK(p["time_wait"].get<int>() >= 45);
  }
}

TEST_CASE("lab: connects whose SYNs are dropped are syn_sent_stuck, critical", "[lab]") {
  // A firewall blackholes SYNs to port 7210: every connect toward it stays SYN-SENT.
  Lab lab;
  nft(lab,
      "table inet t {\n chain inp {\n  type filter hook input priority 0;\n"
      "  tcp dport 7210 drop\n }\n}\n");
  Sock listener;
  std::vector<Sock> clients;
  lab.ns().run_in([&] {
    listener = tcp_listener(7210, 16);
    for (int i = 0; i < 2; ++i) {
      clients.push_back(connect_nonblocking(7210));
    }
  });
  lab.collect(6, 1.0);
  lab.keep_sample("syn-sent-stuck");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "syn_sent_stuck", 7210, getpid(), true);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "critical");
  CHECK(found[0]["subject"]["state"] == "SYN-SENT");
  CHECK(found[0]["evidence"]["identities"] == 2);
  CHECK(found[0]["evidence"]["longest_run"] == 6);
  // Nothing got in: no accept-queue findings at that listener.
  CHECK(findings_of(report, "unaccepted_connection", 7210).empty());
  CHECK(findings_of(report, "listen_overflow", 7210).empty());
}
