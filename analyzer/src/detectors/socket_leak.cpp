// socket_leak (research/detectors.md D17): a process whose socket count keeps growing, or that sits
// at its fd limit. Per process identity (pid, start time), one finding:
//   growing:  GROW(socket fds; abs_min min_growth, tol tolerance) over a gap-free run lasting
//             >= grow_seconds (>= 3 snapshots), with a rising last third (no plateau, which would
//             be a pool warming up), and either lasting >= sustained_seconds or reaching
//             RLIMIT_NOFILE (soft) within warn_eta_seconds at this rate -> warning; critical
//             when the limit is reached within critical_eta_seconds, or >= critical_fraction of
//             it is already used;
//   at limit: open fds >= limit_ratio x RLIMIT_NOFILE (soft) for >= limit_seconds -> critical;
//             when the process also owns a listener (TCP or unix) whose accept queue is full in
//             those snapshots, the summary says "EMFILE: accept() failing" (E12).
// Evidence: the socket/fd counts and limit per snapshot, and a breakdown of the sockets it holds in
// the last snapshot by protocol and state with hints (mostly CLOSE-WAIT -> close_wait_leak; ESTAB
// to one destination -> a connection-pool leak; unconnected TCP -> created, never used or closed;
// unix -> an IPC leak).
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

// "45 s", "12 min", "3.5 h", "2.1 d".
std::string duration_text(double seconds) {
  return seconds < 120      ? num(seconds) + " s"
         : seconds < 7200   ? num(seconds / 60) + " min"
         : seconds < 172800 ? num(seconds / 3600) + " h"
                            : num(seconds / 86400) + " d";
}

// "60/s", "3/min", "2.5/h".
std::string rate_text(double per_s) {
  return per_s >= 1 || per_s <= 0 ? num(per_s) + "/s"
         : per_s * 60 >= 1        ? num(per_s * 60) + "/min"
                                  : num(per_s * 3600) + "/h";
}

struct Verdict {
  uint32_t proc = 0;
  bool growing = false;
  Trend trend;
  size_t begin = 0; // ProcSample index range of the window
  size_t end = 0;
  size_t at_limit = 0;    // snapshots of the longest streak at the fd limit
  size_t limit_begin = 0; // ProcSample index range of that streak
  size_t limit_end = 0;
  double limit_s = 0;                   // its seconds
  bool limited = false;                 // at the limit for limit_seconds
  double eta_s = -1;                    // to RLIMIT_NOFILE at the growth rate; -1 unknown
  uint32_t last_snap = 0;               // snapshot of the breakdown
  const Track* full_listener = nullptr; // an owned listener with a full accept queue
  uint32_t listener_q = 0;
  uint32_t listener_max = 0;
};

bool near_limit(const ProcSample& s, double ratio) {
  return s.nofile_soft != k_na && s.fd_count != k_na && s.nofile_soft > 0
         && static_cast<double>(s.fd_count) >= ratio * static_cast<double>(s.nofile_soft);
}

// Gap-free runs of a process's samples (consecutive snapshots within one run).
std::vector<Range> proc_runs(const Timeline& tl, const Process& pr) {
  std::vector<Range> out;
  const auto& s = pr.samples;
  size_t begin = 0;
  for (size_t i = 1; i <= s.size(); ++i) {
    if (i == s.size() || s[i].snap != s[i - 1].snap + 1
        || tl.snaps[s[i].snap].run != tl.snaps[s[i - 1].snap].run) {
      if (i > begin) {
        out.push_back({begin, i});
      }
      begin = i;
    }
  }
  return out;
}

