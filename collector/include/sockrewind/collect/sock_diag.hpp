#pragma once
// NETLINK_SOCK_DIAG: request building and reply parsing as pure functions over bytes, and a
// live dumper. Parsing is the only place that interprets kernel structs; it checks every
// length (messages, attributes, struct sizes of older and newer kernels).

#include <sockrewind/collect/model.hpp>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

// libmnl's socket handle, declared at global scope so the member below names libmnl's type.
struct mnl_socket;

namespace sockrewind::collect {

// inet_diag extension bits we ask for: INFO, CONG, TOS, TCLASS, SKMEMINFO, SHUTDOWN (1..8
// without VEGASINFO(3) and MEMINFO(1), whose four values SKMEMINFO, 3.3+, carries too).
inline constexpr uint8_t k_inet_diag_ext_default = 0xfa;
// All TCP states including NEW_SYN_RECV (bit 12); not bound-inactive (13).
inline constexpr uint32_t k_all_states = 0x1fff;
// unix_diag show flags: NAME|PEER|RQLEN|MEMINFO|UID (not VFS, ICONS: unused).
inline constexpr uint32_t k_unix_show_default = 0x1 | 0x4 | 0x10 | 0x20 | 0x40;

// A SOCK_DIAG_BY_FAMILY dump request for an inet family/protocol (nlmsghdr + inet_diag_req_v2).
std::vector<uint8_t> build_inet_diag_request(
    uint8_t family, uint16_t protocol, uint32_t states, uint8_t ext, uint32_t seq);

// A SOCK_DIAG_BY_FAMILY dump request for AF_UNIX (nlmsghdr + unix_diag_req).
std::vector<uint8_t> build_unix_diag_request(uint32_t states, uint32_t show, uint32_t seq);

// State of one dump while its replies are parsed chunk by chunk.
struct DiagDumpState {
  bool done = false;        // NLMSG_DONE seen
  int error = 0;            // 0, or the negative errno of NLMSG_DONE / NLMSG_ERROR
  bool interrupted = false; // some message had NLM_F_DUMP_INTR: the dump is inconsistent
  std::vector<Issue> issues;
};

// Parses one buffer of concatenated netlink messages of an inet dump for `protocol`
// (k_ipproto_*), appending one SocketRow per inet_diag_msg to `rows`.
void parse_inet_diag_replies(std::span<const uint8_t> buf,
                             uint16_t protocol,
                             std::vector<SocketRow>& rows,
                             DiagDumpState& state);

// The same for an AF_UNIX dump (unix_diag_msg).
void parse_unix_diag_replies(std::span<const uint8_t> buf,
                             std::vector<SocketRow>& rows,
                             DiagDumpState& state);

// A NETLINK_SOCK_DIAG socket in the network namespace of the thread that creates it.
class DiagSocket {
public:
  // Throws std::system_error when the socket cannot be opened (e.g. EPROTONOSUPPORT).
  DiagSocket();
  DiagSocket(const DiagSocket&) = delete;
  DiagSocket& operator=(const DiagSocket&) = delete;
  DiagSocket(DiagSocket&& other) noexcept;
  DiagSocket& operator=(DiagSocket&& other) noexcept;
  ~DiagSocket();

  // Dumps one inet family/protocol. Rows are appended to `rows`; the returned state says
  // whether the dump finished, failed (error) or was interrupted. Send/recv failures are
  // reported in the state (error = -errno), not thrown.
  DiagDumpState dump_inet(uint8_t family, uint16_t protocol, std::vector<SocketRow>& rows);
  DiagDumpState dump_unix(std::vector<SocketRow>& rows);

  // The same, handing the rows of each received datagram to `on_rows` as they arrive (it may
  // move them out), so that a consumer can work while the kernel builds the next chunk.
  using RowsFn = std::function<void(std::vector<SocketRow>& batch)>;
  DiagDumpState dump_inet(uint8_t family, uint16_t protocol, const RowsFn& on_rows);
  DiagDumpState dump_unix(const RowsFn& on_rows);

private:
  DiagDumpState
  run_dump(const std::vector<uint8_t>& request,
           const std::function<void(std::span<const uint8_t> buf, DiagDumpState& state)>& parse);
  // After a dump that stopped before its NLMSG_DONE: reads and drops what the kernel still
  // has for it, so that the next request on this socket is not refused with EBUSY.
  void drain();

  ::mnl_socket* m_sock = nullptr;
  uint32_t m_seq = 1;
  std::vector<uint8_t> m_buf; // receive buffer, allocated once (64 KiB)
};

} // namespace sockrewind::collect
