#pragma once
// Copying snapshots of validated files (any schema version this build reads) into one new file
// of the current schema, with long runs (store::RunWriter): what `sockrewind-analyze pack` and
// the collector's fold of minute files into hourly archives both write. Rows are read from
// the inputs' tables and views by name, written with fresh ids; nothing a file defines beyond
// the schema is read.

#include <sockrewind/store/db.hpp>
#include <sockrewind/store/meta.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::store {

// What identifies a host or a person, as it goes into the copy; unchanged by default. pack
// --redact overrides it.
class Rewrite {
public:
  virtual ~Rewrite() = default;
  Rewrite() = default;
  Rewrite(const Rewrite&) = delete;
  Rewrite& operator=(const Rewrite&) = delete;
  Rewrite(Rewrite&&) = delete;
  Rewrite& operator=(Rewrite&&) = delete;

  // `addr`: 4 or 16 bytes.
  virtual std::string address(std::string_view addr) const { return std::string(addr); }

  virtual std::string hostname(std::string_view s) const { return std::string(s); }

  virtual std::string unix_path(std::string_view s) const { return std::string(s); }

  virtual std::string cmdline(std::string_view s) const { return std::string(s); }

  // An `ip netns` name.
  virtual std::string netns_name(std::string_view s) const { return std::string(s); }

  // capture_issues.example quotes paths, names and addresses.
  virtual bool keep_issue_examples() const { return true; }
};

// One snapshot of an input file.
struct SnapshotRef {
  int64_t snapshot_id = 0;
  std::string host;
  std::string boot_id;
  int64_t realtime_ns = 0;
  int64_t boottime_ns = 0;
  int64_t boottime_end_ns = 0;
};

// The snapshots of a validated file, in snapshot_id order. Throws DbError.
std::vector<SnapshotRef> snapshot_refs(Db& in);

// The port indexes of an archive, written on request only (`pack --port-index`; the fold's
// archives and the collector's minute files have none): a port's sockets and a socket's runs
// are found without reading every run, at about a fifth more bytes (gen_series' day packed:
// 67 -> 81 bytes per socket-sample). No reader needs them (a file without them gives the same
// rows, by a scan) and the schema version does not change:
//   sock_ident_local_port  ON sock_ident(local_port)
//   sock_ident_remote_port ON sock_ident(remote_port)
//   sock_runs_ident        ON sock_runs(ident_id) WHERE ident_id IS NOT NULL
// The last is partial in name only (ident_id is NOT NULL: every run is in it), so that SQLite
// uses it only for a query whose WHERE says `ident_id IS NOT NULL` (sql_port_runs): any
// other query of the runs keeps the plan it has on a file without the index (a join of runs
// and identities without ORDER BY would otherwise walk the runs in identity order through it,
// one seek per run). ArchiveWriter::finish(..., PortIndex::yes) creates them; throws DbError.
void create_archive_indexes(Db& db);

// True when `db` has the index of runs by identity (an archive written since it came).
bool has_runs_by_ident_index(Db& db);

// The WHERE condition of `sock_runs JOIN sock_ident USING (ident_id)` (schema 3) that selects
// the runs of the sockets whose local or remote port is ?1 (bound by the caller to `port`):
// through the indexes above where `db` has them and the port has at most 1/8 of the
// identities (counted up to that bound through the port indexes; a busier port costs less
// read in order, every run, than a seek per run); otherwise every run joined to its identity.
// The same rows either way; through the indexes they come in identity order, not run order.
// Throws DbError.
struct PortRuns {
  std::string where;
  bool indexed = false; // through the indexes
};

PortRuns sql_port_runs(Db& db, int64_t port);

class ArchiveWriter {
public:
  // `path`: a new, empty file (an AtomicFile's temporary name); migrated here.
  ArchiveWriter(const std::string& path, const Rewrite& rewrite);
  ~ArchiveWriter();
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;
  ArchiveWriter(ArchiveWriter&&) = delete;
  ArchiveWriter& operator=(ArchiveWriter&&) = delete;

  // Copies snapshot `s` of `in` (validated) as the next snapshot of the output. Snapshots go
  // in time order per host and boot. Throws DbError (the input's or the output's). What `in`
  // maps into the output's numbering is kept until done_with(in): keep `in` open until then.
  void add(Db& in, const SnapshotRef& s);
  // `in` will not be added from again (it may be closed).
  void done_with(const Db& in);

  // Writes the open runs and the meta rows (tcp_info: the inputs' mode, or "mixed"), commits
  // and closes the output; with `vacuum`, rewrites it first so that no free page holds
  // anything (pack --redact needs that; it doubles the writing). The caller then syncs and
  // names it (AtomicFile::commit). With `port_index`, the port indexes above are written too.
  enum class Vacuum { no, yes };
  enum class PortIndex { no, yes };
  void finish(std::string writer,
              std::optional<bool> redacted,
              Vacuum vacuum,
              PortIndex port_index = PortIndex::no);

  size_t snapshots() const;
  size_t sockets() const;

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace sockrewind::store
