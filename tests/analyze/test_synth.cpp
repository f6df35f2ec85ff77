#include "support.hpp"

#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <synth/synth.hpp>
#include <vector>

using namespace sockrewind;

namespace {

constexpr int64_t k_t0 = 1'767'225'600'000'000'000; // 2026-01-01T00:00:00Z
constexpr int64_t k_minute = 60'000'000'000;

// Three snapshots a minute apart: a listener, a connection whose Recv-Q grows, a unix socket,
// a TIME_WAIT in the second only; one process; counters and limits.
std::vector<synth::Snap> three_snapshots() {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 3; ++i) {
    const auto u = static_cast<uint32_t>(i);
    synth::Snap s;
    s.realtime_ns = k_t0 + i * k_minute;
    s.boottime_ns = 1'000'000'000'000 + i * k_minute;
    s.sockets.push_back({.state = 10,
                         .local = "0.0.0.0",
                         .lport = 8080,
                         .remote = "0.0.0.0",
                         .rx = u,
                         .tx = 128,
                         .inode = 5000,
                         .cookie = 1,
                         .owners = {{100, 3}, {101, 3}}});
    s.sockets.push_back({.family = 10,
                         .local = "::1",
                         .lport = 8080,
                         .remote = "::1",
                         .rport = 40000,
                         .rx = 1000 * (u + 1),
                         .tx = 0,
                         .inode = 5001,
                         .cookie = 2,
                         .uid = 1000,
                         .rmem_alloc = 2000 * (u + 1),
                         .rcvbuf = 131072,
                         .tcp_info = {{"bytes_received", 1'000'000 + u},
                                      {"backoff", 2},
                                      {"last_ack_recv_ms", 30'000},
                                      {"snd_wscale", 7}},
                         .owners = {{100, 4}}});
    s.sockets.push_back({.family = 1,
                         .type = 1,
                         .state = 10,
                         .rx = 0,
                         .tx = 64,
                         .inode = 5002,
                         .cookie = 3,
                         .path = "/run/app.sock",
                         .owners = {{100, 5}}});
    if (i == 1) {
      s.sockets.push_back({.state = 6, .lport = 50000, .rport = 8080, .cookie = 4, .timer = 3});
    }
    s.procs.push_back({.pid = 100,
                       .start_ticks = 4242,
                       .comm = "server",
                       .cmdline = "server --port 8080",
                       .fd_count = 10,
                       .socket_fds = 3,
                       .nofile_soft = 1024});
    s.procs.push_back({.pid = 101, .start_ticks = 4243, .comm = "worker", .socket_fds = 1});
    s.counters["TcpExt.ListenOverflows"] = int64_t{10} * i;
    s.counters["Tcp.CurrEstab"] = 1;
    s.counters["Udp6RcvbufErrors"] = 0;
    s.counters["TCP.inuse"] = 3;
    s.limits["net.core.somaxconn"] = "4096";
    s.limits["net.ipv4.tcp_rmem"] = "4096 131072 6291456";
    snaps.push_back(std::move(s));
  }
  return snaps;
}

int64_t query(store::Db& db, const std::string& sql) {
  INFO(sql);
  return db.query_int(sql);
}

std::vector<int64_t> column(store::Db& db, const std::string& sql) {
  std::vector<int64_t> out;
  store::Stmt st = db.prepare(sql);
  while (st.step()) {
    out.push_back(st.get_int(0));
  }
  return out;
}

} // namespace

