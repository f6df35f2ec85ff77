// listen_overflow (research/detectors.md D4): TcpExt.ListenOverflows (ListenDrops when the kernel
// has no ListenOverflows) increases: SYNs or final ACKs dropped because an accept queue is full.
// The counter is the kernel's count of lost handshakes, so it is harm by itself. Per interval
// between snapshots, rate = delta / dt (the toolkit's counter rule):
//   critical: rate > crit_rate (5/s) in some interval;
//   warning:  rate > warn_rate (1/s) in some interval, or overflows recur: increasing intervals
//             ending >= recur_seconds (30 s) apart within window_seconds (300 s);
//   info:     any other increase (one burst of a few).
// The counter is per netns; the finding is attributed to the listeners whose accept queue was
// full (queue >= max backlog) at either end of an increasing interval. With exactly one such
// listening address it is the subject (every owner named, grouped by listener); otherwise the
// netns, listing the full listeners and their owners. One finding per cause: per listener or
// netns, and a second one per netns when ListenDrops grows more than ListenOverflows: drops not
// caused by a full accept queue (SYN queue full without syncookies, memory), see syn_flood and
// tcp_memory_pressure.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <map>

namespace sockrewind::analyze {

namespace {

struct Verdict {
  Severity severity = Severity::info;
  std::vector<uint32_t> positive; // snapshots ending an interval with delta > 0
  double peak_rate = 0;
  int64_t total = 0;
  size_t valid_intervals = 0;
  bool recurring = false;
};

// The rules above on per-interval deltas `d` (nullopt: no interval) of `c`.
template <class DeltaFn> Verdict judge(const Context& ctx, const CounterSeries& c, DeltaFn d) {
  Verdict v;
  for (uint32_t i = 0; i < ctx.snapshots(); ++i) {
    const std::optional<int64_t> x = d(i);
    if (!x) {
      continue;
    }
    ++v.valid_intervals;
    if (*x <= 0) {
      continue;
    }
    v.positive.push_back(i);
    v.total += *x;
    if (c.dt(i) > 0) {
      v.peak_rate = std::max(v.peak_rate, static_cast<double>(*x) / c.dt(i));
    }
  }
  for (size_t a = 0; a < v.positive.size() && !v.recurring; ++a) {
    for (size_t b = a + 1; b < v.positive.size(); ++b) {
      const double apart = ctx.seconds(v.positive[a], v.positive[b]);
      if (apart > ctx.param("window_seconds")) {
        break;
      }
      if (apart >= ctx.param("recur_seconds")) {
        v.recurring = true;
        break;
      }
    }
  }
  if (v.peak_rate > ctx.param("crit_rate")) {
    v.severity = Severity::critical;
  } else if (v.peak_rate > ctx.param("warn_rate") || v.recurring) {
    v.severity = Severity::warning;
  }
  return v;
}

bool full(const Sample& x) {
  return x.state == k_listen && x.tx_queue != k_na && x.rx_queue != k_na && x.rx_queue > 0
         && x.rx_queue >= x.tx_queue;
}

Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

void add_limits(const Context& ctx, FindingBuilder& b, uint32_t ns, uint32_t snap) {
  Json sys = Json::object();
  for (const char* name : {"net.core.somaxconn",
                           "net.ipv4.tcp_abort_on_overflow",
                           "net.ipv4.tcp_max_syn_backlog",
                           "net.ipv4.tcp_syncookies"}) {
    if (const auto v = ctx.limit(ns, name, snap)) {
      sys[name] = *v;
    }
  }
  b.fact("sysctls", std::move(sys));
}

std::string netns_key(const Context& ctx, uint32_t ns) {
  return std::to_string(ctx.timeline().netns[ns].inode);
}

// A full listening address: its tracks (SO_REUSEPORT sockets share it) and intervals.
struct Candidate {
  std::vector<uint32_t> tracks;
  size_t intervals = 0;
};

void overflow_finding(const Context& ctx,
                      uint32_t ns,
                      const std::vector<std::vector<uint32_t>>& full_at,
                      Sink& out) {
  const Series& series = ctx.series();
  const CounterSeries& ov = ctx.counter(ns, "TcpExt.ListenOverflows");
  const CounterSeries& dr = ctx.counter(ns, "TcpExt.ListenDrops");
  const CounterSeries& base = ov.any() ? ov : dr;
  const char* main_name = ov.any() ? "ListenOverflows" : "ListenDrops";
  const Verdict v = judge(ctx, base, [&](uint32_t i) { return base.delta(i); });
  if (v.positive.empty()) {
    return;
  }
  // Attribution: listening addresses full at either end of an increasing interval.
  std::map<std::string, Candidate> cand;
  for (const uint32_t i : v.positive) {
    std::map<std::string, bool> here;
    for (const uint32_t s : {base.from(i), i}) {
      for (const uint32_t li : full_at[s]) {
        if (ctx.track(li).netns != ns) {
          continue;
        }
        const std::string ep = endpoint(series, ctx.track(li), true);
        Candidate& c = cand[ep];
        if (std::find(c.tracks.begin(), c.tracks.end(), li) == c.tracks.end()) {
          c.tracks.push_back(li);
        }
        here[ep] = true;
      }
    }
    for (const auto& [ep, yes] : here) {
      cand[ep].intervals++;
    }
  }
  const uint32_t first = v.positive.front();
  const uint32_t last = v.positive.back();
  const uint32_t lo = base.from(first);
  const auto hi = std::min<uint32_t>(last + 1, static_cast<uint32_t>(ctx.snapshots() - 1));
  // The sample of a listener to name it by: its last full one within the window.
  const auto named = [&](const Track& t) {
    const Sample* at = &t.samples.back();
    for (const Sample& x : t.samples) {
      if (x.snap <= hi && full(x)) {
        at = &x;
      }
    }
    return at;
  };
  const Track* one = cand.size() == 1 ? &ctx.track(cand.begin()->second.tracks.front()) : nullptr;

  FindingBuilder b(ctx, "listen_overflow");
  b.seen(first, last).severity(v.severity).weight(static_cast<double>(v.total));
  const std::string what = std::string(main_name) + " +" + std::to_string(v.total) + " in "
                           + std::to_string(v.positive.size()) + " of "
                           + std::to_string(v.valid_intervals) + " intervals over "
                           + num(ctx.seconds(lo, last)) + " s (peak " + num(v.peak_rate) + "/s)";
  if (one != nullptr) {
    const Sample* at = named(*one);
    const std::string ep = endpoint(series, *one, true);
    b.socket(*one, *at);
    b.summary(what + ": connections dropped at listener " + ep + ", its accept queue full ("
              + std::to_string(at->rx_queue) + "/"
              + (at->tx_queue == k_na ? std::string("?") : std::to_string(at->tx_queue))
              + "); not accepted fast enough by " + ctx.owners_text(*at));
    b.group("listener",
            std::to_string(ns) + " tcp " + ep,
            "at listener " + ep,
            "listening sockets that overflowed");
  } else {
    b.netns(ns);
    std::string where = cand.empty() ? "no listener was seen full (the overflow happened between "
                                       "snapshots)"
                                     : std::to_string(cand.size()) + " listeners were full: ";
    size_t k = 0;
    for (const auto& [ep, c] : cand) { // by endpoint: the words do not depend on file order
      if (k++ == 3) {
        where += ", ...";
        break;
      }
      where +=
          (k > 1 ? "; " : "") + ep + " (" + ctx.owners_text(*named(ctx.track(c.tracks[0]))) + ")";
    }
    b.summary(what + " in netns " + netns_key(ctx, ns) + ": an accept queue was full; " + where);
    b.group("netns",
            netns_key(ctx, ns) + " overflow",
            "in netns " + netns_key(ctx, ns),
            "overflow episodes");
  }
  Json cands = Json::array();
  for (const auto& [ep, c] : cand) {
    uint32_t q = 0;
    const Sample* at = nullptr;
    for (const uint32_t li : c.tracks) {
      for (const Sample& x : ctx.track(li).samples) {
        if (x.snap >= lo && x.snap <= hi && x.state == k_listen) {
          q = std::max(q, x.rx_queue == k_na ? 0 : x.rx_queue);
          at = &x;
        }
      }
    }
    Json j;
    j["local"] = ep;
    j["max_queue"] = q;
    j["max_backlog"] = at == nullptr ? Json(nullptr) : opt(at->tx_queue);
    j["intervals_full"] = c.intervals;
    j["sockets"] = c.tracks.size();
    j["owners"] = at == nullptr ? Json::array() : ctx.owners_json(*at);
    cands.push_back(std::move(j));
  }
  b.fact("counter", std::string("TcpExt.") + main_name);
  b.fact("total", v.total);
  b.fact("peak_rate_per_s", v.peak_rate);
  b.fact("intervals_increasing", v.positive.size());
  b.fact("intervals", v.valid_intervals);
  b.fact("recurring", v.recurring);
  b.fact("listeners_full", std::move(cands));
  add_limits(ctx, b, ns, last);
  Json rows = Json::array();
  for (uint32_t i = lo; i <= hi; ++i) {
    Json j;
    j["t"] = ctx.time(i);
    j["listen_overflows_delta"] = ov.delta_json(i);
    j["listen_drops_delta"] = dr.delta_json(i);
    j["interval_s"] = base.delta(i) ? Json(base.dt(i)) : Json(nullptr);
    j["rate_per_s"] = base.rate(i);
    if (one != nullptr) {
      const Sample* x = sample_at(*one, i);
      j["queue"] = x == nullptr ? Json(nullptr) : opt(x->rx_queue);
      j["max_backlog"] = x == nullptr ? Json(nullptr) : opt(x->tx_queue);
    }
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "rate_per_s");
  out.add(std::move(b).build());
}

// ListenDrops beyond ListenOverflows: not an accept-queue overflow.
void drops_finding(const Context& ctx, uint32_t ns, Sink& out) {
  const CounterSeries& ov = ctx.counter(ns, "TcpExt.ListenOverflows");
  const CounterSeries& dr = ctx.counter(ns, "TcpExt.ListenDrops");
  if (!ov.any() || !dr.any()) {
    return;
  }
  const auto extra = [&](uint32_t i) -> std::optional<int64_t> {
    const auto o = ov.delta(i);
    const auto d = dr.delta(i);
    if (!o || !d) {
      return std::nullopt;
    }
    return std::max<int64_t>(0, *d - *o);
  };
  const Verdict e = judge(ctx, dr, extra);
  if (e.positive.empty()) {
    return;
  }
  const uint32_t first = e.positive.front();
  const uint32_t last = e.positive.back();
  const CounterSeries& reqq = ctx.counter(ns, "TcpExt.TCPReqQFullDrop");
  FindingBuilder b(ctx, "listen_overflow");
  b.netns(ns).seen(first, last).severity(e.severity).weight(static_cast<double>(e.total));
  b.summary("ListenDrops grew " + std::to_string(e.total) + " more than ListenOverflows in "
            + std::to_string(e.positive.size()) + " intervals (peak " + num(e.peak_rate)
            + "/s) in netns " + netns_key(ctx, ns)
            + ": connections dropped at listeners for another reason than a full accept "
              "queue (SYN queue full, memory); see syn_flood and tcp_memory_pressure");
  b.fact("kind", "drops_not_overflow");
  b.fact("total", e.total);
  b.fact("peak_rate_per_s", e.peak_rate);
  b.fact("tcp_reqq_full_drop", reqq.total(first, last));
  add_limits(ctx, b, ns, last);
  Json rows = Json::array();
  const uint32_t lo = dr.from(first);
  const auto hi = std::min<uint32_t>(last + 1, static_cast<uint32_t>(ctx.snapshots() - 1));
  for (uint32_t i = lo; i <= hi; ++i) {
    const auto x = extra(i);
    Json j;
    j["t"] = ctx.time(i);
    j["listen_drops_delta"] = dr.delta_json(i);
    j["listen_overflows_delta"] = ov.delta_json(i);
    j["other_drops_delta"] = x ? Json(*x) : Json(nullptr);
    j["tcp_reqq_full_drop_delta"] = reqq.delta_json(i);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "other_drops_delta");
  b.group(
      "netns", netns_key(ctx, ns) + " drops", "in netns " + netns_key(ctx, ns), "drop episodes");
  Finding f = std::move(b).build();
  f.subject["kind"] = "drops_not_overflow";
  out.add(std::move(f));
}

void check(const Context& ctx, Sink& out) {
  if (ctx.snapshots() < 2) {
    return;
  }
  // Listeners whose accept queue is full, per snapshot.
  std::vector<std::vector<uint32_t>> full_at(ctx.snapshots());
  for (uint32_t ti = 0; ti < ctx.tracks().size(); ++ti) {
    const Track& t = ctx.track(ti);
    if (t.family == k_af_unix || t.proto != k_proto_tcp) {
      continue;
    }
    for (const Sample& x : t.samples) {
      if (full(x)) {
        full_at[x.snap].push_back(ti);
      }
    }
  }
  for (uint32_t ns = 0; ns < ctx.timeline().netns.size(); ++ns) {
    overflow_finding(ctx, ns, full_at, out);
    drops_finding(ctx, ns, out);
  }
}

} // namespace

Detector listen_overflow_detector() {
  return {
      "listen_overflow",
      "TcpExt ListenOverflows / ListenDrops increase: connections dropped at full listeners",
      {
          {"warn_rate", 1, "overflows per second in one interval for a warning", Unit::per_second},
          {"crit_rate", 5, "overflows per second in one interval for critical", Unit::per_second},
          {"recur_seconds",
           30,
           "overflows in intervals ending this far apart recur: warning",
           Unit::seconds},
          {"window_seconds", 300, "recurrences count within this window", Unit::seconds},
      },
      &check,
      nullptr,
      &listener_or_child};
}

} // namespace sockrewind::analyze
