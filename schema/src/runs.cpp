#include <sockrewind/assert.hpp>
#include <sockrewind/store/runs.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <map>
#include <unordered_map>
#include <utility>

namespace sockrewind::store {

namespace {

constexpr std::array<std::string_view, 47> k_socket_columns = {"netns_id",
                                                               "family",
                                                               "type",
                                                               "proto",
                                                               "state",
                                                               "local_addr_id",
                                                               "local_port",
                                                               "remote_addr_id",
                                                               "remote_port",
                                                               "rx_queue",
                                                               "tx_queue",
                                                               "inode",
                                                               "cookie",
                                                               "uid",
                                                               "timer",
                                                               "expires_ms",
                                                               "retrans",
                                                               "shutdown",
                                                               "tos",
                                                               "skm_rmem_alloc",
                                                               "skm_rcvbuf",
                                                               "skm_wmem_alloc",
                                                               "skm_sndbuf",
                                                               "skm_fwd_alloc",
                                                               "skm_wmem_queued",
                                                               "skm_optmem",
                                                               "skm_backlog",
                                                               "skm_drops",
                                                               "path",
                                                               "peer_inode",
                                                               "ti_rto_us",
                                                               "ti_rtt_us",
                                                               "ti_rttvar_us",
                                                               "ti_snd_cwnd",
                                                               "ti_unacked",
                                                               "ti_backoff",
                                                               "ti_probes",
                                                               "ti_total_retrans",
                                                               "ti_last_data_recv_ms",
                                                               "ti_last_ack_recv_ms",
                                                               "ti_bytes_acked",
                                                               "ti_bytes_received",
                                                               "ti_segs_out",
                                                               "ti_notsent_bytes",
                                                               "ti_snd_wnd",
                                                               "pid",
                                                               "fd"};

// sock_ident's columns (after ident_id) and sock_runs' (after run_id, ident_id, first, last).
constexpr std::array<std::string_view, 13> k_ident_columns = {"netns_id",
                                                              "family",
                                                              "type",
                                                              "proto",
                                                              "local_addr_id",
                                                              "local_port",
                                                              "remote_addr_id",
                                                              "remote_port",
                                                              "inode",
                                                              "cookie",
                                                              "uid",
                                                              "path",
                                                              "peer_inode"};

constexpr std::array<std::string_view, 12> k_process_columns = {"pid",
                                                                "start_ticks",
                                                                "ppid",
                                                                "uid",
                                                                "netns_id",
                                                                "comm",
                                                                "cmdline",
                                                                "fd_count",
                                                                "socket_fds",
                                                                "nofile_soft",
                                                                "nofile_hard",
                                                                "state"};
constexpr std::array<std::string_view, 6> k_proc_ident_columns = {
    "pid", "start_ticks", "ppid", "uid", "comm", "cmdline"};

size_t index_of(std::span<const std::string_view> cols, std::string_view name) {
  const auto it = std::find(cols.begin(), cols.end(), name);
  SR_ASSERT(it != cols.end());
  return static_cast<size_t>(it - cols.begin());
}

// A key that is equal exactly when the values are: type tag + bytes for each value.
void append_key(std::string& key, const Value& v) {
  if (const auto* i = std::get_if<int64_t>(&v)) {
    key += 'i';
    key.append(reinterpret_cast<const char*>(i), sizeof *i);
  } else if (const auto* d = std::get_if<double>(&v)) {
    key += 'r';
    key.append(reinterpret_cast<const char*>(d), sizeof *d);
  } else if (const auto* s = std::get_if<std::string>(&v)) {
    key += 't';
    const auto n = static_cast<uint32_t>(s->size());
    key.append(reinterpret_cast<const char*>(&n), sizeof n);
    key += *s;
  } else {
    key += 'n';
  }
}

std::string placeholders(size_t n) {
  std::string s;
  for (size_t i = 1; i <= n; ++i) {
    s += (i == 1 ? "?" : ",?") + std::to_string(i);
  }
  return s;
}

std::string joined(std::span<const std::string_view> cols) {
  std::string s;
  for (const std::string_view c : cols) {
    s += (s.empty() ? "" : ", ") + std::string(c);
  }
  return s;
}

// What a run remembers of its first snapshot.
struct Entry {
  int64_t ident = 0;  // sock_ident / proc_ident id, or counter_names id
  int64_t run_id = 0; // sockets: the run's id (known from its first snapshot on)
  int64_t first = 0;
  int64_t last = 0;
  int64_t first_boot_ns = 0;
  int64_t first_dur_ns = 0;
  bool open = false;
  std::vector<Value> v; // the run's values
};

} // namespace

namespace {

// Which columns of a row go to the identity table and which to the runs table.
struct Layout {
  std::vector<std::string_view> run_cols;
  std::vector<size_t> ident_src; // row index of each identity column
  std::vector<size_t> run_src;   // row index of each run column
};

Layout split(std::span<const std::string_view> all, std::span<const std::string_view> ident) {
  Layout l;
  for (size_t i = 0; i < all.size(); ++i) {
    if (std::find(ident.begin(), ident.end(), all[i]) == ident.end()) {
      l.run_cols.push_back(all[i]);
      l.run_src.push_back(i);
    }
  }
  for (const std::string_view c : ident) {
    l.ident_src.push_back(index_of(all, c));
  }
  return l;
}

} // namespace

std::string sql_runs_seen_by(std::string_view r, std::string_view sid) {
  const std::string a(r);
  const std::string s = "(" + std::string(sid) + ")";
  return a + ".first_snapshot_id BETWEEN " + s + " & ~" + std::to_string(k_run_block - 1) + " AND "
         + s + " AND " + a + ".last_snapshot_id >= " + s;
}

std::span<const std::string_view> socket_columns() {
  return k_socket_columns;
}

std::span<const std::string_view> sock_ident_columns() {
  return k_ident_columns;
}

std::span<const std::string_view> sock_run_columns() {
  static const Layout k_layout = split(k_socket_columns, k_ident_columns);
  return k_layout.run_cols;
}

std::span<const std::string_view> process_columns() {
  return k_process_columns;
}

Value read_value(const Stmt& st, int col) {
  switch (st.column_type(col)) {
  case SQLITE_NULL:
    return std::monostate{};
  case SQLITE_INTEGER:
    return st.get_int(col);
  case SQLITE_FLOAT:
    return st.get_double(col);
  default:
    return st.get_text(col);
  }
}

void bind_value(Stmt& st, int index, const Value& v) {
  if (std::holds_alternative<std::monostate>(v)) {
    st.bind_null(index);
  } else if (const auto* i = std::get_if<int64_t>(&v)) {
    st.bind(index, *i);
  } else if (const auto* d = std::get_if<double>(&v)) {
    st.bind(index, *d);
  } else {
    st.bind(index, std::string_view(std::get<std::string>(v)));
  }
}

struct RunWriter::Impl {
  explicit Impl(Db& db)
      : out(db),
        sock(split(k_socket_columns, k_ident_columns)),
        proc(split(k_process_columns, k_proc_ident_columns)),
        r_timer(index_of(sock.run_cols, "timer")),
        r_expires(index_of(sock.run_cols, "expires_ms")),
        r_last_data(index_of(sock.run_cols, "ti_last_data_recv_ms")),
        r_last_ack(index_of(sock.run_cols, "ti_last_ack_recv_ms")),
        ins_sock_ident(out.prepare("INSERT INTO sock_ident (" + joined(k_ident_columns)
                                       + ") VALUES (" + placeholders(k_ident_columns.size()) + ")",
                                   true)),
        ins_sock_run(out.prepare("INSERT INTO sock_runs (run_id, ident_id, first_snapshot_id, "
                                 "last_snapshot_id, "
                                     + joined(sock.run_cols) + ") VALUES ("
                                     + placeholders(4 + sock.run_cols.size()) + ")",
                                 true)),
        ins_proc_ident(out.prepare("INSERT INTO proc_ident (" + joined(k_proc_ident_columns)
                                       + ") VALUES (" + placeholders(k_proc_ident_columns.size())
                                       + ")",
                                   true)),
        ins_proc_run(out.prepare("INSERT OR REPLACE INTO proc_runs (proc_id, first_snapshot_id, "
                                 "last_snapshot_id, "
                                     + joined(proc.run_cols) + ") VALUES ("
                                     + placeholders(3 + proc.run_cols.size()) + ")",
                                 true)),
        ins_counter_name(
            out.prepare("INSERT INTO counter_names (file, name) VALUES (?1, ?2)", true)),
        ins_counter_run(out.prepare("INSERT OR REPLACE INTO counter_runs (first_snapshot_id, "
                                    "netns_id, name_id, last_snapshot_id, value) "
                                    "VALUES (?1,?2,?3,?4,?5)",
                                    true)),
        ins_limit_run(out.prepare("INSERT OR REPLACE INTO limit_runs (first_snapshot_id, "
                                  "netns_id, name, last_snapshot_id, value) "
                                  "VALUES (?1,?2,?3,?4,?5)",
                                  true)) {}

