// Lab scenarios for udp_drops (E6), unix_backlog (E7, plus an unread unix stream) and
// socket_leak (a leaking thread, and E12: a forked server at its fd limit whose listener fills).
#include "lab/lab.hpp"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <sstream>
#include <thread>

using namespace sockrewind::test;

namespace {

// The socket's inode (what the collector records as the socket's inode).
uint64_t inode_of(const Sock& s) {
  struct stat st {};

  if (::fstat(s.fd(), &st) != 0) {
    sys_fail("fstat");
  }
  return st.st_ino;
}

// A non-blocking unix stream connect; keeps the socket in `out`, returns whether it connected.
bool unix_connect_nonblocking(const std::string& path, std::vector<Sock>& out) {
  out.emplace_back(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  socklen_t len = 0;
  const sockaddr_un a = unix_addr(path, len);
  return ::connect(out.back().fd(), reinterpret_cast<const sockaddr*>(&a), len) == 0;
}

Sock unix_dgram_bound(const std::string& path) {
  ::unlink(path.c_str());
  Sock s(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  socklen_t len = 0;
  const sockaddr_un a = unix_addr(path, len);
  if (::bind(s.fd(), reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    sys_fail("bind unix dgram");
  }
  return s;
}

// The finding of `detector` whose subject has this local endpoint text and pid.
std::vector<nlohmann::json> findings_at(const nlohmann::json& report,
                                        const std::string& detector,
                                        const std::string& local,
                                        int pid) {
  std::vector<nlohmann::json> out;
  for (const auto& f : findings_of(report, detector, std::nullopt, pid)) {
    if (f["subject"].value("local", std::string()) == local) {
      out.push_back(f);
    }
  }
  return out;
}

// Kills and reaps a forked child at scope exit (even when an assertion fails).
struct ChildGuard {
  pid_t pid = -1;
  ChildGuard() = default;
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ChildGuard(ChildGuard&&) = delete;
  ChildGuard& operator=(ChildGuard&&) = delete;

  ~ChildGuard() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

} // namespace

TEST_CASE("lab: a UDP receiver that never reads is udp_drops, critical, naming its process",
          "[lab]") {
  Lab lab;
  Sock receiver;
  lab.ns().run_in([&] {
    receiver = udp_bound(7201);
    const int small = 4096; // the kernel doubles it: 8192
    ::setsockopt(receiver.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  });
  lab.collect(6, 1.0, [] {
    udp_send(7201, 100, 20); // ~1000 datagrams/s, far more than 8 KiB holds
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  lab.keep_sample("udp-drops");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "udp_drops", 7201, getpid());
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "critical");
  CHECK(found[0]["subject"]["proto"] == "udp");
  CHECK(found[0]["evidence"]["drops_total"].get<int64_t>() > 100);
  CHECK(found[0]["evidence"]["drop_intervals"].get<int>() >= 4);
  CHECK(found[0]["evidence"]["series"].size() >= 5);
  // One cause, one finding: the namespace's RcvbufErrors are this socket's drops, not a second
  // finding.
  size_t udp = 0;
  for (const auto& f : report.at("findings")) {
    udp += f["detector"] == "udp_drops" ? 1U : 0U;
  }
  CHECK(udp == 1);
}

TEST_CASE("lab: a unix listener that never accepts is unix_backlog, critical when full", "[lab]") {
  Lab lab;
  const std::string path = lab.dir() + "/app.sock";
  Sock listener;
  std::vector<Sock> clients;
  int connected = 0;
  lab.ns().run_in([&] {
    listener = unix_listener(path, 2);
    for (int i = 0; i < 6; ++i) {
      connected += unix_connect_nonblocking(path, clients) ? 1 : 0; // later ones: EAGAIN
    }
  });
  CHECK(connected == 3); // backlog 2 holds 2 + 1
  lab.collect(6, 1.0);
  lab.keep_sample("unix-listener-backlog");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_at(report, "unix_backlog", path, getpid());
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "critical");
  CHECK(found[0]["subject"]["state"] == "LISTEN");
  CHECK(found[0]["subject"]["proto"] == "u_str");
  const auto& series = found[0]["evidence"]["series"];
  REQUIRE(series.size() == 6);
  for (const auto& p : series) {
    CHECK(p["queue"] == 3);
    CHECK(p["max_backlog"] == 2);
  }
}

TEST_CASE("lab: a unix datagram receiver that never reads shows at the sender, unix_backlog",
          "[lab]") {
  Lab lab;
  lab.sysctl("net.unix.max_dgram_qlen=10"); // per netns; read when the receiver is created
  const std::string path = lab.dir() + "/log.sock";
  Sock receiver;
  Sock sender;
  int sent = 0;
  lab.ns().run_in([&] {
    receiver = unix_dgram_bound(path);
    sender = Sock(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    socklen_t len = 0;
    const sockaddr_un a = unix_addr(path, len);
    if (::connect(sender.fd(), reinterpret_cast<const sockaddr*>(&a), len) != 0) {
      sys_fail("connect unix dgram");
    }
    const std::vector<char> msg(200, 'l');
    while (sent < 100 && ::send(sender.fd(), msg.data(), msg.size(), MSG_DONTWAIT) > 0) {
      ++sent;
    }
  });
  CHECK(sent == 11); // qlen 10 admits 11, then EAGAIN
  lab.collect(6, 1.0);
  lab.keep_sample("unix-dgram-backlog");
  const auto dgram_senders = [](const nlohmann::json& report) {
    std::vector<nlohmann::json> out;
    for (const auto& f : findings_of(report, "unix_backlog", std::nullopt, getpid())) {
      if (f["subject"].value("kind", "") == "dgram_sender") {
        out.push_back(f);
      }
    }
    return out;
  };
  // A sender's Send-Q non-empty counts from unix_backlog.dgram_seconds (120 s): 5 s is no
  // finding yet (a 2-minute capture would cost too much here).
  const auto report = lab.report();
  INFO(summarize(report));
  CHECK(dgram_senders(report).empty());
  // The same evidence with the bar at 4 s: the rule names the sender, the receiver's path and
  // its process.
  const auto lowered = lab.report("--set unix_backlog.dgram_seconds=4");
  INFO(summarize(lowered));
  const auto found = dgram_senders(lowered);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "warning");
  CHECK(found[0]["subject"]["proto"] == "u_dgr");
  CHECK(found[0]["subject"]["peer_path"] == path);
  CHECK(found[0]["subject"]["peer_pid"] == getpid());
  CHECK(found[0]["evidence"]["max_dgram_qlen"] == 10);
  const auto& series = found[0]["evidence"]["series"];
  REQUIRE(series.size() == 6);
  for (const auto& p : series) {
    CHECK(p["tx_queue"].get<int>() > 11 * 200);
  }
}

TEST_CASE("lab: an unread unix stream connection is unix_backlog", "[lab]") {
  Lab lab;
  Sock reader;
  Sock writer;
  lab.ns().run_in([&] {
    std::array<int, 2> sv{};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv.data()) != 0) {
      sys_fail("socketpair");
    }
    reader = Sock(sv[0]);
    writer = Sock(sv[1]);
    send_all(writer, 1000); // never read
  });
  lab.collect(6, 1.0);
  lab.keep_sample("unix-stream-unread");
  const auto streams = [](const nlohmann::json& report) {
    std::vector<nlohmann::json> out;
    for (const auto& f : findings_of(report, "unix_backlog", std::nullopt, getpid())) {
      if (f["subject"].value("kind", "") == "stream") {
        out.push_back(f);
      }
    }
    return out;
  };
  // An unchanged Recv-Q counts from unix_backlog.stream_seconds (120 s): 5 s is no finding yet
  // (a 2-minute capture would cost too much here).
  const auto report = lab.report();
  INFO(summarize(report));
  CHECK(streams(report).empty());
  // The same evidence with the bar at 4 s: the rule finds the unread end and its process.
  const auto lowered = lab.report("--set unix_backlog.stream_seconds=4");
  INFO(summarize(lowered));
  const auto found = streams(lowered);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "warning");
  CHECK(found[0]["subject"]["proto"] == "u_str");
  CHECK(found[0]["subject"]["inode"] == inode_of(reader));
  CHECK(found[0]["subject"]["peer_pid"] == getpid());
  CHECK(found[0]["evidence"]["shape"] == "stream_stalled");
  const auto& series = found[0]["evidence"]["series"];
  REQUIRE(series.size() == 6);
  for (const auto& p : series) {
    CHECK(p["rx_queue"] == 1000);
  }
}

TEST_CASE("lab: a thread that leaks socketpairs is socket_leak, naming the process", "[lab]") {
  Lab lab;
  std::mutex mu;
  std::vector<Sock> leaked;
  lab.collect(6, 1.0, [&] {
    std::array<int, 2> sv{};
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv.data()) == 0) {
      const std::lock_guard<std::mutex> lock(mu);
      leaked.emplace_back(sv[0]);
      leaked.emplace_back(sv[1]);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(33)); // ~30 pairs per second
  });
  lab.keep_sample("socket-leak");
  const auto report = lab.report();
  INFO(summarize(report));
  INFO("leaked " << leaked.size() << " sockets");
  const auto found = findings_of(report, "socket_leak", std::nullopt, getpid());
  REQUIRE(found.size() == 1);
  CHECK(severity_rank(found[0]["severity"]) >= 1);
  CHECK(found[0]["evidence"]["shape"] == "growing");
  CHECK(found[0]["evidence"]["growth"].get<double>() >= 100);
  CHECK(found[0]["evidence"]["breakdown"]["u_str ESTAB"].get<int>() >= 100);
  CHECK(found[0]["evidence"]["hint"].get<std::string>().find("unix") != std::string::npos);
  CHECK(found[0]["evidence"]["series"].size() >= 5);
}

