#pragma once
// What identifies one snapshot across files (the same snapshot in two files, e.g. a collector
// file and a pack of it, is one snapshot).

#include <compare>
#include <cstdint>
#include <string_view>

namespace sockrewind::store {

// A snapshot is identified by its host, its boot (boot_id) and its CLOCK_BOOTTIME: that clock
// only moves forward within a boot and two snapshots of one boot never share a value, while
// CLOCK_REALTIME can be set back. Ordered by host, then boot, then boottime (a timeline's
// order). A view: it refers to the strings it was made from.
struct SnapshotKey {
  std::string_view host;
  std::string_view boot_id;
  int64_t boottime_ns = 0;

  // NOLINTNEXTLINE(modernize-use-nullptr): clang-tidy 14 misreads the defaulted <=>
  friend auto operator<=>(const SnapshotKey&, const SnapshotKey&) = default;
  friend bool operator==(const SnapshotKey&, const SnapshotKey&) = default;
};

} // namespace sockrewind::store
