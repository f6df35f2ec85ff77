// port_exhaustion (research/detectors.md D9): connections from one local address to one
// destination (remote ip:port) use up the ephemeral port range. Per snapshot,
//   U = (TIME-WAIT + ESTAB + SYN-SENT sockets local ip -> remote ip:port, local port in
//        ip_local_port_range) / (range size - ip_local_reserved_ports in it);
//   U >= warn_ratio held for >= min_seconds (consecutive snapshots) -> warning; U >= crit_ratio
//   held for >= min_seconds -> critical (connect() fails with EADDRNOTAVAIL when it reaches 1).
// Downgraded to info when tcp_tw_reuse lets connect() reuse TIME-WAIT ports (1, or 2 and a
// loopback destination, with tcp_timestamps on) and the non-TIME-WAIT share alone is below
// warn_ratio. Server-side sockets (local port = a listening port) use no ephemeral port and are
// not counted; neither is TIME-WAIT toward many different destinations (ports are per 4-tuple).
// One finding per destination, naming every process with a connection toward it (TIME-WAIT has
// no owner).
#include <sockrewind/analyze/client_side.hpp>
#include <sockrewind/analyze/snap_counts.hpp>
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace sockrewind::analyze {

namespace {

struct PortRange {
  int64_t lo = 32768; // kernel defaults
  int64_t hi = 60999;
  int64_t reserved = 0;

  int64_t capacity() const { return std::max<int64_t>(1, hi - lo + 1 - reserved); }
};

// Ports of "8080,9000-9100" within [lo, hi].
int64_t reserved_in(std::string_view v, int64_t lo, int64_t hi) {
  int64_t n = 0;
  size_t i = 0;
  while (i < v.size()) {
    size_t j = v.find(',', i);
    if (j == std::string_view::npos) {
      j = v.size();
    }
    const std::string_view item = v.substr(i, j - i);
    const size_t dash = item.find('-');
    int64_t a = 0;
    int64_t b = 0;
    const std::string_view sa = item.substr(0, dash);
    const std::string_view sb = dash == std::string_view::npos ? sa : item.substr(dash + 1);
    const auto ra = std::from_chars(sa.data(), sa.data() + sa.size(), a);
    const auto rb = std::from_chars(sb.data(), sb.data() + sb.size(), b);
    if (ra.ec == std::errc{} && rb.ec == std::errc{}) {
      n += std::max<int64_t>(0, std::min(b, hi) - std::max(a, lo) + 1);
    }
    i = j + 1;
  }
  return n;
}

PortRange port_range(const Timeline& tl, uint32_t ns, uint32_t snap) {
  PortRange r;
  const std::vector<int64_t> v = limit_numbers(tl, ns, "net.ipv4.ip_local_port_range", snap);
  if (v.size() == 2 && v[0] <= v[1]) {
    r.lo = v[0];
    r.hi = v[1];
  }
  r.reserved = reserved_in(tl.limit(ns, "net.ipv4.ip_local_reserved_ports", snap), r.lo, r.hi);
  return r;
}

struct DestKey {
  uint32_t netns = 0;
  uint32_t local_addr = 0;
  uint32_t remote_addr = 0;
  uint16_t remote_port = 0;
  bool operator==(const DestKey&) const = default;
};

struct DestKeyHash {
  size_t operator()(const DestKey& k) const noexcept {
    uint64_t h = (static_cast<uint64_t>(k.netns) << 32U) ^ k.local_addr;
    h = h * 0x9e3779b97f4a7c15ULL ^ (static_cast<uint64_t>(k.remote_addr) << 16U) ^ k.remote_port;
    return static_cast<size_t>(h * 0xff51afd7ed558ccdULL);
  }
};

struct Point {
  uint32_t snap = 0;
  uint32_t tw = 0;
  uint32_t est = 0;
  uint32_t syn = 0;
  int64_t cap = 0;

  double u() const { return static_cast<double>(tw + est + syn) / static_cast<double>(cap); }
};

bool tw_reuse_applies(const Context& ctx, const Track& t, uint32_t snap) {
  const auto reuse = ctx.limit(t.netns, "net.ipv4.tcp_tw_reuse", snap);
  const auto ts = ctx.limit(t.netns, "net.ipv4.tcp_timestamps", snap);
  const int64_t r = reuse.value_or(2);         // kernel default 2: loopback only
  const bool timestamps = ts.value_or(1) != 0; // default 1
  const bool loop = is_loopback_address(ctx.series().strings.get(t.remote_addr));
  return timestamps && (r == 1 || (r == 2 && loop));
}

// The longest run of consecutive snapshots with U >= ratio: {seconds, snapshots}.
std::pair<double, size_t> held(const Context& ctx, const std::vector<Point>& pts, double ratio) {
  const auto& snaps = ctx.timeline().snaps;
  double best = 0;
  size_t best_n = 0;
  size_t begin = SIZE_MAX;
  for (size_t i = 0; i <= pts.size(); ++i) {
    const bool ok = i < pts.size() && pts[i].u() >= ratio;
    if (ok && begin != SIZE_MAX && pts[i].snap == pts[i - 1].snap + 1
        && snaps[pts[i].snap].run == snaps[pts[i - 1].snap].run) {
      continue;
    }
    if (begin != SIZE_MAX && ctx.lasted(pts[begin].snap, pts[i - 1].snap, i - begin, 0)) {
      const double s = ctx.seconds(pts[begin].snap, pts[i - 1].snap);
      if (s > best || best_n == 0) {
        best = s;
        best_n = i - begin;
      }
    }
    begin = ok ? i : SIZE_MAX;
  }
  return {best, best_n};
}

// Sockets one at a time: each client-side one's TIME-WAIT, ESTAB and SYN-SENT samples counted
// per (destination, snapshot), its owners per destination; then the destinations. A socket
// whose local port turns out to be a listening port only after it was counted (the listener
// came later) is taken out again in finish(), exactly what it added, from its snapshots read
// back from the files (ClientPorts).
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& /*out*/) override {
    if (!m_ports.client_side(ctx, t)) {
      return;
    }
    Dest* d = nullptr;
    for (const Sample& x : t.samples) {
      const int kind = kind_of(x);
      if (kind < 0) {
        continue;
      }
      const PortRange& r = range_at(ctx.timeline(), t.netns, x.snap);
      if (t.local_port < r.lo || t.local_port > r.hi) {
        continue;
      }
      if (d == nullptr) {
        const DestKey k{t.netns, t.local_addr, t.remote_addr, t.remote_port};
        const auto [it, fresh] = m_dests.try_emplace(k);
        if (fresh) {
          it->second.key = k;
          it->second.id = track_part(t, {0, 0});
        }
        d = &it->second;
      }
      d->by_snap[x.snap].add(kind, 1);
      ++d->entries;
    }
    if (d == nullptr) {
      return;
    }
    // Every process with a connection toward it: each counted socket's ESTAB and SYN-SENT.
    for (const Sample& x : t.samples) {
      if (x.state == k_established || x.state == k_syn_sent) {
        for (const uint32_t o : ctx.owners(x)) {
          d->owners[o]++;
        }
      }
    }
    m_ports.counted(t);
  }

  void finish(const Context& ctx, Sink& out) override;

private:
  struct Counts {
    uint32_t tw = 0;
    uint32_t est = 0;
    uint32_t syn = 0;

    void add(int kind, int n) {
      uint32_t& c = kind == 0 ? tw : (kind == 1 ? est : syn);
      c = static_cast<uint32_t>(static_cast<int64_t>(c) + n);
    }

    uint32_t get(int kind) const { return kind == 0 ? tw : (kind == 1 ? est : syn); }

    bool operator==(const Counts&) const = default; // Counts{}: none in that snapshot
  };

  struct Dest {
    DestKey key;
    Track id;                          // a socket toward it, without samples (for addresses)
    SnapCounts<Counts> by_snap;        // snapshot -> sockets counted in it
    size_t entries = 0;                // samples counted
    std::map<uint32_t, size_t> owners; // process -> ESTAB/SYN-SENT samples
  };

  // 0 TIME-WAIT, 1 ESTAB, 2 SYN-SENT, -1 not counted.
  static int kind_of(const Sample& x) {
    return x.state == k_time_wait
               ? 0
               : (x.state == k_established ? 1 : (x.state == k_syn_sent ? 2 : -1));
  }

  // Port range per (netns, snapshot), computed on demand.
  const PortRange& range_at(const Timeline& tl, uint32_t ns, uint32_t snap) {
    if (m_ranges.size() <= ns) {
      m_ranges.resize(ns + 1);
    }
    std::vector<std::optional<PortRange>>& v = m_ranges[ns];
    if (v.size() <= snap) {
      v.resize(std::max<size_t>(snap + 1, tl.snaps.size()));
    }
    if (!v[snap]) {
      v[snap] = port_range(tl, ns, snap);
    }
    return *v[snap];
  }

  void take_out_late_listener_ports(const Context& ctx);
  void judge(const Context& ctx, const Dest& d, Sink& out);

  std::unordered_map<DestKey, Dest, DestKeyHash> m_dests;
  ClientPorts m_ports;
  std::vector<std::vector<std::optional<PortRange>>> m_ranges;
};