TEST_CASE("synth::write_series writes a collector file that reads back", "[synth]") {
  test::TempDir dir;
  const std::string path =
      synth::write_series(dir.path().string(), synth::Host{}, three_snapshots());
  CHECK(std::filesystem::path(path).filename() == "synth-20260101T000000Z.sqlite");

  store::Db db = store::Db::open_readonly(path, true);
  CHECK(query(db, "PRAGMA user_version") == store::k_schema_version);
  CHECK(query(db, "SELECT count(*) FROM snapshots") == 3);
  CHECK(column(db, "SELECT sockets FROM snapshots ORDER BY snapshot_id")
        == std::vector<int64_t>{3, 4, 3});
  CHECK(query(db, "SELECT count(*) FROM sockets") == 10);
  CHECK(column(db, "SELECT boottime_ns FROM snapshots ORDER BY snapshot_id")
        == std::vector<int64_t>{1'000'000'000'000, 1'060'000'000'000, 1'120'000'000'000});
  CHECK(query(db,
              "SELECT count(*) FROM snapshots WHERE host = 'synth' AND kernel = '6.1.0-synth'"
              " AND self_netns = 4026531840 AND realtime_end_ns = realtime_ns + 20000000")
        == 3);

  // Recv-Q of the IPv6 connection, and its addresses.
  CHECK(column(db, "SELECT rx_queue FROM sockets WHERE cookie = 2 ORDER BY snapshot_id")
        == std::vector<int64_t>{1000, 2000, 3000});
  CHECK(query(db,
              "SELECT count(*) FROM sockets s JOIN addrs a ON a.addr_id = s.local_addr_id"
              " WHERE s.cookie = 2 AND a.family = 10 AND a.text = '::1'"
              " AND s.local_port = 8080 AND s.remote_port = 40000 AND s.uid = 1000")
        == 3);
  // Listener: accept queue and backlog.
  CHECK(column(db, "SELECT rx_queue FROM sockets WHERE cookie = 1 ORDER BY snapshot_id")
        == std::vector<int64_t>{0, 1, 2});
  CHECK(query(db, "SELECT min(tx_queue) FROM sockets WHERE state = 10 AND family = 2") == 128);

  // tcp_info decoded by the collector's writer into ti_* columns; NULL without tcp_info.
  CHECK(column(db, "SELECT ti_bytes_received FROM sockets WHERE cookie = 2 ORDER BY snapshot_id")
        == std::vector<int64_t>{1'000'000, 1'000'001, 1'000'002});
  CHECK(query(db,
              "SELECT count(*) FROM sockets WHERE cookie = 2 AND ti_backoff = 2"
              " AND ti_last_ack_recv_ms = 30000 AND ti_probes = 0")
        == 3);
  CHECK(query(db, "SELECT count(*) FROM sockets WHERE cookie = 1 AND ti_bytes_received IS NULL")
        == 3);
  // Skmem: all nine columns or none.
  CHECK(query(db, "SELECT count(*) FROM sockets WHERE skm_rcvbuf = 131072 AND skm_drops = 0") == 3);
  CHECK(query(db, "SELECT count(*) FROM sockets WHERE cookie = 1 AND skm_rcvbuf IS NULL") == 3);

  // Unix socket: no addresses, proto 0, path.
  CHECK(query(db,
              "SELECT count(*) FROM sockets WHERE family = 1 AND proto = 0"
              " AND local_addr_id IS NULL AND path = '/run/app.sock'")
        == 3);
  // TIME_WAIT: inode 0, no owner, timer 3.
  CHECK(query(db,
              "SELECT count(*) FROM sockets WHERE state = 6 AND inode = 0 AND pid IS NULL"
              " AND timer = 3 AND snapshot_id = 2")
        == 1);

  // Owners: first owner in sockets.pid/fd, the others in extra_owners.
  CHECK(column(db, "SELECT DISTINCT pid FROM sockets WHERE inode != 0")
        == std::vector<int64_t>{100});
  CHECK(query(db, "SELECT count(*) FROM sockets WHERE cookie = 2 AND pid = 100 AND fd = 4") == 3);
  CHECK(query(db,
              "SELECT count(*) FROM extra_owners e JOIN sockets s USING (sock_id)"
              " WHERE s.cookie = 1 AND e.pid = 101 AND e.fd = 3")
        == 3);
  CHECK(query(db,
              "SELECT count(*) FROM processes WHERE pid = 100 AND start_ticks = 4242"
              " AND comm = 'server' AND cmdline = 'server --port 8080' AND socket_fds = 3"
              " AND nofile_soft = 1024")
        == 3);

  // Counters, in the files their names belong to; limits as text.
  CHECK(column(db,
               "SELECT value FROM counters WHERE file = 'netstat'"
               " AND name = 'TcpExt.ListenOverflows' ORDER BY snapshot_id")
        == std::vector<int64_t>{0, 10, 20});
  CHECK(query(db, "SELECT count(*) FROM counters WHERE file = 'snmp' AND name = 'Tcp.CurrEstab'")
        == 3);
  CHECK(query(db,
              "SELECT count(*) FROM counters WHERE file = 'snmp6'"
              " AND name = 'Udp6RcvbufErrors'")
        == 3);
  CHECK(query(db, "SELECT count(*) FROM counters WHERE file = 'sockstat' AND name = 'TCP.inuse'")
        == 3);
  {
    store::Stmt st = db.prepare("SELECT value FROM limits WHERE name = 'net.ipv4.tcp_rmem'"
                                " AND snapshot_id = 3");
    REQUIRE(st.step());
    CHECK(st.get_text(0) == "4096 131072 6291456");
  }
  CHECK(query(db,
              "SELECT count(*) FROM limits WHERE name = 'net.core.somaxconn'"
              " AND value = '4096'")
        == 3);

  // Capture quality as a clean collector run records it.
  CHECK(query(db,
              "SELECT count(*) FROM sources WHERE source = 'tcp' AND method = 'sock_diag'"
              " AND status = 'ok'")
        == 3);
  CHECK(query(db, "SELECT rows FROM sources WHERE source = 'tcp6' AND snapshot_id = 1") == 1);
  CHECK(query(db, "SELECT rows FROM sources WHERE source = 'tcp' AND snapshot_id = 2") == 2);
  CHECK(query(db, "SELECT count(*) FROM capture_issues") == 0);
  {
    store::Stmt st = db.prepare("SELECT sources FROM snapshots WHERE snapshot_id = 1");
    REQUIRE(st.step());
    CHECK_THAT(st.get_text(0), Catch::Contains("tcp:sock_diag"));
  }
}

