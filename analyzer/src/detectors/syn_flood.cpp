// syn_flood (research/detectors.md D6): the SYN queue overflows (syncookies sent, or requests
// dropped), or a listener holds a pile of half-open SYN-RECV request sockets.
//   counters: rate of TcpExt TCPReqQFullDoCookies + TCPReqQFullDrop per interval > warn_rate
//             -> warning, > crit_rate -> critical;
//   pile-up:  SYN-RECV children of one listener >= pile_ratio x (max backlog + 1) (the SYN queue
//             holds backlog + 1) in every snapshot of a gap-free stretch lasting >= pile_seconds
//             (3 s) -> warning; a pile-up in one snapshot is a burst and stays quiet.
// Counter rates are per second (the toolkit's counter rule), so they mean the same at any
// interval. One finding per listening address with a pile-up (grouped by listener, every owner
// named), carrying the namespace's counter verdict when it is the only candidate; otherwise one
// netns finding for the counters. SyncookiesRecv/Sent tells a spoofed flood (clients never
// complete, ratio << 1) from overload (ratio near 1).
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <array>
#include <set>
#include <string_view>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

constexpr std::array<uint8_t, 1> k_recv_states{k_syn_recv};
constexpr std::array<std::string_view, 2> k_overflow_counters{"TcpExt.TCPReqQFullDoCookies",
                                                              "TcpExt.TCPReqQFullDrop"};

struct Counters {
  const CounterSeries* cookies = nullptr; // TCPReqQFullDoCookies
  const CounterSeries* drops = nullptr;   // TCPReqQFullDrop
  const CounterSeries* sum = nullptr;     // both
  const CounterSeries* sent = nullptr;    // SyncookiesSent
  const CounterSeries* recv = nullptr;    // SyncookiesRecv
  const CounterSeries* failed = nullptr;  // SyncookiesFailed
  Severity severity = Severity::info;
  bool fired = false;
  double peak_rate = 0;
  int64_t total = 0;
  std::vector<uint32_t> positive;
};

Counters judge_counters(const Context& ctx, uint32_t ns) {
  Counters c;
  c.cookies = &ctx.counter(ns, "TcpExt.TCPReqQFullDoCookies");
  c.drops = &ctx.counter(ns, "TcpExt.TCPReqQFullDrop");
  c.sum = &ctx.counter_sum(ns, k_overflow_counters);
  c.sent = &ctx.counter(ns, "TcpExt.SyncookiesSent");
  c.recv = &ctx.counter(ns, "TcpExt.SyncookiesRecv");
  c.failed = &ctx.counter(ns, "TcpExt.SyncookiesFailed");
  for (uint32_t i = 0; i < ctx.snapshots(); ++i) {
    const auto d = c.sum->delta(i);
    if (d && *d > 0) {
      c.positive.push_back(i);
      c.total += *d;
      c.peak_rate = std::max(c.peak_rate, c.sum->rate(i));
    }
  }
  if (c.peak_rate > ctx.param("crit_rate")) {
    c.severity = Severity::critical;
    c.fired = true;
  } else if (c.peak_rate > ctx.param("warn_rate")) {
    c.severity = Severity::warning;
    c.fired = true;
  }
  return c;
}

struct Pile {
  uint32_t listener = 0;
  std::vector<std::pair<uint32_t, uint32_t>> counts; // (snap, SYN-RECV children)
  size_t over = 0;                                   // snapshots at or above the bar
  double over_s = 0;                                 // longest gap-free stretch above it
  uint32_t peak = 0;
  std::set<uint32_t> remotes;          // Strings ids of remote addresses
  std::array<uint32_t, 7> retr_hist{}; // retr 0..5, 6+
};

bool piled(const Context& ctx, const Pile& p) {
  return p.over >= k_min_support && p.over_s >= ctx.param("pile_seconds");
}

