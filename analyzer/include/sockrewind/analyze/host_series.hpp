#pragma once
// One host's snapshots across its timelines (boots) in time order, as `show`, `timeline` and
// `diff` number them, and choosing the host when the files hold several.

#include <sockrewind/analyze/series.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sockrewind::analyze {

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

} // namespace sockrewind::analyze
