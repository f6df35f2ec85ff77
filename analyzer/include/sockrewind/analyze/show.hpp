#pragma once
// Helpers shared by `show`, `timeline` and `diff` (defined in show.cpp): time and state
// arguments, ss-style timers, host selection and aligned text tables.

#include <sockrewind/analyze/series.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze {

// Parses an ISO 8601 time ("2026-11-22T10:00:00Z", "2026-11-22T10:00:00.250Z",
// "2026-11-22 10:00", "...+02:00"; no zone = UTC) to ns since the epoch. Throws UsageError.
int64_t parse_time(std::string_view s);

// The TCP state number of an ss state name, case-insensitive, '_' as '-': ESTAB (ESTABLISHED),
// SYN-SENT, SYN-RECV, FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, UNCONN (CLOSE, CLOSED), CLOSE-WAIT,
// LAST-ACK, LISTEN (LISTENING), CLOSING. Throws UsageError listing the names.
uint8_t parse_state(std::string_view name);

// ss -o timer names: 0 "off", 1 "on", 2 "keepalive", 3 "timewait", 4 "persist".
std::string timer_name(int64_t timer);

// A timer's remaining time: "200ms", "1.2s", "2min3s".
std::string format_ms(int64_t ms);

// The hosts that the selection must be narrowed to: throws UsageError when `hosts` holds
// several and `wanted` is empty ("several hosts: a, b; use --host"), or when `wanted` is not
// among them. Returns the host to use.
std::string pick_host(const std::vector<std::string>& hosts,
                      const std::optional<std::string>& wanted);

// One snapshot of a host's merged series (all its timelines, in time order).
struct HostSnap {
  uint32_t timeline = 0; // index into Series::timelines
  uint32_t snap = 0;     // index into Timeline::snaps
};

// Every snapshot of one host in time order (timelines ordered by their first snapshot); the
// position in `snaps` + 1 is the snapshot number users see (`diff --from 3`).
struct HostSeries {
  std::string host;
  std::vector<HostSnap> snaps;
  std::map<uint32_t, size_t> offset; // timeline index -> position of its first snapshot

  size_t pos(uint32_t timeline, uint32_t snap) const { return offset.at(timeline) + snap; }
};

HostSeries host_series(const Series& s, const std::string& host);

// The hosts of a series' timelines.
std::vector<std::string> series_hosts(const Series& s);

// What lies between two consecutive snapshots of a host series: "" (nothing), or a marker line
// body such as "gap: 660.0 s without snapshots" or "reboot: boot ID".
std::string boundary(const Series& s, const HostSnap& prev, const HostSnap& next);

// Prints rows as left-aligned columns separated by two spaces (the last column unpadded). A row
// of one cell is a free-form line (a gap marker): printed as is, not part of the widths.
void write_table(const std::vector<std::vector<std::string>>& rows,
                 std::ostream& out,
                 const std::string& indent = "");

// A Sample field: "-" or null for k_na, else the number.
std::string na_text(uint32_t v);
nlohmann::json na_json(uint32_t v);
nlohmann::json na_json(uint8_t v);
nlohmann::json na_json(uint64_t v);
// "comm/pid" of a timeline process, "-" for k_na.
std::string owner_text(const Series& s, const Timeline& tl, uint32_t proc);

} // namespace sockrewind::analyze
