// Detectors in their streaming form (TrackPass) see a timeline one track at a time, in any
// order, and keep no reference to a track once track() returns (detector.hpp): run on the
// captures in samples/ and synthetic series (orphans; sockets closing part-way) with the tracks
// reversed and shuffled, each one a copy that is overwritten and destroyed right after track(),
// they give exactly the findings of a run in track order.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/analyze/toolkit.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace sa = sockrewind::analyze;

namespace {

sa::Params defaults(const sa::Detector& d) {
  std::map<std::string, double> v;
  for (const sa::Threshold& t : d.thresholds) {
    v[t.key] = t.value;
  }
  return sa::Params(std::move(v));
}

std::string dump(const std::vector<sa::Finding>& fs) {
  sa::Json out = sa::Json::array();
  for (const sa::Finding& f : fs) {
    sa::Json j;
    j["detector"] = f.detector;
    j["severity"] = sa::severity_name(f.severity);
    j["summary"] = f.summary;
    j["subject"] = f.subject;
    j["first_seen_ns"] = f.first_seen_ns;
    j["last_seen_ns"] = f.last_seen_ns;
    j["pid"] = f.pid;
    j["evidence"] = f.evidence;
    out.push_back(std::move(j));
  }
  return out.dump(1);
}

// The detector's findings in track order (as report runs it).
std::string in_order(const sa::Detector& d, const sa::Series& s) {
  const sa::Params p = defaults(d);
  sa::Sink sink;
  for (const sa::Timeline& tl : s.timelines) {
    const sa::Context ctx(s, tl, p);
    sa::run_detector(d, ctx, sink);
  }
  return dump(sink.take());
}

// The same with the tracks in `order_seed`'s order (0: reversed), each a copy that is
// overwritten with other values and destroyed as soon as track() returns.
std::string streamed(const sa::Detector& d, const sa::Series& s, unsigned order_seed) {
  const sa::Params p = defaults(d);
  sa::Sink sink;
  for (const sa::Timeline& tl : s.timelines) {
    const sa::Context ctx(s, tl, p);
    const std::unique_ptr<sa::TrackPass> pass = d.pass(ctx);
    std::vector<size_t> order(tl.tracks.size());
    std::iota(order.begin(), order.end(), 0);
    if (order_seed == 0) {
      std::reverse(order.begin(), order.end());
    } else {
      std::mt19937 rng(order_seed);
      std::shuffle(order.begin(), order.end(), rng);
    }
    for (const size_t i : order) {
      sa::Track copy = tl.tracks[i];
      pass->track(ctx, copy, sink);
      copy.cookie = ~copy.cookie;
      copy.local_port ^= 0x5a5aU;
      for (sa::Sample& x : copy.samples) {
        x.rx_queue = 0x5a5a5a5a;
        x.state = 0x5a;
        x.snap = 0;
      }
    }
    pass->finish(ctx, sink);
  }
  return dump(sink.take());
}

// An orphan (closed, no fd) in FIN-WAIT-1 with unsent data toward 127.0.0.1:8080.
sockrewind::synth::Sock stuck_orphan(uint16_t lport, uint64_t cookie) {
  return {.state = 4,
          .lport = lport,
          .rport = 8080,
          .tx = 200000,
          .inode = 0,
          .cookie = cookie,
          .timer = 1,
          .retrans = 0};
}

// A socket pid 200 shut down for writing and keeps (FIN-WAIT-2 with an fd).
sockrewind::synth::Sock owned_fin_wait2() {
  return {
      .state = 5, .lport = 42000, .rport = 9090, .inode = 9000, .cookie = 90, .owners = {{200, 4}}};
}

// Ten minutes of orphans near tcp_max_orphans, three of them stuck in FIN-WAIT-1 with data
// (the same age: their order is a tie), and an owned FIN-WAIT-2.
sa::Series orphans(const sockrewind::test::TempDir& dir) {
  using namespace sockrewind;
  using namespace sockrewind::test;
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = snap_at(i);
    s.counters["TCP.orphan"] = 400 + 10 * i;
    s.limits["net.ipv4.tcp_max_orphans"] = "1000";
    for (uint16_t k = 0; k < 3; ++k) {
      s.sockets.push_back(stuck_orphan(static_cast<uint16_t>(41000 + k), 70U + k));
    }
    s.sockets.push_back(owned_fin_wait2());
    snaps.push_back(std::move(s));
  }
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  return sa::load_series(sa::expand_paths({dir.path().string()}));
}