TEST_CASE("lab: a server at its fd limit with a full listener is socket_leak EMFILE (E12)",
          "[lab]") {
  Lab lab;
  constexpr uint16_t k_port = 7203;
  // Everything the child needs is prepared before fork(): it only makes system calls.
  const std::string ns_path = lab.ns().path();
  const sockaddr_in addr = loopback4(k_port);
  ChildGuard child;
  child.pid = ::fork();
  REQUIRE(child.pid >= 0);
  if (child.pid == 0) {
    // The child: a server in the lab namespace with RLIMIT_NOFILE 32 that accepts and never
    // closes, so it hits EMFILE and its listener's accept queue fills.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    const int nsfd = ::open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || ::setns(nsfd, CLONE_NEWNET) != 0) {
      ::_exit(2);
    }
    ::close(nsfd);
    ::close_range(3, ~0U, 0); // none of the test's sockets; keeps 0-2
    const rlimit lim{32, 32};
    ::setrlimit(RLIMIT_NOFILE, &lim);
    const int l = ::socket(AF_INET, SOCK_STREAM, 0);
    const int one = 1;
    ::setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(l, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0
        || ::listen(l, 8) != 0) {
      ::_exit(3);
    }
    for (;;) {
      if (::accept(l, nullptr, nullptr) < 0) {
        const timespec ts{0, 20'000'000};
        ::nanosleep(&ts, nullptr);
      }
    }
  }
  // Wait until the child listens, then connect more clients than it can take.
  std::vector<Sock> clients;
  bool listening = false;
  for (int i = 0; i < 100 && !listening; ++i) {
    listening =
        lab.ns().exec("ss -Hltn 'sport = :" + std::to_string(k_port) + "' | grep -q LISTEN") == 0;
    if (!listening) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  REQUIRE(listening);
  // Connect one client at a time and let the child take it (or, once it is at its fd limit,
  // let it land in the accept queue) before the next: a burst of connects overruns the small
  // queue before the child accepts anything, the kernel drops those handshakes' final ACKs, and
  // the clients sit ESTABLISHED with nothing on the server side. Paced, the child reaches 32 fds
  // and the queue fills to max backlog + 1 = 9; the last clients overflow it.
  const std::string fds_dir = "/proc/" + std::to_string(child.pid) + "/fd";
  const auto child_fds = [&] {
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(fds_dir, ec);
         !ec && it != std::filesystem::directory_iterator();
         it.increment(ec)) {
      ++n;
    }
    return n;
  };
  const auto listen_queue = [&] {
    // "LISTEN 9 8 127.0.0.1:7203 ...": state, accept queue, max backlog.
    const CmdResult ss = run_cmd_output("ip netns exec " + lab.ns().name()
                                        + " ss -Hltn 'sport = :" + std::to_string(k_port) + "'");
    std::istringstream line(ss.out);
    std::string st;
    int queue = -1;
    line >> st >> queue;
    return st == "LISTEN" ? queue : -1;
  };
  lab.ns().run_in([&] {
    for (int i = 0; i < 40; ++i) {
      const std::size_t before = child_fds();
      Sock s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
      (void)::connect(s.fd(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
      clients.push_back(std::move(s));
      // Until the child is at its limit, wait (up to 2 s) for it to accept this one.
      for (int w = 0; w < 200 && before < 32 && child_fds() == before; ++w) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      if (child_fds() >= 32) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  });
  std::string state;
  bool ready = false;
  for (int i = 0; i < 50 && !ready; ++i) {
    const std::size_t fds = child_fds();
    const int queue = listen_queue();
    state = "child fds " + std::to_string(fds) + ", accept queue " + std::to_string(queue);
    ready = fds == 32 && queue == 9;
    if (!ready) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  INFO(state);
  REQUIRE(ready);
  lab.collect(6, 1.0);
  lab.keep_sample("socket-leak-emfile");
  const auto report = lab.report();
  INFO(summarize(report));
  const auto found = findings_of(report, "socket_leak", std::nullopt, child.pid);
  REQUIRE(found.size() == 1);
  CHECK(found[0]["severity"] == "critical");
  CHECK(found[0]["evidence"]["shape"] == "at_fd_limit");
  CHECK(found[0]["evidence"]["nofile_soft"] == 32);
  REQUIRE(found[0]["evidence"].contains("emfile_listener"));
  CHECK(endpoint_port(found[0]["evidence"]["emfile_listener"]["local"].get<std::string>())
        == k_port);
  CHECK(found[0]["summary"].get<std::string>().find("EMFILE") != std::string::npos);
}
