#include <sockrewind/collect/tcp_info.hpp>
#include <sockrewind/collect/writer.hpp>
#include <sockrewind/store/meta.hpp>
#include <sockrewind/store/runs.hpp>
#include <sockrewind/store/schema.hpp>

#include <sqlite3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <concepts>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>

namespace sockrewind::collect {

namespace {

std::string addr_text(uint8_t family, const uint8_t* addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_ntop(family == k_af_inet ? AF_INET : AF_INET6, addr, buf, sizeof buf) == nullptr) {
    return "?";
  }
  return buf;
}

// Schema v3 (schema/sql/0003_compact.sql): a socket is its identity (sock_ident) and its
// changing fields over a run of snapshots (sock_runs). A collector file holds one-snapshot
// runs; pack and the fold join the runs of consecutive snapshots. The columns of both tables
// are the store's (store::sock_ident_columns, sock_run_columns); each is bound by name.
// Socket rows go in with multi-row INSERTs: up to k_rows_per_insert rows per statement, so
// that the per-statement work (step, open cursors, halt, reset) and the descent to the end of
// each table are paid once for many rows. A chunk of fewer rows uses the statement of the
// largest power of two that fits, so at most log2(k_rows_per_insert) + 1 statements a table.
constexpr size_t k_rows_per_insert = 32;
constexpr size_t k_insert_sizes = std::bit_width(k_rows_per_insert); // 32, 16, ..., 1

// The rows of the next statement: a power of two, at most k_rows_per_insert.
size_t chunk_rows(size_t remaining) {
  return std::bit_floor(std::min(remaining, k_rows_per_insert));
}

// The 1-based position of column `name` among `cols` (after `before` leading columns).
int param(std::span<const std::string_view> cols, std::string_view name, int before = 0) {
  const auto it = std::find(cols.begin(), cols.end(), name);
  if (it == cols.end()) {
    throw std::logic_error("writer: no column " + std::string(name));
  }
  return before + 1 + static_cast<int>(it - cols.begin());
}

// A statement of the writer's own on SQLite's C API, for the socket rows: their parameters are
// bound straight through it (a bind fails only on misuse; the first failure is kept and
// thrown before the statement runs), and run() keeps the bindings: every parameter is bound
// before each run, NULL included, so clearing them (hundreds) would be wasted work.
class RawStmt {
public:
  RawStmt(sqlite3* db, const std::string& sql, std::string what)
      : m_db(db),
        m_what(std::move(what)) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v3(
        db, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    m_stmt.reset(raw);
    if (rc != SQLITE_OK) {
      fail(rc, "prepare");
    }
  }

  template <std::integral T> void set(int i, T v) {
    keep(sqlite3_bind_int64(m_stmt.get(), i, static_cast<int64_t>(v))); // uint64: same bits
  }

  template <std::integral T> void set(int i, const std::optional<T>& v) {
    if (v) {
      set(i, *v);
    } else {
      set_null(i);
    }
  }

  void set(int i, const std::optional<std::string>& v) {
    if (v) {
      keep(sqlite3_bind_text64(
          m_stmt.get(), i, v->data(), v->size(), SQLITE_TRANSIENT, SQLITE_UTF8));
    } else {
      set_null(i);
    }
  }

  void set_null(int i) { keep(sqlite3_bind_null(m_stmt.get(), i)); }

  void run() {
    if (m_bind_rc != SQLITE_OK) {
      const int rc = m_bind_rc;
      m_bind_rc = SQLITE_OK;
      fail(rc, "bind");
    }
    const int rc = sqlite3_step(m_stmt.get());
    if (rc != SQLITE_DONE) {
      const std::string msg = sqlite3_errmsg(m_db);
      sqlite3_reset(m_stmt.get());
      throw store::DbError("step (" + m_what + "): " + msg, rc & 0xff, rc);
    }
    sqlite3_reset(m_stmt.get());
  }

private:
  struct Finalizer {
    void operator()(sqlite3_stmt* st) const noexcept { sqlite3_finalize(st); }
  };

  void keep(int rc) {
    if (rc != SQLITE_OK && m_bind_rc == SQLITE_OK) {
      m_bind_rc = rc;
    }
  }

  [[noreturn]] void fail(int rc, const char* op) const {
    throw store::DbError(std::string(op) + " (" + m_what + "): " + sqlite3_errmsg(m_db),
                         rc & 0xff,
                         sqlite3_extended_errcode(m_db));
  }

  sqlite3* m_db;
  std::string m_what;
  std::unique_ptr<sqlite3_stmt, Finalizer> m_stmt;
  int m_bind_rc = SQLITE_OK;
};

// A multi-row INSERT into one table. Each column is either shared by all rows of a statement
// (one parameter ?K, K = 1..shared, bound once) or the row's own: row k's own parameter j
// (1-based) is ?(shared + k * per_row + j). Every parameter is bound before each run (NULL
// included), so the bindings are never cleared.
class RowsInsert {
public:
  struct Column {
    std::string name;
    int shared; // 0: the row's own; else the shared parameter's number
  };

