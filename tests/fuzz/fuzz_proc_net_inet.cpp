// libFuzzer target: parse_proc_net_inet (/proc/net/{tcp,udp,udplite,raw}[6]).
// Input byte 0 selects the table: bit 0 the family (inet, inet6), bit 1 the producing host's
// byte order (little, big), bits 2-3 the protocol (tcp, udp, udplite, raw). The rest is the
// file's text. The same text is also parsed with the other byte order, which must give the same
// rows with each 32-bit address word byte-swapped.

#include "fuzz_check.hpp"

#include <sockrewind/collect/proc_net.hpp>

#include <array>
#include <set>
#include <tuple>

namespace {

namespace sc = sockrewind::collect;
namespace sf = sockrewind::fuzz;

constexpr std::array<uint16_t, 4> k_protos = {
    sc::k_ipproto_tcp, sc::k_ipproto_udp, sc::k_ipproto_udplite, sc::k_ipproto_raw};

bool swapped_words(const std::array<uint8_t, 16>& a, const std::array<uint8_t, 16>& b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[(i / 4) * 4 + 3 - i % 4]) {
      return false;
    }
  }
  return true;
}

void check_row(const sc::SocketRow& r, uint8_t family, uint16_t proto) {
  FUZZ_CHECK(r.family == family);
  FUZZ_CHECK(r.proto == proto);
  FUZZ_CHECK(r.addr_len == (family == sc::k_af_inet ? 4 : 16));
  FUZZ_CHECK(r.state >= 1 && r.state <= 12);
  FUZZ_CHECK(r.type
             == (proto == sc::k_ipproto_tcp   ? sc::k_sock_stream
                 : proto == sc::k_ipproto_raw ? sc::k_sock_raw
                                              : sc::k_sock_dgram));
  for (size_t i = r.addr_len; i < 16; ++i) {
    FUZZ_CHECK(r.local_addr[i] == 0 && r.remote_addr[i] == 0);
  }
  FUZZ_CHECK(r.rx_queue && r.timer && r.expires_ms && r.retrans && r.uid);
  FUZZ_CHECK(*r.expires_ms % 10 == 0);
  // LISTEN's tx_queue is unknown in /proc (NULL), every other row has one.
  FUZZ_CHECK(r.tx_queue.has_value() == !(proto == sc::k_ipproto_tcp && r.state == 10));
  FUZZ_CHECK(!(proto == sc::k_ipproto_tcp && r.drops));
  // /proc has none of these.
  FUZZ_CHECK(!r.cookie && !r.path && !r.peer_inode && r.skmem_count == 0 && r.tcp_info.empty());
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const uint8_t sel = data[0];
  const uint8_t family = (sel & 1U) != 0 ? sc::k_af_inet6 : sc::k_af_inet;
  const bool little = (sel & 2U) == 0;
  const uint16_t proto = k_protos[(sel >> 2U) & 3U];
  const std::string_view text = sf::as_text(data + 1, size - 1);

  const auto out = sc::parse_proc_net_inet(text, family, proto, "proc:fuzz", little);
  // The header gives at most one issue and no row; every other line one row or one issue.
  FUZZ_CHECK(out.rows.size() + out.issues.size() <= sf::line_count(text));
  sf::check_issues(out.issues, "proc:fuzz", {"bad_header", "bad_row", "duplicate"});
  std::set<std::tuple<uint64_t,
                      std::array<uint8_t, 16>,
                      uint16_t,
                      std::array<uint8_t, 16>,
                      uint16_t,
                      uint8_t>>
      keys;
  for (const sc::SocketRow& r : out.rows) {
    check_row(r, family, proto);
    // Duplicates were dropped.
    FUZZ_CHECK(
        keys.emplace(r.inode, r.local_addr, r.local_port, r.remote_addr, r.remote_port, r.state)
            .second);
  }

  const auto other = sc::parse_proc_net_inet(text, family, proto, "proc:fuzz", !little);
  FUZZ_CHECK(other.rows.size() == out.rows.size());
  FUZZ_CHECK(other.issues.size() == out.issues.size());
  for (size_t i = 0; i < out.rows.size(); ++i) {
    const sc::SocketRow& a = out.rows[i];
    const sc::SocketRow& b = other.rows[i];
    FUZZ_CHECK(swapped_words(a.local_addr, b.local_addr, a.addr_len));
    FUZZ_CHECK(swapped_words(a.remote_addr, b.remote_addr, a.addr_len));
    FUZZ_CHECK(a.local_port == b.local_port && a.remote_port == b.remote_port);
    FUZZ_CHECK(a.inode == b.inode && a.state == b.state && a.rx_queue == b.rx_queue);
  }
  return 0;
}
