// socket_leak on synthetic one-minute series: growth, ETA to the fd limit, EMFILE, near misses.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>

#include <functional>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

synth::Snap leak_minute(int i) {
  synth::Snap s;
  s.realtime_ns = k_t0 + i * k_minute;
  s.boottime_ns = 1000 * k_minute + i * k_minute;
  return s;
}

synth::Proc leak_proc(uint32_t sockets, uint32_t fds, uint64_t nofile, uint64_t start = 7) {
  return {.pid = 42,
          .start_ticks = start,
          .comm = "api",
          .cmdline = "api --workers 4",
          .fd_count = fds,
          .socket_fds = sockets,
          .nofile_soft = nofile};
}

std::vector<Finding> run_leak(const std::vector<synth::Snap>& snaps) {
  test::TempDir dir;
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series s = load_series(expand_paths({dir.path().string()}));
  ReportOptions o;
  o.only = {"socket_leak"};
  return run_detectors(s, o);
}

// A series of `n` minutes where the process has sockets(i) sockets and fds(i) = sockets + 10.
std::vector<synth::Snap>
leak_series(int n, const std::function<uint32_t(int)>& sockets, uint64_t nofile) {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < n; ++i) {
    synth::Snap s = leak_minute(i);
    s.procs.push_back(leak_proc(sockets(i), sockets(i) + 10, nofile));
    snaps.push_back(std::move(s));
  }
  return snaps;
}

} // namespace

TEST_CASE("socket_leak: a socket count growing every minute is a warning with a breakdown",
          "[det][socket_leak]") {
  auto snaps = leak_series(
      12, [](int i) { return static_cast<uint32_t>(100 + 20 * i); }, 65536);
  // In the last snapshot the process holds 6 CLOSE-WAIT and 2 ESTAB connections (visible ones).
  for (uint16_t k = 0; k < 8; ++k) {
    snaps.back().sockets.push_back({.state = static_cast<uint8_t>(k < 6 ? 8 : 1),
                                    .lport = 8080,
                                    .rport = static_cast<uint16_t>(40000 + k),
                                    .rx = 1,
                                    .tx = 0,
                                    .inode = 9000U + k,
                                    .cookie = 500U + k,
                                    .owners = {{42, 10 + k}}});
  }
  const auto found = run_leak(snaps);
  REQUIRE(found.size() == 1);
  const Finding& f = found[0];
  CHECK(f.severity == Severity::warning); // ETA to 65536 is days away
  CHECK(f.subject["pid"] == 42);
  CHECK(f.subject["comm"] == "api");
  CHECK(f.subject["cmdline"] == "api --workers 4");
  CHECK(f.pid == 42);
  CHECK(f.evidence["shape"] == "growing");
  CHECK(f.evidence["growth"].get<double>() == Approx(220));
  CHECK(f.evidence["slope_per_s"].get<double>() == Approx(20.0 / 60));
  CHECK(f.evidence["eta_fd_limit_s"].get<double>() == Approx((65536.0 - 330) * 3));
  CHECK(f.evidence["breakdown"]["tcp CLOSE-WAIT"] == 6);
  CHECK(f.evidence["breakdown"]["tcp ESTAB"] == 2);
  CHECK(f.evidence["hint"].get<std::string>().find("close_wait_leak") != std::string::npos);
  REQUIRE(f.evidence["series"].size() == 12);
  CHECK(f.evidence["series"][11]["socket_fds"] == 320);
  CHECK(f.evidence["series"][11]["nofile_soft"] == 65536);
  CHECK(f.summary.find("from 100 to 320") != std::string::npos);
}

