// The collector's writer when a sock_diag dump fails part-way: the table's rows are rolled back
// (its savepoint) and the /proc rows follow. Nothing of the dropped rows may leak into the kept
// ones: not their identity numbers, not the addresses they were first to use.
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/collect/writer.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <tuple>
#include <utility>
#include <vector>

using sockrewind::store::Db;
using namespace sockrewind;

namespace {

synth::Sock conn(const std::string& local, const std::string& remote, uint16_t rport, uint64_t i) {
  return {.state = 1,
          .local = local,
          .lport = static_cast<uint16_t>(40000 + i),
          .remote = remote,
          .rport = rport,
          .inode = 7000 + i,
          .cookie = 9000 + i};
}

std::vector<collect::SocketRow> rows_of(const synth::Host& host, std::vector<synth::Sock> socks) {
  synth::Snap s{.realtime_ns = 1'800'000'000'000'000'000, .boottime_ns = 1'000'000'000'000};
  s.sockets = std::move(socks);
  collect::Snapshot snap = synth::to_snapshot(host, s);
  return std::move(snap.namespaces.front().sockets);
}

} // namespace

TEST_CASE("collect::a dump rolled back part-way leaves no trace in the rows kept after it",
          "[collect]") {
  const synth::Host host;
  // The failed dump is the first to see these addresses, and writes some of its rows (whole
  // multi-row statements: more rows than one holds) before it fails; the kept tables see new
  // addresses first (they take the dropped ones' ids), then the failed dump's again.
  std::vector<synth::Sock> dropped;
  for (uint64_t i = 0; i < 100; ++i) {
    dropped.push_back(conn("10.9.0.1", "198.51.100." + std::to_string(i + 1), 443, i));
  }
  std::vector<synth::Sock> first = {conn("10.9.0.2", "203.0.113.7", 80, 200),
                                    conn("10.9.0.2", "203.0.113.8", 80, 201)};
  std::vector<synth::Sock> second = {conn("10.9.0.1", "198.51.100.1", 443, 202),
                                     conn("10.9.0.1", "198.51.100.2", 443, 203),
                                     conn("10.9.0.2", "203.0.113.7", 80, 204)};
  std::vector<synth::Sock> kept = first;
  kept.insert(kept.end(), second.begin(), second.end());

  test::TempDir dir;
  collect::SnapshotFile file(dir.path().string(), "rollback", collect::TcpInfoMode::basic);
  (void)file.capture_with([&](collect::SocketSink* sink) {
    synth::Snap s{.realtime_ns = 1'800'000'000'000'000'000, .boottime_ns = 1'000'000'000'000};
    collect::Snapshot snap = synth::to_snapshot(host, s);
    snap.namespaces.front().socket_rows = kept.size();
    sink->owners(snap.owners);
    for (auto& [socks, keep] : std::vector<std::pair<std::vector<synth::Sock>, bool>>{
             {dropped, false}, {first, true}, {second, true}}) {
      sink->begin_table(host.netns_inode);
      std::vector<collect::SocketRow> batch = rows_of(host, socks);
      sink->rows(batch);
      sink->end_table(keep);
    }
    sink->flush(); // as take_snapshot: the sink is done with snap.owners before it goes
    return snap;
  });
  const std::string path = file.commit();

  Db db = Db::open_readonly(path, false);
  // Every kept socket once, with its own addresses; none of the dropped ones.
  auto st = db.prepare("SELECT cookie, local, remote FROM sockets_v ORDER BY cookie");
  std::vector<std::tuple<int64_t, std::string, std::string>> got;
  while (st.step()) {
    got.emplace_back(st.get_int(0), st.get_text(1), st.get_text(2));
  }
  std::vector<std::tuple<int64_t, std::string, std::string>> want;
  for (const synth::Sock& s : kept) {
    want.emplace_back(static_cast<int64_t>(*s.cookie),
                      s.local + ":" + std::to_string(s.lport),
                      s.remote + ":" + std::to_string(s.rport));
  }
  CHECK(got == want);
  // Each address once, each kept socket's addresses present (no dangling ids).
  CHECK(db.query_int("SELECT count(*) FROM addrs") == 6);
  CHECK(db.query_int("SELECT count(*) FROM addrs WHERE addr_id IN (SELECT local_addr_id FROM "
                     "sockets UNION SELECT remote_addr_id FROM sockets)")
        == 6);
  CHECK(db.query_int("SELECT count(*) FROM sockets") == static_cast<int64_t>(kept.size()));
}
