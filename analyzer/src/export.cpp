// export --to clickhouse: every snapshot of many files as one TabSeparated file per ClickHouse
// table. One streaming SELECT per table and file, so memory holds one file's small lookup
// tables (namespaces, addresses, extra owners) and a write buffer per table, never the series.
// The DDL and the files come from the same column lists below, so they cannot disagree.
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/export.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/assert.hpp>
#include <sockrewind/store/atomic_file.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/runs.hpp>

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace sockrewind::analyze {

namespace {

namespace fs = std::filesystem;

// How a column's SQLite value becomes a ClickHouse value.
enum class Kind {
  i64,   // Int64: every SQLite integer as it is
  u64,   // UInt64: a 64-bit unsigned kernel value stored as the same bits (cookies, counters)
  text,  // String: the bytes as they are
  netns, // UInt64: the netns_id of the file, exported as the namespace's inode
  addr,  // String: the addr_id of the file, exported as the address text (127.0.0.1, ::1)
};

// Schema 3 stores time-relative socket fields as of a run's first snapshot; the sockets view
// moves them by the CLOCK_BOOTTIME elapsed since (schema/sql/0003_compact.sql), and so does the
// export when it reads the runs.
enum class Adjust {
  none,
  countdown, // expires_ms: max(0, v - elapsed ms) while a timer runs (timer not NULL or 0)
  countup,   // ti_last_*_ms: v + elapsed ms
};

struct Col {
  std::string_view name;
  Kind kind;
  bool nullable;
  std::string_view sql; // the column of the file's table or view (and of its run tables)
  Adjust adjust = Adjust::none;
};

struct Table {
  std::string_view name;
  std::string_view from; // the file's table or view
  std::vector<Col> cols;
  std::string_view order_by; // after (host, time)
  // Schema 3: the run tables behind the view `from`, read directly (one row per run, with
  // first_snapshot_id and last_snapshot_id, every column of `cols` by the same name).
  std::string_view runs_from = {};
  // Schema 3 sockets: the runs table alone, whose ident_id names the row of the identity
  // table holding the columns of store::sock_ident_columns() (see IdentCache).
  std::string_view runs_only = {};
  std::string_view ident_table = {};
};

constexpr bool k_null = true;
constexpr bool k_not_null = false;

Col i64(std::string_view name, bool nullable) {
  return {name, Kind::i64, nullable, name};
}

Col u64(std::string_view name, bool nullable) {
  return {name, Kind::u64, nullable, name};
}

Col text(std::string_view name, bool nullable) {
  return {name, Kind::text, nullable, name};
}

// The owners table is written beside sockets, from its pid/fd and the file's extra_owners.
constexpr std::string_view k_owners = "owners";
constexpr std::string_view k_schema_table = "sockrewind_schema";

const std::vector<Table>& tables() {
  static const std::vector<Table> k_tables = [] {
    std::vector<Table> t;
    t.push_back({"snapshots",
                 "snapshots",
                 {text("kernel", k_not_null),
                  u64("realtime_end_ns", k_not_null),
                  u64("boottime_end_ns", k_not_null),
                  u64("self_netns", k_not_null),
                  i64("euid", k_not_null),
                  text("netns_mode", k_not_null),
                  text("sources", k_not_null),
                  i64("sockets", k_not_null),
                  i64("issues", k_not_null),
                  i64("cpu_user_us", k_null),
                  i64("cpu_sys_us", k_null)},
                 "boottime_ns"});
    // The sockets columns are the store's (one owner of that list); what ClickHouse needs to
    // know of each is said here: names resolved through netns and addrs, unsigned 64-bit
    // values, text, time-relative fields, and the columns the schema declares NOT NULL.
    std::vector<Col> s;
    for (const std::string_view c : store::socket_columns()) {
      const bool nullable = c != "family" && c != "type" && c != "proto" && c != "state"
                            && c != "inode" && c != "netns_id";
      if (c == "netns_id") {
        s.push_back({"netns", Kind::netns, nullable, c});
      } else if (c == "local_addr_id" || c == "remote_addr_id") {
        s.push_back({c.substr(0, c.size() - 3), Kind::addr, nullable, c});
      } else if (c == "inode" || c == "cookie" || c == "peer_inode" || c == "ti_bytes_acked"
                 || c == "ti_bytes_received") {
        s.push_back(u64(c, nullable));
      } else if (c == "path") {
        s.push_back(text(c, nullable));
      } else if (c == "expires_ms") {
        s.push_back({c, Kind::i64, nullable, c, Adjust::countdown});
      } else if (c == "ti_last_data_recv_ms" || c == "ti_last_ack_recv_ms") {
        s.push_back({c, Kind::i64, nullable, c, Adjust::countup});
      } else {
        s.push_back(i64(c, nullable));
      }
    }
    t.push_back({"sockets",
                 "sockets",
                 std::move(s),
                 "state, inode",
                 "sock_runs JOIN sock_ident USING (ident_id)",
                 "sock_runs",
                 "sock_ident"});
    t.push_back({k_owners,
                 "",
                 {{"netns", Kind::netns, k_not_null, ""},
                  u64("inode", k_not_null),
                  u64("cookie", k_null),
                  i64("pid", k_not_null),
                  i64("fd", k_null),
                  i64("first_owner", k_not_null)},
                 "pid"});
    // The processes columns are the store's too.
    std::vector<Col> p;
    for (const std::string_view c : store::process_columns()) {
      const bool nullable = c != "pid" && c != "start_ticks" && c != "comm" && c != "socket_fds";
      if (c == "netns_id") {
        p.push_back({"netns", Kind::netns, nullable, c});
      } else if (c == "comm" || c == "cmdline" || c == "state") {
        p.push_back(text(c, nullable));
      } else {
        p.push_back(i64(c, nullable));
      }
    }
    t.push_back({"processes",
                 "processes",
                 std::move(p),
                 "pid",
                 "proc_runs JOIN proc_ident USING (proc_id)"});
    t.push_back({"counters",
                 "counters",
                 {{"netns", Kind::netns, k_not_null, "netns_id"},
                  text("file", k_not_null),
                  text("name", k_not_null),
                  u64("value", k_not_null)},
                 "name",
                 "counter_runs JOIN counter_names USING (name_id)"});
    t.push_back({"limits",
                 "limits",
                 {{"netns", Kind::netns, k_not_null, "netns_id"},
                  text("name", k_not_null),
                  text("value", k_not_null)},
                 "name",
                 "limit_runs"});
    t.push_back({"capture_issues",
                 "capture_issues",
                 {{"netns", Kind::netns, k_null, "netns_id"},
                  text("source", k_not_null),
                  text("kind", k_not_null),
                  i64("count", k_not_null),
                  text("example", k_null)},
                 "source, kind"});
    return t;
  }();
  return k_tables;
}

std::string ch_type(const Col& c) {
  const char* base = c.kind == Kind::i64                            ? "Int64"
                     : c.kind == Kind::u64 || c.kind == Kind::netns ? "UInt64"
                                                                    : "String";
  return c.nullable ? std::string("Nullable(") + base + ")" : std::string(base);
}

// Writes `s` escaped as ClickHouse's TabSeparated reads it at `p` (room for 2 * s.size());
// returns the end.
char* write_tsv_escaped(char* p, std::string_view s) {
  for (const char ch : s) {
    char esc = 0;
    switch (ch) {
    case '\\':
      esc = '\\';
      break;
    case '\t':
      esc = 't';
      break;
    case '\n':
      esc = 'n';
      break;
    case '\r':
      esc = 'r';
      break;
    case '\0':
      esc = '0';
      break;
    case '\b':
      esc = 'b';
      break;
    case '\f':
      esc = 'f';
      break;
    default:
      *p++ = ch;
      continue;
    }
    *p++ = '\\';
    *p++ = esc;
  }
  return p;
}

void append_int(std::string& out, int64_t v) {
  char b[24];
  const auto r = std::to_chars(std::begin(b), std::end(b), v);
  out.append(b, static_cast<size_t>(r.ptr - b)); // (pointer, length): no iterator-range replace
}

// One output file, a store::AtomicFile in the temporary directory, shared by the workers.
class OutFile {
public:
  explicit OutFile(const std::string& path)
      : m_file(path, store::AtomicFile::Replace::never, 0644) {}

  // Appends whole rows (one worker's buffer).
  void append(std::string_view rows, size_t count) {
    const std::lock_guard<std::mutex> lock(m_mutex);
    m_file.write_all(rows);
    m_rows += count;
  }

  void commit() { m_file.commit(); }

  size_t rows() const { return m_rows; }

private:
  std::mutex m_mutex;
  store::AtomicFile m_file;
  size_t m_rows = 0;
};

// One worker's buffer for one output file, handed over in whole rows.
class Sink {
public:
  explicit Sink(OutFile& out) : m_out(out) { m_buf.reserve(k_flush + size_t{64} * 1024); }

  std::string& buf() { return m_buf; }

  void end_row() {
    m_buf += '\n';
    ++m_rows;
    if (m_buf.size() >= k_flush) {
      flush();
    }
  }

  void flush() {
    m_out.append(m_buf, m_rows);
    m_buf.clear();
    m_rows = 0;
  }

private:
  static constexpr size_t k_flush = 1 << 20;
  OutFile& m_out;
  std::string m_buf;
  size_t m_rows = 0;
};

// The temporary directory beside the output: removed unless renamed into place.
class TempDir {
public:
  explicit TempDir(const std::string& final_dir) {
    fs::path p(final_dir);
    if (!p.has_filename()) {
      p = p.parent_path();
    }
    m_final = p.string();
    m_parent = p.has_parent_path() ? p.parent_path().string() : std::string(".");
    const std::string prefix = "." + p.filename().string() + ".tmp-";
    m_path = m_parent + "/" + prefix + std::to_string(::getpid());
    remove_stale(prefix);
    if (::mkdir(m_path.c_str(), 0755) != 0) {
      throw std::system_error(errno, std::generic_category(), "cannot create " + m_path);
    }
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&&) = delete;
  TempDir& operator=(TempDir&&) = delete;

  ~TempDir() {
    if (!m_done) {
      std::error_code ec;
      fs::remove_all(m_path, ec);
    }
  }

  const std::string& path() const { return m_path; }

  // Gives the directory its final name (never replacing one) and syncs the parent.
  void commit() {
    if (::renameat2(AT_FDCWD, m_path.c_str(), AT_FDCWD, m_final.c_str(), RENAME_NOREPLACE) != 0) {
      throw std::system_error(
          errno, std::generic_category(), "cannot rename " + m_path + " to " + m_final);
    }
    m_done = true;
    const int fd = ::open(m_parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || ::fsync(fd) != 0) {
      const int err = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      throw std::system_error(err, std::generic_category(), "cannot sync " + m_parent);
    }
    ::close(fd);
  }

private:
  // Removes what killed exports of the same DIR left: "<prefix>PID" directories whose PID is
  // no longer running (a live one may be another export writing now).
  void remove_stale(const std::string& prefix) const {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(m_parent, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) != 0) {
        continue;
      }
      pid_t pid = 0;
      const char* digits = name.data() + prefix.size();
      const auto [end, err] = std::from_chars(digits, name.data() + name.size(), pid);
      if (err != std::errc() || end != name.data() + name.size() || pid <= 0 || pid == ::getpid()) {
        continue;
      }
      if (::kill(pid, 0) != 0 && errno == ESRCH && e.is_directory(ec) && !e.is_symlink(ec)) {
        fs::remove_all(e.path(), ec);
      }
    }
  }

  std::string m_final;
  std::string m_parent;
  std::string m_path;
  bool m_done = false;
};

