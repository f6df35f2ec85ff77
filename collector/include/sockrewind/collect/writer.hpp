#pragma once
// Writing snapshots into a new file that appears under its final name only when complete.

#include <sockrewind/collect/snapshot.hpp>
#include <sockrewind/store/atomic_file.hpp>
#include <sockrewind/store/db.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace sockrewind::collect {

enum class TcpInfoMode { basic, full };

// One output file, a store::AtomicFile: created under a temporary name (".NAME.sqlite.tmp-PID")
// with O_EXCL|O_NOFOLLOW and mode 0600; each write() is one transaction; commit() fsyncs and
// renames it to its final name without replacing anything. Destroyed without commit(), it
// removes the temporary file.
class SnapshotFile {
public:
  // `dir` must exist. `base_name` is the final name without ".sqlite" (e.g. host-20260101T000000Z).
  SnapshotFile(std::string dir, std::string base_name, TcpInfoMode mode);
  SnapshotFile(const SnapshotFile&) = delete;
  SnapshotFile& operator=(const SnapshotFile&) = delete;
  SnapshotFile(SnapshotFile&&) = delete;
  SnapshotFile& operator=(SnapshotFile&&) = delete;
  ~SnapshotFile();

  // Appends one snapshot taken before. Throws store::DbError or std::system_error on failure.
  void write(const Snapshot& snap);

  // Takes one snapshot and appends it, inserting socket rows on a writer thread while the
  // capture goes on (take_snapshot with a sink). The returned snapshot has no socket rows
  // (NetnsCapture::socket_rows counts them). Throws like write().
  Snapshot capture(const CaptureOptions& opts, const HostInfo& host);
  // The same with another source of the snapshot: `take` is called once with the sink, and
  // must call it as take_snapshot does (tests use it to make a dump fail part-way).
  Snapshot capture_with(const std::function<Snapshot(SocketSink*)>& take);

  // Makes the file durable and visible under DIR/BASE.sqlite (or BASE-2.sqlite, ... when that
  // name is taken). Returns the final path.
  std::string commit();

  const std::string& temp_path() const { return m_file.temp_path(); }

private:
  struct SocketStmts;
  class Stream;
  using ExtraOwners = std::unordered_map<uint64_t, std::vector<Owner>>;

  SocketStmts prepare_socket_stmts();
  static ExtraOwners extra_owners(const OwnerScan& owners);
  int64_t next_snapshot_id();
  // The identities of `rows` (sock_ident), numbered from m_last_ident + 1 on.
  void insert_idents(SocketStmts& st, int64_t nid, std::span<const SocketRow* const> rows);
  // Their runs (sock_runs, extra_owners, tcp_info) in snapshot `sid`: rows[k]'s identity is
  // first_ident + k; run ids from m_last_run + 1 on.
  void insert_runs(SocketStmts& st,
                   int64_t sid,
                   std::span<const SocketRow* const> rows,
                   int64_t first_ident,
                   const OwnerScan& owners,
                   const ExtraOwners& extra);
  // Everything of a snapshot but its socket rows: the snapshot row, issues, namespaces,
  // sources, counters, limits, processes.
  void write_rest(int64_t sid, const Snapshot& snap, uint64_t socket_count);
  int64_t netns_id(uint64_t inode);
  int64_t addr_id(uint8_t family, const uint8_t* addr, uint8_t len);
  void remember_addr(const uint8_t* addr, uint8_t len, int64_t id);
  // Forgets the cached addresses with an id above `mark` (their rows were rolled back).
  void forget_addrs_after(int64_t mark);
  int64_t counter_name_id(const std::string& file, const std::string& name);

  std::string m_dir;
  std::string m_base;
  store::AtomicFile m_file;
  TcpInfoMode m_mode;
  std::unique_ptr<store::Db> m_db;
  std::map<uint64_t, int64_t> m_netns;
  std::map<std::string, int64_t> m_addrs;
  std::array<uint8_t, 16> m_last_addr{}; // the last address looked up, its length and id
  int m_last_addr_len = -1;
  int64_t m_last_addr_id = 0;
  int64_t m_max_addr_id = 0; // the largest addrs.addr_id inserted
  std::map<std::pair<std::string, std::string>, int64_t> m_counter_names;
  int64_t m_last_run = 0;   // sock_runs.run_id of the last socket written
  int64_t m_last_ident = 0; // sock_ident.ident_id of the last socket written
};

// "host-yyyymmddTHHMMSSZ" for a CLOCK_REALTIME value.
std::string snapshot_base_name(const std::string& hostname, int64_t realtime_ns);

} // namespace sockrewind::collect
