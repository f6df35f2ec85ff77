// udp_drops (research/detectors.md D15): datagrams lost because a UDP receiver is too slow or its
// receive buffer too small. For UDP the socket's drop count (skmem d) is real loss: each one is a
// datagram the application never gets.
//   dropping:    the socket's drop count grows between two consecutive snapshots of one socket
//                (a decrease is a new incarnation: that interval is skipped) -> warning.
//                Critical when the loss is meaningful: >= critical_rate_per_s drops per second
//                over the dropping window, or a drop share Δdrops / (Δdrops + ΔInDatagrams of the
//                netns) above critical_drop_ratio (with >= ratio_min_drops drops), or drops in
//                >= critical_interval_ratio of the intervals over >= critical_seconds.
//   buffer full: rx_queue (truesize) >= full_ratio x rcvbuf in >= persist_ratio of the snapshots
//                for >= full_seconds -> warning even when no drop was counted yet.
//   not buffer:  sk_drops also counts checksum and socket-filter drops: a socket whose drops grew
//                while the netns's Udp/Udp6 RcvbufErrors did not move and whose buffer never sat
//                full is info only.
// One finding per process (many sockets of one process = one finding with their count).
// Netns level: Udp/Udp6 RcvbufErrors above host_rate_per_s that no dropping socket accounts for
// (sockets closed meanwhile), and SndbufErrors above it, are a warning per netns.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <unordered_set>

