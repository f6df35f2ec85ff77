// Open tracks are packed while the load streams them (sample_pack.hpp): every sample comes back
// exactly, an idle connection costs a few bytes a snapshot, and the tracks a streaming load
// reports are, sample for sample, those of a whole load.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/sample_pack.hpp>
#include <sockrewind/analyze/series.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace sa = sockrewind::analyze;
namespace fs = std::filesystem;

namespace {

std::string text(const sa::Sample& x) {
  std::string s;
  for (const uint64_t v : {uint64_t{x.snap},
                           uint64_t{x.inode},
                           uint64_t{x.owner},
                           uint64_t{x.rx_queue},
                           uint64_t{x.tx_queue},
                           uint64_t{x.rmem_alloc},
                           uint64_t{x.rcvbuf},
                           uint64_t{x.wmem_queued},
                           uint64_t{x.sndbuf},
                           uint64_t{x.drops},
                           uint64_t{x.total_retrans},
                           uint64_t{x.segs_out},
                           uint64_t{x.last_data_recv_ms},
                           uint64_t{x.last_ack_recv_ms},
                           uint64_t{x.snd_wnd},
                           uint64_t{x.owner_set},
                           x.bytes_acked,
                           x.bytes_received,
                           uint64_t{x.state},
                           uint64_t{x.timer},
                           uint64_t{x.retrans},
                           uint64_t{x.probes},
                           uint64_t{x.backoff}}) {
    s += std::to_string(v) + ",";
  }
  return s;
}

std::string text(const std::vector<sa::Sample>& v) {
  std::string s;
  for (const sa::Sample& x : v) {
    s += text(x) + "\n";
  }
  return s;
}

// A value of a field of `bits` bits: often unchanged, else small steps, the extremes, k_na.
uint64_t next_value(std::mt19937_64& rng, uint64_t before, unsigned bits) {
  const uint64_t max =
      bits == 64 ? std::numeric_limits<uint64_t>::max() : (uint64_t{1} << bits) - 1;
  switch (rng() % 8) {
  case 0:
    return 0;
  case 1:
    return max; // k_na of the field
  case 2:
    return rng() & max;
  case 3:
    return (before + rng() % 1000) & max;
  case 4:
    return (before - rng() % 1000) & max;
  default:
    return before;
  }
}

// Records, in order, each track a streaming load reports, as text.
class Recorder final : public sa::TrackObserver {
public:
  void closed(sa::Series& s, uint32_t tl, const std::vector<uint32_t>& tracks) override {
    for (const uint32_t i : tracks) {
      const sa::Track& t = s.timelines[tl].tracks[i];
      seen.push_back(std::to_string(tl) + " " + std::to_string(t.cookie) + " "
                     + std::to_string(t.local_port) + "\n" + text(t.samples));
    }
  }

  std::vector<std::string> seen;
};

// Notes each track reported as text, then lets go of the samples of about half of them (as
// report does of those no check keeps), so that the load forgets and renumbers tracks while
// others are still packed.
class Forgetful final : public sa::TrackObserver {
public:
  explicit Forgetful(unsigned seed) : rng(seed) {}

  void closed(sa::Series& s, uint32_t tl, const std::vector<uint32_t>& tracks) override {
    for (const uint32_t i : tracks) {
      sa::Track& t = s.timelines[tl].tracks[i];
      seen.push_back(std::to_string(tl) + " " + std::to_string(t.cookie) + " "
                     + std::to_string(t.local_port) + "\n" + text(t.samples));
      if (rng() % 2 == 0) {
        t.samples.clear();
      }
    }
  }

  std::mt19937 rng;
  std::vector<std::string> seen;
};

} // namespace

