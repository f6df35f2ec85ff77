// sockload [--unread N | --send N | --churn R] PORT PAIRS: a load generator for
// tests/bench/bench_collect.sh, bench_flood.sh and bench_archive.sh (not a test).
//
// In the current network namespace it opens one TCP listener on 127.0.0.1:PORT and PAIRS client
// connections to it, accepts them all (2*PAIRS established sockets + 1 listener), prints "ready"
// on stdout, then sleeps until SIGTERM/SIGINT. The connections stay idle. With --unread N
// (1..4096), every client writes N bytes once as soon as its connect completes and nobody ever
// reads them: "ready" is printed only when every accepted socket holds N unread bytes (FIONREAD),
// so each accepted socket shows Recv-Q = N. After "ready", --send N (1..65536) makes every client
// send N bytes once a second, which the accepted side reads (counters move, queues stay empty),
// and --churn R (1..10000) opens and closes R short connections a second to the same listener,
// client closing first, so about 60*R client sockets sit in TIME-WAIT. It only ever uses
// 127.0.0.1. Exit 0 on a signal, 1 with one error line on stderr on failure, 2 on a usage error.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace {

volatile sig_atomic_t g_stop = 0;

void on_signal(int /*sig*/) {
  g_stop = 1;
}

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "sockload: error: %s: %s\n", what.c_str(), std::strerror(errno));
  std::_Exit(1);
}

[[noreturn]] void die_msg(const std::string& what) {
  std::fprintf(stderr, "sockload: error: %s\n", what.c_str());
  std::_Exit(1);
}

bool parse_uint(std::string_view s, unsigned long& out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && p == s.data() + s.size();
}

// Raises the soft RLIMIT_NOFILE to the hard limit; returns the resulting soft limit.
rlim_t raise_nofile() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    die("getrlimit");
  }
  lim.rlim_cur = lim.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) {
    die("setrlimit");
  }
  return lim.rlim_cur;
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

double now_s() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Accepts every pending connection on `lfd` (non-blocking) into `accepted`.
void accept_all(int lfd, std::vector<int>& accepted) {
  for (;;) {
    const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == ECONNABORTED) {
        return; // EAGAIN == EWOULDBLOCK on Linux
      }
      if (errno == EINTR) {
        continue;
      }
      die("accept4");
    }
    accepted.push_back(fd);
  }
}

// Writes all of `data` on the freshly connected non-blocking socket `fd` in one call; the send
// buffer of a new connection (tcp_wmem default 16 KiB) has room for 4 KiB.
void write_once(int fd, const std::vector<char>& data) {
  ssize_t n = 0;
  do {
    n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    die("send on a new client connection");
  }
  if (static_cast<std::size_t>(n) != data.size()) {
    die_msg("short send on a new client connection: " + std::to_string(n) + " of "
            + std::to_string(data.size()) + " bytes");
  }
}

// Number of accepted sockets that do not hold `want` unread bytes yet.
std::size_t short_of(const std::vector<int>& accepted, std::size_t want) {
  std::size_t missing = 0;
  for (const int fd : accepted) {
    int n = 0;
    if (::ioctl(fd, FIONREAD, &n) != 0) {
      die("ioctl FIONREAD");
    }
    missing += static_cast<std::size_t>(n) < want ? 1U : 0U;
  }
  return missing;
}

// Reads and discards whatever the accepted sockets hold (non-blocking).
void drain(const std::vector<int>& accepted) {
  static char buf[65536];
  for (const int fd : accepted) {
    while (::recv(fd, buf, sizeof buf, 0) > 0) {
    }
  }
}

// --send/--churn after "ready": one loop of 10 ms ticks until SIGTERM/SIGINT.
void run_traffic(int lfd,
                 const sockaddr_in& addr,
                 const std::vector<int>& clients,
                 const std::vector<int>& accepted,
                 unsigned long send_bytes,
                 unsigned long churn_rate) {
  const std::vector<char> chunk(send_bytes, 'y');
  constexpr double k_tick_s = 0.01;
  double next_send = now_s();
  double next_drain = next_send + 0.2;
  double next_churn = next_send;
  double churn_due = 0; // connections owed (fractions carried between ticks)
  std::vector<int> open_clients;
  std::vector<int> scratch;
  while (g_stop == 0) {
    const double t = now_s();
    if (send_bytes > 0 && t >= next_send) {
      for (const int fd : clients) {
        // A full send buffer (EAGAIN) just skips this second for that client.
        (void)::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      next_send += 1.0;
    }
    if (send_bytes > 0 && t >= next_drain) {
      drain(accepted);
      next_drain += 0.5;
    }
    if (churn_rate > 0 && t >= next_churn) {
      // The previous tick's clients close first (they go to TIME-WAIT), then the server sides.
      for (const int fd : open_clients) {
        ::close(fd);
      }
      open_clients.clear();
      scratch.clear();
      accept_all(lfd, scratch);
      for (const int fd : scratch) {
        ::close(fd);
      }
      churn_due += static_cast<double>(churn_rate) * k_tick_s;
      for (; churn_due >= 1.0; churn_due -= 1.0) {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
          die("socket (churn)");
        }
        if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0
            && errno != EINPROGRESS) {
          ::close(fd); // e.g. EADDRNOTAVAIL when every port is in TIME-WAIT: try next tick
          continue;
        }
        open_clients.push_back(fd);
      }
      next_churn += k_tick_s;
    }
    ::poll(nullptr, 0, 2);
  }
}

} // namespace

