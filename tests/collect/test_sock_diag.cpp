// NETLINK_SOCK_DIAG: request bytes, parsing of the recorded 6.18 dumps against the ground truth
// in fixtures/proc-net/SOURCES.md ("local-capture-linux-6.18"), and hostile input.

#include "support.hpp"

#include <sockrewind/collect/sock_diag.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace {

using sockrewind::collect::DiagDumpState;
using sockrewind::collect::SocketRow;
namespace sc = sockrewind::collect;

std::vector<uint8_t> fixture(const char* name) {
  const std::string s = sockrewind::test::read_file(sockrewind::test::fixture_dir()
                                                    / "local-capture-linux-6.18" / name);
  return {s.begin(), s.end()};
}

uint32_t u32_at(const std::vector<uint8_t>& b, size_t off) {
  uint32_t v = 0;
  std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}

uint16_t u16_at(const std::vector<uint8_t>& b, size_t off) {
  uint16_t v = 0;
  std::memcpy(&v, b.data() + off, sizeof(v));
  return v;
}

struct ParseResult {
  std::vector<SocketRow> rows;
  DiagDumpState state;
};

ParseResult parse_inet(const std::vector<uint8_t>& buf, uint16_t protocol) {
  ParseResult r;
  sc::parse_inet_diag_replies(buf, protocol, r.rows, r.state);
  return r;
}

ParseResult parse_unix(const std::vector<uint8_t>& buf) {
  ParseResult r;
  sc::parse_unix_diag_replies(buf, r.rows, r.state);
  return r;
}

// Counts netlink messages of type SOCK_DIAG_BY_FAMILY in a well-formed buffer.
size_t count_diag_messages(const std::vector<uint8_t>& buf) {
  size_t n = 0;
  size_t off = 0;
  while (off + 16 <= buf.size()) {
    const uint32_t len = u32_at(buf, off);
    if (u16_at(buf, off + 4) == 20) {
      ++n;
    }
    off += (len + 3U) & ~size_t{3};
  }
  return n;
}

// Appends a netlink message (header + payload, padded to 4 bytes).
void append_msg(std::vector<uint8_t>& out,
                uint16_t type,
                uint16_t flags,
                const std::vector<uint8_t>& payload) {
  const auto len = static_cast<uint32_t>(16 + payload.size());
  const size_t at = out.size();
  out.resize(at + ((len + 3U) & ~3U), 0);
  std::memcpy(out.data() + at, &len, 4);
  std::memcpy(out.data() + at + 4, &type, 2);
  std::memcpy(out.data() + at + 6, &flags, 2);
  const uint32_t seq = 7;
  std::memcpy(out.data() + at + 8, &seq, 4);
  std::copy(payload.begin(), payload.end(), out.begin() + static_cast<std::ptrdiff_t>(at + 16));
}

void append_done(std::vector<uint8_t>& out, int err) {
  std::vector<uint8_t> p(4);
  std::memcpy(p.data(), &err, 4);
  append_msg(out, 3, 0x2, p);
}

// A minimal inet_diag_msg for 127.0.0.1:port (AF_INET, LISTEN), with optional attributes.
// Built at its final size and filled in place: appending with insert() to a vector whose size
// equals its capacity makes g++ 12 at -O3 warn (-Warray-bounds) about the zero-length move of
// the elements after the insertion point from one past the end of the old block.
std::vector<uint8_t> inet_payload(uint16_t port, const std::vector<uint8_t>& attrs = {}) {
  constexpr std::size_t k_msg_len = 72;
  std::vector<uint8_t> p(k_msg_len + attrs.size(), 0);
  p[0] = 2;  // AF_INET
  p[1] = 10; // LISTEN
  p[4] = static_cast<uint8_t>(port >> 8);
  p[5] = static_cast<uint8_t>(port & 0xff);
  p[8] = 127;
  p[11] = 1;
  p[44] = 9; // cookie low
  std::copy(attrs.begin(), attrs.end(), p.begin() + k_msg_len);
  return p;
}

