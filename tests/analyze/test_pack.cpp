// pack: chosen snapshots of many files in one new file, and the redaction for bug reports.
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <arpa/inet.h>

#include <bit>
#include <chrono>
#include <filesystem>
#include <future>
#include <random>
#include <set>
#include <thread>

using namespace sockrewind::analyze;
namespace fs = std::filesystem;

namespace {

std::string v4(const char* text) {
  std::string b(4, '\0');
  REQUIRE(inet_pton(AF_INET, text, b.data()) == 1);
  return b;
}

std::string v6(const char* text) {
  std::string b(16, '\0');
  REQUIRE(inet_pton(AF_INET6, text, b.data()) == 1);
  return b;
}

std::string text4(const std::string& b) {
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, b.data(), buf, sizeof buf);
  return buf;
}

// Number of leading bits two equally long byte strings share.
size_t common_prefix(const std::string& a, const std::string& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    const auto x = static_cast<uint8_t>(a[i] ^ b[i]);
    if (x != 0) {
      return i * 8 + static_cast<size_t>(std::countl_zero(x));
    }
  }
  return a.size() * 8;
}

// What a report says, without the names a redaction changes.
std::multiset<std::string> finding_keys(const std::vector<Finding>& found) {
  std::multiset<std::string> keys;
  for (const Finding& f : found) {
    const auto port = [&](const char* k) {
      const std::string ep = f.subject.value(k, std::string());
      const size_t colon = ep.rfind(':');
      return colon == std::string::npos ? std::string("-") : ep.substr(colon + 1);
    };
    keys.insert(f.detector + " " + std::string(severity_name(f.severity)) + " "
                + f.subject.value("proto", std::string("-")) + " "
                + f.subject.value("state", std::string("-")) + " " + port("local") + " "
                + port("remote") + " " + std::to_string(f.subject.value("pid", int64_t{-1})));
  }
  return keys;
}

std::vector<std::string> files_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".sqlite") {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

const fs::path k_samples = fs::path(SOCKREWIND_SOURCE_DIR) / "samples";

// Every value a load places, as text: each timeline's snapshots, processes and owner sets, and
// each track's identity and samples, in their order.
std::string fingerprint(const Series& s) {
  std::string out;
  const auto n = [&out](auto v) { out += std::to_string(v) + ' '; };
  const auto str = [&](uint32_t id) { out += id == k_na ? "-" : std::string(s.strings.get(id)); };
  for (const Timeline& tl : s.timelines) {
    out += "timeline " + tl.host + "\n";
    for (const Snap& x : tl.snaps) {
      n(x.file), n(x.snapshot_id), n(x.sockets);
    }
    for (const Process& p : tl.procs) {
      out += "\nproc ";
      n(p.pid), n(p.start_ticks), str(p.comm), str(p.cmdline);
      for (const ProcSample& x : p.samples) {
        n(x.snap), n(x.socket_fds), n(x.fd_count), n(x.nofile_soft);
      }
    }
    for (const std::vector<uint32_t>& set : tl.owner_sets) {
      out += "\nset ";
      for (const uint32_t o : set) {
        n(o);
      }
    }
    for (const Track& t : tl.tracks) {
      out += "\ntrack ";
      n(t.netns), n(t.family), n(t.type), n(t.proto), str(t.local_addr), n(t.local_port),
          str(t.remote_addr), n(t.remote_port), n(t.cookie), str(t.path), n(t.peer_inode);
      for (const Sample& x : t.samples) {
        n(x.snap), n(x.inode), n(x.owner), n(x.rx_queue), n(x.tx_queue), n(x.rmem_alloc),
            n(x.rcvbuf), n(x.wmem_queued), n(x.sndbuf), n(x.drops), n(x.total_retrans),
            n(x.segs_out), n(x.last_data_recv_ms), n(x.last_ack_recv_ms), n(x.snd_wnd),
            n(x.owner_set), n(x.bytes_acked), n(x.bytes_received), n(x.state), n(x.timer),
            n(x.retrans), n(x.probes), n(x.backoff);
      }
    }
    out += '\n';
  }
  return out;
}

// The samples (at least three files) and their pack in `dir`: {inputs, pack}.
std::pair<std::vector<std::string>, std::string>
pack_samples(const sockrewind::test::TempDir& dir) {
  std::vector<std::string> inputs = files_in(k_samples);
  REQUIRE(inputs.size() >= 3);
  PackOptions opts;
  opts.paths = inputs;
  opts.out = (dir.path() / "pack.sqlite").string();
  write_pack(opts);
  return {inputs, opts.out};
}

} // namespace