int main(int argc, char** argv) {
  unsigned long port = 0;
  unsigned long pairs = 0;
  unsigned long unread = 0;
  unsigned long send_bytes = 0;
  unsigned long churn_rate = 0;
  int arg = 1;
  if (argc == 5) {
    const std::string_view opt = argv[1];
    unsigned long v = 0;
    const bool num = parse_uint(argv[2], v) && v > 0;
    if (opt == "--unread" && num && v <= 4096) {
      unread = v;
    } else if (opt == "--send" && num && v <= 65536) {
      send_bytes = v;
    } else if (opt == "--churn" && num && v <= 10000) {
      churn_rate = v;
    } else {
      std::fprintf(stderr,
                   "sockload: --unread takes 1..4096 bytes, --send 1..65536 bytes, --churn "
                   "1..10000 connections a second\n");
      return 2;
    }
    arg = 3;
  }
  if (argc != arg + 2 || !parse_uint(argv[arg], port) || port == 0 || port > 65535
      || !parse_uint(argv[arg + 1], pairs) || pairs == 0) {
    std::fprintf(stderr,
                 "usage: sockload [--unread N | --send N | --churn R] PORT PAIRS   "
                 "(127.0.0.1 only; prints \"ready\")\n");
    return 2;
  }
  const std::vector<char> payload(unread, 'x');
  const rlim_t nofile = raise_nofile();
  // Listener + 2 fds per pair + stdio and a little slack.
  if (static_cast<rlim_t>(2 * pairs + 16) > nofile) {
    die_msg("PAIRS=" + std::to_string(pairs) + " needs " + std::to_string(2 * pairs + 16)
            + " fds but RLIMIT_NOFILE is " + std::to_string(nofile) + "; use several processes");
  }

  struct sigaction sa {};

  sa.sa_handler = on_signal;
  ::sigemptyset(&sa.sa_mask);
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  const sockaddr_in addr = loopback(static_cast<uint16_t>(port));
  const int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) {
    die("socket");
  }
  const int one = 1;
  ::setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(lfd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    die("bind 127.0.0.1:" + std::to_string(port));
  }
  // The kernel caps the backlog at net.core.somaxconn; we drain it between batches anyway.
  if (::listen(lfd, 65535) != 0) {
    die("listen");
  }

  std::vector<int> clients;
  std::vector<int> accepted;
  clients.reserve(pairs);
  accepted.reserve(pairs);

  // Batches of non-blocking connects: each batch is small enough for the accept queue, and is
  // completed (every connect done, every connection accepted) before the next one starts.
  constexpr std::size_t k_batch = 256;
  constexpr double k_deadline_s = 120.0;
  const double start = now_s();
  while (clients.size() < pairs) {
    const std::size_t first = clients.size();
    const std::size_t want = std::min<std::size_t>(k_batch, pairs - first);
    for (std::size_t i = 0; i < want; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) {
        die("socket (client " + std::to_string(first + i) + ")");
      }
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0
          && errno != EINPROGRESS) {
        die("connect (client " + std::to_string(first + i) + ")");
      }
      clients.push_back(fd);
    }
    // Wait for this batch's connects to finish while draining the accept queue.
    std::vector<pollfd> pending;
    for (std::size_t i = first; i < clients.size(); ++i) {
      pending.push_back(pollfd{clients[i], POLLOUT, 0});
    }
    while (!pending.empty() || accepted.size() < clients.size()) {
      if (g_stop != 0) {
        return 0;
      }
      if (now_s() - start > k_deadline_s) {
        die_msg("timed out: " + std::to_string(accepted.size()) + " of " + std::to_string(pairs)
                + " accepted");
      }
      accept_all(lfd, accepted);
      if (pending.empty()) {
        pollfd lp{lfd, POLLIN, 0};
        ::poll(&lp, 1, 100);
        continue;
      }
      const int r = ::poll(pending.data(), pending.size(), 100);
      if (r < 0 && errno != EINTR) {
        die("poll");
      }
      std::vector<pollfd> still;
      for (const pollfd& p : pending) {
        if (p.revents == 0) {
          still.push_back(pollfd{p.fd, POLLOUT, 0});
          continue;
        }
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(p.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
          die("getsockopt SO_ERROR");
        }
        if (err != 0) {
          errno = err;
          die("connect to 127.0.0.1:" + std::to_string(port));
        }
        if (!payload.empty()) {
          write_once(p.fd, payload);
        }
      }
      pending.swap(still);
    }
  }

  // Loopback delivers a segment synchronously, but wait for it rather than assume it.
  while (!payload.empty() && short_of(accepted, payload.size()) != 0) {
    if (g_stop != 0) {
      return 0;
    }
    if (now_s() - start > k_deadline_s) {
      die_msg("timed out: " + std::to_string(short_of(accepted, payload.size())) + " of "
              + std::to_string(pairs) + " accepted sockets lack " + std::to_string(unread)
              + " unread bytes");
    }
    ::poll(nullptr, 0, 100);
  }

  std::printf("ready\n");
  std::fflush(stdout);

  if (send_bytes > 0 || churn_rate > 0) {
    run_traffic(lfd, addr, clients, accepted, send_bytes, churn_rate);
    return 0;
  }
  while (g_stop == 0) {
    ::pause();
  }
  return 0;
}
