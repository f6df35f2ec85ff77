// retransmissions (research/detectors.md D18): retransmission storms.
//   namespace: per counter interval, ratio = ΔTcp.RetransSegs / ΔTcp.OutSegs and rate =
//       ΔRetransSegs / Δt. An interval is bad when ratio > warn_ratio and rate >= min_rate; bad in
//       >= min_intervals consecutive intervals -> warning; ratio > crit_ratio in >= min_intervals
//       consecutive intervals -> critical. Evidence: the ratio series, the dominant kind
//       (TCPTimeouts: RTOs, blackhole or tail loss; TCPFastRetrans: random loss or congestion;
//       TCPSynRetrans: SYN loss or listen overflow), and the top peers and sockets by
//       Δtotal_retrans (tcp_info) with their owners.
//   peer: when the namespace ratio stays low (diluted by healthy traffic), one remote address
//       with Σ Δtotal_retrans / Σ Δsegs_out > peer_ratio over >= peer_min_segments segments, bad
//       in >= min_intervals intervals -> warning, naming the owners.
// OutSegs excludes retransmits and counts pure ACKs and GSO-split segments: the ratio is an
// approximation, compared only within one host.
#include "conn_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

constexpr std::array<std::string_view, 6> k_kinds{"TcpExt.TCPTimeouts",
                                                  "TcpExt.TCPFastRetrans",
                                                  "TcpExt.TCPSynRetrans",
                                                  "TcpExt.TCPLossProbes",
                                                  "TcpExt.TCPSlowStartRetrans",
                                                  "TcpExt.TCPLostRetransmit"};

// Per-socket deltas of one interval (consecutive snapshots of the same track).
struct SockDelta {
  uint32_t track = 0;
  uint32_t to = 0; // snapshot ending the interval
  uint32_t retrans = 0;
  uint32_t segs = 0;
  uint32_t owner = k_na;
};

std::vector<SockDelta> socket_deltas(const Timeline& tl, uint32_t netns) {
  std::vector<SockDelta> out;
  for (uint32_t ti = 0; ti < tl.tracks.size(); ++ti) {
    const Track& t = tl.tracks[ti];
    if (!conn::is_tcp(t) || t.netns != netns) {
      continue;
    }
    for (size_t i = 1; i < t.samples.size(); ++i) {
      const Sample& a = t.samples[i - 1];
      const Sample& b = t.samples[i];
      if (a.total_retrans == k_na || b.total_retrans == k_na || b.total_retrans < a.total_retrans
          || b.total_retrans == a.total_retrans) {
        continue; // no retransmission, or a wrap/new incarnation: dropped
      }
      SockDelta d;
      d.track = ti;
      d.to = b.snap;
      d.retrans = b.total_retrans - a.total_retrans;
      d.segs = a.segs_out != k_na && b.segs_out != k_na && b.segs_out >= a.segs_out
                   ? b.segs_out - a.segs_out
                   : 0;
      d.owner = b.owner != k_na ? b.owner : a.owner;
      out.push_back(d);
    }
  }
  return out;
}

// Segments sent per interval by every socket of a remote address (for the peer ratio).
struct PeerAgg {
  uint64_t retrans = 0;
  uint64_t segs = 0;
  std::map<uint32_t, std::pair<uint64_t, uint64_t>> by_snap; // to -> (retrans, segs)
  std::set<uint32_t> owners;
  std::set<uint32_t> tracks;
};

