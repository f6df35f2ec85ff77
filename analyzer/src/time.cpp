// Times: ISO 8601 out and in, durations.
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdio>
#include <ctime>
#include <optional>

namespace sockrewind::analyze {

namespace {

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2 ? 1 : 0;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

bool leap(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int64_t days_in_month(int64_t y, int64_t m) {
  static constexpr std::array<int64_t, 12> k_days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && leap(y) ? 29 : k_days[static_cast<size_t>(m - 1)];
}

// A cursor over the time text.
class TimeParser {
public:
  explicit TimeParser(std::string_view s) : m_s(s) {}

  bool done() const { return m_pos == m_s.size(); }

  char peek() const { return done() ? '\0' : m_s[m_pos]; }

  bool accept(char c) {
    if (peek() != c) {
      return false;
    }
    ++m_pos;
    return true;
  }

  // Exactly `n` digits.
  std::optional<int64_t> digits(size_t n) {
    if (m_pos + n > m_s.size()) {
      return std::nullopt;
    }
    int64_t v = 0;
    for (size_t i = 0; i < n; ++i) {
      const char c = m_s[m_pos + i];
      if (c < '0' || c > '9') {
        return std::nullopt;
      }
      v = v * 10 + (c - '0');
    }
    m_pos += n;
    return v;
  }

  // A fraction after the '.', as ns (digits beyond 9 are ignored).
  std::optional<int64_t> fraction() {
    int64_t ns = 0;
    int64_t scale = 100'000'000;
    size_t n = 0;
    while (!done() && peek() >= '0' && peek() <= '9') {
      ns += (peek() - '0') * scale;
      scale /= 10;
      ++m_pos;
      ++n;
    }
    return n == 0 ? std::nullopt : std::optional<int64_t>(ns);
  }

private:
  std::string_view m_s;
  size_t m_pos = 0;
};

} // namespace

std::string iso8601(int64_t realtime_ns) {
  const auto secs = static_cast<time_t>(realtime_ns / 1'000'000'000);
  const auto ms = static_cast<int>((realtime_ns / 1'000'000) % 1000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[40];
  const size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &utc);
  char frac[8];
  (void)std::snprintf(frac, sizeof frac, ".%03dZ", ms < 0 ? 0 : ms);
  return std::string(buf, n) + frac;
}

int64_t parse_time(std::string_view s) {
  const auto bad = [&]() {
    return UsageError("bad time '" + escape_text(std::string(s))
                      + "': expected ISO 8601 like 2026-11-22T10:00:00Z");
  };
  TimeParser p(s);
  const auto y = p.digits(4);
  if (!y || !p.accept('-')) {
    throw bad();
  }
  const auto mo = p.digits(2);
  if (!mo || !p.accept('-')) {
    throw bad();
  }
  const auto d = p.digits(2);
  if (!d || *mo < 1 || *mo > 12 || *d < 1 || *d > days_in_month(*y, *mo)) {
    throw bad();
  }
  int64_t h = 0;
  int64_t mi = 0;
  int64_t sec = 0;
  int64_t frac = 0;
  int64_t offset_s = 0;
  if (p.accept('T') || p.accept('t') || p.accept(' ')) {
    const auto hh = p.digits(2);
    if (!hh || !p.accept(':')) {
      throw bad();
    }
    const auto mm = p.digits(2);
    if (!mm) {
      throw bad();
    }
    h = *hh;
    mi = *mm;
    if (p.accept(':')) {
      const auto ss = p.digits(2);
      if (!ss) {
        throw bad();
      }
      sec = *ss;
      if (p.accept('.') || p.accept(',')) {
        const auto f = p.fraction();
        if (!f) {
          throw bad();
        }
        frac = *f;
      }
    }
    if (h > 23 || mi > 59 || sec > 60) {
      throw bad();
    }
    if (p.accept('Z') || p.accept('z')) {
      // UTC
    } else if (p.peek() == '+' || p.peek() == '-') {
      const int64_t sign = p.peek() == '-' ? -1 : 1;
      (void)p.accept(p.peek());
      const auto oh = p.digits(2);
      if (!oh) {
        throw bad();
      }
      (void)p.accept(':');
      const auto om = p.digits(2);
      if (!om || *oh > 23 || *om > 59) {
        throw bad();
      }
      offset_s = sign * (*oh * 3600 + *om * 60);
    }
  }
  if (!p.done()) {
    throw bad();
  }
  const int64_t secs = days_from_civil(*y, *mo, *d) * 86400 + h * 3600 + mi * 60 + sec - offset_s;
  return secs * 1'000'000'000 + frac;
}

std::string format_ms(int64_t ms) {
  if (ms < 0) {
    return "-" + format_ms(-ms);
  }
  if (ms < 1000) {
    return std::to_string(ms) + "ms";
  }
  if (ms < 60'000) {
    char buf[32];
    (void)std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
    return buf;
  }
  return std::to_string(ms / 60'000) + "min" + std::to_string((ms % 60'000) / 1000) + "s";
}

Intervals snapshot_intervals(std::span<const int64_t> boottime_ns) {
  Intervals r;
  for (size_t i = 1; i < boottime_ns.size(); ++i) {
    r.seconds.push_back(static_cast<double>(boottime_ns[i] - boottime_ns[i - 1]) / 1e9);
  }
  if (r.seconds.empty()) {
    return r;
  }
  std::vector<double> sorted = r.seconds;
  std::sort(sorted.begin(), sorted.end());
  const size_t mid = sorted.size() / 2;
  r.median_s = sorted.size() % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0;
  for (size_t i = 0; i < r.seconds.size(); ++i) {
    if (r.median_s > 0 && r.seconds[i] > k_gap_factor * r.median_s) {
      r.gaps.push_back(i);
    }
  }
  return r;
}

} // namespace sockrewind::analyze
