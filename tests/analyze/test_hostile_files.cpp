// Files from strangers: sockrewind-analyze opens them read-only and defensively, validates
// them, never runs SQL stored in them, fails with exit 3 and one line naming the file (never a
// crash or a hang), and escapes whatever a hostile process name, cmdline or path could do to a
// terminal. The hostile files are made here from a synthetic capture, then corrupted.
#include "support.hpp"
#include "synth/synth.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/info.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/schema.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace sockrewind;
namespace fs = std::filesystem;

namespace {

// ESC [ 2 J (clear screen), BEL, CR, other C0 bytes, DEL, a C1 CSI (U+009B) and invalid UTF-8.
const std::string k_hostile =
    std::string("ev\x1b[2J\x07\r\x01\x1f\x7f") + "\xc2\x9b" + "31m" + "\xff\xfe\xc3" + "il";

// A capture of host `host`: 6 one-second snapshots of a full listener on port 7000 owned by
// pid 4242 (an accept_queue_backlog finding), and from the second snapshot on a unix listener.
std::string capture(const fs::path& dir,
                    const std::string& comm = "server",
                    const std::string& cmdline = "server --port 7000",
                    const std::string& unix_path = "/run/server.sock",
                    const std::string& host = "web1") {
  fs::create_directories(dir);
  synth::Host h;
  h.hostname = host;
  std::vector<synth::Snap> snaps;
  for (int i = 0; i < 6; ++i) {
    synth::Snap s{.realtime_ns = 1'790'000'000'000'000'000 + int64_t{i} * 1'000'000'000,
                  .boottime_ns = 1'000'000'000'000 + int64_t{i} * 1'000'000'000};
    s.sockets.push_back({.state = 10,
                         .local = "0.0.0.0",
                         .lport = 7000,
                         .remote = "0.0.0.0",
                         .rx = 5,
                         .tx = 4,
                         .inode = 1000,
                         .cookie = 77,
                         .owners = {{4242, 3}}});
    if (i > 0) {
      s.sockets.push_back({.family = 1,
                           .type = 1,
                           .proto = 0,
                           .state = 10,
                           .rx = 0,
                           .tx = 128,
                           .inode = 2000,
                           .cookie = 78,
                           .path = unix_path,
                           .owners = {{4242, 4}}});
    }
    s.procs.push_back({.pid = 4242,
                       .start_ticks = 99,
                       .comm = comm,
                       .cmdline = cmdline,
                       .fd_count = 5,
                       .socket_fds = 2});
    s.counters["TcpExt.ListenOverflows"] = int64_t{3} * i;
    s.limits["net.core.somaxconn"] = "4096";
    snaps.push_back(std::move(s));
  }
  return synth::write_series(dir.string(), h, snaps);
}

// Runs SQL on a file with an ordinary read-write connection (how an attacker edits one).
void patch(const std::string& file, const std::string& sql) {
  store::Db db = store::Db::create(file);
  db.exec(sql);
}

using test::Run;

// Runs the real sockrewind-analyze with `args`; a hang is killed after 60 s and fails.
Run analyze_bin(std::vector<std::string> args) {
  args.insert(args.begin(), SOCKREWIND_ANALYZE_BIN);
  return test::run_with_timeout(args, 60);
}

// Every command on `path`, with the options each needs.
std::vector<std::vector<std::string>> all_commands(const std::string& path) {
  return {{"info", path},
          {"report", path},
          {"report", path, "--format", "json"},
          {"show", path},
          {"timeline", path, "--port", "7000"},
          {"diff", path, "--from", "1", "--to", "2"}};
}

// Exit 3 with exactly one line on stderr, "sockrewind-analyze: error: <file>: <reason>",
// containing `reason`, and nothing on stdout.
void check_refused(const std::vector<std::string>& args,
                   const std::string& file,
                   const std::string& reason) {
  const Run r = analyze_bin(args);
  INFO(args[0] + " " + args[1] + "\nstdout: " + r.out + "\nstderr: " + r.err);
  CHECK(r.code == 3);
  CHECK(r.out.empty());
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.starts_with("sockrewind-analyze: error: " + file + ": "));
  CHECK_THAT(r.err, Catch::Contains(reason));
  CHECK_THAT(r.err, !Catch::Contains("runtime error")); // UBSan
  CHECK_THAT(r.err, !Catch::Contains("Sanitizer"));
}

void check_refused_by_all(const std::string& file, const std::string& reason) {
  for (const auto& args : all_commands(file)) {
    check_refused(args, file, reason);
  }
}

// Refused by the commands that read the bad value; the others (which never read it) work.
void check_refused_by_readers(const std::string& file,
                              const std::string& reason,
                              const std::vector<std::string>& not_reading) {
  for (const auto& args : all_commands(file)) {
    if (std::find(not_reading.begin(), not_reading.end(), args[0]) == not_reading.end()) {
      check_refused(args, file, reason);
    } else {
      const Run r = analyze_bin(args);
      INFO(args[0] + "\n" + r.err);
      CHECK(r.code == 0);
      CHECK(r.err.empty());
    }
  }
}

// Nothing a terminal would act on: no C0 byte but newline, no DEL, no C1 (U+0080..U+009F)
// and only valid UTF-8.
bool terminal_safe(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      if ((b < 0x20 && b != '\n') || b == 0x7f) {
        return false;
      }
      ++i;
      continue;
    }
    const size_t n = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc2 ? 2 : 0;
    if (n == 0 || i + n > s.size() || (b == 0xc2 && static_cast<unsigned char>(s[i + 1]) < 0xa0)) {
      return false;
    }
    for (size_t k = 1; k < n; ++k) {
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0U) != 0x80) {
        return false;
      }
    }
    i += n;
  }
  return true;
}

