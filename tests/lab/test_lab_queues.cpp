// Lab scenarios: a receiver that never reads (E3), a listener that never accepts (E1), and a
// healthy busy echo server with churn that must raise no warning.
#include "lab/lab.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <thread>

using namespace sockrewind::test;

TEST_CASE("lab: a receiver that never reads is rx_queue_growth, naming its process", "[lab]") {
  Lab lab;
  Sock listener;
  Sock server;
  Sock client;
  lab.ns().run_in([&] {
    listener = tcp_listener(7101, 16);
    client = tcp_connect(7101);
    server = tcp_accept(listener); // accepted, never read
    set_nonblocking(client);
    pump(client);
  });
  lab.collect(6, 1.0, [&] {
    pump(client);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  });
  lab.keep_sample("rx-queue-growth");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "rx_queue_growth", 7101, getpid());
  REQUIRE(found.size() == 1);
  // At the buffer limit with nothing read for 5 s, no data lost: info until
  // rx_queue_growth.stop_seconds (30 s; a rate-limited reader pauses for seconds too). The
  // 35 s zero-window scenario in test_lab_conn.cpp shows the default warning.
  CHECK(found[0]["severity"] == "info");
  CHECK(found[0]["subject"]["state"] == "ESTAB");
  CHECK(found[0]["evidence"]["shape"] == "stalled_full");
  CHECK(found[0]["evidence"]["bytes_read"] == 0);
  CHECK(found[0]["evidence"]["netns_receive_drops"] == 0);
  CHECK(found[0]["evidence"]["series"].size() >= 5);
  // The client side is not the one not reading.
  CHECK(findings_of(report, "rx_queue_growth", local_port(client)).empty());

  // The same evidence with the bar at 3 s: the rule makes it a warning, same socket and process.
  const auto lowered = lab.report("--set rx_queue_growth.stop_seconds=3");
  INFO(summarize(lowered));
  const auto warned = findings_of(lowered, "rx_queue_growth", 7101, getpid());
  REQUIRE(warned.size() == 1);
  CHECK(warned[0]["severity"] == "warning");
  CHECK(warned[0]["evidence"]["shape"] == "stalled_full");
  CHECK(findings_of(lowered, "rx_queue_growth", local_port(client)).empty());
}

TEST_CASE("lab: a listener that never accepts is accept_queue_backlog, critical when full",
          "[lab]") {
  Lab lab;
  Sock listener;
  std::vector<Sock> clients;
  lab.ns().run_in([&] {
    listener = tcp_listener(7102, 4);
    for (int i = 0; i < 8; ++i) {
      clients.push_back(connect_nonblocking(7102));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  lab.collect(6, 1.0);
  lab.keep_sample("accept-queue-backlog");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "accept_queue_backlog", 7102, getpid());
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "critical");
  CHECK(found[0]["subject"]["state"] == "LISTEN");
  const auto& series = found[0]["evidence"]["series"];
  REQUIRE(series.size() == 6);
  for (const auto& p : series) {
    CHECK(p["queue"] == 5); // backlog 4 holds 4 + 1
    CHECK(p["max_backlog"] == 4);
    CHECK(p["unaccepted"] == 5);
  }
  CHECK(found[0]["evidence"]["listen_overflows"].get<int>() > 0);
}

TEST_CASE("lab: a healthy busy echo server with churn raises no warning", "[lab]") {
  Lab lab;
  Sock listener;
  std::atomic<bool> stop{false};
  lab.ns().run_in([&] { listener = tcp_listener(7103, 128); });
  // The server: accepts, echoes what it reads, closes on EOF.
  std::thread server([&] {
    std::vector<Sock> conns;
    set_nonblocking(listener);
    std::vector<char> buf(65536);
    while (!stop.load()) {
      std::vector<pollfd> fds{{listener.fd(), POLLIN, 0}};
      for (const Sock& c : conns) {
        fds.push_back({c.fd(), POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 50) <= 0) {
        continue;
      }
      if ((fds[0].revents & POLLIN) != 0) {
        const int fd = ::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd >= 0) {
          conns.emplace_back(fd);
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
          continue;
        }
        const ssize_t n = ::recv(fds[i].fd, buf.data(), buf.size(), 0);
        if (n > 0) {
          (void)::send(fds[i].fd, buf.data(), static_cast<size_t>(n), MSG_NOSIGNAL);
        } else if (n == 0 || errno != EAGAIN) {
          conns[i - 1].reset();
        }
      }
      std::erase_if(conns, [](const Sock& c) { return c.fd() < 0; });
    }
  });
  // A few long-lived chatty connections plus short request/response connections.
  std::vector<Sock> persistent;
  lab.ns().run_in([&] {
    for (int i = 0; i < 4; ++i) {
      persistent.push_back(tcp_connect(7103));
    }
  });
  const auto exchange = [](const Sock& s, size_t bytes) {
    send_all(s, bytes);
    std::vector<char> buf(bytes);
    size_t got = 0;
    while (got < bytes) {
      const ssize_t n = ::recv(s.fd(), buf.data() + got, bytes - got, 0);
      if (n <= 0) {
        break;
      }
      got += static_cast<size_t>(n);
    }
  };
  lab.collect(6, 1.0, [&] {
    for (const Sock& p : persistent) {
      exchange(p, 512);
    }
    for (int i = 0; i < 5; ++i) {
      const Sock c = tcp_connect(7103);
      exchange(c, 1024);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  stop = true;
  server.join();
  lab.keep_sample("healthy-echo-churn");
  const auto report = lab.report();
  INFO(summarize(report));
  for (const auto& f : report.at("findings")) {
    CHECK(severity_rank(f.at("severity")) == 0);
  }
}
