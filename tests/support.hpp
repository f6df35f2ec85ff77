#pragma once
// Shared test helpers: skipping, fixture paths, files, temporary directories and running
// commands.

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace sockrewind::test {

// Ends this test as "skipped" for CTest (SKIP_RETURN_CODE 4), saying why on stderr.
[[noreturn]] inline void skip_test(const std::string& why) {
  std::fprintf(stderr, "SKIPPED: %s\n", why.c_str());
  std::fflush(stderr);
  std::_Exit(4);
}

inline void require_root(const char* what) {
  if (geteuid() != 0) {
    skip_test(std::string(what) + " needs root (network namespaces); run the tests as root");
  }
}

// ../shared/fixtures/proc-net, or a skip when the corpus is absent.
inline std::filesystem::path fixture_dir() {
  const std::filesystem::path dir =
      std::filesystem::path(SOCKREWIND_SHARED_DIR) / "fixtures" / "proc-net";
  if (!std::filesystem::is_directory(dir)) {
    skip_test("fixture corpus not found at " + dir.string()
              + " (expected ../shared beside the repo)");
  }
  return dir;
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot read " + p.string());
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A fresh directory removed (with its contents) when the object goes out of scope.
class TempDir {
public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sockrewind-test-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error("mkdtemp failed");
    }
    m_path = tmpl;
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  TempDir(TempDir&&) = delete;
  TempDir& operator=(TempDir&&) = delete;

  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(m_path, ec);
  }

  const std::filesystem::path& path() const { return m_path; }

private:
  std::filesystem::path m_path;
};

// `s` without its trailing newlines (e.g. the one line a command printed).
inline std::string trim_newlines(std::string s) {
  while (!s.empty() && s.back() == '\n') {
    s.pop_back();
  }
  return s;
}

// `s` as one word for /bin/sh.
inline std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (const char c : s) {
    q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  }
  return q + "'";
}

// A finished program: its exit status and what it wrote on stdout and stderr.
struct Run {
  int code = -1; // exit status; -1 if killed by a signal (a crash, or the timeout) or not run
  std::string out;
  std::string err;
};

// Runs `argv` (argv[0] the program; each word is quoted for the shell) with stdin from
// /dev/null and stdout and stderr to temporary files; a hang is killed (SIGKILL) after
// `timeout_s` seconds and reports -1.
inline Run run_with_timeout(const std::vector<std::string>& argv, int timeout_s = 60) {
  static std::atomic<int> counter{0};
  const std::filesystem::path tmp = std::filesystem::temp_directory_path();
  const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const std::filesystem::path out = tmp / ("sockrewind-run-" + tag + ".out");
  const std::filesystem::path err = tmp / ("sockrewind-run-" + tag + ".err");
  std::string cmd = "timeout -s KILL " + std::to_string(timeout_s);
  for (const std::string& a : argv) {
    cmd += " " + shell_quote(a);
  }
  cmd += " >" + shell_quote(out.string()) + " 2>" + shell_quote(err.string()) + " </dev/null";
  const int st = std::system(cmd.c_str()); // NOLINT(concurrency-mt-unsafe,cert-env33-c)
  Run r;
  if (WIFEXITED(st) && WEXITSTATUS(st) < 124) { // timeout(1): 124+ = killed or not run
    r.code = WEXITSTATUS(st);
  }
  r.out = read_file(out);
  r.err = read_file(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

// What a shell command printed on stdout, and its wait status (-1 if it could not be run).
struct CmdResult {
  int status = -1;
  std::string out;
};

// Runs `cmd` with /bin/sh (stdin and stderr inherited) and reads all of its stdout.
inline CmdResult run_cmd_output(const std::string& cmd) {
  CmdResult r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return r;
  }
  std::array<char, 4096> buf{};
  size_t n = 0;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) {
    r.out.append(buf.data(), n);
  }
  r.status = ::pclose(p);
  return r;
}

} // namespace sockrewind::test
