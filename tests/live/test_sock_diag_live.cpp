// Live NETLINK_SOCK_DIAG dumps in a private network namespace (root only): queues of an
// un-accepting listener, UDP truesize, unix backlog, namespace isolation, RAW availability and
// the cost of a large dump.
//
// Sockets are created and dumped on TestNetns::run_in's thread; the assertions run on the
// test's main thread afterwards (Catch2 2 is not thread-safe).

#include "live/netns.hpp"
#include "support.hpp"

#include <sockrewind/collect/sock_diag.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace {

namespace sc = sockrewind::collect;
using sc::DiagDumpState;
using sc::SocketRow;

[[noreturn]] void fail(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

// Owns the fds a test creates; closes them at scope exit.
class Fds {
public:
  Fds() = default;
  Fds(const Fds&) = delete;
  Fds& operator=(const Fds&) = delete;
  Fds(Fds&&) = delete;
  Fds& operator=(Fds&&) = delete;

  ~Fds() {
    for (const int fd : m_fds) {
      ::close(fd);
    }
  }

  int add(int fd) {
    if (fd < 0) {
      fail("socket");
    }
    m_fds.push_back(fd);
    return fd;
  }

private:
  std::vector<int> m_fds;
};

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int bind_loopback(int fd) {
  const sockaddr_in a = loopback(0);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0) {
    fail("bind");
  }
  return fd;
}

uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof(a);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    fail("getsockname");
  }
  return ntohs(a.sin_port);
}

uint64_t inode_of(int fd) {
  struct stat st {};

  if (::fstat(fd, &st) != 0) {
    fail("fstat");
  }
  return st.st_ino;
}

void connect_loopback(int fd, uint16_t port) {
  const sockaddr_in a = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0) {
    fail("connect");
  }
}

// An abstract unix address (leading NUL, no trailing NUL) and its length.
socklen_t abstract_addr(const std::string& name, sockaddr_un& a) {
  a = sockaddr_un{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
}

const SocketRow* find_row(const std::vector<SocketRow>& rows, auto pred) {
  const auto it = std::find_if(rows.begin(), rows.end(), pred);
  return it == rows.end() ? nullptr : &*it;
}

// What one run_in collected, checked on the main thread.
struct NsDump {
  uint16_t tcp_port = 0;
  uint16_t udp_port = 0;
  uint64_t listener_inode = 0;
  uint64_t udp_inode = 0;
  uint64_t unix_inode = 0;
  std::string unix_name;
  std::vector<SocketRow> tcp;
  std::vector<SocketRow> udp;
  std::vector<SocketRow> unx;
  DiagDumpState tcp_state;
  DiagDumpState udp_state;
  DiagDumpState unix_state;
};

bool listener_full(const std::vector<SocketRow>& rows, uint16_t port, uint32_t pending) {
  return find_row(rows,
                  [&](const SocketRow& r) {
                    return r.local_port == port && r.state == sc::k_tcp_listen
                           && r.rx_queue == pending;
                  })
         != nullptr;
}

} // namespace

