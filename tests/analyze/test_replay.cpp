// `replay`'s model (replay_model.hpp): filters, sorting, the snapshot diff of the header, and
// navigation, following and findings over real files. The terminal view itself is driven in
// tmux by tests/replay/test_replay_tmux.sh.
#include "analyze/series_fixture.hpp"
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/analyze/replay_model.hpp>
#include <sockrewind/analyze/series.hpp>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <tuple>

using namespace sockrewind;
using namespace sockrewind::analyze::replay;
using analyze::SnapshotView;
using analyze::SocketRow;

namespace {

SocketRow row(int64_t cookie,
              int64_t state,
              int64_t lport,
              std::optional<int64_t> rx,
              std::optional<int64_t> tx,
              std::vector<analyze::RowOwner> owners = {}) {
  SocketRow r;
  r.sock_id = cookie;
  r.family = analyze::k_af_inet;
  r.type = 1;
  r.proto = 6;
  r.proto_name = "tcp";
  r.state = state;
  r.local_port = lport;
  r.remote_port = 40000 + cookie;
  r.local = "10.0.0.1:" + std::to_string(lport);
  r.remote = "10.0.0.9:" + std::to_string(40000 + cookie);
  r.rx_queue = rx;
  r.tx_queue = tx;
  r.cookie = cookie;
  r.inode = 100 + cookie;
  r.owners = std::move(owners);
  return r;
}

// Five sockets in ss order (cookie = position + 1).
SnapshotView five() {
  SnapshotView v;
  v.rows.push_back(row(1, analyze::k_listen, 80, 3, 128, {{10, 3}}));
  v.rows.push_back(row(2, analyze::k_established, 80, 0, 500, {{10, 4}}));
  v.rows.push_back(row(3, analyze::k_close_wait, 443, 70, 0, {{20, 5}}));
  v.rows.push_back(row(4, analyze::k_established, 22, std::nullopt, 9, {{30, 6}, {10, 9}}));
  v.rows.push_back(row(5, analyze::k_time_wait, 8080, 0, 0));
  v.comm = {{10, "nginx"}, {20, "app"}, {30, "sshd"}};
  return v;
}

// Cookies of the rows visible_rows gives.
std::vector<int64_t> cookies(const SnapshotView& v, const std::vector<size_t>& idx) {
  std::vector<int64_t> out;
  out.reserve(idx.size());
  for (const size_t i : idx) {
    out.push_back(*v.rows[i].cookie);
  }
  return out;
}

// `n` snapshots a minute apart (CLOCK_REALTIME from test::k_t0_s, CLOCK_BOOTTIME from 1000 s).
std::vector<synth::Snap> minute_snaps(size_t n) {
  std::vector<synth::Snap> snaps(n);
  for (size_t i = 0; i < n; ++i) {
    snaps[i].realtime_ns = (test::k_t0_s + static_cast<int64_t>(i) * 60) * test::k_ns;
    snaps[i].boottime_ns = (1000 + static_cast<int64_t>(i) * 60) * test::k_ns;
  }
  return snaps;
}

// Every field of a row, and its position: rows compared in order.
auto row_fields(const SocketRow& r) {
  std::vector<std::pair<int64_t, std::optional<int64_t>>> owners;
  for (const analyze::RowOwner& o : r.owners) {
    owners.emplace_back(o.pid, o.fd);
  }
  return std::tuple(
      std::tuple(r.sock_id, r.netns, r.family, r.type, r.proto, r.state, r.proto_name, r.rank),
      std::tuple(r.local, r.remote, r.local_port, r.remote_port, r.rx_queue, r.tx_queue),
      std::tuple(r.inode, r.cookie, r.uid, r.timer, r.expires_ms, r.retrans, r.shutdown),
      std::tuple(r.rmem_alloc, r.rcvbuf, r.drops, r.path, r.peer_inode, owners));
}

} // namespace

TEST_CASE("replay: parse_filter reads port, pid, state and free text", "[replay]") {
  const Filter f = parse_filter("port:443  state:close-wait nginx pid:12 worker");
  CHECK(f.port == 443);
  CHECK(f.pid == 12);
  CHECK(f.state == analyze::k_close_wait);
  CHECK(f.text == "nginx worker");
  CHECK(f.describe() == "port:443 pid:12 state:CLOSE-WAIT nginx worker");
  CHECK(parse_filter("").empty());
  CHECK(parse_filter("   ").empty());
  CHECK_THROWS_AS(parse_filter("port:70000"), analyze::UsageError);
  CHECK_THROWS_AS(parse_filter("port:"), analyze::UsageError);
  CHECK_THROWS_AS(parse_filter("pid:x"), analyze::UsageError);
  CHECK_THROWS_AS(parse_filter("state:SLEEPY"), analyze::UsageError);
}