Json top_lists(const Series& series,
               const Timeline& tl,
               const std::vector<SockDelta>& deltas,
               uint32_t from,
               uint32_t to,
               std::string* top_text) {
  std::unordered_map<uint32_t, std::pair<uint64_t, uint64_t>> per_track;
  for (const SockDelta& d : deltas) {
    if (d.to > from && d.to <= to) {
      auto& v = per_track[d.track];
      v.first += d.retrans;
      v.second += d.segs;
    }
  }
  std::vector<std::pair<uint32_t, std::pair<uint64_t, uint64_t>>> socks(per_track.begin(),
                                                                        per_track.end());
  std::sort(socks.begin(), socks.end(), [](const auto& a, const auto& b) {
    return a.second.first != b.second.first ? a.second.first > b.second.first : a.first < b.first;
  });
  Json js = Json::array();
  std::map<std::string, std::pair<uint64_t, std::set<std::string>>> peers;
  for (const auto& [ti, v] : socks) {
    const Track& t = tl.tracks[ti];
    const Sample* last = sample_at(t, to);
    const Sample& x = last != nullptr ? *last : t.samples.back();
    const std::string remote(series.strings.get(t.remote_addr));
    auto& peer = peers[remote];
    peer.first += v.first;
    if (x.owner != k_na) {
      peer.second.insert(conn::owner_text(series, tl, x.owner));
    }
    if (js.size() < 10) {
      Json j;
      j["local"] = endpoint(series, t, true);
      j["remote"] = endpoint(series, t, false);
      j["state"] = state_name(x.state);
      j["retrans_delta"] = v.first;
      j["segs_out_delta"] = v.second;
      j["ratio"] = v.second > 0 ? Json(static_cast<double>(v.first) / static_cast<double>(v.second))
                                : Json(nullptr);
      j["pid"] = x.owner == k_na ? Json(nullptr) : Json(tl.procs[x.owner].pid);
      j["comm"] =
          x.owner == k_na ? Json(nullptr) : Json(series.strings.get(tl.procs[x.owner].comm));
      j["cwnd_backoff"] = conn::opt(x.backoff);
      js.push_back(std::move(j));
    }
  }
  std::vector<std::pair<std::string, std::pair<uint64_t, std::set<std::string>>>> pv(peers.begin(),
                                                                                     peers.end());
  std::stable_sort(pv.begin(), pv.end(), [](const auto& a, const auto& b) {
    return a.second.first > b.second.first;
  });
  Json jp = Json::array();
  for (size_t i = 0; i < pv.size() && i < 10; ++i) {
    Json owners = Json::array();
    for (const std::string& o : pv[i].second.second) {
      owners.push_back(o);
    }
    jp.push_back({{"remote", pv[i].first},
                  {"retrans_delta", pv[i].second.first},
                  {"owners", std::move(owners)}});
  }
  if (top_text != nullptr && !socks.empty()) {
    const Track& t = tl.tracks[socks.front().first];
    const Sample* last = sample_at(t, to);
    const uint32_t owner = last != nullptr ? last->owner : t.samples.back().owner;
    *top_text = "top socket " + conn::sock_text(series, t) + " ("
                + std::to_string(socks.front().second.first) + " retransmitted, "
                + conn::owner_text(series, tl, owner, "no owner") + ")";
  }
  Json j;
  j["top_sockets"] = std::move(js);
  j["top_peers"] = std::move(jp);
  return j;
}