TEST_CASE("live::sock_diag reports queues, backlogs and peers in a private netns",
          "[live][sock_diag]") {
  sockrewind::test::require_root("live::sock_diag");
  sockrewind::test::TestNetns ns;
  Fds fds;
  NsDump d;
  d.unix_name = "sockrewind-live-" + std::to_string(::getpid());

  ns.run_in([&] {
    // TCP: backlog 5, three clients whose connections are never accepted.
    const int l = bind_loopback(fds.add(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)));
    if (::listen(l, 5) != 0) {
      fail("listen");
    }
    d.tcp_port = local_port(l);
    d.listener_inode = inode_of(l);
    for (int i = 0; i < 3; ++i) {
      connect_loopback(fds.add(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)), d.tcp_port);
    }

    // UDP: three unread 100-byte datagrams.
    const int u = bind_loopback(fds.add(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)));
    d.udp_port = local_port(u);
    d.udp_inode = inode_of(u);
    const int s = fds.add(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    const sockaddr_in to = loopback(d.udp_port);
    const std::vector<char> payload(100, 'x');
    for (int i = 0; i < 3; ++i) {
      if (::sendto(s,
                   payload.data(),
                   payload.size(),
                   0,
                   reinterpret_cast<const sockaddr*>(&to),
                   sizeof(to))
          != 100) {
        fail("sendto");
      }
    }

    // Unix: stream listener, backlog 4, two pending connections.
    sockaddr_un ua{};
    const socklen_t ulen = abstract_addr(d.unix_name, ua);
    const int ul = fds.add(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (::bind(ul, reinterpret_cast<const sockaddr*>(&ua), ulen) != 0 || ::listen(ul, 4) != 0) {
      fail("unix bind/listen");
    }
    d.unix_inode = inode_of(ul);
    for (int i = 0; i < 2; ++i) {
      const int c = fds.add(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (::connect(c, reinterpret_cast<const sockaddr*>(&ua), ulen) != 0) {
        fail("unix connect");
      }
    }

    // The diag socket sees the netns of this thread. The server side of a loopback handshake
    // can lag connect() by a softirq: retry briefly until all three children are queued.
    sc::DiagSocket diag;
    for (int attempt = 0; attempt < 100; ++attempt) {
      d.tcp.clear();
      d.tcp_state = diag.dump_inet(sc::k_af_inet, sc::k_ipproto_tcp, d.tcp);
      if (d.tcp_state.error != 0 || listener_full(d.tcp, d.tcp_port, 3)) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    d.udp_state = diag.dump_inet(sc::k_af_inet, sc::k_ipproto_udp, d.udp);
    d.unix_state = diag.dump_unix(d.unx);
  });

  // TCP
  CHECK(d.tcp_state.done);
  CHECK(d.tcp_state.error == 0);
  CHECK(d.tcp_state.issues.empty());
  const SocketRow* listener = find_row(d.tcp, [&](const SocketRow& r) {
    return r.local_port == d.tcp_port && r.state == sc::k_tcp_listen;
  });
  REQUIRE(listener != nullptr);
  CHECK(listener->rx_queue == 3U); // accept queue
  CHECK(listener->tx_queue == 5U); // backlog
  CHECK(listener->inode == d.listener_inode);
  CHECK(listener->family == sc::k_af_inet);
  CHECK(listener->type == sc::k_sock_stream);
  CHECK(listener->cookie.has_value());
  const auto children = std::count_if(d.tcp.begin(), d.tcp.end(), [&](const SocketRow& r) {
    return r.local_port == d.tcp_port && r.state == sc::k_tcp_established && r.inode == 0;
  });
  CHECK(children == 3);
  const auto clients = std::count_if(d.tcp.begin(), d.tcp.end(), [&](const SocketRow& r) {
    return r.remote_port == d.tcp_port && r.state == sc::k_tcp_established && r.inode != 0
           && !r.tcp_info.empty() && !r.cong.empty();
  });
  CHECK(clients == 3);

  // UDP
  CHECK(d.udp_state.done);
  CHECK(d.udp_state.error == 0);
  const SocketRow* udp =
      find_row(d.udp, [&](const SocketRow& r) { return r.local_port == d.udp_port; });
  REQUIRE(udp != nullptr);
  CHECK(udp->inode == d.udp_inode);
  CHECK(udp->type == sc::k_sock_dgram);
  REQUIRE(udp->rx_queue.has_value());
  CHECK(*udp->rx_queue >= 300U); // truesize of 3 x 100 B (2 496 on 6.18)
  CHECK(udp->skmem_count > 0);

  // Unix
  CHECK(d.unix_state.done);
  CHECK(d.unix_state.error == 0);
  const SocketRow* ul =
      find_row(d.unx, [&](const SocketRow& r) { return r.inode == d.unix_inode; });
  REQUIRE(ul != nullptr);
  CHECK(ul->state == sc::k_tcp_listen);
  CHECK(ul->path == "@" + d.unix_name);
  CHECK(ul->rx_queue == 2U); // pending connections
  CHECK(ul->tx_queue == 4U); // backlog
  const auto unix_clients = std::count_if(d.unx.begin(), d.unx.end(), [](const SocketRow& r) {
    return r.state == sc::k_tcp_established && r.peer_inode.has_value();
  });
  CHECK(unix_clients == 2);

  // Namespace isolation: a diag socket created on this (host-netns) thread sees none of it.
  // Ports can coincide across namespaces; cookies and inodes cannot.
  std::set<uint64_t> ns_cookies;
  for (const auto* rows : {&d.tcp, &d.udp, &d.unx}) {
    for (const SocketRow& r : *rows) {
      if (r.cookie) {
        ns_cookies.insert(*r.cookie);
      }
    }
  }
  REQUIRE_FALSE(ns_cookies.empty());
  sc::DiagSocket host;
  std::vector<SocketRow> host_rows;
  CHECK(host.dump_inet(sc::k_af_inet, sc::k_ipproto_tcp, host_rows).error == 0);
  CHECK(host.dump_inet(sc::k_af_inet, sc::k_ipproto_udp, host_rows).error == 0);
  CHECK(host.dump_unix(host_rows).error == 0);
  for (const SocketRow& r : host_rows) {
    CHECK_FALSE(ns_cookies.contains(r.cookie.value_or(0)));
    CHECK((r.inode == 0
           || (r.inode != d.listener_inode && r.inode != d.udp_inode && r.inode != d.unix_inode)));
    CHECK_FALSE(r.path == "@" + d.unix_name);
  }
}

TEST_CASE("live::sock_diag RAW dump succeeds or reports ENOENT without throwing",
          "[live][sock_diag]") {
  sockrewind::test::require_root("live::sock_diag");
  sockrewind::test::TestNetns ns;
  Fds fds;
  std::vector<SocketRow> rows;
  DiagDumpState state;
  uint64_t raw_inode = 0;
  ns.run_in([&] {
    const int r = fds.add(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP));
    raw_inode = inode_of(r);
    sc::DiagSocket diag;
    state = diag.dump_inet(sc::k_af_inet, sc::k_ipproto_raw, rows);
    // The socket stays usable after a failed dump.
    std::vector<SocketRow> tcp;
    const DiagDumpState again = diag.dump_inet(sc::k_af_inet, sc::k_ipproto_tcp, tcp);
    if (!again.done || again.error != 0) {
      throw std::runtime_error("TCP dump after the RAW dump failed");
    }
  });
  CHECK(state.done);
  CHECK((state.error == 0 || state.error == -ENOENT));
  if (state.error == 0) {
    // raw_diag present: the ICMP socket is listed, its protocol as the local "port".
    const SocketRow* raw = find_row(rows, [&](const SocketRow& r) { return r.inode == raw_inode; });
    REQUIRE(raw != nullptr);
    CHECK(raw->type == sc::k_sock_raw);
    CHECK(raw->proto == sc::k_ipproto_raw);
    CHECK(raw->local_port == IPPROTO_ICMP);
  } else {
    CHECK(rows.empty());
    WARN("this kernel has no raw_diag: the AF_INET RAW dump ended with -ENOENT");
  }
}

