#pragma once
// One snapshot read straight from a file's tables, row by row as `ss -tuwxanp` shows it: what
// `show` prints and `replay` draws, one snapshot at a time (never the whole series).

#include <sockrewind/analyze/load.hpp>
#include <sockrewind/store/db.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace sockrewind::analyze {

struct RowOwner {
  int64_t pid = 0;
  std::optional<int64_t> fd;
};

// One socket row of a snapshot (values as the file holds them; NULL is nullopt).
struct SocketRow {
  int64_t sock_id = 0;
  uint64_t netns = 0; // netns inode
  int64_t family = 0;
  int64_t type = 0;
  int64_t proto = 0;
  int64_t state = 0;
  std::string proto_name; // ss Netid: tcp, udp, u_str, ...
  int rank = 0;           // ss's order of proto_name
  std::string local;      // "127.0.0.1:80", "[::1]:*", a unix path or "*"
  std::string remote;     // likewise; for unix the peer inode or "*"
  std::optional<int64_t> local_port;
  std::optional<int64_t> remote_port;
  std::optional<int64_t> rx_queue;
  std::optional<int64_t> tx_queue;
  int64_t inode = 0;
  std::optional<int64_t> cookie;
  std::optional<int64_t> uid;
  std::optional<int64_t> timer;
  std::optional<int64_t> expires_ms;
  std::optional<int64_t> retrans;
  std::optional<int64_t> shutdown;
  std::optional<int64_t> rmem_alloc;
  std::optional<int64_t> rcvbuf;
  std::optional<int64_t> drops;
  std::optional<std::string> path;
  std::optional<int64_t> peer_inode;
  std::vector<RowOwner> owners;
};

// Where a row read from schema 3's run tables comes from: what reading the next snapshot needs
// to take the row over while its run goes on (SnapshotReader::read_next).
struct RowRun {
  int64_t run_id = 0;
  int64_t first_snapshot_id = 0;
  int64_t last_snapshot_id = 0; // as stored
  int64_t first_boottime_ns = 0;
  std::optional<int64_t> expires_ms; // as stored (as of the run's first snapshot)
  bool run_owner = false;            // owners.front() is the run's pid/fd
};

struct SnapshotView {
  SnapshotInfo info;
  int64_t self_netns = 0;
  int64_t euid = 0;
  nlohmann::json netns = nlohmann::json::array();
  std::vector<SocketRow> rows;         // in ss order (netns, proto, local port, local, remote)
  std::map<int64_t, std::string> comm; // pid -> comm
  // Schema-3 reads of the run tables: rows[i]'s run is runs[i]; empty otherwise, and when
  // every run ends with this snapshot (runs_end).
  std::vector<RowRun> runs;
  bool runs_end = false;
  int64_t boottime_ns = 0; // the snapshot's CLOCK_BOOTTIME (as its snapshots row has it)
};

// The memory of a snapshot no longer shown, for a read to build the next one in (fresh pages
// cost more than the rows written into them: 100k rows and runs are ~50 MB).
struct ViewMemory {
  std::vector<SocketRow> rows;
  std::vector<RowRun> runs;
};

// Kernel counters of one snapshot: (netns inode, name) -> value.
using CounterValues = std::map<std::pair<uint64_t, std::string>, int64_t>;

// Reads snapshots of one file, one at a time, keeping what every read needs again between
// reads: the prepared statements and the address texts and netns inodes already looked up
// (`replay` keeps one per connection and steps through the file). Schema-3 files are read
// from their run tables (sock_runs JOIN sock_ident) with the `sockets` view's rules, older
// ones from their `sockets` table. Not thread-safe; `db` must outlive the reader.
class SnapshotReader {
public:
  explicit SnapshotReader(store::Db& db);
  ~SnapshotReader();
  SnapshotReader(const SnapshotReader&) = delete;
  SnapshotReader& operator=(const SnapshotReader&) = delete;
  SnapshotReader(SnapshotReader&&) = delete;
  SnapshotReader& operator=(SnapshotReader&&) = delete;

  // The snapshot `info` names (info.file is the reader's file). Throws LoadError. The rows
  // are built in `reuse`'s memory (that of a snapshot no longer shown), if given.
  SnapshotView read(const SnapshotInfo& info, ViewMemory&& reuse = {});
  // The same rows as read(info), taken from `base` where it can: when `base` is the snapshot
  // just before `info` in the same file and run block (schema 3), the rows whose run goes on
  // are taken over from it (their sock_id and expires_ms moved by the sockets view's rules)
  // and only the runs that start at `info` are read; otherwise read(info). `base` may have
  // been read by another reader of the same file; `reuse` is not base's rows.
  SnapshotView
  read_next(const SnapshotInfo& info, const SnapshotView& base, ViewMemory&& reuse = {});
  CounterValues counters(const SnapshotInfo& info);

  // Reads the rows through the `sockets` view even in a schema-3 file (for the tests: the
  // run-table read must give the same rows).
  void use_view(bool on) { m_use_view = on; }

private:
  SnapshotView read_rows(const SnapshotInfo& info, const SnapshotView* base, ViewMemory&& reuse);

  struct Impl;
  std::unique_ptr<Impl> m_impl;
  bool m_use_view = false;
};

// Reads the snapshot `info` names from its file (opened with open_validated). Throws LoadError.
SnapshotView read_snapshot(const SnapshotInfo& info);
// The same from `db`, the file info.file already opened with open_validated().
SnapshotView read_snapshot(store::Db& db, const SnapshotInfo& info);
CounterValues read_counters(store::Db& db, const SnapshotInfo& info);

// Row text as `show` prints it.
std::string opt_text(const std::optional<int64_t>& v); // "-" for NULL
std::string row_state_text(const SocketRow& r);        // "ESTAB", "LISTEN", ...
std::string users_text(const SocketRow& r, const std::map<int64_t, std::string>& comm);
std::string timer_text(const SocketRow& r); // "" without a timer
std::string details_text(const SocketRow& r, const std::map<int64_t, std::string>& comm);

} // namespace sockrewind::analyze
