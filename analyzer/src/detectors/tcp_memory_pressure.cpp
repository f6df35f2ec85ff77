// tcp_memory_pressure (research/detectors.md D20): TCP socket memory near the tcp_mem limits.
// sockstat TCP.mem (pages) and net.ipv4.tcp_mem (min pressure max, pages) are host-global, so the
// gauge part is judged once per host; the counters are per namespace and summed.
//   over pressure: TCP.mem > tcp_mem[1] in >= min_samples snapshots (a snapshot stays "over"
//       until the usage drops below clear_ratio x pressure) -> warning;
//   ΔTcpExt.TCPMemoryPressures > 0 (the kernel entered pressure mode between two snapshots)
//       -> warning;
//   near max: TCP.mem > max_ratio x tcp_mem[2] in any snapshot, or ΔTcpExt.TCPAbortOnMemory > 0
//       (connections reset for lack of memory) -> critical.
// Evidence: mem vs the limits and the counter deltas per snapshot, and the top sockets by
// rmem_alloc + wmem_queued at the peak with their owners (usually stalled readers or writers).
#include "conn_util.hpp"

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/primitives.hpp>

#include <algorithm>
#include <array>
#include <string_view>

namespace sockrewind::analyze {

namespace {

constexpr std::array<std::string_view, 3> k_counters{
    "TcpExt.TCPMemoryPressures", "TcpExt.TCPAbortOnMemory", "TcpExt.TCPRcvQDrop"};

uint64_t sock_mem(const Sample& x) {
  return (x.rmem_alloc == k_na ? 0ULL : x.rmem_alloc)
         + (x.wmem_queued == k_na ? 0ULL : x.wmem_queued);
}

void run(const Series& series, const Timeline& tl, const Params& p, std::vector<Finding>& out) {
  const size_t nsnaps = tl.snaps.size();
  // The namespace whose gauge and limits are read: the first that has them.
  uint32_t gns = k_na;
  for (uint32_t i = 0; i < tl.netns.size() && gns == k_na; ++i) {
    if (conn::values(series, tl, i, "TCP.mem") != nullptr) {
      gns = i;
    }
  }
  // Counter deltas summed over namespaces, per snapshot ending the interval.
  std::array<std::vector<int64_t>, k_counters.size()> sum;
  std::array<bool, k_counters.size()> have{};
  for (size_t k = 0; k < k_counters.size(); ++k) {
    sum[k].assign(nsnaps, -1);
    for (uint32_t ns = 0; ns < tl.netns.size(); ++ns) {
      for (const CounterStep& c : counter_steps(series, tl, ns, k_counters[k])) {
        have[k] = true;
        sum[k][c.to] = std::max<int64_t>(sum[k][c.to], 0) + c.delta;
      }
    }
  }
  const std::vector<int64_t>* mem =
      gns == k_na ? nullptr : conn::values(series, tl, gns, "TCP.mem");
  std::vector<std::array<int64_t, 3>> limits(nsnaps, {-1, -1, -1});
  size_t over = 0;
  size_t near_max = 0;
  size_t pressures = 0;
  int64_t pressures_total = 0;
  int64_t aborts_total = 0;
  size_t first = nsnaps;
  size_t last = 0;
  uint32_t peak = k_na;
  bool in_pressure = false;
  std::vector<uint8_t> flag(nsnaps, 0);
  for (uint32_t i = 0; i < nsnaps; ++i) {
    bool hit = false;
    const int64_t m = conn::value_at(mem, i);
    if (gns != k_na) {
      const std::vector<int64_t> lim = limit_numbers(tl, gns, "net.ipv4.tcp_mem", i);
      if (lim.size() == 3) {
        limits[i] = {lim[0], lim[1], lim[2]};
      }
    }
    if (m != k_no_counter && limits[i][1] > 0) {
      const auto dm = static_cast<double>(m);
      const double clear = p.get("clear_ratio") * static_cast<double>(limits[i][1]);
      in_pressure = m > limits[i][1] || (in_pressure && dm >= clear);
      if (in_pressure) {
        ++over;
        hit = true;
        flag[i] |= 1U;
      }
      if (dm > p.get("max_ratio") * static_cast<double>(limits[i][2])) {
        ++near_max;
        hit = true;
        flag[i] |= 2U;
      }
      if (peak == k_na || m > conn::value_at(mem, peak)) {
        peak = i;
      }
    } else {
      in_pressure = false;
    }
    if (sum[0][i] > 0) {
      ++pressures;
      pressures_total += sum[0][i];
      hit = true;
    }
    if (sum[1][i] > 0) {
      aborts_total += sum[1][i];
      hit = true;
    }
    if (hit) {
      first = std::min<size_t>(first, sum[0][i] > 0 || sum[1][i] > 0 ? i - (i > 0 ? 1 : 0) : i);
      last = i;
    }
  }
  const bool gauge_warn = static_cast<double>(over) >= p.get("min_samples");
  if (!gauge_warn && pressures == 0 && near_max == 0 && aborts_total == 0) {
    return;
  }
  const bool critical = near_max > 0 || aborts_total > 0;
  // The peak snapshot for the top consumers: the highest usage within the window.
  uint32_t at = peak;
  if (at == k_na || at < first || at > last) {
    at = static_cast<uint32_t>(last);
    for (size_t i = first; i <= last; ++i) {
      if (mem != nullptr && conn::value_at(mem, static_cast<uint32_t>(i)) != k_no_counter
          && conn::value_at(mem, static_cast<uint32_t>(i)) >= conn::value_at(mem, at)) {
        at = static_cast<uint32_t>(i);
      }
    }
  }
  std::vector<std::pair<uint64_t, const Track*>> top;
  std::vector<uint64_t> mem_by_netns(tl.netns.size(), 0);
  for (const Track& t : tl.tracks) {
    if (!conn::is_tcp(t)) {
      continue;
    }
    const Sample* x = sample_at(t, at);
    if (x == nullptr || sock_mem(*x) == 0) {
      continue;
    }
    mem_by_netns[t.netns] += sock_mem(*x);
    top.emplace_back(sock_mem(*x), &t);
  }
  const size_t ntop = std::min<size_t>(top.size(), static_cast<size_t>(p.get("top_sockets")));
  std::partial_sort(top.begin(),
                    top.begin() + static_cast<std::ptrdiff_t>(ntop),
                    top.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  top.resize(ntop);
  uint32_t subject_ns = gns == k_na ? 0 : gns;
  if (!top.empty()) {
    subject_ns = top.front().second->netns;
  }

  Finding f;
  f.detector = "tcp_memory_pressure";
  f.severity = critical ? Severity::critical : Severity::warning;
  f.subject = netns_subject(tl, subject_ns);
  f.first_seen_ns = tl.snaps[first].realtime_ns;
  f.last_seen_ns = tl.snaps[last].realtime_ns;
  const int64_t pm = conn::value_at(mem, at);
  const std::array<int64_t, 3>& lim = limits[at];
  std::string what;
  if (pm != k_no_counter && lim[1] > 0) {
    what = "TCP memory " + std::to_string(pm) + " pages ("
           + human_bytes(static_cast<double>(pm) * 4096) + ") vs tcp_mem pressure "
           + std::to_string(lim[1]) + " / max " + std::to_string(lim[2]);
  } else {
    what = "TCP memory pressure";
  }
  std::string events;
  if (pressures_total > 0) {
    events +=
        "; the kernel entered memory pressure " + std::to_string(pressures_total) + " time(s)";
  }
  if (aborts_total > 0) {
    events += "; " + std::to_string(aborts_total) + " connection(s) reset for lack of memory";
  }
  std::string top_text;
  if (!top.empty()) {
    const Track& t = *top.front().second;
    const Sample* x = sample_at(t, at);
    top_text = "; largest " + conn::sock_text(series, t) + " "
               + human_bytes(static_cast<double>(top.front().first)) + " ("
               + conn::owner_text(series, tl, x == nullptr ? k_na : x->owner, "no owner") + ")";
  }
  f.summary =
      what + (over > 0 ? " (over pressure in " + std::to_string(over) + " snapshots)" : "")
      + (near_max > 0 ? ", within " + num(100.0 * (1.0 - p.get("max_ratio"))) + "% of max" : "")
      + events + top_text;

  Json ser = Json::array();
  for (size_t i = first > 0 ? first - 1 : 0; i < std::min(last + 2, nsnaps); ++i) {
    const auto s = static_cast<uint32_t>(i);
    Json j;
    j["t"] = snap_time(tl, s);
    const int64_t m = conn::value_at(mem, s);
    j["mem_pages"] = m == k_no_counter ? Json(nullptr) : Json(m);
    j["pressure_pages"] = limits[i][1] < 0 ? Json(nullptr) : Json(limits[i][1]);
    j["max_pages"] = limits[i][2] < 0 ? Json(nullptr) : Json(limits[i][2]);
    j["over_pressure"] = (flag[i] & 1U) != 0;
    for (size_t k = 0; k < k_counters.size(); ++k) {
      j[std::string(k_counters[k].substr(k_counters[k].find('.') + 1)) + "_delta"] =
          have[k] && sum[k][i] >= 0 ? Json(sum[k][i]) : Json(nullptr);
    }
    ser.push_back(std::move(j));
  }
  Json jt = Json::array();
  for (const auto& [bytes, t] : top) {
    const Sample* x = sample_at(*t, at);
    Json j;
    j["local"] = endpoint(series, *t, true);
    j["remote"] = endpoint(series, *t, false);
    j["state"] = state_name(x->state);
    j["netns"] = tl.netns[t->netns].inode;
    j["rmem_alloc"] = conn::opt(x->rmem_alloc);
    j["wmem_queued"] = conn::opt(x->wmem_queued);
    j["bytes"] = bytes;
    j["inode"] = x->inode;
    j["pid"] = x->owner == k_na ? Json(nullptr) : Json(tl.procs[x->owner].pid);
    j["comm"] =
        x->owner == k_na ? Json(nullptr) : Json(series.strings.get(tl.procs[x->owner].comm));
    jt.push_back(std::move(j));
  }
  f.evidence["peak_mem_pages"] = pm == k_no_counter ? Json(nullptr) : Json(pm);
  f.evidence["tcp_mem"] = lim[0] < 0 ? Json(nullptr) : Json(lim);
  f.evidence["snapshots_over_pressure"] = over;
  f.evidence["snapshots_near_max"] = near_max;
  f.evidence["memory_pressures"] = pressures_total;
  f.evidence["abort_on_memory"] = aborts_total;
  f.evidence["peak_at"] = snap_time(tl, at);
  f.evidence["top_sockets"] = std::move(jt);
  f.evidence["scope"] = "sockstat TCP.mem and tcp_mem are host-global (all namespaces)";
  f.evidence["series"] = std::move(ser);
  f.weight = pm == k_no_counter ? 0.0 : static_cast<double>(pm);
  out.push_back(std::move(f));
}

} // namespace

Detector tcp_memory_pressure_detector() {
  return {"tcp_memory_pressure",
          "TCP socket memory (sockstat TCP.mem) near or over the tcp_mem limits",
          {
              {"min_samples", 2, "snapshots over tcp_mem[pressure] for a warning"},
              {"clear_ratio",
               0.8,
               "once over pressure, a snapshot counts as over until mem < this x pressure"},
              {"max_ratio", 0.9, "mem above this fraction of tcp_mem[max] is critical"},
              {"top_sockets", 10, "sockets listed by rmem_alloc + wmem_queued"},
          },
          &run};
}

} // namespace sockrewind::analyze
