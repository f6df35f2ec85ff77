// export --to clickhouse: every snapshot of many files as one TabSeparated file per ClickHouse
// table. One streaming SELECT per table and file, so memory holds one file's small lookup
// tables (namespaces, addresses, extra owners) and a write buffer per table, never the series.
// The DDL and the files come from the same column lists below, so they cannot disagree.
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/export.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/store/atomic_file.hpp>
#include <sockrewind/store/db.hpp>

#include <sqlite3.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>
#include <system_error>
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

struct Col {
  std::string_view name;
  Kind kind;
  bool nullable;
  std::string_view sql; // the expression over the file's table or view
};

struct Table {
  std::string_view name;
  std::string_view from; // the file's table or view
  std::vector<Col> cols;
  std::string_view order_by; // after (host, time)
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
    std::vector<Col> s{{"netns", Kind::netns, k_not_null, "netns_id"},
                       i64("family", k_not_null),
                       i64("type", k_not_null),
                       i64("proto", k_not_null),
                       i64("state", k_not_null),
                       {"local_addr", Kind::addr, k_null, "local_addr_id"},
                       i64("local_port", k_null),
                       {"remote_addr", Kind::addr, k_null, "remote_addr_id"},
                       i64("remote_port", k_null),
                       i64("rx_queue", k_null),
                       i64("tx_queue", k_null),
                       u64("inode", k_not_null),
                       u64("cookie", k_null),
                       i64("uid", k_null),
                       i64("timer", k_null),
                       i64("expires_ms", k_null),
                       i64("retrans", k_null),
                       i64("shutdown", k_null),
                       i64("tos", k_null)};
    for (const std::string_view c : {"skm_rmem_alloc",
                                     "skm_rcvbuf",
                                     "skm_wmem_alloc",
                                     "skm_sndbuf",
                                     "skm_fwd_alloc",
                                     "skm_wmem_queued",
                                     "skm_optmem",
                                     "skm_backlog",
                                     "skm_drops"}) {
      s.push_back(i64(c, k_null));
    }
    s.push_back(text("path", k_null));
    s.push_back(u64("peer_inode", k_null));
    for (const std::string_view c : {"ti_rto_us",
                                     "ti_rtt_us",
                                     "ti_rttvar_us",
                                     "ti_snd_cwnd",
                                     "ti_unacked",
                                     "ti_backoff",
                                     "ti_probes",
                                     "ti_total_retrans",
                                     "ti_last_data_recv_ms",
                                     "ti_last_ack_recv_ms"}) {
      s.push_back(i64(c, k_null));
    }
    s.push_back(u64("ti_bytes_acked", k_null));
    s.push_back(u64("ti_bytes_received", k_null));
    for (const std::string_view c :
         {"ti_segs_out", "ti_notsent_bytes", "ti_snd_wnd", "pid", "fd"}) {
      s.push_back(i64(c, k_null));
    }
    t.push_back({"sockets", "sockets", std::move(s), "state, inode"});
    t.push_back({k_owners,
                 "",
                 {{"netns", Kind::netns, k_not_null, ""},
                  u64("inode", k_not_null),
                  u64("cookie", k_null),
                  i64("pid", k_not_null),
                  i64("fd", k_null),
                  i64("first_owner", k_not_null)},
                 "pid"});
    t.push_back({"processes",
                 "processes",
                 {i64("pid", k_not_null),
                  i64("start_ticks", k_not_null),
                  i64("ppid", k_null),
                  i64("uid", k_null),
                  {"netns", Kind::netns, k_null, "netns_id"},
                  text("comm", k_not_null),
                  text("cmdline", k_null),
                  i64("fd_count", k_null),
                  i64("socket_fds", k_not_null),
                  i64("nofile_soft", k_null),
                  i64("nofile_hard", k_null),
                  text("state", k_null)},
                 "pid"});
    t.push_back({"counters",
                 "counters",
                 {{"netns", Kind::netns, k_not_null, "netns_id"},
                  text("file", k_not_null),
                  text("name", k_not_null),
                  u64("value", k_not_null)},
                 "name"});
    t.push_back({"limits",
                 "limits",
                 {{"netns", Kind::netns, k_not_null, "netns_id"},
                  text("name", k_not_null),
                  text("value", k_not_null)},
                 "name"});
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

void append_int(std::string& out, int64_t v) {
  char b[24];
  const auto r = std::to_chars(std::begin(b), std::end(b), v);
  out.append(b, r.ptr);
}

void append_uint(std::string& out, uint64_t v) {
  char b[24];
  const auto r = std::to_chars(std::begin(b), std::end(b), v);
  out.append(b, r.ptr);
}

// One output file: a buffer written to a store::AtomicFile in the temporary directory.
class Sink {
public:
  explicit Sink(const std::string& path) : m_file(path, store::AtomicFile::Replace::never, 0644) {
    m_buf.reserve(k_flush + 64 * 1024);
  }