TEST_CASE("replay: filters keep only matching rows, in ss order", "[replay]") {
  const SnapshotView v = five();
  CHECK(cookies(v, visible_rows(v, {}, SortKey::ss)) == std::vector<int64_t>{1, 2, 3, 4, 5});
  CHECK(cookies(v, visible_rows(v, parse_filter("port:80"), SortKey::ss))
        == std::vector<int64_t>{1, 2});
  // A remote port matches as well.
  CHECK(cookies(v, visible_rows(v, parse_filter("port:40003"), SortKey::ss))
        == std::vector<int64_t>{3});
  // pid: any owner, not only the first.
  CHECK(cookies(v, visible_rows(v, parse_filter("pid:10"), SortKey::ss))
        == std::vector<int64_t>{1, 2, 4});
  CHECK(cookies(v, visible_rows(v, parse_filter("state:ESTAB"), SortKey::ss))
        == std::vector<int64_t>{2, 4});
  // Free text: case-insensitive, over Netid, State, addresses and owners' names.
  CHECK(cookies(v, visible_rows(v, parse_filter("SSHD"), SortKey::ss)) == std::vector<int64_t>{4});
  CHECK(cookies(v, visible_rows(v, parse_filter("time-wait"), SortKey::ss))
        == std::vector<int64_t>{5});
  CHECK(cookies(v, visible_rows(v, parse_filter("10.0.0.1:8080"), SortKey::ss))
        == std::vector<int64_t>{5});
  // Every part must match.
  CHECK(cookies(v, visible_rows(v, parse_filter("pid:10 state:LISTEN"), SortKey::ss))
        == std::vector<int64_t>{1});
  CHECK(visible_rows(v, parse_filter("port:80 app"), SortKey::ss).empty());
  // Unix sockets have no port.
  SnapshotView u;
  SocketRow unix_row = row(9, analyze::k_listen, 0, 0, 0);
  unix_row.family = analyze::k_af_unix;
  unix_row.local_port.reset();
  unix_row.remote_port.reset();
  u.rows.push_back(unix_row);
  CHECK(visible_rows(u, parse_filter("port:0"), SortKey::ss).empty());
}

TEST_CASE("replay: sorting by queues, state, owner and port", "[replay]") {
  const SnapshotView v = five();
  // Queues: largest first, a missing value last; ties keep ss order.
  CHECK(cookies(v, visible_rows(v, {}, SortKey::recv_q)) == std::vector<int64_t>{3, 1, 2, 5, 4});
  CHECK(cookies(v, visible_rows(v, {}, SortKey::send_q)) == std::vector<int64_t>{2, 1, 4, 3, 5});
  // State by name: CLOSE-WAIT, ESTAB, ESTAB, LISTEN, TIME-WAIT.
  CHECK(cookies(v, visible_rows(v, {}, SortKey::state)) == std::vector<int64_t>{3, 2, 4, 1, 5});
  // Owner by first owner's name, then pid; no owner last.
  CHECK(cookies(v, visible_rows(v, {}, SortKey::owner)) == std::vector<int64_t>{3, 1, 2, 4, 5});
  CHECK(cookies(v, visible_rows(v, {}, SortKey::port)) == std::vector<int64_t>{4, 1, 2, 3, 5});
  CHECK(cookies(v, visible_rows(v, {}, SortKey::port, true))
        == std::vector<int64_t>{5, 3, 2, 1, 4});
  // Sorting and filtering together.
  CHECK(cookies(v, visible_rows(v, parse_filter("pid:10"), SortKey::send_q))
        == std::vector<int64_t>{2, 1, 4});
  // The sort keys cycle through all six.
  SortKey k = SortKey::ss;
  std::vector<std::string> names;
  for (size_t i = 0; i < k_sort_keys; ++i) {
    names.emplace_back(sort_name(k));
    k = next_sort(k);
  }
  CHECK(k == SortKey::ss);
  CHECK(names == std::vector<std::string>{"ss", "Recv-Q", "Send-Q", "state", "owner", "port"});
}

