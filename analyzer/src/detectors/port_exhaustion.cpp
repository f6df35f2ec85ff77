// port_exhaustion (research/detectors.md D9): connections from one local address to one
// destination (remote ip:port) use up the ephemeral port range. Per snapshot,
//   U = (TIME-WAIT + ESTAB + SYN-SENT sockets local ip -> remote ip:port, local port in
//        ip_local_port_range) / (range size - ip_local_reserved_ports in it);
//   U >= warn_ratio in >= min_samples snapshots -> warning; U >= crit_ratio in >= min_samples
//   snapshots -> critical (connect() fails with EADDRNOTAVAIL when it reaches 1).
// Downgraded to info when tcp_tw_reuse lets connect() reuse TIME-WAIT ports (1, or 2 and a
// loopback destination, with tcp_timestamps on) and the non-TIME-WAIT share alone is below
// warn_ratio. Server-side sockets (local port = a listening port) use no ephemeral port and are
// not counted; neither is TIME-WAIT toward many different destinations (ports are per 4-tuple).
#include "listen_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <charconv>
#include <map>
#include <unordered_map>

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

struct Dest {
  DestKey key;
  uint32_t sample_track = 0; // a track toward it (for addresses)
  std::vector<uint32_t> tracks;
  std::vector<uint64_t> entries; // snap << 2 | kind (0 TIME-WAIT, 1 ESTAB, 2 SYN-SENT)
};

struct Point {
  uint32_t snap = 0;
  uint32_t tw = 0;
  uint32_t est = 0;
  uint32_t syn = 0;
  int64_t cap = 0;

  double u() const { return static_cast<double>(tw + est + syn) / static_cast<double>(cap); }
};

