// Retention and --nice against the real collector: --keep-days and --max-bytes delete exactly the
// collector's own old files in --out and nothing else (look-alike names, symlinks, foreign
// SQLite files, directories, FIFOs, other owners, anything outside --out); the new file always
// survives; a run that fails for lack of space still prunes; --nice lowers the run's CPU and IO
// priority. Root is needed only for the other-owner file and the full-disk case.
#include "hardening/harness.hpp"
#include "support.hpp"

#include <catch2/catch.hpp>

#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <array>
#include <cstring>
#include <ctime>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

using namespace sockrewind::test;
namespace fs = std::filesystem;

namespace {

std::string str(const fs::path& p) {
  return p.string();
}

int64_t now_seconds() {
  return static_cast<int64_t>(std::time(nullptr));
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

// A file of `size` bytes that starts with a SQLite header carrying `app_id` at offset 68.
void make_sqlite_like(const fs::path& p, size_t size, const char* app_id = "SKRW") {
  std::string bytes(std::max<size_t>(size, 100), '\0');
  const char magic[] = "SQLite format 3";
  std::memcpy(bytes.data(), magic, sizeof magic);
  std::memcpy(bytes.data() + 68, app_id, 4);
  std::ofstream(p, std::ios::binary) << bytes;
  REQUIRE(fs::file_size(p) == bytes.size());
}

void make_text(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

// Everything under `root` (not following symlinks): path → type, size, mtime and content.
std::map<std::string, std::string> tree(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator();
       ++it) {
    struct stat st {};

    REQUIRE(::lstat(it->path().c_str(), &st) == 0);
    std::string v = std::to_string(st.st_mode) + " " + std::to_string(st.st_size) + " "
                    + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
    if (S_ISREG(st.st_mode)) {
      v += " " + read_file(it->path());
    } else if (S_ISLNK(st.st_mode)) {
      v += " -> " + fs::read_symlink(it->path()).string();
    }
    out[fs::relative(it->path(), root).string()] = v;
  }
  return out;
}

std::set<std::string> names_in(const fs::path& dir) {
  const std::vector<std::string> v = list_dir(dir);
  return {v.begin(), v.end()};
}

// The summary line (the last stderr line) of a run without --quiet.
std::string summary(const RunResult& r) {
  const std::vector<std::string> lines = r.err_lines();
  return lines.empty() ? std::string() : lines.back();
}

size_t warning_lines(const RunResult& r) {
  size_t n = 0;
  for (const std::string& l : r.err_lines()) {
    n += l.rfind("sockrewind-collect: warning: ", 0) == 0 ? 1U : 0U;
  }
  return n;
}

} // namespace

TEST_CASE("retention::--keep-days deletes only the collector's own old files", "[retention]") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "out";
  const fs::path outside = tmp.path() / "outside";
  fs::create_directories(dir);
  fs::create_directories(outside);
  const int64_t now = now_seconds();
  const int64_t old = now - 3 * 86400;

