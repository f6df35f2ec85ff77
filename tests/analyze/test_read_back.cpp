// Evidence read back after the load (Context::read_snapshots): from the files as loaded, even
// when they are deleted or replaced meanwhile, one read per file for several snapshots, and a
// clear error when a file could not be kept open and changed.
#include "analyze/det_support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/toolkit.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

using namespace sockrewind;
using namespace sockrewind::analyze;
using namespace sockrewind::test;

namespace {

namespace fs = std::filesystem;

// A process leaking sockets, one minute file per snapshot: socket_leak fires and reads the
// breakdown of its last snapshot back from that snapshot's file.
std::vector<std::string> write_leak_minutes(const fs::path& dir, int minutes = 12) {
  std::vector<std::string> files;
  for (int i = 0; i < minutes; ++i) {
    synth::Snap s;
    s.realtime_ns = k_t0 + i * k_minute;
    s.boottime_ns = 1000 * k_minute + i * k_minute;
    const auto n = static_cast<uint32_t>(100 + 20 * i);
    s.procs.push_back({.pid = 42,
                       .start_ticks = 7,
                       .comm = "api",
                       .cmdline = "api",
                       .fd_count = n + 10,
                       .socket_fds = n,
                       .nofile_soft = 65536});
    for (int k = 0; k < 4 + i; ++k) {
      const auto u = static_cast<uint16_t>(k);
      s.sockets.push_back({.state = static_cast<uint8_t>(k % 2 == 0 ? 8 : 1),
                           .lport = 8080,
                           .rport = static_cast<uint16_t>(40000 + u),
                           .rx = 1,
                           .tx = 0,
                           .inode = 9000U + u,
                           .cookie = 500U + u,
                           .owners = {{42, 10 + k}}});
    }
    const fs::path sub = dir / ("m" + std::to_string(100 + i));
    fs::create_directories(sub);
    const std::string written = synth::write_series(sub.string(), synth::Host{}, {s});
    const fs::path to = dir / ("minute-" + std::to_string(100 + i) + ".sqlite");
    fs::rename(written, to);
    fs::remove_all(sub);
    files.push_back(to.string());
  }
  return files;
}

// The JSON report of socket_leak over `files`, `after_load` run between load and checks.
std::string leak_report(const std::vector<std::string>& files,
                        const std::function<void()>& after_load = {}) {
  ReportOptions o;
  o.only = {"socket_leak"};
  o.paths = files;
  o.format = Format::json;
  Analysis a = analyze_files(o, after_load);
  std::ostringstream out;
  render_report(a.series, std::move(a.findings), o, out);
  return out.str();
}

} // namespace

TEST_CASE("read back: files deleted or replaced after the load give the same findings",
          "[read_back]") {
  TempDir dir;
  const std::vector<std::string> files = write_leak_minutes(dir.path());
  const std::string want = leak_report(files);
  REQUIRE(want.find("\"breakdown\"") != std::string::npos); // read back from the last file
  REQUIRE(want.find("\"tcp CLOSE-WAIT\": 8") != std::string::npos);

  SECTION("deleted (a prune)") {
    const std::string got = leak_report(files, [&] {
      for (const std::string& f : files) {
        fs::remove(f);
      }
    });
    CHECK(got == want);
  }
  SECTION("replaced by another file under the same name (a fold rewriting it)") {
    const std::string got = leak_report(files, [&] {
      for (const std::string& f : files) {
        fs::copy_file(files.front(), f + ".new");
        fs::rename(f + ".new", f);
      }
    });
    CHECK(got == want);
  }
}

TEST_CASE("read back: without descriptors to keep the files, a changed file is a clear error",
          "[read_back]") {
  TempDir dir;
  const std::vector<std::string> files = write_leak_minutes(dir.path());
  const std::string want = leak_report(files);

  SECTION("some files held, the others read again by name: the same findings") {
    const BudgetForTest budget(3);
    CHECK(leak_report(files) == want);
  }
  SECTION("none held, files unchanged: the same findings") {
    const BudgetForTest budget(0);
    CHECK(leak_report(files) == want);
  }
  SECTION("none held, the last file deleted or replaced: one line naming it") {
    const BudgetForTest budget(0);
    const bool replace = GENERATE(false, true);
    try {
      leak_report(files, [&] {
        if (replace) {
          fs::copy_file(files.front(), files.back() + ".new");
          fs::rename(files.back() + ".new", files.back());
        } else {
          fs::remove(files.back());
        }
      });
      FAIL("no LoadError");
    } catch (const LoadError& e) {
      const std::string what = e.what();
      CHECK(what.rfind(files.back() + ": changed or went away during the report", 0) == 0);
      CHECK(what.find('\n') == std::string::npos);
    }
  }
  SECTION("held: the budget counts, and the files are closed with the analysis") {
    const BudgetForTest budget(5);
    OpenFiles held;
    for (const std::string& f : files) {
      const DbLease lease = held.open(f);
      CHECK(!lease.empty());
    }
    CHECK(held.held() == 5);
    OpenFiles more; // shares the process's budget
    const DbLease lease = more.open(files.front());
    CHECK(more.held() == 0);
  }
}

