// Agreement with ss: every socket `ss -tuwxanie -p` lists in a private namespace is in the
// snapshot with the same state, queues, inode, cookie and owning pid, and the snapshot has
// nothing ss lacks except what is justified below.
#include "live/netns.hpp"
#include "live/sockets.hpp"
#include "support.hpp"

#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <array>
#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

using sockrewind::store::Db;
using namespace sockrewind::test;

namespace {

struct SsSocket {
  std::string netid;
  int state = 0;
  int64_t rq = 0;
  int64_t wq = 0;
  std::string local;
  std::string peer;
  uint64_t inode = 0;
  std::optional<uint64_t> cookie;
  std::set<int64_t> pids;
  std::string line;
};

int state_number(const std::string& s) {
  static const std::map<std::string, int> k_states = {{"ESTAB", 1},
                                                      {"SYN-SENT", 2},
                                                      {"SYN-RECV", 3},
                                                      {"FIN-WAIT-1", 4},
                                                      {"FIN-WAIT-2", 5},
                                                      {"TIME-WAIT", 6},
                                                      {"UNCONN", 7},
                                                      {"CLOSE-WAIT", 8},
                                                      {"LAST-ACK", 9},
                                                      {"LISTEN", 10},
                                                      {"CLOSING", 11}};
  const auto it = k_states.find(s);
  return it == k_states.end() ? -1 : it->second;
}

// Parses ss's text; continuation lines (tcp_info of -i) start with whitespace and are skipped.
std::vector<SsSocket> parse_ss(const std::string& text) {
  std::vector<SsSocket> out;
  std::istringstream in(text);
  std::string line;
  const std::regex ino_re(R"(\bino:(\d+))");
  const std::regex sk_re(R"(\bsk:([0-9a-f]+))");
  const std::regex pid_re(R"(pid=(\d+))");
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == ' ' || line[0] == '\t' || line.rfind("Netid", 0) == 0) {
      continue;
    }
    std::istringstream f(line);
    SsSocket s;
    std::string state;
    f >> s.netid >> state >> s.rq >> s.wq;
    s.state = state_number(state);
    s.line = line;
    if (s.netid.rfind("u_", 0) == 0) {
      // unix: "path inode peer peer_inode"
      std::string ino;
      std::string peer_ino;
      f >> s.local >> ino >> s.peer >> peer_ino;
      s.inode = std::stoull(ino);
    } else {
      f >> s.local >> s.peer;
      std::smatch m;
      if (std::regex_search(line, m, ino_re)) {
        s.inode = std::stoull(m[1]);
      }
    }
    std::smatch m;
    if (std::regex_search(line, m, sk_re)) {
      s.cookie = std::stoull(m[1], nullptr, 16);
    }
    for (auto it = std::sregex_iterator(line.begin(), line.end(), pid_re);
         it != std::sregex_iterator();
         ++it) {
      s.pids.insert(std::stoll((*it)[1]));
    }
    out.push_back(std::move(s));
  }
  return out;
}

struct SnapSocket {
  std::string netid;
  int state = 0;
  std::optional<int64_t> rq;
  std::optional<int64_t> wq;
  std::string local;
  std::string remote;
  uint64_t inode = 0;
  std::optional<uint64_t> cookie;
  std::set<int64_t> pids;
  bool matched = false;
};

std::string ss_local(const SnapSocket& s) {
  return s.netid + " " + s.local + " " + s.remote;
}

} // namespace

