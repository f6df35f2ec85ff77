// syn_sent_stuck (research/detectors.md D10): outbound connects toward one destination
// (remote ip:port) that stay in SYN-SENT: the destination is down, a firewall drops the SYNs,
// routing is broken, or the remote listen queue is full.
//   warning:  SYN-SENT sockets toward the destination in >= min_consecutive consecutive
//             snapshots, or a SYN-SENT socket with >= retrans_warn SYN retransmissions;
//   critical: the warning, and >= crit_ratio of the attempts toward the destination (its
//             client-side sockets in the snapshot) in SYN-SENT in >= crit_samples snapshots.
// A single slow handshake (one snapshot, few retries) stays quiet.
#include "listen_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <map>
#include <unordered_map>
#include <unordered_set>

namespace sockrewind::analyze {

namespace {

uint64_t dest_key(const Track& t) {
  return static_cast<uint64_t>(t.netns) << 48U ^ static_cast<uint64_t>(t.remote_addr) << 16U
         ^ t.remote_port;
}

struct Ident {
  uint32_t track = 0;
  uint32_t first = 0;
  uint32_t last = 0;
  uint8_t max_retrans = 0;
  uint32_t owner = k_na;
  bool ended_established = false;
};

struct Point {
  uint32_t snap = 0;
  uint32_t syn = 0;
  uint32_t attempts = 0;
  uint8_t max_retrans = 0;