  // A time-relative value `now` still matches the run's `first` value moved by `delta_ms`
  // (sign +1: time since, growing; -1: time until, shrinking to 0), within `tol_ms`.
  static bool moved_with_time(
      const Value& first, const Value& now, int64_t delta_ms, int sign, int64_t tol_ms) {
    const auto* a = std::get_if<int64_t>(&first);
    const auto* b = std::get_if<int64_t>(&now);
    if (a == nullptr || b == nullptr) {
      return first == now;
    }
    const int64_t predicted = sign > 0 ? *a + delta_ms : std::max<int64_t>(0, *a - delta_ms);
    return std::llabs(*b - predicted) <= tol_ms;
  }

  bool same_socket(const Entry& e, const std::vector<Value>& v) const {
    const int64_t delta_ms = (boot_ns - e.first_boot_ns) / 1'000'000;
    const int64_t tol_ms = std::max(e.first_dur_ns, dur_ns) / 1'000'000 + 10;
    for (size_t i = 0; i < v.size(); ++i) {
      if (i == r_last_data || i == r_last_ack) {
        if (!moved_with_time(e.v[i], v[i], delta_ms, 1, tol_ms)) {
          return false;
        }
      } else if (i == r_expires) {
        const auto* timer = std::get_if<int64_t>(&e.v[r_timer]);
        const bool counting = timer != nullptr && *timer != 0;
        if (counting ? !moved_with_time(e.v[i], v[i], delta_ms, -1, tol_ms) : e.v[i] != v[i]) {
          return false;
        }
      } else if (e.v[i] != v[i]) {
        return false;
      }
    }
    return true;
  }

