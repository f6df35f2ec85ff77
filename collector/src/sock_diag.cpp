// NETLINK_SOCK_DIAG requests, reply parsing and the live dumper.
//
// The parsers never cast the input buffer to kernel structs: every fixed-size read is a
// memcpy after a bounds check, so unaligned, truncated or hostile input cannot make them read
// out of bounds. libmnl is used for the socket only (open, bind, send).

#include <sockrewind/collect/sock_diag.hpp>

#include <libmnl/libmnl.h>

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <system_error>
#include <utility>

namespace sockrewind::collect {

namespace {

// Netlink header and attribute sizes and alignment, without glibc's NLMSG_*/NLA_* macros
// (they are built from old-style casts).
constexpr size_t k_nl_align = 4;
constexpr size_t k_nlmsg_hdrlen = sizeof(nlmsghdr); // 16, already aligned
constexpr size_t k_nla_hdrlen = sizeof(nlattr);     // 4, already aligned
// NLA_F_NESTED and NLA_F_NET_BYTEORDER live in the top two bits of nla_type.
constexpr uint16_t k_nla_type_mask = 0x3fff;
// IPPROTO_MPTCP (262) does not fit sdiag_protocol (u8): it is passed as an attribute.
constexpr uint16_t k_ipproto_mptcp = 262;

// Receive buffer: the kernel sizes dump chunks to the reader's last recv() length, capped at
// about 32 KiB; 64 KiB leaves room so that a datagram is never truncated (MSG_TRUNC loses the
// rest of that datagram).
constexpr size_t k_recv_buffer_size = size_t{64} * 1024;
constexpr int k_rcvbuf_bytes = 1024 * 1024;
// A recv() that waits longer than this means the kernel stopped answering: report EAGAIN
// rather than hang the collector.
constexpr time_t k_recv_timeout_s = 10;

constexpr size_t align4(size_t n) {
  return (n + k_nl_align - 1) & ~(k_nl_align - 1);
}

static_assert(sizeof(nlmsghdr) == 16);
static_assert(sizeof(nlattr) == 4);
static_assert(sizeof(inet_diag_req_v2) == 56);
static_assert(sizeof(inet_diag_msg) == 72);
static_assert(sizeof(unix_diag_req) == 24);
static_assert(sizeof(unix_diag_msg) == 16);
static_assert(sizeof(nlmsgerr) >= sizeof(int));

// Reads a T at `off`; the caller has checked off + sizeof(T) <= b.size().
template <typename T> T load(std::span<const uint8_t> b, size_t off) {
  T v;
  std::memcpy(&v, b.data() + off, sizeof(T));
  return v;
}

template <typename T> void store(std::vector<uint8_t>& b, size_t off, const T& v) {
  std::memcpy(b.data() + off, &v, sizeof(T));
}

const char* protocol_source(uint16_t protocol) {
  switch (protocol) {
  case k_ipproto_tcp:
    return "sock_diag:tcp";
  case k_ipproto_udp:
    return "sock_diag:udp";
  case k_ipproto_udplite:
    return "sock_diag:udplite";
  case k_ipproto_raw:
    return "sock_diag:raw";
  case k_ipproto_mptcp:
    return "sock_diag:mptcp";
  default:
    return "sock_diag:inet";
  }
}

constexpr const char* k_unix_source = "sock_diag:unix";

uint8_t socket_type_of(uint16_t protocol) {
  switch (protocol) {
  case k_ipproto_tcp:
  case k_ipproto_mptcp:
    return k_sock_stream;
  case k_ipproto_udp:
  case k_ipproto_udplite:
    return k_sock_dgram;
  case k_ipproto_raw:
    return k_sock_raw;
  default:
    return 0;
  }
}

void add_issue(DiagDumpState& state, const char* source, const char* kind, std::string example) {
  state.issues.push_back({source, kind, std::move(example)});
}

// The socket cookie: cookie[0] holds the low and cookie[1] the high 32 bits. The kernel
// assigns cookies from 1, so 0 means "none".
std::optional<uint64_t> make_cookie(const uint32_t (&c)[2]) {
  const uint64_t v = static_cast<uint64_t>(c[0]) | (static_cast<uint64_t>(c[1]) << 32);
  if (v == 0) {
    return std::nullopt;
  }
  return v;
}

// Grows `rows` geometrically ahead of a buffer that can hold at most `max_new` rows, so that a
// dump of many chunks does not reallocate per chunk.
void reserve_for(std::vector<SocketRow>& rows, size_t max_new) {
  const size_t want = rows.size() + max_new;
  if (rows.capacity() < want) {
    rows.reserve(std::max(want, rows.capacity() * 2));
  }
}

// Walks netlink attributes in `b` (the bytes after a fixed header), calling
// f(type without flag bits, payload). Returns false when an attribute's length is
// impossible or the area does not end on an attribute boundary; attributes before the bad
// one have been reported.
template <typename F> bool walk_attrs(std::span<const uint8_t> b, F&& f) {
  size_t off = 0;
  while (b.size() - off >= k_nla_hdrlen) {
    const auto a = load<nlattr>(b, off);
    const size_t len = a.nla_len;
    if (len < k_nla_hdrlen || len > b.size() - off) {
      return false;
    }
    f(static_cast<uint16_t>(a.nla_type & k_nla_type_mask),
      b.subspan(off + k_nla_hdrlen, len - k_nla_hdrlen));
    off += std::min(align4(len), b.size() - off);
  }
  return off == b.size();
}

// u32 array (SK_MEMINFO_*) → row.skmem; older kernels send fewer values, newer ones more.
void copy_skmem(std::span<const uint8_t> data, SocketRow& row) {
  const size_t n = std::min(data.size() / sizeof(uint32_t), k_skmem_fields);
  for (size_t i = 0; i < n; ++i) {
    row.skmem[i] = load<uint32_t>(data, i * sizeof(uint32_t));
  }
  row.skmem_count = static_cast<uint8_t>(n);
}

// One netlink message's header, already validated against the buffer.
struct Message {
  nlmsghdr hdr;
  std::span<const uint8_t> payload; // nlmsg_len - header bytes
};

// Walks the netlink messages in `buf`, handling DONE/ERROR/DUMP_INTR and length errors, and
// calls on_diag(payload) for each SOCK_DIAG_BY_FAMILY message. With `expected_seq`, messages
// of another sequence number (left over from an earlier, aborted dump) are skipped.
template <typename F>
void walk_messages(std::span<const uint8_t> buf,
                   const char* source,
                   const std::optional<uint32_t>& expected_seq,
                   DiagDumpState& state,
                   F&& on_diag) {
  size_t off = 0;
  while (off < buf.size() && !state.done) {
    const size_t left = buf.size() - off;
    if (left < k_nlmsg_hdrlen) {
      add_issue(state,
                source,
                "truncated",
                std::to_string(left) + " bytes at offset " + std::to_string(off)
                    + " are too short for a netlink header");
      return;
    }
    const auto hdr = load<nlmsghdr>(buf, off);
    if (hdr.nlmsg_len < k_nlmsg_hdrlen || hdr.nlmsg_len > left) {
      add_issue(state,
                source,
                hdr.nlmsg_len < k_nlmsg_hdrlen ? "bad_length" : "truncated",
                "nlmsg_len " + std::to_string(hdr.nlmsg_len) + " at offset " + std::to_string(off)
                    + " with " + std::to_string(left) + " bytes left");
      return;
    }
    const Message msg{hdr, buf.subspan(off + k_nlmsg_hdrlen, hdr.nlmsg_len - k_nlmsg_hdrlen)};
    // The last message of a buffer may lack its alignment padding.
    off += std::min(align4(hdr.nlmsg_len), left);

    if (expected_seq && hdr.nlmsg_seq != *expected_seq) {
      add_issue(state,
                source,
                "stale_message",
                "seq " + std::to_string(hdr.nlmsg_seq) + ", expected "
                    + std::to_string(*expected_seq));
      continue;
    }
    if ((hdr.nlmsg_flags & NLM_F_DUMP_INTR) != 0) {
      // The kernel's table changed while it was being walked: rows may be missing or repeated.
      state.interrupted = true;
    }

    switch (hdr.nlmsg_type) {
    case NLMSG_NOOP:
      break;
    case NLMSG_DONE:
      // A dump ends with NLMSG_DONE carrying an int: 0, or the negative errno of a dump that
      // failed after it started (e.g. -ENOENT when no handler exists for the protocol).
      state.done = true;
      if (msg.payload.size() >= sizeof(int)) {
        const int err = load<int>(msg.payload, 0);
        if (err < 0) {
          state.error = err;
        }
      }
      return;
    case NLMSG_ERROR: {
      // Request-level failure: struct nlmsgerr { int error; struct nlmsghdr orig; } (+ ext-ack
      // TLVs). error 0 would be an ACK, which ends the exchange as well.
      state.done = true;
      if (msg.payload.size() < sizeof(int)) {
        add_issue(state,
                  source,
                  "short_message",
                  "NLMSG_ERROR with " + std::to_string(msg.payload.size()) + " payload bytes");
        state.error = -EBADMSG;
        return;
      }
      const int err = load<int>(msg.payload, 0);
      if (err > 0) {
        add_issue(
            state, source, "bad_error", "NLMSG_ERROR with positive error " + std::to_string(err));
        state.error = -EPROTO;
      } else {
        state.error = err;
      }
      return;
    }
    case SOCK_DIAG_BY_FAMILY:
      on_diag(msg.payload);
      break;
    default:
      add_issue(state,
                source,
                "unexpected_type",
                "netlink message type " + std::to_string(hdr.nlmsg_type) + " skipped");
      break;
    }
  }
}

void parse_inet_msg(std::span<const uint8_t> payload,
                    uint16_t protocol,
                    const char* source,
                    std::vector<SocketRow>& rows,
                    DiagDumpState& state) {
  if (payload.size() < sizeof(inet_diag_msg)) {
    add_issue(state,
              source,
              "short_message",
              "inet_diag_msg of " + std::to_string(payload.size()) + " bytes (need "
                  + std::to_string(sizeof(inet_diag_msg)) + ")");
    return;
  }
  const auto m = load<inet_diag_msg>(payload, 0);
  if (m.idiag_family != AF_INET && m.idiag_family != AF_INET6) {
    add_issue(state, source, "bad_family", "idiag_family " + std::to_string(m.idiag_family));
    return;
  }

  SocketRow& row = rows.emplace_back();
  row.family = m.idiag_family;
  row.type = socket_type_of(protocol);
  row.proto = protocol;
  row.state = m.idiag_state;
  // Addresses are in network order already; IPv4 uses the first 4 bytes of src/dst.
  row.addr_len = m.idiag_family == AF_INET ? 4 : 16;
  std::memcpy(row.local_addr.data(), m.id.idiag_src, row.addr_len);
  std::memcpy(row.remote_addr.data(), m.id.idiag_dst, row.addr_len);
  // Ports are big-endian. For raw sockets sport is the IP protocol (inet_sport = htons(proto)),
  // which is what /proc/net/raw prints as the local port.
  row.local_port = ntohs(m.id.idiag_sport);
  row.remote_port = ntohs(m.id.idiag_dport);
  // LISTEN: accept queue length and max backlog; otherwise bytes (UDP/RAW: truesize).
  row.rx_queue = m.idiag_rqueue;
  row.tx_queue = m.idiag_wqueue;
  // TIME_WAIT, SYN_RECV request socks and unaccepted children report inode 0 and uid 0.
  row.inode = m.idiag_inode;
  row.uid = m.idiag_uid;
  row.cookie = make_cookie(m.id.idiag_cookie);
  row.timer = m.idiag_timer;
  row.expires_ms = m.idiag_expires; // milliseconds (clamped at 0 since 5.5, may wrap before)
  row.retrans = m.idiag_retrans;    // timers 2/4: keepalive/zero-window probes sent

  std::optional<uint8_t> tos;
  std::optional<uint8_t> tclass;
  bool bad_u8_or_u32 = false;
  const bool ok = walk_attrs(payload.subspan(align4(sizeof(inet_diag_msg))),
                             [&](uint16_t type, std::span<const uint8_t> d) {
                               switch (type) {
                               case INET_DIAG_SKMEMINFO:
                                 copy_skmem(d, row);
                                 break;
                               case INET_DIAG_INFO:
                                 // struct tcp_info as long as the running kernel's (280 B on 6.18);
                                 // kept verbatim.
                                 row.tcp_info.assign(d.begin(), d.end());
                                 break;
                               case INET_DIAG_CONG: {
                                 // NUL-terminated name; do not trust the terminator to be there.
                                 const auto nul = std::find(d.begin(), d.end(), uint8_t{0});
                                 row.cong.assign(d.begin(), nul);
                                 break;
                               }
                               case INET_DIAG_SHUTDOWN:
                                 if (d.empty()) {
                                   bad_u8_or_u32 = true;
                                 } else {
                                   row.shutdown = d[0];
                                 }
                                 break;
                               case INET_DIAG_TOS:
                                 if (d.empty()) {
                                   bad_u8_or_u32 = true;
                                 } else {
                                   tos = d[0];
                                 }
                                 break;
                               case INET_DIAG_TCLASS:
                                 if (d.empty()) {
                                   bad_u8_or_u32 = true;
                                 } else {
                                   tclass = d[0];
                                 }
                                 break;
                               case INET_DIAG_PROTOCOL:
                                 // Raw sockets: the protocol given to socket(). Same value as
                                 // sport, but explicit.
                                 if (d.empty()) {
                                   bad_u8_or_u32 = true;
                                 } else if (protocol == k_ipproto_raw) {
                                   row.local_port = d[0];
                                 }
                                 break;
                               default:
                                 // MEMINFO is not used: SKMEMINFO (3.3+) carries the same values
                                 // and more. Everything else (MARK, CGROUP_ID, SOCKOPT, BBRINFO,
                                 // ...) is skipped by length.
                                 break;
                               }
                             });
  // AF_INET6 sockets get both: TOS (inet->tos, for v4-mapped traffic) and TCLASS (IPv6).
  row.tos = m.idiag_family == AF_INET6 && tclass ? tclass : tos;
  if (!ok || bad_u8_or_u32) {
    add_issue(state,
              source,
              "bad_attribute",
              "malformed attribute in the row for inode " + std::to_string(row.inode));
  }
}

// UNIX_DIAG_NAME: sun_path bytes. Filesystem names end at their NUL (the kernel includes it);
// abstract names start with NUL and may contain more: shown with '@' for each NUL, as
// /proc/net/unix and ss do.
std::string unix_name(std::span<const uint8_t> d) {
  if (!d.empty() && d[0] == 0) {
    std::string s(d.begin(), d.end());
    std::replace(s.begin(), s.end(), '\0', '@');
    return s;
  }
  const auto nul = std::find(d.begin(), d.end(), uint8_t{0});
  return {d.begin(), nul};
}

void parse_unix_msg(std::span<const uint8_t> payload,
                    std::vector<SocketRow>& rows,
                    DiagDumpState& state) {
  if (payload.size() < sizeof(unix_diag_msg)) {
    add_issue(state,
              k_unix_source,
              "short_message",
              "unix_diag_msg of " + std::to_string(payload.size()) + " bytes (need "
                  + std::to_string(sizeof(unix_diag_msg)) + ")");
    return;
  }
  const auto m = load<unix_diag_msg>(payload, 0);
  if (m.udiag_family != AF_UNIX) {
    add_issue(state, k_unix_source, "bad_family", "udiag_family " + std::to_string(m.udiag_family));
    return;
  }

  SocketRow& row = rows.emplace_back();
  row.family = k_af_unix;
  row.type = m.udiag_type;
  row.proto = 0;
  // TCP numbering: 1 connected, 7 unconnected, 10 listening.
  row.state = m.udiag_state;
  row.inode = m.udiag_ino;
  row.cookie = make_cookie(m.udiag_cookie);

  bool bad_size = false;
  const bool ok = walk_attrs(payload.subspan(align4(sizeof(unix_diag_msg))),
                             [&](uint16_t type, std::span<const uint8_t> d) {
                               switch (type) {
                               case UNIX_DIAG_NAME:
                                 row.path = unix_name(d);
                                 break;
                               case UNIX_DIAG_PEER:
                                 // Peer inode; 0 when the peer is an embryo (a connection not
                                 // accepted yet).
                                 if (d.size() < sizeof(uint32_t)) {
                                   bad_size = true;
                                 } else {
                                   row.peer_inode = load<uint32_t>(d, 0);
                                 }
                                 break;
                               case UNIX_DIAG_RQLEN:
                                 // LISTEN: pending connections and max backlog; otherwise bytes
                                 // queued for reading and bytes charged to this socket as a sender
                                 // (truesize).
                                 if (d.size() < sizeof(unix_diag_rqlen)) {
                                   bad_size = true;
                                 } else {
                                   const auto q = load<unix_diag_rqlen>(d, 0);
                                   row.rx_queue = q.udiag_rqueue;
                                   row.tx_queue = q.udiag_wqueue;
                                 }
                                 break;
                               case UNIX_DIAG_MEMINFO:
                                 copy_skmem(d, row);
                                 break;
                               case UNIX_DIAG_SHUTDOWN:
                                 if (d.empty()) {
                                   bad_size = true;
                                 } else {
                                   row.shutdown = d[0];
                                 }
                                 break;
                               case UNIX_DIAG_UID:
                                 if (d.size() < sizeof(uint32_t)) {
                                   bad_size = true;
                                 } else {
                                   row.uid = load<uint32_t>(d, 0);
                                 }
                                 break;
                               default:
                                 // VFS (inode/dev of the bound path) and ICONS (client inodes of
                                 // pending connections) are not kept.
                                 break;
                               }
                             });
  if (!ok || bad_size) {
    add_issue(state,
              k_unix_source,
              "bad_attribute",
              "malformed attribute in the row for inode " + std::to_string(row.inode));
  }
}

// Smallest possible message of each kind: an upper bound on the rows a buffer can hold.
constexpr size_t k_min_inet_msg = k_nlmsg_hdrlen + sizeof(inet_diag_msg);
constexpr size_t k_min_unix_msg = k_nlmsg_hdrlen + sizeof(unix_diag_msg);

void parse_inet_impl(std::span<const uint8_t> buf,
                     uint16_t protocol,
                     std::vector<SocketRow>& rows,
                     DiagDumpState& state,
                     const std::optional<uint32_t>& expected_seq) {
  const char* source = protocol_source(protocol);
  reserve_for(rows, buf.size() / k_min_inet_msg);
  walk_messages(buf, source, expected_seq, state, [&](std::span<const uint8_t> payload) {
    parse_inet_msg(payload, protocol, source, rows, state);
  });
}

void parse_unix_impl(std::span<const uint8_t> buf,
                     std::vector<SocketRow>& rows,
                     DiagDumpState& state,
                     const std::optional<uint32_t>& expected_seq) {
  reserve_for(rows, buf.size() / k_min_unix_msg);
  walk_messages(buf, k_unix_source, expected_seq, state, [&](std::span<const uint8_t> payload) {
    parse_unix_msg(payload, rows, state);
  });
}

nlmsghdr dump_header(uint32_t len, uint32_t seq) {
  nlmsghdr h{};
  h.nlmsg_len = len;
  h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  h.nlmsg_seq = seq;
  h.nlmsg_pid = 0; // to the kernel
  return h;
}

} // namespace

std::vector<uint8_t> build_inet_diag_request(
    uint8_t family, uint16_t protocol, uint32_t states, uint8_t ext, uint32_t seq) {
  // Protocols above 255 (MPTCP) do not fit sdiag_protocol: send the low byte there and the
  // full number as INET_DIAG_REQ_PROTOCOL (u32, 5.9+).
  const bool wide = protocol > 0xff;
  const size_t req_len = k_nlmsg_hdrlen + sizeof(inet_diag_req_v2);
  const size_t total = req_len + (wide ? k_nla_hdrlen + sizeof(uint32_t) : 0);
  std::vector<uint8_t> out(total, 0);
  store(out, 0, dump_header(static_cast<uint32_t>(total), seq));

  inet_diag_req_v2 req{};
  req.sdiag_family = family;
  req.sdiag_protocol = static_cast<uint8_t>(protocol & 0xff);
  req.idiag_ext = ext;
  // `pad` is sdiag_raw_protocol for IPPROTO_RAW. raw_diag only uses it for single-socket
  // lookups; a dump lists raw sockets of every protocol, so it stays 0.
  req.pad = 0;
  req.idiag_states = states;
  // id stays zero: no port/address filter, no cookie.
  store(out, k_nlmsg_hdrlen, req);

  if (wide) {
    nlattr a{};
    a.nla_len = static_cast<uint16_t>(k_nla_hdrlen + sizeof(uint32_t));
    a.nla_type = INET_DIAG_REQ_PROTOCOL;
    store(out, req_len, a);
    store(out, req_len + k_nla_hdrlen, static_cast<uint32_t>(protocol));
  }
  return out;
}

std::vector<uint8_t> build_unix_diag_request(uint32_t states, uint32_t show, uint32_t seq) {
  const size_t total = k_nlmsg_hdrlen + sizeof(unix_diag_req);
  std::vector<uint8_t> out(total, 0);
  store(out, 0, dump_header(static_cast<uint32_t>(total), seq));
  unix_diag_req req{};
  req.sdiag_family = AF_UNIX;
  req.sdiag_protocol = 0;
  req.udiag_states = states;
  req.udiag_ino = 0; // dump, not a lookup
  req.udiag_show = show;
  store(out, k_nlmsg_hdrlen, req);
  return out;
}

void parse_inet_diag_replies(std::span<const uint8_t> buf,
                             uint16_t protocol,
                             std::vector<SocketRow>& rows,
                             DiagDumpState& state) {
  parse_inet_impl(buf, protocol, rows, state, std::nullopt);
}

void parse_unix_diag_replies(std::span<const uint8_t> buf,
                             std::vector<SocketRow>& rows,
                             DiagDumpState& state) {
  parse_unix_impl(buf, rows, state, std::nullopt);
}

// SOCK_CLOEXEC: the collector may run helpers; they must not inherit this socket.
DiagSocket::DiagSocket() : m_sock(mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC)) {
  if (m_sock == nullptr) {
    throw std::system_error(errno, std::generic_category(), "socket(NETLINK_SOCK_DIAG)");
  }
  if (mnl_socket_bind(m_sock, 0, MNL_SOCKET_AUTOPID) < 0) {
    const int err = errno;
    mnl_socket_close(m_sock);
    m_sock = nullptr;
    throw std::system_error(err, std::generic_category(), "bind(NETLINK_SOCK_DIAG)");
  }
  const int fd = mnl_socket_get_fd(m_sock);
  // Best effort: a large receive queue (capped by net.core.rmem_max), extended ACKs for
  // readable errors, and a receive timeout so a silent kernel cannot hang us.
  const int rcvbuf = k_rcvbuf_bytes;
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
  const int one = 1;
  (void)setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  timeval tv{};
  tv.tv_sec = k_recv_timeout_s;
  (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  m_buf.resize(k_recv_buffer_size);
}

DiagSocket::DiagSocket(DiagSocket&& other) noexcept
    : m_sock(std::exchange(other.m_sock, nullptr)),
      m_seq(other.m_seq),
      m_buf(std::move(other.m_buf)) {}

DiagSocket& DiagSocket::operator=(DiagSocket&& other) noexcept {
  if (this != &other) {
    if (m_sock != nullptr) {
      mnl_socket_close(m_sock);
    }
    m_sock = std::exchange(other.m_sock, nullptr);
    m_seq = other.m_seq;
    m_buf = std::move(other.m_buf);
  }
  return *this;
}

DiagSocket::~DiagSocket() {
  if (m_sock != nullptr) {
    mnl_socket_close(m_sock);
  }
}

DiagDumpState
DiagSocket::dump_inet(uint8_t family, uint16_t protocol, std::vector<SocketRow>& rows) {
  const uint32_t seq = m_seq++;
  const std::vector<uint8_t> req =
      build_inet_diag_request(family, protocol, k_all_states, k_inet_diag_ext_default, seq);
  return run_dump(req, [&](std::span<const uint8_t> buf, DiagDumpState& state) {
    parse_inet_impl(buf, protocol, rows, state, seq);
  });
}

DiagDumpState DiagSocket::dump_unix(std::vector<SocketRow>& rows) {
  const uint32_t seq = m_seq++;
  const std::vector<uint8_t> req = build_unix_diag_request(k_all_states, k_unix_show_default, seq);
  return run_dump(req, [&](std::span<const uint8_t> buf, DiagDumpState& state) {
    parse_unix_impl(buf, rows, state, seq);
  });
}

DiagDumpState DiagSocket::dump_inet(uint8_t family, uint16_t protocol, const RowsFn& on_rows) {
  const uint32_t seq = m_seq++;
  const std::vector<uint8_t> req =
      build_inet_diag_request(family, protocol, k_all_states, k_inet_diag_ext_default, seq);
  std::vector<SocketRow> batch;
  return run_dump(req, [&](std::span<const uint8_t> buf, DiagDumpState& state) {
    batch.clear();
    parse_inet_impl(buf, protocol, batch, state, seq);
    if (!batch.empty()) {
      on_rows(batch);
    }
  });
}

DiagDumpState DiagSocket::dump_unix(const RowsFn& on_rows) {
  const uint32_t seq = m_seq++;
  const std::vector<uint8_t> req = build_unix_diag_request(k_all_states, k_unix_show_default, seq);
  std::vector<SocketRow> batch;
  return run_dump(req, [&](std::span<const uint8_t> buf, DiagDumpState& state) {
    batch.clear();
    parse_unix_impl(buf, batch, state, seq);
    if (!batch.empty()) {
      on_rows(batch);
    }
  });
}

DiagDumpState
DiagSocket::run_dump(const std::vector<uint8_t>& request,
                     const std::function<void(std::span<const uint8_t>, DiagDumpState&)>& parse) {
  DiagDumpState state;
  if (m_sock == nullptr) {
    state.error = -EBADF; // moved-from
    return state;
  }
  if (m_buf.size() < k_recv_buffer_size) {
    m_buf.resize(k_recv_buffer_size);
  }
  const char* source = "sock_diag";
  const ssize_t sent = mnl_socket_sendto(m_sock, request.data(), request.size());
  if (sent < 0) {
    state.error = -errno;
    return state;
  }
  if (static_cast<size_t>(sent) != request.size()) {
    state.error = -EIO;
    return state;
  }

  const int fd = mnl_socket_get_fd(m_sock);
  while (!state.done) {
    sockaddr_nl from{};
    iovec iov{m_buf.data(), m_buf.size()};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof(from);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    const ssize_t n = recvmsg(fd, &mh, 0);
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      state.error = -errno;
      break;
    }
    if ((mh.msg_flags & MSG_TRUNC) != 0) {
      // The rest of this datagram is lost: the dump cannot be complete.
      add_issue(state,
                source,
                "truncated_datagram",
                "netlink datagram larger than the " + std::to_string(m_buf.size())
                    + "-byte receive buffer");
      state.error = -EMSGSIZE;
      break;
    }
    if (n == 0) {
      state.error = -EPIPE;
      break;
    }
    if (from.nl_pid != 0) {
      continue; // not from the kernel
    }
    parse(std::span<const uint8_t>(m_buf.data(), static_cast<size_t>(n)), state);
  }
  if (!state.done) {
    drain();
  }
  return state;
}

void DiagSocket::drain() {
  // A dump in progress keeps one chunk queued and builds the next one inside each recv(), so
  // non-blocking reads see every remaining chunk and then EAGAIN. Stop at NLMSG_DONE/ERROR.
  const int fd = mnl_socket_get_fd(m_sock);
  for (;;) {
    const ssize_t n = recv(fd, m_buf.data(), m_buf.size(), MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return;
    }
    const std::span<const uint8_t> b(m_buf.data(), static_cast<size_t>(n));
    size_t off = 0;
    while (b.size() - off >= k_nlmsg_hdrlen) {
      const auto h = load<nlmsghdr>(b, off);
      if (h.nlmsg_type == NLMSG_DONE || h.nlmsg_type == NLMSG_ERROR) {
        return;
      }
      if (h.nlmsg_len < k_nlmsg_hdrlen) {
        break;
      }
      off += std::min(align4(h.nlmsg_len), b.size() - off);
    }
  }
}

} // namespace sockrewind::collect