// The sockets counted on a port that a listener used later (or that closed before its listener
// opened): what each added, read back from the files, is taken out of the counts, as if the
// listening port had been known when they came.
void Pass::take_out_late_listener_ports(const Context& ctx) {
  m_ports.take_out_late(ctx, [this, &ctx](const ClientPorts::Late& l) {
    const int kind = kind_of(l.sample);
    if (kind < 0) {
      return;
    }
    const Track& t = l.socket;
    const auto it = m_dests.find({t.netns, t.local_addr, t.remote_addr, t.remote_port});
    if (it == m_dests.end()) {
      return; // nothing counted toward it
    }
    Dest& d = it->second;
    const PortRange& r = range_at(ctx.timeline(), t.netns, l.snap);
    Counts* c = d.by_snap.find(l.snap);
    // (Counted in this snapshot, unless a file reads back other than it loaded.) All three at
    // 0 reads as none.
    if (t.local_port >= r.lo && t.local_port <= r.hi && c != nullptr && c->get(kind) > 0) {
      c->add(kind, -1);
      --d.entries;
    }
    if (kind == 0) {
      return;
    }
    for (const uint32_t o : l.owners) {
      const auto n = d.owners.find(o);
      if (n != d.owners.end() && --n->second == 0) {
        d.owners.erase(n);
      }
    }
  });
}