void add_counter_evidence(const Context& ctx,
                          FindingBuilder& b,
                          uint32_t ns,
                          const Counters& c,
                          uint32_t lo,
                          uint32_t hi) {
  const int64_t sent = c.sent->total(lo + 1, hi);
  const int64_t recv = c.recv->total(lo + 1, hi);
  b.fact("reqq_full_do_cookies", c.cookies->total(lo + 1, hi));
  b.fact("reqq_full_drop", c.drops->total(lo + 1, hi));
  b.fact("syncookies_sent", sent);
  b.fact("syncookies_recv", recv);
  b.fact("syncookies_failed", c.failed->total(lo + 1, hi));
  b.fact("peak_rate_per_s", c.peak_rate);
  if (sent > 0) {
    const double ratio = static_cast<double>(recv) / static_cast<double>(sent);
    b.fact("cookie_recv_sent_ratio", ratio);
    b.fact("classification",
           ratio < 0.1 ? "spoofed flood or clients never completing the handshake (cookies not "
                         "returned)"
                       : "overload: legitimate clients complete via cookies (raise the backlog, "
                         "accept faster)");
  }
  Json sys = Json::object();
  for (const char* name : {"net.ipv4.tcp_syncookies",
                           "net.ipv4.tcp_max_syn_backlog",
                           "net.ipv4.tcp_synack_retries",
                           "net.core.somaxconn"}) {
    if (const auto v = ctx.limit(ns, name, hi)) {
      sys[name] = *v;
    }
  }
  b.fact("sysctls", std::move(sys));
}

std::string netns_key(const Context& ctx, uint32_t ns) {
  return std::to_string(ctx.timeline().netns[ns].inode);
}

