// orphan_pressure (research/detectors.md D8): closed sockets the kernel still holds.
//   orphans vs limit (host-global): sockstat TCP.orphan / net.ipv4.tcp_max_orphans > warn_ratio
//       in >= min_samples snapshots -> warning, > crit_ratio -> critical. Both numbers are
//       host-global, so this is reported once per host, attributed to the namespace holding the
//       most orphan rows (inode 0 in FIN-WAIT-1, LAST-ACK or CLOSING).
//   TcpExt.TCPAbortOnMemory increases (per namespace) -> critical: the kernel resets orphans
//       ("too many orphaned sockets", or tcp_mem exhausted).
//   stuck orphans (no fd): one socket stays in FIN-WAIT-1 with data (tx > 1), LAST-ACK or
//       CLOSING in >= stuck_samples consecutive snapshots -> info (the peer does not drain or is
//       gone), warning when stuck >= stuck_warning_seconds. Grouped per (netns, state, remote).
//   owned FIN-WAIT-2 (shutdown(SHUT_WR), the fd kept): persisting >= fin_wait2_seconds and
//       >= stuck_samples snapshots -> warning per owner: it can wait forever.
#include "conn_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <map>
#include <tuple>

namespace sockrewind::analyze {

namespace {

bool orphan_row(const Sample& x) {
  return x.inode == 0 && (x.state == k_fin_wait1 || x.state == k_last_ack || x.state == k_closing);
}

bool stuck_orphan(const Sample& x) {
  return orphan_row(x) && (x.state != k_fin_wait1 || (x.tx_queue != k_na && x.tx_queue > 1));
}

bool owned_fin_wait2(const Sample& x) {
  return x.state == k_fin_wait2 && x.inode != 0;
}

// One stuck socket streak.
struct Stuck {
  uint32_t track = 0;
  Range r;
};

void global_orphans(const Series& series,
                    const Timeline& tl,
                    const Params& p,
                    const std::vector<size_t>& orphan_rows_by_netns,
                    std::vector<Finding>& out) {
  // The netns with the most orphan rows (attribution); else the first with the gauge.
  uint32_t ns = k_na;
  for (uint32_t i = 0; i < tl.netns.size(); ++i) {
    if (conn::values(series, tl, i, "TCP.orphan") == nullptr) {
      continue;
    }
    if (ns == k_na || orphan_rows_by_netns[i] > orphan_rows_by_netns[ns]) {
      ns = i;
    }
  }
  if (ns == k_na) {
    return;
  }
  const std::vector<int64_t>* orphan = conn::values(series, tl, ns, "TCP.orphan");
  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  size_t warn = 0;
  size_t crit = 0;
  size_t first = tl.snaps.size();
  size_t last = 0;
  double peak = 0;
  int64_t peak_orphans = 0;
  int64_t peak_limit = 0;
  std::vector<double> ratio(tl.snaps.size(), -1);
  for (uint32_t i = 0; i < tl.snaps.size(); ++i) {
    const int64_t o = conn::value_at(orphan, i);
    const std::vector<int64_t> lim = limit_numbers(tl, ns, "net.ipv4.tcp_max_orphans", i);
    if (o == k_no_counter || lim.empty() || lim.front() <= 0) {
      continue;
    }
    ratio[i] = static_cast<double>(o) / static_cast<double>(lim.front());
    if (ratio[i] > p.get("warn_ratio")) {
      ++warn;
      first = std::min<size_t>(first, i);
      last = i;
    }
    if (ratio[i] > p.get("crit_ratio")) {
      ++crit;
    }
    if (ratio[i] > peak) {
      peak = ratio[i];
      peak_orphans = o;
      peak_limit = lim.front();
    }
  }
  if (warn < min_n) {
    return;
  }
  Finding f;
  f.detector = "orphan_pressure";
  f.severity = crit >= min_n ? Severity::critical : Severity::warning;
  f.subject = netns_subject(tl, ns);
  f.first_seen_ns = tl.snaps[first].realtime_ns;
  f.last_seen_ns = tl.snaps[last].realtime_ns;
  f.summary = "orphaned TCP sockets at " + num(100.0 * peak) + "% of tcp_max_orphans ("
              + std::to_string(peak_orphans) + " of " + std::to_string(peak_limit) + ", over "
              + num(100.0 * p.get("warn_ratio")) + "% in " + std::to_string(warn)
              + " snapshots); past the limit the kernel resets them. Host-wide: "
              + std::to_string(orphan_rows_by_netns[ns]) + " orphan rows seen in this namespace";
  Json ser = Json::array();
  const std::vector<int64_t>* abort = conn::values(series, tl, ns, "TcpExt.TCPAbortOnMemory");
  const std::vector<int64_t> abort_d =
      conn::deltas_by_snap(series, tl, ns, "TcpExt.TCPAbortOnMemory");
  for (size_t i = first > 0 ? first - 1 : 0; i < std::min(last + 2, tl.snaps.size()); ++i) {
    const auto s = static_cast<uint32_t>(i);
    Json j;
    j["t"] = snap_time(tl, s);
    const int64_t o = conn::value_at(orphan, s);
    j["orphans"] = o == k_no_counter ? Json(nullptr) : Json(o);
    const std::vector<int64_t> lim = limit_numbers(tl, ns, "net.ipv4.tcp_max_orphans", s);
    j["tcp_max_orphans"] = lim.empty() ? Json(nullptr) : Json(lim.front());
    j["ratio"] = ratio[i] < 0 ? Json(nullptr) : Json(ratio[i]);
    j["abort_on_memory_delta"] = abort == nullptr ? Json(nullptr) : conn::delta_json(abort_d, s);
    ser.push_back(std::move(j));
  }
  f.evidence["peak_ratio"] = peak;
  f.evidence["snapshots_over_warn"] = warn;
  f.evidence["snapshots_over_crit"] = crit;
  f.evidence["warn_ratio"] = p.get("warn_ratio");
  f.evidence["crit_ratio"] = p.get("crit_ratio");
  f.evidence["orphan_rows_in_netns"] = orphan_rows_by_netns[ns];
  f.evidence["scope"] = "sockstat TCP.orphan and tcp_max_orphans are host-global";
  f.evidence["series"] = std::move(ser);
  f.weight = peak;
  out.push_back(std::move(f));
}

void abort_on_memory(const Series& series,
                     const Timeline& tl,
                     uint32_t ns,
                     std::vector<Finding>& out) {
  const std::vector<CounterStep> steps = counter_steps(series, tl, ns, "TcpExt.TCPAbortOnMemory");
  int64_t total = 0;
  size_t first = tl.snaps.size();
  size_t last = 0;
  for (const CounterStep& c : steps) {
    if (c.delta > 0) {
      total += c.delta;
      first = std::min<size_t>(first, c.from);
      last = c.to;
    }
  }
  if (total == 0) {
    return;
  }
  const std::vector<int64_t>* orphan = conn::values(series, tl, ns, "TCP.orphan");
  const std::vector<int64_t>* mem = conn::values(series, tl, ns, "TCP.mem");
  Json ser = Json::array();
  for (const CounterStep& c : steps) {
    if (c.to < first || c.from > last) {
      continue;
    }
    Json j;
    j["t"] = snap_time(tl, c.to);
    j["abort_on_memory_delta"] = c.delta;
    j["rate_per_s"] = c.dt > 0 ? static_cast<double>(c.delta) / c.dt : 0.0;
    const int64_t o = conn::value_at(orphan, c.to);
    j["orphans"] = o == k_no_counter ? Json(nullptr) : Json(o);
    const std::vector<int64_t> lim = limit_numbers(tl, ns, "net.ipv4.tcp_max_orphans", c.to);
    j["tcp_max_orphans"] = lim.empty() ? Json(nullptr) : Json(lim.front());
    const int64_t m = conn::value_at(mem, c.to);
    j["tcp_mem_pages"] = m == k_no_counter ? Json(nullptr) : Json(m);
    ser.push_back(std::move(j));
  }
  Finding f;
  f.detector = "orphan_pressure";
  f.severity = Severity::critical;
  f.subject = netns_subject(tl, ns);
  f.first_seen_ns = tl.snaps[first].realtime_ns;
  f.last_seen_ns = tl.snaps[last].realtime_ns;
  f.summary = "the kernel reset " + std::to_string(total)
              + " TCP connections for lack of memory (TcpExt.TCPAbortOnMemory): too many "
                "orphaned sockets or tcp_mem exhausted";
  const std::vector<int64_t> tcp_mem =
      limit_numbers(tl, ns, "net.ipv4.tcp_mem", static_cast<uint32_t>(last));
  if (!tcp_mem.empty()) {
    f.evidence["tcp_mem"] = tcp_mem;
  }
  f.evidence["abort_on_memory"] = total;
  f.evidence["series"] = std::move(ser);
  f.weight = static_cast<double>(total);
  out.push_back(std::move(f));
}

void stuck_findings(const Series& series,
                    const Timeline& tl,
                    const Params& p,
                    const std::vector<Stuck>& stuck,
                    std::vector<Finding>& out) {
  // Group per (netns, state, remote endpoint).
  std::map<std::tuple<uint32_t, uint8_t, std::string>, std::vector<const Stuck*>> groups;
  for (const Stuck& s : stuck) {
    const Track& t = tl.tracks[s.track];
    groups[{t.netns, t.samples[s.r.end - 1].state, endpoint(series, t, false)}].push_back(&s);
  }
  for (const auto& [key, members] : groups) {
    // The representative: the longest stuck, then the most data.
    const Stuck* rep = members.front();
    double bytes = 0;
    for (const Stuck* s : members) {
      const Sample& x = tl.tracks[s->track].samples[s->r.end - 1];
      const Sample& y = tl.tracks[rep->track].samples[rep->r.end - 1];
      bytes += x.tx_queue == k_na ? 0 : x.tx_queue;
      if (s->r.size() > rep->r.size()
          || (s->r.size() == rep->r.size() && x.tx_queue != k_na
              && (y.tx_queue == k_na || x.tx_queue > y.tx_queue))) {
        rep = s;
      }
    }
    const Track& t = tl.tracks[rep->track];
    const Sample& first = t.samples[rep->r.begin];
    const Sample& last = t.samples[rep->r.end - 1];
    const double span = tl.dt(first.snap, last.snap);
    const uint8_t state = std::get<1>(key);
    Finding f;
    f.detector = "orphan_pressure";
    f.severity = span >= p.get("stuck_warning_seconds") ? Severity::warning : Severity::info;
    f.subject = socket_subject(series, tl, t, last);
    f.subject["sockets"] = members.size();
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const std::string what =
        state == k_fin_wait1
            ? "closed with " + human_bytes(last.tx_queue == k_na ? 0 : last.tx_queue)
                  + " unsent/unacked and stuck in FIN-WAIT-1"
                  + (last.timer == 4 ? " behind a zero window (the peer does not read)"
                                     : " (the peer does not drain it)")
            : "stuck in " + state_name(state) + " (the peer never acknowledged our FIN: gone?)";
    f.summary = "orphaned socket " + conn::sock_text(series, t) + " (no process, inode 0) " + what
                + " for " + std::to_string(rep->r.size()) + " snapshots over " + num(span) + " s"
                + (members.size() > 1
                       ? "; " + std::to_string(members.size()) + " such sockets toward this peer, "
                             + human_bytes(bytes) + " in total"
                       : std::string());
    Json ser = Json::array();
    const size_t lo = rep->r.begin > 0 ? rep->r.begin - 1 : 0;
    const size_t hi = std::min(rep->r.end + 1, t.samples.size());
    for (size_t i = lo; i < hi; ++i) {
      const Sample& x = t.samples[i];
      Json j;
      j["t"] = snap_time(tl, x.snap);
      j["state"] = state_name(x.state);
      j["inode"] = x.inode;
      j["tx_queue"] = conn::opt(x.tx_queue);
      j["timer"] = conn::opt(x.timer);
      j["retrans"] = conn::opt(x.retrans);
      j["snd_wnd"] = conn::opt(x.snd_wnd);
      j["bytes_acked"] = conn::opt(x.bytes_acked);
      ser.push_back(std::move(j));
    }
    f.evidence["class"] = "stuck_" + state_name(state);
    f.evidence["sockets"] = members.size();
    f.evidence["bytes_total"] = bytes;
    f.evidence["span_s"] = span;
    const std::vector<int64_t>* orphan = conn::values(series, tl, t.netns, "TCP.orphan");
    const int64_t o = conn::value_at(orphan, last.snap);
    f.evidence["orphans_host"] = o == k_no_counter ? Json(nullptr) : Json(o);
    const std::vector<int64_t> lim =
        limit_numbers(tl, t.netns, "net.ipv4.tcp_max_orphans", last.snap);
    f.evidence["tcp_max_orphans"] = lim.empty() ? Json(nullptr) : Json(lim.front());
    f.evidence["series"] = std::move(ser);
    f.weight = bytes;
    out.push_back(std::move(f));
  }
}

void fin_wait2_findings(const Series& series,
                        const Timeline& tl,
                        const std::vector<Stuck>& owned,
                        std::vector<Finding>& out) {
  std::map<uint32_t, std::vector<const Stuck*>> by_owner;
  for (const Stuck& s : owned) {
    by_owner[tl.tracks[s.track].samples[s.r.end - 1].owner].push_back(&s);
  }
  for (const auto& [owner, members] : by_owner) {
    const Stuck* rep = members.front();
    for (const Stuck* s : members) {
      rep = s->r.size() > rep->r.size() ? s : rep;
    }
    const Track& t = tl.tracks[rep->track];
    const Sample& first = t.samples[rep->r.begin];
    const Sample& last = t.samples[rep->r.end - 1];
    const double span = tl.dt(first.snap, last.snap);
    Finding f;
    f.detector = "orphan_pressure";
    f.severity = Severity::warning;
    f.subject = socket_subject(series, tl, t, last);
    f.subject["sockets"] = members.size();
    set_owner(f, tl, owner);
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    f.summary = conn::owner_text(series, tl, owner) + " keeps " + std::to_string(members.size())
                + " half-closed socket(s) in FIN-WAIT-2 (shut down for writing, fd kept, the "
                  "peer never closes), e.g. "
                + conn::sock_text(series, t) + " for " + num(span)
                + " s: no timeout applies while the fd is open";
    Json ser = Json::array();
    for (size_t i = rep->r.begin; i < rep->r.end; ++i) {
      const Sample& x = t.samples[i];
      ser.push_back({{"t", snap_time(tl, x.snap)},
                     {"state", state_name(x.state)},
                     {"rx_queue", conn::opt(x.rx_queue)},
                     {"timer", conn::opt(x.timer)}});
    }
    f.evidence["class"] = "owned_fin_wait2";
    f.evidence["sockets"] = members.size();
    f.evidence["span_s"] = span;
    f.evidence["series"] = std::move(ser);
    f.weight = static_cast<double>(members.size());
    out.push_back(std::move(f));
  }
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const auto stuck_n = static_cast<size_t>(p.get("stuck_samples"));
  std::vector<size_t> orphan_rows(tl.netns.size(), 0);
  std::vector<Stuck> stuck;
  std::vector<Stuck> owned;
  for (uint32_t ti = 0; ti < tl.tracks.size(); ++ti) {
    const Track& t = tl.tracks[ti];
    if (!conn::is_tcp(t)) {
      continue;
    }
    for (const Sample& x : t.samples) {
      orphan_rows[t.netns] += orphan_row(x) ? 1U : 0U;
    }
    Range best{};
    for (const Range& r : conn::runs_where(tl, t, stuck_orphan)) {
      best = r.size() > best.size() ? r : best;
    }
    if (best.size() >= stuck_n) {
      stuck.push_back({ti, best});
    }
    best = {};
    for (const Range& r : conn::runs_where(tl, t, owned_fin_wait2)) {
      best = r.size() > best.size() ? r : best;
    }
    if (best.size() >= stuck_n
        && tl.dt(t.samples[best.begin].snap, t.samples[best.end - 1].snap)
               >= p.get("fin_wait2_seconds")) {
      owned.push_back({ti, best});
    }
  }
  global_orphans(series, tl, p, orphan_rows, out);
  for (uint32_t ns = 0; ns < tl.netns.size(); ++ns) {
    abort_on_memory(series, tl, ns, out);
  }
  stuck_findings(series, tl, p, stuck, out);
  fin_wait2_findings(series, tl, owned, out);
}

} // namespace

Detector orphan_pressure_detector() {
  return {"orphan_pressure",
          "orphaned TCP sockets near tcp_max_orphans, resets for lack of memory, and stuck "
          "FIN-WAIT-1/LAST-ACK/FIN-WAIT-2 sockets",
          {
              {"warn_ratio", 0.25, "sockstat orphans / tcp_max_orphans above which to warn"},
              {"crit_ratio", 0.5, "orphans / tcp_max_orphans above which it is critical"},
              {"min_samples", 2, "snapshots over the ratio needed (orphan counts are gauges)"},
              {"stuck_samples",
               3,
               "consecutive snapshots an orphan stays in FIN-WAIT-1 (with data), LAST-ACK or "
               "CLOSING before it is reported (info)"},
              {"stuck_warning_seconds", 300, "a stuck orphan this old is a warning"},
              {"fin_wait2_seconds",
               600,
               "an owned FIN-WAIT-2 (shutdown, fd kept) this old is a warning"},
          },
          &run};
}

} // namespace sockrewind::analyze
