#include <sockrewind/collect/counters.hpp>
#include <sockrewind/collect/fileio.hpp>
#include <sockrewind/collect/proc_scan.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>

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

constexpr int k_dir_flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
// fds per unit of pass 2: small enough to share one big process between threads.
constexpr size_t k_slice = 1024;

// One /proc/[pid], filled by whichever scan thread takes it; merged in /proc order.
struct PidJob {
  int32_t pid = 0;
  int64_t entries = 0;          // entries of fd/ (the process's fd count)
  std::vector<int32_t> fds;     // fd/ in directory order, or 0..entries-1 to probe (pass 1)
  std::vector<uint64_t> inodes; // socket inode of fds[i], 0 when not a socket (pass 2)
  // Probing: fds holds 0..entries-1 because stat() gave the count without a listing.
  bool probing = false;
  std::vector<std::pair<uint64_t, int32_t>> task_sockets; // zombie leader: from task/*/fd
  uint32_t socket_fds = 0;
  std::vector<Issue> issues;
};

struct FdSlice {
  size_t job;
  size_t begin;
  size_t end;
  size_t present = 0; // fds of the slice that existed (probing)
  int error = 0;      // errno that stopped the slice (EACCES: not ours to read)
};

void append_issues(std::vector<Issue>& to, std::vector<Issue>& from) {
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
}

// Threads for the fd walk: readlink on /proc is CPU in the kernel and scales with cores.
unsigned scan_threads() {
  return std::clamp(std::thread::hardware_concurrency(), 1U, 4U);
}

// Runs body(i) for every i in [0, n) on up to `threads` threads (the caller is one of them),
// each taking the next index. The first exception is rethrown once all threads are done.
template <typename Body> void parallel_for(size_t n, unsigned threads, const Body& body) {
  std::atomic<size_t> next{0};
  std::exception_ptr failure;
  std::mutex failure_mutex;
  const auto worker = [&] {
    for (size_t i = next++; i < n; i = next++) {
      try {
        body(i);
      } catch (...) {
        const std::lock_guard<std::mutex> lock(failure_mutex);
        if (!failure) {
          failure = std::current_exception();
        }
        next = n;
      }
    }
  };
  std::vector<std::thread> helpers;
  for (unsigned t = 1; t < threads && t < n; ++t) {
    helpers.emplace_back(worker);
  }
  worker();
  for (std::thread& h : helpers) {
    h.join();
  }
  if (failure) {
    std::rethrow_exception(failure);
  }
}

// Reads the link of `fd` (a name in the directory `dfd`): 0 when it exists (`inode` is its
// socket inode, or 0 for anything else), else the errno (ENOENT: closed, or never open).
int read_fd_link(int dfd, const char* fd, uint64_t& inode) {
  char buf[64];
  inode = 0;
  const ssize_t n = ::readlinkat(dfd, fd, buf, sizeof(buf));
  if (n < 0) {
    return errno;
  }
  if (!parse_socket_link(std::string_view(buf, static_cast<size_t>(n)), inode)) {
    inode = 0;
  }
  return 0;
}

// The socket inode `fd` refers to, or 0 (not a socket, or closed since the listing: a race).
uint64_t socket_inode(int dfd, const char* fd) {
  uint64_t inode = 0;
  (void)read_fd_link(dfd, fd, inode);
  return inode;
}

// Since Linux 6.2 stat() of /proc/[pid]/fd gives the number of open fds as its size. Then
// the fds of a process with no holes in its table are 0..n-1 and can be read without listing
// the directory (the listing costs a quarter of the walk: it instantiates a dentry per fd).
bool fd_counts_from_stat(int proc_fd) {
  struct stat st {};

  return ::fstatat(proc_fd, "self/fd", &st, 0) == 0 && st.st_size > 0;
}

// Lists the fd numbers of one fd directory (relative to `base`). Returns the number of
// entries, or -errno.
int64_t list_fd_dir(int base, const char* rel, std::vector<int32_t>& fds) {
  const int dfd = ::openat(base, rel, k_dir_flags);
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
  while (const dirent* de = readdir(dir.get())) { // NOLINT(concurrency-mt-unsafe)
    if (de->d_name[0] == '.') {
      continue;
    }
    ++entries;
    int32_t fd = 0;
    if (parse_pid(de->d_name, fd)) {
      fds.push_back(fd);
    }
  }
  return entries;
}