bool judge(const Context& ctx, uint32_t pi, Verdict& v) {
  const Timeline& tl = ctx.timeline();
  const Process& pr = tl.procs[pi];
  const auto& s = pr.samples;
  v.proc = pi;
  const double min_growth = ctx.param("min_growth");
  for (const Range& r : proc_runs(tl, pr)) {
    if (r.size() < 3
        || !ctx.lasted(s[r.begin].snap, s[r.end - 1].snap, r.size(), ctx.param("grow_seconds"))) {
      continue;
    }
    uint32_t lo = s[r.begin].socket_fds;
    uint32_t hi = lo;
    for (size_t i = r.begin; i < r.end; ++i) {
      lo = std::min(lo, s[i].socket_fds);
      hi = std::max(hi, s[i].socket_fds);
    }
    if (static_cast<double>(hi - lo) < min_growth
        || static_cast<double>(s[r.end - 1].socket_fds) - static_cast<double>(s[r.begin].socket_fds)
               < min_growth) {
      continue;
    }
    std::vector<double> ts;
    std::vector<double> xs;
    for (size_t i = r.begin; i < r.end; ++i) {
      ts.push_back(ctx.seconds(s[r.begin].snap, s[i].snap));
      xs.push_back(s[i].socket_fds);
    }
    const Trend tr = grow_test(ts, xs, ctx.param("tolerance"), min_growth, 3);
    if (!tr.grows) {
      continue;
    }
    // No plateau: the last third (at least two points) still rises.
    const size_t tail = std::max<size_t>(2, xs.size() / 3);
    const std::span<const double> tt(ts.data() + (ts.size() - tail), tail);
    const std::span<const double> tx(xs.data() + (xs.size() - tail), tail);
    const Trend last_third = grow_test(tt, tx, 0, 0, 2);
    if (last_third.slope <= 0 || tx.back() <= tx.front()) {
      continue;
    }
    // Time to the fd limit at this rate.
    const ProcSample& end = s[r.end - 1];
    double eta = -1;
    if (tr.slope > 0 && end.nofile_soft != k_na && end.nofile_soft > 0) {
      const double used = end.fd_count != k_na ? end.fd_count : end.socket_fds;
      eta = std::max(0.0, (static_cast<double>(end.nofile_soft) - used) / tr.slope);
    }
    // A short series counts only when it heads for the limit; a long one on its own.
    const bool sustained = ts.back() >= ctx.param("sustained_seconds");
    const bool heading = eta >= 0 && eta <= ctx.param("warn_eta_seconds");
    if (!sustained && !heading) {
      continue;
    }
    if (!v.growing || tr.last - tr.first > v.trend.last - v.trend.first) {
      v.growing = true;
      v.trend = tr;
      v.begin = r.begin;
      v.end = r.end;
      v.eta_s = eta;
    }
  }
  // The longest streak of consecutive snapshots at the fd limit.
  size_t begin = SIZE_MAX;
  for (size_t i = 0; i <= s.size(); ++i) {
    const bool at = i < s.size() && near_limit(s[i], ctx.param("limit_ratio"));
    if (at && begin != SIZE_MAX && s[i].snap == s[i - 1].snap + 1
        && tl.snaps[s[i].snap].run == tl.snaps[s[i - 1].snap].run) {
      continue;
    }
    if (begin != SIZE_MAX && i - begin > v.at_limit) {
      v.at_limit = i - begin;
      v.limit_begin = begin;
      v.limit_end = i;
      v.limit_s = ctx.seconds(s[begin].snap, s[i - 1].snap);
    }
    begin = at ? i : SIZE_MAX;
  }
  v.limited =
      v.at_limit > 0
      && ctx.lasted(
          s[v.limit_begin].snap, s[v.limit_end - 1].snap, v.at_limit, ctx.param("limit_seconds"));
  if (!v.growing && !v.limited) {
    return false;
  }
  if (!v.growing) {
    v.begin = v.limit_begin;
    v.end = v.limit_end;
  }
  v.last_snap = s[v.end - 1].snap;
  return true;
}

// Listeners (TCP or unix) with a full accept queue, per owning process: (track, snap) pairs.
struct FullListener {
  const Track* t;
  uint32_t snap;
  uint32_t q;
  uint32_t max;
};

std::unordered_map<uint32_t, std::vector<FullListener>> full_listeners(const Timeline& tl) {
  std::unordered_map<uint32_t, std::vector<FullListener>> out;
  for (const Track& t : tl.tracks) {
    const bool can_listen = t.family == k_af_unix ? t.type != k_unix_dgram : t.proto == k_proto_tcp;
    if (!can_listen) {
      continue;
    }
    for (const Sample& x : t.samples) {
      if (x.state == k_listen && x.owner != k_na && x.rx_queue != k_na && x.tx_queue != k_na
          && x.rx_queue > 0 && x.rx_queue >= x.tx_queue) {
        out[x.owner].push_back({&t, x.snap, x.rx_queue, x.tx_queue});
      }
    }
  }
  return out;
}

