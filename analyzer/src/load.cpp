#include <sockrewind/analyze/load.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <system_error>

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
