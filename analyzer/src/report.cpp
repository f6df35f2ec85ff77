// `sockrewind-analyze report`: runs the detectors over the merged series, escalates, orders and
// renders the findings as text, JSON or HTML (report_html.cpp).
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/json_out.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/progress.hpp>
#include <sockrewind/analyze/report_html.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>
#include <sockrewind/analyze/toolkit.hpp>
#include <sockrewind/store/atomic_file.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <future>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>

namespace sockrewind::analyze {

std::string_view severity_name(Severity s) {
  switch (s) {
  case Severity::info:
    return "info";
  case Severity::warning:
    return "warning";
  case Severity::critical:
    return "critical";
  }
  return "info";
}

std::optional<Severity> parse_severity(std::string_view s) {
  for (const Severity v : {Severity::info, Severity::warning, Severity::critical}) {
    if (severity_name(v) == s) {
      return v;
    }
  }
  return std::nullopt;
}

const std::vector<Detector>& detectors() {
  static const std::vector<Detector> k_all = {
// NOLINTNEXTLINE(cppcoreguidelines-macro-usage): the X-macro of detectors.def
#define SOCKREWIND_DETECTOR(id) id##_detector(),
#include <sockrewind/analyze/detectors.def>
#undef SOCKREWIND_DETECTOR
  };
  return k_all;
}

void run_detector(const Detector& d, const Context& ctx, Sink& out) {
  SR_ASSERT((d.check == nullptr) != (d.pass == nullptr));
  if (d.check != nullptr) {
    d.check(ctx, out);
    return;
  }
  const std::unique_ptr<TrackPass> pass = d.pass(ctx);
  for (const Track& t : ctx.tracks()) {
    pass->track(ctx, t, out);
  }
  pass->finish(ctx, out);
}

const Detector* find_detector(std::string_view id) {
  for (const Detector& d : detectors()) {
    if (d.id == id) {
      return &d;
    }
  }
  return nullptr;
}

std::string describe_detectors() {
  std::ostringstream out;
  for (const Detector& d : detectors()) {
    out << "  " << d.id << ": " << d.title << "\n";
    for (const Threshold& t : d.thresholds) {
      char value[32];
      (void)std::snprintf(value, sizeof value, "%g", t.value);
      out << "      " << d.id << "." << t.key << " = " << value;
      if (t.unit != Unit::count) {
        out << " " << unit_name(t.unit);
      }
      out << "  (" << t.help << ")\n";
    }
  }
  return out.str();
}

namespace {

// The thresholds of every selected detector, defaults overridden by --set.
std::map<std::string, Params> build_params(const ReportOptions& opts) {
  for (const auto* list : {&opts.only, &opts.skip}) {
    for (const std::string& id : *list) {
      if (find_detector(id) == nullptr) {
        throw UsageError("unknown detector id '" + id + "' (see report --list-detectors)");
      }
    }
  }
  std::map<std::string, std::map<std::string, double>> values;
  for (const Detector& d : detectors()) {
    for (const Threshold& t : d.thresholds) {
      values[d.id][t.key] = t.value;
    }
  }
  for (const std::string& s : opts.set) {
    const size_t dot = s.find('.');
    const size_t eq = s.find('=');
    if (dot == std::string::npos || eq == std::string::npos || eq < dot) {
      throw UsageError("--set " + s + ": expected ID.KEY=VALUE");
    }
    const std::string id = s.substr(0, dot);
    const std::string key = s.substr(dot + 1, eq - dot - 1);
    const std::string val = s.substr(eq + 1);
    const Detector* d = find_detector(id);
    if (d == nullptr) {
      std::string msg = "--set " + s;
      msg += ": unknown detector id '" + id + "'";
      throw UsageError(msg);
    }
    if (!values[id].contains(key)) {
      std::string msg = "--set " + s;
      msg += ": detector " + id;
      msg += " has no threshold '" + key + "'";
      throw UsageError(msg);
    }
    double v = 0;
    const auto [p, ec] = std::from_chars(val.data(), val.data() + val.size(), v);
    if (ec != std::errc{} || p != val.data() + val.size() || !std::isfinite(v)) {
      std::string msg = "--set " + s;
      msg += ": '" + val + "' is not a number";
      throw UsageError(msg);
    }
    values[id][key] = v;
  }
  std::map<std::string, Params> out;
  for (const Detector& d : detectors()) {
    const bool selected =
        (opts.only.empty()
         || std::find(opts.only.begin(), opts.only.end(), d.id) != opts.only.end())
        && std::find(opts.skip.begin(), opts.skip.end(), d.id) == opts.skip.end();
    if (selected) {
      out.emplace(d.id, Params(values[d.id]));
    }
  }
  return out;
}

size_t detector_rank(const std::string& id) {
  const auto& all = detectors();
  for (size_t i = 0; i < all.size(); ++i) {
    if (all[i].id == id) {
      return i;
    }
  }
  return all.size();
}

// A warning becomes critical when another detector's warning-or-worse finding names the same
// process (research/detectors.md §0.4: "escalate one level when two detectors fire on the same
// owner"). Info findings are context and neither escalate nor cause escalation.
void escalate(std::vector<Finding>& findings) {
  std::map<std::tuple<std::string, int32_t, uint64_t>, std::set<std::string>> by_owner;
  const auto key = [](const Finding& f) {
    return std::make_tuple(f.subject.value("host", std::string()), f.pid, f.start_ticks);
  };
  for (const Finding& f : findings) {
    if (f.pid >= 0 && f.severity >= Severity::warning) {
      by_owner[key(f)].insert(f.detector);
    }
  }
  for (Finding& f : findings) {
    if (f.pid < 0 || f.severity != Severity::warning) {
      continue;
    }
    const auto& ids = by_owner[key(f)];
    if (ids.size() >= 2) {
      f.severity = Severity::critical;
      f.escalated = true;
    }
  }
}

Json finding_json(const Finding& f) {
  Json j;
  j["detector"] = f.detector;
  j["severity"] = severity_name(f.severity);
  j["summary"] = f.summary;
  j["subject"] = f.subject;
  j["first_seen"] = iso8601(f.first_seen_ns);
  j["last_seen"] = iso8601(f.last_seen_ns);
  j["evidence"] = f.evidence;
  j["escalated"] = f.escalated;
  return j;
}

std::string scalar_text(const Json& v) {
  if (v.is_string()) {
    return escape_text(v.get<std::string>());
  }
  if (v.is_null()) {
    return "-";
  }
  if (v.is_number_float()) {
    char buf[32];
    (void)std::snprintf(buf, sizeof buf, "%.4g", v.get<double>());
    return buf;
  }
  return escape_text(v.dump(-1, ' ', false, Json::error_handler_t::replace));
}

void write_series_table(const Json& series, std::ostream& out) {
  std::vector<std::string> cols{"t"};
  for (const auto& p : series) {
    for (const auto& [k, v] : p.items()) {
      if (std::find(cols.begin(), cols.end(), k) == cols.end()) {
        cols.push_back(k);
      }
    }
  }
  std::vector<std::vector<std::string>> rows;
  constexpr size_t k_head = 6;
  constexpr size_t k_tail = 6;
  const size_t n = series.size();
  for (size_t i = 0; i < n; ++i) {
    if (n > k_head + k_tail && i == k_head) {
      rows.push_back({"... " + std::to_string(n - k_head - k_tail) + " more"});
      i = n - k_tail - 1;
      continue;
    }
    std::vector<std::string> r;
    r.reserve(cols.size());
    for (const std::string& c : cols) {
      r.push_back(series[i].contains(c) ? scalar_text(series[i][c]) : "");
    }
    rows.push_back(std::move(r));
  }
  std::vector<size_t> width(cols.size());
  for (size_t c = 0; c < cols.size(); ++c) {
    width[c] = cols[c].size();
    for (const auto& r : rows) {
      if (r.size() == cols.size()) {
        width[c] = std::max(width[c], r[c].size());
      }
    }
  }
  const auto line = [&](const std::vector<std::string>& r) {
    out << "    ";
    for (size_t c = 0; c < r.size(); ++c) {
      out << r[c];
      if (c + 1 < r.size()) {
        out << std::string(width[c] - r[c].size() + 2, ' ');
      }
    }
    out << "\n";
  };
  line(cols);
  for (const auto& r : rows) {
    line(r);
  }
}

void write_text(const Series& series, const std::vector<Finding>& findings, std::ostream& out) {
  std::set<std::string> hosts;
  int64_t from = 0;
  int64_t to = 0;
  for (const Timeline& tl : series.timelines) {
    hosts.insert(tl.host);
    if (!tl.snaps.empty()) {
      from =
          from == 0 ? tl.snaps.front().realtime_ns : std::min(from, tl.snaps.front().realtime_ns);
      to = std::max(to, tl.snaps.back().realtime_ns);
    }
  }
  out << "sockrewind report: " << series.files.size() << " file(s), " << series.snapshot_count()
      << " snapshot(s), " << hosts.size() << " host(s)";
  if (from != 0) {
    out << ", " << iso8601(from) << " .. " << iso8601(to);
  }
  out << "\n";
  std::map<Severity, size_t> counts;
  for (const Finding& f : findings) {
    counts[f.severity]++;
  }
  out << "findings: " << counts[Severity::critical] << " critical, " << counts[Severity::warning]
      << " warning, " << counts[Severity::info] << " info\n";
  for (const Finding& f : findings) {
    std::string sev(severity_name(f.severity));
    std::transform(sev.begin(), sev.end(), sev.begin(), [](char c) {
      return static_cast<char>(std::toupper(c));
    });
    out << "\n[" << sev << "] " << f.detector << ": " << escape_text(f.summary)
        << (f.escalated ? " (escalated: another detector fired on this process)" : "") << "\n";
    out << "  subject:";
    for (const auto& [k, v] : f.subject.items()) {
      if (!v.is_null()) {
        out << " " << k << "=" << scalar_text(v);
      }
    }
    out << "\n  seen: " << iso8601(f.first_seen_ns) << " .. " << iso8601(f.last_seen_ns) << "\n";
    if (const auto g = f.evidence.find("group");
        g != f.evidence.end() && g->contains("examples") && (*g)["examples"].is_array()) {
      out << "  " << scalar_text((*g)["count"]) << " " << escape_text(f.group_noun)
          << " in this group; the worst " << (*g)["examples"].size() << ":\n";
      for (const Json& e : (*g)["examples"]) {
        out << "    - " << scalar_text(e.value("summary", Json())) << "\n";
      }
    }
    for (const auto& [k, v] : f.evidence.items()) {
      if (k == "series" || k == "group" || k == "chart") {
        continue;
      }
      std::string s = v.is_primitive()
                          ? scalar_text(v)
                          : escape_text(v.dump(-1, ' ', false, Json::error_handler_t::replace));
      if (s.size() > 300) {
        s = s.substr(0, 297) + "...";
      }
      out << "  " << k << ": " << s << "\n";
    }
    if (f.evidence.contains("series") && f.evidence["series"].is_array()
        && !f.evidence["series"].empty()) {
      out << "  evidence:\n";
      write_series_table(f.evidence["series"], out);
    }
  }
}

Json report_json(const Series& series, const std::vector<Finding>& findings) {
  Json j;
  j["version"] = SOCKREWIND_VERSION;
  std::set<std::string> hosts;
  int64_t from = 0;
  int64_t to = 0;
  for (const Timeline& tl : series.timelines) {
    hosts.insert(tl.host);
    if (!tl.snaps.empty()) {
      from =
          from == 0 ? tl.snaps.front().realtime_ns : std::min(from, tl.snaps.front().realtime_ns);
      to = std::max(to, tl.snaps.back().realtime_ns);
    }
  }
  j["hosts"] = hosts;
  j["files"] = series.files.size();
  j["snapshots"] = series.snapshot_count();
  j["duplicate_snapshots"] = series.duplicate_snapshots;
  j["from"] = from == 0 ? Json(nullptr) : Json(iso8601(from));
  j["to"] = from == 0 ? Json(nullptr) : Json(iso8601(to));
  j["findings"] = Json::array();
  for (const Finding& f : findings) {
    j["findings"].push_back(finding_json(f));
  }
  return j;
}

// The report object plus what the HTML summary shows: the files and one row per timeline.
Json report_html_json(const Series& series, const std::vector<Finding>& findings) {
  Json j = report_json(series, findings);
  j["file_names"] = series.files;
  Json tls = Json::array();
  for (const Timeline& tl : series.timelines) {
    Json t;
    t["host"] = tl.host;
    t["boot_id"] = tl.boot_id;
    t["kernel"] = tl.kernel;
    t["snapshots"] = tl.snaps.size();
    t["from"] = tl.snaps.empty() ? Json(nullptr) : Json(iso8601(tl.snaps.front().realtime_ns));
    t["to"] = tl.snaps.empty() ? Json(nullptr) : Json(iso8601(tl.snaps.back().realtime_ns));
    t["median_interval_s"] = tl.median_interval_s;
    tls.push_back(std::move(t));
  }
  j["timelines"] = std::move(tls);
  return j;
}

[[noreturn]] void throw_write_error(const std::string& path, int err) {
  throw LoadError(
      path + ": cannot write the report: " + std::strerror(err)); // NOLINT(concurrency-mt-unsafe)
}

} // namespace

void write_file_atomically(const std::string& path, const std::string& data) {
  // A new name of our own (O_EXCL), so nothing else is ever opened or truncated; it replaces
  // `path` once complete.
  try {
    store::AtomicFile file(
        path, store::AtomicFile::Replace::allowed, 0666, store::AtomicFile::TempName::unique);
    file.write_all(data);
    file.commit();
  } catch (const std::system_error& e) {
    throw_write_error(path, e.code().value());
  }
}

namespace {

// The selected detectors over one series. A pass sees tracks as they are given (by the load as
// their sockets close, or all at once), then finishes; a check runs once the series is whole.
// While streaming, the samples of a track that no check keeps are let go once the passes have
// seen it, so that the series held is what the checks read, not everything loaded.
class DetectorRun final : public TrackObserver {
public:
  explicit DetectorRun(const ReportOptions& opts) : m_params(build_params(opts)) {
    const std::vector<Detector>& all = detectors();
    m_sinks.resize(all.size());
    for (size_t i = 0; i < all.size(); ++i) {
      const auto p = m_params.find(all[i].id);
      if (p == m_params.end()) {
        continue;
      }
      m_selected.push_back({&all[i], &p->second, i});
      m_drop = m_drop && (all[i].check == nullptr || all[i].keep != nullptr);
    }
  }