namespace sockrewind::analyze {

namespace {

constexpr std::array<std::string_view, 2> k_rcvbuf_errors{"Udp.RcvbufErrors", "Udp6RcvbufErrors"};
constexpr std::array<std::string_view, 2> k_sndbuf_errors{"Udp.SndbufErrors", "Udp6SndbufErrors"};
constexpr std::array<std::string_view, 2> k_in_datagrams{"Udp.InDatagrams", "Udp6InDatagrams"};

bool is_udp(const Track& t) {
  return t.family != k_af_unix && (t.proto == k_proto_udp || t.proto == k_proto_udplite);
}

Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

// What one socket did over the timeline.
struct SockDrops {
  std::vector<int64_t> delta; // per sample: drops since the previous sample, -1 = none
  size_t intervals = 0;
  size_t drop_intervals = 0;
  int64_t total = 0;
  int64_t in_datagrams = 0;     // ΔInDatagrams of the netns over the intervals where it is known
  int64_t ratio_drops = 0;      // drops over those same intervals
  int64_t host_errors = 0;      // netns RcvbufErrors over the drop intervals; -1 unknown
  size_t full = 0;              // snapshots with the buffer full
  size_t with_rcvbuf = 0;       // snapshots with rcvbuf known
  size_t first_drop = SIZE_MAX; // sample index range of the drop window
  size_t last_drop = 0;
  size_t first_full = SIZE_MAX;
  size_t last_full = 0;
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

SockDrops measure(const Context& ctx, const Track& t) {
  SockDrops d;
  const auto& s = t.samples;
  const CounterSeries& errors = ctx.counter_sum(t.netns, k_rcvbuf_errors);
  const CounterSeries& in = ctx.counter_sum(t.netns, k_in_datagrams);
  d.delta.assign(s.size(), -1);
  for (size_t i = 0; i < s.size(); ++i) {
    d.with_rcvbuf += s[i].rcvbuf != k_na && s[i].rcvbuf > 0 ? 1U : 0U;
    if (buffer_full(s[i], ctx.param("full_ratio"))) {
      ++d.full;
      d.first_full = std::min(d.first_full, i);
      d.last_full = i;
    }
  }
  for (const Range& r : contiguous_runs(ctx.timeline(), t)) {
    for (size_t i = r.begin + 1; i < r.end; ++i) {
      const Sample& a = s[i - 1];
      const Sample& b = s[i];
      if (a.drops == k_na || b.drops == k_na || b.drops < a.drops) {
        continue; // not reported, or a new incarnation of the socket
      }
      const int64_t delta = static_cast<int64_t>(b.drops) - static_cast<int64_t>(a.drops);
      d.delta[i] = delta;
      ++d.intervals;
      if (delta > 0) {
        ++d.drop_intervals;
        d.total += delta;
        d.first_drop = std::min(d.first_drop, i - 1);
        d.last_drop = i;
        const auto h = errors.from(b.snap) == a.snap ? errors.delta(b.snap) : std::nullopt;
        d.host_errors = d.host_errors < 0 || !h ? -1 : d.host_errors + *h;
      }
      const auto n = in.from(b.snap) == a.snap ? in.delta(b.snap) : std::nullopt;
      if (n) {
        d.in_datagrams += *n;
        d.ratio_drops += delta;
      }
    }
  }
  return d;
}

Json point(const Context& ctx, const Track& t, const Sample& x, int64_t delta) {
  Json j;
  j["t"] = ctx.time(x.snap);
  j["rx_queue"] = opt(x.rx_queue);
  j["rcvbuf"] = opt(x.rcvbuf);
  j["drops"] = opt(x.drops);
  j["drops_delta"] = delta < 0 ? Json(nullptr) : Json(delta);
  j["rcvbuf_errors_delta"] = ctx.counter_sum(t.netns, k_rcvbuf_errors).delta_json(x.snap);
  return j;
}

// Adds the finding of one socket; true when its drops count as buffer drops (the netns's
// RcvbufErrors are then accounted for).
bool socket_finding(const Context& ctx, const Track& t, Sink& out) {
  const SockDrops d = measure(ctx, t);
  const auto& s = t.samples;
  const bool full =
      d.full >= k_min_support
      && static_cast<double>(d.full)
             >= ctx.param("persist_ratio") * static_cast<double>(d.with_rcvbuf)
      && ctx.lasted(s[d.first_full].snap, s[d.last_full].snap, d.full, ctx.param("full_seconds"));
  if (d.total <= 0 && !full) {
    return false;
  }
  const bool dropping = d.total > 0;
  const size_t lo_i = dropping ? d.first_drop : d.first_full;
  const size_t hi_i = dropping ? d.last_drop : d.last_full;
  const Sample& first = s[lo_i];
  const Sample& last = s[hi_i];
  const Sample& latest = s.back();
  const double window = ctx.seconds(first.snap, last.snap);
  const double rate = window > 0 ? static_cast<double>(d.total) / window : 0;
  const auto denom = static_cast<double>(d.ratio_drops + d.in_datagrams);
  const double share = denom > 0 ? static_cast<double>(d.ratio_drops) / denom : -1;
  const bool fast = rate >= ctx.param("critical_rate_per_s");
  const bool lossy = share > ctx.param("critical_drop_ratio")
                     && static_cast<double>(d.ratio_drops) >= ctx.param("ratio_min_drops");
  const bool long_lasting =
      static_cast<double>(d.drop_intervals)
          >= ctx.param("critical_interval_ratio") * static_cast<double>(d.intervals)
      && window >= ctx.param("critical_seconds");
  // Checksum or socket-filter drops: the netns's RcvbufErrors did not move, the buffer was free.
  const bool not_buffer = dropping && d.full == 0 && d.host_errors == 0;
  Severity sev = Severity::warning;
  if (not_buffer) {
    sev = Severity::info;
  } else if (dropping && (fast || lossy || long_lasting)) {
    sev = Severity::critical;
  }

  const std::string sock = proto_name(t) + " " + endpoint(ctx.series(), t, true);
  const std::string who = ctx.owners_text(latest);
  const std::string buf = human_bytes(std::max(last.rx_queue == k_na ? 0 : last.rx_queue,
                                               last.rmem_alloc == k_na ? 0 : last.rmem_alloc))
                          + " of "
                          + (last.rcvbuf == k_na ? std::string("?") : human_bytes(last.rcvbuf));
  std::string sum;
  if (not_buffer) {
    sum = sock + " dropped " + std::to_string(d.total) + " datagrams (" + num(rate)
          + "/s) while the netns's Udp RcvbufErrors did not move: checksum or socket-filter "
            "drops, not a full buffer; "
          + who;
  } else if (dropping) {
    sum = sock + " lost " + std::to_string(d.total) + " datagrams in " + num(window) + " s ("
          + num(rate) + "/s, receive buffer " + buf + ", drops in "
          + std::to_string(d.drop_intervals) + " of " + std::to_string(d.intervals) + " intervals"
          + (share >= 0 ? ", " + num(100.0 * share) + "% of datagrams" : "") + "); " + who
          + " does not read fast enough (or raise SO_RCVBUF)";
  } else {
    sum = sock + " receive buffer full (" + buf + ") in " + std::to_string(d.full) + " of "
          + std::to_string(d.with_rcvbuf) + " snapshots over " + num(window)
          + " s, no drop counted yet; " + who + " is not reading";
  }
  FindingBuilder b(ctx, "udp_drops");
  b.socket(t, latest).seen(first.snap, last.snap).severity(sev).summary(std::move(sum));
  b.weight(dropping ? rate : 0);
  b.fact("drops_total", d.total);
  b.fact("drop_intervals", d.drop_intervals);
  b.fact("intervals", d.intervals);
  b.fact("drops_per_s", rate);
  b.fact("drop_window_s", window);
  b.fact("drop_ratio", share < 0 ? Json(nullptr) : Json(share));
  b.fact("in_datagrams", d.in_datagrams);
  b.fact("cause", not_buffer ? "not_rcvbuf" : (dropping ? "rcvbuf" : "buffer_full"));
  b.fact("snapshots_full", d.full);
  b.fact("rcvbuf_errors",
         ctx.counter_sum(t.netns, k_rcvbuf_errors).total(s[lo_i].snap + 1, s[hi_i].snap));
  if (const auto m = ctx.limit(t.netns, "net.core.rmem_max", latest.snap)) {
    b.fact("rmem_max", *m);
  }
  Json rows = Json::array();
  for (size_t i = lo_i > 0 ? lo_i - 1 : 0; i < std::min(hi_i + 2, s.size()); ++i) {
    rows.push_back(point(ctx, t, s[i], d.delta[i]));
  }
  if (dropping) {
    b.series(std::move(rows), "drops_delta");
  } else {
    b.series(std::move(rows), "rx_queue", {"rcvbuf"});
  }
  b.group_by_owner(t, latest, "UDP sockets dropping datagrams or with a full buffer");
  out.add(std::move(b).build());
  return dropping && !not_buffer;
}

// Netns-level UDP buffer errors faster than host_rate_per_s, unless (receive side) sockets with
// their own findings account for them.
void netns_finding(const Context& ctx, uint32_t ns, bool receive, Sink& out) {
  const CounterSeries& c = ctx.counter_sum(ns, receive ? k_rcvbuf_errors : k_sndbuf_errors);
  if (!c.any()) {
    return;
  }
  const double limit = ctx.param("host_rate_per_s");
  size_t hot = 0;
  size_t valid = 0;
  double peak = 0;
  int64_t total = 0;
  double dt_total = 0;
  uint32_t first = k_na;
  uint32_t last = 0;
  for (uint32_t i = 0; i < ctx.snapshots(); ++i) {
    if (!c.delta(i) || c.dt(i) <= 0) {
      continue;
    }
    ++valid;
    if (c.rate(i) > limit) {
      ++hot;
      total += *c.delta(i);
      dt_total += c.dt(i);
      peak = std::max(peak, c.rate(i));
      first = std::min(first, c.from(i));
      last = std::max(last, i);
    }
  }
  if (hot == 0) {
    return;
  }
  const std::string what = receive ? "RcvbufErrors" : "SndbufErrors";
  FindingBuilder b(ctx, "udp_drops");
  b.netns(ns).seen(first, last).severity(Severity::warning).weight(peak);
  Json subject = b.subject_json();
  subject["counter"] = "Udp." + what;
  b.subject(std::move(subject), k_na);
  const double rate = dt_total > 0 ? static_cast<double>(total) / dt_total : 0;
  b.summary("UDP " + what + " at " + num(rate) + "/s (peak " + num(peak) + "/s) in "
            + std::to_string(hot) + " of " + std::to_string(valid) + " intervals in netns "
            + std::to_string(ctx.timeline().netns[ns].inode) + "; "
            + (receive ? "no socket's own drop count grew (sockets closed meanwhile, or not "
                         "captured)"
                       : "senders hit their send buffer (ENOBUFS/EAGAIN)"));
  b.fact("errors_total", total);
  b.fact("intervals_over_limit", hot);
  b.fact("intervals", valid);
  b.fact("peak_per_s", peak);
  b.fact("limit_per_s", limit);
  const CounterSeries& in = ctx.counter_sum(ns, k_in_datagrams);
  Json rows = Json::array();
  for (uint32_t i = first; i <= last && i < ctx.snapshots(); ++i) {
    Json j;
    j["t"] = ctx.time(i);
    j["delta"] = c.delta_json(i);
    j["per_s"] = c.delta(i) && c.dt(i) > 0 ? Json(c.rate(i)) : Json(nullptr);
    j["in_datagrams_delta"] = in.delta_json(i);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "per_s");
  b.group("netns",
          std::to_string(ns) + " " + what,
          "in netns " + std::to_string(ctx.timeline().netns[ns].inode),
          "netns UDP buffer error counters");
  out.add(std::move(b).build());
}

// Sockets one at a time; then each netns's counters, the receive side only where no socket
// explained its drops.
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& out) override {
    if (is_udp(t) && !t.samples.empty() && socket_finding(ctx, t, out)) {
      m_explained.insert(t.netns);
    }
  }

