#pragma once
// The meta table of a new file: which program wrote it, for which schema, how.

#include <sockrewind/store/db.hpp>

#include <optional>
#include <string>

namespace sockrewind::store {

struct MetaInfo {
  std::string writer;           // "sockrewind-collect", "sockrewind-analyze pack"
  std::string tcp_info;         // "full", "basic", or "mixed" (a pack of both)
  std::optional<bool> redacted; // written only when set (pack)
};

// Inserts the meta rows of a new file, in this order: writer, writer_version (this build's),
// schema_version (k_schema_version), tcp_info, byte_order (this machine's: "little"/"big"),
// then redacted ("yes"/"no") when set. Throws DbError.
void write_meta(Db& db, const MetaInfo& info);

} // namespace sockrewind::store