struct StmtCloser {
  void operator()(sqlite3_stmt* s) const noexcept { sqlite3_finalize(s); }
};

using RawStmt = std::unique_ptr<sqlite3_stmt, StmtCloser>;

// One input file: its chosen snapshots (snapshot_id -> the escaped row prefix "host\tboot_id\t
// boottime_ns\trealtime_ns\t") and the CLOCK_BOOTTIME of every snapshot it has.
struct Input {
  std::string file;
  std::unordered_map<int64_t, std::string> prefix;
  std::unordered_map<int64_t, int64_t> boottime;
};

constexpr size_t k_run_col = std::numeric_limits<size_t>::max();
// What the identity cache may hold: identities, and bytes of their text.
constexpr int64_t k_max_cached_idents = int64_t{1} << 18;
constexpr size_t k_max_cached_bytes = size_t{64} << 20;

// The identity columns of a file's sockets, formatted once per identity (ident_id) instead of
// joined and formatted again for every run: worth it when a file holds several runs per
// identity (an hourly file, an archive), not for a minute file of one snapshot. Memory is
// bounded by k_max_cached_idents and k_max_cached_bytes.
class IdentCache {
public:
  void reset(int64_t min_id, size_t count, size_t columns) {
    m_min = min_id;
    m_count = count;
    m_stride = columns + 1;
    m_at.assign(count * m_stride, k_missing);
    m_text.clear();
  }

