// Retention: the collector's file names, --max-bytes sizes and the pure selection of what to
// prune from a directory listing.
#include <sockrewind/collect/retention.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

using namespace sockrewind::collect;

namespace {

constexpr uint32_t k_me = 0;
constexpr int64_t k_day = 86400;
// 2026-01-10T00:00:00Z
constexpr int64_t k_now = 1768003200;

ListedFile own(const std::string& name, uint64_t size = 100) {
  return ListedFile{name, true, k_me, size, true};
}

} // namespace

TEST_CASE("retention: collector names parse with their UTC time and sequence", "[retention]") {
  const auto a = parse_collector_name("web-1-20260110T000000Z.sqlite");
  REQUIRE(a);
  CHECK(a->utc_seconds == k_now);
  CHECK(a->seq == 1);

  const auto b = parse_collector_name("web-1-20260109T235959Z-2.sqlite");
  REQUIRE(b);
  CHECK(b->utc_seconds == k_now - 1);
  CHECK(b->seq == 2);

  const auto c = parse_collector_name("h-20240229T120000Z-999.sqlite"); // leap day
  REQUIRE(c);
  CHECK(c->seq == 999);
  // A host may contain dashes and digits; "localhost" and a host that looks like a stamp.
  CHECK(parse_collector_name("localhost-19700101T000000Z.sqlite")->utc_seconds == 0);
  CHECK(parse_collector_name("20260101T000000Z-20260110T000000Z.sqlite")->utc_seconds == k_now);
}

TEST_CASE("retention: anything not named exactly like the collector's output is refused",
          "[retention]") {
  for (const char* name : {
           "",
           ".sqlite",
           "20260110T000000Z.sqlite",          // no host
           "-20260110T000000Z.sqlite",         // empty host
           ".h-20260110T000000Z.sqlite",       // dot file
           "h-20260110T000000Z.sqlite.tmp-12", // a temporary file
           ".h-20260110T000000Z.sqlite.tmp-12",
           "h-20260110T000000Z.sqlite.bak",
           "h-20260110T000000Z.SQLITE",
           "h-20260110T000000Z.db",
           "h_20260110T000000Z.sqlite",
           "h-20260110T000000.sqlite",    // no Z
           "h-20260110 000000Z.sqlite",   // no T
           "h-2026011T0000000Z.sqlite",   // misplaced T
           "h-20261310T000000Z.sqlite",   // month 13
           "h-20260230T000000Z.sqlite",   // 30 February
           "h-20250229T000000Z.sqlite",   // not a leap year
           "h-20260110T240000Z.sqlite",   // hour 24
           "h-20260110T006000Z.sqlite",   // minute 60
           "h-20260110T000000Z-1.sqlite", // the writer starts at -2
           "h-20260110T000000Z-0.sqlite",
           "h-20260110T000000Z-02.sqlite",
           "h-20260110T000000Z-1000.sqlite",
           "h-20260110T000000Z-.sqlite",
           "h-20260110T000000Z-2-2.sqlite",
           "h-20260110T000000Z-x.sqlite",
           "h-+0260110T000000Z.sqlite",
           "sockrewind.sqlite",
       }) {
    INFO(name);
    CHECK_FALSE(parse_collector_name(name));
  }
}

TEST_CASE("retention: --max-bytes sizes take K M G T suffixes (powers of 1024)", "[retention]") {
  CHECK(parse_size("1") == 1U);
  CHECK(parse_size("1048576") == 1048576U);
  CHECK(parse_size("500M") == 500ULL << 20U);
  CHECK(parse_size("500m") == 500ULL << 20U);
  CHECK(parse_size("1G") == 1ULL << 30U);
  CHECK(parse_size("2k") == 2048U);
  CHECK(parse_size("3T") == 3ULL << 40U);
  for (const char* bad : {"",
                          "0",
                          "0M",
                          "M",
                          "-1",
                          "1.5G",
                          "1 G",
                          "1GB",
                          "1KiB",
                          "1X",
                          "G1",
                          "99999999999999999999",
                          "20000000T"}) {
    INFO(bad);
    CHECK_FALSE(parse_size(bad));
  }
}

