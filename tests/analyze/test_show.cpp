#include "analyze/series_fixture.hpp"
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/time.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

using namespace sockrewind;
using analyze::Format;
using analyze::ShowOptions;

namespace {

std::string show(const ShowOptions& o) {
  std::ostringstream out;
  analyze::write_show(o, out);
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

// The line that contains every one of `parts` (exactly one such line).
std::string line_with(const std::string& text, const std::vector<std::string>& parts) {
  std::vector<std::string> found;
  for (const std::string& l : lines(text)) {
    bool all = true;
    for (const std::string& p : parts) {
      all = all && l.find(p) != std::string::npos;
    }
    if (all) {
      found.push_back(l);
    }
  }
  INFO(text);
  REQUIRE(found.size() == 1);
  return found.front();
}

// One snapshot of host "edge" at 2026-11-22T10:00:00Z (and an earlier one with one socket):
// an IPv4 listener with two owners, an established connection with a retransmit timer, an IPv6
// CLOSE-WAIT, a UDP socket (Send-Q not provided), a unix listener, a TIME-WAIT without owner.
std::string write_edge(const std::filesystem::path& dir, const std::string& host = "edge") {
  using test::k_ns;
  using test::k_t0_s;
  synth::Snap early;
  early.realtime_ns = (k_t0_s - 60) * k_ns;
  early.boottime_ns = 1000 * k_ns;
  early.sockets.push_back({.state = 10,
                           .local = "0.0.0.0",
                           .lport = 80,
                           .remote = "0.0.0.0",
                           .rx = 0,
                           .tx = 128,
                           .inode = 1000,
                           .cookie = 1,
                           .owners = {{100, 3}}});
  early.procs.push_back({.pid = 100, .start_ticks = 5, .comm = "nginx"});

  synth::Snap s;
  s.realtime_ns = k_t0_s * k_ns;
  s.boottime_ns = 1060 * k_ns;
  s.sockets.push_back({.state = 10,
                       .local = "0.0.0.0",
                       .lport = 80,
                       .remote = "0.0.0.0",
                       .rx = 3,
                       .tx = 128,
                       .inode = 1000,
                       .cookie = 1,
                       .owners = {{100, 3}, {101, 3}}});
  s.sockets.push_back({.state = 1,
                       .local = "10.0.0.1",
                       .lport = 80,
                       .remote = "10.0.0.2",
                       .rport = 5555,
                       .rx = 0,
                       .tx = 10,
                       .inode = 1001,
                       .cookie = 2,
                       .uid = 33,
                       .timer = 1,
                       .expires_ms = 1200,
                       .retrans = 3,
                       .owners = {{100, 4}}});
  s.sockets.push_back({.family = 10,
                       .state = 8,
                       .local = "::1",
                       .lport = 8080,
                       .remote = "::1",
                       .rport = 40000,
                       .rx = 1,
                       .tx = 0,
                       .inode = 1002,
                       .cookie = 3,
                       .owners = {{200, 5}}});
  s.sockets.push_back({.type = 2,
                       .proto = 17,
                       .state = 7,
                       .local = "0.0.0.0",
                       .lport = 53,
                       .remote = "0.0.0.0",
                       .rx = 0,
                       .inode = 1003,
                       .cookie = 4,
                       .owners = {{200, 6}}});
  s.sockets.push_back({.family = 1,
                       .state = 10,
                       .rx = 0,
                       .tx = 64,
                       .inode = 1004,
                       .path = "/run/app.sock",
                       .owners = {{100, 7}}});
  s.sockets.push_back({.state = 6,
                       .local = "10.0.0.1",
                       .lport = 80,
                       .remote = "10.0.0.3",
                       .rport = 6000,
                       .rx = 0,
                       .tx = 0,
                       .inode = 0,
                       .cookie = 5,
                       .timer = 3,
                       .expires_ms = 59000,
                       .retrans = 0});
  s.procs.push_back({.pid = 100, .start_ticks = 5, .comm = "nginx"});
  s.procs.push_back({.pid = 101, .start_ticks = 6, .comm = "nginx"});
  s.procs.push_back({.pid = 200, .start_ticks = 7, .comm = "evil\x1b[31m"});
  synth::Host h;
  h.hostname = host;
  return synth::write_series(dir.string(), h, {early, s});
}

} // namespace

TEST_CASE("show: the last snapshot like ss, with timers, inodes, cookies and owners", "[show]") {
  test::TempDir dir;
  ShowOptions o;
  o.path = write_edge(dir.path());
  const std::string text = show(o);
  INFO(text);
  const auto ls = lines(text);
  REQUIRE(ls.size() == 8); // header, column header, 6 sockets
  CHECK_THAT(ls[0],
             Catch::StartsWith("host edge  time 2026-11-22T10:00:00.000Z  snapshot 2  "
                               "sockets 6  file "));
  CHECK_THAT(ls[1], Catch::StartsWith("Netid  State"));
  CHECK_THAT(ls[1], Catch::Contains("Recv-Q  Send-Q  Local Address:Port"));
  // ss order: tcp, udp, then unix.
  CHECK_THAT(ls[2], Catch::StartsWith("tcp"));
  CHECK_THAT(ls[7], Catch::StartsWith("u_str"));

  const std::string listen = line_with(text, {"LISTEN", "0.0.0.0:80"});
  CHECK_THAT(listen,
             Catch::Matches("tcp +LISTEN +3 +128 +0\\.0\\.0\\.0:80 +0\\.0\\.0\\.0:\\* +.*"));
  CHECK_THAT(listen, Catch::Contains("ino:1000 cookie:1"));
  CHECK_THAT(listen, Catch::EndsWith("users:((\"nginx\",pid=100,fd=3),(\"nginx\",pid=101,fd=3))"));

  const std::string estab = line_with(text, {"ESTAB"});
  CHECK_THAT(estab, Catch::Contains("10.0.0.1:80"));
  CHECK_THAT(estab, Catch::Contains("10.0.0.2:5555"));
  CHECK_THAT(estab, Catch::Contains("timer:(on,1.2s,3) uid:33 ino:1001 cookie:2"));

  const std::string cw = line_with(text, {"CLOSE-WAIT"});
  CHECK_THAT(cw, Catch::Contains("[::1]:8080"));
  CHECK_THAT(cw, Catch::Contains("[::1]:40000"));
  // A hostile comm is escaped, never written raw.
  CHECK_THAT(cw, Catch::Contains("users:((\"evil\\x1b[31m\",pid=200,fd=5))"));
  CHECK(text.find('\x1b') == std::string::npos);

  const std::string tw = line_with(text, {"TIME-WAIT"});
  CHECK_THAT(tw, Catch::Contains("timer:(timewait,59.0s,0)"));
  CHECK_THAT(tw, Catch::Contains("ino:0 cookie:5"));
  CHECK(tw.find("users:") == std::string::npos);

  // UDP: Send-Q not provided (NULL) shows as "-", not 0.
  const std::string udp = line_with(text, {"udp"});
  CHECK_THAT(udp, Catch::Matches("udp +UNCONN +0 +- +0\\.0\\.0\\.0:53 +0\\.0\\.0\\.0:\\* .*"));

  const std::string unix_line = line_with(text, {"u_str"});
  CHECK_THAT(unix_line, Catch::Matches("u_str +LISTEN +0 +64 +/run/app\\.sock +\\* +.*"));
}

TEST_CASE("show: --state, --port and --pid filters", "[show]") {
  test::TempDir dir;
  ShowOptions o;
  o.path = write_edge(dir.path());

  o.state = "close_wait"; // case-insensitive, '_' as '-'
  std::string text = show(o);
  CHECK_THAT(text, Catch::Contains("sockets 6 (shown 1)"));
  CHECK(lines(text).size() == 3);
  CHECK_THAT(lines(text)[2], Catch::Contains("CLOSE-WAIT"));

  o.state = "Listen";
  text = show(o);
  CHECK(lines(text).size() == 4); // tcp and unix listeners
  CHECK_THAT(text, Catch::Contains("/run/app.sock"));

  o.state = "bogus";
  CHECK_THROWS_AS(show(o), analyze::UsageError);

  o.state.reset();
  o.port = 80; // local or remote; unix and udp:53 are left out
  text = show(o);
  INFO(text);
  CHECK(lines(text).size() == 5);
  CHECK_THAT(text, Catch::Contains("LISTEN"));
  CHECK_THAT(text, Catch::Contains("ESTAB"));
  CHECK_THAT(text, Catch::Contains("TIME-WAIT"));
  CHECK(text.find("udp") == std::string::npos);

  o.port = 40000; // matches the remote port of the IPv6 socket
  text = show(o);
  CHECK(lines(text).size() == 3);
  CHECK_THAT(text, Catch::Contains("[::1]:40000"));

  o.port.reset();
  o.pid = 101; // an extra owner (extra_owners) counts
  text = show(o);
  CHECK(lines(text).size() == 3);
  CHECK_THAT(text, Catch::Contains("0.0.0.0:80"));

  o.pid = 200;
  o.state = "UNCONN";
  text = show(o);
  CHECK(lines(text).size() == 3);
  CHECK_THAT(text, Catch::Contains("0.0.0.0:53"));
}

TEST_CASE("show: --snapshot and --at pick the snapshot", "[show]") {
  test::TempDir dir;
  ShowOptions o;
  o.path = write_edge(dir.path());

  o.snapshot = 1;
  std::string text = show(o);
  CHECK_THAT(text, Catch::Contains("snapshot 1  sockets 1"));
  CHECK_THAT(text, Catch::Contains("time 2026-11-22T09:59:00.000Z"));
  CHECK_THAT(text, Catch::Contains("LISTEN  0       128"));
  o.snapshot = 9;
  CHECK_THROWS_WITH(show(o), Catch::Contains("no snapshot 9") && Catch::Contains("1..2"));

  o.snapshot.reset();
  o.at = "2026-11-22T09:59:30Z";
  CHECK_THAT(show(o), Catch::Contains("snapshot 1  sockets 1"));
  o.at = "2026-11-22T10:00:00Z"; // at: inclusive
  CHECK_THAT(show(o), Catch::Contains("snapshot 2  sockets 6"));
  o.at = "2026-11-22T10:30:00.5Z";
  CHECK_THAT(show(o), Catch::Contains("snapshot 2"));
  o.at = "2026-11-22T11:59:30+02:00"; // = 09:59:30Z
  CHECK_THAT(show(o), Catch::Contains("snapshot 1"));
  o.at = "2026-11-22T09:58:59.999Z"; // before the first
  CHECK_THROWS_WITH(show(o), Catch::Contains("the first is at 2026-11-22T09:59:00.000Z"));
  o.at = "yesterday";
  CHECK_THROWS_AS(show(o), analyze::UsageError);
}

TEST_CASE("show: parse_time reads ISO 8601 UTC", "[show]") {
  using analyze::parse_time;
  CHECK(parse_time("2026-11-22T10:00:00Z") == 1795341600 * test::k_ns);
  CHECK(parse_time("2026-11-22T10:00:00.25Z") == 1795341600 * test::k_ns + 250'000'000);
  CHECK(parse_time("2026-11-22 10:00") == 1795341600 * test::k_ns);
  CHECK(parse_time("2000-02-29T00:00:00Z") == 951782400 * test::k_ns);
  CHECK(parse_time("2026-11-22T12:00:00+02:00") == 1795341600 * test::k_ns);
  CHECK_THROWS_AS(parse_time("2026-02-29T00:00:00Z"), analyze::UsageError);
  CHECK_THROWS_AS(parse_time("2026-11-22T25:00:00Z"), analyze::UsageError);
  CHECK_THROWS_AS(parse_time("2026-11-22T10:00:00Zjunk"), analyze::UsageError);
  CHECK_THROWS_AS(parse_time(""), analyze::UsageError);
}

TEST_CASE("show --format json: the snapshot and every socket field", "[show]") {
  test::TempDir dir;
  ShowOptions o;
  o.path = write_edge(dir.path());
  o.format = Format::json;
  const std::string text = show(o);
  INFO(text);
  const nlohmann::json j = nlohmann::json::parse(text);
  REQUIRE(j.size() == 2);
  const auto& snap = j.at("snapshot");
  CHECK(snap.at("file") == o.path);
  CHECK(snap.at("snapshot_id") == 2);
  CHECK(snap.at("host") == "edge");
  CHECK(snap.at("boot_id") == synth::Host{}.boot_id);
  CHECK(snap.at("kernel") == synth::Host{}.kernel);
  CHECK(snap.at("time") == "2026-11-22T10:00:00.000Z");
  CHECK(snap.at("sockets") == 6);
  REQUIRE(snap.at("netns").size() == 1);
  CHECK(snap.at("netns")[0].at("inode") == synth::Host{}.netns_inode);
  CHECK(snap.at("netns")[0].at("found_via") == "self");
  CHECK(snap.at("sources").is_string());

  const auto& socks = j.at("sockets");
  REQUIRE(socks.size() == 6);
  for (const auto& s : socks) {
    for (const char* k : {"proto",
                          "family",
                          "state",
                          "local",
                          "remote",
                          "rx_queue",
                          "tx_queue",
                          "inode",
                          "cookie",
                          "uid",
                          "owners",
                          "timer"}) {
      CHECK(s.contains(k));
    }
  }
  const auto& l = socks[0];
  CHECK(l.at("proto") == "tcp");
  CHECK(l.at("family") == "inet");
  CHECK(l.at("state") == "LISTEN");
  CHECK(l.at("local") == "0.0.0.0:80");
  CHECK(l.at("remote") == "0.0.0.0:*");
  CHECK(l.at("rx_queue") == 3);
  CHECK(l.at("tx_queue") == 128);
  CHECK(l.at("inode") == 1000);
  CHECK(l.at("cookie") == 1);
  CHECK(l.at("timer").is_null());
  REQUIRE(l.at("owners").size() == 2);
  CHECK(l.at("owners")[1] == nlohmann::json{{"pid", 101}, {"fd", 3}, {"comm", "nginx"}});

  bool saw_v6 = false;
  bool saw_udp = false;
  bool saw_unix = false;
  bool saw_estab = false;
  for (const auto& s : socks) {
    if (s.at("family") == "inet6") {
      saw_v6 = true;
      CHECK(s.at("local") == "[::1]:8080");
      CHECK(s.at("state") == "CLOSE-WAIT");
      CHECK(s.at("owners")[0].at("comm") == "evil\x1b[31m"); // JSON escapes it itself
    }
    if (s.at("proto") == "udp") {
      saw_udp = true;
      CHECK(s.at("tx_queue").is_null()); // NULL in the file
    }
    if (s.at("family") == "unix") {
      saw_unix = true;
      CHECK(s.at("proto") == "u_str");
      CHECK(s.at("local") == "/run/app.sock");
      CHECK(s.at("remote") == "*");
      CHECK(s.at("cookie").is_null());
    }
    if (s.at("state") == "ESTAB") {
      saw_estab = true;
      CHECK(s.at("uid") == 33);
      CHECK(s.at("timer") == nlohmann::json{{"name", "on"}, {"expires_ms", 1200}, {"retrans", 3}});
    }
  }
  CHECK(saw_v6);
  CHECK(saw_udp);
  CHECK(saw_unix);
  CHECK(saw_estab);

  o.state = "TIME-WAIT";
  const nlohmann::json tw = nlohmann::json::parse(show(o));
  REQUIRE(tw.at("sockets").size() == 1);
  CHECK(tw.at("sockets")[0].at("owners").empty());
  CHECK(tw.at("sockets")[0].at("inode") == 0);
  CHECK(tw.at("snapshot").at("sockets") == 6); // the snapshot's count, not the filtered one
}

TEST_CASE("show: directories, several files and several hosts", "[show]") {
  test::TempDir dir;
  const std::string edge = write_edge(dir.path());
  test::write_web1(dir.path()); // web1 from 10:00:00 to 10:03:30

  ShowOptions o;
  o.path = dir.path().string();
  CHECK_THROWS_WITH(show(o),
                    Catch::Contains("several hosts: edge, web1") && Catch::Contains("--host"));
  o.host = "nope";
  CHECK_THROWS_AS(show(o), analyze::UsageError);
  o.host = "web1";
  CHECK_THAT(show(o), Catch::Contains("host web1  time 2026-11-22T10:03:30.000Z  snapshot 6"));
  o.at = "2026-11-22T10:00:25Z";
  CHECK_THAT(show(o), Catch::Contains("time 2026-11-22T10:00:20.000Z  snapshot 3"));
  o.at.reset();
  o.snapshot = 1; // needs a single file
  CHECK_THROWS_WITH(show(o), Catch::Contains("--snapshot needs a single file"));

  // Two files of the same host: --at picks across them by time.
  test::TempDir two;
  synth::Host h;
  h.hostname = "web1";
  synth::Snap a;
  a.realtime_ns = (test::k_t0_s + 100) * test::k_ns; // between web1's 4th and 5th snapshot
  a.boottime_ns = 1 * test::k_ns;
  a.sockets.push_back({.state = 10, .lport = 9999, .rx = 0, .tx = 5, .inode = 5});
  test::write_web1(two.path());
  synth::write_series(two.path().string(), h, {a});
  ShowOptions p;
  p.path = two.path().string();
  p.at = "2026-11-22T10:01:50Z";
  std::string text = show(p);
  CHECK_THAT(text, Catch::Contains("time 2026-11-22T10:01:40.000Z  snapshot 1  sockets 1"));
  CHECK_THAT(text, Catch::Contains("127.0.0.1:9999"));
  p.at = "2026-11-22T10:00:15Z";
  CHECK_THAT(show(p), Catch::Contains("time 2026-11-22T10:00:10.000Z  snapshot 2"));
  p.at.reset();
  CHECK_THAT(show(p), Catch::Contains("time 2026-11-22T10:03:30.000Z  snapshot 6"));

  test::TempDir empty;
  p.path = empty.path().string();
  CHECK_THROWS_AS(show(p), analyze::LoadError); // no snapshot files: bad input, exit 3
}

TEST_CASE("show: an unreadable file is a LoadError naming it", "[show]") {
  test::TempDir dir;
  const std::string bad = (dir.path() / "bad.sqlite").string();
  std::ofstream(bad) << "not a database at all, just some text long enough to look like one";
  ShowOptions o;
  o.path = bad;
  CHECK_THROWS_AS(show(o), analyze::LoadError);
  CHECK_THROWS_WITH(show(o), Catch::StartsWith(bad + ": "));
  o.path = (dir.path() / "missing.sqlite").string();
  CHECK_THROWS_AS(show(o), analyze::LoadError);
}
