// The fold (`sockrewind-collect --fold hour`) against the real binary, with bad input and faults:
// what it makes of the minute files of ended hours (one archive per host and hour, every
// snapshot once, the same findings), a damaged minute file, SIGKILL at random points of a fold,
// and a disk that fills up while the archive is written. Minute files of past hours are made by
// running the collector and renaming its files to the times of those hours, as a host that ran
// then would have them. The long version runs with SOCKREWIND_HARDENING_FOLD_KILLS.
#include "hardening/harness.hpp"
#include "live/netns.hpp"
#include "live/sockets.hpp"
#include "support.hpp"

#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <ctime>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>

using namespace sockrewind::test;
using sockrewind::store::Db;
namespace fs = std::filesystem;

namespace {

// a == b, except that the time-relative fields of a socket may differ by up to 50 ms.
bool same_evidence(const nlohmann::json& a, const nlohmann::json& b) {
  if (a.type() != b.type() || a.size() != b.size()) {
    return false;
  }
  if (a.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key())) {
        return false;
      }
      const nlohmann::json& other = b.at(it.key());
      const bool timed = it.key() == "last_data_recv_ms" || it.key() == "last_ack_recv_ms"
                         || it.key() == "expires_ms";
      if (timed && it->is_number() && other.is_number()) {
        if (std::abs(it->get<double>() - other.get<double>()) > 50) {
          return false;
        }
      } else if (!same_evidence(*it, other)) {
        return false;
      }
    }
    return true;
  }
  if (a.is_array()) {
    for (size_t i = 0; i < a.size(); ++i) {
      if (!same_evidence(a[i], b[i])) {
        return false;
      }
    }
    return true;
  }
  return a == b;
}

constexpr int64_t k_hour = 3600;

// One snapshot, as store::SnapshotKey identifies it across files.
using Key = std::tuple<std::string, std::string, int64_t>;

std::string str(const fs::path& p) {
  return p.string();
}

int64_t now_seconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

int64_t hour_of(int64_t t) {
  return t - t % k_hour;
}

// yyyymmddTHHMMSSZ of `t`.
std::string stamp(int64_t t) {
  const auto secs = static_cast<time_t>(t);
  tm utc{};
  gmtime_r(&secs, &utc);
  char buf[32];
  (void)std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &utc);
  return buf;
}

std::string archive_name(const std::string& host, int64_t hour) {
  return host + "-" + stamp(hour) + "-hour.sqlite";
}

// Close to the end of an hour, a run's own minute file could be folded before the test looks:
// wait for the next hour then.
void keep_clear_of_the_hour_end(int64_t margin_seconds) {
  const int64_t left = k_hour - now_seconds() % k_hour;
  if (left <= margin_seconds) {
    std::this_thread::sleep_for(std::chrono::seconds(left + 1));
  }
}

std::vector<Key> keys_of(const fs::path& file) {
  Db db = Db::open_readonly(str(file), false);
  std::vector<Key> keys;
  auto q = db.prepare("SELECT host, boot_id, boottime_ns FROM snapshots");
  while (q.step()) {
    keys.emplace_back(q.get_text(0), q.get_text(1), q.get_int(2));
  }
  return keys;
}

std::set<Key> key_set(const fs::path& file) {
  const std::vector<Key> v = keys_of(file);
  return {v.begin(), v.end()};
}

// How many times each snapshot occurs over the *.sqlite files in `dir`.
std::map<Key, int> key_counts(const fs::path& dir) {
  std::map<Key, int> counts;
  for (const std::string& name : list_dir(dir)) {
    if (ends_with(name, ".sqlite")) {
      for (const Key& k : keys_of(dir / name)) {
        ++counts[k];
      }
    }
  }
  return counts;
}

// `n` minute files of `count` snapshots each, made by the collector in `gen`, oldest first.
std::vector<fs::path>
make_minute_files(const fs::path& gen, const fs::path& logs, int n, int count) {
  std::vector<fs::path> files;
  for (int i = 0; i < n; ++i) {
    const RunResult r = run_cmd(collector({"--out",
                                           str(gen),
                                           "--netns",
                                           "self",
                                           "--count",
                                           std::to_string(count),
                                           "--interval",
                                           "0.02",
                                           "--quiet"}),
                                logs);
    INFO("stderr " << r.err);
    REQUIRE(r.code == 0);
    files.emplace_back(r.path());
  }
  return files;
}

