#pragma once
// `sockrewind-analyze info`: files, hosts, snapshot times, intervals and gaps, sources, issues.

#include <sockrewind/analyze/load.hpp>

#include <nlohmann/json.hpp>

#include <ostream>
#include <string>
#include <vector>

namespace sockrewind::analyze {

// Merges snapshots per host in time order; the same snapshot seen in two files (same host,
// boot_id and boottime) is kept once. Sorted by host, then boot, then boottime.
std::vector<SnapshotInfo> merge_snapshots(std::vector<SnapshotInfo> all);

// Intervals larger than this many times the median split a series (a gap).
inline constexpr double k_gap_factor = 2.5;

// Writes the info report for `files` as text. Throws LoadError on a bad file.
void write_info(const std::vector<std::string>& files, std::ostream& out);

// Escapes what could drive a terminal as \xNN, byte by byte: C0 controls (ESC, BEL, CR, LF,
// ...), DEL, C1 controls (U+0080..U+009F, e.g. the one-byte CSI) and every byte that is not
// part of valid UTF-8. Valid UTF-8 text passes unchanged.
std::string escape_text(const std::string& s);

// JSON for output, indented: pure ASCII (control and non-ASCII characters \u-escaped, so it
// cannot drive a terminal either), and invalid UTF-8 from a file becomes U+FFFD instead of
// an exception.
template <typename J> std::string dump_json(const J& j) {
  return j.dump(2, ' ', true, J::error_handler_t::replace);
}

// "2026-11-22T01:02:03.123Z" for a CLOCK_REALTIME value in ns.
std::string iso8601(int64_t realtime_ns);

} // namespace sockrewind::analyze
