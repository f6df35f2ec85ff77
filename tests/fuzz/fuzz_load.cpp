// libFuzzer target: the analyzer's file loading on arbitrary bytes. The input's last byte
// chooses a command; the bytes before it are written to a temporary file (in /dev/shm when it
// can be used) and put through what sockrewind-analyze does with a PATH: open read-only and
// validate, index, load and merge the series, run every detector, then the chosen command's
// rendering: report (json or text) from that series, or info, show or diff, which open the
// file again as the commands do. For report json, also the streamed analysis `report` runs
// (analyze_files), which must find the same. The only exceptions allowed out are the
// documented ones: LoadError (bad file, exit 3) and UsageError (exit 2, e.g. a file with no
// snapshots).
// Anything else, or a broken invariant (FUZZ_CHECK, or sa::check_series's SR_ASSERT), aborts.
//
// Cost: each open parses and validates the file's schema in thousands of small SQLite
// allocations. Hence one load per report (two for report json), and SQLite's memory from
// glibc (below).

#include "fuzz_check.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/info.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/series.hpp>

#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace sa = sockrewind::analyze;
namespace fs = std::filesystem;

// A private directory holding the one input file; removed at exit.
class Scratch {
public:
  Scratch() {
    std::string base = "/tmp";
    if (const char* t = std::getenv("TMPDIR"); t != nullptr && *t != '\0') { // NOLINT
      base = t;
    } else if (access("/dev/shm", W_OK) == 0) {
      base = "/dev/shm";
    }
    std::string tmpl = base + "/sockrewind-fuzz-load-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    m_dir = tmpl;
    m_file = m_dir + "/input.sqlite";
  }

  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  ~Scratch() {
    std::error_code ec;
    fs::remove_all(m_dir, ec);
  }

  const std::string& write(const uint8_t* data, size_t size) {
    // Anything SQLite left beside the file (a -wal or -shm of a WAL-mode header) goes too.
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(m_dir, ec)) {
      fs::remove(e.path(), ec);
    }
    std::ofstream out(m_file, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    out.close();
    FUZZ_CHECK(out.good());
    return m_file;
  }

private:
  std::string m_dir;
  std::string m_file;
};

// Text meant for a terminal: no control bytes but newlines (escape_text() guards the rest).
bool terminal_safe(const std::string& s) {
  for (const char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if ((b < 0x20 && c != '\n') || b == 0x7f) {
      return false;
    }
  }
  return true;
}

void check_findings(const std::vector<sa::Finding>& findings) {
  for (size_t i = 0; i < findings.size(); ++i) {
    const sa::Finding& f = findings[i];
    FUZZ_CHECK(sa::find_detector(f.detector) != nullptr);
    FUZZ_CHECK(f.severity <= sa::Severity::critical);
    FUZZ_CHECK(!f.summary.empty());
    // (first_seen_ns > last_seen_ns is possible: CLOCK_REALTIME may step back between
    // snapshots, which are ordered by CLOCK_BOOTTIME.)
    FUZZ_CHECK(i == 0 || findings[i - 1].severity >= f.severity); // most severe first
  }
}

enum class Command : uint8_t { report_json, report_text, info, show, diff, count };

void run(const std::string& file, Command command) {
  // What `report` does, loading the file once (load_series opens and validates it once) and
  // rendering from that series; info, show and diff open the file themselves as they would.
  const sa::Series series = sa::load_series({file});
  sa::check_series(series); // SR_ASSERT: an InternalError escapes and aborts
  sa::require_snapshots({file}, series.snapshot_count()); // report's exit 3 for none

  sa::ReportOptions opts;
  opts.paths = {file};
  const std::vector<sa::Finding> findings = sa::run_detectors(series, opts);
  check_findings(findings);

  switch (command) {
  case Command::report_json: {
    // As `report` runs: streamed while loading, the tracks no check keeps let go. The same
    // findings as on the whole series.
    const sa::Analysis streamed = sa::analyze_files(opts);
    FUZZ_CHECK(streamed.findings.size() == findings.size());
    for (size_t i = 0; i < findings.size(); ++i) {
      FUZZ_CHECK(streamed.findings[i].summary == findings[i].summary);
      FUZZ_CHECK(streamed.findings[i].evidence == findings[i].evidence);
    }
    opts.format = sa::Format::json;
    std::ostringstream out;
    FUZZ_CHECK(sa::render_report(series, findings, opts, out) == 0); // no --fail-on
    const auto doc = nlohmann::json::parse(out.str());               // must be valid JSON
    FUZZ_CHECK(doc.at("findings").size() == findings.size());
    FUZZ_CHECK(doc.at("snapshots").get<size_t>() == series.snapshot_count());
    break;
  }
  case Command::report_text: {
    opts.format = sa::Format::text;
    std::ostringstream out;
    FUZZ_CHECK(sa::render_report(series, findings, opts, out) == 0);
    FUZZ_CHECK(terminal_safe(out.str()));
    break;
  }
  case Command::info: {
    // Every snapshot of the index is in the series once, or counted as a duplicate.
    const size_t indexed = sa::load_snapshot_index(file).size();
    FUZZ_CHECK(series.snapshot_count() + series.duplicate_snapshots == indexed);
    std::ostringstream out;
    sa::write_info({file}, out);
    FUZZ_CHECK(terminal_safe(out.str()));
    break;
  }
  case Command::show: {
    sa::ShowOptions show;
    show.path = file;
    std::ostringstream out;
    try {
      sa::write_show(show, out);
      FUZZ_CHECK(terminal_safe(out.str()));
    } catch (const sa::UsageError&) {
      // e.g. several hosts in one file: show needs --host
    }
    break;
  }
  case Command::diff:
  case Command::count:
    if (series.snapshot_count() >= 2) {
      sa::DiffOptions diff;
      diff.paths = {file};
      diff.from = "1";
      diff.to = "2";
      std::ostringstream out;
      sa::write_diff(diff, out);
      FUZZ_CHECK(terminal_safe(out.str()));
    }
    break;
  }
}

} // namespace

