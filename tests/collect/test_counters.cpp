#include "support.hpp"

#include <sockrewind/collect/counters.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>

using namespace sockrewind::collect;

namespace {

// name → value of the parsed rows; fails the test when a name repeats.
std::map<std::string, int64_t> by_name(const Parsed<CounterRow>& p) {
  std::map<std::string, int64_t> out;
  for (const auto& r : p.rows) {
    CHECK(out.emplace(r.name, r.value).second);
  }
  return out;
}

size_t words(const std::string& line) {
  std::istringstream in(line);
  size_t n = 0;
  for (std::string w; in >> w;) {
    ++n;
  }
  return n;
}

// Counters a well-formed file holds, counted independently of the parser.
size_t expected_counters(const std::string& text, const std::string& kind) {
  std::istringstream in(text);
  size_t n = 0;
  size_t line_no = 0;
  for (std::string line; std::getline(in, line); ++line_no) {
    const size_t w = words(line);
    if (kind == "pairs") {
      n += line_no % 2 == 1 && w > 0 ? w - 1 : 0; // the values lines
    } else if (kind == "snmp6") {
      n += w > 0 ? 1 : 0;
    } else {
      n += w > 0 ? (w - 1) / 2 : 0;
    }
  }
  return n;
}

} // namespace

TEST_CASE("collect::parse_proc_net_pairs zips names with values", "[collect][counters]") {
  const auto p = parse_proc_net_pairs("Tcp: RtoAlgorithm RtoMin MaxConn InSegs\n"
                                      "Tcp: 1 200 -1 18446744073709551615\n"
                                      "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n"
                                      "TcpExt: 0 7 9\n"
                                      "IcmpMsg:\n"
                                      "IcmpMsg:\n",
                                      "snmp");
  CHECK(p.issues.empty());
  REQUIRE(p.rows.size() == 7);
  CHECK(p.rows[0].file == "snmp");
  CHECK(p.rows[0].name == "Tcp.RtoAlgorithm");
  const auto m = by_name(p);
  CHECK(m.at("Tcp.RtoMin") == 200);
  CHECK(m.at("Tcp.MaxConn") == -1);
  CHECK(m.at("Tcp.InSegs") == -1); // u64 max keeps its 64 bits
  CHECK(m.at("TcpExt.ListenOverflows") == 7);
  CHECK(m.at("TcpExt.ListenDrops") == 9);

  CHECK(parse_proc_net_pairs("", "netstat").rows.empty());
  CHECK(parse_proc_net_pairs("", "netstat").issues.empty());
}

TEST_CASE("collect::parse_proc_net_pairs skips broken pairs", "[collect][counters]") {
  const auto p = parse_proc_net_pairs("Ip: Forwarding DefaultTTL\n"
                                      "Ip: 1 64 99\n"  // one value too many: pair skipped
                                      "Icmp: InMsgs\n" // names without values
                                      "Tcp: A B\n"
                                      "Tcp: 1 x\n"     // a bad value: only that counter lost
                                      "garbage line\n" // no "Group:"
                                      "Udp: 1 2\n"
                                      "Udp: NoPorts\n" // counts disagree
                                      "Ext: Z\n",      // names at the end without values
                                      "netstat");
  const auto m = by_name(p);
  CHECK(m.size() == 1);
  CHECK(m.at("Tcp.A") == 1);
  for (const auto& i : p.issues) {
    CHECK(i.source == "proc:netstat");
    CHECK(i.kind == "bad_row");
  }
  CHECK(p.issues.size() == 6);
}

