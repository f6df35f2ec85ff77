#include "analyze/series_fixture.hpp"
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/series.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <tuple>

using namespace sockrewind;
using analyze::Format;
using analyze::TimelineOptions;

namespace {

std::string timeline(const TimelineOptions& o) {
  std::ostringstream out;
  analyze::write_timeline(o, out);
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

// Lines that start with a snapshot number ("3  2026-...").
std::vector<std::string> rows(const std::string& text) {
  std::vector<std::string> v;
  for (const std::string& l : lines(text)) {
    if (!l.empty() && l[0] >= '1' && l[0] <= '9') {
      v.push_back(l);
    }
  }
  return v;
}

} // namespace

TEST_CASE("timeline --socket: one line per snapshot, gaps and disappearance marked", "[timeline]") {
  test::TempDir dir;
  TimelineOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.socket = "2";
  const std::string text = timeline(o);
  INFO(text);
  const auto ls = lines(text);
  CHECK_THAT(ls.at(0),
             Catch::StartsWith("socket tcp 10.0.0.1:80 -> 10.0.0.2:5555  cookie 2  "
                               "host web1  netns "));
  CHECK_THAT(ls.at(1),
             Catch::StartsWith("seen in 6 snapshots, #1 2026-11-22T10:00:00.000Z to #6 "
                               "2026-11-22T10:03:30.000Z"));
  const auto r = rows(text);
  REQUIRE(r.size() == 6);
  CHECK_THAT(r[0],
             Catch::Matches("1  2026-11-22T10:00:00.000Z  ESTAB +0 +0 +1001 +nginx/100 +"
                            "off +0 .*"));
  CHECK_THAT(r[3],
             Catch::Matches("4  2026-11-22T10:00:30.000Z  CLOSE-WAIT +1 +0 +1001 +"
                            "nginx/100 .*"));
  CHECK_THAT(r[4], Catch::Contains("worker/300"));
  CHECK_THAT(r[5], Catch::Matches("6  .* +worker/300 +on +2 .*"));
  // The gap between the 4th and 5th snapshot is marked between their rows.
  const auto gap = std::find(ls.begin(), ls.end(), "-- gap: 170.0 s without snapshots --");
  REQUIRE(gap != ls.end());
  CHECK_THAT(*(gap - 1), Catch::StartsWith("4  "));
  CHECK_THAT(*(gap + 1), Catch::StartsWith("5  "));

  // A socket that appears late and one that goes away.
  o.socket = "0x3";
  std::string t3 = timeline(o);
  CHECK_THAT(t3, Catch::Contains("-- not seen in the 4 snapshots before --"));
  CHECK(rows(t3).size() == 2);
  o.socket = "4";
  const std::string t4 = timeline(o);
  CHECK_THAT(t4, Catch::Contains("TIME-WAIT"));
  CHECK_THAT(t4, Catch::Contains("-- not seen in the 4 snapshots after (closed) --"));
  CHECK(rows(t4).size() == 2);

  o.socket = "12345";
  CHECK_THROWS_WITH(timeline(o), Catch::Contains("no socket with cookie 12345"));
  o.socket = "abc";
  CHECK_THROWS_AS(timeline(o), analyze::UsageError);
}

TEST_CASE("timeline --socket --format json", "[timeline]") {
  test::TempDir dir;
  TimelineOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.socket = "2";
  o.format = Format::json;
  const nlohmann::json j = nlohmann::json::parse(timeline(o));
  INFO(j.dump(2));
  REQUIRE(j.size() == 2);
  const auto& subj = j.at("subject");
  CHECK(subj.at("kind") == "socket");
  CHECK(subj.at("host") == "web1");
  CHECK(subj.at("cookie") == 2);
  CHECK(subj.at("local") == "10.0.0.1:80");
  CHECK(subj.at("remote") == "10.0.0.2:5555");
  CHECK(subj.at("first_seen") == "2026-11-22T10:00:00.000Z");
  CHECK(subj.at("last_seen") == "2026-11-22T10:03:30.000Z");
  const auto& s = j.at("series");
  REQUIRE(s.size() == 6);
  CHECK(s[0].at("t") == "2026-11-22T10:00:00.000Z");
  CHECK(s[0].at("snapshot") == 1);
  CHECK(s[0].at("state") == "ESTAB");
  CHECK(s[3].at("state") == "CLOSE-WAIT");
  CHECK(s[3].at("rx_queue") == 1);
  CHECK(s[0].at("owner").at("pid") == 100);
  CHECK(s[0].at("owner").at("comm") == "nginx");
  CHECK(s[5].at("owner").at("pid") == 300);
  CHECK(s[5].at("timer") == "on");
  CHECK(s[5].at("retrans") == 2);
  for (size_t i = 0; i < s.size(); ++i) {
    CHECK(s[i].at("gap_before") == (i == 4));
  }
}

TEST_CASE("timeline --port: listeners and sockets by state per snapshot", "[timeline]") {
  test::TempDir dir;
  TimelineOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.port = 80;
  const std::string text = timeline(o);
  INFO(text);
  const auto r = rows(text);
  REQUIRE(r.size() == 6);
  // Listener: accept queue / max backlog, and its owner.
  CHECK_THAT(r[0], Catch::Contains("tcp 0.0.0.0:80 0/128 nginx/100"));
  CHECK_THAT(r[5], Catch::Contains("tcp 0.0.0.0:80 5/128 nginx/100"));
  // Remote port 80 (cookie 7) counts as well as local port 80.
  CHECK_THAT(r[0], Catch::EndsWith("tcp ESTAB 2, tcp TIME-WAIT 1"));
  CHECK_THAT(r[2], Catch::EndsWith("tcp ESTAB 2"));
  CHECK_THAT(r[3], Catch::EndsWith("tcp CLOSE-WAIT 1, tcp ESTAB 1"));
  CHECK_THAT(r[4], Catch::EndsWith("tcp CLOSE-WAIT 1, tcp ESTAB 2"));
  CHECK_THAT(text, Catch::Contains("-- gap: 170.0 s without snapshots --"));

  o.port = 53;
  const auto r53 = rows(timeline(o));
  REQUIRE(r53.size() == 6);
  CHECK_THAT(r53[0], Catch::Matches(".*  -  +udp UNCONN 1"));
  CHECK_THAT(r53[3], Catch::Matches("4  2026-11-22T10:00:30.000Z  - +-"));

  o.port = 80;
  o.format = Format::json;
  const nlohmann::json j = nlohmann::json::parse(timeline(o));
  CHECK(j.at("subject") == nlohmann::json{{"kind", "port"}, {"host", "web1"}, {"port", 80}});
  const auto& s = j.at("series");
  REQUIRE(s.size() == 6);
  REQUIRE(s[2].at("listeners").size() == 1);
  CHECK(s[2].at("listeners")[0].at("accept_queue") == 2);
  CHECK(s[2].at("listeners")[0].at("max_backlog") == 128);
  CHECK(s[2].at("listeners")[0].at("owner").at("comm") == "nginx");
  CHECK(s[0].at("states") == nlohmann::json{{"tcp", {{"ESTAB", 2}, {"TIME-WAIT", 1}}}});
  CHECK(s[0].at("sockets") == 3);
  CHECK(s[4].at("gap_before") == true);
  CHECK(s[3].at("gap_before") == false);
}

TEST_CASE("timeline --pid: sockets by state, fds vs nofile, pid reuse", "[timeline]") {
  test::TempDir dir;
  TimelineOptions o;
  o.paths = {test::write_web1(dir.path())};
  o.pid = 200;
  const std::string text = timeline(o);
  INFO(text);
  CHECK_THAT(text, Catch::Contains("2 processes with this pid"));
  const auto ls = lines(text);
  // Two identities of pid 200, each introduced by a header line.
  const auto first = std::find_if(ls.begin(), ls.end(), [](const std::string& l) {
    return l.rfind("== pid 200 start_ticks 7 comm dns", 0) == 0;
  });
  const auto second = std::find_if(ls.begin(), ls.end(), [](const std::string& l) {
    return l.rfind("== pid 200 start_ticks 99 comm mdns", 0) == 0;
  });
  REQUIRE(first != ls.end());
  REQUIRE(second != ls.end());
  CHECK(first < second);
  CHECK_THAT(*(second - 1), Catch::StartsWith("3  "));
  CHECK_THAT(*(second + 1), Catch::StartsWith("4  "));
  const auto r = rows(text);
  REQUIRE(r.size() == 6);
  CHECK_THAT(r[0], Catch::Matches("1  2026-11-22T10:00:00.000Z  1 +udp UNCONN 1 +1 +10/4096"));
  CHECK_THAT(r[5], Catch::EndsWith("15/4096"));

  o.pid = 100;
  const auto r100 = rows(timeline(o));
  REQUIRE(r100.size() == 6);
  // Listener, conn (until it passes to worker/300), outgoing; plus cookie 3 from #5.
  CHECK_THAT(r100[0],
             Catch::Matches("1  2026-11-22T10:00:00.000Z  3 +tcp ESTAB 2, tcp LISTEN 1 .*"));
  CHECK_THAT(r100[3], Catch::Contains("tcp CLOSE-WAIT 1, tcp ESTAB 1, tcp LISTEN 1"));
  CHECK_THAT(r100[4], Catch::Contains("tcp ESTAB 2, tcp LISTEN 1"));
  CHECK_THAT(r100[4], Catch::EndsWith("50/1024"));

  o.pid = 300; // only in the last two snapshots (after the gap)
  const std::string t300 = timeline(o);
  CHECK(rows(t300).size() == 2);
  CHECK_THAT(t300, Catch::Contains("tcp CLOSE-WAIT 1"));
  CHECK_THAT(t300, Catch::Contains("9/-")); // nofile not captured

  o.pid = 200;
  o.format = Format::json;
  const nlohmann::json j = nlohmann::json::parse(timeline(o));
  CHECK(j.at("subject").at("kind") == "pid");
  REQUIRE(j.at("subject").at("processes").size() == 2);
  const auto& s = j.at("series");
  REQUIRE(s.size() == 6);
  CHECK(s[0].at("process").at("start_ticks") == 7);
  CHECK(s[3].at("process").at("start_ticks") == 99);
  CHECK(s[3].at("process").at("comm") == "mdns");
  CHECK(s[0].at("states") == nlohmann::json{{"udp", {{"UNCONN", 1}}}});
  CHECK(s[0].at("fd_count") == 10);
  CHECK(s[0].at("nofile_soft") == 4096);
  CHECK(s[4].at("gap_before") == true);

  o.pid = 4242;
  CHECK_THROWS_WITH(timeline(o), Catch::Contains("no process with pid 4242"));
}

TEST_CASE("timeline: a reboot and a second host", "[timeline]") {
  test::TempDir dir;
  test::write_web1(dir.path());
  // The same host after a reboot, later: a new boot id, the listener back with a new cookie.
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
                       .cookie = 1,
                       .owners = {{100, 3}}});
  s.procs.push_back({.pid = 100, .start_ticks = 1, .comm = "nginx"});
  synth::write_series(dir.path().string(), h, {s});

  TimelineOptions o;
  o.paths = analyze::expand_paths({dir.path().string()});
  o.port = 80;
  std::string text = timeline(o);
  INFO(text);
  auto r = rows(text);
  REQUIRE(r.size() == 7);
  CHECK_THAT(r[6], Catch::StartsWith("7  2026-11-22T11:00:00.000Z"));
  CHECK_THAT(r[6], Catch::Contains("0/511"));
  CHECK_THAT(text, Catch::Contains("-- reboot: boot boot-web1-b"));

  // Cookie 1 exists in both boots: the most recent one is shown.
  o.port.reset();
  o.socket = "1";
  text = timeline(o);
  CHECK(rows(text).size() == 1);
  CHECK_THAT(rows(text).at(0),
             Catch::Matches("7  2026-11-22T11:00:00.000Z  LISTEN +0 +511 +77 .*"));

  // A second host: --host is required for --port / --pid.
  synth::Host other;
  other.hostname = "db1";
  synth::write_series(dir.path().string(), other, {s});
  o.paths = analyze::expand_paths({dir.path().string()});
  o.socket.reset();
  o.port = 80;
  CHECK_THROWS_WITH(timeline(o), Catch::Contains("several hosts: db1, web1"));
  o.host = "db1";
  r = rows(timeline(o));
  REQUIRE(r.size() == 1);
  // --socket with a cookie found on two hosts also needs --host.
  o.host.reset();
  o.port.reset();
  o.socket = "1";
  CHECK_THROWS_WITH(timeline(o), Catch::Contains("several hosts"));
  o.socket = "7"; // only on web1
  CHECK(rows(timeline(o)).size() == 6);
}

