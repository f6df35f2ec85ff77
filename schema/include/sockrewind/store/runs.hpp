#pragma once
// Writing schema v3's runs (schema/sql/0003_compact.sql): a socket, process, counter or limit
// is stored once for the consecutive snapshots in which it did not change. The one place that
// decides when a run goes on and how its rows look; pack and the fold feed it snapshot by
// snapshot, in time order.
//
// Memory: one open run per socket, process, counter and limit of the snapshot just written
// (what is alive at once), never the length of the series.

#include <sockrewind/store/db.hpp>

#include <cstdint>
#include <limits>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace sockrewind::store {

// One SQLite value as a row holds it (no blobs: none of the run tables has one).
using Value = std::variant<std::monostate, int64_t, double, std::string>;

// The columns of one socket, process, counter or limit row as the version-2 tables (and the
// version-3 views) have them, without sock_id and snapshot_id: add_*() takes values in this
// order.
std::span<const std::string_view> socket_columns();
std::span<const std::string_view> process_columns();
// How socket_columns() split between the two tables of schema 3, each in table order:
// sock_ident's columns after ident_id, and sock_runs' after run_id, ident_id,
// first_snapshot_id, last_snapshot_id. Every writer of sockets builds its INSERTs from these.
std::span<const std::string_view> sock_ident_columns();
std::span<const std::string_view> sock_run_columns();

// ---- The views' rules (schema/sql/0003_compact.sql), for the readers that read the run tables
// themselves (faster than the views, which decode a run again for every snapshot it covers).
// Each rule is written here once; the views are the documented form of the same rules.

// Snapshot ids come in blocks of 64: a run never crosses a block's end, and snapshot S sees
// the runs that start in S's block, at or before S, and end at or after S.
inline constexpr int64_t k_run_block = 64;

// The block's first snapshot id of `sid`.
constexpr int64_t run_block_start(int64_t sid) {
  return sid & ~(k_run_block - 1);
}

// The last snapshot that sees a run stored as [first, last].
constexpr int64_t run_seen_until(int64_t first, int64_t last) {
  return last < (first | (k_run_block - 1)) ? last : (first | (k_run_block - 1));
}

// SQL: the runs of table alias `r` that the snapshot id `sid` (an SQL expression) sees.
std::string sql_runs_seen_by(std::string_view r, std::string_view sid);

// The sock_id of a socket's run in one snapshot, as the sockets view gives it.
constexpr int64_t run_sock_id(int64_t run_id, int64_t sid) {
  return (run_id << 24) | sid;
}

// Time-relative socket fields are stored as of the run's first snapshot and moved by the whole
// milliseconds of CLOCK_BOOTTIME elapsed since: expires_ms counts down (not below 0) while a
// timer runs (timer not NULL and not 0); ti_last_data_recv_ms and ti_last_ack_recv_ms count up.
constexpr int64_t run_elapsed_ms(int64_t first_boottime_ns, int64_t boottime_ns) {
  return (boottime_ns - first_boottime_ns) / 1'000'000;
}

constexpr int64_t run_expires_ms(int64_t expires_ms, bool timer_running, int64_t elapsed_ms) {
  int64_t left = 0;
  if (!timer_running) {
    return expires_ms;
  }
  if (__builtin_sub_overflow(expires_ms, elapsed_ms, &left)) {
    return elapsed_ms > 0 ? 0 : std::numeric_limits<int64_t>::max(); // a hostile file
  }
  return left > 0 ? left : 0;
}

// false when the sum does not fit (a hostile file).
constexpr bool run_since_ms(int64_t value, int64_t elapsed_ms, int64_t& out) {
  return !__builtin_add_overflow(value, elapsed_ms, &out);
}

// Reads column `col` of `st` as a Value (NULL, integer, real or text).
Value read_value(const Stmt& st, int col);
void bind_value(Stmt& st, int index, const Value& v);

class RunWriter {
public:
  // `out` is a new file migrated to schema v3, inside the caller's transaction.
  explicit RunWriter(Db& out);
  ~RunWriter();
  RunWriter(const RunWriter&) = delete;
  RunWriter& operator=(const RunWriter&) = delete;
  RunWriter(RunWriter&&) = delete;
  RunWriter& operator=(RunWriter&&) = delete;

  // Starts snapshot `sid`: the caller has written (or will write) its snapshots row with these
  // times. Ids are 1, 2, 3, ... with no hole. A different `timeline` (host and boot) ends every
  // run, as does a multiple of 64 (see the schema).
  void begin_snapshot(int64_t sid,
                      int64_t boottime_ns,
                      int64_t boottime_end_ns,
                      std::string_view timeline);

  // A socket of the current snapshot, values in socket_columns() order (ids already in the
  // output's numbering). Returns its sock_id in this snapshot, for extra_owners and tcp_info.
  int64_t add_socket(std::span<const Value> row);
  void add_process(std::span<const Value> row);
  void add_counter(int64_t netns_id, const std::string& file, const std::string& name, int64_t v);
  void add_limit(int64_t netns_id, const std::string& name, const std::string& value);

  // Writes every open run. Call once, before the caller's COMMIT.
  void finish();

  struct Stats {
    uint64_t socket_rows = 0; // add_socket calls
    uint64_t socket_runs = 0; // rows written to sock_runs
    uint64_t socket_idents = 0;
  };

  const Stats& stats() const { return m_stats; }

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
  Stats m_stats;
};

} // namespace sockrewind::store