// One netlink attribute (header, data, zero padding to 4 bytes), built like inet_payload.
std::vector<uint8_t> attr(uint16_t type, const std::vector<uint8_t>& data) {
  const auto len = static_cast<uint16_t>(4 + data.size());
  std::vector<uint8_t> a((std::size_t{len} + 3U) & ~std::size_t{3}, 0);
  std::memcpy(a.data(), &len, 2);
  std::memcpy(a.data() + 2, &type, 2);
  std::copy(data.begin(), data.end(), a.begin() + 4);
  return a;
}

const SocketRow* find_row(const std::vector<SocketRow>& rows, auto pred) {
  const auto it = std::find_if(rows.begin(), rows.end(), pred);
  return it == rows.end() ? nullptr : &*it;
}

} // namespace

TEST_CASE("collect::sock_diag inet request bytes", "[collect][sock_diag]") {
  const std::vector<uint8_t> b =
      sc::build_inet_diag_request(sc::k_af_inet, sc::k_ipproto_tcp, sc::k_all_states, 0xfb, 42);
  REQUIRE(b.size() == 16 + 56);
  CHECK(u32_at(b, 0) == 72); // nlmsg_len
  CHECK(u16_at(b, 4) == 20); // SOCK_DIAG_BY_FAMILY
  CHECK(u16_at(b, 6) == 0x301);
  CHECK(u32_at(b, 8) == 42); // seq
  CHECK(u32_at(b, 12) == 0); // pid: the kernel
  CHECK(b[16] == 2);         // sdiag_family
  CHECK(b[17] == 6);         // sdiag_protocol
  CHECK(b[18] == 0xfb);      // idiag_ext
  CHECK(b[19] == 0);         // pad / sdiag_raw_protocol
  CHECK(u32_at(b, 20) == 0x1fff);
  CHECK(std::all_of(b.begin() + 24, b.end(), [](uint8_t c) { return c == 0; })); // sockid

  const std::vector<uint8_t> lite =
      sc::build_inet_diag_request(sc::k_af_inet6, sc::k_ipproto_udplite, 0x2, 0, 1);
  REQUIRE(lite.size() == 72);
  CHECK(lite[16] == 10);
  CHECK(lite[17] == 136);
  CHECK(lite[18] == 0);
  CHECK(u32_at(lite, 20) == 0x2);

  const std::vector<uint8_t> raw =
      sc::build_inet_diag_request(sc::k_af_inet, sc::k_ipproto_raw, sc::k_all_states, 0, 3);
  CHECK(raw[17] == 255);
  CHECK(raw[19] == 0); // every raw protocol

  // MPTCP (262) does not fit the u8: INET_DIAG_REQ_PROTOCOL (3) carries it.
  const std::vector<uint8_t> mptcp = sc::build_inet_diag_request(2, 262, sc::k_all_states, 0, 4);
  REQUIRE(mptcp.size() == 80);
  CHECK(u32_at(mptcp, 0) == 80);
  CHECK(mptcp[17] == (262 & 0xff));
  CHECK(u16_at(mptcp, 72) == 8);
  CHECK(u16_at(mptcp, 74) == 3);
  CHECK(u32_at(mptcp, 76) == 262);
}

TEST_CASE("collect::sock_diag unix request bytes", "[collect][sock_diag]") {
  const std::vector<uint8_t> b =
      sc::build_unix_diag_request(sc::k_all_states, sc::k_unix_show_default, 9);
  REQUIRE(b.size() == 16 + 24);
  CHECK(u32_at(b, 0) == 40);
  CHECK(u16_at(b, 4) == 20);
  CHECK(u16_at(b, 6) == 0x301);
  CHECK(u32_at(b, 8) == 9);
  CHECK(b[16] == 1); // AF_UNIX
  CHECK(b[17] == 0);
  CHECK(u32_at(b, 20) == 0x1fff);
  CHECK(u32_at(b, 24) == 0);    // udiag_ino: dump
  CHECK(u32_at(b, 28) == 0x75); // NAME, PEER, RQLEN, MEMINFO, UID
  CHECK(u32_at(b, 32) == 0);
  CHECK(u32_at(b, 36) == 0);
}