// The canary: an SQL function registered on every connection this process opens (also the
// analyzer library's own). SQL stored in a file that calls it proves it ran.
std::atomic<int> g_canary_calls{0};
std::string g_canary_marker; // a file the canary creates, as "SQL that writes a file" would

void canary(sqlite3_context* ctx, int /*argc*/, sqlite3_value** /*argv*/) {
  ++g_canary_calls;
  std::ofstream(g_canary_marker) << "executed\n";
  sqlite3_result_int(ctx, 1);
}

int register_canary(sqlite3* db, const char** /*err*/, const void* /*api*/) {
  return sqlite3_create_function(
      db, "canary", -1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, canary, nullptr, nullptr);
}

// NOLINTNEXTLINE(cppcoreguidelines-pro-type-reinterpret-cast): sqlite3_auto_extension's type
auto* const k_canary_entry = reinterpret_cast<void (*)()>(register_canary);

} // namespace

TEST_CASE("hostile: garbage, zero-length and truncated files are exit 3, one line", "[hostile]") {
  test::TempDir dir;
  const std::string good = capture(dir.path() / "good");
  REQUIRE(analyze_bin({"report", good}).code == 0);
  const auto size = static_cast<size_t>(fs::file_size(good));
  const std::string bytes = test::read_file(good);

  const std::string garbage = (dir.path() / "garbage.sqlite").string();
  {
    std::mt19937 rng(42); // NOLINT(cert-msc32-c,cert-msc51-cpp): reproducible garbage
    std::string junk(size, '\0');
    std::generate(junk.begin(), junk.end(), [&rng] { return static_cast<char>(rng()); });
    std::ofstream(garbage, std::ios::binary) << junk;
  }
  check_refused_by_all(garbage, "not a readable SQLite database");

  // Garbage after a valid SQLite header: the header says it is a database, the pages do not.
  const std::string bad_pages = (dir.path() / "bad-pages.sqlite").string();
  {
    std::string b = bytes;
    for (size_t i = 4096; i < b.size(); i += 7) {
      b[i] = static_cast<char>(b[i] ^ 0x5a);
    }
    std::ofstream(bad_pages, std::ios::binary) << b;
  }
  check_refused({"report", bad_pages}, bad_pages, "malformed"); // the schema page is corrupt
  check_refused({"info", bad_pages}, bad_pages, "malformed");

  const std::string empty = (dir.path() / "empty.sqlite").string();
  { const std::ofstream create(empty); }
  check_refused_by_all(empty, "empty file (0 bytes)");

  for (const size_t cut : {size_t{1},
                           size_t{16},
                           size_t{99},
                           size_t{100},
                           size_t{2048},
                           size_t{4096},
                           size_t{4097},
                           size / 2,
                           size - 4096}) {
    const std::string t = (dir.path() / ("cut-" + std::to_string(cut) + ".sqlite")).string();
    std::ofstream(t, std::ios::binary) << bytes.substr(0, cut);
    check_refused_by_all(t, "");
  }
}

