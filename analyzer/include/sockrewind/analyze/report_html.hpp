#pragma once
// `report --format html`: the report as ONE self-contained HTML page (inline CSS and inline SVG
// only; no script, font, image or any other URL), for attaching to a ticket. Files come from
// strangers, so every text taken from them is escaped, and a Content-Security-Policy
// (default-src 'none'; style-src 'unsafe-inline'; img-src data:) makes the browser refuse any
// load the page could still contain.

#include <sockrewind/analyze/detector.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace sockrewind::analyze {

// At most this many points per series in a chart (larger series are decimated to the minimum
// and maximum of each of k_html_max_points / 2 buckets, so spikes stay visible).
inline constexpr size_t k_html_max_points = 500;

// The Content-Security-Policy of the page (a <meta http-equiv> in its <head>).
inline constexpr std::string_view k_html_csp =
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

// Text for HTML (element content and quoted attribute values): what escape_text() does to
// control bytes and invalid UTF-8, then & < > " ' as entities.
std::string html_escape(std::string_view s);

// The page for `report`: the object `report --format json` prints (version, hosts, files,
// snapshots, duplicate_snapshots, from, to, findings[]), optionally with "file_names" (array of
// strings) and "timelines" (array of {host, boot_id, kernel, snapshots, from, to,
// median_interval_s}) for the summary.
std::string render_report_html(const Json& report);

} // namespace sockrewind::analyze