TEST_CASE("collect::sock_diag parses the recorded inet4 TCP dump", "[collect][sock_diag]") {
  const std::vector<uint8_t> buf = fixture("sockdiag_inet4_tcp_ext0xff.bin");
  REQUIRE(count_diag_messages(buf) == 23);
  const ParseResult r = parse_inet(buf, sc::k_ipproto_tcp);
  CHECK(r.state.done);
  CHECK(r.state.error == 0);
  CHECK_FALSE(r.state.interrupted);
  CHECK(r.state.issues.empty());
  REQUIRE(r.rows.size() == 23);

  std::set<uint64_t> cookies;
  for (const SocketRow& row : r.rows) {
    CHECK(row.family == sc::k_af_inet);
    CHECK(row.type == sc::k_sock_stream);
    CHECK(row.proto == sc::k_ipproto_tcp);
    CHECK(row.addr_len == 4);
    REQUIRE(row.cookie.has_value());
    CHECK(*row.cookie != 0);
    cookies.insert(*row.cookie);
    CHECK(row.rx_queue.has_value());
    CHECK(row.tx_queue.has_value());
    CHECK(row.timer.has_value());
    CHECK(row.expires_ms.has_value());
  }
  CHECK(cookies.size() == 23);

  // 5000: backlog 5, three connections never accepted.
  const SocketRow* l5000 = find_row(r.rows, [](const SocketRow& x) {
    return x.local_port == 5000 && x.state == sc::k_tcp_listen;
  });
  REQUIRE(l5000 != nullptr);
  CHECK(l5000->rx_queue == 3U);
  CHECK(l5000->tx_queue == 5U);
  CHECK(l5000->inode == 762976);
  CHECK(l5000->local_addr[0] == 127);
  CHECK(l5000->local_addr[3] == 1);
  const auto children = std::count_if(r.rows.begin(), r.rows.end(), [](const SocketRow& x) {
    return x.local_port == 5000 && x.state == sc::k_tcp_established && x.inode == 0;
  });
  CHECK(children == 3);

  // 5001: the client wrote until EAGAIN; zero-window probe timer.
  const SocketRow* c5001 = find_row(r.rows, [](const SocketRow& x) {
    return x.remote_port == 5001 && x.state == sc::k_tcp_established;
  });
  REQUIRE(c5001 != nullptr);
  CHECK(c5001->tx_queue == 3782144U);
  CHECK(c5001->timer == uint8_t{4});
  CHECK(c5001->inode == 762981);
  CHECK(c5001->tcp_info.size() == 280);
  CHECK_FALSE(c5001->cong.empty());
  CHECK(c5001->cong.find('\0') == std::string::npos);
  CHECK(c5001->skmem_count == 9);
  CHECK(c5001->shutdown == uint8_t{0});
  // tcp_info: state is byte 0; the client is ESTABLISHED.
  CHECK(c5001->tcp_info[0] == sc::k_tcp_established);

  const SocketRow* s5001 = find_row(r.rows, [](const SocketRow& x) {
    return x.local_port == 5001 && x.state == sc::k_tcp_established;
  });
  REQUIRE(s5001 != nullptr);
  CHECK(s5001->rx_queue == 128512U);

  // TIME_WAIT and SYN_RECV minisocks: inode 0, no tcp_info.
  const SocketRow* tw = find_row(r.rows, [](const SocketRow& x) {
    return x.remote_port == 5003 && x.state == sc::k_tcp_time_wait;
  });
  REQUIRE(tw != nullptr);
  CHECK(tw->inode == 0);
  CHECK(tw->timer == uint8_t{3});
  CHECK(tw->tcp_info.empty());
  const SocketRow* synrecv = find_row(r.rows, [](const SocketRow& x) {
    return x.local_port == 5004 && x.state == sc::k_tcp_syn_recv;
  });
  REQUIRE(synrecv != nullptr);
  CHECK(synrecv->inode == 0);

  // SYN_SENT to 192.0.2.1:5006 holds the SYN in its send queue.
  const SocketRow* synsent = find_row(r.rows, [](const SocketRow& x) {
    return x.remote_port == 5006 && x.state == sc::k_tcp_syn_sent;
  });
  REQUIRE(synsent != nullptr);
  CHECK(synsent->tx_queue == 1U);
  CHECK(synsent->remote_addr[0] == 192);
  CHECK(synsent->remote_addr[1] == 0);
  CHECK(synsent->remote_addr[2] == 2);
  CHECK(synsent->remote_addr[3] == 1);
}

