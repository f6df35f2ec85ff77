#pragma once
// Times in and out: ISO 8601 (UTC) for CLOCK_REALTIME values, and short durations.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze {

// "2026-11-22T01:02:03.123Z" for a CLOCK_REALTIME value in ns.
std::string iso8601(int64_t realtime_ns);

// Parses an ISO 8601 time ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.250Z",
// "2026-11-22 10:00", "...+02:00"; no zone = UTC) to ns since the epoch. Throws UsageError.
int64_t parse_time(std::string_view s);

// A timer's remaining time: "200ms", "1.2s", "2min3s".
std::string format_ms(int64_t ms);

// Intervals larger than this many times the median split a series (a gap).
inline constexpr double k_gap_factor = 2.5;

// The intervals between consecutive snapshots of one boot, and its gaps.
struct Intervals {
  std::vector<double> seconds; // seconds[i]: from snapshot i to i + 1
  double median_s = 0;         // 0 with fewer than two snapshots
  std::vector<size_t> gaps;    // each i with seconds[i] > k_gap_factor x median_s (median_s > 0)
};

// The one median-interval and gap rule (info, series runs), from CLOCK_BOOTTIME values in
// snapshot order.
Intervals snapshot_intervals(std::span<const int64_t> boottime_ns);

} // namespace sockrewind::analyze
