// tx_queue_stall (research/detectors.md D2): data waits on the send side of a connected TCP
// socket (ESTAB, CLOSE-WAIT, FIN-WAIT-1 or LAST-ACK with an fd; orphans are orphan_pressure's).
// Over each gap-free run of a socket, strongest first:
//   dead_peer:   the kernel retransmits (timer 1, retrans >= 1) or probes a zero window (timer 4,
//                unanswered probes >= 1) in >= 2 snapshots in a row, nothing acknowledged, the
//                count rising: the peer answers nothing. Silence = the larger of the run's
//                duration and last_ack_recv_ms. Critical when the count reached dead_retrans
//                (the kernel backs off and will reset it after tcp_retries2) or the silence
//                lasted >= dead_critical_seconds; warning when silent >= dead_seconds.
//   zero_window: persist timer (4) or snd_wnd 0, Send-Q > 1, nothing acknowledged, the peer
//                answering the probes: its application does not read (flow control, not loss;
//                backoff rises in normal flow control and is evidence only). Warning when it
//                lasted >= full_seconds with the Send-Q at its limit (wmem_queued or Send-Q >=
//                full_ratio x sndbuf: the writer blocks), or >= zero_window_seconds otherwise;
//                critical when it lasted >= critical_seconds.
//   network_limited: GROW(Send-Q; abs_min min_growth_bytes) over >= grow_seconds while the peer
//                acknowledges data -> info.
// tr=1 alone (data in flight) and tx=1 (a FIN) are normal and never count. One finding per
// destination (remote address and port; remote address for a dead peer); a local receiver that
// does not read is named, read back from the snapshot where the stall ends (report keeps only
// the sockets with a verdict: each is judged on its own samples).
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sockrewind::analyze {

namespace {

enum class Kind { none, network_limited, zero_window, dead_peer };

struct Verdict {
  Kind kind = Kind::none;
  Range window;
  Trend trend;
  uint32_t max_unanswered = 0;
  double silent_s = 0;
};

bool eligible(const Sample& x) {
  return x.inode != 0 && x.tx_queue != k_na
         && (x.state == k_established || x.state == k_close_wait || x.state == k_fin_wait1
             || x.state == k_last_ack);
}

bool acked_still(const Context& ctx, const Sample& prev, const Sample& x) {
  if (prev.bytes_acked == k_na64 || x.bytes_acked == k_na64) {
    return true; // no tcp_info: the timer alone decides
  }
  return x.bytes_acked >= prev.bytes_acked
         && static_cast<double>(x.bytes_acked - prev.bytes_acked)
                <= ctx.param("acked_tolerance_bytes");
}

bool zero_window(const Sample& x) {
  return x.tx_queue > 1 && (x.timer == 4 || (x.snd_wnd == 0 && x.state == k_established));
}

// Retransmissions (timer 1) or window probes (timer 4) the peer has not answered; 0 otherwise.
uint32_t unanswered(const Sample& x) {
  const uint32_t retrans = x.retrans == k_na8 ? 0 : x.retrans;
  const uint32_t probes = x.probes == k_na8 ? 0 : x.probes;
  if (x.tx_queue == k_na || x.tx_queue == 0) {
    return 0;
  }
  return x.timer == 1 ? retrans : x.timer == 4 ? std::max(retrans, probes) : 0;
}

bool at_limit(const Context& ctx, const Sample& x) {
  if (x.sndbuf == k_na || x.sndbuf == 0) {
    return false;
  }
  const double used = x.wmem_queued != k_na ? x.wmem_queued : x.tx_queue;
  return used >= ctx.param("full_ratio") * static_cast<double>(x.sndbuf);
}

// Streaks [begin, end) of r where pred(prev, x) holds for each step (and start(x) for the first).
template <class Start, class Step>
std::vector<Range> streaks(const Track& t, Range r, Start start, Step step) {
  std::vector<Range> out;
  size_t begin = r.begin;
  for (size_t i = r.begin; i <= r.end; ++i) {
    const bool keep =
        i < r.end && start(t.samples[i]) && (i == begin || step(t.samples[i - 1], t.samples[i]));
    if (!keep) {
      if (i > begin) {
        out.push_back({begin, i});
      }
      begin = i < r.end && start(t.samples[i]) ? i : i + 1;
    }
  }
  return out;
}

Verdict judge(const Context& ctx, const Track& t, Range r) {
  Verdict v;
  const auto& s = t.samples;
  const auto span = [&](Range w) { return ctx.seconds(s[w.begin].snap, s[w.end - 1].snap); };
  // dead peer: unanswered retransmissions or probes, rising, nothing acknowledged.
  for (const Range& w : streaks(
           t,
           r,
           [](const Sample&x) { return unanswered(x) > 0; },
           [&](const Sample&a, const Sample&b) {
             return unanswered(b) >= unanswered(a) && acked_still(ctx, a, b);
           })) {
    const Sample& a = s[w.begin];
    const Sample& b = s[w.end - 1];
    if (unanswered(b) <= unanswered(a)
        || !ctx.lasted(a.snap, b.snap, w.size(), 0)) { // not rising, or one snapshot
      continue;
    }
    const double silent =
        std::max(span(w), b.last_ack_recv_ms == k_na ? 0.0 : b.last_ack_recv_ms / 1000.0);
    const bool dead = silent >= ctx.param("dead_seconds")
                      || static_cast<double>(unanswered(b)) >= ctx.param("dead_retrans");
    if (dead && (v.kind != Kind::dead_peer || silent > v.silent_s)) {
      v.kind = Kind::dead_peer;
      v.window = w;
      v.silent_s = silent;
      v.max_unanswered = unanswered(b);
    }
  }
  if (v.kind == Kind::dead_peer) {
    return v;
  }
  // zero window: the longest streak with nothing acknowledged.
  for (const Range& w : streaks(t, r, zero_window, [&](const Sample&a, const Sample&b) {
         return acked_still(ctx, a, b);
       })) {
    const bool full = at_limit(ctx, s[w.end - 1]);
    const double need = full ? ctx.param("full_seconds") : ctx.param("zero_window_seconds");
    if (ctx.lasted(s[w.begin].snap, s[w.end - 1].snap, w.size(), need)
        && (v.kind != Kind::zero_window || span(w) > span(v.window))) {
      v.kind = Kind::zero_window;
      v.window = w;
    }
  }
  if (v.kind == Kind::zero_window) {
    return v;
  }
  // network-limited: the Send-Q grows while the peer acknowledges data.
  const Sample& a = s[r.begin];
  const Sample& b = s[r.end - 1];
  const bool acked =
      a.bytes_acked != k_na64 && b.bytes_acked != k_na64 && b.bytes_acked > a.bytes_acked;
  uint32_t lo = k_na;
  uint32_t hi = 0;
  for (size_t i = r.begin; i < r.end; ++i) {
    lo = std::min(lo, s[i].tx_queue);
    hi = std::max(hi, s[i].tx_queue);
  }
  if (!acked || static_cast<double>(hi - lo) < ctx.param("min_growth_bytes")
      || !ctx.lasted(a.snap, b.snap, r.size(), ctx.param("grow_seconds"))) {
    return v; // cheap exits before the O(n^2)-capped trend test
  }
  std::vector<double> ts;
  std::vector<double> xs;
  for (size_t i = r.begin; i < r.end; ++i) {
    ts.push_back(ctx.seconds(a.snap, s[i].snap));
    xs.push_back(s[i].tx_queue);
  }
  constexpr size_t k_min_points = 4;
  v.trend =
      grow_test(ts, xs, ctx.param("tolerance_bytes"), ctx.param("min_growth_bytes"), k_min_points);
  if (v.trend.grows) {
    v.kind = Kind::network_limited;
    v.window = r;
  }
  return v;
}

Json point(const Context& ctx, const Sample& x, const Sample* prev) {
  const auto opt = [](uint64_t v, uint64_t na) { return v == na ? Json(nullptr) : Json(v); };
  Json j;
  j["t"] = ctx.time(x.snap);
  j["state"] = state_name(x.state);
  j["tx_queue"] = x.tx_queue;
  j["wmem_queued"] = opt(x.wmem_queued, k_na);
  j["sndbuf"] = opt(x.sndbuf, k_na);
  j["timer"] = opt(x.timer, k_na8);
  j["retrans"] = opt(x.retrans, k_na8);
  j["probes"] = opt(x.probes, k_na8);
  j["backoff"] = opt(x.backoff, k_na8);
  j["snd_wnd"] = opt(x.snd_wnd, k_na);
  j["bytes_acked"] = opt(x.bytes_acked, k_na64);
  const bool have_delta = prev != nullptr && prev->bytes_acked != k_na64 && x.bytes_acked != k_na64
                          && x.bytes_acked >= prev->bytes_acked;
  j["bytes_acked_delta"] = have_delta ? Json(x.bytes_acked - prev->bytes_acked) : Json(nullptr);
  j["last_ack_recv_ms"] = opt(x.last_ack_recv_ms, k_na);
  return j;
}

// The strongest verdict over the gap-free runs of t's eligible samples (Kind::none: none).
Verdict verdict(const Context& ctx, const Track& t) {
  Verdict best;
  if (t.family == k_af_unix || t.proto != k_proto_tcp) {
    return best;
  }
  for (const Range& c : contiguous_runs(ctx.timeline(), t)) {
    size_t begin = c.begin;
    for (size_t i = c.begin; i <= c.end; ++i) {
      if (i == c.end || !eligible(t.samples[i])) {
        if (i > begin) {
          Verdict v = judge(ctx, t, {begin, i});
          if (v.kind > best.kind) {
            best = v;
          }
        }
        begin = i + 1;
      }
    }
  }
  return best;
}

// The tracks the check reads (detector.hpp KeepFn): those with a verdict, exactly; the
// receivers it names are read back.
bool keep(const Context& ctx, const Track& t) {
  return verdict(ctx, t).kind != Kind::none;
}

// The local receivers of the stalls in `stalled` (t, snap): the TCP connection of t's netns
// with its 4-tuple reversed, in that snapshot, read back from its file (report keeps only the
// stalled senders), one read per port. Its owners text, or "" for none.
std::vector<std::string> receivers(const Context& ctx,
                                   const std::vector<std::pair<const Track*, uint32_t>>& stalled) {
  const Series& series = ctx.series();
  std::vector<std::string> out(stalled.size());
  // The stalls `ks` of snapshot `snap`, read back as `back`.
  const auto match =
      [&](const Context::SnapshotSockets& back, uint32_t snap, const std::vector<size_t>& ks) {
        const Context bctx(back.series, back.tl(), ctx.params());
        const Strings& bs = back.series.strings;
        for (const size_t k : ks) {
          const Track& t = *stalled[k].first;
          const uint64_t netns = ctx.timeline().netns[t.netns].inode;
          for (const Track& u : back.tl().tracks) {
            const Sample* x = sample_at(u, back.snap);
            if (x == nullptr || u.family == k_af_unix || u.proto != k_proto_tcp
                || u.remote_port == 0 || back.tl().netns[u.netns].inode != netns
                || u.local_port != t.remote_port || u.remote_port != t.local_port
                || bs.get(u.local_addr) != series.strings.get(t.remote_addr)
                || bs.get(u.remote_addr) != series.strings.get(t.local_addr)) {
              continue;
            }
            const std::optional<Sample> own = ctx.own_sample(back, *x, snap);
            out[k] = own ? ctx.owners_text(*own) : bctx.owners_text(*x);
            break;
          }
        }
      };
  // port -> snapshot -> stalls: the snapshots of one port read together (one read per file).
  std::map<uint16_t, std::map<uint32_t, std::vector<size_t>>> reads;
  for (size_t k = 0; k < stalled.size(); ++k) {
    reads[stalled[k].first->remote_port][stalled[k].second].push_back(k);
  }
  for (const auto& [port, by_snap] : reads) {
    SocketFilter filter;
    filter.port = port;
    std::vector<uint32_t> snaps;
    snaps.reserve(by_snap.size());
    for (const auto& [snap, ks] : by_snap) {
      snaps.push_back(snap);
    }
    const std::vector<Context::SnapshotSockets> backs = ctx.read_snapshots(snaps, filter);
    size_t i = 0;
    for (const auto& [snap, ks] : by_snap) {
      match(backs[i++], snap, ks);
    }
  }
  return out;
}

void check(const Context& ctx, Sink& out) {
  const Series& series = ctx.series();
  std::vector<std::pair<const Track*, Verdict>> found;
  std::vector<std::pair<const Track*, uint32_t>> stalled; // zero windows: (track, last snap)
  std::vector<size_t> stall_of;                           // found index -> stalled index
  for (const Track& t : ctx.tracks()) {
    Verdict best = verdict(ctx, t);
    if (best.kind == Kind::none) {
      continue;
    }
    stall_of.push_back(best.kind == Kind::zero_window ? stalled.size() : k_na);
    if (best.kind == Kind::zero_window) {
      stalled.emplace_back(&t, t.samples[best.window.end - 1].snap);
    }
    found.emplace_back(&t, best);
  }
  const std::vector<std::string> receiver = receivers(ctx, stalled);
  for (size_t k = 0; k < found.size(); ++k) {
    const Track& t = *found[k].first;
    const Verdict& best = found[k].second;
    const Sample& first = t.samples[best.window.begin];
    const Sample& last = t.samples[best.window.end - 1];
    const double span = ctx.seconds(first.snap, last.snap);
    const std::string sock =
        proto_name(t) + " " + endpoint(series, t, true) + " -> " + endpoint(series, t, false);
    const std::string dest = endpoint(series, t, false);
    const std::string host(series.strings.get(t.remote_addr));
    const bool have_acked = first.bytes_acked != k_na64 && last.bytes_acked != k_na64;
    const std::string sender = "; sender " + ctx.owners_text(last);
    FindingBuilder b(ctx, "tx_queue_stall");
    b.socket(t, last).seen(first.snap, last.snap).weight(static_cast<double>(last.tx_queue));
    std::string s = "Send-Q of " + sock + " holds " + human_bytes(last.tx_queue);
    switch (best.kind) {
    case Kind::dead_peer: {
      const bool probing = last.timer == 4;
      const bool crit = static_cast<double>(best.max_unanswered) >= ctx.param("dead_retrans")
                        || best.silent_s >= ctx.param("dead_critical_seconds");
      b.severity(crit ? Severity::critical : Severity::warning);
      s += " and the peer answers nothing for " + num(best.silent_s) + " s ("
           + std::to_string(best.max_unanswered)
           + (probing ? " unanswered zero-window probes" : " consecutive RTOs")
           + (have_acked ? ", nothing acknowledged" : "")
           + "): a dead or unreachable peer; the kernel resets the connection after "
             "tcp_retries2"
           + sender;
      b.fact("class", "dead_peer");
      b.fact("max_unanswered", best.max_unanswered);
      b.fact("max_retrans", best.max_unanswered); // the first round's name
      b.fact("silent_s", best.silent_s);
      const auto r2 = ctx.limit(t.netns, "net.ipv4.tcp_retries2", last.snap);
      b.fact("tcp_retries2", r2 ? Json(*r2) : Json(nullptr));
      b.group("destination",
              std::to_string(t.netns) + " dead " + host,
              "traffic to " + host,
              "sockets whose peer answers nothing");
      break;
    }
    case Kind::zero_window: {
      const bool full = at_limit(ctx, last);
      b.severity(span >= ctx.param("critical_seconds") ? Severity::critical : Severity::warning);
      if (full) {
        s += " (at its " + human_bytes(last.sndbuf) + " limit: the writer blocks)";
      }
      s += " behind a zero window for " + num(span) + " s (" + std::to_string(best.window.size())
           + " snapshots), "
           + (have_acked ? "nothing acknowledged" : "acknowledgements not captured")
           + "; the peer is alive (it answers the window probes) but its application does not "
             "read";
      if (!receiver[stall_of[k]].empty()) {
        s += ": receiver " + receiver[stall_of[k]];
      }
      s += sender;
      b.fact("class", "zero_window");
      b.fact("at_limit", full);
      b.fact("peer_answers", true);
      b.group("destination",
              std::to_string(t.netns) + " " + dest,
              "traffic to " + dest,
              "sockets stalled behind a zero window");
      break;
    }
    case Kind::network_limited:
    case Kind::none:
      b.severity(Severity::info);
      s = "Send-Q of " + sock;
      s += " grows from " + human_bytes(first.tx_queue);
      s += " to " + human_bytes(last.tx_queue);
      s += " over " + num(span);
      s += " s while the peer acknowledges data: the application writes faster than the path "
           "drains";
      s += sender;
      b.fact("class", "network_limited");
      b.fact("slope_bytes_per_s", best.trend.slope);
      b.fact("kendall_tau", best.trend.tau);
      b.group("destination",
              std::to_string(t.netns) + " slow " + host,
              "traffic to " + host,
              "sockets sending faster than the path drains");
      break;
    }
    b.summary(std::move(s));
    b.fact("snapshots", best.window.size());
    b.fact("duration_s", span);
    b.fact("bytes_acked_delta",
           have_acked && last.bytes_acked >= first.bytes_acked
               ? Json(last.bytes_acked - first.bytes_acked)
               : Json(nullptr));
    Json rows = Json::array();
    const Range shown_rows = Context::with_margin(t, best.window);
    for (size_t i = shown_rows.begin; i < shown_rows.end; ++i) {
      const Sample* prev =
          i > 0 && t.samples[i - 1].snap + 1 == t.samples[i].snap ? &t.samples[i - 1] : nullptr;
      rows.push_back(point(ctx, t.samples[i], prev));
    }
    b.series(std::move(rows), "tx_queue", {"sndbuf"});
    out.add(std::move(b).build());
  }
}

} // namespace

Detector tx_queue_stall_detector() {
  return {
      "tx_queue_stall",
      "Send-Q of a connected TCP socket grows or sits still: zero window or dead peer",
      {
          {"full_seconds",
           30,
           "a zero window with the Send-Q at its limit this long is a warning",
           Unit::seconds},
          {"zero_window_seconds",
           30,
           "a zero window below the Send-Q limit this long is a warning",
           Unit::seconds},
          {"critical_seconds", 600, "a zero-window stall this long is critical", Unit::seconds},
          {"full_ratio",
           0.9,
           "wmem_queued (or Send-Q) / sndbuf at or above which the Send-Q is at its limit",
           Unit::ratio},
          {"acked_tolerance_bytes",
           0,
           "bytes_acked growth still counted as 'not moving'",
           Unit::bytes},
          {"dead_seconds",
           5,
           "a peer silent this long while the kernel retransmits is dead (warning)",
           Unit::seconds},
          {"dead_retrans",
           3,
           "unanswered RTOs or window probes that make a dead peer critical",
           Unit::count},
          {"dead_critical_seconds",
           60,
           "a peer silent this long is critical whatever the retransmit count",
           Unit::seconds},
          {"grow_seconds", 4, "the Send-Q grows this long for 'network_limited'", Unit::seconds},
          {"min_growth_bytes",
           262144,
           "Send-Q growth for 'network_limited' (GROW abs_min)",
           Unit::bytes},
          {"tolerance_bytes", 4096, "a step down smaller than this is not a decrease", Unit::bytes},
      },
      &check,
      nullptr,
      &keep};
}

} // namespace sockrewind::analyze
