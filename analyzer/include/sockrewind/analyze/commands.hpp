#pragma once
// The sockrewind-analyze subcommands as library functions (main.cpp only parses arguments).
// Each throws LoadError for bad input files (exit 3) and UsageError for bad option values
// (exit 2).

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/series.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace sockrewind::analyze {

enum class Format { text, json, html };

struct ReportOptions {
  std::vector<std::string> paths;
  Format format = Format::text;
  std::vector<std::string> only;           // detector ids to run (empty: all)
  std::vector<std::string> skip;           // detector ids not to run
  std::vector<std::string> set;            // "ID.KEY=VALUE" threshold overrides
  std::optional<std::string> min_severity; // hide findings below this ("info" shows all)
  std::optional<std::string> fail_on;      // info|warning|critical
  // -o FILE: the report goes there instead of `out`, written whole to a temporary file in the
  // same directory and renamed over FILE (a reader never sees half a report).
  std::optional<std::string> output;
  // Not an option of the command line: SocketFilter::chunk_rows of the load (tests).
  size_t chunk_rows = 0;
};

// Runs the selected detectors over every timeline; findings escalated and ordered, most severe
// first. Throws UsageError for unknown detector ids or bad --set values.
std::vector<Finding> run_detectors(const Series& series, const ReportOptions& opts);

// What `report` does before it renders: loads opts.paths with the detectors running as the
// files are placed (each pass sees a track once its socket is gone; the samples of tracks no
// check keeps are let go then, detector.hpp KeepFn), then runs the checks. The same findings
// as run_detectors on the whole series; `series` holds only the tracks the checks keep.
// The files stay open from the load until the checks are done: the evidence they read back
// comes from the files as loaded, even when one is replaced or deleted meanwhile (as the
// collector's hourly fold and prune do). `after_load`, when given, runs between the two (for
// tests). Throws UsageError, LoadError as run_detectors and load_series do.
struct Analysis {
  Series series;
  std::vector<Finding> findings;
};

Analysis analyze_files(const ReportOptions& opts, const std::function<void()>& after_load = {});
// Writes the report (to opts.output when set, else to `out`); returns the exit code (1 when
// --fail-on is met, else 0). Throws LoadError when opts.output cannot be written.
int write_report(const ReportOptions& opts, std::ostream& out);
// write_report's second half, for a series already loaded: filters `findings` (from
// run_detectors) by --min-severity and renders them in opts.format to opts.output or `out`;
// returns the --fail-on exit code. opts.paths is not read.
int render_report(const Series& series,
                  std::vector<Finding> findings,
                  const ReportOptions& opts,
                  std::ostream& out);
// Writes `data` to `path` atomically: a new temporary file beside it, fsynced, then renamed
// over `path`. Throws LoadError (naming `path`) on failure, leaving no temporary file.
void write_file_atomically(const std::string& path, const std::string& data);
// Every detector with its thresholds and defaults (for --help and --list-detectors).
std::string describe_detectors();

struct ShowOptions {
  std::string path;
  std::optional<std::string> at;   // ISO 8601 time: the last snapshot at or before it
  std::optional<int64_t> snapshot; // snapshot_id in the file
  std::optional<std::string> host; // when the files hold several hosts
  Format format = Format::text;
  std::optional<std::string> state; // ss state name, e.g. ESTAB, LISTEN, CLOSE-WAIT
  std::optional<int> port;          // local or remote port
  std::optional<int> pid;
};

void write_show(const ShowOptions& opts, std::ostream& out);

struct TimelineOptions {
  std::vector<std::string> paths;
  std::optional<std::string> socket; // the socket cookie (decimal, or hex with 0x as ss -e)
  std::optional<int> port;
  std::optional<int> pid;
  std::optional<std::string> host;
  Format format = Format::text;
};

void write_timeline(const TimelineOptions& opts, std::ostream& out);

struct DiffOptions {
  std::vector<std::string> paths;
  std::string from; // snapshot: 1-based position in the merged series, or an ISO 8601 time
  std::string to;
  std::optional<std::string> host;
  Format format = Format::text;
};

void write_diff(const DiffOptions& opts, std::ostream& out);

} // namespace sockrewind::analyze