  RowsInsert(store::Db& db, std::string table, std::vector<Column> cols)
      : m_db(&db),
        m_table(std::move(table)),
        m_cols(std::move(cols)) {
    for (const Column& c : m_cols) {
      m_shared = std::max(m_shared, c.shared);
      m_per_row += c.shared == 0 ? 1 : 0;
    }
  }

  // The statement for n rows (a power of two <= k_rows_per_insert), prepared on first use.
  RawStmt& rows(size_t n) {
    const auto slot = static_cast<size_t>(std::countr_zero(n));
    std::optional<RawStmt>& st = m_stmts.at(slot);
    if (!st) {
      st.emplace(
          m_db->handle(), sql(n), "INSERT INTO " + m_table + ", " + std::to_string(n) + " rows");
    }
    return *st;
  }

  // The parameter before row k's own parameters: row k's own j is base(k) + j.
  int base(size_t k) const { return m_shared + static_cast<int>(k) * m_per_row; }

private:
  std::string sql(size_t n) const {
    std::string s = "INSERT INTO " + m_table + " (";
    for (size_t i = 0; i < m_cols.size(); ++i) {
      s += (i == 0 ? "" : ", ") + m_cols[i].name;
    }
    s += ") VALUES ";
    for (size_t k = 0; k < n; ++k) {
      s += k == 0 ? "(" : ",(";
      int own = 0;
      for (size_t i = 0; i < m_cols.size(); ++i) {
        const int p = m_cols[i].shared != 0 ? m_cols[i].shared : base(k) + ++own;
        s += (i == 0 ? "?" : ",?") + std::to_string(p);
      }
      s += ')';
    }
    return s;
  }

  store::Db* m_db;
  std::string m_table;
  std::vector<Column> m_cols;
  int m_shared = 0;
  int m_per_row = 0;
  std::array<std::optional<RawStmt>, k_insert_sizes> m_stmts;
};

// Parameters of the two INSERTs, resolved once: each row's own parameters, 1-based.
// sock_ident: ?1 = netns_id (shared); own: the identity columns but netns_id. ident_id is
// SQLite's (the largest + 1, as ever): appending that way skips a seek per row.
// sock_runs: ?1 = first_snapshot_id = last_snapshot_id (shared); own: run_id, ident_id, then
// the run columns.
struct SocketParams {
  std::span<const std::string_view> ident_all = store::sock_ident_columns();
  std::vector<std::string_view> ident = own_ident_columns(ident_all);
  std::span<const std::string_view> run = store::sock_run_columns();
  int family = param(ident, "family"), type = param(ident, "type"), proto = param(ident, "proto"),
      local_addr_id = param(ident, "local_addr_id"), local_port = param(ident, "local_port"),
      remote_addr_id = param(ident, "remote_addr_id"), remote_port = param(ident, "remote_port"),
      inode = param(ident, "inode"), cookie = param(ident, "cookie"), uid = param(ident, "uid"),
      path = param(ident, "path"), peer_inode = param(ident, "peer_inode");
  int run_id = 1, run_ident_id = 2;
  int state = param(run, "state", 2), rx_queue = param(run, "rx_queue", 2),
      tx_queue = param(run, "tx_queue", 2), timer = param(run, "timer", 2),
      expires_ms = param(run, "expires_ms", 2), retrans = param(run, "retrans", 2),
      shutdown = param(run, "shutdown", 2), tos = param(run, "tos", 2),
      skm_first = param(run, "skm_rmem_alloc", 2), skm_drops = param(run, "skm_drops", 2),
      pid = param(run, "pid", 2), fd = param(run, "fd", 2);
  std::vector<int> tcp_info; // per tcp_info_inline_fields()

  SocketParams() {
    for (const TcpInfoField& f : tcp_info_inline_fields()) {
      tcp_info.push_back(param(run, "ti_" + std::string(f.column), 2));
    }
    if (skm_drops != skm_first + static_cast<int>(k_skmem_fields) - 1) {
      throw std::logic_error("writer: skm_* columns out of SK_MEMINFO order");
    }
    // Every own parameter is bound before each run: the columns above must be all of them.
    if (ident.size() != 12) {
      throw std::logic_error("writer: sock_ident has columns the writer does not bind");
    }
    const size_t run_bound = 8 + k_skmem_fields + tcp_info.size() + 2;
    if (run.size() != run_bound) {
      throw std::logic_error("writer: sock_runs has columns the writer does not bind");
    }
  }

  static std::vector<std::string_view> own_ident_columns(std::span<const std::string_view> all) {
    std::vector<std::string_view> own;
    for (const std::string_view c : all) {
      if (c != "netns_id") {
        own.push_back(c);
      }
    }
    return own;
  }