namespace {

// One socket-sample as a comparable row: snapshot, identity, what the analysis reads, first
// owner's pid.
using SampleRow = std::tuple<uint32_t,
                             uint64_t,
                             uint16_t,
                             uint16_t,
                             std::string,
                             uint32_t,
                             uint32_t,
                             uint8_t,
                             int32_t>;

SampleRow sample_row(const analyze::Series& s,
                     const analyze::Timeline& tl,
                     const analyze::Track& t,
                     const analyze::Sample& x) {
  return {x.snap,
          t.cookie,
          t.local_port,
          t.remote_port,
          std::string(s.strings.get(t.path)),
          x.rx_queue,
          x.tx_queue,
          x.state,
          x.owner == analyze::k_na ? -1 : tl.procs.at(x.owner).pid};
}

} // namespace

TEST_CASE("timeline, diff: a socket or snapshot filter decodes only those samples, sample for "
          "sample",
          "[timeline]") {
  test::TempDir dir;
  const std::vector<std::string> files = {test::write_web1(dir.path())};
  const analyze::Series all = analyze::load_series(files);
  REQUIRE(all.timelines.size() == 1);
  const analyze::Timeline& a = all.timelines.at(0);
  REQUIRE(a.snaps.size() >= 3);
  // A pid that is some socket's first owner.
  int32_t pid = -1;
  for (const analyze::Track& t : a.tracks) {
    for (const analyze::Sample& x : t.samples) {
      if (pid < 0 && x.owner != analyze::k_na) {
        pid = a.procs.at(x.owner).pid;
      }
    }
  }
  REQUIRE(pid > 0);
  analyze::SocketFilter by_port;
  by_port.port = 80;
  analyze::SocketFilter by_cookie;
  by_cookie.cookie = 2;
  analyze::SocketFilter by_pid;
  by_pid.pid = pid;
  analyze::SocketFilter by_snapshots;
  by_snapshots.snapshots = {{a.host, a.boot_id, a.snaps[0].boottime_ns},
                            {a.host, a.boot_id, a.snaps[2].boottime_ns}};
  for (const analyze::SocketFilter& f : {by_port, by_cookie, by_pid, by_snapshots}) {
    const auto wanted = [&](const analyze::Track& t, const analyze::Sample& x) {
      if (f.port) {
        return t.local_port == *f.port || t.remote_port == *f.port;
      }
      if (f.cookie) {
        return t.cookie == *f.cookie;
      }
      if (f.pid) {
        return x.owner != analyze::k_na && a.procs.at(x.owner).pid == *f.pid;
      }
      return x.snap == 0 || x.snap == 2;
    };
    const analyze::Series some = analyze::load_series(files, f);
    analyze::check_series(some);
    REQUIRE(some.filtered);
    REQUIRE(some.timelines.size() == 1);
    const analyze::Timeline& b = some.timelines.at(0);
    // Every snapshot's header and counters, whatever the filter.
    CHECK(b.snaps.size() == a.snaps.size());
    CHECK(b.netns.size() == a.netns.size());
    // The samples kept are exactly the full load's samples the filter selects; the rest were
    // never decoded.
    std::multiset<SampleRow> expected;
    std::multiset<SampleRow> got;
    for (const analyze::Track& t : a.tracks) {
      for (const analyze::Sample& x : t.samples) {
        if (wanted(t, x)) {
          expected.insert(sample_row(all, a, t, x));
        }
      }
    }
    for (const analyze::Track& t : b.tracks) {
      for (const analyze::Sample& x : t.samples) {
        got.insert(sample_row(some, b, t, x));
      }
    }
    CHECK(!expected.empty());
    CHECK(expected.size() < a.snaps.size() * a.tracks.size());
    CHECK(got == expected);
  }
}

