// One snapshot read from a file's tables (snapshot_view.hpp), shared by `show` and `replay`.
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/snapshot_view.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>
#include <sockrewind/store/runs.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace sockrewind::analyze {

namespace {

using nlohmann::json;

json opt_json(const std::optional<int64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

// ss's order of socket kinds.
int proto_rank(const std::string& name) {
  static const std::array<std::string, 7> k_order{
      "tcp", "udp", "udplite", "raw", "u_str", "u_dgr", "u_seq"};
  const auto* it = std::find(k_order.begin(), k_order.end(), name);
  return static_cast<int>(it - k_order.begin());
}

// The first 16 bytes of `s` as two big-endian words (zero padded): comparing the words orders
// as comparing the texts does, until both are equal.
std::array<uint64_t, 2> text_prefix(const std::string& s) {
  std::array<unsigned char, 16> bytes{};
  std::memcpy(bytes.data(), s.data(), std::min<size_t>(s.size(), bytes.size()));
  std::array<uint64_t, 2> w{0, 0};
  for (size_t k = 0; k < 2; ++k) {
    for (size_t i = 0; i < 8; ++i) {
      w[k] = (w[k] << 8) | bytes[8 * k + i];
    }
  }
  return w;
}

// ss order; a total order (sock_id last), so the SQL's row order does not matter. Compared on
// compact keys (numbers and the texts' first bytes); the rows' texts only on ties.
struct SsKey {
  uint64_t netns;
  int64_t family;
  int64_t port;
  std::array<uint64_t, 2> local;
  std::array<uint64_t, 2> remote;
  int rank;
  uint32_t local_size;
  uint32_t remote_size;
};

SsKey ss_key(const SocketRow& r) {
  return {r.netns,
          r.family,
          r.local_port.value_or(0),
          text_prefix(r.local),
          text_prefix(r.remote),
          r.rank,
          static_cast<uint32_t>(std::min<size_t>(r.local.size(), UINT32_MAX)),
          static_cast<uint32_t>(std::min<size_t>(r.remote.size(), UINT32_MAX))};
}

// A row's ss key with its sock_id and index, as sort_ss sorts them: the rows themselves (~450
// bytes each, 45 MB at 100k) are read only on ties of the keys' texts.
struct Keyed {
  SsKey key;
  int64_t id;
  uint32_t idx;
};

// Memory each thread keeps between snapshot reads, as large as the largest snapshot it read:
// fresh pages cost more than what is done in them (the 9 MB of 100k sort keys took ~25 ms to
// fault in on the 2-core VM, the sort itself 13 ms).
std::vector<Keyed>& scratch_keys() {
  thread_local std::vector<Keyed> keys;
  return keys;
}

// The runs of a read whose runs all end with it (which its view does not keep), for the next
// read of the thread.
std::vector<RowRun>& spare_runs() {
  thread_local std::vector<RowRun> runs;
  return runs;
}
} // namespace

std::string opt_text(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string("-");
}

struct SnapshotReader::Impl {
  explicit Impl(store::Db& d) : db(d) {}

  store::Db& db;
  int64_t version = -1; // PRAGMA user_version, read once
  std::optional<store::Stmt> head, ns, procs, extra_runs, extra_table, runs, new_runs, table, view,
      counters, addr_one, netns_all;
  // Address texts by addr_id: nullopt = no such row or a NULL text (the LEFT JOIN's NULL).
  bool addrs_bulk = false; // the whole table was read
  std::unordered_map<int64_t, std::optional<std::string>> addrs;
  std::unordered_map<int64_t, uint64_t> netns; // netns_id -> inode (the whole table)

  store::Stmt& prepared(std::optional<store::Stmt>& st, const char* sql) {
    if (!st) {
      st.emplace(db.prepare(sql, true));
    } else {
      st->reset();
    }
    return *st;
  }

  void load_netns() {
    netns.clear();
    store::Stmt& st = prepared(netns_all, "SELECT netns_id, inode FROM netns");
    while (st.step()) {
      netns[st.get_int(0)] = static_cast<uint64_t>(st.get_int(1));
    }
  }

