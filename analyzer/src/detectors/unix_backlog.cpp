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
// not-reading process, per receiver path (datagrams); every owner named. It reads unix sockets
// only (report lets go of the others): a peer or an embryo may be any of them.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <string_view>
#include <unordered_map>

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

// Unix sockets by (netns, inode), for naming a peer; the latest track wins.
class InodeIndex {
public:
  explicit InodeIndex(const Timeline& tl) {
    for (uint32_t i = 0; i < tl.tracks.size(); ++i) {
      const Track& t = tl.tracks[i];
      if (t.family != k_af_unix) {
        continue;
      }
      for (const Sample& x : t.samples) {
        if (x.inode != 0) {
          m_map[key(t.netns, x.inode)] = i;
        }
      }
    }
  }

  const Track* find(const Timeline& tl, uint32_t netns, uint64_t inode) const {
    const auto it = m_map.find(key(netns, inode));
    return it == m_map.end() ? nullptr : &tl.tracks[it->second];
  }

private:
  std::unordered_map<uint64_t, uint32_t> m_map;
};

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

// Embryo rows (inode 0, with the listener's path), per netns: (path << 32 | snapshot) -> count.
using EmbryoCounts = std::vector<std::unordered_map<uint64_t, uint32_t>>;

uint64_t path_snap(uint32_t path, uint32_t snap) {
  return static_cast<uint64_t>(path) << 32U | snap;
}