TEST_CASE("replay: each sort key orders as a stable sort on the texts shown would", "[replay]") {
  // visible_rows sorts integer keys (a text's rank among the texts); the reference here is the
  // plain definition: a stable sort of the ss order by the shown value. Owners share comms
  // across pids, some pids have no comm ("?"), some names are not ASCII, some sockets have no
  // owner (last); queues and ports are missing in some rows.
  SnapshotView v;
  v.comm = {{1, "nginx"}, {2, "nginx"}, {3, "redis-server"}, {4, "\xc3\xa9t\xc3\xa9"}, {5, "a"}};
  const std::vector<int64_t> states{analyze::k_listen,
                                    analyze::k_established,
                                    analyze::k_close_wait,
                                    analyze::k_time_wait,
                                    2 /* SYN-SENT */,
                                    7 /* UNCONN */};
  uint64_t x = 12345;
  const auto next = [&x](uint64_t n) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    return (x >> 33) % n;
  };
  for (int64_t i = 0; i < 2000; ++i) {
    const auto q = [&]() -> std::optional<int64_t> {
      return next(5) == 0 ? std::nullopt
                          : std::optional<int64_t>(static_cast<int64_t>(next(4)) * 100);
    };
    std::vector<analyze::RowOwner> owners;
    if (next(4) != 0) {
      owners.push_back({static_cast<int64_t>(1 + next(7)), 3}); // pids 6 and 7: no comm
    }
    SocketRow r = row(
        i + 1, states[next(states.size())], 80 + static_cast<int64_t>(next(3)), q(), q(), owners);
    if (next(6) == 0) {
      r.local_port.reset();
    }
    v.rows.push_back(std::move(r));
  }
  const auto owner_text = [&v](const SocketRow& r) {
    if (r.owners.empty()) {
      return std::string();
    }
    const auto it = v.comm.find(r.owners.front().pid);
    return it == v.comm.end() ? std::string("?") : it->second;
  };
  const auto reference = [&](SortKey key, const Filter& f, bool reverse) {
    std::vector<size_t> idx;
    for (size_t i = 0; i < v.rows.size(); ++i) {
      if (f.empty() || matches(v.rows[i], v.comm, f)) {
        idx.push_back(i);
      }
    }
    const auto less = [&](size_t ia, size_t ib) {
      const SocketRow& a = v.rows[ia];
      const SocketRow& b = v.rows[ib];
      switch (key) {
      case SortKey::ss:
        return false;
      case SortKey::recv_q:
        return a.rx_queue.value_or(-1) > b.rx_queue.value_or(-1);
      case SortKey::send_q:
        return a.tx_queue.value_or(-1) > b.tx_queue.value_or(-1);
      case SortKey::state:
        return analyze::row_state_text(a) < analyze::row_state_text(b);
      case SortKey::owner:
        if (a.owners.empty() || b.owners.empty()) {
          return !a.owners.empty() && b.owners.empty();
        }
        return std::make_pair(owner_text(a), a.owners.front().pid)
               < std::make_pair(owner_text(b), b.owners.front().pid);
      case SortKey::port:
        return a.local_port.value_or(-1) < b.local_port.value_or(-1);
      }
      return false;
    };
    std::stable_sort(idx.begin(), idx.end(), less);
    if (reverse) {
      std::reverse(idx.begin(), idx.end());
    }
    return idx;
  };
  SortKey k = SortKey::ss;
  for (size_t n = 0; n < k_sort_keys; ++n, k = next_sort(k)) {
    for (const bool rev : {false, true}) {
      for (const char* f : {"", "state:ESTAB", "nginx"}) {
        INFO("sort " << sort_name(k) << (rev ? " reversed" : "") << ", filter '" << f << "'");
        const Filter filter = parse_filter(f);
        const std::vector<size_t> got = visible_rows(v, filter, k, rev);
        CHECK(got == reference(k, filter, rev));
        CHECK(got.size() > (filter.empty() ? 1999U : 100U));
      }
    }
  }
}

TEST_CASE("replay: the snapshot diff counts new and gone sockets and counter deltas", "[replay]") {
  const std::vector<uint64_t> prev{1, 2, 3, 7};
  const std::vector<uint64_t> cur{2, 3, 8, 9, 10};
  analyze::CounterValues pc{{{1, "TcpExt.ListenOverflows"}, 10},
                            {{1, "Tcp.RetransSegs"}, 100},
                            {{1, "Udp.InDatagrams"}, 5},
                            {{2, "TcpExt.ListenOverflows"}, 0}};
  analyze::CounterValues cc{{{1, "TcpExt.ListenOverflows"}, 15},
                            {{1, "Tcp.RetransSegs"}, 140},
                            {{1, "Udp.InDatagrams"}, 5},
                            {{2, "TcpExt.ListenOverflows"}, 2},
                            {{1, "Tcp.CurrEstab"}, 3}}; // new in cur: no delta
  const SnapshotDiff d = diff_snapshots(prev, cur, pc, cc);
  CHECK(d.added == 3);
  CHECK(d.gone == 2);
  REQUIRE(d.counters.size() == 3);
  CHECK(d.counters[0].name == "Tcp.RetransSegs");
  CHECK(d.counters[0].delta == 40);
  CHECK(d.counters[1].name == "TcpExt.ListenOverflows");
  CHECK(d.counters[1].netns == 1);
  CHECK(d.counters[1].delta == 5);
  CHECK(d.counters[2].delta == 2);
  CHECK(d.text(200) == "+3 new, -2 gone; Tcp.RetransSegs +40, TcpExt.ListenOverflows +5");
  // Counters that do not fit are left out, the line never exceeds the width.
  CHECK(d.text(40) == "+3 new, -2 gone; Tcp.RetransSegs +40");
  CHECK(d.text(10).size() == 10);
  // A counter that went down (a reset, or a gauge) shows its negative change.
  const SnapshotDiff down = diff_snapshots(cur, cur, cc, pc);
  CHECK(down.added == 0);
  CHECK(down.gone == 0);
  CHECK(down.text(200) == "+0 new, -0 gone; Tcp.RetransSegs -40, TcpExt.ListenOverflows -5");
  CHECK(diff_snapshots(cur, cur, cc, cc).text(80) == "+0 new, -0 gone; counters unchanged");
  SnapshotDiff reboot;
  reboot.reboot = true;
  CHECK(reboot.text(80) == "reboot: a new boot ID, sockets and counters not compared");
  SnapshotDiff first;
  first.first = true;
  CHECK(first.text(80) == "first snapshot");
}