// Twelve minutes in three files of four: sockets that close part-way (in the second file) and
// are what each TrackPass detector looks for: a stuck orphan, a CLOSE-WAIT leak, a growing
// Recv-Q, a dropping UDP socket, a retransmission storm led by SYN retries (two connects
// stuck in SYN-SENT toward a listener that stays, two senders to one peer; each pair retransmits
// alike, a tie), connections using 7 of the 10 ephemeral ports toward 10.0.0.9:5432 and a
// connect stuck in SYN-SENT toward 10.0.0.8:443, a unix datagram sender stuck behind a
// receiver that closes first, beside an owned FIN-WAIT-2 that stays. Two
// client-side sockets of the first file (one more toward each destination) have a local port
// that a listener uses in the third: they are server-side by that listener, and counted by
// neither, though they are gone before it comes.
void closing(const sockrewind::test::TempDir& dir) {
  using namespace sockrewind;
  using namespace sockrewind::test;
  std::vector<synth::Snap> file;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = snap_at(i);
    s.counters["TCP.orphan"] = 100;
    s.limits["net.ipv4.tcp_max_orphans"] = "1000";
    s.counters["Tcp.OutSegs"] = 100'000 + 10'000 * i;
    s.counters["Tcp.RetransSegs"] = 500 + 1200 * i;
    s.counters["TcpExt.TCPTimeouts"] = 300 + 1000 * i;
    s.counters["TcpExt.TCPSynRetrans"] = 200 + 1000 * i;
    s.counters["TcpExt.TCPFastRetrans"] = 100 + 200 * i;
    s.sockets.push_back(listener(7301, 0, 128, 100));
    s.limits["net.ipv4.ip_local_port_range"] = "40000 40009";
    const auto u = static_cast<uint32_t>(i);
    if (i < 3) {
      s.sockets.push_back({.lport = 40007,
                           .remote = "10.0.0.9",
                           .rport = 5432,
                           .inode = 7301,
                           .cookie = 91,
                           .owners = {{200, 31}}});
      s.sockets.push_back({.state = 2,
                           .lport = 41501,
                           .remote = "10.0.0.8",
                           .rport = 443,
                           .inode = 7302,
                           .cookie = 92,
                           .retrans = u,
                           .owners = {{200, 32}}});
    }
    if (i >= 8) {
      for (const uint16_t port : {uint16_t{40007}, uint16_t{41501}}) {
        s.sockets.push_back({.state = 10,
                             .local = "0.0.0.0",
                             .lport = port,
                             .remote = "0.0.0.0",
                             .rx = 0,
                             .tx = 128,
                             .inode = port == 40007 ? 7320U : 7321U,
                             .cookie = port == 40007 ? 93U : 94U,
                             .owners = {{100, port == 40007 ? 35 : 36}}});
      }
    }
    if (i < 7) {
      for (uint16_t k = 0; k < 2; ++k) {
        s.sockets.push_back({.state = 2,
                             .lport = static_cast<uint16_t>(51000 + k),
                             .rport = 7301,
                             .tx = 1,
                             .inode = 7400U + k,
                             .cookie = 121U + k,
                             .timer = 1,
                             .tcp_info = {{"total_retrans", u}, {"segs_out", u + 1}},
                             .owners = {{200, 50 + k}}});
        s.sockets.push_back({.lport = static_cast<uint16_t>(52000 + k),
                             .remote = "10.1.2.3",
                             .rport = 443,
                             .rx = 0,
                             .tx = 100'000,
                             .inode = 7410U + k,
                             .cookie = 123U + k,
                             .timer = 1,
                             .tcp_info = {{"total_retrans", 50 * u}, {"segs_out", 1000 * u}},
                             .owners = {{200, 60 + k}}});
      }
      for (uint16_t k = 0; k < 6; ++k) {
        s.sockets.push_back({.state = 6,
                             .lport = static_cast<uint16_t>(40000 + k),
                             .remote = "10.0.0.9",
                             .rport = 5432,
                             .inode = 0,
                             .cookie = 95U + k});
      }
      s.sockets.push_back({.lport = 40006,
                           .remote = "10.0.0.9",
                           .rport = 5432,
                           .inode = 7303,
                           .cookie = 101,
                           .owners = {{200, 33}}});
      s.sockets.push_back({.state = 2,
                           .lport = 41500,
                           .remote = "10.0.0.8",
                           .rport = 443,
                           .inode = 7304,
                           .cookie = 102,
                           .retrans = u,
                           .owners = {{200, 34}}});
      s.sockets.push_back(stuck_orphan(41000, 70));
      for (uint16_t k = 0; k < 2; ++k) {
        s.sockets.push_back({.state = 8,
                             .lport = 7203,
                             .rport = static_cast<uint16_t>(40000 + k),
                             .rx = 1,
                             .tx = 0,
                             .inode = 7000U + k,
                             .cookie = 80U + k,
                             .owners = {{100, 10 + k}}});
      }
      s.sockets.push_back({.state = 1,
                           .lport = 7101,
                           .rport = 45000,
                           .rx = 10000 * (u + 1) * (u + 1),
                           .tx = 0,
                           .inode = 7100,
                           .cookie = 85,
                           .owners = {{100, 20}}});
      s.sockets.push_back({.proto = 17,
                           .state = 7,
                           .lport = 7201,
                           .remote = "0.0.0.0",
                           .rx = 200000,
                           .inode = 7200,
                           .cookie = 86,
                           .rmem_alloc = 200000,
                           .rcvbuf = 212992,
                           .drops = 100 * u * u,
                           .owners = {{100, 21}}});
    }
    if (i < 7) { // a unix datagram sender stuck behind /dev/log, which goes first
      synth::Sock sender{.family = 1,
                         .type = 2,
                         .proto = 0,
                         .state = 1,
                         .rx = 0,
                         .tx = 14080,
                         .inode = 7500,
                         .cookie = 130,
                         .owners = {{200, 70}}};
      sender.peer_inode = 7501;
      s.sockets.push_back(std::move(sender));
    }
    if (i < 5) {
      synth::Sock receiver{.family = 1,
                           .type = 2,
                           .proto = 0,
                           .state = 7,
                           .rx = 200 + u,
                           .tx = 0,
                           .inode = 7501,
                           .cookie = 131,
                           .owners = {{100, 71}}};
      receiver.path = "/dev/log";
      s.sockets.push_back(std::move(receiver));
    }
    s.sockets.push_back(owned_fin_wait2());
    file.push_back(std::move(s));
    if (file.size() == 4) {
      synth::write_series(dir.path().string(), synth::Host{}, file);
      file.clear();
    }
  }
}

