#include <sockrewind/collect/tcp_info.hpp>
#include <sockrewind/collect/writer.hpp>
#include <sockrewind/store/meta.hpp>
#include <sockrewind/store/runs.hpp>
#include <sockrewind/store/schema.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
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
std::string column_list(std::span<const std::string_view> cols) {
  std::string s;
  for (const std::string_view c : cols) {
    s += (s.empty() ? "" : ", ") + std::string(c);
  }
  return s;
}

// The 1-based parameter of column `name` among `cols` (after `before` leading parameters).
int param(std::span<const std::string_view> cols, std::string_view name, int before = 0) {
  const auto it = std::find(cols.begin(), cols.end(), name);
  if (it == cols.end()) {
    throw std::logic_error("writer: no column " + std::string(name));
  }
  return before + 1 + static_cast<int>(it - cols.begin());
}

// Parameters of the two INSERTs, resolved once.
struct SocketParams {
  std::span<const std::string_view> ident = store::sock_ident_columns();
  std::span<const std::string_view> run = store::sock_run_columns();
  int netns_id = param(ident, "netns_id"), family = param(ident, "family"),
      type = param(ident, "type"), proto = param(ident, "proto"),
      local_addr_id = param(ident, "local_addr_id"), local_port = param(ident, "local_port"),
      remote_addr_id = param(ident, "remote_addr_id"), remote_port = param(ident, "remote_port"),
      inode = param(ident, "inode"), cookie = param(ident, "cookie"), uid = param(ident, "uid"),
      path = param(ident, "path"), peer_inode = param(ident, "peer_inode");
  // sock_runs: run_id, ident_id, first_snapshot_id, last_snapshot_id, then `run`.
  int state = param(run, "state", 4), rx_queue = param(run, "rx_queue", 4),
      tx_queue = param(run, "tx_queue", 4), timer = param(run, "timer", 4),
      expires_ms = param(run, "expires_ms", 4), retrans = param(run, "retrans", 4),
      shutdown = param(run, "shutdown", 4), tos = param(run, "tos", 4),
      skm_first = param(run, "skm_rmem_alloc", 4), skm_drops = param(run, "skm_drops", 4),
      pid = param(run, "pid", 4), fd = param(run, "fd", 4);
  std::vector<int> tcp_info; // per tcp_info_inline_fields()

  SocketParams() {
    for (const TcpInfoField& f : tcp_info_inline_fields()) {
      tcp_info.push_back(param(run, "ti_" + std::string(f.column), 4));
    }
    if (skm_drops != skm_first + static_cast<int>(k_skmem_fields) - 1) {
      throw std::logic_error("writer: skm_* columns out of SK_MEMINFO order");
    }
  }
};

const SocketParams& socket_params() {
  static const SocketParams k_params;
  return k_params;
}

std::string placeholders(int n) {
  std::string s;
  for (int i = 1; i <= n; ++i) {
    s += (i == 1 ? "?" : ",?") + std::to_string(i);
  }
  return s;
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
  std::string key(reinterpret_cast<const char*>(addr), len);
  const auto it = m_addrs.find(key);
  if (it != m_addrs.end()) {
    return it->second;
  }
  store::Stmt st = m_db->prepare("INSERT INTO addrs (family, addr, text) VALUES (?1, ?2, ?3)");
  st.bind(1, static_cast<int64_t>(family))
      .bind_blob(2, std::span<const uint8_t>(addr, len))
      .bind(3, addr_text(family, addr))
      .run();
  const int64_t id = m_db->last_insert_rowid();
  m_addrs.emplace(std::move(key), id);
  return id;
}

