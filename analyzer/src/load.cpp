#include <sockrewind/analyze/load.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <sqlite3.h>

#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <system_error>
#include <utility>

namespace sockrewind::analyze {

namespace fs = std::filesystem;

namespace {

constexpr int64_t k_max_clock_ns = int64_t{1} << 62;

} // namespace

LoadError read_error(const std::string& file, const store::DbError& e) {
  if (e.code() == SQLITE_TOOBIG) {
    return LoadError{file
                     + ": a text or blob value is longer than this analyzer reads (64 KiB; "
                       "sockrewind-collect writes at most 4 KiB): not a file it wrote"};
  }
  return LoadError{file + ": " + e.what()};
}

std::vector<std::string> expand_paths(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (const std::string& a : args) {
    std::error_code ec;
    const fs::file_status st = fs::status(a, ec);
    if (ec && ec != std::errc::no_such_file_or_directory) {
      throw LoadError(a + ": " + ec.message());
    }
    if (ec || !fs::exists(st)) {
      throw LoadError(a + ": no such file or directory");
    }
    if (fs::is_regular_file(st)) {
      out.push_back(a);
      continue;
    }
    // A FIFO or a device would block or never end; only regular files are snapshot files.
    if (!fs::is_directory(st)) {
      throw LoadError(a + ": not a regular file or directory");
    }
    std::vector<std::string> found;
    for (auto it =
             fs::recursive_directory_iterator(a, fs::directory_options::skip_permission_denied, ec);
         !ec && it != fs::recursive_directory_iterator();
         it.increment(ec)) {
      if (it->is_regular_file(ec) && it->path().extension() == ".sqlite"
          && it->path().filename().string().front() != '.') {
        found.push_back(it->path().string());
      }
    }
    if (ec) {
      throw LoadError(a + ": " + ec.message());
    }
    if (found.empty()) {
      throw LoadError(a + ": no *.sqlite files in this directory");
    }
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

void require_snapshots(const std::vector<std::string>& files, size_t snapshots) {
  if (snapshots > 0) {
    return;
  }
  if (files.size() == 1) {
    throw LoadError(files.front() + ": no snapshots in this file");
  }
  std::string list;
  for (const std::string& f : files) {
    list += (list.empty() ? "" : ", ") + f;
  }
  throw LoadError("no snapshots in any of the " + std::to_string(files.size()) + " files: " + list);
}

namespace {

// Failures of a plain read-only open that immutable=1 avoids: a WAL file or a hot journal
// that cannot be read or rolled back on write-protected media (osquery's pattern). A file
// locked by a writer is not retried: it is being written, not evidence yet.
bool retry_immutable(int code) {
  return code == SQLITE_CANTOPEN || code == SQLITE_READONLY || code == SQLITE_PERM;
}

store::Db open_checked(const std::string& file, bool immutable) {
  store::Db db = store::Db::open_readonly(file, immutable);
  store::validate(db);
  return db;
}

// What the first bytes of a file say about how to open it.
enum class Header { empty, wal, other };

Header read_header(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  std::array<char, 20> b{};
  in.read(b.data(), b.size());
  if (in.gcount() == 0) {
    return Header::empty;
  }
  // Bytes 18 and 19 are the write and read format versions: 2 = WAL.
  return in.gcount() == static_cast<std::streamsize>(b.size()) && (b[18] == 2 || b[19] == 2)
             ? Header::wal
             : Header::other;
}

} // namespace

store::Db open_validated(const std::string& file) {
  try {
    const Header h = read_header(file);
    if (h == Header::empty) {
      throw LoadError(file + ": empty file (0 bytes), not an SQLite database");
    }
    // A plain read-only open of a WAL file creates NAME-wal and NAME-shm beside it; evidence
    // is never written to, so WAL files are read as immutable (their -wal is ignored;
    // sockrewind-collect never writes WAL files).
    if (h == Header::wal) {
      return open_checked(file, true);
    }
    try {
      return open_checked(file, false);
    } catch (const store::DbError& e) {
      if (!retry_immutable(e.code())) {
        throw;
      }
    }
    return open_checked(file, true);
  } catch (const store::SchemaError& e) {
    throw LoadError(file + ": " + e.what());
  } catch (const store::DbError& e) {
    throw read_error(file, e);
  }
}

// ---- DbLease, OpenFiles

DbLease::DbLease(DbLease&& other) noexcept
    : m_db(std::move(other.m_db)),
      m_from(std::exchange(other.m_from, nullptr)),
      m_file(std::move(other.m_file)),
      m_identity(other.m_identity) {
  other.m_db.reset();
}

DbLease& DbLease::operator=(DbLease&& other) noexcept {
  if (this != &other) {
    give_back();
    m_db = std::move(other.m_db);
    other.m_db.reset();
    m_from = std::exchange(other.m_from, nullptr);
    m_file = std::move(other.m_file);
    m_identity = other.m_identity;
  }
  return *this;
}

DbLease::~DbLease() {
  give_back();
}

void DbLease::give_back() noexcept {
  if (m_from != nullptr && m_db) {
    m_from->give_back(m_file, std::move(*m_db));
  }
  m_db.reset();
  m_from = nullptr;
}

namespace {

// Connections held by every OpenFiles of the process, against OpenFiles::budget().
std::atomic<size_t> g_held{0};
std::atomic<size_t> g_test_budget{0}; // 0: none; else the budget + 1

// Descriptors left for everything but held files: stdio, the files being read by path, SQLite's
// temporary files, the report's output.
constexpr size_t k_fd_reserve = 128;

size_t open_descriptors() {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator("/proc/self/fd", ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    ++n;
  }
  return ec || n == 0 ? 16 : n;
}

} // namespace

size_t OpenFiles::budget() {
  if (const size_t t = g_test_budget.load(); t > 0) {
    return t - 1;
  }
  static const size_t k_budget = [] {
    rlimit r{};
    if (::getrlimit(RLIMIT_NOFILE, &r) != 0) {
      return size_t{0};
    }
    if (r.rlim_cur != RLIM_INFINITY && (r.rlim_max == RLIM_INFINITY || r.rlim_cur < r.rlim_max)) {
      rlimit up = r;
      up.rlim_cur = r.rlim_max;
      if (::setrlimit(RLIMIT_NOFILE, &up) == 0) {
        r = up;
      }
    }
    const auto cur =
        static_cast<size_t>(std::min<rlim_t>(r.rlim_cur, rlim_t{1} << 20U)); // infinity: plenty
    const size_t used = open_descriptors() + k_fd_reserve;
    return cur > used ? cur - used : size_t{0};
  }();
  return k_budget;
}

void OpenFiles::set_budget_for_test(std::optional<size_t> n) {
  g_test_budget = n ? *n + 1 : 0;
}

OpenFiles::~OpenFiles() {
  g_held -= m_held;
}

size_t OpenFiles::held() const {
  const std::lock_guard<std::mutex> lock(m_mutex);
  return m_held;
}

namespace {

[[noreturn]] void throw_changed(const std::string& file, const char* why) {
  throw LoadError(file + ": changed or went away during the report (" + why + ")");
}

constexpr const char* k_by_name = "too many files to keep them all open; it was read again by its "
                                  "name";

// The file's schema cookie, which any change to its schema bumps.
int64_t schema_version(store::Db& db, const std::string& file) {
  try {
    return db.query_int("PRAGMA schema_version");
  } catch (const store::DbError& e) {
    throw read_error(file, e);
  }
}

} // namespace

std::optional<FileIdentity> file_identity(const std::string& file) {
  struct stat st {};

  if (::stat(file.c_str(), &st) != 0) {
    return std::nullopt;
  }
  return FileIdentity{static_cast<uint64_t>(st.st_dev),
                      static_cast<uint64_t>(st.st_ino),
                      static_cast<int64_t>(st.st_size),
                      static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000
                          + static_cast<int64_t>(st.st_mtim.tv_nsec)};
}

namespace {

// open_validated(file) with the identity it opened: the file's before and after the open, when
// the same.
std::pair<store::Db, std::optional<FileIdentity>> open_identified(const std::string& file) {
  const std::optional<FileIdentity> before = file_identity(file);
  store::Db db = open_validated(file);
  const std::optional<FileIdentity> after = file_identity(file);
  return {std::move(db), before == after ? after : std::nullopt};
}

} // namespace

DbLease OpenFiles::open(const std::string& file) {
  const auto identity = [&file]() { return file_identity(file); };
  std::unique_lock<std::mutex> lock(m_mutex);
  auto [it, fresh] = m_files.try_emplace(file);
  Entry& e = it->second;
  if (!fresh) {
    m_returned.wait(lock, [&e] { return !e.lent; }); // lent, or being opened the first time
    if (e.held) {
      e.lent = true;
      DbLease lease(std::move(*e.db));
      e.db.reset();
      lease.m_from = this;
      lease.m_file = file;
      lease.m_identity = e.id;
      const int64_t loaded = e.schema;
      lock.unlock();
      // Written to in place since (the file is the same): what was validated is no longer what
      // a read would parse.
      if (schema_version(lease.db(), file) != loaded) {
        throw_changed(file, "its schema is not the one checked when it was loaded");
      }
      return lease;
    }
    // Not held (no descriptors to spare, or its first open failed): read again by its name,
    // when it is still the file first read.
    const std::optional<FileIdentity> was = e.id;
    lock.unlock();
    if (was && identity() != was) {
      throw_changed(file, k_by_name);
    }
    DbLease lease(open_validated(file));
    if (was && identity() != was) { // replaced while opened
      throw_changed(file, k_by_name);
    }
    lease.m_identity = was;
    return lease;
  }
  // The first read: opened outside the lock (the other files' readers go on); a reader of the
  // same file waits for it.
  const bool hold = g_held.fetch_add(1) < budget();
  if (!hold) {
    g_held -= 1;
  }
  e.lent = true;
  lock.unlock();
  std::optional<store::Db> db;
  std::optional<FileIdentity> id;
  int64_t schema = 0;
  try {
    auto opened = open_identified(file);
    db.emplace(std::move(opened.first));
    id = opened.second;
    if (hold) {
      schema = schema_version(*db, file);
    } else if (!id) {
      throw_changed(file, k_by_name);
    }
  } catch (...) {
    lock.lock();
    e.lent = false;
    if (hold) {
      g_held -= 1;
    }
    m_returned.notify_all();
    throw;
  }
  lock.lock();
  DbLease lease(std::move(*db));
  lease.m_identity = id;
  e.id = id;
  if (hold) {
    e.held = true;
    e.schema = schema;
    ++m_held;
    lease.m_from = this;
    lease.m_file = file;
  } else {
    e.lent = false;
    m_returned.notify_all();
  }
  return lease;
}

void OpenFiles::give_back(const std::string& file, store::Db db) noexcept {
  // An idle connection keeps its page cache (up to 2 MiB) and its parsed schema (~50 KiB for
  // a schema-3 file, views included): both go now, so that a day of held minute files costs
  // little more than their descriptors (the schema is read again, from the same file, by the
  // next read, once open() has found it unchanged). writable_schema=RESET (the flag off, the
  // parsed schema dropped) works in defensive mode too (SQLite 3.40.1: schema memory to 0).
  sqlite3* h = db.handle();
  (void)sqlite3_db_release_memory(h);
  (void)sqlite3_exec(h, "PRAGMA writable_schema=RESET", nullptr, nullptr, nullptr);
  const std::lock_guard<std::mutex> lock(m_mutex);
  Entry& e = m_files.at(file);
  e.db.emplace(std::move(db));
  e.lent = false;
  m_returned.notify_all();
}

DbLease open_file(OpenFiles* files, const std::string& file) {
  if (files != nullptr) {
    return files->open(file);
  }
  auto opened = open_identified(file);
  DbLease lease(std::move(opened.first));
  lease.m_identity = opened.second;
  return lease;
}

std::vector<SnapshotInfo> load_snapshot_index(const std::string& file) {
  store::Db db = open_validated(file);
  return load_snapshot_index(db, file);
}

std::vector<SnapshotInfo> load_snapshot_index(store::Db& db, const std::string& file) {
  std::vector<SnapshotInfo> out;
  try {
    store::Stmt st = db.prepare(
        "SELECT snapshot_id, host, boot_id, kernel, realtime_ns, boottime_ns, "
        "boottime_end_ns - boottime_ns, sockets, issues, sources, netns_mode, boottime_end_ns "
        "FROM snapshots ORDER BY snapshot_id");
    while (st.step()) {
      SnapshotInfo s;
      s.file = file;
      s.snapshot_id = st.get_int(0);
      s.host = st.get_text(1);
      s.boot_id = st.get_text(2);
      s.kernel = st.get_text(3);
      s.realtime_ns = st.get_int(4);
      s.boottime_ns = st.get_int(5);
      s.duration_ns = st.get_int(6);
      // Clocks are nanoseconds since 1970 or boot; beyond 2^62 (year 2116) they are hostile or
      // corrupt, and differences between them could overflow.
      for (const int64_t t : {s.realtime_ns, s.boottime_ns, st.get_int(11)}) {
        if (t < 0 || t > k_max_clock_ns) {
          throw LoadError(file + ": snapshot " + std::to_string(s.snapshot_id)
                          + " has a clock value out of range (" + std::to_string(t) + " ns)");
        }
      }
      s.sockets = st.get_int(7);
      s.issues = st.get_int(8);
      s.sources = st.get_text(9);
      s.netns_mode = st.get_text(10);
      out.push_back(std::move(s));
    }
  } catch (const store::DbError& e) {
    throw read_error(file, e);
  }
  return out;
}

std::vector<IssueSum> load_issue_summary(const std::string& file) {
  store::Db db = open_validated(file);
  std::vector<IssueSum> out;
  try {
    store::Stmt st = db.prepare("SELECT source, kind, sum(count), min(example) FROM capture_issues "
                                "GROUP BY source, kind ORDER BY 3 DESC");
    while (st.step()) {
      out.push_back({st.get_text(0), st.get_text(1), st.get_int(2), st.get_text(3)});
    }
  } catch (const store::DbError& e) {
    throw read_error(file, e);
  }
  return out;
}

} // namespace sockrewind::analyze