void run_netns(const Context& ctx,
               uint32_t ns,
               const std::unordered_map<uint32_t, Pile>& piles,
               Sink& out) {
  const Series& series = ctx.series();
  const Counters c = judge_counters(ctx, ns);
  const auto n = static_cast<uint32_t>(ctx.snapshots());
  // Listeners of this netns with SYN-RECV children; those with a pile-up.
  std::vector<const Pile*> mine;
  std::vector<const Pile*> piled_up;
  for (const auto& [l, pile] : piles) {
    if (ctx.track(l).netns != ns) {
      continue;
    }
    mine.push_back(&pile);
    if (piled(ctx, pile)) {
      piled_up.push_back(&pile);
    }
  }
  const auto by_listener = [](const Pile* a, const Pile* b) { return a->listener < b->listener; };
  std::sort(mine.begin(), mine.end(), by_listener);
  std::sort(piled_up.begin(), piled_up.end(), by_listener);
  // The counter verdict goes to the single listener with a pile-up, or the single listener with
  // any SYN-RECV children; else to the namespace.
  const Pile* counter_owner = nullptr;
  if (c.fired) {
    if (piled_up.size() == 1) {
      counter_owner = piled_up.front();
    } else if (piled_up.empty() && mine.size() == 1) {
      counter_owner = mine.front();
    }
  }
  std::vector<const Pile*> report = piled_up;
  if (counter_owner != nullptr && piled_up.empty()) {
    report.push_back(counter_owner);
  }
  const uint32_t c_lo = c.positive.empty() ? 0 : c.sum->from(c.positive.front());
  const uint32_t c_hi = c.positive.empty() ? 0 : c.positive.back();

  for (const Pile* pile : report) {
    const Track& l = ctx.track(pile->listener);
    const bool with_counters = pile == counter_owner;
    const uint32_t first = pile->counts.front().first;
    const uint32_t last = pile->counts.back().first;
    const Sample* ls = sample_at(l, last);
    if (ls == nullptr) {
      ls = &l.samples.back();
    }
    Severity sev = piled(ctx, *pile) ? Severity::warning : Severity::info;
    if (with_counters) {
      sev = std::max(sev, c.severity);
    }
    const uint32_t lo = with_counters ? std::min(first, c_lo) : first;
    const uint32_t hi = with_counters ? std::max(last, c_hi) : last;
    const std::string ep = endpoint(series, l, true);
    FindingBuilder b(ctx, "syn_flood");
    b.socket(l, *ls).seen(lo, hi).severity(sev);
    b.weight(static_cast<double>(pile->peak) + static_cast<double>(c.total));
    std::string s = "listener " + ep + " SYN queue: up to " + std::to_string(pile->peak)
                    + " half-open SYN-RECV (>= " + num(ctx.param("pile_ratio") * 100)
                    + "% of backlog+1 = "
                    + (ls->tx_queue == k_na ? std::string("?") : std::to_string(ls->tx_queue + 1))
                    + " for " + num(pile->over_s) + " s) from "
                    + std::to_string(pile->remotes.size()) + " remote addresses";
    if (with_counters) {
      s += "; SYN queue overflowed " + std::to_string(c.total) + " times (cookies or drops, peak "
           + num(c.peak_rate) + "/s)";
    }
    s += "; clients' handshakes do not complete (flood, lost ACKs or overload); listener held by "
         + ctx.owners_text(*ls);
    b.summary(std::move(s));
    b.fact("syn_recv_peak", pile->peak);
    b.fact("snapshots_over_bar", pile->over);
    b.fact("seconds_over_bar", pile->over_s);
    b.fact("distinct_remote_addresses", pile->remotes.size());
    Json hist = Json::object();
    for (size_t r = 0; r < pile->retr_hist.size(); ++r) {
      if (pile->retr_hist[r] > 0) {
        hist[r + 1 == pile->retr_hist.size() ? "6+" : std::to_string(r)] = pile->retr_hist[r];
      }
    }
    b.fact("retrans_histogram", std::move(hist));
    Json top = Json::array();
    for (const uint32_t a : pile->remotes) {
      if (top.size() >= 10) {
        break;
      }
      top.push_back(series.strings.at(a));
    }
    b.fact("remote_addresses", std::move(top));
    if (with_counters) {
      add_counter_evidence(ctx, b, ns, c, lo, hi);
    }
    Json rows = Json::array();
    size_t k = 0;
    for (uint32_t i = lo > 0 ? lo - 1 : 0; i <= std::min<uint32_t>(hi + 1, n - 1); ++i) {
      const Sample* x = sample_at(l, i);
      while (k < pile->counts.size() && pile->counts[k].first < i) {
        ++k;
      }
      Json j;
      j["t"] = ctx.time(i);
      j["syn_recv"] =
          k < pile->counts.size() && pile->counts[k].first == i ? pile->counts[k].second : 0;
      j["syn_queue_max"] =
          x == nullptr || x->tx_queue == k_na ? Json(nullptr) : Json(x->tx_queue + 1);
      j["max_backlog"] = x == nullptr || x->tx_queue == k_na ? Json(nullptr) : Json(x->tx_queue);
      j["accept_queue"] = x == nullptr || x->rx_queue == k_na ? Json(nullptr) : Json(x->rx_queue);
      if (with_counters) {
        j["reqq_full_do_cookies_delta"] = c.cookies->delta_json(i);
        j["reqq_full_drop_delta"] = c.drops->delta_json(i);
        j["syncookies_recv_delta"] = c.recv->delta_json(i);
      }
      rows.push_back(std::move(j));
    }
    b.series(std::move(rows), "syn_recv", {"syn_queue_max"});
    b.group("listener",
            std::to_string(ns) + " tcp " + ep,
            "at listener " + ep,
            "listening sockets with half-open connections");
    out.add(std::move(b).build());
  }

  if (!c.fired || counter_owner != nullptr) {
    return;
  }
  FindingBuilder b(ctx, "syn_flood");
  b.netns(ns).seen(c.positive.front(), c_hi).severity(c.severity);
  b.weight(static_cast<double>(c.total));
  std::string where;
  for (const Pile* pile : mine) {
    const Track& l = ctx.track(pile->listener);
    where += (where.empty() ? "" : "; ") + endpoint(series, l, true) + " ("
             + ctx.owners_text(l.samples.back()) + ")";
  }
  b.summary("SYN queue overflowed " + std::to_string(c.total)
            + " times (syncookies sent or requests dropped, peak " + num(c.peak_rate)
            + "/s) in netns " + netns_key(ctx, ns) + "; "
            + (where.empty() ? std::string("no listener held SYN-RECV sockets in a snapshot")
                             : "listeners with half-open connections: " + where));
  add_counter_evidence(ctx, b, ns, c, c_lo, c_hi);
  Json cands = Json::array();
  for (const Pile* pile : mine) {
    Json j;
    j["local"] = endpoint(series, ctx.track(pile->listener), true);
    j["syn_recv_peak"] = pile->peak;
    cands.push_back(std::move(j));
  }
  b.fact("listeners", std::move(cands));
  Json rows = Json::array();
  for (uint32_t i = c_lo; i <= std::min<uint32_t>(c_hi + 1, n - 1); ++i) {
    Json j;
    j["t"] = ctx.time(i);
    j["reqq_full_do_cookies_delta"] = c.cookies->delta_json(i);
    j["reqq_full_drop_delta"] = c.drops->delta_json(i);
    j["syncookies_sent_delta"] = c.sent->delta_json(i);
    j["syncookies_recv_delta"] = c.recv->delta_json(i);
    j["interval_s"] = c.sum->delta(i) ? Json(c.sum->dt(i)) : Json(nullptr);
    j["rate_per_s"] = c.sum->rate(i);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "rate_per_s");
  b.group(
      "netns", netns_key(ctx, ns), "in netns " + netns_key(ctx, ns), "SYN queue overflow episodes");
  out.add(std::move(b).build());
}

