// export --to clickhouse: the DDL, TSV escaping, the files written, bad input and atomic output.
// (The round trip through a real ClickHouse server is tests/fleet/clickhouse_roundtrip.sh.)
#include "support.hpp"

#include <sockrewind/analyze/export.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/pack.hpp>
#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <tuple>

using namespace sockrewind;
using namespace sockrewind::analyze;
namespace fs = std::filesystem;

namespace {

const std::string k_samples = SOCKREWIND_SOURCE_DIR "/samples/";

std::vector<std::string> lines_of(const fs::path& p) {
  std::istringstream in(test::read_file(p));
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) {
    out.push_back(line);
  }
  return out;
}

int64_t sqlite_count(const std::string& file, const std::string& sql) {
  sockrewind::store::Db db = open_validated(file);
  return db.query_int(sql);
}

// The columns of `table` in the DDL (without the MATERIALIZED time).
std::vector<std::string> ddl_columns(const std::string& table) {
  const std::string ddl = clickhouse_ddl();
  const size_t at = ddl.find("CREATE TABLE IF NOT EXISTS " + table + " (");
  REQUIRE(at != std::string::npos);
  const std::string body = ddl.substr(at, ddl.find(") ENGINE", at) - at);
  std::vector<std::string> cols;
  const std::regex col(R"(\n  ([a-z_0-9]+) ([A-Za-z0-9()]+)(,| MATERIALIZED|\n|$))");
  for (auto it = std::sregex_iterator(body.begin(), body.end(), col); it != std::sregex_iterator();
       ++it) {
    if ((*it)[3] != " MATERIALIZED") {
      cols.push_back((*it)[1].str() + " " + (*it)[2].str());
    }
  }
  return cols;
}

size_t tabs(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\t'));
}

std::vector<std::string> dir_entries(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

} // namespace

TEST_CASE("export: the DDL is versioned MergeTree for exactly the exported tables", "[export]") {
  const std::string ddl = clickhouse_ddl();
  CHECK(ddl.rfind("-- sockrewind ClickHouse schema " + std::to_string(k_clickhouse_schema_version)
                      + " ",
                  0)
        == 0);
  const std::vector<std::string> tables = clickhouse_tables();
  CHECK(std::find(tables.begin(), tables.end(), "sockets") != tables.end());
  CHECK(tables.front() == "sockrewind_schema");
  size_t creates = 0;
  for (size_t at = ddl.find("CREATE TABLE"); at != std::string::npos;
       at = ddl.find("CREATE TABLE", at + 1)) {
    ++creates;
  }
  CHECK(creates == tables.size());
  for (const std::string& t : tables) {
    INFO(t);
    CHECK(ddl.find("CREATE TABLE IF NOT EXISTS " + t + " (") != std::string::npos);
    if (t == "sockrewind_schema") {
      continue;
    }
    const std::vector<std::string> cols = ddl_columns(t);
    REQUIRE(cols.size() > 4);
    CHECK(cols[0] == "host String");
    CHECK(cols[1] == "boot_id String");
    CHECK(cols[2] == "boottime_ns UInt64");
    CHECK(cols[3] == "realtime_ns UInt64");
  }
  // ClickHouse 18.16: no DateTime64, and the sorting key has no Nullable column.
  CHECK(ddl.find("DateTime64") == std::string::npos);
  CHECK(ddl.find("ENGINE = MergeTree() PARTITION BY toDate(time) ORDER BY (host, time, state, "
                 "inode)")
        != std::string::npos);
  const std::vector<std::string> sockets = ddl_columns("sockets");
  for (const char* want : {"cookie Nullable(UInt64)",
                           "inode UInt64",
                           "local_addr Nullable(String)",
                           "remote_addr Nullable(String)",
                           "ti_bytes_acked Nullable(UInt64)",
                           "netns UInt64",
                           "state Int64",
                           "pid Nullable(Int64)"}) {
    CHECK(std::find(sockets.begin(), sockets.end(), want) != sockets.end());
  }
  const std::vector<std::string> counters = ddl_columns("counters");
  CHECK(std::find(counters.begin(), counters.end(), "value UInt64") != counters.end());
}

