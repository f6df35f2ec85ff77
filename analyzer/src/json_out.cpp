// JSON output helpers.
#include <sockrewind/analyze/json_out.hpp>
#include <sockrewind/analyze/series.hpp>

namespace sockrewind::analyze {

namespace {

using nlohmann::json;

} // namespace

nlohmann::json na_json(uint32_t v) {
  return v == k_na ? json(nullptr) : json(v);
}

nlohmann::json na_json(uint8_t v) {
  return v == k_na8 ? json(nullptr) : json(v);
}

nlohmann::json na_json(uint64_t v) {
  return v == k_na64 ? json(nullptr) : json(v);
}

} // namespace sockrewind::analyze
