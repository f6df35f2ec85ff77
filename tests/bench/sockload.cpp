// sockload [--unread N] PORT PAIRS: a load generator for tests/bench/bench_collect.sh and
// bench_flood.sh (not a test).
//
// In the current network namespace it opens one TCP listener on 127.0.0.1:PORT and PAIRS client
// connections to it, accepts them all (2*PAIRS established sockets + 1 listener), prints "ready"
// on stdout, then sleeps until SIGTERM/SIGINT. The connections stay idle. With --unread N
// (1..4096), every client writes N bytes once as soon as its connect completes and nobody ever
// reads them: "ready" is printed only when every accepted socket holds N unread bytes (FIONREAD),
// so each accepted socket shows Recv-Q = N. It only ever uses 127.0.0.1. Exit 0 on a signal, 1
// with one error line on stderr on failure, 2 on a usage error.

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

} // namespace

int main(int argc, char** argv) {
  unsigned long port = 0;
  unsigned long pairs = 0;
  unsigned long unread = 0;
  int arg = 1;
  if (argc == 5 && std::string_view(argv[1]) == "--unread") {
    if (!parse_uint(argv[2], unread) || unread == 0 || unread > 4096) {
      std::fprintf(stderr, "sockload: --unread takes 1..4096 bytes\n");
      return 2;
    }
    arg = 3;
  }
  if (argc != arg + 2 || !parse_uint(argv[arg], port) || port == 0 || port > 65535
      || !parse_uint(argv[arg + 1], pairs) || pairs == 0) {
    std::fprintf(stderr,
                 "usage: sockload [--unread N] PORT PAIRS   (127.0.0.1 only; prints \"ready\")\n");
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

  while (g_stop == 0) {
    ::pause();
  }
  return 0;
}