TEST_CASE("replay: row identity is the cookie, else the socket's address and inode", "[replay]") {
  SocketRow a = row(42, analyze::k_established, 80, 0, 0);
  CHECK(row_identity(a) == 42);
  a.cookie.reset();
  const uint64_t h = row_identity(a);
  CHECK((h >> 63) == 1);
  SocketRow b = a;
  b.rx_queue = 99; // queues change, identity does not
  CHECK(row_identity(b) == h);
  b.inode = 999;
  CHECK(row_identity(b) != h);
}

TEST_CASE("replay: the model steps through a file, diffs and jumps in time", "[replay]") {
  using test::k_ns;
  using test::k_t0_s;
  test::TempDir dir;
  // Three snapshots: {1,2} -> {2,3,4} -> {4}; counters grow.
  std::vector<synth::Snap> snaps = minute_snaps(3);
  const std::vector<std::vector<uint64_t>> cookies_in{{1, 2}, {2, 3, 4}, {4}};
  for (size_t i = 0; i < snaps.size(); ++i) {
    for (const uint64_t c : cookies_in[i]) {
      snaps[i].sockets.push_back({.state = 1,
                                  .local = "10.0.0.1",
                                  .lport = 80,
                                  .remote = "10.0.0.2",
                                  .rport = static_cast<uint16_t>(5000 + c),
                                  .rx = static_cast<uint32_t>(c * 10),
                                  .tx = 0,
                                  .inode = static_cast<uint32_t>(100 + c),
                                  .cookie = c,
                                  .owners = {{100, static_cast<int>(c)}}});
    }
    snaps[i].procs.push_back({.pid = 100, .start_ticks = 5, .comm = "app"});
    snaps[i].counters["TcpExt.ListenOverflows"] = static_cast<int64_t>(i * i * 3);
  }
  synth::Host h;
  h.hostname = "box";
  const std::string file = synth::write_series(dir.path().string(), h, snaps);
  // The same snapshots again in a second file (a copy): shown once.
  const std::string copy = (dir.path() / "copy.sqlite").string();
  std::filesystem::copy_file(file, copy);

  Model m({file, copy}, std::nullopt);
  REQUIRE(m.size() == 3);
  CHECK(m.host() == "box");
  CHECK(m.pos() == 0);
  CHECK(m.view().rows.size() == 2);
  CHECK(m.diff().first);
  m.go(1);
  CHECK(m.view().rows.size() == 3);
  CHECK(m.diff().added == 2);
  CHECK(m.diff().gone == 1);
  CHECK(m.diff().text(200) == "+2 new, -1 gone; TcpExt.ListenOverflows +3");
  m.go(2);
  CHECK(m.diff().added == 0);
  CHECK(m.diff().gone == 2);
  CHECK(m.diff().text(200) == "+0 new, -2 gone; TcpExt.ListenOverflows +9");
  // A jump reads the snapshot before it for the diff: the same figures as stepping.
  m.go(0);
  m.go(2);
  CHECK(m.diff().gone == 2);
  m.wait_read_ahead();
  m.go(1); // backwards
  CHECK(m.diff().added == 2);
  CHECK(m.diff().gone == 1);
  // Past the end: the last (the snapshot left by the step back is reused: same diff).
  m.go(99);
  CHECK(m.pos() == 2);
  CHECK(m.view().rows.size() == 1);
  CHECK(m.diff().gone == 2);
  // Back twice, reading ahead backwards, then forward again.
  m.go(1);
  m.go(0);
  CHECK(m.diff().first);
  CHECK(m.view().rows.size() == 2);
  m.go(1);
  CHECK(m.diff().added == 2);
  CHECK(m.view().rows.size() == 3);
  m.go(2);
  // Times: the last snapshot at or before, the first when before all.
  CHECK(m.find_time(k_t0_s * k_ns) == 0);
  CHECK(m.find_time((k_t0_s + 61) * k_ns) == 1);
  CHECK(m.find_time((k_t0_s + 3600) * k_ns) == 2);
  CHECK(m.find_time(0) == 0);

  // Following socket 4 (seen in snapshots 2 and 3), from snapshot 3.
  const std::vector<size_t> idx = visible_rows(m.view(), {}, SortKey::ss);
  REQUIRE(idx.size() == 1);
  const Follow f = m.follow(m.view().rows[idx[0]]);
  CHECK(f.error.empty());
  CHECK_THAT(f.title, Catch::Contains("cookie 4"));
  REQUIRE(f.points.size() == 2);
  CHECK(f.points[0].pos == 1);
  CHECK(f.points[1].pos == 2);
  CHECK(f.points[0].state == "ESTAB");
  CHECK(f.points[0].recv_q == "40");
  CHECK_THAT(f.points[0].owner, Catch::Contains("app"));

  // Several hosts: --host is needed.
  synth::Host other;
  other.hostname = "other";
  std::filesystem::create_directories(dir.path() / "b");
  const std::string second = synth::write_series((dir.path() / "b").string(), other, {snaps[0]});
  CHECK_THROWS_AS(Model({file, second}, std::nullopt), analyze::UsageError);
  CHECK(Model({file, second}, std::string("other")).size() == 1);
}