struct Breakdown {
  std::map<std::string, size_t> by_kind;  // "tcp ESTAB" -> n
  std::map<std::string, size_t> estab_to; // tcp ESTAB remote -> n
  std::map<uint16_t, size_t> estab_local; // tcp ESTAB local port -> n
  std::vector<uint16_t> listen_ports;     // its TCP listeners
  size_t total = 0;
  size_t close_wait = 0;
  size_t estab_tcp = 0;
  size_t unconnected_tcp = 0;
  size_t unix_sockets = 0;
};

std::string hint(const Breakdown& b, std::string& top_dest) {
  if (b.total == 0) {
    return "";
  }
  const auto most = [&b](size_t n) { return 2 * n >= b.total; };
  if (most(b.close_wait)) {
    return "mostly CLOSE-WAIT: the peer closed and the process never calls close() (see "
           "close_wait_leak)";
  }
  if (most(b.estab_tcp) && !b.estab_to.empty()) {
    size_t accepted = 0;
    for (const uint16_t port : b.listen_ports) {
      const auto it = b.estab_local.find(port);
      accepted += it == b.estab_local.end() ? 0 : it->second;
    }
    if (2 * accepted >= b.estab_tcp) {
      return "mostly accepted connections (ESTAB on its own listener's port) that are never "
             "closed";
    }
    const auto top =
        std::max_element(b.estab_to.begin(), b.estab_to.end(), [](const auto& x, const auto& y) {
          return x.second < y.second;
        });
    if (2 * top->second >= b.estab_tcp) {
      top_dest = top->first;
      return "mostly ESTAB to " + top->first + ": a connection-pool leak";
    }
    return "mostly ESTAB connections that are never closed";
  }
  if (most(b.unconnected_tcp)) {
    return "mostly unconnected TCP sockets: created but never connected or closed";
  }
  if (most(b.unix_sockets)) {
    return "mostly unix sockets: an IPC leak (socketpairs or connections never closed)";
  }
  return "";
}

