// rx_queue_growth (research/detectors.md D1): the application does not read a connected TCP
// socket (ESTAB or CLOSE-WAIT with an fd; inode-0 children are queued at a listener, that is
// unaccepted_connection's). Three shapes over a gap-free run, strongest first:
//   stalled_full:    skmem r >= full_ratio x rb in >= persist_ratio of the run's snapshots, for
//                    >= full_seconds: the sender sees a zero window;
//   growing:         Recv-Q rises in every snapshot for >= grow_seconds, or passes the GROW test
//                    (detectors.md §0.4) with a minimum growth of min_growth_rate x duration,
//                    capped at min_growth_bytes: a slow reader is found in a short series too;
//   stalled_partial: ESTAB, the same non-empty Recv-Q and nothing received for >= stall_seconds.
// Severity follows harm: at the limit while the application reads (bytes_received moved more
// than Recv-Q did) is flow control (info; warning when the netns lost received data meanwhile);
// at the limit with nothing read is critical when the netns lost received data (TCPRcvQDrop,
// TCPZeroWindowDrop rose) or it lasted >= critical_seconds, a warning from stop_seconds and info
// before (a rate-limited reader pauses for seconds too); growing and stalled_partial: warning. The
// socket's own skmem drops counter is evidence only: it also counts the zero-window probes the
// kernel discards, which lose nothing. One finding per process.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <array>
#include <string_view>

namespace sockrewind::analyze {

namespace {

enum class Shape { none, partial, growing, full };

struct Verdict {
  Shape shape = Shape::none;
  Range window;
  double slope = 0; // bytes/s (growing)
  bool every_step = false;
};

bool connected(const Sample& x) {
  return x.inode != 0 && (x.state == k_established || x.state == k_close_wait)
         && x.rx_queue != k_na;
}

bool is_full(const Context& ctx, const Sample& x) {
  return x.rmem_alloc != k_na && x.rcvbuf != k_na && x.rcvbuf != 0
         && static_cast<double>(x.rmem_alloc)
                >= ctx.param("full_ratio") * static_cast<double>(x.rcvbuf);
}

Verdict judge(const Context& ctx, const Track& t, Range r) {
  Verdict v;
  const auto& s = t.samples;
  const uint32_t a = s[r.begin].snap;
  const uint32_t b = s[r.end - 1].snap;
  const double span = ctx.seconds(a, b);
  // stalled_full: from the first full snapshot to the last (the time spent filling up is not
  // time at the limit), full in >= persist_ratio of them.
  size_t full = 0;
  size_t first_full = r.end;
  size_t last_full = r.end;
  for (size_t i = r.begin; i < r.end; ++i) {
    if (is_full(ctx, s[i])) {
      ++full;
      first_full = first_full == r.end ? i : first_full;
      last_full = i;
    }
  }
  if (full > 0) {
    const Range at_limit{first_full, last_full + 1};
    if (static_cast<double>(full)
            >= ctx.param("persist_ratio") * static_cast<double>(at_limit.size())
        && ctx.lasted(s[first_full].snap, s[last_full].snap, full, ctx.param("full_seconds"))) {
      v.shape = Shape::full;
      v.window = at_limit;
      return v;
    }
  }
  // growing: a rise in every snapshot, or GROW with a time-scaled minimum growth
  if (r.size() >= 3 && ctx.lasted(a, b, r.size(), ctx.param("grow_seconds"))) {
    bool every = true;
    for (size_t i = r.begin + 1; i < r.end; ++i) {
      every = every && s[i].rx_queue > s[i - 1].rx_queue;
    }
    std::vector<double> ts;
    std::vector<double> xs;
    for (size_t i = r.begin; i < r.end; ++i) {
      ts.push_back(ctx.seconds(a, s[i].snap));
      xs.push_back(s[i].rx_queue);
    }
    const double min_growth = std::clamp(ctx.param("min_growth_rate") * span,
                                         ctx.param("tolerance_bytes"),
                                         ctx.param("min_growth_bytes"));
    // Most connected streaks of a busy server cannot pass GROW: only those that may, or that
    // rise at every step (their slope is reported), pay for the pairwise test.
    const double tol = ctx.param("tolerance_bytes");
    const Trend tr =
        every || may_grow(xs, tol, min_growth, 3) ? grow_test(ts, xs, tol, min_growth, 3) : Trend{};
    if (every || tr.grows) {
      v.shape = Shape::growing;
      v.window = r;
      v.every_step = every;
      v.slope = tr.slope > 0 ? tr.slope : (xs.back() - xs.front()) / std::max(span, 1e-9);
      return v;
    }
  }
  // stalled_partial: the longest streak of the same non-empty Recv-Q with nothing received.
  size_t begin = r.begin;
  for (size_t i = r.begin + 1; i <= r.end; ++i) {
    const bool same = i < r.end && s[i].rx_queue == s[i - 1].rx_queue
                      && s[i].bytes_received == s[i - 1].bytes_received;
    if (!same) {
      // Only ESTAB: unread bytes left in CLOSE-WAIT (+1 for the FIN) are close_wait_leak's.
      if (s[begin].state == k_established && s[begin].rx_queue > 0
          && ctx.lasted(s[begin].snap, s[i - 1].snap, i - begin, ctx.param("stall_seconds"))
          && (v.shape != Shape::partial || i - begin > v.window.size())) {
        v.shape = Shape::partial;
        v.window = {begin, i};
      }
      begin = i;
    }
  }
  return v;
}

// The best verdict over the socket's gap-free runs of connected samples.
Verdict best_verdict(const Context& ctx, const Track& t) {
  Verdict best;
  for (const Range& r : ctx.streaks(t, connected)) {
    Verdict v = judge(ctx, t, r);
    if (v.shape > best.shape) {
      best = v;
    }
  }
  return best;
}

Json point(const Context& ctx, const Sample& x) {
  const auto opt = [](uint32_t v) { return v == k_na ? Json(nullptr) : Json(v); };
  Json j;
  j["t"] = ctx.time(x.snap);
  j["state"] = state_name(x.state);
  j["rx_queue"] = x.rx_queue;
  j["rmem_alloc"] = opt(x.rmem_alloc);
  j["rcvbuf"] = opt(x.rcvbuf);
  j["drops"] = opt(x.drops);
  j["bytes_received"] = x.bytes_received == k_na64 ? Json(nullptr) : Json(x.bytes_received);
  j["last_data_recv_ms"] = opt(x.last_data_recv_ms);
  return j;
}

constexpr std::array<std::string_view, 2> k_loss_counters{"TcpExt.TCPRcvQDrop",
                                                          "TcpExt.TCPZeroWindowDrop"};

// One socket at a time, nothing kept between them.
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& out) override;