TEST_CASE("socket_leak: growth that reaches the fd limit within the hour is critical",
          "[det][socket_leak]") {
  // 330 of 1024 fds, +1/3 per second: the limit in ~35 minutes.
  auto snaps = leak_series(
      12, [](int i) { return static_cast<uint32_t>(100 + 20 * i); }, 1024);
  // Connections to one destination: a pool leak.
  for (uint16_t k = 0; k < 5; ++k) {
    snaps.back().sockets.push_back({.state = 1,
                                    .lport = static_cast<uint16_t>(50000 + k),
                                    .remote = "10.0.0.9",
                                    .rport = 5432,
                                    .rx = 0,
                                    .tx = 0,
                                    .inode = 9100U + k,
                                    .cookie = 600U + k,
                                    .owners = {{42, 20 + k}}});
  }
  const auto found = run_leak(snaps);
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::critical);
  CHECK(found[0].evidence["eta_fd_limit_s"].get<double>() == Approx(694.0 * 3));
  CHECK(found[0].evidence["top_destination"] == "10.0.0.9:5432");
  CHECK(found[0].summary.find("pool leak") != std::string::npos);
}

TEST_CASE("socket_leak: at the fd limit with a full listener is EMFILE, critical",
          "[det][socket_leak]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = leak_minute(i);
    s.procs.push_back(leak_proc(61, 64, 64));
    s.sockets.push_back({.state = 10,
                         .local = "0.0.0.0",
                         .lport = 8443,
                         .remote = "0.0.0.0",
                         .rx = 9,
                         .tx = 8,
                         .inode = 7777,
                         .cookie = 1,
                         .owners = {{42, 3}}});
    snaps.push_back(std::move(s));
  }
  const auto found = run_leak(snaps);
  REQUIRE(found.size() == 1);
  const Finding& f = found[0];
  CHECK(f.severity == Severity::critical);
  CHECK(f.evidence["shape"] == "at_fd_limit");
  CHECK(f.evidence["snapshots_at_limit"] == 6);
  CHECK(f.evidence["emfile_listener"]["local"] == "0.0.0.0:8443");
  CHECK(f.evidence["emfile_listener"]["queue"] == 9);
  CHECK(f.summary.find("EMFILE: accept() failing") != std::string::npos);
  CHECK(f.subject["pid"] == 42);
}

TEST_CASE("socket_leak: warm-up plateaus, small growth and sawtooths stay quiet",
          "[det][socket_leak]") {
  // A pool warming up to 300 and then flat.
  CHECK(run_leak(
            leak_series(
                12, [](int i) { return static_cast<uint32_t>(i < 4 ? 100 + 50 * i : 300); }, 65536))
            .empty());
  // Growth of 40 (< 50).
  CHECK(run_leak(leak_series(
                     12, [](int i) { return static_cast<uint32_t>(100 + (40 * i) / 11); }, 65536))
            .empty());
  // A busy server: up and down.
  CHECK(
      run_leak(leak_series(
                   12, [](int i) { return static_cast<uint32_t>(i % 2 == 0 ? 100 : 400); }, 65536))
          .empty());
  // At 90% of the limit: not yet at it.
  CHECK(run_leak(leak_series(
                     6, [](int) { return 900U; }, 1024))
            .empty());
  // At the limit in one snapshot only.
  CHECK(run_leak(leak_series(
                     6, [](int i) { return i == 5 ? 1014U : 500U; }, 1024))
            .empty());
}

TEST_CASE("socket_leak: a reused pid and a gap split the series", "[det][socket_leak]") {
  // pid 42 restarts (new start time) with more sockets: two flat identities, no growth.
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = leak_minute(i);
    s.procs.push_back(i < 6 ? leak_proc(100, 110, 65536, 7) : leak_proc(400, 410, 65536, 99));
    snaps.push_back(std::move(s));
  }
  CHECK(run_leak(snaps).empty());
  // Four snapshots, an hour's gap, four more: +30 on each side of the gap, no run of 5.
  std::vector<synth::Snap> gapped;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = leak_minute(i < 4 ? i : i + 60);
    const auto n = static_cast<uint32_t>(100 + 10 * i);
    s.procs.push_back(leak_proc(n, n + 10, 65536));
    gapped.push_back(std::move(s));
  }
  CHECK(run_leak(gapped).empty());
}