void check(const Context& ctx, Sink& out) {
  const Series& series = ctx.series();
  const Timeline& tl = ctx.timeline();
  std::vector<Verdict> flagged;
  for (uint32_t pi = 0; pi < tl.procs.size(); ++pi) {
    Verdict v;
    if (judge(ctx, pi, v)) {
      flagged.push_back(v);
    }
  }
  if (flagged.empty()) {
    return;
  }
  // The breakdowns of the flagged processes: every socket they hold (also when shared with
  // other processes) in the snapshot of the breakdown, read back from its file (report keeps
  // only listeners for this detector), once per snapshot.
  std::vector<Breakdown> breakdowns(flagged.size());
  std::map<uint32_t, std::vector<size_t>> by_snap; // snapshot -> flagged indices
  for (size_t k = 0; k < flagged.size(); ++k) {
    by_snap[flagged[k].last_snap].push_back(k);
  }
  std::vector<uint32_t> snaps;
  snaps.reserve(by_snap.size());
  for (const auto& [snap, ks] : by_snap) {
    snaps.push_back(snap);
  }
  const std::vector<Context::SnapshotSockets> read = ctx.read_snapshots(snaps);
  size_t next = 0;
  for (const auto& [snap, ks] : by_snap) {
    const Context::SnapshotSockets& back = read[next++];
    const Context bctx(back.series, back.tl(), ctx.params());
    std::unordered_map<uint32_t, size_t> index; // process there -> flagged index
    for (const size_t k : ks) {
      const uint32_t p = back.process(tl.procs[flagged[k].proc]);
      if (p != k_na) {
        index[p] = k;
      }
    }
    for (const Track& t : back.tl().tracks) {
      const Sample* x = sample_at(t, back.snap);
      if (x == nullptr || x->owner == k_na) {
        continue;
      }
      for (const uint32_t o : bctx.owners(*x)) {
        const auto it = index.find(o);
        if (it == index.end()) {
          continue;
        }
        Breakdown& b = breakdowns[it->second];
        ++b.total;
        b.by_kind[proto_name(t) + " " + state_name(x->state)]++;
        if (t.family == k_af_unix) {
          ++b.unix_sockets;
        } else if (t.proto == k_proto_tcp) {
          b.close_wait += x->state == k_close_wait ? 1 : 0;
          b.unconnected_tcp += x->state == k_close ? 1 : 0;
          if (x->state == k_established) {
            ++b.estab_tcp;
            b.estab_to[endpoint(back.series, t, false)]++;
            b.estab_local[t.local_port]++;
          } else if (x->state == k_listen) {
            b.listen_ports.push_back(t.local_port);
          }
        }
      }
    }
  }
  const auto listeners = full_listeners(tl);
  const double limit_ratio = ctx.param("limit_ratio");

  for (size_t k = 0; k < flagged.size(); ++k) {
    Verdict& v = flagged[k];
    const Process& pr = tl.procs[v.proc];
    const auto& s = pr.samples;
    // EMFILE compound: at the limit in a snapshot where an owned listener is full.
    const auto fl = listeners.find(v.proc);
    if (fl != listeners.end()) {
      for (const FullListener& l : fl->second) {
        const ProcSample* ps = Timeline::proc_at(pr, l.snap);
        if (ps != nullptr && near_limit(*ps, limit_ratio)) {
          v.full_listener = l.t;
          v.listener_q = l.q;
          v.listener_max = l.max;
        }
      }
    }
    const ProcSample& first = s[v.begin];
    const ProcSample& last = s[v.end - 1];
    const double used = last.fd_count != k_na ? last.fd_count : last.socket_fds;
    const double fraction = last.nofile_soft != k_na && last.nofile_soft > 0
                                ? used / static_cast<double>(last.nofile_soft)
                                : -1;
    const bool soon = v.eta_s >= 0 && v.eta_s < ctx.param("critical_eta_seconds");
    const bool high = fraction >= ctx.param("critical_fraction");
    const Severity sev =
        v.limited || (v.growing && (soon || high)) ? Severity::critical : Severity::warning;

    FindingBuilder b(ctx, "socket_leak");
    b.process(v.proc).seen(first.snap, last.snap).severity(sev);
    b.weight(static_cast<double>(last.socket_fds));
    const std::string who = ctx.process_text(v.proc);
    const std::string fds =
        last.fd_count == k_na ? std::string("?") : std::to_string(last.fd_count);
    const std::string lim =
        last.nofile_soft == k_na ? std::string("unlimited") : std::to_string(last.nofile_soft);
    const std::string share = fraction >= 0 ? " (" + num(100 * fraction) + "% of the limit)" : "";
    std::string top_dest;
    const std::string h = hint(breakdowns[k], top_dest);
    std::string summary;
    if (v.growing) {
      const double span = ctx.seconds(first.snap, last.snap);
      summary = who;
      summary += " socket count grows from " + num(v.trend.first) + " to " + num(v.trend.last)
                 + " over " + duration_text(span) + " (" + std::to_string(v.end - v.begin)
                 + " snapshots, +" + rate_text(v.trend.slope) + "); ";
      summary.append(fds).append(" of ").append(lim).append(" fds").append(share);
      if (v.eta_s >= 0) {
        summary += ", fd limit in ~" + duration_text(v.eta_s) + " at this rate";
      }
      if (v.limited) {
        summary += "; at its fd limit for " + duration_text(v.limit_s);
      }
    } else {
      summary = who;
      summary.append(" is at its fd limit (").append(fds).append("/").append(lim);
      summary += " fds, " + std::to_string(last.socket_fds) + " sockets) for "
                 + duration_text(v.limit_s) + " (" + std::to_string(v.at_limit) + " snapshots)";
      if (v.full_listener == nullptr) {
        summary += ": new sockets and accept() fail with EMFILE";
      }
    }
    if (v.full_listener != nullptr) {
      summary += "; EMFILE: accept() failing on " + proto_name(*v.full_listener) + " listener "
                 + endpoint(series, *v.full_listener, true) + " (queue full, "
                 + std::to_string(v.listener_q) + "/" + std::to_string(v.listener_max) + ")";
    }
    if (!h.empty()) {
      summary += "; " + h;
    }
    b.summary(std::move(summary));

    b.fact("shape", v.growing ? "growing" : "at_fd_limit");
    if (v.growing) {
      b.fact("slope_per_s", v.trend.slope);
      b.fact("kendall_tau", v.trend.tau);
      b.fact("growth", v.trend.last - v.trend.first);
    }
    b.fact("eta_fd_limit_s", v.eta_s < 0 ? Json(nullptr) : Json(v.eta_s));
    b.fact("fd_limit_fraction", fraction < 0 ? Json(nullptr) : Json(fraction));
    b.fact("snapshots_at_limit", v.at_limit);
    b.fact("seconds_at_limit", v.at_limit == 0 ? Json(nullptr) : Json(v.limit_s));
    b.fact("socket_fds", last.socket_fds);
    b.fact("fd_count", opt(last.fd_count));
    b.fact("nofile_soft", opt(last.nofile_soft));
    if (v.full_listener != nullptr) {
      Json l;
      l["proto"] = proto_name(*v.full_listener);
      l["local"] = endpoint(series, *v.full_listener, true);
      l["queue"] = v.listener_q;
      l["max_backlog"] = v.listener_max;
      b.fact("emfile_listener", std::move(l));
    }
    const Breakdown& bd = breakdowns[k];
    Json kinds = Json::object();
    for (const auto& [kind, n] : bd.by_kind) {
      kinds[kind] = n;
    }
    b.fact("breakdown", std::move(kinds));
    b.fact("sockets_seen", bd.total); // in the captured namespaces, last snapshot
    if (!top_dest.empty()) {
      b.fact("top_destination", top_dest);
    }
    b.fact("hint", h.empty() ? Json(nullptr) : Json(h));
    // fs.file-nr is host-wide: the collector records it in one namespace, whichever index the
    // timeline gave it (a pack of several files numbers namespaces by first appearance).
    for (uint32_t ns = 0; ns < tl.netns.size(); ++ns) {
      const std::vector<int64_t> file_nr = limit_numbers(tl, ns, "fs.file-nr", last.snap);
      if (file_nr.size() == 3) {
        b.fact("file_nr", file_nr);
        break;
      }
    }
    Json rows = Json::array();
    for (size_t i = v.begin > 0 ? v.begin - 1 : 0; i < std::min(v.end + 1, s.size()); ++i) {
      Json j;
      j["t"] = ctx.time(s[i].snap);
      j["socket_fds"] = s[i].socket_fds;
      j["fd_count"] = opt(s[i].fd_count);
      j["nofile_soft"] = opt(s[i].nofile_soft);
      rows.push_back(std::move(j));
    }
    b.series(std::move(rows), "fd_count", {"nofile_soft"});
    b.group("process",
            std::to_string(pr.pid) + ":" + std::to_string(pr.start_ticks),
            "in " + who,
            "socket-leak verdicts");
    out.add(std::move(b).build());
  }
}

} // namespace

