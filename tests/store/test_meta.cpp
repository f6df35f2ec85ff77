#include <sockrewind/store/db.hpp>
#include <sockrewind/store/meta.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

using sockrewind::store::Db;

namespace {

std::vector<std::pair<std::string, std::string>> meta_rows(Db& db) {
  std::vector<std::pair<std::string, std::string>> rows;
  sockrewind::store::Stmt st = db.prepare("SELECT key, value FROM meta ORDER BY rowid");
  while (st.step()) {
    rows.emplace_back(st.get_text(0), st.get_text(1));
  }
  return rows;
}

} // namespace

TEST_CASE("store::write_meta writes the rows every writer writes, redacted only when set",
          "[store]") {
  Db db = Db::memory();
  sockrewind::store::migrate(db);
  sockrewind::store::write_meta(db, {"sockrewind-collect", "full", {}});
  auto rows = meta_rows(db);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0] == std::pair<std::string, std::string>("writer", "sockrewind-collect"));
  CHECK(rows[1].first == "writer_version");
  CHECK_FALSE(rows[1].second.empty());
  CHECK(rows[2]
        == std::pair<std::string, std::string>(
            "schema_version", std::to_string(sockrewind::store::k_schema_version)));
  CHECK(rows[3] == std::pair<std::string, std::string>("tcp_info", "full"));
  CHECK(rows[4].first == "byte_order");
  CHECK((rows[4].second == "little" || rows[4].second == "big"));

  Db pack = Db::memory();
  sockrewind::store::migrate(pack);
  sockrewind::store::write_meta(pack, {"sockrewind-analyze pack", "mixed", false});
  rows = meta_rows(pack);
  REQUIRE(rows.size() == 6);
  CHECK(rows[5] == std::pair<std::string, std::string>("redacted", "no"));
}