  void finish(const Context& ctx, Sink& out) override {
    for (uint32_t n = 0; n < ctx.timeline().netns.size(); ++n) {
      if (!m_explained.contains(n)) {
        netns_finding(ctx, n, true, out);
      }
      netns_finding(ctx, n, false, out);
    }
  }

private:
  std::unordered_set<uint32_t> m_explained; // netns indices
};

} // namespace

Detector udp_drops_detector() {
  return {
      "udp_drops",
      "UDP datagrams lost: a socket's drop count grows, its buffer sits full, or the namespace's "
      "Udp RcvbufErrors climb",
      {
          {"critical_rate_per_s",
           10,
           "drops per second over the dropping window at or above this are critical",
           Unit::per_second},
          {"critical_drop_ratio",
           0.01,
           "drops / (drops + Udp InDatagrams) above this is critical",
           Unit::ratio},
          {"ratio_min_drops", 10, "drops needed before the drop ratio can make it critical"},
          {"critical_interval_ratio",
           0.5,
           "drops in this fraction of the intervals for critical_seconds is critical",
           Unit::ratio},
          {"critical_seconds",
           300,
           "drops in most intervals this long are critical",
           Unit::seconds},
          {"full_ratio",
           0.9,
           "Recv-Q (truesize) / rcvbuf at or above which the buffer is full",
           Unit::ratio},
          {"persist_ratio", 0.5, "fraction of snapshots full for 'buffer full'", Unit::ratio},
          {"full_seconds",
           30,
           "the buffer full this long (with no drop counted) is a warning",
           Unit::seconds},
          {"host_rate_per_s",
           10,
           "Udp/Udp6 RcvbufErrors (or SndbufErrors) per second in an interval for a warning",
           Unit::per_second},
      },
      nullptr,
      make_pass<Pass>};
}

} // namespace sockrewind::analyze
