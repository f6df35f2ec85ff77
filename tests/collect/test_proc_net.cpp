#include "support.hpp"

#include <sockrewind/collect/proc_net.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

using namespace sockrewind::collect;
using Bytes = std::vector<uint8_t>;

namespace {

Bytes local_bytes(const SocketRow& r) {
  return {r.local_addr.begin(), r.local_addr.begin() + r.addr_len};
}

Bytes remote_bytes(const SocketRow& r) {
  return {r.remote_addr.begin(), r.remote_addr.begin() + r.addr_len};
}

size_t count_kind(const std::vector<Issue>& issues, std::string_view kind) {
  return static_cast<size_t>(std::count_if(
      issues.begin(), issues.end(), [kind](const Issue& i) { return i.kind == kind; }));
}

std::vector<SocketRow> rows_where(const Parsed<SocketRow>& p,
                                  const std::function<bool(const SocketRow&)>& pred) {
  std::vector<SocketRow> out;
  std::copy_if(p.rows.begin(), p.rows.end(), std::back_inserter(out), pred);
  return out;
}

// The one row matching `pred`; fails the test unless there is exactly one.
SocketRow the_row(const Parsed<SocketRow>& p, const std::function<bool(const SocketRow&)>& pred) {
  const auto rows = rows_where(p, pred);
  REQUIRE(rows.size() == 1);
  return rows.front();
}

const Bytes k_loopback4 = {127, 0, 0, 1};
const Bytes k_mapped_loopback = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};

constexpr std::string_view k_tcp_header =
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
    "timeout inode                                                     \n";

constexpr std::string_view k_unix_header =
    "Num       RefCount Protocol Flags    Type St Inode Path\n";

} // namespace

TEST_CASE("collect::parse_proc_net_inet decodes tcp rows of every shape", "[collect][proc_net]") {
  const std::string text =
      std::string(k_tcp_header)
      // LISTEN with 3 connections in the accept queue.
      + "   0: 0100007F:1388 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0   "
        "     0 762976 4 00000000768e300a 100 0 0 10 0                    \n"
        // ESTABLISHED, keepalive timer, retrnsmt is hex.
        "   1: 0100007F:E300 0100007F:138A 01 00000010:00000020 02:0000E9C0 0000000A  1000   "
        "     1 762984 2 00000000f963dcfe 20 0 0 11 -1\n"
        // TIME_WAIT and SYN_RECV stop after the pointer (14 columns).
        "   2: 0100007F:9CF6 0100007F:138B 06 00000000:00000000 03:000016D5 00000000     0   "
        "     0 0 3 00000000309043ed\n"
        "   3: 0100007F:138C 0100007F:A152 03 00000000:00000000 01:00000094 00000001     0   "
        "     0 0 0 0000000022b8ba07\n"
        // SYN_SENT to 192.0.2.1.
        "   4: 00000000:8102 010200C0:138E 02 00000001:00000000 01:00000030 00000001     0   "
        "     0 763005 2 00000000fafde48d 100 0 0 1 -1\n";
  const auto p = parse_proc_net_inet(text, k_af_inet, k_ipproto_tcp, "proc:tcp");
  REQUIRE(p.issues.empty());
  REQUIRE(p.rows.size() == 5);

  const SocketRow& listen = p.rows[0];
  CHECK(listen.family == k_af_inet);
  CHECK(listen.type == k_sock_stream);
  CHECK(listen.proto == k_ipproto_tcp);
  CHECK(listen.addr_len == 4);
  CHECK(local_bytes(listen) == k_loopback4);
  CHECK(remote_bytes(listen) == Bytes{0, 0, 0, 0});
  CHECK(listen.local_port == 5000);
  CHECK(listen.state == k_tcp_listen);
  CHECK(listen.rx_queue == 3U);
  CHECK_FALSE(listen.tx_queue.has_value()); // /proc's 0 is not the backlog
  CHECK(listen.inode == 762976U);
  CHECK_FALSE(listen.cookie.has_value());

  const SocketRow& est = p.rows[1];
  CHECK(est.state == k_tcp_established);
  CHECK(est.local_port == 0xE300);
  CHECK(est.remote_port == 5002);
  CHECK(est.tx_queue == 16U);
  CHECK(est.rx_queue == 32U);
  CHECK(est.timer == 2);
  CHECK(est.expires_ms == 598400U); // 0xE9C0 clock ticks of 1/100 s
  CHECK(est.retrans == 10U);
  CHECK(est.uid == 1000U);
  CHECK_FALSE(est.drops.has_value());

  const SocketRow& tw = p.rows[2];
  CHECK(tw.state == k_tcp_time_wait);
  CHECK(tw.inode == 0U);
  CHECK(tw.timer == 3);
  CHECK(tw.expires_ms == 0x16D5U * 10);

  const SocketRow& syn_recv = p.rows[3];
  CHECK(syn_recv.state == k_tcp_syn_recv);
  CHECK(syn_recv.inode == 0U);
  CHECK(syn_recv.retrans == 1U);
  CHECK(syn_recv.tx_queue == 0U);

  const SocketRow& syn_sent = p.rows[4];
  CHECK(syn_sent.state == k_tcp_syn_sent);
  CHECK(remote_bytes(syn_sent) == Bytes{192, 0, 2, 1});
  CHECK(syn_sent.remote_port == 5006);
  CHECK(syn_sent.tx_queue == 1U);
}