// The captures in samples/, the orphan series (written in `a`) and the closing series (in `b`).
std::vector<sa::Series> every_series(const sockrewind::test::TempDir& a,
                                     const sockrewind::test::TempDir& b) {
  const std::filesystem::path dir = std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "samples";
  std::vector<sa::Series> all;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() == ".sqlite") {
      all.push_back(sa::load_series({e.path().string()}));
    }
  }
  REQUIRE(all.size() >= 7);
  all.push_back(orphans(a));
  closing(b);
  all.push_back(sa::load_series(sa::expand_paths({b.path().string()})));
  return all;
}

// Runs one TrackPass detector on the tracks load_series reports closed, as it reports them.
class Streamer final : public sa::TrackObserver {
public:
  explicit Streamer(const sa::Detector& d) : m_d(d), m_params(defaults(d)) {}

  void closed(sa::Series& s, uint32_t tl, const std::vector<uint32_t>& tracks) override {
    const sa::Context ctx(s, s.timelines[tl], m_params);
    if (m_passes.size() <= tl) {
      m_passes.resize(tl + 1);
    }
    if (!m_passes[tl]) {
      m_passes[tl] = m_d.pass(ctx);
    }
    for (const uint32_t i : tracks) {
      m_passes[tl]->track(ctx, s.timelines[tl].tracks[i], m_sink);
    }
    ++m_reports;
  }

