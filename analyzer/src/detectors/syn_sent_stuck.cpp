// syn_sent_stuck (research/detectors.md D10): outbound connects toward one destination
// (remote ip:port) that stay in SYN-SENT: the destination is down, a firewall drops the SYNs,
// routing is broken, or the remote listen queue is full. One finding per destination, naming
// every process with a stuck connect toward it.
//   stuck connect: the same connect (socket) in SYN-SENT for >= stuck_seconds, or with
//                  >= retrans_warn SYN retransmissions (the kernel retries at 1, 3, 7 ... s);
//                  brand-new SYN-SENT sockets of a busy client, each seen once, are not stuck;
//   warning:       a stuck connect toward the destination;
//   critical:      a stuck connect, and >= crit_ratio of the attempts toward the destination
//                  (its client-side sockets in a snapshot) in SYN-SENT for >= critical_seconds:
//                  the destination does not answer anyone.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <unordered_map>
#include <utility>

namespace sockrewind::analyze {

namespace {

uint64_t dest_key(const Track& t) {
  return static_cast<uint64_t>(t.netns) << 48U ^ static_cast<uint64_t>(t.remote_addr) << 16U
         ^ t.remote_port;
}

bool client_side(const Track& t, const ListenerIndex& li) {
  return t.family != k_af_unix && t.proto == k_proto_tcp && t.remote_port != 0
         && t.remote_addr != k_na && !li.is_listener_port(t);
}

// One connect seen in SYN-SENT.
struct Connect {
  uint32_t track = 0;
  uint32_t first = 0; // snapshots of its first and last SYN-SENT sample
  uint32_t last = 0;
  size_t samples = 0;
  uint8_t max_retrans = 0;
  bool stuck = false;
  bool connected_later = false;
  const Sample* last_syn = nullptr;
};

// Client-side sockets toward the destination in one snapshot.
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
  std::vector<uint32_t> tracks; // client-side tracks toward it
};

Connect connect_of(const Context& ctx, uint32_t ti) {
  Connect c;
  c.track = ti;
  for (const Sample& x : ctx.track(ti).samples) {
    if (x.state == k_syn_sent) {
      c.first = c.samples == 0 ? x.snap : c.first;
      c.last = x.snap;
      ++c.samples;
      c.max_retrans = x.retrans == k_na8 ? c.max_retrans : std::max(c.max_retrans, x.retrans);
      c.last_syn = &x;
    } else if (c.samples > 0 && x.state == k_established) {
      c.connected_later = true;
    }
  }
  c.stuck = c.samples > 0
            && (ctx.lasted(c.first, c.last, c.samples, ctx.param("stuck_seconds"))
                || static_cast<double>(c.max_retrans) >= ctx.param("retrans_warn"));
  return c;
}

std::vector<Point> points_of(const Context& ctx, const Dest& d) {
  std::map<uint32_t, Point> by_snap;
  for (const uint32_t ti : d.tracks) {
    for (const Sample& x : ctx.track(ti).samples) {
      if (x.state == k_listen || x.state == k_close) {
        continue;
      }
      Point& p = by_snap[x.snap];
      p.snap = x.snap;
      ++p.attempts;
      if (x.state == k_syn_sent) {
        ++p.syn;
        p.max_retrans = std::max(p.max_retrans, x.retrans == k_na8 ? uint8_t{0} : x.retrans);
      }
    }
  }
  std::vector<Point> out;
  out.reserve(by_snap.size());
  for (const auto& [snap, p] : by_snap) {
    out.push_back(p);
  }
  return out;
}

// Seconds of the longest run of consecutive snapshots (`pred` true in each) and its snapshots.
template <typename Pred>
std::pair<double, size_t>
longest_run(const Context& ctx, const std::vector<Point>& pts, const Pred& pred) {
  const auto& snaps = ctx.timeline().snaps;
  double best = -1;
  size_t best_n = 0;
  size_t begin = SIZE_MAX; // start of the current run
  for (size_t i = 0; i <= pts.size(); ++i) {
    const bool ok = i < pts.size() && pred(pts[i]);
    const bool joins = ok && begin != SIZE_MAX && pts[i].snap == pts[i - 1].snap + 1
                       && snaps[pts[i].snap].run == snaps[pts[i - 1].snap].run;
    if (joins) {
      continue;
    }
    if (begin != SIZE_MAX) {
      const double s = ctx.seconds(pts[begin].snap, pts[i - 1].snap);
      if (i - begin > best_n || (i - begin == best_n && s > best)) {
        best = s;
        best_n = i - begin;
      }
    }
    begin = ok ? i : SIZE_MAX;
  }
  return {best, best_n};
}

void judge(const Context& ctx, const Dest& d, Sink& out) {
  std::vector<Connect> connects;
  for (const uint32_t ti : d.tracks) {
    Connect c = connect_of(ctx, ti);
    if (c.samples > 0) {
      connects.push_back(c);
    }
  }
  const auto stuck_n = static_cast<size_t>(
      std::count_if(connects.begin(), connects.end(), [](const Connect& c) { return c.stuck; }));
  if (stuck_n == 0) {
    return;
  }
  std::sort(connects.begin(), connects.end(), [&ctx](const Connect& a, const Connect& b) {
    const double da = ctx.seconds(a.first, a.last);
    const double db = ctx.seconds(b.first, b.last);
    return a.stuck != b.stuck ? a.stuck : (da != db ? da > db : a.track < b.track);
  });
  const std::vector<Point> pts = points_of(ctx, d);
  const auto [syn_s, syn_n] = longest_run(ctx, pts, [](const Point& p) { return p.syn > 0; });
  const double crit_ratio = ctx.param("crit_ratio");
  const auto [most_s, most_n] =
      longest_run(ctx, pts, [crit_ratio](const Point& p) { return p.ratio() >= crit_ratio; });
  const bool critical =
      most_n >= k_min_support && most_s >= 0 && most_s >= ctx.param("critical_seconds");

  // Every process waiting on a stuck connect, the one with most first.
  std::map<uint32_t, size_t> procs;
  uint32_t first = k_na;
  uint32_t last = 0;
  uint8_t max_retrans = 0;
  double longest = 0;
  for (const Connect& c : connects) {
    if (!c.stuck) {
      continue;
    }
    for (const uint32_t p : ctx.owners(*c.last_syn)) {
      procs[p]++;
    }
    first = std::min(first, c.first);
    last = std::max(last, c.last);
    max_retrans = std::max(max_retrans, c.max_retrans);
    longest = std::max(longest, ctx.seconds(c.first, c.last));
  }
  std::vector<uint32_t> owners;
  owners.reserve(procs.size());
  for (const auto& [p, n] : procs) {
    owners.push_back(p);
  }
  std::stable_sort(owners.begin(), owners.end(), [&procs](uint32_t a, uint32_t b) {
    return procs[a] > procs[b];
  });
  uint32_t peak = 0;
  const Point* last_pt = &pts.back();
  for (const Point& p : pts) {
    peak = std::max(peak, p.syn);
    last_pt = p.snap <= last ? &p : last_pt;
  }

  const Series& series = ctx.series();
  const Track& t = ctx.track(connects.front().track);
  const std::string dst = endpoint(series, t, false);
  const std::string local =
      connects.size() == 1 ? endpoint(series, t, true) : host_text(ctx, t, t.local_addr) + ":*";
  FindingBuilder b(ctx, "syn_sent_stuck");
  b.subject(destination_subject(ctx, t, "SYN-SENT", local, owners),
            owners.empty() ? k_na : owners.front());
  b.seen(first, last).weight(static_cast<double>(stuck_n));
  b.severity(critical ? Severity::critical : Severity::warning);
  std::string s = std::to_string(stuck_n) + " connect" + (stuck_n == 1 ? "" : "s") + " to " + dst
                  + " stuck in SYN-SENT for up to " + num(longest) + " s (up to "
                  + std::to_string(max_retrans) + " SYN retries; " + std::to_string(last_pt->syn)
                  + " of " + std::to_string(last_pt->attempts)
                  + " connections toward it in SYN-SENT at " + ctx.time(last_pt->snap);
  if (critical) {
    s += "; >= " + num(100 * crit_ratio) + "% of them for " + num(most_s) + " s";
  }
  s += "): the destination does not answer (down, SYNs dropped by a firewall, or its listen "
       "queue is full)";
  if (is_loopback_address(series.strings.get(t.remote_addr))) {
    s += "; it is local: see accept_queue_backlog/listen_overflow for " + dst;
  }
  s += "; " + processes_text(ctx, owners) + (owners.size() > 1 ? " are" : " is")
       + " waiting in connect()";
  b.summary(std::move(s));
  b.fact("identities", connects.size());
  b.fact("stuck_connects", stuck_n);
  b.fact("peak_syn_sent", peak);
  b.fact("longest_run", syn_n);
  b.fact("longest_run_s", syn_n == 0 ? Json(nullptr) : Json(syn_s));
  b.fact("longest_stuck_s", longest);
  b.fact("max_retrans", max_retrans);
  b.fact("mostly_syn_sent_s", most_n == 0 ? Json(nullptr) : Json(most_s));
  b.fact("tcp_syn_retrans", ctx.counter(t.netns, "TcpExt.TCPSynRetrans").total(first + 1, last));
  b.fact("attempt_fails", ctx.counter(t.netns, "Tcp.AttemptFails").total(first + 1, last));
  const auto retries = ctx.limit(t.netns, "net.ipv4.tcp_syn_retries", last);
  b.fact("sysctls", Json{{"net.ipv4.tcp_syn_retries", retries ? Json(*retries) : Json(nullptr)}});
  Json list = Json::array();
  const auto max_listed = static_cast<size_t>(ctx.param("max_listed"));
  for (size_t i = 0; i < connects.size() && i < max_listed; ++i) {
    const Connect& c = connects[i];
    const Track& ct = ctx.track(c.track);
    Json j;
    j["local"] = endpoint(series, ct, true);
    j["cookie"] = ct.cookie == 0 ? Json(nullptr) : Json(ct.cookie);
    j["max_retrans"] = c.max_retrans;
    j["first_seen"] = ctx.time(c.first);
    j["last_seen"] = ctx.time(c.last);
    j["stuck_s"] = ctx.seconds(c.first, c.last);
    j["stuck"] = c.stuck;
    j["connected_later"] = c.connected_later;
    j["owners"] = ctx.owners_json(*c.last_syn);
    list.push_back(std::move(j));
  }
  b.fact("connects", std::move(list));
  Json rows = Json::array();
  for (const Point& p : pts) {
    if (p.snap + 1 < first || p.snap > last + 1) {
      continue;
    }
    Json j;
    j["t"] = ctx.time(p.snap);
    j["syn_sent"] = p.syn;
    j["attempts"] = p.attempts;
    j["syn_sent_ratio"] = p.ratio();
    j["max_retrans"] = p.max_retrans;
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "syn_sent", {"attempts"});
  b.group(
      "destination", std::to_string(t.netns) + " " + dst, dst, "connects stuck in SYN-SENT toward");
  out.add(std::move(b).build());
}

void check(const Context& ctx, Sink& out) {
  const ListenerIndex& li = ctx.listeners();
  // Destinations with at least one SYN-SENT socket, then every client-side socket toward them.
  std::unordered_map<uint64_t, uint32_t> index;
  std::vector<Dest> dests;
  for (const Track& t : ctx.tracks()) {
    const bool syn =
        client_side(t, li) && std::any_of(t.samples.begin(), t.samples.end(), [](const Sample& x) {
          return x.state == k_syn_sent;
        });
    if (syn && index.try_emplace(dest_key(t), static_cast<uint32_t>(dests.size())).second) {
      dests.emplace_back();
    }
  }
  for (uint32_t ti = 0; ti < ctx.tracks().size(); ++ti) {
    const Track& t = ctx.track(ti);
    const auto it = client_side(t, li) ? index.find(dest_key(t)) : index.end();
    if (it != index.end()) {
      dests[it->second].tracks.push_back(ti);
    }
  }
  std::vector<std::pair<uint64_t, uint32_t>> order(index.begin(), index.end());
  std::sort(order.begin(), order.end());
  for (const auto& [key, di] : order) {
    judge(ctx, dests[di], out);
  }
}

} // namespace

Detector syn_sent_stuck_detector() {
  return {"syn_sent_stuck",
          "outbound connects toward one destination stuck in SYN-SENT",
          {
              {"stuck_seconds",
               3,
               "the same connect in SYN-SENT this long is stuck (warning)",
               Unit::seconds},
              {"retrans_warn", 3, "SYN retransmissions of one connect: stuck", Unit::count},
              {"crit_ratio",
               0.5,
               "share of the attempts toward it in SYN-SENT for critical",
               Unit::ratio},
              {"critical_seconds",
               4,
               "that share held this long (with a stuck connect) is critical",
               Unit::seconds},
              {"max_listed", 20, "connects listed in the evidence, longest stuck first"},
          },
          &check};
}

} // namespace sockrewind::analyze
