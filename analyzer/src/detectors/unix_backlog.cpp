// unix_backlog (research/detectors.md D16): unix-domain sockets whose queues do not drain.
//   listener (stream/seqpacket LISTEN; rx_queue = pending connections, tx_queue = backlog), the
//     accept_queue_backlog (D3) rules:
//       saturated:  queue >= backlog (capacity is backlog+1) in >= full_consecutive snapshots in
//                   a row or in >= full_ratio of the snapshots -> critical (connect() blocks or
//                   fails with EAGAIN);
//       backlogged: queue >= max(min_queue, 0.1 x backlog) in >= persist_ratio of >= min_samples
//                   snapshots -> warning.
//   connected stream (ESTAB with an fd), the rx_queue_growth (D1) rules on Recv-Q bytes:
//       growing: GROW(Recv-Q; min_growth_bytes) over a gap-free run of >= stream_samples;
//       stalled: Recv-Q > 0 and unchanged in >= stream_samples snapshots in a row;
//       -> warning, critical when it lasts >= critical_seconds.
//   datagram: the SENDER's Send-Q (skb memory charged to it while the receiver has not read it)
//       > 0 in >= dgram_samples consecutive snapshots -> warning, naming the receiver (peer inode,
//       its path and owner) and the sender's owner. The receiver's own Recv-Q only shows the
//       first datagram's length, so it cannot show this.
// Embryos (inode 0: connections not accepted yet) are counted at their listener, never judged
// on their own.
#include "proc_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

using proc_util::cat;
using proc_util::opt;

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