TEST_CASE("replay: a bad file is a LoadError, as in every command", "[replay]") {
  test::TempDir dir;
  const std::string bad = (dir.path() / "bad.sqlite").string();
  std::ofstream(bad) << "not a database";
  CHECK_THROWS_AS(Model({bad}, std::nullopt), analyze::LoadError);
}

TEST_CASE("replay: findings of a sample, where they fire and their subject's filter", "[replay]") {
  const std::string file =
      (std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "samples" / "accept-queue-backlog.sqlite")
          .string();
  Model m({file}, std::nullopt);
  CHECK_FALSE(m.findings_loaded()); // loaded on demand only
  const auto& fs = m.findings();
  CHECK(m.findings_loaded());
  const analyze::Finding* backlog = nullptr;
  for (const analyze::Finding& f : fs) {
    if (f.detector == "accept_queue_backlog") {
      backlog = &f;
    }
  }
  REQUIRE(backlog != nullptr);
  const size_t pos = m.finding_pos(*backlog);
  CHECK(m.index()[pos].realtime_ns <= backlog->first_seen_ns);
  CHECK((pos + 1 == m.size() || m.index()[pos + 1].realtime_ns > backlog->first_seen_ns));
  const Filter f = subject_filter(*backlog);
  CHECK(f.port == 7102);
  m.go(pos);
  const auto shown = visible_rows(m.view(), f, SortKey::ss);
  REQUIRE_FALSE(shown.empty());
  bool listener = false;
  for (const size_t i : shown) {
    listener = listener || m.view().rows[i].state == analyze::k_listen;
  }
  CHECK(listener);
}

TEST_CASE("replay: stepping over a reboot says so instead of comparing", "[replay]") {
  using test::k_ns;
  using test::k_t0_s;
  test::TempDir dir;
  synth::Snap a;
  a.realtime_ns = k_t0_s * k_ns;
  a.boottime_ns = 5000 * k_ns;
  a.sockets.push_back({.state = 10, .lport = 80, .inode = 1, .cookie = 7, .owners = {{1, 3}}});
  a.procs.push_back({.pid = 1, .start_ticks = 1, .comm = "init"});
  synth::Snap b = a;
  b.realtime_ns = (k_t0_s + 600) * k_ns;
  b.boottime_ns = 30 * k_ns; // after the reboot
  synth::Host h1;
  h1.hostname = "box";
  synth::Host h2 = h1;
  h2.boot_id = "00000000-0000-0000-0000-000000000002";
  std::filesystem::create_directories(dir.path() / "1");
  std::filesystem::create_directories(dir.path() / "2");
  const std::string f1 = synth::write_series((dir.path() / "1").string(), h1, {a});
  const std::string f2 = synth::write_series((dir.path() / "2").string(), h2, {b});
  Model m({f2, f1}, std::nullopt); // file order does not matter: time order
  REQUIRE(m.size() == 2);
  CHECK(m.index()[0].boot_id == h1.boot_id);
  m.go(1);
  CHECK(m.diff().reboot);
  CHECK(m.diff().added == 0);
  CHECK(m.diff().text(80) == "reboot: a new boot ID, sockets and counters not compared");
}

