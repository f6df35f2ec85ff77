// udp_drops on synthetic series: per-socket drops, buffer full, namespace RcvbufErrors, resets.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

synth::Snap udp_minute(int i) {
  synth::Snap s;
  s.realtime_ns = k_t0 + i * k_minute;
  s.boottime_ns = 1000 * k_minute + i * k_minute;
  s.procs.push_back({.pid = 53,
                     .start_ticks = 9,
                     .comm = "dnsd",
                     .cmdline = "dnsd -f",
                     .fd_count = 12,
                     .socket_fds = 2,
                     .nofile_soft = 1024});
  return s;
}

synth::Sock udp_sock(uint32_t rx, uint32_t rcvbuf, uint32_t drops, uint64_t cookie = 71) {
  return {.type = 2,
          .proto = 17,
          .state = 7,
          .local = "0.0.0.0",
          .lport = 5353,
          .remote = "0.0.0.0",
          .rx = rx,
          .tx = 0,
          .inode = 7000 + cookie,
          .cookie = cookie,
          .rmem_alloc = rx,
          .rcvbuf = rcvbuf,
          .drops = drops,
          .owners = {{53, 4}}};
}

std::vector<Finding> run_udp(const std::vector<synth::Snap>& snaps) {
  test::TempDir dir;
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series s = load_series(expand_paths({dir.path().string()}));
  ReportOptions o;
  o.only = {"udp_drops"};
  return run_detectors(s, o);
}

std::vector<Finding> socket_findings(const std::vector<Finding>& all) {
  std::vector<Finding> out;
  for (const Finding& f : all) {
    if (f.subject.contains("local")) {
      out.push_back(f);
    }
  }
  return out;
}

} // namespace

TEST_CASE("udp_drops: drops every minute are critical and name the owner", "[det][udp_drops]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 10; ++i) {
    synth::Snap s = udp_minute(i);
    const auto u = static_cast<uint32_t>(i);
    s.sockets.push_back(udp_sock(200000, 212992, 100 + 50 * u));
    s.counters["Udp.InDatagrams"] = 100000 + 30000 * i;
    s.counters["Udp.RcvbufErrors"] = 100 + 50 * i;
    s.counters["Udp6RcvbufErrors"] = 0;
    s.counters["Udp6InDatagrams"] = 0;
    snaps.push_back(std::move(s));
  }
  const auto found = socket_findings(run_udp(snaps));
  REQUIRE(found.size() == 1);
  const Finding& f = found[0];
  CHECK(f.severity == Severity::critical); // drops in 9 of 9 intervals
  CHECK(f.subject["local"] == "0.0.0.0:5353");
  CHECK(f.subject["proto"] == "udp");
  CHECK(f.subject["pid"] == 53);
  CHECK(f.pid == 53);
  CHECK(f.evidence["drops_total"] == 450);
  CHECK(f.evidence["drop_intervals"] == 9);
  CHECK(f.evidence["intervals"] == 9);
  CHECK(f.evidence["rcvbuf_errors"] == 450);
  CHECK(f.evidence["drop_ratio"].get<double>() < 0.01); // 50 of 30050: not the reason here
  const auto& ser = f.evidence["series"];
  REQUIRE(ser.size() == 10);
  CHECK(ser[0]["drops_delta"].is_null());
  CHECK(ser[1]["drops_delta"] == 50);
  CHECK(ser[1]["rcvbuf"] == 212992);
  CHECK(ser[9]["drops"] == 550);
  CHECK(f.summary.find("450 datagrams") != std::string::npos);
  CHECK(f.summary.find("pid 53 (dnsd)") != std::string::npos);
  // 50 per minute is < 10/s: no namespace-level finding.
  CHECK(run_udp(snaps).size() == 1);
}

TEST_CASE("udp_drops: a single drop interval is a warning, a high drop ratio critical",
          "[det][udp_drops]") {
  const auto series = [](int64_t in_per_minute) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 10; ++i) {
      synth::Snap s = udp_minute(i);
      const uint32_t drops = i < 5 ? 3 : 40; // one burst of 37 between minute 4 and 5
      s.sockets.push_back(udp_sock(0, 212992, drops));
      s.counters["Udp.InDatagrams"] = in_per_minute * i;
      snaps.push_back(std::move(s));
    }
    return snaps;
  };
  auto found = socket_findings(run_udp(series(100000)));
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::warning);
  CHECK(found[0].evidence["drops_total"] == 37);
  CHECK(found[0].evidence["drop_intervals"] == 1);
  // The window is the drop interval plus one sample on each side.
  CHECK(found[0].evidence["series"].size() == 4);

  found = socket_findings(run_udp(series(100))); // 37 drops of 937 datagrams: 3.9 %
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::critical);
  CHECK(found[0].evidence["drop_ratio"].get<double>() > 0.03);
}