TEST_CASE("pack: redaction is consistent, keyed and prefix-preserving", "[pack]") {
  const Redactor red({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});
  const Redactor other({16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1});
  CHECK(red.address(v4("203.0.113.7")) == red.address(v4("203.0.113.7")));
  CHECK(red.address(v4("203.0.113.7")) != v4("203.0.113.7"));
  CHECK(red.address(v4("203.0.113.7")) != other.address(v4("203.0.113.7")));
  CHECK(red.hostname("db1.example.com") == red.hostname("db1.example.com"));
  CHECK(red.hostname("db1.example.com") != red.hostname("db2.example.com"));
  CHECK(red.hostname("db1.example.com").find("db1") == std::string::npos);

  // Kept as they are: nothing about anyone.
  for (const char* a : {"0.0.0.0", "255.255.255.255", "224.0.0.251"}) {
    CHECK(red.address(v4(a)) == v4(a));
  }
  for (const char* a : {"::", "::1", "ff02::1"}) {
    CHECK(red.address(v6(a)) == v6(a));
  }
  // Ranges stay recognisable.
  CHECK(text4(red.address(v4("127.0.0.1"))).rfind("127.", 0) == 0);
  CHECK(text4(red.address(v4("10.1.2.3"))).rfind("10.", 0) == 0);
  CHECK(text4(red.address(v4("192.168.7.9"))).rfind("192.168.", 0) == 0);
  CHECK(text4(red.address(v4("172.17.0.2"))).rfind("172.17.", 0) == 0);
  CHECK(text4(red.address(v4("8.8.8.8"))).rfind("8.", 0) == 0);
  CHECK(red.address(v6("fe80::1:2:3:4")).substr(0, 2) == v6("fe80::").substr(0, 2));
  const std::string mapped = red.address(v6("::ffff:10.9.8.7"));
  CHECK(mapped.substr(0, 12) == v6("::ffff:10.9.8.7").substr(0, 12));
  CHECK(mapped.substr(12) == red.address(v4("10.9.8.7")));
  CHECK(red.address(v6("2001:db8::1")) != v6("2001:db8::1"));

  // Prefix preservation: the shared prefix length is exactly kept, for random pairs.
  std::mt19937 rng(42);
  for (int i = 0; i < 2000; ++i) {
    std::string a(4, '\0');
    std::string b(4, '\0');
    for (size_t k = 0; k < 4; ++k) {
      a[k] = static_cast<char>(rng());
      b[k] = a[k];
    }
    // b shares a random prefix with a, then differs in the next bit.
    const size_t p = rng() % 32;
    b[p / 8] = static_cast<char>(b[p / 8] ^ (0x80 >> (p % 8)));
    for (size_t k = p + 1; k < 32; ++k) {
      if ((rng() & 1U) != 0) {
        b[k / 8] = static_cast<char>(b[k / 8] ^ (0x80 >> (k % 8)));
      }
    }
    const auto a0 = static_cast<uint8_t>(a[0]);
    if (a0 == 0 || a0 >= 224 || static_cast<uint8_t>(b[0]) >= 224 || b[0] == 0) {
      continue; // kept ranges are not permuted at all
    }
    INFO(text4(a) << " vs " << text4(b));
    CHECK(common_prefix(red.address(a), red.address(b)) == common_prefix(a, b));
  }

  CHECK(red.unix_path("/run/secret/app.sock").find("secret") == std::string::npos);
  CHECK(red.unix_path("@hidden-name").front() == '@');
  CHECK(red.cmdline("/home/alice/bin/server --token s3cr3t --port 80").rfind("server arg-", 0)
        == 0);
  CHECK(red.cmdline("/home/alice/bin/server --token s3cr3t").find("alice") == std::string::npos);
  CHECK(red.cmdline("/home/alice/bin/server --token s3cr3t").find("s3cr3t") == std::string::npos);
  CHECK(red.cmdline("a b") == red.cmdline("a b"));
}