EmbryoCounts embryo_counts(const Timeline& tl) {
  EmbryoCounts out(tl.netns.size());
  for (const Track& t : tl.tracks) {
    if (t.family != k_af_unix || t.path == k_na || !stream_like(t) || t.netns >= out.size()) {
      continue;
    }
    for (const Sample& x : t.samples) {
      if (x.inode == 0 && x.state != k_listen) {
        out[t.netns][path_snap(t.path, x.snap)]++;
      }
    }
  }
  return out;
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

void listener_findings(const Context& ctx, const EmbryoCounts& embryos, Sink& out) {
  const Series& series = ctx.series();
  const auto embryos_at = [&](const Track& t, uint32_t snap) -> uint32_t {
    if (t.path == k_na || t.netns >= embryos.size()) {
      return 0;
    }
    const auto& m = embryos[t.netns];
    const auto it = m.find(path_snap(t.path, snap));
    return it == m.end() ? 0 : it->second;
  };
  for (const Track& t : ctx.tracks()) {
    if (t.family != k_af_unix || !stream_like(t)) {
      continue;
    }
    // Without unix_diag's queue length, count the embryos (the /proc fallback).
    const auto queue = [&](const Sample& x) {
      return x.rx_queue != k_na ? x.rx_queue : embryos_at(t, x.snap);
    };
    const auto full = [&](const Sample& x) {
      return x.state == k_listen && x.tx_queue != k_na && queue(x) > 0 && queue(x) >= x.tx_queue;
    };
    const auto backlogged = [&](const Sample& x) {
      const double max = x.tx_queue == k_na ? 0 : x.tx_queue;
      return x.state == k_listen
             && static_cast<double>(queue(x)) >= std::max(ctx.param("min_queue"), 0.1 * max);
    };
    double full_s = 0;
    Range shown;
    bool saturated = false;
    for (const Range& r : ctx.streaks(t, full)) {
      if (lasted(ctx, t, r, ctx.param("full_seconds")) && span_of(ctx, t, r) >= full_s) {
        full_s = span_of(ctx, t, r);
        shown = r;
        saturated = true;
      }
    }
    double stuck_s = 0;
    if (shown.size() == 0) {
      for (const Range& r : ctx.streaks(t, backlogged)) {
        bool never_fell = true;
        for (size_t i = r.begin + 1; i < r.end; ++i) {
          never_fell = never_fell && queue(t.samples[i]) >= queue(t.samples[i - 1]);
        }
        if (never_fell && lasted(ctx, t, r, ctx.param("backlog_seconds"))
            && span_of(ctx, t, r) >= stuck_s) {
          stuck_s = span_of(ctx, t, r);
          shown = r;
        }
      }
    }
    if (shown.size() == 0) {
      continue;
    }
    size_t n_full = 0;
    size_t n_backlogged = 0;
    uint32_t max_q = 0;
    for (const Sample& x : t.samples) {
      n_full += full(x) ? 1U : 0U;
      n_backlogged += backlogged(x) ? 1U : 0U;
      max_q = x.state == k_listen ? std::max(max_q, queue(x)) : max_q;
    }
    const Sample& last = t.samples[shown.end - 1];
    const Sample& named = named_sample(t, last.snap);
    const std::string name = proto_name(t) + " listener " + endpoint(series, t, true);
    const std::string max_text = last.tx_queue == k_na ? "?" : std::to_string(last.tx_queue);
    FindingBuilder b(ctx, "unix_backlog");
    b.socket(t, named).seen(t.samples[shown.begin].snap, last.snap);
    b.severity(saturated ? Severity::critical : Severity::warning)
        .weight(static_cast<double>(max_q));
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
                              num(full_s),
                              " s: clients block in connect() or get EAGAIN; ",
                              who)
                        : cat(name,
                              " does not drain: ",
                              pending,
                              "/",
                              max_text,
                              " pending, never falling, for ",
                              num(stuck_s),
                              " s; ",
                              who));
    b.fact("kind", "listener");
    b.fact("shape", saturated ? "listener_full" : "listener_backlogged");
    b.fact("seconds_full", full_s);
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
      j["embryos"] = embryos_at(t, x.snap);
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

void stream_findings(const Context& ctx, const InodeIndex& inodes, Sink& out) {
  const Series& series = ctx.series();
  for (const Track& t : ctx.tracks()) {
    if (t.family != k_af_unix || !stream_like(t)) {
      continue;
    }
    StreamVerdict best;
    for (const Range& r : ctx.streaks(t, connected_stream)) {
      StreamVerdict v = judge_stream(ctx, t, r);
      const bool better = (v.growing && !best.growing)
                          || (v.growing == best.growing && v.window.size() > best.window.size());
      if (v.window.size() > 0 && better) {
        best = v;
      }
    }
    if (best.window.size() == 0) {
      continue;
    }
    const Sample& first = t.samples[best.window.begin];
    const Sample& last = t.samples[best.window.end - 1];
    const double span = ctx.seconds(first.snap, last.snap);
    const Sample& named = named_sample(t, last.snap);
    FindingBuilder b(ctx, "unix_backlog");
    b.socket(t, named).seen(first.snap, last.snap);
    b.severity(span >= ctx.param("critical_seconds") ? Severity::critical : Severity::warning);
    b.weight(static_cast<double>(last.rx_queue));
    const Track* peer =
        t.peer_inode == 0 ? nullptr : inodes.find(ctx.timeline(), t.netns, t.peer_inode);
    std::string writer;
    Finding extra; // subject additions
    if (peer != nullptr) {
      const Sample& px = named_sample(*peer, last.snap);
      const uint32_t po = ctx.culprit(px);
      extra.subject["peer_path"] = endpoint(series, *peer, true);
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
}

void dgram_findings(const Context& ctx, const InodeIndex& inodes, Sink& out) {
  const Series& series = ctx.series();
  const double min_bytes = ctx.param("dgram_min_bytes");
  const auto pending = [&](const Sample& x) {
    return x.inode != 0 && x.tx_queue != k_na && x.tx_queue > 0
           && static_cast<double>(x.tx_queue) >= min_bytes;
  };
  for (const Track& t : ctx.tracks()) {
    if (t.family != k_af_unix || t.type != k_unix_dgram) {
      continue;
    }
    Range best;
    for (const Range& r : ctx.streaks(t, pending)) {
      if (lasted(ctx, t, r, ctx.param("dgram_seconds")) && r.size() > best.size()) {
        best = r;
      }
    }
    if (best.size() == 0) {
      continue;
    }
    const Sample& first = t.samples[best.begin];
    const Sample& last = t.samples[best.end - 1];
    const double span = ctx.seconds(first.snap, last.snap);
    const Sample& sender = named_sample(t, last.snap);
    const Track* peer =
        t.peer_inode == 0 ? nullptr : inodes.find(ctx.timeline(), t.netns, t.peer_inode);
    const Sample* receiver_x = peer == nullptr ? nullptr : &named_sample(*peer, last.snap);
    const uint32_t peer_owner = receiver_x == nullptr ? k_na : ctx.culprit(*receiver_x);
    FindingBuilder b(ctx, "unix_backlog");
    b.socket(t, sender).seen(first.snap, last.snap);
    b.severity(span >= ctx.param("critical_seconds") ? Severity::critical : Severity::warning);
    b.weight(static_cast<double>(last.tx_queue));
    std::string receiver = t.peer_inode != 0 ? "receiver inode " + std::to_string(t.peer_inode)
                                             : "an unknown receiver (unconnected sender)";
    if (peer != nullptr) {
      receiver = "receiver " + endpoint(series, *peer, true) + " ("
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
      const Sample* px = peer == nullptr ? nullptr : sample_at(*peer, x.snap);
      j["receiver_rx_queue"] = px == nullptr ? Json(nullptr) : opt(px->rx_queue);
      rows.push_back(std::move(j));
    }
    b.series(std::move(rows), "tx_queue", {"sndbuf"});
    if (peer != nullptr && peer->path != k_na) {
      b.group("destination",
              path_key(*peer),
              "toward unix receiver " + endpoint(series, *peer, true),
              "datagram senders stuck");
    } else {
      b.group_by_owner(t, sender, "datagram senders stuck");
    }
    Finding f = std::move(b).build();
    f.subject["kind"] = "dgram_sender";
    if (peer != nullptr) {
      f.subject["peer_path"] = endpoint(series, *peer, true);
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
}

void check(const Context& ctx, Sink& out) {
  const InodeIndex inodes(ctx.timeline());
  listener_findings(ctx, embryo_counts(ctx.timeline()), out);
  stream_findings(ctx, inodes, out);
  dgram_findings(ctx, inodes, out);
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
      &check,
      nullptr,
      // Peers (by inode) and embryos (by path) are unix sockets; nothing else is read.
      [](const Context& /*ctx*/, const Track& t) { return t.family == k_af_unix; }};
}

} // namespace sockrewind::analyze
