#pragma once
// The detector toolkit: what every detector needs besides its own rule, written once.
//
// - Context: one timeline (host, boot) seen by one detector with its thresholds: time between
//   snapshots, counter deltas and rates (one rule, below), limits, listeners and their queued
//   children, the processes holding a socket and which of them is the likely culprit.
// - FindingBuilder: subject (with every owner), times, severity, weight, summary, evidence facts,
//   the evidence series with its charted value and limit columns, and the grouping key.
// - Sink: folds findings of one cause (same detector, same grouping key) into one finding with
//   the number of members and the worst few as examples; memory is bounded by causes, not by
//   sockets.
//
// The seam for bounded-memory analysis is the Context: a detector reaches samples only through
// it, one subject (track, process, listener, counter) at a time, in time order.
//
// Counter rule (research/detectors.md §0.3), the only one detectors use: the delta of a counter
// at snapshot i is value[i] - value[p], p being the closest earlier snapshot of the same timeline
// (host, boot) that has the counter in the same netns; no value at i when either is missing or
// when value[i] < value[p] (a reset: netns recreated, counter wrapped). A rate is the delta over
// the CLOCK_BOOTTIME seconds between p and i. The sum of several counters at i is the sum of the
// parts that have a value there, and has no value when none has (a counter this kernel does not
// have does not hide the others).
//
// Durations: every threshold that means a duration is in seconds (Unit::seconds); a condition
// lasts D seconds when it holds from snapshot a to snapshot b with D = dt(a, b), and counts only
// with at least `k_min_support` snapshots behind it, so a rule means the same at 1 s and at 60 s
// intervals.

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/series.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sockrewind::analyze {

// Snapshots a duration needs behind it, whatever the interval.
inline constexpr size_t k_min_support = 2;

// One counter (or the sum of several) of one netns, per snapshot, by the rule above.
class CounterSeries {
public:
  CounterSeries() = default;
  CounterSeries(const Timeline& tl, std::span<const std::vector<int64_t>* const> parts);

  // The counter was captured at all in this netns.
  bool any() const { return m_any; }

  // Delta of the interval ending at `snap`; nullopt when it has none.
  std::optional<int64_t> delta(uint32_t snap) const;

  // Seconds of that interval (0 when none).
  double dt(uint32_t snap) const { return snap < m_dt.size() ? m_dt[snap] : 0; }

  // The snapshot that interval starts at (k_na when none).
  uint32_t from(uint32_t snap) const { return snap < m_from.size() ? m_from[snap] : k_na; }

  // Per second over that interval; 0 when none.
  double rate(uint32_t snap) const;
  // Sum of the deltas of the intervals ending in [first, last].
  int64_t total(uint32_t first, uint32_t last) const;
  // The value itself at `snap`, nullopt when not captured.
  std::optional<int64_t> value(uint32_t snap) const;
  // JSON of delta(snap): the number or null.
  Json delta_json(uint32_t snap) const;

private:
  std::vector<int64_t> m_value; // summed value, k_no_counter when no part has one
  std::vector<int64_t> m_delta; // -1: no delta
  std::vector<double> m_dt;
  std::vector<uint32_t> m_from;
  bool m_any = false;
};

// Process scheduler states worth naming (from /proc/[pid]/stat).
bool is_stopped_state(char state); // 'T' (stopped) or 't' (traced)

class Context {
public:
  Context(const Series& series, const Timeline& tl, const Params& params);

  const Series& series() const { return m_series; }

  const Timeline& timeline() const { return m_tl; }

  const Params& params() const { return m_params; }

  double param(const std::string& key) const { return m_params.get(key); }

  // ---- time
  double seconds(uint32_t from, uint32_t to) const { return m_tl.dt(from, to); }

  int64_t realtime(uint32_t snap) const { return m_tl.snaps[snap].realtime_ns; }

  std::string time(uint32_t snap) const { return snap_time(m_tl, snap); }

  size_t snapshots() const { return m_tl.snaps.size(); }

  double median_interval() const { return m_tl.median_interval_s; }

  // A condition seen in `samples` snapshots from `first` to `last` lasted at least `min_seconds`
  // (less 1%, at least 50 ms, of timer jitter) and has k_min_support snapshots behind it.
  bool lasted(uint32_t first, uint32_t last, size_t samples, double min_seconds) const;

  // ---- counters and limits (cached per name)
  const CounterSeries& counter(uint32_t netns, std::string_view name) const;
  // Sum of several counters (cached by the joined names).
  const CounterSeries& counter_sum(uint32_t netns, std::span<const std::string_view> names) const;
  // Field `field` (0-based) of a numeric sysctl in `snap`, nullopt when not captured.
  std::optional<int64_t>
  limit(uint32_t netns, const std::string& name, uint32_t snap, size_t field = 0) const;

  // ---- subjects
  // Maximal index ranges [begin, end) of t.samples, each within one gap-free run of consecutive
  // snapshots, where pred(sample) holds.
  template <class Pred> std::vector<Range> streaks(const Track& t, Pred pred) const {
    std::vector<Range> out;
    for (const Range& c : contiguous_runs(m_tl, t)) {
      size_t begin = c.begin;
      for (size_t i = c.begin; i <= c.end; ++i) {
        if (i < c.end && pred(t.samples[i])) {
          continue;
        }
        if (i > begin) {
          out.push_back({begin, i});
        }
        begin = i + 1;
      }
    }
    return out;
  }

  // The evidence rows of a window: `r` with one sample before and one after, when there are.
  static Range with_margin(const Track& t, Range r) {
    return {r.begin > 0 ? r.begin - 1 : 0, std::min(r.end + 1, t.samples.size())};
  }

  const std::vector<Track>& tracks() const { return m_tl.tracks; }

  const Track& track(uint32_t index) const { return m_tl.tracks[index]; }

  const std::vector<Process>& processes() const { return m_tl.procs; }

  const ListenerIndex& listeners() const;
  // Children queued at each listener (inode 0, in `states`), built once per state set.
  const std::unordered_map<uint32_t, std::vector<Child>>&
  children(std::span<const uint8_t> states) const;

  // ---- processes
  // Every process holding the socket in this sample (the first owner first).
  std::vector<uint32_t> owners(const Sample& x) const;
  // The /proc state letter of `proc` in `snap` (0 when unknown).
  char proc_state(uint32_t proc, uint32_t snap) const;
  // The owner most likely at fault among those holding `x`: when some owners are stopped
  // (SIGSTOP, a debugger) and others are not, the first stopped one; else the first owner;
  // k_na without owners.
  uint32_t culprit(const Sample& x) const;
  // "pid 123 (nginx)"; `none` for k_na.
  std::string process_text(uint32_t proc, std::string_view none = "no owning process seen") const;
  // "pid 1 (nginx)", "pids 1, 2, 3 (nginx)", "pids 1 (a), 2 (b)", "... and 2 more"; names the
  // stopped ones: "pid 7 (nginx, stopped) of pids 1, 7 (nginx)", "stopped pids 7, 8 of pids 1,
  // 7, 8 (nginx)", "pids 7, 8 (nginx), all stopped".
  std::string owners_text(const Sample& x, std::string_view none = "no owning process seen") const;
  // [{"pid", "comm", "start_ticks", "state"}] of every owner of `x` in its snapshot.
  Json owners_json(const Sample& x) const;

  // ---- evidence read back
  // The sockets of snapshot `snap`, read again from its file (only those `filter` selects):
  // for the evidence of the few subjects that fire, whose samples report may have let go of
  // (detector.hpp KeepFn). Read through the connection the load held (Series::open_files) when
  // there is one, so that a file replaced or deleted since is read as it was loaded. Throws
  // LoadError like load_series.
  struct SnapshotSockets {
    // What was read of one file at once, shared by the snapshots read from it: each snapshot a
    // timeline of its own (SocketFilter::timeline_per_snapshot).
    std::shared_ptr<const Series> read;
    const Series& series; // *read
    uint32_t timeline = 0;
    uint32_t snap = 0; // in series.timelines[timeline]

    const Timeline& tl() const { return series.timelines[timeline]; }

    // The index in tl().procs of the process (pid, start_ticks), or k_na.
    uint32_t process(const Process& p) const;
  };

  SnapshotSockets read_snapshot(uint32_t snap, SocketFilter filter = {}) const;
  // The same for several snapshots at once, in their order (repeats allowed): one read per
  // file (rather than per snapshot), every snapshot asked for held at once until the results
  // go (ask for a few hundred at a time when they are large).
  std::vector<SnapshotSockets> read_snapshots(std::span<const uint32_t> snaps,
                                              SocketFilter filter = {}) const;
  // `x`, a sample read back in `back`, as a sample of this timeline in snapshot `snap`: its
  // owners are this timeline's processes of the same pid and start time (and its owner set
  // this timeline's set of them), so that it is named as the samples loaded are. nullopt when
  // one of them is not among this timeline's processes.
  std::optional<Sample>
  own_sample(const SnapshotSockets& back, const Sample& x, uint32_t snap) const;

private:
  const Series& m_series;
  const Timeline& m_tl;
  const Params& m_params;
  mutable std::unique_ptr<ListenerIndex> m_listeners;
  mutable std::map<std::string, std::unordered_map<uint32_t, std::vector<Child>>> m_children;
  mutable std::map<std::pair<uint32_t, std::string>, CounterSeries> m_counters;
};

// Builds one finding. Every finding has a subject, first/last snapshots, a severity, a summary
// and a grouping key; the rest is optional.
class FindingBuilder {
public:
  FindingBuilder(const Context& ctx, std::string_view detector);

  // Subject: a socket as seen in `x` (all owners listed; pid/comm name the culprit).
  FindingBuilder& socket(const Track& t, const Sample& x);
  // Subject: a process.
  FindingBuilder& process(uint32_t proc);
  // Subject: a host/netns.
  FindingBuilder& netns(uint32_t netns);
  // Subject given whole (e.g. a destination); `owner` names its process (k_na: none).
  FindingBuilder& subject(Json subject, uint32_t owner);
  FindingBuilder& seen(uint32_t first_snap, uint32_t last_snap);
  FindingBuilder& severity(Severity s);
  FindingBuilder& weight(double w);
  FindingBuilder& summary(std::string s);
  // A named evidence fact (shown as "key: value").
  FindingBuilder& fact(const std::string& key, Json value);
  // The evidence series: rows of {"t": ..., column: value}; `value` is charted, `limits` are
  // drawn as limit lines on the same scale.
  FindingBuilder&
  series(Json rows, std::string_view value, const std::vector<std::string>& limits = {});
  // Grouping: findings of one detector with the same key are one cause. `by` is "process",
  // "listener", "destination", "socket", "netns". A group of N > 1 is summarised as
  // "N <noun> <label>; the worst: <its summary>", so `noun` names the members ("sockets with
  // unread data") and `label` the cause with its preposition ("in pid 12 (redis-server)",
  // "at listener 0.0.0.0:80", "toward 10.0.0.5:443").
  FindingBuilder&
  group(std::string_view by, const std::string& key, std::string label, std::string noun);
  // Group by the socket's culprit process (or, without one, by the socket itself).
  FindingBuilder& group_by_owner(const Track& t, const Sample& x, std::string noun);

  const Json& subject_json() const { return m_f.subject; }

  Finding build() &&;

private:
  const Context& m_ctx;
  Finding m_f;
  bool m_seen = false;
  bool m_grouped = false;
};

// FindingBuilder::series on a built finding (one of a group's examples, chosen afterwards).
void set_series(Finding& f,
                Json rows,
                std::string_view value,
                const std::vector<std::string>& limits = {});

// The order a Sink keeps examples in, worst first: severity, weight, earlier, then by summary
// and subject (a total order: which findings are kept does not depend on the order they came).
bool worse(const Finding& a, const Finding& b);

// Collects findings, one per cause. Thread-compatible (one Sink per detector run).
class Sink {
public:
  static constexpr size_t k_examples = 3; // examples kept per cause by default

  explicit Sink(size_t max_examples = k_examples) : m_max_examples(max_examples) {}

  void add(Finding f);
  // The grouped findings, causes in the order of their earliest member (then by key), each
  // group's examples worst first: the same whatever order the findings were added in.
  std::vector<Finding> take();

private:
  struct Group {
    std::vector<Finding> best; // at most m_max_examples, worst first after take()
    size_t count = 0;
    Severity severity = Severity::info;
    int64_t first_seen_ns = 0;
    int64_t last_seen_ns = 0;
  };

  size_t m_max_examples;
  std::vector<std::string> m_order;
  std::unordered_map<std::string, Group> m_groups;
};

// A copy of `t` (its identity) holding only the samples in `r`: what a TrackPass keeps of a
// track that may be gone by its finish().
Track track_part(const Track& t, Range r);

// The keep (detector.hpp KeepFn) of checks that read listeners and the connections queued at
// them (ListenerIndex, Context::children): a TCP track with a LISTEN sample, or with an inode-0
// sample in ESTAB, SYN-RECV or CLOSE-WAIT.
bool listener_or_child(const Context& ctx, const Track& t);

// ---- added by det-proc
// A loopback address ("127.x", "::1", "::ffff:127.x").
bool is_loopback_address(std::string_view addr);
// Several processes named at once: "pid 1 (curl)", "pids 1, 2 (curl)", "pid 1 (curl), pid 2
// (wget)", "... and 3 more"; `none` when empty.
std::string processes_text(const Context& ctx,
                           std::span<const uint32_t> procs,
                           std::string_view none = "no owning process seen");
// Subject of a per-destination finding (toward t's remote address and port): host, netns, proto,
// family, state, local ("addr:*" for several local ports), remote, "owners" (every process in
// `procs`) and pid/comm/cmdline/start_ticks of procs.front() (nulls when empty).
Json destination_subject(const Context& ctx,
                         const Track& t,
                         std::string_view state,
                         std::string local,
                         std::span<const uint32_t> procs);
// "addr" of `t` as an endpoint host part (IPv6 in brackets; "*" when unknown).
std::string host_text(const Context& ctx, const Track& t, uint32_t addr);

} // namespace sockrewind::analyze