TEST_CASE("collect::parse_proc_net_inet honours the producer's byte order", "[collect][proc_net]") {
  const std::string le = std::string(k_tcp_header)
                         + "   0: 0100007F:1388 0202000A:8B6B 01 00000000:00000000 00:00000000 "
                           "00000000     0        0 1 1 0 20 0 0 10 -1\n";
  const std::string be = std::string(k_tcp_header)
                         + "   0: 7F000001:1388 0A000202:8B6B 01 00000000:00000000 00:00000000 "
                           "00000000     0        0 1 1 0 20 0 0 10 -1\n";
  const auto a = parse_proc_net_inet(le, k_af_inet, k_ipproto_tcp, "proc:tcp", true);
  const auto b = parse_proc_net_inet(be, k_af_inet, k_ipproto_tcp, "proc:tcp", false);
  REQUIRE(a.rows.size() == 1);
  REQUIRE(b.rows.size() == 1);
  for (const auto* r : {&a.rows.front(), &b.rows.front()}) {
    CHECK(local_bytes(*r) == k_loopback4);
    CHECK(remote_bytes(*r) == Bytes{10, 0, 2, 2});
    CHECK(r->local_port == 5000); // ports are plain hex in either byte order
    CHECK(r->remote_port == 0x8B6B);
  }
  const std::string v6 =
      "  sl  local_address                         remote_address                        st "
      "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 00000000000000000000000000000001:1771 00000000000000000000000000000000:0000 07 "
      "00000000:00000000 00:00000000 00000000     0        0 5 2 0 0\n";
  const auto c = parse_proc_net_inet(v6, k_af_inet6, k_ipproto_udp, "proc:udp6", false);
  REQUIRE(c.rows.size() == 1);
  CHECK(local_bytes(c.rows[0]) == Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
}

TEST_CASE("collect::parse_proc_net_inet decodes IPv6 words", "[collect][proc_net]") {
  const std::string text =
      "  sl  local_address                         remote_address                        st "
      "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
      "   0: 00000000000000000000000000000000:138F 00000000000000000000000000000000:0000 0A "
      "00000000:00000000 00:00000000 00000000     0        0 763006 1 00000000e495f509 100 0 0 "
      "10 0\n"
      "   1: 0000000000000000FFFF00000100007F:138F 0000000000000000FFFF00000100007F:9266 01 "
      "00000000:00000000 00:00000000 00000000     0        0 763008 1 00000000ac7a97dc 20 0 0 "
      "10 -1\n"
      "   2: 000080FE00000000FFADE15609667CFE:C781 00000000000000000000000001000000:0016 08 "
      "00000000:00000001 00:00000000 00000000  1000        0 11337031 2 00000000b9256fdd 20 4 0 "
      "10 -1\n";
  const auto p = parse_proc_net_inet(text, k_af_inet6, k_ipproto_tcp, "proc:tcp6");
  REQUIRE(p.issues.empty());
  REQUIRE(p.rows.size() == 3);
  CHECK(p.rows[0].addr_len == 16);
  CHECK(p.rows[0].family == k_af_inet6);
  CHECK(local_bytes(p.rows[0]) == Bytes(16, 0));
  CHECK(p.rows[0].state == k_tcp_listen);
  CHECK(local_bytes(p.rows[1]) == k_mapped_loopback); // ::ffff:127.0.0.1
  CHECK(remote_bytes(p.rows[1]) == k_mapped_loopback);
  CHECK(p.rows[1].remote_port == 0x9266);
  // fe80::56e1:adff:fe7c:6609 and ::1
  CHECK(local_bytes(p.rows[2])
        == Bytes{0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x56, 0xe1, 0xad, 0xff, 0xfe, 0x7c, 0x66, 0x09});
  CHECK(remote_bytes(p.rows[2]) == Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  CHECK(p.rows[2].state == k_tcp_close_wait);
  CHECK(p.rows[2].rx_queue == 1U);
}

TEST_CASE("collect::parse_proc_net_inet reads udp and raw tables", "[collect][proc_net]") {
  const std::string modern =
      "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode ref pointer drops            \n"
      " 4280: 0100007F:1770 00000000:0000 07 00000000:000009C0 00:00000000 00000000     0      "
      "  0 762989 2 000000003d6d555f 17        \n"
      "11137: 0100007F:B239 0100007F:1770 01 00000000:00000000 00:00000000 00000000     0      "
      "  0 762990 2 000000003575689f 0        \n";
  const auto udp = parse_proc_net_inet(modern, k_af_inet, k_ipproto_udp, "proc:udp");
  REQUIRE(udp.issues.empty());
  REQUIRE(udp.rows.size() == 2);
  CHECK(udp.rows[0].type == k_sock_dgram);
  CHECK(udp.rows[0].state == k_tcp_close);
  CHECK(udp.rows[0].rx_queue == 2496U);
  CHECK(udp.rows[0].tx_queue == 0U);
  CHECK(udp.rows[0].drops == 17U);
  CHECK(udp.rows[1].state == k_tcp_established);
  CHECK(udp.rows[1].drops == 0U);

  // 2.6.18: header ends at inode and rows have no drops column.
  const std::string old =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode\n"
      "  7: 00000000:0801 00000000:0000 07 00000000:00000000 00:00000000 00000000     0      "
      "  0 7161 2 ffff81045d7b7080\n";
  const auto udp_old = parse_proc_net_inet(old, k_af_inet, k_ipproto_udp, "proc:udp");
  REQUIRE(udp_old.issues.empty());
  REQUIRE(udp_old.rows.size() == 1);
  CHECK(udp_old.rows[0].local_port == 2049);
  CHECK_FALSE(udp_old.rows[0].drops.has_value());

  const std::string raw =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
      "timeout inode ref pointer drops\n"
      " 102: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0      "
      "  0 762992 2 000000000194b5f2 0\n";
  const auto r = parse_proc_net_inet(raw, k_af_inet, k_ipproto_raw, "proc:raw");
  REQUIRE(r.rows.size() == 1);
  CHECK(r.rows[0].type == k_sock_raw);
  CHECK(r.rows[0].local_port == 1); // the IP protocol (ICMP), as the kernel prints it
}

TEST_CASE("collect::parse_proc_net_inet reports bad rows and keeps going", "[collect][proc_net]") {
  const std::string good =
      "   0: 0100007F:1388 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0      "
      "  0 762976 4 00000000768e300a 100 0 0 10 0\n";
  const std::string text =
      std::string(k_tcp_header) + good
      + "   1: 0100007F:1389 00000000:0000 0D 00000000:00000000 00:00000000 00000000     0    "
        "    0 7 1 0 100 0 0 10 0\n" // state 13 is never printed
        "   2: 0100007F:138A 00000000:0000 00 00000000:00000000 00:00000000 00000000     0    "
        "    0 8 1 0 100 0 0 10 0\n" // state 0
        "   3: 0100007G:138B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0    "
        "    0 9 1 0 100 0 0 10 0\n" // not hex
        "   4: 0100007F:138C 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0    "
        "    0 -10 1 0 100 0 0 10 0\n" // negative inode
        "   5: 0100007F1388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0    "
        "    0 10 1 0 100 0 0 10 0\n" // no port separator
        "   6: 0100007F:11388 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0   "
        "    0 11 1 0 100 0 0 10 0\n" // port out of range
        "   7: 0100007F:138D 00000000:0000 0A 00000000 00:00000000 00000000     0        0 12 1 "
        "0\n" // queues without ':'
        "   8: 0100\x01\x1b:138\n"
        "\n"
        "   9: 0100007F:138E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0    "
        "    0 13 1 00000000768e"; // truncated last line: the kernel ends every row with '\n'
  const auto p = parse_proc_net_inet(text, k_af_inet, k_ipproto_tcp, "proc:tcp");
  REQUIRE(p.rows.size() == 2); // row 0, and the cut row 9 whose used columns are complete
  CHECK(p.rows[0].inode == 762976U);
  CHECK(p.rows[1].inode == 13U);
  REQUIRE(p.issues.size() == 8);
  CHECK(count_kind(p.issues, "bad_row") == 8);
  CHECK(p.issues[0].source == "proc:tcp");
  CHECK(p.issues[0].example.rfind("   1: 0100007F:1389", 0) == 0);
  CHECK(p.issues[7].example == "   8: 0100\\x01\\x1b:138"); // control bytes escaped

  // A row cut before the columns we need is a bad row; earlier rows survive.
  const std::string cut = std::string(k_tcp_header) + good + "   1: 0100007F:1389 0000";
  const auto q = parse_proc_net_inet(cut, k_af_inet, k_ipproto_tcp, "proc:tcp");
  CHECK(q.rows.size() == 1);
  REQUIRE(q.issues.size() == 1);
  CHECK(q.issues[0].kind == "bad_row");
  CHECK(q.issues[0].example == "   1: 0100007F:1389 0000");

  // Long rows are cut in the example.
  const std::string long_row = std::string(k_tcp_header) + std::string(1000, 'x') + "\n";
  const auto l = parse_proc_net_inet(long_row, k_af_inet, k_ipproto_tcp, "proc:tcp");
  REQUIRE(l.issues.size() == 1);
  CHECK(l.issues[0].example.size() <= 210);
}

TEST_CASE("collect::parse_proc_net_inet rejects a bad header once", "[collect][proc_net]") {
  CHECK(parse_proc_net_inet("", k_af_inet, k_ipproto_tcp, "proc:tcp").rows.empty());
  CHECK(parse_proc_net_inet("", k_af_inet, k_ipproto_tcp, "proc:tcp").issues.empty());

  const auto header_only = parse_proc_net_inet(k_tcp_header, k_af_inet, k_ipproto_tcp, "proc:tcp");
  CHECK(header_only.rows.empty());
  CHECK(header_only.issues.empty());

  const std::string rows =
      "   0: 0100007F:1388 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0      "
      "  0 762976 4 00000000768e300a 100 0 0 10 0\n"
      "   1: 0100007F:1389 00000000:0000 0A 00000000:00000003 00:00000000 00000000     0      "
      "  0 762977 4 00000000768e300a 100 0 0 10 0\n";
  for (const std::string& header : {std::string(""),
                                    std::string("garbage\n"),
                                    std::string("  sl  local_address rem_address   st\n"),
                                    std::string("Num       RefCount Protocol Flags\n")}) {
    const auto p = parse_proc_net_inet(header + rows, k_af_inet, k_ipproto_tcp, "proc:tcp");
    CHECK(p.rows.empty());
    REQUIRE(p.issues.size() == 1);
    CHECK(p.issues[0].kind == "bad_header");
  }
  const auto wrong_family =
      parse_proc_net_inet(std::string(k_tcp_header) + rows, k_af_unix, k_ipproto_tcp, "proc:tcp");
  CHECK(wrong_family.rows.empty());
  CHECK(wrong_family.issues.size() == 1);

  // An IPv6 row in an IPv4 table is a bad row, not a crash.
  const std::string v6_row =
      "   0: 00000000000000000000000000000000:138F 00000000000000000000000000000000:0000 0A "
      "00000000:00000000 00:00000000 00000000     0        0 763006 1 0 100 0 0 10 0\n";
  const auto mixed =
      parse_proc_net_inet(std::string(k_tcp_header) + v6_row, k_af_inet, k_ipproto_tcp, "proc:tcp");
  CHECK(mixed.rows.empty());
  CHECK(count_kind(mixed.issues, "bad_row") == 1);
}

TEST_CASE("collect::parse_proc_net_inet drops rows printed twice", "[collect][proc_net]") {
  const std::string est =
      "  58: 94011FAC:0CEA 27011FAC:B740 01 00000000:00000000 02:000AAD8E 00000000    27      "
      "  0 9925909 2 ffff8103b9aa3880 211 40 23 2 100\n";
  const std::string tw =
      "   2: 1C00000A:97D0 412AF468:0050 06 00000000:00000000 03:000007C5 00000000     0      "
      "  0 0 3 ffff8c7a12d31aa0\n";
  const std::string tw_later = // same TIME_WAIT socket, read a moment later
      "   5: 1C00000A:97D0 412AF468:0050 06 00000000:00000000 03:000007C1 00000000     0      "
      "  0 0 3 ffff8c7a12d31aa0\n";
  const std::string other_tw = // another inode-0 socket: not a duplicate
      "   3: 1C00000A:B082 E4BDFA8E:0050 06 00000000:00000000 03:00000799 00000000     0      "
      "  0 0 3 ffff8c7a12d31990\n";
  const auto p =
      parse_proc_net_inet(std::string(k_tcp_header) + est + tw + est + tw_later + other_tw,
                          k_af_inet,
                          k_ipproto_tcp,
                          "proc:tcp");
  CHECK(p.rows.size() == 3);
  REQUIRE(p.issues.size() == 2);
  CHECK(count_kind(p.issues, "duplicate") == 2);
  CHECK(p.issues[0].example.rfind("  58:", 0) == 0);
}

TEST_CASE("collect::parse_proc_net_unix maps states, types and paths", "[collect][proc_net]") {
  using namespace std::string_literals;
  const std::string text =
      std::string(k_unix_header)
      + "000000007f135d16: 00000002 00000000 00000000 0002 01 762998\n"
        "000000007a9965cd: 00000003 00000000 00000000 0001 02     0 /run/app/l.sock\n"
        "000000005412314e: 00000002 00000000 00010000 0001 01 762993 /run/app/l.sock\n"
        "0000000055ca9007: 00000002 00000000 00000000 0002 01 762997 /run/app/sp ace.sock\n"
        "000000009472c174: 00000003 00000000 00000000 0001 03 762994\n"
        "0000000052f25fc2: 00000002 00000000 00000000 0002 01 762996 @abs@name\n"
        "0000000000000000: 0000000a 00000000 00010000 0005 01 10061 /run/udev/control\n"
        "0000000000000001: 00000001 00000000 00000000 0001 04     0\n"
        "ffff81045fc61940: 00000002 00000000 00010000 0001 01  6950 @ISCSI\0\0\0\n"s;
  const auto p = parse_proc_net_unix(text);
  REQUIRE(p.issues.empty());
  REQUIRE(p.rows.size() == 9);
  for (const auto& r : p.rows) {
    CHECK(r.family == k_af_unix);
    CHECK(r.proto == 0);
    CHECK(r.addr_len == 0);
    CHECK_FALSE(r.rx_queue.has_value()); // /proc/net/unix has no queue sizes
    CHECK_FALSE(r.tx_queue.has_value());
  }
  CHECK(p.rows[0].type == k_sock_dgram);
  CHECK(p.rows[0].state == k_tcp_close);
  CHECK_FALSE(p.rows[0].path.has_value());
  CHECK(p.rows[0].inode == 762998U);

  CHECK(p.rows[1].state == k_tcp_established); // embryo in the listener's accept queue
  CHECK(p.rows[1].inode == 0U);
  CHECK(p.rows[1].path == "/run/app/l.sock");

  CHECK(p.rows[2].state == k_tcp_listen);
  CHECK(p.rows[2].type == k_sock_stream);

  CHECK(p.rows[3].path == "/run/app/sp ace.sock");
  CHECK(p.rows[4].state == k_tcp_established);
  CHECK(p.rows[5].path == "@abs@name");
  CHECK(p.rows[6].type == k_sock_seqpacket);
  CHECK(p.rows[6].state == k_tcp_listen);
  CHECK(p.rows[7].state == k_tcp_close); // St 04: orphan, disconnecting
  CHECK(p.rows[8].path == "@ISCSI@@@");  // 2.6.18 printed the NUL padding raw
  CHECK(p.rows[8].inode == 6950U);
}

TEST_CASE("collect::parse_proc_net_unix reports bad input", "[collect][proc_net]") {
  CHECK(parse_proc_net_unix("").issues.empty());
  CHECK(parse_proc_net_unix(k_unix_header).rows.empty());
  CHECK(parse_proc_net_unix(k_unix_header).issues.empty());

  const auto no_inode = parse_proc_net_unix(
      "Num       RefCount Protocol Flags    Type St Path\n"
      "0000000000000000: 00000002 00000000 00010000 0001 01 /var/run/postgresql/.s.PGSQL.5432\n");
  CHECK(no_inode.rows.empty());
  REQUIRE(no_inode.issues.size() == 1);
  CHECK(no_inode.issues[0].kind == "bad_header");
  CHECK(no_inode.issues[0].source == "proc:unix");

  const auto p = parse_proc_net_unix(
      std::string(k_unix_header)
      + "0000000000000001: 00000002 00000000 00000000 0003 01 5 /x\n" // SOCK_RAW is not unix
        "0000000000000002: 00000002 00000000 00000000 0001 07 6\n"    // no such St
        "0000000000000003 00000002 00000000 00000000 0001 01 7\n"     // Num without ':'
        "0000000000000004: 00000002 00000000 00000000 0001 01\n"      // no inode
        "0000000000000005: 00000002 00000000 00000000 0001 01 8x\n"
        "0000000000000006: 00000002 00000000 00000000 0001 01 9 /ok\n"
        "0000000000000006: 00000002 00000000 00000000 0001 01 9 /ok\n" // printed twice
        "0000000000000000: 00000003 00000000 00000000 0001 02     0 /l\n"
        "0000000000000000: 00000003 00000000 00000000 0001 02     0 /l\n" // hidden pointers: kept
        "000000000000000a: 00000003 00000000 00000000 0001 02     0 /l\n"
        "000000000000000a: 00000003 00000000 00000000 0001 02     0 /l\n" // same embryo twice
        "0000000000000007: 0000");
  CHECK(p.rows.size() == 4);
  CHECK(count_kind(p.issues, "bad_row") == 6);
  CHECK(count_kind(p.issues, "duplicate") == 2);
}

// Every socket table in the corpus parses, or each of its lines is accounted for by an issue.
TEST_CASE("collect::parse_proc_net_* accept every socket table in the corpus",
          "[collect][proc_net][fixtures]") {
  namespace fs = std::filesystem;

  struct Table {
    uint8_t family;
    uint16_t proto; // 0 = unix
  };

  const std::map<std::string, Table> tables = {
      {"tcp", {k_af_inet, k_ipproto_tcp}},
      {"net_tcp", {k_af_inet, k_ipproto_tcp}},
      {"tcpstat", {k_af_inet, k_ipproto_tcp}},
      {"tcp6", {k_af_inet6, k_ipproto_tcp}},
      {"net_tcp6", {k_af_inet6, k_ipproto_tcp}},
      {"udp", {k_af_inet, k_ipproto_udp}},
      {"udp_broken", {k_af_inet, k_ipproto_udp}},
      {"udp6", {k_af_inet6, k_ipproto_udp}},
      {"raw", {k_af_inet, k_ipproto_raw}},
      {"raw6", {k_af_inet6, k_ipproto_raw}},
      {"unix", {k_af_unix, 0}},
      {"net_unix", {k_af_unix, 0}},
      {"unix_without_inode", {k_af_unix, 0}},
  };
  size_t files = 0;
  for (const auto& dir : fs::directory_iterator(sockrewind::test::fixture_dir())) {
    if (!dir.is_directory()) {
      continue;
    }
    for (const auto& entry : fs::directory_iterator(dir.path())) {
      const auto it = tables.find(entry.path().filename().string());
      if (it == tables.end()) {
        continue;
      }
      INFO(entry.path().string());
      ++files;
      const std::string text = sockrewind::test::read_file(entry.path());
      const Table t = it->second;
      const auto p = t.family == k_af_unix
                         ? parse_proc_net_unix(text)
                         : parse_proc_net_inet(text, t.family, t.proto, "proc:" + it->first);
      const size_t lines = static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
      if (count_kind(p.issues, "bad_header") == 1) {
        CHECK(p.rows.empty());
        CHECK(p.issues.size() == 1);
      } else {
        CHECK(p.rows.size() + p.issues.size() == lines - 1); // all but the header
      }
      for (const auto& r : p.rows) {
        CHECK(r.family == t.family);
        CHECK(r.state >= 1);
        CHECK(r.state <= 12);
      }
    }
  }
  CHECK(files == 30);
}

TEST_CASE("collect::parse_proc_net_inet matches the 6.18 capture's ground truth",
          "[collect][proc_net][fixtures]") {
  const auto dir = sockrewind::test::fixture_dir() / "local-capture-linux-6.18";
  const auto tcp = parse_proc_net_inet(
      sockrewind::test::read_file(dir / "tcp"), k_af_inet, k_ipproto_tcp, "proc:tcp");
  REQUIRE(tcp.issues.empty());
  REQUIRE(tcp.rows.size() == 23);

  const auto listener = the_row(
      tcp, [](const SocketRow& r) { return r.local_port == 5000 && r.state == k_tcp_listen; });
  CHECK(listener.rx_queue == 3U); // 3 connections never accepted
  CHECK_FALSE(listener.tx_queue.has_value());
  CHECK(local_bytes(listener) == k_loopback4);
  // ... and those 3 children are ESTABLISHED without a file yet.
  CHECK(rows_where(tcp,
                   [](const SocketRow& r) {
                     return r.local_port == 5000 && r.state == k_tcp_established && r.inode == 0;
                   })
            .size()
        == 3);

  const auto stuck_client = the_row(tcp, [](const SocketRow& r) { return r.remote_port == 5001; });
  CHECK(stuck_client.tx_queue == 3782144U);
  CHECK(stuck_client.timer == 4); // zero-window probe
  CHECK(stuck_client.expires_ms == 120U);
  CHECK(stuck_client.inode == 762981U);
  const auto stuck_server = the_row(
      tcp, [](const SocketRow& r) { return r.local_port == 5001 && r.state == k_tcp_established; });
  CHECK(stuck_server.rx_queue == 128512U);

  const auto keepalive = the_row(tcp, [](const SocketRow& r) { return r.remote_port == 5002; });
  CHECK(keepalive.timer == 2);
  CHECK(keepalive.expires_ms == 598400U); // TCP_KEEPIDLE 600 s, in USER_HZ ticks
  CHECK(the_row(
            tcp,
            [](const SocketRow& r) { return r.local_port == 5002 && r.state == k_tcp_established; })
            .rx_queue
        == 5U);

  const auto time_wait = the_row(tcp, [](const SocketRow& r) { return r.remote_port == 5003; });
  CHECK(time_wait.state == k_tcp_time_wait);
  CHECK(time_wait.timer == 3);
  CHECK(time_wait.inode == 0U);

  const auto syn_recv = the_row(tcp, [](const SocketRow& r) { return r.state == k_tcp_syn_recv; });
  CHECK(syn_recv.local_port == 5004);
  CHECK(syn_recv.inode == 0U);
  CHECK(syn_recv.timer == 1);
  CHECK(syn_recv.retrans == 1U);

  const auto fin_wait2 = the_row(tcp, [](const SocketRow& r) { return r.remote_port == 5005; });
  CHECK(fin_wait2.state == 5);
  CHECK(fin_wait2.inode == 0U);
  const auto close_wait =
      the_row(tcp, [](const SocketRow& r) { return r.state == k_tcp_close_wait; });
  CHECK(close_wait.local_port == 5005);
  CHECK(close_wait.rx_queue == 1U); // the FIN

  const auto syn_sent = the_row(tcp, [](const SocketRow& r) { return r.state == k_tcp_syn_sent; });
  CHECK(remote_bytes(syn_sent) == Bytes{192, 0, 2, 1});
  CHECK(syn_sent.remote_port == 5006);
  CHECK(syn_sent.tx_queue == 1U);

  const auto tcp6 = parse_proc_net_inet(
      sockrewind::test::read_file(dir / "tcp6"), k_af_inet6, k_ipproto_tcp, "proc:tcp6");
  REQUIRE(tcp6.issues.empty());
  REQUIRE(tcp6.rows.size() == 2);
  CHECK(tcp6.rows[0].state == k_tcp_listen);
  CHECK(tcp6.rows[0].local_port == 5007);
  CHECK(local_bytes(tcp6.rows[1]) == k_mapped_loopback);
  CHECK(tcp6.rows[1].local_port == 5007);
  CHECK(tcp6.rows[1].inode == 763008U);

  const auto udp = parse_proc_net_inet(
      sockrewind::test::read_file(dir / "udp"), k_af_inet, k_ipproto_udp, "proc:udp");
  REQUIRE(udp.issues.empty());
  REQUIRE(udp.rows.size() == 2);
  const auto bound = the_row(udp, [](const SocketRow& r) { return r.local_port == 6000; });
  CHECK(bound.rx_queue == 2496U); // truesize of 3 x 100 B datagrams
  CHECK(bound.state == k_tcp_close);
  CHECK(bound.drops == 0U);
  CHECK(the_row(udp, [](const SocketRow& r) { return r.remote_port == 6000; }).state
        == k_tcp_established);

  const auto udp6 = parse_proc_net_inet(
      sockrewind::test::read_file(dir / "udp6"), k_af_inet6, k_ipproto_udp, "proc:udp6");
  REQUIRE(udp6.rows.size() == 1);
  CHECK(local_bytes(udp6.rows[0]) == Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
  CHECK(udp6.rows[0].local_port == 6001);

  const auto raw = parse_proc_net_inet(
      sockrewind::test::read_file(dir / "raw"), k_af_inet, k_ipproto_raw, "proc:raw");
  REQUIRE(raw.rows.size() == 1);
  CHECK(raw.rows[0].local_port == 1);
  CHECK(raw.rows[0].type == k_sock_raw);
}

TEST_CASE("collect::parse_proc_net_unix matches the 6.18 capture's ground truth",
          "[collect][proc_net][fixtures]") {
  const auto p = parse_proc_net_unix(sockrewind::test::read_file(
      sockrewind::test::fixture_dir() / "local-capture-linux-6.18" / "unix"));
  REQUIRE(p.issues.empty());
  REQUIRE(p.rows.size() == 8);
  const auto embryos = rows_where(p, [](const SocketRow& r) { return r.inode == 0; });
  REQUIRE(embryos.size() == 2);
  for (const auto& e : embryos) {
    CHECK(e.state == k_tcp_established);
    CHECK(e.path == "/run/app/l.sock");
  }
  const auto listener = the_row(p, [](const SocketRow& r) { return r.state == k_tcp_listen; });
  CHECK(listener.inode == 762993U);
  CHECK(listener.path == "/run/app/l.sock");
  CHECK(listener.type == k_sock_stream);
  CHECK(the_row(p, [](const SocketRow& r) { return r.path == "@abs@name"; }).type == k_sock_dgram);
  CHECK(the_row(p, [](const SocketRow& r) { return r.path == "/run/app/sp ace.sock"; }).inode
        == 762997U);
  CHECK(rows_where(p,
                   [](const SocketRow& r) {
                     return r.state == k_tcp_established && r.inode != 0 && !r.path;
                   })
            .size()
        == 2);
}

TEST_CASE("collect::parse_proc_net_* read old and edited captures",
          "[collect][proc_net][fixtures]") {
  const auto root = sockrewind::test::fixture_dir();
  const auto read = [&root](const char* dir, const char* name) {
    return sockrewind::test::read_file(root / dir / name);
  };
  const char* rhel5 = "shreyash-singh-Webpage_rhel5-2.6.18";

  const auto tcp = parse_proc_net_inet(read(rhel5, "tcp"), k_af_inet, k_ipproto_tcp, "proc:tcp");
  CHECK(tcp.rows.size() == 59);
  REQUIRE(tcp.issues.size() == 1); // rows 58 and 59 are the same socket
  CHECK(tcp.issues[0].kind == "duplicate");
  CHECK(tcp.issues[0].example.rfind("  59: 94011FAC:0CEA 27011FAC:B740", 0) == 0);
  const auto mysql = the_row(tcp, [](const SocketRow& r) { return r.inode == 9925909; });
  CHECK(local_bytes(mysql) == Bytes{172, 31, 1, 148});
  CHECK(mysql.local_port == 3306);
  CHECK(mysql.uid == 27U);
  CHECK_FALSE(
      rows_where(tcp, [](const SocketRow& r) { return r.state == k_tcp_time_wait; }).empty());

  const auto tcp6 =
      parse_proc_net_inet(read(rhel5, "tcp6"), k_af_inet6, k_ipproto_tcp, "proc:tcp6");
  CHECK(tcp6.issues.empty());
  const auto retransmitting = the_row(tcp6, [](const SocketRow& r) { return r.timer == 1; });
  CHECK(retransmitting.tx_queue == 0x1B8CU);
  CHECK(local_bytes(retransmitting)
        == Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 172, 31, 1, 148});

  const auto udp = parse_proc_net_inet(read(rhel5, "udp"), k_af_inet, k_ipproto_udp, "proc:udp");
  CHECK(udp.issues.empty());
  CHECK(udp.rows.size() == 14); // sl is a hash bucket and repeats: not a key
  for (const auto& r : udp.rows) {
    CHECK_FALSE(r.drops.has_value()); // 2.6.18 had no drops column
  }

  const auto unx = parse_proc_net_unix(read(rhel5, "unix"));
  CHECK(unx.issues.empty());
  CHECK(unx.rows.size() == 90);
  for (const auto& r : unx.rows) {
    CHECK((!r.path || r.path->find('\0') == std::string::npos));
  }
  const auto iscsi = the_row(unx, [](const SocketRow& r) {
    return r.path && r.path->rfind("@ISCSIADM_ABSTRACT_NAMESPACE@", 0) == 0;
  });
  CHECK(iscsi.path->size() == 108); // '@' + the rest of the NUL-padded sun_path
  CHECK(iscsi.inode == 6950U);
  CHECK(iscsi.state == k_tcp_listen);
  CHECK(the_row(unx, [](const SocketRow& r) { return r.inode == 10231; }).path
        == "/tmp/.font-unix/fs7100");

  // 32-bit Android kernel: 8-digit pointers.
  const char* arc = "vladikoff-arc_readonly_fs_image";
  const auto arc_tcp = parse_proc_net_inet(read(arc, "tcp"), k_af_inet, k_ipproto_tcp, "proc:tcp");
  CHECK(arc_tcp.issues.empty());
  REQUIRE(arc_tcp.rows.size() == 3);
  CHECK(arc_tcp.rows[2].timer == 1);
  CHECK(arc_tcp.rows[2].expires_ms == 200U);
  CHECK(arc_tcp.rows[2].tx_queue == 0x18U);
  CHECK(local_bytes(arc_tcp.rows[2]) == Bytes{10, 0, 2, 15});
  const auto arc_tcp6 =
      parse_proc_net_inet(read(arc, "tcp6"), k_af_inet6, k_ipproto_tcp, "proc:tcp6");
  REQUIRE(arc_tcp6.rows.size() == 1);
  CHECK(arc_tcp6.rows[0].state == k_tcp_close_wait);
  CHECK(arc_tcp6.rows[0].rx_queue == 1U);
  CHECK(remote_bytes(arc_tcp6.rows[0])
        == Bytes{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 74, 125, 235, 161});

  const auto keepalive = parse_proc_net_inet(
      read("prometheus-node_exporter", "tcpstat"), k_af_inet, k_ipproto_tcp, "proc:tcp");
  CHECK(keepalive.issues.empty());
  CHECK(the_row(keepalive, [](const SocketRow& r) { return r.timer == 2; }).expires_ms
        == 0xAC99BU * 10);

  // Edited procfs data: the 3 LISTEN lines share inode 2740; two also share the address.
  const auto procfs_tcp =
      parse_proc_net_inet(read("prometheus-procfs", "tcp"), k_af_inet, k_ipproto_tcp, "proc:tcp");
  CHECK(procfs_tcp.rows.size() == 2);
  CHECK(count_kind(procfs_tcp.issues, "duplicate") == 1);

  const auto broken = parse_proc_net_inet(
      read("prometheus-procfs", "udp_broken"), k_af_inet, k_ipproto_udp, "proc:udp");
  CHECK(broken.rows.empty());
  CHECK_FALSE(broken.issues.empty());
  const auto no_inode = parse_proc_net_unix(read("prometheus-procfs", "unix_without_inode"));
  CHECK(no_inode.rows.empty());
  CHECK(count_kind(no_inode.issues, "bad_header") == 1);

  // Global IPv6 (2601:646:9e01:f100::3a4c), TIME_WAIT rows to port 80.
  const auto jc_tcp6 = parse_proc_net_inet(
      read("kellyjonbrazil-jc", "net_tcp6"), k_af_inet6, k_ipproto_tcp, "proc:tcp6");
  CHECK(jc_tcp6.issues.empty());
  REQUIRE(jc_tcp6.rows.size() == 8);
  CHECK(local_bytes(jc_tcp6.rows[1])
        == Bytes{0x26, 0x01, 0x06, 0x46, 0x9e, 0x01, 0xf1, 0, 0, 0, 0, 0, 0, 0, 0x3a, 0x4c});
  CHECK(jc_tcp6.rows[1].state == k_tcp_time_wait);
  CHECK(jc_tcp6.rows[1].remote_port == 80);

  const auto jc_unix = parse_proc_net_unix(read("kellyjonbrazil-jc", "net_unix"));
  CHECK(jc_unix.issues.empty());
  CHECK(jc_unix.rows.size() == 130);
}
