// syn_flood (research/detectors.md D6): the SYN queue overflows (syncookies sent, or requests
// dropped), or a listener holds a pile of half-open SYN-RECV request sockets.
//   counters: rate of TcpExt TCPReqQFullDoCookies + TCPReqQFullDrop per interval > warn_rate
//             -> warning, > crit_rate -> critical;
//   pile-up:  SYN-RECV children of one listener >= pile_ratio x (max backlog + 1) (the SYN queue
//             holds backlog + 1) in >= min_samples snapshots -> warning.
// One finding per listener with a pile-up, carrying the namespace's counter verdict when it is
// the only candidate; otherwise a namespace finding for the counters. SyncookiesRecv/Sent tells
// a spoofed flood (clients never complete, ratio << 1) from overload (ratio near 1).
#include "listen_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <array>
#include <set>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

using listen_util::Deltas;

constexpr std::array<uint8_t, 1> k_recv_states{k_syn_recv};

struct Counters {
  Deltas cookies; // TCPReqQFullDoCookies
  Deltas drops;   // TCPReqQFullDrop
  Deltas sum;     // both
  Deltas sent;    // SyncookiesSent
  Deltas recv;    // SyncookiesRecv
  Deltas failed;  // SyncookiesFailed
  Severity severity = Severity::info;
  bool fired = false;
  double peak_rate = 0;
  int64_t total = 0;
  std::vector<uint32_t> positive;
};

Counters judge_counters(const Series& s, const Timeline& tl, uint32_t ns, const Params& p) {
  Counters c;
  c.cookies = listen_util::deltas(s, tl, ns, "TcpExt.TCPReqQFullDoCookies");
  c.drops = listen_util::deltas(s, tl, ns, "TcpExt.TCPReqQFullDrop");
  c.sum = listen_util::sum_deltas({c.cookies, c.drops}, tl.snaps.size());
  c.sent = listen_util::deltas(s, tl, ns, "TcpExt.SyncookiesSent");
  c.recv = listen_util::deltas(s, tl, ns, "TcpExt.SyncookiesRecv");
  c.failed = listen_util::deltas(s, tl, ns, "TcpExt.SyncookiesFailed");
  for (uint32_t i = 0; i < c.sum.delta.size(); ++i) {
    if (c.sum.delta[i] > 0) {
      c.positive.push_back(i);
      c.total += c.sum.delta[i];
      c.peak_rate = std::max(c.peak_rate, listen_util::rate(c.sum, i));
    }
  }
  if (c.peak_rate > p.get("crit_rate")) {
    c.severity = Severity::critical;
    c.fired = true;
  } else if (c.peak_rate > p.get("warn_rate")) {
    c.severity = Severity::warning;
    c.fired = true;
  }
  return c;
}

struct Pile {
  uint32_t listener = 0;
  std::vector<std::pair<uint32_t, uint32_t>> counts; // (snap, SYN-RECV children)
  size_t over = 0;                                   // snapshots at or above the bar
  uint32_t peak = 0;
  std::set<uint32_t> remotes;          // Strings ids of remote addresses
  std::array<uint32_t, 7> retr_hist{}; // retr 0..5, 6+
};

void add_counter_evidence(
    Finding& f, const Timeline& tl, uint32_t ns, const Counters& c, uint32_t lo, uint32_t hi) {
  const int64_t sent = listen_util::total(c.sent, lo, hi);
  const int64_t recv = listen_util::total(c.recv, lo, hi);
  f.evidence["reqq_full_do_cookies"] = listen_util::total(c.cookies, lo, hi);
  f.evidence["reqq_full_drop"] = listen_util::total(c.drops, lo, hi);
  f.evidence["syncookies_sent"] = sent;
  f.evidence["syncookies_recv"] = recv;
  f.evidence["syncookies_failed"] = listen_util::total(c.failed, lo, hi);
  f.evidence["peak_rate_per_s"] = c.peak_rate;
  if (sent > 0) {
    const double ratio = static_cast<double>(recv) / static_cast<double>(sent);
    f.evidence["cookie_recv_sent_ratio"] = ratio;
    f.evidence["classification"] = ratio < 0.1 ? "spoofed flood or clients never completing"
                                                 " the handshake (cookies not returned)"
                                               : "overload: legitimate clients complete via "
                                                 "cookies (raise the backlog, accept faster)";
  }
  for (const char* name : {"net.ipv4.tcp_syncookies",
                           "net.ipv4.tcp_max_syn_backlog",
                           "net.ipv4.tcp_synack_retries",
                           "net.core.somaxconn"}) {
    const int64_t v = listen_util::limit_first(tl, ns, name, hi);
    if (v >= 0) {
      f.evidence["sysctls"][name] = v;
    }
  }
}