namespace {

// `n` snapshots `step` apart where the process has sockets(i) sockets and fds = sockets + 10.
std::vector<synth::Snap>
leak_every(int n, int64_t step, const std::function<uint32_t(int)>& sockets, uint64_t nofile) {
  std::vector<synth::Snap> snaps = leak_series(n, sockets, nofile);
  for (int i = 0; i < n; ++i) {
    snaps[static_cast<size_t>(i)].realtime_ns = k_t0 + i * step;
    snaps[static_cast<size_t>(i)].boottime_ns = 1000 * k_minute + i * step;
  }
  return snaps;
}

} // namespace

TEST_CASE("socket_leak: a leak of 60 sockets/s toward a 1024 fd limit is critical in a 5 s "
          "capture",
          "[det][socket_leak]") {
  const auto found = run_leak(leak_every(
      6, k_second, [](int i) { return static_cast<uint32_t>(50 + 60 * i); }, 1024));
  REQUIRE(found.size() == 1);
  const Finding& f = found[0];
  CHECK(f.severity == Severity::critical); // 360 of 1024 fds, the limit in ~11 s
  CHECK(f.evidence["shape"] == "growing");
  CHECK(f.evidence["eta_fd_limit_s"].get<double>() == Approx((1024.0 - 360) / 60));
  CHECK(f.evidence["fd_limit_fraction"].get<double>() == Approx(360.0 / 1024));
  CHECK(f.summary.find("over 5 s") != std::string::npos);
  CHECK(f.pid == 42);
}

TEST_CASE("socket_leak: short growth far from the fd limit stays quiet, long growth does not",
          "[det][socket_leak]") {
  // A busy server gaining 50 connections in 5 s with a million fds allowed: the limit is days
  // away at this rate, and 5 s of growth is not a leak yet.
  const auto growth = [](int i) { return static_cast<uint32_t>(100 + 10 * i); };
  CHECK(run_leak(leak_every(6, k_second, growth, 1048576)).empty());
  // The same rate for 11 minutes is.
  const auto fs = run_leak(leak_every(
      12, k_minute, [](int i) { return static_cast<uint32_t>(100 + 600 * i); }, 1048576));
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
}

TEST_CASE("socket_leak: growth with most of the fd limit already used is critical",
          "[det][socket_leak]") {
  // Snapshots 10 minutes apart, +2.9/s: the limit is 72 min away, but 81 % of it is used.
  const auto found = run_leak(leak_every(
      12, 10 * k_minute, [](int i) { return static_cast<uint32_t>(34000 + 1727 * i); }, 65536));
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::critical);
  CHECK(found[0].evidence["eta_fd_limit_s"].get<double>() > 3600);
  CHECK(found[0].evidence["fd_limit_fraction"].get<double>() > 0.8);
  CHECK(found[0].summary.find("% of the limit") != std::string::npos);
}

TEST_CASE("socket_leak: the rule is in seconds, the same at 1 s and at 60 s snapshots",
          "[det][socket_leak]") {
  for (const int64_t step : {k_second, k_minute}) {
    INFO("step " << step / k_second << " s");
    // At the limit in the last 3 snapshots: 2 intervals.
    const auto snaps = leak_every(
        6, step, [](int i) { return i < 3 ? 500U : 1014U; }, 1024);
    const auto fs = run_leak(snaps);
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].severity == Severity::critical);
    CHECK(fs[0].evidence["seconds_at_limit"].get<double>()
          == Approx(2.0 * static_cast<double>(step / k_second)));
    // At the limit for 100 s or more: only the one-minute series.
    test::TempDir dir;
    synth::write_series(dir.path().string(), synth::Host{}, snaps);
    const Series s = load_series(expand_paths({dir.path().string()}));
    ReportOptions o;
    o.only = {"socket_leak"};
    o.set = {"socket_leak.limit_seconds=100"};
    CHECK(run_detectors(s, o).size() == (step == k_minute ? 1U : 0U));
  }
}
