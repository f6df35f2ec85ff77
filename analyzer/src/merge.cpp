// Merging the snapshot index of many files.
#include <sockrewind/analyze/merge.hpp>

#include <algorithm>

namespace sockrewind::analyze {

std::vector<SnapshotInfo> merge_snapshots(std::vector<SnapshotInfo> all) {
  std::sort(all.begin(), all.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.key() < b.key();
  });
  const auto same = [](const SnapshotInfo& a, const SnapshotInfo& b) { return a.key() == b.key(); };
  all.erase(std::unique(all.begin(), all.end(), same), all.end());
  return all;
}

} // namespace sockrewind::analyze
