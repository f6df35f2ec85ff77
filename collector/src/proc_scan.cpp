#include <sockrewind/collect/counters.hpp>
#include <sockrewind/collect/fileio.hpp>
#include <sockrewind/collect/proc_scan.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <string_view>
#include <unordered_set>

namespace sockrewind::collect {

namespace {

constexpr size_t k_cmdline_max = 4096;

struct DirCloser {
  void operator()(DIR* d) const noexcept { closedir(d); }
};

using DirPtr = std::unique_ptr<DIR, DirCloser>;

class Fd {
public:
  explicit Fd(int fd) : m_fd(fd) {}

  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&&) = delete;
  Fd& operator=(Fd&&) = delete;

  ~Fd() {
    if (m_fd >= 0) {
      ::close(m_fd);
    }
  }

  int get() const { return m_fd; }

private:
  int m_fd;
};

// "123" -> 123; anything else (".", "self", "net") -> false.
bool parse_pid(const char* name, int32_t& pid) {
  const size_t len = std::strlen(name);
  if (len == 0 || name[0] < '0' || name[0] > '9') {
    return false;
  }
  const auto [p, ec] = std::from_chars(name, name + len, pid);
  return ec == std::errc() && p == name + len;
}

// "socket:[12345]" -> 12345.
bool parse_socket_link(std::string_view link, uint64_t& inode) {
  constexpr std::string_view k_prefix = "socket:[";
  if (link.size() < k_prefix.size() + 2 || link.substr(0, k_prefix.size()) != k_prefix
      || link.back() != ']') {
    return false;
  }
  const std::string_view num = link.substr(k_prefix.size(), link.size() - k_prefix.size() - 1);
  const auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), inode);
  return ec == std::errc() && p == num.data() + num.size();
}

const char* errno_kind(int err) {
  switch (err) {
  case ENOENT:
  case ESRCH:
    return "vanished";
  case EACCES:
  case EPERM:
    return "denied";
  default:
    return "error";
  }
}

std::string describe(const std::string& what, int err) {
  return what + ": " + std::strerror(err); // NOLINT(concurrency-mt-unsafe)
}

// Reads the socket fds of one fd directory (opened relative to `base`), adding them to `scan`.
// Returns the number of entries seen, or -errno.
int64_t read_fd_dir(int base,
                    const char* rel,
                    int32_t pid,
                    OwnerScan& scan,
                    std::unordered_set<uint64_t>& seen_here,
                    uint32_t& socket_fds) {
  const int dfd = ::openat(base, rel, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return -errno;
  }
  DirPtr dir(fdopendir(dfd));
  if (!dir) {
    const int err = errno;
    ::close(dfd);
    return -err;
  }
  int64_t entries = 0;
  char buf[64];
  errno = 0;
  while (const dirent* de = readdir(dir.get())) { // NOLINT(concurrency-mt-unsafe)
    if (de->d_name[0] == '.') {
      continue;
    }
    ++entries;
    const ssize_t n = ::readlinkat(dirfd(dir.get()), de->d_name, buf, sizeof(buf));
    if (n <= 0) {
      continue; // fd closed between readdir and readlink: a normal race
    }
    uint64_t inode = 0;
    if (!parse_socket_link(std::string_view(buf, static_cast<size_t>(n)), inode)) {
      continue;
    }
    int32_t fd = 0;
    if (!parse_pid(de->d_name, fd)
        || !seen_here.insert(inode * 1000003U + static_cast<uint64_t>(fd)).second) {
      continue;
    }
    ++socket_fds;
    const auto [it, inserted] = scan.first.try_emplace(inode, Owner{pid, fd});
    if (!inserted) {
      scan.extra.emplace_back(inode, Owner{pid, fd});
    }
  }
  return entries;
}

void fill_process(int piddir, ProcessRow& row, OwnerScan& scan) {
  const ReadResult stat = read_whole_file("stat", piddir);
  if (stat.ok()) {
    if (const auto ps = parse_proc_pid_stat(stat.data)) {
      row.start_ticks = ps->start_ticks;
      row.ppid = ps->ppid;
      row.comm = ps->comm;
    }
  } else {
    scan.issues.push_back({"proc_fd",
                           errno_kind(stat.error),
                           describe("/proc/" + std::to_string(row.pid) + "/stat", stat.error)});
  }
  ReadResult cmd = read_whole_file("cmdline", piddir);
  if (cmd.ok()) {
    std::string& s = cmd.data;
    if (s.size() > k_cmdline_max) {
      s.resize(k_cmdline_max);
    }
    while (!s.empty() && s.back() == '\0') {
      s.pop_back();
    }
    for (char& c : s) {
      if (c == '\0') {
        c = ' ';
      }
    }
    row.cmdline = std::move(s);
  }

  struct stat st {};

  if (::fstat(piddir, &st) == 0) {
    row.uid = st.st_uid;
  }

  struct stat ns {};

  if (::fstatat(piddir, "ns/net", &ns, 0) == 0) {
    row.netns_inode = ns.st_ino;
  }
  rlimit rl{};
  if (::prlimit(row.pid, RLIMIT_NOFILE, nullptr, &rl) == 0) {
    row.nofile_soft = rl.rlim_cur;
    row.nofile_hard = rl.rlim_max;
  }
}

} // namespace

