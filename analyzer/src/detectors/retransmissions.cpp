// retransmissions (research/detectors.md D18): retransmission storms.
//   namespace: per counter interval, ratio = ΔTcp.RetransSegs / (ΔTcp.OutSegs + ΔRetransSegs)
//       (OutSegs excludes retransmits, so this is the share of segments sent that were
//       retransmits, never over 100 %) and rate = ΔRetransSegs / Δt. An interval is bad when
//       ratio > warn_ratio and rate >= min_rate; bad intervals in a row lasting >= min_seconds
//       -> warning; over crit_ratio for >= crit_seconds -> critical.
//       The kind: TCPSynRetrans (SYN and SYN-ACK retries), RTO timeouts (TCPTimeouts, which
//       also counts SYN timeouts: TCPTimeouts - TCPSynRetrans), TCPFastRetrans and
//       TCPSlowStartRetrans; every kind within 25 % of the largest is named (no silent tie).
//       SYN retries are tied to a local listener when connects in SYN-SENT toward it are seen
//       (the listener and its owners are the subject; its ListenOverflows/ListenDrops are
//       named), else to the netns's listen drops when they rose meanwhile. Otherwise the top
//       socket and its owners are named.
//   peer: when the namespace ratio stays low (diluted by healthy traffic), one remote address
//       with Σ Δtotal_retrans / Σ Δsegs_out > peer_ratio over >= peer_min_segments segments, in
//       intervals over peer_ratio covering >= min_seconds -> warning, naming the owners.
// OutSegs counts pure ACKs and GSO-split segments too: the ratio is an approximation, compared
// only within one host. One finding per netns, listener or destination.
// A TrackPass that keeps what grows with the sockets alive, the peers and the storms, not with
// the length of the series: each TCP socket, as it is seen, is added to its remote address's
// totals, and what the namespace finding reads of it is kept only within the intervals its
// counters find bad (its window is a run of them; see BadIntervals): its steps and, in runs,
// the state and owners of its samples there (when it retransmitted there), its SYN-SENT samples
// there, its LISTEN samples in runs of the same inode and owners (a listener lasts the series).
// A peer's rule reads its intervals and the top sockets of its span, which only its totals (known
// at the end) say are needed: when a peer's totals warn in a netns whose counters did not fire,
// every track of the timeline is looked at again for it (from the timeline when it holds them
// all, else from the files loaded again). Ties (equal retransmits, two listeners a connect could
// aim at) go to the socket first seen, then by its endpoints.
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/load.hpp>        // LoadError
#include <sockrewind/analyze/sample_pack.hpp> // put_varint, get_varint
#include <sockrewind/analyze/series.hpp>      // load_series (a second look)
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <deque>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace sockrewind::analyze {

namespace {

bool is_tcp(const Track& t) {
  return t.family != k_af_unix && t.proto == k_proto_tcp;
}

// Segments retransmitted and sent between a socket's sample and its previous one (`snap`), when
// either moved.
struct Step {
  uint32_t snap = 0;
  uint32_t retrans = 0;
  uint64_t segs = 0;
};

// A socket's steps in snapshot order, packed (a retransmitting socket moves in nearly every
// interval, so there is about one step per sample): per step a varint of retrans << 1 | gap,
// where gap says the step is not one snapshot after the previous one (after `start` for the
// first), then a varint of that distance when gap, then a varint of segs.
class Steps {
public:
  explicit Steps(uint32_t start = 0) : m_start(start), m_last(start) {}

  void add(const Step& st) {
    const uint32_t d = st.snap - m_last;
    put((static_cast<uint64_t>(st.retrans) << 1U) | (d == 1 ? 0U : 1U));
    if (d != 1) {
      put(d);
    }
    put(st.segs);
    m_last = st.snap;
  }

  void shrink() { m_bytes.shrink_to_fit(); }

  size_t bytes() const { return m_bytes.size(); }

  // Calls f(step) for each step in order while it returns true.
  template <class F> void each(F f) const {
    size_t i = 0;
    Step st;
    st.snap = m_start;
    while (i < m_bytes.size()) {
      const uint64_t head = get(i);
      st.snap += (head & 1U) == 0 ? 1 : static_cast<uint32_t>(get(i));
      st.retrans = static_cast<uint32_t>(head >> 1U);
      st.segs = get(i);
      if (!f(st)) {
        return;
      }
    }
  }

private:
  void put(uint64_t v) { put_varint(m_bytes, v); }

  uint64_t get(size_t& i) const { return get_varint(m_bytes, i); }

  uint32_t m_start = 0;
  uint32_t m_last = 0;
  std::vector<uint8_t> m_bytes;
};

// Consecutive snapshots (no gap) in which a socket's samples had the same state and owners: what
// a top socket's line names of its last sample in a window.
struct Run {
  uint32_t first = 0;
  uint32_t last = 0;
  uint32_t owner = k_na;
  uint32_t owner_set = k_na;
  uint8_t state = 0;

  // The sample at `snap` (within the run) as far as state and owners go.
  Sample at(uint32_t snap) const {
    Sample x;
    x.snap = snap;
    x.state = state;
    x.owner = owner;
    x.owner_set = owner_set;
    return x;
  }
};

// LISTEN samples of consecutive snapshots with the same inode and owners: what a listener's
// subject and owners need of its sample in a snapshot (a listener lives as long as the series:
// its samples are not kept).
struct Listening {
  uint32_t first = 0;
  uint32_t last = 0;
  uint32_t inode = 0;
  uint32_t owner = k_na;
  uint32_t owner_set = k_na;

  Sample at(uint32_t snap) const {
    Sample x;
    x.snap = snap;
    x.state = k_listen;
    x.inode = inode;
    x.owner = owner;
    x.owner_set = owner_set;
    return x;
  }
};

// What is kept of a TCP socket for finish() (kept_of): its SYN-SENT samples (connects) in `t`
// and its LISTEN samples as Listening runs (listeners); for one that retransmitted (a
// consecutive pair of samples with total_retrans rising: only those can be a top socket or peer
// of a window), its steps and runs besides. Nothing of a socket that is none of these.
struct Kept {
  Track t;
  uint32_t first = 0;       // the track's first snapshot and inode (its samples here may start
  uint32_t inode = 0;       // later)
  bool retransmits = false; // steps and runs are kept
  Steps steps;
  std::vector<Run> runs;
  std::vector<Listening> listening;

  // The LISTEN sample at `snap` (as far as inode and owners go), or nullopt.
  std::optional<Sample> listening_at(uint32_t snap) const {
    const auto it = std::upper_bound(listening.begin(),
                                     listening.end(),
                                     snap,
                                     [](uint32_t v, const Listening& r) { return v < r.first; });
    if (it == listening.begin() || std::prev(it)->last < snap) {
      return std::nullopt;
    }
    return std::prev(it)->at(snap);
  }

  // The last sample in (from, to], or nullopt.
  std::optional<Sample> last_in(uint32_t from, uint32_t to) const {
    const auto it = std::upper_bound(
        runs.begin(), runs.end(), to, [](uint32_t v, const Run& r) { return v < r.first; });
    if (it == runs.begin()) {
      return std::nullopt;
    }
    const Run& r = *std::prev(it);
    const uint32_t snap = std::min(r.last, to);
    if (snap <= from) {
      return std::nullopt;
    }
    return r.at(snap);
  }
};

// The runs of `t`'s samples.
std::vector<Run> runs_of(const Track& t) {
  std::vector<Run> out;
  for (const Sample& x : t.samples) {
    if (!out.empty()) {
      Run& r = out.back();
      if (r.last + 1 == x.snap && r.state == x.state && r.owner == x.owner
          && r.owner_set == x.owner_set) {
        r.last = x.snap;
        continue;
      }
    }
    out.push_back({x.snap, x.snap, x.owner, x.owner_set, x.state});
  }
  out.shrink_to_fit();
  return out;
}

// Segments the socket retransmitted, and sent, between two of its samples (0 when either is
// not captured or the counter went back).
uint64_t retrans_delta(const Sample& a, const Sample& b) {
  return a.total_retrans != k_na && b.total_retrans != k_na && b.total_retrans > a.total_retrans
             ? b.total_retrans - a.total_retrans
             : 0;
}

uint64_t segs_delta(const Sample& a, const Sample& b) {
  return a.segs_out != k_na && b.segs_out != k_na && b.segs_out > a.segs_out
             ? b.segs_out - a.segs_out
             : 0;
}

// The order of the kept sockets by what they are, whatever order the pass saw them in: first
// seen, then local and remote endpoint, cookie, inode. It breaks ties (equal retransmits, two
// listeners a connect could aim at) as the timeline's track order mostly does (tracks are in
// the order they were first seen).
bool kept_before(const Context& ctx, const Kept& a, const Kept& b) {
  const Strings& str = ctx.series().strings;
  const auto key = [&str](const Kept& k) {
    return std::make_tuple(k.first,
                           k.t.netns,
                           k.t.family,
                           k.t.proto,
                           str.get(k.t.local_addr),
                           k.t.local_port,
                           str.get(k.t.remote_addr),
                           k.t.remote_port,
                           k.t.cookie,
                           k.inode);
  };
  return key(a) < key(b);
}

// Per-socket retransmits and segments over snapshots (from, to].
struct SockSum {
  size_t order = 0; // in the kept sockets' order
  const Track* track = nullptr;
  uint64_t retrans = 0;
  uint64_t segs = 0;
  Sample last; // the last sample in the window, as far as state and owners go
};

// Over the sockets that retransmitted (no other one has retransmits in any window).
std::vector<SockSum>
socket_sums(const std::vector<const Kept*>& kept, uint32_t netns, uint32_t from, uint32_t to) {
  std::vector<SockSum> out;
  for (size_t k = 0; k < kept.size(); ++k) {
    const Track& t = kept[k]->t;
    if (!kept[k]->retransmits || t.netns != netns) {
      continue;
    }
    const std::optional<Sample> last = kept[k]->last_in(from, to);
    if (!last) {
      continue;
    }
    SockSum s{k, &t, 0, 0, *last};
    kept[k]->steps.each([&s, from, to](const Step& st) {
      if (st.snap > to) {
        return false;
      }
      if (st.snap > from) {
        s.retrans += st.retrans;
        s.segs += st.segs;
      }
      return true;
    });
    if (s.retrans > 0 || s.segs > 0) {
      out.push_back(s);
    }
  }
  std::sort(out.begin(), out.end(), [](const SockSum& a, const SockSum& b) {
    return a.retrans != b.retrans ? a.retrans > b.retrans : a.order < b.order;
  });
  return out;
}

Json top_sockets(const Context& ctx, const std::vector<SockSum>& sums) {
  Json js = Json::array();
  for (const SockSum& s : sums) {
    if (s.retrans == 0 || js.size() >= 10) {
      break;
    }
    const Track& t = *s.track;
    const uint32_t who = ctx.culprit(s.last);
    Json j;
    j["local"] = endpoint(ctx.series(), t, true);
    j["remote"] = endpoint(ctx.series(), t, false);
    j["state"] = state_name(s.last.state);
    j["retrans_delta"] = s.retrans;
    j["segs_out_delta"] = s.segs;
    j["ratio"] = s.segs > 0 ? Json(static_cast<double>(s.retrans) / static_cast<double>(s.segs))
                            : Json(nullptr);
    j["pid"] = who == k_na ? Json(nullptr) : Json(ctx.processes()[who].pid);
    j["comm"] =
        who == k_na ? Json(nullptr) : Json(ctx.series().strings.get(ctx.processes()[who].comm));
    j["owners"] = ctx.owners_text(s.last);
    js.push_back(std::move(j));
  }
  return js;
}

// Remote addresses by retransmits, with the processes holding their sockets.
Json top_peers(const Context& ctx, const std::vector<SockSum>& sums) {
  std::map<std::string, std::pair<uint64_t, std::set<std::string>>> peers;
  for (const SockSum& s : sums) {
    if (s.retrans == 0) {
      continue;
    }
    auto& p = peers[std::string(ctx.series().strings.get(s.track->remote_addr))];
    p.first += s.retrans;
    p.second.insert(ctx.owners_text(s.last));
  }
  std::vector<std::pair<std::string, std::pair<uint64_t, std::set<std::string>>>> v(peers.begin(),
                                                                                    peers.end());
  std::stable_sort(v.begin(), v.end(), [](const auto& a, const auto& b) {
    return a.second.first > b.second.first;
  });
  Json out = Json::array();
  for (size_t i = 0; i < v.size() && i < 10; ++i) {
    out.push_back({{"remote", v[i].first},
                   {"retrans_delta", v[i].second.first},
                   {"owners", v[i].second.second}});
  }
  return out;
}

struct Kind {
  std::string_view name;
  std::string_view hint;
  int64_t n = 0;
};

bool wildcard(std::string_view addr) {
  return addr == "0.0.0.0" || addr == "::";
}

// The local listener most SYN-SENT sockets of `netns` aim at in (from, to] (the first in the
// kept order on a tie): the listener (nullptr when none) with the connecting sockets.
struct SynTarget {
  const Track* listener = nullptr;
  Sample listen; // the listener's LISTEN sample in the snapshot of its first connect's SYN
  std::vector<const Sample*> connects; // SYN-SENT samples, one per connecting socket
};

SynTarget syn_target(const Context& ctx,
                     const std::vector<const Kept*>& kept,
                     uint32_t netns,
                     uint32_t from,
                     uint32_t to) {
  const Strings& str = ctx.series().strings;
  std::map<size_t, SynTarget> by_listener; // kept order -> target
  for (const Kept* k : kept) {
    const Track& t = k->t;
    if (t.netns != netns) {
      continue;
    }
    const Sample* syn = nullptr;
    for (const Sample& x : t.samples) {
      if (x.snap >= from && x.snap <= to && x.state == k_syn_sent) {
        syn = &x;
      }
    }
    if (syn == nullptr) {
      continue;
    }
    for (size_t li = 0; li < kept.size(); ++li) {
      const Track& l = kept[li]->t;
      if (l.netns != netns || l.local_port != t.remote_port || l.family != t.family
          || (l.local_addr != t.remote_addr && !wildcard(str.get(l.local_addr)))) {
        continue;
      }
      const std::optional<Sample> ls = kept[li]->listening_at(syn->snap);
      if (!ls) {
        continue;
      }
      SynTarget& st = by_listener[li];
      st.listener = &l;
      st.listen = *ls;
      st.connects.push_back(syn);
      break;
    }
  }
  SynTarget best;
  for (auto& [li, st] : by_listener) {
    if (st.connects.size() > best.connects.size()) {
      best = std::move(st);
    }
  }
  return best;
}

// One counter interval of a netns (from, to]: its retransmits, other segments sent, their ratio
// and the retransmits per second.
struct Point {
  uint32_t from = 0;
  uint32_t to = 0;
  int64_t r = 0;
  int64_t o = 0;
  double ratio = 0;
  double rate = 0;

  // Over `bar` at the rate that counts.
  bool over(const Context& ctx, double bar) const {
    return ratio > bar && rate >= ctx.param("min_rate");
  }
};

// The interval ending at snapshot `i`, nullopt when the counters do not give one.
std::optional<Point> point_at(const CounterSeries& rs, const CounterSeries& os, uint32_t i) {
  const auto r = rs.delta(i);
  const auto o = os.delta(i);
  if (!r || !o || rs.dt(i) <= 0 || rs.from(i) != os.from(i)) {
    return std::nullopt;
  }
  Point p{rs.from(i), i, *r, *o, 0, rs.rate(i)};
  p.ratio = *r + *o > 0 ? static_cast<double>(*r) / static_cast<double>(*r + *o) : 0.0;
  return p;
}

void namespace_finding(
    const Context& ctx, const std::vector<const Kept*>& kept, uint32_t ns, Sink& out, bool& fired) {
  const CounterSeries& rs = ctx.counter(ns, "Tcp.RetransSegs");
  const CounterSeries& os = ctx.counter(ns, "Tcp.OutSegs");
  if (!rs.any() || !os.any()) {
    return;
  }

  std::vector<Point> pts;
  for (uint32_t i = 0; i < ctx.snapshots(); ++i) {
    if (const std::optional<Point> p = point_at(rs, os, i)) {
      pts.push_back(*p);
    }
  }
  // The longest run of intervals in a row over `bar` (by seconds).
  const auto longest = [&](double bar, size_t& b, size_t& e) {
    double best = -1;
    size_t begin = 0;
    for (size_t i = 0; i <= pts.size(); ++i) {
      const bool bad = i < pts.size() && pts[i].over(ctx, bar);
      const bool joined = bad && i > begin && pts[i - 1].to == pts[i].from;
      if (bad && (i == begin || joined)) {
        continue;
      }
      if (i > begin) {
        const double d = ctx.seconds(pts[begin].from, pts[i - 1].to);
        if (d > best) {
          best = d;
          b = begin;
          e = i;
        }
      }
      begin = bad ? i : i + 1;
    }
    return best;
  };
  size_t wb = 0;
  size_t we = 0;
  size_t cb = 0;
  size_t ce = 0;
  const double warn_s = longest(ctx.param("warn_ratio"), wb, we);
  const double crit_s = longest(ctx.param("crit_ratio"), cb, ce);
  if (warn_s < 0
      || !ctx.lasted(pts[wb].from, pts[we - 1].to, we - wb + 1, ctx.param("min_seconds"))) {
    return;
  }
  fired = true;
  const bool critical =
      crit_s >= 0
      && ctx.lasted(pts[cb].from, pts[ce - 1].to, ce - cb + 1, ctx.param("crit_seconds"));
  const uint32_t from = pts[wb].from;
  const uint32_t to = pts[we - 1].to;
  int64_t sum_r = 0;
  int64_t sum_o = 0;
  for (size_t i = wb; i < we; ++i) {
    sum_r += pts[i].r;
    sum_o += pts[i].o;
  }
  const double span = ctx.seconds(from, to);
  const double ratio =
      sum_r + sum_o > 0 ? static_cast<double>(sum_r) / static_cast<double>(sum_r + sum_o) : 0.0;
  // The kinds over the window.
  const auto total = [&](std::string_view name) -> std::optional<int64_t> {
    const CounterSeries& c = ctx.counter(ns, name);
    if (!c.any()) {
      return std::nullopt;
    }
    return c.total(from + 1, to);
  };
  Json kinds = Json::object();
  for (const std::string_view k : {"TcpExt.TCPTimeouts",
                                   "TcpExt.TCPSynRetrans",
                                   "TcpExt.TCPFastRetrans",
                                   "TcpExt.TCPSlowStartRetrans",
                                   "TcpExt.TCPLossProbes",
                                   "TcpExt.TCPLostRetransmit"}) {
    const auto v = total(k);
    kinds[std::string(k.substr(k.find('.') + 1))] = v ? Json(*v) : Json(nullptr);
  }
  const int64_t syn = total("TcpExt.TCPSynRetrans").value_or(0);
  std::array<Kind, 4> ks{{
      {"TCPSynRetrans", "SYN retries (connects not answered)", syn},
      {"TCPTimeouts",
       "RTO timeouts (blackhole or tail loss)",
       std::max<int64_t>(0, total("TcpExt.TCPTimeouts").value_or(0) - syn)},
      {"TCPFastRetrans",
       "fast retransmits (random loss or congestion)",
       total("TcpExt.TCPFastRetrans").value_or(0)},
      {"TCPSlowStartRetrans",
       "slow-start retransmits after a loss",
       total("TcpExt.TCPSlowStartRetrans").value_or(0)},
  }};
  std::stable_sort(ks.begin(), ks.end(), [](const Kind& a, const Kind& b) { return a.n > b.n; });
  Json dominant = Json::array();
  std::string hint;
  size_t named = 0;
  bool syn_led = false;
  for (const Kind& k : ks) {
    if (k.n > 0 && static_cast<double>(k.n) >= 0.75 * static_cast<double>(ks.front().n)) {
      dominant.push_back(k.name);
      syn_led = syn_led || k.name == "TCPSynRetrans";
      hint += (named++ == 0 ? "" : " and ") + std::string(k.hint) + " " + std::to_string(k.n);
    }
  }
  hint = named == 0 ? "kind not captured" : named == 1 ? "mostly " + hint : "a mix of " + hint;

  FindingBuilder b(ctx, "retransmissions");
  b.seen(from, to).severity(critical ? Severity::critical : Severity::warning).weight(ratio);
  std::string s = "TCP retransmissions: " + num(100.0 * ratio)
                  + "% of segments sent were retransmits ("
                  + num(static_cast<double>(sum_r) / std::max(span, 1e-9)) + "/s) for " + num(span)
                  + " s, " + hint;
  const std::vector<SockSum> sums = socket_sums(kept, ns, from, to);
  const CounterSeries& drops_c = ctx.counter(ns, "TcpExt.ListenDrops");
  const CounterSeries& over_c = ctx.counter(ns, "TcpExt.ListenOverflows");
  const int64_t listen_drops = std::max(drops_c.total(from + 1, to), over_c.total(from + 1, to));
  bool grouped = false;
  if (syn_led) {
    const SynTarget st = syn_target(ctx, kept, ns, from, to);
    if (st.listener != nullptr) {
      const Track& l = *st.listener;
      const Sample& ls = st.listen;
      const std::string lep = endpoint(ctx.series(), l, true);
      std::set<std::string> who;
      for (const Sample* x : st.connects) {
        who.insert(ctx.owners_text(*x, "no owning process"));
      }
      std::string connecting;
      for (const std::string& w : who) {
        connecting += (connecting.empty() ? "" : ", ") + w;
      }
      s += ": " + std::to_string(st.connects.size()) + " connect(s) to port "
           + std::to_string(l.local_port) + " stay in SYN-SENT (" + connecting
           + "), toward the listener " + lep + " of " + ctx.owners_text(ls);
      if (listen_drops > 0) {
        s += ", which dropped " + std::to_string(listen_drops)
             + " SYNs meanwhile (ListenOverflows/ListenDrops): its accept queue is full";
      }
      b.socket(l, ls);
      b.group(
          "listener", std::to_string(ns) + " " + lep, "listener " + lep, "retransmission storms");
      b.fact("listener", lep);
      b.fact("connecting_sockets", st.connects.size());
      grouped = true;
    } else if (listen_drops > 0) {
      s += "; listeners in this netns dropped " + std::to_string(listen_drops)
           + " SYNs meanwhile (ListenOverflows/ListenDrops): a full accept queue";
    }
  }
  if (!grouped) {
    b.netns(ns);
    b.group("netns",
            std::to_string(ctx.timeline().netns[ns].inode),
            "netns " + std::to_string(ctx.timeline().netns[ns].inode),
            "retransmission storms");
  }
  if (!sums.empty() && sums.front().retrans > 0) {
    const SockSum& top = sums.front();
    const Track& t = *top.track;
    s += "; top socket " + proto_name(t) + " " + endpoint(ctx.series(), t, true) + " -> "
         + endpoint(ctx.series(), t, false) + " (" + std::to_string(top.retrans)
         + " retransmitted, " + ctx.owners_text(top.last) + ")";
  }
  b.summary(std::move(s));
  Json rows = Json::array();
  const size_t lo = wb > 0 ? wb - 1 : 0;
  const size_t hi = std::min(we + 1, pts.size());
  for (size_t i = lo; i < hi; ++i) {
    Json j;
    j["t"] = ctx.time(pts[i].to);
    j["retrans_segs_delta"] = pts[i].r;
    j["out_segs_delta"] = pts[i].o;
    j["ratio"] = pts[i].ratio;
    j["retrans_per_s"] = pts[i].rate;
    j["TCPSynRetrans_delta"] = ctx.counter(ns, "TcpExt.TCPSynRetrans").delta_json(pts[i].to);
    j["TCPTimeouts_delta"] = ctx.counter(ns, "TcpExt.TCPTimeouts").delta_json(pts[i].to);
    j["TCPFastRetrans_delta"] = ctx.counter(ns, "TcpExt.TCPFastRetrans").delta_json(pts[i].to);
    j["ListenDrops_delta"] = drops_c.delta_json(pts[i].to);
    rows.push_back(std::move(j));
  }
  b.fact("ratio", ratio);
  b.fact("retrans_segs", sum_r);
  b.fact("out_segs", sum_o);
  b.fact("seconds_over_warn", warn_s);
  b.fact("seconds_over_crit", std::max(crit_s, 0.0));
  b.fact("intervals_over_warn", we - wb);
  b.fact("dominant", std::move(dominant));
  b.fact("kinds", std::move(kinds));
  b.fact("listen_drops", listen_drops);
  b.fact("top_peers", top_peers(ctx, sums));
  b.fact("top_sockets", top_sockets(ctx, sums));
  b.series(std::move(rows), "ratio");
  out.add(std::move(b).build());
}

// One remote address of one netns: its sockets' retransmits and segments sent, in all and per
// interval, with the owners of the retransmitting ones. The intervals are kept as each socket
// gave them (packed: most peers never warn, and summing them per snapshot as they come would
// cost a map node each) and summed per snapshot only for a peer whose totals warn.
struct Peer {
  uint64_t retrans = 0;
  uint64_t segs = 0;

  struct Step {
    uint64_t retrans = 0;
    uint64_t segs = 0;
    uint32_t from = 0;
  };

  // Per interval of a socket where either moved: a varint of retrans << 2 | (the snapshot is not
  // one after the previous interval's) << 1 | (the interval is not one snapshot long); then,
  // when so flagged, a varint of the zigzagged snapshot distance (a socket's intervals may
  // start before the previous socket's end) and one of the interval's length; then one of segs.
  std::vector<uint8_t> steps;
  uint32_t last = 0; // the snapshot of the last interval added
  static constexpr size_t k_compact_bytes = 4096;
  size_t compact_at = k_compact_bytes; // steps' size beyond which compact() runs
  std::set<uint32_t> owners;
  size_t tracks = 0; // sockets that retransmitted

  void add(uint32_t from, uint32_t snap, uint64_t r, uint64_t g) {
    const int64_t d = static_cast<int64_t>(snap) - static_cast<int64_t>(last);
    const bool jump = d != 1;
    const bool wide = snap - from != 1;
    if (steps.size() + 32 > steps.capacity()) {
      steps.reserve(steps.size() + steps.size() / 2 + 32); // grows by half, not doubling
    }
    put_varint(steps, r << 2U | (jump ? 2U : 0U) | (wide ? 1U : 0U));
    if (jump) {
      put_varint(steps,
                 d < 0 ? (static_cast<uint64_t>(-d) << 1U) - 1 : static_cast<uint64_t>(d) << 1U);
    }
    if (wide) {
      put_varint(steps, snap - from);
    }
    put_varint(steps, g);
    last = snap;
    if (steps.size() > compact_at) {
      compact();
    }
  }

  // Many sockets toward one peer (a pool) would make the list grow with sockets x intervals:
  // past a size, it is replaced by its sums per snapshot (what by_snap() reads of it), so it
  // grows with the intervals at most, as a table of them would.
  void compact() {
    const std::map<uint32_t, Step> sums = by_snap();
    steps.clear();
    last = 0;
    compact_at = std::numeric_limits<size_t>::max(); // no compaction while re-adding
    for (const auto& [snap, st] : sums) {
      add(st.from, snap, st.retrans, st.segs);
    }
    steps.shrink_to_fit();
    compact_at = std::max(k_compact_bytes, 2 * steps.size());
  }

  // The intervals summed per snapshot ending them (from: the latest start among them).
  std::map<uint32_t, Step> by_snap() const {
    std::map<uint32_t, Step> out;
    uint32_t snap = 0;
    for (size_t i = 0; i < steps.size();) {
      const uint64_t head = get_varint(steps, i);
      if ((head & 2U) != 0) {
        const uint64_t z = get_varint(steps, i);
        snap = (z & 1U) != 0 ? snap - static_cast<uint32_t>((z + 1) >> 1U)
                             : snap + static_cast<uint32_t>(z >> 1U);
      } else {
        ++snap;
      }
      const uint32_t len = (head & 1U) != 0 ? static_cast<uint32_t>(get_varint(steps, i)) : 1;
      Step& st = out[snap];
      st.retrans += head >> 2U;
      st.segs += get_varint(steps, i);
      st.from = std::max(st.from, snap - len);
    }
    return out;
  }
};

using Peers = std::map<std::pair<uint32_t, uint32_t>, Peer>; // (netns, remote address id)

// Adds one TCP socket's intervals to its peer when `peers` holds it; whether it retransmitted.
bool add_to_peer(const Context& ctx, const Track& t, Peers& peers) {
  const auto found = peers.find({t.netns, t.remote_addr});
  Peer* p = found == peers.end() ? nullptr : &found->second;
  bool retransmitted = false;
  for (size_t i = 1; i < t.samples.size(); ++i) {
    const Sample& a = t.samples[i - 1];
    const Sample& b = t.samples[i];
    const uint64_t r = retrans_delta(a, b);
    const uint64_t g = segs_delta(a, b);
    if (r == 0 && g == 0) {
      continue;
    }
    retransmitted = retransmitted || r > 0;
    if (p == nullptr) {
      continue;
    }
    p->retrans += r;
    p->segs += g;
    p->add(a.snap, b.snap, r, g);
    if (r > 0) {
      const uint32_t who = ctx.culprit(b);
      if (who != k_na) {
        p->owners.insert(who);
      }
    }
  }
  if (retransmitted && p != nullptr) {
    ++p->tracks;
  }
  return retransmitted;
}

void peer_findings(const Context& ctx,
                   const std::vector<const Kept*>& kept,
                   const Peers& peers,
                   uint32_t ns,
                   Sink& out) {
  for (auto it = peers.lower_bound({ns, 0}); it != peers.end() && it->first.first == ns; ++it) {
    const uint32_t addr = it->first.second;
    const Peer& p = it->second;
    if (p.retrans == 0 || p.segs == 0
        || static_cast<double>(p.segs) < ctx.param("peer_min_segments")) {
      continue;
    }
    const double ratio = static_cast<double>(p.retrans) / static_cast<double>(p.segs);
    if (ratio <= ctx.param("peer_ratio")) {
      continue;
    }
    const std::map<uint32_t, Peer::Step> by_snap = p.by_snap();
    double bad_s = 0;
    size_t bad = 0;
    for (const auto& [snap, v] : by_snap) {
      if (v.segs > 0
          && static_cast<double>(v.retrans) / static_cast<double>(v.segs)
                 > ctx.param("peer_ratio")) {
        ++bad;
        bad_s += ctx.seconds(v.from, snap);
      }
    }
    if (ratio <= ctx.param("peer_ratio") || bad + 1 < k_min_support
        || bad_s < ctx.param("min_seconds")) {
      continue;
    }
    const uint32_t from = by_snap.begin()->first;
    const uint32_t to = by_snap.rbegin()->first;
    const std::string remote(ctx.series().strings.get(addr));
    FindingBuilder b(ctx, "retransmissions");
    Json subject = netns_subject(ctx.timeline(), ns);
    subject["remote"] = remote;
    const uint32_t owner = p.owners.size() == 1 ? *p.owners.begin() : k_na;
    if (owner != k_na) {
      subject["pid"] = ctx.processes()[owner].pid;
      subject["comm"] = ctx.series().strings.get(ctx.processes()[owner].comm);
    }
    b.subject(std::move(subject), owner).seen(from, to).severity(Severity::warning).weight(ratio);
    std::string owners;
    size_t listed = 0;
    for (const uint32_t o : p.owners) {
      if (listed++ == 4) {
        owners += " and " + std::to_string(p.owners.size() - 4) + " more";
        break;
      }
      owners += (owners.empty() ? "" : ", ") + ctx.process_text(o);
    }
    b.summary("retransmissions toward " + remote + ": " + num(100.0 * ratio) + "% of "
              + std::to_string(p.segs) + " segments sent over " + std::to_string(p.tracks)
              + " socket(s), over " + num(100.0 * ctx.param("peer_ratio")) + "% for " + num(bad_s)
              + " s: a lossy path to this peer" + (owners.empty() ? std::string() : "; " + owners));
    Json rows = Json::array();
    for (const auto& [snap, v] : by_snap) {
      rows.push_back(
          {{"t", ctx.time(snap)},
           {"retrans_delta", v.retrans},
           {"segs_out_delta", v.segs},
           {"ratio",
            v.segs > 0 ? Json(static_cast<double>(v.retrans) / static_cast<double>(v.segs))
                       : Json(nullptr)}});
    }
    b.fact("ratio", ratio);
    b.fact("retrans", p.retrans);
    b.fact("segs_out", p.segs);
    b.fact("intervals_over", bad);
    b.fact("seconds_over", bad_s);
    b.fact("peer_ratio", ctx.param("peer_ratio"));
    b.fact("top_sockets", top_sockets(ctx, socket_sums(kept, ns, from > 0 ? from - 1 : 0, to)));
    b.series(std::move(rows), "ratio");
    b.group(
        "destination", std::to_string(ns) + " " + remote, "traffic to " + remote, "lossy paths");
    out.add(std::move(b).build());
  }
}

// What finish() needs of TCP track `t` (see Kept) for windows made of the snapshots `in(snap)`
// holds: its steps ending in such a snapshot and its samples in one (when one of those steps
// retransmitted: only such a socket can be a top socket or peer of those windows), its SYN-SENT
// samples in one or just before one (syn_target reads [from, to]), its LISTEN samples all;
// nullopt when that is nothing.
template <class In> std::optional<Kept> kept_of(const Track& t, In in) {
  Kept k;
  k.first = t.samples.front().snap;
  k.inode = t.samples.front().inode;
  k.t = track_part(t, {0, 0});
  for (const Sample& x : t.samples) {
    if (x.state == k_syn_sent) {
      if (in(x.snap) || in(x.snap + 1)) {
        k.t.samples.push_back(x);
      }
    } else if (x.state == k_listen) {
      if (!k.listening.empty()) {
        Listening& r = k.listening.back();
        if (r.last + 1 == x.snap && r.inode == x.inode && r.owner == x.owner
            && r.owner_set == x.owner_set) {
          r.last = x.snap;
          continue;
        }
      }
      k.listening.push_back({x.snap, x.snap, x.inode, x.owner, x.owner_set});
    }
  }
  k.steps = Steps(k.first);
  for (size_t i = 1; i < t.samples.size(); ++i) {
    const Sample& a = t.samples[i - 1];
    const Sample& b = t.samples[i];
    const uint64_t r = retrans_delta(a, b);
    const uint64_t g = segs_delta(a, b);
    if ((r > 0 || g > 0) && in(b.snap)) {
      k.steps.add({b.snap, static_cast<uint32_t>(std::min<uint64_t>(r, UINT32_MAX)), g});
      k.retransmits = k.retransmits || r > 0;
    }
  }
  if (k.retransmits) {
    k.steps.shrink();
    Track within = track_part(t, {0, 0});
    std::copy_if(t.samples.begin(),
                 t.samples.end(),
                 std::back_inserter(within.samples),
                 [&in](const Sample& x) { return in(x.snap); });
    k.runs = runs_of(within);
  } else if (k.t.samples.empty() && k.listening.empty()) {
    return std::nullopt;
  } else {
    k.steps = Steps(k.first);
  }
  k.t.samples.shrink_to_fit();
  k.listening.shrink_to_fit();
  return k;
}

// The kept sockets in their order (kept_before).
std::vector<const Kept*> in_order(const Context& ctx, const std::deque<Kept>& all) {
  std::vector<const Kept*> kept;
  kept.reserve(all.size());
  for (const Kept& k : all) {
    kept.push_back(&k);
  }
  std::sort(kept.begin(), kept.end(), [&ctx](const Kept* a, const Kept* b) {
    return kept_before(ctx, *a, *b);
  });
  return kept;
}

// A peer whose totals warn (peer_findings' first test): its intervals decide.
bool totals_warn(const Context& ctx, uint64_t retrans, uint64_t segs) {
  return retrans > 0 && segs > 0 && static_cast<double>(segs) >= ctx.param("peer_min_segments")
         && static_cast<double>(retrans) / static_cast<double>(segs) > ctx.param("peer_ratio");
}

// The peer findings of some netns, from every track of the timeline seen again: the intervals
// of the peers named (those whose totals warn) and, for their windows, what is kept of every
// socket of those netns that retransmitted.
// Peers by netns and address text (a timeline loaded again has strings of its own).
using PeerNames = std::set<std::pair<uint32_t, std::string>>;

class PeerLook {
public:
  explicit PeerLook(PeerNames peers) : m_names(std::move(peers)) {
    for (const auto& key : m_names) {
      m_netns.insert(key.first);
    }
  }

  void track(const Context& ctx, const Track& t) {
    if (!is_tcp(t) || t.samples.empty() || !m_netns.contains(t.netns)) {
      return;
    }
    if (m_names.contains({t.netns, std::string(ctx.series().strings.get(t.remote_addr))})) {
      m_peers.try_emplace({t.netns, t.remote_addr});
    }
    add_to_peer(ctx, t, m_peers);
    if (std::optional<Kept> k = kept_of(t, [](uint32_t /*snap*/) { return true; })) {
      m_kept.push_back(std::move(*k));
    }
  }

  void finish(const Context& ctx, Sink& out) const {
    const std::vector<const Kept*> kept = in_order(ctx, m_kept);
    for (const uint32_t ns : m_netns) {
      peer_findings(ctx, kept, m_peers, ns, out);
    }
  }

private:
  PeerNames m_names;
  std::set<uint32_t> m_netns;
  Peers m_peers; // those named
  std::deque<Kept> m_kept;
};

// Gives every track of the timeline of `host` and `boot_id`, loaded again, to `look` as the
// load closes it (letting go of the samples of all).
class Reload final : public TrackObserver {
public:
  Reload(const Timeline& of, const Params& params, PeerLook& look)
      : m_host(of.host),
        m_boot_id(of.boot_id),
        m_params(params),
        m_look(look) {}

  void closed(Series& series, uint32_t timeline, const std::vector<uint32_t>& tracks) override {
    Timeline& tl = series.timelines[timeline];
    if (tl.host == m_host && tl.boot_id == m_boot_id) {
      const Context ctx(series, tl, m_params);
      for (const uint32_t idx : tracks) {
        m_look.track(ctx, tl.tracks[idx]);
      }
    }
    for (const uint32_t idx : tracks) {
      std::vector<Sample>().swap(tl.tracks[idx].samples);
    }
  }

private:
  std::string m_host;
  std::string m_boot_id;
  const Params& m_params;
  PeerLook& m_look;
};

// Whether snapshots of a netns lie in an interval of its counters that the namespace rule finds
// bad (over warn_ratio at min_rate): the namespace finding's window is a run of such intervals
// in a row, so its top sockets and peers need nothing of a socket outside them. Read while the
// series streams: an interval is judged once its end snapshot has the counter (the counters up
// to it are then final), and a snapshot after the last one with the counter is taken as in one
// (undecided yet). A judged snapshot is remembered.
// This relies on TrackObserver's rule (series.hpp): tracks are given out before the end of the
// load only when a timeline's files come in time order, so the snapshots placed so far are a
// prefix of the timeline and a counter value once seen is final; otherwise every track comes
// at the end, with every counter in.
class BadIntervals {
public:
  bool in(const Context& ctx, uint32_t ns, uint32_t snap) {
    if (snap >= ctx.snapshots()) {
      return false;
    }
    if (m_netns.size() <= ns) {
      m_netns.resize(ns + 1);
    }
    Netns& n = m_netns[ns];
    if (n.judged.size() != ctx.snapshots()) {
      n.judged.assign(ctx.snapshots(), k_unjudged);
    }
    if (n.judged[snap] != k_unjudged) {
      return n.judged[snap] == k_bad;
    }
    const CounterSeries& rs = ctx.counter(ns, "Tcp.RetransSegs");
    const CounterSeries& os = ctx.counter(ns, "Tcp.OutSegs");
    if (&rs == n.undecided_in && snap >= n.undecided_from) {
      return true; // no counter from there on, as this context's counters stood
    }
    // The interval holding `snap` ends at the next snapshot with the counter.
    uint32_t end = snap;
    while (end < ctx.snapshots() && !rs.value(end)) {
      ++end;
    }
    if (end == ctx.snapshots()) {
      n.undecided_in = &rs;
      n.undecided_from = snap;
      return true;
    }
    const std::optional<Point> p = point_at(rs, os, end);
    const bool bad = p && p->over(ctx, ctx.param("warn_ratio"));
    std::fill(n.judged.begin() + snap, n.judged.begin() + end + 1, bad ? k_bad : k_fine);
    return bad;
  }

private:
  static constexpr uint8_t k_unjudged = 0;
  static constexpr uint8_t k_bad = 1;
  static constexpr uint8_t k_fine = 2;

  struct Netns {
    std::vector<uint8_t> judged; // per snapshot
    // Where the last look found no counter up to the end (in a context whose counters may
    // have grown since: then it only keeps more than needed).
    const CounterSeries* undecided_in = nullptr;
    uint32_t undecided_from = 0;
  };

  std::vector<Netns> m_netns;
};

// The sockets one at a time: each socket's segments and retransmits summed per remote address,
// and what the namespace finding needs of it kept (only within the counters' bad intervals).
// Then each netns: its counters, and when they do not fire and a peer's totals warn, every
// track of the timeline again (from the timeline when it still holds them all, else loaded
// again from its files) for those peers' intervals and top sockets. So what is kept grows with
// the sockets alive, the peers and the bad intervals, not with the length of the series.
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& /*out*/) override {
    if (!is_tcp(t) || t.samples.empty()) {
      return;
    }
    ++m_tracks;
    Total* total = nullptr;
    for (size_t i = 1; i < t.samples.size(); ++i) {
      const uint64_t r = retrans_delta(t.samples[i - 1], t.samples[i]);
      const uint64_t g = segs_delta(t.samples[i - 1], t.samples[i]);
      if (r == 0 && g == 0) {
        continue;
      }
      total = total != nullptr ? total : &m_totals[{t.netns, t.remote_addr}];
      total->retrans += r;
      total->segs += g;
    }
    const auto in = [&](uint32_t snap) { return m_bad.in(ctx, t.netns, snap); };
    if (std::optional<Kept> k = kept_of(t, in)) {
      m_kept.push_back(std::move(*k));
    }
  }

  void finish(const Context& ctx, Sink& out) override {
    const std::vector<const Kept*> kept = in_order(ctx, m_kept);
    PeerNames peers; // whose totals warn, in netns not fired
    for (uint32_t ns = 0; ns < ctx.timeline().netns.size(); ++ns) {
      bool fired = false;
      namespace_finding(ctx, kept, ns, out, fired);
      if (fired) {
        continue;
      }
      for (auto it = m_totals.lower_bound({ns, 0}); it != m_totals.end() && it->first.first == ns;
           ++it) {
        if (totals_warn(ctx, it->second.retrans, it->second.segs)) {
          peers.emplace(ns, ctx.series().strings.get(it->first.second));
        }
      }
    }
    if (!peers.empty()) {
      look_again(ctx, std::move(peers), out);
    }
  }

private:
  // Every TCP track of the timeline again, to `peers`' findings.
  void look_again(const Context& ctx, PeerNames peers, Sink& out) const {
    PeerLook look(std::move(peers));
    size_t held = 0;
    for (const Track& t : ctx.tracks()) {
      held += is_tcp(t) && !t.samples.empty() ? 1U : 0U;
    }
    if (held == m_tracks) { // the timeline holds every track seen (none let go)
      for (const Track& t : ctx.tracks()) {
        look.track(ctx, t);
      }
      look.finish(ctx, out);
      return;
    }
    // Let go of while streaming: read again the files that hold the timeline's snapshots, as
    // report loaded them (a timeline with a warning peer reads its own files, not the others').
    const Series& series = ctx.series();
    const Timeline& tl = ctx.timeline();
    std::vector<size_t> was(series.files.size(), 0); // the timeline's snapshots per file
    for (const Snap& s : tl.snaps) {
      SR_ASSERT(s.file < was.size());
      ++was[s.file];
    }
    std::vector<std::string> files;
    std::vector<size_t> want; // was, of `files`
    for (size_t i = 0; i < was.size(); ++i) {
      if (was[i] > 0) {
        files.push_back(series.files[i]);
        want.push_back(was[i]);
      }
    }
    SR_ASSERT(!files.empty());
    SocketFilter whole;
    whole.open_files = series.open_files;
    Reload reload(tl, ctx.params(), look);
    const Series again = load_series(files, whole, &reload);
    // The files changed meanwhile (written in place, or not held and replaced by the fold):
    // what they hold now is not what was analysed. The first file whose snapshots differ is
    // named, else the first (its netns differ).
    const auto same =
        std::find_if(again.timelines.begin(), again.timelines.end(), [&tl](const Timeline& t) {
          return t.host == tl.host && t.boot_id == tl.boot_id;
        });
    std::vector<size_t> now(files.size(), 0);
    if (same != again.timelines.end()) {
      for (const Snap& s : same->snaps) {
        SR_ASSERT(s.file < now.size());
        ++now[s.file];
      }
    }
    const bool netns_same =
        same != again.timelines.end() && same->netns.size() == tl.netns.size()
        && std::equal(tl.netns.begin(),
                      tl.netns.end(),
                      same->netns.begin(),
                      [](const Netns& a, const Netns& b) { return a.inode == b.inode; });
    if (now != want || !netns_same) {
      size_t bad = 0;
      while (now != want && bad + 1 < files.size() && now[bad] == want[bad]) {
        ++bad;
      }
      throw LoadError(files[bad]
                      + ": changed or went away during the report (read again for the "
                        "retransmissions of a peer, it holds other snapshots)");
    }
    look.finish(Context(again, *same, ctx.params()), out);
  }

  struct Total {
    uint64_t retrans = 0;
    uint64_t segs = 0;
  };

  BadIntervals m_bad;
  std::map<std::pair<uint32_t, uint32_t>, Total> m_totals; // (netns, remote address id)
  size_t m_tracks = 0;                                     // TCP tracks seen
  // A deque: a vector of one Kept per socket of a long storm would double (and copy) it.
  std::deque<Kept> m_kept;
};

} // namespace

Detector retransmissions_detector() {
  return {
      "retransmissions",
      "TCP retransmission storms (share of segments retransmitted, the kind, the listener or "
      "peer and owners)",
      {
          {"warn_ratio",
           0.01,
           "RetransSegs / (OutSegs + RetransSegs) per interval above which it is bad",
           Unit::ratio},
          {"crit_ratio", 0.05, "the same share that is critical...", Unit::ratio},
          {"crit_seconds", 30, "...when sustained this long", Unit::seconds},
          {"min_rate",
           10,
           "retransmitted segments per second for an interval to count",
           Unit::per_second},
          {"min_seconds", 3, "bad intervals in a row lasting this long warn", Unit::seconds},
          {"peer_ratio",
           0.02,
           "per remote address: sum of total_retrans deltas / sum of segs_out deltas that warns",
           Unit::ratio},
          {"peer_min_segments",
           1000,
           "segments sent to a peer before its ratio counts",
           Unit::count},
      },
      nullptr,
      make_pass<Pass>};
}

} // namespace sockrewind::analyze