// The owner of `t` near `snap` (its sample there, else its last known owner).
uint32_t owner_near(const Track& t, uint32_t snap) {
  const Sample* x = sample_at(t, snap);
  if (x != nullptr && x->owner != k_na) {
    return x->owner;
  }
  for (size_t i = t.samples.size(); i-- > 0;) {
    if (t.samples[i].owner != k_na) {
      return t.samples[i].owner;
    }
  }
  return k_na;
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

void listener_findings(const Series& series,
                       const Timeline& tl,
                       const Params& p,
                       std::vector<Finding>& out) {
  const auto embryos = embryo_counts(tl);
  const auto embryos_at = [&](const Track& t, uint32_t snap) -> uint32_t {
    if (t.path == k_na || t.netns >= embryos.size()) {
      return 0;
    }
    const auto& m = embryos[t.netns];
    const auto it = m.find(path_snap(t.path, snap));
    return it == m.end() ? 0 : it->second;
  };
  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  for (const Track& t : tl.tracks) {
    if (t.family != k_af_unix || !stream_like(t)) {
      continue;
    }

    struct Point {
      const Sample* x;
      uint32_t queue;
    };

    std::vector<Point> xs;
    for (const Sample& x : t.samples) {
      if (x.state != k_listen) {
        continue;
      }
      // Without unix_diag's queue length, count the embryos (the /proc fallback).
      const uint32_t q = x.rx_queue != k_na ? x.rx_queue : embryos_at(t, x.snap);
      xs.push_back({&x, q});
    }
    if (xs.size() < min_n) {
      continue;
    }
    size_t backlogged = 0;
    size_t full = 0;
    size_t run = 0;
    size_t best_run = 0;
    uint32_t max_q = 0;
    for (const Point& pt : xs) {
      const double max = pt.x->tx_queue == k_na ? 0 : pt.x->tx_queue;
      if (static_cast<double>(pt.queue) >= std::max(p.get("min_queue"), 0.1 * max)) {
        ++backlogged;
      }
      const bool is_full = pt.x->tx_queue != k_na && pt.queue >= pt.x->tx_queue && pt.queue > 0;
      full += is_full ? 1 : 0;
      run = is_full ? run + 1 : 0;
      best_run = std::max(best_run, run);
      max_q = std::max(max_q, pt.queue);
    }
    const auto n = static_cast<double>(xs.size());
    const bool saturated = best_run >= static_cast<size_t>(p.get("full_consecutive"))
                           || static_cast<double>(full) >= p.get("full_ratio") * n;
    const bool is_backlogged = static_cast<double>(backlogged) >= p.get("persist_ratio") * n;
    if (!saturated && !is_backlogged) {
      continue;
    }
    const Sample& last = *xs.back().x;
    Finding f;
    f.detector = "unix_backlog";
    f.severity = saturated ? Severity::critical : Severity::warning;
    f.subject = socket_subject(series, tl, t, last);
    f.subject["kind"] = "listener";
    const uint32_t owner = owner_near(t, last.snap);
    set_owner(f, tl, owner);
    f.first_seen_ns = tl.snaps[xs.front().x->snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const std::string max_text = last.tx_queue == k_na ? "?" : std::to_string(last.tx_queue);
    std::string who = proc_util::who(series, tl, owner);
    if (owner != k_na) {
      who.insert(0, "owner ");
      const ProcSample* ps = Timeline::proc_at(tl.procs[owner], last.snap);
      if (ps != nullptr && ps->fd_count != k_na && ps->nofile_soft != k_na) {
        f.evidence["owner_fds"] = ps->fd_count;
        f.evidence["owner_nofile_soft"] = ps->nofile_soft;
        if (ps->fd_count + 1 >= ps->nofile_soft) {
          who += cat(", at its fd limit (",
                     std::to_string(ps->fd_count),
                     "/",
                     std::to_string(ps->nofile_soft),
                     "): accept() fails with EMFILE");
        }
      }
    }
    const std::string name = cat(proto_name(t), " listener ", endpoint(series, t, true));
    if (saturated) {
      f.summary = cat(name,
                      " backlog full (",
                      std::to_string(xs.back().queue),
                      "/",
                      max_text,
                      " pending) in ",
                      std::to_string(full),
                      " of ",
                      std::to_string(xs.size()),
                      " snapshots: clients block in connect() or get EAGAIN; ",
                      who);
    } else {
      f.summary = cat(name,
                      " never drains: pending connections in ",
                      std::to_string(backlogged),
                      " of ",
                      std::to_string(xs.size()),
                      " snapshots (up to ",
                      std::to_string(max_q),
                      "/",
                      max_text,
                      "); ",
                      who);
    }
    f.evidence["shape"] = saturated ? "listener_full" : "listener_backlogged";
    f.evidence["snapshots_full"] = full;
    f.evidence["snapshots_backlogged"] = backlogged;
    const std::vector<int64_t> somaxconn =
        limit_numbers(tl, t.netns, "net.core.somaxconn", last.snap);
    if (!somaxconn.empty()) {
      f.evidence["somaxconn"] = somaxconn.front();
    }
    Json ser = Json::array();
    for (const Point& pt : xs) {
      Json j;
      j["t"] = snap_time(tl, pt.x->snap);
      j["queue"] = pt.queue;
      j["max_backlog"] = opt(pt.x->tx_queue);
      j["embryos"] = embryos_at(t, pt.x->snap);
      ser.push_back(std::move(j));
    }
    f.evidence["series"] = std::move(ser);
    f.weight = static_cast<double>(max_q);
    out.push_back(std::move(f));
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

StreamVerdict judge_stream(const Timeline& tl, const Track& t, Range r, const Params& p) {
  StreamVerdict v;
  const auto min_n = static_cast<size_t>(p.get("stream_samples"));
  if (r.size() < min_n) {
    return v;
  }
  const auto& s = t.samples;
  uint32_t lo = k_na;
  uint32_t hi = 0;
  for (size_t i = r.begin; i < r.end; ++i) {
    lo = std::min(lo, s[i].rx_queue);
    hi = std::max(hi, s[i].rx_queue);
  }
  if (static_cast<double>(hi - lo) >= p.get("min_growth_bytes")) {
    std::vector<double> ts;
    std::vector<double> xs;
    for (size_t i = r.begin; i < r.end; ++i) {
      ts.push_back(tl.dt(s[r.begin].snap, s[i].snap));
      xs.push_back(s[i].rx_queue);
    }
    v.trend = grow_test(ts, xs, p.get("tolerance_bytes"), p.get("min_growth_bytes"), min_n);
    if (v.trend.grows) {
      v.growing = true;
      v.window = r;
      return v;
    }
  }
  // stalled: the longest streak of the same non-empty Recv-Q
  size_t begin = r.begin;
  for (size_t i = r.begin + 1; i <= r.end; ++i) {
    if (i < r.end && s[i].rx_queue == s[i - 1].rx_queue) {
      continue;
    }
    if (i - begin >= min_n && s[begin].rx_queue > 0 && i - begin > v.window.size()) {
      v.window = {begin, i};
    }
    begin = i;
  }
  return v;
}

void stream_findings(const Series& series,
                     const Timeline& tl,
                     const Params& p,
                     const InodeIndex& inodes,
                     std::vector<Finding>& out) {
  for (const Track& t : tl.tracks) {
    if (t.family != k_af_unix || !stream_like(t)) {
      continue;
    }
    StreamVerdict best;
    for (const Range& c : contiguous_runs(tl, t)) {
      size_t begin = c.begin;
      for (size_t i = c.begin; i <= c.end; ++i) {
        if (i < c.end && connected_stream(t.samples[i])) {
          continue;
        }
        if (i > begin) {
          StreamVerdict v = judge_stream(tl, t, {begin, i}, p);
          const bool better =
              (v.growing && !best.growing)
              || (v.growing == best.growing && v.window.size() > best.window.size());
          if (v.window.size() > 0 && better) {
            best = v;
          }
        }
        begin = i + 1;
      }
    }
    if (best.window.size() == 0) {
      continue;
    }
    const Sample& first = t.samples[best.window.begin];
    const Sample& last = t.samples[best.window.end - 1];
    Finding f;
    f.detector = "unix_backlog";
    const double span = tl.dt(first.snap, last.snap);
    f.severity = span >= p.get("critical_seconds") ? Severity::critical : Severity::warning;
    f.subject = socket_subject(series, tl, t, last);
    f.subject["kind"] = "stream";
    const uint32_t owner = owner_near(t, last.snap);
    set_owner(f, tl, owner);
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const Track* peer = t.peer_inode == 0 ? nullptr : inodes.find(tl, t.netns, t.peer_inode);
    const uint32_t peer_owner = peer == nullptr ? k_na : owner_near(*peer, last.snap);
    if (peer != nullptr) {
      f.subject["peer_path"] = endpoint(series, *peer, true);
      const Json pj = process_json(series, tl, peer_owner);
      f.subject["peer_pid"] = pj.is_null() ? Json(nullptr) : pj["pid"];
      f.subject["peer_comm"] = pj.is_null() ? Json(nullptr) : pj["comm"];
    }
    const std::string sock = cat(proto_name(t),
                                 " ",
                                 endpoint(series, t, true),
                                 " (peer inode ",
                                 endpoint(series, t, false),
                                 ")");
    const std::string writer = peer_owner == k_na
                                   ? std::string()
                                   : cat("; writer ", proc_util::who(series, tl, peer_owner));
    const std::string who = cat(proc_util::who(series, tl, owner), " is not reading", writer);
    const size_t n = best.window.size();
    if (best.growing) {
      f.summary = cat("Recv-Q of ",
                      sock,
                      " grows from ",
                      human_bytes(first.rx_queue),
                      " to ",
                      human_bytes(last.rx_queue),
                      " over ",
                      std::to_string(n),
                      " snapshots (",
                      human_bytes(best.trend.slope),
                      "/s); ",
                      who);
      f.evidence["slope_bytes_per_s"] = best.trend.slope;
      f.evidence["kendall_tau"] = best.trend.tau;
    } else {
      f.summary = cat("Recv-Q of ",
                      sock,
                      " holds ",
                      human_bytes(last.rx_queue),
                      " unread, unchanged for ",
                      std::to_string(n),
                      " snapshots over ",
                      proc_util::duration_text(span),
                      "; ",
                      who);
    }
    f.evidence["shape"] = best.growing ? "stream_growing" : "stream_stalled";
    Json ser = Json::array();
    const size_t lo = best.window.begin > 0 ? best.window.begin - 1 : 0;
    const size_t hi = std::min(best.window.end + 1, t.samples.size());
    for (size_t i = lo; i < hi; ++i) {
      const Sample& x = t.samples[i];
      Json j;
      j["t"] = snap_time(tl, x.snap);
      j["state"] = state_name(x.state);
      j["rx_queue"] = opt(x.rx_queue);
      j["tx_queue"] = opt(x.tx_queue);
      ser.push_back(std::move(j));
    }
    f.evidence["series"] = std::move(ser);
    f.weight = static_cast<double>(last.rx_queue);
    out.push_back(std::move(f));
  }
}

void dgram_findings(const Series& series,
                    const Timeline& tl,
                    const Params& p,
                    const InodeIndex& inodes,
                    std::vector<Finding>& out) {
  const auto min_n = static_cast<size_t>(p.get("dgram_samples"));
  const double min_bytes = p.get("dgram_min_bytes");
  for (const Track& t : tl.tracks) {
    if (t.family != k_af_unix || t.type != k_unix_dgram) {
      continue;
    }
    const auto pending = [&](const Sample& x) {
      return x.inode != 0 && x.tx_queue != k_na && x.tx_queue > 0
             && static_cast<double>(x.tx_queue) >= min_bytes;
    };
    Range best;
    for (const Range& c : contiguous_runs(tl, t)) {
      size_t begin = c.begin;
      for (size_t i = c.begin; i <= c.end; ++i) {
        if (i < c.end && pending(t.samples[i])) {
          continue;
        }
        if (i - begin > best.size()) {
          best = {begin, i};
        }
        begin = i + 1;
      }
    }
    if (best.size() < min_n || best.size() == 0) {
      continue;
    }
    const Sample& first = t.samples[best.begin];
    const Sample& last = t.samples[best.end - 1];
    const double span = tl.dt(first.snap, last.snap);
    Finding f;
    f.detector = "unix_backlog";
    f.severity = Severity::warning;
    f.subject = socket_subject(series, tl, t, last);
    f.subject["kind"] = "dgram_sender";
    const uint32_t owner = owner_near(t, last.snap);
    const Track* peer = t.peer_inode == 0 ? nullptr : inodes.find(tl, t.netns, t.peer_inode);
    const uint32_t peer_owner = peer == nullptr ? k_na : owner_near(*peer, last.snap);
    // The process at fault is the receiver that does not read; escalation follows it.
    set_owner(f, tl, peer_owner != k_na ? peer_owner : owner);
    std::string receiver = "an unknown receiver (unconnected sender)";
    if (t.peer_inode != 0) {
      receiver = cat("receiver inode ", std::to_string(t.peer_inode));
    }
    if (peer != nullptr) {
      f.subject["peer_path"] = endpoint(series, *peer, true);
      const Json pj = process_json(series, tl, peer_owner);
      f.subject["peer_pid"] = pj.is_null() ? Json(nullptr) : pj["pid"];
      f.subject["peer_comm"] = pj.is_null() ? Json(nullptr) : pj["comm"];
      receiver = cat("receiver ",
                     endpoint(series, *peer, true),
                     " (",
                     proc_util::who(series, tl, peer_owner, "owner unknown"),
                     ")");
    }
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const std::vector<int64_t> qlen =
        limit_numbers(tl, t.netns, "net.unix.max_dgram_qlen", last.snap);
    const std::string qlen_text = qlen.empty()
                                      ? std::string("net.unix.max_dgram_qlen")
                                      : cat("max_dgram_qlen=", std::to_string(qlen.front()));
    f.summary = cat("unix datagrams from ",
                    proc_util::who(series, tl, owner, "an unknown sender"),
                    " queue up at ",
                    receiver,
                    ": sender Send-Q ",
                    human_bytes(last.tx_queue),
                    ", non-empty in ",
                    std::to_string(best.size()),
                    " snapshots in a row over ",
                    proc_util::duration_text(span),
                    "; the receiver is not reading (senders block or get EAGAIN at ",
                    qlen_text,
                    ")");
    f.evidence["shape"] = "dgram_sender_backlog";
    f.evidence["sender"] = process_json(series, tl, owner);
    f.evidence["receiver"] = process_json(series, tl, peer_owner);
    if (!qlen.empty()) {
      f.evidence["max_dgram_qlen"] = qlen.front();
    }
    Json ser = Json::array();
    const size_t lo = best.begin > 0 ? best.begin - 1 : 0;
    const size_t hi = std::min(best.end + 1, t.samples.size());
    for (size_t i = lo; i < hi; ++i) {
      const Sample& x = t.samples[i];
      Json j;
      j["t"] = snap_time(tl, x.snap);
      j["tx_queue"] = opt(x.tx_queue);
      j["sndbuf"] = opt(x.sndbuf);
      const Sample* px = peer == nullptr ? nullptr : sample_at(*peer, x.snap);
      j["receiver_rx_queue"] = px == nullptr ? Json(nullptr) : opt(px->rx_queue);
      ser.push_back(std::move(j));
    }
    f.evidence["series"] = std::move(ser);
    f.weight = static_cast<double>(last.tx_queue);
    out.push_back(std::move(f));
  }
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const InodeIndex inodes(tl);
  listener_findings(series, tl, p, out);
  stream_findings(series, tl, p, inodes, out);
  dgram_findings(series, tl, p, inodes, out);
}

} // namespace

Detector unix_backlog_detector() {
  return {"unix_backlog",
          "unix listener backlogs, unread unix stream connections, and datagram senders stuck "
          "behind a receiver that does not read",
          {
              {"min_samples", 3, "snapshots of a listener needed"},
              {"min_queue", 2, "pending connections that count as backlogged (or 10% of max)"},
              {"persist_ratio", 0.8, "fraction of a listener's snapshots backlogged for a warning"},
              {"full_consecutive", 2, "consecutive snapshots with the backlog full for critical"},
              {"full_ratio", 0.3, "fraction of snapshots with the backlog full for critical"},
              {"stream_samples",
               5,
               "snapshots in a row for a growing or stalled stream Recv-Q (gap-free)"},
              {"min_growth_bytes", 65536, "Recv-Q growth needed for 'growing' (GROW abs_min)"},
              {"tolerance_bytes", 4096, "a step down smaller than this is not a decrease"},
              {"critical_seconds", 300, "a stream stall or growth lasting this long is critical"},
              {"dgram_samples", 5, "snapshots in a row with the sender's Send-Q non-empty"},
              {"dgram_min_bytes", 1, "sender Send-Q bytes that count as non-empty"},
          },
          &run};
}

} // namespace sockrewind::analyze
