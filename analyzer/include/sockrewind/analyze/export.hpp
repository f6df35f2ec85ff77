#pragma once
// `sockrewind-analyze export --to clickhouse`: the history of many files as one TabSeparated
// file per ClickHouse table, and the DDL of those tables (README "Fleet: ClickHouse").

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::analyze {

// The version of the exported tables (their names, columns and types). It is in the DDL's
// first line, in the table `sockrewind_schema` the export fills, and in README; a change to
// any table's columns is a new version.
inline constexpr int k_clickhouse_schema_version = 1;

struct ExportOptions {
  std::vector<std::string> paths; // files, already expanded
  std::string out;                // the directory to create (must not exist)
  std::optional<std::string> host;
  size_t jobs = 2; // files exported in parallel (at most the CPUs)
  // Schema-3 sockets: their identity formatted once per socket (automatic: when a file holds
  // at least two rows per identity and they fit in bounded memory) or joined per run. The
  // output is the same either way; tests compare the two paths.
  enum class IdentityCache { automatic, always, never };
  IdentityCache identity_cache = IdentityCache::automatic;
};

struct ExportResult {
  std::string dir;
  size_t files = 0;
  size_t snapshots = 0;
  size_t duplicates = 0;              // the same snapshot found in two files, exported once
  std::map<std::string, size_t> rows; // per table
};

// The table names, in load order.
std::vector<std::string> clickhouse_tables();

// CREATE TABLE statements (IF NOT EXISTS) for exactly the tables write_export() fills, for
// clickhouse-client --multiquery; accepted by ClickHouse 18.16.
std::string clickhouse_ddl();

// Validates every input (open_validated, load_snapshot_index: LoadError naming the file, exit
// 3) before anything is written, then writes DIR/<table>.tsv into a temporary directory beside
// `opts.out` (each file with store::AtomicFile, synced) and renames it to `opts.out`. An
// interrupted export leaves no `opts.out`. Each snapshot (SnapshotKey) is exported once.
ExportResult write_export(const ExportOptions& opts);

// Appends `s` to `out` escaped as a ClickHouse TabSeparated value: backslash, tab, newline,
// carriage return, NUL, backspace and form feed as ClickHouse writes them (\\ \t \n \r \0 \b
// \f); every other byte as it is.
void append_tsv_escaped(std::string& out, std::string_view s);

} // namespace sockrewind::analyze
