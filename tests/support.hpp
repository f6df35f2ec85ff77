#pragma once
// Shared test helpers: skipping, fixture paths, files and temporary directories.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>

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

} // namespace sockrewind::test