// A zombie thread-group leader has an empty fd table while its threads still hold the
// sockets: look at task/*/fd then (ss -p misses these). Threads may share one fd table.
void scan_zombie_tasks(int piddir, PidJob& job) {
  const ReadResult stat = read_whole_file("stat", piddir);
  const auto ps = stat.ok() ? parse_proc_pid_stat(stat.data) : std::nullopt;
  if (!ps || ps->state != 'Z' || ps->num_threads <= 1) {
    return;
  }
  DirPtr tasks(fdopendir(::openat(piddir, "task", k_dir_flags)));
  std::unordered_set<uint64_t> seen;
  std::vector<int32_t> fds;
  char name[16];
  while (tasks) {
    const dirent* te = readdir(tasks.get()); // NOLINT(concurrency-mt-unsafe)
    if (te == nullptr) {
      break;
    }
    int32_t tid = 0;
    if (!parse_pid(te->d_name, tid) || tid == job.pid) {
      continue;
    }
    const Fd taskdir(::openat(dirfd(tasks.get()), te->d_name, k_dir_flags));
    const Fd fddir(taskdir.get() >= 0 ? ::openat(taskdir.get(), "fd", k_dir_flags) : -1);
    fds.clear();
    if (fddir.get() < 0 || list_fd_dir(taskdir.get(), "fd", fds) < 0) {
      continue;
    }
    for (const int32_t fd : fds) {
      const auto [end, ec] = std::to_chars(name, name + sizeof name - 1, fd);
      *end = '\0';
      const uint64_t inode = socket_inode(fddir.get(), name);
      if (inode != 0 && seen.insert(inode * 1000003U + static_cast<uint64_t>(fd)).second) {
        job.task_sockets.emplace_back(inode, fd);
      }
    }
  }
}

// Pass 1: the fd numbers of one process: its fd count from stat() when `probe`, else a listing.
void list_fds(int proc_fd, const std::string& proc_root, PidJob& job, bool probe) {
  const std::string name = std::to_string(job.pid);
  if (probe) {
    struct stat st {};

    if (::fstatat(proc_fd, (name + "/fd").c_str(), &st, 0) == 0 && st.st_size > 0) {
      job.entries = st.st_size;
      job.probing = true;
      job.fds.resize(static_cast<size_t>(st.st_size));
      for (size_t i = 0; i < job.fds.size(); ++i) {
        job.fds[i] = static_cast<int32_t>(i);
      }
      job.inodes.assign(job.fds.size(), 0);
      return;
    }
    // No fds (or an error): the listing below says which, and handles zombie leaders.
  }
  const Fd piddir(::openat(proc_fd, name.c_str(), k_dir_flags));
  if (piddir.get() < 0) {
    const int err = errno;
    job.issues.push_back({"proc_fd", errno_kind(err), describe(proc_root + "/" + name, err)});
    return;
  }
  job.entries = list_fd_dir(piddir.get(), "fd", job.fds);
  if (job.entries < 0) {
    const int err = static_cast<int>(-job.entries);
    job.issues.push_back({"proc_fd", errno_kind(err), describe("/proc/" + name + "/fd", err)});
    job.fds.clear();
    return;
  }
  job.inodes.assign(job.fds.size(), 0);
  if (job.entries == 0) {
    scan_zombie_tasks(piddir.get(), job);
  }
}

// Pass 2: readlink fds [begin, end) of one process. The directory is opened again by pid:
// a process that exited in between simply yields no links.
void read_fd_links(int proc_fd, PidJob& job, FdSlice& slice) {
  const std::string rel = std::to_string(job.pid) + "/fd";
  const Fd fddir(::openat(proc_fd, rel.c_str(), k_dir_flags));
  if (fddir.get() < 0) {
    slice.error = errno;
    return;
  }
  char name[16];
  for (size_t i = slice.begin; i < slice.end; ++i) {
    const auto [last, ec] = std::to_chars(name, name + sizeof name - 1, job.fds[i]);
    *last = '\0';
    const int err = read_fd_link(fddir.get(), name, job.inodes[i]);
    if (err == 0) {
      ++slice.present;
    } else if (err != ENOENT) {
      slice.error = err; // EACCES and the like hold for every fd of the process
      return;
    }
  }
}

