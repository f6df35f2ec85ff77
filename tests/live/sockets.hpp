#pragma once
// Small RAII helpers to create real sockets on loopback for live tests.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace sockrewind::test {

class Sock {
public:
  Sock() = default;

  explicit Sock(int fd) : m_fd(fd) {}

  Sock(const Sock&) = delete;
  Sock& operator=(const Sock&) = delete;

  Sock(Sock&& o) noexcept : m_fd(std::exchange(o.m_fd, -1)) {}

  Sock& operator=(Sock&& o) noexcept {
    if (this != &o) {
      reset();
      m_fd = std::exchange(o.m_fd, -1);
    }
    return *this;
  }

  ~Sock() { reset(); }

  int fd() const { return m_fd; }

  void reset() {
    if (m_fd >= 0) {
      ::close(m_fd);
      m_fd = -1;
    }
  }

private:
  int m_fd = -1;
};

[[noreturn]] inline void sys_fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

inline sockaddr_in loopback4(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

inline Sock tcp_listener(uint16_t port, int backlog) {
  Sock s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const int one = 1;
  ::setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  const sockaddr_in a = loopback4(port);
  if (::bind(s.fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    sys_fail("bind");
  }
  if (::listen(s.fd(), backlog) != 0) {
    sys_fail("listen");
  }
  return s;
}

inline Sock tcp_connect(uint16_t port) {
  Sock s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in a = loopback4(port);
  if (::connect(s.fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    sys_fail("connect");
  }
  return s;
}

inline Sock tcp_accept(const Sock& listener) {
  Sock s(::accept4(listener.fd(), nullptr, nullptr, SOCK_CLOEXEC));
  if (s.fd() < 0) {
    sys_fail("accept");
  }
  return s;
}

inline void send_all(const Sock& s, size_t bytes) {
  const std::vector<char> buf(bytes, 'x');
  size_t off = 0;
  while (off < bytes) {
    const ssize_t n = ::send(s.fd(), buf.data() + off, bytes - off, MSG_NOSIGNAL);
    if (n <= 0) {
      sys_fail("send");
    }
    off += static_cast<size_t>(n);
  }
}

inline Sock udp_bound(uint16_t port) {
  Sock s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const sockaddr_in a = loopback4(port);
  if (::bind(s.fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    sys_fail("bind udp");
  }
  return s;
}

inline void udp_send(uint16_t port, size_t bytes, int count) {
  Sock s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  const sockaddr_in a = loopback4(port);
  const std::vector<char> buf(bytes, 'u');
  for (int i = 0; i < count; ++i) {
    if (::sendto(s.fd(), buf.data(), bytes, 0, reinterpret_cast<const sockaddr*>(&a), sizeof a)
        < 0) {
      sys_fail("sendto");
    }
  }
}

inline sockaddr_un unix_addr(const std::string& path, socklen_t& len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  path.copy(a.sun_path, sizeof(a.sun_path) - 1);
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return a;
}

inline Sock unix_listener(const std::string& path, int backlog) {
  ::unlink(path.c_str());
  Sock s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  socklen_t len = 0;
  const sockaddr_un a = unix_addr(path, len);
  if (::bind(s.fd(), reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    sys_fail("bind unix");
  }
  if (::listen(s.fd(), backlog) != 0) {
    sys_fail("listen unix");
  }
  return s;
}

inline Sock unix_connect(const std::string& path) {
  Sock s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  socklen_t len = 0;
  const sockaddr_un a = unix_addr(path, len);
  if (::connect(s.fd(), reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    sys_fail("connect unix");
  }
  return s;
}

inline uint16_t local_port(const Sock& s) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  ::getsockname(s.fd(), reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

} // namespace sockrewind::test