  // Every pass sees `tracks` of timeline `tli`.
  void run_passes(const Series& series, uint32_t tli, const std::vector<uint32_t>& tracks) {
    const Timeline& tl = series.timelines[tli];
    if (m_passes.size() <= tli) {
      m_passes.resize(tli + 1);
    }
    m_passes[tli].resize(m_selected.size());
    for (size_t k = 0; k < m_selected.size(); ++k) {
      const Selected& d = m_selected[k];
      if (d.detector->pass == nullptr) {
        continue;
      }
      // A new Context each time: the timeline has grown since the last call (its caches would
      // hold the counters of fewer snapshots).
      const Context ctx(series, tl, *d.params);
      std::unique_ptr<TrackPass>& p = m_passes[tli][k];
      if (!p) {
        p = d.detector->pass(ctx);
      }
      for (const uint32_t idx : tracks) {
        p->track(ctx, tl.tracks[idx], m_sinks[d.index]);
      }
    }
  }

  void closed(Series& series, uint32_t tli, const std::vector<uint32_t>& tracks) override {
    run_passes(series, tli, tracks);
    if (!m_drop) {
      return;
    }
    Timeline& tl = series.timelines[tli];
    std::vector<Context> ctx;
    for (const Selected& d : m_selected) {
      if (d.detector->check != nullptr) {
        ctx.emplace_back(series, tl, *d.params);
      }
    }
    for (const uint32_t idx : tracks) {
      Track& t = tl.tracks[idx];
      size_t c = 0;
      bool kept = false;
      for (const Selected& d : m_selected) {
        if (d.detector->check != nullptr) {
          kept = kept || d.detector->keep(ctx[c], t);
          ++c;
        }
      }
      if (!kept) {
        m_dropped += t.samples.size();
        std::vector<Sample>().swap(t.samples);
      }
    }
  }