TEST_CASE("hostile: a future schema, a foreign file, a missing table, a wrong column type",
          "[hostile]") {
  test::TempDir dir;
  SECTION("user_version 99") {
    const std::string f = capture(dir.path());
    patch(f, "PRAGMA user_version = 99");
    check_refused_by_all(f,
                         "schema version 99 is newer than this sockrewind supports ("
                             + std::to_string(store::k_schema_version) + ")");
  }
  SECTION("another application's SQLite file") {
    const std::string f = capture(dir.path());
    patch(f, "PRAGMA application_id = 1234");
    check_refused_by_all(f, "not a sockrewind file (application_id 1234)");
  }
  SECTION("a dropped table") {
    const std::string f = capture(dir.path());
    patch(f, "DROP TABLE limit_runs");
    check_refused_by_all(f, "missing table limit_runs");
  }
  SECTION("a view in place of a table") {
    const std::string f = capture(dir.path());
    patch(f, "DROP TABLE limit_runs; CREATE VIEW limit_runs AS SELECT 1 AS first_snapshot_id");
    check_refused_by_all(f, "limit_runs is a view, not a table");
  }
  SECTION("a view of the schema replaced by the file's own") {
    const std::string f = capture(dir.path());
    patch(f,
          "DROP VIEW sockets_v; DROP VIEW socket_owners; DROP VIEW sockets; "
          "CREATE VIEW sockets AS SELECT * FROM sock_runs");
    check_refused_by_all(f, "view sockets differs from the schema");
  }
  SECTION("a view of the schema dropped") {
    const std::string f = capture(dir.path());
    patch(f, "DROP VIEW counters_v; DROP VIEW counters");
    check_refused_by_all(f, "missing view counters");
  }
  SECTION("a dropped column") {
    const std::string f = capture(dir.path());
    patch(f,
          "DROP VIEW sockets_v; DROP VIEW processes; ALTER TABLE proc_ident DROP COLUMN cmdline");
    check_refused_by_all(f, "table proc_ident lacks column cmdline");
  }
  SECTION("a column declared with another type") {
    // The table stays STRICT, so only the declared type tells: text where integers go.
    const std::string f = capture(dir.path());
    patch(f,
          "PRAGMA writable_schema = ON; "
          "UPDATE sqlite_schema SET sql = replace(sql, 'rx_queue          INTEGER', "
          "'rx_queue          TEXT') WHERE name = 'sock_runs'");
    {
      store::Db db = store::Db::create(f);
      REQUIRE(db.query_int("SELECT count(*) FROM pragma_table_xinfo('sock_runs') "
                           "WHERE name = 'rx_queue' AND type = 'TEXT'")
              == 1);
    }
    check_refused_by_all(f, "column sock_runs.rx_queue is declared TEXT, expected INTEGER");
  }
  SECTION("a generated column in place of a stored one") {
    const std::string f = capture(dir.path());
    patch(f,
          "PRAGMA writable_schema = ON; "
          "UPDATE sqlite_schema SET sql = replace(sql, 'comm        TEXT    NOT NULL', "
          "'comm TEXT GENERATED ALWAYS AS (printf(''%.*c'', 100000000, ''x'')) VIRTUAL') "
          "WHERE name = 'proc_ident'");
    {
      store::Db db = store::Db::create(f);
      REQUIRE(db.query_int("SELECT hidden FROM pragma_table_xinfo('proc_ident') "
                           "WHERE name = 'comm'")
              == 2);
    }
    check_refused_by_all(f, "column proc_ident.comm is generated");
  }
  SECTION("a snapshot clock out of range") {
    const std::string f = capture(dir.path());
    patch(f, "UPDATE snapshots SET boottime_ns = -9223372036854775808 WHERE snapshot_id = 2");
    check_refused_by_all(f, "has a clock value out of range");
  }
}

