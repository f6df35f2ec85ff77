// close_wait_leak (research/detectors.md D7): the peer closed, the application never calls
// close(). CLOSE-WAIT has no timeout, so every leaked socket holds an fd until the process exits.
// Sockets: TCP CLOSE-WAIT with an fd (inode != 0; inode-0 CLOSE-WAIT at a listener is
// unaccepted_connection's) and an owner, whose bytes_acked does not move (a half-close protocol
// that keeps sending is fine). Per socket, its longest gap-free CLOSE-WAIT streak; per owning
// process (the culprit), the number of such sockets in each snapshot.
//   persistent:  a socket stays >= persist_seconds -> warning (info from info_seconds: a few
//                seconds of CLOSE-WAIT is an idle client whose server closed it, not yet a leak);
//   growing:     the process's count grows (GROW, abs_min growth_min) -> warning, within seconds;
//   many:        >= count_warning sockets at once for >= many_seconds -> warning.
// Critical when the process holds >= count_critical, or the growth reaches RLIMIT_NOFILE within
// critical_eta_seconds. One finding per process: how many sockets, the oldest as examples.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

bool leaked_state(const Sample& x) {
  return x.state == k_close_wait && x.inode != 0 && x.owner != k_na;
}

// A socket's longest CLOSE-WAIT streak, as much of it as finish() reads: the socket with the
// streak's last sample only (a copy: the track may be gone by the time the process is judged),
// and where the streak began. A streak is gap-free: it has a sample in every snapshot from
// `first` to the last one's.
struct Member {
  Track t;            // the socket, with the streak's last sample only
  uint32_t first = 0; // the streak's first snapshot
  double age = 0;     // seconds in CLOSE-WAIT as seen

  const Sample& last() const { return t.samples.front(); }

  size_t samples() const { return last().snap - first + 1; }
};

struct Proc {
  std::vector<uint32_t> count; // CLOSE-WAIT sockets per snapshot
  std::vector<Member> members;
};

struct Verdict {
  Severity severity = Severity::info;
  bool warn = false; // growing or many
  Trend trend;
  double eta = -1;
  uint32_t max_count = 0;
  size_t first = 0;
  size_t last = 0;
};

Verdict judge(const Context& ctx, const Proc& p, uint32_t proc) {
  Verdict v;
  const size_t n = p.count.size();
  v.first = n;
  for (size_t i = 0; i < n; ++i) {
    if (p.count[i] > 0) {
      v.first = std::min(v.first, i);
      v.last = i;
      v.max_count = std::max(v.max_count, p.count[i]);
    }
  }
  const auto snap = [](size_t i) { return static_cast<uint32_t>(i); };
  // Per gap-free run of snapshots: growth, and how long the count stayed at count_warning.
  size_t begin = v.first;
  size_t many_from = n;
  for (size_t i = v.first; i <= v.last + 1; ++i) {
    const bool cut =
        i == v.last + 1 || ctx.timeline().snaps[i].run != ctx.timeline().snaps[begin].run;
    const bool many = !cut && static_cast<double>(p.count[i]) >= ctx.param("count_warning");
    if (many && many_from == n) {
      many_from = i;
    }
    if (!many && many_from != n) {
      v.warn =
          v.warn
          || ctx.lasted(snap(many_from), snap(i - 1), i - many_from, ctx.param("many_seconds"));
      many_from = n;
    }
    if (!cut) {
      continue;
    }
    std::vector<double> ts;
    std::vector<double> xs;
    for (size_t k = begin; k < i; ++k) {
      ts.push_back(ctx.seconds(snap(begin), snap(k)));
      xs.push_back(p.count[k]);
    }
    constexpr size_t k_min_points = 3;
    const Trend tr = grow_test(ts, xs, 0, ctx.param("growth_min"), k_min_points);
    if (tr.grows && (!v.trend.grows || tr.slope > v.trend.slope)) {
      v.trend = tr;
    }
    begin = i;
  }
  v.warn = v.warn || v.trend.grows;
  const ProcSample* ps = Timeline::proc_at(ctx.processes()[proc], snap(v.last));
  if (v.trend.grows && v.trend.slope > 0 && ps != nullptr && ps->nofile_soft != k_na
      && ps->fd_count != k_na && ps->nofile_soft > ps->fd_count) {
    v.eta = static_cast<double>(ps->nofile_soft - ps->fd_count) / v.trend.slope;
  }
  if (static_cast<double>(v.max_count) >= ctx.param("count_critical")
      || (v.eta >= 0 && v.eta < ctx.param("critical_eta_seconds"))) {
    v.severity = Severity::critical;
  } else if (v.warn) {
    v.severity = Severity::warning;
  }
  return v;
}