  double ratio() const {
    return attempts == 0 ? 0 : static_cast<double>(syn) / static_cast<double>(attempts);
  }
};

struct Dest {
  std::vector<uint32_t> tracks;
  std::vector<uint64_t> entries; // snap << 9 | syn_sent << 8 | retrans
};

bool client_side(const Track& t, const ListenerIndex& li) {
  return t.family != k_af_unix && t.proto == k_proto_tcp && t.remote_port != 0
         && t.remote_addr != k_na && !li.is_listener_port(t);
}

void judge(const Series& series,
           const Timeline& tl,
           const Dest& d,
           const Params& p,
           std::vector<Finding>& out) {
  std::vector<uint64_t> entries = d.entries;
  std::sort(entries.begin(), entries.end());
  std::vector<Point> pts;
  for (const uint64_t e : entries) {
    const auto snap = static_cast<uint32_t>(e >> 9U);
    if (pts.empty() || pts.back().snap != snap) {
      pts.push_back({snap, 0, 0, 0});
    }
    Point& pt = pts.back();
    pt.attempts++;
    if ((e >> 8U & 1U) != 0) {
      pt.syn++;
      pt.max_retrans = std::max(pt.max_retrans, static_cast<uint8_t>(e & 0xffU));
    }
  }
  size_t run = 0;
  size_t best_run = 0;
  uint32_t prev = k_na;
  size_t crit_n = 0;
  uint8_t max_retrans = 0;
  uint32_t peak = 0;
  uint32_t first = k_na;
  uint32_t last = 0;
  for (const Point& pt : pts) {
    if (pt.syn == 0) {
      run = 0;
      continue;
    }
    const bool next =
        prev != k_na && pt.snap == prev + 1 && tl.snaps[pt.snap].run == tl.snaps[prev].run;
    run = next && run > 0 ? run + 1 : 1;
    best_run = std::max(best_run, run);
    prev = pt.snap;
    crit_n += pt.ratio() >= p.get("crit_ratio") ? 1U : 0U;
    max_retrans = std::max(max_retrans, pt.max_retrans);
    peak = std::max(peak, pt.syn);
    first = std::min(first, pt.snap);
    last = pt.snap;
  }
  const bool by_run = static_cast<double>(best_run) >= p.get("min_consecutive");
  const bool by_retrans = static_cast<double>(max_retrans) >= p.get("retrans_warn");
  if (first == k_na || (!by_run && !by_retrans)) {
    return;
  }
  const bool crit = static_cast<double>(crit_n) >= p.get("crit_samples");

  // SYN-SENT identities and their owners.
  std::vector<Ident> ids;
  std::map<uint32_t, size_t> owners;
  for (const uint32_t ti : d.tracks) {
    Ident id;
    id.track = ti;
    bool seen = false;
    for (const Sample& x : tl.tracks[ti].samples) {
      if (x.state == k_syn_sent) {
        if (!seen) {
          id.first = x.snap;
        }
        seen = true;
        id.last = x.snap;
        if (x.retrans != k_na8) {
          id.max_retrans = std::max(id.max_retrans, x.retrans);
        }
        if (x.owner != k_na) {
          id.owner = x.owner;
          owners[x.owner]++;
        }
      } else if (seen && x.state == k_established) {
        id.ended_established = true;
      }
    }
    if (seen) {
      ids.push_back(id);
    }
  }
  std::sort(ids.begin(), ids.end(), [&tl](const Ident& a, const Ident& b) {
    const double da = tl.dt(a.first, a.last);
    const double db = tl.dt(b.first, b.last);
    return da != db ? da > db : a.track < b.track;
  });
  uint32_t top = k_na;
  size_t top_n = 0;
  for (const auto& [o, c] : owners) {
    if (c > top_n) {
      top = o;
      top_n = c;
    }
  }
  const Track& t = tl.tracks[ids.empty() ? d.tracks.front() : ids.front().track];
  const std::string local = ids.size() == 1
                                ? endpoint(series, t, true)
                                : listen_util::host_part(series, t, t.local_addr) + ":*";
  const Point* last_pt = &pts.back();
  for (const Point& pt : pts) {
    if (pt.snap == last) {
      last_pt = &pt;
    }
  }
  Finding f;
  f.detector = "syn_sent_stuck";
  f.severity = by_run || by_retrans ? Severity::warning : Severity::info;
  if (crit) {
    f.severity = Severity::critical;
  }
  f.subject = listen_util::dest_subject(series, tl, t, "SYN-SENT", local, top);
  set_owner(f, tl, top);
  f.first_seen_ns = tl.snaps[first].realtime_ns;
  f.last_seen_ns = tl.snaps[last].realtime_ns;
  f.weight = static_cast<double>(peak);
  const std::string dst = endpoint(series, t, false);
  std::string s = std::to_string(ids.size()) + " connects to " + dst + " stuck in SYN-SENT (up to "
                  + std::to_string(peak) + " at once, " + std::to_string(last_pt->syn) + " of "
                  + std::to_string(last_pt->attempts) + " connections in the last snapshot; "
                  + std::to_string(best_run) + " consecutive snapshots; up to "
                  + std::to_string(max_retrans)
                  + " SYN retries): the destination does not answer (down, SYNs dropped by a "
                    "firewall, or its listen queue is full)";
  if (listen_util::is_loopback(series.strings.get(t.remote_addr))) {
    s += "; it is local: see accept_queue_backlog/listen_overflow for " + dst;
  }
  s += "; " + listen_util::owner_text(series, tl, top, "no owning process seen")
       + " is waiting in connect()";
  f.summary = std::move(s);
  f.evidence["identities"] = ids.size();
  f.evidence["peak_syn_sent"] = peak;
  f.evidence["longest_run"] = best_run;
  f.evidence["max_retrans"] = max_retrans;
  f.evidence["snapshots_mostly_syn_sent"] = crit_n;
  const auto syn_retrans = counter_steps(series, tl, t.netns, "TcpExt.TCPSynRetrans");
  const auto fails = counter_steps(series, tl, t.netns, "Tcp.AttemptFails");
  int64_t sr = 0;
  int64_t af = 0;
  for (const CounterStep& c : syn_retrans) {
    sr += c.to > first && c.to <= last ? c.delta : 0;
  }
  for (const CounterStep& c : fails) {
    af += c.to > first && c.to <= last ? c.delta : 0;
  }
  f.evidence["tcp_syn_retrans"] = sr;
  f.evidence["attempt_fails"] = af;
  const int64_t retries = listen_util::limit_first(tl, t.netns, "net.ipv4.tcp_syn_retries", last);
  f.evidence["sysctls"]["net.ipv4.tcp_syn_retries"] = retries < 0 ? Json(nullptr) : Json(retries);
  Json list = Json::array();
  const auto max_listed = static_cast<size_t>(p.get("max_listed"));
  for (size_t i = 0; i < ids.size() && i < max_listed; ++i) {
    const Ident& id = ids[i];
    const Track& it = tl.tracks[id.track];
    Json j;
    j["local"] = endpoint(series, it, true);
    j["cookie"] = it.cookie == 0 ? Json(nullptr) : Json(it.cookie);
    j["max_retrans"] = id.max_retrans;
    j["first_seen"] = snap_time(tl, id.first);
    j["last_seen"] = snap_time(tl, id.last);
    j["stuck_s"] = tl.dt(id.first, id.last);
    j["connected_later"] = id.ended_established;
    const Json pr = process_json(series, tl, id.owner);
    j["pid"] = pr.is_null() ? Json(nullptr) : pr["pid"];
    j["comm"] = pr.is_null() ? Json(nullptr) : pr["comm"];
    list.push_back(std::move(j));
  }
  f.evidence["connects"] = std::move(list);
  Json ser = Json::array();
  for (const Point& pt : pts) {
    if (pt.snap + 1 < first || pt.snap > last + 1) {
      continue;
    }
    Json j;
    j["t"] = snap_time(tl, pt.snap);
    j["syn_sent"] = pt.syn;
    j["attempts"] = pt.attempts;
    j["syn_sent_ratio"] = pt.ratio();
    j["max_retrans"] = pt.max_retrans;
    ser.push_back(std::move(j));
  }
  f.evidence["series"] = std::move(ser);
  out.push_back(std::move(f));
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const ListenerIndex li(series, tl);
  // Destinations with at least one SYN-SENT socket.
  std::unordered_map<uint64_t, uint32_t> index;
  std::vector<Dest> dests;
  for (const Track& t : tl.tracks) {
    if (!client_side(t, li)) {
      continue;
    }
    const bool syn = std::any_of(
        t.samples.begin(), t.samples.end(), [](const Sample& x) { return x.state == k_syn_sent; });
    if (syn && index.try_emplace(dest_key(t), static_cast<uint32_t>(dests.size())).second) {
      dests.emplace_back();
    }
  }
  if (dests.empty()) {
    return;
  }
  // Every client-side connection toward those destinations (the attempts).
  for (uint32_t ti = 0; ti < tl.tracks.size(); ++ti) {
    const Track& t = tl.tracks[ti];
    if (!client_side(t, li)) {
      continue;
    }
    const auto it = index.find(dest_key(t));
    if (it == index.end()) {
      continue;
    }
    Dest& d = dests[it->second];
    d.tracks.push_back(ti);
    for (const Sample& x : t.samples) {
      if (x.state == k_listen || x.state == k_close) {
        continue;
      }
      const uint64_t syn = x.state == k_syn_sent ? 1U : 0U;
      const uint64_t retr = x.retrans == k_na8 ? 0U : x.retrans;
      d.entries.push_back(static_cast<uint64_t>(x.snap) << 9U | syn << 8U | retr);
    }
  }
  std::vector<std::pair<uint64_t, uint32_t>> order(index.begin(), index.end());
  std::sort(order.begin(), order.end());
  for (const auto& [key, di] : order) {
    judge(series, tl, dests[di], p, out);
  }
}

} // namespace

Detector syn_sent_stuck_detector() {
  return {"syn_sent_stuck",
          "outbound connects toward one destination stuck in SYN-SENT",
          {
              {"min_consecutive", 3, "consecutive snapshots with SYN-SENT toward it: warning"},
              {"retrans_warn", 3, "SYN retransmissions of one connect: warning"},
              {"crit_ratio", 0.5, "share of the attempts toward it in SYN-SENT for critical"},
              {"crit_samples", 2, "snapshots at or above crit_ratio for critical"},
              {"max_listed", 20, "connects listed in the evidence, longest stuck first"},
          },
          &run};
}

} // namespace sockrewind::analyze
