// orphan_pressure (research/detectors.md D8): closed sockets the kernel still holds.
//   orphans vs limit (host-global): sockstat TCP.orphan / net.ipv4.tcp_max_orphans over
//       warn_ratio in snapshots in a row lasting >= over_seconds -> warning; over crit_ratio that
//       long -> critical (past the limit the kernel resets orphans). Both numbers are
//       host-global: one finding per host, attributed to the netns holding the most orphan rows
//       (inode 0 in FIN-WAIT-1, LAST-ACK or CLOSING).
//   TcpExt.TCPAbortOnMemory rises (per netns) -> critical: the kernel reset connections ("too
//       many orphaned sockets", or tcp_mem exhausted); one finding per netns.
//   stuck orphans (no fd): one socket stays in FIN-WAIT-1 with data (tx > 1), LAST-ACK or
//       CLOSING for >= stuck_seconds -> info (the peer does not drain or is gone), warning from
//       stuck_warning_seconds. One finding per (netns, state, peer).
//   owned FIN-WAIT-2 (shutdown(SHUT_WR), the fd kept) for >= fin_wait2_seconds -> warning: no
//       timeout applies while the fd is open. One finding per process.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>

namespace sockrewind::analyze {

namespace {

bool orphan_row(const Sample& x) {
  return x.inode == 0 && (x.state == k_fin_wait1 || x.state == k_last_ack || x.state == k_closing);
}

bool stuck_orphan(const Sample& x) {
  return orphan_row(x) && (x.state != k_fin_wait1 || (x.tx_queue != k_na && x.tx_queue > 1));
}

bool owned_fin_wait2(const Sample& x) {
  return x.state == k_fin_wait2 && x.inode != 0;
}

Json opt(uint64_t v, uint64_t na) {
  return v == na ? Json(nullptr) : Json(v);
}

// The longest (in seconds) gap-free streak of `t` where pred holds; empty when none.
template <class Pred> Range longest(const Context& ctx, const Track& t, Pred pred) {
  Range best{};
  double best_s = -1;
  for (const Range& c : contiguous_runs(ctx.timeline(), t)) {
    size_t begin = c.begin;
    for (size_t i = c.begin; i <= c.end; ++i) {
      if (i < c.end && pred(t.samples[i])) {
        continue;
      }
      if (i > begin) {
        const double d = ctx.seconds(t.samples[begin].snap, t.samples[i - 1].snap);
        if (d > best_s) {
          best_s = d;
          best = {begin, i};
        }
      }
      begin = i + 1;
    }
  }
  return best;
}

void global_orphans(const Context& ctx, const std::vector<size_t>& orphan_rows, Sink& out) {
  uint32_t ns = k_na;
  for (uint32_t i = 0; i < ctx.timeline().netns.size(); ++i) {
    if (ctx.counter(i, "TCP.orphan").any() && (ns == k_na || orphan_rows[i] > orphan_rows[ns])) {
      ns = i;
    }
  }
  if (ns == k_na) {
    return;
  }
  const CounterSeries& orphans = ctx.counter(ns, "TCP.orphan");
  const size_t n = ctx.snapshots();
  std::vector<double> ratio(n, -1);
  for (uint32_t i = 0; i < n; ++i) {
    const auto o = orphans.value(i);
    const auto lim = ctx.limit(ns, "net.ipv4.tcp_max_orphans", i);
    if (o && lim && *lim > 0) {
      ratio[i] = static_cast<double>(*o) / static_cast<double>(*lim);
    }
  }
  // The longest streak over `bar` in one gap-free run, by seconds.
  const auto streak = [&](double bar, uint32_t& a, uint32_t& b) {
    double best = -1;
    uint32_t begin = 0;
    for (uint32_t i = 0; i <= n; ++i) {
      const bool over =
          i < n && ratio[i] > bar
          && (i == begin || ctx.timeline().snaps[i].run == ctx.timeline().snaps[begin].run);
      if (over) {
        continue;
      }
      if (i > begin && ctx.lasted(begin, i - 1, i - begin, 0) && ctx.seconds(begin, i - 1) > best) {
        best = ctx.seconds(begin, i - 1);
        a = begin;
        b = i - 1;
      }
      begin = i < n && ratio[i] > bar ? i : i + 1;
    }
    return best;
  };
  uint32_t wa = 0;
  uint32_t wb = 0;
  uint32_t ca = 0;
  uint32_t cb = 0;
  const double warn_s = streak(ctx.param("warn_ratio"), wa, wb);
  const double crit_s = streak(ctx.param("crit_ratio"), ca, cb);
  if (warn_s < ctx.param("over_seconds")) {
    return;
  }
  const bool critical = crit_s >= ctx.param("over_seconds");
  uint32_t peak = wa;
  for (uint32_t i = wa; i <= wb; ++i) {
    peak = ratio[i] > ratio[peak] ? i : peak;
  }
  const int64_t peak_orphans = orphans.value(peak).value_or(0);
  const int64_t peak_limit = ctx.limit(ns, "net.ipv4.tcp_max_orphans", peak).value_or(0);
  FindingBuilder b(ctx, "orphan_pressure");
  b.netns(ns).seen(wa, wb).severity(critical ? Severity::critical : Severity::warning);
  b.weight(ratio[peak]);
  b.summary("orphaned TCP sockets at up to " + num(100.0 * ratio[peak]) + "% of tcp_max_orphans ("
            + std::to_string(peak_orphans) + " of " + std::to_string(peak_limit) + "), over "
            + num(100.0 * ctx.param(critical ? "crit_ratio" : "warn_ratio")) + "% for "
            + num(critical ? crit_s : warn_s)
            + " s; past the limit the kernel resets them. Host-wide counts; "
            + std::to_string(orphan_rows[ns]) + " orphan rows seen in this netns");
  const CounterSeries& aborts = ctx.counter(ns, "TcpExt.TCPAbortOnMemory");
  Json rows = Json::array();
  for (uint32_t i = wa > 0 ? wa - 1 : 0; i < std::min<size_t>(wb + 2, n); ++i) {
    const auto o = orphans.value(i);
    const auto lim = ctx.limit(ns, "net.ipv4.tcp_max_orphans", i);
    Json j;
    j["t"] = ctx.time(i);
    j["orphans"] = o ? Json(*o) : Json(nullptr);
    j["tcp_max_orphans"] = lim ? Json(*lim) : Json(nullptr);
    j["ratio"] = ratio[i] < 0 ? Json(nullptr) : Json(ratio[i]);
    j["abort_on_memory_delta"] = aborts.any() ? aborts.delta_json(i) : Json(nullptr);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "orphans", {"tcp_max_orphans"});
  b.fact("class", "orphans_vs_limit");
  b.fact("peak_ratio", ratio[peak]);
  b.fact("seconds_over_warn", warn_s);
  b.fact("seconds_over_crit", std::max(crit_s, 0.0));
  b.fact("snapshots_over_warn", wb - wa + 1);
  b.fact("orphan_rows_in_netns", orphan_rows[ns]);
  b.fact("scope", "sockstat TCP.orphan and tcp_max_orphans are host-global");
  b.group("netns", "host orphans", "this host", "orphan pressure findings");
  out.add(std::move(b).build());
}

void abort_on_memory(const Context& ctx, uint32_t ns, Sink& out) {
  const CounterSeries& c = ctx.counter(ns, "TcpExt.TCPAbortOnMemory");
  const size_t n = ctx.snapshots();
  uint32_t first = k_na;
  uint32_t last = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (c.delta(i).value_or(0) > 0) {
      first = first == k_na ? c.from(i) : first;
      last = i;
    }
  }
  if (first == k_na) {
    return;
  }
  const int64_t total = c.total(first + 1, last);
  const CounterSeries& orphans = ctx.counter(ns, "TCP.orphan");
  const CounterSeries& mem = ctx.counter(ns, "TCP.mem");
  Json rows = Json::array();
  for (uint32_t i = first; i < std::min<size_t>(last + 2, n); ++i) {
    Json j;
    j["t"] = ctx.time(i);
    j["abort_on_memory_delta"] = c.delta_json(i);
    j["rate_per_s"] = c.rate(i);
    const auto o = orphans.value(i);
    j["orphans"] = o ? Json(*o) : Json(nullptr);
    const auto lim = ctx.limit(ns, "net.ipv4.tcp_max_orphans", i);
    j["tcp_max_orphans"] = lim ? Json(*lim) : Json(nullptr);
    const auto m = mem.value(i);
    j["tcp_mem_pages"] = m ? Json(*m) : Json(nullptr);
    rows.push_back(std::move(j));
  }
  FindingBuilder b(ctx, "orphan_pressure");
  b.netns(ns).seen(first, last).severity(Severity::critical).weight(static_cast<double>(total));
  b.summary("the kernel reset " + std::to_string(total) + " TCP connection(s) in "
            + num(ctx.seconds(first, last))
            + " s for lack of memory (TcpExt.TCPAbortOnMemory): too many orphaned sockets or "
              "tcp_mem exhausted");
  std::vector<int64_t> tcp_mem;
  for (size_t k = 0; k < 3; ++k) {
    if (const auto v = ctx.limit(ns, "net.ipv4.tcp_mem", last, k)) {
      tcp_mem.push_back(*v);
    }
  }
  b.fact("class", "abort_on_memory");
  b.fact("tcp_mem", tcp_mem.empty() ? Json(nullptr) : Json(tcp_mem));
  b.fact("abort_on_memory", total);
  b.series(std::move(rows), "abort_on_memory_delta");
  const std::string inode = std::to_string(ctx.timeline().netns[ns].inode);
  b.group("netns", inode + " aborts", "netns " + inode, "memory resets");
  out.add(std::move(b).build());
}

void stuck(const Context& ctx, const Track& t, Range r, Sink& out) {
  const Series& series = ctx.series();
  const Sample& first = t.samples[r.begin];
  const Sample& last = t.samples[r.end - 1];
  const double span = ctx.seconds(first.snap, last.snap);
  const uint32_t tx = last.tx_queue == k_na ? 0 : last.tx_queue;
  const std::string what =
      last.state == k_fin_wait1
          ? "closed with " + human_bytes(tx) + " unsent/unacked and stuck in FIN-WAIT-1"
                + (last.timer == 4 ? " behind a zero window (the peer does not read)"
                                   : " (the peer does not drain it)")
          : "stuck in " + state_name(last.state) + " (the peer never acknowledged our FIN: gone?)";
  const std::string peer = endpoint(series, t, false);
  FindingBuilder b(ctx, "orphan_pressure");
  b.socket(t, last).seen(first.snap, last.snap).weight(static_cast<double>(tx));
  b.severity(span >= ctx.param("stuck_warning_seconds") ? Severity::warning : Severity::info);
  b.summary("orphaned socket " + proto_name(t) + " " + endpoint(series, t, true) + " -> " + peer
            + " (no process, inode 0) " + what + " for " + num(span) + " s ("
            + std::to_string(r.size()) + " snapshots)");
  Json rows = Json::array();
  const Range shown_rows = Context::with_margin(t, r);
  for (size_t i = shown_rows.begin; i < shown_rows.end; ++i) {
    const Sample& x = t.samples[i];
    Json j;
    j["t"] = ctx.time(x.snap);
    j["state"] = state_name(x.state);
    j["inode"] = x.inode;
    j["tx_queue"] = opt(x.tx_queue, k_na);
    j["timer"] = opt(x.timer, k_na8);
    j["retrans"] = opt(x.retrans, k_na8);
    j["snd_wnd"] = opt(x.snd_wnd, k_na);
    j["bytes_acked"] = opt(x.bytes_acked, k_na64);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "tx_queue");
  b.fact("class", "stuck_" + state_name(last.state));
  b.fact("span_s", span);
  const auto o = ctx.counter(t.netns, "TCP.orphan").value(last.snap);
  b.fact("orphans_host", o ? Json(*o) : Json(nullptr));
  const auto lim = ctx.limit(t.netns, "net.ipv4.tcp_max_orphans", last.snap);
  b.fact("tcp_max_orphans", lim ? Json(*lim) : Json(nullptr));
  b.group("destination",
          std::to_string(t.netns) + " " + state_name(last.state) + " " + peer,
          "traffic to " + peer,
          "orphaned sockets stuck in " + state_name(last.state));
  out.add(std::move(b).build());
}

void fin_wait2(const Context& ctx, const Track& t, Range r, Sink& out) {
  const Sample& first = t.samples[r.begin];
  const Sample& last = t.samples[r.end - 1];
  const double span = ctx.seconds(first.snap, last.snap);
  FindingBuilder b(ctx, "orphan_pressure");
  b.socket(t, last).seen(first.snap, last.snap).severity(Severity::warning).weight(span);
  b.summary(ctx.owners_text(last) + " keeps " + proto_name(t) + " "
            + endpoint(ctx.series(), t, true) + " -> " + endpoint(ctx.series(), t, false)
            + " half-closed in FIN-WAIT-2 for " + num(span)
            + " s (shut down for writing, fd kept, the peer never closes): no timeout applies "
              "while the fd is open");
  Json rows = Json::array();
  for (size_t i = r.begin; i < r.end; ++i) {
    const Sample& x = t.samples[i];
    rows.push_back({{"t", ctx.time(x.snap)},
                    {"state", state_name(x.state)},
                    {"rx_queue", opt(x.rx_queue, k_na)},
                    {"timer", opt(x.timer, k_na8)}});
  }
  b.series(std::move(rows), "rx_queue");
  b.fact("class", "owned_fin_wait2");
  b.fact("span_s", span);
  b.group_by_owner(t, last, "half-closed sockets in FIN-WAIT-2");
  out.add(std::move(b).build());
}

// Sockets one at a time (stuck orphans, owned FIN-WAIT-2; orphan rows counted per netns), then
// each netns's counters.
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& out) override {
    if (t.family == k_af_unix || t.proto != k_proto_tcp) {
      return;
    }
    if (m_orphan_rows.size() <= t.netns) {
      m_orphan_rows.resize(t.netns + 1, 0);
    }
    for (const Sample& x : t.samples) {
      m_orphan_rows[t.netns] += orphan_row(x) ? 1U : 0U;
    }
    const Range s = longest(ctx, t, stuck_orphan);
    if (s.size() > 0
        && ctx.lasted(t.samples[s.begin].snap,
                      t.samples[s.end - 1].snap,
                      s.size(),
                      ctx.param("stuck_seconds"))) {
      stuck(ctx, t, s, out);
    }
    const Range w = longest(ctx, t, owned_fin_wait2);
    if (w.size() > 0
        && ctx.lasted(t.samples[w.begin].snap,
                      t.samples[w.end - 1].snap,
                      w.size(),
                      ctx.param("fin_wait2_seconds"))) {
      fin_wait2(ctx, t, w, out);
    }
  }

  void finish(const Context& ctx, Sink& out) override {
    m_orphan_rows.resize(std::max(m_orphan_rows.size(), ctx.timeline().netns.size()), 0);
    global_orphans(ctx, m_orphan_rows, out);
    for (uint32_t ns = 0; ns < ctx.timeline().netns.size(); ++ns) {
      abort_on_memory(ctx, ns, out);
    }
  }