// Copies `files` into `dir` under the minute names of the hour starting at `hour`, one a
// minute (from `first_minute` on); returns the names.
std::vector<std::string> place(const std::vector<fs::path>& files,
                               const fs::path& dir,
                               const std::string& host,
                               int64_t hour,
                               int first_minute = 0) {
  std::vector<std::string> names;
  for (size_t i = 0; i < files.size(); ++i) {
    const int64_t t = hour + 60 * (first_minute + static_cast<int64_t>(i)) + 7;
    REQUIRE(hour_of(t) == hour);
    names.push_back(host + "-" + stamp(t) + ".sqlite");
    fs::copy_file(files[i], dir / names.back());
  }
  return names;
}

std::set<Key> keys_of_all(const std::vector<fs::path>& files) {
  std::set<Key> all;
  for (const fs::path& f : files) {
    const std::set<Key> k = key_set(f);
    all.insert(k.begin(), k.end());
  }
  return all;
}

RunResult analyze(const std::vector<std::string>& args, const fs::path& logs) {
  std::vector<std::string> argv = {SOCKREWIND_ANALYZE_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_cmd(argv, logs);
}

// The findings of `report --format json` on `paths`, without what names the files read.
nlohmann::json findings(const std::vector<std::string>& paths, const fs::path& logs) {
  std::vector<std::string> args = {"report", "--format", "json"};
  args.insert(args.end(), paths.begin(), paths.end());
  const RunResult r = analyze(args, logs);
  INFO("report stderr " << r.err);
  REQUIRE(r.code == 0);
  const nlohmann::json doc = nlohmann::json::parse(r.out);
  REQUIRE(doc.contains("findings"));
  return doc["findings"];
}

std::vector<std::string> warning_lines(const RunResult& r) {
  std::vector<std::string> out;
  for (const std::string& l : r.err_lines()) {
    if (l.rfind("sockrewind-collect: warning: ", 0) == 0) {
      out.push_back(l);
    }
  }
  return out;
}

void copy_dir_files(const fs::path& from, const fs::path& to) {
  for (const std::string& name : list_dir(from)) {
    fs::copy_file(from / name, to / name);
  }
}

void empty_dir(const fs::path& dir) {
  for (const std::string& name : list_dir(dir)) {
    fs::remove(dir / name);
  }
}

} // namespace

// ---------------------------------------------------------------------------------------------
// What a fold makes.

