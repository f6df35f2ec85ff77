// sockrewind-collect: take N socket snapshots and write them to one new SQLite file.
#include <sockrewind/collect/fold.hpp>
#include <sockrewind/collect/host.hpp>
#include <sockrewind/collect/outdir.hpp>
#include <sockrewind/collect/retention.hpp>
#include <sockrewind/collect/snapshot.hpp>
#include <sockrewind/collect/writer.hpp>
#include <sockrewind/store/db.hpp>

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <exception>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace {

constexpr const char* k_description =
    "Takes snapshots of every TCP, UDP, RAW and UNIX socket (sock_diag, /proc/net as fallback),\n"
    "their owning processes, kernel counters and limits, and writes them to ONE new SQLite file\n"
    "DIR/<hostname>-<UTC yyyymmddTHHMMSSZ>.sqlite (mode 0600). The file appears under that name\n"
    "only when complete; its path is printed on stdout. Exit 0 when the file was written (failed\n"
    "sources are recorded inside it), 1 with one error line on stderr when it was not, 3 when\n"
    "another run kept the directory locked for longer than --lock-wait (nothing written), 4\n"
    "on an internal error (a bug; nothing written).\n"
    "With --keep-days or --max-bytes, the oldest of the collector's own files in DIR (named as\n"
    "above, regular, with the sockrewind application_id; age = the UTC time in the name) are\n"
    "deleted after the file is written; the new file never is. Pruning never fails the run.";

// SQLITE_FULL: a write failed for lack of space (sqlite3.h is the store's, not ours).
constexpr int k_sqlite_full = 13;
// Exit code of a run that declined because another run held the directory's lock.
constexpr int k_exit_locked = 3;
// Exit code of a bug (SR_ASSERT's InternalError, any other std::logic_error, out of memory, an
// exception that is not a std::exception), as sockrewind-analyze's.
constexpr int k_exit_internal = 4;

// The error as one line: SQLite messages may quote multi-line SQL.
std::string one_line(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  std::replace(text.begin(), text.end(), '\r', ' ');
  return text;
}

void print_error(const std::string& text) {
  (void)std::fprintf(stderr, "sockrewind-collect: error: %s\n", one_line(text).c_str());
}

void print_internal_error(const std::string& text) {
  (void)std::fprintf(stderr, "sockrewind-collect: internal error: %s\n", one_line(text).c_str());
}

void print_warnings(const std::vector<std::string>& warnings) {
  for (const std::string& w : warnings) {
    (void)std::fprintf(stderr, "sockrewind-collect: warning: %s\n", one_line(w).c_str());
  }
}

int64_t now_utc_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "3 file(s), 1.5 MiB": what pruning removed.
std::string pruned_text(const sockrewind::collect::PruneResult& r) {
  char buf[96];
  (void)std::snprintf(buf,
                      sizeof buf,
                      "pruned %d file(s), %.1f MiB",
                      r.deleted,
                      static_cast<double>(r.deleted_bytes) / (1024.0 * 1024.0));
  return buf;
}

int run(int argc, char** argv) {
  using namespace sockrewind::collect;
  CLI::App app(k_description, "sockrewind-collect");
  app.set_version_flag("--version", std::string("sockrewind-collect ") + SOCKREWIND_VERSION);

  const bool root = geteuid() == 0;
  std::string out_dir = default_out_dir();
  int count = 1;
  double interval = 1.0;
  std::string netns = root ? "all" : "self";
  std::string source = "auto";
  std::string tcp_info = "basic";
  double lock_wait = 30.0;
  bool quiet = false;
  int keep_days = 0; // 0: not given
  std::string max_bytes;
  bool nice = false;
  std::string fold = "off";

  // The defaults that depend on the euid are spelled out rather than shown, so that --help (and
  // the man page made from it) reads the same for everyone.
  app.add_option("--out",
                 out_dir,
                 "Directory for the new file; created (mode 0700) if missing. Default: "
                 "/var/lib/sockrewind as root, else $XDG_STATE_HOME/sockrewind or "
                 "~/.local/state/sockrewind");
  app.add_option("--count",
                 count,
                 "Number of snapshots in the file; 0: no new file, only --fold hour (and "
                 "--keep-days/--max-bytes), as an hourly job of its own")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  app.add_option("--interval", interval, "Seconds between the starts of two snapshots")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--netns",
                 netns,
                 "all: every network namespace on the host (needs root; default as root); "
                 "self: only the collector's own (default otherwise)")
      ->check(CLI::IsMember({"all", "self"}));
  app.add_option("--source",
                 source,
                 "auto: sock_diag, falling back to /proc/net per table; proc: /proc/net only "
                 "(for testing the fallback)")
      ->check(CLI::IsMember({"auto", "proc"}))
      ->capture_default_str();
  app.add_option("--tcp-info",
                 tcp_info,
                 "basic: 15 tcp_info fields inline in the sockets table; full: also every field "
                 "of struct tcp_info in the tcp_info table (about 2x the file size)")
      ->check(CLI::IsMember({"basic", "full"}))
      ->capture_default_str();
  app.add_option("--lock-wait",
                 lock_wait,
                 "Seconds to wait while another run writes to the same --out (cron overlap); "
                 "then give up with exit 3. 0: do not wait")
      ->check(CLI::Range(0.0, 86400.0))
      ->capture_default_str();
  app.add_option("--keep-days",
                 keep_days,
                 "After writing, delete the collector's files in --out whose name time is more "
                 "than N days old")
      ->check(CLI::Range(1, 36500));
  app.add_option("--max-bytes",
                 max_bytes,
                 "After writing, delete the oldest of the collector's files in --out until they "
                 "total at most SIZE bytes (suffix K, M, G or T: powers of 1024, e.g. 500M); "
                 "the new file is kept even when larger")
      ->check(
          [](const std::string& v) {
            return parse_size(v) ? std::string() : "expected a size > 0 such as 1048576, 500M, 2G";
          },
          "SIZE");
  app.add_option("--fold",
                 fold,
                 "hour: after writing, fold the collector's minute files of every ended hour in "
                 "--out into one archive per host and hour, <host>-<yyyymmddTHH0000Z>-hour.sqlite "
                 "(long runs of unchanged sockets, schema v3), then delete them; off: keep "
                 "minute files. The fold holds a lock of its own, not the directory's: the next "
                 "runs go on meanwhile, and a run that finds another folding skips its fold")
      ->check(CLI::IsMember({"off", "hour"}))
      ->capture_default_str();
  app.add_flag("--nice",
               nice,
               "Lower the collector's own CPU priority (nice 19) and IO priority (idle class), "
               "like nice -n 19 ionice -c3");
  app.add_flag("--quiet",
               quiet,
               "No summary line on stderr (the path is still printed; warnings still are)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage error is exit 2 (CLI11 has its own codes).
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (count == 0 && fold != "hour") {
    print_error("--count 0 writes no snapshot: it needs --fold hour");
    return 2;
  }

  // Before any thread is started: the capture's threads inherit the lowered priorities.
  if (nice) {
    print_warnings(lower_own_priority());
  }
  RetentionPolicy retention;
  if (keep_days > 0) {
    retention.keep_days = keep_days;
  }
  if (!max_bytes.empty()) {
    retention.max_bytes = parse_size(max_bytes);
  }

  // Outside the try: held while a failed run prunes (see prune_after_failure).
  std::optional<OutDirLock> lock;
  // A run that failed for lack of space still applies --keep-days and --max-bytes, so a disk
  // filled by old snapshots recovers; the error line says what was pruned.
  const auto prune_after_failure = [&]() -> std::string {
    if (!lock || !retention.active()) {
      return {};
    }
    const PruneResult r = prune_out_dir(out_dir, retention, now_utc_seconds(), "");
    print_warnings(r.warnings);
    return r.deleted > 0 ? " (" + pruned_text(r) + ")" : std::string();
  };

  try {
    CaptureOptions opts;
    opts.netns = netns == "all" ? NetnsMode::all : NetnsMode::self;
    opts.source = source == "proc" ? SocketSource::proc : SocketSource::automatic;
    if (opts.netns == NetnsMode::all && !root) {
      throw std::runtime_error("--netns all needs root; use --netns self");
    }

    prepare_out_dir(out_dir, root);
    // One run at a time per directory; released after the file got its final name (or was
    // removed). Holding it, every temporary file there is a dead run's leftover.
    lock.emplace(out_dir, lock_wait);
    remove_stale_temp_files(out_dir);

    const auto t0 = std::chrono::steady_clock::now();
    uint64_t sockets = 0;
    uint64_t issues = 0;
    size_t namespaces = 0;
    std::string path;
    if (count > 0) {
      const HostInfo host = read_host_info();
      const Clocks first = read_clocks();
      SnapshotFile file(out_dir,
                        snapshot_base_name(host.hostname, first.realtime_ns),
                        tcp_info == "full" ? TcpInfoMode::full : TcpInfoMode::basic);
      // The starts are on a grid anchored at the first snapshot's start, not at the run's: the
      // time taken to create the file (schema, pragmas) must not shorten the first interval.
      std::chrono::steady_clock::time_point first_start;
      for (int i = 0; i < count; ++i) {
        if (i == 0) {
          first_start = std::chrono::steady_clock::now();
        } else {
          std::this_thread::sleep_until(
              first_start
              + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(interval * i)));
        }
        // One snapshot at a time, its socket rows streamed into the file as they are dumped.
        const Snapshot snap = file.capture(opts, host);
        namespaces = snap.namespaces.size();
        for (const NetnsCapture& ns : snap.namespaces) {
          sockets += ns.socket_rows;
          issues += ns.issues.size();
        }
        issues += snap.owners.issues.size() + snap.issues.size();
      }
      path = file.commit();
      (void)std::printf("%s\n", path.c_str());
      (void)std::fflush(stdout);
    }
    // Still holding the lock: no other run is writing or pruning here.
    std::string pruned;
    if (retention.active()) {
      const PruneResult r =
          prune_out_dir(out_dir, retention, now_utc_seconds(), path.substr(path.rfind('/') + 1));
      print_warnings(r.warnings);
      pruned = ", " + pruned_text(r);
    }
    lock.reset();
    // The fold under its own lock: the next minute's run need not wait for it. Another fold
    // running (a big hour takes up to a minute) is not waited for either: it folds these too.
    std::string folded;
    if (fold == "hour") {
      std::optional<OutDirLock> fold_lock;
      try {
        fold_lock.emplace(out_dir, 0.0, OutDirLock::k_fold_lock_name);
      } catch (const LockBusy&) {
        folded = ", fold skipped (another run is folding)";
      }
      if (fold_lock) {
        const FoldResult r = fold_closed_hours(out_dir, now_utc_seconds());
        print_warnings(r.warnings);
        if (r.archives > 0) {
          folded = ", folded " + std::to_string(r.absorbed) + " file(s) into "
                   + std::to_string(r.archives) + " archive(s) ("
                   + std::to_string(r.bytes_in / 1024) + " KiB read, "
                   + std::to_string(r.bytes_out / 1024) + " KiB written, "
                   + std::to_string(static_cast<int>(r.cpu_seconds * 1000)) + " ms CPU)";
        }
      }
    }
    if (!quiet) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      (void)std::fprintf(
          stderr,
          "sockrewind-collect: %d snapshot(s), %llu sockets, %zu netns, %llu capture "
          "issue(s), %.3f s%s%s\n",
          count,
          static_cast<unsigned long long>(sockets),
          namespaces,
          static_cast<unsigned long long>(issues),
          secs,
          folded.c_str(),
          pruned.c_str());
    }
    return 0;
  } catch (const LockBusy& e) {
    print_error(e.what());
    return k_exit_locked;
  } catch (const sockrewind::store::DbError& e) {
    // The temporary file is gone (SnapshotFile's destructor): nothing partial is left.
    if (e.code() == k_sqlite_full) {
      // Not e.what(): it quotes the statement that failed, which says nothing here.
      print_error("no space left on the device of " + out_dir
                  + " (SQLite: database or disk is full); no file written" + prune_after_failure());
    } else {
      print_error(e.what());
    }
    return 1;
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::no_space_on_device || e.code().value() == EDQUOT) {
      print_error("no space left on the device of " + out_dir + " (" + e.what()
                  + "); no file written" + prune_after_failure());
    } else {
      print_error(e.what());
    }
    return 1;
  } catch (const std::logic_error& e) {
    print_internal_error(e.what()); // the temporary file is gone, as above
    return k_exit_internal;
  } catch (const std::bad_alloc& e) {
    print_internal_error(std::string("out of memory (") + e.what() + ")");
    return k_exit_internal;
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  }
}

} // namespace

int main(int argc, char** argv) {
  // What run's own handlers do not see (its set-up before the capture).
  try {
    return run(argc, argv);
  } catch (const std::logic_error& e) {
    print_internal_error(e.what());
  } catch (const std::bad_alloc& e) {
    print_internal_error(std::string("out of memory (") + e.what() + ")");
  } catch (const std::exception& e) {
    print_error(e.what());
    return 1;
  } catch (...) {
    print_internal_error("an exception that is not a std::exception");
  }
  return k_exit_internal;
}