  // Deleted: the collector's files (any host, -N) older than a day.
  const std::set<std::string> doomed = {
      "h-" + stamp(old) + ".sqlite",
      "h-" + stamp(old) + "-2.sqlite",
      "other-host-" + stamp(old - 86400) + ".sqlite",
  };
  for (const std::string& n : doomed) {
    make_sqlite_like(dir / n, 8192);
  }
  // Kept: recent collector files and every look-alike.
  make_sqlite_like(dir / ("h-" + stamp(now - 3600) + ".sqlite"), 8192);
  make_sqlite_like(dir / ("h-" + stamp(old) + ".sqlite.bak"), 8192);
  make_sqlite_like(dir / ("h-" + stamp(old) + "-02.sqlite"), 8192);
  make_sqlite_like(dir / (".h-" + stamp(old) + ".sqlite"), 8192);
  make_sqlite_like(dir / ("h-" + stamp(old).substr(0, 15) + ".sqlite"), 8192); // no Z
  make_text(dir / "notes.txt", "keep me\n");
  // A symlink named like an old collector file, to a sockrewind file outside DIR.
  make_sqlite_like(outside / "target.sqlite", 8192);
  make_sqlite_like(outside / ("h-" + stamp(old) + ".sqlite"), 8192);
  fs::create_symlink(outside / "target.sqlite", dir / ("h-" + stamp(old + 1) + ".sqlite"));
  // A dangling one and one to a directory.
  fs::create_symlink(outside / "missing", dir / ("h-" + stamp(old + 2) + ".sqlite"));
  fs::create_symlink(outside, dir / ("h-" + stamp(old + 3) + ".sqlite"));
  // Matching names that are not sockrewind files: another SQLite application, text, empty.
  make_sqlite_like(dir / ("h-" + stamp(old + 4) + ".sqlite"), 8192, "ABCD");
  make_text(dir / ("h-" + stamp(old + 5) + ".sqlite"), "SQLite format 3 but not really\n");
  make_text(dir / ("h-" + stamp(old + 6) + ".sqlite"), "");
  // A directory with a matching name holding a matching file; a subdirectory likewise.
  fs::create_directories(dir / ("h-" + stamp(old + 7) + ".sqlite"));
  make_sqlite_like(dir / ("h-" + stamp(old + 7) + ".sqlite") / ("h-" + stamp(old) + ".sqlite"),
                   8192);
  fs::create_directories(dir / "sub");
  make_sqlite_like(dir / "sub" / ("h-" + stamp(old) + ".sqlite"), 8192);
  // A FIFO with a matching name: never opened in a way that blocks, never deleted.
  REQUIRE(::mkfifo(str(dir / ("h-" + stamp(old + 8) + ".sqlite")).c_str(), 0600) == 0);
  if (geteuid() == 0) {
    // A sockrewind file of another owner: not one this collector wrote.
    const fs::path theirs = dir / ("h-" + stamp(old + 9) + ".sqlite");
    make_sqlite_like(theirs, 8192);
    REQUIRE(::chown(theirs.c_str(), 65534, 65534) == 0);
  }

  std::set<std::string> expected = names_in(dir);
  for (const std::string& n : doomed) {
    expected.erase(n);
  }
  const auto outside_before = tree(outside);
  const auto sub_before = tree(dir / "sub");

  const RunResult r =
      run_cmd(collector({"--out", str(dir), "--netns", "self", "--keep-days", "1"}), tmp.path());
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  const fs::path written = r.path();
  REQUIRE(written.parent_path() == dir);
  REQUIRE(fs::is_regular_file(written));
  CHECK(validated_snapshots(str(written)) == 1);
  expected.insert(written.filename().string());

  CHECK(names_in(dir) == expected);
  CHECK(tree(outside) == outside_before);
  CHECK(tree(dir / "sub") == sub_before);
  CHECK(summary(r).find(", pruned 3 file(s), ") != std::string::npos);
  CHECK(warning_lines(r) == 0);

  // Again: nothing more is old enough; the previous run's file survives.
  const RunResult again =
      run_cmd(collector({"--out", str(dir), "--netns", "self", "--keep-days", "1"}), tmp.path());
  REQUIRE(again.code == 0);
  CHECK(summary(again).find(", pruned 0 file(s), ") != std::string::npos);
  expected.insert(fs::path(again.path()).filename().string());
  CHECK(names_in(dir) == expected);
}