TEST_CASE("pack: samples packed into one file report what the samples report", "[pack]") {
  sockrewind::test::TempDir dir;
  const std::vector<std::string> inputs = files_in(k_samples);
  REQUIRE(inputs.size() >= 3);
  PackOptions opts;
  opts.paths = inputs;
  opts.out = (dir.path() / "pack.sqlite").string();
  const PackResult r = write_pack(opts);
  CHECK(r.files == inputs.size());
  CHECK(r.duplicates == 0);

  const Series original = load_series(inputs);
  const Series packed = load_series({opts.out});
  CHECK(packed.snapshot_count() == original.snapshot_count());
  CHECK(r.snapshots == original.snapshot_count());
  const auto a = run_detectors(original, ReportOptions{});
  const auto b = run_detectors(packed, ReportOptions{});
  REQUIRE(!a.empty());
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    CHECK(a[i].detector == b[i].detector);
    CHECK(a[i].summary == b[i].summary); // no redaction: the very same words
  }

  // The same input twice counts once; an existing output is never replaced.
  PackOptions twice = opts;
  twice.paths = {inputs[0], inputs[0]};
  twice.out = (dir.path() / "twice.sqlite").string();
  const PackResult t = write_pack(twice);
  CHECK(t.duplicates == t.snapshots);
  CHECK_THROWS_AS(write_pack(twice), UsageError);
  PackOptions window = opts;
  window.out = (dir.path() / "none.sqlite").string();
  window.since = "2100-01-01T00:00:00Z";
  CHECK_THROWS_AS(write_pack(window), UsageError);
  CHECK(!fs::exists(window.out));
  for (const auto& e : fs::directory_iterator(dir.path())) {
    CHECK(e.path().filename().string().find(".tmp-") == std::string::npos);
  }
}

