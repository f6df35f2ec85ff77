// Exit codes and error lines of sockrewind-analyze (README "Exit codes"): error_exit's mapping
// of exceptions, SR_ASSERT, check_series, and a mistyped --set key through the real binary.
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/assert.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;

namespace {

ErrorExit map(const std::exception_ptr& e) {
  return error_exit(e);
}

template <typename E> ErrorExit map(const E& e) {
  return error_exit(std::make_exception_ptr(e));
}

int checked_half(int v) {
  SR_ASSERT(v % 2 == 0);
  return v / 2;
}

} // namespace

TEST_CASE("errors: usage 2, bad input 3, everything else is an internal error 4", "[errors]") {
  const ErrorExit usage = map(UsageError("unknown detector id 'x'"));
  CHECK(usage.code == 2);
  CHECK(usage.line == "sockrewind-analyze: error: unknown detector id 'x'");

  const ErrorExit load = map(LoadError("/tmp/a.sqlite: not an SQLite database"));
  CHECK(load.code == 3);
  CHECK(load.line == "sockrewind-analyze: error: /tmp/a.sqlite: not an SQLite database");

  // Bugs are not "bad input": a broken invariant, any logic_error, out of memory, any other
  // exception (runtime_error included: the files' errors are LoadError), non-std exceptions.
  const ErrorExit logic = map(std::logic_error("pack: no column x"));
  CHECK(logic.code == 4);
  CHECK(logic.line == "sockrewind-analyze: internal error: pack: no column x");
  CHECK(map(std::out_of_range("map::at")).code == 4);
  CHECK(map(std::runtime_error("something")).line
        == "sockrewind-analyze: internal error: something");
  const ErrorExit oom = map(std::bad_alloc());
  CHECK(oom.code == 4);
  CHECK(oom.line == "sockrewind-analyze: internal error: out of memory (std::bad_alloc)");
  const ErrorExit odd = map(std::make_exception_ptr(42));
  CHECK(odd.code == 4);
  CHECK(odd.line.starts_with("sockrewind-analyze: internal error: "));
  CHECK(map(std::exception_ptr()).code == 4);

  // Exit codes as README documents them.
  CHECK(k_exit_ok == 0);
  CHECK(k_exit_fail_on == 1);
  CHECK(k_exit_usage == 2);
  CHECK(k_exit_bad_input == 3);
  CHECK(k_exit_internal == 4);
}

TEST_CASE("errors: the line is one escaped line, whatever the message holds", "[errors]") {
  const ErrorExit e = map(LoadError("/tmp/a\x1b[31mb\nc.sqlite: bad"));
  CHECK(e.code == 3);
  CHECK(e.line == "sockrewind-analyze: error: /tmp/a\\x1b[31mb\\x0ac.sqlite: bad");
  CHECK(map(std::logic_error("x\ny")).line == "sockrewind-analyze: internal error: x\\x0ay");
}

TEST_CASE("errors: SR_ASSERT is on in every build and names file, line and condition", "[errors]") {
  CHECK(checked_half(4) == 2);
  try {
    (void)checked_half(3);
    FAIL("SR_ASSERT did not throw");
  } catch (const InternalError& e) {
    const std::string what = e.what();
    CHECK_THAT(what, Catch::StartsWith("test_errors.cpp:"));
    CHECK_THAT(what, Catch::EndsWith(": assertion failed: v % 2 == 0"));
  }
  try {
    (void)checked_half(5);
  } catch (...) {
    const ErrorExit e = error_exit(std::current_exception());
    CHECK(e.code == 4);
    CHECK_THAT(e.line,
               Catch::StartsWith("sockrewind-analyze: internal error: test_errors.cpp:")
                   && Catch::EndsWith("assertion failed: v % 2 == 0"));
  }
#ifdef NDEBUG
  SUCCEED("NDEBUG is defined in this build and SR_ASSERT still checked");
#endif
}

TEST_CASE("errors: check_series passes a loaded series and catches a broken one", "[errors]") {
  test::TempDir dir;
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 3; ++i) {
    synth::Snap s;
    s.realtime_ns = 1'795'341'600'000'000'000 + int64_t{i} * 1'000'000'000;
    s.boottime_ns = 500'000'000'000 + int64_t{i} * 1'000'000'000;
    s.sockets.push_back(
        {.lport = 80, .rport = 5000, .inode = 77, .cookie = 9, .owners = {{10, 4}}});
    s.procs.push_back({.pid = 10, .start_ticks = 1, .comm = "srv", .socket_fds = 1});
    snaps.push_back(s);
  }
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series good = load_series(expand_paths({dir.path().string()}));
  REQUIRE(good.timelines.size() == 1);
  REQUIRE(good.timelines[0].tracks.size() == 1);
  CHECK_NOTHROW(check_series(good));

  Series bad = good; // a sample in a snapshot that does not exist
  bad.timelines[0].tracks[0].samples.back().snap = 3;
  CHECK_THROWS_AS(check_series(bad), InternalError);
  bad = good; // two samples of one socket in one snapshot
  bad.timelines[0].tracks[0].samples[1].snap = 0;
  CHECK_THROWS_AS(check_series(bad), InternalError);
  bad = good; // a snapshot's socket count that does not match its samples
  bad.timelines[0].snaps[2].sockets = 2;
  CHECK_THROWS_AS(check_series(bad), InternalError);
  bad = good; // an owner index past the processes
  bad.timelines[0].tracks[0].samples[0].owner = 1;
  CHECK_THROWS_AS(check_series(bad), InternalError);
  CHECK_THROWS_AS(good.strings.at(k_na), InternalError);
}

TEST_CASE("errors: a mistyped --set key is a usage error, exit 2, one line", "[errors]") {
  test::TempDir dir;
  std::vector<synth::Snap> snaps(2);
  for (int i = 0; i < 2; ++i) {
    snaps[static_cast<size_t>(i)].realtime_ns =
        1'795'341'600'000'000'000 + int64_t{i} * 60'000'000'000;
    snaps[static_cast<size_t>(i)].boottime_ns = 500'000'000'000 + int64_t{i} * 60'000'000'000;
  }
  const std::string file = synth::write_series(dir.path().string(), synth::Host{}, snaps);
  for (const std::string set : {"rx_queue_growth.nope=1",
                                "rx_queue_growt.min_samples=3",
                                "rx_queue_growth.stall_seconds=abc",
                                "rx_queue_growth"}) {
    const test::Run r =
        test::run_with_timeout({SOCKREWIND_ANALYZE_BIN, "report", file, "--set", set}, 60);
    INFO(set + "\nstdout: " + r.out + "\nstderr: " + r.err);
    CHECK(r.code == 2);
    CHECK(r.out.empty());
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK_THAT(r.err, Catch::StartsWith("sockrewind-analyze: error: --set " + set + ": "));
  }
  // The same file with a real key is fine (so exit 2 above is the key's doing).
  const test::Run ok = test::run_with_timeout(
      {SOCKREWIND_ANALYZE_BIN, "report", file, "--set", "rx_queue_growth.stall_seconds=3"}, 60);
  CHECK(ok.code == 0);
}
