#pragma once
// Shared helpers of the libFuzzer targets: an invariant check that aborts (so libFuzzer saves
// the input as a crash), line counting and Issue checks.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string_view>
#include <vector>

// Aborts with the failed condition; libFuzzer then writes the input to crash-<sha1>.
#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      (void)std::fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond);      \
      std::abort();                                                                                \
    }                                                                                              \
  } while (false)

namespace sockrewind::fuzz {

// The bytes of a libFuzzer input as text.
inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Lines as text::next_line() cuts them: one more than the '\n' count (0 for empty text).
inline size_t line_count(std::string_view text) {
  if (text.empty()) {
    return 0;
  }
  return static_cast<size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
}

// Blank-separated fields in `text` (an upper bound for rows zipped from fields).
inline size_t field_count(std::string_view text) {
  size_t n = 0;
  bool in_field = false;
  for (const char c : text) {
    const bool blank = c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
    if (!blank && !in_field) {
      ++n;
    }
    in_field = !blank;
  }
  return n;
}

// text::issue_example() output: cut once past 200 bytes (an escape \xNN may straddle the
// limit) with "..." appended, so at most 206 bytes; no control bytes.
inline bool clean_example(std::string_view s) {
  return s.size() <= 206 && std::none_of(s.begin(), s.end(), [](char c) {
           const auto b = static_cast<unsigned char>(c);
           return b < 0x20 || b == 0x7f;
         });
}

// Every issue (collect::Issue) names `source`, has one of `kinds` and a clean example.
template <typename Issue>
void check_issues(const std::vector<Issue>& issues,
                  std::string_view source,
                  std::initializer_list<std::string_view> kinds) {
  for (const Issue& i : issues) {
    FUZZ_CHECK(i.source == source);
    FUZZ_CHECK(std::find(kinds.begin(), kinds.end(), i.kind) != kinds.end());
    FUZZ_CHECK(clean_example(i.example));
  }
}

} // namespace sockrewind::fuzz
