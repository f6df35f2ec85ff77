#include <sockrewind/store/db.hpp>

#include <sqlite3.h>

#include <cassert>
#include <string>
#include <utility>

namespace sockrewind::store {

namespace {

// The longest string or blob a read-only (untrusted) connection reads: see open_readonly().
constexpr int k_max_value_bytes = 64 * 1024;

[[noreturn]] void fail(sqlite3* db, int rc, const std::string& what) {
  std::string msg = what + ": ";
  msg += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  throw DbError(msg, rc & 0xff, db != nullptr ? sqlite3_extended_errcode(db) : rc);
}

// Before the first connection: no process-wide memory statistics (we never read them), which
// spares every SQLite allocation a global mutex.
void configure_once() {
  static const bool k_done = [] {
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); // SQLITE_MISUSE once initialised: harmless
    return true;
  }();
  (void)k_done;
}

Db open_with(const std::string& path, int flags, const char* what) {
  configure_once();
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &raw, flags, nullptr);
  if (rc != SQLITE_OK) {
    // SQLite allocates a handle even on failure; take the message, then close it.
    std::string msg = std::string(what) + " " + path + ": "
                      + (raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
    sqlite3_close(raw);
    throw DbError(msg, rc & 0xff, rc);
  }
  sqlite3_extended_result_codes(raw, 1);
  return Db::from_handle(raw);
}

} // namespace

DbError::DbError(const std::string& what, int rc, int extended_rc)
    : std::runtime_error(what),
      m_rc(rc),
      m_extended_rc(extended_rc) {}

void Db::Closer::operator()(sqlite3* db) const noexcept {
  const int rc = sqlite3_close(db);
  // SQLITE_BUSY here means a Stmt outlived its Db: a bug, not an input problem.
  assert(rc == SQLITE_OK);
  (void)rc;
}

Db Db::from_handle(sqlite3* db) {
  return Db{db};
}

Db Db::create(const std::string& path) {
  Db db = open_with(path,
                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
                        | SQLITE_OPEN_EXRESCODE,
                    "cannot create");
  sqlite3_busy_timeout(db.handle(), 5000);
  return db;
}

Db Db::open_readonly(const std::string& path, bool immutable) {
  // A URI so that mode=ro and immutable=1 apply; the path is percent-encoded for '?' and '#'.
  std::string uri = "file:";
  for (const char c : path) {
    if (c == '?' || c == '#' || c == '%') {
      static constexpr char k_hex[] = "0123456789ABCDEF";
      uri += '%';
      uri += k_hex[(static_cast<unsigned char>(c) >> 4) & 0xF];
      uri += k_hex[static_cast<unsigned char>(c) & 0xF];
    } else {
      uri += c;
    }
  }
  uri += immutable ? "?mode=ro&immutable=1" : "?mode=ro";
  Db db = open_with(uri,
                    SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX
                        | SQLITE_OPEN_PRIVATECACHE | SQLITE_OPEN_EXRESCODE,
                    "cannot open");
  sqlite3* h = db.handle();
  // Files from strangers: nothing in them may run code or corrupt memory. Each setting is read
  // back; a library that cannot apply one is refused rather than trusted.
  const std::pair<int, int> settings[] = {
      {SQLITE_DBCONFIG_DEFENSIVE, 1},
      {SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0},
      {SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0},
      {SQLITE_DBCONFIG_ENABLE_TRIGGER, 0},
      // Schema v3 reads sockets, processes, counters and limits through views; store::validate
      // accepts a file only when each of them is the schema's own text, and nothing reads any
      // other view of the file.
      {SQLITE_DBCONFIG_ENABLE_VIEW, 1},
  };
  for (const auto& [op, want] : settings) {
    int now = -1;
    if (sqlite3_db_config(h, op, want, &now) != SQLITE_OK || now != want) {
      throw DbError("cannot open " + path + ": SQLite refused a defensive setting ("
                        + std::to_string(op) + ")",
                    SQLITE_MISUSE,
                    SQLITE_MISUSE);
    }
  }
  // No string or blob the collector writes comes near 64 KiB (cmdline is cut at 4096 bytes);
  // a larger value makes the read fail with SQLITE_TOOBIG instead of allocating it.
  sqlite3_limit(h, SQLITE_LIMIT_LENGTH, k_max_value_bytes);
  sqlite3_limit(h, SQLITE_LIMIT_ATTACHED, 0);
  sqlite3_busy_timeout(h, 2000);
  return db;
}

Db Db::memory() {
  return open_with(":memory:", SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "cannot open");
}

void Db::exec(std::string_view sql) {
  const std::string s(sql);
  char* err = nullptr;
  const int rc = sqlite3_exec(m_db.get(), s.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw DbError(msg, rc & 0xff, sqlite3_extended_errcode(m_db.get()));
  }
}

Stmt Db::prepare(std::string_view sql, bool persistent) {
  sqlite3_stmt* raw = nullptr;
  const unsigned flags = persistent ? SQLITE_PREPARE_PERSISTENT : 0U;
  const int rc = sqlite3_prepare_v3(
      m_db.get(), sql.data(), static_cast<int>(sql.size()), flags, &raw, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(raw);
    fail(m_db.get(), rc, "prepare");
  }
  return Stmt{m_db.get(), raw};
}