TEST_CASE("read back: several snapshots of one file in one read are each as read alone",
          "[read_back]") {
  TempDir dir;
  // One file of 4 snapshots. Cookie 77 is unconnected in the first two and connected to
  // 10.0.0.2:80 from the third on (a track keeps its first sample's addresses: read together
  // without a timeline per snapshot, the third would show no remote port).
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 4; ++i) {
    synth::Snap s = snap_at(i);
    const bool connected = i >= 2;
    s.sockets.push_back({.state = static_cast<uint8_t>(connected ? 2 : 7),
                         .local = connected ? "10.0.0.1" : "0.0.0.0",
                         .lport = 40000,
                         .remote = connected ? "10.0.0.2" : "0.0.0.0",
                         .rport = static_cast<uint16_t>(connected ? 80 : 0),
                         .inode = 7000,
                         .cookie = 77,
                         .owners = {{200, 4}}});
    s.sockets.push_back(listener(80, static_cast<uint32_t>(i), 128));
    snaps.push_back(std::move(s));
  }
  synth::write_series(dir.path().string(), synth::Host{}, snaps);
  const Series series = load_series(expand_paths({dir.path().string()}));
  REQUIRE(series.timelines.size() == 1);
  const Params params;
  const Context ctx(series, series.timelines[0], params);

  // A snapshot's sockets as text: endpoints, state, queue and owners, in their order.
  const auto text = [](const Context::SnapshotSockets& b) {
    std::string out;
    for (const Track& t : b.tl().tracks) {
      const Sample* x = sample_at(t, b.snap);
      if (x == nullptr) {
        continue;
      }
      out += std::string(b.series.strings.get(t.local_addr)) + ":" + std::to_string(t.local_port)
             + " " + std::string(b.series.strings.get(t.remote_addr)) + ":"
             + std::to_string(t.remote_port) + " " + std::to_string(x->state) + " "
             + std::to_string(x->rx_queue);
      for (const uint32_t o : owners_of(b.tl(), *x)) {
        out += " pid " + std::to_string(b.tl().procs[o].pid);
      }
      out += "\n";
    }
    return out;
  };
  const std::vector<uint32_t> all = {3, 0, 2, 1, 2};
  SocketFilter by_port;
  by_port.port = 80;
  for (const SocketFilter& filter : {SocketFilter{}, by_port}) {
    const std::vector<Context::SnapshotSockets> together = ctx.read_snapshots(all, filter);
    REQUIRE(together.size() == all.size());
    CHECK(together[0].read == together[1].read); // one read of the file
    for (size_t k = 0; k < all.size(); ++k) {
      CHECK(text(together[k]) == text(ctx.read_snapshot(all[k], filter)));
      // As a load of that one snapshot of the file reads it.
      SocketFilter one = filter;
      const Snap& at = series.timelines[0].snaps[all[k]];
      one.snapshots = {{"synth", synth::Host{}.boot_id, at.boottime_ns}};
      auto alone = std::make_shared<const Series>(load_series({series.files[at.file]}, one));
      REQUIRE(alone->timelines.size() == 1);
      CHECK(text(together[k]) == text({alone, *alone, 0, all[k]}));
    }
    CHECK(text(together[2]).find("10.0.0.1:40000 10.0.0.2:80 2") != std::string::npos);
  }
}

TEST_CASE("read back: a held file whose schema changed after the load is a clear error",
          "[read_back]") {
  TempDir dir;
  const std::vector<std::string> files = write_leak_minutes(dir.path());
  // Held (the files are few), then written to in place: the schema validated at the load is
  // not the one a read would parse now.
  try {
    leak_report(files, [&] {
      store::Db w = store::Db::create(files.back());
      w.exec("CREATE TABLE added_later (x INTEGER)");
    });
    FAIL("no LoadError");
  } catch (const LoadError& e) {
    const std::string what = e.what();
    CHECK(what.rfind(files.back() + ": changed or went away during the report", 0) == 0);
    CHECK(what.find('\n') == std::string::npos);
  }
  // Rows written in place leave the schema as it was: read as before.
  const std::string want = leak_report(files);
  CHECK(leak_report(files,
                    [&] {
                      store::Db w = store::Db::create(files.back());
                      w.exec("INSERT INTO meta VALUES ('written_later', 'x')");
                    })
        == want);
}

TEST_CASE("read back: a held connection keeps no parsed schema between reads and stays "
          "defensive",
          "[read_back]") {
  TempDir dir;
  const std::vector<std::string> files = write_leak_minutes(dir.path(), 1);
  const auto schema_bytes = [](store::Db& db) {
    int now = 0;
    int high = 0;
    REQUIRE(sqlite3_db_status(db.handle(), SQLITE_DBSTATUS_SCHEMA_USED, &now, &high, 0)
            == SQLITE_OK);
    return now;
  };
  OpenFiles held;
  {
    DbLease first = held.open(files.front());
    CHECK(first.db().query_int("SELECT count(*) FROM snapshots") == 1);
    CHECK(schema_bytes(first.db()) > 0);
  }
  REQUIRE(held.held() == 1);
  DbLease again = held.open(files.front());
  CHECK(schema_bytes(again.db()) == 0); // given back with the last lease
  int defensive = -1;
  CHECK(sqlite3_db_config(again.db().handle(), SQLITE_DBCONFIG_DEFENSIVE, -1, &defensive)
        == SQLITE_OK);
  CHECK(defensive == 1);
  CHECK(again.db().query_int("SELECT count(*) FROM snapshots") == 1); // read again
}
