#include <sockrewind/store/schema.hpp>

#include <sqlite3.h>

#include <set>

namespace sockrewind::store {

namespace {

// The columns the analyzer relies on, per table. Extra columns and tables are ignored.
struct Required {
  const char* table;
  std::vector<const char*> columns;
};

const std::vector<Required>& required() {
  static const std::vector<Required> k_required = {
      {"meta", {"key", "value"}},
      {"snapshots",
       {"snapshot_id", "host", "boot_id", "kernel", "realtime_ns", "boottime_ns", "self_netns"}},
      {"netns", {"netns_id", "inode"}},
      {"addrs", {"addr_id", "family", "addr", "text"}},
      {"sockets",
       {"sock_id",
        "snapshot_id",
        "netns_id",
        "family",
        "type",
        "proto",
        "state",
        "rx_queue",
        "tx_queue",
        "inode",
        "cookie",
        "pid",
        "fd"}},
      {"processes", {"snapshot_id", "pid", "start_ticks", "comm", "cmdline"}},
      {"counters", {"snapshot_id", "netns_id", "file", "name", "value"}},
      {"limits", {"snapshot_id", "netns_id", "name", "value"}},
      {"sources", {"snapshot_id", "source", "method", "status"}},
      {"capture_issues", {"snapshot_id", "source", "kind", "count"}},
  };
  return k_required;
}

} // namespace

void migrate(Db& db) {
  const int64_t current = db.query_int("PRAGMA user_version");
  if (current > k_schema_version) {
    throw SchemaError("schema version " + std::to_string(current) + " is newer than "
                      + std::to_string(k_schema_version));
  }
  db.exec("PRAGMA application_id = " + std::to_string(k_application_id));
  for (const Migration& m : migrations()) {
    if (m.version <= current) {
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
  // table_xinfo reads the schema without running anything the file defines.
  for (const Required& r : required()) {
    Stmt st = db.prepare("SELECT name, type FROM pragma_table_xinfo(?1)");
    st.bind(1, r.table);
    std::set<std::string> have;
    while (st.step()) {
      have.insert(st.get_text(0));
    }
    if (have.empty()) {
      throw SchemaError(std::string("missing table ") + r.table);
    }
    for (const char* c : r.columns) {
      if (!have.contains(c)) {
        throw SchemaError(std::string("table ") + r.table + " lacks column " + c);
      }
    }
  }
  // The tables must be STRICT, or a hostile file could put text where we expect integers.
  Stmt strict = db.prepare("SELECT name, strict FROM pragma_table_list WHERE schema = 'main'");
  std::set<std::string> strict_tables;
  while (strict.step()) {
    if (strict.get_int(1) == 1) {
      strict_tables.insert(strict.get_text(0));
    }
  }
  for (const Required& r : required()) {
    if (!strict_tables.contains(r.table)) {
      throw SchemaError(std::string("table ") + r.table + " is not STRICT");
    }
  }
  return static_cast<int>(version);
}

} // namespace sockrewind::store