  std::string finish(const sa::Series& s) {
    for (uint32_t tl = 0; tl < s.timelines.size(); ++tl) {
      const sa::Context ctx(s, s.timelines[tl], m_params);
      REQUIRE(tl < m_passes.size());
      m_passes[tl]->finish(ctx, m_sink);
    }
    return dump(m_sink.take());
  }

  size_t reports() const { return m_reports; }

private:
  const sa::Detector& m_d;
  sa::Params m_params;
  sa::Sink m_sink;
  std::vector<std::unique_ptr<sa::TrackPass>> m_passes;
  size_t m_reports = 0;
};

} // namespace

TEST_CASE("track passes: run as load_series reports sockets gone, the same findings as after "
          "the load",
          "[toolkit]") {
  const sockrewind::test::TempDir dir;
  closing(dir);
  const std::vector<std::string> files = sa::expand_paths({dir.path().string()});
  REQUIRE(files.size() == 3);
  const sa::Series whole = sa::load_series(files);
  size_t passes = 0;
  for (const sa::Detector& d : sa::detectors()) {
    if (d.pass == nullptr) {
      continue;
    }
    ++passes;
    INFO(d.id);
    Streamer st(d);
    const sa::Series s = sa::load_series(files, {}, &st);
    const std::string expected = in_order(d, whole);
    CHECK(sa::Json::parse(expected).size() > 0);
    CHECK(st.finish(s) == expected);
    // The sockets that closed in the second file were reported after it, before the end.
    CHECK(st.reports() >= 2);
  }
  CHECK(passes >= 4);
}

TEST_CASE("track passes: the findings of samples/ whatever order the tracks come in, each gone "
          "after track()",
          "[toolkit]") {
  const sockrewind::test::TempDir tmp;
  const sockrewind::test::TempDir tmp2;
  const std::vector<sa::Series> all = every_series(tmp, tmp2);
  size_t passes = 0;
  for (const sa::Detector& d : sa::detectors()) {
    if (d.pass == nullptr) {
      continue;
    }
    ++passes;
    size_t found = 0; // the comparison is not vacuous: each pass finds something somewhere
    for (const sa::Series& s : all) {
      const std::string expected = in_order(d, s);
      found += sa::Json::parse(expected).size();
      INFO(d.id << " on " << s.files.front());
      CHECK(streamed(d, s, 0) == expected);
      CHECK(streamed(d, s, 7) == expected);
    }
    INFO(d.id);
    CHECK(found > 0);
  }
  CHECK(passes >= 3);
}

namespace {

// `s` with only the tracks `d` keeps (its samples cleared, then taken out, as report does).
sa::Series kept_by(const sa::Detector& d, const sa::Series& s) {
  sa::Series out = s;
  const sa::Params p = defaults(d);
  for (sa::Timeline& tl : out.timelines) {
    const sa::Context ctx(s, s.timelines[static_cast<size_t>(&tl - out.timelines.data())], p);
    for (sa::Track& t : tl.tracks) {
      if (!d.keep(ctx, t)) {
        t.samples.clear();
      }
    }
  }
  sa::drop_empty_tracks(out);
  return out;
}

} // namespace