void Pass::finish(const Context& ctx, Sink& out) {
  take_out_late_listener_ports(ctx);
  // Destinations by key: the order sockets came in does not matter.
  std::vector<const Dest*> order;
  order.reserve(m_dests.size());
  for (const auto& [k, d] : m_dests) {
    order.push_back(&d);
  }
  std::sort(order.begin(), order.end(), [](const Dest* a, const Dest* b) {
    return std::tie(a->key.netns, a->key.local_addr, a->key.remote_addr, a->key.remote_port)
           < std::tie(b->key.netns, b->key.local_addr, b->key.remote_addr, b->key.remote_port);
  });
  for (const Dest* d : order) {
    judge(ctx, *d, out);
  }
}

void Pass::judge(const Context& ctx, const Dest& d, Sink& out) {
  const Series& series = ctx.series();
  const Timeline& tl = ctx.timeline();
  const double warn_ratio = ctx.param("warn_ratio");
  const double min_seconds = ctx.param("min_seconds");
  if (d.entries < k_min_support) {
    return;
  }
  std::vector<Point> pts;
  d.by_snap.for_each([&](uint32_t snap, const Counts& c) {
    pts.push_back({snap, c.tw, c.est, c.syn, range_at(tl, d.key.netns, snap).capacity()});
  });
  const auto [warn_s, warn_n] = held(ctx, pts, warn_ratio);
  const auto [crit_s, crit_n] = held(ctx, pts, ctx.param("crit_ratio"));
  if (warn_n == 0 || warn_s < min_seconds) {
    return;
  }
  const Point* peak = &pts.front();
  for (const Point& pt : pts) {
    peak = pt.u() > peak->u() ? &pt : peak;
  }
  const Track& t = d.id;
  const bool reuse = tw_reuse_applies(ctx, t, peak->snap);
  const double live_u = static_cast<double>(peak->est + peak->syn) / static_cast<double>(peak->cap);
  Severity sev = crit_n > 0 && crit_s >= min_seconds ? Severity::critical : Severity::warning;
  const bool downgraded = reuse && live_u < warn_ratio;
  if (downgraded) {
    sev = Severity::info;
  }
  // Every process with a connection toward it (TIME-WAIT has none), the busiest first.
  const std::map<uint32_t, size_t>& owners = d.owners;
  std::vector<uint32_t> procs;
  procs.reserve(owners.size());
  for (const auto& [o, n] : owners) {
    procs.push_back(o);
  }
  std::stable_sort(procs.begin(), procs.end(), [&owners](uint32_t a, uint32_t b) {
    return owners.at(a) > owners.at(b);
  });
  const PortRange& r = range_at(tl, d.key.netns, peak->snap);
  const std::string local = host_text(ctx, t, t.local_addr) + ":*";
  const std::string dst = endpoint(series, t, false);
  const std::string dominant = peak->tw >= peak->est && peak->tw >= peak->syn ? "TIME-WAIT"
                               : peak->est >= peak->syn                       ? "ESTAB"
                                                                              : "SYN-SENT";
  FindingBuilder b(ctx, "port_exhaustion");
  b.subject(destination_subject(ctx, t, dominant, local, procs),
            procs.empty() ? k_na : procs.front());
  b.seen(pts.front().snap, pts.back().snap).severity(sev).weight(peak->u());
  const uint32_t used = peak->tw + peak->est + peak->syn;
  std::string s = "connections " + local;
  s += " -> " + dst + " use " + std::to_string(used) + " of " + std::to_string(peak->cap)
       + " ephemeral ports (" + num(100 * peak->u()) + "%: " + std::to_string(peak->tw)
       + " TIME-WAIT, " + std::to_string(peak->est) + " ESTAB, " + std::to_string(peak->syn)
       + " SYN-SENT), >= " + num(100 * warn_ratio) + "% for " + num(warn_s) + " s ("
       + std::to_string(warn_n) + " snapshots)";
  if (downgraded) {
    s += "; tcp_tw_reuse lets connect() reuse TIME-WAIT ports, so new connects still succeed";
  } else {
    s += "; connect() to it fails with EADDRNOTAVAIL when all are used (~"
         + num(static_cast<double>(peak->tw) / 60.0)
         + " closes/s hold TIME-WAIT 60 s): pool or keep connections alive, let the server "
           "close first, or widen ip_local_port_range";
  }
  s += "; " + processes_text(ctx, procs, "no owning process seen (TIME-WAIT only)");
  b.summary(std::move(s));
  b.fact("utilisation", peak->u());
  b.fact("used_ports", used);
  b.fact("capacity", peak->cap);
  b.fact("port_range", std::to_string(r.lo) + " " + std::to_string(r.hi));
  b.fact("reserved_ports_in_range", r.reserved);
  b.fact("seconds_warn", warn_s);
  b.fact("seconds_crit", crit_n == 0 ? Json(nullptr) : Json(crit_s));
  b.fact("snapshots_warn", warn_n);
  b.fact("snapshots_crit", crit_n);
  b.fact("close_rate_per_s", static_cast<double>(peak->tw) / 60.0);
  b.fact("tw_reuse_applies", reuse);
  Json sysctls;
  for (const char* name : {"net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_timestamps"}) {
    const auto v = ctx.limit(d.key.netns, name, peak->snap);
    sysctls[name] = v ? Json(*v) : Json(nullptr);
  }
  b.fact("sysctls", std::move(sysctls));
  Json own = Json::array();
  for (const uint32_t o : procs) {
    Json j = process_json(series, tl, o);
    j["connection_samples"] = owners.at(o);
    own.push_back(std::move(j));
  }
  b.fact("owners", std::move(own));
  Json rows = Json::array();
  for (const Point& pt : pts) {
    Json j;
    j["t"] = ctx.time(pt.snap);
    j["time_wait"] = pt.tw;
    j["established"] = pt.est;
    j["syn_sent"] = pt.syn;
    j["used"] = pt.tw + pt.est + pt.syn;
    j["capacity"] = pt.cap;
    j["utilisation"] = pt.u();
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "used", {"capacity"});
  b.group("destination",
          std::to_string(d.key.netns).append(" ").append(local).append(" ").append(dst),
          std::string(local).append(" -> ").append(dst),
          "ephemeral-port users toward");
  out.add(std::move(b).build());
}

} // namespace

Detector port_exhaustion_detector() {
  return {"port_exhaustion",
          "TIME-WAIT + connections use up the ephemeral port range toward one destination",
          {
              {"warn_ratio",
               0.5,
               "share of the ephemeral range used toward one destination: warning",
               Unit::ratio},
              {"crit_ratio", 0.8, "share of the ephemeral range used: critical", Unit::ratio},
              {"min_seconds",
               1,
               "the share held this long (consecutive snapshots) before it counts",
               Unit::seconds},
          },
          nullptr,
          make_pass<Pass>};
}

} // namespace sockrewind::analyze