  // The offsets of identity `id`'s columns in m_text (columns + 1 of them), to fill.
  uint32_t* slot(int64_t id) {
    // ids come from the file's own min(ident_id)..max(ident_id)
    SR_ASSERT(id >= m_min && static_cast<uint64_t>(id - m_min) < m_count);
    return &m_at[static_cast<size_t>(id - m_min) * m_stride];
  }

  // The offsets of identity `id`, or nullptr when the file has none.
  const uint32_t* find(int64_t id) const {
    if (id < m_min || static_cast<uint64_t>(id - m_min) >= m_count) {
      return nullptr;
    }
    const uint32_t* at = &m_at[static_cast<size_t>(id - m_min) * m_stride];
    return at[0] == k_missing ? nullptr : at;
  }

  bool empty() const { return m_at.empty(); }

  // The bytes of all columns of the identity whose offsets are `at`.
  size_t text_bytes(const uint32_t* at) const { return at[m_stride - 1] - at[0]; }

  // Column `column` of the identity whose offsets are `at`.
  std::string_view text(const uint32_t* at, size_t column) const {
    return {m_text.data() + at[column], at[column + 1] - at[column]};
  }

  std::string m_text;

private:
  static constexpr uint32_t k_missing = std::numeric_limits<uint32_t>::max();
  int64_t m_min = 0;
  size_t m_count = 0;
  size_t m_stride = 1;
  std::vector<uint32_t> m_at;
};

class Exporter {
public:
  Exporter(const Input& in, store::Db& db, ExportOptions::IdentityCache cache)
      : m_in(in),
        m_db(db),
        m_cache(cache) {
    const int64_t version = db.query_int("PRAGMA user_version");
    m_v1 = version < 2;
    m_runs = version >= 3;
    store::Stmt ns = db.prepare("SELECT netns_id, inode FROM netns");
    while (ns.step()) {
      m_netns[ns.get_int(0)] = static_cast<uint64_t>(ns.get_int(1));
    }
    store::Stmt ad = db.prepare("SELECT addr_id, text FROM addrs");
    while (ad.step()) {
      std::string esc;
      append_tsv_escaped(esc, ad.get_text(1));
      m_addr_max = std::max(m_addr_max, esc.size());
      m_addrs[ad.get_int(0)] = std::move(esc);
    }
    store::Stmt eo = m_db.prepare("SELECT sock_id, pid, fd FROM extra_owners");
    while (eo.step()) {
      m_extra[eo.get_int(0)].emplace_back(eo.get_int(1), eo.get_int(2));
    }
  }

  bool runs() const { return m_runs; }