TEST_CASE("checks that keep some tracks: the same findings on those tracks alone", "[toolkit]") {
  const sockrewind::test::TempDir tmp;
  const sockrewind::test::TempDir tmp2;
  const std::vector<sa::Series> all = every_series(tmp, tmp2);
  // (Each detector's own tests hold it to the same in their scenarios: det_support.hpp.)
  size_t checks = 0;
  size_t found = 0; // the comparisons are not all of empty lists
  for (const sa::Detector& d : sa::detectors()) {
    if (d.keep == nullptr) {
      continue;
    }
    ++checks;
    size_t dropped = 0; // some tracks are not kept
    for (const sa::Series& s : all) {
      const std::string expected = in_order(d, s);
      found += sa::Json::parse(expected).size();
      const sa::Series k = kept_by(d, s);
      for (size_t i = 0; i < s.timelines.size(); ++i) {
        dropped += s.timelines[i].tracks.size() - k.timelines[i].tracks.size();
      }
      INFO(d.id << " on " << s.files.front());
      CHECK(in_order(d, k) == expected);
    }
    INFO(d.id);
    CHECK(dropped > 0);
  }
  CHECK(checks >= 6);
  CHECK(found >= 5);
}

namespace {

// Keeps the listeners' samples and lets go of every other reported track's, noting each one it
// let go of (its identity, first snapshot time and sample count) as it goes.
class Forgetter final : public sa::TrackObserver {
public:
  void closed(sa::Series& s, uint32_t tl, const std::vector<uint32_t>& tracks) override {
    for (const uint32_t i : tracks) {
      sa::Track& t = s.timelines[tl].tracks[i];
      if (listens(t)) {
        continue;
      }
      gone.push_back(describe(s, s.timelines[tl], t));
      t.samples.clear();
      ++emptied;
    }
  }

  static bool listens(const sa::Track& t) {
    return std::any_of(t.samples.begin(), t.samples.end(), [](const sa::Sample& x) {
      return x.state == sa::k_listen;
    });
  }

  static std::string describe(const sa::Series& s, const sa::Timeline& tl, const sa::Track& t) {
    return std::to_string(t.cookie) + " " + std::string(s.strings.get(t.remote_addr)) + ":"
           + std::to_string(t.remote_port) + " from " + std::to_string(t.local_port) + " at "
           + std::to_string(tl.snaps[t.samples.front().snap].realtime_ns) + " x"
           + std::to_string(t.samples.size()) + " inode " + std::to_string(t.samples.front().inode);
  }

  std::vector<std::string> gone;
  size_t emptied = 0;
};

// Twelve minutes in three files: a listener throughout, and connections without cookies (as
// read from /proc) that reuse one 4-tuple with a new inode every two minutes, besides
// connections with cookies that live one to five minutes.
void churn(const sockrewind::test::TempDir& dir) {
  using namespace sockrewind;
  using namespace sockrewind::test;
  std::vector<synth::Snap> file;
  for (int i = 0; i < 12; ++i) {
    synth::Snap s = snap_at(i);
    s.sockets.push_back(listener(8080, 0, 128));
    const auto u = static_cast<uint64_t>(i);
    s.sockets.push_back({.lport = 8080,
                         .rport = 50000,
                         .inode = 7000 + u / 2,
                         .owners = {{100, static_cast<int32_t>(30 + u / 2)}}});
    for (uint64_t c = 0; c < 4; ++c) {
      const uint64_t born = c * 3;
      if (u >= born && u < born + 1 + c * 2) {
        s.sockets.push_back({.lport = static_cast<uint16_t>(41000 + c),
                             .rport = 9000,
                             .inode = 6000 + c,
                             .cookie = 600 + c,
                             .owners = {{200, static_cast<int32_t>(40 + c)}}});
      }
    }
    file.push_back(std::move(s));
    if (file.size() == 4) {
      synth::write_series(dir.path().string(), synth::Host{}, file);
      file.clear();
    }
  }
}

} // namespace

