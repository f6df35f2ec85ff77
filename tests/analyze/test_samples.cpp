// The captures in samples/ (made by the scenario lab) and the findings expected of each, as
// listed in samples/expected.json and samples/README.md.
#include "support.hpp"

#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/load.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <sstream>

using namespace sockrewind::analyze;

namespace {

int rank(const std::string& s) {
  return s == "critical" ? 2 : (s == "warning" ? 1 : 0);
}

int port_of(const Json& ep) {
  if (!ep.is_string()) {
    return -1;
  }
  const std::string s = ep.get<std::string>();
  const size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon + 1 >= s.size() || s[colon + 1] == '*') {
    return -1;
  }
  return std::stoi(s.substr(colon + 1));
}

} // namespace

TEST_CASE("samples: every capture yields the findings samples/expected.json lists", "[samples]") {
  const std::filesystem::path dir = std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "samples";
  const auto expected = nlohmann::json::parse(sockrewind::test::read_file(dir / "expected.json"));
  REQUIRE(expected.size() >= 3);
  for (const auto& [file, want] : expected.items()) {
    INFO(file);
    const Series s = load_series({(dir / file).string()});
    REQUIRE(s.snapshot_count() >= 3);
    const std::vector<Finding> found = run_detectors(s, ReportOptions{});
    std::string seen;
    for (const Finding& f : found) {
      seen += std::string(severity_name(f.severity)) + " " + f.detector + ": " + f.summary + "\n";
    }
    INFO(seen);
    for (const auto& e : want.at("findings")) {
      const bool hit = std::any_of(found.begin(), found.end(), [&](const Finding& f) {
        return f.detector == e.at("detector").get<std::string>()
               && (!e.contains("local_port")
                   || port_of(f.subject.value("local", Json())) == e["local_port"].get<int>())
               && rank(std::string(severity_name(f.severity)))
                      >= rank(e.at("severity").get<std::string>());
      });
      CHECK(hit);
    }
    if (want.contains("max_severity")) {
      for (const Finding& f : found) {
        CHECK(rank(std::string(severity_name(f.severity)))
              <= rank(want["max_severity"].get<std::string>()));
      }
    }
  }
}

TEST_CASE("samples: render_report of a loaded series prints what write_report prints",
          "[samples][report]") {
  const std::filesystem::path dir = std::filesystem::path(SOCKREWIND_SOURCE_DIR) / "samples";
  const auto expected = nlohmann::json::parse(sockrewind::test::read_file(dir / "expected.json"));
  for (const auto& item : expected.items()) {
    const std::string file = (dir / item.key()).string();
    INFO(file);
    const Series s = load_series({file});
    for (const Format format : {Format::text, Format::json}) {
      ReportOptions opts;
      opts.paths = {file};
      opts.format = format;
      opts.min_severity = "warning";
      opts.fail_on = "warning";
      std::ostringstream whole;
      std::ostringstream rendered;
      const int rc_whole = write_report(opts, whole);
      const int rc_rendered = render_report(s, run_detectors(s, opts), opts, rendered);
      CHECK(rc_rendered == rc_whole);
      CHECK(rendered.str() == whole.str());
      CHECK(!rendered.str().empty());
    }
  }
}