// The prepared statements for socket rows, kept for one snapshot's transaction.
struct SnapshotFile::SocketStmts {
  store::Stmt ident;
  store::Stmt sock;
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
      m_db->prepare("INSERT INTO sock_ident (" + column_list(socket_params().ident) + ") VALUES ("
                        + placeholders(static_cast<int>(socket_params().ident.size())) + ")",
                    true),
      m_db->prepare("INSERT INTO sock_runs (run_id, ident_id, first_snapshot_id, "
                    "last_snapshot_id, "
                        + column_list(socket_params().run) + ") VALUES ("
                        + placeholders(4 + static_cast<int>(socket_params().run.size())) + ")",
                    true),
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

void SnapshotFile::insert_sockets(SocketStmts& st,
                                  int64_t sid,
                                  int64_t nid,
                                  std::span<const SocketRow> rows,
                                  const OwnerScan& owners,
                                  const ExtraOwners& extra) {
  // Owners first, in one tight loop: the lookups miss the cache, and a loop without SQLite
  // in between overlaps those misses (this took 15% of the insert time inline).
  std::vector<const Owner*> owner_of(rows.size(), nullptr);
  for (size_t i = 0; i < rows.size(); ++i) {
    const uint64_t inode = rows[i].inode;
    const auto it = inode != 0 ? owners.first.find(inode) : owners.first.end();
    if (it != owners.first.end()) {
      owner_of[i] = &it->second;
    }
  }
  store::Stmt& ins_ident = st.ident;
  store::Stmt& ins_sock = st.sock;
  const SocketParams& p = socket_params();
  for (size_t i = 0; i < rows.size(); ++i) {
    const SocketRow& r = rows[i];
    ins_ident.bind(p.netns_id, nid).bind(p.family, static_cast<int64_t>(r.family));
    ins_ident.bind(p.type, static_cast<int64_t>(r.type));
    ins_ident.bind(p.proto, static_cast<int64_t>(r.proto));
    if (r.addr_len != 0) {
      ins_ident.bind(p.local_addr_id, addr_id(r.family, r.local_addr.data(), r.addr_len));
      ins_ident.bind(p.local_port, static_cast<int64_t>(r.local_port));
      ins_ident.bind(p.remote_addr_id, addr_id(r.family, r.remote_addr.data(), r.addr_len));
      ins_ident.bind(p.remote_port, static_cast<int64_t>(r.remote_port));
    }
    ins_ident.bind(p.inode, r.inode).bind(p.cookie, r.cookie).bind(p.uid, r.uid);
    ins_ident.bind(p.path, r.path).bind(p.peer_inode, r.peer_inode);
    ins_ident.run();

    const int64_t run_id = ++m_last_run;
    ins_sock.bind(1, run_id).bind(2, m_db->last_insert_rowid()).bind(3, sid).bind(4, sid);
    ins_sock.bind(p.state, static_cast<int64_t>(r.state));
    ins_sock.bind(p.rx_queue, r.rx_queue).bind(p.tx_queue, r.tx_queue);
    if (r.timer) {
      ins_sock.bind(p.timer, static_cast<int64_t>(*r.timer));
    }
    ins_sock.bind(p.expires_ms, r.expires_ms).bind(p.retrans, r.retrans);
    if (r.shutdown) {
      ins_sock.bind(p.shutdown, static_cast<int64_t>(*r.shutdown));
    }
    if (r.tos) {
      ins_sock.bind(p.tos, static_cast<int64_t>(*r.tos));
    }
    // skm_rmem_alloc .. skm_drops: consecutive columns in SK_MEMINFO order.
    for (size_t m = 0; m < k_skmem_fields; ++m) {
      if (m < r.skmem_count) {
        ins_sock.bind(p.skm_first + static_cast<int>(m), r.skmem[m]);
      }
    }
    if (r.skmem_count <= 8 && r.drops) {
      ins_sock.bind(p.skm_drops, *r.drops); // /proc/net/udp drops when no SK_MEMINFO_DROPS
    }
    size_t t = 0;
    for (const TcpInfoField& f : tcp_info_inline_fields()) {
      ins_sock.bind(p.tcp_info[t++], read_tcp_info_field(r.tcp_info, f));
    }
    if (const Owner* owner = owner_of[i]) {
      ins_sock.bind(p.pid, static_cast<int64_t>(owner->pid));
      ins_sock.bind(p.fd, static_cast<int64_t>(owner->fd));
    }
    ins_sock.run();
    // The socket's id in this snapshot, as the sockets view gives it.
    const int64_t sock_id = store::run_sock_id(run_id, sid);

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
}

void SnapshotFile::write(const Snapshot& snap) {
  store::Txn txn(*m_db);
  const int64_t sid = next_snapshot_id();
  SocketStmts st = prepare_socket_stmts();
  const ExtraOwners extra = extra_owners(snap.owners);
  uint64_t socket_count = 0;
  for (const NetnsCapture& ns : snap.namespaces) {
    insert_sockets(st, sid, netns_id(ns.ref.inode), ns.sockets, snap.owners, extra);
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

  void work() {
    std::optional<SocketStmts> st;
    const OwnerScan* scan = nullptr;
    const OwnerScan none;
    ExtraOwners extra;
    int64_t nid = 0;
    uint64_t table_rows = 0;
    for (;;) {
      Msg m;
      {
        std::unique_lock<std::mutex> lock(m_mutex);
        m_ready.wait(lock, [this] { return !m_queue.empty(); });
        m = std::move(m_queue.front());
        m_queue.pop_front();
      }
      if (m.kind == Kind::stop) {
        return;
      }
      if (m_error) {
        continue; // failed: drain until stop
      }
      try {
        switch (m.kind) {
        case Kind::owners:
          scan = m.scan;
          extra = extra_owners(*scan);
          break;
        case Kind::begin:
          if (!st) {
            st.emplace(m_file.prepare_socket_stmts());
          }
          nid = m_file.netns_id(m.netns_inode);
          table_rows = 0;
          m_file.m_db->exec("SAVEPOINT socket_table");
          break;
        case Kind::rows:
          m_file.insert_sockets(*st, m_sid, nid, m.rows, scan != nullptr ? *scan : none, extra);
          table_rows += m.rows.size();
          break;
        case Kind::end:
          if (m.keep) {
            m_file.m_db->exec("RELEASE socket_table");
            m_rows += table_rows;
          } else {
            m_file.m_db->exec("ROLLBACK TO socket_table; RELEASE socket_table");
          }
          break;
        case Kind::stop:
          break;
        }
      } catch (...) {
        m_error = std::current_exception();
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
  store::Txn txn(*m_db);
  const int64_t sid = next_snapshot_id();
  Snapshot snap;
  uint64_t socket_count = 0;
  {
    Stream stream(*this, sid);
    snap = take_snapshot(opts, host, &stream);
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