TEST_CASE("retention: only the collector's own files are candidates", "[retention]") {
  const std::vector<ListedFile> listing = {
      own("h-20200101T000000Z.sqlite"),
      ListedFile{"link-20200101T000000Z.sqlite", false, k_me, 100, false},   // a symlink
      ListedFile{"foreign-20200101T000000Z.sqlite", true, k_me, 100, false}, // not SKRW
      ListedFile{"theirs-20200101T000000Z.sqlite", true, 1000, 100, true},   // other owner
      ListedFile{"h-20200101T000000Z.sqlite.bak", true, k_me, 100, true},    // other name
      ListedFile{"odd-20200101T000000Z.sqlite", false, k_me, 100, true},     // not regular
  };
  const std::vector<OwnFile> files = own_files(listing, k_me);
  REQUIRE(files.size() == 1);
  CHECK(files[0].name == "h-20200101T000000Z.sqlite");

  RetentionPolicy p;
  p.keep_days = 1;
  p.max_bytes = 1;
  CHECK(select_for_pruning(listing, k_me, p, k_now, "")
        == std::vector<std::string>{"h-20200101T000000Z.sqlite"});
}

TEST_CASE("retention: --keep-days deletes by the time in the name", "[retention]") {
  const std::vector<ListedFile> listing = {
      own("h-20260108T235959Z.sqlite"), // 1 day and 1 s old
      own("h-20260109T000000Z.sqlite"), // exactly 1 day old: kept
      own("h-20260109T000001Z.sqlite"),
      own("h-20260108T235959Z-2.sqlite"), // same second, second file
      own("other-20200101T000000Z.sqlite"),
      own("h-20260111T000000Z.sqlite"), // in the future (clock set back): kept
  };
  RetentionPolicy p;
  CHECK_FALSE(p.active());
  CHECK(select_for_pruning(listing, k_me, p, k_now, "").empty());

  p.keep_days = 1;
  CHECK(p.active());
  CHECK(select_for_pruning(listing, k_me, p, k_now, "h-20260109T000001Z.sqlite")
        == std::vector<std::string>{"other-20200101T000000Z.sqlite",
                                    "h-20260108T235959Z.sqlite",
                                    "h-20260108T235959Z-2.sqlite"});
  // The file just written is never deleted, even if its name is old (clock set back).
  CHECK(select_for_pruning(listing, k_me, p, k_now, "other-20200101T000000Z.sqlite")
        == std::vector<std::string>{"h-20260108T235959Z.sqlite", "h-20260108T235959Z-2.sqlite"});
  p.keep_days = 3650;
  CHECK(select_for_pruning(listing, k_me, p, k_now, "").empty());
}

TEST_CASE("retention: --max-bytes deletes the oldest until the rest fits", "[retention]") {
  const std::vector<ListedFile> listing = {
      own("h-20260109T000300Z.sqlite", 300),
      own("h-20260109T000100Z.sqlite", 100),
      own("h-20260109T000100Z-2.sqlite", 150),
      own("h-20260109T000200Z.sqlite", 200),
      ListedFile{"h-20260109T000000Z.sqlite", true, k_me, 100000, false}, // not ours: not counted
      own("h-20260109T000400Z.sqlite", 400),                              // the new one
  };
  const std::string keep = "h-20260109T000400Z.sqlite";
  RetentionPolicy p;
  p.max_bytes = 1150; // total 1150: nothing to do
  CHECK(select_for_pruning(listing, k_me, p, k_now, keep).empty());
  p.max_bytes = 1149;
  CHECK(select_for_pruning(listing, k_me, p, k_now, keep)
        == std::vector<std::string>{"h-20260109T000100Z.sqlite"});
  p.max_bytes = 900; // 1150 - 100 - 150 = 900
  CHECK(select_for_pruning(listing, k_me, p, k_now, keep)
        == std::vector<std::string>{"h-20260109T000100Z.sqlite", "h-20260109T000100Z-2.sqlite"});
  p.max_bytes = 400; // only the new file fits
  CHECK(select_for_pruning(listing, k_me, p, k_now, keep).size() == 4);
  p.max_bytes = 1; // the new file alone is larger: everything else goes, the new file stays
  const std::vector<std::string> all = select_for_pruning(listing, k_me, p, k_now, keep);
  CHECK(all.size() == 4);
  CHECK(std::find(all.begin(), all.end(), keep) == all.end());

  // Both: --keep-days first, then what is left is measured.
  p.keep_days = 1;
  p.max_bytes = 700;
  const std::vector<ListedFile> aged = {
      own("h-20200101T000000Z.sqlite", 10000),
      own("h-20260109T120000Z.sqlite", 300),
      own("h-20260109T130000Z.sqlite", 300),
      own("h-20260110T000000Z.sqlite", 300),
  };
  CHECK(select_for_pruning(aged, k_me, p, k_now, "h-20260110T000000Z.sqlite")
        == std::vector<std::string>{"h-20200101T000000Z.sqlite", "h-20260109T120000Z.sqlite"});
}