void run_netns(const Series& series,
               const Timeline& tl,
               uint32_t ns,
               const std::unordered_map<uint32_t, Pile>& piles,
               const Params& p,
               std::vector<Finding>& out) {
  const Counters c = judge_counters(series, tl, ns, p);
  const size_t n = tl.snaps.size();
  // Listeners of this netns with SYN-RECV children; those with a pile-up.
  std::vector<const Pile*> mine;
  std::vector<const Pile*> piled;
  for (const auto& [l, pile] : piles) {
    if (tl.tracks[l].netns != ns) {
      continue;
    }
    mine.push_back(&pile);
    if (static_cast<double>(pile.over) >= p.get("min_samples")) {
      piled.push_back(&pile);
    }
  }
  const auto by_listener = [](const Pile* a, const Pile* b) { return a->listener < b->listener; };
  std::sort(mine.begin(), mine.end(), by_listener);
  std::sort(piled.begin(), piled.end(), by_listener);
  // The counter verdict goes to the single listener with a pile-up, or the single listener with
  // any SYN-RECV children; else to the namespace.
  const Pile* counter_owner = nullptr;
  if (c.fired) {
    if (piled.size() == 1) {
      counter_owner = piled.front();
    } else if (piled.empty() && mine.size() == 1) {
      counter_owner = mine.front();
    }
  }
  std::vector<const Pile*> report = piled;
  if (counter_owner != nullptr && piled.empty()) {
    report.push_back(counter_owner);
  }
  const uint32_t c_lo = c.positive.empty() ? 0 : c.sum.from[c.positive.front()];
  const uint32_t c_hi = c.positive.empty() ? 0 : c.positive.back();

  for (const Pile* pile : report) {
    const Track& l = tl.tracks[pile->listener];
    const bool with_counters = pile == counter_owner;
    const uint32_t first = pile->counts.front().first;
    const uint32_t last = pile->counts.back().first;
    const Sample* ls = sample_at(l, last);
    if (ls == nullptr) {
      ls = &l.samples.back();
    }
    const bool is_pile = static_cast<double>(pile->over) >= p.get("min_samples");
    Finding f;
    f.detector = "syn_flood";
    f.severity = is_pile ? Severity::warning : Severity::info;
    if (with_counters) {
      f.severity = std::max(f.severity, c.severity);
    }
    f.subject = socket_subject(series, tl, l, *ls);
    set_owner(f, tl, ls->owner);
    const uint32_t lo = with_counters ? std::min(first, c_lo) : first;
    const uint32_t hi = with_counters ? std::max(last, c_hi) : last;
    f.first_seen_ns = tl.snaps[lo].realtime_ns;
    f.last_seen_ns = tl.snaps[hi].realtime_ns;
    f.weight = static_cast<double>(pile->peak) + static_cast<double>(c.total);
    std::string s = "listener " + endpoint(series, l, true) + " SYN queue: up to "
                    + std::to_string(pile->peak) + " half-open SYN-RECV ("
                    + std::to_string(pile->over) + " snapshots >= " + num(p.get("pile_ratio") * 100)
                    + "% of backlog+1 = "
                    + (ls->tx_queue == k_na ? std::string("?") : std::to_string(ls->tx_queue + 1))
                    + ") from " + std::to_string(pile->remotes.size()) + " remote addresses";
    if (with_counters) {
      s += "; SYN queue overflowed " + std::to_string(c.total) + " times (cookies or drops, peak "
           + num(c.peak_rate) + "/s)";
    }
    s += "; clients' handshakes do not complete (flood, lost ACKs or overload); owner "
         + listen_util::owner_text(series, tl, ls->owner, "none seen");
    f.summary = std::move(s);
    f.evidence["syn_recv_peak"] = pile->peak;
    f.evidence["snapshots_over_bar"] = pile->over;
    f.evidence["distinct_remote_addresses"] = pile->remotes.size();
    Json hist = Json::object();
    for (size_t r = 0; r < pile->retr_hist.size(); ++r) {
      if (pile->retr_hist[r] > 0) {
        hist[r + 1 == pile->retr_hist.size() ? "6+" : std::to_string(r)] = pile->retr_hist[r];
      }
    }
    f.evidence["retrans_histogram"] = std::move(hist);
    Json top = Json::array();
    for (const uint32_t a : pile->remotes) {
      if (top.size() >= 10) {
        break;
      }
      top.push_back(series.strings.at(a));
    }
    f.evidence["remote_addresses"] = std::move(top);
    if (with_counters) {
      add_counter_evidence(f, tl, ns, c, lo, hi);
    }
    Json ser = Json::array();
    size_t k = 0;
    for (uint32_t i = lo > 0 ? lo - 1 : 0;
         i <= std::min<uint32_t>(hi + 1, static_cast<uint32_t>(n - 1));
         ++i) {
      const Sample* x = sample_at(l, i);
      while (k < pile->counts.size() && pile->counts[k].first < i) {
        ++k;
      }
      Json j;
      j["t"] = snap_time(tl, i);
      j["syn_recv"] =
          k < pile->counts.size() && pile->counts[k].first == i ? pile->counts[k].second : 0;
      j["max_backlog"] = x == nullptr ? Json(nullptr) : listen_util::opt(x->tx_queue);
      j["accept_queue"] = x == nullptr ? Json(nullptr) : listen_util::opt(x->rx_queue);
      if (with_counters) {
        j["reqq_full_do_cookies_delta"] = listen_util::delta_json(c.cookies, i);
        j["reqq_full_drop_delta"] = listen_util::delta_json(c.drops, i);
        j["syncookies_recv_delta"] = listen_util::delta_json(c.recv, i);
      }
      ser.push_back(std::move(j));
    }
    f.evidence["series"] = std::move(ser);
    out.push_back(std::move(f));
  }

  if (!c.fired || counter_owner != nullptr) {
    return;
  }
  Finding f;
  f.detector = "syn_flood";
  f.severity = c.severity;
  f.subject = netns_subject(tl, ns);
  f.first_seen_ns = tl.snaps[c.positive.front()].realtime_ns;
  f.last_seen_ns = tl.snaps[c_hi].realtime_ns;
  f.weight = static_cast<double>(c.total);
  std::string where;
  for (const Pile* pile : mine) {
    where += (where.empty() ? "" : ", ") + endpoint(series, tl.tracks[pile->listener], true);
  }
  f.summary = "SYN queue overflowed " + std::to_string(c.total)
              + " times (syncookies sent or "
                "requests dropped, peak "
              + num(c.peak_rate) + "/s) in netns " + std::to_string(tl.netns[ns].inode) + "; "
              + (where.empty() ? std::string("no listener held SYN-RECV sockets in a snapshot")
                               : "listeners with half-open connections: " + where);
  add_counter_evidence(f, tl, ns, c, c_lo, c_hi);
  Json cands = Json::array();
  for (const Pile* pile : mine) {
    Json j;
    j["local"] = endpoint(series, tl.tracks[pile->listener], true);
    j["syn_recv_peak"] = pile->peak;
    cands.push_back(std::move(j));
  }
  f.evidence["listeners"] = std::move(cands);
  Json ser = Json::array();
  for (uint32_t i = c_lo; i <= std::min<uint32_t>(c_hi + 1, static_cast<uint32_t>(n - 1)); ++i) {
    Json j;
    j["t"] = snap_time(tl, i);
    j["reqq_full_do_cookies_delta"] = listen_util::delta_json(c.cookies, i);
    j["reqq_full_drop_delta"] = listen_util::delta_json(c.drops, i);
    j["syncookies_sent_delta"] = listen_util::delta_json(c.sent, i);
    j["syncookies_recv_delta"] = listen_util::delta_json(c.recv, i);
    j["interval_s"] = c.sum.at(i) < 0 ? Json(nullptr) : Json(c.sum.dt[i]);
    j["rate_per_s"] = listen_util::rate(c.sum, i);
    ser.push_back(std::move(j));
  }
  f.evidence["series"] = std::move(ser);
  out.push_back(std::move(f));
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const ListenerIndex li(series, tl);
  const auto children = children_by_listener(tl, li, k_recv_states);
  std::unordered_map<uint32_t, Pile> piles;
  for (const auto& [l, kids] : children) {
    Pile& pile = piles[l];
    pile.listener = l;
    const Track& lt = tl.tracks[l];
    for (const Child& c : kids) {
      if (pile.counts.empty() || pile.counts.back().first != c.snap) {
        pile.counts.emplace_back(c.snap, 0);
      }
      pile.counts.back().second++;
      const Track& ct = tl.tracks[c.track];
      if (ct.remote_addr != k_na) {
        pile.remotes.insert(ct.remote_addr);
      }
      const Sample* x = sample_at(ct, c.snap);
      if (x != nullptr && x->retrans != k_na8) {
        pile.retr_hist[std::min<size_t>(x->retrans, pile.retr_hist.size() - 1)]++;
      }
    }
    for (const auto& [snap, count] : pile.counts) {
      pile.peak = std::max(pile.peak, count);
      const Sample* x = sample_at(lt, snap);
      if (x != nullptr && x->tx_queue != k_na
          && static_cast<double>(count)
                 >= p.get("pile_ratio") * (static_cast<double>(x->tx_queue) + 1)) {
        ++pile.over;
      }
    }
  }
  for (uint32_t ns = 0; ns < tl.netns.size(); ++ns) {
    run_netns(series, tl, ns, piles, p, out);
  }
}

} // namespace

Detector syn_flood_detector() {
  return {"syn_flood",
          "SYN queue overflow (syncookies, request drops) or a SYN-RECV pile-up at a listener",
          {
              {"warn_rate", 1, "TCPReqQFullDoCookies + TCPReqQFullDrop per second: warning"},
              {"crit_rate", 5, "TCPReqQFullDoCookies + TCPReqQFullDrop per second: critical"},
              {"pile_ratio", 0.5, "SYN-RECV children / (max backlog + 1) that counts as a pile-up"},
              {"min_samples", 2, "snapshots with a pile-up for a warning"},
          },
          &run};
}

} // namespace sockrewind::analyze