Json process_series(const Context& ctx, const Proc& p, uint32_t proc, const Verdict& v) {
  const size_t n = p.count.size();
  std::vector<uint32_t> persisted(n, 0);
  for (const Member& m : p.members) {
    for (uint32_t s = m.first; s <= m.last().snap; ++s) {
      persisted[s] += ctx.seconds(m.first, s) >= ctx.param("persist_seconds") ? 1U : 0U;
    }
  }
  const auto opt = [](uint32_t x) { return x == k_na ? Json(nullptr) : Json(x); };
  Json rows = Json::array();
  for (size_t i = v.first > 0 ? v.first - 1 : 0; i <= std::min(v.last + 1, n - 1); ++i) {
    const auto s = static_cast<uint32_t>(i);
    const ProcSample* x = Timeline::proc_at(ctx.processes()[proc], s);
    Json j;
    j["t"] = ctx.time(s);
    j["close_wait"] = p.count[i];
    j["persistent"] = persisted[i];
    j["fds"] = x == nullptr ? Json(nullptr) : opt(x->fd_count);
    j["nofile_soft"] = x == nullptr ? Json(nullptr) : opt(x->nofile_soft);
    rows.push_back(std::move(j));
  }
  return rows;
}

// Sockets one at a time (each one's longest streak, counted per culprit process), then the
// processes.
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& out) override;
  void finish(const Context& ctx, Sink& out) override;

private:
  std::unordered_map<uint32_t, Proc> m_procs;
};

void Pass::track(const Context& ctx, const Track& t, Sink& /*out*/) {
  if (t.family == k_af_unix || t.proto != k_proto_tcp) {
    return;
  }
  Range best_streak;
  double best_age = -1;
  for (const Range& r : ctx.streaks(t, leaked_state)) {
    const Sample& a = t.samples[r.begin];
    const Sample& b = t.samples[r.end - 1];
    const bool sending =
        a.bytes_acked != k_na64 && b.bytes_acked != k_na64 && b.bytes_acked > a.bytes_acked;
    const double age = ctx.seconds(a.snap, b.snap);
    if (!sending && age > best_age) {
      best_streak = r;
      best_age = age;
    }
  }
  if (best_age < 0) {
    return;
  }
  const uint32_t owner = ctx.culprit(t.samples[best_streak.end - 1]);
  if (owner == k_na) {
    return;
  }
  auto [it, fresh] = m_procs.try_emplace(owner);
  if (fresh) {
    it->second.count.assign(ctx.snapshots(), 0);
  }
  for (size_t i = best_streak.begin; i < best_streak.end; ++i) {
    it->second.count[t.samples[i].snap]++;
  }
  it->second.members.push_back({track_part(t, {best_streak.end - 1, best_streak.end}),
                                t.samples[best_streak.begin].snap,
                                best_age});
}