  // The samples let go while streaming.
  size_t dropped() const { return m_dropped; }

  // The passes finish and the checks run (on all cores, each detector into its own list,
  // merged in registry order so the output does not depend on scheduling); the findings
  // escalated and ordered.
  std::vector<Finding> finish(const Series& series) {
    // A small series (one bug-report file, a fuzzer's input) is analyzed before threads would
    // have started: one more thread per 20,000 samples (a second from 40,000), at most 4.
    constexpr size_t k_samples_per_thread = 20000;
    size_t samples = m_dropped;
    for (const Timeline& tl : series.timelines) {
      for (const Track& t : tl.tracks) {
        samples += t.samples.size();
      }
    }
    const unsigned workers = static_cast<unsigned>(
        std::clamp<size_t>(samples / k_samples_per_thread,
                           1,
                           std::max(1U, std::min(4U, std::thread::hardware_concurrency()))));
    m_passes.resize(series.timelines.size());
    for (auto& v : m_passes) {
      v.resize(m_selected.size());
    }
    std::atomic<size_t> next{0};
    Progress progress("analyzing", m_selected.size());
    const auto work = [&] {
      for (size_t k = next++; k < m_selected.size(); k = next++) {
        const Selected& d = m_selected[k];
        Sink& sink = m_sinks[d.index];
        for (uint32_t tli = 0; tli < series.timelines.size(); ++tli) {
          const Context ctx(series, series.timelines[tli], *d.params);
          if (d.detector->check != nullptr) {
            d.detector->check(ctx, sink);
            continue;
          }
          std::unique_ptr<TrackPass>& p = m_passes[tli][k];
          if (!p) { // not streamed: every track now, in index order
            p = d.detector->pass(ctx);
            for (const Track& t : ctx.tracks()) {
              p->track(ctx, t, sink);
            }
          }
          p->finish(ctx, sink);
        }
        progress.add();
      }
    };
    std::vector<std::future<void>> running;
    for (unsigned w = 1; w < workers; ++w) {
      running.push_back(std::async(std::launch::async, work));
    }
    work();
    for (auto& r : running) {
      r.get(); // rethrows a detector's exception
    }
    std::vector<Finding> findings;
    for (Sink& sink : m_sinks) {
      std::vector<Finding> v = sink.take();
      std::move(v.begin(), v.end(), std::back_inserter(findings));
    }
    escalate(findings);
    std::stable_sort(findings.begin(), findings.end(), [](const Finding& a, const Finding& b) {
      if (a.severity != b.severity) {
        return a.severity > b.severity;
      }
      const size_t ra = detector_rank(a.detector);
      const size_t rb = detector_rank(b.detector);
      if (ra != rb) {
        return ra < rb;
      }
      if (a.weight != b.weight) {
        return a.weight > b.weight;
      }
      return a.first_seen_ns < b.first_seen_ns;
    });
    return findings;
  }

private:
  struct Selected {
    const Detector* detector;
    const Params* params;
    size_t index; // in detectors()
  };