TEST_CASE("pack --redact leaves no original name in the file's bytes and the same findings",
          "[pack]") {
  sockrewind::test::TempDir dir;
  // A series with names worth hiding, next to the lab's real captures.
  namespace synth = sockrewind::synth;
  synth::Host host;
  host.hostname = "payments-db-7.corp.example.net";
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s{.realtime_ns = 1'800'000'000'000'000'000 + i * 60'000'000'000LL,
                  .boottime_ns = 1'000'000'000'000 + i * 60'000'000'000LL};
    s.sockets.push_back({.state = 10,
                         .local = "198.51.100.23",
                         .lport = 5432,
                         .remote = "0.0.0.0",
                         .rx = 129,
                         .tx = 128,
                         .inode = 500,
                         .cookie = 1,
                         .owners = {{4242, 7}}});
    s.sockets.push_back({.family = 10,
                         .state = 1,
                         .local = "2001:db8:feed::17",
                         .lport = 5432,
                         .remote = "2001:db8:beef::99",
                         .rport = 40000,
                         .rx = 0,
                         .tx = 0,
                         .inode = 501,
                         .cookie = 2,
                         .owners = {{4242, 8}}});
    s.sockets.push_back({.family = 1,
                         .proto = 0,
                         .state = 10,
                         .rx = 0,
                         .tx = 64,
                         .inode = 502,
                         .path = "/run/payments-secret/admin.sock",
                         .owners = {{4242, 9}}});
    s.procs.push_back({.pid = 4242,
                       .start_ticks = 77,
                       .comm = "postgres",
                       .cmdline = "/home/carol-admin/pg/bin/postgres -D /srv/carol-ledger-data "
                                  "--password=hunter2-swordfish",
                       .fd_count = 10,
                       .socket_fds = 3});
    s.counters["TcpExt.ListenOverflows"] = 10 * i;
    s.limits["net.core.somaxconn"] = "4096";
    snaps.push_back(std::move(s));
  }
  const fs::path in_dir = dir.path() / "in";
  fs::create_directories(in_dir);
  const std::string synth_file = synth::write_series(in_dir.string(), host, snaps);
  std::vector<std::string> inputs = files_in(k_samples);
  inputs.push_back(synth_file);

  PackOptions opts;
  opts.paths = inputs;
  opts.out = (dir.path() / "redacted.sqlite").string();
  opts.redact = true;
  write_pack(opts);
  const std::string bytes = sockrewind::test::read_file(opts.out);

  // Everything that must be gone, gathered from the inputs themselves.
  std::set<std::string> secrets = {"payments-db-7",
                                   "corp.example.net",
                                   "payments-secret",
                                   "carol-admin",
                                   "carol-ledger-data",
                                   "hunter2-swordfish",
                                   "198.51.100.23",
                                   "2001:db8:feed::17"};
  std::set<std::string> blobs;
  for (const std::string& f : inputs) {
    sockrewind::store::Db db = open_validated(f);
    auto hosts = db.prepare("SELECT DISTINCT host FROM snapshots");
    while (hosts.step()) {
      if (hosts.get_text(0).size() >= 6) {
        secrets.insert(hosts.get_text(0));
      }
    }
    auto addrs = db.prepare("SELECT text, addr FROM addrs");
    while (addrs.step()) {
      const std::string text = addrs.get_text(0);
      if (text != "0.0.0.0" && text != "::" && text != "::1") {
        secrets.insert(text);
        blobs.insert(addrs.get_blob(1));
      }
    }
    auto paths = db.prepare("SELECT DISTINCT path FROM sockets WHERE length(path) >= 6");
    while (paths.step()) {
      secrets.insert(paths.get_text(0));
    }
    auto cmds = db.prepare("SELECT DISTINCT cmdline FROM processes WHERE cmdline IS NOT NULL");
    while (cmds.step()) {
      const std::string cmd = cmds.get_text(0);
      size_t pos = cmd.find(' ');
      while (pos != std::string::npos) {
        const size_t end = cmd.find(' ', pos + 1);
        const std::string arg =
            cmd.substr(pos + 1, end == std::string::npos ? std::string::npos : end - pos - 1);
        if (arg.size() >= 8) {
          secrets.insert(arg);
        }
        pos = end;
      }
    }
  }
  REQUIRE(secrets.size() >= 10);
  for (const std::string& s : secrets) {
    INFO("still in the redacted pack: " << s);
    CHECK(bytes.find(s) == std::string::npos);
  }
  for (const std::string& b : blobs) {
    if (b.size() == 16) { // 4-byte blobs could occur by chance in a large file
      CHECK(bytes.find(b) == std::string::npos);
    }
  }

  // The same findings, modulo the names.
  std::vector<std::string> originals = inputs;
  const auto a = finding_keys(run_detectors(load_series(originals), ReportOptions{}));
  const auto b = finding_keys(run_detectors(load_series({opts.out}), ReportOptions{}));
  CHECK(a == b);
  CHECK(a.size() >= 5);
  sockrewind::store::Db db = open_validated(opts.out);
  CHECK(db.query_int("SELECT count(*) FROM meta WHERE key = 'redacted' AND value = 'yes'") == 1);
  CHECK(db.query_int("SELECT count(*) FROM addrs WHERE text LIKE '198.%'") == 1); // first octet
}

