// accept_queue_backlog (research/detectors.md D3): a TCP listener whose accept queue does not
// drain. Over gap-free runs of the listener's snapshots:
//   full:        queue >= max backlog (the kernel drops the next SYN or final ACK) for
//                >= full_seconds (2 s): critical when the netns counted ListenOverflows
//                (ListenDrops without it) in an interval with this listener full at either end
//                (connections lost), or when it stayed full >= critical_seconds (60 s); warning
//                otherwise (full, but nobody lost yet);
//   backlogged:  queue >= max(min_queue, 10% of max) for >= backlog_seconds (5 s) and not
//                draining: a queued child (inode 0, the same connection) was queued that long
//                (snapshots apart or by its last ACK), or, without child rows, the queue never
//                fell -> warning.
// A busy listener whose small queue holds new connections in every snapshot drains: quiet.
// Evidence: queue vs max backlog per snapshot, the children queued, ListenOverflows deltas, the
// owner's fds vs RLIMIT_NOFILE (accept() fails with EMFILE at the limit). One finding per
// listening address (SO_REUSEPORT sockets are one cause), naming every process holding it.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <array>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

constexpr std::array<uint8_t, 2> k_child_states{k_established, k_close_wait};

bool listening(const Sample& x) {
  return x.state == k_listen && x.rx_queue != k_na;
}

bool is_full(const Sample& x) {
  return listening(x) && x.tx_queue != k_na && x.rx_queue > 0 && x.rx_queue >= x.tx_queue;
}

bool is_backlogged(const Context& ctx, const Sample& x) {
  const double max = x.tx_queue == k_na ? 0 : x.tx_queue;
  return listening(x)
         && static_cast<double>(x.rx_queue) >= std::max(ctx.param("min_queue"), 0.1 * max);
}

// A child queued at the listener: its first and last queued snapshot, how often, its last ACK.
struct Queued {
  uint32_t first = 0;
  uint32_t last = 0;
  size_t samples = 0;
  uint32_t ack_ms = 0;
};