TEST_CASE("fold::ended hours become one archive per host and hour, each snapshot once",
          "[hardening][fold]") {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  const fs::path gen = dir.path() / "gen";
  const fs::path plain = dir.path() / "plain"; // the minute files as they were, for the report
  const fs::path logs = dir.path() / "logs";
  for (const fs::path& d : {out, gen, plain, logs}) {
    fs::create_directories(d);
  }
  keep_clear_of_the_hour_end(30);
  const std::string host = hostname();
  const int64_t hour_a = hour_of(now_seconds()) - 26 * k_hour; // yesterday
  const int64_t hour_b = hour_a + k_hour;
  const int64_t hour_s = hour_a - 2 * k_hour; // the samples

  // This host's minute files of two ended hours.
  const std::vector<fs::path> made = make_minute_files(gen, logs, 12, 2);
  const std::vector<fs::path> in_a(made.begin(), made.begin() + 5);
  const std::vector<fs::path> in_b(made.begin() + 5, made.begin() + 10);
  place(in_a, out, host, hour_a);
  place(in_b, out, host, hour_b);
  // Two damaged ones in hour B: cut in half, and cut short inside the last page (its schema
  // still opens and validates; only its rows are broken).
  const std::vector<std::string> damaged = place({made[10], made[11]}, out, host, hour_b, 50);
  fs::resize_file(out / damaged[0], fs::file_size(out / damaged[0]) / 2);
  fs::resize_file(out / damaged[1], fs::file_size(out / damaged[1]) - 1500);

  // The samples: real captures of another host ("vm"), as its minute files of one hour.
  std::vector<fs::path> samples;
  for (const auto& e : fs::directory_iterator(fs::path(SOCKREWIND_SOURCE_DIR) / "samples")) {
    if (e.path().extension() == ".sqlite") {
      samples.push_back(e.path());
    }
  }
  std::sort(samples.begin(), samples.end());
  REQUIRE(samples.size() >= 5);
  std::set<std::string> sample_hosts;
  for (const Key& k : keys_of_all(samples)) {
    sample_hosts.insert(std::get<0>(k));
  }
  REQUIRE(sample_hosts.size() == 1);
  const std::string sample_host = *sample_hosts.begin();
  const std::vector<std::string> sample_names = place(samples, out, sample_host, hour_s);
  std::vector<std::string> plain_paths;
  for (const std::string& n : sample_names) {
    fs::copy_file(out / n, plain / n);
    plain_paths.push_back(str(plain / n));
  }

  const std::map<std::string, std::set<Key>> expected = {
      {archive_name(host, hour_a), keys_of_all(in_a)},
      {archive_name(host, hour_b), keys_of_all(in_b)},
      {archive_name(sample_host, hour_s), keys_of_all(samples)},
  };
  const std::vector<std::string> args = {
      "--out", str(out), "--netns", "self", "--quiet", "--fold", "hour"};

  const RunResult r = run_cmd(collector(args), logs);
  INFO("stderr " << r.err);
  REQUIRE(r.code == 0);
  const std::string own = fs::path(r.path()).filename().string();

  // Each damaged file: one warning line naming it; it stays as it was.
  const auto check_damaged_warnings = [&](const RunResult& run) {
    const std::vector<std::string> warnings = warning_lines(run);
    CHECK(warnings.size() == run.err_lines().size());
    REQUIRE(warnings.size() == damaged.size());
    for (size_t i = 0; i < damaged.size(); ++i) {
      INFO(warnings[i]);
      CHECK(warnings[i].find(str(out / damaged[i]) + " cannot be read") != std::string::npos);
      CHECK(warnings[i].find("left as it is") != std::string::npos);
    }
  };
  check_damaged_warnings(r);

  // What is left: the archives, the damaged files and this run's own minute file (the current
  // hour is not folded).
  std::set<std::string> want = {own, damaged[0], damaged[1]};
  for (const auto& [name, keys] : expected) {
    want.insert(name);
  }
  const std::vector<std::string> left = list_dir(out);
  CHECK(std::set<std::string>(left.begin(), left.end()) == want);
  CHECK(count_temp(out) == 0);
  CHECK(validated_snapshots(str(out / own)) == 1);

  for (const auto& [name, keys] : expected) {
    INFO("archive " << name);
    REQUIRE(fs::exists(out / name));
    CHECK(validated_snapshots(str(out / name)) == static_cast<int64_t>(keys.size()));
    CHECK(keys_of(out / name).size() == keys.size()); // no snapshot twice
    CHECK(key_set(out / name) == keys);
    const RunResult info = analyze({"info", str(out / name)}, logs);
    INFO("info stderr " << info.err);
    CHECK(info.code == 0);
    const RunResult report = analyze({"report", str(out / name)}, logs);
    INFO("report stderr " << report.err);
    CHECK(report.code == 0);
  }

  // The same findings from the archive as from the minute files it replaced.
  const nlohmann::json before = findings(plain_paths, logs);
  const nlohmann::json after = findings({str(out / archive_name(sample_host, hour_s))}, logs);
  CHECK(before.size() >= 5); // the samples' conditions are found at all
  const auto conclusions = [](nlohmann::json f) {
    for (nlohmann::json& one : f) {
      one.erase("evidence");
    }
    return f;
  };
  CHECK(conclusions(after) == conclusions(before));
  // The evidence too, value for value, but for the time-relative fields, which the archive
  // gives within the capture's own duration + 10 ms (schema/README.md, "Runs").
  CHECK(same_evidence(after, before));

  SECTION("new minute files of a folded hour are merged into its archive") {
    const std::vector<fs::path> more = make_minute_files(gen, logs, 3, 2);
    place(more, out, host, hour_a, 30);
    std::set<Key> want_a = expected.at(archive_name(host, hour_a));
    const std::set<Key> new_keys = keys_of_all(more);
    want_a.insert(new_keys.begin(), new_keys.end());
    REQUIRE(want_a.size() == expected.at(archive_name(host, hour_a)).size() + new_keys.size());

    const RunResult again = run_cmd(collector(args), logs);
    INFO("stderr " << again.err);
    REQUIRE(again.code == 0);
    check_damaged_warnings(again);
    want.insert(fs::path(again.path()).filename().string());
    const std::vector<std::string> now_left = list_dir(out);
    CHECK(std::set<std::string>(now_left.begin(), now_left.end()) == want);
    const fs::path a = out / archive_name(host, hour_a);
    CHECK(validated_snapshots(str(a)) == static_cast<int64_t>(want_a.size()));
    CHECK(key_set(a) == want_a);
    // The other archives were left alone.
    CHECK(key_set(out / archive_name(host, hour_b)) == expected.at(archive_name(host, hour_b)));
    CHECK(count_temp(out) == 0);
  }
}