TEST_CASE("live::sock_diag DiagSocket is movable and reusable", "[live][sock_diag]") {
  sockrewind::test::require_root("live::sock_diag");
  sockrewind::test::TestNetns ns;
  Fds fds;
  std::vector<DiagDumpState> states;
  size_t rows_first = 0;
  size_t rows_second = 0;
  ns.run_in([&] {
    const int l = bind_loopback(fds.add(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)));
    if (::listen(l, 1) != 0) {
      fail("listen");
    }
    sc::DiagSocket a;
    std::vector<SocketRow> rows;
    states.push_back(a.dump_inet(sc::k_af_inet, sc::k_ipproto_tcp, rows));
    rows_first = rows.size();
    sc::DiagSocket b(std::move(a));
    rows.clear();
    states.push_back(b.dump_inet(sc::k_af_inet, sc::k_ipproto_tcp, rows));
    rows_second = rows.size();
    states.push_back(a.dump_unix(rows)); // NOLINT(bugprone-use-after-move): moved-from
    sc::DiagSocket c;
    c = std::move(b);
    rows.clear();
    states.push_back(c.dump_inet(sc::k_af_inet6, sc::k_ipproto_tcp, rows));
  });
  REQUIRE(states.size() == 4);
  CHECK(states[0].done);
  CHECK(states[0].error == 0);
  CHECK(rows_first == 1);
  CHECK(states[1].done);
  CHECK(rows_second == 1);
  CHECK_FALSE(states[2].done);
  CHECK(states[2].error == -EBADF);
  CHECK(states[3].done);
  CHECK(states[3].error == 0);
}

TEST_CASE("live::sock_diag dumps 10000 TCP sockets completely", "[live][sock_diag]") {
  sockrewind::test::require_root("live::sock_diag");
  constexpr int k_pairs = 5000;
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < 2 * k_pairs + 100) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 2 * k_pairs + 100);
    (void)::setrlimit(RLIMIT_NOFILE, &lim);
    (void)::getrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < 2 * k_pairs + 100) {
      sockrewind::test::skip_test("RLIMIT_NOFILE too low for 10000 sockets");
    }
  }
  sockrewind::test::TestNetns ns;
  Fds fds;
  std::vector<SocketRow> rows;
  DiagDumpState state;
  double best_ms = 1e9;
  uint16_t port = 0;
  ns.run_in([&] {
    const int l = bind_loopback(fds.add(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)));
    if (::listen(l, 1024) != 0) {
      fail("listen");
    }
    port = local_port(l);
    for (int i = 0; i < k_pairs; ++i) {
      connect_loopback(fds.add(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)), port);
      fds.add(::accept4(l, nullptr, nullptr, SOCK_CLOEXEC));
    }
    sc::DiagSocket diag;
    for (int run = 0; run < 3; ++run) {
      rows.clear();
      const auto t0 = std::chrono::steady_clock::now();
      state = diag.dump_inet(sc::k_af_inet, sc::k_ipproto_tcp, rows);
      const std::chrono::duration<double, std::milli> dt = std::chrono::steady_clock::now() - t0;
      best_ms = std::min(best_ms, dt.count());
    }
  });
  CHECK(state.done);
  CHECK(state.error == 0);
  CHECK(state.issues.empty());
  CHECK(rows.size() == 2 * k_pairs + 1);
  std::set<uint64_t> cookies;
  size_t with_info = 0;
  for (const SocketRow& r : rows) {
    cookies.insert(r.cookie.value_or(0));
    if (!r.tcp_info.empty()) {
      ++with_info;
    }
  }
  CHECK(cookies.size() == rows.size());
  CHECK(with_info == rows.size());
  WARN("sock_diag TCP dump of " << rows.size() << " sockets (INFO+SKMEMINFO+CONG): best of 3 "
                                << best_ms << " ms");
  // Speed is measured by tests/bench/bench_collect.sh, not asserted here.
}