void judge(const Context& ctx,
           uint32_t ti,
           const std::vector<Child>* kids,
           const CounterSeries& overflows,
           Sink& out) {
  const Track& t = ctx.track(ti);
  const auto& s = t.samples;
  const auto span_ok = [&](Range r, double secs) {
    return ctx.lasted(s[r.begin].snap, s[r.end - 1].snap, r.size(), secs);
  };
  // full streaks that lasted
  std::vector<Range> full;
  double full_s = 0;
  for (const Range& r : ctx.streaks(t, is_full)) {
    if (span_ok(r, ctx.param("full_seconds"))) {
      full.push_back(r);
      full_s = std::max(full_s, ctx.seconds(s[r.begin].snap, s[r.end - 1].snap));
    }
  }
  // children queued here, by connection
  std::unordered_map<uint32_t, Queued> queued;
  std::unordered_map<uint32_t, uint32_t> per_snap; // snap -> children
  if (kids != nullptr) {
    for (const Child& c : *kids) {
      const Sample* x = sample_at(ctx.track(c.track), c.snap);
      if (x == nullptr) {
        continue;
      }
      per_snap[c.snap]++;
      auto [it, fresh] = queued.try_emplace(c.track);
      if (fresh) {
        it->second.first = c.snap;
      }
      it->second.last = c.snap;
      ++it->second.samples;
      if (x->last_ack_recv_ms != k_na) {
        it->second.ack_ms = std::max(it->second.ack_ms, x->last_ack_recv_ms);
      }
    }
  }
  // backlogged streaks that lasted and did not drain
  const double backlog_bar = ctx.param("backlog_seconds");
  std::vector<Range> stuck;
  double oldest_child = 0;
  for (const Range& r : ctx.streaks(t, [&](const Sample& x) { return is_backlogged(ctx, x); })) {
    if (!span_ok(r, backlog_bar)) {
      continue;
    }
    const uint32_t a = s[r.begin].snap;
    const uint32_t b = s[r.end - 1].snap;
    bool any_child = false;
    double age = 0;
    for (const auto& [track, q] : queued) {
      if (q.last < a || q.first > b) {
        continue;
      }
      any_child = true;
      const uint32_t lo = std::max(q.first, a);
      const uint32_t hi = std::min(q.last, b);
      const double seen = q.samples >= k_min_support ? ctx.seconds(lo, hi) : 0;
      age = std::max({age, seen, static_cast<double>(q.ack_ms) / 1000.0});
    }
    bool never_fell = true;
    for (size_t i = r.begin + 1; i < r.end; ++i) {
      never_fell = never_fell && s[i].rx_queue >= s[i - 1].rx_queue;
    }
    if (any_child ? age >= backlog_bar : never_fell) {
      stuck.push_back(r);
      oldest_child = std::max(oldest_child, age);
    }
  }
  if (full.empty() && stuck.empty()) {
    return;
  }
  const std::vector<Range>& shown = full.empty() ? stuck : full;
  const size_t lo = shown.front().begin > 0 ? shown.front().begin - 1 : 0;
  const size_t hi = std::min(shown.back().end + 1, s.size());
  const uint32_t first = s[shown.front().begin].snap;
  const uint32_t last_snap = s[shown.back().end - 1].snap;
  const Sample& last = s[shown.back().end - 1];

  // Overflows counted while this listener was full at either end of the interval.
  int64_t lost = 0;
  std::unordered_map<uint32_t, bool> full_at;
  for (const Sample& x : s) {
    full_at[x.snap] = is_full(x);
  }
  const auto was_full = [&](uint32_t snap) {
    const auto it = full_at.find(snap);
    return it != full_at.end() && it->second;
  };
  for (const Sample& x : s) {
    const auto d = overflows.delta(x.snap);
    if (d && (was_full(x.snap) || was_full(overflows.from(x.snap)))) {
      lost += *d;
    }
  }
  size_t n_full = 0;
  size_t n_backlogged = 0;
  uint32_t max_q = 0;
  for (const Sample& x : s) {
    n_full += is_full(x) ? 1U : 0U;
    n_backlogged += is_backlogged(ctx, x) ? 1U : 0U;
    max_q = listening(x) ? std::max(max_q, x.rx_queue) : max_q;
  }

  FindingBuilder b(ctx, "accept_queue_backlog");
  b.socket(t, last).seen(first, last_snap).weight(static_cast<double>(max_q));
  Severity sev = Severity::warning;
  const std::string where = endpoint(ctx.series(), t, true);
  const std::string max_text = last.tx_queue == k_na ? "?" : std::to_string(last.tx_queue);
  std::string sum;
  if (!full.empty()) {
    if (lost > 0 || full_s >= ctx.param("critical_seconds")) {
      sev = Severity::critical;
    }
    sum = "listener " + where + " accept queue at its limit (up to " + std::to_string(max_q) + "/"
          + max_text + ") for " + num(full_s) + " s; "
          + (lost > 0 ? "the netns counted " + std::to_string(lost)
                            + " ListenOverflows meanwhile (SYNs or handshakes dropped)"
                      : std::string("no overflow counted yet"));
  } else {
    double stuck_s = 0;
    for (const Range& r : stuck) {
      stuck_s = std::max(stuck_s, ctx.seconds(s[r.begin].snap, s[r.end - 1].snap));
    }
    sum = "listener " + where + " accept queue does not drain: " + std::to_string(max_q) + "/"
          + max_text + " queued for " + num(stuck_s) + " s"
          + (oldest_child > 0 ? ", the oldest connection waiting " + num(oldest_child) + " s"
                              : std::string(", never falling"));
  }
  sum += "; not accepted by " + ctx.owners_text(last);
  const uint32_t who = ctx.culprit(last);
  if (who != k_na) {
    const ProcSample* ps = Timeline::proc_at(ctx.processes()[who], last.snap);
    if (ps != nullptr && ps->fd_count != k_na) {
      b.fact("owner_fds", ps->fd_count);
      b.fact("owner_nofile_soft", ps->nofile_soft == k_na ? Json(nullptr) : Json(ps->nofile_soft));
      if (ps->nofile_soft != k_na && ps->fd_count + 1 >= ps->nofile_soft) {
        sum += ", at its fd limit (" + std::to_string(ps->fd_count) + "/"
               + std::to_string(ps->nofile_soft) + "): accept() fails with EMFILE";
      }
    }
  }
  b.severity(sev).summary(std::move(sum));
  b.fact("shape", full.empty() ? "backlogged" : "full");
  b.fact("seconds_full", full_s);
  b.fact("listen_overflows", lost);
  b.fact("snapshots_full", n_full);
  b.fact("snapshots_backlogged", n_backlogged);
  b.fact("oldest_child_queued_s", oldest_child);
  if (const auto somaxconn = ctx.limit(t.netns, "net.core.somaxconn", last_snap)) {
    b.fact("somaxconn", *somaxconn);
  }
  Json rows = Json::array();
  for (size_t i = lo; i < hi; ++i) {
    const Sample& x = s[i];
    Json j;
    j["t"] = ctx.time(x.snap);
    j["queue"] = x.rx_queue == k_na ? Json(nullptr) : Json(x.rx_queue);
    j["max_backlog"] = x.tx_queue == k_na ? Json(nullptr) : Json(x.tx_queue);
    const auto u = per_snap.find(x.snap);
    j["unaccepted"] = u == per_snap.end() ? 0 : u->second;
    j["listen_overflows_delta"] = overflows.delta_json(x.snap);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "queue", {"max_backlog"});
  b.group("listener",
          std::to_string(t.netns) + " tcp " + where,
          "at listener " + where,
          "listening sockets with a backlog");
  out.add(std::move(b).build());
}

void check(const Context& ctx, Sink& out) {
  const auto& children = ctx.children(k_child_states);
  for (uint32_t ti = 0; ti < ctx.tracks().size(); ++ti) {
    const Track& t = ctx.track(ti);
    if (t.family == k_af_unix || t.proto != k_proto_tcp
        || std::none_of(t.samples.begin(), t.samples.end(), listening)) {
      continue;
    }
    const CounterSeries& ov = ctx.counter(t.netns, "TcpExt.ListenOverflows");
    const CounterSeries& overflows = ov.any() ? ov : ctx.counter(t.netns, "TcpExt.ListenDrops");
    const auto kids = children.find(ti);
    judge(ctx, ti, kids == children.end() ? nullptr : &kids->second, overflows, out);
  }
}

} // namespace

Detector accept_queue_backlog_detector() {
  return {"accept_queue_backlog",
          "a listener's accept queue is full, or does not drain",
          {
              {"full_seconds", 2, "at the max backlog this long: full", Unit::seconds},
              {"critical_seconds",
               60,
               "full this long is critical even without a counted overflow",
               Unit::seconds},
              {"min_queue", 2, "queue length that counts as backlogged (or 10% of max, if more)"},
              {"backlog_seconds",
               5,
               "backlogged, with the same connection queued, this long: not draining",
               Unit::seconds},
          },
          &check,
          nullptr,
          &listener_or_child};
}

} // namespace sockrewind::analyze
