// listen_overflow on synthetic series (research/detectors.md): minute and one-second series, near
// misses, resets.
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

std::vector<synth::Snap>
overflow_series(const std::vector<int64_t>& overflows, int64_t step, bool full) {
  std::vector<synth::Snap> out;
  for (size_t i = 0; i < overflows.size(); ++i) {
    synth::Snap s = snap_at(static_cast<int>(i), step);
    s.sockets.push_back(full ? listener(8080, 129, 128) : listener(8080, 0, 128));
    s.sockets.push_back(listener(9090, 0, 4096, 2)); // a healthy listener beside it
    s.counters["TcpExt.ListenOverflows"] = overflows[i];
    s.counters["TcpExt.ListenDrops"] = overflows[i];
    s.limits["net.core.somaxconn"] = "4096";
    out.push_back(std::move(s));
  }
  return out;
}

} // namespace

TEST_CASE("listen_overflow: minute series with a full listener is critical, attributed to it",
          "[det][listen_overflow]") {
  // +120, +280, +400, +400 per minute: 2 to 6.7 per second.
  const auto fs = run_detector(
      overflow_series({1000, 1000, 1120, 1400, 1800, 2200}, k_minute, true), "listen_overflow");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.severity == Severity::critical);
  CHECK(f.subject["local"] == "0.0.0.0:8080");
  CHECK(f.subject["state"] == "LISTEN");
  CHECK(f.subject["pid"] == 100);
  CHECK(f.pid == 100);
  CHECK(f.evidence["total"] == 1200);
  CHECK(f.evidence["intervals_increasing"] == 4);
  CHECK(f.evidence["peak_rate_per_s"].get<double>() == Approx(400.0 / 60));
  REQUIRE(f.evidence["listeners_full"].size() == 1);
  CHECK(f.evidence["listeners_full"][0]["local"] == "0.0.0.0:8080");
  const auto& ser = f.evidence["series"];
  REQUIRE(ser.size() == 5); // from the snapshot before the first increase to the end
  CHECK(ser[0]["listen_overflows_delta"] == 0);
  CHECK(ser[1]["listen_overflows_delta"] == 120);
  CHECK(ser[1]["rate_per_s"].get<double>() == Approx(2.0));
  CHECK(ser[1]["queue"] == 129);
  CHECK(ser[1]["max_backlog"] == 128);
  CHECK(f.summary.find("8080") != std::string::npos);
  CHECK(f.summary.find("pid 100") != std::string::npos);
}

TEST_CASE("listen_overflow: a burst of one-second snapshots at 3/s is a warning",
          "[det][listen_overflow]") {
  const auto fs =
      run_detector(overflow_series({10, 13, 16, 19, 22, 25}, k_second, true), "listen_overflow");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK(fs[0].subject["local"] == "0.0.0.0:8080");
  CHECK(fs[0].evidence["total"] == 15);
}

TEST_CASE("listen_overflow: sparse overflows in 2 of 5 intervals warn, no full listener means "
          "the namespace is the subject",
          "[det][listen_overflow]") {
  const auto fs =
      run_detector(overflow_series({0, 5, 5, 8, 8, 8}, k_minute, false), "listen_overflow");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK_FALSE(fs[0].subject.contains("local"));
  CHECK(fs[0].subject["netns"] == 4026531840ULL);
  CHECK(fs[0].pid == -1);
  CHECK(fs[0].evidence["listeners_full"].empty());
}

TEST_CASE("listen_overflow: one overflow in a healthy day is at most info",
          "[det][listen_overflow]") {
  std::vector<int64_t> v(30, 7);
  for (size_t i = 15; i < v.size(); ++i) {
    v[i] = 8;
  }
  const auto fs = run_detector(overflow_series(v, k_minute, false), "listen_overflow");
  CHECK(at_least(fs, Severity::warning) == 0);
  CHECK(
      run_detector(overflow_series(std::vector<int64_t>(10, 7), k_minute, true), "listen_overflow")
          .empty());
}