private:
  std::vector<size_t> m_orphan_rows; // per netns index: orphan samples seen
};

} // namespace

Detector orphan_pressure_detector() {
  return {
      "orphan_pressure",
      "orphaned TCP sockets near tcp_max_orphans, resets for lack of memory, and stuck "
      "FIN-WAIT-1/LAST-ACK/FIN-WAIT-2 sockets",
      {
          {"warn_ratio",
           0.25,
           "sockstat orphans / tcp_max_orphans above which to warn",
           Unit::ratio},
          {"crit_ratio", 0.5, "orphans / tcp_max_orphans above which it is critical", Unit::ratio},
          {"over_seconds",
           4,
           "time over a ratio (snapshots in a row) before it counts",
           Unit::seconds},
          {"stuck_seconds",
           4,
           "an orphan in FIN-WAIT-1 (with data), LAST-ACK or CLOSING this long is reported "
           "(info)",
           Unit::seconds},
          {"stuck_warning_seconds", 300, "a stuck orphan this old is a warning", Unit::seconds},
          {"fin_wait2_seconds",
           600,
           "an owned FIN-WAIT-2 (shutdown, fd kept) this old is a warning",
           Unit::seconds},
      },
      nullptr,
      make_pass<Pass>};
}

} // namespace sockrewind::analyze
