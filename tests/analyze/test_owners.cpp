// Every owner of a shared socket (Timeline::owner_sets, owners_of) and each process's scheduler
// state (ProcSample::state), from files the collector's own writer wrote (tests/synth), and
// from the version-1 files in samples/.
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;

namespace {

constexpr int64_t k_t0 = 1'795'341'600'000'000'000; // 2026-11-22T10:00:00Z
constexpr int64_t k_s = 1'000'000'000;

// The pids of owners_of(x), in the order returned.
std::vector<int32_t> owner_pids(const Timeline& tl, const Sample& x) {
  std::vector<int32_t> out;
  for (const uint32_t p : owners_of(tl, x)) {
    out.push_back(tl.procs.at(p).pid);
  }
  return out;
}

const Track& track_of(const Timeline& tl, uint16_t lport, uint8_t state) {
  for (const Track& t : tl.tracks) {
    if (t.local_port == lport && !t.samples.empty() && t.samples.front().state == state) {
      return t;
    }
  }
  FAIL("no track on port " << lport);
  throw std::logic_error("unreachable");
}

const Process& proc_of(const Timeline& tl, int32_t pid) {
  const auto it = std::find_if(
      tl.procs.begin(), tl.procs.end(), [pid](const Process& p) { return p.pid == pid; });
  REQUIRE(it != tl.procs.end());
  return *it;
}

// nginx in miniature over 5 snapshots: master 100 and workers 101, 102 hold the listener :80
// (the master twice, fds 6 and 9); worker 102 is stopped (T) in snapshots 2..4 and worker 101
// exits before snapshot 4. A connection held by 101 alone, and a TIME_WAIT socket with none.
std::vector<synth::Snap> nginx_snaps() {
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 5; ++i) {
    synth::Snap s;
    s.realtime_ns = k_t0 + i * 10 * k_s;
    s.boottime_ns = (700 + i * 10) * k_s;
    synth::Sock listener{.state = 10,
                         .local = "0.0.0.0",
                         .lport = 80,
                         .remote = "0.0.0.0",
                         .rx = 0,
                         .tx = 511,
                         .inode = 5000,
                         .cookie = 1,
                         .owners = {{100, 6}, {100, 9}, {102, 6}}};
    if (i < 4) {
      listener.owners.emplace_back(101, 6);
    }
    s.sockets.push_back(listener);
    s.procs.push_back(
        {.pid = 100, .start_ticks = 10, .comm = "nginx", .socket_fds = 2, .state = 'S'});
    s.procs.push_back({.pid = 102,
                       .start_ticks = 12,
                       .comm = "nginx",
                       .socket_fds = 1,
                       .state = i >= 2 ? 'T' : 'S'});
    if (i < 4) {
      s.sockets.push_back({.lport = 80,
                           .remote = "10.0.0.7",
                           .rport = 40000,
                           .inode = 5001,
                           .cookie = 2,
                           .owners = {{101, 7}}});
      // The state of 101 was not read in snapshot 1 (e.g. /proc/101/stat vanished).
      s.procs.push_back({.pid = 101,
                         .start_ticks = 11,
                         .comm = "nginx",
                         .socket_fds = 2,
                         .state = i == 1 ? std::nullopt : std::optional<char>('R')});
    }
    s.sockets.push_back(
        {.state = 6, .lport = 80, .remote = "10.0.0.8", .rport = 40001, .cookie = 3});
    snaps.push_back(s);
  }
  return snaps;
}

} // namespace