  // Streams `t` (and, for sockets, the owners) into `out`. Schema 3 files are read from the run
  // tables: each run is formatted once and written once per snapshot it covers, its
  // time-relative fields moved by the time elapsed since its first snapshot, exactly as the
  // view gives it; so the cost follows the runs more than the rows.
  //
  // `range`: only the runs that start in these snapshots (a part of a big file, so that one
  // file is read by several workers); nullopt: all.
  void run(const Table& t,
           Sink& out,
           Sink* owners,
           std::optional<std::pair<int64_t, int64_t>> range = std::nullopt) {
    const bool runs = m_runs && !t.runs_from.empty();
    // Schema-3 sockets: the identity columns come from the cache when it pays (the runs
    // alone are read), else from the join (in the runs' order, which is the identities' in a
    // file written snapshot by snapshot, SQLite's seek is a step).
    const bool cached = runs && !t.ident_table.empty() && cache_idents(t);
    if (!cached) {
      m_slot.assign(t.cols.size(), k_run_col);
    }
    std::string sql = runs ? "SELECT first_snapshot_id, last_snapshot_id" : "SELECT snapshot_id";
    std::vector<size_t> from_raw; // the columns of `t` read from this statement
    for (size_t i = 0; i < t.cols.size(); ++i) {
      const Col& c = t.cols[i];
      sql += ", ";
      const bool none = (m_v1 && t.name == "processes" && c.name == "state")
                        || (cached && m_slot[i] != k_run_col);
      sql += none ? "NULL" : c.sql;
      if (m_slot[i] == k_run_col) {
        from_raw.push_back(i);
      }
    }
    if (owners != nullptr) {
      sql += runs ? ", run_id" : ", sock_id";
    }
    from_raw.push_back(t.cols.size()); // the key
    set_room(t, cached);
    if (cached) {
      sql += ", ident_id FROM ";
      sql += t.runs_only;
    } else {
      sql += " FROM ";
      sql += runs ? t.runs_from : t.from;
    }
    if (range) {
      SR_ASSERT(runs);
      sql += " WHERE first_snapshot_id BETWEEN " + std::to_string(range->first) + " AND "
             + std::to_string(range->second);
    }
    const RawStmt st(prepare(sql));
    sqlite3_stmt* raw = st.get();
    const size_t first_col = runs ? 2 : 1;
    const size_t ncols = t.cols.size();
    const int ident_col = static_cast<int>(first_col + ncols + (owners != nullptr ? 1 : 0));
    std::vector<sqlite3_value*> v(ncols + 1);
    size_t c_timer = ncols;
    size_t c_netns = ncols;
    size_t c_inode = ncols;
    size_t c_cookie = ncols;
    size_t c_pid = ncols;
    size_t c_fd = ncols;
    for (size_t i = 0; i < ncols; ++i) {
      const std::string_view n = t.cols[i].name;
      c_timer = n == "timer" ? i : c_timer;
      c_netns = n == "netns" ? i : c_netns;
      c_inode = n == "inode" ? i : c_inode;
      c_cookie = n == "cookie" ? i : c_cookie;
      c_pid = n == "pid" ? i : c_pid;
      c_fd = n == "fd" ? i : c_fd;
    }
    std::string body;   // the row after the prefix, as in the run's first snapshot
    std::string holder; // the owners row of the first owner after the prefix ("" if none)
    std::string ident;  // netns, inode and cookie with a tab after each (extra owners' rows)

    std::vector<Moved> moved;
    // Rows come grouped by snapshot: the last one looked up is most often the next one's.
    bool memo_set = false;
    int64_t memo_id = 0;
    const std::string* memo_pre = nullptr;
    int rc = 0;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      const uint32_t* idat = nullptr;
      if (cached) {
        // As the view's join: a run without its identity is no row.
        idat = m_ident.find(sqlite3_column_int64(raw, ident_col));
        if (idat == nullptr) {
          continue;
        }
      }
      for (const size_t i : from_raw) {
        v[i] = sqlite3_column_value(raw, static_cast<int>(first_col + i));
      }
      const int64_t first = sqlite3_column_int64(raw, 0);
      int64_t last = first;
      if (runs) {
        // The view's rule: snapshot N sees the runs that start in N's block of 64.
        last = store::run_seen_until(first, sqlite3_column_int64(raw, 1));
      }
      const int64_t key = owners == nullptr ? 0 : sqlite3_value_int64(v[ncols]);
      const bool once = last == first;
      bool formatted = false;
      for (int64_t id = first; id <= last; ++id) {
        if (!memo_set || memo_id != id) {
          const auto it = m_in.prefix.find(id);
          memo_set = true;
          memo_id = id;
          memo_pre = it == m_in.prefix.end() ? nullptr : &it->second;
        }
        if (memo_pre == nullptr) {
          continue; // another host, or a snapshot an earlier file had
        }
        int64_t elapsed_ms = 0;
        if (id != first) {
          const auto a = m_in.boottime.find(first);
          const auto b = m_in.boottime.find(id);
          if (a == m_in.boottime.end() || b == m_in.boottime.end()) {
            continue; // the view's join finds no such snapshot
          }
          elapsed_ms = store::run_elapsed_ms(a->second, b->second);
        }
        if (!formatted) {
          formatted = true;
          if (!once) {
            body.clear();
            format_row(t, v, idat, body, &moved);
          }
          if (owners != nullptr) {
            format_holder(t, v, idat, {c_netns, c_inode, c_cookie, c_pid, c_fd}, holder, ident);
          }
        }
        const std::string& pre = *memo_pre;
        std::string& b = out.buf();
        b += pre;
        if (once) {
          format_row(t, v, idat, b, nullptr); // a row of its own: formatted where it goes
        } else if (elapsed_ms == 0 || moved.empty()) {
          b += body;
        } else {
          size_t at = 0;
          for (const Moved& m : moved) {
            b.append(body, at, m.begin - at);
            put_adjusted(b, v[m.col], t.cols[m.col], elapsed_ms, v[c_timer]);
            at = m.end;
          }
          b.append(body, at, std::string::npos);
        }
        out.end_row();
        if (owners == nullptr || holder.empty()) {
          continue;
        }
        owners->buf() += pre;
        owners->buf() += holder;
        owners->end_row();
        if (m_extra.empty()) {
          continue;
        }
        const auto ex = m_extra.find(runs ? store::run_sock_id(key, id) : key);
        if (ex == m_extra.end()) {
          continue;
        }
        for (const auto& [pid, fd] : ex->second) {
          std::string& o = owners->buf();
          o += pre;
          o += ident;
          append_int(o, pid);
          o += '\t';
          append_int(o, fd);
          o.append("\t0", 2);
          owners->end_row();
        }
      }
    }
    check_done(rc);
  }

