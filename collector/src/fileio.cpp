#include <sockrewind/collect/fileio.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

namespace sockrewind::collect {

ReadResult read_whole_file(const char* path, int dirfd) {
  ReadResult r;
  const int fd = ::openat(dirfd, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    r.error = errno;
    return r;
  }
  constexpr size_t k_chunk = size_t{64} * 1024;
  size_t used = 0;
  for (;;) {
    if (r.data.size() < used + k_chunk) {
      r.data.resize(used + k_chunk);
    }
    const ssize_t n = ::read(fd, r.data.data() + used, k_chunk);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      r.error = errno;
      break;
    }
    if (n == 0) {
      break;
    }
    used += static_cast<size_t>(n);
  }
  ::close(fd);
  r.data.resize(used);
  return r;
}

bool parse_u64(std::string_view s, uint64_t& out) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  if (s.empty()) {
    return false;
  }
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

} // namespace sockrewind::collect
