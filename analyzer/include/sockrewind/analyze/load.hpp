#pragma once
// Finding and opening snapshot files: read-only, validated, never trusting what a file defines.

#include <sockrewind/store/db.hpp>
#include <sockrewind/store/snapshot_key.hpp>

#include <cstddef>
#include <cstdint>
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
