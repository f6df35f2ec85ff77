#pragma once
// Private helpers of the listener/connect detectors (listen_overflow, unaccepted_connection,
// syn_flood, port_exhaustion, syn_sent_stuck): per-interval counter deltas, destination
// subjects and owner descriptions.
#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze::listen_util {

inline Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

inline Json opt8(uint8_t v) {
  return v == k_na8 ? Json(nullptr) : Json(v);
}

// "pid 123 (nginx)" or `none`.
inline std::string owner_text(const Series& s,
                              const Timeline& tl,
                              uint32_t proc,
                              const std::string& none = "no owning process seen") {
  if (proc == k_na || proc >= tl.procs.size()) {
    return none;
  }
  const Process& p = tl.procs[proc];
  return "pid " + std::to_string(p.pid) + " (" + std::string(s.strings.get(p.comm)) + ")";
}

// Loopback address text (127.0.0.0/8, ::1, v4-mapped 127.x).
inline bool is_loopback(std::string_view a) {
  if (a.starts_with("::ffff:")) {
    a.remove_prefix(7);
  }
  return a.starts_with("127.") || a == "::1";
}

// "addr" as an endpoint host part: IPv6 in brackets.
inline std::string host_part(const Series& s, const Track& t, uint32_t addr) {
  std::string a = addr == k_na ? "*" : s.strings.at(addr);
  if (t.family == k_af_inet6 && addr != k_na) {
    a = "[" + a + "]";
  }
  return a;
}

// Subject of a per-destination finding: host, netns, proto, state, local ("addr:*" when several
// local ports), remote "addr:port", and the owner (pid, comm, cmdline, start_ticks) or nulls.
inline Json dest_subject(const Series& s,
                         const Timeline& tl,
                         const Track& t,
                         const std::string& state,
                         const std::string& local,
                         uint32_t proc) {
  Json j = netns_subject(tl, t.netns);
  j["proto"] = proto_name(t);
  j["family"] = t.family == k_af_inet6 ? "inet6" : "inet";
  j["state"] = state;
  j["local"] = local;
  j["remote"] = endpoint(s, t, false);
  const Json p = process_json(s, tl, proc);
  for (const char* k : {"pid", "comm", "cmdline", "start_ticks"}) {
    j[k] = p.is_null() ? Json(nullptr) : p[k];
  }
  return j;
}

// Counter deltas indexed by the snapshot that ends the interval: delta[to] (-1 = no valid
// interval ends there) and dt[to] in seconds.
struct Deltas {
  std::vector<int64_t> delta;
  std::vector<double> dt;
  std::vector<uint32_t> from;
  bool any = false; // the counter was seen at all

  int64_t at(uint32_t snap) const { return delta.empty() ? -1 : delta[snap]; }
};

inline Deltas deltas(const Series& s, const Timeline& tl, uint32_t netns, std::string_view name) {
  Deltas d;
  d.delta.assign(tl.snaps.size(), -1);
  d.dt.assign(tl.snaps.size(), 0);
  d.from.assign(tl.snaps.size(), k_na);
  const uint32_t id = s.strings.find(name);
  d.any = id != k_na && tl.counter(netns, id) != nullptr;
  for (const CounterStep& c : counter_steps(s, tl, netns, name)) {
    d.delta[c.to] = c.delta;
    d.dt[c.to] = c.dt;
    d.from[c.to] = c.from;
  }
  return d;
}

// Sum of several counters per interval; an interval counts when at least one of them is valid
// there (a counter the kernel does not have does not hide the others).
inline Deltas sum_deltas(const std::vector<Deltas>& parts, size_t n) {
  Deltas d;
  d.delta.assign(n, -1);
  d.dt.assign(n, 0);
  d.from.assign(n, k_na);
  for (const Deltas& p : parts) {
    d.any = d.any || p.any;
    for (size_t i = 0; i < n && i < p.delta.size(); ++i) {
      if (p.delta[i] < 0) {
        continue;
      }
      d.delta[i] = std::max<int64_t>(d.delta[i], 0) + p.delta[i];
      d.dt[i] = p.dt[i];
      d.from[i] = p.from[i];
    }
  }
  return d;
}

inline Json delta_json(const Deltas& d, uint32_t snap) {
  return d.at(snap) < 0 ? Json(nullptr) : Json(d.delta[snap]);
}

// Rate per second of the interval ending at `snap` (0 when none or dt is 0).
inline double rate(const Deltas& d, uint32_t snap) {
  return d.at(snap) <= 0 || d.dt[snap] <= 0 ? 0 : static_cast<double>(d.delta[snap]) / d.dt[snap];
}

// Sum of the valid deltas of intervals ending in [first, last].
inline int64_t total(const Deltas& d, uint32_t first, uint32_t last) {
  int64_t sum = 0;
  for (uint32_t i = first; i <= last && i < d.delta.size(); ++i) {
    sum += std::max<int64_t>(d.delta[i], 0);
  }
  return sum;
}

// A sysctl as a number (first field), or nullopt-like -1 when not captured.
inline int64_t
limit_first(const Timeline& tl, uint32_t netns, const std::string& name, uint32_t snap) {
  const std::vector<int64_t> v = limit_numbers(tl, netns, name, snap);
  return v.empty() ? -1 : v.front();
}

} // namespace sockrewind::analyze::listen_util
