// udp_drops (research/detectors.md D15): datagrams lost because a UDP receiver is too slow or its
// receive buffer too small.
//   per socket:  the socket's drop count (skmem d / the drops column, cumulative per socket) grows
//                between two consecutive snapshots -> warning, naming the owner. A decrease is a
//                new incarnation: that interval is dropped, never counted negative.
//                Critical when drops appear in >= critical_interval_ratio of its intervals (with
//                >= min_intervals intervals), or when the drop ratio Δdrops / (Δdrops +
//                ΔInDatagrams of the namespace) exceeds critical_drop_ratio with at least
//                ratio_min_drops drops.
//   buffer full: rx_queue (truesize) >= full_ratio x rcvbuf in >= persist_ratio of >= min_samples
//                snapshots -> warning even when no drop interval was caught.
//   per netns:   Udp.RcvbufErrors + Udp6RcvbufErrors (or the SndbufErrors pair) faster than
//                host_rate_per_s in an interval -> warning, attributed to the sockets whose drops
//                grew in those intervals.
// sk_drops also counts checksum and socket-filter drops: the evidence shows the namespace's
// RcvbufErrors next to the socket's drops, and a socket whose drops grew while RcvbufErrors did
// not move at all and whose buffer never sat full is only reported as info (not the buffer).
#include "proc_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <array>

namespace sockrewind::analyze {

namespace {

using proc_util::cat;
using proc_util::opt;
using proc_util::SnapDeltas;

constexpr std::array<std::string_view, 2> k_rcvbuf_errors{"Udp.RcvbufErrors", "Udp6RcvbufErrors"};
constexpr std::array<std::string_view, 2> k_sndbuf_errors{"Udp.SndbufErrors", "Udp6SndbufErrors"};
constexpr std::array<std::string_view, 2> k_in_datagrams{"Udp.InDatagrams", "Udp6InDatagrams"};

bool is_udp(const Track& t) {
  return t.family != k_af_unix && (t.proto == k_proto_udp || t.proto == k_proto_udplite);
}

// Per-namespace counter deltas, computed once.
struct NsCounters {
  SnapDeltas rcvbuf_errors;
  SnapDeltas sndbuf_errors;
  SnapDeltas in_datagrams;
};

// What one socket did over the whole timeline.
struct SockDrops {
  std::vector<int64_t> delta; // per sample index: drops since the previous sample, -1 = invalid
  size_t intervals = 0;
  size_t drop_intervals = 0;
  int64_t total = 0;
  double dt_total = 0;
  int64_t in_datagrams = 0; // ΔInDatagrams over the intervals where it was known
  // Namespace RcvbufErrors over the socket's drop intervals: -1 when unknown in any of them.
  int64_t host_errors_in_drop_intervals = 0;
  int64_t ratio_drops = 0; // drops over those same intervals
  size_t full = 0;         // snapshots with the buffer full
  size_t with_rcvbuf = 0;  // snapshots with rcvbuf known
  size_t first = SIZE_MAX; // sample index range of the triggering window
  size_t last = 0;
};

bool buffer_full(const Sample& x, double ratio) {
  if (x.rcvbuf == k_na || x.rcvbuf == 0) {
    return false;
  }
  uint32_t used = x.rx_queue == k_na ? 0 : x.rx_queue;
  if (x.rmem_alloc != k_na) {
    used = std::max(used, x.rmem_alloc);
  }
  return static_cast<double>(used) >= ratio * static_cast<double>(x.rcvbuf);
}

SockDrops measure(const Timeline& tl, const Track& t, const NsCounters& ns, const Params& p) {
  SockDrops d;
  const auto& s = t.samples;
  d.delta.assign(s.size(), -1);
  const double full_ratio = p.get("full_ratio");
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].rcvbuf != k_na && s[i].rcvbuf > 0) {
      ++d.with_rcvbuf;
    }
    if (buffer_full(s[i], full_ratio)) {
      ++d.full;
      d.first = std::min(d.first, i);
      d.last = std::max(d.last, i);
    }
  }
  for (const Range& r : contiguous_runs(tl, t)) {
    for (size_t i = r.begin + 1; i < r.end; ++i) {
      const Sample& a = s[i - 1];
      const Sample& b = s[i];
      if (a.drops == k_na || b.drops == k_na || b.drops < a.drops) {
        continue; // not reported, or a new incarnation of the socket: interval dropped
      }
      const int64_t delta = static_cast<int64_t>(b.drops) - static_cast<int64_t>(a.drops);
      d.delta[i] = delta;
      ++d.intervals;
      d.dt_total += tl.dt(a.snap, b.snap);
      if (delta > 0) {
        ++d.drop_intervals;
        d.total += delta;
        d.first = std::min(d.first, i - 1);
        d.last = std::max(d.last, i);
      }
      if (delta > 0 && d.host_errors_in_drop_intervals >= 0) {
        const int64_t h = ns.rcvbuf_errors.delta[b.snap];
        d.host_errors_in_drop_intervals = h >= 0 && ns.rcvbuf_errors.from[b.snap] == a.snap
                                              ? d.host_errors_in_drop_intervals + h
                                              : -1;
      }
      const int64_t in = ns.in_datagrams.delta[b.snap];
      if (in >= 0 && ns.in_datagrams.from[b.snap] == a.snap) {
        d.in_datagrams += in;
        d.ratio_drops += delta;
      }
    }
  }
  return d;
}

