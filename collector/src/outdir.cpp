#include <sockrewind/collect/outdir.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <thread>

namespace sockrewind::collect {

namespace {

std::string errno_text(int err) {
  return std::strerror(err); // NOLINT(concurrency-mt-unsafe)
}

void mkdir_p(const std::string& dir) {
  std::string partial;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = dir.find('/', pos + 1);
    partial = dir.substr(0, pos);
    if (partial.empty()) {
      continue;
    }
    if (::mkdir(partial.c_str(), 0700) != 0 && errno != EEXIST) {
      throw std::runtime_error("cannot create directory " + partial + ": " + errno_text(errno));
    }
  }
}

} // namespace

std::string default_out_dir() {
  if (geteuid() == 0) {
    return "/var/lib/sockrewind";
  }
  const char* state = std::getenv("XDG_STATE_HOME"); // NOLINT(concurrency-mt-unsafe)
  if (state != nullptr && state[0] == '/') {
    return std::string(state) + "/sockrewind";
  }
  const char* home = std::getenv("HOME"); // NOLINT(concurrency-mt-unsafe)
  return std::string(home != nullptr ? home : ".") + "/.local/state/sockrewind";
}

void prepare_out_dir(const std::string& dir, bool strict) {
  if (dir.empty()) {
    throw std::runtime_error("--out is empty");
  }

  struct stat st {};

  if (::stat(dir.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      throw std::runtime_error("cannot use --out " + dir + ": " + errno_text(errno));
    }
    mkdir_p(dir);
    if (::stat(dir.c_str(), &st) != 0) {
      throw std::runtime_error("cannot use --out " + dir + ": " + errno_text(errno));
    }
  }
  if (!S_ISDIR(st.st_mode)) {
    throw std::runtime_error("--out " + dir + " is not a directory");
  }
  if (strict && (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    throw std::runtime_error("refusing --out " + dir
                             + ": group or others can write to it (chmod go-w, or choose "
                               "another directory)");
  }
  if (strict && st.st_uid != 0) {
    throw std::runtime_error("refusing --out " + dir + ": not owned by root");
  }
}

int remove_stale_temp_files(const std::string& dir, TempFiles kind) {
  struct DirCloser {
    void operator()(DIR* d) const noexcept { closedir(d); }
  };

  const std::unique_ptr<DIR, DirCloser> d(opendir(dir.c_str()));
  if (!d) {
    return 0;
  }
  int removed = 0;
  constexpr std::string_view k_marker = ".sqlite.tmp-";
  while (const dirent* de = readdir(d.get())) { // NOLINT(concurrency-mt-unsafe)
    const std::string_view name = de->d_name;
    const size_t pos = name.rfind(k_marker);
    if (name.empty() || name[0] != '.' || pos == std::string_view::npos) {
      continue;
    }
    constexpr std::string_view k_archive = "-hour";
    const bool archive = pos >= k_archive.size()
                         && name.substr(pos - k_archive.size(), k_archive.size()) == k_archive;
    if (archive != (kind == TempFiles::archive)) {
      continue;
    }
    const std::string_view pid = name.substr(pos + k_marker.size());
    if (pid.empty()
        || !std::all_of(pid.begin(), pid.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    // unlinkat never follows: a symlink planted under such a name is removed, not its target.
    if (::unlinkat(dirfd(d.get()), de->d_name, 0) == 0) {
      ++removed;
    }
  }
  return removed;
}

namespace {

// The PID written by the lock's holder, or 0 when unknown.
long lock_holder(int fd) {
  std::array<char, 32> buf{};
  const ssize_t n = ::pread(fd, buf.data(), buf.size() - 1, 0);
  long pid = 0;
  if (n > 0) {
    (void)std::from_chars(buf.data(), buf.data() + n, pid);
  }
  return pid;
}

} // namespace

OutDirLock::OutDirLock(const std::string& dir, double wait_seconds, const char* name)
    : m_path(dir + "/" + name) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now()
                        + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(std::max(0.0, wait_seconds)));
  for (;;) {
    // O_NOFOLLOW: a symlink planted here is refused, never followed; O_NONBLOCK: a FIFO planted
    // here does not hang the open (it is then refused as not a regular file).
    const int fd =
        ::open(m_path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    if (fd < 0) {
      throw std::runtime_error("cannot open lock file " + m_path + ": " + errno_text(errno));
    }

    struct stat own {};

    if (::fstat(fd, &own) != 0 || !S_ISREG(own.st_mode)) {
      ::close(fd);
      throw std::runtime_error("cannot use lock file " + m_path + ": not a regular file");
    }
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
      // A holder unlinks the file before releasing it: make sure the path still names the
      // inode we locked, else take the new one.

      struct stat now {};

      if (::fstatat(AT_FDCWD, m_path.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0
          && now.st_dev == own.st_dev && now.st_ino == own.st_ino) {
        m_fd = fd;
        break;
      }
      ::close(fd);
      continue;
    }
    const int err = errno;
    if (err != EWOULDBLOCK && err != EINTR) {
      ::close(fd);
      throw std::runtime_error("cannot lock " + m_path + ": " + errno_text(err));
    }
    const long holder = lock_holder(fd);
    ::close(fd);
    const auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) {
      char waited[32];
      (void)std::snprintf(waited, sizeof waited, "%g", wait_seconds);
      throw LockBusy("another sockrewind-collect"
                     + (holder > 0 ? " (pid " + std::to_string(holder) + ")" : std::string())
                     + " is writing to " + dir + "; gave up after " + waited + " s (--lock-wait)");
    }
    std::this_thread::sleep_for(std::min<Clock::duration>(left, std::chrono::milliseconds(50)));
  }
  // Best effort (a full disk may refuse even these few bytes): only used in messages.
  const std::string pid = std::to_string(getpid()) + "\n";
  if (::ftruncate(m_fd, 0) == 0) {
    (void)::pwrite(m_fd, pid.data(), pid.size(), 0);
  }
}

OutDirLock::~OutDirLock() {
  if (m_fd >= 0) {
    (void)::unlink(m_path.c_str());
    ::close(m_fd);
  }
}

} // namespace sockrewind::collect
