#pragma once
// Small helpers shared by udp_drops, unix_backlog and socket_leak (private to these detectors).
#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze::proc_util {

// Concatenates string pieces into one string (no temporaries per `+`).
template <typename... Parts> std::string cat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

// A nullable number for evidence.
inline Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

// "pid 123 (nginx)", or `none` when the process is unknown.
inline std::string who(const Series& s,
                       const Timeline& tl,
                       uint32_t proc,
                       std::string_view none = "no owning process seen") {
  if (proc == k_na || proc >= tl.procs.size()) {
    return std::string(none);
  }
  const Process& p = tl.procs[proc];
  return "pid " + std::to_string(p.pid) + " (" + std::string(s.strings.get(p.comm)) + ")";
}

// "45 s", "12 min", "3.5 h", "2.1 d".
inline std::string duration_text(double seconds) {
  if (seconds < 120) {
    return num(seconds) + " s";
  }
  if (seconds < 7200) {
    return num(seconds / 60) + " min";
  }
  if (seconds < 172800) {
    return num(seconds / 3600) + " h";
  }
  return num(seconds / 86400) + " d";
}

// "60/s", "3/min", "2.5/h" (a rate small per second reads better per minute or hour).
inline std::string rate_text(double per_s) {
  if (per_s >= 1 || per_s <= 0) {
    return num(per_s) + "/s";
  }
  if (per_s * 60 >= 1) {
    return num(per_s * 60) + "/min";
  }
  return num(per_s * 3600) + "/h";
}

// Per-snapshot deltas of the sum of several counters of one netns, indexed by the snapshot that
// ends the interval: valid only where every counter that exists in this netns had a valid step
// (counter_steps: same boot and netns, resets dropped). Counters absent from the netns are
// ignored (e.g. no snmp6 without IPv6).
struct SnapDeltas {
  std::vector<int64_t> delta; // -1: no valid interval ends here
  std::vector<uint32_t> from; // the snapshot that starts it
  std::vector<double> dt;
  bool any = false; // at least one of the counters exists
};

inline SnapDeltas snap_deltas(const Series& s,
                              const Timeline& tl,
                              uint32_t netns,
                              const std::vector<std::string_view>& names) {
  SnapDeltas out;
  out.delta.assign(tl.snaps.size(), -1);
  out.dt.assign(tl.snaps.size(), 0);
  out.from.assign(tl.snaps.size(), 0);
  std::vector<int> seen(tl.snaps.size(), 0);
  int present = 0;
  for (const std::string_view name : names) {
    const uint32_t id = s.strings.find(name);
    if (id == k_na || tl.counter(netns, id) == nullptr) {
      continue;
    }
    ++present;
    for (const CounterStep& c : counter_steps(s, tl, netns, name)) {
      if (c.to >= out.delta.size()) {
        continue;
      }
      if (seen[c.to] == 0) {
        out.delta[c.to] = 0;
        out.dt[c.to] = c.dt;
        out.from[c.to] = c.from;
      } else if (out.from[c.to] != c.from) {
        out.dt[c.to] = -1; // the counters disagree on where the interval starts
      }
      ++seen[c.to];
      out.delta[c.to] += c.delta;
    }
  }
  out.any = present > 0;
  for (size_t i = 0; i < seen.size(); ++i) {
    if (seen[i] != present || out.dt[i] < 0) {
      out.delta[i] = -1; // some counter had no valid step here (reset, absent)
    }
  }
  return out;
}

} // namespace sockrewind::analyze::proc_util
