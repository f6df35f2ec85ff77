// socket_leak (research/detectors.md D17): a process whose socket count keeps growing, or that sits
// at its fd limit. Per process identity (pid, start time):
//   growing:  GROW(socket fds; abs_min min_growth, tol tolerance) over a gap-free run of
//             >= min_samples snapshots, with a rising last third (no plateau, which would be a pool
//             warming up) -> warning;
//             ETA to RLIMIT_NOFILE (fds left / growth rate) < critical_eta_s -> critical;
//   at limit: open fds >= limit_ratio x RLIMIT_NOFILE (soft) in >= limit_samples snapshots ->
//             critical; when the process also owns a listener (TCP or unix) whose accept queue
//             is full in those snapshots, the summary says "EMFILE: accept() failing" (E12).
// Evidence: the socket/fd counts and limit per snapshot, and a breakdown of the sockets it owns in
// the last snapshot by protocol and state with hints (mostly CLOSE-WAIT -> close_wait_leak; ESTAB
// to one destination -> a connection-pool leak; unconnected TCP -> created, never used or closed;
// unix -> an IPC leak).
#include "proc_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <map>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

using proc_util::cat;
using proc_util::opt;

struct Verdict {
  uint32_t proc = 0;
  bool growing = false;
  Trend trend;
  size_t begin = 0; // ProcSample index range of the window
  size_t end = 0;
  size_t at_limit = 0;                  // snapshots at the fd limit
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

bool judge(const Timeline& tl, uint32_t pi, const Params& p, Verdict& v) {
  const Process& pr = tl.procs[pi];
  const auto& s = pr.samples;
  v.proc = pi;
  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  const double min_growth = p.get("min_growth");
  for (const Range& r : proc_runs(tl, pr)) {
    if (r.size() < min_n) {
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
      ts.push_back(tl.dt(s[r.begin].snap, s[i].snap));
      xs.push_back(s[i].socket_fds);
    }
    const Trend tr = grow_test(ts, xs, p.get("tolerance"), min_growth, min_n);
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
    if (!v.growing || tr.last - tr.first > v.trend.last - v.trend.first) {
      v.growing = true;
      v.trend = tr;
      v.begin = r.begin;
      v.end = r.end;
    }
  }
  size_t first_limit = SIZE_MAX;
  size_t last_limit = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (near_limit(s[i], p.get("limit_ratio"))) {
      ++v.at_limit;
      first_limit = std::min(first_limit, i);
      last_limit = i;
    }
  }
  const bool limited = v.at_limit >= static_cast<size_t>(p.get("limit_samples"));
  if (!v.growing && !limited) {
    return false;
  }
  if (!v.growing) {
    v.begin = first_limit;
    v.end = last_limit + 1;
  }
  const ProcSample& last = s[v.end - 1];
  v.last_snap = last.snap;
  if (v.growing && v.trend.slope > 0 && last.nofile_soft != k_na) {
    const double used = last.fd_count != k_na ? last.fd_count : last.socket_fds;
    v.eta_s = std::max(0.0, (static_cast<double>(last.nofile_soft) - used) / v.trend.slope);
  }
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
      return cat("mostly ESTAB to ", top->first, ": a connection-pool leak");
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

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  std::vector<Verdict> flagged;
  for (uint32_t pi = 0; pi < tl.procs.size(); ++pi) {
    Verdict v;
    if (judge(tl, pi, p, v)) {
      flagged.push_back(v);
    }
  }
  if (flagged.empty()) {
    return;
  }
  // One pass over all samples for the breakdowns of the flagged processes.
  std::unordered_map<uint32_t, size_t> index; // proc -> flagged index
  for (size_t k = 0; k < flagged.size(); ++k) {
    index[flagged[k].proc] = k;
  }
  std::vector<Breakdown> breakdowns(flagged.size());
  for (const Track& t : tl.tracks) {
    for (const Sample& x : t.samples) {
      if (x.owner == k_na) {
        continue;
      }
      const auto it = index.find(x.owner);
      if (it == index.end() || flagged[it->second].last_snap != x.snap) {
        continue;
      }
      Breakdown& b = breakdowns[it->second];
      ++b.total;
      b.by_kind[cat(proto_name(t), " ", state_name(x.state))]++;
      if (t.family == k_af_unix) {
        ++b.unix_sockets;
      } else if (t.proto == k_proto_tcp) {
        b.close_wait += x.state == k_close_wait ? 1 : 0;
        b.unconnected_tcp += x.state == k_close ? 1 : 0;
        if (x.state == k_established) {
          ++b.estab_tcp;
          b.estab_to[endpoint(series, t, false)]++;
          b.estab_local[t.local_port]++;
        } else if (x.state == k_listen) {
          b.listen_ports.push_back(t.local_port);
        }
      }
    }
  }
  const auto listeners = full_listeners(tl);
  const double limit_ratio = p.get("limit_ratio");

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
    const bool limited = v.at_limit >= static_cast<size_t>(p.get("limit_samples"));
    const bool soon = v.eta_s >= 0 && v.eta_s < p.get("critical_eta_s");
    const ProcSample& first = s[v.begin];
    const ProcSample& last = s[v.end - 1];

