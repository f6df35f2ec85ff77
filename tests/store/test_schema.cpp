#include "support.hpp"

#include <sockrewind/store/db.hpp>
#include <sockrewind/store/runs.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <limits>
#include <map>
#include <set>
#include <string>

using sockrewind::store::Db;
using sockrewind::store::SchemaError;

TEST_CASE("store::migrate creates a valid current-version database", "[store]") {
  Db db = Db::memory();
  sockrewind::store::migrate(db);
  CHECK(db.query_int("PRAGMA application_id") == sockrewind::store::k_application_id);
  CHECK(db.query_int("PRAGMA user_version") == sockrewind::store::k_schema_version);
  CHECK(sockrewind::store::validate(db) == sockrewind::store::k_schema_version);
  // Migrating again is a no-op.
  sockrewind::store::migrate(db);
  CHECK(db.query_int("PRAGMA user_version") == sockrewind::store::k_schema_version);
}

TEST_CASE("store::round trip of a socket row through the views", "[store]") {
  Db db = Db::memory();
  sockrewind::store::migrate(db);
  db.exec("INSERT INTO snapshots VALUES (1,'h','b','6.1',1700000000000000000,5,1700000000100000000,"
          "6,4026531840,0,'self','tcp:sock_diag',1,0,NULL,NULL)");
  db.exec("INSERT INTO netns VALUES (1, 4026531840)");
  db.exec("INSERT INTO addrs VALUES (1, 2, x'7f000001', '127.0.0.1')");
  auto ins = db.prepare("INSERT INTO sock_ident (ident_id, netns_id, family, type, proto, "
                        "local_addr_id, local_port, remote_addr_id, remote_port, inode, cookie) "
                        "VALUES (1,1,2,1,6,1,5000,1,0,1234,?1)");
  ins.bind(1, uint64_t{0xFFFFFFFFFFFFFFFFULL});
  ins.run();
  db.exec("INSERT INTO sock_runs (run_id, ident_id, first_snapshot_id, last_snapshot_id, state, "
          "rx_queue, tx_queue, pid, fd) VALUES (1, 1, 1, 1, 10, 3, 5, 42, 7)");
  db.exec("INSERT INTO proc_ident (proc_id, pid, start_ticks, comm) VALUES (1, 42, 99, 'srv')");
  db.exec("INSERT INTO proc_runs (proc_id, first_snapshot_id, last_snapshot_id, socket_fds) "
          "VALUES (1, 1, 1, 1)");
  auto q = db.prepare("SELECT proto, state, local, remote, rx_queue, tx_queue, comm, cookie, time "
                      "FROM sockets_v");
  REQUIRE(q.step());
  CHECK(q.get_text(0) == "tcp");
  CHECK(q.get_text(1) == "LISTEN");
  CHECK(q.get_text(2) == "127.0.0.1:5000");
  CHECK(q.get_text(3) == "127.0.0.1:*");
  CHECK(q.get_int(4) == 3);
  CHECK(q.get_int(5) == 5);
  CHECK(q.get_text(6) == "srv");
  // 64-bit cookies are stored as the same bits.
  CHECK(static_cast<uint64_t>(q.get_int(7)) == 0xFFFFFFFFFFFFFFFFULL);
  CHECK(q.get_text(8) == "2023-11-14T22:13:20.000Z");
  CHECK_FALSE(q.step());
}

