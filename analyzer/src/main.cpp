// sockrewind-analyze: read snapshot files and report. Exit codes: 0 ok, 1 --fail-on met,
// 2 usage error, 3 unreadable, corrupt or incompatible input, 4 internal error (errors.hpp).
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/export.hpp>
#include <sockrewind/analyze/info.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/analyze/replay_model.hpp>

#include <CLI/CLI.hpp>

#include <malloc.h>

#include <cstdio>
#include <iostream>
#include <map>

namespace {

using sockrewind::analyze::Format;

const std::map<std::string, Format> k_text_json{{"text", Format::text}, {"json", Format::json}};
const std::map<std::string, Format> k_report_formats{
    {"text", Format::text}, {"json", Format::json}, {"html", Format::html}};

void add_host_option(CLI::App* cmd, std::optional<std::string>& host) {
  cmd->add_option("--host", host, "Only this host (when the files hold several)");
}

int run(int argc, char** argv) {
  using namespace sockrewind::analyze;
  CLI::App app("Replays sockrewind snapshot files. PATH is a file or a directory of *.sqlite "
               "files; snapshots of all of them are merged per host in time order.\n"
               "Exit codes: 0 ok, 1 --fail-on met, 2 usage error, 3 bad input file, 4 internal "
               "error (a bug).",
               "sockrewind-analyze");
  app.set_version_flag("--version", std::string("sockrewind-analyze ") + SOCKREWIND_VERSION);
  app.require_subcommand(1);

  ReportOptions rep;
  bool list_detectors = false;
  CLI::App* report = app.add_subcommand(
      "report", "All findings, most severe first, with their subject and evidence series");
  report->add_option("PATH", rep.paths, "Snapshot files or directories");
  report->add_option("--format", rep.format, "Output format")
      ->transform(CLI::CheckedTransformer(k_report_formats, CLI::ignore_case))
      ->option_text("text|json|html")
      ->default_str("text");
  report->add_option("-o,--output",
                     rep.output,
                     "Write the report to FILE instead of stdout (a temporary file beside it, "
                     "renamed over FILE when complete)");
  report
      ->add_option(
          "--fail-on", rep.fail_on, "Exit 1 when a finding of this severity or worse exists")
      ->check(CLI::IsMember({"info", "warning", "critical"}));
  report
      ->add_option("--min-severity",
                   rep.min_severity,
                   "Hide findings below this severity (default: show all)")
      ->check(CLI::IsMember({"info", "warning", "critical"}));
  report->add_option("--detectors", rep.only, "Run only these detector ids (comma separated)")
      ->delimiter(',');
  report->add_option("--skip", rep.skip, "Do not run these detector ids (comma separated)")
      ->delimiter(',');
  report->add_option(
      "--set", rep.set, "Override a threshold: ID.KEY=VALUE (repeatable); see --list-detectors");
  report->add_flag("--list-detectors",
                   list_detectors,
                   "Print every detector with its thresholds and defaults, then exit");
  report->footer("Detectors and thresholds (override with --set ID.KEY=VALUE):\n"
                 + describe_detectors());

  ShowOptions show_opts;
  CLI::App* show =
      app.add_subcommand("show", "One snapshot like `ss -tuwxanp`: queues, timers and owners");
  show->add_option("PATH", show_opts.path, "A snapshot file or directory")->required();
  auto* at = show->add_option(
      "--at", show_opts.at, "The last snapshot at or before this time (ISO 8601, UTC)");
  show->add_option("--snapshot", show_opts.snapshot, "snapshot_id within the file")->excludes(at);
  show->add_option("--format", show_opts.format, "Output format")
      ->transform(CLI::CheckedTransformer(k_text_json, CLI::ignore_case))
      ->option_text("text|json")
      ->default_str("text");
  show->add_option("--state", show_opts.state, "Only this state (ESTAB, LISTEN, CLOSE-WAIT, ...)");
  show->add_option("--port", show_opts.port, "Only sockets with this local or remote port")
      ->check(CLI::Range(0, 65535));
  show->add_option("--pid", show_opts.pid, "Only sockets owned by this pid");
  add_host_option(show, show_opts.host);

  TimelineOptions tl_opts;
  CLI::App* timeline =
      app.add_subcommand("timeline", "One socket, listener, port or pid over time");
  timeline->add_option("PATH", tl_opts.paths, "Snapshot files or directories")->required();
  auto* sock_opt =
      timeline->add_option("--socket", tl_opts.socket, "Socket cookie (decimal or 0x hex)");
  auto* port_opt = timeline->add_option("--port", tl_opts.port, "Local or remote port")
                       ->check(CLI::Range(0, 65535));
  auto* pid_opt = timeline->add_option("--pid", tl_opts.pid, "Process id");
  sock_opt->excludes(port_opt)->excludes(pid_opt);
  port_opt->excludes(pid_opt);
  timeline->add_option("--format", tl_opts.format, "Output format")
      ->transform(CLI::CheckedTransformer(k_text_json, CLI::ignore_case))
      ->option_text("text|json")
      ->default_str("text");
  add_host_option(timeline, tl_opts.host);

  DiffOptions diff_opts;
  CLI::App* diff =
      app.add_subcommand("diff", "Socket-level changes between two snapshots, and counter deltas");
  diff->add_option("PATH", diff_opts.paths, "Snapshot files or directories")->required();
  diff->add_option("--from",
                   diff_opts.from,
                   "Snapshot: position in the merged series (1 = first, as `info` numbers "
                   "them), or an ISO 8601 time")
      ->required();
  diff->add_option("--to", diff_opts.to, "Snapshot, as for --from")->required();
  diff->add_option("--format", diff_opts.format, "Output format")
      ->transform(CLI::CheckedTransformer(k_text_json, CLI::ignore_case))
      ->option_text("text|json")
      ->default_str("text");
  add_host_option(diff, diff_opts.host);

  PackOptions pack_opts;
  CLI::App* pack = app.add_subcommand(
      "pack",
      "Chosen snapshots of many files in ONE new snapshot file (same schema) for a bug report");
  pack->add_option("PATH", pack_opts.paths, "Snapshot files or directories")->required();
  pack->add_option("-o,--output", pack_opts.out, "The new file (must not exist)")->required();
  pack->add_option("--since", pack_opts.since, "Only snapshots at or after this time (ISO 8601)");
  pack->add_option("--until", pack_opts.until, "Only snapshots at or before this time (ISO 8601)");
  add_host_option(pack, pack_opts.host);
  pack->add_flag("--redact",
                 pack_opts.redact,
                 "Replace IP addresses (prefix-preserving), hostnames, netns names, unix socket "
                 "paths and cmdline arguments after argv[0] consistently; keep ports, states, "
                 "queues, counters and times");
  pack->add_flag("--port-index",
                 pack_opts.port_index,
                 "Also index sockets by port: `timeline --port` of a quiet port then reads only "
                 "its sockets' runs (about a fifth more bytes; the fold's archives have none)");

  std::vector<std::string> info_paths;
  CLI::App* info = app.add_subcommand(
      "info", "Files, hosts, snapshot times, intervals and gaps, sources used, capture issues");
  info->add_option("PATH", info_paths, "Snapshot files or directories")->required();

  ExportOptions export_opts;
  bool export_ddl = false;
  std::string export_to;
  CLI::App* exp = app.add_subcommand(
      "export", "Every snapshot as one file per ClickHouse table, or that schema's DDL (--ddl)");
  exp->add_option("PATH", export_opts.paths, "Snapshot files or directories");
  exp->add_option("--to", export_to, "Target database")
      ->required()
      ->check(CLI::IsMember({"clickhouse"}))
      ->option_text("clickhouse");
  exp->add_option("--out",
                  export_opts.out,
                  "The directory to create (must not exist): DIR/<table>.tsv, ClickHouse "
                  "TabSeparated");
  exp->add_flag("--ddl", export_ddl, "Print the CREATE TABLE statements of the tables, then exit");
  add_host_option(exp, export_opts.host);
  exp->add_option("--jobs", export_opts.jobs, "Files read in parallel (at most the CPUs)")
      ->check(CLI::Range(1, 64))
      ->default_str("2");
  ReplayOptions replay_opts;
  CLI::App* replay = app.add_subcommand(
      "replay",
      "Step through the snapshots in the terminal (like atop -r): sort, filter, follow a "
      "socket, jump to findings; keys on the bottom line and under ?");
  replay->add_option("PATH", replay_opts.paths, "Snapshot files or directories")->required();
  replay
      ->add_option(
          "--play-interval", replay_opts.play_ms, "Milliseconds per snapshot when playing (Space)")
      ->check(CLI::Range(50, 60000))
      ->default_val(1000);
  add_host_option(replay, replay_opts.host);
  replay->footer(
      "Keys: n/p (Right/Left) next/previous snapshot, g/G first/last, Space play/pause, t jump "
      "to a snapshot number or ISO 8601 time, s sort (ss, Recv-Q, Send-Q, state, owner, port), "
      "r reverse, / filter (port:N pid:N state:NAME text), c clear the filter, Up/Down select, "
      "Enter follow the socket over the series, f findings pane (Tab to it, Enter jumps to the "
      "snapshot and subject), ? help, q quit. Needs a terminal: otherwise exit 2 (use show or "
      "timeline).");
  // Hidden: time opening and stepping without a terminal (tests/bench/bench_replay.sh).
  replay->add_flag("--bench", replay_opts.bench)->group("");
  replay->add_option("--bench-steps", replay_opts.bench_steps)->group("");

  try {
    app.parse(argc, argv);
    if (report->parsed() && !list_detectors && rep.paths.empty()) {
      throw CLI::RequiredError("PATH");
    }
    if (exp->parsed() && !export_ddl && (export_opts.paths.empty() || export_opts.out.empty())) {
      throw CLI::RequiredError("PATH and --out (or --ddl)");
    }
    if (timeline->parsed() && !tl_opts.socket && !tl_opts.port && !tl_opts.pid) {
      throw CLI::RequiredError("one of --socket, --port, --pid");
    }
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error is exit 2 (CLI11 has its own codes).
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    int rc = 0;
    if (report->parsed()) {
      if (list_detectors) {
        std::cout << describe_detectors();
      } else {
        rep.paths = expand_paths(rep.paths);
        rc = write_report(rep, std::cout);
      }
    } else if (show->parsed()) {
      write_show(show_opts, std::cout);
    } else if (timeline->parsed()) {
      tl_opts.paths = expand_paths(tl_opts.paths);
      write_timeline(tl_opts, std::cout);
    } else if (diff->parsed()) {
      diff_opts.paths = expand_paths(diff_opts.paths);
      write_diff(diff_opts, std::cout);
    } else if (pack->parsed()) {
      pack_opts.paths = expand_paths(pack_opts.paths);
      const PackResult r = write_pack(pack_opts);
      std::cout << r.path << "\n";
      (void)std::fprintf(stderr,
                         "sockrewind-analyze: packed %zu snapshot(s), %zu socket rows from %zu "
                         "file(s)%s%s\n",
                         r.snapshots,
                         r.sockets,
                         r.files,
                         r.duplicates != 0 ? " (duplicates skipped)" : "",
                         pack_opts.redact ? ", redacted" : "");
    } else if (exp->parsed()) {
      if (export_ddl) {
        std::cout << clickhouse_ddl();
      } else {
        export_opts.paths = expand_paths(export_opts.paths);
        const ExportResult r = write_export(export_opts);
        std::cout << r.dir << "\n";
        (void)std::fprintf(stderr,
                           "sockrewind-analyze: exported %zu snapshot(s), %zu socket rows from "
                           "%zu file(s)%s\n",
                           r.snapshots,
                           r.rows.at("sockets"),
                           r.files,
                           r.duplicates != 0 ? " (duplicates skipped)" : "");
      }
    } else if (replay->parsed()) {
      replay_opts.paths = expand_paths(replay_opts.paths);
      rc = run_replay(replay_opts);
    } else if (info->parsed()) {
      write_info(expand_paths(info_paths), std::cout);
    }
    std::cout.flush();
    return rc;
  } catch (...) {
    // UsageError 2, LoadError 3, anything else is a bug: 4 (error_exit).
    const ErrorExit e = error_exit(std::current_exception());
    (void)std::fprintf(stderr, "%s\n", e.line.c_str());
    return e.code;
  }
}

} // namespace

int main(int argc, char** argv) {
  // A long series keeps one growing vector of samples per socket. Served from mmap above 64 KiB,
  // their reallocations go back to the system instead of fragmenting the heap (-10% peak RSS
  // on a day of one-minute snapshots, see tests/bench/bench_report.sh).
  (void)mallopt(M_MMAP_THRESHOLD, 64 * 1024); // NOLINT(concurrency-mt-unsafe): before any thread
  try {
    return run(argc, argv);
  } catch (...) {
    // While the options are set up (before run's own handler): a bug, or out of memory.
    const sockrewind::analyze::ErrorExit e =
        sockrewind::analyze::error_exit(std::current_exception());
    (void)std::fprintf(stderr, "%s\n", e.line.c_str());
    return e.code;
  }
}