TEST_CASE("udp_drops: a receive buffer that sits full warns before any drop", "[det][udp_drops]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s = udp_minute(i);
    s.sockets.push_back(udp_sock(i < 2 ? 1000 : 7488, 8192, 0));
    snaps.push_back(std::move(s));
  }
  const auto found = socket_findings(run_udp(snaps));
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::warning);
  CHECK(found[0].evidence["snapshots_full"] == 4);
  CHECK(found[0].evidence["drops_total"] == 0);
  CHECK(found[0].summary.find("receive buffer full") != std::string::npos);
}

TEST_CASE("udp_drops: healthy and near-miss sockets stay quiet", "[det][udp_drops]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 10; ++i) {
    synth::Snap s = udp_minute(i);
    // Old drops that never grow; a buffer at 80% in every snapshot (below 90%).
    s.sockets.push_back(udp_sock(6500, 8192, 17));
    // Full in 2 of 10 snapshots only.
    s.sockets.push_back(udp_sock(i % 5 == 0 ? 8000 : 0, 8192, 0, 72));
    s.counters["Udp.InDatagrams"] = int64_t{1000} * i;
    s.counters["Udp.RcvbufErrors"] = int64_t{5} * i; // well below 10/s
    snaps.push_back(std::move(s));
  }
  CHECK(run_udp(snaps).empty());
}

TEST_CASE("udp_drops: counter resets and new socket incarnations are not drops",
          "[det][udp_drops]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = udp_minute(i);
    // Without a cookie the socket is followed by its tuple: drops 900 -> 0 is a restart.
    synth::Sock x = udp_sock(0, 212992, i < 4 ? 900 : 0);
    x.cookie.reset();
    x.inode = 7000;
    s.sockets.push_back(x);
    // Namespace counters reset (netns recreated): 10^6 -> 0 must not count as a rate.
    s.counters["Udp.RcvbufErrors"] = i < 4 ? 1'000'000 : 0;
    s.counters["Udp.InDatagrams"] = i < 4 ? 5'000'000 : 10;
    snaps.push_back(std::move(s));
  }
  // A gap (the collector did not run for an hour) between two snapshots with growing counters:
  // the per-second rate uses the real interval, 3000 / 3600 s < 10/s.
  synth::Snap late = udp_minute(68);
  synth::Sock x = udp_sock(0, 212992, 0);
  x.cookie.reset();
  x.inode = 7000;
  late.sockets.push_back(x);
  late.counters["Udp.RcvbufErrors"] = 3000;
  late.counters["Udp.InDatagrams"] = 10;
  snaps.push_back(late);
  CHECK(run_udp(snaps).empty());
}

TEST_CASE("udp_drops: namespace RcvbufErrors explained by a dropping socket are one finding",
          "[det][udp_drops]") {
  const auto series = [](bool socket_visible) {
    std::vector<synth::Snap> snaps;
    for (int i = 0; i < 6; ++i) {
      synth::Snap s = udp_minute(i);
      const auto u = static_cast<uint32_t>(i);
      if (socket_visible) {
        s.sockets.push_back(udp_sock(0, 212992, 1200 * u));
      }
      s.sockets.push_back(udp_sock(0, 212992, 0, 72));    // a quiet neighbour
      s.counters["Udp.RcvbufErrors"] = int64_t{1200} * i; // 20/s
      s.counters["Udp6RcvbufErrors"] = int64_t{60} * i;   // +1/s
      s.counters["Udp.InDatagrams"] = int64_t{100000} * i;
      snaps.push_back(std::move(s));
    }
    return snaps;
  };
  // The socket's own finding says it all: 20 drops/s is critical; no second netns finding.
  const auto all = run_udp(series(true));
  REQUIRE(all.size() == 1);
  CHECK(all[0].subject["local"] == "0.0.0.0:5353");
  CHECK(all[0].severity == Severity::critical);
  CHECK(all[0].evidence["drops_per_s"].get<double>() == Approx(20.0));
  CHECK(all[0].evidence["rcvbuf_errors"] == 5 * 1260);
  CHECK(all[0].summary.find("(20/s") != std::string::npos);
  // The dropping socket was not captured (closed, or another netns view): the netns finding.
  const auto host = run_udp(series(false));
  REQUIRE(host.size() == 1);
  CHECK(host[0].severity == Severity::warning);
  CHECK(host[0].subject["netns"] == 4026531840ULL);
  CHECK(host[0].subject["counter"] == "Udp.RcvbufErrors");
  CHECK(host[0].evidence["intervals_over_limit"] == 5);
  CHECK(host[0].evidence["errors_total"] == 5 * 1260);
  CHECK(host[0].evidence["series"].size() == 6);
  CHECK(host[0].evidence["series"][1]["per_s"].get<double>() == Approx(21.0));
}