private:
  // A time-relative column in a run's formatted row.
  struct Moved {
    size_t col = 0;   // index into Table::cols
    size_t begin = 0; // its text in the row
    size_t end = 0;
  };

  // Appends the row's columns to `out`; `moved` (when given) gets where each time-relative
  // column's text is. The row is written in place: `out` grows once by the most these values
  // can take (a number 20 characters, an escaped text twice its bytes, an address its text).
  // `idat`: the row's identity in m_ident (its columns are NULL in `v`), or nullptr.
  void format_row(const Table& t,
                  const std::vector<sqlite3_value*>& v,
                  const uint32_t* idat,
                  std::string& out,
                  std::vector<Moved>* moved) const {
    if (moved != nullptr) {
      moved->clear();
    }
    size_t room = m_room_fixed;
    for (const size_t i : m_room_texts) {
      room += bound(v[i], t.cols[i]);
    }
    if (idat != nullptr) {
      room += m_ident.text_bytes(idat);
    }
    const size_t old = out.size();
    out.resize(old + room);
    char* const base = out.data();
    char* p = base + old;
    for (size_t i = 0; i < t.cols.size(); ++i) {
      if (i != 0) {
        *p++ = '\t';
      }
      char* const begin = p;
      if (idat != nullptr && m_slot[i] != k_run_col) {
        const std::string_view id = m_ident.text(idat, m_slot[i]);
        p = std::copy(id.begin(), id.end(), p);
        continue; // identity columns are never time-relative
      }
      p = put(p, v[i], t.cols[i]);
      if (moved != nullptr && t.cols[i].adjust != Adjust::none) {
        moved->push_back({i, static_cast<size_t>(begin - base), static_cast<size_t>(p - base)});
      }
    }
    out.resize(static_cast<size_t>(p - base));
  }

  // The owners row of a socket's first owner (empty when it has none) and the identity part
  // every owner's row starts with. `c`: the columns netns, inode, cookie, pid, fd.
  void format_holder(const Table& t,
                     const std::vector<sqlite3_value*>& v,
                     const uint32_t* idat,
                     const std::array<size_t, 5>& c,
                     std::string& holder,
                     std::string& ident) const {
    ident.clear();
    holder.clear();
    for (size_t k = 0; k < 3; ++k) {
      if (idat != nullptr && m_slot[c[k]] != k_run_col) {
        ident += m_ident.text(idat, m_slot[c[k]]);
        ident += '\t';
        continue;
      }
      const size_t old = ident.size();
      ident.resize(old + bound(v[c[k]], t.cols[c[k]]) + 1);
      char* p = put(ident.data() + old, v[c[k]], t.cols[c[k]]);
      *p++ = '\t';
      ident.resize(static_cast<size_t>(p - ident.data()));
    }
    if (sqlite3_value_type(v[c[3]]) == SQLITE_NULL) {
      return;
    }
    holder = ident;
    append_int(holder, sqlite3_value_int64(v[c[3]]));
    holder += '\t';
    if (sqlite3_value_type(v[c[4]]) == SQLITE_NULL) {
      holder.append("\\N", 2);
    } else {
      append_int(holder, sqlite3_value_int64(v[c[4]]));
    }
    holder.append("\t1", 2);
  }

  // Reads and formats the identity of every socket of the file into m_ident (and m_slot) when
  // the file's rows number at least twice its identities and these fit in bounded memory;
  // false otherwise (the runs are then joined with their identity). Once per Exporter, which
  // serves every part of its file a worker takes.
  bool cache_idents(const Table& t) {
    set_ident_cols(t);
    if (m_ident_tried) {
      return !m_ident.empty(); // a later part of the same file: built once
    }
    m_ident_tried = true;
    m_ident = IdentCache();
    const std::vector<size_t>& cols = m_ident_cols;
    const std::string ident_table(t.ident_table);
    const int64_t lo = m_db.query_int("SELECT ifnull(min(ident_id), 0) FROM " + ident_table);
    const int64_t hi = m_db.query_int("SELECT ifnull(max(ident_id), -1) FROM " + ident_table);
    const int64_t rows = m_db.query_int("SELECT ifnull(sum(sockets), 0) FROM snapshots");
    using Cache = ExportOptions::IdentityCache;
    if (m_cache == Cache::never || lo < 0 || hi < lo || hi - lo >= k_max_cached_idents
        || (m_cache == Cache::automatic && rows / 2 < hi - lo + 1)) {
      return false;
    }
    const RawStmt st(prepare(ident_sql(t, "")));
    sqlite3_stmt* raw = st.get();
    m_ident.reset(lo, static_cast<size_t>(hi - lo + 1), cols.size());
    std::string& text = m_ident.m_text;
    int rc = 0;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      uint32_t* at = m_ident.slot(sqlite3_column_int64(raw, 0));
      for (size_t j = 0; j < cols.size(); ++j) {
        sqlite3_value* x = sqlite3_column_value(raw, static_cast<int>(j + 1));
        const Col& c = t.cols[cols[j]];
        at[j] = static_cast<uint32_t>(text.size());
        text.resize(text.size() + bound(x, c));
        char* const p = put(text.data() + at[j], x, c);
        text.resize(static_cast<size_t>(p - text.data()));
      }
      at[cols.size()] = static_cast<uint32_t>(text.size());
      if (text.size() > k_max_cached_bytes) {
        m_ident = IdentCache();
        return false;
      }
    }
    check_done(rc);
    return true;
  }

  // m_slot and m_ident_cols: which columns of `t` are the identity table's.
  void set_ident_cols(const Table& t) {
    m_slot.assign(t.cols.size(), k_run_col);
    m_ident_cols.clear();
    const auto ident_cols = store::sock_ident_columns();
    for (size_t i = 0; i < t.cols.size(); ++i) {
      if (std::find(ident_cols.begin(), ident_cols.end(), t.cols[i].sql) != ident_cols.end()) {
        m_slot[i] = m_ident_cols.size();
        m_ident_cols.push_back(i);
      }
    }
  }

  // SELECT ident_id and the identity columns, in ident_id order, `where` before the order.
  std::string ident_sql(const Table& t, std::string_view where) const {
    std::string sql = "SELECT ident_id";
    for (const size_t i : m_ident_cols) {
      sql += ", ";
      sql += t.cols[i].sql;
    }
    sql += " FROM ";
    sql += t.ident_table;
    sql += where;
    sql += " ORDER BY ident_id";
    return sql;
  }

  // What format_row() sizes a row by without looking at it: the tabs and the numbers' and
  // addresses' most characters (the identity's when cached are added per row), and which
  // columns are text, sized per row.
  void set_room(const Table& t, bool cached) {
    m_room_fixed = t.cols.size();
    m_room_texts.clear();
    for (size_t i = 0; i < t.cols.size(); ++i) {
      if (cached && m_slot[i] != k_run_col) {
        continue;
      }
      if (t.cols[i].kind == Kind::text) {
        m_room_texts.push_back(i);
      } else {
        m_room_fixed += t.cols[i].kind == Kind::addr ? std::max<size_t>(m_addr_max, 2) : 20;
      }
    }
  }

  RawStmt prepare(const std::string& sql) const {
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(m_db.handle(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      throw LoadError(m_in.file + ": " + sqlite3_errmsg(m_db.handle()));
    }
    return RawStmt(raw);
  }

  void check_done(int rc) const {
    if (rc != SQLITE_DONE) {
      throw LoadError(m_in.file + ": " + sqlite3_errmsg(m_db.handle()));
    }
  }

  // The most characters put() writes for `x`.
  size_t bound(sqlite3_value* x, const Col& c) const {
    if (c.kind == Kind::text) {
      return 2 * static_cast<size_t>(sqlite3_value_bytes(x)) + 2;
    }
    return c.kind == Kind::addr ? std::max<size_t>(m_addr_max, 2) : 20;
  }

  // Writes `x` as ClickHouse reads column `c` at `p` (which has room for bound(x, c)); returns
  // the end.
  char* put(char* p, sqlite3_value* x, const Col& c) const {
    if (sqlite3_value_type(x) == SQLITE_NULL) {
      if (!c.nullable) {
        throw LoadError(m_in.file + ": NULL in " + std::string(c.sql)
                        + ", which is NOT NULL: not a file sockrewind wrote");
      }
      p[0] = '\\';
      p[1] = 'N';
      return p + 2;
    }
    switch (c.kind) {
    case Kind::i64:
      return std::to_chars(p, p + 20, sqlite3_value_int64(x)).ptr;
    case Kind::u64:
      return std::to_chars(p, p + 20, static_cast<uint64_t>(sqlite3_value_int64(x))).ptr;
    case Kind::text: {
      const auto* t = reinterpret_cast<const char*>(sqlite3_value_text(x));
      const auto n = static_cast<size_t>(sqlite3_value_bytes(x));
      return write_tsv_escaped(p, std::string_view(t == nullptr ? "" : t, n));
    }
    case Kind::netns: {
      const auto it = m_netns.find(sqlite3_value_int64(x));
      if (it == m_netns.end()) {
        throw LoadError(m_in.file + ": a row names a network namespace the file does not have");
      }
      return std::to_chars(p, p + 20, it->second).ptr;
    }
    case Kind::addr: {
      const auto it = m_addrs.find(sqlite3_value_int64(x));
      if (it == m_addrs.end()) {
        throw LoadError(m_in.file + ": a socket names an address the file does not have");
      }
      return std::copy(it->second.begin(), it->second.end(), p);
    }
    }
    return p;
  }

  // A time-relative value `elapsed_ms` after its run's first snapshot, as the view computes it.
  void put_adjusted(std::string& b,
                    sqlite3_value* x,
                    const Col& c,
                    int64_t elapsed_ms,
                    sqlite3_value* timer) const {
    if (sqlite3_value_type(x) == SQLITE_NULL) {
      b.append("\\N", 2);
      return;
    }
    const int64_t value = sqlite3_value_int64(x);
    if (c.adjust == Adjust::countdown) {
      const bool running =
          sqlite3_value_type(timer) != SQLITE_NULL && sqlite3_value_int64(timer) != 0;
      append_int(b, store::run_expires_ms(value, running, elapsed_ms));
      return;
    }
    int64_t sum = 0;
    if (!store::run_since_ms(value, elapsed_ms, sum)) {
      throw LoadError(m_in.file + ": " + std::string(c.sql) + " out of range");
    }
    append_int(b, sum);
  }

  const Input& m_in;
  store::Db& m_db;
  ExportOptions::IdentityCache m_cache;
  bool m_v1 = false;
  bool m_runs = false;
  std::unordered_map<int64_t, uint64_t> m_netns;
  std::unordered_map<int64_t, std::string> m_addrs;
  size_t m_addr_max = 0; // the longest escaped address text
  std::unordered_map<int64_t, std::vector<std::pair<int64_t, int64_t>>> m_extra;
  // The sockets' identity, formatted once per socket (cache_idents); m_slot: per column of the
  // table, its index among the identity's columns, k_run_col for a column of the runs.
  IdentCache m_ident;
  bool m_ident_tried = false;
  std::vector<size_t> m_slot;
  std::vector<size_t> m_ident_cols; // the columns of m_slot's identity, in its order
  size_t m_room_fixed = 0;          // set_room()
  std::vector<size_t> m_room_texts;
};

