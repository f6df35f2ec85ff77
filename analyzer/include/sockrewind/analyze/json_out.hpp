#pragma once
// JSON output shared by every command's JSON renderer.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

namespace sockrewind::analyze {

// JSON for output, indented: pure ASCII (control and non-ASCII characters \u-escaped, so it
// cannot drive a terminal either), and invalid UTF-8 from a file becomes U+FFFD instead of
// an exception.
template <typename J> std::string dump_json(const J& j) {
  return j.dump(2, ' ', true, J::error_handler_t::replace);
}

// A Sample field: null for k_na (k_na8, k_na64), else the number.
nlohmann::json na_json(uint32_t v);
nlohmann::json na_json(uint8_t v);
nlohmann::json na_json(uint64_t v);

} // namespace sockrewind::analyze
