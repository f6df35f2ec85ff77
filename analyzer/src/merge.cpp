// Merging the snapshot index of many files.
#include <sockrewind/analyze/merge.hpp>

#include <algorithm>
#include <tuple>

namespace sockrewind::analyze {

std::vector<SnapshotInfo> merge_snapshots(std::vector<SnapshotInfo> all) {
  std::sort(all.begin(), all.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return std::tie(a.host, a.boot_id, a.boottime_ns) < std::tie(b.host, b.boot_id, b.boottime_ns);
  });
  const auto same = [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.host == b.host && a.boot_id == b.boot_id && a.boottime_ns == b.boottime_ns;
  };
  all.erase(std::unique(all.begin(), all.end(), same), all.end());
  return all;
}

} // namespace sockrewind::analyze
