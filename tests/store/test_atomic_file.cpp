#include "support.hpp"

#include <sockrewind/store/atomic_file.hpp>

#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

namespace fs = std::filesystem;
using sockrewind::store::AtomicFile;

namespace {

size_t entries(const fs::path& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir)) {
    ++n;
  }
  return n;
}

} // namespace

TEST_CASE("store::AtomicFile appears under its name only when committed", "[store]") {
  sockrewind::test::TempDir dir;
  const fs::path out = dir.path() / "out.txt";
  {
    AtomicFile f(out.string(), AtomicFile::Replace::never);
    CHECK(fs::path(f.temp_path()).parent_path() == dir.path());
    CHECK(fs::path(f.temp_path()).filename().string().rfind(".out.txt.tmp-", 0) == 0);
    f.write_all("hello");
    CHECK_FALSE(fs::exists(out));

    struct stat st {};

    REQUIRE(::stat(f.temp_path().c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    f.commit();
    CHECK(f.committed());
    CHECK(f.fd() == -1);
  }
  CHECK(sockrewind::test::read_file(out) == "hello");
  CHECK(entries(dir.path()) == 1);

  // Not committed: nothing is left.
  { AtomicFile f((dir.path() / "other").string(), AtomicFile::Replace::never); }
  CHECK(entries(dir.path()) == 1);
}

TEST_CASE("store::AtomicFile never replaces unless allowed", "[store]") {
  sockrewind::test::TempDir dir;
  const fs::path out = dir.path() / "out.txt";
  { std::ofstream(out) << "precious"; }
  {
    AtomicFile f(out.string(), AtomicFile::Replace::never);
    f.write_all("new");
    CHECK_THROWS_WITH(f.commit(), Catch::Contains("cannot create " + out.string()));
    CHECK_FALSE(f.committed());
    // Another name may be tried; the file was synced once.
    CHECK_FALSE(f.commit_as(out.string()));
    CHECK(f.commit_as((dir.path() / "out-2.txt").string()));
    CHECK(f.final_path() == (dir.path() / "out-2.txt").string());
  }
  CHECK(sockrewind::test::read_file(out) == "precious");
  CHECK(sockrewind::test::read_file(dir.path() / "out-2.txt") == "new");
  {
    AtomicFile f(out.string(), AtomicFile::Replace::allowed, 0644, AtomicFile::TempName::unique);
    f.write_all("replaced");
    f.commit();
  }
  CHECK(sockrewind::test::read_file(out) == "replaced");
  CHECK(entries(dir.path()) == 2);
}

TEST_CASE("store::AtomicFile never follows a link planted at its temporary name", "[store]") {
  sockrewind::test::TempDir dir;
  const fs::path victim = dir.path() / "victim";
  const fs::path out = dir.path() / "out.txt";
  std::string temp;
  {
    AtomicFile probe(out.string(), AtomicFile::Replace::never);
    temp = probe.temp_path();
  }
  fs::create_symlink(victim, temp);
  CHECK_THROWS_WITH(AtomicFile(out.string(), AtomicFile::Replace::never),
                    Catch::Contains("cannot create " + temp) && Catch::Contains("File exists"));
  CHECK_FALSE(fs::exists(fs::symlink_status(victim)));
  // A unique temporary name steps past it.
  {
    AtomicFile f(out.string(), AtomicFile::Replace::never, 0600, AtomicFile::TempName::unique);
    f.commit();
  }
  CHECK(fs::is_regular_file(fs::symlink_status(out)));
  // A path naming no file.
  try {
    AtomicFile f(dir.path().string() + "/", AtomicFile::Replace::allowed);
    FAIL("no error");
  } catch (const std::system_error& e) {
    CHECK(e.code().value() == EISDIR);
  }
}
