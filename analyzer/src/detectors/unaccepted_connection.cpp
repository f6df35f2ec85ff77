// unaccepted_connection (research/detectors.md D5): connections the kernel accepted but no
// process did: inode-0 ESTAB or CLOSE-WAIT children at a listener's port.
//   warning:  children queued at the listener in >= min_consecutive consecutive snapshots;
//   critical: the same child (socket identity) queued in two snapshots >= critical_age_s apart,
//             or a child whose last ACK is >= critical_queued_ms old (time since the handshake,
//             i.e. time spent queued), or any CLOSE-WAIT child: a client gave up while queued.
// One or two children for one snapshot are accept races and stay quiet. inode != 0 sockets
// without an owner are not counted (kernel sockets, hidden owners).
#include "listen_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <array>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

constexpr std::array<uint8_t, 2> k_child_states{k_established, k_close_wait};

struct PerSnap {
  uint32_t snap = 0;
  uint32_t estab = 0;
  uint32_t close_wait = 0;
};

struct ChildInfo {
  uint32_t track = 0;
  uint32_t first = 0; // snapshot
  uint32_t last = 0;
  const Sample* last_sample = nullptr;
  uint32_t max_ack_ms = 0;
  bool close_wait = false;
  double age_s = 0;
};

void judge_listener(const Series& series,
                    const Timeline& tl,
                    uint32_t li,
                    const std::vector<Child>& kids,
                    const Params& p,
                    std::vector<Finding>& out) {
  const Track& l = tl.tracks[li];
  std::vector<PerSnap> per;
  std::unordered_map<uint32_t, ChildInfo> info;
  for (const Child& c : kids) {
    const Sample* x = sample_at(tl.tracks[c.track], c.snap);
    if (x == nullptr) {
      continue;
    }
    if (per.empty() || per.back().snap != c.snap) {
      per.push_back({c.snap, 0, 0});
    }
    (x->state == k_close_wait ? per.back().close_wait : per.back().estab)++;
    auto [it, fresh] = info.try_emplace(c.track);
    ChildInfo& ci = it->second;
    if (fresh) {
      ci.track = c.track;
      ci.first = c.snap;
    }
    ci.last = c.snap;
    ci.last_sample = x;
    if (x->last_ack_recv_ms != k_na) {
      ci.max_ack_ms = std::max(ci.max_ack_ms, x->last_ack_recv_ms);
    }
    ci.close_wait = ci.close_wait || x->state == k_close_wait;
  }
  if (per.empty()) {
    return;
  }
  // Longest run of consecutive snapshots with children.
  size_t run = 0;
  size_t best_run = 0;
  for (size_t i = 0; i < per.size(); ++i) {
    const bool next = i > 0 && per[i].snap == per[i - 1].snap + 1
                      && tl.snaps[per[i].snap].run == tl.snaps[per[i - 1].snap].run;
    run = next ? run + 1 : 1;
    best_run = std::max(best_run, run);
  }
  size_t cw_children = 0;
  size_t old_children = 0;
  double oldest = 0;
  std::vector<const ChildInfo*> all;
  for (auto& [ti, ci] : info) {
    ci.age_s = std::max(tl.dt(ci.first, ci.last), static_cast<double>(ci.max_ack_ms) / 1000.0);
    oldest = std::max(oldest, ci.age_s);
    cw_children += ci.close_wait ? 1U : 0U;
    if (tl.dt(ci.first, ci.last) >= p.get("critical_age_s")
        || static_cast<double>(ci.max_ack_ms) >= p.get("critical_queued_ms")) {
      ++old_children;
    }
    all.push_back(&ci);
  }
  const bool warn = static_cast<double>(best_run) >= p.get("min_consecutive");
  const bool crit = cw_children > 0 || old_children > 0;
  if (!warn && !crit) {
    return;
  }
  std::sort(all.begin(), all.end(), [](const ChildInfo* a, const ChildInfo* b) {
    return a->age_s != b->age_s ? a->age_s > b->age_s : a->track < b->track;
  });

  const uint32_t first = per.front().snap;
  const uint32_t last = per.back().snap;
  const Sample* ls = sample_at(l, last);
  if (ls == nullptr) {
    ls = &l.samples.back();
  }
  uint32_t max_now = 0;
  for (const PerSnap& s : per) {
    max_now = std::max(max_now, s.estab + s.close_wait);
  }
  Finding f;
  f.detector = "unaccepted_connection";
  f.severity = crit ? Severity::critical : Severity::warning;
  f.subject = socket_subject(series, tl, l, *ls);
  set_owner(f, tl, ls->owner);
  f.first_seen_ns = tl.snaps[first].realtime_ns;
  f.last_seen_ns = tl.snaps[last].realtime_ns;
  f.weight = static_cast<double>(max_now) + static_cast<double>(cw_children) * 100;
  std::string s = std::to_string(info.size()) + " connections sat un-accepted at listener "
                  + endpoint(series, l, true) + " (up to " + std::to_string(max_now)
                  + " at once, in " + std::to_string(per.size()) + " snapshots, "
                  + std::to_string(best_run) + " in a row), oldest queued " + num(oldest) + " s";
  if (cw_children > 0) {
    s += "; " + std::to_string(cw_children) + " client(s) gave up while queued (CLOSE-WAIT)";
  }
  s += "; " + listen_util::owner_text(series, tl, ls->owner, "no process owns the listener")
       + " is not accepting";
  f.summary = std::move(s);

  Json reasons = Json::array();
  if (warn) {
    reasons.push_back("queued in " + std::to_string(best_run) + " consecutive snapshots");
  }
  if (old_children > 0) {
    reasons.push_back(
        std::to_string(old_children) + " children queued >= " + num(p.get("critical_age_s"))
        + " s apart or last ACK >= " + num(p.get("critical_queued_ms") / 1000) + " s ago");
  }
  if (cw_children > 0) {
    reasons.push_back(std::to_string(cw_children) + " CLOSE-WAIT children");
  }
  f.evidence["reasons"] = std::move(reasons);
  f.evidence["children_total"] = info.size();
  f.evidence["close_wait_children"] = cw_children;
  f.evidence["longest_run"] = best_run;
  f.evidence["oldest_queued_s"] = oldest;
  f.evidence["listener_queue"] = listen_util::opt(ls->rx_queue);
  f.evidence["listener_max_backlog"] = listen_util::opt(ls->tx_queue);
  Json children = Json::array();
  const auto top = static_cast<size_t>(p.get("max_children_listed"));
  for (size_t i = 0; i < all.size() && i < top; ++i) {
    const ChildInfo& ci = *all[i];
    const Track& t = tl.tracks[ci.track];
    Json j;
    j["peer"] = endpoint(series, t, false);
    j["state"] = state_name(ci.last_sample->state);
    j["age_s"] = ci.age_s;
    j["rx_bytes"] = listen_util::opt(ci.last_sample->rx_queue);
    j["last_ack_recv_ms"] = listen_util::opt(ci.last_sample->last_ack_recv_ms);
    j["cookie"] = t.cookie == 0 ? Json(nullptr) : Json(t.cookie);
    j["first_seen"] = snap_time(tl, ci.first);
    j["last_seen"] = snap_time(tl, ci.last);
    children.push_back(std::move(j));
  }
  f.evidence["children"] = std::move(children);
  // Per snapshot of the listener, from one before the first child to one after the last.
  Json ser = Json::array();
  size_t k = 0;
  for (const Sample& x : l.samples) {
    if (x.snap + 1 < first || x.snap > last + 1) {
      continue;
    }
    while (k < per.size() && per[k].snap < x.snap) {
      ++k;
    }
    const bool has = k < per.size() && per[k].snap == x.snap;
    Json j;
    j["t"] = snap_time(tl, x.snap);
    j["unaccepted"] = has ? per[k].estab : 0;
    j["close_wait"] = has ? per[k].close_wait : 0;
    j["queue"] = listen_util::opt(x.rx_queue);
    j["max_backlog"] = listen_util::opt(x.tx_queue);
    ser.push_back(std::move(j));
  }
  f.evidence["series"] = std::move(ser);
  out.push_back(std::move(f));
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const ListenerIndex li(series, tl);
  const auto children = children_by_listener(tl, li, k_child_states);
  std::vector<uint32_t> order;
  order.reserve(children.size());
  for (const auto& [l, v] : children) {
    order.push_back(l);
  }
  std::sort(order.begin(), order.end()); // deterministic output order
  for (const uint32_t l : order) {
    judge_listener(series, tl, l, children.at(l), p, out);
  }
}

} // namespace

Detector unaccepted_connection_detector() {
  return {
      "unaccepted_connection",
      "connections queued at a listener that no process accepts (inode-0 children)",
      {
          {"min_consecutive", 3, "consecutive snapshots with queued children for a warning"},
          {"critical_age_s", 60, "the same child queued in snapshots this far apart: critical"},
          {"critical_queued_ms", 30000, "a child's last ACK this old (queued this long): critical"},
          {"max_children_listed", 20, "children listed in the evidence, oldest first"},
      },
      &run};
}

} // namespace sockrewind::analyze
