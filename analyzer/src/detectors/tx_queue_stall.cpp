// tx_queue_stall (research/detectors.md D2): data piles up on the send side of a connected TCP
// socket. Three classes, strongest first:
//   dead_peer:        retransmit timer with >= dead_retrans unrecovered RTOs in a snapshot (or the
//                     zero-window probe count >= dead_probes and rising) while the Send-Q is not
//                     empty -> critical: the kernel will kill it (ETIMEDOUT) after tcp_retries2;
//   zero_window:      timer 4 (persist) or snd_wnd 0, Send-Q > 1 and bytes_acked not moving in
//                     >= zero_window_samples consecutive snapshots -> warning, critical when it
//                     lasts >= critical_seconds;
//   network_limited:  GROW(Send-Q; abs_min min_growth_bytes) with bytes_acked advancing -> info.
// Only sockets with an fd (inode != 0) in ESTAB, CLOSE-WAIT, FIN-WAIT-1 or LAST-ACK: orphans are
// orphan_pressure's. tr=1 alone (data in flight) and tx=1 (a FIN) are normal and never count.
#include "conn_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>

namespace sockrewind::analyze {

namespace {

using conn::opt;

enum class Kind { none, network_limited, zero_window, dead_peer };

struct Verdict {
  Kind kind = Kind::none;
  Range window;
  Trend trend;
  uint8_t max_retrans = 0;
};

bool eligible(const Sample& x) {
  return x.inode != 0 && x.tx_queue != k_na
         && (x.state == k_established || x.state == k_close_wait || x.state == k_fin_wait1
             || x.state == k_last_ack);
}

bool acked_still(const Sample& prev, const Sample& x, double tol) {
  if (prev.bytes_acked == k_na64 || x.bytes_acked == k_na64) {
    return true; // no tcp_info: the timer alone decides
  }
  return x.bytes_acked >= prev.bytes_acked
         && static_cast<double>(x.bytes_acked - prev.bytes_acked) <= tol;
}

bool zero_window(const Sample& x) {
  return x.tx_queue > 1 && (x.timer == 4 || (x.snd_wnd == 0 && x.state == k_established));
}

// Longest streak of zero-window samples with bytes_acked not moving.
Range zero_window_streak(const Track& t, Range r, const Params& p) {
  Range best{};
  size_t begin = r.begin;
  for (size_t i = r.begin; i <= r.end; ++i) {
    const bool keep =
        i < r.end && zero_window(t.samples[i])
        && (i == begin
            || acked_still(t.samples[i - 1], t.samples[i], p.get("acked_tolerance_bytes")));
    if (!keep) {
      if (i > begin && i - begin > best.size()) {
        best = {begin, i};
      }
      begin = i < r.end && zero_window(t.samples[i]) ? i : i + 1;
    }
  }
  return best;
}

Verdict judge(const Timeline& tl, const Track& t, Range r, const Params& p) {
  Verdict v;
  const auto& s = t.samples;
  // dead peer: consecutive unrecovered RTOs, or unanswered zero-window probes that keep rising.
  const auto dead_retrans = static_cast<uint8_t>(p.get("dead_retrans"));
  const auto dead_probes = static_cast<uint8_t>(p.get("dead_probes"));
  size_t first_dead = r.end;
  size_t last_dead = r.end;
  for (size_t i = r.begin; i < r.end; ++i) {
    const Sample& x = s[i];
    if (x.retrans == k_na8 || x.tx_queue == 0) {
      continue;
    }
    const bool rto = x.timer == 1 && x.retrans >= dead_retrans;
    const bool probes = x.timer == 4 && x.retrans >= dead_probes && i > r.begin
                        && s[i - 1].retrans != k_na8 && x.retrans > s[i - 1].retrans;
    if (rto || probes) {
      first_dead = first_dead == r.end ? i : first_dead;
      last_dead = i;
      v.max_retrans = std::max(v.max_retrans, x.retrans);
    }
  }
  if (first_dead != r.end) {
    v.kind = Kind::dead_peer;
    v.window = {first_dead, last_dead + 1};
    return v;
  }
  const Range zw = zero_window_streak(t, r, p);
  if (static_cast<double>(zw.size()) >= p.get("zero_window_samples")) {
    v.kind = Kind::zero_window;
    v.window = zw;
    return v;
  }
  // network-limited: the Send-Q grows while the peer acknowledges data.
  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  if (r.size() < min_n) {
    return v;
  }
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
  if (!acked || static_cast<double>(hi - lo) < p.get("min_growth_bytes")) {
    return v; // cheap exits before the O(n^2)-capped trend test
  }
  std::vector<double> ts;
  std::vector<double> xs;
  for (size_t i = r.begin; i < r.end; ++i) {
    ts.push_back(tl.dt(s[r.begin].snap, s[i].snap));
    xs.push_back(s[i].tx_queue);
  }
  v.trend = grow_test(ts, xs, p.get("tolerance_bytes"), p.get("min_growth_bytes"), min_n);
  if (v.trend.grows) {
    v.kind = Kind::network_limited;
    v.window = r;
  }
  return v;
}

Json point(const Timeline& tl, const Sample& x, const Sample* prev) {
  Json j;
  j["t"] = snap_time(tl, x.snap);
  j["state"] = state_name(x.state);
  j["tx_queue"] = x.tx_queue;
  j["sndbuf"] = opt(x.sndbuf);
  j["timer"] = opt(x.timer);
  j["retrans"] = opt(x.retrans);
  j["probes"] = opt(x.probes);
  j["backoff"] = opt(x.backoff);
  j["snd_wnd"] = opt(x.snd_wnd);
  j["bytes_acked"] = opt(x.bytes_acked);
  const bool have_delta = prev != nullptr && prev->bytes_acked != k_na64 && x.bytes_acked != k_na64
                          && x.bytes_acked >= prev->bytes_acked;
  j["bytes_acked_delta"] = have_delta ? Json(x.bytes_acked - prev->bytes_acked) : Json(nullptr);
  j["last_ack_recv_ms"] = opt(x.last_ack_recv_ms);
  return j;
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  for (const Track& t : tl.tracks) {
    if (!conn::is_tcp(t)) {
      continue;
    }
    Verdict best;
    for (const Range& r : conn::runs_where(tl, t, eligible)) {
      Verdict v = judge(tl, t, r, p);
      if (v.kind > best.kind) {
        best = v;
      }
    }
    if (best.kind == Kind::none) {
      continue;
    }
    const Sample& first = t.samples[best.window.begin];
    const Sample& last = t.samples[best.window.end - 1];
    Finding f;
    f.detector = "tx_queue_stall";
    f.subject = socket_subject(series, tl, t, last);
    set_owner(f, tl, last.owner);
    f.first_seen_ns = tl.snaps[first.snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const std::string sock = conn::sock_text(series, t);
    const std::string who = conn::owner_text(series, tl, last.owner);
    const size_t n = best.window.size();
    const double span = tl.dt(first.snap, last.snap);
    switch (best.kind) {
    case Kind::dead_peer: {
      f.severity = Severity::critical;
      const bool probing = last.timer == 4;
      f.summary = "Send-Q of " + sock;
      f.summary += " holds " + human_bytes(last.tx_queue);
      f.summary += " and the peer answers nothing (" + std::to_string(best.max_retrans);
      f.summary += probing ? " unanswered zero-window probes" : " consecutive RTOs";
      f.summary += "): dead or unreachable peer, the kernel will reset it after tcp_retries2; ";
      f.summary += who;
      f.evidence["class"] = "dead_peer";
      f.evidence["max_retrans"] = best.max_retrans;
      const std::vector<int64_t> r2 =
          limit_numbers(tl, t.netns, "net.ipv4.tcp_retries2", last.snap);
      if (!r2.empty()) {
        f.evidence["tcp_retries2"] = r2.front();
      }
      break;
    }
    case Kind::zero_window:
      f.severity = span >= p.get("critical_seconds") ? Severity::critical : Severity::warning;
      f.summary = "Send-Q of " + sock;
      f.summary += " stuck at " + human_bytes(last.tx_queue);
      f.summary += " behind a zero window for " + std::to_string(n);
      f.summary += " snapshots over " + num(span);
      f.summary += " s, nothing acknowledged: the peer application is not reading; sender ";
      f.summary += who;
      f.evidence["class"] = "zero_window";
      break;
    case Kind::network_limited:
    case Kind::none:
      f.severity = Severity::info;
      f.summary = "Send-Q of " + sock;
      f.summary += " grows from " + human_bytes(first.tx_queue);
      f.summary += " to " + human_bytes(last.tx_queue);
      f.summary += " over " + std::to_string(n);
      f.summary += " snapshots while the peer acknowledges data: the application writes faster "
                   "than the path drains; ";
      f.summary += who;
      f.evidence["class"] = "network_limited";
      f.evidence["slope_bytes_per_s"] = best.trend.slope;
      f.evidence["kendall_tau"] = best.trend.tau;
      break;
    }
    f.evidence["snapshots"] = n;
    f.evidence["span_s"] = span;
    if (first.bytes_acked != k_na64 && last.bytes_acked != k_na64
        && last.bytes_acked >= first.bytes_acked) {
      f.evidence["bytes_acked_delta"] = last.bytes_acked - first.bytes_acked;
    }
    f.weight = static_cast<double>(last.tx_queue);
    Json ser = Json::array();
    const size_t lo = best.window.begin > 0 ? best.window.begin - 1 : 0;
    const size_t hi = std::min(best.window.end + 1, t.samples.size());
    for (size_t i = lo; i < hi; ++i) {
      const Sample* prev =
          i > 0 && t.samples[i - 1].snap + 1 == t.samples[i].snap ? &t.samples[i - 1] : nullptr;
      ser.push_back(point(tl, t.samples[i], prev));
    }
    f.evidence["series"] = std::move(ser);
    out.push_back(std::move(f));
  }
}

} // namespace

Detector tx_queue_stall_detector() {
  return {"tx_queue_stall",
          "Send-Q of a connected TCP socket grows or sits still: zero window or dead peer",
          {
              {"zero_window_samples",
               3,
               "consecutive snapshots with the persist timer (tr=4) and nothing acked"},
              {"acked_tolerance_bytes", 0, "bytes_acked growth still counted as 'not moving'"},
              {"critical_seconds", 600, "a zero-window stall this long is critical"},
              {"dead_retrans", 3, "unrecovered RTOs (retransmit timer) that mean a dead peer"},
              {"dead_probes", 2, "unanswered zero-window probes, rising, that mean a dead peer"},
              {"min_samples", 5, "snapshots in a gap-free run for the growth test"},
              {"min_growth_bytes", 262144, "Send-Q growth for 'network-limited' (GROW abs_min)"},
              {"tolerance_bytes", 4096, "a step down smaller than this is not a decrease"},
          },
          &run};
}

} // namespace sockrewind::analyze