TEST_CASE("store::a run gives one row per snapshot, time-relative fields move with the clock",
          "[store]") {
  Db db = Db::memory();
  sockrewind::store::migrate(db);
  for (int i = 1; i <= 3; ++i) {
    // Snapshots 60 s apart on CLOCK_BOOTTIME.
    db.exec("INSERT INTO snapshots VALUES (" + std::to_string(i) + ",'h','b','6.1',"
            + std::to_string(1'700'000'000'000'000'000 + int64_t{i} * 60'000'000'000) + ","
            + std::to_string(int64_t{i} * 60'000'000'000) + ",0,0,1,0,'self','x',1,0,NULL,NULL)");
  }
  db.exec("INSERT INTO netns VALUES (1, 4026531840)");
  db.exec("INSERT INTO sock_ident (ident_id, netns_id, family, type, proto, inode) "
          "VALUES (1, 1, 2, 1, 6, 77)");
  // Keepalive timer (2) due in 100 s, last data 5 s ago, as of snapshot 1; unchanged to 3.
  db.exec("INSERT INTO sock_runs (run_id, ident_id, first_snapshot_id, last_snapshot_id, state, "
          "timer, expires_ms, ti_last_data_recv_ms, ti_last_ack_recv_ms) "
          "VALUES (5, 1, 1, 3, 1, 2, 100000, 5000, NULL)");
  auto q = db.prepare("SELECT sock_id, snapshot_id, expires_ms, ti_last_data_recv_ms, "
                      "ti_last_ack_recv_ms, inode FROM sockets ORDER BY snapshot_id");
  const int64_t expires[] = {100'000, 40'000, 0};
  for (int64_t i = 1; i <= 3; ++i) {
    REQUIRE(q.step());
    CHECK(q.get_int(0) == ((int64_t{5} << 24) | i));
    CHECK(q.get_int(1) == i);
    CHECK(q.get_int(2) == expires[i - 1]);
    CHECK(q.get_int(3) == 5000 + (i - 1) * 60'000);
    CHECK(q.is_null(4));
    CHECK(q.get_int(5) == 77);
  }
  CHECK_FALSE(q.step());
  // A run may not cross a multiple of 64.
  CHECK_THROWS_WITH(db.exec("INSERT INTO sock_runs (run_id, ident_id, first_snapshot_id, "
                            "last_snapshot_id, state) VALUES (9, 1, 63, 64, 1)"),
                    Catch::Contains("CHECK constraint failed"));
  CHECK_NOTHROW(db.exec("INSERT INTO sock_runs (run_id, ident_id, first_snapshot_id, "
                        "last_snapshot_id, state) VALUES (9, 1, 64, 127, 1)"));
  CHECK_THROWS_AS(db.exec("INSERT INTO sock_runs (ident_id, first_snapshot_id, "
                          "last_snapshot_id, state) VALUES (1, 63, 64, 1)"),
                  sockrewind::store::DbError);
}

TEST_CASE("store::the run rules in C++ and SQL give what the views give", "[store]") {
  namespace st = sockrewind::store;
  Db db = Db::memory();
  st::migrate(db);
  constexpr int64_t k_snaps = 140;
  for (int64_t i = 1; i <= k_snaps; ++i) {
    // Irregular intervals on CLOCK_BOOTTIME (7 s and 61.5 s), so elapsed ms are not round.
    const int64_t boot = i * 7'000'000'000 + (i / 3) * 54'500'000'123;
    db.exec("INSERT INTO snapshots VALUES (" + std::to_string(i) + ",'h','b','6.1',"
            + std::to_string(1'700'000'000'000'000'000 + boot) + "," + std::to_string(boot)
            + ",0,0,1,0,'self','x',1,0,NULL,NULL)");
  }
  db.exec("INSERT INTO netns VALUES (1, 4026531840)");
  db.exec("INSERT INTO sock_ident (ident_id, netns_id, family, type, proto, inode) "
          "VALUES (1, 1, 2, 1, 6, 77)");
  // Runs of every length within their block of 64, some with a running timer.
  int64_t run = 0;
  for (int64_t first = 1; first <= k_snaps; first += 5) {
    for (const int64_t len : {0, 1, 3, 20, 70}) {
      const int64_t last = std::min({first + len, (first | 63), k_snaps});
      ++run;
      const int64_t timer = run % 3 == 0 ? 0 : 2;
      db.exec("INSERT INTO sock_runs (run_id, ident_id, first_snapshot_id, last_snapshot_id, "
              "state, timer, expires_ms, ti_last_data_recv_ms) VALUES ("
              + std::to_string(run) + ", 1, " + std::to_string(first) + ", " + std::to_string(last)
              + ", 1, " + std::to_string(timer) + ", " + std::to_string(90'000 + run * 1'000) + ", "
              + std::to_string(run * 10) + ")");
    }
  }
  std::map<int64_t, int64_t> boottime;
  for (auto q = db.prepare("SELECT snapshot_id, boottime_ns FROM snapshots"); q.step();) {
    boottime[q.get_int(0)] = q.get_int(1);
  }
  size_t moved = 0;
  for (int64_t sn = 1; sn <= k_snaps; ++sn) {
    INFO("snapshot " << sn);
    // The view's rows of this snapshot.
    std::map<int64_t, std::pair<int64_t, int64_t>> view; // sock_id -> (expires, last_data)
    for (auto q = db.prepare("SELECT sock_id, expires_ms, ti_last_data_recv_ms FROM sockets "
                             "WHERE snapshot_id = "
                             + std::to_string(sn));
         q.step();) {
      view[q.get_int(0)] = {q.get_int(1), q.get_int(2)};
    }
    // The same from the runs by the C++ rules, and the runs the SQL rule selects.
    std::map<int64_t, std::pair<int64_t, int64_t>> rules;
    for (auto q = db.prepare("SELECT run_id, first_snapshot_id, last_snapshot_id, timer, "
                             "expires_ms, ti_last_data_recv_ms FROM sock_runs");
         q.step();) {
      const int64_t first = q.get_int(1);
      if (sn < first || sn > st::run_seen_until(first, q.get_int(2))) {
        continue;
      }
      const int64_t elapsed = st::run_elapsed_ms(boottime.at(first), boottime.at(sn));
      int64_t since = 0;
      REQUIRE(st::run_since_ms(q.get_int(5), elapsed, since));
      rules[st::run_sock_id(q.get_int(0), sn)] = {
          st::run_expires_ms(q.get_int(4), q.get_int(3) != 0, elapsed), since};
      moved += elapsed != 0 ? 1U : 0U;
    }
    CHECK(rules == view);
    std::set<int64_t> by_sql;
    for (auto q = db.prepare("SELECT r.run_id FROM sock_runs r WHERE "
                             + st::sql_runs_seen_by("r", std::to_string(sn)));
         q.step();) {
      by_sql.insert(st::run_sock_id(q.get_int(0), sn));
    }
    std::set<int64_t> by_view;
    for (const auto& [id, values] : view) {
      by_view.insert(id);
    }
    CHECK(by_sql == by_view);
  }
  CHECK(moved > 100);
  // A hostile file's extremes do not overflow.
  int64_t out = 0;
  CHECK_FALSE(st::run_since_ms(std::numeric_limits<int64_t>::max(), 1, out));
  CHECK(st::run_expires_ms(std::numeric_limits<int64_t>::min(), true, 5) == 0);
  CHECK(st::run_expires_ms(std::numeric_limits<int64_t>::max(), true, -5)
        == std::numeric_limits<int64_t>::max());
  CHECK(st::run_expires_ms(-7, false, 5) == -7);
}

TEST_CASE("store::migration 0003 keeps every row of a version-2 file", "[store]") {
  Db db = Db::memory();
  sockrewind::store::migrate(db, 2);
  db.exec("INSERT INTO snapshots VALUES (1,'h','b','6.1',10,5,11,6,1,0,'self','x',2,0,NULL,NULL)");
  db.exec("INSERT INTO snapshots VALUES (2,'h','b','6.1',20,15,21,16,1,0,'self','x',1,0,NULL,"
          "NULL)");
  db.exec("INSERT INTO netns VALUES (1, 4026531840)");
  db.exec("INSERT INTO sockets (sock_id, snapshot_id, netns_id, family, type, proto, state, inode,"
          " rx_queue, ti_last_data_recv_ms, pid, fd) VALUES (7, 1, 1, 2, 1, 6, 10, 5, 3, 40, 9, 4),"
          " (8, 1, 1, 1, 1, 0, 1, 6, 0, NULL, 9, 5), (9, 2, 1, 2, 1, 6, 10, 5, 4, 41, 9, 4)");
  db.exec("INSERT INTO extra_owners VALUES (7, 10, 3), (9, 10, 3)");
  db.exec("INSERT INTO processes (snapshot_id, pid, start_ticks, comm, socket_fds, state) "
          "VALUES (1, 9, 100, 'srv', 2, 'S'), (2, 9, 100, 'srv', 1, 'T')");
  db.exec("INSERT INTO counters VALUES (1, 1, 'netstat', 'TcpExt.ListenOverflows', 3), "
          "(2, 1, 'netstat', 'TcpExt.ListenOverflows', 4)");
  db.exec("INSERT INTO limits VALUES (1, 1, 'net.core.somaxconn', '4096')");
  const std::string before =
      "SELECT snapshot_id, state, inode, rx_queue, ti_last_data_recv_ms, pid, fd FROM sockets "
      "ORDER BY snapshot_id, inode";
  std::vector<std::string> rows_v2;
  {
    auto q = db.prepare(before);
    while (q.step()) {
      rows_v2.push_back(std::to_string(q.get_int(0)) + "/" + std::to_string(q.get_int(2)) + "/"
                        + std::to_string(q.get_int(3)) + "/"
                        + (q.is_null(4) ? "-" : std::to_string(q.get_int(4))));
    }
  }
  sockrewind::store::migrate(db);
  CHECK(sockrewind::store::validate(db) == 3);
  std::vector<std::string> rows_v3;
  {
    auto q = db.prepare(before);
    while (q.step()) {
      rows_v3.push_back(std::to_string(q.get_int(0)) + "/" + std::to_string(q.get_int(2)) + "/"
                        + std::to_string(q.get_int(3)) + "/"
                        + (q.is_null(4) ? "-" : std::to_string(q.get_int(4))));
    }
  }
  CHECK(rows_v3 == rows_v2);
  CHECK(rows_v3.size() == 3);
  // Extra owners still meet their sockets, one per socket per snapshot.
  CHECK(db.query_int("SELECT count(*) FROM extra_owners e JOIN sockets s USING (sock_id)") == 2);
  CHECK(db.query_int("SELECT count(*) FROM processes") == 2);
  CHECK(db.query_int("SELECT count(*) FROM processes WHERE snapshot_id = 2 AND state = 'T'") == 1);
  CHECK(db.query_int("SELECT sum(value) FROM counters") == 7);
  CHECK(db.query_int("SELECT value FROM limits WHERE snapshot_id = 1") == 4096);
}

TEST_CASE("store::STRICT tables reject wrong types", "[store]") {
  Db db = Db::memory();
  sockrewind::store::migrate(db);
  CHECK_THROWS_AS(db.exec("INSERT INTO netns VALUES (1, 'not a number')"),
                  sockrewind::store::DbError);
}

TEST_CASE("store::validate rejects foreign, future and incomplete files", "[store]") {
  SECTION("not ours") {
    Db db = Db::memory();
    db.exec("CREATE TABLE t(x)");
    CHECK_THROWS_WITH(sockrewind::store::validate(db), Catch::Contains("not a sockrewind file"));
  }
  SECTION("future version") {
    Db db = Db::memory();
    sockrewind::store::migrate(db);
    db.exec("PRAGMA user_version = 99");
    CHECK_THROWS_WITH(sockrewind::store::validate(db), Catch::Contains("newer"));
    CHECK_THROWS_AS(sockrewind::store::migrate(db), SchemaError);
  }
  SECTION("missing table") {
    Db db = Db::memory();
    sockrewind::store::migrate(db);
    db.exec("DROP TABLE sock_runs");
    CHECK_THROWS_WITH(sockrewind::store::validate(db), Catch::Contains("missing table sock_runs"));
  }
  SECTION("non-strict table") {
    Db db = Db::memory();
    sockrewind::store::migrate(db);
    db.exec("DROP TABLE limit_runs; CREATE TABLE limit_runs(first_snapshot_id, netns_id, name, "
            "last_snapshot_id, value)");
    CHECK_THROWS_WITH(sockrewind::store::validate(db), Catch::Contains("not STRICT"));
  }
}

TEST_CASE("store::read-only open refuses writes", "[store]") {
  sockrewind::test::TempDir dir;
  const std::string path = (dir.path() / "a.sqlite").string();
  {
    Db db = Db::create(path);
    sockrewind::store::migrate(db);
  }
  Db ro = Db::open_readonly(path, false);
  CHECK(sockrewind::store::validate(ro) == sockrewind::store::k_schema_version);
  CHECK_THROWS_AS(ro.exec("INSERT INTO netns VALUES (1, 2)"), sockrewind::store::DbError);
}

namespace {

// A database exactly as a schema-v1 writer left it: the first migration only.
Db version1_db() {
  Db db = Db::memory();
  const auto& all = sockrewind::store::migrations();
  REQUIRE(all.size() >= 2);
  REQUIRE(all[0].version == 1);
  db.exec(all[0].sql);
  db.exec("PRAGMA application_id = " + std::to_string(sockrewind::store::k_application_id));
  db.exec("PRAGMA user_version = 1");
  return db;
}

} // namespace

TEST_CASE("store::version 1 files stay readable, version 2 adds processes.state", "[store]") {
  using sockrewind::store::reference_columns;
  REQUIRE(sockrewind::store::k_min_schema_version == 1);
  const auto v1 = reference_columns(1, "processes");
  const auto v2 = reference_columns(2, "processes");
  REQUIRE(v1.size() == 12);
  REQUIRE(v2.size() == v1.size() + 1);
  CHECK(std::equal(v1.begin(), v1.end(), v2.begin()));
  CHECK(v2.back() == "state");
  CHECK(std::count(v1.begin(), v1.end(), "state") == 0);
  CHECK(reference_columns(2, "no_such_table").empty());
  // Version 3 keeps the columns, as a view over proc_ident and proc_runs.
  CHECK(reference_columns(3, "processes") == v2);
  CHECK(reference_columns(sockrewind::store::k_schema_version + 1, "processes").empty());

  SECTION("a version 1 file validates as version 1") {
    Db db = version1_db();
    CHECK(sockrewind::store::validate(db) == 1);
  }
  SECTION("migrate brings a version 1 file to the current version, keeping its rows") {
    Db db = version1_db();
    db.exec("INSERT INTO snapshots VALUES (1,'h','b','6.1',1,1,2,2,4026531840,0,'self','',0,0,"
            "NULL,NULL)");
    db.exec("INSERT INTO processes (snapshot_id, pid, start_ticks, comm, socket_fds) "
            "VALUES (1, 42, 99, 'srv', 1)");
    sockrewind::store::migrate(db);
    CHECK(db.query_int("PRAGMA user_version") == sockrewind::store::k_schema_version);
    CHECK(sockrewind::store::validate(db) == sockrewind::store::k_schema_version);
    CHECK(db.query_int("SELECT count(*) FROM processes WHERE pid = 42 AND state IS NULL") == 1);
    db.exec("UPDATE proc_runs SET state = 'T'");
    CHECK(db.query_int("SELECT count(*) FROM processes WHERE pid = 42 AND state = 'T'") == 1);
  }
  SECTION("a file claiming version 2 without the column is refused") {
    Db db = version1_db();
    db.exec("PRAGMA user_version = 2");
    CHECK_THROWS_WITH(sockrewind::store::validate(db),
                      Catch::Contains("table processes lacks column state"));
  }
  SECTION("processes.state is TEXT in a STRICT table") {
    Db db = Db::memory();
    sockrewind::store::migrate(db);
    db.exec("INSERT INTO snapshots VALUES (1,'h','b','6.1',1,1,2,2,4026531840,0,'self','',0,0,"
            "NULL,NULL)");
    CHECK_NOTHROW(db.exec("INSERT INTO proc_runs (proc_id, first_snapshot_id, "
                          "last_snapshot_id, socket_fds, state) VALUES (1, 1, 1, 1, 'T')"));
    CHECK_THROWS_AS(db.exec("INSERT INTO proc_runs (proc_id, first_snapshot_id, "
                            "last_snapshot_id, socket_fds, state) VALUES (2, 1, 1, 1, x'54')"),
                    sockrewind::store::DbError);
  }
}

TEST_CASE("store::the writers' column lists are the schema's tables", "[store]") {
  Db db = Db::memory();
  sockrewind::store::migrate(db);
  const auto columns = [&db](const std::string& table, size_t skip) {
    std::vector<std::string> out;
    auto q = db.prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid");
    q.bind(1, table);
    while (q.step()) {
      out.push_back(q.get_text(0));
    }
    out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(skip));
    return out;
  };
  const auto list = [](std::span<const std::string_view> v) {
    return std::vector<std::string>(v.begin(), v.end());
  };
  CHECK(list(sockrewind::store::sock_ident_columns()) == columns("sock_ident", 1));
  CHECK(list(sockrewind::store::sock_run_columns()) == columns("sock_runs", 4));
  // Together they are the version-2 sockets columns (the view's, without its two ids).
  std::vector<std::string> both = list(sockrewind::store::sock_ident_columns());
  for (const std::string_view c : sockrewind::store::sock_run_columns()) {
    both.emplace_back(c);
  }
  std::vector<std::string> socket = list(sockrewind::store::socket_columns());
  std::sort(both.begin(), both.end());
  std::sort(socket.begin(), socket.end());
  CHECK(both == socket);
  std::vector<std::string> view = columns("sockets", 2);
  std::sort(view.begin(), view.end());
  CHECK(view == socket);
}