  std::map<std::string, Params> m_params;
  std::vector<Selected> m_selected;
  std::vector<Sink> m_sinks; // per detector, in registry order
  // Per timeline, per selected detector: its pass once it has seen tracks.
  std::vector<std::vector<std::unique_ptr<TrackPass>>> m_passes;
  bool m_drop = true; // every selected check keeps only some tracks
  size_t m_dropped = 0;
};

} // namespace

std::vector<Finding> run_detectors(const Series& series, const ReportOptions& opts) {
  DetectorRun run(opts);
  return run.finish(series);
}

Analysis analyze_files(const ReportOptions& opts, const std::function<void()>& after_load) {
  // Validates the options before the (possibly long) load.
  DetectorRun run(opts);
  Analysis a;
  SocketFilter whole;
  whole.open_files = std::make_shared<OpenFiles>();
  whole.chunk_rows = opts.chunk_rows;
  a.series = load_series(opts.paths, whole, &run);
  if (run.dropped() > 0) {
    // Tracks were let go (some forgotten by the load already): a snapshot holds fewer samples
    // than it had sockets.
    drop_empty_tracks(a.series);
    a.series.filtered = true;
  }
  check_series(a.series);
  require_snapshots(opts.paths, a.series.snapshot_count());
  if (after_load) {
    after_load();
  }
  a.findings = run.finish(a.series);
  a.series.open_files.reset(); // nothing reads the files again
  return a;
}

int write_report(const ReportOptions& opts, std::ostream& out) {
  Analysis a = analyze_files(opts);
  return render_report(a.series, std::move(a.findings), opts, out);
}

int render_report(const Series& series,
                  std::vector<Finding> findings,
                  const ReportOptions& opts,
                  std::ostream& out) {
  int rc = 0;
  if (opts.fail_on) {
    const Severity bar = parse_severity(*opts.fail_on).value_or(Severity::critical);
    for (const Finding& f : findings) {
      if (f.severity >= bar) {
        rc = 1;
      }
    }
  }
  if (opts.min_severity) {
    const Severity bar = parse_severity(*opts.min_severity).value_or(Severity::info);
    std::erase_if(findings, [bar](const Finding& f) { return f.severity < bar; });
  }
  std::ostringstream buffer;
  std::ostream& to = opts.output ? buffer : out;
  if (opts.format == Format::json) {
    to << dump_json(report_json(series, findings)) << "\n";
  } else if (opts.format == Format::html) {
    to << render_report_html(report_html_json(series, findings));
  } else {
    write_text(series, findings, to);
  }
  if (opts.output) {
    write_file_atomically(*opts.output, buffer.str());
  }
  return rc;
}

} // namespace sockrewind::analyze
