// The detector toolkit: the counter rule, durations, and one finding per cause.
#include <sockrewind/analyze/toolkit.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace sockrewind::analyze;

namespace {

constexpr int64_t k_s = 1'000'000'000;

// A timeline of `n` snapshots `step_s` seconds apart.
Timeline timeline(size_t n, int64_t step_s) {
  Timeline tl;
  tl.host = "h";
  for (size_t i = 0; i < n; ++i) {
    Snap s;
    s.realtime_ns = 1'700'000'000 * k_s + static_cast<int64_t>(i) * step_s * k_s;
    s.boottime_ns = 1000 * k_s + static_cast<int64_t>(i) * step_s * k_s;
    tl.snaps.push_back(s);
  }
  return tl;
}

Finding member(const std::string& key, Severity sev, double weight, int64_t t) {
  Finding f;
  f.detector = "d";
  f.severity = sev;
  f.weight = weight;
  f.summary = "w" + std::to_string(static_cast<int>(weight));
  f.first_seen_ns = t;
  f.last_seen_ns = t + 10;
  f.group_key = key;
  f.group_by = "process";
  f.group_label = "in pid 1 (x)";
  f.group_noun = "sockets";
  return f;
}

} // namespace

TEST_CASE("toolkit: the counter rule (missing values, resets, sums)", "[toolkit]") {
  const Timeline tl = timeline(6, 10);
  const std::vector<int64_t> a{5, 7, k_no_counter, 12, 3, 4};
  const std::vector<int64_t> b{1, 1, 2, 2, 2, 5};
  const std::vector<const std::vector<int64_t>*> one{&a};
  const CounterSeries c(tl, one);
  CHECK(c.any());
  CHECK_FALSE(c.delta(0)); // nothing before the first snapshot
  CHECK(c.delta(1) == 2);
  CHECK_FALSE(c.delta(2)); // not captured
  CHECK(c.delta(3) == 5);  // from the closest earlier snapshot that has it: 12 - 7
  CHECK(c.dt(3) == Approx(20));
  CHECK(c.rate(3) == Approx(0.25));
  CHECK_FALSE(c.delta(4)); // 12 -> 3: a reset, no delta
  CHECK(c.delta(5) == 1);
  CHECK(c.total(0, 5) == 8);
  CHECK(c.delta_json(4).is_null());

  const std::vector<const std::vector<int64_t>*> two{&a, &b};
  const CounterSeries sum(tl, two);
  CHECK(sum.delta(2) == 1); // only b has a value there: it counts
  CHECK(sum.delta(4) == 0); // a reset, b +0
  CHECK(sum.delta(5) == 4); // a +1, b +3
  CHECK(sum.value(2) == 2);

  const std::vector<const std::vector<int64_t>*> none{nullptr};
  const CounterSeries missing(tl, none);
  CHECK_FALSE(missing.any());
  CHECK(missing.total(0, 5) == 0);
}

TEST_CASE("toolkit: a duration means the same at 1 s and 60 s intervals", "[toolkit]") {
  const Series series;
  const Params params;
  const Timeline fast = timeline(31, 1);
  const Timeline slow = timeline(3, 60);
  const Context f(series, fast, params);
  const Context s(series, slow, params);
  CHECK_FALSE(f.lasted(0, 5, 6, 30));
  CHECK(f.lasted(0, 30, 31, 30));
  CHECK(s.lasted(0, 1, 2, 30));
  CHECK_FALSE(s.lasted(0, 0, 1, 0)); // one snapshot is no support for a duration
  // Timer jitter: six snapshots 0.99993 s apart last "5 s", five do not.
  Timeline jitter = timeline(6, 1);
  for (size_t i = 0; i < jitter.snaps.size(); ++i) {
    jitter.snaps[i].boottime_ns = 1000 * k_s + static_cast<int64_t>(i) * 999'930'000;
  }
  const Context j(series, jitter, params);
  CHECK(j.lasted(0, 5, 6, 5));
  CHECK_FALSE(j.lasted(0, 4, 5, 5));
}

TEST_CASE("toolkit: the sink folds one cause into one finding with its worst examples",
          "[toolkit]") {
  Sink sink;
  for (int i = 0; i < 1000; ++i) {
    sink.add(member("process:1", Severity::warning, i % 100, 1000 + i));
  }
  sink.add(member("process:1", Severity::critical, 1, 5000));
  sink.add(member("process:2", Severity::info, 7, 3000));
  const std::vector<Finding> out = sink.take();
  REQUIRE(out.size() == 2);
  const Finding& g = out[0];
  CHECK(g.severity == Severity::critical);
  CHECK(g.evidence["group"]["count"] == 1001);
  REQUIRE(g.evidence["group"]["examples"].size() == 3);
  // The worst first: the critical one, then the heaviest warnings.
  CHECK(g.evidence["group"]["examples"][0]["severity"] == "critical");
  CHECK(g.evidence["group"]["examples"][1]["summary"] == "w99");
  CHECK(g.summary == "1001 sockets in pid 1 (x); the worst: w1");
  CHECK(g.first_seen_ns == 1000);
  CHECK(g.last_seen_ns == 5010);
  const Finding& lone = out[1];
  CHECK(lone.evidence["group"]["count"] == 1);
  CHECK_FALSE(lone.evidence["group"].contains("examples"));
  CHECK(lone.summary == "w7");
  CHECK(sink.take().empty());

  Finding no_key = member("", Severity::info, 0, 0);
  CHECK_THROWS(sink.add(no_key));
}