  // The netns inode of `id`, nullopt when the table has no such row (the JOIN drops the row).
  std::optional<uint64_t> netns_inode(int64_t id) {
    auto it = netns.find(id);
    if (it == netns.end()) {
      load_netns(); // a file still being written may have gained one
      it = netns.find(id);
      if (it == netns.end()) {
        return std::nullopt;
      }
    }
    return it->second;
  }

  // Reads the whole addrs table when it is not much larger than a snapshot's needs (one scan
  // instead of a lookup per address); else addresses are looked up one by one as met.
  void prepare_addrs(int64_t sockets) {
    if (addrs_bulk) {
      return;
    }
    const int64_t max_id = db.query_int("SELECT coalesce(max(addr_id), 0) FROM addrs");
    if (max_id > 8 * std::max<int64_t>(sockets, 0) + 65536) {
      return;
    }
    store::Stmt st = db.prepare("SELECT addr_id, text FROM addrs");
    while (st.step()) {
      addrs[st.get_int(0)] = st.get_opt_text(1);
    }
    addrs_bulk = true;
  }

  const std::optional<std::string>& addr(int64_t id) {
    const auto it = addrs.find(id);
    if (it != addrs.end()) {
      return it->second;
    }
    store::Stmt& st = prepared(addr_one, "SELECT text FROM addrs WHERE addr_id = ?1");
    st.bind(1, id);
    std::optional<std::string> text;
    if (st.step()) {
      text = st.get_opt_text(0);
    }
    return addrs.emplace(id, std::move(text)).first->second;
  }

