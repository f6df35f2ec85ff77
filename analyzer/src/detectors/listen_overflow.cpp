// listen_overflow (research/detectors.md D4): TcpExt.ListenOverflows (ListenDrops when the kernel
// has no ListenOverflows) increases: SYNs or final ACKs dropped because an accept queue is full.
// Per interval between snapshots, rate = delta / dt:
//   critical: rate > crit_rate in some interval;
//   warning:  rate > warn_rate in some interval, or delta > 0 in >= window_hits of any
//             window_intervals consecutive intervals (sparse minute snapshots);
//   info:     any other increase.
// Counters are per namespace; the finding is attributed to the listeners whose accept queue was
// full (queue >= max backlog) in the snapshot before or after an increasing interval. With
// exactly one such listener it is the subject (local port, owner pid); otherwise the namespace.
// A second finding when ListenDrops grows more than ListenOverflows: drops not caused by a full
// accept queue (SYN queue full without syncookies, memory), see syn_flood/tcp_memory_pressure.
#include "listen_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <deque>
#include <map>

namespace sockrewind::analyze {

namespace {

using listen_util::Deltas;

struct Verdict {
  bool fired = false;
  Severity severity = Severity::info;
  std::vector<uint32_t> positive; // snapshots ending an interval with delta > 0
  double peak_rate = 0;
  int64_t total = 0;
  size_t valid_intervals = 0;
  bool window_hit = false;
};

// Applies the rate and window rules to per-interval deltas (`d`, with -1 for no interval).
Verdict judge(const std::vector<int64_t>& d, const std::vector<double>& dt, const Params& p) {
  Verdict v;
  std::deque<bool> window;
  size_t hits = 0;
  const auto win = static_cast<size_t>(std::max(1.0, p.get("window_intervals")));
  for (uint32_t i = 0; i < d.size(); ++i) {
    if (d[i] < 0) {
      continue;
    }
    ++v.valid_intervals;
    const bool pos = d[i] > 0;
    window.push_back(pos);
    hits += pos ? 1U : 0U;
    if (window.size() > win) {
      hits -= window.front() ? 1U : 0U;
      window.pop_front();
    }
    if (static_cast<double>(hits) >= p.get("window_hits")) {
      v.window_hit = true;
    }
    if (!pos) {
      continue;
    }
    v.positive.push_back(i);
    v.total += d[i];
    if (dt[i] > 0) {
      v.peak_rate = std::max(v.peak_rate, static_cast<double>(d[i]) / dt[i]);
    }
  }
  v.fired = !v.positive.empty();
  if (v.peak_rate > p.get("crit_rate")) {
    v.severity = Severity::critical;
  } else if (v.peak_rate > p.get("warn_rate") || v.window_hit) {
    v.severity = Severity::warning;
  }
  return v;
}

bool full(const Sample& x) {
  return x.state == k_listen && x.tx_queue != k_na && x.rx_queue != k_na && x.rx_queue > 0
         && x.rx_queue >= x.tx_queue;
}

void add_limits(Finding& f, const Timeline& tl, uint32_t ns, uint32_t snap) {
  for (const char* name : {"net.core.somaxconn",
                           "net.ipv4.tcp_abort_on_overflow",
                           "net.ipv4.tcp_max_syn_backlog",
                           "net.ipv4.tcp_syncookies"}) {
    const int64_t v = listen_util::limit_first(tl, ns, name, snap);
    if (v >= 0) {
      f.evidence["sysctls"][name] = v;
    }
  }
}

void run_netns(const Series& series,
               const Timeline& tl,
               uint32_t ns,
               const std::vector<std::vector<uint32_t>>& full_at,
               const Params& p,
               std::vector<Finding>& out) {
  const Deltas ov = listen_util::deltas(series, tl, ns, "TcpExt.ListenOverflows");
  const Deltas dr = listen_util::deltas(series, tl, ns, "TcpExt.ListenDrops");
  const Deltas reqq = listen_util::deltas(series, tl, ns, "TcpExt.TCPReqQFullDrop");
  const bool use_overflows = ov.any;
  const Deltas& base = use_overflows ? ov : dr;
  const char* main_name = use_overflows ? "ListenOverflows" : "ListenDrops";
  const size_t n = tl.snaps.size();

  const Verdict v = judge(base.delta, base.dt, p);
  if (v.fired) {
    // Attribution: listeners full at either end of an increasing interval.
    std::map<uint32_t, size_t> cand; // listener track -> intervals attributed
    for (const uint32_t i : v.positive) {
      std::vector<uint32_t> here;
      for (const uint32_t s : {base.from[i], i}) {
        for (const uint32_t li : full_at[s]) {
          if (tl.tracks[li].netns == ns && std::find(here.begin(), here.end(), li) == here.end()) {
            here.push_back(li);
          }
        }
      }
      for (const uint32_t li : here) {
        cand[li]++;
      }
    }
    const uint32_t first = v.positive.front();
    const uint32_t last = v.positive.back();
    const uint32_t lo = base.from[first];
    const uint32_t hi = std::min<uint32_t>(last + 1, static_cast<uint32_t>(n - 1));
    const Track* one = cand.size() == 1 ? &tl.tracks[cand.begin()->first] : nullptr;

    Finding f;
    f.detector = "listen_overflow";
    f.severity = v.severity;
    f.first_seen_ns = tl.snaps[first].realtime_ns;
    f.last_seen_ns = tl.snaps[last].realtime_ns;
    f.weight = static_cast<double>(v.total);
    const std::string what = std::string(main_name) + " +" + std::to_string(v.total) + " in "
                             + std::to_string(v.positive.size()) + " of "
                             + std::to_string(v.valid_intervals) + " intervals (peak "
                             + num(v.peak_rate) + "/s)";
    if (one != nullptr) {
      // The listener's last full sample within the window, else its last sample.
      const Sample* at = &one->samples.back();
      for (const Sample& x : one->samples) {
        if (x.snap <= hi && full(x)) {
          at = &x;
        }
      }
      f.subject = socket_subject(series, tl, *one, *at);
      set_owner(f, tl, at->owner);
      f.summary = what + ": SYNs dropped at listener " + endpoint(series, *one, true)
                  + ", its accept queue full (" + std::to_string(at->rx_queue) + "/"
                  + (at->tx_queue == k_na ? std::string("?") : std::to_string(at->tx_queue)) + "); "
                  + listen_util::owner_text(series, tl, at->owner) + " does not accept fast enough";
    } else {
      f.subject = netns_subject(tl, ns);
      std::string where = cand.empty() ? "no listener was seen full (the overflow happened between "
                                         "snapshots)"
                                       : std::to_string(cand.size()) + " listeners were full: ";
      // By endpoint, so that the words do not depend on the order the files were read in.
      std::vector<std::string> names;
      names.reserve(cand.size());
      for (const auto& [li, c] : cand) {
        names.push_back(endpoint(series, tl.tracks[li], true));
      }
      std::sort(names.begin(), names.end());
      size_t k = 0;
      for (const std::string& name : names) {
        if (k++ == 3) {
          where += ", ...";
          break;
        }
        where += (k > 1 ? ", " : "") + name;
      }
      f.summary = what + " in netns " + std::to_string(tl.netns[ns].inode)
                  + ": an accept queue was full; " + where;
    }
    Json cands = Json::array();
    for (const auto& [li, c] : cand) {
      const Track& t = tl.tracks[li];
      Json j;
      j["local"] = endpoint(series, t, true);
      uint32_t q = 0;
      uint32_t mx = k_na;
      uint32_t owner = k_na;
      for (const Sample& x : t.samples) {
        if (x.snap >= lo && x.snap <= hi && x.state == k_listen) {
          q = std::max(q, x.rx_queue == k_na ? 0 : x.rx_queue);
          mx = x.tx_queue;
          owner = x.owner;
        }
      }
      j["max_queue"] = q;
      j["max_backlog"] = listen_util::opt(mx);
      j["intervals_full"] = c;
      const Json pr = process_json(series, tl, owner);
      j["pid"] = pr.is_null() ? Json(nullptr) : pr["pid"];
      j["comm"] = pr.is_null() ? Json(nullptr) : pr["comm"];
      cands.push_back(std::move(j));
    }
    f.evidence["counter"] = std::string("TcpExt.") + main_name;
    f.evidence["total"] = v.total;
    f.evidence["peak_rate_per_s"] = v.peak_rate;
    f.evidence["intervals_increasing"] = v.positive.size();
    f.evidence["intervals"] = v.valid_intervals;
    f.evidence["listeners_full"] = std::move(cands);
    add_limits(f, tl, ns, last);
    Json ser = Json::array();
    for (uint32_t i = lo; i <= hi; ++i) {
      Json j;
      j["t"] = snap_time(tl, i);
      j["listen_overflows_delta"] = listen_util::delta_json(ov, i);
      j["listen_drops_delta"] = listen_util::delta_json(dr, i);
      j["interval_s"] = base.at(i) < 0 ? Json(nullptr) : Json(base.dt[i]);
      j["rate_per_s"] = listen_util::rate(base, i);
      if (one != nullptr) {
        const Sample* x = sample_at(*one, i);
        j["queue"] = x == nullptr ? Json(nullptr) : listen_util::opt(x->rx_queue);
        j["max_backlog"] = x == nullptr ? Json(nullptr) : listen_util::opt(x->tx_queue);
      }
      ser.push_back(std::move(j));
    }
    f.evidence["series"] = std::move(ser);
    out.push_back(std::move(f));
  }

  // ListenDrops beyond ListenOverflows: not an accept-queue overflow.
  if (!use_overflows || !dr.any) {
    return;
  }
  std::vector<int64_t> extra(n, -1);
  for (size_t i = 0; i < n; ++i) {
    if (ov.delta[i] >= 0 && dr.delta[i] >= 0) {
      extra[i] = std::max<int64_t>(0, dr.delta[i] - ov.delta[i]);
    }
  }
  const Verdict e = judge(extra, dr.dt, p);
  if (!e.fired) {
    return;
  }
  const uint32_t first = e.positive.front();
  const uint32_t last = e.positive.back();
  Finding f;
  f.detector = "listen_overflow";
  f.severity = e.severity;
  f.subject = netns_subject(tl, ns);
  f.subject["kind"] = "drops_not_overflow";
  f.first_seen_ns = tl.snaps[first].realtime_ns;
  f.last_seen_ns = tl.snaps[last].realtime_ns;
  f.weight = static_cast<double>(e.total);
  f.summary = "ListenDrops grew " + std::to_string(e.total) + " more than ListenOverflows in "
              + std::to_string(e.positive.size()) + " intervals (peak " + num(e.peak_rate)
              + "/s) in netns " + std::to_string(tl.netns[ns].inode)
              + ": connections dropped at listeners for another reason than a full accept "
                "queue (SYN queue full, memory); see syn_flood and tcp_memory_pressure";
  f.evidence["kind"] = "drops_not_overflow";
  f.evidence["total"] = e.total;
  f.evidence["peak_rate_per_s"] = e.peak_rate;
  f.evidence["tcp_reqq_full_drop"] = listen_util::total(reqq, first, last);
  add_limits(f, tl, ns, last);
  Json ser = Json::array();
  const uint32_t lo = dr.from[first];
  const uint32_t hi = std::min<uint32_t>(last + 1, static_cast<uint32_t>(n - 1));
  for (uint32_t i = lo; i <= hi; ++i) {
    Json j;
    j["t"] = snap_time(tl, i);
    j["listen_drops_delta"] = listen_util::delta_json(dr, i);
    j["listen_overflows_delta"] = listen_util::delta_json(ov, i);
    j["other_drops_delta"] = extra[i] < 0 ? Json(nullptr) : Json(extra[i]);
    j["tcp_reqq_full_drop_delta"] = listen_util::delta_json(reqq, i);
    ser.push_back(std::move(j));
  }
  f.evidence["series"] = std::move(ser);
  out.push_back(std::move(f));
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  if (tl.snaps.size() < 2) {
    return;
  }
  // Listeners whose accept queue is full, per snapshot.
  std::vector<std::vector<uint32_t>> full_at(tl.snaps.size());
  for (uint32_t ti = 0; ti < tl.tracks.size(); ++ti) {
    const Track& t = tl.tracks[ti];
    if (t.family == k_af_unix || t.proto != k_proto_tcp) {
      continue;
    }
    for (const Sample& x : t.samples) {
      if (full(x)) {
        full_at[x.snap].push_back(ti);
      }
    }
  }
  for (uint32_t ns = 0; ns < tl.netns.size(); ++ns) {
    run_netns(series, tl, ns, full_at, p, out);
  }
}

} // namespace

Detector listen_overflow_detector() {
  return {"listen_overflow",
          "TcpExt ListenOverflows / ListenDrops increase: connections dropped at full listeners",
          {
              {"warn_rate", 1, "overflows per second in one interval for a warning"},
              {"crit_rate", 5, "overflows per second in one interval for critical"},
              {"window_intervals", 5, "sliding window of intervals for the sparse-overflow rule"},
              {"window_hits", 2, "increasing intervals within the window for a warning"},
          },
          &run};
}

} // namespace sockrewind::analyze