TEST_CASE("synth: tcp_info full mode, other namespaces and bad input", "[synth]") {
  test::TempDir dir;
  synth::Snap s{.realtime_ns = k_t0, .boottime_ns = k_minute};
  s.sockets.push_back({.lport = 1, .rport = 2, .cookie = 7, .tcp_info = {{"rtt_us", 1234}}});
  s.sockets.push_back({.type = 2, .proto = 17, .state = 7, .rx = 0, .netns = 4026532000});
  const std::string path =
      synth::write_series(dir.path().string(), synth::Host{}, {s}, collect::TcpInfoMode::full);
  store::Db db = store::Db::open_readonly(path, true);
  CHECK(query(db, "SELECT rtt_us FROM tcp_info") == 1234);
  CHECK(query(db, "SELECT info_len FROM tcp_info") == 248);
  CHECK(query(db,
              "SELECT count(*) FROM sockets s JOIN netns n USING (netns_id)"
              " WHERE n.inode = 4026532000 AND s.proto = 17")
        == 1);
  // The same second again: the collector's "-2" name, never an overwrite.
  const std::string again = synth::write_series(dir.path().string(), synth::Host{}, {s});
  CHECK(again != path);
  CHECK_THAT(again, Catch::EndsWith("-2.sqlite"));

  synth::Snap bad = s;
  bad.sockets = {{.tcp_info = {{"no_such_field", 1}}}};
  CHECK_THROWS_AS(synth::write_series(dir.path().string(), synth::Host{}, {bad}),
                  std::invalid_argument);
  bad.sockets = {{.local = "not-an-address"}};
  CHECK_THROWS_AS(synth::write_series(dir.path().string(), synth::Host{}, {bad}),
                  std::invalid_argument);
  CHECK_THROWS_AS(synth::counter_file("Bogus.Counter"), std::invalid_argument);
  // Nothing half-written was left behind.
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    CHECK(e.path().extension() == ".sqlite");
    ++files;
  }
  CHECK(files == 2);
}