void Pass::finish(const Context& ctx, Sink& out) {
  const Series& series = ctx.series();
  // Processes by index: the order tracks came in does not matter.
  std::vector<uint32_t> order;
  order.reserve(m_procs.size());
  for (const auto& [proc, p] : m_procs) {
    order.push_back(proc);
  }
  std::sort(order.begin(), order.end());
  for (const uint32_t proc : order) {
    Proc& p = m_procs.at(proc);
    const Verdict v = judge(ctx, p, proc);
    double oldest = 0;
    for (const Member& m : p.members) {
      oldest = std::max(oldest, m.age);
    }
    std::string about = "; it holds " + std::to_string(p.count[v.last])
                        + " CLOSE-WAIT socket(s) (max " + std::to_string(v.max_count) + ")";
    if (v.trend.grows) {
      about += ", growing by " + num(v.trend.slope * 60.0) + "/min";
      if (v.eta >= 0) {
        about += " (fd limit in " + num(v.eta / 60.0) + " min)";
      }
    }
    std::vector<Finding> found;
    for (const Member& m : p.members) {
      Severity sev = v.severity;
      if (!v.warn && v.severity < Severity::critical) {
        if (m.age >= ctx.param("persist_seconds")) {
          sev = Severity::warning;
        } else if (m.age < ctx.param("info_seconds") || m.samples() < k_min_support) {
          continue; // too young to say anything, unless the process accumulates them
        }
      }
      const Track& t = m.t;
      const Sample& b = m.last();
      FindingBuilder f(ctx, "close_wait_leak");
      f.socket(t, b).seen(m.first, b.snap).severity(sev).weight(m.age);
      std::string s = ctx.owners_text(b) + " holds " + proto_name(t) + " "
                      + endpoint(series, t, true) + " <- " + endpoint(series, t, false)
                      + " in CLOSE-WAIT for " + num(m.age) + " s (" + std::to_string(m.samples())
                      + " snapshots): the peer closed and the process has not called close()";
      if (b.rx_queue != k_na && b.rx_queue > 1) {
        s += ", " + std::to_string(b.rx_queue - 1) + " bytes unread";
      }
      f.summary(s + about);
      f.fact("age_s", m.age);
      f.fact("unread_bytes",
             b.rx_queue != k_na && b.rx_queue > 0 ? Json(b.rx_queue - 1) : Json(nullptr));
      f.fact("close_wait_now", p.count[v.last]);
      f.fact("close_wait_max", v.max_count);
      f.fact("oldest_age_s", oldest);
      f.fact("persistent", oldest >= ctx.param("persist_seconds"));
      f.fact("growing", v.trend.grows);
      if (v.trend.grows) {
        f.fact("slope_per_s", v.trend.slope);
      }
      f.fact("eta_nofile_s", v.eta >= 0 ? Json(v.eta) : Json(nullptr));
      f.group("process",
              std::to_string(ctx.processes()[proc].pid) + ":"
                  + std::to_string(ctx.processes()[proc].start_ticks),
              "in " + ctx.process_text(proc),
              "sockets in CLOSE-WAIT");
      found.push_back(std::move(f).build());
    }
    // Only the examples the Sink keeps (the worst, in its order) carry the process's series.
    std::sort(found.begin(), found.end(), worse);
    const size_t examples = std::min<size_t>(found.size(), Sink::k_examples);
    if (examples > 0) {
      const Json rows = process_series(ctx, p, proc, v);
      for (size_t i = 0; i < examples; ++i) {
        set_series(found[i], rows, "close_wait", {"nofile_soft"});
      }
    }
    for (Finding& f : found) {
      out.add(std::move(f));
    }
  }
}

} // namespace

Detector close_wait_leak_detector() {
  return {
      "close_wait_leak",
      "CLOSE-WAIT sockets persist or accumulate in a process (it never calls close())",
      {
          {"persist_seconds", 60, "one socket in CLOSE-WAIT this long is a warning", Unit::seconds},
          {"info_seconds",
           4,
           "one socket in CLOSE-WAIT this long is reported as info",
           Unit::seconds},
          {"growth_min",
           10,
           "growth of a process's CLOSE-WAIT count for 'growing' (GROW abs_min)",
           Unit::count},
          {"count_warning", 100, "CLOSE-WAIT sockets of one process that warn...", Unit::count},
          {"many_seconds", 10, "...when the process holds that many this long", Unit::seconds},
          {"count_critical",
           1000,
           "CLOSE-WAIT sockets of one process that are critical",
           Unit::count},
          {"critical_eta_seconds",
           3600,
           "critical when the growth reaches RLIMIT_NOFILE within this time",
           Unit::seconds},
      },
      nullptr,
      make_pass<Pass>};
}

} // namespace sockrewind::analyze
