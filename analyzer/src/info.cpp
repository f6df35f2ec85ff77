#include <sockrewind/analyze/info.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/merge.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>
#include <tuple>

namespace sockrewind::analyze {

namespace {

std::string seconds(double s) {
  char buf[32];
  (void)std::snprintf(buf, sizeof buf, "%.1f s", s);
  return buf;
}

} // namespace

void write_info(const std::vector<std::string>& files, std::ostream& out) {
  std::vector<SnapshotInfo> all;
  std::map<std::string, std::pair<int64_t, std::string>> issues; // "source kind" -> count, ex
  for (const std::string& f : files) {
    std::vector<SnapshotInfo> s = load_snapshot_index(f);
    all.insert(all.end(), s.begin(), s.end());
    for (const IssueSum& i : load_issue_summary(f)) {
      auto& slot = issues[i.source + " " + i.kind];
      slot.first += i.count;
      if (slot.second.empty()) {
        slot.second = i.example;
      }
    }
  }
  require_snapshots(files, all.size());
  const size_t loaded = all.size();
  all = merge_snapshots(std::move(all));
  out << "files: " << files.size() << ", snapshots: " << all.size();
  if (loaded != all.size()) {
    out << " (" << loaded - all.size() << " seen twice, counted once)";
  }
  out << "\n";
  size_t begin = 0;
  while (begin < all.size()) {
    size_t end = begin;
    while (end < all.size() && all[end].host == all[begin].host
           && all[end].boot_id == all[begin].boot_id) {
      ++end;
    }
    const SnapshotInfo& first = all[begin];
    const SnapshotInfo& last = all[end - 1];
    out << "\nhost " << escape_text(first.host) << "  boot " << escape_text(first.boot_id)
        << "  kernel " << escape_text(first.kernel) << "\n";
    out << "  snapshots: " << end - begin << "  from " << iso8601(first.realtime_ns) << "  to "
        << iso8601(last.realtime_ns) << "\n";
    std::vector<int64_t> boottime;
    for (size_t i = begin; i < end; ++i) {
      boottime.push_back(all[i].boottime_ns);
    }
    const Intervals iv = snapshot_intervals(boottime);
    if (!iv.seconds.empty()) {
      out << "  interval: median " << seconds(iv.median_s) << ", min "
          << seconds(*std::min_element(iv.seconds.begin(), iv.seconds.end())) << ", max "
          << seconds(*std::max_element(iv.seconds.begin(), iv.seconds.end())) << "\n";
      for (const size_t i : iv.gaps) {
        out << "  gap: " << seconds(iv.seconds[i]) << " before "
            << iso8601(all[begin + i + 1].realtime_ns) << "\n";
      }
    }
    int64_t min_sockets = first.sockets;
    int64_t max_sockets = first.sockets;
    int64_t issue_total = 0;
    double max_duration = 0;
    std::set<std::string> sources;
    std::set<std::string> file_set;
    for (size_t i = begin; i < end; ++i) {
      min_sockets = std::min(min_sockets, all[i].sockets);
      max_sockets = std::max(max_sockets, all[i].sockets);
      issue_total += all[i].issues;
      max_duration = std::max(max_duration, static_cast<double>(all[i].duration_ns) / 1e9);
      sources.insert(all[i].sources);
      file_set.insert(all[i].file);
    }
    out << "  sockets per snapshot: " << min_sockets << ".." << max_sockets
        << "  capture issues: " << issue_total << "  longest snapshot: " << seconds(max_duration)
        << "\n";
    for (const std::string& s : sources) {
      out << "  sources: " << escape_text(s) << "\n";
    }
    out << "  files: " << file_set.size() << "\n";
    begin = end;
  }
  if (!issues.empty()) {
    out << "\ncapture issues (source kind: count, example):\n";
    for (const auto& [key, v] : issues) {
      out << "  " << escape_text(key) << ": " << v.first << ", " << escape_text(v.second) << "\n";
    }
  }
}

} // namespace sockrewind::analyze
