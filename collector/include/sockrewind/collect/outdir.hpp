#pragma once
// The output directory: default location, creation, safety checks and leftover cleanup.

#include <stdexcept>
#include <string>

namespace sockrewind::collect {

// /var/lib/sockrewind as root; otherwise $XDG_STATE_HOME/sockrewind or
// ~/.local/state/sockrewind.
std::string default_out_dir();

// Creates `dir` (and missing parents) with mode 0700 when absent. When `strict` (running as
// root), refuses a directory that is not a directory, or that group or others can write to,
// as sshd's StrictModes does. Throws std::runtime_error with a one-line reason.
void prepare_out_dir(const std::string& dir, bool strict);

// Which temporary files: a minute run's (".*.sqlite.tmp-PID"), or a fold's hourly archive's
// (".*-hour.sqlite.tmp-PID").
enum class TempFiles { snapshot, archive };

// Removes every temporary file of `kind` in `dir`: those of runs (or folds) that were killed.
// Call it only while holding the lock that guards their writers, the directory's OutDirLock
// for snapshots, the fold's for archives, so that no other process is writing one (the PID in
// the name is not checked: it may have been reused, or belong to another pid namespace).
// Returns how many were removed.
int remove_stale_temp_files(const std::string& dir, TempFiles kind = TempFiles::snapshot);

// Another run held the directory's lock for longer than the caller would wait.
class LockBusy : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// One run at a time per output directory: flock(LOCK_EX) on DIR/.sockrewind.lock (created
// with O_NOFOLLOW, mode 0600; it holds the holder's PID as text). Held from before the stale
// temporary files are removed until the new file has its final name. The destructor unlinks
// the lock file and then releases it; a waiter that locked the unlinked file notices (the path
// no longer names its inode) and retries on the new one. A run that was killed leaves the file,
// which the next run simply locks again: flock dies with its holder.
class OutDirLock {
public:
  static constexpr const char* k_lock_name = ".sockrewind.lock";
  static constexpr const char* k_fold_lock_name = ".sockrewind-fold.lock";

  // Waits up to `wait_seconds` (0: not at all) for the lock. Throws LockBusy when another run
  // still holds it then, std::runtime_error when the lock file cannot be used.
  // `name`: the lock file in `dir` (k_fold_lock_name: the fold's, held apart from the runs').
  OutDirLock(const std::string& dir, double wait_seconds, const char* name = k_lock_name);
  OutDirLock(const OutDirLock&) = delete;
  OutDirLock& operator=(const OutDirLock&) = delete;
  OutDirLock(OutDirLock&&) = delete;
  OutDirLock& operator=(OutDirLock&&) = delete;
  ~OutDirLock();

  const std::string& path() const { return m_path; }

private:
  std::string m_path;
  int m_fd = -1;
};

} // namespace sockrewind::collect
