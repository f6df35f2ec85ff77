// libFuzzer target: the kernel counter parsers. Input byte 0 (mod 5) selects the file:
// netstat, snmp (both "Group: names" / "Group: values" pairs), snmp6 ("Name value" lines),
// sockstat, sockstat6 ("GROUP: key value ..."). The rest is the file's text.

#include "fuzz_check.hpp"

#include <sockrewind/collect/counters.hpp>

#include <array>
#include <string>

namespace {

namespace sc = sockrewind::collect;
namespace sf = sockrewind::fuzz;

constexpr std::array<std::string_view, 5> k_files = {
    "netstat", "snmp", "snmp6", "sockstat", "sockstat6"};

bool has_blank(std::string_view s) {
  return s.find_first_of(" \t\r\n\v\f") != std::string_view::npos;
}

// "Group.Name": a non-empty group (which may itself hold dots), a dot, a non-empty name.
void check_dotted(const sc::CounterRow& r) {
  FUZZ_CHECK(r.name.size() >= 3 && r.name.find('.', 1) != std::string::npos);
  FUZZ_CHECK(!has_blank(r.name));
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) {
    return 0;
  }
  const std::string_view file = k_files[data[0] % k_files.size()];
  const std::string_view text = sf::as_text(data + 1, size - 1);
  const size_t lines = sf::line_count(text);
  const size_t fields = sf::field_count(text);
  const std::string source = "proc:" + std::string(file);

  sc::Parsed<sc::CounterRow> out;
  if (file == "netstat" || file == "snmp") {
    out = sc::parse_proc_net_pairs(text, file);
    // One row per value of a names/values pair: at most half the fields, minus the groups.
    FUZZ_CHECK(out.rows.size() <= fields / 2);
    FUZZ_CHECK(out.issues.size() <= lines + fields / 2);
    for (const sc::CounterRow& r : out.rows) {
      check_dotted(r);
    }
  } else if (file == "snmp6") {
    out = sc::parse_proc_net_snmp6(text);
    FUZZ_CHECK(out.rows.size() + out.issues.size() <= lines);
    for (const sc::CounterRow& r : out.rows) {
      FUZZ_CHECK(!r.name.empty() && !has_blank(r.name));
    }
  } else {
    out = sc::parse_proc_net_sockstat(text, file);
    FUZZ_CHECK(out.rows.size() <= fields / 2);
    FUZZ_CHECK(out.rows.size() + out.issues.size() <= lines + fields / 2);
    for (const sc::CounterRow& r : out.rows) {
      check_dotted(r);
    }
  }
  for (const sc::CounterRow& r : out.rows) {
    FUZZ_CHECK(r.file == file);
    // The value was a number in the text: its digits are there.
    const std::string digits = std::to_string(r.value);
    FUZZ_CHECK(r.value < 0 || text.find(digits) != std::string_view::npos
               || text.find(std::to_string(static_cast<uint64_t>(r.value)))
                      != std::string_view::npos);
  }
  sf::check_issues(out.issues, source, {"bad_row"});
  return 0;
}