TEST_CASE("udp_drops: drops without RcvbufErrors and a free buffer are only context",
          "[det][udp_drops]") {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 8; ++i) {
    synth::Snap s = udp_minute(i);
    // A socket filter rejects 5 datagrams a minute; the buffer is nearly empty.
    s.sockets.push_back(udp_sock(0, 212992, static_cast<uint32_t>(5 * i)));
    s.counters["Udp.RcvbufErrors"] = 42; // never moves
    s.counters["Udp6RcvbufErrors"] = 0;
    s.counters["Udp.InDatagrams"] = int64_t{1000} * i;
    snaps.push_back(std::move(s));
  }
  const auto found = run_udp(snaps);
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::info);
  CHECK(found[0].evidence["cause"] == "not_rcvbuf");
  CHECK(found[0].evidence["rcvbuf_errors"] == 0);
}

namespace {

// A 5 s capture (6 snapshots 1 s apart, or `step` apart) of a UDP receiver of pid 53 that drops
// `per_step` datagrams per interval on each of `sockets` sockets, counted by the kernel.
std::vector<synth::Snap>
dropping(uint32_t per_step, int sockets = 1, int64_t step = k_second, int n = 6) {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < n; ++i) {
    synth::Snap s = udp_minute(0);
    s.realtime_ns = k_t0 + i * step;
    s.boottime_ns = 1000 * k_minute + i * step;
    const auto u = static_cast<uint32_t>(i);
    for (int k = 0; k < sockets; ++k) {
      synth::Sock x = udp_sock(7488, 8192, per_step * u, 71U + static_cast<uint64_t>(k));
      x.lport = static_cast<uint16_t>(5201 + k);
      x.owners = {{53, 4 + k}};
      s.sockets.push_back(x);
    }
    s.counters["Udp.RcvbufErrors"] = int64_t{per_step} * sockets * i;
    s.counters["Udp.InDatagrams"] = int64_t{100000} * i;
    snaps.push_back(std::move(s));
  }
  return snaps;
}

} // namespace

TEST_CASE("udp_drops: a receiver losing 1000 datagrams/s is critical in a 5 s capture",
          "[det][udp_drops]") {
  const auto found = run_udp(dropping(1000));
  REQUIRE(found.size() == 1); // the socket; the netns's RcvbufErrors are the same cause
  const Finding& f = found[0];
  CHECK(f.severity == Severity::critical);
  CHECK(f.subject["local"] == "0.0.0.0:5201");
  CHECK(f.pid == 53);
  CHECK(f.evidence["drops_total"] == 5000);
  CHECK(f.evidence["drops_per_s"].get<double>() == Approx(1000));
  CHECK(f.summary.find("lost 5000 datagrams in 5 s (1000/s") != std::string::npos);
  CHECK(f.summary.find("pid 53 (dnsd)") != std::string::npos);
}

TEST_CASE("udp_drops: a few drops a second for 5 s are a warning, not critical",
          "[det][udp_drops]") {
  // 2 drops per second out of 100,000 datagrams: real loss, but not yet meaningful.
  const auto found = run_udp(dropping(2));
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::warning);
  CHECK(found[0].evidence["drops_per_s"].get<double>() == Approx(2));
  CHECK(found[0].evidence["drop_intervals"] == 5);
}

TEST_CASE("udp_drops: many dropping sockets of one process are one finding", "[det][udp_drops]") {
  const auto found = run_udp(dropping(50, 6));
  REQUIRE(found.size() == 1);
  CHECK(found[0].severity == Severity::critical); // 50/s on each
  CHECK(found[0].evidence["group"]["by"] == "process");
  CHECK(found[0].evidence["group"]["count"] == 6);
  CHECK(found[0].evidence["group"]["examples"].size() == 3);
  CHECK(found[0].summary.find("6 UDP sockets") == 0);
  CHECK(found[0].pid == 53);
}

TEST_CASE("udp_drops: the rule is in seconds and rates, the same at 1 s and at 60 s snapshots",
          "[det][udp_drops]") {
  for (const int64_t step : {k_second, k_minute}) {
    INFO("step " << step / k_second << " s");
    const auto per_s = static_cast<uint32_t>(step / k_second);
    // 20 drops/s: critical at either interval; 2 drops/s over 2 intervals: a warning.
    auto fs = run_udp(dropping(20 * per_s, 1, step, 3));
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].severity == Severity::critical);
    CHECK(fs[0].evidence["drops_per_s"].get<double>() == Approx(20));
    fs = run_udp(dropping(2 * per_s, 1, step, 3));
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].severity == Severity::warning);
  }
}
