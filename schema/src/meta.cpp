#include <sockrewind/store/meta.hpp>
#include <sockrewind/store/schema.hpp>

#include <bit>
#include <utility>
#include <vector>

namespace sockrewind::store {

void write_meta(Db& db, const MetaInfo& info) {
  std::vector<std::pair<const char*, std::string>> rows = {
      {"writer", info.writer},
      {"writer_version", SOCKREWIND_VERSION},
      {"schema_version", std::to_string(k_schema_version)},
      {"tcp_info", info.tcp_info},
      {"byte_order", std::endian::native == std::endian::little ? "little" : "big"},
  };
  if (info.redacted) {
    rows.emplace_back("redacted", *info.redacted ? "yes" : "no");
  }
  Stmt meta = db.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)");
  for (const auto& [k, v] : rows) {
    meta.bind(1, k).bind(2, v).run();
  }
}

} // namespace sockrewind::store