TEST_CASE("series: a socket held by three processes lists them all, sets stored once",
          "[series][owners]") {
  test::TempDir dir;
  synth::write_series(dir.path().string(), synth::Host{}, nginx_snaps());
  const Series s = load_series(expand_paths({dir.path().string()}));
  REQUIRE(s.timelines.size() == 1);
  const Timeline& tl = s.timelines[0];
  REQUIRE(tl.snaps.size() == 5);

  const Track& listener = track_of(tl, 80, k_listen);
  REQUIRE(listener.samples.size() == 5);
  // Three owners in snapshots 0..3 (one set), two in snapshot 4 (another): two entries, not 5.
  CHECK(tl.owner_sets.size() == 2);
  for (size_t i = 0; i < 5; ++i) {
    INFO("snapshot " << i);
    const Sample& x = listener.samples[i];
    REQUIRE(x.owner != k_na);
    CHECK(tl.procs[x.owner].pid == 100); // the first owner, as before
    REQUIRE(x.owner_set != k_na);
    REQUIRE(x.owner_set < tl.owner_sets.size());
    const std::vector<uint32_t>& set = tl.owner_sets[x.owner_set];
    CHECK(std::is_sorted(set.begin(), set.end()));
    CHECK(std::adjacent_find(set.begin(), set.end()) == set.end());
    CHECK(std::count(set.begin(), set.end(), x.owner) == 1);
    CHECK(owners_of(tl, x) == set);
    std::vector<int32_t> pids = owner_pids(tl, x);
    std::sort(pids.begin(), pids.end());
    CHECK(pids == (i < 4 ? std::vector<int32_t>{100, 101, 102} : std::vector<int32_t>{100, 102}));
    CHECK(x.owner_set == listener.samples[i < 4 ? 0 : 4].owner_set);
  }
  CHECK(listener.samples[0].owner_set != listener.samples[4].owner_set);

  // One owner: no set, owners_of is {owner}. No owner: {}.
  const Track& conn = track_of(tl, 80, k_established);
  REQUIRE(conn.samples.size() == 4);
  for (const Sample& x : conn.samples) {
    CHECK(x.owner_set == k_na);
    CHECK(owner_pids(tl, x) == std::vector<int32_t>{101});
  }
  const Track& tw = track_of(tl, 80, k_time_wait);
  for (const Sample& x : tw.samples) {
    CHECK(x.owner == k_na);
    CHECK(x.owner_set == k_na);
    CHECK(owners_of(tl, x).empty());
  }

  // Scheduler states per snapshot: the stopped worker is visible; unread is 0.
  const Process& master = proc_of(tl, 100);
  const Process& w101 = proc_of(tl, 101);
  const Process& w102 = proc_of(tl, 102);
  for (uint32_t i = 0; i < 5; ++i) {
    INFO("snapshot " << i);
    REQUIRE(Timeline::proc_at(master, i) != nullptr);
    CHECK(Timeline::proc_at(master, i)->state == 'S');
    REQUIRE(Timeline::proc_at(w102, i) != nullptr);
    CHECK(Timeline::proc_at(w102, i)->state == (i >= 2 ? 'T' : 'S'));
    const ProcSample* p = Timeline::proc_at(w101, i);
    if (i < 4) {
      REQUIRE(p != nullptr);
      CHECK(p->state == (i == 1 ? 0 : 'R'));
    } else {
      CHECK(p == nullptr);
    }
  }
}

TEST_CASE("series: a version-1 file with shared sockets gives owner sets and unknown states",
          "[series][owners]") {
  test::TempDir dir;
  const std::string path = synth::write_series(dir.path().string(), synth::Host{}, nginx_snaps());
  // What a schema-v1 collector wrote: no processes.state, one row per socket per snapshot.
  synth::rewrite_as_version(path, 1);
  {
    store::Db db = store::Db::create(path);
    REQUIRE(db.query_int("SELECT count(*) FROM sqlite_schema WHERE name = 'sockets' "
                         "AND type = 'table'")
            == 1);
  }
  const Series s = load_series({path});
  REQUIRE(s.timelines.size() == 1);
  const Timeline& tl = s.timelines[0];
  const Track& listener = track_of(tl, 80, k_listen);
  REQUIRE(listener.samples.size() == 5);
  std::vector<int32_t> pids = owner_pids(tl, listener.samples[0]);
  std::sort(pids.begin(), pids.end());
  CHECK(pids == std::vector<int32_t>{100, 101, 102});
  CHECK(tl.owner_sets.size() == 2);
  REQUIRE(tl.procs.size() == 3);
  for (const Process& p : tl.procs) {
    REQUIRE_FALSE(p.samples.empty());
    for (const ProcSample& x : p.samples) {
      CHECK(x.state == 0);
    }
  }
}

TEST_CASE("series: the version-1 samples load with unknown states and single owners",
          "[series][owners][samples]") {
  const std::filesystem::path dir = std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "samples";
  size_t files = 0;
  size_t owned = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".sqlite") {
      continue;
    }
    INFO(e.path());
    {
      store::Db db = store::Db::open_readonly(e.path().string(), false);
      REQUIRE(db.query_int("PRAGMA user_version") == 1);
    }
    ++files;
    const Series s = load_series({e.path().string()});
    for (const Timeline& tl : s.timelines) {
      CHECK(tl.owner_sets.empty()); // the samples have no extra_owners rows
      for (const Process& p : tl.procs) {
        for (const ProcSample& x : p.samples) {
          CHECK(x.state == 0);
        }
      }
      for (const Track& t : tl.tracks) {
        for (const Sample& x : t.samples) {
          CHECK(x.owner_set == k_na);
          const std::vector<uint32_t> all = owners_of(tl, x);
          CHECK(all
                == (x.owner == k_na ? std::vector<uint32_t>{} : std::vector<uint32_t>{x.owner}));
          owned += all.size();
        }
      }
    }
  }
  CHECK(files >= 5);
  CHECK(owned > 0);
}
