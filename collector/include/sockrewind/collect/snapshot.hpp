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
  uint64_t socket_rows = 0; // rows kept, in `sockets` or given to a SocketSink
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

// Where socket rows go while they are captured, instead of NetnsCapture::sockets: the
// collector streams them into the file so that the inserts overlap the dumps. Calls come from
// the capturing thread (which may be in another namespace), in this order: owners() once, then
// per table of a namespace begin_table(), rows() any number of times, end_table(); finally
// flush(). end_table(false) drops the table's rows (its dump failed; the /proc rows follow in
// a new table). flush() returns when the sink no longer uses the OwnerScan it was given.
class SocketSink {
public:
  SocketSink() = default;
  SocketSink(const SocketSink&) = delete;
  SocketSink& operator=(const SocketSink&) = delete;
  SocketSink(SocketSink&&) = delete;
  SocketSink& operator=(SocketSink&&) = delete;
  virtual ~SocketSink() = default;

  virtual void owners(const OwnerScan& scan) = 0;
  virtual void begin_table(uint64_t netns_inode) = 0;
  virtual void rows(std::vector<SocketRow>& batch) = 0; // may move the rows out
  virtual void end_table(bool keep) = 0;
  virtual void flush() = 0;
};

// Captures the sockets, counters and limits of the namespace the calling thread is in.
// `ns_inode` names that namespace for the sink.
NetnsCapture capture_current_netns(const CaptureOptions& opts,
                                   SocketSink* sink = nullptr,
                                   uint64_t ns_inode = 0);

// Takes a whole snapshot. Never throws for per-source problems: they are recorded. With a
// sink, the owners are scanned first and socket rows go to the sink (NetnsCapture::sockets
// stays empty; NetnsCapture::socket_rows counts them either way).
Snapshot
take_snapshot(const CaptureOptions& opts, const HostInfo& host, SocketSink* sink = nullptr);

} // namespace sockrewind::collect
