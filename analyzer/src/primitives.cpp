// Shared building blocks of the detectors (research/detectors.md §0).
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/time.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace sockrewind::analyze {

std::string proto_name(const Track& t) {
  if (t.family == k_af_unix) {
    switch (t.type) {
    case k_unix_stream:
      return "u_str";
    case k_unix_dgram:
      return "u_dgr";
    case k_unix_seqpacket:
      return "u_seq";
    default:
      return "u_" + std::to_string(t.type);
    }
  }
  switch (t.proto) {
  case k_proto_tcp:
    return "tcp";
  case k_proto_udp:
    return "udp";
  case k_proto_udplite:
    return "udplite";
  case k_proto_raw:
    return "raw";
  default:
    return "proto" + std::to_string(t.proto);
  }
}

std::string state_name(uint8_t state) {
  static constexpr const char* k_names[] = {"UNKNOWN",
                                            "ESTAB",
                                            "SYN-SENT",
                                            "SYN-RECV",
                                            "FIN-WAIT-1",
                                            "FIN-WAIT-2",
                                            "TIME-WAIT",
                                            "UNCONN",
                                            "CLOSE-WAIT",
                                            "LAST-ACK",
                                            "LISTEN",
                                            "CLOSING"};
  if (state < std::size(k_names)) {
    return k_names[state];
  }
  return "STATE" + std::to_string(state);
}

std::string endpoint(const Series& s, const Track& t, bool local) {
  if (t.family == k_af_unix) {
    if (local) {
      return t.path == k_na ? "*" : s.strings.at(t.path);
    }
    return t.peer_inode == 0 ? "*" : std::to_string(t.peer_inode);
  }
  const uint32_t a = local ? t.local_addr : t.remote_addr;
  const uint16_t port = local ? t.local_port : t.remote_port;
  std::string addr = a == k_na ? "*" : s.strings.at(a);
  if (t.family == k_af_inet6 && a != k_na) {
    addr = "[" + addr + "]";
  }
  return addr + ":" + (port == 0 ? std::string("*") : std::to_string(port));
}

std::string snap_time(const Timeline& tl, uint32_t snap) {
  return iso8601(tl.snaps[snap].realtime_ns);
}

Json process_json(const Series& s, const Timeline& tl, uint32_t proc) {
  if (proc == k_na || proc >= tl.procs.size()) {
    return nullptr;
  }
  const Process& p = tl.procs[proc];
  Json j;
  j["pid"] = p.pid;
  j["start_ticks"] = p.start_ticks;
  j["comm"] = s.strings.get(p.comm);
  j["cmdline"] = p.cmdline == k_na ? Json(nullptr) : Json(s.strings.at(p.cmdline));
  j["uid"] = p.uid == k_na ? Json(nullptr) : Json(p.uid);
  return j;
}

namespace {

void add_owner(Json& j, const Series& s, const Timeline& tl, uint32_t proc) {
  const Json p = process_json(s, tl, proc);
  if (p.is_null()) {
    j["pid"] = nullptr;
    j["comm"] = nullptr;
    j["cmdline"] = nullptr;
    return;
  }
  for (const char* k : {"pid", "comm", "cmdline", "start_ticks"}) {
    j[k] = p[k];
  }
}

} // namespace

Json socket_subject(const Series& s, const Timeline& tl, const Track& t, const Sample& sample) {
  Json j;
  j["host"] = tl.host;
  j["netns"] = tl.netns[t.netns].inode;
  j["proto"] = proto_name(t);
  j["family"] = t.family == k_af_unix ? "unix" : (t.family == k_af_inet6 ? "inet6" : "inet");
  j["state"] = state_name(sample.state);
  j["local"] = endpoint(s, t, true);
  j["remote"] = endpoint(s, t, false);
  j["inode"] = sample.inode;
  j["cookie"] = t.cookie == 0 ? Json(nullptr) : Json(t.cookie);
  add_owner(j, s, tl, sample.owner);
  return j;
}

Json process_subject(const Series& s, const Timeline& tl, uint32_t proc) {
  Json j;
  j["host"] = tl.host;
  add_owner(j, s, tl, proc);
  return j;
}

Json netns_subject(const Timeline& tl, uint32_t netns) {
  Json j;
  j["host"] = tl.host;
  j["netns"] = tl.netns[netns].inode;
  return j;
}

void set_owner(Finding& f, const Timeline& tl, uint32_t proc) {
  if (proc == k_na || proc >= tl.procs.size()) {
    return;
  }
  f.pid = tl.procs[proc].pid;
  f.start_ticks = tl.procs[proc].start_ticks;
}

const Sample* sample_at(const Track& t, uint32_t snap) {
  const auto it =
      std::lower_bound(t.samples.begin(), t.samples.end(), snap, [](const Sample& a, uint32_t v) {
        return a.snap < v;
      });
  return it != t.samples.end() && it->snap == snap ? &*it : nullptr;
}

std::vector<Range> contiguous_runs(const Timeline& tl, const Track& t) {
  std::vector<Range> out;
  size_t begin = 0;
  for (size_t i = 1; i <= t.samples.size(); ++i) {
    const bool cut = i == t.samples.size() || t.samples[i].snap != t.samples[i - 1].snap + 1
                     || tl.snaps[t.samples[i].snap].run != tl.snaps[t.samples[i - 1].snap].run;
    if (cut) {
      out.push_back({begin, i});
      begin = i;
    }
  }
  if (t.samples.empty()) {
    out.clear();
  }
  return out;
}

namespace {

// At most `cap` evenly spaced indices of [0, n): keeps tau and Theil-Sen O(cap^2).
std::vector<size_t> subsample(size_t n, size_t cap) {
  std::vector<size_t> idx;
  if (n <= cap) {
    for (size_t i = 0; i < n; ++i) {
      idx.push_back(i);
    }
    return idx;
  }
  for (size_t k = 0; k < cap; ++k) {
    idx.push_back(k * (n - 1) / (cap - 1));
  }
  return idx;
}

int sign(double v) {
  return (v > 0) - (v < 0);
}

// The fraction of GROW's steps that do not decrease (n >= 2).
double nondecreasing_fraction(std::span<const double> x, double tol_abs) {
  size_t ok_steps = 0;
  for (size_t i = 1; i < x.size(); ++i) {
    if (!(x[i] < x[i - 1] - std::max(tol_abs, 0.05 * x[i - 1]))) {
      ++ok_steps;
    }
  }
  return static_cast<double>(ok_steps) / static_cast<double>(x.size() - 1);
}

bool enough_growth(double first, double last, double abs_min) {
  return last - first >= std::max(abs_min, 0.5 * first);
}

} // namespace

bool may_grow(std::span<const double> x, double tol_abs, double abs_min, size_t min_n) {
  return x.size() >= std::max<size_t>(min_n, 2) && enough_growth(x.front(), x.back(), abs_min)
         && nondecreasing_fraction(x, tol_abs) >= 0.8;
}

Trend grow_test(std::span<const double> t,
                std::span<const double> x,
                double tol_abs,
                double abs_min,
                size_t min_n) {
  Trend r;
  const size_t n = std::min(t.size(), x.size());
  if (n == 0) {
    return r;
  }
  r.first = x[0];
  r.last = x[n - 1];
  if (n < std::max<size_t>(min_n, 2)) {
    return r;
  }
  r.nondecreasing = nondecreasing_fraction(x.first(n), tol_abs);

  const std::vector<size_t> idx = subsample(n, 200);
  double concordant = 0;
  double discordant = 0;
  double ties_x = 0;
  double ties_t = 0;
  // Up to ~20k slopes (160 KB): one buffer per thread, kept between calls. A new one each call
  // was mapped, faulted in a page at a time and unmapped (a TLB flush on every core) by malloc
  // each time: a few percent of a day's report.
  thread_local std::vector<double> slopes;
  slopes.clear();
  slopes.reserve(idx.size() * idx.size() / 2);
  for (size_t a = 0; a < idx.size(); ++a) {
    for (size_t b = a + 1; b < idx.size(); ++b) {
      const double dt = t[idx[b]] - t[idx[a]];
      const double dx = x[idx[b]] - x[idx[a]];
      const int p = sign(dt) * sign(dx);
      if (p > 0) {
        ++concordant;
      } else if (p < 0) {
        ++discordant;
      } else {
        if (dx == 0) {
          ++ties_x;
        }
        if (dt == 0) {
          ++ties_t;
        }
      }
      if (dt > 0) {
        slopes.push_back(dx / dt);
      }
    }
  }
  const double pairs = concordant + discordant + ties_x + ties_t;
  const double denom = std::sqrt((pairs - ties_x) * (pairs - ties_t));
  r.tau = denom > 0 ? (concordant - discordant) / denom : 0;
  if (!slopes.empty()) {
    auto mid = slopes.begin() + static_cast<std::ptrdiff_t>(slopes.size() / 2);
    std::nth_element(slopes.begin(), mid, slopes.end());
    r.slope = *mid;
  }
  r.grows = r.nondecreasing >= 0.8 && r.tau >= 0.6 && enough_growth(r.first, r.last, abs_min);
  return r;
}

std::vector<CounterStep>
counter_steps(const Series& s, const Timeline& tl, uint32_t netns, std::string_view name) {
  std::vector<CounterStep> out;
  const uint32_t id = s.strings.find(name);
  const std::vector<int64_t>* v = id == k_na ? nullptr : tl.counter(netns, id);
  if (v == nullptr) {
    return out;
  }
  uint32_t prev = k_na;
  for (uint32_t i = 0; i < v->size(); ++i) {
    if ((*v)[i] == k_no_counter) {
      continue; // this netns or counter was not captured in this snapshot
    }
    if (prev != k_na && (*v)[i] >= (*v)[prev]) {
      out.push_back({prev, i, tl.dt(prev, i), (*v)[i] - (*v)[prev]});
    }
    prev = i;
  }
  return out;
}

std::vector<CounterStep> counter_steps_sum(const Series& s,
                                           const Timeline& tl,
                                           uint32_t netns,
                                           std::span<const std::string_view> names) {
  std::vector<CounterStep> sum;
  for (size_t k = 0; k < names.size(); ++k) {
    std::vector<CounterStep> one = counter_steps(s, tl, netns, names[k]);
    if (k == 0) {
      sum = std::move(one);
      continue;
    }
    std::vector<CounterStep> merged;
    size_t j = 0;
    for (const CounterStep& a : sum) {
      while (j < one.size() && one[j].to < a.to) {
        ++j;
      }
      if (j < one.size() && one[j].to == a.to && one[j].from == a.from) {
        CounterStep c = a;
        c.delta += one[j].delta;
        merged.push_back(c);
      }
    }
    sum = std::move(merged);
  }
  return sum;
}

std::vector<int64_t>
limit_numbers(const Timeline& tl, uint32_t netns, const std::string& name, uint32_t snap) {
  std::vector<int64_t> out;
  const std::string_view v = tl.limit(netns, name, snap);
  size_t i = 0;
  while (i < v.size()) {
    while (i < v.size() && (v[i] == ' ' || v[i] == '\t')) {
      ++i;
    }
    size_t j = i;
    while (j < v.size() && v[j] != ' ' && v[j] != '\t') {
      ++j;
    }
    if (j > i) {
      int64_t n = 0;
      const auto [p, ec] = std::from_chars(v.data() + i, v.data() + j, n);
      if (ec != std::errc{} || p != v.data() + j) {
        return {};
      }
      out.push_back(n);
    }
    i = j;
  }
  return out;
}

namespace {

uint64_t port_key(uint32_t netns, uint16_t proto, uint16_t port) {
  return static_cast<uint64_t>(netns) << 32U | static_cast<uint64_t>(proto) << 16U | port;
}

bool wildcard(std::string_view a) {
  return a == "0.0.0.0" || a == "::";
}

} // namespace

ListenerIndex::ListenerIndex(const Series& s, const Timeline& tl) : m_series(s), m_tl(tl) {
  for (uint32_t i = 0; i < tl.tracks.size(); ++i) {
    const Track& t = tl.tracks[i];
    if (t.family == k_af_unix || t.proto != k_proto_tcp) {
      continue;
    }
    const bool listens = std::any_of(
        t.samples.begin(), t.samples.end(), [](const Sample& x) { return x.state == k_listen; });
    if (listens) {
      m_by_port[port_key(t.netns, t.proto, t.local_port)].push_back(i);
    }
  }
}

std::vector<uint32_t> ListenerIndex::listeners_of(const Track& child, uint32_t snap) const {
  std::vector<uint32_t> out;
  const auto it = m_by_port.find(port_key(child.netns, child.proto, child.local_port));
  if (it == m_by_port.end()) {
    return out;
  }
  for (const uint32_t idx : it->second) {
    const Track& l = m_tl.tracks[idx];
    const Sample* x = sample_at(l, snap);
    if (x == nullptr || x->state != k_listen) {
      continue;
    }
    const std::string_view la = m_series.strings.get(l.local_addr);
    const std::string_view ca = m_series.strings.get(child.local_addr);
    const bool v4_mapped_match = ca.starts_with("::ffff:") && ca.substr(7) == la;
    if (l.local_addr == child.local_addr || wildcard(la) || v4_mapped_match) {
      out.push_back(idx);
    }
  }
  return out;
}

bool ListenerIndex::is_listener_port(const Track& child) const {
  return m_by_port.contains(port_key(child.netns, child.proto, child.local_port));
}

std::unordered_map<uint32_t, std::vector<Child>>
children_by_listener(const Timeline& tl, const ListenerIndex& li, std::span<const uint8_t> states) {
  std::unordered_map<uint32_t, std::vector<Child>> out;
  for (uint32_t i = 0; i < tl.tracks.size(); ++i) {
    const Track& t = tl.tracks[i];
    if (t.family == k_af_unix || t.proto != k_proto_tcp || !li.is_listener_port(t)) {
      continue;
    }
    for (const Sample& x : t.samples) {
      if (x.inode != 0 || std::find(states.begin(), states.end(), x.state) == states.end()) {
        continue;
      }
      const std::vector<uint32_t> ls = li.listeners_of(t, x.snap);
      if (!ls.empty()) {
        out[ls.front()].push_back({x.snap, i});
      }
    }
  }
  for (auto& [l, v] : out) {
    std::stable_sort(
        v.begin(), v.end(), [](const Child& a, const Child& b) { return a.snap < b.snap; });
  }
  return out;
}

std::string human_bytes(double bytes) {
  static constexpr const char* k_units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  size_t u = 0;
  while (std::fabs(bytes) >= 1024 && u + 1 < std::size(k_units)) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    (void)std::snprintf(buf, sizeof buf, "%.0f B", bytes);
  } else {
    (void)std::snprintf(buf, sizeof buf, "%.1f %s", bytes, k_units[u]);
  }
  return buf;
}

std::string num(double v) {
  char buf[32];
  if (std::fabs(v - std::round(v)) < 1e-9) {
    (void)std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (std::fabs(v) >= 10) {
    (void)std::snprintf(buf, sizeof buf, "%.1f", v);
  } else {
    (void)std::snprintf(buf, sizeof buf, "%.2f", v);
  }
  return buf;
}

} // namespace sockrewind::analyze