TEST_CASE("retention::--max-bytes deletes the oldest until the rest fits but never the new file",
          "[retention]") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "out";
  const fs::path outside = tmp.path() / "outside";
  fs::create_directories(dir);
  fs::create_directories(outside);
  const int64_t now = now_seconds();
  constexpr uint64_t k_each = 64 * 1024;

  // Five of the collector's files, one minute apart, the oldest first.
  std::vector<std::string> own;
  for (int i = 5; i >= 1; --i) {
    own.push_back("h-" + stamp(now - 60 * i) + ".sqlite");
    make_sqlite_like(dir / own.back(), k_each);
  }
  // Look-alikes that neither count nor go: a large foreign file, a symlink to a large
  // sockrewind file outside, an older file of the right name in a subdirectory.
  make_sqlite_like(dir / ("h-" + stamp(now - 3600) + ".sqlite"), 4 << 20, "ABCD");
  make_sqlite_like(outside / "big.sqlite", 4 << 20);
  fs::create_symlink(outside / "big.sqlite", dir / ("h-" + stamp(now - 7200) + ".sqlite"));
  fs::create_directories(dir / "sub");
  make_sqlite_like(dir / "sub" / ("h-" + stamp(now - 7200) + ".sqlite"), k_each);
  const std::set<std::string> before = names_in(dir);
  const auto outside_before = tree(outside);
  const auto sub_before = tree(dir / "sub");

  SECTION("a limit that keeps some") {
    constexpr uint64_t k_limit = 200 * 1024;
    const RunResult r = run_cmd(
        collector({"--out", str(dir), "--netns", "self", "--max-bytes", "200K"}), tmp.path());
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    const fs::path written = r.path();
    REQUIRE(fs::is_regular_file(written));
    const uint64_t size = fs::file_size(written);
    // The newest k old files stay, k as large as fits beside the new file.
    const uint64_t fit = size >= k_limit ? 0 : (k_limit - size) / k_each;
    const size_t keep = std::min<size_t>(own.size(), fit);
    std::set<std::string> expected = before;
    for (size_t i = 0; i < own.size() - keep; ++i) {
      expected.erase(own[i]);
    }
    expected.insert(written.filename().string());
    INFO("new file " << size << " bytes, " << keep << " old kept");
    CHECK(names_in(dir) == expected);
    CHECK(summary(r).find(", pruned " + std::to_string(own.size() - keep) + " file(s), ")
          != std::string::npos);
    // Over the limit only when the new file alone is: then one warning says so.
    CHECK(warning_lines(r) == (size > k_limit ? 1U : 0U));
  }

  SECTION("a limit smaller than the new file: everything else goes with a warning") {
    const RunResult r =
        run_cmd(collector({"--out", str(dir), "--netns", "self", "--max-bytes", "1"}), tmp.path());
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    std::set<std::string> expected = before;
    for (const std::string& n : own) {
      expected.erase(n);
    }
    expected.insert(fs::path(r.path()).filename().string());
    CHECK(names_in(dir) == expected);
    CHECK(summary(r).find(", pruned 5 file(s), ") != std::string::npos);
    REQUIRE(warning_lines(r) == 1);
    CHECK(r.err.find("the newest file alone exceeds it") != std::string::npos);
  }

  SECTION("a large limit and --keep-days together: nothing to delete") {
    const RunResult r = run_cmd(collector({"--out",
                                           str(dir),
                                           "--netns",
                                           "self",
                                           "--keep-days",
                                           "7",
                                           "--max-bytes",
                                           "1G",
                                           "--quiet"}),
                                tmp.path());
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    CHECK(r.err.empty()); // --quiet: no summary, and no warning
    std::set<std::string> expected = before;
    expected.insert(fs::path(r.path()).filename().string());
    CHECK(names_in(dir) == expected);
  }

  CHECK(tree(outside) == outside_before);
  CHECK(tree(dir / "sub") == sub_before);
}

