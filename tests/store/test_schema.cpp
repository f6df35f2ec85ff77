#include "support.hpp"

#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
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
  auto ins = db.prepare("INSERT INTO sockets (snapshot_id, netns_id, family, type, proto, state, "
                        "local_addr_id, local_port, remote_addr_id, remote_port, rx_queue, "
                        "tx_queue, inode, cookie, pid, fd) "
                        "VALUES (1,1,2,1,6,10,1,5000,1,0,3,5,1234,?1,42,7)");
  ins.bind(1, uint64_t{0xFFFFFFFFFFFFFFFFULL});
  ins.run();
  db.exec("INSERT INTO processes (snapshot_id, pid, start_ticks, comm, socket_fds) "
          "VALUES (1, 42, 99, 'srv', 1)");
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
    db.exec("DROP VIEW sockets_v; DROP VIEW socket_owners; DROP TABLE tcp_info; "
            "DROP TABLE extra_owners; DROP TABLE sockets");
    CHECK_THROWS_WITH(sockrewind::store::validate(db), Catch::Contains("missing table sockets"));
  }
  SECTION("non-strict table") {
    Db db = Db::memory();
    sockrewind::store::migrate(db);
    db.exec("DROP TABLE limits; CREATE TABLE limits(snapshot_id, netns_id, name, value)");
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

TEST_CASE("store::version 1 files stay readable; version 2 adds processes.state", "[store]") {
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
  CHECK(reference_columns(3, "processes").empty());

  SECTION("a version 1 file validates as version 1") {
    Db db = version1_db();
    CHECK(sockrewind::store::validate(db) == 1);
  }
  SECTION("migrate brings a version 1 file to version 2, keeping its rows") {
    Db db = version1_db();
    db.exec("INSERT INTO snapshots VALUES (1,'h','b','6.1',1,1,2,2,4026531840,0,'self','',0,0,"
            "NULL,NULL)");
    db.exec("INSERT INTO processes (snapshot_id, pid, start_ticks, comm, socket_fds) "
            "VALUES (1, 42, 99, 'srv', 1)");
    sockrewind::store::migrate(db);
    CHECK(db.query_int("PRAGMA user_version") == 2);
    CHECK(sockrewind::store::validate(db) == 2);
    CHECK(db.query_int("SELECT count(*) FROM processes WHERE pid = 42 AND state IS NULL") == 1);
    db.exec("UPDATE processes SET state = 'T'");
    CHECK(db.query_int("SELECT count(*) FROM processes WHERE state = 'T'") == 1);
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
    CHECK_THROWS_AS(db.exec("INSERT INTO processes (snapshot_id, pid, start_ticks, comm, "
                            "socket_fds, state) VALUES (1, 42, 99, 'srv', 1, x'54')"),
                    sockrewind::store::DbError);
  }
}