OwnerScan scan_owners(const std::string& proc_root) {
  OwnerScan scan;
  DirPtr proc(opendir(proc_root.c_str()));
  if (!proc) {
    scan.issues.push_back({"proc_fd", "error", describe(proc_root, errno)});
    return scan;
  }
  scan.first.reserve(4096);
  std::unordered_set<uint64_t> seen_here;
  while (const dirent* de = readdir(proc.get())) { // NOLINT(concurrency-mt-unsafe)
    int32_t pid = 0;
    if (!parse_pid(de->d_name, pid)) {
      continue;
    }
    ++scan.pids_scanned;
    const Fd piddir(::openat(dirfd(proc.get()), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (piddir.get() < 0) {
      scan.issues.push_back(
          {"proc_fd", errno_kind(errno), describe(proc_root + "/" + de->d_name, errno)});
      continue;
    }
    seen_here.clear();
    uint32_t socket_fds = 0;
    const int64_t entries = read_fd_dir(piddir.get(), "fd", pid, scan, seen_here, socket_fds);
    if (entries < 0) {
      const int err = static_cast<int>(-entries);
      scan.issues.push_back(
          {"proc_fd", errno_kind(err), describe("/proc/" + std::to_string(pid) + "/fd", err)});
      continue;
    }
    if (entries == 0) {
      // A zombie thread-group leader has an empty fd table while its threads still hold
      // the sockets: look at task/*/fd then (ss -p misses these).
      const ReadResult stat = read_whole_file("stat", piddir.get());
      const auto ps = stat.ok() ? parse_proc_pid_stat(stat.data) : std::nullopt;
      if (ps && ps->state == 'Z' && ps->num_threads > 1) {
        DirPtr tasks(fdopendir(::openat(piddir.get(), "task", O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
        while (tasks) {
          const dirent* te = readdir(tasks.get()); // NOLINT(concurrency-mt-unsafe)
          if (te == nullptr) {
            break;
          }
          int32_t tid = 0;
          if (parse_pid(te->d_name, tid) && tid != pid) {
            const std::string rel = std::string(te->d_name) + "/fd";
            const Fd taskdir(
                ::openat(dirfd(tasks.get()), te->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
            if (taskdir.get() >= 0) {
              (void)read_fd_dir(taskdir.get(), "fd", pid, scan, seen_here, socket_fds);
            }
          }
        }
      }
    }
    if (socket_fds == 0) {
      continue;
    }
    ProcessRow row;
    row.pid = pid;
    row.fd_count = static_cast<uint32_t>(entries);
    row.socket_fds = socket_fds;
    fill_process(piddir.get(), row, scan);
    scan.processes.push_back(std::move(row));
  }
  return scan;
}

std::vector<NetnsRef> discover_netns(std::vector<Issue>& issues,
                                     const std::string& proc_root,
                                     const std::string& run_netns) {
  std::vector<NetnsRef> out;
  std::unordered_set<uint64_t> seen;

  struct stat st {};

  if (::stat((proc_root + "/self/ns/net").c_str(), &st) == 0) {
    seen.insert(st.st_ino);
    out.push_back({st.st_ino, "self", proc_root + "/self/ns/net", std::nullopt, std::nullopt});
  }
  DirPtr proc(opendir(proc_root.c_str()));
  if (!proc) {
    issues.push_back({"netns", "error", describe(proc_root, errno)});
    return out;
  }
  while (const dirent* de = readdir(proc.get())) { // NOLINT(concurrency-mt-unsafe)
    int32_t pid = 0;
    if (!parse_pid(de->d_name, pid)) {
      continue;
    }
    const std::string base = proc_root + "/" + de->d_name;
    if (::stat((base + "/ns/net").c_str(), &st) != 0) {
      if (errno != ENOENT && errno != ESRCH) {
        issues.push_back({"netns", errno_kind(errno), describe(base + "/ns/net", errno)});
      }
      continue;
    }
    if (seen.insert(st.st_ino).second) {
      out.push_back({st.st_ino, "pid", base + "/ns/net", std::nullopt, pid});
    }
    // A thread may have joined another namespace with setns(); its sockets live there.
    DirPtr tasks(opendir((base + "/task").c_str()));
    while (tasks) {
      const dirent* te = readdir(tasks.get()); // NOLINT(concurrency-mt-unsafe)
      if (te == nullptr) {
        break;
      }
      int32_t tid = 0;
      if (!parse_pid(te->d_name, tid) || tid == pid) {
        continue;
      }
      const std::string tpath = base + "/task/" + te->d_name + "/ns/net";
      if (::stat(tpath.c_str(), &st) == 0 && seen.insert(st.st_ino).second) {
        out.push_back({st.st_ino, "task", tpath, std::nullopt, tid});
      }
    }
  }
  DirPtr run(opendir(run_netns.c_str()));
  while (run) {
    const dirent* de = readdir(run.get()); // NOLINT(concurrency-mt-unsafe)
    if (de == nullptr) {
      break;
    }
    if (de->d_name[0] == '.') {
      continue;
    }
    const std::string path = run_netns + "/" + de->d_name;
    if (::stat(path.c_str(), &st) != 0) {
      continue;
    }
    bool named = false;
    for (NetnsRef& r : out) {
      if (r.inode == st.st_ino) {
        r.name = de->d_name; // keep the name for namespaces already found through a pid
        named = true;
      }
    }
    if (!named && seen.insert(st.st_ino).second) {
      out.push_back({st.st_ino, "run-netns", path, std::string(de->d_name), std::nullopt});
    }
  }
  return out;
}

} // namespace sockrewind::collect