TEST_CASE("sample pack: every sample comes back exactly, in order", "[series][pack]") {
  std::mt19937_64 rng(7);
  for (int round = 0; round < 50; ++round) {
    sa::PackedSamples p;
    std::vector<sa::Sample> in;
    sa::Sample x;
    x.snap = static_cast<uint32_t>(rng() % 3);
    const int n = 1 + static_cast<int>(rng() % 300);
    for (int k = 0; k < n; ++k) {
      x.snap += 1 + static_cast<uint32_t>(rng() % 4 == 0 ? rng() % 100000 : 0);
      for (uint32_t* f : {&x.inode,
                          &x.owner,
                          &x.rx_queue,
                          &x.tx_queue,
                          &x.rmem_alloc,
                          &x.rcvbuf,
                          &x.wmem_queued,
                          &x.sndbuf,
                          &x.drops,
                          &x.total_retrans,
                          &x.segs_out,
                          &x.last_data_recv_ms,
                          &x.last_ack_recv_ms,
                          &x.snd_wnd,
                          &x.owner_set}) {
        *f = static_cast<uint32_t>(next_value(rng, *f, 32));
      }
      x.bytes_acked = next_value(rng, x.bytes_acked, 64);
      x.bytes_received = next_value(rng, x.bytes_received, 64);
      for (uint8_t* f : {&x.state, &x.timer, &x.retrans, &x.probes, &x.backoff}) {
        *f = static_cast<uint8_t>(next_value(rng, *f, 8));
      }
      p.push(x);
      in.push_back(x);
    }
    REQUIRE(p.size() == in.size());
    CHECK(text(p.last()) == text(in.back()));
    CHECK(text(p.unpack()) == text(in));
  }
}

TEST_CASE("sample pack: an idle pooled connection costs a few bytes a snapshot, a busy one far "
          "less than a sample",
          "[series][pack]") {
  sa::PackedSamples idle;
  sa::PackedSamples busy;
  sa::Sample x;
  x.state = 1;
  x.inode = 81234;
  x.owner = 3;
  x.rcvbuf = 131072;
  x.sndbuf = 87040;
  x.snd_wnd = 65535;
  x.bytes_acked = 1234567;
  x.bytes_received = 7654321;
  x.segs_out = 4000;
  sa::Sample y = x;
  for (uint32_t i = 0; i < 1440; ++i) {
    // Idle: only the times since the last data and ack grow, by the minute between snapshots.
    x.snap = i;
    x.last_data_recv_ms = 5000 + i * 60000;
    x.last_ack_recv_ms = 4000 + i * 60000;
    idle.push(x);
    // Busy: a few thousand bytes and segments a minute, queues that come and go.
    y.snap = i;
    y.bytes_acked += 3000 + i % 7 * 1000;
    y.bytes_received += 9000 + i % 5 * 100;
    y.segs_out += 10 + i % 3;
    y.last_data_recv_ms = i % 60;
    y.last_ack_recv_ms = i % 40;
    y.rx_queue = i % 4 == 0 ? 0 : 1448;
    busy.push(y);
  }
  const double per_idle = static_cast<double>(idle.bytes()) / 1440;
  const double per_busy = static_cast<double>(busy.bytes()) / 1440;
  INFO("idle " << per_idle << " bytes a sample, busy " << per_busy << ", Sample "
               << sizeof(sa::Sample));
  CHECK(per_idle <= 10);
  CHECK(per_busy <= 24);
  CHECK(text(idle.unpack().back()) == text(x));
  CHECK(text(busy.unpack().back()) == text(y));
}

TEST_CASE("sample pack: a streaming load reports each track whole, sample for sample as a "
          "whole load holds it",
          "[series][pack]") {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(fs::path(SOCKREWIND_SOURCE_DIR) / "samples")) {
    if (e.path().extension() == ".sqlite") {
      files.push_back(e.path().string());
    }
  }
  REQUIRE(files.size() >= 3);
  std::sort(files.begin(), files.end());
  size_t longest = 0;
  // One capture at a time: the load streams (and packs) tracks only when the files of a
  // timeline come in time order, and some captures here overlap others.
  for (const std::string& file : files) {
    INFO(file);
    const sa::Series whole = sa::load_series({file});
    std::vector<std::string> expected;
    for (uint32_t tl = 0; tl < whole.timelines.size(); ++tl) {
      for (const sa::Track& t : whole.timelines[tl].tracks) {
        expected.push_back(std::to_string(tl) + " " + std::to_string(t.cookie) + " "
                           + std::to_string(t.local_port) + "\n" + text(t.samples));
        longest = std::max(longest, t.samples.size());
      }
    }
    std::sort(expected.begin(), expected.end());
    for (const size_t chunk_rows : {size_t{0}, size_t{1}}) {
      Recorder r;
      sa::SocketFilter f;
      f.chunk_rows = chunk_rows;
      const sa::Series streamed = sa::load_series({file}, f, &r);
      std::vector<std::string> seen = r.seen;
      std::sort(seen.begin(), seen.end());
      CHECK(seen == expected);
    }
  }
  CHECK(longest >= 5); // tracks packed over several snapshots
}