TEST_CASE("collect::parse_proc_net_snmp6 reads name/value lines", "[collect][counters]") {
  const auto p = parse_proc_net_snmp6("Ip6InReceives                   \t92166\n"
                                      "Udp6RcvbufErrors                \t3\n"
                                      "\n"
                                      "Icmp6InErrors\n"
                                      "Icmp6OutMsgs 1 2\n"
                                      "Icmp6InMsgs -x\n"
                                      "Udp6InErrors 4");
  const auto m = by_name(p);
  CHECK(m.size() == 3);
  CHECK(m.at("Ip6InReceives") == 92166);
  CHECK(m.at("Udp6RcvbufErrors") == 3);
  CHECK(m.at("Udp6InErrors") == 4);
  CHECK(p.rows[0].file == "snmp6");
  REQUIRE(p.issues.size() == 3);
  CHECK(p.issues[0].source == "proc:snmp6");
  CHECK(p.issues[0].example == "Icmp6InErrors");
}

TEST_CASE("collect::parse_proc_net_sockstat names GROUP.key", "[collect][counters]") {
  const auto p = parse_proc_net_sockstat("sockets: used 35\n"
                                         "TCP: inuse 20 orphan 0 tw 2 alloc 23 mem 833\n"
                                         "UDP: inuse 2 mem 0\n"
                                         "FRAG: inuse 0 memory 0\n"
                                         "RAW: inuse\n"
                                         "nonsense\n"
                                         "UDPLITE: inuse x\n",
                                         "sockstat");
  const auto m = by_name(p);
  CHECK(m.size() == 10);
  CHECK(m.at("sockets.used") == 35);
  CHECK(m.at("TCP.mem") == 833);
  CHECK(m.at("TCP.tw") == 2);
  CHECK(m.at("FRAG.memory") == 0);
  CHECK(p.rows[0].file == "sockstat");
  CHECK(p.issues.size() == 3);

  const auto six = parse_proc_net_sockstat("TCP6: inuse 2\nFRAG6: inuse 0 memory 0\n", "sockstat6");
  CHECK(by_name(six).at("TCP6.inuse") == 2);
  CHECK(six.rows[0].file == "sockstat6");
}

TEST_CASE("collect::parse_proc_pid_stat takes comm up to the last ')'", "[collect][counters]") {
  const std::string tail = " 1888 2001 1888 34816 2001 4202496 428 0 0 0 0 0 0 0 20 0 3 0 75513 "
                           "115900416 297 18446744073709551615\n";
  const auto plain = parse_proc_pid_stat("2001 (nginx) S" + tail);
  REQUIRE(plain);
  CHECK(plain->pid == 2001);
  CHECK(plain->comm == "nginx");
  CHECK(plain->state == 'S');
  CHECK(plain->ppid == 1888);
  CHECK(plain->num_threads == 3);
  CHECK(plain->start_ticks == 75513U);

  const auto hack = parse_proc_pid_stat("2001 (a) R 1 2 (x)) S" + tail);
  REQUIRE(hack);
  CHECK(hack->comm == "a) R 1 2 (x)");
  CHECK(hack->state == 'S');
  CHECK(hack->ppid == 1888);

  const auto empty_comm = parse_proc_pid_stat("7 () Z" + tail);
  REQUIRE(empty_comm);
  CHECK(empty_comm->comm.empty());
  CHECK(empty_comm->state == 'Z');

  for (const std::string& bad : {std::string(""),
                                 std::string("garbage"),
                                 std::string("2001 nginx S") + tail,
                                 std::string("2001 (nginx S") + tail,
                                 std::string("2001) (nginx S") + tail,
                                 std::string("x (nginx) S") + tail,
                                 std::string("-") + " (nginx) S" + tail,
                                 std::string("1 2 (nginx) S") + tail,
                                 std::string("2001 (nginx) S 1888 2001"),
                                 std::string("2001 (nginx) SS") + tail,
                                 std::string("2001 (nginx) S 1888 2001 1888 34816 2001 4202496 428 "
                                             "0 0 0 0 0 0 0 20 0 3 0 -75513\n")}) {
    INFO(bad);
    CHECK_FALSE(parse_proc_pid_stat(bad));
  }
}

