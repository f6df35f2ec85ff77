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
#include <sockrewind/analyze/client_side.hpp>
#include <sockrewind/analyze/snap_counts.hpp>
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sockrewind::analyze {

namespace {

uint64_t dest_key(const Track& t) {
  return static_cast<uint64_t>(t.netns) << 48U ^ static_cast<uint64_t>(t.remote_addr) << 16U
         ^ t.remote_port;
}

// One connect seen in SYN-SENT.
struct Connect {
  Track part;         // the socket with its last SYN-SENT sample (owners, addresses)
  uint32_t seen = 0;  // snapshot of the socket's first sample (ties: the earlier socket first)
  uint32_t first = 0; // snapshots of its first and last SYN-SENT sample
  uint32_t last = 0;
  size_t samples = 0;
  uint8_t max_retrans = 0;
  bool stuck = false;
  bool connected_later = false;
  std::vector<std::pair<uint32_t, uint8_t>> syn; // (snapshot, SYN retries or 0) of each sample

  const Sample& last_syn() const { return part.samples.front(); }
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

// A socket's connect as seen in SYN-SENT (samples 0: never seen so).
Connect connect_of(const Track& t) {
  Connect c;
  size_t last_syn = 0;
  for (size_t i = 0; i < t.samples.size(); ++i) {
    const Sample& x = t.samples[i];
    if (x.state == k_syn_sent) {
      c.first = c.samples == 0 ? x.snap : c.first;
      c.last = x.snap;
      ++c.samples;
      c.max_retrans = x.retrans == k_na8 ? c.max_retrans : std::max(c.max_retrans, x.retrans);
      c.syn.emplace_back(x.snap, x.retrans == k_na8 ? uint8_t{0} : x.retrans);
      last_syn = i;
    } else if (c.samples > 0 && x.state == k_established) {
      c.connected_later = true;
    }
  }
  if (c.samples > 0) {
    c.part = track_part(t, {last_syn, last_syn + 1});
    c.seen = t.samples.front().snap;
  }
  return c;
}

// Sockets one at a time: the client-side ones counted per (destination, snapshot), those seen
// in SYN-SENT kept as connects (their SYN-SENT snapshots and last SYN-SENT sample); then the
// destinations with a connect. A socket whose local port turns out to be a listening port only
// after it was counted (the listener came later) is taken out again in finish(), exactly what
// it added, from its snapshots read back from the files (ClientPorts).
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& /*out*/) override {
    if (!m_ports.client_side(ctx, t)) {
      return;
    }
    Dest& d = m_dests[dest_key(t)];
    bool counted = false;
    for (const Sample& x : t.samples) {
      if (x.state != k_listen && x.state != k_close) {
        d.attempts[x.snap]++;
        counted = true;
      }
    }
    Connect c = connect_of(t);
    if (c.samples > 0) {
      d.connects.push_back(std::move(c));
    }
    if (counted) {
      m_ports.counted(t);
    }
  }

  void finish(const Context& ctx, Sink& out) override {
    take_out_late_listener_ports(ctx);
    std::vector<uint64_t> order;
    order.reserve(m_dests.size());
    for (const auto& [key, d] : m_dests) {
      if (!d.connects.empty()) {
        order.push_back(key);
      }
    }
    std::sort(order.begin(), order.end());
    for (const uint64_t key : order) {
      judge(ctx, m_dests.at(key), out);
    }
  }

private:
  struct Dest {
    SnapCounts<uint32_t> attempts; // snapshot -> client-side sockets toward it (0: none)
    std::vector<Connect> connects;
  };

  void take_out_late_listener_ports(const Context& ctx);
  static void judge(const Context& ctx, Dest& d, Sink& out);

  std::unordered_map<uint64_t, Dest> m_dests; // by dest_key
  ClientPorts m_ports;
};

// The sockets counted on a port that a listener used later (or that closed before its listener
// opened): their connects are dropped and the attempts they added, read back from the files,
// taken out, as if the listening port had been known when they came.
void Pass::take_out_late_listener_ports(const Context& ctx) {
  for (auto& [key, d] : m_dests) {
    std::erase_if(d.connects, [this](const Connect& c) { return m_ports.listening(c.part); });
  }
  m_ports.take_out_late(ctx, [this](const ClientPorts::Late& l) {
    if (l.sample.state == k_listen || l.sample.state == k_close) {
      return;
    }
    const auto it = m_dests.find(dest_key(l.socket));
    if (it == m_dests.end()) {
      return; // nothing counted toward it
    }
    uint32_t* n = it->second.attempts.find(l.snap);
    if (n != nullptr && *n > 0) {
      --*n; // at 0 it reads as none
    }
  });
}

void Pass::judge(const Context& ctx, Dest& d, Sink& out) {
  std::vector<Connect>& connects = d.connects;
  for (Connect& c : connects) {
    c.stuck = ctx.lasted(c.first, c.last, c.samples, ctx.param("stuck_seconds"))
              || static_cast<double>(c.max_retrans) >= ctx.param("retrans_warn");
  }
  const auto stuck_n = static_cast<size_t>(
      std::count_if(connects.begin(), connects.end(), [](const Connect& c) { return c.stuck; }));
  if (stuck_n == 0) {
    return;
  }
  // Stuck first, the longest first, then the socket seen first (a total order on what a socket
  // is: the order they came in does not matter).
  std::sort(connects.begin(), connects.end(), [&ctx](const Connect& a, const Connect& b) {
    const double da = ctx.seconds(a.first, a.last);
    const double db = ctx.seconds(b.first, b.last);
    if (a.stuck != b.stuck) {
      return a.stuck;
    }
    if (da != db) {
      return da > db;
    }
    return std::tie(a.seen, a.part.cookie, a.part.local_addr, a.part.local_port, a.first)
           < std::tie(b.seen, b.part.cookie, b.part.local_addr, b.part.local_port, b.first);
  });
  std::vector<Point> pts;
  d.attempts.for_each([&pts](uint32_t snap, uint32_t n) { pts.push_back({snap, 0, n, 0}); });
  for (const Connect& c : connects) {
    for (const auto& [snap, retrans] : c.syn) {
      auto p = std::lower_bound(
          pts.begin(), pts.end(), snap, [](const Point& q, uint32_t s) { return q.snap < s; });
      if (p == pts.end() || p->snap != snap) {
        // A SYN-SENT sample is an attempt (counted, and never taken out while its connect
        // stays), unless a file reads back other than it loaded.
        p = pts.insert(p, Point{snap, 0, 1, 0});
      }
      ++p->syn;
      p->max_retrans = std::max(p->max_retrans, retrans);
    }
  }
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
    for (const uint32_t p : ctx.owners(c.last_syn())) {
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
  const Track& t = connects.front().part;
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
    const Track& ct = c.part;
    Json j;
    j["local"] = endpoint(series, ct, true);
    j["cookie"] = ct.cookie == 0 ? Json(nullptr) : Json(ct.cookie);
    j["max_retrans"] = c.max_retrans;
    j["first_seen"] = ctx.time(c.first);
    j["last_seen"] = ctx.time(c.last);
    j["stuck_s"] = ctx.seconds(c.first, c.last);
    j["stuck"] = c.stuck;
    j["connected_later"] = c.connected_later;
    j["owners"] = ctx.owners_json(c.last_syn());
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
          nullptr,
          make_pass<Pass>};
}

} // namespace sockrewind::analyze