// After probing 0..entries-1 found fewer fds than the count: the table has holes, so the
// missing ones are above entries-1. List the directory and read those.
void read_high_fds(int proc_fd, PidJob& job) {
  const std::string name = std::to_string(job.pid);
  const Fd piddir(::openat(proc_fd, name.c_str(), k_dir_flags));
  std::vector<int32_t> listed;
  if (piddir.get() < 0 || list_fd_dir(piddir.get(), "fd", listed) < 0) {
    return; // exited meanwhile
  }
  const Fd fddir(::openat(piddir.get(), "fd", k_dir_flags));
  if (fddir.get() < 0) {
    return;
  }
  const auto probed = static_cast<int32_t>(job.fds.size());
  char buf[16];
  for (const int32_t fd : listed) {
    if (fd < probed) {
      continue;
    }
    const auto [last, ec] = std::to_chars(buf, buf + sizeof buf - 1, fd);
    *last = '\0';
    uint64_t inode = 0;
    if (read_fd_link(fddir.get(), buf, inode) == 0) {
      job.fds.push_back(fd);
      job.inodes.push_back(inode);
    }
  }
}

void fill_process(int piddir, ProcessRow& row, std::vector<Issue>& issues) {
  const ReadResult stat = read_whole_file("stat", piddir);
  if (stat.ok()) {
    if (const auto ps = parse_proc_pid_stat(stat.data)) {
      row.start_ticks = ps->start_ticks;
      row.ppid = ps->ppid;
      row.state = process_state(*ps);
      row.comm = ps->comm;
    }
  } else {
    issues.push_back({"proc_fd",
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
  std::vector<PidJob> jobs;
  while (const dirent* de = readdir(proc.get())) { // NOLINT(concurrency-mt-unsafe)
    int32_t pid = 0;
    if (parse_pid(de->d_name, pid)) {
      jobs.emplace_back().pid = pid;
    }
  }
  scan.pids_scanned = static_cast<uint32_t>(jobs.size());
  const int proc_fd = dirfd(proc.get());
  const unsigned threads = scan_threads();

  // Pass 1, per process: its fd count (or a listing of fd/, and task/*/fd of a zombie leader).
  const bool probe = fd_counts_from_stat(proc_fd);
  parallel_for(
      jobs.size(), threads, [&](size_t i) { list_fds(proc_fd, proc_root, jobs[i], probe); });

  // Pass 2, per slice of up to k_slice fds of one process: readlink each fd.
  std::vector<FdSlice> slices;
  for (size_t j = 0; j < jobs.size(); ++j) {
    for (size_t b = 0; b < jobs[j].fds.size(); b += k_slice) {
      slices.push_back({j, b, std::min(b + k_slice, jobs[j].fds.size())});
    }
  }
  parallel_for(slices.size(), threads, [&](size_t i) {
    FdSlice& sl = slices[i];
    read_fd_links(proc_fd, jobs[sl.job], sl);
  });

  // A denial is an issue. A probed process with fewer fds than its count has holes in its
  // table (fds above entries-1), read from a listing. Fds that were gone by their readlink
  // (closed during the scan) are counted.
  std::vector<size_t> holes;
  std::vector<size_t> present(jobs.size(), 0);
  std::vector<size_t> probed(jobs.size(), 0);
  {
    std::vector<int> error(jobs.size(), 0);
    for (const FdSlice& sl : slices) {
      present[sl.job] += sl.present;
      if (sl.error != 0 && error[sl.job] == 0) {
        error[sl.job] = sl.error;
      }
    }
    for (size_t j = 0; j < jobs.size(); ++j) {
      PidJob& job = jobs[j];
      probed[j] = job.fds.size();
      if (error[j] != 0 && error[j] != ENOENT) {
        job.issues.push_back({"proc_fd",
                              errno_kind(error[j]),
                              describe("/proc/" + std::to_string(job.pid) + "/fd", error[j])});
        std::fill(job.inodes.begin(), job.inodes.end(), 0);
        present[j] = 0;
        probed[j] = 0;
        job.entries = 0; // nothing was read: no count, no vanished fds
      } else if (error[j] != 0) {
        present[j] = 0; // the process exited between the passes: counted as vanished below
        probed[j] = 0;
        job.entries = 0;
        job.issues.push_back({"proc_fd",
                              "vanished",
                              "/proc/" + std::to_string(job.pid) + ": exited during the scan"});
      } else if (job.probing && std::cmp_less(present[j], job.entries)) {
        holes.push_back(j);
      }
    }
  }
  parallel_for(holes.size(), threads, [&](size_t i) { read_high_fds(proc_fd, jobs[holes[i]]); });
  for (size_t j = 0; j < jobs.size(); ++j) {
    const PidJob& job = jobs[j];
    const size_t found = present[j] + (job.fds.size() - probed[j]);
    const size_t expected =
        job.probing ? static_cast<size_t>(std::max<int64_t>(job.entries, 0)) : probed[j];
    if (found < expected) {
      jobs[j].issues.push_back({"proc_fd",
                                "fd_vanished",
                                "/proc/" + std::to_string(job.pid)
                                    + "/fd: " + std::to_string(expected - found)
                                    + " fd(s) closed during the scan"});
    }
  }

  // Pass 3, per process holding socket fds: its identity.
  std::vector<size_t> owners;
  size_t socket_fds = 0;
  for (size_t j = 0; j < jobs.size(); ++j) {
    PidJob& job = jobs[j];
    for (const uint64_t inode : job.inodes) {
      job.socket_fds += inode != 0 ? 1U : 0U;
    }
    job.socket_fds += static_cast<uint32_t>(job.task_sockets.size());
    if (job.socket_fds != 0) {
      owners.push_back(j);
      socket_fds += job.socket_fds;
    }
  }
  std::vector<ProcessRow> rows(owners.size());
  parallel_for(owners.size(), threads, [&](size_t i) {
    PidJob& job = jobs[owners[i]];
    ProcessRow& row = rows[i];
    row.pid = job.pid;
    row.fd_count = static_cast<uint32_t>(job.entries);
    row.socket_fds = job.socket_fds;
    const Fd piddir(::openat(proc_fd, std::to_string(job.pid).c_str(), k_dir_flags));
    if (piddir.get() < 0) {
      const int err = errno;
      job.issues.push_back({"proc_fd",
                            errno_kind(err),
                            describe("/proc/" + std::to_string(job.pid) + "/stat", err)});
      return;
    }
    fill_process(piddir.get(), row, job.issues);
  });

  // Merge in /proc order, as one sequential walk would have found them.
  scan.first.reserve(socket_fds);
  size_t next_row = 0;
  for (PidJob& job : jobs) {
    const auto add = [&](uint64_t inode, int32_t fd) {
      const auto [it, inserted] = scan.first.try_emplace(inode, Owner{job.pid, fd});
      if (!inserted) {
        scan.extra.emplace_back(inode, Owner{job.pid, fd});
      }
    };
    for (size_t i = 0; i < job.inodes.size(); ++i) {
      if (job.inodes[i] != 0) {
        add(job.inodes[i], job.fds[i]);
      }
    }
    for (const auto& [inode, fd] : job.task_sockets) {
      add(inode, fd);
    }
    append_issues(scan.issues, job.issues);
    if (job.socket_fds != 0) {
      scan.processes.push_back(std::move(rows[next_row++]));
    }
  }
  return scan;
}

namespace {

// Opens a namespace file and checks it is still the namespace `inode` (the pid may have been
// reused since the stat); null when it cannot be held.
std::shared_ptr<const int> hold_netns(const std::string& path, uint64_t inode) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return nullptr;
  }

  struct stat st {};

  if (::fstat(fd, &st) != 0 || st.st_ino != inode) {
    ::close(fd);
    return nullptr;
  }
  return {new int(fd), [](const int* p) {
            ::close(*p);
            delete p; // NOLINT(cppcoreguidelines-owning-memory)
          }};
}

} // namespace

std::vector<NetnsRef> discover_netns(std::vector<Issue>& issues,
                                     const std::string& proc_root,
                                     const std::string& run_netns) {
  std::vector<NetnsRef> out;
  std::unordered_set<uint64_t> seen;

  struct stat st {};

  if (::stat((proc_root + "/self/ns/net").c_str(), &st) == 0) {
    seen.insert(st.st_ino);
    out.push_back(
        {st.st_ino, "self", proc_root + "/self/ns/net", std::nullopt, std::nullopt, nullptr});
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
      out.push_back({st.st_ino, "pid", base + "/ns/net", std::nullopt, pid, nullptr});
      out.back().fd = hold_netns(out.back().path, st.st_ino);
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
        out.push_back({st.st_ino, "task", tpath, std::nullopt, tid, hold_netns(tpath, st.st_ino)});
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
      out.push_back({st.st_ino,
                     "run-netns",
                     path,
                     std::string(de->d_name),
                     std::nullopt,
                     hold_netns(path, st.st_ino)});
    }
  }
  return out;
}

} // namespace sockrewind::collect