  void close_socket(const Entry& e) {
    ins_sock_run.bind(1, e.run_id).bind(2, e.ident).bind(3, e.first).bind(4, e.last);
    for (size_t i = 0; i < e.v.size(); ++i) {
      bind_value(ins_sock_run, static_cast<int>(5 + i), e.v[i]);
    }
    ins_sock_run.run();
    ++stats->socket_runs;
  }

  void close_process(const Entry& e) {
    ins_proc_run.bind(1, e.ident).bind(2, e.first).bind(3, e.last);
    for (size_t i = 0; i < e.v.size(); ++i) {
      bind_value(ins_proc_run, static_cast<int>(4 + i), e.v[i]);
    }
    ins_proc_run.run();
  }

  void close_counter(const Entry& e) {
    ins_counter_run.bind(1, e.first).bind(3, e.ident).bind(4, e.last);
    bind_value(ins_counter_run, 2, e.v[0]);
    bind_value(ins_counter_run, 5, e.v[1]);
    ins_counter_run.run();
  }

  void close_limit(const Entry& e) {
    ins_limit_run.bind(1, e.first).bind(4, e.last);
    bind_value(ins_limit_run, 2, e.v[0]);
    bind_value(ins_limit_run, 3, e.v[1]);
    bind_value(ins_limit_run, 5, e.v[2]);
    ins_limit_run.run();
  }