  std::string& buf() { return m_buf; }

  void end_row() {
    m_buf += '\n';
    ++m_rows;
    if (m_buf.size() >= k_flush) {
      flush();
    }
  }

  void flush() {
    m_file.write_all(m_buf);
    m_buf.clear();
  }

  void commit() {
    flush();
    m_file.commit();
  }

  size_t rows() const { return m_rows; }

private:
  static constexpr size_t k_flush = 1 << 20;
  store::AtomicFile m_file;
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
    m_path = m_parent + "/." + p.filename().string() + ".tmp-" + std::to_string(::getpid());
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
// boottime_ns\trealtime_ns\t") and its lookup tables.
struct Input {
  std::string file;
  std::unordered_map<int64_t, std::string> prefix;
};

class Exporter {
public:
  Exporter(const Input& in, store::Db& db) : m_in(in), m_db(db) {
    const int64_t version = db.query_int("PRAGMA user_version");
    m_v1 = version < 2;
    store::Stmt ns = db.prepare("SELECT netns_id, inode FROM netns");
    while (ns.step()) {
      m_netns[ns.get_int(0)] = static_cast<uint64_t>(ns.get_int(1));
    }
    store::Stmt ad = db.prepare("SELECT addr_id, text FROM addrs");
    while (ad.step()) {
      std::string esc;
      append_tsv_escaped(esc, ad.get_text(1));
      m_addrs[ad.get_int(0)] = std::move(esc);
    }
  }

  void load_extra_owners() {
    store::Stmt eo = m_db.prepare("SELECT sock_id, pid, fd FROM extra_owners");
    while (eo.step()) {
      m_extra[eo.get_int(0)].emplace_back(eo.get_int(1), eo.get_int(2));
    }
  }

  // Streams `t` (and, for sockets, the owners) into `out`.
  void run(const Table& t, Sink& out, Sink* owners) {
    std::string sql = "SELECT snapshot_id";
    for (const Col& c : t.cols) {
      sql += ", ";
      sql += m_v1 && t.name == "processes" && c.name == "state" ? "NULL" : c.sql;
    }
    if (owners != nullptr) {
      sql += ", sock_id";
    }
    sql += " FROM ";
    sql += t.from;
    sqlite3_stmt* raw = nullptr;
    if (sqlite3_prepare_v2(m_db.handle(), sql.c_str(), -1, &raw, nullptr) != SQLITE_OK) {
      throw LoadError(m_in.file + ": " + sqlite3_errmsg(m_db.handle()));
    }
    const RawStmt st(raw);
    // Owners come from these columns of the sockets row.
    int c_netns = -1;
    int c_inode = -1;
    int c_cookie = -1;
    int c_pid = -1;
    int c_fd = -1;
    for (size_t i = 0; i < t.cols.size(); ++i) {
      const std::string_view n = t.cols[i].name;
      const int idx = static_cast<int>(i) + 1;
      c_netns = n == "netns" ? idx : c_netns;
      c_inode = n == "inode" ? idx : c_inode;
      c_cookie = n == "cookie" ? idx : c_cookie;
      c_pid = n == "pid" ? idx : c_pid;
      c_fd = n == "fd" ? idx : c_fd;
    }
    const int c_sock_id = static_cast<int>(t.cols.size()) + 1;
    int64_t last_id = INT64_MIN;
    const std::string* pre = nullptr;
    int rc = 0;
    while ((rc = sqlite3_step(raw)) == SQLITE_ROW) {
      const int64_t id = sqlite3_column_int64(raw, 0);
      if (id != last_id) {
        const auto it = m_in.prefix.find(id);
        pre = it == m_in.prefix.end() ? nullptr : &it->second;
        last_id = id;
      }
      if (pre == nullptr) {
        continue; // another host, or a snapshot an earlier file had
      }
      std::string& b = out.buf();
      b += *pre;
      for (size_t i = 0; i < t.cols.size(); ++i) {
        if (i != 0) {
          b += '\t';
        }
        put(b, raw, static_cast<int>(i) + 1, t.cols[i]);
      }
      out.end_row();
      if (owners != nullptr && sqlite3_column_type(raw, c_pid) != SQLITE_NULL) {
        const auto owner = [&](int64_t pid, const std::optional<int64_t>& fd, bool first) {
          std::string& o = owners->buf();
          o += *pre;
          put(o, raw, c_netns, t.cols[static_cast<size_t>(c_netns - 1)]);
          o += '\t';
          put(o, raw, c_inode, t.cols[static_cast<size_t>(c_inode - 1)]);
          o += '\t';
          put(o, raw, c_cookie, t.cols[static_cast<size_t>(c_cookie - 1)]);
          o += '\t';
          append_int(o, pid);
          o += '\t';
          if (fd) {
            append_int(o, *fd);
          } else {
            o += "\\N";
          }
          o += first ? "\t1" : "\t0";
          owners->end_row();
        };
        owner(sqlite3_column_int64(raw, c_pid),
              sqlite3_column_type(raw, c_fd) == SQLITE_NULL
                  ? std::nullopt
                  : std::optional<int64_t>(sqlite3_column_int64(raw, c_fd)),
              true);
        if (!m_extra.empty()) {
          const auto it = m_extra.find(sqlite3_column_int64(raw, c_sock_id));
          if (it != m_extra.end()) {
            for (const auto& [pid, fd] : it->second) {
              owner(pid, fd, false);
            }
          }
        }
      }
    }
    if (rc != SQLITE_DONE) {
      throw LoadError(m_in.file + ": " + sqlite3_errmsg(m_db.handle()));
    }
  }

private:
  void put(std::string& b, sqlite3_stmt* st, int i, const Col& c) const {
    if (sqlite3_column_type(st, i) == SQLITE_NULL) {
      if (!c.nullable) {
        throw LoadError(m_in.file + ": NULL in " + std::string(c.sql)
                        + ", which is NOT NULL: not a file sockrewind wrote");
      }
      b += "\\N";
      return;
    }
    switch (c.kind) {
    case Kind::i64:
      append_int(b, sqlite3_column_int64(st, i));
      return;
    case Kind::u64:
      append_uint(b, static_cast<uint64_t>(sqlite3_column_int64(st, i)));
      return;
    case Kind::text: {
      const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
      const auto n = static_cast<size_t>(sqlite3_column_bytes(st, i));
      append_tsv_escaped(b, std::string_view(p == nullptr ? "" : p, n));
      return;
    }
    case Kind::netns: {
      const auto it = m_netns.find(sqlite3_column_int64(st, i));
      if (it == m_netns.end()) {
        throw LoadError(m_in.file + ": a row names a network namespace the file does not have");
      }
      append_uint(b, it->second);
      return;
    }
    case Kind::addr: {
      const auto it = m_addrs.find(sqlite3_column_int64(st, i));
      if (it == m_addrs.end()) {
        throw LoadError(m_in.file + ": a socket names an address the file does not have");
      }
      b += it->second;
      return;
    }
    }
  }

