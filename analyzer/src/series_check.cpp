// check_series: the invariants of a loaded Series (series.hpp), checked with SR_ASSERT.
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/assert.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <set>
#include <vector>

namespace sockrewind::analyze {

namespace {

bool string_id_ok(const Series& s, uint32_t id) {
  return id == k_na || id < s.strings.size();
}

void check_timeline(const Series& s, const Timeline& tl) {
  const size_t snaps = tl.snaps.size();
  SR_ASSERT(snaps > 0);
  for (size_t i = 0; i < snaps; ++i) {
    SR_ASSERT(tl.snaps[i].file < s.files.size());
    if (i > 0) {
      // Same host and boot, in boottime order; equal boottimes were merged as duplicates.
      SR_ASSERT(tl.snaps[i - 1].boottime_ns < tl.snaps[i].boottime_ns);
      SR_ASSERT(tl.snaps[i - 1].run <= tl.snaps[i].run);
    }
  }
  for (const Netns& ns : tl.netns) {
    for (const auto& [name, values] : ns.counters) {
      SR_ASSERT(string_id_ok(s, name) && name != k_na);
      SR_ASSERT(values.size() == snaps);
    }
    for (const auto& [name, values] : ns.limits) {
      SR_ASSERT(values.size() == snaps);
    }
  }
  std::vector<uint64_t> samples_per_snap(snaps, 0);
  for (const Track& t : tl.tracks) {
    SR_ASSERT(!t.samples.empty());
    SR_ASSERT(t.netns < tl.netns.size());
    SR_ASSERT(string_id_ok(s, t.local_addr) && string_id_ok(s, t.remote_addr)
              && string_id_ok(s, t.path));
    for (size_t i = 0; i < t.samples.size(); ++i) {
      const Sample& x = t.samples[i];
      SR_ASSERT(x.snap < snaps);
      SR_ASSERT(i == 0 || t.samples[i - 1].snap < x.snap);
      SR_ASSERT(x.owner == k_na || x.owner < tl.procs.size());
      // Every owner: an interned set (which includes the first owner), or {owner}, or {}.
      SR_ASSERT(x.owner_set == k_na || x.owner_set < tl.owner_sets.size());
      if (x.owner_set != k_na) {
        const std::vector<uint32_t>& all = tl.owner_sets[x.owner_set];
        SR_ASSERT(x.owner == k_na || std::count(all.begin(), all.end(), x.owner) == 1);
      }
      ++samples_per_snap[x.snap];
    }
  }
  for (size_t i = 0; i < snaps; ++i) {
    // Every row placed exactly once (all of them unless a filter left some out).
    SR_ASSERT(s.filtered ? samples_per_snap[i] <= tl.snaps[i].sockets
                         : samples_per_snap[i] == tl.snaps[i].sockets);
  }
  std::set<std::vector<uint32_t>> distinct;
  for (const std::vector<uint32_t>& set : tl.owner_sets) {
    SR_ASSERT(set.size() >= 2);
    SR_ASSERT(std::adjacent_find(set.begin(), set.end(), std::greater_equal<>()) == set.end());
    SR_ASSERT(set.back() < tl.procs.size());
    SR_ASSERT(distinct.insert(set).second); // each set stored once
  }
  for (const Process& p : tl.procs) {
    SR_ASSERT(string_id_ok(s, p.comm) && string_id_ok(s, p.cmdline));
    for (size_t i = 0; i < p.samples.size(); ++i) {
      const char st = p.samples[i].state;
      SR_ASSERT(st == 0 || (st >= 'A' && st <= 'Z') || (st >= 'a' && st <= 'z'));
      SR_ASSERT(p.samples[i].snap < snaps);
      SR_ASSERT(i == 0 || p.samples[i - 1].snap <= p.samples[i].snap);
    }
  }
}

} // namespace

void check_series(const Series& s) {
  for (const Timeline& tl : s.timelines) {
    check_timeline(s, tl);
  }
}

} // namespace sockrewind::analyze