bool tw_reuse_applies(const Series& s, const Timeline& tl, const Track& t, uint32_t snap) {
  const int64_t reuse = listen_util::limit_first(tl, t.netns, "net.ipv4.tcp_tw_reuse", snap);
  const int64_t ts = listen_util::limit_first(tl, t.netns, "net.ipv4.tcp_timestamps", snap);
  const int64_t r = reuse < 0 ? 2 : reuse; // kernel default 2: loopback only
  const bool timestamps = ts != 0;         // default 1
  const bool loop = listen_util::is_loopback(s.strings.get(t.remote_addr));
  return timestamps && (r == 1 || (r == 2 && loop));
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const ListenerIndex li(series, tl);
  // Port range per (netns, snapshot), computed on demand.
  std::vector<std::vector<PortRange>> ranges(tl.netns.size());
  std::vector<std::vector<bool>> have(tl.netns.size());
  const auto range_at = [&](uint32_t ns, uint32_t snap) -> const PortRange& {
    if (ranges[ns].empty()) {
      ranges[ns].resize(tl.snaps.size());
      have[ns].assign(tl.snaps.size(), false);
    }
    if (!have[ns][snap]) {
      ranges[ns][snap] = port_range(tl, ns, snap);
      have[ns][snap] = true;
    }
    return ranges[ns][snap];
  };

  std::unordered_map<DestKey, uint32_t, DestKeyHash> index;
  std::vector<Dest> dests;
  for (uint32_t ti = 0; ti < tl.tracks.size(); ++ti) {
    const Track& t = tl.tracks[ti];
    if (t.family == k_af_unix || t.proto != k_proto_tcp || t.remote_port == 0
        || t.remote_addr == k_na || li.is_listener_port(t)) {
      continue;
    }
    uint32_t d = k_na;
    for (const Sample& x : t.samples) {
      uint64_t kind = 0;
      if (x.state == k_time_wait) {
        kind = 0;
      } else if (x.state == k_established) {
        kind = 1;
      } else if (x.state == k_syn_sent) {
        kind = 2;
      } else {
        continue;
      }
      const PortRange& r = range_at(t.netns, x.snap);
      if (t.local_port < r.lo || t.local_port > r.hi) {
        continue;
      }
      if (d == k_na) {
        const DestKey k{t.netns, t.local_addr, t.remote_addr, t.remote_port};
        const auto [it, fresh] = index.try_emplace(k, static_cast<uint32_t>(dests.size()));
        if (fresh) {
          dests.push_back({k, ti, {}, {}});
        }
        d = it->second;
        dests[d].tracks.push_back(ti);
      }
      dests[d].entries.push_back(static_cast<uint64_t>(x.snap) << 2U | kind);
    }
  }

  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  for (Dest& d : dests) {
    if (d.entries.size() < min_n) {
      continue;
    }
    std::sort(d.entries.begin(), d.entries.end());
    std::vector<Point> pts;
    for (const uint64_t e : d.entries) {
      const auto snap = static_cast<uint32_t>(e >> 2U);
      if (pts.empty() || pts.back().snap != snap) {
        pts.push_back({snap, 0, 0, 0, range_at(d.key.netns, snap).capacity()});
      }
      Point& pt = pts.back();
      ((e & 3U) == 0 ? pt.tw : ((e & 3U) == 1 ? pt.est : pt.syn))++;
    }
    size_t warn_n = 0;
    size_t crit_n = 0;
    const Point* peak = &pts.front();
    for (const Point& pt : pts) {
      warn_n += pt.u() >= p.get("warn_ratio") ? 1U : 0U;
      crit_n += pt.u() >= p.get("crit_ratio") ? 1U : 0U;
      if (pt.u() > peak->u()) {
        peak = &pt;
      }
    }
    if (warn_n < min_n) {
      continue;
    }
    const Track& t = tl.tracks[d.sample_track];
    const bool reuse = tw_reuse_applies(series, tl, t, peak->snap);
    const double live_u =
        static_cast<double>(peak->est + peak->syn) / static_cast<double>(peak->cap);
    Severity sev = crit_n >= min_n ? Severity::critical : Severity::warning;
    const bool downgraded = reuse && live_u < p.get("warn_ratio");
    if (downgraded) {
      sev = Severity::info;
    }
    // Owners of the connections (TIME-WAIT has none).
    std::map<uint32_t, size_t> owners;
    for (const uint32_t ti : d.tracks) {
      for (const Sample& x : tl.tracks[ti].samples) {
        if (x.owner != k_na && (x.state == k_established || x.state == k_syn_sent)) {
          owners[x.owner]++;
        }
      }
    }
    uint32_t top = k_na;
    size_t top_n = 0;
    for (const auto& [o, c] : owners) {
      if (c > top_n) {
        top = o;
        top_n = c;
      }
    }
    const PortRange& r = range_at(d.key.netns, peak->snap);
    const std::string local = listen_util::host_part(series, t, t.local_addr) + ":*";
    const std::string dominant = peak->tw >= peak->est && peak->tw >= peak->syn ? "TIME-WAIT"
                                 : peak->est >= peak->syn                       ? "ESTAB"
                                                                                : "SYN-SENT";
    Finding f;
    f.detector = "port_exhaustion";
    f.severity = sev;
    f.subject = listen_util::dest_subject(series, tl, t, dominant, local, top);
    set_owner(f, tl, top);
    f.first_seen_ns = tl.snaps[pts.front().snap].realtime_ns;
    f.last_seen_ns = tl.snaps[pts.back().snap].realtime_ns;
    f.weight = peak->u();
    const uint32_t used = peak->tw + peak->est + peak->syn;
    std::string s = "connections " + local + " -> " + endpoint(series, t, false) + " use "
                    + std::to_string(used) + " of " + std::to_string(peak->cap)
                    + " ephemeral ports (" + num(100 * peak->u()) + "%: " + std::to_string(peak->tw)
                    + " TIME-WAIT, " + std::to_string(peak->est) + " ESTAB, "
                    + std::to_string(peak->syn) + " SYN-SENT), >= " + num(100 * p.get("warn_ratio"))
                    + "% in " + std::to_string(warn_n) + " snapshots";
    if (downgraded) {
      s += "; tcp_tw_reuse lets connect() reuse TIME-WAIT ports, so new connects still succeed";
    } else {
      s += "; connect() to it fails with EADDRNOTAVAIL when all are used (~"
           + num(static_cast<double>(peak->tw) / 60.0)
           + " closes/s hold TIME-WAIT 60 s): pool or keep connections alive, let the server "
             "close first, or widen ip_local_port_range";
    }
    s += "; " + listen_util::owner_text(series, tl, top, "no owning process seen (TIME-WAIT only)");
    f.summary = std::move(s);
    f.evidence["utilisation"] = peak->u();
    f.evidence["used_ports"] = used;
    f.evidence["capacity"] = peak->cap;
    f.evidence["port_range"] = std::to_string(r.lo) + " " + std::to_string(r.hi);
    f.evidence["reserved_ports_in_range"] = r.reserved;
    f.evidence["snapshots_warn"] = warn_n;
    f.evidence["snapshots_crit"] = crit_n;
    f.evidence["close_rate_per_s"] = static_cast<double>(peak->tw) / 60.0;
    f.evidence["tw_reuse_applies"] = reuse;
    for (const char* name : {"net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_timestamps"}) {
      const int64_t v = listen_util::limit_first(tl, d.key.netns, name, peak->snap);
      f.evidence["sysctls"][name] = v < 0 ? Json(nullptr) : Json(v);
    }
    Json own = Json::array();
    for (const auto& [o, c] : owners) {
      Json j = process_json(series, tl, o);
      j["connection_samples"] = c;
      own.push_back(std::move(j));
    }
    f.evidence["owners"] = std::move(own);
    Json ser = Json::array();
    for (const Point& pt : pts) {
      Json j;
      j["t"] = snap_time(tl, pt.snap);
      j["time_wait"] = pt.tw;
      j["established"] = pt.est;
      j["syn_sent"] = pt.syn;
      j["used"] = pt.tw + pt.est + pt.syn;
      j["capacity"] = pt.cap;
      j["utilisation"] = pt.u();
      ser.push_back(std::move(j));
    }
    f.evidence["series"] = std::move(ser);
    out.push_back(std::move(f));
  }
}

} // namespace

Detector port_exhaustion_detector() {
  return {
      "port_exhaustion",
      "TIME-WAIT + connections use up the ephemeral port range toward one destination",
      {
          {"warn_ratio", 0.5, "share of the ephemeral range used toward one destination: warning"},
          {"crit_ratio", 0.8, "share of the ephemeral range used: critical"},
          {"min_samples", 2, "snapshots at or above the ratio needed"},
      },
      &run};
}

} // namespace sockrewind::analyze