  const Input& m_in;
  store::Db& m_db;
  bool m_v1 = false;
  std::unordered_map<int64_t, uint64_t> m_netns;
  std::unordered_map<int64_t, std::string> m_addrs;
  std::unordered_map<int64_t, std::vector<std::pair<int64_t, int64_t>>> m_extra;
};

[[noreturn]] void throw_output_error(const std::system_error& e) {
  throw LoadError(std::string("export: ") + e.what());
}

} // namespace

void append_tsv_escaped(std::string& out, std::string_view s) {
  for (const char ch : s) {
    switch (ch) {
    case '\\':
      out += "\\\\";
      break;
    case '\t':
      out += "\\t";
      break;
    case '\n':
      out += "\\n";
      break;
    case '\r':
      out += "\\r";
      break;
    case '\0':
      out += "\\0";
      break;
    case '\b':
      out += "\\b";
      break;
    case '\f':
      out += "\\f";
      break;
    default:
      out += ch;
    }
  }
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
    Input in{file, {}};
    for (const SnapshotInfo& s : load_snapshot_index(file)) {
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
    std::unordered_map<std::string_view, std::unique_ptr<Sink>> sinks;
    const auto sink = [&](std::string_view name) -> Sink& {
      auto& s = sinks[name];
      if (!s) {
        s = std::make_unique<Sink>(dir.path() + "/" + std::string(name) + ".tsv");
      }
      return *s;
    };
    Sink& schema = sink(k_schema_table);
    append_int(schema.buf(), k_clickhouse_schema_version);
    schema.buf() += "\tsockrewind-analyze " SOCKREWIND_VERSION;
    schema.end_row();
    for (const Table& t : tables()) {
      sink(t.name);
    }
    for (const Input& in : inputs) {
      if (in.prefix.empty()) {
        continue;
      }
      store::Db db = open_validated(in.file);
      ++result.files;
      try {
        Exporter ex(in, db);
        ex.load_extra_owners();
        for (const Table& t : tables()) {
          if (t.name == k_owners) {
            continue;
          }
          ex.run(t, sink(t.name), t.name == "sockets" ? &sink(k_owners) : nullptr);
        }
      } catch (const store::DbError& e) {
        throw read_error(in.file, e);
      }
    }
    for (const std::string& name : clickhouse_tables()) {
      Sink& s = sink(name);
      s.commit();
      result.rows[name] = s.rows();
    }
    dir.commit();
  } catch (const std::system_error& e) {
    throw_output_error(e);
  }
  result.dir = opts.out;
  return result;
}

} // namespace sockrewind::analyze