TEST_CASE("live::snapshot agrees with ss -tuwxanie -p", "[live][ss]") {
  require_root("ss agreement test");
  TempDir dir;
  const TestNetns ns;
  const std::string udir = dir.path().string();

  // A few hundred quiescent sockets of all kinds.
  std::vector<Sock> held;
  ns.run_in([&] {
    for (int l = 0; l < 4; ++l) {
      const auto port = static_cast<uint16_t>(7000 + l);
      held.push_back(tcp_listener(port, 16 + l));
      const int listener = static_cast<int>(held.size()) - 1;
      for (int c = 0; c < 25; ++c) {
        held.push_back(tcp_connect(port));
        held.push_back(tcp_accept(held[static_cast<size_t>(listener)]));
      }
      for (int c = 0; c < 2 + l; ++c) {
        held.push_back(tcp_connect(port)); // never accepted: inode-0 children
      }
    }
    // CLOSE_WAIT: the peer closed, we did not.
    held.push_back(tcp_listener(7100, 4));
    {
      Sock c = tcp_connect(7100);
      held.push_back(tcp_accept(held.back()));
    }
    // IPv6 loopback listener and a connection.
    Sock l6(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 a6{};
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(7200);
    a6.sin6_addr = in6addr_loopback;
    REQUIRE(::bind(l6.fd(), reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0);
    REQUIRE(::listen(l6.fd(), 8) == 0);
    Sock c6(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(::connect(c6.fd(), reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0);
    held.push_back(std::move(l6));
    held.push_back(std::move(c6));
    // UDP, some with queued datagrams.
    for (int u = 0; u < 40; ++u) {
      const auto port = static_cast<uint16_t>(8000 + u);
      held.push_back(udp_bound(port));
      if (u % 4 == 0) {
        udp_send(port, 64, 1 + u / 4);
      }
    }
    // Unix: listeners with accepted and pending connections, socketpairs, datagram sockets.
    for (int l = 0; l < 3; ++l) {
      const std::string path = udir + "/s" + std::to_string(l) + ".sock";
      held.push_back(unix_listener(path, 8));
      const size_t li = held.size() - 1;
      for (int c = 0; c < 10; ++c) {
        held.push_back(unix_connect(path));
        held.push_back(tcp_accept(held[li]));
      }
      held.push_back(unix_connect(path)); // pending
    }
    for (int p = 0; p < 20; ++p) {
      std::array<int, 2> sv{};
      REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv.data()) == 0);
      held.emplace_back(sv[0]);
      held.emplace_back(sv[1]);
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));

  const CmdResult ss_run = run_cmd_output("ip netns exec " + ns.name() + " ss -tuwxanie -p");
  REQUIRE(ss_run.status == 0);
  const CmdResult collect_run = run_cmd_output(std::string(SOCKREWIND_COLLECT_BIN)
                                               + " --quiet --netns all --out " + udir + "/out");
  REQUIRE(collect_run.status == 0);
  const std::string& path = collect_run.out;
  const std::vector<SsSocket> ss = parse_ss(ss_run.out);
  REQUIRE(ss.size() > 300);

  // Our own file: opened read-write so that its convenience views may run.
  Db db = Db::create(path.substr(0, path.find('\n')));

  struct stat st {};

  REQUIRE(::stat(ns.path().c_str(), &st) == 0);
  auto q = db.prepare(
      "SELECT v.proto, s.state, s.rx_queue, s.tx_queue, v.local, v.remote, s.inode, s.cookie, "
      "s.sock_id, s.pid FROM sockets_v v JOIN sockets s USING (sock_id) WHERE v.netns = ?1");
  q.bind(1, static_cast<int64_t>(st.st_ino));
  std::vector<SnapSocket> snap;
  std::map<int64_t, size_t> by_id;
  while (q.step()) {
    SnapSocket s;
    s.netid = q.get_text(0);
    s.state = static_cast<int>(q.get_int(1));
    s.rq = q.get_opt_int(2);
    s.wq = q.get_opt_int(3);
    s.local = q.get_text(4);
    s.remote = q.get_text(5);
    s.inode = static_cast<uint64_t>(q.get_int(6));
    if (const auto c = q.get_opt_int(7)) {
      s.cookie = static_cast<uint64_t>(*c);
    }
    if (const auto p = q.get_opt_int(9)) {
      s.pids.insert(*p);
    }
    by_id[q.get_int(8)] = snap.size();
    snap.push_back(std::move(s));
  }
  auto extra = db.prepare("SELECT sock_id, pid FROM extra_owners");
  while (extra.step()) {
    const auto it = by_id.find(extra.get_int(0));
    if (it != by_id.end()) {
      snap[it->second].pids.insert(extra.get_int(1));
    }
  }

  std::multimap<uint64_t, size_t> by_inode;
  std::multimap<std::string, size_t> by_tuple; // inode-0 sockets: netid + endpoints
  for (size_t i = 0; i < snap.size(); ++i) {
    if (snap[i].inode != 0) {
      by_inode.emplace(snap[i].inode, i);
    } else {
      by_tuple.emplace(ss_local(snap[i]), i);
    }
  }

  for (const SsSocket& s : ss) {
    INFO("ss: " << s.line);
    SnapSocket* m = nullptr;
    if (s.inode != 0) {
      const auto it = by_inode.find(s.inode);
      REQUIRE(it != by_inode.end());
      m = &snap[it->second];
    } else {
      auto [b, e] = by_tuple.equal_range(s.netid + " " + s.local + " " + s.peer);
      for (; b != e && m == nullptr; ++b) {
        if (!snap[b->second].matched) {
          m = &snap[b->second];
        }
      }
      REQUIRE(m != nullptr);
    }
    m->matched = true;
    CHECK(m->netid == s.netid);
    CHECK(m->state == s.state);
    CHECK(m->rq == s.rq);
    CHECK(m->wq == s.wq);
    if (s.netid.rfind("u_", 0) != 0) {
      CHECK(m->local == s.local);
      CHECK(m->remote == s.peer);
    }
    if (s.cookie) {
      CHECK(m->cookie == s.cookie);
    }
    CHECK(m->pids == s.pids);
  }
  // Everything in the snapshot is in ss, except the pending unix connections (inode 0):
  // unix_diag, which ss uses, skips sockets without an inode; we read them from
  // /proc/net/unix on purpose (they are the evidence of an accept backlog).
  for (const SnapSocket& s : snap) {
    INFO("snapshot only: " << s.netid << " " << s.local << " inode " << s.inode);
    if (!s.matched) {
      CHECK((s.netid.rfind("u_", 0) == 0 && s.inode == 0));
    }
  }
  CHECK(db.query_int("SELECT count(*) FROM sockets WHERE family = 1 AND inode = 0 AND netns_id = "
                     "(SELECT netns_id FROM netns WHERE inode = "
                     + std::to_string(st.st_ino) + ")")
        == 3);
}
