#include <sockrewind/collect/retention.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <system_error>
#include <tuple>

namespace sockrewind::collect {

namespace {

std::string errno_text(int err) {
  return std::strerror(err); // NOLINT(concurrency-mt-unsafe)
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int to_int(std::string_view digits) {
  int v = 0;
  for (const char c : digits) {
    v = v * 10 + (c - '0');
  }
  return v;
}

// "yyyymmddTHHMMSSZ" as seconds since the epoch (UTC), or nullopt.
std::optional<int64_t> parse_utc_stamp(std::string_view ts) {
  if (ts.size() != 16 || ts[8] != 'T' || ts[15] != 'Z' || !all_digits(ts.substr(0, 8))
      || !all_digits(ts.substr(9, 6))) {
    return std::nullopt;
  }
  using namespace std::chrono;
  const year_month_day date{year{to_int(ts.substr(0, 4))},
                            month{static_cast<unsigned>(to_int(ts.substr(4, 2)))},
                            day{static_cast<unsigned>(to_int(ts.substr(6, 2)))}};
  const int64_t hh = to_int(ts.substr(9, 2));
  const int64_t mm = to_int(ts.substr(11, 2));
  const int64_t ss = to_int(ts.substr(13, 2));
  if (!date.ok() || hh > 23 || mm > 59 || ss > 60) {
    return std::nullopt;
  }
  const int64_t days = sys_days(date).time_since_epoch().count();
  return days * 86400 + hh * 3600 + mm * 60 + ss;
}

// "<host>-<stamp>": the stamp's time, or nullopt.
std::optional<int64_t> parse_host_stamp(std::string_view stem) {
  constexpr size_t k_stamp = 16;
  if (stem.size() < k_stamp + 2 || stem[stem.size() - k_stamp - 1] != '-') {
    return std::nullopt;
  }
  // A host is never empty and never starts with '.': dot files (the lock, temporary files)
  // are not the collector's output.
  if (stem[0] == '.' || stem[0] == '-') {
    return std::nullopt;
  }
  return parse_utc_stamp(stem.substr(stem.size() - k_stamp));
}

constexpr std::array<unsigned char, 16> k_sqlite_magic = {
    'S', 'Q', 'L', 'i', 't', 'e', ' ', 'f', 'o', 'r', 'm', 'a', 't', ' ', '3', '\0'};
// PRAGMA application_id, big-endian at offset 68 of the header: 'SKRW'.
constexpr size_t k_app_id_offset = 68;
constexpr std::array<unsigned char, 4> k_app_id = {'S', 'K', 'R', 'W'};

// True when the open file starts with a SQLite header carrying the sockrewind application_id.
bool is_sockrewind_header(int fd) {
  std::array<unsigned char, k_app_id_offset + 4> head{};
  ssize_t got = 0;
  while (static_cast<size_t>(got) < head.size()) {
    const ssize_t n = ::pread(fd, head.data() + got, head.size() - static_cast<size_t>(got), got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    got += n;
  }
  return std::equal(k_sqlite_magic.begin(), k_sqlite_magic.end(), head.begin())
         && std::equal(k_app_id.begin(), k_app_id.end(), head.begin() + k_app_id_offset);
}

struct FdCloser {
  int fd = -1;
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;
  FdCloser(FdCloser&&) = delete;
  FdCloser& operator=(FdCloser&&) = delete;

  explicit FdCloser(int f) : fd(f) {}

  ~FdCloser() {
    if (fd >= 0) {
      ::close(fd);
    }
  }
};

// Unlinks `name` in `dfd` if it is still the regular file (dev, ino) that was checked; 0 or the
// errno (ESTALE when it was replaced meanwhile: not ours to delete).
int unlink_if_same(int dfd, const std::string& name, dev_t dev, ino_t ino) {
  struct stat st {};

  if (::fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno;
  }
  if (!S_ISREG(st.st_mode) || st.st_dev != dev || st.st_ino != ino) {
    return ESTALE;
  }
  return ::unlinkat(dfd, name.c_str(), 0) == 0 ? 0 : errno;
}

// Lists the entries of `d` (read through its own descriptor; `dfd` is the directory) named
// like the collector's output, with what lstat and a look at the header say.
void list_dir(int dfd,
              DIR* d,
              uint32_t euid,
              std::vector<ListedFile>& listing,
              std::map<std::string, std::pair<dev_t, ino_t>, std::less<>>& identity) {
  while (const dirent* de = ::readdir(d)) { // NOLINT(concurrency-mt-unsafe)
    const std::string_view name = de->d_name;
    if (!parse_collector_name(name)) {
      continue; // never stat, open or delete anything not named like the collector's output
    }
    ListedFile f;
    f.name = std::string(name);

    struct stat st {};

    if (::fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue; // gone meanwhile
    }
    f.regular = S_ISREG(st.st_mode);
    f.uid = st.st_uid;
    f.size = static_cast<uint64_t>(st.st_size);
    if (f.regular && f.uid == euid) {
      // O_NOFOLLOW|O_NONBLOCK: a symlink or FIFO swapped in since the lstat is refused or
      // does not hang; the descriptor must be the inode that was listed.
      const FdCloser fd(
          ::openat(dfd, de->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));

      struct stat now {};

      f.sockrewind = fd.fd >= 0 && ::fstat(fd.fd, &now) == 0 && S_ISREG(now.st_mode)
                     && now.st_dev == st.st_dev && now.st_ino == st.st_ino
                     && is_sockrewind_header(fd.fd);
    }
    identity[f.name] = {st.st_dev, st.st_ino};
    listing.push_back(std::move(f));
  }
}

std::string bytes_text(uint64_t bytes) {
  return std::to_string(bytes) + " bytes";
}

} // namespace

std::optional<CollectorName> parse_collector_name(std::string_view name) {
  constexpr std::string_view k_ext = ".sqlite";
  if (name.size() <= k_ext.size() || name.substr(name.size() - k_ext.size()) != k_ext) {
    return std::nullopt;
  }
  const std::string_view stem = name.substr(0, name.size() - k_ext.size());
  if (const auto t = parse_host_stamp(stem)) {
    return CollectorName{*t, 1, false};
  }
  // "-hour": an hourly archive (fold.hpp), named by the hour's start.
  constexpr std::string_view k_hour = "-hour";
  if (stem.ends_with(k_hour)) {
    if (const auto t = parse_host_stamp(stem.substr(0, stem.size() - k_hour.size()));
        t && *t % 3600 == 0) {
      return CollectorName{*t, 1, true};
    }
    return std::nullopt;
  }
  // "-N": N from 2 to 999, as the writer numbers names taken in the same second.
  const size_t dash = stem.rfind('-');
  if (dash == std::string_view::npos) {
    return std::nullopt;
  }
  const std::string_view seq = stem.substr(dash + 1);
  if (!all_digits(seq) || seq.size() > 3 || seq[0] == '0' || to_int(seq) < 2) {
    return std::nullopt;
  }
  if (const auto t = parse_host_stamp(stem.substr(0, dash))) {
    return CollectorName{*t, to_int(seq), false};
  }
  return std::nullopt;
}

std::optional<uint64_t> parse_size(std::string_view text) {
  uint64_t mult = 1;
  if (!text.empty()) {
    switch (text.back()) {
    case 'K':
    case 'k':
      mult = uint64_t{1} << 10U;
      break;
    case 'M':
    case 'm':
      mult = uint64_t{1} << 20U;
      break;
    case 'G':
    case 'g':
      mult = uint64_t{1} << 30U;
      break;
    case 'T':
    case 't':
      mult = uint64_t{1} << 40U;
      break;
    default:
      break;
    }
    if (mult != 1) {
      text.remove_suffix(1);
    }
  }
  if (!all_digits(text) || text.size() > 19) {
    return std::nullopt;
  }
  uint64_t v = 0;
  for (const char c : text) {
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  if (v == 0 || v > std::numeric_limits<uint64_t>::max() / mult) {
    return std::nullopt;
  }
  return v * mult;
}

std::vector<OwnFile> own_files(const std::vector<ListedFile>& listing, uint32_t euid) {
  std::vector<OwnFile> out;
  for (const ListedFile& f : listing) {
    if (!f.regular || !f.sockrewind || f.uid != euid) {
      continue;
    }
    if (const auto n = parse_collector_name(f.name)) {
      out.push_back(OwnFile{f.name, n->utc_seconds, n->seq, f.size, n->archive});
    }
  }
  std::sort(out.begin(), out.end(), [](const OwnFile& a, const OwnFile& b) {
    return std::tie(a.utc_seconds, a.seq, a.name) < std::tie(b.utc_seconds, b.seq, b.name);
  });
  return out;
}

std::vector<std::string> select_for_pruning(const std::vector<ListedFile>& listing,
                                            uint32_t euid,
                                            const RetentionPolicy& policy,
                                            int64_t now_utc_seconds,
                                            const std::string& keep) {
  const std::vector<OwnFile> files = own_files(listing, euid);
  std::vector<bool> doomed(files.size(), false);
  if (policy.keep_days) {
    const int64_t cutoff = now_utc_seconds - int64_t{*policy.keep_days} * 86400;
    for (size_t i = 0; i < files.size(); ++i) {
      doomed[i] = files[i].name != keep && files[i].utc_seconds < cutoff;
    }
  }
  if (policy.max_bytes) {
    uint64_t total = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      total += doomed[i] ? 0 : files[i].size;
    }
    for (size_t i = 0; i < files.size() && total > *policy.max_bytes; ++i) {
      if (!doomed[i] && files[i].name != keep) {
        doomed[i] = true;
        total -= files[i].size;
      }
    }
  }
  std::vector<std::string> out;
  for (size_t i = 0; i < files.size(); ++i) {
    if (doomed[i]) {
      out.push_back(files[i].name);
    }
  }
  return out;
}

std::vector<OwnFile> own_files_in(const std::string& dir) {
  const FdCloser dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const int list_fd = dfd.fd >= 0 ? ::fcntl(dfd.fd, F_DUPFD_CLOEXEC, 0) : -1;
  if (list_fd < 0) {
    throw std::system_error(errno, std::generic_category(), "cannot list " + dir);
  }

  struct DirCloser {
    void operator()(DIR* d) const noexcept { closedir(d); }
  };

  const std::unique_ptr<DIR, DirCloser> d(::fdopendir(list_fd));
  if (!d) {
    const int err = errno;
    ::close(list_fd);
    throw std::system_error(err, std::generic_category(), "cannot list " + dir);
  }
  const uint32_t euid = ::geteuid();
  std::vector<ListedFile> listing;
  std::map<std::string, std::pair<dev_t, ino_t>, std::less<>> identity;
  list_dir(dfd.fd, d.get(), euid, listing, identity);
  return own_files(listing, euid);
}

PruneResult prune_out_dir(const std::string& dir,
                          const RetentionPolicy& policy,
                          int64_t now_utc_seconds,
                          const std::string& keep) {
  PruneResult result;
  const FdCloser dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.fd < 0) {
    result.warnings.push_back("retention: cannot open " + dir + ": " + errno_text(errno)
                              + "; nothing pruned");
    return result;
  }
  // The listing through its own descriptor (closedir closes it), the rest relative to dfd.
  const int list_fd = ::fcntl(dfd.fd, F_DUPFD_CLOEXEC, 0);

  struct DirCloser {
    void operator()(DIR* d) const noexcept { closedir(d); }
  };

  const std::unique_ptr<DIR, DirCloser> d(list_fd >= 0 ? ::fdopendir(list_fd) : nullptr);
  if (!d) {
    const int err = errno;
    if (list_fd >= 0) {
      ::close(list_fd);
    }
    result.warnings.push_back("retention: cannot list " + dir + ": " + errno_text(err)
                              + "; nothing pruned");
    return result;
  }

  const uint32_t euid = ::geteuid();
  std::vector<ListedFile> listing;
  std::map<std::string, std::pair<dev_t, ino_t>, std::less<>> identity;
  list_dir(dfd.fd, d.get(), euid, listing, identity);

  const std::vector<std::string> doomed =
      select_for_pruning(listing, euid, policy, now_utc_seconds, keep);
  std::map<std::string, uint64_t, std::less<>> sizes;
  for (const OwnFile& f : own_files(listing, euid)) {
    sizes[f.name] = f.size;
    result.remaining_bytes += f.size;
  }
  int failed = 0;
  std::string first_failure;
  for (const std::string& name : doomed) {
    const auto& [dev, ino] = identity[name];
    const int err = unlink_if_same(dfd.fd, name, dev, ino);
    if (err == ENOENT) {
      result.remaining_bytes -= sizes[name]; // someone else removed it: fine
      continue;
    }
    if (err != 0) {
      if (failed++ == 0) {
        first_failure = name + ": " + errno_text(err);
      }
      continue;
    }
    ++result.deleted;
    result.deleted_bytes += sizes[name];
    result.remaining_bytes -= sizes[name];
  }
  if (failed > 0) {
    result.warnings.push_back("retention: could not delete " + std::to_string(failed)
                              + " file(s) in " + dir + " (first: " + first_failure + ")");
  }
  if (policy.max_bytes && result.remaining_bytes > *policy.max_bytes) {
    result.warnings.push_back("retention: the collector's files in " + dir + " still take "
                              + bytes_text(result.remaining_bytes) + ", more than --max-bytes "
                              + bytes_text(*policy.max_bytes)
                              + (failed > 0 ? "" : " (the newest file alone exceeds it)"));
  }
  return result;
}

std::vector<std::string> lower_own_priority() {
  std::vector<std::string> warnings;
  // On Linux both are per thread and inherited by threads created afterwards.
  constexpr int k_lowest_nice = 19;
  if (::setpriority(PRIO_PROCESS, 0, k_lowest_nice) != 0) {
    warnings.push_back("--nice: setpriority: " + errno_text(errno));
  }
  // <linux/ioprio.h>: IOPRIO_WHO_PROCESS, IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT.
  constexpr long k_who_process = 1;
  constexpr long k_class_idle = 3;
  constexpr long k_class_shift = 13;
  if (::syscall(SYS_ioprio_set, k_who_process, 0L, k_class_idle << k_class_shift) != 0) {
    warnings.push_back("--nice: ioprio_set(IOPRIO_CLASS_IDLE): " + errno_text(errno));
  }
  return warnings;
}

} // namespace sockrewind::collect