    Finding f;
    f.detector = "socket_leak";
    f.severity = limited || soon ? Severity::critical : Severity::warning;
    f.subject = process_subject(series, tl, v.proc);
    set_owner(f, tl, v.proc);
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const std::string who = proc_util::who(series, tl, v.proc);
    const std::string fds =
        last.fd_count == k_na ? std::string("?") : std::to_string(last.fd_count);
    const std::string lim =
        last.nofile_soft == k_na ? std::string("unlimited") : std::to_string(last.nofile_soft);
    std::string top_dest;
    const std::string h = hint(breakdowns[k], top_dest);
    std::string summary;
    if (v.growing) {
      const double span = tl.dt(first.snap, last.snap);
      summary = cat(who,
                    " socket count grows from ",
                    num(v.trend.first),
                    " to ",
                    num(v.trend.last),
                    " over ",
                    std::to_string(v.end - v.begin),
                    " snapshots (",
                    proc_util::duration_text(span),
                    ", +",
                    proc_util::rate_text(v.trend.slope),
                    "); ",
                    fds,
                    " of ",
                    lim,
                    " fds");
      if (v.eta_s >= 0) {
        summary += cat(", fd limit in ~", proc_util::duration_text(v.eta_s), " at this rate");
      }
    } else {
      summary = cat(who,
                    " is at its fd limit (",
                    fds,
                    "/",
                    lim,
                    " fds, ",
                    std::to_string(last.socket_fds),
                    " sockets) in ",
                    std::to_string(v.at_limit),
                    " snapshots");
      if (v.full_listener == nullptr) {
        summary += ": new sockets and accept() fail with EMFILE";
      }
    }
    if (v.full_listener != nullptr) {
      summary += cat("; EMFILE: accept() failing on ",
                     proto_name(*v.full_listener),
                     " listener ",
                     endpoint(series, *v.full_listener, true),
                     " (queue full, ",
                     std::to_string(v.listener_q),
                     "/",
                     std::to_string(v.listener_max),
                     ")");
    }
    if (!h.empty()) {
      summary += cat("; ", h);
    }
    f.summary = summary;

    f.evidence["shape"] = v.growing ? "growing" : "at_fd_limit";
    if (v.growing) {
      f.evidence["slope_per_s"] = v.trend.slope;
      f.evidence["kendall_tau"] = v.trend.tau;
      f.evidence["growth"] = v.trend.last - v.trend.first;
    }
    f.evidence["eta_fd_limit_s"] = v.eta_s < 0 ? Json(nullptr) : Json(v.eta_s);
    f.evidence["snapshots_at_limit"] = v.at_limit;
    f.evidence["socket_fds"] = last.socket_fds;
    f.evidence["fd_count"] = opt(last.fd_count);
    f.evidence["nofile_soft"] = opt(last.nofile_soft);
    if (v.full_listener != nullptr) {
      Json l;
      l["proto"] = proto_name(*v.full_listener);
      l["local"] = endpoint(series, *v.full_listener, true);
      l["queue"] = v.listener_q;
      l["max_backlog"] = v.listener_max;
      f.evidence["emfile_listener"] = std::move(l);
    }
    const Breakdown& b = breakdowns[k];
    Json bd = Json::object();
    for (const auto& [kind, n] : b.by_kind) {
      bd[kind] = n;
    }
    f.evidence["breakdown"] = std::move(bd);
    f.evidence["sockets_seen"] = b.total; // in the captured namespaces, last snapshot
    if (!top_dest.empty()) {
      f.evidence["top_destination"] = top_dest;
    }
    f.evidence["hint"] = h.empty() ? Json(nullptr) : Json(h);
    const std::vector<int64_t> file_nr = limit_numbers(tl, 0, "fs.file-nr", last.snap);
    if (file_nr.size() == 3) {
      f.evidence["file_nr"] = file_nr;
    }
    Json ser = Json::array();
    const size_t lo = v.begin > 0 ? v.begin - 1 : 0;
    const size_t hi = std::min(v.end + 1, s.size());
    for (size_t i = lo; i < hi; ++i) {
      Json j;
      j["t"] = snap_time(tl, s[i].snap);
      j["socket_fds"] = s[i].socket_fds;
      j["fd_count"] = opt(s[i].fd_count);
      j["nofile_soft"] = opt(s[i].nofile_soft);
      ser.push_back(std::move(j));
    }
    f.evidence["series"] = std::move(ser);
    f.weight = static_cast<double>(last.socket_fds);
    out.push_back(std::move(f));
  }
}

} // namespace

Detector socket_leak_detector() {
  return {
      "socket_leak",
      "a process's socket count keeps growing, or the process sits at its fd limit",
      {
          {"min_samples", 5, "snapshots in a gap-free run before a trend counts"},
          {"min_growth", 50, "sockets gained over the run (GROW abs_min)"},
          {"tolerance", 2, "a drop smaller than this many sockets is not a decrease"},
          {"critical_eta_s", 3600, "growth reaching RLIMIT_NOFILE sooner than this is critical"},
          {"limit_ratio", 0.95, "open fds / RLIMIT_NOFILE (soft) that counts as at the limit"},
          {"limit_samples", 2, "snapshots at the limit for a critical finding"},
      },
      &run};
}

} // namespace sockrewind::analyze