  RowsInsert ident_insert(store::Db& db) const {
    std::vector<RowsInsert::Column> cols;
    for (const std::string_view c : ident_all) {
      cols.push_back({std::string(c), c == "netns_id" ? 1 : 0});
    }
    return {db, "sock_ident", std::move(cols)};
  }

  RowsInsert run_insert(store::Db& db) const {
    std::vector<RowsInsert::Column> cols{
        {"run_id", 0}, {"ident_id", 0}, {"first_snapshot_id", 1}, {"last_snapshot_id", 1}};
    for (const std::string_view c : run) {
      cols.push_back({std::string(c), 0});
    }
    return {db, "sock_runs", std::move(cols)};
  }
};

const SocketParams& socket_params() {
  static const SocketParams k_params;
  return k_params;
}

} // namespace

std::string snapshot_base_name(const std::string& hostname, int64_t realtime_ns) {
  const auto secs = static_cast<time_t>(realtime_ns / 1'000'000'000);
  tm utc{};
  gmtime_r(&secs, &utc);
  char ts[32];
  (void)strftime(ts, sizeof ts, "%Y%m%dT%H%M%SZ", &utc);
  std::string host = hostname.empty() ? "localhost" : hostname;
  for (char& c : host) {
    if (c == '/' || c == '\0') {
      c = '_';
    }
  }
  return host + "-" + ts;
}

SnapshotFile::SnapshotFile(std::string dir, std::string base_name, TcpInfoMode mode)
    : m_dir(std::move(dir)),
      m_base(std::move(base_name)),
      // Never follows or reuses something planted at the temporary name.
      m_file(m_dir + "/" + m_base + ".sqlite", store::AtomicFile::Replace::never),
      m_mode(mode) {
  try {
    m_db = std::make_unique<store::Db>(store::Db::create(m_file.temp_path()));
    // The file is private until renamed, so no rollback journal on disk and no syncs per
    // transaction: commit() fsyncs once. A failed run deletes the file.
    m_db->exec("PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = MEMORY; "
               "PRAGMA synchronous = OFF; PRAGMA foreign_keys = OFF");
    store::migrate(*m_db);
    store::Txn txn(*m_db);
    store::write_meta(*m_db,
                      {"sockrewind-collect", mode == TcpInfoMode::full ? "full" : "basic", {}});
    txn.commit();
  } catch (...) {
    m_db.reset(); // closed before m_file removes the temporary name
    throw;
  }
}

SnapshotFile::~SnapshotFile() {
  m_db.reset(); // closed before m_file removes the temporary name unless committed
}

int64_t SnapshotFile::netns_id(uint64_t inode) {
  const auto it = m_netns.find(inode);
  if (it != m_netns.end()) {
    return it->second;
  }
  store::Stmt st = m_db->prepare("INSERT INTO netns (inode) VALUES (?1)");
  st.bind(1, inode).run();
  const int64_t id = m_db->last_insert_rowid();
  m_netns.emplace(inode, id);
  return id;
}

int64_t SnapshotFile::addr_id(uint8_t family, const uint8_t* addr, uint8_t len) {
  // Most sockets share their addresses (loopback, the host's own): the last one answers first.
  if (len == m_last_addr_len && std::memcmp(addr, m_last_addr.data(), len) == 0) {
    return m_last_addr_id;
  }
  std::string key(reinterpret_cast<const char*>(addr), len);
  const auto it = m_addrs.find(key);
  if (it != m_addrs.end()) {
    remember_addr(addr, len, it->second);
    return it->second;
  }
  store::Stmt st = m_db->prepare("INSERT INTO addrs (family, addr, text) VALUES (?1, ?2, ?3)");
  st.bind(1, static_cast<int64_t>(family))
      .bind_blob(2, std::span<const uint8_t>(addr, len))
      .bind(3, addr_text(family, addr))
      .run();
  const int64_t id = m_db->last_insert_rowid();
  m_addrs.emplace(std::move(key), id);
  remember_addr(addr, len, id);
  m_max_addr_id = std::max(m_max_addr_id, id);
  return id;
}

void SnapshotFile::forget_addrs_after(int64_t mark) {
  std::erase_if(m_addrs, [mark](const auto& kv) { return kv.second > mark; });
  if (m_last_addr_id > mark) {
    m_last_addr_len = -1;
  }
  m_max_addr_id = std::min(m_max_addr_id, mark);
}

void SnapshotFile::remember_addr(const uint8_t* addr, uint8_t len, int64_t id) {
  std::memcpy(m_last_addr.data(), addr, std::min<size_t>(len, m_last_addr.size()));
  m_last_addr_len = len <= m_last_addr.size() ? len : -1;
  m_last_addr_id = id;
}

// The prepared statements for socket rows, kept for one snapshot's transaction.
struct SnapshotFile::SocketStmts {
  RowsInsert ident;
  RowsInsert sock;
  store::Stmt extra;
  store::Stmt ti;
};

SnapshotFile::SocketStmts SnapshotFile::prepare_socket_stmts() {
  std::string ti_sql = "INSERT INTO tcp_info (sock_id, cong, info_len";
  std::string ti_vals = "?1,?2,?3";
  int n = 3;
  for (const TcpInfoField& f : tcp_info_fields()) {
    ti_sql += ", " + std::string(f.column);
    ti_vals += ",?" + std::to_string(++n);
  }
  return SocketStmts{
      socket_params().ident_insert(*m_db),
      socket_params().run_insert(*m_db),
      m_db->prepare("INSERT OR IGNORE INTO extra_owners (sock_id, pid, fd) VALUES (?1,?2,?3)",
                    true),
      m_db->prepare(ti_sql + ") VALUES (" + ti_vals + ")", true)};
}

SnapshotFile::ExtraOwners SnapshotFile::extra_owners(const OwnerScan& owners) {
  ExtraOwners extra;
  for (const auto& [inode, owner] : owners.extra) {
    extra[inode].push_back(owner);
  }
  return extra;
}

int64_t SnapshotFile::next_snapshot_id() {
  return m_db->query_int("SELECT coalesce(max(snapshot_id), 0) + 1 FROM snapshots");
}

void SnapshotFile::insert_idents(SocketStmts& st,
                                 int64_t nid,
                                 std::span<const SocketRow* const> rows) {
  const SocketParams& p = socket_params();
  for (size_t at = 0; at < rows.size();) {
    const size_t n = chunk_rows(rows.size() - at);
    RawStmt& ins = st.ident.rows(n);
    ins.set(1, nid);
    for (size_t k = 0; k < n; ++k) {
      const SocketRow& r = *rows[at + k];
      const int b = st.ident.base(k);
      ins.set(b + p.family, static_cast<int64_t>(r.family));
      ins.set(b + p.type, static_cast<int64_t>(r.type));
      ins.set(b + p.proto, static_cast<int64_t>(r.proto));
      if (r.addr_len != 0) {
        ins.set(b + p.local_addr_id, addr_id(r.family, r.local_addr.data(), r.addr_len));
        ins.set(b + p.local_port, static_cast<int64_t>(r.local_port));
        ins.set(b + p.remote_addr_id, addr_id(r.family, r.remote_addr.data(), r.addr_len));
        ins.set(b + p.remote_port, static_cast<int64_t>(r.remote_port));
      } else {
        ins.set_null(b + p.local_addr_id);
        ins.set_null(b + p.local_port);
        ins.set_null(b + p.remote_addr_id);
        ins.set_null(b + p.remote_port);
      }
      ins.set(b + p.inode, r.inode);
      ins.set(b + p.cookie, r.cookie);
      ins.set(b + p.uid, r.uid);
      ins.set(b + p.path, r.path);
      ins.set(b + p.peer_inode, r.peer_inode);
    }
    ins.run();
    m_last_ident += static_cast<int64_t>(n);
    // The runs name these ids: they must be the ones SQLite chose.
    if (m_db->last_insert_rowid() != m_last_ident) {
      throw std::logic_error("writer: sock_ident ids are not the expected "
                             + std::to_string(m_last_ident));
    }
    at += n;
  }
}

void SnapshotFile::insert_runs(SocketStmts& st,
                               int64_t sid,
                               std::span<const SocketRow* const> rows,
                               int64_t first_ident,
                               const OwnerScan& owners,
                               const ExtraOwners& extra) {
  // Owners first, in one tight loop: the lookups miss the cache, and a loop without SQLite
  // in between overlaps those misses (this took 15% of the insert time inline).
  std::vector<const Owner*> owner_of(rows.size(), nullptr);
  for (size_t i = 0; i < rows.size(); ++i) {
    const uint64_t inode = rows[i]->inode;
    const auto it = inode != 0 ? owners.first.find(inode) : owners.first.end();
    if (it != owners.first.end()) {
      owner_of[i] = &it->second;
    }
  }
  const SocketParams& p = socket_params();
  for (size_t at = 0; at < rows.size();) {
    const size_t n = chunk_rows(rows.size() - at);
    const int64_t first_run = m_last_run + 1;
    RawStmt& ins = st.sock.rows(n);
    ins.set(1, sid);
    for (size_t k = 0; k < n; ++k) {
      const SocketRow& r = *rows[at + k];
      const int b = st.sock.base(k);
      ins.set(b + p.run_id, first_run + static_cast<int64_t>(k));
      ins.set(b + p.run_ident_id, first_ident + static_cast<int64_t>(at + k));
      ins.set(b + p.state, static_cast<int64_t>(r.state));
      ins.set(b + p.rx_queue, r.rx_queue);
      ins.set(b + p.tx_queue, r.tx_queue);
      ins.set(b + p.timer, r.timer);
      ins.set(b + p.expires_ms, r.expires_ms);
      ins.set(b + p.retrans, r.retrans);
      ins.set(b + p.shutdown, r.shutdown);
      ins.set(b + p.tos, r.tos);
      // skm_rmem_alloc .. skm_drops: consecutive columns in SK_MEMINFO order.
      for (size_t m = 0; m < k_skmem_fields; ++m) {
        const int col = b + p.skm_first + static_cast<int>(m);
        if (m < r.skmem_count) {
          ins.set(col, r.skmem[m]);
        } else if (col == b + p.skm_drops && r.drops) {
          ins.set(col, *r.drops); // /proc/net/udp drops when no SK_MEMINFO_DROPS
        } else {
          ins.set_null(col);
        }
      }
      size_t t = 0;
      for (const TcpInfoField& f : tcp_info_inline_fields()) {
        ins.set(b + p.tcp_info[t++], read_tcp_info_field(r.tcp_info, f));
      }
      if (const Owner* owner = owner_of[at + k]) {
        ins.set(b + p.pid, static_cast<int64_t>(owner->pid));
        ins.set(b + p.fd, static_cast<int64_t>(owner->fd));
      } else {
        ins.set_null(b + p.pid);
        ins.set_null(b + p.fd);
      }
    }
    ins.run();
    m_last_run += static_cast<int64_t>(n);

    for (size_t k = 0; k < n; ++k) {
      const SocketRow& r = *rows[at + k];
      // The socket's id in this snapshot, as the sockets view gives it.
      const int64_t sock_id = store::run_sock_id(first_run + static_cast<int64_t>(k), sid);
      if (r.inode != 0 && !extra.empty()) {
        const auto more = extra.find(r.inode);
        if (more != extra.end()) {
          for (const Owner& o : more->second) {
            st.extra.bind(1, sock_id).bind(2, static_cast<int64_t>(o.pid));
            st.extra.bind(3, static_cast<int64_t>(o.fd)).run();
          }
        }
      }
      if (m_mode == TcpInfoMode::full && !r.tcp_info.empty()) {
        st.ti.bind(1, sock_id);
        if (!r.cong.empty()) {
          st.ti.bind(2, r.cong);
        }
        st.ti.bind(3, static_cast<int64_t>(r.tcp_info.size()));
        int tcol = 4;
        for (const TcpInfoField& f : tcp_info_fields()) {
          st.ti.bind(tcol++, read_tcp_info_field(r.tcp_info, f));
        }
        st.ti.run();
      }
    }
    at += n;
  }
}

void SnapshotFile::write(const Snapshot& snap) {
  store::Txn txn(*m_db);
  const int64_t sid = next_snapshot_id();
  SocketStmts st = prepare_socket_stmts();
  const ExtraOwners extra = extra_owners(snap.owners);
  uint64_t socket_count = 0;
  for (const NetnsCapture& ns : snap.namespaces) {
    std::vector<const SocketRow*> rows;
    rows.reserve(ns.sockets.size());
    for (const SocketRow& r : ns.sockets) {
      rows.push_back(&r);
    }
    const int64_t first_ident = m_last_ident + 1;
    insert_idents(st, netns_id(ns.ref.inode), rows);
    insert_runs(st, sid, rows, first_ident, snap.owners, extra);
    socket_count += ns.sockets.size();
  }
  write_rest(sid, snap, socket_count);
  txn.commit();
}

// Streams socket rows into the open transaction on a writer thread while the capture goes on
// (SocketSink calls come from the capturing thread). Each table is a savepoint, so that a
// failed dump's rows can be dropped.
class SnapshotFile::Stream final : public SocketSink {
public:
  Stream(SnapshotFile& file, int64_t sid)
      : m_file(file),
        m_sid(sid),
        m_worker([this] { work(); }) {}

  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  Stream(Stream&&) = delete;
  Stream& operator=(Stream&&) = delete;

  ~Stream() override { flush(); }

  void owners(const OwnerScan& scan) override { push({Kind::owners, 0, false, {}, &scan}); }

  void begin_table(uint64_t netns_inode) override {
    push({Kind::begin, netns_inode, false, {}, nullptr});
  }

  void rows(std::vector<SocketRow>& batch) override {
    push({Kind::rows, 0, false, std::move(batch), nullptr});
    batch.clear();
  }

  void end_table(bool keep) override { push({Kind::end, 0, keep, {}, nullptr}); }

  void flush() override {
    if (m_worker.joinable()) {
      push({Kind::stop, 0, false, {}, nullptr});
      m_worker.join();
    }
  }

  // After flush(): the rows written, or the error that stopped the writer.
  uint64_t rows_written() const { return m_rows; }

  void rethrow_if_failed() const {
    if (m_error) {
      std::rethrow_exception(m_error);
    }
  }

private:
  enum class Kind { owners, begin, rows, end, stop };

  struct Msg {
    Kind kind;
    uint64_t netns_inode;
    bool keep;
    std::vector<SocketRow> rows;
    const OwnerScan* scan;
  };

  void push(Msg&& m) {
    {
      const std::lock_guard<std::mutex> lock(m_mutex);
      m_queue.push_back(std::move(m));
    }
    m_ready.notify_one();
  }

  // Rows wait here until a whole statement's worth is there (or their table ends), and their
  // runs until the owner scan has arrived. take_snapshot hands it over before the first dump
  // (scanning beside the dumps was tried: no faster on 2 cores, and it held every row of a
  // table until the scan ended: +10 MiB peak, 67 MiB with --count 10), but a scan arriving
  // later is handled too: identities need no owners. The k-th row of `runs` has identity
  // runs_ident + k; its first `runs_done` rows are written, and those from `idents_done` on
  // in `idents` are not (all of the open table).
  struct Pending {
    std::vector<std::vector<SocketRow>> kept; // the rows the pointers below point into
    std::vector<const SocketRow*> idents;
    size_t idents_done = 0;
    std::vector<const SocketRow*> runs;
    size_t runs_done = 0;
    int64_t runs_ident = 1;
  };

  // Writes the pending identities: whole statements only, or all of them.
  void write_idents(SocketStmts& st, Pending& p, int64_t nid, bool all) {
    const size_t left = p.idents.size() - p.idents_done;
    const size_t n = all ? left : left - left % k_rows_per_insert;
    m_file.insert_idents(st, nid, std::span(p.idents).subspan(p.idents_done, n));
    p.idents_done += n;
    if (p.idents_done == p.idents.size()) {
      p.idents.clear();
      p.idents_done = 0;
    }
  }

  // Writes the pending runs whose identities are written: whole statements only, or all.
  void write_runs(
      SocketStmts& st, Pending& p, const OwnerScan& scan, const ExtraOwners& extra, bool all) {
    const size_t ready = p.runs.size() - (p.idents.size() - p.idents_done) - p.runs_done;
    const size_t n = all ? ready : ready - ready % k_rows_per_insert;
    m_file.insert_runs(st,
                       m_sid,
                       std::span(p.runs).subspan(p.runs_done, n),
                       p.runs_ident + static_cast<int64_t>(p.runs_done),
                       scan,
                       extra);
    p.runs_done += n;
    if (p.runs_done == p.runs.size()) {
      p.kept.clear();
      p.runs.clear();
      p.runs_done = 0;
      p.runs_ident = m_file.m_last_ident + 1;
    }
  }

  void work() {
    std::optional<SocketStmts> st;
    const OwnerScan* scan = nullptr;
    ExtraOwners extra;
    Pending pend;
    pend.runs_ident = m_file.m_last_ident + 1;
    int64_t nid = 0;
    uint64_t table_rows = 0;
    bool in_table = false;
    size_t table_mark = 0; // pend.runs.size() when the open table began
    int64_t ident_mark = 0;
    int64_t addr_mark = 0;
    for (;;) {
      Msg m;
      {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_ready.wait(lock, [this] { return !m_queue.empty(); });
        m = std::move(m_queue.front());
        m_queue.pop_front();
      }
      if (m_error) {
        if (m.kind == Kind::stop) {
          return;
        }
        continue; // failed: drain until stop
      }
      try {
        switch (m.kind) {
        case Kind::owners:
          scan = m.scan;
          extra = extra_owners(*scan);
          // Inside a table only when no earlier table's runs wait (they must not enter the
          // table's savepoint); otherwise at the table's end.
          if (st && (!in_table || pend.runs_done >= table_mark)) {
            write_runs(*st, pend, *scan, extra, !in_table);
          }
          break;
        case Kind::begin:
          if (!st) {
            st.emplace(m_file.prepare_socket_stmts());
          }
          nid = m_file.netns_id(m.netns_inode);
          table_rows = 0;
          in_table = true;
          table_mark = pend.runs.size();
          ident_mark = m_file.m_last_ident;
          addr_mark = m_file.m_max_addr_id;
          m_file.m_db->exec("SAVEPOINT socket_table");
          break;
        case Kind::rows:
          table_rows += m.rows.size();
          for (const SocketRow& r : m.rows) {
            pend.idents.push_back(&r);
            pend.runs.push_back(&r);
          }
          pend.kept.push_back(std::move(m.rows)); // the rows stay where the pointers point
          write_idents(*st, pend, nid, false);
          if (scan != nullptr && pend.runs_done >= table_mark) {
            write_runs(*st, pend, *scan, extra, false);
          }
          break;
        case Kind::end:
          in_table = false;
          if (m.keep) {
            write_idents(*st, pend, nid, true);
            m_file.m_db->exec("RELEASE socket_table");
            m_rows += table_rows;
          } else {
            m_file.m_db->exec("ROLLBACK TO socket_table; RELEASE socket_table");
            // The next identities take the ids of the dropped ones, as ROWIDs chosen by
            // SQLite (max + 1) did; run_ids are not reused.
            m_file.m_last_ident = ident_mark;
            // Addresses first seen in the table are gone with it, and SQLite gives their ids
            // to the next new ones: the cache must not answer with them.
            m_file.forget_addrs_after(addr_mark);
            pend.idents.clear();
            pend.idents_done = 0;
            pend.runs.resize(table_mark);
            pend.runs_done = std::min(pend.runs_done, table_mark);
          }
          if (scan != nullptr) { // the table's runs, and any earlier ones, outside its savepoint
            write_runs(*st, pend, *scan, extra, true);
          }
          break;
        case Kind::stop:
          // Every table has ended; runs wait only if no owner scan came (the capture failed).
          if (st && scan != nullptr) {
            write_runs(*st, pend, *scan, extra, true);
          }
          return;
        }
      } catch (...) {
        m_error = std::current_exception();
        if (m.kind == Kind::stop) {
          return;
        }
      }
    }
  }

  SnapshotFile& m_file;
  int64_t m_sid;
  std::mutex m_mutex;
  std::condition_variable m_ready;
  std::deque<Msg> m_queue;
  uint64_t m_rows = 0;
  std::exception_ptr m_error;
  std::thread m_worker; // last: starts once everything above is constructed
};

Snapshot SnapshotFile::capture(const CaptureOptions& opts, const HostInfo& host) {
  return capture_with([&](SocketSink* sink) { return take_snapshot(opts, host, sink); });
}

Snapshot SnapshotFile::capture_with(const std::function<Snapshot(SocketSink*)>& take) {
  store::Txn txn(*m_db);
  const int64_t sid = next_snapshot_id();
  Snapshot snap;
  uint64_t socket_count = 0;
  {
    Stream stream(*this, sid);
    snap = take(&stream);
    stream.flush();
    stream.rethrow_if_failed();
    socket_count = stream.rows_written();
  }
  write_rest(sid, snap, socket_count);
  txn.commit();
  return snap;
}

void SnapshotFile::write_rest(int64_t sid, const Snapshot& snap, uint64_t socket_count) {
  // Sources summary: table -> methods used across namespaces.
  std::map<std::string, std::set<std::string>> methods;
  for (const NetnsCapture& ns : snap.namespaces) {
    for (const SourceStatus& s : ns.sources) {
      if (s.status != "unavailable") {
        methods[s.source].insert(s.method);
      }
    }
  }
  std::string sources;
  for (const auto& [name, ms] : methods) {
    sources += (sources.empty() ? "" : ",") + name + ":";
    bool first = true;
    for (const std::string& m : ms) {
      sources += (first ? "" : "|") + m;
      first = false;
    }
  }

  // Issues, aggregated per (netns, source, kind) with the first example.
  struct Agg {
    int64_t count = 0;
    std::string example;
  };

  std::map<std::tuple<int64_t, std::string, std::string>, Agg> issues;
  uint64_t issue_total = 0;
  const auto add_issues = [&](int64_t ns_id, const std::vector<Issue>& list) {
    for (const Issue& i : list) {
      Agg& a = issues[{ns_id, i.source, i.kind}];
      if (a.count++ == 0) {
        a.example = i.example;
      }
      ++issue_total;
    }
  };
  add_issues(0, snap.issues);
  add_issues(0, snap.owners.issues);
  for (const NetnsCapture& ns : snap.namespaces) {
    add_issues(netns_id(ns.ref.inode), ns.issues);
  }

  store::Stmt ins_snap = m_db->prepare(
      "INSERT INTO snapshots (snapshot_id, host, boot_id, kernel, realtime_ns, boottime_ns, "
      "realtime_end_ns, boottime_end_ns, self_netns, euid, netns_mode, sources, sockets, issues, "
      "cpu_user_us, cpu_sys_us) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)");
  ins_snap.bind(1, sid)
      .bind(2, snap.host.hostname)
      .bind(3, snap.host.boot_id)
      .bind(4, snap.host.kernel)
      .bind(5, snap.start.realtime_ns)
      .bind(6, snap.start.boottime_ns)
      .bind(7, snap.end.realtime_ns)
      .bind(8, snap.end.boottime_ns)
      .bind(9, snap.host.self_netns)
      .bind(10, snap.host.euid)
      .bind(11, snap.netns_mode)
      .bind(12, sources)
      .bind(13, socket_count)
      .bind(14, issue_total)
      .bind(15, snap.cpu_user_us)
      .bind(16, snap.cpu_sys_us)
      .run();

  store::Stmt ins_issue = m_db->prepare(
      "INSERT INTO capture_issues (snapshot_id, netns_id, source, kind, count, example) "
      "VALUES (?1,?2,?3,?4,?5,?6)");
  for (const auto& [key, agg] : issues) {
    ins_issue.bind(1, sid);
    if (std::get<0>(key) != 0) {
      ins_issue.bind(2, std::get<0>(key));
    }
    ins_issue.bind(3, std::get<1>(key))
        .bind(4, std::get<2>(key))
        .bind(5, agg.count)
        .bind(6, agg.example)
        .run();
  }

  store::Stmt ins_ns = m_db->prepare(
      "INSERT OR IGNORE INTO snapshot_netns (snapshot_id, netns_id, found_via, name, pid, status) "
      "VALUES (?1,?2,?3,?4,?5,?6)");
  store::Stmt ins_src = m_db->prepare(
      "INSERT INTO sources (snapshot_id, netns_id, source, method, status, rows, duration_us, "
      "error) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)");
  store::Stmt ins_counter =
      m_db->prepare("INSERT OR REPLACE INTO counter_runs (first_snapshot_id, netns_id, name_id, "
                    "last_snapshot_id, value) VALUES (?1,?2,?3,?1,?4)",
                    true);
  store::Stmt ins_limit =
      m_db->prepare("INSERT OR REPLACE INTO limit_runs (first_snapshot_id, netns_id, name, "
                    "last_snapshot_id, value) VALUES (?1,?2,?3,?1,?4)");
  for (const NetnsCapture& ns : snap.namespaces) {
    const int64_t nid = netns_id(ns.ref.inode);
    ins_ns.bind(1, sid).bind(2, nid).bind(3, ns.ref.via).bind(4, ns.ref.name);
    if (ns.ref.pid) {
      ins_ns.bind(5, static_cast<int64_t>(*ns.ref.pid));
    }
    ins_ns.bind(6, ns.status).run();

    for (const SourceStatus& s : ns.sources) {
      ins_src.bind(1, sid).bind(2, nid).bind(3, s.source).bind(4, s.method).bind(5, s.status);
      ins_src.bind(6, s.rows).bind(7, s.duration_us);
      if (!s.error.empty()) {
        ins_src.bind(8, s.error);
      }
      ins_src.run();
    }
    for (const CounterRow& c : ns.counters) {
      ins_counter.bind(1, sid).bind(2, nid).bind(3, counter_name_id(c.file, c.name));
      ins_counter.bind(4, c.value).run();
    }
    for (const auto& [name, value] : ns.limits) {
      ins_limit.bind(1, sid).bind(2, nid).bind(3, name).bind(4, value).run();
    }
  }

  // One row per pid (the last one seen, as INSERT OR REPLACE did in version 2).
  std::map<int32_t, const ProcessRow*> procs;
  for (const ProcessRow& p : snap.owners.processes) {
    procs[p.pid] = &p;
  }
  store::Stmt ins_ident =
      m_db->prepare("INSERT INTO proc_ident (pid, start_ticks, ppid, uid, comm, cmdline) "
                    "VALUES (?1,?2,?3,?4,?5,?6)");
  store::Stmt ins_proc = m_db->prepare(
      "INSERT INTO proc_runs (proc_id, first_snapshot_id, last_snapshot_id, netns_id, fd_count, "
      "socket_fds, nofile_soft, nofile_hard, state) VALUES (?1,?2,?2,?3,?4,?5,?6,?7,?8)");
  for (const auto& [pid, row] : procs) {
    const ProcessRow& p = *row;
    ins_ident.bind(1, static_cast<int64_t>(p.pid)).bind(2, p.start_ticks);
    if (p.ppid) {
      ins_ident.bind(3, static_cast<int64_t>(*p.ppid));
    }
    ins_ident.bind(4, p.uid).bind(5, p.comm).bind(6, p.cmdline).run();
    ins_proc.bind(1, m_db->last_insert_rowid()).bind(2, sid);
    if (p.netns_inode) {
      ins_proc.bind(3, netns_id(*p.netns_inode));
    }
    ins_proc.bind(4, p.fd_count).bind(5, p.socket_fds);
    ins_proc.bind(6, p.nofile_soft).bind(7, p.nofile_hard);
    if (p.state) {
      ins_proc.bind(8, std::string_view(&*p.state, 1));
    }
    ins_proc.run();
  }
}

int64_t SnapshotFile::counter_name_id(const std::string& file, const std::string& name) {
  const auto key = std::make_pair(file, name);
  const auto it = m_counter_names.find(key);
  if (it != m_counter_names.end()) {
    return it->second;
  }
  store::Stmt st = m_db->prepare("INSERT INTO counter_names (file, name) VALUES (?1, ?2)", true);
  st.bind(1, file).bind(2, name).run();
  const int64_t id = m_db->last_insert_rowid();
  m_counter_names.emplace(key, id);
  return id;
}

std::string SnapshotFile::commit() {
  m_db.reset(); // closes the connection: everything is in the file now
  for (int attempt = 1; attempt < 1000; ++attempt) {
    // Built by appending: g++ 12 -O3 warns (-Wrestrict, falsely) on "-" + std::string.
    std::string final_path = m_dir;
    final_path += '/';
    final_path += m_base;
    if (attempt > 1) {
      final_path += '-';
      final_path += std::to_string(attempt);
    }
    final_path += ".sqlite";
    // Never replaces: two runs in the same second never overwrite each other.
    if (m_file.commit_as(final_path)) {
      return final_path;
    }
  }
  throw std::runtime_error("no free file name for " + m_base + " in " + m_dir);
}

} // namespace sockrewind::collect
