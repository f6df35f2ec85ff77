#include "analyze/series_fixture.hpp"
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <sstream>

using namespace sockrewind;
using analyze::DiffOptions;
using analyze::Format;

namespace {

std::string diff(const DiffOptions& o) {
  std::ostringstream out;
  analyze::write_diff(o, out);
  return out.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> v;
  std::istringstream in(text);
  std::string l;
  while (std::getline(in, l)) {
    v.push_back(l);
  }
  return v;
}

// The lines of a section ("new sockets: N" up to the next blank line), title included.
std::vector<std::string> section(const std::string& text, const std::string& title) {
  std::vector<std::string> out;
  bool in = false;
  for (const std::string& l : lines(text)) {
    if (l.rfind(title + ":", 0) == 0) {
      in = true;
    } else if (in && l.empty()) {
      break;
    }
    if (in) {
      out.push_back(l);
    }
  }
  return out;
}

} // namespace

TEST_CASE("diff: sockets new and gone, state, queue and owner changes", "[diff]") {
  test::TempDir dir;
  DiffOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.from = "1";
  o.to = "6";
  const std::string text = diff(o);
  INFO(text);
  CHECK_THAT(lines(text).at(0),
             Catch::Equals("host web1  from #1 2026-11-22T10:00:00.000Z  to #6 "
                           "2026-11-22T10:03:30.000Z  (210.0 s, 1 gap between)"));

  auto s = section(text, "new sockets");
  REQUIRE(s.size() == 4); // title, header, two sockets
  CHECK(s[0] == "new sockets: 2");
  CHECK_THAT(s[2],
             Catch::Matches("  \\+  tcp +ESTAB +0 +0 +10\\.0\\.0\\.1:80 +10\\.0\\.0\\.3:6000 +"
                            "nginx/100 +3"));
  CHECK_THAT(s[3],
             Catch::Matches("  \\+  udp +UNCONN +0 +- +0\\.0\\.0\\.0:5353 +0\\.0\\.0\\.0:\\* +"
                            "mdns/200 +6"));

  s = section(text, "gone sockets");
  REQUIRE(s.size() == 4);
  CHECK_THAT(s[2],
             Catch::Matches("  -  tcp +TIME-WAIT +0 +0 +10\\.0\\.0\\.1:80 +10\\.0\\.0\\.4:7000 "
                            "+- +4"));
  CHECK_THAT(s[3], Catch::Matches("  -  udp +UNCONN .*0\\.0\\.0\\.0:53 .* dns/200 +5"));

  s = section(text, "state changes");
  REQUIRE(s.size() == 3);
  CHECK_THAT(s[2],
             Catch::Matches("  tcp +10\\.0\\.0\\.1:80 +10\\.0\\.0\\.2:5555 +ESTAB -> CLOSE-WAIT"
                            " +2"));

  s = section(text, "queue changes");
  REQUIRE(s.size() == 5);
  CHECK_THAT(s[2], Catch::Contains("0.0.0.0:80"));
  CHECK_THAT(s[2], Catch::Contains("Recv-Q 0 -> 5, Send-Q 128 (LISTEN)"));
  CHECK_THAT(s[3], Catch::Contains("10.0.0.2:5555"));
  CHECK_THAT(s[3], Catch::Contains("Recv-Q 0 -> 1, Send-Q 0 (CLOSE-WAIT)"));
  CHECK_THAT(s[4], Catch::Contains("10.0.0.9:80"));
  CHECK_THAT(s[4], Catch::Contains("Recv-Q 0, Send-Q 0 -> 20 (ESTAB)"));

  s = section(text, "owner changes");
  REQUIRE(s.size() == 3);
  CHECK_THAT(s[2], Catch::Contains("nginx/100 -> worker/300"));
}