TEST_CASE("export: TSV values are escaped as ClickHouse reads them", "[export]") {
  std::string out;
  append_tsv_escaped(out, std::string("a\tb\nc\\d\re\0f\bg\fh", 15));
  CHECK(out == "a\\tb\\nc\\\\d\\re\\0f\\bg\\fh");
  out.clear();
  append_tsv_escaped(out, "caf\xc3\xa9 \xff @abstract /run/x.sock 'q' \"d\"");
  CHECK(out == "caf\xc3\xa9 \xff @abstract /run/x.sock 'q' \"d\"");
}

TEST_CASE("export: one TSV file per table, each snapshot once, rows as in the files", "[export]") {
  test::TempDir tmp;
  const std::string a = k_samples + "close-wait-leak.sqlite";
  const std::string b = k_samples + "udp-drops.sqlite";
  ExportOptions opts;
  opts.paths = {a, b, a};
  opts.out = (tmp.path() / "out").string();
  const ExportResult r = write_export(opts);
  CHECK(r.duplicates == static_cast<size_t>(sqlite_count(a, "SELECT count(*) FROM snapshots")));
  CHECK(r.files == 2);
  std::vector<std::string> want{"out"};
  CHECK(dir_entries(tmp.path()) == want); // no temporary directory left
  std::vector<std::string> files;
  for (const std::string& t : clickhouse_tables()) {
    files.push_back(t + ".tsv");
  }
  std::sort(files.begin(), files.end());
  CHECK(dir_entries(tmp.path() / "out") == files);
  for (const char* t : {"snapshots", "sockets", "processes", "counters", "limits"}) {
    INFO(t);
    const std::string sql = std::string("SELECT count(*) FROM ") + t;
    const std::vector<std::string> rows = lines_of(tmp.path() / "out" / (std::string(t) + ".tsv"));
    CHECK(rows.size() == static_cast<size_t>(sqlite_count(a, sql) + sqlite_count(b, sql)));
    CHECK(r.rows.at(t) == rows.size());
    const size_t cols = ddl_columns(t).size();
    for (const std::string& row : rows) {
      REQUIRE(tabs(row) + 1 == cols);
    }
  }
  const std::vector<std::string> owners = lines_of(tmp.path() / "out" / "owners.tsv");
  CHECK(
      owners.size()
      == static_cast<size_t>(sqlite_count(a, "SELECT count(*) FROM sockets WHERE pid IS NOT NULL")
                             + sqlite_count(a, "SELECT count(*) FROM extra_owners")
                             + sqlite_count(b, "SELECT count(*) FROM sockets WHERE pid IS NOT NULL")
                             + sqlite_count(b, "SELECT count(*) FROM extra_owners")));
  CHECK(test::read_file(tmp.path() / "out" / "sockrewind_schema.tsv")
            .rfind(std::to_string(k_clickhouse_schema_version) + "\tsockrewind-analyze ", 0)
        == 0);
  // A CLOSE-WAIT socket of the sample, its cookie and addresses as the file has them.
  sockrewind::store::Db db = open_validated(a);
  sockrewind::store::Stmt st =
      db.prepare("SELECT s.cookie, la.text, s.local_port, ra.text, s.remote_port FROM sockets s "
                 "JOIN addrs la ON la.addr_id = s.local_addr_id JOIN addrs ra ON ra.addr_id = "
                 "s.remote_addr_id WHERE s.state = 8 AND s.cookie IS NOT NULL LIMIT 1");
  REQUIRE(st.step());
  const std::string needle = "\t" + std::to_string(static_cast<uint64_t>(st.get_int(0))) + "\t";
  const std::string local = "\t" + st.get_text(1) + "\t" + std::to_string(st.get_int(2)) + "\t"
                            + st.get_text(3) + "\t" + std::to_string(st.get_int(4)) + "\t";
  bool found = false;
  for (const std::string& row : lines_of(tmp.path() / "out" / "sockets.tsv")) {
    found =
        found || (row.find(needle) != std::string::npos && row.find(local) != std::string::npos);
  }
  CHECK(found);
}