void namespace_finding(const Series& series,
                       const Timeline& tl,
                       const Params& p,
                       uint32_t ns,
                       const std::vector<SockDelta>& deltas,
                       std::vector<Finding>& out,
                       bool& fired) {
  const std::vector<CounterStep> retrans = counter_steps(series, tl, ns, "Tcp.RetransSegs");
  const std::vector<CounterStep> outsegs = counter_steps(series, tl, ns, "Tcp.OutSegs");
  if (retrans.empty() || outsegs.empty()) {
    return;
  }
  std::vector<int64_t> out_by_to(tl.snaps.size(), -1);
  for (const CounterStep& c : outsegs) {
    out_by_to[c.to] = c.delta;
  }

  struct Point {
    CounterStep c;
    int64_t out = 0;
    double ratio = 0;
    double rate = 0;
  };

  std::vector<Point> pts;
  for (const CounterStep& c : retrans) {
    if (out_by_to[c.to] < 0 || c.dt <= 0) {
      continue;
    }
    Point pt;
    pt.c = c;
    pt.out = out_by_to[c.to];
    pt.ratio = pt.out > 0 ? static_cast<double>(c.delta) / static_cast<double>(pt.out)
                          : (c.delta > 0 ? 1.0 : 0.0);
    pt.rate = static_cast<double>(c.delta) / c.dt;
    pts.push_back(pt);
  }
  const auto min_iv = static_cast<size_t>(p.get("min_intervals"));
  const auto longest = [&](double bar, size_t& b, size_t& e) {
    size_t best = 0;
    size_t run = 0;
    for (size_t i = 0; i < pts.size(); ++i) {
      const bool bad = pts[i].ratio > bar && pts[i].rate >= p.get("min_rate");
      const bool joined = i > 0 && pts[i - 1].c.to == pts[i].c.from;
      run = bad ? (joined ? run + 1 : 1) : 0;
      if (run > best) {
        best = run;
        b = i + 1 - run;
        e = i + 1;
      }
    }
    return best;
  };
  size_t wb = 0;
  size_t we = 0;
  size_t cb = 0;
  size_t ce = 0;
  const size_t warn_run = longest(p.get("warn_ratio"), wb, we);
  const size_t crit_run = longest(p.get("crit_ratio"), cb, ce);
  if (warn_run < min_iv) {
    return;
  }
  fired = true;
  int64_t sum_r = 0;
  int64_t sum_o = 0;
  double sum_t = 0;
  for (size_t i = wb; i < we; ++i) {
    sum_r += pts[i].c.delta;
    sum_o += pts[i].out;
    sum_t += pts[i].c.dt;
  }
  const uint32_t from = pts[wb].c.from;
  const uint32_t to = pts[we - 1].c.to;
  // Which kind of retransmission dominates over the window.
  Json kinds = Json::object();
  std::string dominant;
  int64_t dominant_n = 0;
  std::vector<std::vector<int64_t>> kind_d;
  for (const std::string_view k : k_kinds) {
    kind_d.push_back(conn::deltas_by_snap(series, tl, ns, k));
    int64_t s = 0;
    bool any = false;
    for (size_t i = wb; i < we; ++i) {
      const int64_t d = kind_d.back()[pts[i].c.to];
      if (d >= 0) {
        s += d;
        any = true;
      }
    }
    const std::string name(k.substr(k.find('.') + 1));
    kinds[name] = any ? Json(s) : Json(nullptr);
    if (any && s > dominant_n && name != "TCPLossProbes") {
      dominant_n = s;
      dominant = name;
    }
  }
  const std::string hint = dominant == "TCPTimeouts" ? "mostly RTO timeouts: blackhole or tail loss"
                           : dominant == "TCPSynRetrans" ? "mostly SYN retransmits: SYN loss or "
                                                           "listen overflow"
                           : dominant.empty()            ? "loss"
                                                         : "mostly fast retransmits: random "
                                                           "loss or congestion";
  Finding f;
  f.detector = "retransmissions";
  f.severity = crit_run >= min_iv ? Severity::critical : Severity::warning;
  f.subject = netns_subject(tl, ns);
  f.first_seen_ns = tl.snaps[from].realtime_ns;
  f.last_seen_ns = tl.snaps[to].realtime_ns;
  const double ratio = sum_o > 0 ? static_cast<double>(sum_r) / static_cast<double>(sum_o) : 1.0;
  std::string top_text;
  Json tops = top_lists(series, tl, deltas, from, to, &top_text);
  f.summary = "TCP retransmission storm: " + num(100.0 * ratio) + "% of segments retransmitted ("
              + num(static_cast<double>(sum_r) / sum_t) + "/s) over " + std::to_string(we - wb)
              + " intervals, " + hint + (top_text.empty() ? std::string() : "; " + top_text);
  Json ser = Json::array();
  const size_t lo = wb > 0 ? wb - 1 : 0;
  const size_t hi = std::min(we + 1, pts.size());
  for (size_t i = lo; i < hi; ++i) {
    Json j;
    j["t"] = snap_time(tl, pts[i].c.to);
    j["retrans_segs_delta"] = pts[i].c.delta;
    j["out_segs_delta"] = pts[i].out;
    j["ratio"] = pts[i].ratio;
    j["retrans_per_s"] = pts[i].rate;
    for (size_t k = 0; k < k_kinds.size(); ++k) {
      j[std::string(k_kinds[k].substr(k_kinds[k].find('.') + 1)) + "_delta"] =
          conn::delta_json(kind_d[k], pts[i].c.to);
    }
    ser.push_back(std::move(j));
  }
  f.evidence["ratio"] = ratio;
  f.evidence["retrans_segs"] = sum_r;
  f.evidence["out_segs"] = sum_o;
  f.evidence["intervals_over_warn"] = warn_run;
  f.evidence["intervals_over_crit"] = crit_run;
  f.evidence["warn_ratio"] = p.get("warn_ratio");
  f.evidence["crit_ratio"] = p.get("crit_ratio");
  f.evidence["min_rate_per_s"] = p.get("min_rate");
  f.evidence["dominant"] = dominant.empty() ? Json(nullptr) : Json(dominant);
  f.evidence["kinds"] = std::move(kinds);
  f.evidence["top_peers"] = std::move(tops["top_peers"]);
  f.evidence["top_sockets"] = std::move(tops["top_sockets"]);
  f.evidence["series"] = std::move(ser);
  f.weight = ratio;
  out.push_back(std::move(f));
}

