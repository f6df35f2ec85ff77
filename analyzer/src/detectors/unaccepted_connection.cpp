// unaccepted_connection (research/detectors.md D5): connections the kernel accepted but no
// process did: inode-0 ESTAB or CLOSE-WAIT children at a listener's port, judged by the SAME
// connection (its track: socket cookie, or 4-tuple without one) staying queued. A child's queued
// age is the longer of the time between the first and last snapshot it was seen queued in (with
// k_min_support snapshots) and its last_ack_recv_ms (the kernel's time since the handshake or
// the client's last segment: a lower bound of its time in the queue).
//   warning:  a child queued >= queued_seconds (3 s): the owner does not call accept();
//   critical: a child queued >= critical_seconds (60 s), or clients gave up while queued
//             (a CLOSE-WAIT child while the listener has a stuck child).
// A busy listener whose every snapshot catches a few brand-new children (each seen once, queued
// for milliseconds) is healthy and stays quiet. One finding per listener (grouped by listening
// address, so SO_REUSEPORT sockets are one cause), naming every process holding the listener.
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <array>
#include <map>
#include <unordered_map>

namespace sockrewind::analyze {

namespace {

constexpr std::array<uint8_t, 2> k_child_states{k_established, k_close_wait};

struct ChildInfo {
  uint32_t track = 0;
  uint32_t first = 0; // snapshot first seen queued
  uint32_t last = 0;
  size_t samples = 0;
  const Sample* last_sample = nullptr;
  uint32_t ack_ms = 0; // largest last_ack_recv_ms seen
  bool close_wait = false;
  double age_s = 0;
};

Json opt(uint32_t v) {
  return v == k_na ? Json(nullptr) : Json(v);
}

void judge_listener(const Context& ctx, uint32_t li, const std::vector<Child>& kids, Sink& out) {
  const Track& l = ctx.track(li);
  std::map<uint32_t, std::pair<uint32_t, uint32_t>> per; // snap -> (estab, close-wait)
  std::unordered_map<uint32_t, ChildInfo> info;
  for (const Child& c : kids) {
    const Sample* x = sample_at(ctx.track(c.track), c.snap);
    if (x == nullptr) {
      continue;
    }
    auto& [estab, cw] = per[c.snap];
    (x->state == k_close_wait ? cw : estab)++;
    auto [it, fresh] = info.try_emplace(c.track);
    ChildInfo& ci = it->second;
    if (fresh) {
      ci.track = c.track;
      ci.first = c.snap;
    }
    ci.last = c.snap;
    ++ci.samples;
    ci.last_sample = x;
    if (x->last_ack_recv_ms != k_na) {
      ci.ack_ms = std::max(ci.ack_ms, x->last_ack_recv_ms);
    }
    ci.close_wait = ci.close_wait || x->state == k_close_wait;
  }
  // The children that stayed queued; their ages.
  const double bar = ctx.param("queued_seconds");
  std::vector<const ChildInfo*> stuck;
  size_t cw_children = 0;
  for (auto& [ti, ci] : info) {
    const double seen =
        ctx.lasted(ci.first, ci.last, ci.samples, 0) ? ctx.seconds(ci.first, ci.last) : 0;
    ci.age_s = std::max(seen, static_cast<double>(ci.ack_ms) / 1000.0);
    if (ci.age_s >= bar) {
      stuck.push_back(&ci);
    }
  }
  if (stuck.empty()) {
    return;
  }
  std::sort(stuck.begin(), stuck.end(), [](const ChildInfo* a, const ChildInfo* b) {
    return a->age_s != b->age_s ? a->age_s > b->age_s : a->track < b->track;
  });
  const double oldest = stuck.front()->age_s;
  uint32_t first = k_na;
  uint32_t last = 0;
  for (const ChildInfo* c : stuck) {
    first = std::min(first, c->first);
    last = std::max(last, c->last);
  }
  // Clients that gave up while the listener had a stuck connection.
  for (const auto& [ti, ci] : info) {
    cw_children += ci.close_wait && ci.last >= first && ci.first <= last ? 1U : 0U;
  }
  const Sample* ls = sample_at(l, last);
  if (ls == nullptr) {
    ls = &l.samples.back();
  }
  uint32_t max_now = 0;
  for (const auto& [snap, n] : per) {
    if (snap >= first && snap <= last) {
      max_now = std::max(max_now, n.first + n.second);
    }
  }
  const bool crit = oldest >= ctx.param("critical_seconds") || cw_children > 0;
  const std::string where = endpoint(ctx.series(), l, true);
  FindingBuilder b(ctx, "unaccepted_connection");
  b.socket(l, *ls).seen(first, last).severity(crit ? Severity::critical : Severity::warning);
  b.weight(oldest + static_cast<double>(stuck.size()) + static_cast<double>(cw_children) * 100);
  std::string s = std::to_string(stuck.size()) + " connection(s) sat un-accepted at listener "
                  + where + " for " + num(bar) + " s or more (the oldest " + num(oldest)
                  + " s; up to " + std::to_string(max_now) + " queued at once)";
  if (cw_children > 0) {
    s += "; " + std::to_string(cw_children) + " client(s) gave up while queued (CLOSE-WAIT)";
  }
  s += "; not accepted by " + ctx.owners_text(*ls, "no process (nobody holds the listener)");
  b.summary(std::move(s));

  b.fact("children_total", info.size());
  b.fact("children_stuck", stuck.size());
  b.fact("close_wait_children", cw_children);
  b.fact("oldest_queued_s", oldest);
  b.fact("listener_queue", opt(ls->rx_queue));
  b.fact("listener_max_backlog", opt(ls->tx_queue));
  Json children = Json::array();
  const auto top = static_cast<size_t>(ctx.param("max_children_listed"));
  for (size_t i = 0; i < stuck.size() && i < top; ++i) {
    const ChildInfo& ci = *stuck[i];
    const Track& t = ctx.track(ci.track);
    Json j;
    j["peer"] = endpoint(ctx.series(), t, false);
    j["state"] = state_name(ci.last_sample->state);
    j["age_s"] = ci.age_s;
    j["rx_bytes"] = opt(ci.last_sample->rx_queue);
    j["last_ack_recv_ms"] = opt(ci.last_sample->last_ack_recv_ms);
    j["cookie"] = t.cookie == 0 ? Json(nullptr) : Json(t.cookie);
    j["first_seen"] = ctx.time(ci.first);
    j["last_seen"] = ctx.time(ci.last);
    children.push_back(std::move(j));
  }
  b.fact("children", std::move(children));
  // Per snapshot of the listener, from one before the first stuck child to one after the last.
  Json rows = Json::array();
  for (const Sample& x : l.samples) {
    if (x.snap + 1 < first || x.snap > last + 1) {
      continue;
    }
    const auto it = per.find(x.snap);
    Json j;
    j["t"] = ctx.time(x.snap);
    j["unaccepted"] = it == per.end() ? 0 : it->second.first + it->second.second;
    j["close_wait"] = it == per.end() ? 0 : it->second.second;
    j["queue"] = opt(x.rx_queue);
    j["max_backlog"] = opt(x.tx_queue);
    rows.push_back(std::move(j));
  }
  b.series(std::move(rows), "unaccepted", {"max_backlog"});
  b.group("listener",
          std::to_string(l.netns) + " " + proto_name(l) + " " + where,
          "at listener " + where,
          "listening sockets with un-accepted connections");
  out.add(std::move(b).build());
}

void check(const Context& ctx, Sink& out) {
  const auto& children = ctx.children(k_child_states);
  std::vector<uint32_t> order;
  order.reserve(children.size());
  for (const auto& [l, v] : children) {
    order.push_back(l);
  }
  std::sort(order.begin(), order.end()); // deterministic output order
  for (const uint32_t l : order) {
    judge_listener(ctx, l, children.at(l), out);
  }
}

} // namespace

Detector unaccepted_connection_detector() {
  return {
      "unaccepted_connection",
      "connections queued at a listener that no process accepts (inode-0 children)",
      {
          {"queued_seconds",
           3,
           "the same connection queued this long (snapshots apart, or its last ACK this old)",
           Unit::seconds},
          {"critical_seconds", 60, "the same connection queued this long: critical", Unit::seconds},
          {"max_children_listed", 20, "children listed in the evidence, oldest first"},
      },
      &check,
      nullptr,
      &listener_or_child};
}

} // namespace sockrewind::analyze