TEST_CASE("hostile: views, triggers, indexes and extra tables in a file never run", "[hostile]") {
  test::TempDir dir;
  g_canary_marker = (dir.path() / "canary-ran").string();
  REQUIRE(sqlite3_auto_extension(k_canary_entry) == SQLITE_OK);
  const std::string f = capture(dir.path());
  patch(f,
        "DROP VIEW sockets_v; "
        "CREATE VIEW sockets_v AS SELECT canary('view') AS x; "
        "CREATE TRIGGER evil_trigger AFTER INSERT ON meta BEGIN SELECT canary('trigger'); END; "
        "CREATE TRIGGER evil_update BEFORE UPDATE ON sock_runs BEGIN SELECT canary('t2'); END; "
        "ALTER TABLE proc_ident ADD COLUMN evil_text TEXT DEFAULT 'x'; "
        "CREATE INDEX extra_index ON proc_ident(comm, cmdline); "
        "CREATE TABLE extra_table (x TEXT); INSERT INTO extra_table VALUES ('ignored')");
  g_canary_calls = 0;
  fs::remove(g_canary_marker);

  // Positive control: an ordinary connection runs them (so the canary would tell).
  {
    store::Db plain = store::Db::create(f);
    (void)plain.query_int("SELECT x FROM sockets_v");
    CHECK(g_canary_calls > 0);
    CHECK(fs::exists(g_canary_marker));
  }
  g_canary_calls = 0;
  fs::remove(g_canary_marker);

  // The analyzer's own connection: defensive settings on, read-only. Views are on (schema v3
  // reads through its own views, whose text validation pins), but a view of the file's that
  // calls a function is refused: trusted_schema is off.
  {
    store::Db db = analyze::open_validated(f);
    sqlite3* h = db.handle();
    int v = -1;
    CHECK((sqlite3_db_config(h, SQLITE_DBCONFIG_DEFENSIVE, -1, &v) == SQLITE_OK && v == 1));
    CHECK((sqlite3_db_config(h, SQLITE_DBCONFIG_TRUSTED_SCHEMA, -1, &v) == SQLITE_OK && v == 0));
    CHECK((sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, -1, &v) == SQLITE_OK
           && v == 0));
    CHECK((sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_TRIGGER, -1, &v) == SQLITE_OK && v == 0));
    CHECK((sqlite3_db_config(h, SQLITE_DBCONFIG_ENABLE_VIEW, -1, &v) == SQLITE_OK && v == 1));
    CHECK(sqlite3_db_readonly(h, "main") == 1);
    CHECK_THROWS_AS(db.exec("INSERT INTO meta VALUES ('k', 'v')"), store::DbError);
    CHECK_THROWS_WITH(db.prepare("SELECT x FROM sockets_v"),
                      Catch::Contains("unsafe use of canary()"));
    CHECK_THROWS_AS(db.exec("SELECT load_extension('/nonexistent/evil.so')"), store::DbError);
    CHECK_THROWS_AS(db.exec("ATTACH 'file:/tmp/evil.db' AS evil"), store::DbError);
  }

  // Every command, in process (the canary is registered on the library's connections too).
  std::ostringstream out;
  analyze::write_info({f}, out);
  analyze::ReportOptions rep;
  rep.paths = {f};
  CHECK(analyze::write_report(rep, out) == 0);
  rep.format = analyze::Format::json;
  CHECK(analyze::write_report(rep, out) == 0);
  analyze::ShowOptions show;
  show.path = f;
  analyze::write_show(show, out);
  analyze::TimelineOptions tl;
  tl.paths = {f};
  tl.pid = 4242;
  analyze::write_timeline(tl, out);
  analyze::DiffOptions diff;
  diff.paths = {f};
  diff.from = "1";
  diff.to = "6";
  analyze::write_diff(diff, out);
  CHECK_THAT(out.str(), Catch::Contains("accept_queue_backlog"));
  CHECK(g_canary_calls == 0);
  CHECK_FALSE(fs::exists(g_canary_marker));
  REQUIRE(sqlite3_cancel_auto_extension(k_canary_entry) == 1);

  // The real binary accepts the file (extras are ignored) and finds what is in it.
  const Run r = analyze_bin({"report", f});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("accept_queue_backlog"));

  // An extra generated column or partial index calling a function: SQLite's trusted_schema=off
  // refuses the schema rather than run it (exit 3). The binary has no canary(), and never
  // selects the column nor evaluates the index condition, so there it is ignored.
  REQUIRE(sqlite3_auto_extension(k_canary_entry) == SQLITE_OK);
  patch(f,
        "ALTER TABLE sock_runs ADD COLUMN evil INTEGER GENERATED ALWAYS AS (canary('gen')); "
        "CREATE INDEX evil_index ON proc_ident(pid) WHERE canary('partial') > 0");
  g_canary_calls = 0;
  fs::remove(g_canary_marker);
  rep.format = analyze::Format::text;
  CHECK_THROWS_WITH(analyze::write_report(rep, out), Catch::Contains("unsafe use of canary()"));
  CHECK(g_canary_calls == 0);
  CHECK_FALSE(fs::exists(g_canary_marker));
  REQUIRE(sqlite3_cancel_auto_extension(k_canary_entry) == 1);
  const Run r2 = analyze_bin({"report", f}); // no canary() there: never called, so ignored
  INFO(r2.err);
  CHECK(r2.code == 0);
}