// ---------------------------------------------------------------------------------------------
// The fold's own lock.

TEST_CASE("fold::a fold holds a lock of its own: runs do not wait for it, and each cleans only "
          "its own leftovers",
          "[hardening][fold]") {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  const fs::path gen = dir.path() / "gen";
  const fs::path logs = dir.path() / "logs";
  for (const fs::path& d : {out, gen, logs}) {
    fs::create_directories(d);
  }
  keep_clear_of_the_hour_end(30);
  const std::string host = hostname();
  const int64_t hour = hour_of(now_seconds()) - 3 * k_hour;
  const std::vector<fs::path> made = make_minute_files(gen, logs, 3, 2);
  const std::vector<std::string> minutes = place(made, out, host, hour);
  const std::string archive = archive_name(host, hour);
  // A killed minute run's temporary file, and a killed fold's.
  const std::string run_temp = "." + host + "-" + stamp(hour + 3000) + ".sqlite.tmp-999999";
  const std::string fold_temp = "." + archive + ".tmp-999998";
  std::ofstream(out / run_temp) << "partial";
  std::ofstream(out / fold_temp) << "partial";
  const auto minute_files_now = [&] {
    size_t n = 0;
    for (const std::string& name : list_dir(out)) {
      n += ends_with(name, ".sqlite") && !ends_with(name, "-hour.sqlite") ? 1U : 0U;
    }
    return n;
  };

  // Another fold holds the fold's lock: a run neither waits for it (--lock-wait 0 is about the
  // directory's lock, which is free) nor folds; it removes only a minute run's leftover.
  {
    const int fd =
        ::open(str(out / ".sockrewind-fold.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::flock(fd, LOCK_EX) == 0);
    const RunResult r = run_cmd(
        collector({"--out", str(out), "--netns", "self", "--fold", "hour", "--lock-wait", "0"}),
        logs);
    ::close(fd);
    INFO("stderr " << r.err);
    CHECK(r.code == 0);
    CHECK(r.err.find("fold skipped (another run is folding)") != std::string::npos);
    CHECK(warning_lines(r).empty());
    CHECK(!fs::exists(out / archive));
    for (const std::string& m : minutes) {
      CHECK(fs::exists(out / m));
    }
    CHECK(!fs::exists(out / run_temp));
    CHECK(fs::exists(out / fold_temp));
  }
  const size_t minute_files = minute_files_now();
  REQUIRE(minute_files == minutes.size() + 1); // the run's own file

  // The fold as a job of its own (--count 0): no new file; the hour folded; the killed fold's
  // temporary file removed.
  const RunResult f = run_cmd(
      collector({"--out", str(out), "--netns", "self", "--fold", "hour", "--count", "0"}), logs);
  INFO("stderr " << f.err);
  CHECK(f.code == 0);
  CHECK(f.out.empty());
  CHECK(warning_lines(f).empty());
  CHECK(f.err.find("folded 3 file(s) into 1 archive(s)") != std::string::npos);
  CHECK(minute_files_now() == 1);
  CHECK(!fs::exists(out / fold_temp));
  REQUIRE(fs::exists(out / archive));
  CHECK(key_set(out / archive) == keys_of_all(made));
  CHECK(count_temp(out) == 0);

  // --count 0 without a fold would do nothing: a usage error.
  const RunResult u =
      run_cmd(collector({"--out", str(out), "--netns", "self", "--count", "0"}), logs);
  CHECK(u.code == 2);
  CHECK(u.err_lines().size() == 1);
  CHECK(u.err.find("--count 0") != std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Killed at any moment of a fold.

TEST_CASE("fold::SIGKILL at random points of a fold loses no snapshot and leaves no debris",
          "[hardening][fold]") {
  TempDir dir;
  const fs::path out = dir.path() / "out";
  const fs::path gen = dir.path() / "gen";
  const fs::path pristine = dir.path() / "pristine";
  const fs::path logs = dir.path() / "logs";
  for (const fs::path& d : {out, gen, pristine, logs}) {
    fs::create_directories(d);
  }
  const int kills = env_int("SOCKREWIND_HARDENING_FOLD_KILLS", 50);
  const int per_hour = env_int("SOCKREWIND_HARDENING_FOLD_FILES", 15);
  keep_clear_of_the_hour_end(120);
  const std::string host = hostname();
  const int64_t first_hour = hour_of(now_seconds()) - 30 * k_hour;

  // Three ended hours of minute files.
  const std::vector<fs::path> made = make_minute_files(gen, logs, 3 * per_hour, 2);
  for (int h = 0; h < 3; ++h) {
    place({made.begin() + h * per_hour, made.begin() + (h + 1) * per_hour},
          pristine,
          host,
          first_hour + h * k_hour);
  }
  const std::set<Key> prepared = keys_of_all(made);
  REQUIRE(prepared.size() == made.size() * 2);
  const std::vector<std::string> args = {
      "--out", str(out), "--netns", "self", "--quiet", "--fold", "hour"};
  const auto archives_in = [&] {
    size_t n = 0;
    for (const std::string& name : list_dir(out)) {
      n += ends_with(name, "-hour.sqlite") ? 1U : 0U;
    }
    return n;
  };

  // One complete run: how long it takes, and that it folds all three hours.
  copy_dir_files(pristine, out);
  const RunResult first = run_cmd(collector(args), logs);
  INFO("first run stderr " << first.err);
  REQUIRE(first.code == 0);
  REQUIRE(first.err.empty());
  REQUIRE(archives_in() == 3);
  const double span = first.seconds * 1.2;

  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> when(0.0, span);
  int finished = 0;
  int before_fold = 0;   // no archive and no temporary file yet
  int while_writing = 0; // an archive's temporary file left, no archive yet
  int after_rename = 0;  // at least one archive in place
  int with_twice = 0;    // killed between a rename and the deletions: snapshots in two files
  for (int i = 0; i < kills; ++i) {
    empty_dir(out);
    copy_dir_files(pristine, out);
    Child c(collector(args), logs);
    std::this_thread::sleep_for(std::chrono::duration<double>(when(rng)));
    ::kill(c.pid(), SIGKILL);
    const RunResult r = c.wait();
    INFO("kill " << i << " seed " << seed << " exit " << r.code << " stderr " << r.err);
    CHECK((r.code == 0 || r.code == 128 + SIGKILL));
    const size_t archives = archives_in();
    const size_t temp = count_temp(out);
    if (r.code == 0) {
      ++finished;
    } else if (archives > 0) {
      ++after_rename;
    } else if (temp > 0) {
      ++while_writing;
    } else {
      ++before_fold;
    }
    // Every file under a final name opens and validates; every snapshot is in one at least.
    validate_dir(out);
    std::map<Key, int> counts = key_counts(out);
    bool twice = false;
    for (const Key& k : prepared) {
      INFO("snapshot " << std::get<1>(k) << " " << std::get<2>(k));
      CHECK(counts[k] >= 1);
      twice = twice || counts[k] > 1;
    }
    with_twice += twice ? 1 : 0;

    // The next complete run finishes the job: each snapshot in exactly one file, no debris.
    const RunResult next = run_cmd(collector(args), logs);
    INFO("next run stderr " << next.err);
    REQUIRE(next.code == 0);
    CHECK(next.err.empty());
    CHECK(archives_in() == 3);
    CHECK(count_temp(out) == 0);
    for (const std::string& name : list_dir(out)) {
      INFO("left in the directory: " << name);
      CHECK(ends_with(name, ".sqlite"));
    }
    validate_dir(out);
    counts = key_counts(out);
    for (const auto& [k, n] : counts) {
      INFO("snapshot " << std::get<1>(k) << " " << std::get<2>(k));
      CHECK(n == 1);
    }
    for (const Key& k : prepared) {
      CHECK(counts.count(k) == 1);
    }
  }
  std::printf("figure: fold kills=%d minute_files=%zu snapshots=%zu run_seconds=%.3f "
              "finished_before_kill=%d killed_before_fold=%d killed_while_writing=%d "
              "killed_after_a_rename=%d with_snapshots_twice=%d seed=%u\n",
              kills,
              made.size(),
              prepared.size(),
              first.seconds,
              finished,
              before_fold,
              while_writing,
              after_rename,
              with_twice,
              seed);
  // The kills reached into the fold, not only the capture before it.
  CHECK(while_writing + after_rename > 0);
}

// ---------------------------------------------------------------------------------------------
// Disk full while the archive is written.

TEST_CASE("fold::a full disk during a fold leaves the minute files, one line, nothing partial",
          "[hardening][fold]") {
  require_root("mounting a small tmpfs and a quiet netns");
  TempDir dir;
  const fs::path gen = dir.path() / "gen";
  const fs::path trial = dir.path() / "trial";
  const fs::path logs = dir.path() / "logs";
  for (const fs::path& d : {gen, trial, logs}) {
    fs::create_directories(d);
  }
  keep_clear_of_the_hour_end(60);
  const std::string host = hostname();
  const int64_t hour = hour_of(now_seconds()) - 5 * k_hour;
  const TestNetns ns; // the runs' own minute files: small and all of one size

  // Minute files that weigh: many sockets held by this process while they are taken.
  std::vector<fs::path> made;
  {
    rlimit lim{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
    const rlimit saved = lim;
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, 8192);
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);
    std::vector<Sock> socks;
    for (rlim_t i = 0; i + 200 < lim.rlim_cur; i += 2) {
      int sv[2];
      REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
      socks.emplace_back(sv[0]);
      socks.emplace_back(sv[1]);
    }
    made = make_minute_files(gen, logs, 6, 1);
    socks.clear();
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &saved) == 0);
  }
  const auto run = [&](const fs::path& out) {
    return run_cmd({"/usr/sbin/ip",
                    "netns",
                    "exec",
                    ns.name(),
                    SOCKREWIND_COLLECT_BIN,
                    "--out",
                    str(out),
                    "--netns",
                    "self",
                    "--quiet",
                    "--fold",
                    "hour"},
                   logs);
  };

  // On a roomy disk: how large the archive and a quiet minute file are.
  const std::vector<std::string> minutes = place(made, trial, host, hour);
  const RunResult t = run(trial);
  INFO("trial stderr " << t.err);
  REQUIRE(t.code == 0);
  const std::string archive = archive_name(host, hour);
  const uint64_t archive_size = fs::file_size(trial / archive);
  const uint64_t quiet_size = fs::file_size(t.path());
  INFO("archive " << archive_size << " bytes, a quiet minute file " << quiet_size << " bytes");
  REQUIRE(archive_size > quiet_size + 128 * 1024);

  uint64_t minutes_size = 0;
  for (const fs::path& f : made) {
    minutes_size += fs::file_size(f);
  }
  const SmallTmpfs small(dir.path() / "fs",
                         std::to_string((minutes_size + archive_size) / 1024 + 4096) + "k");
  place(made, small.path(), host, hour);
  // Room for this run's minute file and half the way to the archive.
  const uint64_t room = quiet_size + (archive_size - quiet_size) / 2;
  {
    std::ofstream filler(small.path() / "filler", std::ios::binary);
    const std::string chunk(4096, 'f');
    const uint64_t fill = small.free_bytes() - room;
    for (uint64_t done = 0; done < fill; done += chunk.size()) {
      filler.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    }
  }
  INFO("free " << small.free_bytes());

  // The minute file is written (exit 0); the fold says in one line that it could not.
  const RunResult r = run(small.path());
  INFO("stderr " << r.err);
  CHECK(r.code == 0);
  const std::vector<std::string> lines = r.err_lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].rfind("sockrewind-collect: warning: fold: ", 0) == 0);
  CHECK(lines[0].find(str(small.path() / archive) + " not written") != std::string::npos);
  CHECK((lines[0].find("disk is full") != std::string::npos
         || lines[0].find("No space left") != std::string::npos));
  CHECK(lines[0].find("its minute files stay") != std::string::npos);
  // Every minute file is still there and whole; no archive, no temporary file.
  std::set<std::string> want(minutes.begin(), minutes.end());
  want.insert("filler");
  want.insert(fs::path(r.path()).filename().string());
  const std::vector<std::string> left = list_dir(small.path());
  CHECK(std::set<std::string>(left.begin(), left.end()) == want);
  CHECK(count_temp(small.path()) == 0);
  for (size_t i = 0; i < made.size(); ++i) {
    CHECK(key_set(small.path() / minutes[i]) == key_set(made[i]));
  }
  validate_dir(small.path());

  // With room again, the next run folds them.
  fs::remove(small.path() / "filler");
  const RunResult again = run(small.path());
  INFO("stderr " << again.err);
  CHECK(again.code == 0);
  CHECK(again.err.empty());
  CHECK(key_set(small.path() / archive) == keys_of_all(made));
  for (const std::string& m : minutes) {
    CHECK_FALSE(fs::exists(small.path() / m));
  }
}
