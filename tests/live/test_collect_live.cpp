// Live tests of sockrewind-collect against real sockets in private network namespaces (root).
#include "live/netns.hpp"
#include "live/sockets.hpp"
#include "support.hpp"

#include <sockrewind/collect/host.hpp>
#include <sockrewind/collect/snapshot.hpp>
#include <sockrewind/collect/writer.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <memory>
#include <optional>
#include <thread>
#include <utility>

using sockrewind::store::Db;
using namespace sockrewind::test;

namespace {

uint64_t netns_inode(const TestNetns& ns) {
  struct stat st {};

  REQUIRE(::stat(ns.path().c_str(), &st) == 0);
  return st.st_ino;
}

// The scenario of the collector issue, built inside `ns`; the sockets live as long as this.
struct Scenario {
  Sock listener; // :5000 backlog 5, 3 connections never accepted
  std::vector<Sock> unaccepted_clients;
  Sock cw_listener, cw_server, cw_client; // :5001 server side in CLOSE_WAIT
  Sock rx_listener, rx_server, rx_client; // :5002 server has 1000 unread bytes
  Sock udp;                               // :6000 with 3 queued datagrams
  Sock ulistener;                         // unix listener, backlog 4, 2 pending
  std::vector<Sock> unix_clients;
  std::string unix_path;

  Scenario(const TestNetns& ns, const std::string& dir) {
    unix_path = dir + "/l.sock";
    ns.run_in([&] {
      listener = tcp_listener(5000, 5);
      for (int i = 0; i < 3; ++i) {
        unaccepted_clients.push_back(tcp_connect(5000));
      }
      cw_listener = tcp_listener(5001, 5);
      cw_client = tcp_connect(5001);
      cw_server = tcp_accept(cw_listener);
      cw_client.reset(); // FIN to the server, which never closes: CLOSE_WAIT
      rx_listener = tcp_listener(5002, 5);
      rx_client = tcp_connect(5002);
      rx_server = tcp_accept(rx_listener);
      send_all(rx_client, 1000);
      udp = udp_bound(6000);
      udp_send(6000, 100, 3);
      ulistener = unix_listener(unix_path, 4);
      unix_clients.push_back(unix_connect(unix_path));
      unix_clients.push_back(unix_connect(unix_path));
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100)); // let loopback settle
  }
};

std::string collect(const std::string& out_dir, const std::string& extra) {
  const CmdResult r = run_cmd_output(std::string(SOCKREWIND_COLLECT_BIN) + " --quiet --out "
                                     + out_dir + " " + extra);
  const std::string out = trim_newlines(r.out);
  INFO("collector output: " << out);
  REQUIRE(r.status == 0);
  REQUIRE(out.rfind(out_dir, 0) == 0);
  return out;
}

int64_t netns_id_of(Db& db, uint64_t inode) {
  auto st = db.prepare("SELECT netns_id FROM netns WHERE inode = ?1");
  st.bind(1, inode);
  REQUIRE(st.step());
  return st.get_int(0);
}

// Returns rows of "SELECT ... FROM sockets WHERE netns_id = ns AND <where>" as one int column.
std::vector<std::optional<int64_t>>
column(Db& db, const std::string& col, int64_t ns, const std::string& where) {
  auto st = db.prepare("SELECT " + col + " FROM sockets WHERE netns_id = ?1 AND " + where
                       + " ORDER BY sock_id");
  st.bind(1, ns);
  std::vector<std::optional<int64_t>> out;
  while (st.step()) {
    out.push_back(st.get_opt_int(0));
  }
  return out;
}

} // namespace

