#pragma once
// The file format contract: application id, schema versions, migrations and validation.

#include <sockrewind/store/db.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::store {

// PRAGMA application_id of every sockrewind file: 'SKRW'.
inline constexpr int32_t k_application_id = 0x534B5257;
// The newest schema version this build writes (PRAGMA user_version).
inline constexpr int k_schema_version = 3;
// The oldest schema version this build can read.
inline constexpr int k_min_schema_version = 1;

struct Migration {
  int version;
  std::string_view name;
  std::string_view sql;
};

// All migrations in order (generated from schema/sql/NNNN_*.sql).
const std::vector<Migration>& migrations();

// Brings a new or older database up to `target` (k_schema_version unless a test wants an
// older file), each migration in its own transaction ending with PRAGMA user_version = N.
// Sets the application id.
void migrate(Db& db, int target = k_schema_version);

// A file that is not a usable sockrewind file; the message says why, without the path.
class SchemaError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Checks application_id, schema version range and the tables and columns this build reads.
// Returns the file's schema version; throws SchemaError otherwise.
int validate(Db& db);

// The columns of `table` in schema version `version` (k_min_schema_version..k_schema_version),
// in order: what a validated file of that version is guaranteed to have. Empty for an unknown
// table. Readers of older files use it to read a column added later as NULL.
std::vector<std::string> reference_columns(int version, std::string_view table);

} // namespace sockrewind::store