TEST_CASE("collect::sock_diag parses the recorded inet6 TCP dump", "[collect][sock_diag]") {
  const ParseResult r = parse_inet(fixture("sockdiag_inet6_tcp_ext0xff.bin"), sc::k_ipproto_tcp);
  CHECK(r.state.done);
  CHECK(r.state.error == 0);
  CHECK(r.state.issues.empty());
  REQUIRE(r.rows.size() == 2);
  const SocketRow* listener = find_row(r.rows, [](const SocketRow& x) {
    return x.local_port == 5007 && x.state == sc::k_tcp_listen;
  });
  REQUIRE(listener != nullptr);
  CHECK(listener->family == sc::k_af_inet6);
  CHECK(listener->addr_len == 16);
  CHECK(std::all_of(
      listener->local_addr.begin(), listener->local_addr.end(), [](uint8_t c) { return c == 0; }));
  CHECK(listener->inode == 763006);

  const SocketRow* child = find_row(r.rows, [](const SocketRow& x) {
    return x.local_port == 5007 && x.state == sc::k_tcp_established;
  });
  REQUIRE(child != nullptr);
  const std::array<uint8_t, 16> mapped{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  CHECK(child->local_addr == mapped);
  CHECK(child->remote_addr == mapped);
  CHECK(child->inode == 763008);
  CHECK(child->tcp_info.size() == 280);
  CHECK(child->tos.has_value()); // from INET_DIAG_TCLASS for AF_INET6
}

TEST_CASE("collect::sock_diag parses the recorded UDP dump", "[collect][sock_diag]") {
  const ParseResult r = parse_inet(fixture("sockdiag_inet4_udp_ext0xff.bin"), sc::k_ipproto_udp);
  CHECK(r.state.done);
  CHECK(r.state.error == 0);
  CHECK(r.state.issues.empty());
  REQUIRE(r.rows.size() == 2);
  const SocketRow* s6000 =
      find_row(r.rows, [](const SocketRow& x) { return x.local_port == 6000; });
  REQUIRE(s6000 != nullptr);
  CHECK(s6000->type == sc::k_sock_dgram);
  CHECK(s6000->proto == sc::k_ipproto_udp);
  CHECK(s6000->state == sc::k_tcp_close);
  CHECK(s6000->rx_queue == 2496U); // 3 x 100 B, counted as truesize
  CHECK(s6000->inode == 762989);
  CHECK(s6000->tcp_info.empty());
  CHECK(s6000->skmem_count == 9);
  CHECK(s6000->skmem[0] == 2496); // SK_MEMINFO_RMEM_ALLOC
  const SocketRow* connected =
      find_row(r.rows, [](const SocketRow& x) { return x.remote_port == 6000; });
  REQUIRE(connected != nullptr);
  CHECK(connected->state == sc::k_tcp_established);
  CHECK(connected->inode == 762990);
}

TEST_CASE("collect::sock_diag RAW dump without raw_diag ends with -ENOENT",
          "[collect][sock_diag]") {
  const ParseResult r = parse_inet(fixture("sockdiag_inet4_raw_enoent.bin"), sc::k_ipproto_raw);
  CHECK(r.state.done);
  CHECK(r.state.error == -ENOENT);
  CHECK(r.rows.empty());
  CHECK(r.state.issues.empty());
}

TEST_CASE("collect::sock_diag parses the recorded unix dump", "[collect][sock_diag]") {
  const ParseResult r = parse_unix(fixture("sockdiag_unix_show0x7f.bin"));
  CHECK(r.state.done);
  CHECK(r.state.error == 0);
  CHECK(r.state.issues.empty());
  // 8 sockets in /proc/net/unix, minus the 2 embryos unix_diag skips.
  REQUIRE(r.rows.size() == 6);
  for (const SocketRow& row : r.rows) {
    CHECK(row.family == sc::k_af_unix);
    CHECK(row.proto == 0);
    CHECK(row.addr_len == 0);
    CHECK(row.inode != 0);
    CHECK(row.cookie.has_value());
    CHECK(row.uid == 0U);
    CHECK(row.skmem_count == 9);
    CHECK(row.shutdown.has_value());
  }

  const SocketRow* listener =
      find_row(r.rows, [](const SocketRow& x) { return x.state == sc::k_tcp_listen; });
  REQUIRE(listener != nullptr);
  CHECK(listener->inode == 762993);
  CHECK(listener->type == sc::k_sock_stream);
  CHECK(listener->path == std::string("/run/app/l.sock"));
  CHECK(listener->rx_queue == 2U); // pending connections
  CHECK(listener->tx_queue == 4U); // backlog

  const SocketRow* abstract =
      find_row(r.rows, [](const SocketRow& x) { return x.path == std::string("@abs@name"); });
  REQUIRE(abstract != nullptr);
  CHECK(abstract->inode == 762996);
  CHECK(abstract->type == sc::k_sock_dgram);
  CHECK(abstract->rx_queue == 50U); // 50 B of payload queued by the sender

  const SocketRow* space = find_row(
      r.rows, [](const SocketRow& x) { return x.path == std::string("/run/app/sp ace.sock"); });
  REQUIRE(space != nullptr);
  CHECK(space->inode == 762997);

  // The unbound dgram sender: no name.
  const SocketRow* sender = find_row(r.rows, [](const SocketRow& x) { return x.inode == 762998; });
  REQUIRE(sender != nullptr);
  CHECK_FALSE(sender->path.has_value());
  CHECK(sender->tx_queue == 768U); // truesize of the 50 B it sent

  // The two clients of the listener are connected; their peers are embryos without an
  // inode, which the kernel reports as peer 0.
  for (const uint64_t ino : {uint64_t{762994}, uint64_t{762995}}) {
    const SocketRow* c = find_row(r.rows, [&](const SocketRow& x) { return x.inode == ino; });
    REQUIRE(c != nullptr);
    CHECK(c->state == sc::k_tcp_established);
    REQUIRE(c->peer_inode.has_value());
    CHECK(*c->peer_inode == 0);
  }
  CHECK_FALSE(listener->peer_inode.has_value());
}

TEST_CASE("collect::sock_diag survives truncated and corrupted dumps", "[collect][sock_diag]") {
  const std::vector<const char*> files = {"sockdiag_inet4_tcp_ext0xff.bin",
                                          "sockdiag_inet6_tcp_ext0xff.bin",
                                          "sockdiag_inet4_udp_ext0xff.bin",
                                          "sockdiag_inet4_raw_enoent.bin",
                                          "sockdiag_unix_show0x7f.bin"};
  std::mt19937 rng(12345);
  for (const char* name : files) {
    const std::vector<uint8_t> full = fixture(name);
    const bool is_unix = std::string(name).find("unix") != std::string::npos;
    auto run = [&](const std::vector<uint8_t>& b) {
      return is_unix ? parse_unix(b) : parse_inet(b, sc::k_ipproto_tcp);
    };
    // Message boundaries of the intact dump.
    std::set<size_t> boundaries;
    for (size_t off = 0; off < full.size(); off += (u32_at(full, off) + 3U) & ~size_t{3}) {
      boundaries.insert(off);
    }
    // Every prefix: the dump is not done (its NLMSG_DONE is the last message), and a cut
    // inside a message is reported as an issue.
    for (size_t cut = 0; cut < full.size(); ++cut) {
      const std::vector<uint8_t> prefix(full.begin(),
                                        full.begin() + static_cast<std::ptrdiff_t>(cut));
      const ParseResult r = run(prefix);
      CHECK_FALSE(r.state.done);
      if (!boundaries.contains(cut)) {
        CHECK_FALSE(r.state.issues.empty());
      } else {
        CHECK(r.state.issues.empty());
      }
    }
    // The same bytes at an odd address parse the same (no aligned loads of the input).
    std::vector<uint8_t> shifted(full.size() + 1);
    std::copy(full.begin(), full.end(), shifted.begin() + 1);
    ParseResult shifted_r;
    const std::span<const uint8_t> odd(shifted.data() + 1, full.size());
    if (is_unix) {
      sc::parse_unix_diag_replies(odd, shifted_r.rows, shifted_r.state);
    } else {
      sc::parse_inet_diag_replies(odd, sc::k_ipproto_tcp, shifted_r.rows, shifted_r.state);
    }
    CHECK(shifted_r.rows.size() == run(full).rows.size());
    CHECK(shifted_r.state.done);

    // Random byte flips: anything may come out, but nothing may be read out of bounds.
    for (int i = 0; i < 300; ++i) {
      std::vector<uint8_t> b = full;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        b[rng() % b.size()] ^= static_cast<uint8_t>(1U << (rng() % 8));
      }
      const ParseResult r = run(b);
      CHECK(r.rows.size() <= full.size() / 32);
    }
  }
}