int64_t Db::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(m_db.get());
}

int64_t Db::query_int(std::string_view sql) {
  Stmt st = prepare(sql);
  if (!st.step()) {
    throw DbError("query returned no row: " + std::string(sql), SQLITE_ERROR, SQLITE_ERROR);
  }
  return st.get_int(0);
}

void Stmt::Finalizer::operator()(sqlite3_stmt* stmt) const noexcept {
  sqlite3_finalize(stmt);
}

void Stmt::check(int rc, const char* what) const {
  if (rc != SQLITE_OK) {
    fail(m_db, rc, what);
  }
}

Stmt& Stmt::bind(int index, int64_t value) {
  check(sqlite3_bind_int64(m_stmt.get(), index, value), "bind");
  return *this;
}

Stmt& Stmt::bind(int index, uint64_t value) {
  return bind(index, static_cast<int64_t>(value)); // two's complement, documented
}

Stmt& Stmt::bind(int index, double value) {
  check(sqlite3_bind_double(m_stmt.get(), index, value), "bind");
  return *this;
}

Stmt& Stmt::bind(int index, std::string_view value) {
  check(sqlite3_bind_text64(
            m_stmt.get(), index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8),
        "bind");
  return *this;
}

Stmt& Stmt::bind_blob(int index, std::span<const uint8_t> value) {
  check(sqlite3_bind_blob64(m_stmt.get(), index, value.data(), value.size(), SQLITE_TRANSIENT),
        "bind");
  return *this;
}

Stmt& Stmt::bind_null(int index) {
  check(sqlite3_bind_null(m_stmt.get(), index), "bind");
  return *this;
}

bool Stmt::step() {
  const int rc = sqlite3_step(m_stmt.get());
  if (rc == SQLITE_ROW) {
    return true;
  }
  if (rc == SQLITE_DONE) {
    return false;
  }
  const char* sql = sqlite3_sql(m_stmt.get());
  fail(m_db, rc, std::string("step (") + (sql != nullptr ? sql : "?") + ")");
}

void Stmt::run() {
  while (step()) {
  }
  reset();
}

void Stmt::reset() {
  sqlite3_reset(m_stmt.get());
  sqlite3_clear_bindings(m_stmt.get());
}

int Stmt::column_count() const {
  return sqlite3_column_count(m_stmt.get());
}

int Stmt::column_type(int col) const {
  return sqlite3_column_type(m_stmt.get(), col);
}

int Stmt::column_index(std::string_view name) const {
  const int n = column_count();
  for (int i = 0; i < n; ++i) {
    const char* c = sqlite3_column_name(m_stmt.get(), i);
    if (c != nullptr && name == c) {
      return i;
    }
  }
  throw DbError("no result column " + std::string(name) + " in: " + sqlite3_sql(m_stmt.get()),
                SQLITE_ERROR,
                SQLITE_ERROR);
}

bool Stmt::is_null(int col) const {
  return sqlite3_column_type(m_stmt.get(), col) == SQLITE_NULL;
}

int64_t Stmt::get_int(int col) const {
  return sqlite3_column_int64(m_stmt.get(), col);
}

double Stmt::get_double(int col) const {
  return sqlite3_column_double(m_stmt.get(), col);
}

std::string Stmt::get_text(int col) const {
  const auto* p = sqlite3_column_text(m_stmt.get(), col);
  const int n = sqlite3_column_bytes(m_stmt.get(), col);
  if (p == nullptr) {
    return {};
  }
  return {reinterpret_cast<const char*>(p), static_cast<size_t>(n)};
}

std::string Stmt::get_blob(int col) const {
  const void* p = sqlite3_column_blob(m_stmt.get(), col);
  const int n = sqlite3_column_bytes(m_stmt.get(), col);
  if (p == nullptr) {
    return {};
  }
  return {static_cast<const char*>(p), static_cast<size_t>(n)};
}

std::optional<int64_t> Stmt::get_opt_int(int col) const {
  // One lookup of the column instead of two (type, then value): the loaders read tens of
  // millions of nullable integers.
  sqlite3_value* v = sqlite3_column_value(m_stmt.get(), col);
  if (sqlite3_value_type(v) == SQLITE_NULL) {
    return std::nullopt;
  }
  return sqlite3_value_int64(v);
}

std::optional<std::string> Stmt::get_opt_text(int col) const {
  if (is_null(col)) {
    return std::nullopt;
  }
  return get_text(col);
}

Txn::Txn(Db& db) : m_db(db) {
  m_db.exec("BEGIN IMMEDIATE");
}

Txn::~Txn() {
  if (!m_done) {
    // Destructors must not throw: a failed rollback leaves SQLite to roll back on close.
    try {
      m_db.exec("ROLLBACK");
    } catch (const DbError&) { // NOLINT(bugprone-empty-catch)
    }
  }
}

void Txn::commit() {
  m_db.exec("COMMIT");
  m_done = true;
}

} // namespace sockrewind::store