TEST_CASE("retention: hourly archives parse by the hour they start, on the hour only",
          "[retention][fold]") {
  const auto a = parse_collector_name("web-1-20260110T100000Z-hour.sqlite");
  REQUIRE(a);
  CHECK(a->archive);
  CHECK(a->utc_seconds == k_now + 10 * 3600);
  CHECK(a->seq == 1);
  const auto m = parse_collector_name("web-1-20260110T100000Z.sqlite"); // a minute file
  REQUIRE(m);
  CHECK_FALSE(m->archive);
  // A host whose name ends like an archive is still a host.
  const auto h = parse_collector_name("x-hour-20260110T000000Z.sqlite");
  REQUIRE(h);
  CHECK_FALSE(h->archive);
  CHECK(h->utc_seconds == k_now);

  for (const char* name : {
           "h-20260110T103000Z-hour.sqlite", // not on the hour
           "h-20260110T100001Z-hour.sqlite",
           "h-20260110T100100Z-hour.sqlite",
           "h-hour.sqlite", // no stamp
           "-hour.sqlite",
           "20260110T100000Z-hour.sqlite",  // no host
           "-20260110T100000Z-hour.sqlite", // empty host
           "h-20260110T1000Z-hour.sqlite",  // short stamp
           "h-20260110T100000-hour.sqlite", // no Z
           "h-20260110T240000Z-hour.sqlite",
           "h-20260110T100000Z-hour-2.sqlite",
           "h-20260110T100000Z-2-hour.sqlite",
           "h-20260110T100000Z-HOUR.sqlite",
           "h-20260110T100000Z-day.sqlite",
           "h-20260110T100000Zhour.sqlite",
           "h-20260110T100000Z-hour.sqlite.tmp-12",
           ".h-20260110T100000Z-hour.sqlite.tmp-12",
       }) {
    INFO(name);
    CHECK_FALSE(parse_collector_name(name));
  }
}

TEST_CASE("retention: archives are pruned by their name time among the minute files",
          "[retention][fold]") {
  const std::vector<ListedFile> listing = {
      own("h-20260109T080000Z-hour.sqlite", 1000),
      own("h-20260109T085900Z.sqlite", 100), // before the next archive's hour
      own("h-20260109T090000Z-hour.sqlite", 1000),
      own("h-20260109T093000Z.sqlite", 100),       // inside it (not yet folded)
      own("h-20260108T230000Z-hour.sqlite", 1000), // more than a day old
      own("h-20260110T000000Z.sqlite", 100),       // the new one
  };
  const std::string keep = "h-20260110T000000Z.sqlite";
  RetentionPolicy p;
  p.keep_days = 1;
  CHECK(select_for_pruning(listing, k_me, p, k_now, keep)
        == std::vector<std::string>{"h-20260108T230000Z-hour.sqlite"});
  p.max_bytes = 1200; // 2300 after --keep-days: the oldest archive and minute file go
  CHECK(select_for_pruning(listing, k_me, p, k_now, keep)
        == std::vector<std::string>{"h-20260108T230000Z-hour.sqlite",
                                    "h-20260109T080000Z-hour.sqlite",
                                    "h-20260109T085900Z.sqlite"});
  p.max_bytes = 1; // everything but the new file
  CHECK(select_for_pruning(listing, k_me, p, k_now, keep).size() == 5);
  p.keep_days.reset();
  p.max_bytes = 1; // the new file is kept even when it is an archive's name
  CHECK(select_for_pruning(listing, k_me, p, k_now, "h-20260109T090000Z-hour.sqlite").size() == 5);
}
