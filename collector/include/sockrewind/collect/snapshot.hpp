#pragma once
// Taking one snapshot: every namespace's sockets, counters and limits, plus process owners.

#include <sockrewind/collect/host.hpp>
#include <sockrewind/collect/model.hpp>
#include <sockrewind/collect/proc_scan.hpp>

#include <string>
#include <vector>

namespace sockrewind::collect {

enum class NetnsMode { all, self };
enum class SocketSource { automatic, proc }; // proc: skip sock_diag (testing the fallback)

struct CaptureOptions {
  NetnsMode netns = NetnsMode::self;
  SocketSource source = SocketSource::automatic;
};

// How one table of one namespace was read.
struct SourceStatus {
  std::string source; // "tcp", "tcp6", "udp", ..., "unix", "netstat", "sockstat", "limits"
  std::string method; // "sock_diag", "proc", "sock_diag+proc"
  std::string status; // "ok", "partial", "failed", "unavailable"
  uint64_t rows = 0;
  int64_t duration_us = 0;
  std::string error;
};

struct NetnsCapture {
  NetnsRef ref;
  std::string status = "ok"; // "ok", or "vanished"/"denied" when it could not be entered
  std::vector<SocketRow> sockets;
  std::vector<CounterRow> counters;
  std::vector<std::pair<std::string, std::string>> limits;
  std::vector<SourceStatus> sources;
  std::vector<Issue> issues;
};

struct Snapshot {
  HostInfo host;
  Clocks start;
  Clocks end;
  std::string netns_mode;
  std::vector<NetnsCapture> namespaces;
  OwnerScan owners;
  std::vector<Issue> issues; // not tied to one namespace
  int64_t cpu_user_us = 0;
  int64_t cpu_sys_us = 0;
};

// Captures the sockets, counters and limits of the namespace the calling thread is in.
NetnsCapture capture_current_netns(const CaptureOptions& opts);

// Takes a whole snapshot. Never throws for per-source problems: they are recorded.
Snapshot take_snapshot(const CaptureOptions& opts, const HostInfo& host);

} // namespace sockrewind::collect