TEST_CASE("track observer: tracks let go during the load leave it, the others unchanged",
          "[toolkit]") {
  const sockrewind::test::TempDir dir;
  churn(dir);
  const std::vector<std::string> files = sa::expand_paths({dir.path().string()});
  REQUIRE(files.size() == 3);
  const sa::Series whole = sa::load_series(files);
  Forgetter f;
  sa::Series s = sa::load_series(files, {}, &f);
  // Some were let go before the last file, so the loader had to forget them part-way.
  CHECK(f.emptied > 0);
  sa::drop_empty_tracks(s);
  sa::check_series(s);
  // What was let go is exactly the whole load's non-listeners, each once and complete.
  std::vector<std::string> want_gone;
  std::vector<std::string> want_kept;
  for (const sa::Track& t : whole.timelines.at(0).tracks) {
    (Forgetter::listens(t) ? want_kept : want_gone)
        .push_back(Forgetter::describe(whole, whole.timelines[0], t));
  }
  std::vector<std::string> got_kept;
  for (const sa::Track& t : s.timelines.at(0).tracks) {
    got_kept.push_back(Forgetter::describe(s, s.timelines[0], t));
  }
  std::sort(want_gone.begin(), want_gone.end());
  std::sort(f.gone.begin(), f.gone.end());
  CHECK(want_gone.size() >= 10);
  CHECK(f.gone == want_gone);
  CHECK(got_kept == want_kept);
  // The kept listener has all its samples.
  REQUIRE(s.timelines[0].tracks.size() == 1);
  CHECK(s.timelines[0].tracks[0].samples.size() == 12);
}

TEST_CASE("report: a capture whose sockets close before its end, only listeners left open",
          "[toolkit]") {
  using namespace sockrewind;
  using namespace sockrewind::test;
  // A client connection in the first snapshots only, the listener in all: the load lets go of
  // the connection part-way and keeps only listeners to the end (nothing left to drop then).
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = snap_at(i);
    s.sockets.push_back(listener(8080, 0, 128));
    if (i < 2) {
      s.sockets.push_back(
          {.lport = 41000, .rport = 9000, .inode = 7000, .cookie = 70, .owners = {{200, 4}}});
    }
    snaps.push_back(std::move(s));
  }
  for (const char* id : {"accept_queue_backlog", "port_exhaustion"}) {
    INFO(id);
    CHECK(run_detector(snaps, id).empty()); // and the same findings streamed and whole
  }
}