TEST_CASE("hostile: a WAL-mode file is read without writing beside it", "[hostile]") {
  test::TempDir dir;
  const std::string f = capture(dir.path());
  patch(f, "PRAGMA journal_mode = WAL");
  REQUIRE(test::read_file(f)[18] == 2);
  const Run r = analyze_bin({"report", f});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK_FALSE(fs::exists(f + "-wal"));
  CHECK_FALSE(fs::exists(f + "-shm"));
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path())) {
    ++entries;
  }
  CHECK(entries == 1);
}

TEST_CASE("hostile: a 1 MiB cmdline or unix path and a huge PATH are exit 3", "[hostile]") {
  test::TempDir dir;
  SECTION("cmdline") {
    const std::string f = capture(dir.path());
    patch(f, "UPDATE proc_ident SET cmdline = printf('%.*c', 1048576, 'x')");
    // show lists comm only and info neither: they never read the cmdline.
    check_refused_by_readers(f, "longer than this analyzer reads (64 KiB", {"show", "info"});
  }
  SECTION("unix path") {
    const std::string f = capture(dir.path());
    patch(f, "UPDATE sock_ident SET path = printf('/%.*c', 1048576, 'p') WHERE family = 1");
    // timeline --port 7000 decodes only the sockets of that port (SQL), never a unix path.
    check_refused_by_readers(f, "longer than this analyzer reads (64 KiB", {"info", "timeline"});
  }
  SECTION("host name") {
    const std::string f = capture(dir.path());
    patch(f, "UPDATE snapshots SET host = printf('%.*c', 100000, 'h')");
    check_refused_by_all(f, "longer than this analyzer reads (64 KiB");
  }
  SECTION("a PATH argument longer than PATH_MAX") {
    std::string p;
    while (p.size() < 8192) {
      p += "deep/";
    }
    p += "x.sqlite";
    check_refused({"info", p}, p, "File name too long");
    check_refused({"report", p}, p, "File name too long");
  }
}

