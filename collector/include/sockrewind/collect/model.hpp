#pragma once
// Row types the collector's sources produce and the writer stores. Plain data, no I/O.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace sockrewind::collect {

// Address families, socket types and protocols as the kernel numbers them (no <linux/*> here).
inline constexpr uint8_t k_af_unix = 1;
inline constexpr uint8_t k_af_inet = 2;
inline constexpr uint8_t k_af_inet6 = 10;
inline constexpr uint8_t k_sock_stream = 1;
inline constexpr uint8_t k_sock_dgram = 2;
inline constexpr uint8_t k_sock_raw = 3;
inline constexpr uint8_t k_sock_seqpacket = 5;
inline constexpr uint16_t k_ipproto_tcp = 6;
inline constexpr uint16_t k_ipproto_udp = 17;
inline constexpr uint16_t k_ipproto_udplite = 136;
inline constexpr uint16_t k_ipproto_raw = 255;

// TCP state numbers (also used for unix sockets, as unix_diag does).
inline constexpr uint8_t k_tcp_established = 1;
inline constexpr uint8_t k_tcp_syn_sent = 2;
inline constexpr uint8_t k_tcp_syn_recv = 3;
inline constexpr uint8_t k_tcp_time_wait = 6;
inline constexpr uint8_t k_tcp_close = 7;
inline constexpr uint8_t k_tcp_close_wait = 8;
inline constexpr uint8_t k_tcp_listen = 10;

// Number of SK_MEMINFO_* values we keep (RMEM_ALLOC .. DROPS).
inline constexpr size_t k_skmem_fields = 9;

// One socket as one source saw it. Optional fields are those a source may not provide;
// they are stored as NULL, never as zero.
struct SocketRow {
  uint8_t family = 0; // k_af_*
  uint8_t type = 0;   // k_sock_*
  uint16_t proto = 0; // k_ipproto_* for inet; 0 for unix
  uint8_t state = 0;  // TCP state numbering

  // Addresses in network byte order: 4 bytes for AF_INET, 16 for AF_INET6, none for unix.
  // (The /proc parsers convert the host-order hex words of /proc/net back to network order.)
  std::array<uint8_t, 16> local_addr{};
  std::array<uint8_t, 16> remote_addr{};
  uint8_t addr_len = 0;
  uint16_t local_port = 0; // host order; for raw sockets the IP protocol, as the kernel shows
  uint16_t remote_port = 0;

  // LISTEN: rx_queue = accept queue length, tx_queue = max backlog (sock_diag only; NULL from
  // /proc, whose 0 there means "unknown"). Otherwise bytes as the kernel reports them.
  std::optional<uint32_t> rx_queue;
  std::optional<uint32_t> tx_queue;
  uint64_t inode = 0; // 0 = no struct file yet (accept queue, TIME_WAIT, SYN_RECV, embryo)
  std::optional<uint64_t> cookie;
  std::optional<uint32_t> uid;
  std::optional<uint8_t> timer;
  std::optional<uint32_t> expires_ms;
  std::optional<uint32_t> retrans; // idiag_retrans / the /proc retrnsmt column
  std::optional<uint8_t> shutdown;
  std::optional<uint8_t> tos;

  // SK_MEMINFO values; skmem_count says how many the source returned (0 = none).
  std::array<uint32_t, k_skmem_fields> skmem{};
  uint8_t skmem_count = 0;
  // /proc/net/udp's drops column when no skmem is available.
  std::optional<uint32_t> drops;

  // AF_UNIX only.
  std::optional<std::string> path; // abstract names start with '@', as ss and /proc show them
  std::optional<uint64_t> peer_inode;

  // TCP only: struct tcp_info exactly as the kernel returned it (its length is the kernel's),
  // and the congestion control name.
  std::vector<uint8_t> tcp_info;
  std::string cong;
};

// A per-item problem kept as data: counted, with one example, never fatal.
struct Issue {
  std::string source; // e.g. "proc:tcp", "sock_diag:unix", "proc_fd"
  std::string kind;   // e.g. "bad_row", "duplicate", "vanished", "eacces"
  std::string example;
};

// What a parser returns: the rows it could read and the problems it met.
template <typename T> struct Parsed {
  std::vector<T> rows;
  std::vector<Issue> issues;
};

// One kernel counter or gauge: file ("netstat", "snmp", "snmp6", "sockstat", "sockstat6"),
// name as "Group.Field" (e.g. "TcpExt.ListenOverflows", "TCP.inuse"), value.
struct CounterRow {
  std::string file;
  std::string name;
  int64_t value = 0;
};

// Identity and attributes of a process that holds socket fds.
struct ProcessRow {
  int32_t pid = 0;
  uint64_t start_ticks = 0; // field 22 of /proc/[pid]/stat, clock ticks since boot
  std::optional<int32_t> ppid;
  // Field 3 of /proc/[pid]/stat: R running, S sleeping, D disk sleep, T stopped, t tracing stop,
  // Z zombie, I idle, ...; unset when stat could not be read (or held no letter there).
  std::optional<char> state;
  std::optional<uint32_t> uid;
  std::optional<uint64_t> netns_inode;
  std::string comm;
  std::optional<std::string> cmdline; // NUL separators replaced by spaces
  std::optional<uint32_t> fd_count;
  uint32_t socket_fds = 0;
  std::optional<uint64_t> nofile_soft;
  std::optional<uint64_t> nofile_hard;
};

// Fields parsed from /proc/[pid]/stat that identify a process.
struct ProcStat {
  int32_t pid = 0;
  std::string comm; // between the first '(' and the LAST ')'
  char state = '?';
  int32_t ppid = 0;
  uint64_t start_ticks = 0;
  int64_t num_threads = 0;
};

} // namespace sockrewind::collect
