#include <sockrewind/store/archive.hpp>
#include <sockrewind/store/runs.hpp>
#include <sockrewind/store/schema.hpp>

#include <arpa/inet.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <set>
#include <span>
#include <stdexcept>
#include <utility>

namespace sockrewind::store {

namespace {

// A column of one of the tables copied row for row, with its declared type.
struct Column {
  std::string name;
  char type; // 'i' INTEGER, 'r' REAL, 't' TEXT, 'b' BLOB
};

std::vector<Column> columns_of(Db& db, const std::string& table) {
  std::vector<Column> out;
  Stmt st = db.prepare("SELECT name, upper(type) FROM pragma_table_info(?1) ORDER BY cid");
  st.bind(1, table);
  while (st.step()) {
    const std::string type = st.get_text(1);
    out.push_back({st.get_text(0),
                   type == "INTEGER" ? 'i'
                   : type == "REAL"  ? 'r'
                   : type == "BLOB"  ? 'b'
                                     : 't'});
  }
  return out;
}

// The select list of `cols` from `table` of a validated input of schema `version`: a column
// that version does not have (added by a later migration) is read as NULL.
std::string select_list(int version, const std::string& table, std::span<const std::string> cols) {
  std::set<std::string, std::less<>> have;
  for (std::string& c : reference_columns(version, table)) {
    have.insert(std::move(c));
  }
  std::string list;
  for (const std::string& c : cols) {
    list += (list.empty() ? "" : ", ") + (have.contains(c) ? c : std::string("NULL"));
  }
  return list;
}

std::vector<std::string> names(std::span<const std::string_view> cols) {
  return {cols.begin(), cols.end()};
}

size_t column(std::span<const std::string_view> cols, std::string_view name) {
  const auto it = std::find(cols.begin(), cols.end(), name);
  if (it == cols.end()) {
    throw std::logic_error("archive: no column " + std::string(name));
  }
  return static_cast<size_t>(it - cols.begin());
}

int64_t as_int(const Value& v) {
  const auto* i = std::get_if<int64_t>(&v);
  return i != nullptr ? *i : 0;
}

bool is_null(const Value& v) {
  return std::holds_alternative<std::monostate>(v);
}

std::string addr_text(int64_t family, const std::string& blob) {
  char buf[INET6_ADDRSTRLEN] = {};
  const int af = family == 2 ? AF_INET : AF_INET6;
  if ((af == AF_INET && blob.size() != 4) || (af == AF_INET6 && blob.size() != 16)
      || inet_ntop(af, blob.data(), buf, sizeof buf) == nullptr) {
    return "?";
  }
  return buf;
}

// One table copied row for row from inputs to the output (the per-snapshot tables that are
// not runs); `fix` rewrites a row (ids, rewriting) in place.
class TableCopy {
public:
  TableCopy(Db& out, std::string table)
      : m_table(std::move(table)),
        m_cols(columns_of(out, m_table)) {
    std::vector<std::string> cols;
    std::string params;
    for (size_t i = 0; i < m_cols.size(); ++i) {
      cols.push_back(m_cols[i].name);
      params += (i == 0 ? "?" : ",?") + std::to_string(i + 1);
    }
    m_names = cols;
    std::string list;
    for (const std::string& c : cols) {
      list += (list.empty() ? "" : ", ") + c;
    }
    m_insert = std::make_unique<Stmt>(
        out.prepare("INSERT INTO " + m_table + " (" + list + ") VALUES (" + params + ")", true));
  }

  std::string select_list(int version) const {
    return store::select_list(version, m_table, m_names);
  }

  size_t index(const std::string& name) const {
    for (size_t i = 0; i < m_cols.size(); ++i) {
      if (m_cols[i].name == name) {
        return i;
      }
    }
    throw std::logic_error("archive: no column " + name);
  }