  // Ends runs at the start of snapshot `next`: those not seen in the snapshot before (gone),
  // and all of them at a new timeline or a multiple of 64.
  template <class Close>
  static void
  roll(std::unordered_map<std::string, Entry>& m, int64_t next, bool all, bool chunk, Close close) {
    for (auto it = m.begin(); it != m.end();) {
      Entry& e = it->second;
      const bool gone = all || e.last < next - 1;
      if (e.open && (gone || chunk)) {
        close(e);
        e.open = false;
      }
      it = gone ? m.erase(it) : std::next(it);
    }
  }

  // Extends the run of `key` into the current snapshot, or starts a new one. Returns it.
  template <class Same, class NewIdent, class Close>
  Entry& add(std::unordered_map<std::string, Entry>& m,
             const std::string& key,
             std::vector<Value>&& v,
             Same same,
             NewIdent new_ident,
             Close close) {
    auto [it, inserted] = m.try_emplace(key);
    Entry& e = it->second;
    if (inserted) {
      e.ident = new_ident();
    } else if (e.last == sid && e.open) {
      // The same row twice in one snapshot: a one-snapshot run of its own, kept apart.
      Entry dup = e;
      dup.run_id = ++next_run;
      dup.first = dup.last = sid;
      dup.first_boot_ns = boot_ns;
      dup.first_dur_ns = dur_ns;
      dup.v = std::move(v);
      close(dup);
      spare = dup;
      return spare;
    }
    if (e.open && e.last == sid - 1 && same(e, v)) {
      e.last = sid;
      return e;
    }
    if (e.open) {
      close(e);
    }
    e.open = true;
    e.run_id = ++next_run;
    e.first = e.last = sid;
    e.first_boot_ns = boot_ns;
    e.first_dur_ns = dur_ns;
    e.v = std::move(v);
    return e;
  }

  Db& out;
  RunWriter::Stats* stats = nullptr;
  Layout sock;
  Layout proc;
  size_t r_timer, r_expires, r_last_data, r_last_ack; // in sock.run_cols
  Stmt ins_sock_ident;
  Stmt ins_sock_run;
  Stmt ins_proc_ident;
  Stmt ins_proc_run;
  Stmt ins_counter_name;
  Stmt ins_counter_run;
  Stmt ins_limit_run;