Json point(const Timeline& tl, const Sample& x, int64_t delta, const NsCounters& ns) {
  Json j;
  j["t"] = snap_time(tl, x.snap);
  j["rx_queue"] = opt(x.rx_queue);
  j["rcvbuf"] = opt(x.rcvbuf);
  j["drops"] = opt(x.drops);
  j["drops_delta"] = delta < 0 ? Json(nullptr) : Json(delta);
  const int64_t host = ns.rcvbuf_errors.delta.empty() ? -1 : ns.rcvbuf_errors.delta[x.snap];
  j["rcvbuf_errors_delta"] = host < 0 ? Json(nullptr) : Json(host);
  return j;
}

void socket_findings(const Series& series,
                     const Timeline& tl,
                     const Params& p,
                     const std::vector<NsCounters>& ns,
                     std::vector<Finding>& out) {
  const auto min_samples = static_cast<size_t>(p.get("min_samples"));
  const auto min_intervals = static_cast<size_t>(p.get("min_intervals"));
  for (const Track& t : tl.tracks) {
    if (!is_udp(t) || t.samples.empty()) {
      continue;
    }
    const NsCounters& c = ns[t.netns];
    const SockDrops d = measure(tl, t, c, p);
    const bool full = d.with_rcvbuf >= min_samples
                      && static_cast<double>(d.full)
                             >= p.get("persist_ratio") * static_cast<double>(d.with_rcvbuf);
    if (d.total <= 0 && !full) {
      continue;
    }
    const auto n_int = static_cast<double>(d.intervals);
    const bool frequent =
        d.intervals >= min_intervals
        && static_cast<double>(d.drop_intervals) >= p.get("critical_interval_ratio") * n_int;
    const auto denom = static_cast<double>(d.ratio_drops + d.in_datagrams);
    const double ratio = denom > 0 ? static_cast<double>(d.ratio_drops) / denom : -1;
    const bool lossy = ratio > p.get("critical_drop_ratio")
                       && static_cast<double>(d.ratio_drops) >= p.get("ratio_min_drops");
    const Sample& first = t.samples[d.first];
    const Sample& last = t.samples[d.last];
    const Sample& latest = t.samples.back();

    Finding f;
    f.detector = "udp_drops";
    // sk_drops also counts checksum and socket-filter drops: when the namespace's RcvbufErrors
    // did not move at all while this socket dropped, and its buffer never sat full, the buffer
    // is not the cause (context only).
    const bool not_buffer =
        d.total > 0 && !full && d.full == 0 && d.host_errors_in_drop_intervals == 0;
    f.severity = d.total > 0 && (frequent || lossy) ? Severity::critical : Severity::warning;
    if (not_buffer) {
      f.severity = Severity::info;
    }
    f.subject = socket_subject(series, tl, t, latest);
    const uint32_t owner = latest.owner != k_na ? latest.owner : last.owner;
    set_owner(f, tl, owner);
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const std::string sock = cat(proto_name(t), " ", endpoint(series, t, true));
    const std::string owner_text = proc_util::who(series, tl, owner);
    const std::string buf =
        cat(human_bytes(std::max(last.rx_queue == k_na ? 0 : last.rx_queue,
                                 last.rmem_alloc == k_na ? 0 : last.rmem_alloc)),
            " of ",
            last.rcvbuf == k_na ? std::string("?") : human_bytes(last.rcvbuf));
    if (not_buffer) {
      f.summary = cat(sock,
                      " dropped ",
                      std::to_string(d.total),
                      " datagrams while the namespace's Udp RcvbufErrors did not move: checksum "
                      "or socket-filter drops, not a full buffer; ",
                      owner_text);
    } else if (d.total > 0) {
      const double rate = d.dt_total > 0 ? static_cast<double>(d.total) / d.dt_total : 0;
      const std::string share = ratio >= 0 ? cat(", ", num(100.0 * ratio), "% of datagrams") : "";
      f.summary = cat(sock,
                      " dropped ",
                      std::to_string(d.total),
                      " datagrams (receive buffer ",
                      buf,
                      ") in ",
                      std::to_string(d.drop_intervals),
                      " of ",
                      std::to_string(d.intervals),
                      " intervals, ",
                      proc_util::rate_text(rate),
                      share,
                      "; ",
                      owner_text,
                      " does not read fast enough (or raise SO_RCVBUF)");
    } else {
      f.summary = cat(sock,
                      " receive buffer full (",
                      buf,
                      ") in ",
                      std::to_string(d.full),
                      " of ",
                      std::to_string(d.with_rcvbuf),
                      " snapshots, drops imminent; ",
                      owner_text,
                      " is not reading");
    }
    f.evidence["drops_total"] = d.total;
    f.evidence["drop_intervals"] = d.drop_intervals;
    f.evidence["intervals"] = d.intervals;
    f.evidence["drops_per_s"] = d.dt_total > 0 ? static_cast<double>(d.total) / d.dt_total : 0.0;
    f.evidence["drop_ratio"] = ratio < 0 ? Json(nullptr) : Json(ratio);
    f.evidence["in_datagrams"] = d.in_datagrams;
    f.evidence["cause"] = not_buffer ? "not_rcvbuf" : (d.total > 0 ? "rcvbuf" : "buffer_full");
    f.evidence["snapshots_full"] = d.full;
    int64_t host = 0;
    for (size_t i = d.first + 1; i <= d.last && i < t.samples.size(); ++i) {
      const int64_t h =
          c.rcvbuf_errors.delta.empty() ? -1 : c.rcvbuf_errors.delta[t.samples[i].snap];
      host += std::max<int64_t>(h, 0);
    }
    f.evidence["rcvbuf_errors"] = host;
    const std::vector<int64_t> rmem_max =
        limit_numbers(tl, t.netns, "net.core.rmem_max", latest.snap);
    if (!rmem_max.empty()) {
      f.evidence["rmem_max"] = rmem_max.front();
    }
    if (owner != k_na) {
      f.evidence["owner"] = process_json(series, tl, owner);
    }
    Json ser = Json::array();
    const size_t lo = d.first > 0 ? d.first - 1 : 0;
    const size_t hi = std::min(d.last + 2, t.samples.size());
    for (size_t i = lo; i < hi; ++i) {
      ser.push_back(point(tl, t.samples[i], d.delta[i], c));
    }
    f.evidence["series"] = std::move(ser);
    f.weight = static_cast<double>(d.total);
    out.push_back(std::move(f));
  }
}