TEST_CASE("live::collector captures the issue's scenario in a private netns", "[live]") {
  require_root("live collector test");
  TempDir dir;
  const TestNetns ns;
  const Scenario sc(ns, dir.path().string());
  const std::string out = (dir.path() / "out").string();
  const std::string path = collect(out, "--netns all");

  struct stat st {};

  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  Db db = Db::open_readonly(path, false);
  REQUIRE(sockrewind::store::validate(db) == sockrewind::store::k_schema_version);
  const int64_t nid = netns_id_of(db, netns_inode(ns));
  const std::string pid = std::to_string(getpid());

  // The listener: accept queue 3, max backlog 5, owned by this process.
  const std::string listen5000 = "proto = 6 AND state = 10 AND local_port = 5000";
  CHECK(column(db, "rx_queue", nid, listen5000) == std::vector<std::optional<int64_t>>{3});
  CHECK(column(db, "tx_queue", nid, listen5000) == std::vector<std::optional<int64_t>>{5});
  CHECK(column(db, "pid", nid, listen5000) == std::vector<std::optional<int64_t>>{getpid()});
  CHECK(column(db, "fd", nid, listen5000) == std::vector<std::optional<int64_t>>{sc.listener.fd()});
  // Its 3 unaccepted children: ESTABLISHED, inode 0, no owner.
  const auto children = column(db, "pid", nid, "proto = 6 AND state = 1 AND local_port = 5000");
  REQUIRE(children.size() == 3);
  for (const auto& p : children) {
    CHECK_FALSE(p.has_value());
  }
  CHECK(column(db, "count(*)", nid, "proto = 6 AND state = 1 AND local_port = 5000 AND inode = 0")
        == std::vector<std::optional<int64_t>>{3});
  // CLOSE_WAIT: owned by us, the FIN counts 1 in Recv-Q.
  const std::string cw = "proto = 6 AND state = 8 AND local_port = 5001";
  CHECK(column(db, "pid", nid, cw) == std::vector<std::optional<int64_t>>{getpid()});
  CHECK(column(db, "fd", nid, cw) == std::vector<std::optional<int64_t>>{sc.cw_server.fd()});
  CHECK(column(db, "rx_queue", nid, cw) == std::vector<std::optional<int64_t>>{1});
  // Unread data.
  CHECK(column(db, "rx_queue", nid, "proto = 6 AND state = 1 AND local_port = 5002")
        == std::vector<std::optional<int64_t>>{1000});
  CHECK(column(db, "ti_bytes_received", nid, "proto = 6 AND state = 1 AND local_port = 5002")
        == std::vector<std::optional<int64_t>>{1000});
  // UDP: three 100-byte datagrams, counted in truesize bytes (> payload).
  const auto udp_q = column(db, "rx_queue", nid, "proto = 17 AND local_port = 6000");
  REQUIRE(udp_q.size() == 1);
  CHECK(udp_q[0].value_or(0) >= 300);
  // Unix listener: 2 pending of backlog 4; the 2 embryos (inode 0) come from /proc/net/unix.
  auto ul = db.prepare("SELECT rx_queue, tx_queue, pid FROM sockets WHERE netns_id = ?1 AND "
                       "family = 1 AND state = 10 AND path = ?2");
  ul.bind(1, nid).bind(2, sc.unix_path);
  REQUIRE(ul.step());
  CHECK(ul.get_int(0) == 2);
  CHECK(ul.get_int(1) == 4);
  CHECK(ul.get_int(2) == getpid());
  auto emb = db.prepare("SELECT count(*) FROM sockets WHERE netns_id = ?1 AND family = 1 AND "
                        "inode = 0 AND state = 1 AND path = ?2 AND pid IS NULL");
  emb.bind(1, nid).bind(2, sc.unix_path);
  REQUIRE(emb.step());
  CHECK(emb.get_int(0) == 2);

  // Process identity, counters, limits and sources were recorded.
  CHECK(db.query_int("SELECT count(*) FROM processes WHERE pid = " + pid + " AND start_ticks > 0")
        == 1);
  CHECK(db.query_int("SELECT count(*) FROM counters WHERE netns_id = " + std::to_string(nid)
                     + " AND name = 'TcpExt.ListenOverflows'")
        == 1);
  CHECK(db.query_int("SELECT value FROM limits WHERE netns_id = " + std::to_string(nid)
                     + " AND name = 'net.core.somaxconn'")
        > 0);
  CHECK(db.query_int("SELECT count(*) FROM sources WHERE netns_id = " + std::to_string(nid)
                     + " AND source = 'tcp' AND method = 'sock_diag' AND status = 'ok'")
        == 1);
  // The convenience views are refused by the defensive read-only open; our own file may use them.
  Db rw = Db::create(path);
  CHECK(
      rw.query_int("SELECT count(*) FROM sockets_v WHERE netns = " + std::to_string(netns_inode(ns))
                   + " AND local = '127.0.0.1:5000' AND "
                     "state = 'LISTEN' AND comm IS NOT NULL")
      == 1);
}