  int64_t sid = 0;
  int64_t boot_ns = 0;
  int64_t dur_ns = 0;
  std::string timeline;
  int64_t next_run = 0;
  Entry spare;
  std::unordered_map<std::string, Entry> sockets, processes, counters, limits;
  std::map<std::pair<std::string, std::string>, int64_t> counter_names;
};

RunWriter::RunWriter(Db& out) : m_impl(std::make_unique<Impl>(out)) {
  m_impl->stats = &m_stats;
}

RunWriter::~RunWriter() = default;

void RunWriter::begin_snapshot(int64_t sid,
                               int64_t boottime_ns,
                               int64_t boottime_end_ns,
                               std::string_view timeline) {
  Impl& d = *m_impl;
  SR_ASSERT(sid == d.sid + 1);
  const bool all = timeline != d.timeline;
  const bool chunk = run_block_start(sid) != run_block_start(sid - 1);
  Impl::roll(d.sockets, sid, all, chunk, [&](const Entry& e) { d.close_socket(e); });
  Impl::roll(d.processes, sid, all, chunk, [&](const Entry& e) { d.close_process(e); });
  Impl::roll(d.counters, sid, all, chunk, [&](const Entry& e) { d.close_counter(e); });
  Impl::roll(d.limits, sid, all, chunk, [&](const Entry& e) { d.close_limit(e); });
  d.sid = sid;
  d.boot_ns = boottime_ns;
  d.dur_ns = std::max<int64_t>(0, boottime_end_ns - boottime_ns);
  d.timeline = std::string(timeline);
}

int64_t RunWriter::add_socket(std::span<const Value> row) {
  Impl& d = *m_impl;
  SR_ASSERT(row.size() == k_socket_columns.size());
  std::string key;
  for (const size_t i : d.sock.ident_src) {
    append_key(key, row[i]);
  }
  std::vector<Value> v;
  v.reserve(d.sock.run_src.size());
  for (const size_t i : d.sock.run_src) {
    v.push_back(row[i]);
  }
  ++m_stats.socket_rows;
  const Entry& e = d.add(
      d.sockets,
      key,
      std::move(v),
      [&](const Entry& run, const std::vector<Value>& now) { return d.same_socket(run, now); },
      [&] {
        for (size_t k = 0; k < d.sock.ident_src.size(); ++k) {
          bind_value(d.ins_sock_ident, static_cast<int>(k + 1), row[d.sock.ident_src[k]]);
        }
        d.ins_sock_ident.run();
        ++m_stats.socket_idents;
        return d.out.last_insert_rowid();
      },
      [&](const Entry& run) { d.close_socket(run); });
  return run_sock_id(e.run_id, d.sid);
}

void RunWriter::add_process(std::span<const Value> row) {
  Impl& d = *m_impl;
  SR_ASSERT(row.size() == k_process_columns.size());
  std::string key;
  for (const size_t i : d.proc.ident_src) {
    append_key(key, row[i]);
  }
  std::vector<Value> v;
  for (const size_t i : d.proc.run_src) {
    v.push_back(row[i]);
  }
  d.add(
      d.processes,
      key,
      std::move(v),
      [](const Entry& run, const std::vector<Value>& now) { return run.v == now; },
      [&] {
        for (size_t k = 0; k < d.proc.ident_src.size(); ++k) {
          bind_value(d.ins_proc_ident, static_cast<int>(k + 1), row[d.proc.ident_src[k]]);
        }
        d.ins_proc_ident.run();
        return d.out.last_insert_rowid();
      },
      [&](const Entry& run) { d.close_process(run); });
}

void RunWriter::add_counter(int64_t netns_id,
                            const std::string& file,
                            const std::string& name,
                            int64_t value) {
  Impl& d = *m_impl;
  std::string key;
  append_key(key, netns_id);
  append_key(key, file);
  append_key(key, name);
  // Built element by element: GCC 12 -O2 warns (-Wmaybe-uninitialized, a false positive) on a
  // braced list of variants here.
  std::vector<Value> row;
  row.reserve(2);
  row.emplace_back(netns_id);
  row.emplace_back(value);
  d.add(
      d.counters,
      key,
      std::move(row),
      [](const Entry& run, const std::vector<Value>& now) { return run.v == now; },
      [&] {
        const auto [it, fresh] = d.counter_names.try_emplace({file, name}, 0);
        if (fresh) {
          d.ins_counter_name.bind(1, file).bind(2, name).run();
          it->second = d.out.last_insert_rowid();
        }
        return it->second;
      },
      [&](const Entry& run) { d.close_counter(run); });
}

void RunWriter::add_limit(int64_t netns_id, const std::string& name, const std::string& value) {
  Impl& d = *m_impl;
  std::string key;
  append_key(key, netns_id);
  append_key(key, name);
  d.add(
      d.limits,
      key,
      {netns_id, name, value},
      [](const Entry& run, const std::vector<Value>& now) { return run.v == now; },
      [] { return int64_t{0}; },
      [&](const Entry& run) { d.close_limit(run); });
}

void RunWriter::finish() {
  Impl& d = *m_impl;
  const int64_t none = d.sid + 2; // every entry counts as gone
  Impl::roll(d.sockets, none, true, true, [&](const Entry& e) { d.close_socket(e); });
  Impl::roll(d.processes, none, true, true, [&](const Entry& e) { d.close_process(e); });
  Impl::roll(d.counters, none, true, true, [&](const Entry& e) { d.close_counter(e); });
  Impl::roll(d.limits, none, true, true, [&](const Entry& e) { d.close_limit(e); });
}

} // namespace sockrewind::store
