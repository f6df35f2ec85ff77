// Live test: the collector's writer inserts socket rows many per statement, carrying rows from
// one dump batch to the next; no socket may be lost or written twice at any boundary (root).
#include "live/netns.hpp"
#include "live/sockets.hpp"
#include "support.hpp"

#include <sockrewind/collect/host.hpp>
#include <sockrewind/collect/snapshot.hpp>
#include <sockrewind/collect/writer.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

using sockrewind::store::Db;
using namespace sockrewind::test;

namespace {

uint64_t inode_of_fd(int fd) {
  struct stat st {};

  REQUIRE(::fstat(fd, &st) == 0);
  return st.st_ino;
}

std::vector<int64_t> ints(Db& db, const std::string& sql, int64_t sid) {
  auto st = db.prepare(sql);
  st.bind(1, sid);
  std::vector<int64_t> out;
  while (st.step()) {
    out.push_back(st.get_int(0));
  }
  return out;
}

} // namespace

TEST_CASE("live::collector writes every socket exactly once across insert batches", "[live]") {
  require_root("live collector batch test");
  using namespace sockrewind::collect;
  // 1 listener + 2 * 700 connected sockets = 1401 TCP sockets: not a multiple of any batch
  // size (a power of two), and more than one sock_diag batch, so full statements, the rows
  // carried between batches and the last partial statement are all exercised.
  constexpr int k_pairs = 700;
  constexpr size_t k_tcp = 1 + 2 * k_pairs;
  rlimit lim{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  if (lim.rlim_cur < 4096 && lim.rlim_max >= 4096) {
    lim.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);
  }
  REQUIRE(lim.rlim_cur >= 2 * k_tcp);

  TempDir dir;
  const TestNetns ns;
  std::vector<Sock> socks;
  std::string path;
  ns.run_in([&] {
    socks.push_back(tcp_listener(5100, 1024));
    for (int i = 0; i < k_pairs; ++i) {
      socks.push_back(tcp_connect(5100));
      socks.push_back(tcp_accept(socks.front()));
    }
    HostInfo host = read_host_info();
    struct stat st {};

    REQUIRE(::stat(ns.path().c_str(), &st) == 0);
    host.self_netns = st.st_ino; // this thread's namespace, captured as "self"
    CaptureOptions opts;
    SnapshotFile file(dir.path().string(), "batches", TcpInfoMode::basic);
    // Streamed, buffered, streamed again: ids continue from one snapshot to the next.
    (void)file.capture(opts, host);
    file.write(take_snapshot(opts, host));
    (void)file.capture(opts, host);
    path = file.commit();
  });
  REQUIRE(socks.size() == k_tcp);

  // ss sees the same number of TCP sockets in the namespace.
  const CmdResult ss = run_cmd_output("nsenter --net=" + ns.path() + " ss -Htan | wc -l");
  REQUIRE(ss.status == 0);
  CHECK(std::stoul(ss.out) == k_tcp);

  std::vector<int64_t> want;
  for (const Sock& s : socks) {
    want.push_back(static_cast<int64_t>(inode_of_fd(s.fd())));
  }
  std::sort(want.begin(), want.end());

  Db db = Db::open_readonly(path, false);
  REQUIRE(db.query_int("SELECT count(*) FROM snapshots") == 3);
  for (int64_t sid = 1; sid <= 3; ++sid) {
    INFO("snapshot " << sid);
    // Exactly our sockets, each once, each with its owner (this process).
    const std::vector<int64_t> got = ints(
        db, "SELECT inode FROM sockets WHERE snapshot_id = ?1 AND proto = 6 ORDER BY inode", sid);
    CHECK(got.size() == want.size());
    CHECK(got == want);
    CHECK(ints(db,
               "SELECT count(*) FROM sockets WHERE snapshot_id = ?1 AND proto = 6 AND pid = "
                   + std::to_string(::getpid()),
               sid)
          == std::vector<int64_t>{static_cast<int64_t>(k_tcp)});
    CHECK(ints(db,
               "SELECT count(DISTINCT cookie) FROM sockets WHERE snapshot_id = ?1 AND proto = 6",
               sid)
          == std::vector<int64_t>{static_cast<int64_t>(k_tcp)});
    // The snapshot's own count is the rows written.
    CHECK(ints(db, "SELECT sockets FROM snapshots WHERE snapshot_id = ?1", sid)
          == ints(db, "SELECT count(*) FROM sockets WHERE snapshot_id = ?1", sid));
  }
  // Identities and runs: one each per socket per snapshot, numbered 1, 2, 3, ... without
  // holes (as SQLite's own ROWIDs were), each run pointing at its own identity.
  const int64_t total = db.query_int("SELECT count(*) FROM sock_runs");
  CHECK(total == db.query_int("SELECT sum(sockets) FROM snapshots"));
  CHECK(db.query_int("SELECT count(*) FROM sock_ident") == total);
  CHECK(db.query_int("SELECT max(ident_id) FROM sock_ident") == total);
  CHECK(db.query_int("SELECT count(DISTINCT ident_id) FROM sock_runs") == total);
  CHECK(db.query_int("SELECT count(DISTINCT run_id) FROM sock_runs") == total);
  CHECK(db.query_int("SELECT count(*) FROM sock_runs r JOIN sock_ident i USING (ident_id) "
                     "JOIN netns n ON n.netns_id = i.netns_id")
        == total);
}