// SQLite's own memory comes from glibc's allocator, not ASan's. SQLite is a system library
// without our instrumentation, fuzzed by its authors; what it allocates (schema objects, pages,
// statements: thousands of small blocks per open) only paid for ASan's quarantine and stack
// traces, and an open cost 2.6 times as much. Our code's memory is still all ASan's; the price
// is that a read past the end of a value SQLite hands us (sqlite3_column_text/blob) is no
// longer caught (store::Stmt copies exactly sqlite3_column_bytes() bytes). Leaks of
// SQLite objects (a statement or connection never closed) are caught here instead of by
// LeakSanitizer: after each input, every block SQLite took is given back.
extern "C" void* __libc_malloc(size_t);         // NOLINT(bugprone-reserved-identifier)
extern "C" void* __libc_realloc(void*, size_t); // NOLINT(bugprone-reserved-identifier)
extern "C" void __libc_free(void*);             // NOLINT(bugprone-reserved-identifier)

namespace sqlite_heap {

// Each block is preceded by its size (8 bytes, so the block stays 8-byte aligned).
std::atomic<int64_t> g_live{0}; // blocks allocated and not freed (any thread)

void* alloc(int n) {
  auto* p = static_cast<uint64_t*>(__libc_malloc(static_cast<size_t>(n) + 8));
  if (p == nullptr) {
    return nullptr;
  }
  *p = static_cast<uint64_t>(n);
  ++g_live;
  return p + 1;
}

void release(void* p) {
  if (p != nullptr) {
    --g_live;
    __libc_free(static_cast<uint64_t*>(p) - 1);
  }
}

void* resize(void* p, int n) {
  auto* q = static_cast<uint64_t*>(
      __libc_realloc(static_cast<uint64_t*>(p) - 1, static_cast<size_t>(n) + 8));
  if (q == nullptr) {
    return nullptr;
  }
  *q = static_cast<uint64_t>(n);
  return q + 1;
}

int size(void* p) {
  return p == nullptr ? 0 : static_cast<int>(static_cast<uint64_t*>(p)[-1]);
}

int roundup(int n) {
  return (n + 7) & ~7;
}

int init(void* /*unused*/) {
  return SQLITE_OK;
}

void shutdown(void* /*unused*/) {}

} // namespace sqlite_heap

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  static sqlite3_mem_methods methods{sqlite_heap::alloc,
                                     sqlite_heap::release,
                                     sqlite_heap::resize,
                                     sqlite_heap::size,
                                     sqlite_heap::roundup,
                                     sqlite_heap::init,
                                     sqlite_heap::shutdown,
                                     nullptr};
  if (sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) != SQLITE_OK
      || sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0) != SQLITE_OK) {
    std::fprintf(stderr, "fuzz_load: sqlite3_config failed\n");
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  static Scratch scratch;
  const auto command =
      static_cast<Command>(data[size - 1] % static_cast<uint8_t>(Command::count)); // NOLINT
  const std::string& file = scratch.write(data, size - 1);
  const int64_t sqlite_blocks = sqlite_heap::g_live;
  try {
    run(file, command);
  } catch (const sa::LoadError& e) {
    // The one documented failure of a bad file: "PATH: reason" on one line.
    const std::string what = e.what();
    FUZZ_CHECK(what.starts_with(file + ": "));
  } catch (const sa::UsageError&) {
    // Documented for files that load but hold nothing to show (no snapshots, several hosts).
  }
  FUZZ_CHECK(sqlite_heap::g_live == sqlite_blocks); // every connection and statement closed
  return 0;
}