// One input file open in a worker: its connection and its Exporter.
struct OpenInput {
  OpenInput(size_t index, const Input& in, ExportOptions::IdentityCache cache)
      : input(index),
        db(open_validated(in.file)),
        ex(in, db, cache) {}

  size_t input;
  store::Db db;
  Exporter ex;
};

[[noreturn]] void throw_output_error(const std::system_error& e) {
  throw LoadError(std::string("export: ") + e.what());
}

} // namespace

void append_tsv_escaped(std::string& out, std::string_view s) {
  const size_t old = out.size();
  out.resize(old + 2 * s.size());
  out.resize(static_cast<size_t>(write_tsv_escaped(out.data() + old, s) - out.data()));
}

std::vector<std::string> clickhouse_tables() {
  std::vector<std::string> out{std::string(k_schema_table)};
  for (const Table& t : tables()) {
    out.emplace_back(t.name);
  }
  return out;
}

std::string clickhouse_ddl() {
  const std::string v = std::to_string(k_clickhouse_schema_version);
  std::string out = "-- sockrewind ClickHouse schema " + v
                    + " (sockrewind-analyze export --to clickhouse --ddl; ClickHouse 18.16+)\n"
                      "-- Every data table starts with the snapshot: host, boot_id, boottime_ns "
                      "(CLOCK_BOOTTIME) and realtime_ns (CLOCK_REALTIME), exact\n"
                      "-- nanoseconds; `time` (UTC seconds) is derived from realtime_ns for "
                      "partitions and ranges. Kernel u64 values (cookies, counters,\n"
                      "-- inodes) are UInt64, other integers Int64, addresses text; Nullable "
                      "where the source may not have provided a value.\n";
  out += "CREATE TABLE IF NOT EXISTS sockrewind_schema (version UInt32, writer String) "
         "ENGINE = TinyLog;\n";
  for (const Table& t : tables()) {
    out += "CREATE TABLE IF NOT EXISTS " + std::string(t.name)
           + " (\n  host String,\n  boot_id String,\n  boottime_ns UInt64,\n  realtime_ns "
             "UInt64,\n  time DateTime MATERIALIZED toDateTime(intDiv(realtime_ns, "
             "1000000000))";
    for (const Col& c : t.cols) {
      out += ",\n  " + std::string(c.name) + " " + ch_type(c);
    }
    out += "\n) ENGINE = MergeTree() PARTITION BY toDate(time) ORDER BY (host, time, "
           + std::string(t.order_by) + ");\n";
  }
  return out;
}

