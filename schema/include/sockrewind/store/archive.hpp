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
  // names it (AtomicFile::commit).
  enum class Vacuum { no, yes };
  void finish(std::string writer, std::optional<bool> redacted, Vacuum vacuum);

  size_t snapshots() const;
  size_t sockets() const;

private:
  struct Impl;
  std::unique_ptr<Impl> m_impl;
};

} // namespace sockrewind::store