TEST_CASE("hostile: no snapshots, no *.sqlite files, a FIFO", "[hostile]") {
  test::TempDir dir;
  const fs::path none = dir.path() / "none";
  fs::create_directories(none / "sub");
  std::ofstream(none / "notes.txt") << "not a capture\n";
  std::ofstream(none / ".hidden.sqlite") << "skipped: a collector temporary file\n";
  check_refused_by_all(none.string(), "no *.sqlite files in this directory");

  // A valid file without snapshots.
  const std::string hollow = (dir.path() / "hollow.sqlite").string();
  {
    store::Db db = store::Db::create(hollow);
    store::migrate(db);
  }
  check_refused_by_all(hollow, "no snapshots in this file");

  // A FIFO would block open() forever: refused when named, skipped in a directory.
  const std::string fifo = (dir.path() / "fifo.sqlite").string();
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  check_refused_by_all(fifo, "not a regular file or directory");
  const fs::path with_fifo = dir.path() / "with-fifo";
  fs::create_directories(with_fifo);
  const std::string good = capture(with_fifo);
  REQUIRE(::mkfifo((with_fifo / "pipe.sqlite").c_str(), 0600) == 0);
  const Run r = analyze_bin({"info", with_fifo.string()});
  INFO(r.err);
  CHECK(r.code == 0);
  CHECK_THAT(r.out, Catch::Contains("files: 1, snapshots: 6"));
}

TEST_CASE("hostile: one bad file among good ones fails the run, naming the bad file", "[hostile]") {
  test::TempDir dir;
  const fs::path d = dir.path() / "captures";
  fs::create_directories(d / "later");
  const std::string good = capture(d);
  const std::string bad = (d / "later" / "zz-truncated.sqlite").string();
  std::ofstream(bad, std::ios::binary) << test::read_file(good).substr(0, 3000);
  for (const auto& args : all_commands(d.string())) {
    check_refused(args, bad, "");
  }
  // Named one by one: the same, whichever comes first.
  check_refused({"report", bad, good}, bad, "");
  check_refused({"report", good, bad}, bad, "");
  // Without the bad file the directory is fine.
  fs::remove(bad);
  CHECK(analyze_bin({"report", d.string()}).code == 0);
}