TEST_CASE("retention::hourly archives are pruned whole, oldest first by their name time",
          "[retention][fold]") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "out";
  fs::create_directories(dir);
  const int64_t now = now_seconds();
  const int64_t hour = now - now % 3600;
  const auto archive = [](int64_t t) { return "h-" + stamp(t) + "-hour.sqlite"; };
  constexpr uint64_t k_archive = 256 * 1024;
  constexpr uint64_t k_minute = 64 * 1024;

  SECTION("--keep-days") {
    const std::string old = archive(hour - 3 * 86400);
    const std::string recent = archive(hour - 2 * 3600);
    const std::string odd = "h-" + stamp(hour - 3 * 86400 + 1800) + "-hour.sqlite"; // not a name
    for (const std::string& n : {old, recent, odd}) {
      make_sqlite_like(dir / n, k_archive);
    }
    const RunResult r =
        run_cmd(collector({"--out", str(dir), "--netns", "self", "--keep-days", "1"}), tmp.path());
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    CHECK(names_in(dir)
          == std::set<std::string>{recent, odd, fs::path(r.path()).filename().string()});
    CHECK(summary(r).find(", pruned 1 file(s), ") != std::string::npos);
  }

  SECTION("--max-bytes") {
    // Oldest first by name time: archives and minute files interleaved.
    const std::vector<std::pair<std::string, uint64_t>> files = {
        {archive(hour - 5 * 3600), k_archive},
        {"h-" + stamp(hour - 4 * 3600 - 60) + ".sqlite", k_minute},
        {archive(hour - 4 * 3600), k_archive},
        {"h-" + stamp(hour - 4 * 3600 + 1800) + ".sqlite", k_minute},
        {archive(hour - 3 * 3600), k_archive},
    };
    for (const auto& [n, size] : files) {
      make_sqlite_like(dir / n, size);
    }
    constexpr uint64_t k_limit = 700 * 1024;
    const RunResult r = run_cmd(
        collector({"--out", str(dir), "--netns", "self", "--max-bytes", "700K"}), tmp.path());
    INFO("stderr: " << r.err);
    REQUIRE(r.code == 0);
    const std::string written = fs::path(r.path()).filename().string();
    uint64_t total = fs::file_size(r.path());
    for (const auto& [n, size] : files) {
      total += size;
    }
    // The oldest go until the rest fits; the new file stays.
    std::set<std::string> expected = {written};
    size_t deleted = 0;
    for (const auto& [n, size] : files) {
      if (total > k_limit) {
        total -= size;
        ++deleted;
      } else {
        expected.insert(n);
      }
    }
    INFO("new file " << fs::file_size(r.path()) << " bytes, " << deleted << " deleted");
    REQUIRE(deleted >= 1); // an archive went...
    REQUIRE(deleted < 5);  // ... and one stayed
    CHECK(names_in(dir) == expected);
    CHECK(summary(r).find(", pruned " + std::to_string(deleted) + " file(s), ")
          != std::string::npos);

    // A limit below the new file: every archive goes, the new file stays.
    const RunResult all =
        run_cmd(collector({"--out", str(dir), "--netns", "self", "--max-bytes", "1", "--quiet"}),
                tmp.path());
    INFO("stderr: " << all.err);
    REQUIRE(all.code == 0);
    CHECK(names_in(dir) == std::set<std::string>{fs::path(all.path()).filename().string()});
  }
}

TEST_CASE("retention::bad --keep-days and --max-bytes are usage errors", "[retention]") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "out";
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--keep-days", "0"},
           {"--keep-days", "-1"},
           {"--keep-days", "x"},
           {"--max-bytes", "0"},
           {"--max-bytes", "1.5G"},
           {"--max-bytes", "10X"},
           {"--max-bytes", ""},
       }) {
    std::vector<std::string> argv = {"--out", str(dir), "--netns", "self"};
    argv.insert(argv.end(), args.begin(), args.end());
    const RunResult r = run_cmd(collector(argv), tmp.path());
    INFO(args[0] << " '" << args[1] << "': " << r.err);
    CHECK(r.code == 2);
    CHECK_FALSE(fs::exists(dir)); // nothing created, nothing written
  }
}