  // Reads the row at `st` (columns in select_list() order), lets `fix` change it, inserts it.
  template <typename Fix> void copy_row(const Stmt& st, const Fix& fix) {
    m_row.resize(m_cols.size());
    for (size_t i = 0; i < m_cols.size(); ++i) {
      const int col = static_cast<int>(i);
      m_row[i] = st.is_null(col)         ? Value{}
                 : m_cols[i].type == 'i' ? Value{st.get_int(col)}
                 : m_cols[i].type == 'r' ? Value{st.get_double(col)}
                                         : Value{st.get_text(col)};
    }
    fix(m_row);
    for (size_t i = 0; i < m_cols.size(); ++i) {
      bind_value(*m_insert, static_cast<int>(i + 1), m_row[i]);
    }
    m_insert->run();
  }

private:
  std::string m_table;
  std::vector<Column> m_cols;
  std::vector<std::string> m_names;
  std::vector<Value> m_row;
  std::unique_ptr<Stmt> m_insert;
};

// What one input file maps into the output's numbering.
struct InputState {
  int version = 0;
  std::map<int64_t, int64_t> netns; // input netns_id -> output netns_id
  std::map<int64_t, int64_t> addrs; // input addr_id -> output addr_id
};

} // namespace

void create_archive_indexes(Db& db) {
  db.exec("CREATE INDEX IF NOT EXISTS sock_ident_local_port ON sock_ident (local_port);"
          "CREATE INDEX IF NOT EXISTS sock_ident_remote_port ON sock_ident (remote_port);"
          "CREATE INDEX IF NOT EXISTS sock_runs_ident ON sock_runs (ident_id) "
          "WHERE ident_id IS NOT NULL;");
}

bool has_runs_by_ident_index(Db& db) {
  return db.query_int(
             "SELECT count(*) FROM sqlite_schema "
             "WHERE type = 'index' AND name = 'sock_runs_ident' AND tbl_name = 'sock_runs'")
         > 0;
}

PortRuns sql_port_runs(Db& db, int64_t port) {
  const std::string cond = "local_port = ?1 OR remote_port = ?1";
  if (!has_runs_by_ident_index(db)) {
    return {cond, false};
  }
  const int64_t bound = db.query_int("SELECT max(ident_id) FROM sock_ident") / 8 + 1;
  Stmt n = db.prepare("SELECT count(*) FROM (SELECT 1 FROM sock_ident "
                      "WHERE local_port = ?1 OR remote_port = ?1 LIMIT ?2)");
  n.bind(1, port).bind(2, bound);
  if (n.step() && n.get_int(0) < bound) {
    // True of every run; it is what lets SQLite use the partial index sock_runs_ident.
    return {"sock_runs.ident_id IS NOT NULL AND (" + cond + ")", true};
  }
  return {cond, false};
}

std::vector<SnapshotRef> snapshot_refs(Db& in) {
  std::vector<SnapshotRef> out;
  Stmt st = in.prepare("SELECT snapshot_id, host, boot_id, realtime_ns, boottime_ns, "
                       "boottime_end_ns FROM snapshots ORDER BY snapshot_id");
  while (st.step()) {
    out.push_back({st.get_int(0),
                   st.get_text(1),
                   st.get_text(2),
                   st.get_int(3),
                   st.get_int(4),
                   st.get_int(5)});
  }
  return out;
}

struct ArchiveWriter::Impl {
  Impl(const std::string& path, const Rewrite& rw)
      : out(Db::create(path)),
        rewrite(rw),
        begin((out.exec("PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; "
                        "PRAGMA foreign_keys = OFF"),
               migrate(out),
               out.exec("BEGIN"),
               true)),
        snapshots(out, "snapshots"),
        snapshot_netns(out, "snapshot_netns"),
        sources(out, "sources"),
        issues(out, "capture_issues"),
        extra(out, "extra_owners"),
        tcp_info(out, "tcp_info"),
        runs(out),
        ins_netns(out.prepare("INSERT INTO netns (inode) VALUES (?1)")),
        ins_addr(out.prepare("INSERT INTO addrs (family, addr, text) VALUES (?1,?2,?3)")) {}

  InputState& state_of(Db& in) {
    auto [it, fresh] = inputs.try_emplace(&in);
    InputState& st = it->second;
    if (!fresh) {
      return st;
    }
    st.version = static_cast<int>(in.query_int("PRAGMA user_version"));
    Stmt mode = in.prepare("SELECT value FROM meta WHERE key = 'tcp_info'");
    if (mode.step()) {
      tcp_info_modes.insert(mode.get_text(0));
    }
    Stmt ns = in.prepare("SELECT netns_id, inode FROM netns");
    while (ns.step()) {
      const int64_t inode = ns.get_int(1);
      auto found = netns_out.find(inode);
      if (found == netns_out.end()) {
        ins_netns.bind(1, inode).run();
        found = netns_out.emplace(inode, out.last_insert_rowid()).first;
      }
      st.netns[ns.get_int(0)] = found->second;
    }
    Stmt ad = in.prepare("SELECT addr_id, family, addr FROM addrs");
    while (ad.step()) {
      const int64_t family = ad.get_int(1);
      const std::string blob = rewrite.address(ad.get_blob(2));
      auto found = addrs_out.find({static_cast<int>(family), blob});
      if (found == addrs_out.end()) {
        ins_addr.bind(1, family)
            .bind_blob(2,
                       std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(blob.data()),
                                                blob.size()))
            .bind(3, addr_text(family, blob))
            .run();
        found =
            addrs_out
                .emplace(std::make_pair(static_cast<int>(family), blob), out.last_insert_rowid())
                .first;
      }
      st.addrs[ad.get_int(0)] = found->second;
    }
    return st;
  }