TEST_CASE("replay: any walk through the series shows what a fresh read shows", "[replay]") {
  test::TempDir dir;
  // 8 snapshots; socket c lives in snapshots [c % 5, c % 5 + c % 4] (some in one snapshot).
  std::vector<synth::Snap> snaps = minute_snaps(8);
  for (size_t i = 0; i < snaps.size(); ++i) {
    for (uint64_t c = 1; c <= 30; ++c) {
      if (i >= c % 5 && i <= c % 5 + c % 4) {
        snaps[i].sockets.push_back({.state = 1,
                                    .lport = 80,
                                    .rport = static_cast<uint16_t>(6000 + c),
                                    .rx = static_cast<uint32_t>(i),
                                    .tx = 0,
                                    .inode = 1000 + c,
                                    .cookie = c,
                                    .owners = {{100, static_cast<int>(c)}}});
      }
    }
    snaps[i].procs.push_back({.pid = 100, .start_ticks = 5, .comm = "app"});
    snaps[i].counters["Tcp.OutSegs"] = static_cast<int64_t>(i * 7);
  }
  const std::string file = synth::write_series(dir.path().string(), synth::Host{}, snaps);
  Model m({file}, std::nullopt);
  REQUIRE(m.size() == 8);
  // The expected identities and diff of each position, from independent reads.
  const auto ids_at = [&](size_t pos) {
    std::vector<uint64_t> ids;
    for (const SocketRow& r : analyze::read_snapshot(m.index()[pos]).rows) {
      ids.push_back(row_identity(r));
    }
    std::sort(ids.begin(), ids.end());
    return ids;
  };
  std::vector<std::vector<uint64_t>> ids;
  for (size_t p = 0; p < m.size(); ++p) {
    ids.push_back(ids_at(p));
  }
  uint32_t seed = 12345;
  const auto next_rand = [&seed]() {
    seed = seed * 1103515245U + 12345U;
    return (seed >> 16) % 1000;
  };
  for (int step = 0; step < 300; ++step) {
    const uint32_t r = next_rand();
    size_t to = m.pos();
    if (r < 400) {
      to = m.pos() + 1 < m.size() ? m.pos() + 1 : 0;
    } else if (r < 800) {
      to = m.pos() > 0 ? m.pos() - 1 : m.size() - 1;
    } else {
      to = next_rand() % m.size();
    }
    if (next_rand() < 300) {
      m.wait_read_ahead();
    }
    m.go(to);
    REQUIRE(m.pos() == to);
    std::vector<uint64_t> got;
    for (const SocketRow& row : m.view().rows) {
      got.push_back(row_identity(row));
    }
    std::sort(got.begin(), got.end());
    REQUIRE(got == ids[to]);
    if (to == 0) {
      CHECK(m.diff().first);
    } else {
      const SnapshotDiff want = diff_snapshots(ids[to - 1], ids[to], {}, {});
      REQUIRE(m.diff().added == want.added);
      REQUIRE(m.diff().gone == want.gone);
      REQUIRE(m.diff().counters.size() == 1);
      CHECK(m.diff().counters[0].delta == 7);
    }
  }
}

namespace {

// Every 3rd socket IPv6, every 7th unix (stream or dgram, some with a peer), every 4th (from
// the 1st) with a keepalive timer expiring in `expires_ms`.
void vary_socket(synth::Sock& s, uint64_t c, uint32_t expires_ms) {
  if (c % 3 == 0) {
    s.family = 10;
    s.local = c % 2 == 0 ? "::1" : "2001:db8::" + std::to_string(c);
    s.remote = "2001:db8::ff";
  }
  if (c % 7 == 0) {
    s.family = 1;
    s.type = c % 2 == 0 ? 1 : 2;
    s.proto = 0;
    s.path = "/run/app-" + std::to_string(c) + ".sock";
    s.peer_inode = c % 2 == 0 ? 2000 + c : 0;
  }
  if (c % 4 == 1) {
    s.timer = 2;
    s.expires_ms = expires_ms;
    s.retrans = 0;
  }
}

} // namespace

