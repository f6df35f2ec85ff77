// tcp_memory_pressure (research/detectors.md D20): TCP socket memory near the tcp_mem limits.
// sockstat TCP.mem (pages) and net.ipv4.tcp_mem (min pressure max, pages) are host-global, so
// this is one finding per host; the counters are per netns and summed.
//   over pressure: TCP.mem > tcp_mem[1] (staying "over" until it drops below clear_ratio x
//       pressure) in snapshots in a row lasting >= pressure_seconds -> warning;
//   ΔTcpExt.TCPMemoryPressures > 0 (the kernel entered pressure mode) -> warning;
//   near max: TCP.mem > max_ratio x tcp_mem[2] in one snapshot -> warning; for >=
//       critical_seconds -> critical; ΔTcpExt.TCPAbortOnMemory > 0 (connections reset for lack
//       of memory) -> critical.
// Evidence: mem vs the limits and the counter deltas per snapshot, and the top sockets by
// rmem_alloc + wmem_queued at the peak with their owners (usually stalled readers or writers).
#include <sockrewind/analyze/toolkit.hpp>

#include <algorithm>
#include <array>
#include <string_view>
#include <tuple>

namespace sockrewind::analyze {

namespace {

constexpr std::array<std::string_view, 3> k_counters{
    "TcpExt.TCPMemoryPressures", "TcpExt.TCPAbortOnMemory", "TcpExt.TCPRcvQDrop"};

uint64_t sock_mem(const Sample& x) {
  return (x.rmem_alloc == k_na ? 0ULL : x.rmem_alloc)
         + (x.wmem_queued == k_na ? 0ULL : x.wmem_queued);
}

// The longest streak (in seconds) of snapshots in a row with flag set; -1 when none.
double longest(const Context& ctx, const std::vector<uint8_t>& flag) {
  double best = -1;
  uint32_t begin = 0;
  const auto n = static_cast<uint32_t>(flag.size());
  for (uint32_t i = 0; i <= n; ++i) {
    const bool on =
        i < n && flag[i] != 0
        && (i == begin || ctx.timeline().snaps[i].run == ctx.timeline().snaps[begin].run);
    if (on) {
      continue;
    }
    if (i > begin && ctx.lasted(begin, i - 1, i - begin, 0)) {
      best = std::max(best, ctx.seconds(begin, i - 1));
    }
    begin = i < n && flag[i] != 0 ? i : i + 1;
  }
  return best;
}

void check(const Context& ctx, Sink& out) {
  const auto nsnaps = static_cast<uint32_t>(ctx.snapshots());
  const size_t nns = ctx.timeline().netns.size();
  uint32_t gns = k_na;
  for (uint32_t i = 0; i < nns && gns == k_na; ++i) {
    gns = ctx.counter(i, "TCP.mem").any() ? i : k_na;
  }
  // Counter deltas summed over namespaces, per snapshot ending the interval (-1: none).
  std::array<std::vector<int64_t>, k_counters.size()> sum;
  std::array<bool, k_counters.size()> have{};
  for (size_t k = 0; k < k_counters.size(); ++k) {
    sum[k].assign(nsnaps, -1);
    for (uint32_t ns = 0; ns < nns; ++ns) {
      const CounterSeries& c = ctx.counter(ns, k_counters[k]);
      have[k] = have[k] || c.any();
      for (uint32_t i = 0; i < nsnaps; ++i) {
        if (const auto d = c.delta(i)) {
          sum[k][i] = std::max<int64_t>(sum[k][i], 0) + *d;
        }
      }
    }
  }
  const auto mem = [&](uint32_t i) -> std::optional<int64_t> {
    return gns == k_na ? std::nullopt : ctx.counter(gns, "TCP.mem").value(i);
  };
  const auto lim = [&](uint32_t i, size_t k) -> int64_t {
    return gns == k_na ? -1 : ctx.limit(gns, "net.ipv4.tcp_mem", i, k).value_or(-1);
  };
  std::vector<uint8_t> over(nsnaps, 0);
  std::vector<uint8_t> near_max(nsnaps, 0);
  size_t n_over = 0;
  size_t n_near = 0;
  int64_t pressures = 0;
  int64_t aborts = 0;
  uint32_t first = nsnaps;
  uint32_t last = 0;
  bool in_pressure = false;
  for (uint32_t i = 0; i < nsnaps; ++i) {
    const auto m = mem(i);
    if (i > 0 && ctx.timeline().snaps[i].run != ctx.timeline().snaps[i - 1].run) {
      in_pressure = false;
    }
    bool hit = false;
    if (m && lim(i, 1) > 0) {
      const auto dm = static_cast<double>(*m);
      in_pressure =
          *m > lim(i, 1)
          || (in_pressure && dm >= ctx.param("clear_ratio") * static_cast<double>(lim(i, 1)));
      over[i] = in_pressure ? 1 : 0;
      near_max[i] =
          lim(i, 2) > 0 && dm > ctx.param("max_ratio") * static_cast<double>(lim(i, 2)) ? 1 : 0;
      n_over += over[i];
      n_near += near_max[i];
      hit = over[i] != 0 || near_max[i] != 0;
    } else {
      in_pressure = false;
    }
    const bool counted = sum[0][i] > 0 || sum[1][i] > 0;
    pressures += std::max<int64_t>(sum[0][i], 0);
    aborts += std::max<int64_t>(sum[1][i], 0);
    if (hit || counted) {
      first = std::min(first, counted && i > 0 ? i - 1 : i);
      last = i;
    }
  }
  const double over_s = longest(ctx, over);
  const double near_s = longest(ctx, near_max);
  const bool warn = over_s >= ctx.param("pressure_seconds") || pressures > 0 || n_near > 0;
  const bool critical = near_s >= ctx.param("critical_seconds") || aborts > 0;
  if (!warn && !critical) {
    return;
  }
  // The peak snapshot for the top consumers: the highest usage within the window.
  uint32_t at = last;
  for (uint32_t i = first; i <= last; ++i) {
    if (mem(i) && mem(i) >= mem(at)) {
      at = i;
    }
  }
  // The sockets of that snapshot, read back from its file (report keeps no samples for this
  // detector), with their own processes: `pctx` names their owners.
  const Context::SnapshotSockets peak = ctx.read_snapshot(at);
  const Context pctx(peak.series, peak.tl(), ctx.params());
  std::vector<std::pair<uint64_t, const Track*>> top;
  for (const Track& t : peak.tl().tracks) {
    if (t.family == k_af_unix || t.proto != k_proto_tcp) {
      continue;
    }
    const Sample* x = sample_at(t, peak.snap);
    if (x != nullptr && sock_mem(*x) > 0) {
      top.emplace_back(sock_mem(*x), &t);
    }
  }
  const size_t ntop = std::min<size_t>(top.size(), static_cast<size_t>(ctx.param("top_sockets")));
  // Ties by inode then cookie: the same list whatever order the sockets were read in.
  std::partial_sort(top.begin(),
                    top.begin() + static_cast<std::ptrdiff_t>(ntop),
                    top.end(),
                    [&](const auto& a, const auto& b) {
                      const uint64_t ia = sample_at(*a.second, peak.snap)->inode;
                      const uint64_t ib = sample_at(*b.second, peak.snap)->inode;
                      return std::tie(b.first, ia, a.second->cookie)
                             < std::tie(a.first, ib, b.second->cookie);
                    });
  top.resize(ntop);
  uint32_t subject_ns = gns == k_na ? 0 : gns;
  if (!top.empty()) {
    const uint64_t inode = peak.tl().netns[top.front().second->netns].inode;
    for (uint32_t i = 0; i < nns; ++i) {
      subject_ns = ctx.timeline().netns[i].inode == inode ? i : subject_ns;
    }
  }

  FindingBuilder b(ctx, "tcp_memory_pressure");
  b.netns(subject_ns).seen(first, last);
  b.severity(critical ? Severity::critical : Severity::warning);
  const auto pm = mem(at);
  std::string s;
  if (pm && lim(at, 1) > 0) {
    s = "TCP memory " + std::to_string(*pm) + " pages ("
        + human_bytes(static_cast<double>(*pm) * 4096) + ") vs tcp_mem pressure "
        + std::to_string(lim(at, 1)) + " / max " + std::to_string(lim(at, 2));
  } else {
    s = "TCP memory pressure";
  }
  if (over_s >= 0) {
    s += ", over pressure for " + num(over_s) + " s";
  }
  if (n_near > 0) {
    s += ", within " + num(100.0 * (1.0 - ctx.param("max_ratio"))) + "% of max"
         + (near_s > 0 ? " for " + num(near_s) + " s" : " in one snapshot");
  }
  if (pressures > 0) {
    s += "; the kernel entered memory pressure " + std::to_string(pressures) + " time(s)";
  }
  if (aborts > 0) {
    s += "; " + std::to_string(aborts) + " connection(s) reset for lack of memory";
  }
  if (!top.empty()) {
    const Track& t = *top.front().second;
    s += "; largest " + proto_name(t) + " " + endpoint(peak.series, t, true) + " -> "
         + endpoint(peak.series, t, false) + " "
         + human_bytes(static_cast<double>(top.front().first)) + " ("
         + pctx.owners_text(*sample_at(t, peak.snap), "no owner") + ")";
  }
  b.summary(std::move(s)).weight(pm ? static_cast<double>(*pm) : 0.0);

  Json rows = Json::array();
  for (uint32_t i = first > 0 ? first - 1 : 0; i < std::min(last + 2, nsnaps); ++i) {
    const auto m = mem(i);
    Json j;
    j["t"] = ctx.time(i);
    j["mem_pages"] = m ? Json(*m) : Json(nullptr);
    j["pressure_pages"] = lim(i, 1) < 0 ? Json(nullptr) : Json(lim(i, 1));
    j["max_pages"] = lim(i, 2) < 0 ? Json(nullptr) : Json(lim(i, 2));
    j["over_pressure"] = over[i] != 0;
    for (size_t k = 0; k < k_counters.size(); ++k) {
      j[std::string(k_counters[k].substr(k_counters[k].find('.') + 1)) + "_delta"] =
          have[k] && sum[k][i] >= 0 ? Json(sum[k][i]) : Json(nullptr);
    }
    rows.push_back(std::move(j));
  }
  Json jt = Json::array();
  for (const auto& [bytes, t] : top) {
    const Sample* x = sample_at(*t, peak.snap);
    const uint32_t who = pctx.culprit(*x);
    Json j;
    j["local"] = endpoint(peak.series, *t, true);
    j["remote"] = endpoint(peak.series, *t, false);
    j["state"] = state_name(x->state);
    j["netns"] = peak.tl().netns[t->netns].inode;
    j["rmem_alloc"] = x->rmem_alloc == k_na ? Json(nullptr) : Json(x->rmem_alloc);
    j["wmem_queued"] = x->wmem_queued == k_na ? Json(nullptr) : Json(x->wmem_queued);
    j["bytes"] = bytes;
    j["inode"] = x->inode;
    j["pid"] = who == k_na ? Json(nullptr) : Json(pctx.processes()[who].pid);
    j["comm"] =
        who == k_na ? Json(nullptr) : Json(peak.series.strings.get(pctx.processes()[who].comm));
    j["owners"] = pctx.owners_text(*x, "no owner");
    jt.push_back(std::move(j));
  }
  b.fact("peak_mem_pages", pm ? Json(*pm) : Json(nullptr));
  b.fact("tcp_mem",
         lim(at, 0) < 0 ? Json(nullptr) : Json::array({lim(at, 0), lim(at, 1), lim(at, 2)}));
  b.fact("snapshots_over_pressure", n_over);
  b.fact("seconds_over_pressure", std::max(over_s, 0.0));
  b.fact("snapshots_near_max", n_near);
  b.fact("seconds_near_max", std::max(near_s, 0.0));
  b.fact("memory_pressures", pressures);
  b.fact("abort_on_memory", aborts);
  b.fact("peak_at", ctx.time(at));
  b.fact("top_sockets", std::move(jt));
  b.fact("scope", "sockstat TCP.mem and tcp_mem are host-global (all namespaces)");
  b.series(std::move(rows), "mem_pages", {"pressure_pages", "max_pages"});
  b.group("netns", "host tcp_mem", "this host", "TCP memory pressure findings");
  out.add(std::move(b).build());
}

} // namespace

Detector tcp_memory_pressure_detector() {
  return {"tcp_memory_pressure",
          "TCP socket memory (sockstat TCP.mem) near or over the tcp_mem limits",
          {
              {"pressure_seconds",
               4,
               "over tcp_mem[pressure] this long (snapshots in a row) is a warning",
               Unit::seconds},
              {"clear_ratio",
               0.8,
               "once over pressure, a snapshot counts as over until mem < this x pressure",
               Unit::ratio},
              {"max_ratio",
               0.9,
               "mem above this fraction of tcp_mem[max] is a warning...",
               Unit::ratio},
              {"critical_seconds", 4, "...and critical when it lasts this long", Unit::seconds},
              {"top_sockets", 10, "sockets listed by rmem_alloc + wmem_queued", Unit::count},
          },
          &check,
          nullptr,
          // No track: the top sockets at the peak are read back from the file.
          [](const Context& /*ctx*/, const Track& /*t*/) { return false; }};
}

} // namespace sockrewind::analyze