namespace {

// Everything of a series but counters and limits, as text: snapshots, tracks with every sample
// field, processes with their samples, owner sets. Netns and strings by value (their indices
// depend on what was placed first, counters included).
std::string without_values(const analyze::Series& s) {
  std::ostringstream o;
  const auto str = [&s](uint32_t id) { return "'" + std::string(s.strings.get(id)) + "'"; };
  o << "filtered " << s.filtered << " duplicates " << s.duplicate_snapshots << "\n";
  for (const analyze::Timeline& tl : s.timelines) {
    o << "timeline " << tl.host << " " << tl.boot_id << " " << tl.kernel << " "
      << tl.median_interval_s << "\n";
    for (const analyze::Snap& x : tl.snaps) {
      o << " snap " << x.file << " " << x.snapshot_id << " " << x.realtime_ns << " "
        << x.boottime_ns << " " << x.run << " " << x.sockets << "\n";
    }
    for (const analyze::Track& t : tl.tracks) {
      o << " track " << tl.netns.at(t.netns).inode << " " << +t.family << " " << +t.type << " "
        << t.proto << " " << str(t.local_addr) << ":" << t.local_port << " " << str(t.remote_addr)
        << ":" << t.remote_port << " " << t.cookie << " " << str(t.path) << " " << t.peer_inode
        << "\n";
      for (const analyze::Sample& x : t.samples) {
        o << "  " << x.snap << " " << x.inode << " " << x.owner << " " << x.owner_set << " "
          << x.rx_queue << " " << x.tx_queue << " " << x.rmem_alloc << " " << x.rcvbuf << " "
          << x.wmem_queued << " " << x.sndbuf << " " << x.drops << " " << x.total_retrans << " "
          << x.segs_out << " " << x.last_data_recv_ms << " " << x.last_ack_recv_ms << " "
          << x.snd_wnd << " " << x.bytes_acked << " " << x.bytes_received << " " << +x.state << " "
          << +x.timer << " " << +x.retrans << " " << +x.probes << " " << +x.backoff << "\n";
      }
    }
    for (const analyze::Process& p : tl.procs) {
      o << " proc " << p.pid << " " << p.start_ticks << " " << str(p.comm) << " " << str(p.cmdline)
        << " " << p.uid << "\n";
      for (const analyze::ProcSample& x : p.samples) {
        o << "  " << x.snap << " " << x.socket_fds << " " << x.fd_count << " " << x.nofile_soft
          << " " << +x.state << "\n";
      }
    }
    for (const std::vector<uint32_t>& set : tl.owner_sets) {
      o << " owners";
      for (const uint32_t p : set) {
        o << " " << p;
      }
      o << "\n";
    }
  }
  return o.str();
}

size_t value_count(const analyze::Series& s) {
  size_t n = 0;
  for (const analyze::Timeline& tl : s.timelines) {
    for (const analyze::Netns& ns : tl.netns) {
      n += ns.counters.size() + ns.limits.size();
    }
  }
  return n;
}

} // namespace

