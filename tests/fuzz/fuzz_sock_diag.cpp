// libFuzzer target: the NETLINK_SOCK_DIAG reply parsers on raw bytes. Input byte 0 (mod 6)
// selects the dump: inet tcp, udp, udplite, raw, mptcp, or unix. The rest is one recv() buffer
// of netlink messages. TCP rows' tcp_info is also read field by field, as the writer does.

#include "fuzz_check.hpp"

#include <sockrewind/collect/sock_diag.hpp>
#include <sockrewind/collect/tcp_info.hpp>

#include <array>
#include <span>

namespace {

namespace sc = sockrewind::collect;
namespace sf = sockrewind::fuzz;

constexpr uint16_t k_ipproto_mptcp = 262;
constexpr std::array<uint16_t, 5> k_protos = {sc::k_ipproto_tcp,
                                              sc::k_ipproto_udp,
                                              sc::k_ipproto_udplite,
                                              sc::k_ipproto_raw,
                                              k_ipproto_mptcp};
// nlmsghdr + inet_diag_msg, nlmsghdr + unix_diag_msg.
constexpr size_t k_min_inet_msg = 16 + 72;
constexpr size_t k_min_unix_msg = 16 + 16;

void check_state(const sc::DiagDumpState& state) {
  FUZZ_CHECK(state.error <= 0);
  FUZZ_CHECK(state.error == 0 || state.done);
  for (const sc::Issue& i : state.issues) {
    FUZZ_CHECK(i.source.starts_with("sock_diag:"));
    FUZZ_CHECK(!i.kind.empty() && !i.example.empty());
  }
}

void check_tcp_info(const std::vector<uint8_t>& info) {
  for (const auto& fields : {sc::tcp_info_fields(), sc::tcp_info_inline_fields()}) {
    for (const sc::TcpInfoField& f : fields) {
      const auto v = sc::read_tcp_info_field(info, f);
      const size_t bytes = f.size == 0 ? 1 : f.size;
      FUZZ_CHECK(v.has_value() == (f.offset + bytes <= info.size()));
      if (v && f.size == 0) {
        FUZZ_CHECK(*v < (uint64_t{1} << f.bits));
      }
    }
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const size_t which = data[0] % (k_protos.size() + 1);
  // Copied so that the parser sees a buffer of exactly this size (ASan catches any over-read).
  const std::vector<uint8_t> buf(data + 1, data + size);
  std::vector<sc::SocketRow> rows;
  sc::DiagDumpState state;

  if (which == k_protos.size()) {
    sc::parse_unix_diag_replies(buf, rows, state);
    FUZZ_CHECK(rows.size() <= buf.size() / k_min_unix_msg);
    for (const sc::SocketRow& r : rows) {
      FUZZ_CHECK(r.family == sc::k_af_unix && r.proto == 0 && r.addr_len == 0);
      FUZZ_CHECK(r.skmem_count <= sc::k_skmem_fields);
      FUZZ_CHECK(!r.path || r.path->size() <= buf.size());
      FUZZ_CHECK(r.tcp_info.empty() && r.cong.empty());
    }
  } else {
    const uint16_t proto = k_protos[which];
    sc::parse_inet_diag_replies(buf, proto, rows, state);
    FUZZ_CHECK(rows.size() <= buf.size() / k_min_inet_msg);
    for (const sc::SocketRow& r : rows) {
      FUZZ_CHECK(r.family == sc::k_af_inet || r.family == sc::k_af_inet6);
      FUZZ_CHECK(r.addr_len == (r.family == sc::k_af_inet ? 4 : 16));
      FUZZ_CHECK(r.proto == proto);
      FUZZ_CHECK(r.skmem_count <= sc::k_skmem_fields);
      FUZZ_CHECK(r.tcp_info.size() <= buf.size());
      FUZZ_CHECK(r.cong.size() <= buf.size() && r.cong.find('\0') == std::string::npos);
      FUZZ_CHECK(!r.path && !r.peer_inode);
      FUZZ_CHECK(r.rx_queue && r.tx_queue && r.uid && r.timer);
      for (size_t i = r.addr_len; i < 16; ++i) {
        FUZZ_CHECK(r.local_addr[i] == 0 && r.remote_addr[i] == 0);
      }
      check_tcp_info(r.tcp_info);
    }
  }
  check_state(state);

  // Parsing appends: the same buffer again (a dump that has not seen NLMSG_DONE goes on) gives
  // the same rows again and leaves the first ones alone.
  if (!state.done && !rows.empty()) {
    const size_t before = rows.size();
    const sc::SocketRow first = rows.front();
    if (which == k_protos.size()) {
      sc::parse_unix_diag_replies(buf, rows, state);
    } else {
      sc::parse_inet_diag_replies(buf, k_protos[which], rows, state);
    }
    FUZZ_CHECK(rows.size() == 2 * before && rows.front().inode == first.inode);
    FUZZ_CHECK(rows[before].inode == first.inode && rows[before].state == first.state);
    FUZZ_CHECK(rows.front().path == first.path && rows.front().cookie == first.cookie);
    check_state(state);
  }
  return 0;
}
