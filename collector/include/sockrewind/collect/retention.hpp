#pragma once
// Retention: which of the collector's own files in --out to delete after a run (--keep-days,
// --max-bytes), and lowering the collector's own priority (--nice).
//
// Only files the collector wrote are ever candidates: regular files (never symlinks or
// directories) named exactly like its output, "<host>-<yyyymmddTHHMMSSZ>[-N].sqlite", owned by
// the collector's effective uid, whose SQLite header carries the sockrewind application_id. The
// age of a file is the UTC time in its name (when its capture started), not its mtime, which
// copying, restoring or touching a file changes.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::collect {

// "<host>-<yyyymmddTHHMMSSZ>[-N].sqlite" (N ≥ 2, no leading zero, as the writer appends when
// two runs start in the same second; any non-empty host), or an hourly archive
// "<host>-<yyyymmddTHH0000Z>-hour.sqlite". The time is seconds since the epoch
// (UTC) and `seq` is N (1 without the suffix). nullopt for any other name.
struct CollectorName {
  int64_t utc_seconds = 0;
  int seq = 1;
  bool archive = false; // "<host>-<yyyymmddTHH0000Z>-hour.sqlite": an hourly archive (fold.hpp)
};

std::optional<CollectorName> parse_collector_name(std::string_view name);

// "123", "500M", "1G": bytes, with an optional binary suffix K, M, G or T (case-insensitive,
// powers of 1024). nullopt for anything else, 0, or an overflow.
std::optional<uint64_t> parse_size(std::string_view text);

// What the caller asked for; an absent limit does not prune.
struct RetentionPolicy {
  std::optional<int> keep_days;
  std::optional<uint64_t> max_bytes;

  bool active() const { return keep_days.has_value() || max_bytes.has_value(); }
};

// One directory entry as lstat() and a look at its header saw it.
struct ListedFile {
  std::string name;
  bool regular = false;    // S_ISREG of lstat (a symlink is not)
  uint32_t uid = 0;        // owner
  uint64_t size = 0;       // st_size
  bool sockrewind = false; // a SQLite header with application_id 'SKRW' (only looked at for
                           // regular files with a collector name)
};

// The collector's files among `listing`, with their name time.
struct OwnFile {
  std::string name;
  int64_t utc_seconds = 0;
  int seq = 1;
  uint64_t size = 0;
  bool archive = false;
};

std::vector<OwnFile> own_files(const std::vector<ListedFile>& listing, uint32_t euid);

// own_files() of the directory, oldest first. Throws std::system_error when it cannot be listed.
std::vector<OwnFile> own_files_in(const std::string& dir);

// The names to delete, oldest first (name time, then N, then name). Pure. First every file
// whose name time is older than `now_utc_seconds` - keep_days days, then, oldest first, until
// the collector's files that remain total at most max_bytes. `keep` (the file just written) is
// never selected, even when it alone is larger than max_bytes; nor is anything but own_files().
std::vector<std::string> select_for_pruning(const std::vector<ListedFile>& listing,
                                            uint32_t euid,
                                            const RetentionPolicy& policy,
                                            int64_t now_utc_seconds,
                                            const std::string& keep);

// What prune_out_dir did. `warnings` are one-line texts (no prefix); pruning never throws.
struct PruneResult {
  int deleted = 0;
  uint64_t deleted_bytes = 0;
  uint64_t remaining_bytes = 0; // the collector's files left in DIR
  std::vector<std::string> warnings;
};

// Lists `dir` through one O_DIRECTORY descriptor (fstatat/openat/unlinkat relative to it,
// never following a symlink), selects with select_for_pruning() and deletes. Before each
// deletion the entry must still be the same regular file (device and inode) that was listed
// and checked. Call it while holding the directory's OutDirLock. `keep` is the bare name of the
// file just written ("" for none).
PruneResult prune_out_dir(const std::string& dir,
                          const RetentionPolicy& policy,
                          int64_t now_utc_seconds,
                          const std::string& keep);

// Lowers the calling process's CPU priority (nice 19) and IO priority (IOPRIO_CLASS_IDLE), as
// `nice -n 19 ionice -c3` would. Call it before any thread is started: threads inherit both.
// Returns one-line warnings for whatever could not be set (it never throws).
std::vector<std::string> lower_own_priority();

} // namespace sockrewind::collect