  void add(Db& in, const SnapshotRef& s) {
    InputState& st = state_of(in);
    const int64_t old_sid = s.snapshot_id;
    const int64_t sid = ++next_sid;
    const auto map_id = [](const std::map<int64_t, int64_t>& m, Value& v) {
      if (!is_null(v)) {
        const auto it = m.find(as_int(v));
        v = it != m.end() ? Value{it->second} : Value{};
      }
    };
    const auto map_netns = [&](Value& v) { map_id(st.netns, v); };
    const auto rewrite_text = [](Value& v, const auto& fn) {
      if (const auto* text = std::get_if<std::string>(&v)) {
        v = fn(*text);
      }
    };
    // Every table keyed by snapshot_id.
    const auto copy_snapshot_rows = [&](TableCopy& t, const std::string& table, const auto& fix) {
      Stmt q = in.prepare("SELECT " + t.select_list(st.version) + " FROM " + table
                          + " WHERE snapshot_id = ?1");
      q.bind(1, old_sid);
      const size_t sid_col = t.index("snapshot_id");
      while (q.step()) {
        t.copy_row(q, [&](std::vector<Value>& row) {
          row[sid_col] = sid;
          fix(row);
        });
      }
    };

    const size_t host_col = snapshots.index("host");
    copy_snapshot_rows(snapshots, "snapshots", [&](std::vector<Value>& row) {
      rewrite_text(row[host_col], [&](const std::string& v) { return rewrite.hostname(v); });
    });
    const size_t sn_ns = snapshot_netns.index("netns_id");
    const size_t sn_name = snapshot_netns.index("name");
    copy_snapshot_rows(snapshot_netns, "snapshot_netns", [&](std::vector<Value>& row) {
      map_netns(row[sn_ns]);
      rewrite_text(row[sn_name], [&](const std::string& v) { return rewrite.netns_name(v); });
    });
    const size_t src_ns = sources.index("netns_id");
    copy_snapshot_rows(
        sources, "sources", [&](std::vector<Value>& row) { map_netns(row[src_ns]); });
    const size_t ci_ns = issues.index("netns_id");
    const size_t ci_example = issues.index("example");
    copy_snapshot_rows(issues, "capture_issues", [&](std::vector<Value>& row) {
      map_netns(row[ci_ns]);
      if (!rewrite.keep_issue_examples()) {
        row[ci_example] = std::monostate{};
      }
    });

    runs.begin_snapshot(sid, s.boottime_ns, s.boottime_end_ns, s.host + '\n' + s.boot_id);
    {
      Stmt q = in.prepare("SELECT netns_id, file, name, value FROM counters "
                          "WHERE snapshot_id = ?1");
      q.bind(1, old_sid);
      while (q.step()) {
        Value ns = q.get_int(0);
        map_netns(ns);
        if (!is_null(ns)) {
          runs.add_counter(as_int(ns), q.get_text(1), q.get_text(2), q.get_int(3));
        }
      }
    }
    {
      Stmt q = in.prepare("SELECT netns_id, name, value FROM limits WHERE snapshot_id = ?1");
      q.bind(1, old_sid);
      while (q.step()) {
        Value ns = q.get_int(0);
        map_netns(ns);
        if (!is_null(ns)) {
          runs.add_limit(as_int(ns), q.get_text(1), q.get_text(2));
        }
      }
    }
    {
      const auto cols = process_columns();
      Stmt q = in.prepare("SELECT " + select_list(st.version, "processes", names(cols))
                          + " FROM processes WHERE snapshot_id = ?1");
      q.bind(1, old_sid);
      const size_t p_ns = column(cols, "netns_id");
      const size_t p_cmd = column(cols, "cmdline");
      std::vector<Value> row(cols.size());
      while (q.step()) {
        for (size_t i = 0; i < cols.size(); ++i) {
          row[i] = read_value(q, static_cast<int>(i));
        }
        map_netns(row[p_ns]);
        rewrite_text(row[p_cmd], [&](const std::string& v) { return rewrite.cmdline(v); });
        runs.add_process(row);
      }
    }

    // Sockets get new sock_ids; their extra owners and tcp_info follow them.
    std::map<int64_t, int64_t> sock_map;
    {
      const auto cols = socket_columns();
      const size_t s_ns = column(cols, "netns_id");
      const size_t s_la = column(cols, "local_addr_id");
      const size_t s_ra = column(cols, "remote_addr_id");
      const size_t s_path = column(cols, "path");
      Stmt q = in.prepare("SELECT sock_id, " + select_list(st.version, "sockets", names(cols))
                          + " FROM sockets WHERE snapshot_id = ?1 ORDER BY sock_id");
      q.bind(1, old_sid);
      std::vector<Value> row(cols.size());
      while (q.step()) {
        for (size_t i = 0; i < cols.size(); ++i) {
          row[i] = read_value(q, static_cast<int>(i + 1));
        }
        map_netns(row[s_ns]);
        map_id(st.addrs, row[s_la]);
        map_id(st.addrs, row[s_ra]);
        rewrite_text(row[s_path], [&](const std::string& v) { return rewrite.unix_path(v); });
        sock_map[q.get_int(0)] = runs.add_socket(row);
      }
    }
    socket_rows += sock_map.size();
    // From version 3 a sock_id carries its snapshot_id in its low 24 bits.
    const std::string of_snapshot =
        st.version >= 3 ? " WHERE (sock_id & 16777215) = ?1"
                        : " WHERE sock_id IN (SELECT sock_id FROM sockets WHERE snapshot_id = ?1)";
    const auto copy_by_socket = [&](TableCopy& t, const std::string& table) {
      Stmt q = in.prepare("SELECT " + t.select_list(st.version) + " FROM " + table + of_snapshot);
      q.bind(1, old_sid);
      const size_t col = t.index("sock_id");
      while (q.step()) {
        t.copy_row(q, [&](std::vector<Value>& row) {
          const auto it = sock_map.find(as_int(row[col]));
          row[col] = it != sock_map.end() ? Value{it->second} : Value{};
        });
      }
    };
    copy_by_socket(extra, "extra_owners");
    copy_by_socket(tcp_info, "tcp_info");
  }

