#include <sockrewind/analyze/time.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

using sockrewind::analyze::snapshot_intervals;

TEST_CASE("snapshot_intervals: the median interval and the gaps beyond 2.5 x median",
          "[series][info]") {
  constexpr int64_t s = 1'000'000'000;
  // 60 s apart, then 150 s (exactly 2.5 x: no gap), then 151 s (a gap), then 60 s.
  const std::vector<int64_t> t = {0, 60 * s, 120 * s, 270 * s, 421 * s, 481 * s};
  const auto iv = snapshot_intervals(t);
  REQUIRE(iv.seconds.size() == 5);
  CHECK(iv.seconds[2] == Approx(150));
  CHECK(iv.median_s == Approx(60));
  CHECK(iv.gaps == std::vector<size_t>{3});

  // An even count takes the mean of the middle two.
  const auto even = snapshot_intervals(std::vector<int64_t>{0, 10 * s, 30 * s});
  CHECK(even.median_s == Approx(15));
  CHECK(even.gaps.empty());

  CHECK(snapshot_intervals(std::vector<int64_t>{5}).median_s == 0);
  CHECK(snapshot_intervals(std::vector<int64_t>{}).seconds.empty());
  // Equal times: a zero median finds no gap.
  CHECK(snapshot_intervals(std::vector<int64_t>{0, 0, 0, 9 * s}).gaps.empty());
}