TEST_CASE("load: files read a snapshot at a time place what whole reads place (collector files, "
          "a pack's runs over many snapshots)",
          "[pack][series]") {
  sockrewind::test::TempDir dir;
  const auto packed = pack_samples(dir);
  const std::vector<std::string>& inputs = packed.first;
  const std::string& pack = packed.second;
  // The pack keeps a quiet socket in one run over many snapshots, paths and owners included:
  // a run is copied into chunks after the one it starts in.
  sockrewind::store::Db db = sockrewind::store::Db::open_readonly(pack, false);
  REQUIRE(db.query_int("SELECT count(*) FROM sock_runs JOIN sock_ident USING (ident_id) "
                       "WHERE last_snapshot_id > first_snapshot_id AND path IS NOT NULL")
          > 0);
  for (const std::vector<std::string>& files :
       {inputs, std::vector<std::string>{pack}, std::vector<std::string>{inputs[0]}}) {
    INFO(files.front() << " and " << files.size() - 1 << " more");
    SocketFilter chunked;
    chunked.chunk_rows = 1;
    const std::string whole = fingerprint(load_series(files));
    CHECK(whole.find("track") != std::string::npos);
    CHECK(fingerprint(load_series(files, chunked)) == whole);
    ReportOptions o;
    o.paths = files;
    o.format = Format::json;
    const std::vector<Finding> a = analyze_files(o).findings;
    o.chunk_rows = 1;
    const std::vector<Finding> b = analyze_files(o).findings;
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CHECK(a[i].summary == b[i].summary);
      CHECK(a[i].evidence == b[i].evidence);
    }
  }
}

