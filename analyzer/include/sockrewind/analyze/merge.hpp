#pragma once
// Merging the snapshots of many files into one series per host (info and load_series).

#include <sockrewind/analyze/load.hpp>

#include <vector>

namespace sockrewind::analyze {

// Merges snapshots per host in time order; the same snapshot seen in two files (the same
// SnapshotInfo::key(): host, boot_id and boottime) is kept once. Sorted by that key.
std::vector<SnapshotInfo> merge_snapshots(std::vector<SnapshotInfo> all);

} // namespace sockrewind::analyze
