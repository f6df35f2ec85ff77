#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

TEST_CASE("store::Stmt::column_index finds result columns by name", "[store]") {
  sockrewind::store::Db db = sockrewind::store::Db::memory();
  db.exec("CREATE TABLE t (a INTEGER, b INTEGER); INSERT INTO t VALUES (1, 2)");
  sockrewind::store::Stmt st = db.prepare("SELECT t.b, a, a + b AS sum FROM t");
  const int a = st.column_index("a");
  const int b = st.column_index("b");
  const int sum = st.column_index("sum");
  CHECK(a == 1);
  CHECK(b == 0);
  CHECK(sum == 2);
  REQUIRE(st.step());
  CHECK(st.get_int(a) == 1);
  CHECK(st.get_int(b) == 2);
  CHECK(st.get_int(sum) == 3);
  CHECK_THROWS_AS(st.column_index("c"), sockrewind::store::DbError);
}
