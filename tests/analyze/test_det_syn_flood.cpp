// syn_flood on synthetic series (research/detectors.md): minute and one-second series, near misses,
// resets.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

synth::Sock syn_recv(uint16_t rport, uint64_t cookie, uint32_t retrans) {
  return {.state = 3,
          .local = "127.0.0.1",
          .lport = 8081,
          .remote = "10.1." + std::to_string(cookie % 200) + ".7",
          .rport = rport,
          .rx = 0,
          .tx = 0,
          .inode = 0,
          .cookie = cookie,
          .timer = 1,
          .retrans = retrans};
}

// Snapshots with `n_recv[i]` SYN-RECV children at listener 8081 (backlog 16) and the counters.
std::vector<synth::Snap>
flood(const std::vector<uint32_t>& n_recv, const std::vector<int64_t>& cookies, int64_t step) {
  std::vector<synth::Snap> out;
  for (size_t i = 0; i < n_recv.size(); ++i) {
    synth::Snap s = snap_at(static_cast<int>(i), step);
    s.sockets.push_back(listener(8081, 0, 16));
    for (uint32_t k = 0; k < n_recv[i]; ++k) {
      s.sockets.push_back(
          syn_recv(static_cast<uint16_t>(50000 + k), 100 + k, static_cast<uint32_t>(i)));
    }
    s.counters["TcpExt.TCPReqQFullDoCookies"] = cookies[i];
    s.counters["TcpExt.TCPReqQFullDrop"] = 0;
    s.counters["TcpExt.SyncookiesSent"] = cookies[i];
    s.counters["TcpExt.SyncookiesRecv"] = 3;
    s.limits["net.ipv4.tcp_syncookies"] = "1";
    out.push_back(std::move(s));
  }
  return out;
}

} // namespace

TEST_CASE("syn_flood: a SYN-RECV pile-up with syncookies at 6.7/s is critical at the listener",
          "[det][syn_flood]") {
  const auto fs = run_detector(flood({17, 17, 17, 17}, {0, 400, 800, 1200}, k_minute), "syn_flood");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::critical);
  CHECK(f.subject["local"] == "0.0.0.0:8081");
  CHECK(f.subject["pid"] == 100);
  CHECK(f.pid == 100);
  CHECK(f.evidence["syn_recv_peak"] == 17);
  CHECK(f.evidence["snapshots_over_bar"] == 4);
  CHECK(f.evidence["reqq_full_do_cookies"] == 1200);
  CHECK(f.evidence["syncookies_sent"] == 1200);
  CHECK(f.evidence["syncookies_recv"] == 0);
  CHECK(f.evidence["peak_rate_per_s"].get<double>() == Approx(400.0 / 60));
  CHECK(f.evidence["distinct_remote_addresses"] == 17);
  REQUIRE(f.evidence["series"].size() == 4);
  CHECK(f.evidence["series"][1]["syn_recv"] == 17);
  CHECK(f.evidence["series"][1]["reqq_full_do_cookies_delta"] == 400);
  CHECK(f.evidence["series"][1]["max_backlog"] == 16);
}

TEST_CASE("syn_flood: a pile-up alone in a one-second burst is a warning", "[det][syn_flood]") {
  const auto fs =
      run_detector(flood({0, 9, 10, 12, 12, 9}, {5, 5, 5, 5, 5, 5}, k_second), "syn_flood");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK(fs[0].subject["local"] == "0.0.0.0:8081");
  CHECK(fs[0].evidence["snapshots_over_bar"] == 5);
}

TEST_CASE("syn_flood: counters without SYN-RECV rows are a namespace finding", "[det][syn_flood]") {
  const auto fs = run_detector(flood({0, 0, 0, 0}, {0, 120, 240, 360}, k_minute), "syn_flood");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning); // 2/s
  CHECK_FALSE(fs[0].subject.contains("local"));
  CHECK(fs[0].evidence["reqq_full_do_cookies"] == 360);
  CHECK(fs[0].evidence["series"].size() == 4);
}

TEST_CASE("syn_flood: a few lossy clients and a counter reset stay quiet", "[det][syn_flood]") {
  CHECK(run_detector(flood({2, 3, 2, 1, 2}, {9, 9, 10, 10, 11}, k_minute), "syn_flood").empty());
  // Reset (netns recreated): 90000 -> 4 is dropped, not a negative or huge rate.
  CHECK(
      run_detector(flood({0, 0, 0, 0, 0}, {90000, 90000, 4, 4, 5}, k_minute), "syn_flood").empty());
  // Pile-up in only one snapshot.
  CHECK(run_detector(flood({0, 17, 0, 0}, {0, 0, 0, 0}, k_minute), "syn_flood").empty());
}

TEST_CASE("syn_flood: a pile-up needs seconds, the same at 1 s and 60 s snapshots",
          "[det][syn_flood]") {
  // Two one-second snapshots (1 s): a burst, quiet.
  CHECK(
      run_detector(flood({0, 17, 17, 0, 0, 0}, {5, 5, 5, 5, 5, 5}, k_second), "syn_flood").empty());
  // 120 s of a pile-up, seen every second or every minute: a warning naming the owner.
  for (const int64_t step : {k_second, k_minute}) {
    const auto n = static_cast<size_t>(120 * k_second / step) + 1;
    const auto fs = run_detector(
        flood(std::vector<uint32_t>(n, 17), std::vector<int64_t>(n, 5), step), "syn_flood");
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].severity == Severity::warning);
    CHECK(fs[0].evidence["seconds_over_bar"].get<double>() == Approx(120));
    CHECK(fs[0].subject["owners"][0]["pid"] == 100);
    CHECK(fs[0].summary.find("listener held by pid 100 (server)") != std::string::npos);
    CHECK(fs[0].evidence["group"]["by"] == "listener");
  }
}
