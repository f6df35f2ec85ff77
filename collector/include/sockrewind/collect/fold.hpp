#pragma once
// The fold: the collector's closed minute files, one hour of one host at a time, become one
// hourly archive "<host>-<yyyymmddTHH0000Z>-hour.sqlite" (schema v3 with long runs, written by
// store::ArchiveWriter, the same as `sockrewind-analyze pack`).
//
// Safe at every point: the archive is written under a temporary name, synced and renamed into
// place (replacing an earlier archive of the same hour, whose snapshots it holds too); only
// then are the minute files it absorbed deleted. Killed before the rename, the minute files and
// any earlier archive are untouched and the temporary file is removed by the next run; killed
// after it, the next run finds the minute files' snapshots in the archive and deletes them. A
// reader in between sees a snapshot twice at most, and counts it once.
//
// Call it holding the fold's own lock (OutDirLock with k_fold_lock_name), not the directory's:
// a fold of a big hour takes seconds to a minute, and the minute runs go on meanwhile (they
// only write files of the current hour, and only a fold writes or removes archive temporary
// files). A file deleted by a run's retention while the fold reads it is folded anyway (its
// archive is then pruned by age like it) or, when gone before the fold opens it, skipped.

#include <cstdint>
#include <string>
#include <vector>

namespace sockrewind::collect {

struct FoldResult {
  int archives = 0;       // archives written
  int absorbed = 0;       // minute files deleted after their archive was durable
  uint64_t bytes_in = 0;  // minute files and earlier archives read
  uint64_t bytes_out = 0; // archives written
  uint64_t snapshots = 0;
  double cpu_seconds = 0;            // user + system time of the fold
  int stale_temp_files = 0;          // killed folds' temporary files removed
  std::vector<std::string> warnings; // one line each; the fold never fails the run
};

// Folds every hour that ended at or before `now_utc_seconds` (by the UTC time in the files'
// names). A minute file that cannot be read stays where it is, with a warning; so do all of an
// hour's files when its archive cannot be written (a full disk). Never throws.
FoldResult fold_closed_hours(const std::string& dir, int64_t now_utc_seconds);

// "<host>-<yyyymmddTHH0000Z>-hour.sqlite" for the hour starting at `hour_utc_seconds`.
std::string hour_archive_name(const std::string& host, int64_t hour_utc_seconds);

} // namespace sockrewind::collect