TEST_CASE("load: a pack's identities read once apart from its runs place what the join places, "
          "also where a run's identity is missing",
          "[pack][series]") {
  sockrewind::test::TempDir dir;
  const auto packed = pack_samples(dir);
  const std::vector<std::string>& inputs = packed.first;
  const std::string& pack = packed.second;
  SocketFilter joined;
  joined.ident_cache = false;
  const auto same_both_ways = [&](const std::vector<std::string>& files) {
    INFO(files.front() << " and " << files.size() - 1 << " more");
    const std::string cached = fingerprint(load_series(files));
    CHECK(cached.find("track") != std::string::npos);
    CHECK(fingerprint(load_series(files, joined)) == cached);
    SocketFilter chunked;
    chunked.chunk_rows = 1;
    CHECK(fingerprint(load_series(files, chunked)) == cached);
  };
  {
    // Identities with several runs, unix paths among them: what the cache is for.
    sockrewind::store::Db db = sockrewind::store::Db::open_readonly(pack, false);
    REQUIRE(db.query_int("SELECT count(*) FROM sock_ident")
            < db.query_int("SELECT count(*) FROM sock_runs"));
    REQUIRE(db.query_int("SELECT count(*) FROM sock_runs JOIN sock_ident USING (ident_id) "
                         "WHERE path IS NOT NULL")
            > 0);
  }
  same_both_ways({pack});
  same_both_ways(inputs);
  // A run whose identity is gone (a damaged file): no row, either way.
  const std::string damaged = (dir.path() / "damaged.sqlite").string();
  std::filesystem::copy_file(pack, damaged);
  {
    sockrewind::store::Db db = sockrewind::store::Db::create(damaged);
    db.exec("PRAGMA foreign_keys = OFF; DELETE FROM sock_ident WHERE ident_id IN "
            "(SELECT ident_id FROM sock_runs GROUP BY ident_id HAVING count(*) > 1 LIMIT 3)");
  }
  same_both_ways({damaged});
  CHECK(fingerprint(load_series({damaged})) != fingerprint(load_series({pack})));
  // The whole loads above read the pack's identities apart; a filtered or joined one does not.
  CHECK(load_series({pack}).idents_read_apart == 1);
  CHECK(load_series({pack}, joined).idents_read_apart == 0);
  // Runs whose ident_id is NULL or REAL, in a crafted file: written while its sock_runs was not
  // STRICT, then declared STRICT again (SQLite checks new rows only). The join finds no
  // identity for them, and neither may the identities read apart (an identity of id 0 is
  // there for a NULL read as an integer to find, and one of id 5 for 5.5).
  const std::string loose = (dir.path() / "loose.sqlite").string();
  std::filesystem::copy_file(pack, loose);
  {
    sockrewind::store::Db db = sockrewind::store::Db::create(loose);
    std::string strict;
    {
      sockrewind::store::Stmt st =
          db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'sock_runs'");
      REQUIRE(st.step());
      strict = st.get_text(0);
    }
    std::string ddl = strict;
    const auto cut = [&ddl](const std::string& from, const std::string& to) {
      const size_t at = ddl.find(from);
      REQUIRE(at != std::string::npos);
      ddl.replace(at, from.size(), to);
    };
    cut("INTEGER NOT NULL REFERENCES sock_ident", "INTEGER REFERENCES sock_ident");
    cut(", STRICT", "");
    db.exec("PRAGMA foreign_keys = OFF; PRAGMA legacy_alter_table = ON; "
            "ALTER TABLE sock_runs RENAME TO strict_runs");
    db.exec(ddl);
    db.exec("INSERT INTO sock_runs SELECT * FROM strict_runs; DROP TABLE strict_runs; "
            "INSERT INTO sock_ident SELECT 0, netns_id, family, type, proto, local_addr_id, "
            "local_port, remote_addr_id, remote_port, inode, cookie, uid, path, peer_inode "
            "FROM sock_ident ORDER BY ident_id LIMIT 1; "
            "UPDATE sock_runs SET ident_id = NULL WHERE run_id IN "
            "(SELECT run_id FROM sock_runs ORDER BY run_id LIMIT 2); "
            "UPDATE sock_runs SET ident_id = ident_id + 0.5 WHERE run_id IN "
            "(SELECT run_id FROM sock_runs ORDER BY run_id LIMIT 2 OFFSET 2)");
    REQUIRE(db.query_int("SELECT count(*) FROM sock_runs WHERE typeof(ident_id) = 'real'") > 0);
    REQUIRE(db.query_int("SELECT count(*) FROM sock_runs WHERE ident_id IS NULL") > 0);
    db.exec("PRAGMA writable_schema = ON");
    sockrewind::store::Stmt back =
        db.prepare("UPDATE sqlite_schema SET sql = ?1 WHERE type = 'table' AND name = 'sock_runs'");
    back.bind(1, strict);
    back.step();
  }
  same_both_ways({loose});
  CHECK(load_series({loose}).idents_read_apart == 1);
  CHECK(fingerprint(load_series({loose})) != fingerprint(load_series({pack})));
}

TEST_CASE("load: file readers that may hold almost no rows ahead place what a whole load places, "
          "and the file being placed never waits for the one read ahead",
          "[pack][series]") {
  const std::vector<std::string> inputs = files_in(k_samples);
  REQUIRE(inputs.size() >= 3);
  const std::string whole = fingerprint(load_series(inputs));
  CHECK(whole.find("track") != std::string::npos);
  // A snapshot a chunk and a budget of one row: the reader ahead holds a chunk only while the
  // front's are all placed. On a thread, so that a load that never ends fails here.
  auto result = std::make_shared<std::promise<std::string>>();
  std::future<std::string> got = result->get_future();
  std::thread([inputs, result]() {
    SocketFilter tight;
    tight.chunk_rows = 1;
    tight.ahead_rows = 1;
    try {
      result->set_value(fingerprint(load_series(inputs, tight)));
    } catch (...) {
      result->set_exception(std::current_exception());
    }
  }).detach();
  REQUIRE(got.wait_for(std::chrono::seconds(60)) == std::future_status::ready);
  CHECK(got.get() == whole);
}