void check(const Context& ctx, Sink& out) {
  const auto& children = ctx.children(k_recv_states);
  std::unordered_map<uint32_t, Pile> piles;
  for (const auto& [l, kids] : children) {
    Pile& pile = piles[l];
    pile.listener = l;
    const Track& lt = ctx.track(l);
    for (const Child& c : kids) {
      if (pile.counts.empty() || pile.counts.back().first != c.snap) {
        pile.counts.emplace_back(c.snap, 0);
      }
      pile.counts.back().second++;
      const Track& ct = ctx.track(c.track);
      if (ct.remote_addr != k_na) {
        pile.remotes.insert(ct.remote_addr);
      }
      const Sample* x = sample_at(ct, c.snap);
      if (x != nullptr && x->retrans != k_na8) {
        pile.retr_hist[std::min<size_t>(x->retrans, pile.retr_hist.size() - 1)]++;
      }
    }
    // Snapshots over the bar, and the longest gap-free stretch of them.
    uint32_t from = k_na;
    uint32_t prev = k_na;
    for (const auto& [snap, count] : pile.counts) {
      pile.peak = std::max(pile.peak, count);
      const Sample* x = sample_at(lt, snap);
      const bool over = x != nullptr && x->tx_queue != k_na
                        && static_cast<double>(count)
                               >= ctx.param("pile_ratio") * (static_cast<double>(x->tx_queue) + 1);
      const bool next = prev != k_na && snap == prev + 1
                        && ctx.timeline().snaps[snap].run == ctx.timeline().snaps[prev].run;
      if (!over) {
        from = k_na;
        prev = k_na;
        continue;
      }
      ++pile.over;
      from = next && from != k_na ? from : snap;
      prev = snap;
      pile.over_s = std::max(pile.over_s, ctx.seconds(from, snap));
    }
  }
  for (uint32_t ns = 0; ns < ctx.timeline().netns.size(); ++ns) {
    run_netns(ctx, ns, piles, out);
  }
}

} // namespace

Detector syn_flood_detector() {
  return {
      "syn_flood",
      "SYN queue overflow (syncookies, request drops) or a SYN-RECV pile-up at a listener",
      {
          {"warn_rate",
           1,
           "TCPReqQFullDoCookies + TCPReqQFullDrop per second: warning",
           Unit::per_second},
          {"crit_rate",
           5,
           "TCPReqQFullDoCookies + TCPReqQFullDrop per second: critical",
           Unit::per_second},
          {"pile_ratio",
           0.5,
           "SYN-RECV children / (max backlog + 1) that counts as a pile-up",
           Unit::ratio},
          {"pile_seconds", 3, "a pile-up lasting this long (gap-free) is a warning", Unit::seconds},
      },
      &check,
      nullptr,
      &listener_or_child};
}

} // namespace sockrewind::analyze