ExportResult write_export(const ExportOptions& opts) {
  ExportResult result;
  // Every input is validated and indexed before anything is written.
  std::vector<Input> inputs;
  std::set<std::tuple<std::string, std::string, int64_t>> seen;
  for (const std::string& file : opts.paths) {
    Input in{file, {}, {}};
    for (const SnapshotInfo& s : load_snapshot_index(file)) {
      in.boottime.emplace(s.snapshot_id, s.boottime_ns);
      if (opts.host && s.host != *opts.host) {
        continue;
      }
      if (!seen.emplace(s.host, s.boot_id, s.boottime_ns).second) {
        ++result.duplicates;
        continue;
      }
      std::string p;
      append_tsv_escaped(p, s.host);
      p += '\t';
      append_tsv_escaped(p, s.boot_id);
      p += '\t';
      append_int(p, s.boottime_ns);
      p += '\t';
      append_int(p, s.realtime_ns);
      p += '\t';
      in.prefix.emplace(s.snapshot_id, std::move(p));
    }
    result.snapshots += in.prefix.size();
    inputs.push_back(std::move(in));
  }
  if (result.snapshots == 0) {
    if (opts.host) {
      throw UsageError("export: no snapshot of host " + *opts.host);
    }
    require_snapshots(opts.paths, 0);
  }
  std::error_code ec;
  if (fs::exists(fs::symlink_status(opts.out, ec))) {
    throw UsageError("export: " + opts.out + " exists; not replacing it");
  }

  try {
    TempDir dir(opts.out);
    std::map<std::string, std::unique_ptr<OutFile>> files;
    for (const std::string& name : clickhouse_tables()) {
      files[name] = std::make_unique<OutFile>(dir.path() + "/" + name + ".tsv");
    }
    {
      Sink schema(*files.at(std::string(k_schema_table)));
      append_int(schema.buf(), k_clickhouse_schema_version);
      schema.buf() += "\tsockrewind-analyze " SOCKREWIND_VERSION;
      schema.end_row();
      schema.flush();
    }
    // Files are exported in parallel, each its own SQLite connection and buffers; rows of one
    // part stay together in whole buffers, the order of files in the output is not kept. A
    // schema-3 file is split into parts by snapshot when there are fewer files than workers can
    // share (its sockets, by the first snapshot of their runs; the other tables with part 0).
    const size_t n_jobs =
        std::max<size_t>(1, std::min<size_t>(opts.jobs, std::thread::hardware_concurrency()));

    struct Part {
      size_t input = 0;
      size_t index = 0; // 0: the file's first part, which also exports its other tables
      std::optional<std::pair<int64_t, int64_t>> range;
    };

    std::vector<Part> parts;
    for (size_t i = 0; i < inputs.size(); ++i) {
      const Input& in = inputs[i];
      if (in.prefix.empty()) {
        continue;
      }
      const size_t split =
          std::min(in.boottime.size(), (2 * n_jobs + inputs.size() - 1) / inputs.size());
      if (split <= 1) {
        parts.push_back({i, 0, std::nullopt});
        continue;
      }
      std::vector<int64_t> ids;
      for (const auto& [id, boottime] : in.boottime) {
        ids.push_back(id);
      }
      std::sort(ids.begin(), ids.end());
      for (size_t k = 0; k < split; ++k) {
        const size_t lo = ids.size() * k / split;
        const size_t hi = ids.size() * (k + 1) / split;
        if (lo < hi) {
          parts.push_back({i, k, std::make_pair(ids[lo], ids[hi - 1])});
        }
      }
    }
    std::atomic<size_t> next{0};
    std::atomic<size_t> done_files{0};
    std::mutex error_mutex;
    std::exception_ptr error;
    const auto worker = [&] {
      try {
        std::map<std::string_view, std::unique_ptr<Sink>> sinks;
        for (const auto& [name, f] : files) {
          sinks[name] = std::make_unique<Sink>(*f);
        }
        std::unique_ptr<OpenInput> open;
        for (size_t p = next++; p < parts.size(); p = next++) {
          const Part& part = parts[p];
          const Input& in = inputs[part.input];
          {
            const std::lock_guard<std::mutex> lock(error_mutex);
            if (error) {
              return;
            }
          }
          done_files += part.index == 0 ? 1 : 0;
          try {
            // The parts of one file a worker takes share its connection and lookups.
            if (!open || open->input != part.input) {
              open.reset();
              open = std::make_unique<OpenInput>(part.input, in, opts.identity_cache);
            }
            Exporter& ex = open->ex;
            // A file of an older schema (no runs) is read whole, by its part 0.
            const bool whole = !part.range || !ex.runs();
            if (!whole || part.index == 0) {
              for (const Table& t : tables()) {
                if (t.name == "sockets") {
                  ex.run(t,
                         *sinks.at(t.name),
                         sinks.at(k_owners).get(),
                         whole ? std::nullopt : part.range);
                } else if (t.name != k_owners && part.index == 0) {
                  ex.run(t, *sinks.at(t.name), nullptr);
                }
              }
            }
          } catch (const store::DbError& e) {
            throw read_error(in.file, e);
          }
        }
        for (auto& [name, sink] : sinks) {
          sink->flush();
        }
      } catch (...) {
        const std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) {
          error = std::current_exception();
        }
      }
    };
    std::vector<std::thread> threads;
    for (size_t j = 1; j < std::min(n_jobs, parts.size()); ++j) {
      threads.emplace_back(worker);
    }
    worker();
    for (std::thread& th : threads) {
      th.join();
    }
    if (error) {
      std::rethrow_exception(error);
    }
    result.files = done_files;
    for (auto& [name, f] : files) {
      f->commit();
      result.rows[name] = f->rows();
    }
    dir.commit();
  } catch (const std::system_error& e) {
    throw_output_error(e);
  }
  result.dir = opts.out;
  return result;
}

} // namespace sockrewind::analyze