  // Appends the rows of `st` (a socket query with the Col columns) to `rows` and, for
  // run-table reads, their runs to `out_runs`.
  void build_rows(store::Stmt& st,
                  bool from_runs,
                  int64_t sid,
                  std::vector<SocketRow>& rows,
                  std::vector<RowRun>& out_runs,
                  int64_t& min_id,
                  int64_t& max_id);
};

namespace {

// The columns every socket query gives, in this order.
constexpr const char* k_sock_columns =
    "netns_id, family, type, proto, state, local_addr_id, local_port, remote_addr_id, "
    "remote_port, rx_queue, tx_queue, inode, cookie, uid, timer, expires_ms, retrans, shutdown, "
    "skm_rmem_alloc, skm_rcvbuf, skm_drops, path, peer_inode, pid, fd";

enum Col : uint8_t {
  c_sock_id,
  c_netns_id,
  c_family,
  c_type,
  c_proto,
  c_state,
  c_local_addr,
  c_local_port,
  c_remote_addr,
  c_remote_port,
  c_rx_queue,
  c_tx_queue,
  c_inode,
  c_cookie,
  c_uid,
  c_timer,
  c_expires_ms,
  c_retrans,
  c_shutdown,
  c_rmem_alloc,
  c_rcvbuf,
  c_drops,
  c_path,
  c_peer_inode,
  c_pid,
  c_fd,
  c_run_first_boottime, // schema-3 runs only: CLOCK_BOOTTIME of the run's first snapshot
  c_run_boottime,       // and of the snapshot read
  c_run_first_id,       // the run's first_snapshot_id
  c_run_last_id,        // and last_snapshot_id
};

// `a:port` (`[a]:port` for IPv6), `*` for a missing address or port 0.
void inet_endpoint(std::string& out,
                   int64_t family,
                   const std::optional<std::string>& addr,
                   const std::optional<int64_t>& port) {
  char num[24];
  size_t num_len = 1;
  if (!port || *port == 0) {
    num[0] = '*';
  } else {
    const auto res = std::to_chars(num, num + sizeof num, *port);
    num_len = static_cast<size_t>(res.ptr - num);
  }
  const bool v6 = family == k_af_inet6 && addr;
  out.reserve((addr ? addr->size() : 1) + (v6 ? 2 : 0) + 1 + num_len);
  if (v6) {
    out += '[';
  }
  if (addr) {
    out += *addr;
  } else {
    out += '*';
  }
  if (v6) {
    out += ']';
  }
  out += ':';
  out.append(num, num_len);
}

// A std::string per distinct proto name, copied into each row (short: no allocation).
const std::string& proto_text(int64_t family, int64_t type, int64_t proto) {
  static const std::string k_tcp = "tcp";
  static const std::string k_udp = "udp";
  static const std::string k_u_str = "u_str";
  static const std::string k_u_dgr = "u_dgr";
  if (family == k_af_unix) {
    if (type == 1) {
      return k_u_str;
    }
    if (type == 2) {
      return k_u_dgr;
    }
  } else if (proto == 6) {
    return k_tcp;
  } else if (proto == 17) {
    return k_udp;
  }
  thread_local std::string other;
  Track t;
  t.family = static_cast<uint8_t>(std::clamp<int64_t>(family, 0, 255));
  t.type = static_cast<uint8_t>(std::clamp<int64_t>(type, 0, 255));
  t.proto = static_cast<uint16_t>(std::clamp<int64_t>(proto, 0, 0xffff));
  other = proto_name(t);
  return other;
}

// Puts rows[order[k]] at position k, moving each row once (no second vector of rows).
template <class T> void permute(std::vector<T>& rows, std::vector<uint32_t>& order) {
  constexpr uint32_t k_done = UINT32_MAX;
  for (size_t i = 0; i < order.size(); ++i) {
    if (order[i] == k_done || order[i] == i) {
      order[i] = k_done;
      continue;
    }
    T tmp = std::move(rows[i]);
    size_t j = i;
    while (order[j] != i) {
      const uint32_t from = order[j];
      rows[j] = std::move(rows[from]);
      order[j] = k_done;
      j = from;
    }
    rows[j] = std::move(tmp);
    order[j] = k_done;
  }
}

// Equal prefixes of texts of at most 16 bytes: the shorter one (padded with NULs) first.
int text_order(const std::array<uint64_t, 2>& pa,
               uint32_t na,
               const std::array<uint64_t, 2>& pb,
               uint32_t nb,
               const std::string& a,
               const std::string& b) {
  if (pa[0] != pb[0]) {
    return pa[0] < pb[0] ? -1 : 1;
  }
  if (pa[1] != pb[1]) {
    return pa[1] < pb[1] ? -1 : 1;
  }
  if (na <= 16 && nb <= 16) {
    return na == nb ? 0 : (na < nb ? -1 : 1);
  }
  const int c = a.compare(b);
  return c == 0 ? 0 : (c < 0 ? -1 : 1);
}

// `ida`, `idb`: the rows' sock_ids (a row carried over is compared under its new one).
bool ss_less(const SsKey& ka,
             const SocketRow& a,
             int64_t ida,
             const SsKey& kb,
             const SocketRow& b,
             int64_t idb) {
  if (ka.netns != kb.netns) {
    return ka.netns < kb.netns;
  }
  if (ka.rank != kb.rank) {
    return ka.rank < kb.rank;
  }
  if (ka.rank >= 7 && a.proto_name != b.proto_name) { // names outside ss's list
    return a.proto_name < b.proto_name;
  }
  if (std::tie(ka.family, ka.port) != std::tie(kb.family, kb.port)) {
    return std::tie(ka.family, ka.port) < std::tie(kb.family, kb.port);
  }
  if (const int c = text_order(ka.local, ka.local_size, kb.local, kb.local_size, a.local, b.local);
      c != 0) {
    return c < 0;
  }
  if (const int c =
          text_order(ka.remote, ka.remote_size, kb.remote, kb.remote_size, a.remote, b.remote);
      c != 0) {
    return c < 0;
  }
  return ida < idb;
}

// Sorts `rows` in ss order; `runs`, when not empty, is one per row and moved with them.
void sort_ss(std::vector<SocketRow>& rows, std::vector<RowRun>& runs) {
  std::vector<Keyed>& keys = scratch_keys();
  keys.resize(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    keys[i] = {ss_key(rows[i]), rows[i].sock_id, static_cast<uint32_t>(i)};
  }
  std::sort(keys.begin(), keys.end(), [&rows](const Keyed& a, const Keyed& b) {
    return ss_less(a.key, rows[a.idx], a.id, b.key, rows[b.idx], b.id);
  });
  std::vector<uint32_t> order(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    order[i] = keys[i].idx;
  }
  if (!runs.empty()) {
    std::vector<uint32_t> copy = order;
    permute(runs, copy);
  }
  permute(rows, order);
}

} // namespace

void SnapshotReader::Impl::build_rows(store::Stmt& st,
                                      bool from_runs,
                                      int64_t sid,
                                      std::vector<SocketRow>& rows,
                                      std::vector<RowRun>& out_runs,
                                      int64_t& min_id,
                                      int64_t& max_id) {
  const auto has = [&st](Col c) { return !st.is_null(c); };
  const auto opt = [&](Col c) {
    return has(c) ? std::optional<int64_t>(st.get_int(c)) : std::nullopt;
  };
  while (st.step()) {
    const std::optional<uint64_t> inode = netns_inode(st.get_int(c_netns_id));
    if (!inode) {
      continue; // as the JOIN netns of the view's readers: no such namespace, no row
    }
    SocketRow& r = rows.emplace_back();
    r.sock_id = from_runs ? store::run_sock_id(st.get_int(c_sock_id), sid) : st.get_int(c_sock_id);
    min_id = std::min(min_id, r.sock_id);
    max_id = std::max(max_id, r.sock_id);
    r.netns = *inode;
    r.family = st.get_int(c_family);
    r.type = st.get_int(c_type);
    r.proto = st.get_int(c_proto);
    r.state = st.get_int(c_state);
    r.proto_name = proto_text(r.family, r.type, r.proto);
    r.rank = proto_rank(r.proto_name);
    r.local_port = opt(c_local_port);
    r.remote_port = opt(c_remote_port);
    r.rx_queue = opt(c_rx_queue);
    r.tx_queue = opt(c_tx_queue);
    r.inode = st.get_int(c_inode);
    r.cookie = opt(c_cookie);
    r.uid = opt(c_uid);
    r.timer = opt(c_timer);
    r.expires_ms = opt(c_expires_ms);
    if (from_runs) {
      out_runs.push_back({st.get_int(c_sock_id),
                          st.get_int(c_run_first_id),
                          st.get_int(c_run_last_id),
                          st.get_int(c_run_first_boottime),
                          r.expires_ms,
                          has(c_pid)});
    }
    if (from_runs && r.expires_ms) {
      // Stored as of the run's first snapshot (the sockets view's rule).
      *r.expires_ms = store::run_expires_ms(
          *r.expires_ms,
          r.timer.value_or(0) != 0,
          store::run_elapsed_ms(st.get_int(c_run_first_boottime), st.get_int(c_run_boottime)));
    }
    r.retrans = opt(c_retrans);
    r.shutdown = opt(c_shutdown);
    r.rmem_alloc = opt(c_rmem_alloc);
    r.rcvbuf = opt(c_rcvbuf);
    r.drops = opt(c_drops);
    r.path = has(c_path) ? std::optional<std::string>(st.get_text(c_path)) : std::nullopt;
    r.peer_inode = opt(c_peer_inode);
    if (r.family == k_af_unix) {
      r.local = r.path ? *r.path : std::string("*");
      r.remote = r.peer_inode && *r.peer_inode != 0 ? std::to_string(*r.peer_inode) : "*";
    } else {
      static const std::optional<std::string> k_none;
      inet_endpoint(r.local,
                    r.family,
                    !has(c_local_addr) ? k_none : addr(st.get_int(c_local_addr)),
                    r.local_port);
      inet_endpoint(r.remote,
                    r.family,
                    !has(c_remote_addr) ? k_none : addr(st.get_int(c_remote_addr)),
                    r.remote_port);
    }
    if (has(c_pid)) {
      r.owners.push_back({st.get_int(c_pid), opt(c_fd)});
    }
  }
}

SnapshotReader::SnapshotReader(store::Db& db) : m_impl(std::make_unique<Impl>(db)) {}

SnapshotReader::~SnapshotReader() = default;

SnapshotView SnapshotReader::read(const SnapshotInfo& info, ViewMemory&& reuse) {
  return read_rows(info, nullptr, std::move(reuse));
}

SnapshotView
SnapshotReader::read_next(const SnapshotInfo& info, const SnapshotView& base, ViewMemory&& reuse) {
  return read_rows(info, &base, std::move(reuse));
}

SnapshotView
SnapshotReader::read_rows(const SnapshotInfo& info, const SnapshotView* base, ViewMemory&& reuse) {
  Impl& m = *m_impl;
  SnapshotView snap;
  snap.info = info;
  snap.rows = std::move(reuse.rows); // its memory: 100k rows are ~45 MB, fresh pages cost
  snap.rows.clear();
  bool merged = false; // the rows came out sorted (a step that carries runs over)
  try {
    if (m.version < 0) {
      m.version = m.db.query_int("PRAGMA user_version");
    }
    store::Stmt& head = m.prepared(
        m.head, "SELECT self_netns, euid, boottime_ns FROM snapshots WHERE snapshot_id = ?1");
    head.bind(1, info.snapshot_id);
    if (head.step()) {
      snap.self_netns = head.get_int(0);
      snap.euid = head.get_int(1);
      snap.boottime_ns = head.get_int(2);
    }
    store::Stmt& ns = m.prepared(m.ns,
                                 "SELECT n.inode, sn.found_via, sn.name, sn.pid, sn.status "
                                 "FROM snapshot_netns sn JOIN netns n ON n.netns_id = sn.netns_id "
                                 "WHERE sn.snapshot_id = ?1 ORDER BY n.inode");
    ns.bind(1, info.snapshot_id);
    while (ns.step()) {
      json j;
      j["inode"] = ns.get_int(0);
      j["found_via"] = ns.get_text(1);
      j["name"] = ns.is_null(2) ? json(nullptr) : json(ns.get_text(2));
      j["pid"] = opt_json(ns.get_opt_int(3));
      j["status"] = ns.get_text(4);
      snap.netns.push_back(std::move(j));
    }
    store::Stmt& procs =
        m.prepared(m.procs, "SELECT pid, comm FROM processes WHERE snapshot_id = ?1");
    procs.bind(1, info.snapshot_id);
    while (procs.step()) {
      snap.comm[procs.get_int(0)] = procs.get_text(1);
    }
    const bool runs = m.version >= 3 && !m_use_view;
    const int64_t sid = info.snapshot_id;
    // Taking rows over from `base`: the snapshot just before, of the same file and run block,
    // read from the run tables. The runs `sid` sees are then the base's runs that go on (those
    // that start in sid's block, at or before it, are all among the base's) and those that
    // start at `sid`.
    const bool carry = runs && base != nullptr && base->info.file == info.file
                       && base->info.snapshot_id + 1 == sid
                       && store::run_block_start(sid - 1) == store::run_block_start(sid)
                       && (base->runs.size() == base->rows.size() || base->runs_end);
    // The runs the snapshot sees (or, carrying, those that start at it), with the columns of
    // the table path in the same places (the run_id in sock_id's, expires_ms as stored) and
    // the two times that move expires_ms after.
    static const std::string k_runs_cols =
        "SELECT r.run_id, i.netns_id, i.family, i.type, "
        "i.proto, r.state, i.local_addr_id, i.local_port, i.remote_addr_id, i.remote_port, "
        "r.rx_queue, r.tx_queue, i.inode, i.cookie, i.uid, r.timer, r.expires_ms, "
        "r.retrans, r.shutdown, r.skm_rmem_alloc, r.skm_rcvbuf, r.skm_drops, i.path, "
        "i.peer_inode, r.pid, r.fd, f.boottime_ns, sn.boottime_ns, r.first_snapshot_id, "
        "r.last_snapshot_id "
        "FROM snapshots sn JOIN sock_runs r ON "
        + store::sql_runs_seen_by("r", "sn.snapshot_id");
    static const std::string k_runs_join =
        " JOIN snapshots f ON f.snapshot_id = r.first_snapshot_id "
        "JOIN sock_ident i ON i.ident_id = r.ident_id "
        "WHERE sn.snapshot_id = ?1";
    static const std::string k_runs_sql = k_runs_cols + k_runs_join;
    static const std::string k_new_runs_sql =
        k_runs_cols + " AND r.first_snapshot_id = sn.snapshot_id" + k_runs_join;
    static const std::string k_table_sql =
        std::string("SELECT sock_id, ") + k_sock_columns + " FROM sockets WHERE snapshot_id = ?1";
    store::Stmt& st = carry        ? m.prepared(m.new_runs, k_new_runs_sql.c_str())
                      : runs       ? m.prepared(m.runs, k_runs_sql.c_str())
                      : m_use_view ? m.prepared(m.view, k_table_sql.c_str())
                                   : m.prepared(m.table, k_table_sql.c_str());
    st.bind(1, info.snapshot_id);
    m.prepare_addrs(info.sockets);
    if (m.netns.empty()) {
      m.load_netns();
    }
    // Grown with an eighth to spare, so that `reuse` (the rows memory of a snapshot read
    // before, usually of about as many sockets) takes the next one without a new allocation:
    // 100k fresh rows cost ~11k page faults, more than half of the read.
    if (const auto want = static_cast<size_t>(std::max<int64_t>(info.sockets, 0));
        snap.rows.capacity() < want) {
      snap.rows.reserve(want + want / 8);
    }
    if (runs) {
      // The runs memory of a snapshot no longer shown, or of the last read whose runs all
      // ended (which its view did not keep), whichever is larger.
      snap.runs = std::move(reuse.runs);
      if (snap.runs.capacity() < spare_runs().capacity()) {
        snap.runs.swap(spare_runs());
      }
      snap.runs.clear();
      snap.runs.reserve(std::max(snap.rows.capacity(), snap.rows.size()));
    }
    int64_t min_id = INT64_MAX;
    int64_t max_id = INT64_MIN;
    if (carry && !base->runs_end) {
      // The runs that start at sid, sorted, merged with those that go on, which keep their
      // order (the base's, a sorted one): the rows come out sorted, each copied or moved once.
      std::vector<SocketRow> fresh;
      std::vector<RowRun> fresh_runs;
      m.build_rows(st, runs, sid, fresh, fresh_runs, min_id, max_id);
      SR_ASSERT(fresh_runs.size() == fresh.size());
      sort_ss(fresh, fresh_runs);
      std::vector<SsKey> fresh_keys;
      fresh_keys.reserve(fresh.size());
      for (const SocketRow& f : fresh) {
        fresh_keys.push_back(ss_key(f));
      }
      size_t j = 0;
      const auto take_fresh_before = [&](const SsKey* key, const SocketRow* row, int64_t id) {
        for (; j < fresh.size()
               && (key == nullptr
                   || ss_less(fresh_keys[j], fresh[j], fresh[j].sock_id, *key, *row, id));
             ++j) {
          snap.rows.push_back(std::move(fresh[j]));
          snap.runs.push_back(fresh_runs[j]);
        }
      };
      for (size_t k = 0; k < base->rows.size(); ++k) {
        const RowRun& run = base->runs[k];
        if (store::run_seen_until(run.first_snapshot_id, run.last_snapshot_id) < sid) {
          continue; // the run ended with the base
        }
        const int64_t sock_id = store::run_sock_id(run.run_id, sid);
        const SsKey key = ss_key(base->rows[k]);
        take_fresh_before(&key, &base->rows[k], sock_id);
        SocketRow& r = snap.rows.emplace_back(base->rows[k]);
        r.sock_id = sock_id;
        min_id = std::min(min_id, r.sock_id);
        max_id = std::max(max_id, r.sock_id);
        if (run.expires_ms) {
          r.expires_ms =
              store::run_expires_ms(*run.expires_ms,
                                    r.timer.value_or(0) != 0,
                                    store::run_elapsed_ms(run.first_boottime_ns, snap.boottime_ns));
        }
        r.owners.resize(run.run_owner ? 1 : 0); // further owners are the snapshot's own
        snap.runs.push_back(run);
      }
      take_fresh_before(nullptr, nullptr, 0);
      merged = true;
    } else {
      m.build_rows(st, runs, sid, snap.rows, snap.runs, min_id, max_id);
    }
    if (runs && std::none_of(snap.runs.begin(), snap.runs.end(), [sid](const RowRun& run) {
          return store::run_seen_until(run.first_snapshot_id, run.last_snapshot_id) > sid;
        })) {
      // Every run ends here (a file as the collector writes it: a run per socket and
      // snapshot): nothing for the next snapshot to take over, no memory kept for it.
      spare_runs() = std::move(snap.runs);
      snap.runs = std::vector<RowRun>();
      snap.runs_end = true;
    }
    // The (few) further owners, in (sock_id, pid, fd) order, after each socket's first owner.
    // Schema 3: a sock_id is (run_id << 24) | snapshot_id, so the snapshot's are found in the
    // range of its rows' ids.
    std::vector<std::pair<int64_t, RowOwner>> extra;
    if (!snap.rows.empty()) {
      store::Stmt& ex =
          runs ? m.prepared(m.extra_runs,
                            "SELECT sock_id, pid, fd FROM extra_owners "
                            "WHERE sock_id BETWEEN ?2 AND ?3 AND (sock_id & 16777215) = ?1 "
                            "ORDER BY sock_id, pid, fd")
               : m.prepared(m.extra_table,
                            "SELECT e.sock_id, e.pid, e.fd FROM extra_owners e "
                            "JOIN sockets s ON s.sock_id = e.sock_id "
                            "WHERE s.snapshot_id = ?1 ORDER BY e.sock_id, e.pid, e.fd");
      ex.bind(1, info.snapshot_id);
      if (runs) {
        ex.bind(2, min_id);
        ex.bind(3, max_id);
      }
      while (ex.step()) {
        extra.emplace_back(ex.get_int(0), RowOwner{ex.get_int(1), ex.get_int(2)});
      }
    }
    if (!extra.empty()) {
      for (SocketRow& r : snap.rows) {
        auto it =
            std::lower_bound(extra.begin(), extra.end(), r.sock_id, [](const auto& e, int64_t id) {
              return e.first < id;
            });
        for (; it != extra.end() && it->first == r.sock_id; ++it) {
          r.owners.push_back(it->second);
        }
      }
    }
  } catch (const store::DbError& e) {
    throw read_error(info.file, e);
  }
  if (!merged) {
    sort_ss(snap.rows, snap.runs);
  }
  return snap;
}

CounterValues SnapshotReader::counters(const SnapshotInfo& info) {
  CounterValues out;
  try {
    store::Stmt& st =
        m_impl->prepared(m_impl->counters,
                         "SELECT n.inode, c.name, c.value FROM counters c "
                         "JOIN netns n ON n.netns_id = c.netns_id WHERE c.snapshot_id = ?1");
    st.bind(1, info.snapshot_id);
    while (st.step()) {
      out[{static_cast<uint64_t>(st.get_int(0)), st.get_text(1)}] = st.get_int(2);
    }
  } catch (const store::DbError& e) {
    throw read_error(info.file, e);
  }
  return out;
}

SnapshotView read_snapshot(store::Db& db, const SnapshotInfo& info) {
  return SnapshotReader(db).read(info);
}

SnapshotView read_snapshot(const SnapshotInfo& info) {
  store::Db db = open_validated(info.file);
  return read_snapshot(db, info);
}

CounterValues read_counters(store::Db& db, const SnapshotInfo& info) {
  return SnapshotReader(db).counters(info);
}

std::string row_state_text(const SocketRow& r) {
  return state_name(static_cast<uint8_t>(std::clamp<int64_t>(r.state, 0, 255)));
}

std::string users_text(const SocketRow& r, const std::map<int64_t, std::string>& comm) {
  if (r.owners.empty()) {
    return "";
  }
  std::string s = "users:(";
  for (size_t i = 0; i < r.owners.size(); ++i) {
    const RowOwner& o = r.owners[i];
    const auto it = comm.find(o.pid);
    s += i == 0 ? "(" : ",(";
    s += "\"" + (it == comm.end() ? std::string("?") : escape_text(it->second)) + "\"";
    s += ",pid=" + std::to_string(o.pid);
    if (o.fd) {
      s += ",fd=" + std::to_string(*o.fd);
    }
    s += ")";
  }
  return s + ")";
}

std::string timer_text(const SocketRow& r) {
  if (!r.timer || *r.timer == 0) {
    return "";
  }
  return "timer:(" + timer_name(*r.timer) + ","
         + (r.expires_ms ? format_ms(*r.expires_ms) : std::string("-")) + ","
         + (r.retrans ? std::to_string(*r.retrans) : std::string("-")) + ")";
}

std::string details_text(const SocketRow& r, const std::map<int64_t, std::string>& comm) {
  std::string details;
  const auto add = [&details](const std::string& part) {
    if (!part.empty()) {
      details += (details.empty() ? "" : " ") + part;
    }
  };
  add(timer_text(r));
  add(r.uid ? "uid:" + std::to_string(*r.uid) : "");
  add("ino:" + std::to_string(r.inode));
  add(r.cookie ? "cookie:" + std::to_string(static_cast<uint64_t>(*r.cookie)) : "");
  add(users_text(r, comm));
  return details;
}

} // namespace sockrewind::analyze