  void finish(const Context& /*ctx*/, Sink& /*out*/) override {}
};

void Pass::track(const Context& ctx, const Track& t, Sink& out) {
  const Series& series = ctx.series();
  if (t.family == k_af_unix || t.proto != k_proto_tcp) {
    return;
  }
  const Verdict best = best_verdict(ctx, t);
  if (best.shape == Shape::none) {
    return;
  }
  const Sample& first = t.samples[best.window.begin];
  const Sample& last = t.samples[best.window.end - 1];
  const double span = ctx.seconds(first.snap, last.snap);
  const size_t n = best.window.size();
  const std::string sock =
      proto_name(t) + " " + endpoint(series, t, true) + " <- " + endpoint(series, t, false);
  // Data the netns lost to full receive queues while this socket was at its limit.
  const int64_t lost = ctx.counter_sum(t.netns, k_loss_counters).total(first.snap + 1, last.snap);
  // What the application read meanwhile: bytes that arrived minus what Recv-Q grew by.
  const bool have_bytes = first.bytes_received != k_na64 && last.bytes_received != k_na64;
  const double read =
      have_bytes ? static_cast<double>(last.bytes_received - first.bytes_received)
                       - (static_cast<double>(last.rx_queue) - static_cast<double>(first.rx_queue))
                 : 0;
  const bool reading = read > 0;
  FindingBuilder b(ctx, "rx_queue_growth");
  b.socket(t, last).seen(first.snap, last.snap).weight(static_cast<double>(last.rx_queue));
  std::string s;
  Severity sev = Severity::warning;
  switch (best.shape) {
  case Shape::full:
    // Full while data still arrives is flow control: the reader sets the pace (a rate-limited
    // download). Full with nothing read is a reader that stopped.
    if (reading) {
      sev = lost > 0 ? Severity::warning : Severity::info;
    } else if (lost > 0 || ctx.lasted(first.snap, last.snap, n, ctx.param("critical_seconds"))) {
      sev = Severity::critical;
    } else if (!ctx.lasted(first.snap, last.snap, n, ctx.param("stop_seconds"))) {
      sev = Severity::info; // a rate-limited reader pauses too (curl --limit-rate sleeps)
    }
    s = "Recv-Q of " + sock + " sits at its buffer limit (" + human_bytes(last.rmem_alloc) + " of "
        + human_bytes(last.rcvbuf) + ") for " + num(span) + " s (" + std::to_string(n)
        + " snapshots); "
        + (reading ? "the application read " + human_bytes(read)
                         + " meanwhile and the sender keeps it full (flow control)"
                   : std::string("the application read nothing meanwhile (the sender sees a "
                                 "zero window)"));
    if (lost > 0) {
      s += "; the netns dropped " + std::to_string(lost)
           + " received segment(s) for want of room (TCPRcvQDrop, TCPZeroWindowDrop)";
    }
    break;
  case Shape::growing:
    s = "Recv-Q of " + sock + " grows from " + human_bytes(first.rx_queue) + " to "
        + human_bytes(last.rx_queue) + " over " + num(span) + " s (" + human_bytes(best.slope)
        + "/s"
        + (best.every_step ? ", up in every one of " + std::to_string(n) + " snapshots)"
                           : ", " + std::to_string(n) + " snapshots)");
    b.fact("slope_bytes_per_s", best.slope);
    if (last.rcvbuf != k_na && best.slope > 0 && last.rcvbuf > last.rmem_alloc) {
      b.fact("eta_full_s", static_cast<double>(last.rcvbuf - last.rmem_alloc) / best.slope);
    }
    break;
  case Shape::partial:
  case Shape::none:
    s = "Recv-Q of " + sock + " holds " + human_bytes(last.rx_queue)
        + " unread, unchanged and nothing received for " + num(span) + " s (" + std::to_string(n)
        + " snapshots)";
    break;
  }
  s += "; " + ctx.owners_text(last)
       + (reading ? " reads slower than it receives" : " is not reading");
  b.severity(sev).summary(std::move(s));
  b.fact("shape",
         best.shape == Shape::full      ? "stalled_full"
         : best.shape == Shape::growing ? "growing"
                                        : "stalled_partial");
  b.fact("netns_receive_drops", lost);
  b.fact("bytes_read", have_bytes ? Json(read) : Json(nullptr));
  b.fact("socket_drops_increased",
         first.drops != k_na && last.drops != k_na && last.drops > first.drops);
  Json rows = Json::array();
  const Range shown = Context::with_margin(t, best.window);
  for (size_t i = shown.begin; i < shown.end; ++i) {
    rows.push_back(point(ctx, t.samples[i]));
  }
  b.series(std::move(rows), "rx_queue", {"rcvbuf"});
  b.group_by_owner(t, last, "sockets with unread data");
  out.add(std::move(b).build());
}

} // namespace

