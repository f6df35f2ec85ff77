#pragma once
// Finding and opening snapshot files: read-only, validated, never trusting what a file defines.

#include <sockrewind/store/db.hpp>
#include <sockrewind/store/snapshot_key.hpp>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sockrewind::analyze {

// A file that cannot be used; what() is "PATH: reason" on one line.
class LoadError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// One snapshot's header row, with the file it came from.
struct SnapshotInfo {
  std::string file;
  int64_t snapshot_id = 0;
  std::string host;
  std::string boot_id;
  std::string kernel;
  int64_t realtime_ns = 0;
  int64_t boottime_ns = 0;
  int64_t duration_ns = 0;
  int64_t sockets = 0;
  int64_t issues = 0;
  std::string sources;
  std::string netns_mode;

  // Which snapshot this is, across files (host, boot_id, boottime); refers to this object.
  store::SnapshotKey key() const { return {host, boot_id, boottime_ns}; }
};

// Opens `file` read-only (defensive: no triggers, views or extensions; values above 64 KiB
// refused) and validates its application_id, schema version and every table and column type.
// WAL files, and files a plain read-only open fails on (write-protected media), are opened
// with immutable=1, so nothing is ever written beside the file. Throws
// LoadError "FILE: reason".
store::Db open_validated(const std::string& file);

// What a file is on disk, by its name: a file replaced under the name (renamed over) or
// written to since differs.
struct FileIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  int64_t size = 0;
  int64_t mtime_ns = 0;

  bool operator==(const FileIdentity&) const = default;
};

// The identity of the file named `file` now; nullopt when it cannot be stat'ed.
std::optional<FileIdentity> file_identity(const std::string& file);

class OpenFiles;

// One reader's connection to a snapshot file: its own (closed with the lease), or one lent by
// OpenFiles (given back, its page cache released, when the lease ends). Move-only.
class DbLease {
public:
  DbLease() = default;

  explicit DbLease(store::Db db) : m_db(std::move(db)) {}

  DbLease(DbLease&& other) noexcept;
  DbLease& operator=(DbLease&& other) noexcept;
  DbLease(const DbLease&) = delete;
  DbLease& operator=(const DbLease&) = delete;
  ~DbLease();

  bool empty() const { return !m_db.has_value(); }

  // The file this connection reads, as it was when it was opened (the same before and after
  // the open); nullopt when unknown: a stat failed, or the file changed while it was opened.
  const std::optional<FileIdentity>& identity() const { return m_identity; }

  store::Db& db() { return *m_db; }

private:
  friend class OpenFiles;
  friend DbLease open_file(OpenFiles* files, const std::string& file);
  void give_back() noexcept;

  std::optional<store::Db> m_db;
  OpenFiles* m_from = nullptr; // lent by
  std::string m_file;
  std::optional<FileIdentity> m_identity;
};

// Snapshot files held open from a load to the reads that follow it (Context::read_snapshots),
// so that a file replaced or deleted meanwhile (the collector's hourly fold or a prune, under a
// report over a live out-dir) is still read as it was loaded: an open file stays readable
// once unlinked. A held connection is lent to one reader at a time (another waits) and gives
// back its page cache and parsed schema after each read, so holding a day of minute files costs
// descriptors and ~16 KiB each, not caches. Descriptors: the first OpenFiles raises the soft
// RLIMIT_NOFILE to the hard limit; beyond what that leaves (less a reserve for everything else) a
// file is not held, and a read after its first opens the path again and throws a LoadError when the
// file there is no longer the one first read (device, inode, size, mtime). Thread-safe.
class OpenFiles {
public:
  OpenFiles() = default;
  OpenFiles(const OpenFiles&) = delete;
  OpenFiles& operator=(const OpenFiles&) = delete;
  OpenFiles(OpenFiles&&) = delete;
  OpenFiles& operator=(OpenFiles&&) = delete;
  ~OpenFiles();

  // The connection to `file`: the one held (once another reader gives it back), or a new
  // open_validated(file), held from now on while descriptors last. Throws LoadError, also when
  // the held file's schema changed since its first read (written to in place: what was
  // validated is not what a read would parse).
  DbLease open(const std::string& file);

  // Files held open now.
  size_t held() const;

  // How many files the process may hold open at once (all OpenFiles together), after raising
  // the soft RLIMIT_NOFILE; decided once per process.
  static size_t budget();

  // For tests: the budget as if the limit allowed only `n` (nullopt: the real one).
  static void set_budget_for_test(std::optional<size_t> n);

private:
  friend class DbLease;

  struct Entry {
    std::optional<store::Db> db; // held and not lent
    bool held = false;
    bool lent = false;              // also while first opened
    std::optional<FileIdentity> id; // what it was when first read
    int64_t schema = 0;             // held: its PRAGMA schema_version when first read
  };

  void give_back(const std::string& file, store::Db db) noexcept;

  mutable std::mutex m_mutex;
  std::condition_variable m_returned;
  std::map<std::string, Entry> m_files;
  size_t m_held = 0;
};

// The connection for reading `file`: lent by `files` when given, else open_validated(file)
// with its identity.
DbLease open_file(OpenFiles* files, const std::string& file);

// The LoadError "FILE: reason" for an SQLite failure while reading `file`.
LoadError read_error(const std::string& file, const store::DbError& e);

// Expands PATH arguments: regular files as given, directories recursively to their *.sqlite
// files (sorted). Throws LoadError for a path that does not exist, is neither a regular file
// nor a directory (a FIFO would block), or is a directory without *.sqlite files.
std::vector<std::string> expand_paths(const std::vector<std::string>& args);

// Throws LoadError naming `files` when `snapshots` is 0: valid files without a snapshot are
// bad input too (exit 3), for every command.
void require_snapshots(const std::vector<std::string>& files, size_t snapshots);

// Opens `file` read-only (defensive, no triggers or views), validates it and returns its
// snapshots in capture order. Throws LoadError naming the file and the reason.
std::vector<SnapshotInfo> load_snapshot_index(const std::string& file);
// The same from `db`, a file open_validated() returned for `file`.
std::vector<SnapshotInfo> load_snapshot_index(store::Db& db, const std::string& file);

// Capture issues of a file summed per (source, kind).
struct IssueSum {
  std::string source;
  std::string kind;
  int64_t count = 0;
  std::string example;
};

std::vector<IssueSum> load_issue_summary(const std::string& file);

} // namespace sockrewind::analyze
