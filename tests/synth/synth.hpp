#pragma once
// Synthetic snapshot series for tests and benchmarks. Snapshots are described with a few plain
// structs, turned into the collector's own Snapshot objects and written with its SnapshotFile
// writer, so the files are exactly what sockrewind-collect writes, with any length and clocks.
//
//   synth::Snap s{.realtime_ns = t, .boottime_ns = b};
//   s.sockets.push_back({.state = 10, .local = "0.0.0.0", .lport = 80, .rx = 3, .tx = 128,
//                        .inode = 1000, .cookie = 1, .owners = {{100, 3}}});
//   s.procs.push_back({.pid = 100, .start_ticks = 5, .comm = "nginx"});
//   s.counters["TcpExt.ListenOverflows"] = 7;
//   s.limits["net.core.somaxconn"] = "4096";
//   std::string path = synth::write_series(dir, synth::Host{}, {s});

#include <sockrewind/collect/snapshot.hpp>
#include <sockrewind/collect/writer.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace sockrewind::synth {

// One socket in one snapshot. Numbers are the kernel's (see schema/README.md): family 1 unix,
// 2 inet, 10 inet6; type 1 stream, 2 dgram, 3 raw; proto 6 TCP, 17 UDP (forced to 0 for unix);
// state 1 ESTAB, 6 TIME_WAIT, 7 CLOSE/unconnected, 8 CLOSE_WAIT, 10 LISTEN, ...
struct Sock {
  uint8_t family = 2;
  uint8_t type = 1;
  uint16_t proto = 6;
  uint8_t state = 1;
  // Text addresses (IPv4 or IPv6, as inet_pton reads them); ignored for unix sockets.
  std::string local = "127.0.0.1";
  uint16_t lport = 0;
  std::string remote = "127.0.0.1";
  uint16_t rport = 0;
  // LISTEN: rx = accept queue, tx = its maximum. Unset = NULL in the file.
  std::optional<uint32_t> rx{}, tx{};
  uint64_t inode = 0; // 0 = no file (accept queue, TIME_WAIT, ...); then no owners
  std::optional<uint64_t> cookie{};
  uint32_t uid = 0;
  std::optional<uint8_t> timer{};
  std::optional<uint32_t> expires_ms{};
  std::optional<uint32_t> retrans{};
  // SK_MEMINFO: when any is set, all nine values are written (unset ones as 0).
  std::optional<uint32_t> rmem_alloc{}, rcvbuf{}, wmem_alloc{}, sndbuf{}, wmem_queued{}, drops{};
  // struct tcp_info fields by column name of the tcp_info table ("bytes_received", "backoff",
  // "probes", "total_retrans", "last_ack_recv_ms", "rtt_us", ...), encoded into the raw bytes
  // the kernel would return (full Linux 6.7 length). Empty = no tcp_info (ti_* NULL). Unknown
  // names throw std::invalid_argument.
  std::map<std::string, uint64_t> tcp_info{};
  std::string cong = "cubic"; // written with tcp_info, in --tcp-info full files
  // AF_UNIX only.
  std::optional<std::string> path{};
  std::optional<uint64_t> peer_inode{};
  // Processes holding this inode, (pid, fd): the first is sockets.pid/fd, the rest extra_owners.
  std::vector<std::pair<int32_t, int32_t>> owners{};
  // Network namespace inode; 0 = the host's own (Host::netns_inode).
  uint64_t netns = 0;
};

// A process holding sockets (the processes table), in one snapshot.
struct Proc {
  int32_t pid = 0;
  uint64_t start_ticks = 0;
  std::string comm{};
  std::string cmdline{};
  uint32_t fd_count = 0;
  uint32_t socket_fds = 0;
  std::optional<uint64_t> nofile_soft{};
  std::optional<uint64_t> nofile_hard{};
  uint32_t uid = 0;
  int32_t ppid = 1;
  std::optional<char> state{}; // /proc/PID/stat state letter; unset = NULL
};

// One snapshot: clocks (the end clocks are start + duration_ns), sockets, processes, counters
// and limits of the host's own namespace.
struct Snap {
  int64_t realtime_ns = 0;
  int64_t boottime_ns = 0;
  std::vector<Sock> sockets{};
  std::vector<Proc> procs{};
  // "TcpExt.ListenOverflows" -> value. The file follows the name (see counter_file()).
  std::map<std::string, int64_t> counters{};
  // "net.core.somaxconn" -> "4096" (multi-value sysctls space separated).
  std::map<std::string, std::string> limits{};
  int64_t duration_ns = 20'000'000;
  int64_t cpu_user_us = 0;
  int64_t cpu_sys_us = 0;
};

struct Host {
  std::string hostname = "synth";
  std::string boot_id = "00000000-0000-0000-0000-000000000001";
  std::string kernel = "6.1.0-synth";
  uint64_t netns_inode = 4026531840;
  uint32_t euid = 0;
};

// The counters file of a counter name: TcpExt/IpExt/MPTcpExt.* -> netstat; Ip/Icmp/IcmpMsg/Tcp/
// Udp/UdpLite.* -> snmp; TCP6/UDP6/UDPLITE6/RAW6/FRAG6.* -> sockstat6; other upper-case groups
// (sockets/TCP/UDP/UDPLITE/RAW/FRAG) -> sockstat; a name without a dot (Udp6RcvbufErrors) ->
// snmp6. Throws std::invalid_argument for anything else.
std::string counter_file(const std::string& name);

// The collector's Snapshot for `snap` (what SnapshotFile::write receives).
collect::Snapshot to_snapshot(const Host& host, const Snap& snap);

// Writes snapshots one at a time into a new file DIR/HOST-<time of the first>.sqlite (the
// collector's name; "-2", "-3"... when taken). Without commit() the file is removed.
class SeriesWriter {
public:
  explicit SeriesWriter(std::string dir,
                        Host host = {},
                        collect::TcpInfoMode mode = collect::TcpInfoMode::basic);
  void add(const Snap& snap);
  std::string commit(); // returns the final path; needs at least one add()

private:
  std::string m_dir;
  Host m_host;
  collect::TcpInfoMode m_mode;
  std::unique_ptr<collect::SnapshotFile> m_file;
};

// Writes all snapshots into one new file in `dir`; returns its path.
std::string write_series(const std::string& dir,
                         const Host& host,
                         const std::vector<Snap>& snaps,
                         collect::TcpInfoMode mode = collect::TcpInfoMode::basic);

// Rewrites the file at `path` (written by this build) as schema `version` (1 or 2) wrote it:
// the rows of every table, through the version-3 views where they became views; version 1
// without processes.state. For tests of older files.
void rewrite_as_version(const std::string& path, int version);

} // namespace sockrewind::synth
