// `cmake --install` into a temporary prefix: every file where README.md ("Install and
// scheduling") says, the units and the cron example pointing at the installed binary with
// options it accepts, man pages that are roff, `systemd-analyze verify` clean (when present),
// and, as root, the unit's CapabilityBoundingSet= enough for a capture as complete as root's.
#include "hardening/harness.hpp"
#include "live/sockets.hpp"
#include "support.hpp"

#include <sockrewind/store/db.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <map>
#include <sstream>

using namespace sockrewind::test;
namespace fs = std::filesystem;

namespace {

bool executable(const fs::path& p) {
  struct stat st {};

  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111) == 0111;
}

// The value of `key=` in a unit file (its last occurrence, as systemd reads it).
std::string unit_value(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string value;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(key + "=", 0) == 0) {
      value = line.substr(key.size() + 1);
    }
  }
  return value;
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) {
    out.push_back(w);
  }
  return out;
}

std::optional<fs::path> find_program(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"}) {
    const fs::path p = fs::path(dir) / name;
    if (executable(p)) {
      return p;
    }
  }
  return std::nullopt;
}

// Installs the build tree into `prefix`. cmake --install writes into the build tree too
// (install_manifest.txt, the units configured for the prefix): skip when it cannot.
void install_into(const fs::path& prefix, const fs::path& logs) {
  if (::access(SOCKREWIND_BINARY_DIR, W_OK) != 0) {
    skip_test(std::string("cmake --install needs to write to the build tree ")
              + SOCKREWIND_BINARY_DIR);
  }
  const RunResult r = run_cmd(
      {SOCKREWIND_CMAKE_COMMAND, "--install", SOCKREWIND_BINARY_DIR, "--prefix", prefix.string()},
      logs);
  INFO("cmake --install: " << r.out << r.err);
  REQUIRE(r.code == 0);
}

// (source/kind → count) of the capture issues whose kind is "denied", and the share of sockets
// with an owner, in the file at `path`.
std::pair<std::map<std::string, int64_t>, double> denials(const std::string& path) {
  sockrewind::store::Db db = sockrewind::store::Db::open_readonly(path, false);
  std::map<std::string, int64_t> out;
  auto q = db.prepare(
      "SELECT source || '/' || kind, sum(count) FROM capture_issues WHERE kind = 'denied' "
      "GROUP BY 1");
  while (q.step()) {
    out[q.get_text(0)] = q.get_int(1);
  }
  const double owned =
      static_cast<double>(db.query_int("SELECT count(*) FROM sockets WHERE pid IS NOT NULL"));
  const double all = static_cast<double>(db.query_int("SELECT count(*) FROM sockets"));
  return {out, all > 0 ? owned / all : 0.0};
}

} // namespace

