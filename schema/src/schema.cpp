#include <sockrewind/store/schema.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <utility>

namespace sockrewind::store {

namespace {

// One column of the reference schema: its declared type.
struct Column {
  std::string name;
  std::string type;
};

struct Table {
  std::string name;
  std::string sql; // the CREATE TABLE (VIEW) text SQLite keeps in sqlite_schema
  std::vector<Column> columns;
  bool view = false; // from version 3, sockets, processes, counters and limits are views
};

// The tables and columns of schema version `version`, as the migrations create them, read
// back from an in-memory database (so they can never drift from schema/sql).
std::vector<Table> reference_tables(int version) {
  Db mem = Db::memory();
  for (const Migration& m : migrations()) {
    if (m.version <= version) {
      mem.exec(m.sql);
    }
  }
  std::vector<Table> out;
  Stmt tables = mem.prepare("SELECT name, sql, type = 'view' FROM sqlite_schema "
                            "WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' "
                            "ORDER BY rowid");
  while (tables.step()) {
    Table t{tables.get_text(0), tables.get_text(1), {}, tables.get_int(2) != 0};
    Stmt cols = mem.prepare("SELECT name, upper(type) FROM pragma_table_xinfo(?1) ORDER BY cid");
    cols.bind(1, t.name);
    while (cols.step()) {
      t.columns.push_back({cols.get_text(0), cols.get_text(1)});
    }
    out.push_back(std::move(t));
  }
  return out;
}

// Reference schemas of every version this build reads, built once (thread-safe).
const std::vector<Table>& reference(int version) {
  static const std::map<int, std::vector<Table>> k_all = [] {
    std::map<int, std::vector<Table>> all;
    for (int v = k_min_schema_version; v <= k_schema_version; ++v) {
      all.emplace(v, reference_tables(v));
    }
    return all;
  }();
  return k_all.at(version);
}

struct FileColumn {
  std::string type;
  int hidden = 0; // table_xinfo: 0 plain, 1 hidden (virtual tables), 2/3 generated
};

// The CREATE text of every table and view in the file, by name.
std::map<std::string, std::string> schema_text(Db& db, const char* type) {
  std::map<std::string, std::string> have;
  Stmt st = db.prepare("SELECT name, sql FROM sqlite_schema WHERE type = ?1");
  st.bind(1, type);
  while (st.step()) {
    if (!st.is_null(0) && !st.is_null(1)) {
      have.emplace(st.get_text(0), st.get_text(1));
    }
  }
  return have;
}

// True when every reference table is in the file with exactly the reference CREATE text.
bool same_tables(Db& db, const std::vector<Table>& ref) {
  const std::map<std::string, std::string> have = schema_text(db, "table");
  return std::all_of(ref.begin(), ref.end(), [&](const Table& t) {
    const auto found = have.find(t.name);
    return t.view || (found != have.end() && found->second == t.sql);
  });
}

// The views readers query (version 3: sockets, processes, counters, limits) must be exactly
// the reference text: a file's own view would run whatever SQL it holds on every read.
// Views of versions 1-2 (sockets_v ...) are for the sqlite3 shell and are not read.
void check_views(Db& db, const std::vector<Table>& ref) {
  const std::map<std::string, std::string> have = schema_text(db, "view");
  for (const Table& t : ref) {
    if (!t.view || t.name.ends_with("_v") || t.name == "socket_owners") {
      continue;
    }
    const auto found = have.find(t.name);
    if (found == have.end()) {
      throw SchemaError("missing view " + t.name);
    }
    if (found->second != t.sql) {
      throw SchemaError("view " + t.name + " differs from the schema");
    }
  }
}

} // namespace

void migrate(Db& db, int target) {
  const int64_t current = db.query_int("PRAGMA user_version");
  if (current > k_schema_version) {
    throw SchemaError("schema version " + std::to_string(current) + " is newer than "
                      + std::to_string(k_schema_version));
  }
  db.exec("PRAGMA application_id = " + std::to_string(k_application_id));
  for (const Migration& m : migrations()) {
    if (m.version <= current || m.version > target) {
      continue;
    }
    Txn txn(db);
    db.exec(m.sql);
    db.exec("PRAGMA user_version = " + std::to_string(m.version));
    txn.commit();
  }
}

int validate(Db& db) {
  int64_t app_id = 0;
  int64_t version = 0;
  try {
    app_id = db.query_int("PRAGMA application_id");
    version = db.query_int("PRAGMA user_version");
  } catch (const DbError& e) {
    // Garbage or a damaged header; anything else (locks, I/O) is the caller's to handle.
    if (e.code() != SQLITE_NOTADB && e.code() != SQLITE_CORRUPT) {
      throw;
    }
    throw SchemaError(std::string("not a readable SQLite database (") + e.what() + ")");
  }
  if (app_id != k_application_id) {
    throw SchemaError("not a sockrewind file (application_id " + std::to_string(app_id) + ")");
  }
  if (version > k_schema_version) {
    throw SchemaError("schema version " + std::to_string(version)
                      + " is newer than this sockrewind supports ("
                      + std::to_string(k_schema_version) + "); upgrade sockrewind");
  }
  if (version < k_min_schema_version) {
    throw SchemaError("schema version " + std::to_string(version) + " is not supported");
  }

  // Files written by sockrewind-collect (or pack) of this version hold each table's CREATE text
  // exactly as the migrations wrote it, and SQLite builds the table from that text: equal
  // text, equal columns, types and STRICT. One statement instead of two pragma queries per
  // table (each of which prepares a statement of its own): under the fuzzer, validation was
  // half the cost of loading a small file.
  if (same_tables(db, reference(static_cast<int>(version)))) {
    check_views(db, reference(static_cast<int>(version)));
    return static_cast<int>(version);
  }
  // Every table of the schema, with every column and its declared type; anything beyond it
  // (tables, columns, views, triggers, indexes) is ignored. pragma_table_list and
  // pragma_table_xinfo read the schema without running anything the file defines. Both are
  // asked about one name at a time: listing every table would also compile every view in the
  // file, which cost more than the rest of a small file's load (the analyzer validates every
  // file it opens).
  Stmt list = db.prepare("SELECT type, strict FROM pragma_table_list(?1) WHERE schema = 'main'");
  Stmt cols = db.prepare("SELECT name, upper(type), hidden FROM pragma_table_xinfo(?1)");
  for (const Table& t : reference(static_cast<int>(version))) {
    if (t.view) {
      continue;
    }
    list.reset();
    list.bind(1, t.name);
    if (!list.step()) {
      throw SchemaError("missing table " + t.name);
    }
    const std::string type = list.get_text(0);
    if (type != "table") {
      throw SchemaError(t.name + " is a " + type + ", not a table");
    }
    // STRICT, or a hostile file could put text where we expect integers.
    if (list.get_int(1) != 1) {
      throw SchemaError("table " + t.name + " is not STRICT");
    }
    cols.reset();
    cols.bind(1, t.name);
    std::map<std::string, FileColumn> have;
    while (cols.step()) {
      have[cols.get_text(0)] = FileColumn{cols.get_text(1), static_cast<int>(cols.get_int(2))};
    }
    for (const Column& c : t.columns) {
      const auto col = have.find(c.name);
      if (col == have.end()) {
        throw SchemaError("table " + t.name + " lacks column " + c.name);
      }
      if (col->second.type != c.type) {
        throw SchemaError("column " + t.name + "." + c.name + " is declared "
                          + (col->second.type.empty() ? "without a type" : col->second.type)
                          + ", expected " + c.type);
      }
      // A generated column would compute an expression from the file on every read.
      if (col->second.hidden != 0) {
        throw SchemaError("column " + t.name + "." + c.name + " is generated or hidden");
      }
    }
  }
  check_views(db, reference(static_cast<int>(version)));
  return static_cast<int>(version);
}

std::vector<std::string> reference_columns(int version, std::string_view table) {
  std::vector<std::string> out;
  if (version < k_min_schema_version || version > k_schema_version) {
    return out;
  }
  for (const Table& t : reference(version)) {
    if (t.name == table) {
      for (const Column& c : t.columns) {
        out.push_back(c.name);
      }
    }
  }
  return out;
}

} // namespace sockrewind::store