TEST_CASE("diff: counter deltas per netns, a reset is never a negative delta", "[diff]") {
  test::TempDir dir;
  DiffOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.from = "1";
  o.to = "6";
  std::string text = diff(o);
  INFO(text);
  const auto ls = lines(text);
  const auto head =
      std::find(ls.begin(), ls.end(), "  netns " + std::to_string(synth::Host{}.netns_inode));
  REQUIRE(head != ls.end());
  REQUIRE(ls.end() - head == 4); // netns line + 3 counters; SyncookiesSent did not change
  CHECK_THAT(*(head + 1), Catch::Matches("    TcpExt\\.ListenOverflows +\\+7"));
  CHECK_THAT(*(head + 2), Catch::Matches("    Udp\\.RcvbufErrors +\\+20  reset \\(100 -> 3;.*"));
  CHECK_THAT(*(head + 3), Catch::Matches("    Tcp\\.CurrEstab +10 -> 4 \\(gauge\\)"));
  CHECK(text.find("SyncookiesSent") == std::string::npos);
  CHECK(text.find("+-") == std::string::npos);

  // Exactly over the reset: +0 and "reset", not -117.
  o.from = "3";
  o.to = "4";
  text = diff(o);
  CHECK_THAT(text, Catch::Contains("Udp.RcvbufErrors  +0  reset (120 -> 3;"));
  CHECK(text.find("-117") == std::string::npos);

  o.format = Format::json;
  const nlohmann::json j = nlohmann::json::parse(diff(o));
  REQUIRE(j.at("counters").size() == 1);
  CHECK(j.at("counters")[0]
        == nlohmann::json{{"netns", synth::Host{}.netns_inode},
                          {"name", "Udp.RcvbufErrors"},
                          {"from", 120},
                          {"to", 3},
                          {"delta", 0},
                          {"reset", true}});
  CHECK(j.at("gauges").empty());

  // Nothing moved between 1 and 2 but the accept queue.
  o.format = Format::text;
  o.from = "1";
  o.to = "2";
  text = diff(o);
  CHECK_THAT(text,
             Catch::Contains("counters (non-zero deltas; a decrease is a counter reset): none"));
  CHECK_THAT(text, Catch::Contains("new sockets: 0"));
  CHECK_THAT(text, Catch::Contains("queue changes: 1"));
}

TEST_CASE("diff --format json", "[diff]") {
  test::TempDir dir;
  DiffOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.from = "1";
  o.to = "6";
  o.format = Format::json;
  const nlohmann::json j = nlohmann::json::parse(diff(o));
  INFO(j.dump(2));
  CHECK(j.at("host") == "web1");
  CHECK(j.at("from").at("snapshot") == 1);
  CHECK(j.at("from").at("t") == "2026-11-22T10:00:00.000Z");
  CHECK(j.at("to").at("snapshot") == 6);
  CHECK(j.at("to").at("snapshot_id") == 6);
  CHECK(j.at("to").at("file") == o.paths[0]);
  CHECK(j.at("same_boot") == true);
  CHECK(j.at("gaps") == 1);
  CHECK(j.at("interval_s") == Approx(210.0));
  REQUIRE(j.at("new").size() == 2);
  CHECK(j.at("new")[0].at("cookie") == 3);
  CHECK(j.at("new")[0].at("state") == "ESTAB");
  CHECK(j.at("new")[0].at("pid") == 100);
  CHECK(j.at("new")[0].at("rx_queue") == 0);
  REQUIRE(j.at("gone").size() == 2);
  CHECK(j.at("gone")[0].at("cookie") == 4);
  CHECK(j.at("gone")[0].at("state") == "TIME-WAIT");
  REQUIRE(j.at("state_changes").size() == 1);
  CHECK(j.at("state_changes")[0].at("from") == "ESTAB");
  CHECK(j.at("state_changes")[0].at("to") == "CLOSE-WAIT");
  CHECK(j.at("state_changes")[0].at("socket").at("cookie") == 2);
  REQUIRE(j.at("queue_changes").size() == 3);
  CHECK(j.at("queue_changes")[0].at("rx_queue") == nlohmann::json{{"from", 0}, {"to", 5}});
  REQUIRE(j.at("owner_changes").size() == 1);
  CHECK(j.at("owner_changes")[0].at("from").at("pid") == 100);
  CHECK(j.at("owner_changes")[0].at("to").at("pid") == 300);
  CHECK(j.at("owner_changes")[0].at("to").at("comm") == "worker");
  REQUIRE(j.at("counters").size() == 2);
  CHECK(j.at("counters")[0].at("name") == "TcpExt.ListenOverflows");
  CHECK(j.at("counters")[0].at("delta") == 7);
  CHECK(j.at("counters")[0].at("reset") == false);
  CHECK(j.at("counters")[1].at("delta") == 20);
  CHECK(j.at("counters")[1].at("reset") == true);
  REQUIRE(j.at("gauges").size() == 1);
  CHECK(j.at("gauges")[0].at("name") == "Tcp.CurrEstab");
  CHECK(j.at("gauges")[0].at("to") == 4);
}