TEST_CASE("replay: schema-3 rows read from the run tables equal the sockets view's", "[replay]") {
  test::TempDir dir;
  // IPv4, IPv6 and unix sockets, running timers, several owners; sockets that live over
  // several snapshots unchanged (pack joins them into runs, whose timers count down).
  std::vector<synth::Snap> snaps = minute_snaps(6);
  for (size_t i = 0; i < snaps.size(); ++i) {
    for (uint64_t c = 1; c <= 24; ++c) {
      if (i < c % 3 || i > c % 3 + c % 4) {
        continue;
      }
      synth::Sock s{.state = c % 2 == 0 ? uint8_t{1} : uint8_t{10},
                    .lport = static_cast<uint16_t>(c % 5 == 0 ? 0 : 80 + c % 3),
                    .rport = static_cast<uint16_t>(c % 2 == 0 ? 6000 + c : 0),
                    .rx = static_cast<uint32_t>(c % 4 == 0 ? i : 0),
                    .inode = 1000 + c,
                    .cookie = c,
                    .owners = {{100, static_cast<int>(c)}}};
      vary_socket(s, c, static_cast<uint32_t>(400000 - 60000 * i)); // counts down as time passes
      if (c % 6 == 2) {
        s.owners.emplace_back(101, static_cast<int>(c + 50));
      }
      snaps[i].sockets.push_back(std::move(s));
    }
    snaps[i].procs.push_back({.pid = 100, .start_ticks = 5, .comm = "app"});
    snaps[i].procs.push_back({.pid = 101, .start_ticks = 6, .comm = "worker"});
  }
  const std::string file = synth::write_series(dir.path().string(), synth::Host{}, snaps);
  analyze::PackOptions opts;
  opts.paths = {file};
  opts.out = (dir.path() / "pack.sqlite").string();
  analyze::write_pack(opts);
  // The pack again with an address id far beyond a snapshot's needs: the reader then looks
  // addresses up one by one instead of reading the whole table.
  const std::string sparse = (dir.path() / "sparse.sqlite").string();
  std::filesystem::copy_file(opts.out, sparse);
  {
    store::Db rw = store::Db::from_handle([&] {
      sqlite3* raw = nullptr;
      REQUIRE(sqlite3_open(sparse.c_str(), &raw) == SQLITE_OK);
      return raw;
    }());
    rw.exec("INSERT INTO addrs (addr_id, family, addr, text) "
            "VALUES (100000000, 2, x'CB007109', '203.0.113.9')");
  }
  // Every row of each file, to compare the two ways of finding addresses (the pack's whole
  // table, the sparse file's one by one).
  std::map<std::string, std::vector<decltype(row_fields(SocketRow{}))>> all;
  for (const std::string& f : {file, opts.out, sparse}) {
    INFO(f);
    store::Db db = analyze::open_validated(f);
    if (f != file) {
      // The test means something only with runs over several snapshots, timers among them.
      CHECK(db.query_int("SELECT count(*) FROM sock_runs WHERE last_snapshot_id > "
                         "first_snapshot_id AND timer = 2")
            > 0);
    }
    analyze::SnapshotReader runs(db);
    analyze::SnapshotReader view(db);
    view.use_view(true);
    size_t rows = 0;
    size_t extra = 0;
    size_t counted_down = 0;
    for (const analyze::SnapshotInfo& info : analyze::load_snapshot_index(db, f)) {
      const SnapshotView a = runs.read(info);
      const SnapshotView b = view.read(info);
      REQUIRE(a.rows.size() == b.rows.size());
      for (size_t i = 0; i < a.rows.size(); ++i) {
        REQUIRE(row_fields(a.rows[i]) == row_fields(b.rows[i]));
        all[f].push_back(row_fields(a.rows[i]));
        extra += a.rows[i].owners.size() > 1 ? 1U : 0U;
        counted_down += a.rows[i].expires_ms && *a.rows[i].expires_ms < 400000 ? 1U : 0U;
      }
      CHECK(a.comm == b.comm);
      rows += a.rows.size();
      // A reused rows and runs memory gives the same rows.
      analyze::SnapshotView used(b);
      const SnapshotView c =
          runs.read(info, analyze::ViewMemory{std::move(used.rows), std::move(used.runs)});
      REQUIRE(c.rows.size() == a.rows.size());
      for (size_t i = 0; i < a.rows.size(); ++i) {
        REQUIRE(row_fields(c.rows[i]) == row_fields(a.rows[i]));
      }
    }
    CHECK(rows > 50);
    CHECK(extra > 0);
    if (f != file) {
      CHECK(counted_down > 0);
    }
  }
  CHECK(all[sparse] == all[opts.out]);
}

namespace {

std::vector<decltype(row_fields(SocketRow{}))> all_fields(const SnapshotView& v) {
  std::vector<decltype(row_fields(SocketRow{}))> out;
  for (const SocketRow& r : v.rows) {
    out.push_back(row_fields(r));
  }
  return out;
}

// sock_ids of the rows visible_rows gives.
std::vector<int64_t> ids_shown(const SnapshotView& v, const Filter& f, SortKey k, bool rev) {
  std::vector<int64_t> out;
  for (const size_t i : visible_rows(v, f, k, rev)) {
    out.push_back(v.rows[i].sock_id);
  }
  return out;
}

} // namespace