// The sockets rows a file's `sockets` view gives, formatted by the DDL's types (the oracle of
// the export, which reads schema-3 files from their run tables instead of the view).
std::vector<std::string> sockets_from_view(const std::string& file) {
  sockrewind::store::Db db = open_validated(file);
  std::map<int64_t, std::string> netns;
  std::map<int64_t, std::string> addrs;
  for (sockrewind::store::Stmt st = db.prepare("SELECT netns_id, inode FROM netns"); st.step();) {
    netns[st.get_int(0)] = std::to_string(static_cast<uint64_t>(st.get_int(1)));
  }
  for (sockrewind::store::Stmt st = db.prepare("SELECT addr_id, text FROM addrs"); st.step();) {
    addrs[st.get_int(0)] = st.get_text(1);
  }
  std::vector<std::pair<std::string, std::string>> cols; // view column, DDL type
  std::string sql = "SELECT sn.host, sn.boot_id, sn.boottime_ns, sn.realtime_ns";
  for (const std::string& c : ddl_columns("sockets")) {
    if (c.rfind("host ", 0) == 0 || c.rfind("boot_id ", 0) == 0 || c.rfind("boottime_ns ", 0) == 0
        || c.rfind("realtime_ns ", 0) == 0) {
      continue;
    }
    std::string name = c.substr(0, c.find(' '));
    name = name == "netns" ? "netns_id" : name;
    name = name == "local_addr" || name == "remote_addr" ? name + "_id" : name;
    cols.emplace_back(name, c.substr(c.find(' ') + 1));
    sql += ", s." + name;
  }
  sql += " FROM sockets s JOIN snapshots sn USING (snapshot_id)";
  std::vector<std::string> out;
  for (sockrewind::store::Stmt st = db.prepare(sql); st.step();) {
    std::string row = st.get_text(0) + "\t" + st.get_text(1) + "\t" + std::to_string(st.get_int(2))
                      + "\t" + std::to_string(st.get_int(3));
    for (size_t i = 0; i < cols.size(); ++i) {
      const auto& [name, type] = cols[i];
      const int at = static_cast<int>(i + 4);
      row += '\t';
      if (st.is_null(at)) {
        row += "\\N";
      } else if (name == "netns_id") {
        row += netns.at(st.get_int(at));
      } else if (name == "local_addr_id" || name == "remote_addr_id") {
        append_tsv_escaped(row, addrs.at(st.get_int(at)));
      } else if (type.find("String") != std::string::npos) {
        append_tsv_escaped(row, st.get_text(at));
      } else if (type.find("UInt64") != std::string::npos) {
        row += std::to_string(static_cast<uint64_t>(st.get_int(at)));
      } else {
        row += std::to_string(st.get_int(at));
      }
    }
    out.push_back(std::move(row));
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST_CASE("export: a packed file's runs give the rows of its sockets view, value for value",
          "[export]") {
  test::TempDir tmp;
  PackOptions pack;
  pack.paths = {k_samples + "close-wait-leak.sqlite",
                k_samples + "healthy-echo-churn.sqlite",
                k_samples + "unix-listener-backlog.sqlite"};
  pack.out = (tmp.path() / "pack.sqlite").string();
  write_pack(pack);
  // Runs over several snapshots, some with time-relative fields the view moves.
  CHECK(sqlite_count(pack.out,
                     "SELECT count(*) FROM sock_runs WHERE last_snapshot_id > first_snapshot_id")
        > 100);
  CHECK(sqlite_count(pack.out,
                     "SELECT count(*) FROM sock_runs WHERE last_snapshot_id > first_snapshot_id "
                     "AND ti_last_data_recv_ms IS NOT NULL")
        > 0);
  CHECK(sqlite_count(pack.out,
                     "SELECT count(*) FROM sock_runs WHERE last_snapshot_id > first_snapshot_id "
                     "AND expires_ms IS NOT NULL AND timer > 0")
        > 0);
  ExportOptions opts;
  opts.paths = {pack.out};
  opts.out = (tmp.path() / "out").string();
  opts.jobs = 4; // the file in parts
  const ExportResult r = write_export(opts);
  std::vector<std::string> rows = lines_of(tmp.path() / "out" / "sockets.tsv");
  std::sort(rows.begin(), rows.end());
  const std::vector<std::string> want = sockets_from_view(pack.out);
  REQUIRE(rows.size() == want.size());
  CHECK(r.rows.at("sockets") == want.size());
  size_t differ = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (rows[i] != want[i] && differ++ < 3) {
      CHECK(rows[i] == want[i]);
    }
  }
  CHECK(differ == 0);
  CHECK(lines_of(tmp.path() / "out" / "owners.tsv").size()
        == static_cast<size_t>(
            sqlite_count(pack.out, "SELECT count(*) FROM sockets WHERE pid IS NOT NULL")
            + sqlite_count(pack.out, "SELECT count(*) FROM extra_owners")));
  // One file read in parts by several workers (on a machine with 2 CPUs or more) gives the
  // rows one worker gives, and so do both ways of reading the sockets' identity (formatted
  // once per identity, or joined to every run).
  using Cache = ExportOptions::IdentityCache;
  for (const auto& [jobs, cache, name] : {std::tuple{size_t{1}, Cache::automatic, "one"},
                                          std::tuple{size_t{4}, Cache::always, "always"},
                                          std::tuple{size_t{4}, Cache::never, "never"}}) {
    INFO(name);
    ExportOptions other = opts;
    other.jobs = jobs;
    other.identity_cache = cache;
    other.out = (tmp.path() / name).string();
    write_export(other);
    for (const std::string& t : clickhouse_tables()) {
      INFO(t);
      std::vector<std::string> a = lines_of(tmp.path() / "out" / (t + ".tsv"));
      std::vector<std::string> b = lines_of(tmp.path() / name / (t + ".tsv"));
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      CHECK(a == b);
    }
  }
}

TEST_CASE("export: a bad file is exit 3 naming it, and nothing is written", "[export]") {
  test::TempDir tmp;
  const fs::path bad = tmp.path() / "bad.sqlite";
  { std::ofstream(bad) << "not a database, just text that is long enough to have a header"; }
  const fs::path out = tmp.path() / "out";
  const test::Run r = test::run_with_timeout({SOCKREWIND_ANALYZE_BIN,
                                              "export",
                                              k_samples + "udp-drops.sqlite",
                                              bad.string(),
                                              "--to",
                                              "clickhouse",
                                              "--out",
                                              out.string()});
  CHECK(r.code == 3);
  CHECK(r.err.find(bad.string()) != std::string::npos);
  CHECK(dir_entries(tmp.path()) == std::vector<std::string>{"bad.sqlite"});
}

TEST_CASE("export: a failure part-way leaves no output and no temporary directory", "[export]") {
  test::TempDir tmp;
  // Valid to open and index; its last socket names a namespace the file does not have, found
  // only while the sockets are written (after the first file's rows).
  const fs::path broken = tmp.path() / "broken.sqlite";
  fs::copy_file(k_samples + "close-wait-leak.sqlite", broken);
  {
    sockrewind::store::Db db = sockrewind::store::Db::create(broken.string());
    db.exec("UPDATE sockets SET netns_id = 999999 WHERE sock_id = (SELECT max(sock_id) FROM "
            "sockets)");
  }
  const fs::path out = tmp.path() / "out";
  const test::Run r = test::run_with_timeout({SOCKREWIND_ANALYZE_BIN,
                                              "export",
                                              k_samples + "udp-drops.sqlite",
                                              broken.string(),
                                              "--to",
                                              "clickhouse",
                                              "--jobs",
                                              "1",
                                              "--out",
                                              out.string()});
  CHECK(r.code == 3);
  CHECK(r.err.find(broken.string()) != std::string::npos);
  CHECK(dir_entries(tmp.path()) == std::vector<std::string>{"broken.sqlite"});
}

TEST_CASE("export: an existing DIR is refused (exit 2) and left as it was", "[export]") {
  test::TempDir tmp;
  const fs::path out = tmp.path() / "out";
  fs::create_directory(out);
  { std::ofstream(out / "keep.txt") << "mine"; }
  const test::Run r = test::run_with_timeout({SOCKREWIND_ANALYZE_BIN,
                                              "export",
                                              k_samples + "udp-drops.sqlite",
                                              "--to",
                                              "clickhouse",
                                              "--out",
                                              out.string()});
  CHECK(r.code == 2);
  CHECK(dir_entries(out) == std::vector<std::string>{"keep.txt"});
  CHECK(dir_entries(tmp.path()) == std::vector<std::string>{"out"});
  // --ddl needs neither PATH nor --out; without --ddl both are required.
  const test::Run ddl =
      test::run_with_timeout({SOCKREWIND_ANALYZE_BIN, "export", "--to", "clickhouse", "--ddl"});
  CHECK(ddl.code == 0);
  CHECK(ddl.out == clickhouse_ddl());
  CHECK(test::run_with_timeout({SOCKREWIND_ANALYZE_BIN, "export", "--to", "clickhouse"}).code == 2);
}

TEST_CASE("export: killed at any moment, DIR is absent or complete", "[export]") {
  test::TempDir tmp;
  const std::string in = k_samples + "close-wait-leak.sqlite";
  const auto rows = static_cast<size_t>(sqlite_count(in, "SELECT count(*) FROM sockets"));
  size_t complete = 0;
  for (const char* delay : {"0.005", "0.01", "0.02", "0.03", "0.05", "0.08", "5"}) {
    INFO(delay);
    const fs::path out = tmp.path() / (std::string("out-") + delay);
    const test::CmdResult r = test::run_cmd_output(
        std::string("timeout -s KILL ") + delay + " " SOCKREWIND_ANALYZE_BIN " export "
        + test::shell_quote(in) + " --to clickhouse --out " + test::shell_quote(out.string())
        + " 2>/dev/null");
    (void)r; // killed or not: what counts is what is left
    if (!fs::exists(out)) {
      continue;
    }
    ++complete;
    CHECK(lines_of(out / "sockets.tsv").size() == rows);
    for (const std::string& t : clickhouse_tables()) {
      CHECK(fs::exists(out / (t + ".tsv")));
    }
  }
  CHECK(complete >= 1); // the run without a deadline
  // Only DIRs under their final names and, from killed runs, hidden ".out-*.tmp-PID" ones.
  for (const std::string& e : dir_entries(tmp.path())) {
    CHECK((e.rfind("out-", 0) == 0
           || (e.rfind(".out-", 0) == 0 && e.find(".tmp-") != std::string::npos)));
  }
  // The next export of a DIR removes what killed ones of that DIR left, and nothing else.
  fs::create_directories(tmp.path() / ".again.tmp-999999999" / "sub");
  fs::create_directories(tmp.path() / ".other.tmp-999999999");
  const test::CmdResult again = test::run_cmd_output(
      SOCKREWIND_ANALYZE_BIN " export " + test::shell_quote(in) + " --to clickhouse --out "
      + test::shell_quote((tmp.path() / "again").string()) + " 2>&1");
  CHECK(again.status == 0);
  CHECK(fs::exists(tmp.path() / "again" / "sockets.tsv"));
  CHECK(!fs::exists(tmp.path() / ".again.tmp-999999999"));
  CHECK(fs::exists(tmp.path() / ".other.tmp-999999999"));
}
