// close_wait_leak (research/detectors.md D7): the peer closed, the application never calls
// close(). CLOSE-WAIT has no timeout, so every leaked socket holds an fd until the process exits.
// Per owning process (pid, start time), over its CLOSE-WAIT sockets that have an fd (inode != 0;
// inode-0 CLOSE-WAIT at a listener is unaccepted_connection's):
//   persistent: one socket stays in CLOSE-WAIT in >= min_samples consecutive snapshots while
//               bytes_acked does not move (a half-close protocol that keeps sending is fine);
//   many:       >= count_warning CLOSE-WAIT sockets in >= min_samples snapshots;
//   growing:    GROW(count; abs_min growth_min) over a gap-free run.
// Any of these -> warning. Critical when >= count_critical sockets, or when the count grows fast
// enough to reach RLIMIT_NOFILE within critical_eta_seconds.
#include "conn_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <map>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

bool leaked_state(const Sample& x) {
  return x.state == k_close_wait && x.inode != 0 && x.owner != k_na;
}

struct Member {
  uint32_t track = 0;
  Range longest;        // the longest CLOSE-WAIT streak of this socket
  bool sending = false; // bytes_acked moved during that streak
};

struct ProcState {
  std::vector<uint32_t> count;     // CLOSE-WAIT sockets per snapshot
  std::vector<uint32_t> persisted; // of those, how many had persisted >= min_samples
  std::vector<Member> members;
};

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  const size_t nsnaps = tl.snaps.size();
  std::unordered_map<uint32_t, ProcState> procs;
  for (uint32_t ti = 0; ti < tl.tracks.size(); ++ti) {
    const Track& t = tl.tracks[ti];
    if (!conn::is_tcp(t)) {
      continue;
    }
    for (const Range& r : conn::runs_where(tl, t, leaked_state)) {
      // A streak is charged to the owner of its last sample (fds move rarely).
      const uint32_t owner = t.samples[r.end - 1].owner;
      ProcState& ps = procs[owner];
      if (ps.count.empty()) {
        ps.count.assign(nsnaps, 0);
        ps.persisted.assign(nsnaps, 0);
      }
      const Sample& a = t.samples[r.begin];
      const Sample& b = t.samples[r.end - 1];
      const bool sending =
          a.bytes_acked != k_na64 && b.bytes_acked != k_na64 && b.bytes_acked > a.bytes_acked;
      for (size_t i = r.begin; i < r.end; ++i) {
        ps.count[t.samples[i].snap]++;
        if (i - r.begin + 1 >= min_n && !sending) {
          ps.persisted[t.samples[i].snap]++;
        }
      }
      // Tracks are visited in order, so a socket's earlier streak is the last member.
      if (ps.members.empty() || ps.members.back().track != ti) {
        ps.members.push_back({ti, r, sending});
      } else if (r.size() > ps.members.back().longest.size()) {
        ps.members.back().longest = r;
        ps.members.back().sending = sending;
      }
    }
  }

  for (auto& [owner, ps] : procs) {
    // Snapshots where the process had any CLOSE-WAIT socket, and the shape of the count.
    size_t first = nsnaps;
    size_t last = 0;
    size_t many = 0;
    uint32_t max_count = 0;
    size_t max_persisted = 0;
    for (size_t i = 0; i < nsnaps; ++i) {
      if (ps.count[i] == 0) {
        continue;
      }
      first = std::min(first, i);
      last = i;
      max_count = std::max(max_count, ps.count[i]);
      max_persisted = std::max<size_t>(max_persisted, ps.persisted[i]);
      if (static_cast<double>(ps.count[i]) >= p.get("count_warning")) {
        ++many;
      }
    }
    if (first == nsnaps) {
      continue;
    }
    // GROW over the longest gap-free run of the process's lifetime in this timeline.
    Trend trend;
    {
      size_t begin = first;
      for (size_t i = first; i <= last + 1; ++i) {
        const bool cut = i == last + 1 || (i > begin && tl.snaps[i].run != tl.snaps[i - 1].run);
        if (!cut) {
          continue;
        }
        const auto [lo, hi] =
            std::minmax_element(ps.count.begin() + static_cast<std::ptrdiff_t>(begin),
                                ps.count.begin() + static_cast<std::ptrdiff_t>(i));
        if (i - begin >= min_n && static_cast<double>(*hi - *lo) >= p.get("growth_min")) {
          std::vector<double> ts;
          std::vector<double> xs;
          for (size_t k = begin; k < i; ++k) {
            ts.push_back(tl.dt(static_cast<uint32_t>(begin), static_cast<uint32_t>(k)));
            xs.push_back(ps.count[k]);
          }
          Trend tr = grow_test(ts, xs, 0, p.get("growth_min"), min_n);
          if (tr.grows && (!trend.grows || tr.slope > trend.slope)) {
            trend = tr;
          }
        }
        begin = i;
      }
    }
    const bool persistent = max_persisted > 0;
    const bool is_many = many >= min_n;
    if (!persistent && !is_many && !trend.grows) {
      continue;
    }
    const Process& pr = tl.procs[owner];
    const ProcSample* last_ps = Timeline::proc_at(pr, static_cast<uint32_t>(last));
    double eta = -1;
    if (trend.grows && trend.slope > 0 && last_ps != nullptr && last_ps->nofile_soft != k_na
        && last_ps->fd_count != k_na && last_ps->nofile_soft > last_ps->fd_count) {
      eta = static_cast<double>(last_ps->nofile_soft - last_ps->fd_count) / trend.slope;
    }
    const bool critical = static_cast<double>(max_count) >= p.get("count_critical")
                          || (eta >= 0 && eta < p.get("critical_eta_seconds"));

    // Members: oldest first; top local and remote endpoints in the last snapshot.
    std::sort(ps.members.begin(), ps.members.end(), [&](const Member& a, const Member& b) {
      const uint32_t sa = tl.tracks[a.track].samples[a.longest.begin].snap;
      const uint32_t sb = tl.tracks[b.track].samples[b.longest.begin].snap;
      return sa != sb ? sa < sb : a.longest.size() > b.longest.size();
    });
    std::map<std::string, size_t> locals;
    std::map<std::string, size_t> remotes;
    for (const Member& m : ps.members) {
      const Track& t = tl.tracks[m.track];
      if (sample_at(t, static_cast<uint32_t>(last)) == nullptr) {
        continue;
      }
      locals[endpoint(series, t, true)]++;
      remotes[endpoint(series, t, false)]++;
    }
    const auto top = [](const std::map<std::string, size_t>& m) {
      std::vector<std::pair<std::string, size_t>> v(m.begin(), m.end());
      std::stable_sort(
          v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
      if (v.size() > 10) {
        v.resize(10);
      }
      return v;
    };
    const auto top_locals = top(locals);
    const auto top_remotes = top(remotes);

    Finding f;
    f.detector = "close_wait_leak";
    f.severity = critical ? Severity::critical : Severity::warning;
    f.subject = process_subject(series, tl, owner);
    f.subject["proto"] = "tcp";
    f.subject["state"] = "CLOSE-WAIT";
    std::string where;
    if (!top_locals.empty()) {
      // A shared local endpoint (a server port) or a shared remote (a client's dependency).
      if (2 * top_locals.front().second >= ps.count[last]) {
        f.subject["local"] = top_locals.front().first;
        where = " on " + top_locals.front().first;
      }
    }
    if (!top_remotes.empty() && 2 * top_remotes.front().second >= ps.count[last]) {
      f.subject["remote"] = top_remotes.front().first;
      where += " toward " + top_remotes.front().first;
    }
    set_owner(f, tl, owner);
    f.first_seen_ns = tl.snaps[first].realtime_ns;
    f.last_seen_ns = tl.snaps[last].realtime_ns;
    const Member& oldest = ps.members.front();
    const Track& ot = tl.tracks[oldest.track];
    const double oldest_age =
        tl.dt(ot.samples[oldest.longest.begin].snap, ot.samples[oldest.longest.end - 1].snap);
    std::string why;
    if (persistent) {
      why = "the oldest stays for " + std::to_string(oldest.longest.size()) + " snapshots ("
            + num(oldest_age) + " s)";
    }
    if (trend.grows) {
      why +=
          std::string(why.empty() ? "" : ", ") + "growing by " + num(trend.slope * 60.0) + "/min";
      if (eta >= 0) {
        why += " (fd limit in " + num(eta / 60.0) + " min)";
      }
    }
    if (why.empty()) {
      why = "in " + std::to_string(many) + " snapshots";
    }
    f.summary = conn::owner_text(series, tl, owner);
    f.summary += " never closes its sockets after the peer closed: ";
    f.summary += std::to_string(ps.count[last]) + " in CLOSE-WAIT (max ";
    f.summary += std::to_string(max_count) + ")";
    f.summary += where;
    f.summary += "; " + why;

    Json ser = Json::array();
    for (size_t i = first > 0 ? first - 1 : 0; i <= std::min(last + 1, nsnaps - 1); ++i) {
      Json j;
      j["t"] = snap_time(tl, static_cast<uint32_t>(i));
      j["close_wait"] = ps.count[i];
      j["persistent"] = ps.persisted[i];
      const ProcSample* x = Timeline::proc_at(pr, static_cast<uint32_t>(i));
      j["fds"] = x == nullptr ? Json(nullptr) : conn::opt(x->fd_count);
      j["nofile_soft"] = x == nullptr ? Json(nullptr) : conn::opt(x->nofile_soft);
      ser.push_back(std::move(j));
    }
    Json sockets = Json::array();
    for (size_t k = 0; k < ps.members.size() && k < 10; ++k) {
      const Member& m = ps.members[k];
      const Track& t = tl.tracks[m.track];
      const Sample& a = t.samples[m.longest.begin];
      const Sample& b = t.samples[m.longest.end - 1];
      Json j;
      j["local"] = endpoint(series, t, true);
      j["remote"] = endpoint(series, t, false);
      j["cookie"] = t.cookie == 0 ? Json(nullptr) : Json(t.cookie);
      j["inode"] = b.inode;
      j["rx_queue"] = conn::opt(b.rx_queue);
      j["first_seen"] = snap_time(tl, a.snap);
      j["last_seen"] = snap_time(tl, b.snap);
      j["snapshots"] = m.longest.size();
      j["age_s"] = tl.dt(a.snap, b.snap);
      j["still_sending"] = m.sending;
      sockets.push_back(std::move(j));
    }
    Json jl = Json::array();
    for (const auto& [k, v] : top_locals) {
      jl.push_back({{"local", k}, {"count", v}});
    }
    Json jr = Json::array();
    for (const auto& [k, v] : top_remotes) {
      jr.push_back({{"remote", k}, {"count", v}});
    }
    f.evidence["close_wait_now"] = ps.count[last];
    f.evidence["close_wait_max"] = max_count;
    f.evidence["sockets_seen"] = ps.members.size();
    f.evidence["oldest_age_s"] = oldest_age;
    f.evidence["persistent"] = persistent;
    f.evidence["growing"] = trend.grows;
    if (trend.grows) {
      f.evidence["slope_per_s"] = trend.slope;
      f.evidence["kendall_tau"] = trend.tau;
    }
    f.evidence["eta_nofile_s"] = eta >= 0 ? Json(eta) : Json(nullptr);
    f.evidence["top_locals"] = std::move(jl);
    f.evidence["top_remotes"] = std::move(jr);
    f.evidence["oldest_sockets"] = std::move(sockets);
    f.evidence["series"] = std::move(ser);
    f.weight = max_count;
    out.push_back(std::move(f));
  }
}

} // namespace

Detector close_wait_leak_detector() {
  return {"close_wait_leak",
          "CLOSE-WAIT sockets persist or accumulate in a process (it never calls close())",
          {
              {"min_samples",
               3,
               "consecutive snapshots one socket stays in CLOSE-WAIT (or snapshots with many) "
               "for a warning"},
              {"count_warning", 100, "CLOSE-WAIT sockets of one process that warn on their own"},
              {"count_critical", 1000, "CLOSE-WAIT sockets of one process that are critical"},
              {"growth_min", 20, "growth of the per-process count for 'growing' (GROW abs_min)"},
              {"critical_eta_seconds",
               3600,
               "critical when the growth reaches RLIMIT_NOFILE within this time"},
          },
          &run};
}

} // namespace sockrewind::analyze
