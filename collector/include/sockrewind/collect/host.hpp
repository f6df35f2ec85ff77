#pragma once
// Facts about the host and the collector itself, and the limits (sysctls) detectors compare to.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sockrewind::collect {

struct Clocks {
  int64_t realtime_ns = 0; // CLOCK_REALTIME
  int64_t boottime_ns = 0; // CLOCK_BOOTTIME: monotonic, counts suspend; orders snapshots
};

Clocks read_clocks();

struct HostInfo {
  std::string hostname;
  std::string kernel;  // uname release
  std::string boot_id; // /proc/sys/kernel/random/boot_id
  uint32_t euid = 0;
  uint64_t self_netns = 0; // inode of the collector's own net namespace
  bool little_endian = true;
  long user_hz = 100;
  long page_size = 4096;
};

HostInfo read_host_info();

// The sysctls read in each network namespace, as (dotted name, value text). Files that do
// not exist on this kernel or in this namespace are left out. Must run on a thread that is in
// the namespace (the /proc/sys/net view follows the reader's namespace).
std::vector<std::pair<std::string, std::string>> read_limits();

// CPU time used by this process so far, in microseconds (user, system).
std::pair<int64_t, int64_t> process_cpu_us();

} // namespace sockrewind::collect
