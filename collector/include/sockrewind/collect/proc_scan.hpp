#pragma once
// One pass over /proc: which process holds which socket (inode -> pid, fd), the identity of
// those processes, and which network namespaces exist.

#include <sockrewind/collect/model.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace sockrewind::collect {

struct Owner {
  int32_t pid = 0;
  int32_t fd = 0;
};

struct OwnerScan {
  // Socket inode -> the first owner found (lowest pid in /proc order). Further owners of the
  // same inode (fork, dup, SCM_RIGHTS) are in `extra`.
  std::unordered_map<uint64_t, Owner> first;
  std::vector<std::pair<uint64_t, Owner>> extra;
  std::vector<ProcessRow> processes; // only processes holding at least one socket fd
  std::vector<Issue> issues;         // vanished pids, EACCES, unreadable entries
  uint32_t pids_scanned = 0;
};

// Reads every /proc/[pid]/fd (and task/*/fd of zombie thread-group leaders). Processes that
// exit or deny access mid-scan are counted as issues, never fatal.
OwnerScan scan_owners(const std::string& proc_root = "/proc");

// A network namespace and a path that setns() can open to enter it.
struct NetnsRef {
  uint64_t inode = 0;
  std::string via;  // "self", "pid", "task", "run-netns"
  std::string path; // e.g. /proc/123/ns/net or /run/netns/NAME
  std::optional<std::string> name;
  std::optional<int32_t> pid;
  // The namespace held open since discovery (closed with the last copy), so that it can be
  // entered even when the process it was found through has exited; null: open `path`.
  std::shared_ptr<const int> fd;
};

// All namespaces: the collector's own first, then the distinct ones of every process and
// thread, then /run/netns bind mounts not seen otherwise.
std::vector<NetnsRef> discover_netns(std::vector<Issue>& issues,
                                     const std::string& proc_root = "/proc",
                                     const std::string& run_netns = "/run/netns");

} // namespace sockrewind::collect