TEST_CASE("timeline: a load without counters and limits (what timeline loads) holds everything "
          "else the load with them holds, on every sample capture",
          "[timeline][samples]") {
  const std::filesystem::path dir = std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "samples";
  size_t captures = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".sqlite") {
      continue;
    }
    ++captures;
    const std::vector<std::string> files = {e.path().string()};
    const analyze::Series all = analyze::load_series(files);
    REQUIRE(!all.timelines.empty());
    REQUIRE(value_count(all) > 0);
    // The filters timeline uses: no socket filter, each port a listener has, the first
    // cookie, the first owner's pid.
    std::vector<analyze::SocketFilter> filters(1);
    const analyze::Timeline& a = all.timelines.at(0);
    std::set<uint16_t> ports;
    for (const analyze::Track& t : a.tracks) {
      for (const analyze::Sample& x : t.samples) {
        if (x.state == analyze::k_listen && t.local_port != 0) {
          ports.insert(t.local_port);
        }
        if (x.owner != analyze::k_na && filters.size() == 1) {
          filters.emplace_back().pid = a.procs.at(x.owner).pid;
        }
      }
      if (t.cookie != 0 && filters.size() == 2) {
        filters.emplace_back().cookie = t.cookie;
      }
    }
    for (const uint16_t p : ports) {
      filters.emplace_back().port = p;
    }
    for (const analyze::SocketFilter& with : filters) {
      INFO(e.path().filename().string()
           << " port " << with.port.value_or(0) << " cookie " << with.cookie.value_or(0) << " pid "
           << with.pid.value_or(0));
      analyze::SocketFilter without = with;
      without.counters_and_limits = false;
      const analyze::Series s1 = analyze::load_series(files, with);
      const analyze::Series s2 = analyze::load_series(files, without);
      analyze::check_series(s2);
      CHECK(value_count(s1) > 0);
      CHECK(value_count(s2) == 0);
      CHECK(without_values(s2) == without_values(s1));
    }
    // And what timeline prints from it: the rows of the port's snapshots are those of the
    // full load's listeners.
    TimelineOptions o;
    o.paths = files;
    o.format = Format::json;
    for (const uint16_t p : ports) {
      o.port = p;
      const nlohmann::json j = nlohmann::json::parse(timeline(o));
      size_t listeners = 0;
      for (const nlohmann::json& row : j.at("series")) {
        listeners += row.at("listeners").size();
      }
      size_t expected = 0;
      for (const analyze::Timeline& tl : all.timelines) {
        for (const analyze::Track& t : tl.tracks) {
          for (const analyze::Sample& x : t.samples) {
            expected +=
                t.family != analyze::k_af_unix && x.state == analyze::k_listen && t.local_port == p;
          }
        }
      }
      CHECK(listeners == expected);
    }
  }
  CHECK(captures >= 5);
}
