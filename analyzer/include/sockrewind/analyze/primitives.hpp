#pragma once
// Building blocks shared by the detectors (research/detectors.md §0): naming, subjects and
// evidence, gap-free runs, the GROW trend test, counter deltas and listener matching.

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/series.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze {

// "tcp", "udp", "udplite", "raw", "u_str", "u_dgr", "u_seq" (ss -tuwx names).
std::string proto_name(const Track& t);
// ss names: "ESTAB", "SYN-SENT", ..., "LISTEN"; UNCONN for state 7.
std::string state_name(uint8_t state);
// "addr:port", "[v6addr]:port", port 0 as "*"; unix: the path or "*" (local), the peer inode
// or "*" (remote).
std::string endpoint(const Series& s, const Track& t, bool local);
// CLOCK_REALTIME of a snapshot as ISO 8601.
std::string snap_time(const Timeline& tl, uint32_t snap);

// {"pid", "start_ticks", "comm", "cmdline", "uid"} of a process; null for k_na.
Json process_json(const Series& s, const Timeline& tl, uint32_t proc);
// The report subject of a socket as seen in `sample`: host, netns, proto, state, local, remote,
// inode, cookie and the owner (pid, comm, cmdline, start_ticks) when known.
Json socket_subject(const Series& s, const Timeline& tl, const Track& t, const Sample& sample);
// Subject of a process-level finding: host, pid, comm, cmdline, start_ticks.
Json process_subject(const Series& s, const Timeline& tl, uint32_t proc);
// Subject of a host/netns-level finding: host, netns.
Json netns_subject(const Timeline& tl, uint32_t netns);
// Sets finding.pid/start_ticks from a process index (for escalation); no-op for k_na.
void set_owner(Finding& f, const Timeline& tl, uint32_t proc);

// The sample of `t` in snapshot `snap`, or nullptr (binary search).
const Sample* sample_at(const Track& t, uint32_t snap);

// Consecutive index ranges [begin, end) of `t.samples` with no gap between them: each sample is
// in the snapshot right after the previous one's, within the same gap-free run.
struct Range {
  size_t begin = 0;
  size_t end = 0;

  size_t size() const { return end - begin; }
};

std::vector<Range> contiguous_runs(const Timeline& tl, const Track& t);

// GROW (detectors.md §0.4) over (t, x) of one gap-free run: >= min_n points; >= 80% of steps not
// decreasing (a decrease is x_i < x_{i-1} - max(tol_abs, 5% x_{i-1})); Kendall tau >= 0.6;
// x_last - x_first >= max(abs_min, 0.5 x_first). slope is Theil-Sen (units per second).
struct Trend {
  bool grows = false;
  double tau = 0;
  double slope = 0;
  double first = 0;
  double last = 0;
  double nondecreasing = 0; // fraction of steps
};

Trend grow_test(std::span<const double> t,
                std::span<const double> x,
                double tol_abs,
                double abs_min,
                size_t min_n);

// GROW's conditions that need no pair of points (all but Kendall tau): false means that
// grow_test(t, x, tol_abs, abs_min, min_n).grows is false, at O(n) instead of its O(n^2) on
// up to 200 points.
bool may_grow(std::span<const double> x, double tol_abs, double abs_min, size_t min_n);

// Valid counter deltas of one netns (§0.3): consecutive snapshots that both have the counter,
// with value[to] >= value[from]; a decrease is a reset and that interval is dropped.
struct CounterStep {
  uint32_t from = 0;
  uint32_t to = 0;
  double dt = 0; // seconds (CLOCK_BOOTTIME)
  int64_t delta = 0;
};

std::vector<CounterStep>
counter_steps(const Series& s, const Timeline& tl, uint32_t netns, std::string_view name);
// Sum of several counters' steps, interval by interval (only intervals valid for all of them).
std::vector<CounterStep> counter_steps_sum(const Series& s,
                                           const Timeline& tl,
                                           uint32_t netns,
                                           std::span<const std::string_view> names);

// Whole numbers of a sysctl value ("4096 87380 6291456" -> 3 numbers); empty if not captured.
std::vector<int64_t>
limit_numbers(const Timeline& tl, uint32_t netns, const std::string& name, uint32_t snap);

// LISTEN tracks by (netns, proto, local port); a child matches a listener with the same local
// port and the same address or a wildcard (0.0.0.0, ::, and :: for v4-mapped children).
class ListenerIndex {
public:
  ListenerIndex(const Series& s, const Timeline& tl);
  // Indices into tl.tracks of listeners of `child` that have a sample in `snap`.
  std::vector<uint32_t> listeners_of(const Track& child, uint32_t snap) const;
  // True if any listener of the child's port existed at any time.
  bool is_listener_port(const Track& child) const;

private:
  const Series& m_series;
  const Timeline& m_tl;
  std::unordered_map<uint64_t, std::vector<uint32_t>> m_by_port;
};

// Connections queued at listeners: inode-0 TCP sockets in `states` (e.g. ESTAB, CLOSE-WAIT,
// SYN-RECV) whose local port matches a listener in the same snapshot. For each listener track
// index: (snap, child track index) pairs in snapshot order.
struct Child {
  uint32_t snap = 0;
  uint32_t track = 0;
};

std::unordered_map<uint32_t, std::vector<Child>>
children_by_listener(const Timeline& tl, const ListenerIndex& li, std::span<const uint8_t> states);

// "12.3 KiB", "4.0 MiB".
std::string human_bytes(double bytes);
// "%.1f"-style number without trailing noise ("12", "0.5", "3.25").
std::string num(double v);

} // namespace sockrewind::analyze