TEST_CASE("hostile: text output escapes control bytes from comm, cmdline, paths and hosts",
          "[hostile]") {
  test::TempDir dir;
  const std::string f =
      capture(dir.path(), k_hostile, k_hostile + " --arg", "/tmp/" + k_hostile, "host" + k_hostile);
  const std::vector<std::vector<std::string>> text_commands = {
      {"info", f},
      {"report", f},
      {"show", f},
      {"timeline", f, "--pid", "4242"},
      {"timeline", f, "--port", "7000"},
      {"timeline", f, "--socket", "78"},
      {"diff", f, "--from", "1", "--to", "2"}};
  for (const auto& args : text_commands) {
    const Run r = analyze_bin(args);
    INFO(args[0] + " " + args[2 % args.size()] + "\n" + r.out + r.err);
    CHECK(r.code == 0);
    CHECK(terminal_safe(r.out));
    CHECK(terminal_safe(r.err));
    // Shown, escaped byte by byte.
    CHECK_THAT(
        r.out,
        Catch::Contains("ev\\x1b[2J\\x07\\x0d\\x01\\x1f\\x7f\\xc2\\x9b31m\\xff\\xfe\\xc3il"));
  }
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"report", f, "--format", "json"},
           {"show", f, "--format", "json"},
           {"timeline", f, "--pid", "4242", "--format", "json"},
           {"timeline", f, "--socket", "78", "--format", "json"},
           {"diff", f, "--from", "1", "--to", "2", "--format", "json"}}) {
    const Run r = analyze_bin(args);
    INFO(args[0] + "\n" + r.out + r.err);
    CHECK(r.code == 0);
    CHECK(std::all_of(r.out.begin(), r.out.end(), [](char c) {
      const auto b = static_cast<unsigned char>(c);
      return b < 0x7f && (b >= 0x20 || c == '\n');
    }));
    nlohmann::json doc;
    REQUIRE_NOTHROW(doc = nlohmann::json::parse(r.out));
    // The control characters survive, JSON-escaped; invalid UTF-8 becomes U+FFFD.
    CHECK_THAT(r.out, Catch::Contains("\\u001b[2J\\u0007\\r\\u0001\\u001f\\u007f\\u009b31m"));
    CHECK_THAT(r.out, Catch::Contains("\\ufffd"));
  }
  // The error line escapes too: a hostile file name.
  const std::string evil_name = (dir.path() / ("x" + k_hostile + ".sqlite")).string();
  std::ofstream(evil_name) << "garbage that is not a database, long enough to be read as one";
  const Run r = analyze_bin({"info", evil_name});
  CHECK(r.code == 3);
  CHECK(terminal_safe(r.err));
  CHECK_THAT(r.err, Catch::Contains("x" + analyze::escape_text(k_hostile) + ".sqlite: "));
}

TEST_CASE("hostile: escape_text", "[hostile]") {
  using analyze::escape_text;
  CHECK(escape_text("plain ascii, 1:2") == "plain ascii, 1:2");
  CHECK(escape_text("caf\xc3\xa9 \xe2\x89\xa5 \xf0\x9f\x90\x9b")
        == "caf\xc3\xa9 \xe2\x89\xa5 \xf0\x9f\x90\x9b");
  CHECK(escape_text(std::string("a\0b", 3)) == "a\\x00b");
  CHECK(escape_text("\x1b[2J\x07\r\n\t\x7f") == "\\x1b[2J\\x07\\x0d\\x0a\\x09\\x7f");
  CHECK(escape_text("\xc2\x9b\xc2\x85") == "\\xc2\\x9b\\xc2\\x85");          // C1 controls
  CHECK(escape_text("\xc2\xa0") == "\xc2\xa0");                              // U+00A0 is text
  CHECK(escape_text("\xc0\xaf\xe0\x80\xaf") == "\\xc0\\xaf\\xe0\\x80\\xaf"); // overlong
  CHECK(escape_text("\xed\xa0\x80") == "\\xed\\xa0\\x80");                   // a surrogate
  CHECK(escape_text("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");          // beyond U+10FFFF
  CHECK(escape_text("ab\xe2\x89") == "ab\\xe2\\x89");                        // truncated at the end
  CHECK(escape_text("\xff") == "\\xff");
}

TEST_CASE("hostile: an archive whose snapshots claim absurd socket counts is read as it is",
          "[hostile]") {
  // The load sizes its chunks from those counts (a hint only): an inflated one must neither
  // exhaust memory nor change what is read.
  test::TempDir dir;
  const std::string sample = std::string(SOCKREWIND_SOURCE_DIR) + "/samples/close-wait-leak.sqlite";
  const std::string pack = (dir.path() / "pack.sqlite").string();
  REQUIRE(analyze_bin({"pack", sample, "-o", pack}).code == 0);
  const Run before = analyze_bin({"report", pack, "--format", "json"});
  REQUIRE(before.code == 0);
  for (const char* claim : {"100000000000000", "4000000000000000000", "9223372036854775807"}) {
    INFO(claim);
    patch(pack, std::string("UPDATE snapshots SET sockets = ") + claim);
    const Run after = analyze_bin({"report", pack, "--format", "json"});
    INFO(after.err);
    CHECK(after.code == 0);
    CHECK(after.out == before.out);
  }
}