TEST_CASE("retention::a run that fails for lack of space still prunes", "[retention]") {
  require_root("mounting a small tmpfs");
  TempDir tmp;
  const fs::path dir = tmp.path() / "small";
  fs::create_directories(dir);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, "size=256k,mode=0700") != 0) {
    skip_test("cannot mount a tmpfs: " + std::string(std::strerror(errno)));
  }

  struct Unmount {
    fs::path p;

    explicit Unmount(fs::path at) : p(std::move(at)) {}

    Unmount(const Unmount&) = delete;
    Unmount& operator=(const Unmount&) = delete;
    Unmount(Unmount&&) = delete;
    Unmount& operator=(Unmount&&) = delete;

    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{dir};

  // Fill it with old snapshots (as if --keep-days had been raised before): no room left.
  const int64_t old = now_seconds() - 30 * 86400;
  std::vector<std::string> olds;
  for (int i = 0;; ++i) {
    const std::string n = "h-" + stamp(old + i) + ".sqlite";
    std::string bytes(32 * 1024, '\0');
    std::memcpy(bytes.data(), "SQLite format 3", 16);
    std::memcpy(bytes.data() + 68, "SKRW", 4);
    std::ofstream f(dir / n, std::ios::binary);
    f << bytes;
    f.close();
    if (!f || fs::file_size(dir / n) != bytes.size()) {
      fs::remove(dir / n);
      break;
    }
    olds.push_back(n);
  }
  REQUIRE(olds.size() >= 4);

  const RunResult full = run_cmd(
      collector({"--out", str(dir), "--netns", "self", "--quiet", "--keep-days", "7"}), tmp.path());
  INFO("stderr: " << full.err);
  CHECK(full.code == 1);
  const std::vector<std::string> lines = full.err_lines();
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("no space left") != std::string::npos);
  CHECK(lines[0].find("(pruned " + std::to_string(olds.size()) + " file(s), ")
        != std::string::npos);
  CHECK(names_in(dir).empty());

  // The next run has room again.
  const RunResult next = run_cmd(
      collector({"--out", str(dir), "--netns", "self", "--quiet", "--keep-days", "7"}), tmp.path());
  INFO("stderr: " << next.err);
  CHECK(next.code == 0);
  CHECK(next.err.empty());
}

TEST_CASE("retention::--nice runs the collector and its threads at nice 19 and idle IO",
          "[retention]") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "out";
  Child c(collector({"--out",
                     str(dir),
                     "--netns",
                     "self",
                     "--count",
                     "3",
                     "--interval",
                     "0.4",
                     "--nice",
                     "--quiet"}),
          tmp.path());
  // Field 19 of /proc/PID/task/TID/stat is the nice value (after the ") " that ends comm).
  const auto nice_of = [](const fs::path& stat_file) -> int {
    std::string s;
    try {
      s = read_file(stat_file);
    } catch (const std::exception&) {
      return -100;
    }
    std::istringstream in(s.substr(s.rfind(')') + 2));
    std::string field;
    for (int i = 3; i <= 19 && in >> field; ++i) {
    }
    return std::atoi(field.c_str());
  };
  constexpr long k_who_process = 1;
  constexpr long k_class_idle = 3;
  bool seen = false;
  bool all_nice = true;
  long io_class = -1;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (c.running() && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    // The lock file exists from after --nice took effect until the file is named.
    if (!fs::exists(dir / ".sockrewind.lock")) {
      continue;
    }
    const fs::path task = fs::path("/proc") / std::to_string(c.pid()) / "task";
    std::error_code ec;
    for (const auto& t : fs::directory_iterator(task, ec)) {
      const int n = nice_of(t.path() / "stat");
      if (n == -100) {
        continue; // the thread ended meanwhile
      }
      seen = true;
      all_nice = all_nice && n == 19;
      const long prio = ::syscall(SYS_ioprio_get, k_who_process, std::stol(t.path().filename()));
      if (prio >= 0) {
        io_class = prio >> 13;
        all_nice = all_nice && io_class == k_class_idle;
      }
    }
  }
  const RunResult r = c.wait();
  INFO("stderr: " << r.err);
  REQUIRE(r.code == 0);
  REQUIRE(seen);
  CHECK(all_nice);
  CHECK(io_class == k_class_idle);
}