TEST_CASE("diff: --from/--to by time, bad positions, several hosts, reboots", "[diff]") {
  test::TempDir dir;
  DiffOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.from = "2026-11-22T10:00:05Z";
  o.to = "2026-11-22T10:02:00Z"; // in the gap: the last snapshot before it is #4
  std::string text = diff(o);
  CHECK_THAT(lines(text).at(0),
             Catch::StartsWith("host web1  from #1 2026-11-22T10:00:00.000Z  "
                               "to #4 2026-11-22T10:00:30.000Z  (30.0 s)"));
  o.from = "2026-11-22T09:00:00Z";
  CHECK_THROWS_WITH(diff(o),
                    Catch::Contains("no snapshot at or before")
                        && Catch::Contains("2026-11-22T10:00:00.000Z"));
  o.from = "0";
  CHECK_THROWS_WITH(diff(o), Catch::Contains("snapshots 1..6"));
  o.from = "7";
  CHECK_THROWS_AS(diff(o), analyze::UsageError);
  o.from = "5";
  o.to = "2";
  CHECK_THROWS_WITH(diff(o), Catch::Contains("after --to"));
  o.from = "garbage";
  CHECK_THROWS_AS(diff(o), analyze::UsageError);

  // The same host after a reboot: nothing can be matched across it.
  synth::Host h = test::web1_host();
  h.boot_id = "boot-web1-b";
  synth::Snap s;
  s.realtime_ns = (test::k_t0_s + 3600) * test::k_ns;
  s.boottime_ns = 30 * test::k_ns;
  s.sockets.push_back({.state = 10,
                       .local = "0.0.0.0",
                       .lport = 80,
                       .remote = "0.0.0.0",
                       .rx = 0,
                       .tx = 511,
                       .inode = 77,
                       .cookie = 2,
                       .owners = {{100, 3}}});
  s.procs.push_back({.pid = 100, .start_ticks = 1, .comm = "nginx"});
  s.counters["TcpExt.ListenOverflows"] = 0;
  synth::write_series(dir.path().string(), h, {s});
  o.paths = analyze::expand_paths({dir.path().string()});
  o.from = "6";
  o.to = "7";
  text = diff(o);
  INFO(text);
  CHECK_THAT(text, Catch::Contains("different boots (boot-web1-a -> boot-web1-b)"));
  CHECK_THAT(text, Catch::Contains("new sockets: 1"));
  CHECK_THAT(text, Catch::Contains("gone sockets: 5"));
  CHECK_THAT(text, Catch::Contains("state changes: 0"));
  CHECK_THAT(text, Catch::Contains("counters: not comparable across a reboot"));

  // Several hosts: --host is required, and the error lists them.
  synth::Host other;
  other.hostname = "db1";
  synth::write_series(dir.path().string(), other, {s});
  o.paths = analyze::expand_paths({dir.path().string()});
  o.from = "1";
  o.to = "2";
  CHECK_THROWS_WITH(diff(o),
                    Catch::Contains("several hosts: db1, web1") && Catch::Contains("--host"));
  o.host = "web1";
  CHECK_THAT(diff(o), Catch::StartsWith("host web1  from #1"));
  o.host = "db1";
  CHECK_THROWS_WITH(diff(o), Catch::Contains("snapshots 1..1"));
}