namespace {

// Every track of `s` as text (identity, first snapshot time, samples, last snapshot index),
// sorted: what a whole and a streamed load must agree on.
std::vector<std::string> track_texts(const sa::Series& s) {
  std::vector<std::string> out;
  for (const sa::Timeline& tl : s.timelines) {
    for (const sa::Track& t : tl.tracks) {
      out.push_back(Forgetter::describe(s, tl, t) + " last "
                    + std::to_string(tl.snaps[t.samples.back().snap].boottime_ns));
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Notes the tracks reported to it and keeps them all, so its load holds every track.
class Noter final : public sa::TrackObserver {
public:
  void closed(sa::Series& /*s*/, uint32_t /*tl*/, const std::vector<uint32_t>& tracks) override {
    reported += tracks.size();
  }

  size_t reported = 0;
};

// Twelve snapshots in three files of four. A listener throughout; a connection (cookie 70)
// absent only from the first file's last snapshot (its dump rolled back); one (cookie 71)
// absent from two snapshots across the first two files (gone, and its cookie seen again); a
// connection without a cookie (as from /proc) absent only from the second file's last
// snapshot. `step_back`: the wall clock of the second and third files is set back an hour.
std::vector<std::vector<sockrewind::synth::Snap>> absences(bool step_back) {
  using namespace sockrewind::test;
  std::vector<std::vector<sockrewind::synth::Snap>> files(3);
  for (int i = 0; i < 12; ++i) {
    sockrewind::synth::Snap s = snap_at(i);
    if (step_back && i >= 4) {
      s.realtime_ns -= 60 * k_minute;
    }
    s.sockets.push_back(listener(8080, 0, 128));
    if (i != 3) {
      s.sockets.push_back(
          {.lport = 41000, .rport = 9000, .inode = 7000, .cookie = 70, .owners = {{200, 4}}});
    }
    if (i != 3 && i != 4) {
      s.sockets.push_back(
          {.lport = 41001, .rport = 9000, .inode = 7001, .cookie = 71, .owners = {{200, 5}}});
    }
    if (i != 7) {
      s.sockets.push_back({.lport = 8080, .rport = 50000, .inode = 7002, .owners = {{100, 6}}});
    }
    files[static_cast<size_t>(i / 4)].push_back(std::move(s));
  }
  return files;
}

} // namespace

TEST_CASE("track observer: a socket absent from one snapshot goes on, from two is a new track, "
          "streamed or whole, across files, in a pack across a wall-clock step back and in "
          "files that interleave in time",
          "[toolkit]") {
  using namespace sockrewind;
  for (const int shape : {0, 1, 2}) {
    const bool packed = shape == 1;
    INFO((shape == 0   ? "three files"
          : shape == 1 ? "the first two files packed, clock set back"
                       : "the first and last files as one, placed before the middle one"));
    const test::TempDir dir;
    const test::TempDir parts;
    const auto snaps = absences(packed);
    std::vector<std::string> files;
    if (shape == 2) {
      // Snapshots 0-3 and 8-11 in one file, 4-7 in another: the first is placed first.
      std::vector<synth::Snap> outer = snaps[0];
      outer.insert(outer.end(), snaps[2].begin(), snaps[2].end());
      files.push_back(synth::write_series(dir.path().string(), synth::Host{}, outer));
      files.push_back(synth::write_series(dir.path().string(), synth::Host{}, snaps[1]));
    } else if (packed) {
      // The pack orders its snapshots by wall clock: the second file's come first in it.
      sa::PackOptions p;
      p.paths = {synth::write_series(parts.path().string(), synth::Host{}, snaps[0]),
                 synth::write_series(parts.path().string(), synth::Host{}, snaps[1])};
      p.out = (dir.path() / "pack.sqlite").string();
      files.push_back(sa::write_pack(p).path);
    } else {
      files.push_back(synth::write_series(dir.path().string(), synth::Host{}, snaps[0]));
      files.push_back(synth::write_series(dir.path().string(), synth::Host{}, snaps[1]));
    }
    if (shape != 2) {
      files.push_back(synth::write_series(dir.path().string(), synth::Host{}, snaps[2]));
    }

    const sa::Series whole = sa::load_series(files);
    Noter noter;
    const sa::Series streamed = sa::load_series(files, {}, &noter);
    sa::check_series(streamed);
    const std::vector<std::string> got = track_texts(whole);
    CHECK(track_texts(streamed) == got);
    CHECK(noter.reported == got.size());
    // The listener, 70 and the cookie-less one are one track each; 71 is two.
    REQUIRE(whole.timelines.size() == 1);
    std::map<uint64_t, std::vector<size_t>> by_cookie; // cookie -> sample counts
    for (const sa::Track& t : whole.timelines[0].tracks) {
      by_cookie[t.cookie].push_back(t.samples.size());
    }
    CHECK(by_cookie[1] == std::vector<size_t>{12});
    CHECK(by_cookie[70] == std::vector<size_t>{11});
    CHECK(by_cookie[71] == std::vector<size_t>{3, 7});
    CHECK(by_cookie[0] == std::vector<size_t>{11});
  }
}
