#pragma once
// Findings, detector thresholds and the detector registry. A detector is a pure function from a
// timeline (plus its thresholds) to findings; one file per detector under src/detectors/.

#include <sockrewind/analyze/series.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze {

// JSON objects keep their insertion order (subject and evidence read in a deliberate order).
using Json = nlohmann::ordered_json;

enum class Severity : uint8_t { info = 0, warning = 1, critical = 2 };

std::string_view severity_name(Severity s);
std::optional<Severity> parse_severity(std::string_view s);

struct Finding {
  std::string detector;
  Severity severity = Severity::info;
  std::string summary; // one line
  // host, proto, state, local, remote, pid, comm, cmdline, ... (DESIGN.md report JSON)
  Json subject = Json::object();
  int64_t first_seen_ns = 0; // CLOCK_REALTIME of the first and last snapshot showing it
  int64_t last_seen_ns = 0;
  // {"series": [{"t": ISO8601, ...}, ...], ...}
  Json evidence = Json::object();
  // The owning process, for escalation ("two detectors on the same owner"); pid -1 = none.
  int32_t pid = -1;
  uint64_t start_ticks = 0;
  bool escalated = false;
  // Larger = more severe within the same severity (e.g. queue bytes, count); for ordering.
  double weight = 0;
  // One cause, one finding: findings of one detector with the same group_key are folded into
  // one (toolkit.hpp Sink). group_by: "process", "listener", "destination", "socket", "netns";
  // group_label names the cause, group_noun its members.
  std::string group_key;
  std::string group_by;
  std::string group_label;
  std::string group_noun;
};

// What a threshold measures; durations are always seconds.
enum class Unit : uint8_t { seconds, bytes, count, ratio, per_second, milliseconds };

std::string_view unit_name(Unit u);

// One tunable threshold with its default and meaning (shown by --help and --list-detectors).
struct Threshold {
  std::string key;
  double value = 0;
  std::string help;
  Unit unit = Unit::count;
};

// The thresholds of one detector, defaults overridden by `--set ID.KEY=VALUE`.
class Params {
public:
  Params() = default;

  explicit Params(std::map<std::string, double> values) : m_values(std::move(values)) {}

  // Throws std::out_of_range for a key the detector did not declare (a programming error).
  double get(const std::string& key) const { return m_values.at(key); }

private:
  std::map<std::string, double> m_values;
};

class Context;
class Sink;

// A detector looks at one timeline through the toolkit's Context and emits into a Sink.
using CheckFn = void (*)(const Context& ctx, Sink& out);

// The form of a detector that needs one socket at a time (with what it gathers from them), so
// that it can run while a series streams past, on each track as its socket closes, without the
// series in memory. track() sees every track of the timeline once, in any order (index order
// on a loaded series, closing order when streaming); finish() then sees the timeline. A track
// may be gone once track() returns: keep copies of what finish() needs, never references.
class TrackPass {
public:
  TrackPass() = default;
  virtual ~TrackPass() = default;
  TrackPass(const TrackPass&) = delete;
  TrackPass& operator=(const TrackPass&) = delete;
  TrackPass(TrackPass&&) = delete;
  TrackPass& operator=(TrackPass&&) = delete;

  virtual void track(const Context& ctx, const Track& t, Sink& out) = 0;
  virtual void finish(const Context& ctx, Sink& out) = 0;
};

using PassFn = std::unique_ptr<TrackPass> (*)(const Context& ctx);

// The PassFn of a pass that starts with nothing from the timeline: `.pass = make_pass<Pass>`.
template <class P> std::unique_ptr<TrackPass> make_pass(const Context& /*ctx*/) {
  return std::make_unique<P>();
}

// The tracks a check reads: it must give the same findings on a timeline holding only the
// tracks this returns true for (a superset is fine). report lets go of the samples of every
// track no check keeps once the passes have seen it, when every check has one (see
// tests/analyze/test_track_pass.cpp, which holds each to it).
using KeepFn = bool (*)(const Context& ctx, const Track& t);

// A detector has a check (it reads the timeline as it likes) or a pass (it reads it one track
// at a time), never both. A check may say which tracks it reads (keep); nullptr = all.
struct Detector {
  std::string id;    // one of DESIGN.md's detector ids
  std::string title; // one line
  std::vector<Threshold> thresholds;
  CheckFn check = nullptr;
  PassFn pass = nullptr;
  KeepFn keep = nullptr;
};

// Runs `d` on one timeline: its check, or its pass over every track in index order.
void run_detector(const Detector& d, const Context& ctx, Sink& out);

// All detectors in report order (DESIGN.md table order).
const std::vector<Detector>& detectors();
const Detector* find_detector(std::string_view id);

// Each detector file defines `Detector ID_detector()`; detectors.def lists them (one line each).
// NOLINTNEXTLINE(cppcoreguidelines-macro-usage): the X-macro of detectors.def
#define SOCKREWIND_DETECTOR(id) Detector id##_detector();
#include <sockrewind/analyze/detectors.def>
#undef SOCKREWIND_DETECTOR

} // namespace sockrewind::analyze