TEST_CASE("sample pack: random churn over files of 1-5 snapshots, some tracks let go as they "
          "close: every track reported as a whole load holds it",
          "[series][pack]") {
  using namespace sockrewind;
  using namespace sockrewind::test;
  for (unsigned round = 0; round < 30; ++round) {
    std::mt19937 rng(round);
    const TempDir dir;
    std::vector<synth::Snap> snaps;
    const int n = 6 + static_cast<int>(rng() % 20);

    struct Life {
      int born, dies;
      bool cookie;
      uint16_t port;
      std::vector<bool> skip;
    };

    std::vector<Life> lives;
    for (int k = 0; k < 25; ++k) {
      Life l;
      l.born = static_cast<int>(rng() % static_cast<unsigned>(n));
      l.dies = l.born + 1 + static_cast<int>(rng() % static_cast<unsigned>(n));
      l.cookie = rng() % 3 != 0;
      l.port = static_cast<uint16_t>(40000 + (l.cookie ? k : k % 4));
      for (int i = 0; i < n; ++i) {
        l.skip.push_back(rng() % 6 == 0);
      }
      lives.push_back(l);
    }
    for (int i = 0; i < n; ++i) {
      synth::Snap s = snap_at(i);
      s.sockets.push_back(listener(8080, static_cast<uint32_t>(rng() % 3), 128));
      for (size_t k = 0; k < lives.size(); ++k) {
        const Life& l = lives[k];
        if (i < l.born || i >= l.dies || l.skip[static_cast<size_t>(i)]) {
          continue;
        }
        synth::Sock x{.lport = l.port,
                      .rport = 9000,
                      .rx = static_cast<uint32_t>(rng() % 2 == 0 ? 0 : rng() % 100000),
                      .inode = 6000 + k,
                      .owners = {{100, static_cast<int32_t>(30 + k)}}};
        if (l.cookie) {
          x.cookie = 600 + k;
        }
        x.tcp_info = {{"bytes_acked", static_cast<uint64_t>(i) * (rng() % 1000)},
                      {"total_retrans", rng() % 4}};
        s.sockets.push_back(x);
      }
      snaps.push_back(std::move(s));
    }
    const size_t per = 1 + rng() % 5;
    const std::vector<std::string> files = write_files(dir, snaps, per);
    const sa::Series whole = sa::load_series(files);
    std::vector<std::string> want;
    for (uint32_t tl = 0; tl < whole.timelines.size(); ++tl) {
      for (const sa::Track& t : whole.timelines[tl].tracks) {
        want.push_back(std::to_string(tl) + " " + std::to_string(t.cookie) + " "
                       + std::to_string(t.local_port) + "\n" + text(t.samples));
      }
    }
    std::sort(want.begin(), want.end());
    for (const size_t chunk : {size_t{0}, size_t{1}, size_t{2}}) {
      Forgetful r(round);
      sa::SocketFilter f;
      f.chunk_rows = chunk;
      f.ahead_rows = chunk == 0 ? 0 : 1;
      sa::Series s = sa::load_series(files, f, &r);
      std::sort(r.seen.begin(), r.seen.end());
      INFO("round " << round << " files " << files.size() << " chunk " << chunk);
      REQUIRE(r.seen == want);
    }
  }
}
