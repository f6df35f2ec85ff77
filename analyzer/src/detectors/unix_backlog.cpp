// unix_backlog (research/detectors.md D16): unix-domain sockets whose queues do not drain.
// Every duration is in seconds over gap-free runs (k_min_support snapshots behind it).
//   listener (stream/seqpacket LISTEN; rx_queue = pending connections, tx_queue = backlog):
//       full:       queue >= backlog for >= full_seconds (2 s) -> critical: a unix connect() has
//                   no retry, it blocks or fails with EAGAIN at once;
//       backlogged: queue >= max(min_queue, 10% of backlog), never falling, for
//                   >= backlog_seconds (5 s) -> warning.
//   connected stream (ESTAB with an fd), on Recv-Q bytes:
//       growing: GROW(Recv-Q; min_growth_bytes) over a gap-free run of >= stream_seconds (120 s);
//       stalled: Recv-Q > 0 and unchanged for >= stream_seconds;
//       -> warning, critical when it lasts >= critical_seconds (300 s).
//   datagram: the SENDER's Send-Q (skb memory charged to it while the receiver has not read it)
//       >= dgram_min_bytes for >= dgram_seconds (120 s) -> warning, critical at
//       critical_seconds; names the receiver (peer inode, its path and owner) and the sender.
//       The receiver's own Recv-Q only shows the first datagram's length, so it cannot show this.
// Embryos (inode 0: connections not accepted yet) are counted at their listener, never judged
// on their own. One finding per cause: per listener path, per socket path (accepted streams) or
// not-reading process, per receiver path (datagrams); every owner named. It runs on each unix
// socket once it is gone, keeping the sockets with a verdict, the listeners, the embryo counts
// and a few fields of every socket that may be named as a peer; the peer's samples a finding
// shows (its owners where the backlog ends, its Recv-Q beside a sender's) are read back from
// the files at the end.
#include <sockrewind/analyze/snap_counts.hpp>
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace sockrewind::analyze {

namespace {

// Its parts joined (without a temporary per '+').
template <class... Parts> std::string cat(const Parts&... parts) {
  std::string s;
  (s.append(std::string_view(parts)), ...);
  return s;
}

Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

uint64_t key(uint32_t netns, uint64_t v) {
  return static_cast<uint64_t>(netns) << 40U ^ v;
}

bool stream_like(const Track& t) {
  return t.type == k_unix_stream || t.type == k_unix_seqpacket;
}

// The sample of `t` to name its owners by near `snap`: its sample there when owned, else its
// last owned one, else its sample there (or its last).
const Sample& named_sample(const Track& t, uint32_t snap) {
  const Sample* x = sample_at(t, snap);
  if (x != nullptr && x->owner != k_na) {
    return *x;
  }
  for (size_t i = t.samples.size(); i-- > 0;) {
    if (t.samples[i].owner != k_na) {
      return t.samples[i];
    }
  }
  return x != nullptr ? *x : t.samples.back();
}

// Embryo rows (inode 0, with the listener's path), per netns: path -> snapshot -> count.
using EmbryoCounts = std::vector<std::unordered_map<uint32_t, SnapCounts<uint32_t>>>;

void count_embryos(const Track& t, EmbryoCounts& out) {
  if (t.family != k_af_unix || t.path == k_na || !stream_like(t)) {
    return;
  }
  for (const Sample& x : t.samples) {
    if (x.inode == 0 && x.state != k_listen) {
      if (out.size() <= t.netns) {
        out.resize(t.netns + 1);
      }
      out[t.netns][t.path][x.snap]++;
    }
  }
}

double span_of(const Context& ctx, const Track& t, Range r) {
  return ctx.seconds(t.samples[r.begin].snap, t.samples[r.end - 1].snap);
}

bool lasted(const Context& ctx, const Track& t, Range r, double secs) {
  return r.size() > 0
         && ctx.lasted(t.samples[r.begin].snap, t.samples[r.end - 1].snap, r.size(), secs);
}

std::string path_key(const Track& t) {
  return std::to_string(t.netns) + " " + std::to_string(t.path);
}

struct ListenerVerdict {
  Range shown;
  bool saturated = false;
  double full_s = 0;
  double stuck_s = 0;
};

// The listener verdict of `t` with `queue(x)` its pending connections in x.
template <class Queue>
ListenerVerdict judge_listener(const Context& ctx, const Track& t, const Queue& queue) {
  const auto full = [&](const Sample& x) {
    return x.state == k_listen && x.tx_queue != k_na && queue(x) > 0 && queue(x) >= x.tx_queue;
  };
  const auto backlogged = [&](const Sample& x) {
    const double max = x.tx_queue == k_na ? 0 : x.tx_queue;
    return x.state == k_listen
           && static_cast<double>(queue(x)) >= std::max(ctx.param("min_queue"), 0.1 * max);
  };
  ListenerVerdict v;
  for (const Range& r : ctx.streaks(t, full)) {
    if (lasted(ctx, t, r, ctx.param("full_seconds")) && span_of(ctx, t, r) >= v.full_s) {
      v.full_s = span_of(ctx, t, r);
      v.shown = r;
      v.saturated = true;
    }
  }
  if (v.shown.size() == 0) {
    for (const Range& r : ctx.streaks(t, backlogged)) {
      bool never_fell = true;
      for (size_t i = r.begin + 1; i < r.end; ++i) {
        never_fell = never_fell && queue(t.samples[i]) >= queue(t.samples[i - 1]);
      }
      if (never_fell && lasted(ctx, t, r, ctx.param("backlog_seconds"))
          && span_of(ctx, t, r) >= v.stuck_s) {
        v.stuck_s = span_of(ctx, t, r);
        v.shown = r;
      }
    }
  }
  return v;
}

void listener_finding(const Context& ctx, const EmbryoCounts& embryos, const Track& t, Sink& out) {
  const Series& series = ctx.series();
  const auto embryos_at = [&](uint32_t snap) -> uint32_t {
    if (t.path == k_na || t.netns >= embryos.size()) {
      return 0;
    }
    const auto& m = embryos[t.netns];
    const auto it = m.find(t.path);
    return it == m.end() ? 0 : it->second.at(snap);
  };
  // Without unix_diag's queue length, count the embryos (the /proc fallback).
  const auto queue = [&](const Sample& x) {
    return x.rx_queue != k_na ? x.rx_queue : embryos_at(x.snap);
  };
  const ListenerVerdict v = judge_listener(ctx, t, queue);
  const Range shown = v.shown;
  if (shown.size() == 0) {
    return;
  }
  const bool saturated = v.saturated;
  size_t n_full = 0;
  size_t n_backlogged = 0;
  uint32_t max_q = 0;
  for (const Sample& x : t.samples) {
    const bool full =
        x.state == k_listen && x.tx_queue != k_na && queue(x) > 0 && queue(x) >= x.tx_queue;
    const double max = x.tx_queue == k_na ? 0 : x.tx_queue;
    const bool backlogged =
        x.state == k_listen
        && static_cast<double>(queue(x)) >= std::max(ctx.param("min_queue"), 0.1 * max);
    n_full += full ? 1U : 0U;
    n_backlogged += backlogged ? 1U : 0U;
    max_q = x.state == k_listen ? std::max(max_q, queue(x)) : max_q;
  }
  const Sample& last = t.samples[shown.end - 1];
  const Sample& named = named_sample(t, last.snap);
  const std::string name = proto_name(t) + " listener " + endpoint(series, t, true);
  const std::string max_text = last.tx_queue == k_na ? "?" : std::to_string(last.tx_queue);
  FindingBuilder b(ctx, "unix_backlog");
  b.socket(t, named).seen(t.samples[shown.begin].snap, last.snap);
  b.severity(saturated ? Severity::critical : Severity::warning).weight(static_cast<double>(max_q));
  std::string who = "not accepted by " + ctx.owners_text(named);
  const uint32_t culprit = ctx.culprit(named);
  if (culprit != k_na) {
    const ProcSample* ps = Timeline::proc_at(ctx.processes()[culprit], last.snap);
    if (ps != nullptr && ps->fd_count != k_na && ps->nofile_soft != k_na) {
      b.fact("owner_fds", ps->fd_count);
      b.fact("owner_nofile_soft", ps->nofile_soft);
      if (ps->fd_count + 1 >= ps->nofile_soft) {
        who += ", at its fd limit (" + std::to_string(ps->fd_count) + "/"
               + std::to_string(ps->nofile_soft) + "): accept() fails with EMFILE";
      }
    }
  }
  const std::string pending = std::to_string(queue(last));
  b.summary(saturated ? cat(name,
                            " backlog full (",
                            pending,
                            "/",
                            max_text,
                            " pending) for ",
                            num(v.full_s),
                            " s: clients block in connect() or get EAGAIN; ",
                            who)
                      : cat(name,
                            " does not drain: ",
                            pending,
                            "/",
                            max_text,
                            " pending, never falling, for ",
                            num(v.stuck_s),
                            " s; ",
                            who));
  b.fact("kind", "listener");
  b.fact("shape", saturated ? "listener_full" : "listener_backlogged");
  b.fact("seconds_full", v.full_s);
  b.fact("snapshots_full", n_full);
  b.fact("snapshots_backlogged", n_backlogged);
  if (const auto somaxconn = ctx.limit(t.netns, "net.core.somaxconn", last.snap)) {
    b.fact("somaxconn", *somaxconn);
  }
  Json rows = Json::array();
  const Range shown_rows = Context::with_margin(t, shown);
  for (size_t i = shown_rows.begin; i < shown_rows.end; ++i) {
    const Sample& x = t.samples[i];
    Json j;
    j["t"] = ctx.time(x.snap);
    j["queue"] = queue(x);
    j["max_backlog"] = opt(x.tx_queue);
    j["embryos"] = embryos_at(x.snap);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "queue", {"max_backlog"});
  const std::string ep = endpoint(series, t, true);
  b.group("listener",
          t.path == k_na ? std::to_string(t.netns) + " inode " + std::to_string(last.inode)
                         : path_key(t),
          "at unix listener " + ep,
          "listening sockets with a backlog");
  Finding f = std::move(b).build();
  f.subject["kind"] = "listener";
  out.add(std::move(f));
}

bool connected_stream(const Sample& x) {
  return x.inode != 0 && x.state == k_established && x.rx_queue != k_na;
}

struct StreamVerdict {
  bool growing = false;
  Range window;
  Trend trend;
};

StreamVerdict judge_stream(const Context& ctx, const Track& t, Range r) {
  StreamVerdict v;
  const double bar = ctx.param("stream_seconds");
  const auto& s = t.samples;
  if (r.size() >= 3 && lasted(ctx, t, r, bar)) {
    std::vector<double> ts;
    std::vector<double> xs;
    for (size_t i = r.begin; i < r.end; ++i) {
      ts.push_back(ctx.seconds(s[r.begin].snap, s[i].snap));
      xs.push_back(s[i].rx_queue);
    }
    v.trend = grow_test(ts, xs, ctx.param("tolerance_bytes"), ctx.param("min_growth_bytes"), 3);
    if (v.trend.grows) {
      v.growing = true;
      v.window = r;
      return v;
    }
  }
  // stalled: the longest stretch of the same non-empty Recv-Q
  size_t begin = r.begin;
  for (size_t i = r.begin + 1; i <= r.end; ++i) {
    if (i < r.end && s[i].rx_queue == s[i - 1].rx_queue) {
      continue;
    }
    const Range w{begin, i};
    if (s[begin].rx_queue > 0 && lasted(ctx, t, w, bar) && w.size() > v.window.size()) {
      v.window = w;
    }
    begin = i;
  }
  return v;
}

// The strongest stream verdict of `t` over its connected streaks (an empty window: none).
StreamVerdict stream_verdict(const Context& ctx, const Track& t) {
  StreamVerdict best;
  if (!stream_like(t)) {
    return best;
  }
  for (const Range& r : ctx.streaks(t, connected_stream)) {
    StreamVerdict v = judge_stream(ctx, t, r);
    const bool better = (v.growing && !best.growing)
                        || (v.growing == best.growing && v.window.size() > best.window.size());
    if (v.window.size() > 0 && better) {
      best = v;
    }
  }
  return best;
}

// The longest streak of a datagram sender's non-empty Send-Q that lasted (empty: none).
Range dgram_verdict(const Context& ctx, const Track& t) {
  Range best;
  if (t.type != k_unix_dgram) {
    return best;
  }
  const double min_bytes = ctx.param("dgram_min_bytes");
  const auto pending = [&](const Sample& x) {
    return x.inode != 0 && x.tx_queue != k_na && x.tx_queue > 0
           && static_cast<double>(x.tx_queue) >= min_bytes;
  };
  for (const Range& r : ctx.streaks(t, pending)) {
    if (lasted(ctx, t, r, ctx.param("dgram_seconds")) && r.size() > best.size()) {
      best = r;
    }
  }
  return best;
}

// Who held a socket in one snapshot: what Context::owners_text and culprit read of a sample.
struct Held {
  uint32_t snap = k_na; // k_na: none
  uint32_t owner = k_na;
  uint32_t owner_set = k_na;

  static Held of(const Sample& x) { return {x.snap, x.owner, x.owner_set}; }

  Sample sample() const {
    Sample x;
    x.snap = snap;
    x.owner = owner;
    x.owner_set = owner_set;
    return x;
  }
};

// What naming a unix socket as a peer takes, kept of every unix socket with an inode: its
// identity, the snapshots it spans and its last owned and last samples' owners. Its samples
// in the snapshots a finding shows are read back (PeerSamples).
struct Peer {
  Track id; // no samples
  uint64_t inode = 0;
  uint32_t first = 0; // snapshots of its first and last samples
  uint32_t last = 0;
  Held last_owned;
  Held last_sample;
};

// Of two tracks holding one inode, the one that names it: the later (by last, then first
// snapshot; then by identity, so that the order tracks come in does not matter). The loaded
// timeline's tracks are in that order for one inode (a socket split by an absence goes on in a
// new track).
bool later(const Peer& a, const Peer& b) {
  return std::tie(a.last, a.first, a.id.cookie, a.id.type, a.id.path)
         > std::tie(b.last, b.first, b.id.cookie, b.id.type, b.id.path);
}

// The peers' samples read back: (peer, snapshot) -> its sample there, as a sample of the
// timeline (Context::own_sample); absent when it has none there.
using PeerSamples = std::map<std::pair<const Peer*, uint32_t>, Sample>;

// The sample of `p` read back in snapshot `snap` (nullptr: none).
const Sample* peer_at(const PeerSamples& samples, const Peer& p, uint32_t snap) {
  const auto it = samples.find({&p, snap});
  return it == samples.end() ? nullptr : &it->second;
}

// named_sample() of a peer.
Sample peer_named(const PeerSamples& samples, const Peer& p, uint32_t snap) {
  const Sample* x = peer_at(samples, p, snap);
  if (x != nullptr && x->owner != k_na) {
    return *x;
  }
  if (p.last_owned.snap != k_na) {
    return p.last_owned.sample();
  }
  return x != nullptr ? *x : p.last_sample.sample();
}

// Reads back the samples of the peers in `wanted` (peer, snapshot; the snapshot within the
// peer's span): by cookie where it has one (one read per peer, its snapshots at once), else
// whole snapshots (a few dozen at a time).
PeerSamples read_peers(const Context& ctx,
                       const std::set<std::pair<const Peer*, uint32_t>>& wanted) {
  PeerSamples out;
  const Series& series = ctx.series();
  const auto is_peer = [&](const Context::SnapshotSockets& back, const Track& u, const Peer& p) {
    const Sample* x = sample_at(u, back.snap);
    if (x == nullptr || u.family != k_af_unix || u.type != p.id.type
        || back.tl().netns[u.netns].inode != ctx.timeline().netns[p.id.netns].inode
        || u.cookie != p.id.cookie) {
      return false;
    }
    if (p.id.cookie != 0) {
      return true;
    }
    // Without a cookie a socket is known by its path and inode.
    const bool same_path =
        p.id.path == k_na
            ? u.path == k_na
            : u.path != k_na && back.series.strings.get(u.path) == series.strings.get(p.id.path);
    return same_path && x->inode == p.inode;
  };
  // Reads `snaps` (through `filter`) and finds there the peers each one is wanted for.
  const auto read = [&](const std::map<uint32_t, std::vector<const Peer*>>& by_snap,
                        const SocketFilter& filter) {
    std::vector<uint32_t> snaps;
    snaps.reserve(by_snap.size());
    for (const auto& [snap, peers] : by_snap) {
      snaps.push_back(snap);
    }
    const std::vector<Context::SnapshotSockets> backs = ctx.read_snapshots(snaps, filter);
    size_t i = 0;
    for (const auto& [snap, peers] : by_snap) {
      const Context::SnapshotSockets& back = backs[i++];
      for (const Peer* p : peers) {
        for (const Track& u : back.tl().tracks) {
          if (!is_peer(back, u, *p)) {
            continue;
          }
          const Sample& x = *sample_at(u, back.snap);
          std::optional<Sample> own = ctx.own_sample(back, x, snap);
          if (!own) { // an owner the load did not see: named as not owned
            own = x;
            own->snap = snap;
            own->owner = k_na;
            own->owner_set = k_na;
          }
          out.emplace(std::make_pair(p, snap), *own);
          break;
        }
      }
    }
  };
  std::map<uint64_t, std::map<uint32_t, std::vector<const Peer*>>> by_cookie;
  std::map<uint32_t, std::vector<const Peer*>> without;
  for (const auto& [p, snap] : wanted) {
    (p->id.cookie != 0 ? by_cookie[p->id.cookie][snap] : without[snap]).push_back(p);
  }
  for (const auto& [cookie, by_snap] : by_cookie) {
    SocketFilter filter;
    filter.cookie = cookie;
    read(by_snap, filter);
  }
  constexpr size_t k_whole_snapshots_at_once = 32;
  std::map<uint32_t, std::vector<const Peer*>> part;
  for (auto& [snap, peers] : without) {
    part.emplace(snap, std::move(peers));
    if (part.size() == k_whole_snapshots_at_once) {
      read(part, {});
      part.clear();
    }
  }
  if (!part.empty()) {
    read(part, {});
  }
  return out;
}

void stream_finding(const Context& ctx,
                    const Track& t,
                    const StreamVerdict& best,
                    const Peer* peer,
                    const PeerSamples& peer_samples,
                    Sink& out) {
  const Series& series = ctx.series();
  const Sample& first = t.samples[best.window.begin];
  const Sample& last = t.samples[best.window.end - 1];
  const double span = ctx.seconds(first.snap, last.snap);
  const Sample& named = named_sample(t, last.snap);
  FindingBuilder b(ctx, "unix_backlog");
  b.socket(t, named).seen(first.snap, last.snap);
  b.severity(span >= ctx.param("critical_seconds") ? Severity::critical : Severity::warning);
  b.weight(static_cast<double>(last.rx_queue));
  std::string writer;
  Finding extra; // subject additions
  if (peer != nullptr) {
    const Sample px = peer_named(peer_samples, *peer, last.snap);
    const uint32_t po = ctx.culprit(px);
    extra.subject["peer_path"] = endpoint(series, peer->id, true);
    const Json pj = process_json(series, ctx.timeline(), po);
    extra.subject["peer_pid"] = pj.is_null() ? Json(nullptr) : pj["pid"];
    extra.subject["peer_comm"] = pj.is_null() ? Json(nullptr) : pj["comm"];
    if (po != k_na) {
      writer = "; writer " + ctx.owners_text(px);
    }
  }
  const std::string sock = proto_name(t) + " " + endpoint(series, t, true) + " (peer inode "
                           + endpoint(series, t, false) + ")";
  const std::string who = ctx.owners_text(named) + " is not reading" + writer;
  const size_t n = best.window.size();
  if (best.growing) {
    b.summary(cat("Recv-Q of ",
                  sock,
                  " grows from ",
                  human_bytes(first.rx_queue),
                  " to ",
                  human_bytes(last.rx_queue),
                  " over ",
                  num(span),
                  " s (",
                  std::to_string(n),
                  " snapshots, ",
                  human_bytes(best.trend.slope),
                  "/s); ",
                  who));
    b.fact("slope_bytes_per_s", best.trend.slope);
    b.fact("kendall_tau", best.trend.tau);
  } else {
    b.summary(cat("Recv-Q of ",
                  sock,
                  " holds ",
                  human_bytes(last.rx_queue),
                  " unread, unchanged for ",
                  num(span),
                  " s (",
                  std::to_string(n),
                  " snapshots); ",
                  who));
  }
  b.fact("kind", "stream");
  b.fact("shape", best.growing ? "stream_growing" : "stream_stalled");
  Json rows = Json::array();
  const Range shown_rows = Context::with_margin(t, best.window);
  for (size_t i = shown_rows.begin; i < shown_rows.end; ++i) {
    const Sample& x = t.samples[i];
    Json j;
    j["t"] = ctx.time(x.snap);
    j["state"] = state_name(x.state);
    j["rx_queue"] = opt(x.rx_queue);
    j["tx_queue"] = opt(x.tx_queue);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "rx_queue");
  if (t.path != k_na) {
    b.group("listener",
            path_key(t),
            "at unix socket " + endpoint(series, t, true),
            "unread unix stream connections");
  } else {
    b.group_by_owner(t, named, "unread unix stream connections");
  }
  Finding f = std::move(b).build();
  f.subject["kind"] = "stream";
  if (extra.subject.is_object()) {
    f.subject.update(extra.subject);
  }
  out.add(std::move(f));
}

void dgram_finding(const Context& ctx,
                   const Track& t,
                   Range best,
                   const Peer* peer,
                   const PeerSamples& peer_samples,
                   Sink& out) {
  const Series& series = ctx.series();
  const Sample& first = t.samples[best.begin];
  const Sample& last = t.samples[best.end - 1];
  const double span = ctx.seconds(first.snap, last.snap);
  const Sample& sender = named_sample(t, last.snap);
  std::optional<Sample> receiver_x;
  if (peer != nullptr) {
    receiver_x = peer_named(peer_samples, *peer, last.snap);
  }
  const uint32_t peer_owner = receiver_x ? ctx.culprit(*receiver_x) : k_na;
  FindingBuilder b(ctx, "unix_backlog");
  b.socket(t, sender).seen(first.snap, last.snap);
  b.severity(span >= ctx.param("critical_seconds") ? Severity::critical : Severity::warning);
  b.weight(static_cast<double>(last.tx_queue));
  std::string receiver = t.peer_inode != 0 ? "receiver inode " + std::to_string(t.peer_inode)
                                           : "an unknown receiver (unconnected sender)";
  if (peer != nullptr) {
    receiver = "receiver " + endpoint(series, peer->id, true) + " ("
               + ctx.owners_text(*receiver_x, "owner unknown") + ")";
  }
  const auto qlen = ctx.limit(t.netns, "net.unix.max_dgram_qlen", last.snap);
  const std::string qlen_text =
      qlen ? "max_dgram_qlen=" + std::to_string(*qlen) : std::string("net.unix.max_dgram_qlen");
  b.summary(cat("unix datagrams from ",
                ctx.owners_text(sender, "an unknown sender"),
                " queue up at ",
                receiver,
                ": sender Send-Q ",
                human_bytes(last.tx_queue),
                ", non-empty for ",
                num(span),
                " s (",
                std::to_string(best.size()),
                " snapshots); the receiver is not reading (senders block or get EAGAIN at ",
                qlen_text,
                ")"));
  b.fact("kind", "dgram_sender");
  b.fact("shape", "dgram_sender_backlog");
  b.fact("sender", process_json(series, ctx.timeline(), ctx.culprit(sender)));
  b.fact("receiver", process_json(series, ctx.timeline(), peer_owner));
  if (qlen) {
    b.fact("max_dgram_qlen", *qlen);
  }
  Json rows = Json::array();
  const Range shown_rows = Context::with_margin(t, best);
  for (size_t i = shown_rows.begin; i < shown_rows.end; ++i) {
    const Sample& x = t.samples[i];
    Json j;
    j["t"] = ctx.time(x.snap);
    j["tx_queue"] = opt(x.tx_queue);
    j["sndbuf"] = opt(x.sndbuf);
    const Sample* px = peer == nullptr ? nullptr : peer_at(peer_samples, *peer, x.snap);
    j["receiver_rx_queue"] = px == nullptr ? Json(nullptr) : opt(px->rx_queue);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "tx_queue", {"sndbuf"});
  if (peer != nullptr && peer->id.path != k_na) {
    b.group("destination",
            path_key(peer->id),
            "toward unix receiver " + endpoint(series, peer->id, true),
            "datagram senders stuck");
  } else {
    b.group_by_owner(t, sender, "datagram senders stuck");
  }
  Finding f = std::move(b).build();
  f.subject["kind"] = "dgram_sender";
  if (peer != nullptr) {
    f.subject["peer_path"] = endpoint(series, peer->id, true);
    const Json pj = process_json(series, ctx.timeline(), peer_owner);
    f.subject["peer_pid"] = pj.is_null() ? Json(nullptr) : pj["pid"];
    f.subject["peer_comm"] = pj.is_null() ? Json(nullptr) : pj["comm"];
  }
  // The process at fault is the receiver that does not read; escalation follows it.
  if (peer_owner != k_na) {
    set_owner(f, ctx.timeline(), peer_owner);
  }
  out.add(std::move(f));
}

// One unix socket at a time. Kept: the sockets with a verdict (stream or datagram), the
// listeners (their verdict may count embryos, which come from other sockets), the embryo
// counts, and of every unix socket with an inode what naming it as a peer takes (Peer); the
// peers' samples in the snapshots their findings show are read back at the end.
class Pass final : public TrackPass {
public:
  void track(const Context& ctx, const Track& t, Sink& out) override;
  void finish(const Context& ctx, Sink& out) override;

private:
  struct Stream {
    Track t;
    StreamVerdict v;
  };

  struct Dgram {
    Track t;
    Range v;
  };

  const Peer* find_peer(const Track& t) const {
    if (t.peer_inode == 0) {
      return nullptr;
    }
    const auto it = m_peers.find(key(t.netns, t.peer_inode));
    return it == m_peers.end() ? nullptr : &it->second;
  }

  std::vector<Track> m_listeners;
  std::vector<Stream> m_streams;
  std::vector<Dgram> m_dgrams;
  EmbryoCounts m_embryos;
  std::unordered_map<uint64_t, Peer> m_peers; // by key(netns, inode)
};

void Pass::track(const Context& ctx, const Track& t, Sink& /*out*/) {
  if (t.family != k_af_unix || t.samples.empty()) {
    return;
  }
  count_embryos(t, m_embryos);
  // A peer, under each inode it had.
  Peer p;
  p.first = t.samples.front().snap;
  p.last = t.samples.back().snap;
  p.last_sample = Held::of(t.samples.back());
  for (size_t i = t.samples.size(); i-- > 0;) {
    if (t.samples[i].owner != k_na) {
      p.last_owned = Held::of(t.samples[i]);
      break;
    }
  }
  bool have_id = false;
  for (const Sample& x : t.samples) {
    if (x.inode == 0) {
      continue;
    }
    if (!have_id) {
      p.id = track_part(t, {0, 0});
      have_id = true;
    }
    if (x.inode == p.inode) {
      continue; // under this inode already
    }
    p.inode = x.inode;
    const auto [it, fresh] = m_peers.try_emplace(key(t.netns, x.inode), p);
    if (!fresh && later(p, it->second)) {
      it->second = p;
    }
  }
  // A listener: its verdict alone when it has the queue length in every LISTEN sample;
  // otherwise (the /proc fallback counts embryos) at the end.
  const bool listens =
      stream_like(t) && std::any_of(t.samples.begin(), t.samples.end(), [](const Sample& x) {
        return x.state == k_listen;
      });
  if (listens) {
    const bool counts_embryos =
        std::any_of(t.samples.begin(), t.samples.end(), [](const Sample& x) {
          return x.state == k_listen && x.rx_queue == k_na;
        });
    const auto queue = [](const Sample& x) { return x.rx_queue != k_na ? x.rx_queue : 0U; };
    if (counts_embryos || judge_listener(ctx, t, queue).shown.size() > 0) {
      m_listeners.push_back(t);
    }
  }
  if (StreamVerdict v = stream_verdict(ctx, t); v.window.size() > 0) {
    m_streams.push_back({t, v});
  }
  if (const Range v = dgram_verdict(ctx, t); v.size() > 0) {
    m_dgrams.push_back({t, v});
  }
}

void Pass::finish(const Context& ctx, Sink& out) {
  for (const Track& t : m_listeners) {
    listener_finding(ctx, m_embryos, t, out);
  }
  // The peers' samples the findings show: at the end of a stream's window; at each row of a
  // datagram sender's.
  std::set<std::pair<const Peer*, uint32_t>> wanted;
  const auto want = [&](const Peer* p, uint32_t snap) {
    if (p != nullptr && snap >= p->first && snap <= p->last) {
      wanted.emplace(p, snap);
    }
  };
  for (const Stream& s : m_streams) {
    want(find_peer(s.t), s.t.samples[s.v.window.end - 1].snap);
  }
  for (const Dgram& d : m_dgrams) {
    const Range rows = Context::with_margin(d.t, d.v);
    for (size_t i = rows.begin; i < rows.end; ++i) {
      want(find_peer(d.t), d.t.samples[i].snap);
    }
  }
  const PeerSamples peer_samples = read_peers(ctx, wanted);
  for (const Stream& s : m_streams) {
    stream_finding(ctx, s.t, s.v, find_peer(s.t), peer_samples, out);
  }
  for (const Dgram& d : m_dgrams) {
    dgram_finding(ctx, d.t, d.v, find_peer(d.t), peer_samples, out);
  }
}

} // namespace

Detector unix_backlog_detector() {
  return {
      "unix_backlog",
      "unix listener backlogs, unread unix stream connections, and datagram senders stuck "
      "behind a receiver that does not read",
      {
          {"full_seconds", 2, "a listener's backlog full this long: critical", Unit::seconds},
          {"min_queue", 2, "pending connections that count as backlogged (or 10% of max)"},
          {"backlog_seconds",
           5,
           "a listener backlogged and never falling this long: warning",
           Unit::seconds},
          {"stream_seconds",
           120,
           "a stream Recv-Q growing or stalled this long (gap-free)",
           Unit::seconds},
          {"min_growth_bytes",
           65536,
           "Recv-Q growth needed for 'growing' (GROW abs_min)",
           Unit::bytes},
          {"tolerance_bytes", 4096, "a step down smaller than this is not a decrease", Unit::bytes},
          {"critical_seconds",
           300,
           "a stream or datagram backlog lasting this long is critical",
           Unit::seconds},
          {"dgram_seconds", 120, "a datagram sender's Send-Q non-empty this long", Unit::seconds},
          {"dgram_min_bytes", 1, "sender Send-Q bytes that count as non-empty", Unit::bytes},
      },
      nullptr,
      make_pass<Pass>};
}

} // namespace sockrewind::analyze