TEST_CASE("collect::sock_diag hostile and unusual messages", "[collect][sock_diag]") {
  SECTION("a message shorter than inet_diag_msg is skipped as short_message") {
    std::vector<uint8_t> b;
    append_msg(b, 20, 0x2, std::vector<uint8_t>(40, 0));
    append_msg(b, 20, 0x2, inet_payload(80));
    append_done(b, 0);
    const ParseResult r = parse_inet(b, sc::k_ipproto_tcp);
    CHECK(r.state.done);
    REQUIRE(r.rows.size() == 1);
    CHECK(r.rows[0].local_port == 80);
    CHECK(r.rows[0].cookie == uint64_t{9});
    REQUIRE(r.state.issues.size() == 1);
    CHECK(r.state.issues[0].kind == "short_message");
    CHECK(r.state.issues[0].source == "sock_diag:tcp");
  }
  SECTION("an attribute longer than its message is reported, the row is kept") {
    std::vector<uint8_t> attrs = attr(4, {'c', 'u', 'b', 'i', 'c', 0});
    std::vector<uint8_t> bad = attr(2, std::vector<uint8_t>(8, 1));
    bad[0] = 200; // nla_len beyond the message
    attrs.insert(attrs.end(), bad.begin(), bad.end());
    std::vector<uint8_t> b;
    append_msg(b, 20, 0x2, inet_payload(81, attrs));
    append_done(b, 0);
    const ParseResult r = parse_inet(b, sc::k_ipproto_tcp);
    CHECK(r.state.done);
    REQUIRE(r.rows.size() == 1);
    CHECK(r.rows[0].cong == "cubic");
    CHECK(r.rows[0].tcp_info.empty());
    REQUIRE(r.state.issues.size() == 1);
    CHECK(r.state.issues[0].kind == "bad_attribute");
  }
  SECTION("CONG without NUL, SKMEMINFO with more than 9 values, unknown and nested types") {
    std::vector<uint8_t> mem(size_t{11} * 4, 0);
    for (uint8_t i = 0; i < 11; ++i) {
      mem[size_t{i} * 4] = static_cast<uint8_t>(i + 1);
    }
    std::vector<uint8_t> attrs = attr(4, {'b', 'b', 'r'});
    const std::vector<uint8_t> sk = attr(7, mem);
    const std::vector<uint8_t> unknown = attr(0x8000 | 99, {1, 2, 3, 4, 5});
    const std::vector<uint8_t> tos = attr(5, {0x10});
    attrs.insert(attrs.end(), sk.begin(), sk.end());
    attrs.insert(attrs.end(), unknown.begin(), unknown.end());
    attrs.insert(attrs.end(), tos.begin(), tos.end());
    std::vector<uint8_t> b;
    append_msg(b, 20, 0x2, inet_payload(82, attrs));
    const ParseResult r = parse_inet(b, sc::k_ipproto_tcp);
    CHECK_FALSE(r.state.done); // no NLMSG_DONE yet
    CHECK(r.state.issues.empty());
    REQUIRE(r.rows.size() == 1);
    CHECK(r.rows[0].cong == "bbr");
    CHECK(r.rows[0].skmem_count == 9);
    CHECK(r.rows[0].skmem[8] == 9);
    CHECK(r.rows[0].tos == uint8_t{0x10});
  }
  SECTION("RAW: INET_DIAG_PROTOCOL gives the local 'port'") {
    std::vector<uint8_t> p = inet_payload(0, attr(10, {1}));
    p[1] = sc::k_tcp_close;
    std::vector<uint8_t> b;
    append_msg(b, 20, 0x2, p);
    append_done(b, 0);
    const ParseResult r = parse_inet(b, sc::k_ipproto_raw);
    REQUIRE(r.rows.size() == 1);
    CHECK(r.rows[0].type == sc::k_sock_raw);
    CHECK(r.rows[0].proto == sc::k_ipproto_raw);
    CHECK(r.rows[0].local_port == 1);
  }
  SECTION("NLMSG_ERROR ends the dump with its errno") {
    std::vector<uint8_t> b;
    std::vector<uint8_t> err(20, 0);
    const int e = -EINVAL;
    std::memcpy(err.data(), &e, 4);
    append_msg(b, 2, 0, err);
    append_msg(b, 20, 0x2, inet_payload(83)); // after the end: ignored
    const ParseResult r = parse_inet(b, sc::k_ipproto_tcp);
    CHECK(r.state.done);
    CHECK(r.state.error == -EINVAL);
    CHECK(r.rows.empty());
  }
  SECTION("NLM_F_DUMP_INTR marks the dump interrupted") {
    std::vector<uint8_t> b;
    append_msg(b, 20, 0x2 | 0x10, inet_payload(84));
    append_done(b, 0);
    const ParseResult r = parse_inet(b, sc::k_ipproto_tcp);
    CHECK(r.state.done);
    CHECK(r.state.interrupted);
    CHECK(r.rows.size() == 1);
  }
  SECTION("a dump can be parsed chunk by chunk into one state") {
    std::vector<uint8_t> a;
    append_msg(a, 20, 0x2, inet_payload(85));
    std::vector<uint8_t> c;
    append_msg(c, 20, 0x2, inet_payload(86));
    append_done(c, 0);
    std::vector<SocketRow> rows;
    DiagDumpState st;
    sc::parse_inet_diag_replies(a, sc::k_ipproto_udp, rows, st);
    CHECK_FALSE(st.done);
    sc::parse_inet_diag_replies(c, sc::k_ipproto_udp, rows, st);
    CHECK(st.done);
    REQUIRE(rows.size() == 2);
    CHECK(rows[1].local_port == 86);
    CHECK(rows[1].type == sc::k_sock_dgram);
  }
  SECTION("nlmsg_len smaller than a header, and a lone partial header") {
    std::vector<uint8_t> b(16, 0);
    b[0] = 8;
    ParseResult r = parse_inet(b, sc::k_ipproto_tcp);
    CHECK_FALSE(r.state.done);
    REQUIRE(r.state.issues.size() == 1);
    CHECK(r.state.issues[0].kind == "bad_length");
    r = parse_inet(std::vector<uint8_t>(7, 0xff), sc::k_ipproto_tcp);
    CHECK_FALSE(r.state.done);
    REQUIRE(r.state.issues.size() == 1);
    CHECK(r.state.issues[0].kind == "truncated");
  }
  SECTION("unix names: abstract with NULs, path without trailing NUL, short RQLEN") {
    std::vector<uint8_t> p(16, 0);
    p[0] = 1;
    p[1] = 5; // SOCK_SEQPACKET
    p[2] = 7;
    p[4] = 42;
    std::vector<uint8_t> attrs = attr(0, {0, 'a', 0, 0, 'b'});
    const std::vector<uint8_t> rq = attr(4, {1, 0, 0, 0});
    attrs.insert(attrs.end(), rq.begin(), rq.end());
    p.insert(p.end(), attrs.begin(), attrs.end());
    std::vector<uint8_t> b;
    append_msg(b, 20, 0x2, p);

    std::vector<uint8_t> p2(16, 0);
    p2[0] = 1;
    p2[1] = 1;
    p2[2] = 7;
    p2[4] = 43;
    const std::vector<uint8_t> name = attr(0, {'/', 't', 'm', 'p'});
    p2.insert(p2.end(), name.begin(), name.end());
    append_msg(b, 20, 0x2, p2);
    append_done(b, 0);

    const ParseResult r = parse_unix(b);
    CHECK(r.state.done);
    REQUIRE(r.rows.size() == 2);
    CHECK(r.rows[0].path == std::string("@a@@b"));
    CHECK(r.rows[0].type == sc::k_sock_seqpacket);
    CHECK_FALSE(r.rows[0].rx_queue.has_value());
    CHECK(r.rows[1].path == std::string("/tmp"));
    REQUIRE(r.state.issues.size() == 1);
    CHECK(r.state.issues[0].kind == "bad_attribute");
    CHECK(r.state.issues[0].source == "sock_diag:unix");
  }
}
