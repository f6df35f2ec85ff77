// SnapCounts (the detectors' per-snapshot counts) reads the same as a std::map that erases an
// entry when it comes back to zero, whichever way it keeps them (pairs or one per snapshot).
#include <sockrewind/analyze/snap_counts.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <utility>
#include <vector>

using sockrewind::analyze::SnapCounts;

namespace {

std::vector<std::pair<uint32_t, uint32_t>> read(const SnapCounts<uint32_t>& c) {
  std::vector<std::pair<uint32_t, uint32_t>> out;
  c.for_each([&out](uint32_t snap, uint32_t n) { out.emplace_back(snap, n); });
  return out;
}

std::vector<std::pair<uint32_t, uint32_t>> read(const std::map<uint32_t, uint32_t>& m) {
  return {m.begin(), m.end()};
}

// Take one off `snap` in both, the map erasing at zero (as the detectors did).
void take(SnapCounts<uint32_t>& c, std::map<uint32_t, uint32_t>& m, uint32_t snap) {
  uint32_t* n = c.find(snap);
  if (n != nullptr && *n > 0) {
    --*n;
  }
  const auto it = m.find(snap);
  if (it != m.end() && --it->second == 0) {
    m.erase(it);
  }
}

} // namespace

TEST_CASE("snap_counts: a few far apart stay pairs and read by snapshot", "[snap_counts]") {
  SnapCounts<uint32_t> c;
  CHECK(read(c).empty());
  CHECK(c.find(7) == nullptr);
  c[5000]++;
  c[3]++;
  c[3]++;
  c[900] += 4;
  CHECK_FALSE(c.dense());
  CHECK(read(c) == std::vector<std::pair<uint32_t, uint32_t>>{{3, 2}, {900, 4}, {5000, 1}});
  CHECK(c.size() == 3);
  CHECK(c.find(4) == nullptr);
  REQUIRE(c.find(900) != nullptr);
  CHECK(*c.find(900) == 4);
  const SnapCounts<uint32_t>& read_only = c;
  CHECK(read_only.at(3) == 2);
  CHECK(read_only.at(4) == 0);
  CHECK(read_only.at(5000) == 1);
  CHECK(read_only.find(6000) == nullptr);
}

TEST_CASE("snap_counts: close together they become one per snapshot, read the same",
          "[snap_counts]") {
  SnapCounts<uint32_t> c;
  for (uint32_t s = 10; s < 20; ++s) {
    c[s] += s;
  }
  CHECK(c.dense());
  c[8]++; // before the first: the span grows at the front
  c[0]++; // down to snapshot 0
  c[25] += 2;
  std::vector<std::pair<uint32_t, uint32_t>> want{{0, 1}, {8, 1}};
  for (uint32_t s = 10; s < 20; ++s) {
    want.emplace_back(s, s);
  }
  want.emplace_back(25, 2);
  CHECK(read(c) == want);
  REQUIRE(c.find(9) != nullptr); // inside the span, 0: the same as none to a reader
  CHECK(*c.find(9) == 0);
  CHECK(c.find(26) == nullptr);
  const SnapCounts<uint32_t>& read_only = c;
  CHECK(read_only.at(0) == 1);
  CHECK(read_only.at(9) == 0);
  CHECK(read_only.at(12) == 12);
  CHECK(read_only.at(30) == 0);
}

TEST_CASE("snap_counts: taken back to zero reads as none", "[snap_counts]") {
  SnapCounts<uint32_t> c;
  std::map<uint32_t, uint32_t> m;
  for (uint32_t s = 0; s < 40; ++s) {
    c[s]++;
    m[s]++;
  }
  for (uint32_t s = 0; s < 40; s += 3) {
    take(c, m, s);
    take(c, m, s); // again: stays none
  }
  take(c, m, 100); // never counted
  CHECK(read(c) == read(m));
  CHECK(c.size() == m.size());
}

TEST_CASE("snap_counts: a value far past a short dense span goes back to pairs", "[snap_counts]") {
  SnapCounts<uint32_t> c;
  for (uint32_t s = 100; s < 110; ++s) {
    c[s]++;
  }
  REQUIRE(c.dense());
  c[100000]++;
  CHECK_FALSE(c.dense());
  c[0]++;
  CHECK_FALSE(c.dense());
  std::vector<std::pair<uint32_t, uint32_t>> want{{0, 1}};
  for (uint32_t s = 100; s < 110; ++s) {
    want.emplace_back(s, 1);
  }
  want.emplace_back(100000, 1);
  CHECK(read(c) == want);
}

TEST_CASE("snap_counts: one per snapshot while the span is within twice the pairs' room",
          "[snap_counts]") {
  // 10 values: their pairs take 88 bytes with one more; twice that is 44 snapshots of uint32_t.
  SnapCounts<uint32_t> near;
  SnapCounts<uint32_t> far;
  for (uint32_t s = 100; s < 110; ++s) {
    near[s]++;
    far[s]++;
  }
  REQUIRE(near.dense());
  near[143]++; // a span of 44
  CHECK(near.dense());
  far[144]++; // 45
  CHECK_FALSE(far.dense());
  CHECK(near.size() == 11);
  CHECK(far.size() == 11);
}

TEST_CASE("snap_counts: random counts and take-backs read as a map that erases at zero",
          "[snap_counts]") {
  std::mt19937 gen(42);
  const auto rng = [&gen] { return static_cast<uint32_t>(gen()); };
  for (int round = 0; round < 200; ++round) {
    SnapCounts<uint32_t> c;
    std::map<uint32_t, uint32_t> m;
    const uint32_t span = 1U + rng() % (round % 2 == 0 ? 50U : 20000U);
    const uint32_t base = rng() % 1000U;
    const int ops = 1 + static_cast<int>(rng() % 600U);
    for (int i = 0; i < ops; ++i) {
      const uint32_t snap = base + rng() % span;
      if (rng() % 4 == 0) {
        take(c, m, snap);
      } else {
        c[snap]++;
        m[snap]++;
      }
      if (i % 50 == 0) {
        REQUIRE(read(c) == read(m));
      }
    }
    REQUIRE(read(c) == read(m));
    for (uint32_t s = base; s < base + span; s += 1 + span / 64) {
      const uint32_t* n = c.find(s);
      const auto it = m.find(s);
      REQUIRE((n == nullptr ? 0U : *n) == (it == m.end() ? 0U : it->second));
    }
  }
}

TEST_CASE("snap_counts: a struct of counts is none when all are zero", "[snap_counts]") {
  struct Two {
    uint32_t a = 0;
    uint32_t b = 0;
    bool operator==(const Two&) const = default;
  };

  SnapCounts<Two> c;
  c[4].a = 1;
  c[6].b = 2;
  c[5].a = 0; // made, left at zero
  std::vector<uint32_t> snaps;
  c.for_each([&snaps](uint32_t s, const Two& /*v*/) { snaps.push_back(s); });
  CHECK(snaps == std::vector<uint32_t>{4, 6});
  c.find(4)->a = 0;
  snaps.clear();
  c.for_each([&snaps](uint32_t s, const Two& /*v*/) { snaps.push_back(s); });
  CHECK(snaps == std::vector<uint32_t>{6});
}