// Namespace-level UDP buffer errors faster than host_rate_per_s.
void netns_findings(const Series& series,
                    const Timeline& tl,
                    const Params& p,
                    const std::vector<NsCounters>& ns,
                    std::vector<Finding>& out) {
  const double limit = p.get("host_rate_per_s");
  for (uint32_t n = 0; n < ns.size(); ++n) {
    for (const bool receive : {true, false}) {
      const SnapDeltas& c = receive ? ns[n].rcvbuf_errors : ns[n].sndbuf_errors;
      if (!c.any) {
        continue;
      }
      size_t hot = 0;
      size_t valid = 0;
      double peak = 0;
      int64_t total = 0;
      double dt_total = 0;
      uint32_t first = k_na;
      uint32_t last = 0;
      std::vector<char> hot_at(tl.snaps.size(), 0);
      for (uint32_t i = 0; i < tl.snaps.size(); ++i) {
        if (c.delta[i] < 0 || c.dt[i] <= 0) {
          continue;
        }
        ++valid;
        const double rate = static_cast<double>(c.delta[i]) / c.dt[i];
        if (rate > limit) {
          ++hot;
          hot_at[i] = 1;
          total += c.delta[i];
          dt_total += c.dt[i];
          peak = std::max(peak, rate);
          first = std::min(first, c.from[i]);
          last = std::max(last, i);
        }
      }
      if (hot == 0) {
        continue;
      }

      // Attribution: sockets of this namespace whose drops grew in the hot intervals.
      struct Culprit {
        const Track* t;
        int64_t drops;
        uint32_t owner;
      };

      std::vector<Culprit> culprits;
      if (receive) {
        for (const Track& t : tl.tracks) {
          if (!is_udp(t) || t.netns != n) {
            continue;
          }
          int64_t sum = 0;
          uint32_t owner = k_na;
          for (size_t i = 1; i < t.samples.size(); ++i) {
            const Sample& a = t.samples[i - 1];
            const Sample& b = t.samples[i];
            if (hot_at[b.snap] == 0 || a.snap < c.from[b.snap] || a.drops == k_na || b.drops == k_na
                || b.drops < a.drops) {
              continue;
            }
            sum += static_cast<int64_t>(b.drops) - static_cast<int64_t>(a.drops);
            owner = b.owner != k_na ? b.owner : owner;
          }
          if (sum > 0) {
            culprits.push_back({&t, sum, owner});
          }
        }
        std::sort(culprits.begin(), culprits.end(), [](const Culprit& a, const Culprit& b) {
          return a.drops > b.drops;
        });
      }
      Finding f;
      f.detector = "udp_drops";
      f.severity = Severity::warning;
      f.subject = netns_subject(tl, n);
      const std::string what = receive ? "RcvbufErrors" : "SndbufErrors";
      f.subject["counter"] = cat("Udp.", what);
      f.first_seen_ns = tl.snaps[first].realtime_ns;
      f.last_seen_ns = tl.snaps[last].realtime_ns;
      std::string tail;
      if (!receive) {
        tail = "senders hit their send buffer (ENOBUFS/EAGAIN)";
      } else if (culprits.empty()) {
        tail = "no socket's own drop count grew (closed sockets, or counted elsewhere)";
      } else {
        tail = cat("top: ",
                   proto_name(*culprits[0].t),
                   " ",
                   endpoint(series, *culprits[0].t, true),
                   " ",
                   std::to_string(culprits[0].drops),
                   " drops, ",
                   proc_util::who(series, tl, culprits[0].owner));
        set_owner(f, tl, culprits[0].owner);
      }
      f.summary = cat("UDP ",
                      what,
                      " at ",
                      num(dt_total > 0 ? static_cast<double>(total) / dt_total : 0),
                      "/s (peak ",
                      num(peak),
                      "/s) in ",
                      std::to_string(hot),
                      " of ",
                      std::to_string(valid),
                      " intervals in netns ",
                      std::to_string(tl.netns[n].inode),
                      "; ",
                      tail);
      f.evidence["errors_total"] = total;
      f.evidence["intervals_over_limit"] = hot;
      f.evidence["intervals"] = valid;
      f.evidence["peak_per_s"] = peak;
      f.evidence["limit_per_s"] = limit;
      Json top = Json::array();
      for (size_t k = 0; k < culprits.size() && k < 10; ++k) {
        Json j;
        j["proto"] = proto_name(*culprits[k].t);
        j["local"] = endpoint(series, *culprits[k].t, true);
        j["drops"] = culprits[k].drops;
        j["owner"] = process_json(series, tl, culprits[k].owner);
        top.push_back(std::move(j));
      }
      f.evidence["top_sockets"] = std::move(top);
      Json ser = Json::array();
      const SnapDeltas& in = ns[n].in_datagrams;
      for (uint32_t i = first; i <= last && i < tl.snaps.size(); ++i) {
        Json j;
        j["t"] = snap_time(tl, i);
        j["delta"] = c.delta[i] < 0 ? Json(nullptr) : Json(c.delta[i]);
        j["per_s"] = c.delta[i] < 0 || c.dt[i] <= 0
                         ? Json(nullptr)
                         : Json(static_cast<double>(c.delta[i]) / c.dt[i]);
        j["in_datagrams_delta"] = in.delta[i] < 0 ? Json(nullptr) : Json(in.delta[i]);
        ser.push_back(std::move(j));
      }
      f.evidence["series"] = std::move(ser);
      f.weight = peak;
      out.push_back(std::move(f));
    }
  }
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  std::vector<NsCounters> ns(tl.netns.size());
  const auto names = [](const auto& a) {
    return std::vector<std::string_view>(a.begin(), a.end());
  };
  for (uint32_t n = 0; n < tl.netns.size(); ++n) {
    ns[n].rcvbuf_errors = proc_util::snap_deltas(series, tl, n, names(k_rcvbuf_errors));
    ns[n].sndbuf_errors = proc_util::snap_deltas(series, tl, n, names(k_sndbuf_errors));
    ns[n].in_datagrams = proc_util::snap_deltas(series, tl, n, names(k_in_datagrams));
  }
  socket_findings(series, tl, p, ns, out);
  netns_findings(series, tl, p, ns, out);
}

} // namespace

Detector udp_drops_detector() {
  return {
      "udp_drops",
      "UDP receive-buffer drops: a socket's drop count grows, its buffer sits full, or the "
      "namespace's Udp RcvbufErrors climb",
      {
          {"min_intervals", 5, "intervals of a socket needed before the drop frequency counts"},
          {"critical_interval_ratio",
           0.5,
           "drops in at least this fraction of a socket's intervals is critical"},
          {"critical_drop_ratio", 0.01, "drops / (drops + Udp InDatagrams) above this is critical"},
          {"ratio_min_drops", 10, "drops needed before the drop ratio can make it critical"},
          {"full_ratio", 0.9, "Recv-Q (truesize) / rcvbuf at or above which the buffer is full"},
          {"persist_ratio", 0.5, "fraction of snapshots full for 'buffer full' (warning)"},
          {"min_samples", 3, "snapshots with rcvbuf known needed for 'buffer full'"},
          {"host_rate_per_s",
           10,
           "Udp/Udp6 RcvbufErrors (or SndbufErrors) per second in an interval for a warning"},
      },
      &run};
}

} // namespace sockrewind::analyze
