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

// Removes every ".*.sqlite.tmp-PID" file in `dir`: temporary files of runs that were killed.
// Call it only while holding the directory's OutDirLock, so that no other run is writing one
// (the PID in the name is not checked: it may have been reused, or belong to another pid
// namespace). Returns how many were removed.
int remove_stale_temp_files(const std::string& dir);

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
  // Waits up to `wait_seconds` (0: not at all) for the lock. Throws LockBusy when another run
  // still holds it then, std::runtime_error when the lock file cannot be used.
  OutDirLock(const std::string& dir, double wait_seconds);
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
