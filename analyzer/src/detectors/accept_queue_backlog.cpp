// accept_queue_backlog (research/detectors.md D3): a listener whose accept queue does not drain.
//   saturated:  queue >= max backlog (capacity is max+1) in >= full_consecutive snapshots in a
//               row, or in >= full_ratio of the snapshots -> critical;
//   backlogged: queue >= max(min_queue, 0.1 x max) in >= persist_ratio of >= min_samples
//               snapshots -> warning.
// Evidence: queue vs max backlog per snapshot, the un-accepted children (inode 0) counted at this
// listener, ListenOverflows deltas of the namespace, and the owner's fds vs RLIMIT_NOFILE.
#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <array>

namespace sockrewind::analyze {

namespace {

constexpr std::array<uint8_t, 2> k_child_states{k_established, k_close_wait};

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const ListenerIndex li(series, tl);
  const auto children = children_by_listener(tl, li, k_child_states);
  const auto min_n = static_cast<size_t>(p.get("min_samples"));
  for (uint32_t ti = 0; ti < tl.tracks.size(); ++ti) {
    const Track& t = tl.tracks[ti];
    if (t.family == k_af_unix || t.proto != k_proto_tcp) {
      continue;
    }
    // The listener's LISTEN samples (a track keeps one state in practice).
    std::vector<const Sample*> xs;
    for (const Sample& x : t.samples) {
      if (x.state == k_listen && x.rx_queue != k_na) {
        xs.push_back(&x);
      }
    }
    if (xs.size() < min_n) {
      continue;
    }
    size_t backlogged = 0;
    size_t full = 0;
    size_t full_run = 0;
    size_t best_full_run = 0;
    for (const Sample* x : xs) {
      const double max = x->tx_queue == k_na ? 0 : x->tx_queue;
      const double bar = std::max(p.get("min_queue"), 0.1 * max);
      if (static_cast<double>(x->rx_queue) >= bar) {
        ++backlogged;
      }
      const bool is_full = x->tx_queue != k_na && x->rx_queue >= x->tx_queue && x->rx_queue > 0;
      full += is_full ? 1 : 0;
      full_run = is_full ? full_run + 1 : 0;
      best_full_run = std::max(best_full_run, full_run);
    }
    const auto n = static_cast<double>(xs.size());
    const bool saturated = best_full_run >= static_cast<size_t>(p.get("full_consecutive"))
                           || static_cast<double>(full) >= p.get("full_ratio") * n;
    const bool is_backlogged = static_cast<double>(backlogged) >= p.get("persist_ratio") * n;
    if (!saturated && !is_backlogged) {
      continue;
    }

    // Evidence: one row per snapshot of the listener.
    const auto kids = children.find(ti);
    std::vector<CounterStep> overflows =
        counter_steps(series, tl, t.netns, "TcpExt.ListenOverflows");
    std::unordered_map<uint32_t, size_t> unaccepted_at; // snap -> children queued
    if (kids != children.end()) {
      for (const Child& c : kids->second) {
        unaccepted_at[c.snap]++;
      }
    }
    Json ser = Json::array();
    uint32_t max_q = 0;
    for (const Sample* x : xs) {
      Json j;
      j["t"] = snap_time(tl, x->snap);
      j["queue"] = x->rx_queue;
      j["max_backlog"] = x->tx_queue == k_na ? Json(nullptr) : Json(x->tx_queue);
      const auto u = unaccepted_at.find(x->snap);
      j["unaccepted"] = u == unaccepted_at.end() ? 0 : u->second;
      const auto ov = std::find_if(overflows.begin(), overflows.end(), [x](const CounterStep& c) {
        return c.to == x->snap;
      });
      j["listen_overflows_delta"] = ov == overflows.end() ? Json(nullptr) : Json(ov->delta);
      ser.push_back(std::move(j));
      max_q = std::max(max_q, x->rx_queue);
    }
    const Sample& last = *xs.back();
    Finding f;
    f.detector = "accept_queue_backlog";
    f.severity = saturated ? Severity::critical : Severity::warning;
    f.subject = socket_subject(series, tl, t, last);
    set_owner(f, tl, last.owner);
    f.first_seen_ns = tl.snaps[xs.front()->snap].realtime_ns;
    f.last_seen_ns = tl.snaps[last.snap].realtime_ns;
    const std::string max_text = last.tx_queue == k_na ? "?" : std::to_string(last.tx_queue);
    std::string who = "no owning process seen";
    if (last.owner != k_na) {
      const Process& pr = tl.procs[last.owner];
      who = "owner pid " + std::to_string(pr.pid) + " (" + series.strings.at(pr.comm) + ")";
      const ProcSample* ps = Timeline::proc_at(pr, last.snap);
      if (ps != nullptr && ps->fd_count != k_na) {
        f.evidence["owner_fds"] = ps->fd_count;
        f.evidence["owner_nofile_soft"] =
            ps->nofile_soft == k_na ? Json(nullptr) : Json(ps->nofile_soft);
        if (ps->nofile_soft != k_na && ps->fd_count + 1 >= ps->nofile_soft) {
          who += ", at its fd limit (" + std::to_string(ps->fd_count) + "/"
                 + std::to_string(ps->nofile_soft) + "): accept() fails with EMFILE";
        }
      }
    }
    if (saturated) {
      f.summary = "listener " + endpoint(series, t, true) + " accept queue full (up to "
                  + std::to_string(max_q) + "/" + max_text + ") in " + std::to_string(full) + " of "
                  + std::to_string(xs.size()) + " snapshots; ";
    } else {
      f.summary = "listener " + endpoint(series, t, true)
                  + " accept queue never drains: non-empty in " + std::to_string(backlogged)
                  + " of " + std::to_string(xs.size()) + " snapshots (up to "
                  + std::to_string(max_q) + "/" + max_text + "); ";
    }
    f.summary += who;
    int64_t overflow_sum = 0;
    for (const CounterStep& c : overflows) {
      if (c.to >= xs.front()->snap && c.to <= last.snap) {
        overflow_sum += c.delta;
      }
    }
    f.evidence["listen_overflows"] = overflow_sum;
    f.evidence["snapshots_full"] = full;
    f.evidence["snapshots_backlogged"] = backlogged;
    const std::vector<int64_t> somaxconn =
        limit_numbers(tl, t.netns, "net.core.somaxconn", last.snap);
    if (!somaxconn.empty()) {
      f.evidence["somaxconn"] = somaxconn.front();
    }
    f.evidence["series"] = std::move(ser);
    f.weight = static_cast<double>(max_q);
    out.push_back(std::move(f));
  }
}

} // namespace

Detector accept_queue_backlog_detector() {
  return {"accept_queue_backlog",
          "a listener's accept queue stays non-empty, or is full",
          {
              {"min_samples", 3, "snapshots of the listener needed"},
              {"min_queue", 2, "queue length that counts as backlogged (or 10% of max, if more)"},
              {"persist_ratio", 0.8, "fraction of snapshots backlogged for a warning"},
              {"full_consecutive", 2, "consecutive full snapshots for critical"},
              {"full_ratio", 0.3, "fraction of full snapshots for critical"},
          },
          &run};
}

} // namespace sockrewind::analyze