TEST_CASE("install::cmake --install puts every file where documented", "[install]") {
  TempDir tmp;
  const fs::path prefix = tmp.path() / "prefix";
  install_into(prefix, tmp.path());
  const fs::path bin = prefix / "bin";

  // Binaries.
  CHECK(executable(bin / "sockrewind-collect"));
  CHECK(executable(bin / "sockrewind-analyze"));

  // Man pages: roff made from --help, documenting the options.
  for (const std::string name : {"sockrewind-collect", "sockrewind-analyze"}) {
    const fs::path page = prefix / "share/man/man1" / (name + ".1");
    INFO(page);
    REQUIRE(fs::is_regular_file(page));
    const std::string text = read_file(page);
    CHECK(text.size() > 1000);
    std::string upper = name;
    std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
    CHECK(text.find("\n.TH " + upper + " 1 ") != std::string::npos);
    CHECK(text.find("\n.SH NAME\n") != std::string::npos);
    CHECK(text.find("\n.SH DESCRIPTION\n") != std::string::npos);
    if (const auto groff = find_program("groff")) {
      // -ww: every warning; -z: no output. A clean page says nothing.
      const RunResult r =
          run_cmd({groff->string(), "-man", "-Tutf8", "-ww", "-z", page.string()}, tmp.path());
      CHECK(r.code == 0);
      CHECK(r.err.empty());
      const RunResult text_out = run_cmd(
          {groff->string(), "-man", "-Tascii", "-P-c", "-P-b", "-P-u", page.string()}, tmp.path());
      REQUIRE(text_out.code == 0);
      CHECK(text_out.out.find("--help") != std::string::npos);
      if (name == "sockrewind-collect") {
        CHECK(text_out.out.find("--keep-days") != std::string::npos);
        CHECK(text_out.out.find("--max-bytes") != std::string::npos);
        CHECK(text_out.out.find("--nice") != std::string::npos);
      } else {
        CHECK(text_out.out.find("--fail-on") != std::string::npos); // report's own --help
      }
    }
  }

  // systemd units, with the installed binary in ExecStart=.
  const fs::path units = prefix / "lib/systemd/system";
  const std::string service = read_file(units / "sockrewind-collect.service");
  const std::string timer = read_file(units / "sockrewind-collect.timer");
  CHECK(service.find('@') == std::string::npos); // every @VAR@ replaced
  const std::vector<std::string> exec = words(unit_value(service, "ExecStart"));
  REQUIRE(exec.size() > 1);
  CHECK(exec[0] == (bin / "sockrewind-collect").string());
  const std::vector<std::string> exec_args(exec.begin() + 1, exec.end());
  for (const std::string w : {"--quiet", "--keep-days", "--max-bytes"}) {
    CHECK(std::find(exec_args.begin(), exec_args.end(), w) != exec_args.end());
  }
  CHECK(unit_value(service, "Type") == "oneshot");
  CHECK(unit_value(service, "Nice") == "19");
  CHECK(unit_value(service, "IOSchedulingClass") == "idle");
  CHECK(unit_value(service, "StateDirectory") == "sockrewind");
  CHECK(unit_value(service, "ProtectSystem") == "strict");
  CHECK(unit_value(timer, "OnCalendar") == "minutely");
  CHECK(unit_value(timer, "Persistent") == "false");
  CHECK(unit_value(timer, "WantedBy") == "timers.target");
  // The minute unit does not fold (the timer would skip the minutes a fold takes): a unit of
  // its own does, hourly, with nothing but its directory.
  CHECK(std::find(exec_args.begin(), exec_args.end(), "--fold") == exec_args.end());
  const std::string fold_service = read_file(units / "sockrewind-fold.service");
  const std::string fold_timer = read_file(units / "sockrewind-fold.timer");
  CHECK(fold_service.find("@CMAKE_") == std::string::npos); // @system-service is systemd's
  const std::vector<std::string> fold_exec = words(unit_value(fold_service, "ExecStart"));
  REQUIRE(fold_exec.size() > 1);
  CHECK(fold_exec[0] == (bin / "sockrewind-collect").string());
  CHECK(unit_value(fold_service, "ExecStart").find("--count 0 --fold hour") != std::string::npos);
  CHECK(unit_value(fold_service, "Type") == "oneshot");
  CHECK(unit_value(fold_service, "CapabilityBoundingSet").empty());
  CHECK(unit_value(fold_service, "ReadWritePaths") == "/var/lib/sockrewind");
  CHECK(unit_value(fold_timer, "OnCalendar") == "*-*-* *:02:00");
  CHECK(unit_value(fold_timer, "WantedBy") == "timers.target");

  // The cron.d example, one entry: every minute, as root, the installed binary.
  const std::string cron = read_file(prefix / "share/doc/sockrewind/examples/sockrewind.cron");
  std::string entry;
  std::istringstream in(cron);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') {
      CHECK(entry.empty()); // only one
      entry = line;
    }
  }
  CHECK(entry.rfind("* * * * * root nice -n 19 ionice -c3 " + (bin / "sockrewind-collect").string()
                        + " --quiet --fold hour --keep-days 7",
                    0)
        == 0);
  CHECK(ends_with(entry, " >/dev/null"));

  // The units' and the cron entry's options are accepted by the installed binary (--out and
  // --netns self added so that it writes here, quickly).
  const auto run_unit_command = [&](std::vector<std::string> argv, const fs::path& out) {
    const auto it = std::find(argv.begin(), argv.end(), "--out");
    if (it != argv.end()) {
      argv.erase(it, it + 2);
    }
    argv.insert(argv.end(), {"--out", out.string(), "--netns", "self"});
    return run_cmd(argv, tmp.path());
  };
  {
    const fs::path out = tmp.path() / "from-unit";
    const RunResult r = run_unit_command(exec, out);
    INFO("stderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(r.err.empty());
    CHECK(list_dir(out).size() == 1);
  }
  {
    // The fold unit's command: no new file in an empty directory, and no complaint.
    const fs::path out = tmp.path() / "from-fold-unit";
    const RunResult r = run_unit_command(fold_exec, out);
    INFO("stderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(r.err.empty());
    CHECK(r.out.empty());
    CHECK(list_dir(out).empty());
  }
  {
    const fs::path out = tmp.path() / "from-cron";
    std::string command = entry.substr(std::string("* * * * * root ").size());
    command.insert(command.rfind(" >/dev/null"), " --out " + out.string() + " --netns self");
    const RunResult r = run_cmd({"/bin/sh", "-c", command}, tmp.path());
    INFO("command: " << command << "\nstderr: " << r.err);
    CHECK(r.code == 0);
    CHECK(r.err.empty());
    CHECK(list_dir(out).size() == 1);
  }

  // systemd's own check of the units (unknown keys, bad values, ExecStart= not executable).
  if (const auto analyze = find_program("systemd-analyze")) {
    const RunResult r = run_cmd({analyze->string(),
                                 "verify",
                                 "--man=no",
                                 (units / "sockrewind-collect.service").string(),
                                 (units / "sockrewind-collect.timer").string(),
                                 (units / "sockrewind-fold.service").string(),
                                 (units / "sockrewind-fold.timer").string()},
                                tmp.path());
    INFO("systemd-analyze verify: " << r.out << r.err);
    CHECK(r.code == 0);
    CHECK(r.err.empty());
  } else {
    WARN("systemd-analyze not found: the units were not verified by systemd");
  }
}

TEST_CASE("install::the unit's capability bounding set keeps a complete capture", "[install]") {
  require_root("dropping capabilities");
  const auto setpriv = find_program("setpriv");
  if (!setpriv) {
    skip_test("setpriv (util-linux) not found");
  }
  TempDir tmp;
  const fs::path prefix = tmp.path() / "prefix";
  install_into(prefix, tmp.path());
  const std::string service = read_file(prefix / "lib/systemd/system/sockrewind-collect.service");
  // CAP_SYS_PTRACE ... → "-all,+sys_ptrace,..." for setpriv.
  std::string bounding = "-all";
  for (std::string cap : words(unit_value(service, "CapabilityBoundingSet"))) {
    REQUIRE(cap.rfind("CAP_", 0) == 0);
    cap = cap.substr(4);
    std::transform(cap.begin(), cap.end(), cap.begin(), ::tolower);
    bounding += ",+" + cap;
  }
  REQUIRE(bounding != "-all");
  const std::string collect = (prefix / "bin/sockrewind-collect").string();
  // Sockets of this (fully privileged) process, so that there are owners to find even on a
  // fresh machine whose only other sockets belong to processes nobody may inspect.
  const sockrewind::test::Sock listener = sockrewind::test::tcp_listener(0, 8);
  const uint16_t port = sockrewind::test::local_port(listener);
  const sockrewind::test::Sock client = sockrewind::test::tcp_connect(port);
  const sockrewind::test::Sock server = sockrewind::test::tcp_accept(listener);

  const RunResult full =
      run_cmd({collect, "--out", (tmp.path() / "full").string(), "--quiet"}, tmp.path());
  const RunResult bounded = run_cmd({setpriv->string(),
                                     "--bounding-set=" + bounding,
                                     "--inh-caps=-all",
                                     collect,
                                     "--out",
                                     (tmp.path() / "bounded").string(),
                                     "--quiet"},
                                    tmp.path());
  INFO("full: " << full.err << "\nbounded (" << bounding << "): " << bounded.err);
  REQUIRE(full.code == 0);
  REQUIRE(bounded.code == 0);
  const auto [full_denied, full_owned] = denials(full.path());
  const auto [bounded_denied, bounded_owned] = denials(bounded.path());
  for (const auto& [what, n] : bounded_denied) {
    INFO(what << ": " << n << " bounded, "
              << (full_denied.count(what) != 0 ? full_denied.at(what) : 0) << " as full root");
    // Processes come and go between the two runs: a little slack.
    CHECK(n <= (full_denied.count(what) != 0 ? full_denied.at(what) : 0) + 2);
  }
  CHECK(full_owned > 0);
  CHECK(bounded_owned >= full_owned - 0.02);

  // And the check has teeth: without CAP_SYS_PTRACE the owners are gone.
  std::string weaker = bounding;
  weaker.erase(weaker.find(",+sys_ptrace"), std::string(",+sys_ptrace").size());
  const RunResult no_ptrace = run_cmd({setpriv->string(),
                                       "--bounding-set=" + weaker,
                                       "--inh-caps=-all",
                                       collect,
                                       "--out",
                                       (tmp.path() / "weaker").string(),
                                       "--quiet"},
                                      tmp.path());
  REQUIRE(no_ptrace.code == 0);
  const auto [weak_denied, weak_owned] = denials(no_ptrace.path());
  CHECK(weak_denied.count("proc_fd/denied") == 1);
  CHECK(weak_owned < bounded_owned);
}
