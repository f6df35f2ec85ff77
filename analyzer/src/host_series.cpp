// One host's snapshots across timelines, in time order.
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/host_series.hpp>
#include <sockrewind/analyze/text.hpp>

#include <algorithm>
#include <cstdio>
#include <set>

namespace sockrewind::analyze {

std::string pick_host(const std::vector<std::string>& hosts,
                      const std::optional<std::string>& wanted) {
  const std::set<std::string> unique(hosts.begin(), hosts.end());
  std::string list;
  for (const std::string& h : unique) {
    list += (list.empty() ? "" : ", ") + escape_text(h);
  }
  if (wanted) {
    if (!unique.contains(*wanted)) {
      throw UsageError("no host '" + escape_text(*wanted) + "' in the files (hosts: " + list + ")");
    }
    return *wanted;
  }
  if (unique.empty()) {
    throw UsageError("the files hold no snapshots");
  }
  if (unique.size() > 1) {
    throw UsageError("the files hold several hosts: " + list + "; choose one with --host");
  }
  return *unique.begin();
}

HostSeries host_series(const Series& s, const std::string& host) {
  std::vector<uint32_t> tls;
  for (size_t i = 0; i < s.timelines.size(); ++i) {
    if (s.timelines[i].host == host && !s.timelines[i].snaps.empty()) {
      tls.push_back(static_cast<uint32_t>(i));
    }
  }
  std::stable_sort(tls.begin(), tls.end(), [&](uint32_t a, uint32_t b) {
    return s.timelines[a].snaps.front().realtime_ns < s.timelines[b].snaps.front().realtime_ns;
  });
  HostSeries out;
  out.host = host;
  for (const uint32_t t : tls) {
    out.offset[t] = out.snaps.size();
    for (size_t i = 0; i < s.timelines[t].snaps.size(); ++i) {
      out.snaps.push_back({t, static_cast<uint32_t>(i)});
    }
  }
  return out;
}

std::vector<std::string> series_hosts(const Series& s) {
  std::vector<std::string> hosts;
  for (const Timeline& tl : s.timelines) {
    hosts.push_back(tl.host);
  }
  return hosts;
}

std::string boundary(const Series& s, const HostSnap& prev, const HostSnap& next) {
  const Timeline& b = s.timelines[next.timeline];
  if (prev.timeline != next.timeline) {
    return "reboot: boot " + escape_text(b.boot_id) + " (counters and cookies start over)";
  }
  if (b.snaps[prev.snap].run != b.snaps[next.snap].run) {
    char buf[64];
    (void)std::snprintf(
        buf, sizeof buf, "gap: %.1f s without snapshots", b.dt(prev.snap, next.snap));
    return buf;
  }
  return "";
}

} // namespace sockrewind::analyze