TEST_CASE("live::collector keeps two private namespaces apart", "[live]") {
  require_root("live collector test");
  TempDir dir;
  const TestNetns a;
  const TestNetns b;
  Sock la;
  Sock lb;
  std::vector<Sock> clients;
  a.run_in([&] {
    la = tcp_listener(5000, 8);
    clients.push_back(tcp_connect(5000));
  });
  b.run_in([&] {
    lb = tcp_listener(5000, 16);
    clients.push_back(tcp_connect(5000));
    clients.push_back(tcp_connect(5000));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const std::string path = collect((dir.path() / "out").string(), "--netns all");
  Db db = Db::open_readonly(path, false);
  const int64_t ida = netns_id_of(db, netns_inode(a));
  const int64_t idb = netns_id_of(db, netns_inode(b));
  CHECK(ida != idb);
  const std::string listen = "proto = 6 AND state = 10 AND local_port = 5000";
  CHECK(column(db, "rx_queue || '/' || tx_queue", ida, listen).size() == 1);
  CHECK(column(db, "rx_queue", ida, listen) == std::vector<std::optional<int64_t>>{1});
  CHECK(column(db, "tx_queue", ida, listen) == std::vector<std::optional<int64_t>>{8});
  CHECK(column(db, "rx_queue", idb, listen) == std::vector<std::optional<int64_t>>{2});
  CHECK(column(db, "tx_queue", idb, listen) == std::vector<std::optional<int64_t>>{16});
  // Both listeners are owned by this process, each matched to its own socket.
  CHECK(column(db, "fd", ida, listen) == std::vector<std::optional<int64_t>>{la.fd()});
  CHECK(column(db, "fd", idb, listen) == std::vector<std::optional<int64_t>>{lb.fd()});
  // Counters are per namespace too.
  CHECK(db.query_int("SELECT count(DISTINCT netns_id) FROM counters WHERE name = 'TCP.inuse' AND "
                     "netns_id IN ("
                     + std::to_string(ida) + "," + std::to_string(idb) + ")")
        == 2);
}

TEST_CASE("live::collector falls back to /proc/net and says so", "[live]") {
  require_root("live collector test");
  TempDir dir;
  const TestNetns ns;
  const Scenario sc(ns, dir.path().string());
  const std::string path = collect((dir.path() / "out").string(), "--netns all --source proc");
  Db db = Db::open_readonly(path, false);
  const int64_t nid = netns_id_of(db, netns_inode(ns));
  const std::string listen5000 = "proto = 6 AND state = 10 AND local_port = 5000";
  CHECK(column(db, "rx_queue", nid, listen5000) == std::vector<std::optional<int64_t>>{3});
  // /proc cannot tell the max backlog or the cookie: NULL, not 0.
  CHECK(column(db, "tx_queue", nid, listen5000)
        == std::vector<std::optional<int64_t>>{std::nullopt});
  CHECK(column(db, "cookie", nid, listen5000) == std::vector<std::optional<int64_t>>{std::nullopt});
  CHECK(column(db, "pid", nid, listen5000) == std::vector<std::optional<int64_t>>{getpid()});
  CHECK(column(db, "count(*)", nid, "proto = 6 AND state = 1 AND local_port = 5000 AND inode = 0")
        == std::vector<std::optional<int64_t>>{3});
  CHECK(db.query_int("SELECT count(*) FROM sources WHERE netns_id = " + std::to_string(nid)
                     + " AND source = 'tcp' AND method = 'proc' AND status = 'ok'")
        == 1);
  CHECK(db.query_int("SELECT count(*) FROM sockets WHERE netns_id = " + std::to_string(nid)
                     + " AND family = 1 AND state = 10")
        >= 1);
}

TEST_CASE("live::collector writes a series into one file", "[live]") {
  require_root("live collector test");
  TempDir dir;
  const std::string path =
      collect((dir.path() / "out").string(), "--netns self --count 3 --interval 0.2");
  Db db = Db::open_readonly(path, false);
  CHECK(db.query_int("SELECT count(*) FROM snapshots") == 3);
  CHECK(db.query_int("SELECT count(DISTINCT boot_id) FROM snapshots") == 1);
  // Starts are --interval apart (with some scheduling slack).
  const int64_t span = db.query_int("SELECT max(boottime_ns) - min(boottime_ns) FROM snapshots");
  CHECK(span >= 350'000'000);
  CHECK(span < 2'000'000'000);
  // Nothing else is left in the directory: no temporary file.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path() / "out")) {
    (void)e;
    ++files;
  }
  CHECK(files == 1);
}

TEST_CASE("live::collector streams rows into the file exactly as a buffered write would",
          "[live]") {
  // sockrewind-collect inserts socket rows on a writer thread while the dumps run
  // (SnapshotFile::capture); tests and synthetic series write a whole Snapshot. Both must give
  // the same rows: snapshot 1 streamed, snapshot 2 buffered, of the same quiescent sockets.
  require_root("live collector test");
  using namespace sockrewind::collect;
  TempDir dir;
  const TestNetns ns;
  const Scenario sc(ns, dir.path().string());
  std::string path;
  ns.run_in([&] {
    HostInfo host = read_host_info();
    host.self_netns = netns_inode(ns); // this thread's namespace, captured as "self"
    CaptureOptions opts;
    SnapshotFile file(dir.path().string(), "stream", TcpInfoMode::full);
    const Snapshot streamed = file.capture(opts, host);
    REQUIRE(streamed.namespaces.size() == 1);
    CHECK(streamed.namespaces[0].sockets.empty()); // rows went to the file, not to memory
    CHECK(streamed.namespaces[0].socket_rows >= 12);
    file.write(take_snapshot(opts, host));
    path = file.commit();
  });
  Db db = Db::open_readonly(path, false);
  const char* cols[] = {"family",
                        "type",
                        "proto",
                        "state",
                        "local_addr_id",
                        "local_port",
                        "remote_addr_id",
                        "remote_port",
                        "rx_queue",
                        "tx_queue",
                        "inode",
                        "cookie",
                        "path",
                        "peer_inode",
                        "pid",
                        "fd",
                        "ti.info_len"};
  std::string row_sql;
  for (const char* c : cols) {
    const std::string col = std::string_view(c).find('.') == std::string_view::npos
                                ? std::string("s.") + c
                                : std::string(c);
    row_sql += (row_sql.empty() ? "" : " || '|' || ") + ("quote(" + col + ")");
  }
  const auto rows_of = [&](int sid) {
    auto st = db.prepare("SELECT " + row_sql
                         + " FROM sockets s LEFT JOIN tcp_info ti USING (sock_id) "
                           "WHERE s.snapshot_id = ?1 ORDER BY s.cookie, s.inode, s.path");
    st.bind(1, static_cast<int64_t>(sid));
    std::vector<std::string> out;
    while (st.step()) {
      out.push_back(st.get_text(0));
    }
    return out;
  };
  const auto a = rows_of(1);
  const auto b = rows_of(2);
  CHECK(a.size() >= 12);
  CHECK(a == b);
  CHECK(db.query_int("SELECT sockets FROM snapshots WHERE snapshot_id = 1")
        == static_cast<int64_t>(a.size()));
  CHECK(db.query_int("SELECT count(*) FROM sockets WHERE snapshot_id = 1 AND pid = "
                     + std::to_string(::getpid()))
        >= 10);
  // Every table's rows were kept or dropped as a whole: the sources' counts add up.
  CHECK(db.query_int("SELECT sum(rows) FROM sources WHERE snapshot_id = 1 AND source IN "
                     "('tcp','tcp6','udp','udp6','udplite','udplite6','raw','raw6','unix')")
        == static_cast<int64_t>(a.size()));
}

TEST_CASE("live::collector records every owner of a shared listener and a stopped child's state",
          "[live]") {
  require_root("live collector test");
  TempDir dir;
  const TestNetns ns;
  Sock listener;
  ns.run_in([&] { listener = tcp_listener(5000, 16); });
  // A pre-fork server in miniature: the child inherits the listener, then is stopped (SIGSTOP),
  // as a hung nginx worker would be; the parent keeps it too.
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    for (;;) {
      ::pause();
    }
  }

  struct Reaper {
    pid_t pid;

    explicit Reaper(pid_t p) : pid(p) {}

    Reaper(const Reaper&) = delete;
    Reaper& operator=(const Reaper&) = delete;

    ~Reaper() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  } reaper(child);

  REQUIRE(::kill(child, SIGSTOP) == 0);
  int status = 0;
  REQUIRE(::waitpid(child, &status, WUNTRACED) == child);
  REQUIRE(WIFSTOPPED(status));

  const std::string path = collect((dir.path() / "out").string(), "--netns all");
  Db db = Db::open_readonly(path, false);
  REQUIRE(sockrewind::store::validate(db) == sockrewind::store::k_schema_version);
  const int64_t nid = netns_id_of(db, netns_inode(ns));

  // Both processes hold the one listener: the first owner in sockets.pid, the other in
  // extra_owners, each with the fd number it has.
  auto owners = db.prepare(
      "SELECT pid, fd FROM sockets WHERE netns_id = ?1 AND state = 10 AND local_port = 5000 "
      "UNION ALL SELECT e.pid, e.fd FROM extra_owners e JOIN sockets s USING (sock_id) "
      "WHERE s.netns_id = ?1 AND s.state = 10 AND s.local_port = 5000 ORDER BY 1");
  owners.bind(1, nid);
  std::vector<std::pair<int64_t, int64_t>> got;
  while (owners.step()) {
    got.emplace_back(owners.get_int(0), owners.get_int(1));
  }
  const std::vector<std::pair<int64_t, int64_t>> want{
      {std::min<int64_t>(getpid(), child), listener.fd()},
      {std::max<int64_t>(getpid(), child), listener.fd()}};
  CHECK(got == want);

  // Their scheduler states, from /proc/PID/stat: the child is stopped, this process is not.
  const auto state_of = [&db](int64_t pid) {
    auto st = db.prepare("SELECT state FROM processes WHERE pid = ?1");
    st.bind(1, pid);
    REQUIRE(st.step());
    return st.get_opt_text(0);
  };
  CHECK(state_of(child) == std::optional<std::string>("T"));
  const auto mine = state_of(getpid());
  REQUIRE(mine);
  CHECK(mine->size() == 1);
  CHECK(*mine != "T");
  CHECK(std::string("RSD").find(*mine) != std::string::npos);
}