TEST_CASE("replay: a step that takes rows over from the snapshot before reads what a full "
          "read reads, in the same order",
          "[replay]") {
  test::TempDir dir;
  // 70 minute snapshots (past the 64-snapshot run block), 40 sockets of all kinds: most live
  // on unchanged for a while (runs that go on), queues change now and then (runs that end),
  // sockets come and go, timers run down, owners change (extra owners per snapshot).
  std::vector<synth::Snap> snaps = minute_snaps(70);
  for (size_t i = 0; i < snaps.size(); ++i) {
    for (uint64_t c = 1; c <= 40; ++c) {
      const size_t born = c % 9;
      const size_t life = 5 + c * 3;
      if (i < born || i > born + life) {
        continue;
      }
      synth::Sock s{.state = c % 2 == 0 ? uint8_t{1} : uint8_t{10},
                    .lport = static_cast<uint16_t>(c % 5 == 0 ? 0 : 80 + c % 4),
                    .rport = static_cast<uint16_t>(c % 2 == 0 ? 6000 + c : 0),
                    .rx = static_cast<uint32_t>(c % 4 == 0 ? i / 7 : 0),
                    .tx = static_cast<uint32_t>(c % 3 == 0 ? (i / 11) * 10 : 0),
                    .inode = 1000 + c,
                    .cookie = c,
                    .owners = {{100, static_cast<int>(c)}}};
      vary_socket(s, c, static_cast<uint32_t>(7200000 - 60000 * i)); // counts down: pack joins
      if (c % 6 == 2 && (i / 5) % 2 == 0) {
        s.owners.emplace_back(101, static_cast<int>(c + 50));
      }
      snaps[i].sockets.push_back(std::move(s));
    }
    snaps[i].procs.push_back({.pid = 100, .start_ticks = 5, .comm = "app"});
    snaps[i].procs.push_back({.pid = 101, .start_ticks = 6, .comm = "worker"});
    snaps[i].counters["Tcp.OutSegs"] = static_cast<int64_t>(i * 7);
  }
  const std::string file = synth::write_series(dir.path().string(), synth::Host{}, snaps);
  analyze::PackOptions opts;
  opts.paths = {file};
  opts.out = (dir.path() / "pack.sqlite").string();
  analyze::write_pack(opts);
  for (const std::string& f : {file, opts.out}) {
    INFO(f);
    store::Db db = analyze::open_validated(f);
    REQUIRE(db.query_int("PRAGMA user_version") >= 3);
    // The test means something only with runs over several snapshots (the pack's: the
    // synthetic file has a run per snapshot), timers among them.
    const bool pack = f == opts.out;
    CHECK((!pack
           || db.query_int("SELECT count(*) FROM sock_runs WHERE last_snapshot_id > "
                           "first_snapshot_id AND timer = 2")
                  > 0));
    const std::vector<analyze::SnapshotInfo> index = analyze::load_snapshot_index(db, f);
    REQUIRE(index.size() == snaps.size());
    analyze::SnapshotReader full(db);
    analyze::SnapshotReader step(db);
    SnapshotView prev = step.read(index[0]);
    SnapshotView older;
    size_t carried = 0;
    size_t counted_down = 0;
    for (size_t k = 1; k < index.size(); ++k) {
      INFO("snapshot " << k);
      // The rows and runs memory of the snapshot before the base is reused (as the model
      // does).
      SnapshotView next = step.read_next(
          index[k], prev, analyze::ViewMemory{std::move(older.rows), std::move(older.runs)});
      const SnapshotView want = full.read(index[k]);
      REQUIRE(next.rows.size() == want.rows.size());
      REQUIRE(all_fields(next) == all_fields(want));
      CHECK(next.comm == want.comm);
      for (const Filter& flt : {Filter{}, parse_filter("app"), parse_filter("port:81")}) {
        for (size_t key = 0; key < k_sort_keys; ++key) {
          for (const bool rev : {false, true}) {
            REQUIRE(ids_shown(next, flt, static_cast<SortKey>(key), rev)
                    == ids_shown(want, flt, static_cast<SortKey>(key), rev));
          }
        }
      }
      REQUIRE((next.runs.size() == next.rows.size() || next.runs_end));
      for (size_t i = 0; i < next.runs.size(); ++i) {
        carried += next.runs[i].first_snapshot_id < index[k].snapshot_id ? 1U : 0U;
      }
      for (size_t i = 0; i < next.rows.size(); ++i) {
        counted_down += next.rows[i].expires_ms && *next.rows[i].expires_ms < 7200000 ? 1U : 0U;
      }
      older = std::move(prev);
      prev = std::move(next);
    }
    CHECK((!pack || carried > 100));
    CHECK((!pack || counted_down > 0));
    // The model walking forward step by step (back to back and after the read-ahead), and
    // back: the rows and the header's diff a fresh read of each snapshot gives.
    Model m({f}, std::nullopt);
    REQUIRE(m.size() == index.size());
    for (size_t k = 1; k < m.size(); ++k) {
      if (k % 3 == 0) {
        m.wait_read_ahead();
      }
      m.go(k);
      const SnapshotView want = analyze::read_snapshot(m.index()[k]);
      REQUIRE(all_fields(m.view()) == all_fields(want));
      std::vector<uint64_t> a;
      std::vector<uint64_t> b;
      for (const SocketRow& r : analyze::read_snapshot(m.index()[k - 1]).rows) {
        a.push_back(row_identity(r));
      }
      for (const SocketRow& r : want.rows) {
        b.push_back(row_identity(r));
      }
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      const SnapshotDiff d = diff_snapshots(a, b, {}, {});
      REQUIRE(m.diff().added == d.added);
      REQUIRE(m.diff().gone == d.gone);
      REQUIRE(m.diff().counters.size() == 1);
      CHECK(m.diff().counters[0].delta == 7);
    }
    m.go(m.size() - 3);
    CHECK(all_fields(m.view()) == all_fields(analyze::read_snapshot(m.index()[m.size() - 3])));
  }
}