TEST_CASE("collect::process_state keeps the stat state letter, nothing else",
          "[collect][counters]") {
  const std::string tail = " 1888 2001 1888 34816 2001 4202496 428 0 0 0 0 0 0 0 20 0 3 0 75513 "
                           "115900416 297 18446744073709551615\n";
  // Every state letter of fs/proc/array.c (task_state_array), and the old ones (W, x, K, P).
  for (const char letter : std::string("RSDTtXZPIWxK")) {
    const auto ps = parse_proc_pid_stat("2001 (nginx: worker) " + std::string(1, letter) + tail);
    REQUIRE(ps);
    const auto st = process_state(*ps);
    REQUIRE(st);
    CHECK(*st == letter);
  }
  // A stopped worker whose comm itself looks like a state field.
  const auto tricky = parse_proc_pid_stat("77 (x) R 1 (y) T" + tail);
  REQUIRE(tricky);
  CHECK(process_state(*tricky) == 'T');
  // Not a letter: unknown, not a guess.
  for (const char c : std::string("?0-.\x01 ")) {
    ProcStat ps;
    ps.state = c;
    INFO(static_cast<int>(c));
    CHECK_FALSE(process_state(ps));
  }
  const auto digit = parse_proc_pid_stat("2001 (nginx) 5" + tail);
  REQUIRE(digit);
  CHECK_FALSE(process_state(*digit));
}

// Every counter file in the corpus parses without issues, and every counter in it is kept.
TEST_CASE("collect::counter parsers accept every counter file in the corpus",
          "[collect][counters][fixtures]") {
  namespace fs = std::filesystem;
  const std::map<std::string, std::pair<std::string, std::string>> kinds = {
      // file name → (parser, file argument)
      {"netstat", {"pairs", "netstat"}},
      {"net_netstat", {"pairs", "netstat"}},
      {"pid26231_net_netstat", {"pairs", "netstat"}},
      {"snmp", {"pairs", "snmp"}},
      {"pid26231_net_snmp", {"pairs", "snmp"}},
      {"snmp6", {"snmp6", "snmp6"}},
      {"pid26231_net_snmp6", {"snmp6", "snmp6"}},
      {"sockstat", {"sockstat", "sockstat"}},
      {"sockstat_rhe4", {"sockstat", "sockstat"}},
      {"sockstat6", {"sockstat", "sockstat6"}},
  };
  size_t files = 0;
  for (const auto& dir : fs::directory_iterator(sockrewind::test::fixture_dir())) {
    if (!dir.is_directory()) {
      continue;
    }
    for (const auto& entry : fs::directory_iterator(dir.path())) {
      const auto it = kinds.find(entry.path().filename().string());
      if (it == kinds.end()) {
        continue;
      }
      INFO(entry.path().string());
      ++files;
      const std::string text = sockrewind::test::read_file(entry.path());
      const auto& [parser, file] = it->second;
      const auto p = parser == "pairs"   ? parse_proc_net_pairs(text, file)
                     : parser == "snmp6" ? parse_proc_net_snmp6(text)
                                         : parse_proc_net_sockstat(text, file);
      CHECK(p.issues.empty());
      CHECK(p.rows.size() == expected_counters(text, parser));
      CHECK_FALSE(p.rows.empty());
      by_name(p); // names are unique within a file
      for (const auto& r : p.rows) {
        CHECK(r.file == file);
      }
    }
  }
  CHECK(files == 21);
}