  Db out;
  const Rewrite& rewrite;
  bool begin;
  TableCopy snapshots, snapshot_netns, sources, issues, extra, tcp_info;
  RunWriter runs;
  Stmt ins_netns;
  Stmt ins_addr;
  std::map<int64_t, int64_t> netns_out;                     // inode -> output netns_id
  std::map<std::pair<int, std::string>, int64_t> addrs_out; // (family, blob) -> addr_id
  std::map<const Db*, InputState> inputs;
  std::set<std::string> tcp_info_modes;
  int64_t next_sid = 0;
  size_t socket_rows = 0;
};

ArchiveWriter::ArchiveWriter(const std::string& path, const Rewrite& rewrite)
    : m_impl(std::make_unique<Impl>(path, rewrite)) {}

ArchiveWriter::~ArchiveWriter() = default;

void ArchiveWriter::add(Db& in, const SnapshotRef& s) {
  m_impl->add(in, s);
}

void ArchiveWriter::done_with(const Db& in) {
  m_impl->inputs.erase(&in);
}

void ArchiveWriter::finish(std::string writer,
                           std::optional<bool> redacted,
                           Vacuum vacuum,
                           PortIndex port_index) {
  Impl& d = *m_impl;
  d.runs.finish();
  write_meta(d.out,
             {std::move(writer),
              d.tcp_info_modes.size() == 1 ? *d.tcp_info_modes.begin() : "mixed",
              redacted});
  if (port_index == PortIndex::yes) {
    create_archive_indexes(d.out);
  }
  d.out.exec("COMMIT");
  if (vacuum == Vacuum::yes) {
    d.out.exec("VACUUM"); // no free page keeps anything that was not meant to be in the file
  }
}

size_t ArchiveWriter::snapshots() const {
  return static_cast<size_t>(m_impl->next_sid);
}

size_t ArchiveWriter::sockets() const {
  return m_impl->socket_rows;
}

} // namespace sockrewind::store
