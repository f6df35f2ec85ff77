#pragma once
// Small helpers shared by the connection detectors (tx_queue_stall, close_wait_leak,
// orphan_pressure, retransmissions, tcp_memory_pressure). Header-only, private to them.
#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze::conn {

inline Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

inline Json opt(uint64_t v) {
  return v == k_na64 ? Json(nullptr) : Json(v);
}

inline Json opt(uint8_t v) {
  return v == k_na8 ? Json(nullptr) : Json(v);
}

inline bool is_tcp(const Track& t) {
  return t.family != k_af_unix && t.proto == k_proto_tcp;
}

// "pid 123 (nginx)", or `none` when no owner was seen.
inline std::string owner_text(const Series& s,
                              const Timeline& tl,
                              uint32_t proc,
                              std::string_view none = "no owning process seen") {
  if (proc == k_na || proc >= tl.procs.size()) {
    return std::string(none);
  }
  const Process& p = tl.procs[proc];
  return "pid " + std::to_string(p.pid) + " (" + std::string(s.strings.get(p.comm)) + ")";
}

// "tcp 127.0.0.1:5000 -> 127.0.0.1:80".
inline std::string sock_text(const Series& s, const Track& t) {
  return proto_name(t) + " " + endpoint(s, t, true) + " -> " + endpoint(s, t, false);
}

// Per-snapshot values of a counter or gauge of one netns, or nullptr when never captured.
inline const std::vector<int64_t>*
values(const Series& s, const Timeline& tl, uint32_t netns, std::string_view name) {
  const uint32_t id = s.strings.find(name);
  return id == k_na ? nullptr : tl.counter(netns, id);
}

// The value in `snap`, or k_no_counter.
inline int64_t value_at(const std::vector<int64_t>* v, uint32_t snap) {
  return v == nullptr || snap >= v->size() ? k_no_counter : (*v)[snap];
}

// Counter deltas indexed by the snapshot that ends the interval (-1: no valid interval).
inline std::vector<int64_t>
deltas_by_snap(const Series& s, const Timeline& tl, uint32_t netns, std::string_view name) {
  std::vector<int64_t> out(tl.snaps.size(), -1);
  for (const CounterStep& c : counter_steps(s, tl, netns, name)) {
    out[c.to] = c.delta;
  }
  return out;
}

inline Json delta_json(const std::vector<int64_t>& d, uint32_t snap) {
  return snap < d.size() && d[snap] >= 0 ? Json(d[snap]) : Json(nullptr);
}

// Maximal index ranges of t.samples within one gap-free run of consecutive snapshots where
// pred(sample) holds.
template <class Pred> std::vector<Range> runs_where(const Timeline& tl, const Track& t, Pred pred) {
  std::vector<Range> out;
  for (const Range& c : contiguous_runs(tl, t)) {
    size_t begin = c.begin;
    for (size_t i = c.begin; i <= c.end; ++i) {
      if (i == c.end || !pred(t.samples[i])) {
        if (i > begin) {
          out.push_back({begin, i});
        }
        begin = i + 1;
      }
    }
  }
  return out;
}

} // namespace sockrewind::analyze::conn
