#pragma once
// Times in and out: ISO 8601 (UTC) for CLOCK_REALTIME values, and short durations.

#include <cstdint>
#include <string>
#include <string_view>

namespace sockrewind::analyze {

// "2026-11-22T01:02:03.123Z" for a CLOCK_REALTIME value in ns.
std::string iso8601(int64_t realtime_ns);

// Parses an ISO 8601 time ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.250Z",
// "2026-11-22 10:00", "...+02:00"; no zone = UTC) to ns since the epoch. Throws UsageError.
int64_t parse_time(std::string_view s);

// A timer's remaining time: "200ms", "1.2s", "2min3s".
std::string format_ms(int64_t ms);

} // namespace sockrewind::analyze
