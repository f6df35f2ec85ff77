#pragma once
// Shared by the detector tests: clocks of synthetic series and running detectors on them.

#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <vector>

namespace sockrewind::test {

inline constexpr int64_t k_t0 = 1'795'341'600'000'000'000; // 2026-11-22T10:00:00Z
inline constexpr int64_t k_second = 1'000'000'000;
inline constexpr int64_t k_minute = 60 * k_second;

// Resets the descriptor budget of OpenFiles when a test ends.
struct BudgetForTest {
  explicit BudgetForTest(size_t n) { analyze::OpenFiles::set_budget_for_test(n); }

  BudgetForTest(const BudgetForTest&) = delete;
  BudgetForTest& operator=(const BudgetForTest&) = delete;
  BudgetForTest(BudgetForTest&&) = delete;
  BudgetForTest& operator=(BudgetForTest&&) = delete;

  ~BudgetForTest() { analyze::OpenFiles::set_budget_for_test(std::nullopt); }
};

// Writes `snaps` into files of `per` snapshots each in `dir` (one file for 0); returns them.
inline std::vector<std::string>
write_files(const TempDir& dir, const std::vector<synth::Snap>& snaps, size_t per) {
  const size_t n = per == 0 ? std::max<size_t>(snaps.size(), 1) : per;
  size_t i = 0;
  do {
    const auto from = snaps.begin() + static_cast<std::ptrdiff_t>(i);
    const auto to = snaps.begin() + static_cast<std::ptrdiff_t>(std::min(i + n, snaps.size()));
    synth::write_series(dir.path().string(), synth::Host{}, {from, to});
    i += n;
  } while (i < snaps.size());
  return analyze::expand_paths({dir.path().string()});
}

// Writes `snaps` to a temporary file (or files of `per_file` snapshots each, so that `report`
// sees the sockets of one file gone before it loads the next) and runs the detector `id` (with
// `set` overrides), on the loaded series and as `report` does, on those files and on the
// snapshots written two to a file (requiring the same findings each way).
inline std::vector<analyze::Finding> run_detector(const std::vector<synth::Snap>& snaps,
                                                  const std::string& id,
                                                  std::vector<std::string> set = {},
                                                  size_t per_file = 0) {
  TempDir dir;
  const analyze::Series s = analyze::load_series(write_files(dir, snaps, per_file));
  analyze::ReportOptions o;
  o.only = {id};
  o.set = std::move(set);
  o.paths = s.files;
  std::vector<analyze::Finding> whole = analyze::run_detectors(s, o);
  // As `report` runs it (streamed, the tracks no check keeps let go): the same findings.
  const std::vector<analyze::Finding> streamed = analyze::analyze_files(o).findings;
  const auto dump = [](const std::vector<analyze::Finding>& fs) {
    analyze::Json out = analyze::Json::array();
    for (const analyze::Finding& f : fs) {
      out.push_back({{"detector", f.detector},
                     {"severity", analyze::severity_name(f.severity)},
                     {"summary", f.summary},
                     {"subject", f.subject},
                     {"first_seen_ns", f.first_seen_ns},
                     {"last_seen_ns", f.last_seen_ns},
                     {"pid", f.pid},
                     {"evidence", f.evidence}});
    }
    return out.dump(1);
  };
  REQUIRE(dump(streamed) == dump(whole));
  // Streamed across files, as minute files are: sockets seen again in the next file go on.
  if (snaps.size() > 2 && per_file != 2) {
    const TempDir split;
    o.paths = write_files(split, snaps, 2);
    REQUIRE(dump(analyze::analyze_files(o).findings) == dump(whole));
    // Each file read a snapshot at a time (SocketFilter::chunk_rows).
    o.chunk_rows = 1;
    REQUIRE(dump(analyze::analyze_files(o).findings) == dump(whole));
  }
  return whole;
}

// How many findings are `sev` or worse.
inline size_t at_least(const std::vector<analyze::Finding>& fs, analyze::Severity sev) {
  return static_cast<size_t>(std::count_if(
      fs.begin(), fs.end(), [sev](const analyze::Finding& f) { return f.severity >= sev; }));
}

// Snapshot i of a series `step` apart, with a server (pid 100) and a client (pid 200) process.
inline synth::Snap snap_at(int i, int64_t step = k_minute) {
  synth::Snap s;
  s.realtime_ns = k_t0 + i * step;
  s.boottime_ns = 1000 * k_minute + i * step;
  s.procs.push_back({.pid = 100,
                     .start_ticks = 7,
                     .comm = "server",
                     .cmdline = "server -p",
                     .fd_count = 20,
                     .socket_fds = 5,
                     .nofile_soft = 1024});
  s.procs.push_back({.pid = 200,
                     .start_ticks = 8,
                     .comm = "client",
                     .cmdline = "client",
                     .fd_count = 20,
                     .socket_fds = 5,
                     .nofile_soft = 1024});
  return s;
}

// A TCP listener on 0.0.0.0:port owned by pid 100: accept queue q of max backlog max.
inline synth::Sock listener(uint16_t port, uint32_t q, uint32_t max, uint64_t cookie = 1) {
  return {.state = 10,
          .local = "0.0.0.0",
          .lport = port,
          .remote = "0.0.0.0",
          .rx = q,
          .tx = max,
          .inode = 5000 + cookie,
          .cookie = cookie,
          .owners = {{100, 3}}};
}

} // namespace sockrewind::test