Detector socket_leak_detector() {
  return {"socket_leak",
          "a process's socket count keeps growing toward its fd limit, or the process sits at it",
          {
              {"grow_seconds", 4, "a gap-free run this long before a trend counts", Unit::seconds},
              {"min_growth", 50, "sockets gained over the run (GROW abs_min)"},
              {"tolerance", 2, "a drop smaller than this many sockets is not a decrease"},
              {"sustained_seconds",
               600,
               "growth this long counts whatever the fd limit",
               Unit::seconds},
              {"warn_eta_seconds",
               86400,
               "shorter growth counts when it reaches RLIMIT_NOFILE sooner than this",
               Unit::seconds},
              {"critical_eta_seconds",
               3600,
               "growth reaching RLIMIT_NOFILE sooner than this is critical",
               Unit::seconds},
              {"critical_fraction",
               0.8,
               "growth with this share of RLIMIT_NOFILE already used is critical",
               Unit::ratio},
              {"limit_ratio",
               0.95,
               "open fds / RLIMIT_NOFILE (soft) that counts as at the limit",
               Unit::ratio},
              {"limit_seconds", 2, "at the limit this long is critical", Unit::seconds},
          },
          &check,
          nullptr,
          // Listeners (full ones make EMFILE's evidence); the breakdowns are read back.
          [](const Context& /*ctx*/, const Track& t) {
            return std::any_of(t.samples.begin(), t.samples.end(), [](const Sample& x) {
              return x.state == k_listen;
            });
          }};
}

} // namespace sockrewind::analyze
