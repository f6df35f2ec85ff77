#pragma once
// The output directory: default location, creation, safety checks and leftover cleanup.

#include <string>

namespace sockrewind::collect {

// /var/lib/sockrewind as root; otherwise $XDG_STATE_HOME/sockrewind or
// ~/.local/state/sockrewind.
std::string default_out_dir();

// Creates `dir` (and missing parents) with mode 0700 when absent. When `strict` (running as
// root), refuses a directory that is not a directory, or that group or others can write to,
// as sshd's StrictModes does. Throws std::runtime_error with a one-line reason.
void prepare_out_dir(const std::string& dir, bool strict);

// Removes ".*.sqlite.tmp-PID" files in `dir` left by runs that were killed (PID not alive).
// Returns how many were removed.
int remove_stale_temp_files(const std::string& dir);

} // namespace sockrewind::collect
