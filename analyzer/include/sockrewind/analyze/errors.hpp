#pragma once
// sockrewind-analyze's usage error, its exit codes, and how its main turns an error into one
// of them (LoadError, for bad files, is load.hpp's).

#include <exception>
#include <stdexcept>
#include <string>

namespace sockrewind::analyze {

// An option value that parses but makes no sense (unknown detector, no such snapshot...).
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

inline constexpr int k_exit_ok = 0;
inline constexpr int k_exit_fail_on = 1;   // report --fail-on met
inline constexpr int k_exit_usage = 2;     // CLI11's parse errors and UsageError
inline constexpr int k_exit_bad_input = 3; // LoadError: unreadable, corrupt, incompatible file
inline constexpr int k_exit_internal = 4;  // a bug: anything else

// What main does with an error that ended a command: the exit code and the one line for
// stderr (without its newline; escaped with escape_text, so it is one line and safe on a
// terminal).
struct ErrorExit {
  int code = k_exit_internal;
  std::string line;
};

// UsageError: 2, "sockrewind-analyze: error: WHAT"; LoadError: 3, the same line (WHAT names the
// file). Everything else is a bug, not the input's fault: InternalError (SR_ASSERT), any other
// std::logic_error, std::bad_alloc, any other exception, or something thrown that is not a
// std::exception: 4, "sockrewind-analyze: internal error: WHAT".
ErrorExit error_exit(const std::exception_ptr& error);

} // namespace sockrewind::analyze