TEST_CASE("listen_overflow: a counter reset is not an increase", "[det][listen_overflow]") {
  // Container restart: 50000 -> 3; the big "negative" step is dropped, the rest is flat.
  const auto fs = run_detector(overflow_series({50000, 50000, 50000, 3, 3, 3}, k_minute, true),
                               "listen_overflow");
  CHECK(fs.empty());
  // A reset followed by real overflows still counts those.
  const auto fs2 =
      run_detector(overflow_series({50000, 3, 400, 800, 1200}, k_minute, true), "listen_overflow");
  REQUIRE(fs2.size() == 1);
  CHECK(fs2[0].severity == Severity::critical);
  CHECK(fs2[0].evidence["total"] == 1197);
}

TEST_CASE("listen_overflow: ListenDrops beyond ListenOverflows is a separate finding",
          "[det][listen_overflow]") {
  auto snaps = overflow_series({5, 5, 5, 5, 5}, k_minute, false);
  const int64_t drops[] = {5, 200, 400, 600, 800};
  for (size_t i = 0; i < snaps.size(); ++i) {
    snaps[i].counters["TcpExt.ListenDrops"] = drops[i];
    snaps[i].counters["TcpExt.TCPReqQFullDrop"] = drops[i] - 5;
  }
  const auto fs = run_detector(snaps, "listen_overflow");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].subject["kind"] == "drops_not_overflow");
  CHECK(fs[0].severity == Severity::warning); // 3.3/s
  CHECK(fs[0].evidence["total"] == 795);
  CHECK(fs[0].evidence["tcp_reqq_full_drop"] == 795);
}

TEST_CASE("listen_overflow: one short burst in one-second snapshots is info, recurring ones warn",
          "[det][listen_overflow]") {
  // One overflow in each of two consecutive one-second intervals: one burst of 2, not a
  // recurring loss.
  auto fs = run_detector(overflow_series({0, 1, 2, 2, 2, 2}, k_second, false), "listen_overflow");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::info);
  CHECK(fs[0].evidence["recurring"] == false);
  // The same overflows a minute apart recur.
  fs = run_detector(overflow_series({0, 1, 2, 2, 2, 2}, k_minute, false), "listen_overflow");
  REQUIRE(fs.size() == 1);
  CHECK(fs[0].severity == Severity::warning);
  CHECK(fs[0].evidence["recurring"] == true);
}

TEST_CASE("listen_overflow: the same rate gives the same verdict at 1 s and 60 s snapshots",
          "[det][listen_overflow]") {
  // 3 overflows per second.
  for (const auto& [step, per] :
       {std::pair{k_second, int64_t{3}}, std::pair{k_minute, int64_t{180}}}) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < 5; ++i) {
      v.push_back(100 + per * i);
    }
    const auto fs = run_detector(overflow_series(v, step, true), "listen_overflow");
    REQUIRE(fs.size() == 1);
    CHECK(fs[0].severity == Severity::warning);
    CHECK(fs[0].evidence["peak_rate_per_s"].get<double>() == Approx(3));
  }
}

TEST_CASE("listen_overflow: a full listener is one finding naming its owners, whatever its "
          "sockets",
          "[det][listen_overflow]") {
  auto snaps = overflow_series({0, 400, 800, 1200}, k_minute, true);
  for (synth::Snap& s : snaps) {
    s.sockets.push_back(listener(8080, 129, 128, 3)); // a second SO_REUSEPORT socket, full too
  }
  const auto fs = run_detector(snaps, "listen_overflow");
  REQUIRE(fs.size() == 1);
  const Finding& f = fs[0];
  CHECK(f.subject["local"] == "0.0.0.0:8080");
  CHECK(f.subject["owners"][0]["pid"] == 100);
  CHECK(f.pid == 100);
  CHECK(f.evidence["group"]["by"] == "listener");
  REQUIRE(f.evidence["listeners_full"].size() == 1);
  CHECK(f.evidence["listeners_full"][0]["sockets"] == 2);
  CHECK(f.summary.find("not accepted fast enough by pid 100 (server)") != std::string::npos);
}
