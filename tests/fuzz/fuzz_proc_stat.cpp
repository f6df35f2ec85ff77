// libFuzzer target: parse_proc_pid_stat (/proc/[pid]/stat), process_state and parse_u64
// (single-number /proc and /proc/sys files). The whole input is the file's text.

#include "fuzz_check.hpp"

#include <sockrewind/collect/counters.hpp>
#include <sockrewind/collect/fileio.hpp>

#include <limits>

namespace {

namespace sc = sockrewind::collect;
namespace sf = sockrewind::fuzz;

// parse_u64's contract, written out: optional blanks, decimal digits only, optional trailing
// blanks or newlines, no overflow.
bool reference_u64(std::string_view s, uint64_t& out) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  if (s.empty()) {
    return false;
  }
  uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
    const auto d = static_cast<uint64_t>(c - '0');
    if (v > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      return false;
    }
    v = v * 10 + d;
  }
  out = v;
  return true;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = sf::as_text(data, size);

  if (const auto ps = sc::parse_proc_pid_stat(text)) {
    const size_t open = text.find('(');
    const size_t close = text.rfind(')');
    FUZZ_CHECK(open != std::string_view::npos && close != std::string_view::npos);
    // comm is everything between the first '(' and the last ')'.
    FUZZ_CHECK(ps->comm == text.substr(open + 1, close - open - 1));
    // The state is the one-character field after comm.
    const size_t state_at = text.find_first_not_of(" \t\r\n\v\f", close + 1);
    FUZZ_CHECK(state_at != std::string_view::npos && text[state_at] == ps->state);
    // What the collector records: that letter when it is an ASCII letter, else nothing.
    const auto st = sc::process_state(*ps);
    const bool letter =
        (ps->state >= 'A' && ps->state <= 'Z') || (ps->state >= 'a' && ps->state <= 'z');
    FUZZ_CHECK(st.has_value() == letter);
    FUZZ_CHECK(!st || *st == ps->state);
    FUZZ_CHECK(std::to_string(ps->pid).size() <= open);
  }

  uint64_t got = 0;
  uint64_t want = 0;
  const bool ok = sc::parse_u64(text, got);
  FUZZ_CHECK(ok == reference_u64(text, want));
  FUZZ_CHECK(!ok || got == want);
  return 0;
}