TEST_CASE("collect::counter parsers match the fixtures' values", "[collect][counters][fixtures]") {
  const auto root = sockrewind::test::fixture_dir();
  const auto read = [&root](const char* dir, const char* name) {
    return sockrewind::test::read_file(root / dir / name);
  };
  const char* local = "local-capture-linux-6.18";

  const auto netstat = by_name(parse_proc_net_pairs(read(local, "netstat"), "netstat"));
  REQUIRE(netstat.contains("TcpExt.ListenOverflows"));
  CHECK(netstat.at("TcpExt.ListenOverflows") == 0);
  CHECK(netstat.at("TcpExt.TW") == 2);
  CHECK(netstat.contains("MPTcpExt.MPCapableSYNRX"));

  const auto snmp = by_name(parse_proc_net_pairs(read(local, "snmp"), "snmp"));
  CHECK(snmp.at("Tcp.MaxConn") == -1);
  CHECK(snmp.at("Tcp.RtoMin") == 200);
  CHECK(snmp.at("Tcp.CurrEstab") == 14);
  CHECK(snmp.at("Udp.OutDatagrams") == 3);
  CHECK(snmp.contains("Udp.RcvbufErrors"));
  CHECK(!snmp.contains("IcmpMsg.InType3")); // IcmpMsg is absent when all zero

  const auto sockstat = by_name(parse_proc_net_sockstat(read(local, "sockstat"), "sockstat"));
  CHECK(sockstat.at("sockets.used") == 35);
  CHECK(sockstat.at("TCP.mem") == 833);
  CHECK(sockstat.at("UDP.mem") == 0);
  CHECK(sockstat.at("FRAG.memory") == 0);
  const auto sockstat6 = by_name(parse_proc_net_sockstat(read(local, "sockstat6"), "sockstat6"));
  CHECK(sockstat6.at("TCP6.inuse") == 2);
  CHECK(sockstat6.at("UDP6.inuse") == 1);

  const auto rhe4 = by_name(
      parse_proc_net_sockstat(read("prometheus-node_exporter", "sockstat_rhe4"), "sockstat"));
  CHECK(rhe4.at("UDP.inuse") == 0);
  CHECK(!rhe4.contains("UDP.mem"));
  CHECK(rhe4.at("TCP.mem") == 1);

  const auto old_snmp =
      by_name(parse_proc_net_pairs(read("prometheus-node_exporter", "snmp"), "snmp"));
  CHECK(old_snmp.at("Tcp.InSegs") == 57252008);
  CHECK(old_snmp.contains("Udp.RcvbufErrors"));

  const auto rhel5 =
      by_name(parse_proc_net_pairs(read("shreyash-singh-Webpage_rhel5-2.6.18", "snmp"), "snmp"));
  CHECK(!rhel5.contains("Icmp.InCsumErrors"));
  CHECK(rhel5.at("Tcp.MaxConn") == -1);
  CHECK(rhel5.at("Tcp.InSegs") == 10020102827); // above 2^32

  const auto snmp6 = by_name(parse_proc_net_snmp6(read("prometheus-procfs", "pid26231_net_snmp6")));
  CHECK(snmp6.at("Ip6InReceives") == 92166);
}

TEST_CASE("collect::parse_proc_pid_stat reads the corpus", "[collect][counters][fixtures]") {
  const auto dir = sockrewind::test::fixture_dir() / "kellyjonbrazil-jc";
  const auto init = parse_proc_pid_stat(sockrewind::test::read_file(dir / "pid_stat"));
  REQUIRE(init);
  CHECK(init->pid == 1);
  CHECK(init->comm == "systemd");
  CHECK(init->state == 'S');
  CHECK(init->ppid == 0);
  CHECK(init->num_threads == 1);
  CHECK(init->start_ticks == 128U);

  const auto hack = parse_proc_pid_stat(sockrewind::test::read_file(dir / "pid_stat_hack"));
  REQUIRE(hack);
  CHECK(hack->pid == 2001);
  CHECK(hack->comm == "bad) S 1 2 3 4 5");
  CHECK(hack->state == 'S');
  CHECK(hack->ppid == 1888);
  CHECK(hack->start_ticks == 75513U);

  const auto nl =
      parse_proc_pid_stat(sockrewind::test::read_file(dir / "pid_stat_w_space_and_nl_in_comm"));
  REQUIRE(nl);
  CHECK(nl->comm == "my file with\nsp");
  CHECK(nl->ppid == 1888);
  CHECK(nl->num_threads == 1);
  CHECK(nl->start_ticks == 75513U);

  CHECK_FALSE(parse_proc_pid_stat(sockrewind::test::read_file(dir / "pid_fdinfo")));
}
