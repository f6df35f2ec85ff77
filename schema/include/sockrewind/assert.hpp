#pragma once
// SR_ASSERT(cond): an always-on check of one of the program's own invariants (on in Release
// too; NDEBUG does not turn it off). When it fails, the program has a bug: it throws
// InternalError "FILE:LINE: assertion failed: COND", which both mains report as one line
// `sockrewind-...: internal error: ...` with exit 4. Never use it for bad input (a file, an
// option, the kernel's answer): those have their own errors.

#include <stdexcept>
#include <string>

namespace sockrewind {

// A broken invariant: a bug in sockrewind, not a problem of the input or the host.
class InternalError : public std::logic_error {
public:
  using std::logic_error::logic_error;
};

[[noreturn]] inline void assertion_failed(const char* file, int line, const char* condition) {
  throw InternalError(std::string(file) + ":" + std::to_string(line)
                      + ": assertion failed: " + condition);
}

} // namespace sockrewind

// __FILE_NAME__ (g++ 12, clang): the file's name without the build's directories.
#ifdef __FILE_NAME__
#define SR_ASSERT_FILE __FILE_NAME__
#else
#define SR_ASSERT_FILE __FILE__
#endif

// NOLINTNEXTLINE(cppcoreguidelines-macro-usage): needs the condition's text, file and line.
#define SR_ASSERT(cond)                                                                            \
  ((cond) ? static_cast<void>(0) : ::sockrewind::assertion_failed(SR_ASSERT_FILE, __LINE__, #cond))
