#pragma once
// Helpers for the hardening tests: running the real collector (optionally through a wrapper or
// with a hook run in the child before exec), reading its output, validating what it wrote.

#include "support.hpp"

#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

extern char** environ; // NOLINT(readability-redundant-declaration)

namespace sockrewind::test {

// A finished child: exit code (or 128 + signal), what it printed, its peak RSS and duration.
struct RunResult {
  int code = -1;
  bool signaled = false;
  std::string out;
  std::string err;
  long max_rss_kib = 0;
  double seconds = 0;

  // The lines of stderr.
  std::vector<std::string> err_lines() const {
    std::vector<std::string> lines;
    size_t pos = 0;
    while (pos < err.size()) {
      const size_t nl = err.find('\n', pos);
      lines.push_back(err.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos));
      pos = nl == std::string::npos ? err.size() : nl + 1;
    }
    return lines;
  }

  std::string path() const { return trim_newlines(out); }
};

// A started child whose stdout and stderr go to files in a log directory.
class Child {
public:
  // `pre_exec` runs in the child after fork (only from a process with no other threads, and
  // it must only make system calls); without it the child is started with posix_spawn, which
  // is safe beside running threads.
  Child(const std::vector<std::string>& argv,
        const std::filesystem::path& log_dir,
        const std::function<void()>& pre_exec = nullptr) {
    static std::atomic<int> counter{0};
    const int n = counter++;
    m_out = log_dir / ("out-" + std::to_string(n));
    m_err = log_dir / ("err-" + std::to_string(n));
    std::vector<char*> args;
    args.reserve(argv.size() + 1);
    for (const std::string& a : argv) {
      args.push_back(const_cast<char*>(a.c_str())); // NOLINT(cppcoreguidelines-pro-type-const-cast)
    }
    args.push_back(nullptr);
    m_start = std::chrono::steady_clock::now();
    if (!pre_exec) {
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
      posix_spawn_file_actions_addopen(&fa, 1, m_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      posix_spawn_file_actions_addopen(&fa, 2, m_err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int rc = posix_spawn(&m_pid, args[0], &fa, nullptr, args.data(), environ);
      posix_spawn_file_actions_destroy(&fa);
      if (rc != 0) {
        throw std::runtime_error("posix_spawn " + argv[0] + " failed");
      }
      return;
    }
    const int out = ::open(m_out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    const int err = ::open(m_err.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    m_pid = ::fork();
    if (m_pid == 0) {
      ::dup2(out, 1);
      ::dup2(err, 2);
      pre_exec();
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out);
    ::close(err);
    if (m_pid < 0) {
      throw std::runtime_error("fork failed");
    }
  }

  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  Child(Child&&) = delete;
  Child& operator=(Child&&) = delete;

  ~Child() {
    if (m_pid > 0) {
      ::kill(m_pid, SIGKILL);
      (void)wait();
    }
  }

  pid_t pid() const { return m_pid; }

  // True while the child has not exited (it is not reaped).
  bool running() const {
    siginfo_t info{};
    return m_pid > 0
           && ::waitid(P_PID, static_cast<id_t>(m_pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0
           && info.si_pid == 0;
  }

  RunResult wait() {
    RunResult r;
    int status = 0;
    rusage ru{};
    while (::wait4(m_pid, &status, 0, &ru) < 0 && errno == EINTR) {
    }
    m_pid = -1;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - m_start).count();
    r.signaled = WIFSIGNALED(status);
    r.code = r.signaled ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
    r.max_rss_kib = ru.ru_maxrss;
    std::error_code ec;
    if (std::filesystem::exists(m_out, ec)) {
      r.out = read_file(m_out);
    }
    if (std::filesystem::exists(m_err, ec)) {
      r.err = read_file(m_err);
    }
    return r;
  }

private:
  pid_t m_pid = -1;
  std::filesystem::path m_out;
  std::filesystem::path m_err;
  std::chrono::steady_clock::time_point m_start;
};

inline RunResult run_cmd(const std::vector<std::string>& argv,
                         const std::filesystem::path& log_dir,
                         const std::function<void()>& pre_exec = nullptr) {
  Child c(argv, log_dir, pre_exec);
  return c.wait();
}

// The collector's command line: the binary, then `args`.
inline std::vector<std::string> collector(std::vector<std::string> args) {
  args.insert(args.begin(), SOCKREWIND_COLLECT_BIN);
  return args;
}

// `prefix` (e.g. a wrapper such as setpriv) followed by the collector and `args`.
inline std::vector<std::string> wrapped(std::vector<std::string> prefix,
                                        const std::vector<std::string>& args) {
  const std::vector<std::string> c = collector(args);
  prefix.insert(prefix.end(), c.begin(), c.end());
  return prefix;
}

// Names in `dir`, sorted; empty when it does not exist.
inline std::vector<std::string> list_dir(const std::filesystem::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    names.push_back(e.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

inline bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size()
         && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

inline bool is_temp_name(const std::string& name) {
  return !name.empty() && name[0] == '.' && name.find(".sqlite.tmp-") != std::string::npos;
}

// Opens `path` the way the analyzer does and checks it completely: schema validation and
// PRAGMA integrity_check. Returns the number of snapshots it holds; throws when it is broken.
inline int64_t validated_snapshots(const std::string& path) {
  store::Db db = store::Db::open_readonly(path, false);
  if (store::validate(db) != store::k_schema_version) {
    throw std::runtime_error(path + ": unexpected schema version");
  }
  store::Stmt check = db.prepare("PRAGMA integrity_check");
  if (!check.step() || check.get_text(0) != "ok") {
    throw std::runtime_error(path + ": integrity_check failed");
  }
  return db.query_int("SELECT count(*) FROM snapshots");
}

// Every *.sqlite in `dir` validated; returns their snapshot counts by name.
inline std::map<std::string, int64_t> validate_dir(const std::filesystem::path& dir) {
  std::map<std::string, int64_t> out;
  for (const std::string& name : list_dir(dir)) {
    if (ends_with(name, ".sqlite")) {
      INFO("file " << name);
      int64_t n = -1;
      REQUIRE_NOTHROW(n = validated_snapshots((dir / name).string()));
      out[name] = n;
    }
  }
  return out;
}

// Temporary files (".<name>.sqlite.tmp-<pid>") in `dir`.
inline size_t count_temp(const std::filesystem::path& dir) {
  const std::vector<std::string> names = list_dir(dir);
  return static_cast<size_t>(std::count_if(names.begin(), names.end(), is_temp_name));
}

// This machine's host name, as the collector puts it in its file names.
inline std::string hostname() {
  char buf[256] = {};
  ::gethostname(buf, sizeof buf - 1);
  return buf[0] != '\0' ? buf : "localhost";
}

// A tmpfs mounted on a fresh directory for the test's duration (root).
class SmallTmpfs {
public:
  SmallTmpfs(const std::filesystem::path& at, const std::string& size) : m_path(at) {
    std::filesystem::create_directories(m_path);
    const std::string opts = "size=" + size + ",mode=0700";
    if (::mount("tmpfs", m_path.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
      skip_test("cannot mount a tmpfs: " + std::string(std::strerror(errno)));
    }
  }

  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  SmallTmpfs(SmallTmpfs&&) = delete;
  SmallTmpfs& operator=(SmallTmpfs&&) = delete;

  ~SmallTmpfs() { ::umount2(m_path.c_str(), MNT_DETACH); }

  const std::filesystem::path& path() const { return m_path; }

  uint64_t free_bytes() const {
    struct statvfs sv {};

    ::statvfs(m_path.c_str(), &sv);
    return static_cast<uint64_t>(sv.f_bavail) * sv.f_frsize;
  }

private:
  std::filesystem::path m_path;
};

// An integer from the environment (the long script scales the tests up with these).
inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name); // NOLINT(concurrency-mt-unsafe)
  return v != nullptr && *v != '\0' ? std::atoi(v) : fallback;
}

} // namespace sockrewind::test
