#pragma once
// A small RAII layer over the SQLite C API (after SQLiteCpp's shape): Db owns a connection,
// Stmt a prepared statement, Txn a transaction. All are move-only; errors throw DbError.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

struct sqlite3;
struct sqlite3_stmt;

namespace sockrewind::store {

// An SQLite failure: the message names the operation, SQLite's message and the SQL if any.
class DbError : public std::runtime_error {
public:
  DbError(const std::string& what, int rc, int extended_rc);

  int code() const { return m_rc; }

  int extended_code() const { return m_extended_rc; }

private:
  int m_rc;
  int m_extended_rc;
};

class Stmt;

class Db {
public:
  // Creates (or opens read-write) the database at `path`; SQLITE_OPEN_CREATE|READWRITE.
  static Db create(const std::string& path);
  // Opens `path` read-only for untrusted input: defensive mode, no triggers/views from the
  // file are trusted, no extension loading. `immutable` adds `immutable=1` (no locking).
  static Db open_readonly(const std::string& path, bool immutable);
  // An in-memory database, for tests.
  static Db memory();
  // Takes ownership of an open handle.
  static Db from_handle(sqlite3* db);

  void exec(std::string_view sql);
  Stmt prepare(std::string_view sql, bool persistent = false);
  int64_t last_insert_rowid() const;
  // Runs a query returning one integer (e.g. PRAGMA user_version).
  int64_t query_int(std::string_view sql);

  sqlite3* handle() const { return m_db.get(); }

private:
  struct Closer {
    void operator()(sqlite3* db) const noexcept;
  };

  explicit Db(sqlite3* db) : m_db(db) {}

  std::unique_ptr<sqlite3, Closer> m_db;
};

class Stmt {
public:
  // Binds are 1-based like SQLite. Text and blobs are copied (SQLITE_TRANSIENT).
  Stmt& bind(int index, int64_t value);
  Stmt& bind(int index, uint64_t value); // stored as the same 64 bits, two's complement

  Stmt& bind(int index, int value) { return bind(index, static_cast<int64_t>(value)); }

  Stmt& bind(int index, uint32_t value) { return bind(index, static_cast<int64_t>(value)); }

  Stmt& bind(int index, double value);
  Stmt& bind(int index, std::string_view value);

  Stmt& bind(int index, const char* value) { return bind(index, std::string_view(value)); }

  Stmt& bind_blob(int index, std::span<const uint8_t> value);
  Stmt& bind_null(int index);

  template <typename T> Stmt& bind(int index, const std::optional<T>& value) {
    if (value) {
      return bind(index, *value);
    }
    return bind_null(index);
  }

  // Executes one step: true when a row is available, false when done; errors throw.
  bool step();
  // Steps to completion, for statements that return no rows.
  void run();
  // Resets the statement and clears its bindings, ready for the next execution.
  void reset();

  int column_count() const;
  // The index of the result column called `name` (its AS name; a plain column reference is
  // called by the column's name). For reading rows by name: resolve each name once per
  // statement, then read by index. Throws DbError when there is no such column.
  int column_index(std::string_view name) const;
  bool is_null(int col) const;
  // SQLITE_NULL, SQLITE_INTEGER, SQLITE_FLOAT, SQLITE_TEXT or SQLITE_BLOB.
  int column_type(int col) const;
  int64_t get_int(int col) const;
  double get_double(int col) const;
  std::string get_text(int col) const;
  std::string get_blob(int col) const;
  std::optional<int64_t> get_opt_int(int col) const;
  std::optional<std::string> get_opt_text(int col) const;

private:
  friend class Db;

  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const noexcept;
  };

  Stmt(sqlite3* db, sqlite3_stmt* stmt) : m_db(db), m_stmt(stmt) {}

  void check(int rc, const char* what) const;

  sqlite3* m_db;
  std::unique_ptr<sqlite3_stmt, Finalizer> m_stmt;
};

// BEGIN IMMEDIATE in the constructor; commit() ends it; otherwise the destructor rolls back.
class Txn {
public:
  explicit Txn(Db& db);
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;
  Txn(Txn&&) = delete;
  Txn& operator=(Txn&&) = delete;
  ~Txn();
  void commit();

private:
  Db& m_db;
  bool m_done = false;
};

} // namespace sockrewind::store