Detector rx_queue_growth_detector() {
  return {
      "rx_queue_growth",
      "Recv-Q of a connected TCP socket grows across snapshots, or sits at its buffer limit",
      {
          {"full_seconds", 4, "at the buffer limit this long for 'stalled_full'", Unit::seconds},
          {"grow_seconds", 4, "rising this long for 'growing'", Unit::seconds},
          {"min_growth_rate", 64, "GROW's minimum growth per second of the run", Unit::per_second},
          {"min_growth_bytes", 65536, "cap of GROW's minimum growth", Unit::bytes},
          {"tolerance_bytes", 4096, "a step down smaller than this is not a decrease", Unit::bytes},
          {"full_ratio",
           0.9,
           "skmem r / rb at or above which the buffer counts as full",
           Unit::ratio},
          {"persist_ratio", 0.8, "fraction of snapshots full for 'stalled_full'", Unit::ratio},
          {"stall_seconds",
           30,
           "an unchanged non-empty Recv-Q this long is a stall",
           Unit::seconds},
          {"stop_seconds",
           30,
           "at the buffer limit with nothing read this long is a warning (info before)",
           Unit::seconds},
          {"critical_seconds", 300, "at the buffer limit this long is critical", Unit::seconds},
      },
      nullptr,
      make_pass<Pass>};
}

} // namespace sockrewind::analyze