void peer_findings(const Series& series,
                   const Timeline& tl,
                   const Params& p,
                   uint32_t ns,
                   const std::vector<SockDelta>& deltas,
                   std::vector<Finding>& out) {
  // Σ segs per interval also needs sockets that did not retransmit: add their segs_out deltas.
  std::unordered_map<uint32_t, PeerAgg> peers; // remote address id -> aggregate
  for (const SockDelta& d : deltas) {
    PeerAgg& a = peers[tl.tracks[d.track].remote_addr];
    a.retrans += d.retrans;
    a.by_snap[d.to].first += d.retrans;
    a.tracks.insert(d.track);
    if (d.owner != k_na) {
      a.owners.insert(d.owner);
    }
  }
  if (peers.empty()) {
    return;
  }
  for (const Track& t : tl.tracks) {
    if (!conn::is_tcp(t) || t.netns != ns) {
      continue;
    }
    const auto it = peers.find(t.remote_addr);
    if (it == peers.end()) {
      continue;
    }
    for (size_t i = 1; i < t.samples.size(); ++i) {
      const Sample& a = t.samples[i - 1];
      const Sample& b = t.samples[i];
      if (a.segs_out != k_na && b.segs_out != k_na && b.segs_out > a.segs_out) {
        it->second.segs += b.segs_out - a.segs_out;
        it->second.by_snap[b.snap].second += b.segs_out - a.segs_out;
      }
    }
  }
  const auto min_iv = static_cast<size_t>(p.get("min_intervals"));
  for (const auto& [addr, a] : peers) {
    if (static_cast<double>(a.segs) < p.get("peer_min_segments") || a.segs == 0) {
      continue;
    }
    const double ratio = static_cast<double>(a.retrans) / static_cast<double>(a.segs);
    size_t bad = 0;
    for (const auto& [snap, v] : a.by_snap) {
      if (v.second > 0
          && static_cast<double>(v.first) / static_cast<double>(v.second) > p.get("peer_ratio")) {
        ++bad;
      }
    }
    if (ratio <= p.get("peer_ratio") || bad < min_iv) {
      continue;
    }
    const uint32_t from = a.by_snap.begin()->first;
    const uint32_t to = a.by_snap.rbegin()->first;
    Json tops = top_lists(series, tl, deltas, 0, to, nullptr);
    Finding f;
    f.detector = "retransmissions";
    f.severity = Severity::warning;
    f.subject = netns_subject(tl, ns);
    f.subject["remote"] = std::string(series.strings.get(addr));
    const uint32_t owner = a.owners.size() == 1 ? *a.owners.begin() : k_na;
    if (owner != k_na) {
      const Json pj = process_json(series, tl, owner);
      f.subject["pid"] = pj["pid"];
      f.subject["comm"] = pj["comm"];
      set_owner(f, tl, owner);
    }
    f.first_seen_ns = tl.snaps[from].realtime_ns;
    f.last_seen_ns = tl.snaps[to].realtime_ns;
    std::string owners;
    for (const uint32_t o : a.owners) {
      owners += (owners.empty() ? "" : ", ") + conn::owner_text(series, tl, o);
      if (owners.size() > 200) {
        break;
      }
    }
    f.summary = "retransmissions toward " + std::string(series.strings.get(addr)) + ": "
                + num(100.0 * ratio) + "% of " + std::to_string(a.segs) + " segments over "
                + std::to_string(a.tracks.size()) + " socket(s), in " + std::to_string(bad)
                + " intervals; a lossy path to this peer"
                + (owners.empty() ? std::string() : "; " + owners);
    Json ser = Json::array();
    for (const auto& [snap, v] : a.by_snap) {
      ser.push_back(
          {{"t", snap_time(tl, snap)},
           {"retrans_delta", v.first},
           {"segs_out_delta", v.second},
           {"ratio",
            v.second > 0 ? Json(static_cast<double>(v.first) / static_cast<double>(v.second))
                         : Json(nullptr)}});
    }
    f.evidence["ratio"] = ratio;
    f.evidence["retrans"] = a.retrans;
    f.evidence["segs_out"] = a.segs;
    f.evidence["intervals_over"] = bad;
    f.evidence["peer_ratio"] = p.get("peer_ratio");
    f.evidence["top_sockets"] = std::move(tops["top_sockets"]);
    f.evidence["series"] = std::move(ser);
    f.weight = ratio;
    out.push_back(std::move(f));
  }
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  for (uint32_t ns = 0; ns < tl.netns.size(); ++ns) {
    const std::vector<SockDelta> deltas = socket_deltas(tl, ns);
    bool fired = false;
    namespace_finding(series, tl, p, ns, deltas, out, fired);
    if (!fired) {
      peer_findings(series, tl, p, ns, deltas, out);
    }
  }
}

} // namespace

Detector retransmissions_detector() {
  return {
      "retransmissions",
      "TCP retransmission storms (RetransSegs/OutSegs per interval, top peers and sockets)",
      {
          {"warn_ratio", 0.01, "RetransSegs/OutSegs per interval above which it is bad"},
          {"crit_ratio", 0.05, "RetransSegs/OutSegs per interval that is critical"},
          {"min_rate", 10, "retransmitted segments per second for an interval to count"},
          {"min_intervals", 3, "consecutive bad counter intervals needed"},
          {"peer_ratio",
           0.02,
           "per remote address: sum of total_retrans deltas / sum of segs_out deltas that warns"},
          {"peer_min_segments", 1000, "segments sent to a peer before its ratio counts"},
      },
      &run};
}

} // namespace sockrewind::analyze
