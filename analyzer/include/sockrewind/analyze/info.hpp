#pragma once
// `sockrewind-analyze info`: files, hosts, snapshot times, intervals and gaps, sources, issues.

#include <sockrewind/analyze/load.hpp>

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

// Escapes control characters (and DEL) as \xNN so that text from a file cannot drive the
// terminal.
std::string escape_text(const std::string& s);

// "2026-11-22T01:02:03.123Z" for a CLOCK_REALTIME value in ns.
std::string iso8601(int64_t realtime_ns);

} // namespace sockrewind::analyze
