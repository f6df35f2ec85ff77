// `report --format html`: one self-contained page from the report JSON object. Inline CSS and
// inline SVG only (no script, no URL of any kind), every text from the files escaped, and a
// Content-Security-Policy that makes the browser refuse any load. Each finding gets a chart of
// its evidence series: the numeric columns over time, limits dashed.
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/report_html.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace sockrewind::analyze {

std::string html_escape(std::string_view s) {
  const std::string safe = escape_text(std::string(s));
  std::string out;
  out.reserve(safe.size() + safe.size() / 8);
  for (const char c : safe) {
    switch (c) {
    case '&':
      out += "&amp;";
      break;
    case '<':
      out += "&lt;";
      break;
    case '>':
      out += "&gt;";
      break;
    case '"':
      out += "&quot;";
      break;
    case '\'':
      out += "&#39;";
      break;
    default:
      out += c;
    }
  }
  return out;
}

namespace {

// Series colours (colour-blind friendly, readable on white).
constexpr std::array<const char*, 8> k_palette{
    "#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7f7f7f", "#000000"};

// printf of one double with each format spelled out (so -Wformat checks it).
enum class Style : uint8_t { integer, sig4, sig3, fixed1 };

std::string fmt(Style style, double v) {
  char buf[48];
  switch (style) {
  case Style::integer:
    (void)std::snprintf(buf, sizeof buf, "%.0f", v);
    break;
  case Style::sig4:
    (void)std::snprintf(buf, sizeof buf, "%.4g", v);
    break;
  case Style::sig3:
    (void)std::snprintf(buf, sizeof buf, "%.3g", v);
    break;
  case Style::fixed1:
    (void)std::snprintf(buf, sizeof buf, "%.1f", v);
    break;
  }
  return buf;
}

// A value for a label: integers exactly, anything else with 4 significant digits.
std::string num(double v) {
  if (std::abs(v) < 1e15 && v == std::floor(v)) {
    return fmt(Style::integer, v);
  }
  return fmt(Style::sig4, v);
}

// An SVG coordinate.
std::string coord(double v) {
  return fmt(Style::fixed1, v);
}

// Escaped text of a scalar JSON value ("-" for null); arrays and objects as compact JSON,
// cut at `max_len` characters.
std::string text_of(const Json& v, size_t max_len = 300) {
  std::string s;
  if (v.is_string()) {
    s = v.get<std::string>();
  } else if (v.is_null()) {
    s = "-";
  } else if (v.is_number_float()) {
    s = num(v.get<double>());
  } else {
    s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  }
  if (s.size() > max_len) {
    s = s.substr(0, max_len - 3) + "...";
  }
  return html_escape(s);
}

std::string str_of(const Json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key) || obj[key].is_null()) {
    return {};
  }
  const Json& v = obj[key];
  return v.is_string() ? v.get<std::string>()
                       : v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Seconds since the epoch of a series row's time (what iso8601() writes); nullopt when it is
// not a time. The parsing is show's, shared by every command that reads times.
std::optional<double> time_seconds(const Json& t) {
  if (!t.is_string()) {
    return std::nullopt;
  }
  try {
    return static_cast<double>(parse_time(t.get<std::string>())) / 1e9;
  } catch (const UsageError&) {
    return std::nullopt;
  }
}

// One numeric column of a finding's series; values per row (nullopt: null or not a number).
struct Column {
  std::string name;
  bool limit = false;
  size_t color = 0;
  std::vector<std::optional<double>> v;
  double lo = std::numeric_limits<double>::infinity();
  double hi = -std::numeric_limits<double>::infinity();
  std::optional<double> last;
};

// The numeric columns of `series` (every field but "t" with a number in some row), in the
// order the detector wrote them; the limit columns are those the finding's evidence "chart"
// names ({"value": column, "limits": [columns]}).
std::vector<Column> numeric_columns(const Json& series, const Json& chart) {
  std::vector<std::string> limits;
  if (chart.is_object() && chart.contains("limits") && chart["limits"].is_array()) {
    for (const Json& l : chart["limits"]) {
      if (l.is_string()) {
        limits.push_back(l.get<std::string>());
      }
    }
  }
  std::vector<std::string> names;
  for (const Json& row : series) {
    if (!row.is_object()) {
      continue;
    }
    for (const auto& [k, v] : row.items()) {
      if (k != "t" && v.is_number() && std::find(names.begin(), names.end(), k) == names.end()) {
        names.push_back(k);
      }
    }
  }
  std::vector<Column> cols;
  for (const std::string& name : names) {
    Column c;
    c.name = name;
    c.limit = std::find(limits.begin(), limits.end(), name) != limits.end();
    c.color = cols.size() % k_palette.size();
    c.v.reserve(series.size());
    for (const Json& row : series) {
      std::optional<double> x;
      if (row.is_object() && row.contains(name) && row[name].is_number()) {
        const auto d = row[name].get<double>();
        if (std::isfinite(d)) {
          x = d;
        }
      }
      if (x) {
        c.lo = std::min(c.lo, *x);
        c.hi = std::max(c.hi, *x);
        c.last = x;
      }
      c.v.push_back(x);
    }
    if (c.last) {
      cols.push_back(std::move(c));
    }
  }
  return cols;
}

// The rows to draw of one column: all of them up to k_html_max_points, else the minimum and
// maximum of each of k_html_max_points / 2 buckets (in row order). nullopt = a gap.
std::vector<std::optional<size_t>> pick_points(const std::vector<std::optional<double>>& v) {
  std::vector<std::optional<size_t>> out;
  const size_t n = v.size();
  if (n <= k_html_max_points) {
    for (size_t i = 0; i < n; ++i) {
      out.push_back(v[i] ? std::optional<size_t>(i) : std::nullopt);
    }
    return out;
  }
  const size_t buckets = k_html_max_points / 2;
  for (size_t b = 0; b < buckets; ++b) {
    const size_t from = b * n / buckets;
    const size_t to = (b + 1) * n / buckets;
    std::optional<size_t> lo;
    std::optional<size_t> hi;
    for (size_t i = from; i < to; ++i) {
      if (!v[i]) {
        continue;
      }
      if (!lo || *v[i] < *v[*lo]) {
        lo = i;
      }
      if (!hi || *v[i] > *v[*hi]) {
        hi = i;
      }
    }
    if (!lo) {
      out.emplace_back(std::nullopt);
      continue;
    }
    out.emplace_back(std::min(*lo, *hi));
    if (*lo != *hi) {
      out.emplace_back(std::max(*lo, *hi));
    }
  }
  return out;
}

struct Axis {
  std::vector<double> x; // per row: seconds since the epoch, or the row index
  std::string first;     // the first and last time ("t" of the first and last row)
  std::string last;
};

Axis time_axis(const Json& series) {
  Axis a;
  bool parsed = true;
  double prev = -std::numeric_limits<double>::infinity();
  for (const Json& row : series) {
    const std::optional<double> t =
        row.is_object() && row.contains("t") ? time_seconds(row["t"]) : std::nullopt;
    if (!t || *t < prev) {
      parsed = false;
      break;
    }
    prev = *t;
    a.x.push_back(*t);
  }
  if (!parsed) { // not times in order: evenly spaced rows
    a.x.clear();
    for (size_t i = 0; i < series.size(); ++i) {
      a.x.push_back(static_cast<double>(i));
    }
  }
  if (!series.empty()) {
    a.first = str_of(series.front(), "t");
    a.last = str_of(series.back(), "t");
  }
  return a;
}

// One chart: `cols` over the time axis on a shared y scale from min(0, lowest) to the highest.
void write_chart(std::string& out,
                 const std::vector<const Column*>& cols,
                 const Axis& axis,
                 double width,
                 double height,
                 const std::string& title) {
  constexpr double k_left = 64;
  constexpr double k_right = 12;
  constexpr double k_top = 10;
  constexpr double k_bottom = 22;
  const double pw = width - k_left - k_right;
  const double ph = height - k_top - k_bottom;
  double lo = 0;
  double hi = -std::numeric_limits<double>::infinity();
  for (const Column* c : cols) {
    lo = std::min(lo, c->lo);
    hi = std::max(hi, c->hi);
  }
  if (!(hi > lo)) {
    hi = lo + 1;
  }
  const double top = hi + (hi - lo) * 0.06; // headroom: a line at the maximum stays visible
  const double x0 = axis.x.empty() ? 0 : axis.x.front();
  const double x1 = axis.x.empty() ? 0 : axis.x.back();
  const auto px = [&](size_t i) {
    return x1 > x0 ? k_left + (axis.x[i] - x0) / (x1 - x0) * pw : k_left + pw / 2;
  };
  const auto py = [&](double y) { return k_top + ph - (y - lo) / (top - lo) * ph; };

  out += R"(<svg class="chart" role="img" viewBox="0 0 )" + coord(width) + " " + coord(height)
         + "\" width=\"" + coord(width) + "\" height=\"" + coord(height) + "\"><title>"
         + html_escape(title) + "</title>";
  // Axes, the min and max of y, the first and last time.
  const std::string bottom = coord(k_top + ph);
  out += R"(<path class="axis" d="M)" + coord(k_left) + " " + coord(k_top) + "V" + bottom + "H"
         + coord(k_left + pw) + "\"/>";
  out += R"(<path class="grid" d="M)" + coord(k_left) + " " + coord(py(hi)) + "H"
         + coord(k_left + pw) + "\"/>";
  out += R"(<text class="ylab" x=")" + coord(k_left - 4) + "\" y=\"" + coord(py(hi) + 4) + "\">"
         + html_escape(num(hi)) + "</text>";
  out += R"(<text class="ylab" x=")" + coord(k_left - 4) + "\" y=\"" + bottom + "\">"
         + html_escape(num(lo)) + "</text>";
  const std::string tl_y = coord(height - 6);
  out += R"(<text class="xlab" x=")" + coord(k_left) + "\" y=\"" + tl_y + "\">"
         + html_escape(axis.first) + "</text>";
  if (axis.last != axis.first) {
    // The same day as the first: the time of day only (it fits beside the first).
    const size_t day = axis.first.find('T');
    const bool same_day = day != std::string::npos && axis.last.size() > day
                          && axis.last.compare(0, day + 1, axis.first, 0, day + 1) == 0;
    out += R"(<text class="xlab end" x=")" + coord(k_left + pw) + "\" y=\"" + tl_y + "\">"
           + html_escape(same_day ? axis.last.substr(day + 1) : axis.last) + "</text>";
  }
  // Limits first, the first value column last: on top where lines coincide.
  std::vector<const Column*> order;
  for (const bool limits : {true, false}) {
    for (size_t k = cols.size(); k-- > 0;) {
      if (cols[k]->limit == limits) {
        order.push_back(cols[k]);
      }
    }
  }
  for (const Column* c : order) {
    const std::vector<std::optional<size_t>> pts = pick_points(c->v);
    std::string d;
    std::string dots;
    size_t drawn = 0;
    for (size_t k = 0; k < pts.size(); ++k) {
      if (!pts[k]) {
        continue;
      }
      const size_t i = *pts[k];
      const bool starts = k == 0 || !pts[k - 1];
      const bool alone = starts && (k + 1 == pts.size() || !pts[k + 1]);
      d += (starts ? "M" : "L") + coord(px(i)) + " " + coord(py(*c->v[i]));
      if (alone) {
        d += "h0.5"; // a segment, so a lone point is drawn (round caps)
      }
      dots += "M" + coord(px(i)) + " " + coord(py(*c->v[i])) + "h0";
      ++drawn;
    }
    const std::string color = k_palette.at(c->color);
    out += c->limit ? R"(<path class="series limit" stroke=")" : R"(<path class="series" stroke=")";
    out += color;
    out += R"(" d=")";
    out += d;
    out += R"("><title>)";
    out += html_escape(c->name);
    out += "</title></path>";
    if (drawn <= 60) { // few points: mark the snapshots
      out += R"(<path class="dots" stroke=")";
      out += color;
      out += R"(" d=")";
      out += dots;
      out += R"("/>)";
    }
  }
  out += "</svg>";
}

void write_legend(std::string& out, const std::vector<const Column*>& cols) {
  out += "<ul class=\"legend\">";
  for (const Column* c : cols) {
    out += "<li><span class=\"swatch" + std::string(c->limit ? " limit" : "")
           + "\" style=\"border-color:" + k_palette.at(c->color) + "\"></span>"
           + html_escape(c->name) + (c->limit ? " (limit)" : "") + " <span class=\"muted\">last "
           + html_escape(num(c->last.value_or(0))) + ", max " + html_escape(num(c->hi))
           + "</span></li>";
  }
  out += "</ul>";
}

// The charts of one finding: the main chart has the first value column with the limits (and
// the other value columns of the limits' scale: within 1/20 and 2x of the highest limit); every
// other value column gets a small chart of its own scale.
void write_charts(std::string& out,
                  const Json& series,
                  const Json& chart,
                  const std::string& what) {
  std::vector<Column> cols = numeric_columns(series, chart);
  if (chart.is_object() && chart.contains("value") && chart["value"].is_string()) {
    const auto v = std::find_if(cols.begin(), cols.end(), [&](const Column& c) {
      return c.name == chart["value"].get<std::string>();
    });
    if (v != cols.end()) {
      std::rotate(cols.begin(), v, v + 1);
    }
  }
  if (cols.empty()) {
    out += "<p class=\"muted\">No numeric evidence series to chart.</p>";
    return;
  }
  const Axis axis = time_axis(series);
  std::vector<const Column*> main;
  std::vector<const Column*> rest;
  double limit_hi = 0;
  bool has_limit = false;
  for (const Column& c : cols) {
    if (c.limit) {
      has_limit = true;
      limit_hi = std::max(limit_hi, c.hi);
    }
  }
  for (const Column& c : cols) {
    if (!c.limit && main.empty()) {
      main.push_back(&c);
    } else if (!c.limit) {
      (has_limit && c.hi >= limit_hi / 20 && c.hi <= limit_hi * 2 ? main : rest).push_back(&c);
    }
  }
  for (const Column& c : cols) {
    if (c.limit) {
      main.push_back(&c);
    }
  }
  std::string title = what + ": ";
  for (size_t i = 0; i < main.size(); ++i) {
    title += (i == 0 ? "" : (main[i]->limit ? " vs " : ", ")) + main[i]->name;
  }
  out += "<div class=\"chart-main\">";
  write_chart(out, main, axis, 760, 220, title);
  write_legend(out, main);
  out += "</div>";
  if (!rest.empty()) {
    out += "<div class=\"smalls\">";
    for (const Column* c : rest) {
      out += "<div class=\"small\">";
      write_chart(out, {c}, axis, 372, 120, what + ": " + c->name);
      write_legend(out, {c});
      out += "</div>";
    }
    out += "</div>";
  }
}

// The series as a table: the first and last 10 rows.
void write_series_table(std::string& out, const Json& series) {
  std::vector<std::string> cols{"t"};
  for (const Json& row : series) {
    if (!row.is_object()) {
      continue;
    }
    for (const auto& [k, v] : row.items()) {
      if (std::find(cols.begin(), cols.end(), k) == cols.end()) {
        cols.push_back(k);
      }
    }
  }
  out += "<details><summary>Evidence series: " + std::to_string(series.size())
         + R"( row(s)</summary><div class="scroll"><table class="series"><tr>)";
  for (const std::string& c : cols) {
    out += "<th>" + html_escape(c) + "</th>";
  }
  out += "</tr>";
  constexpr size_t k_head = 10;
  constexpr size_t k_tail = 10;
  const size_t n = series.size();
  for (size_t i = 0; i < n; ++i) {
    if (n > k_head + k_tail && i == k_head) {
      out += "<tr><td colspan=\"" + std::to_string(cols.size()) + R"(" class="muted">... )"
             + std::to_string(n - k_head - k_tail) + " more row(s)</td></tr>";
      i = n - k_tail - 1;
      continue;
    }
    out += "<tr>";
    for (const std::string& c : cols) {
      const Json& row = series[i];
      out += "<td>" + (row.is_object() && row.contains(c) ? text_of(row[c], 120) : "") + "</td>";
    }
    out += "</tr>";
  }
  out += "</table></div></details>";
}

void write_finding(std::string& out, const Json& f, size_t index) {
  const std::string sev = str_of(f, "severity");
  const std::string detector = str_of(f, "detector");
  const Json& subject = f.contains("subject") ? f["subject"] : Json::object();
  const Json& evidence = f.contains("evidence") ? f["evidence"] : Json::object();
  out += "<article class=\"finding " + html_escape(sev) + "\" id=\"f" + std::to_string(index)
         + "\"><h3><span class=\"sev " + html_escape(sev) + "\">" + html_escape(sev)
         + "</span> <code>" + html_escape(detector) + "</code>";
  if (f.value("escalated", false)) {
    out += " <span class=\"esc\">escalated: another detector fired on this process</span>";
  }
  out += "</h3><p class=\"summary\">" + html_escape(str_of(f, "summary")) + "</p>";

  out += "<p class=\"owner\">";
  if (subject.is_object() && subject.contains("pid") && !subject["pid"].is_null()) {
    out += "Process <b>" + html_escape(str_of(subject, "comm")) + "</b> pid "
           + html_escape(str_of(subject, "pid"));
    const std::string cmd = str_of(subject, "cmdline");
    if (!cmd.empty()) {
      out += " <code class=\"cmd\">" + html_escape(cmd) + "</code>";
    }
  } else {
    out += "<span class=\"muted\">No owning process seen.</span>";
  }
  out += "</p>";

  const bool has_series = evidence.is_object() && evidence.contains("series")
                          && evidence["series"].is_array() && !evidence["series"].empty();
  if (has_series) {
    write_charts(out,
                 evidence["series"],
                 evidence.contains("chart") ? evidence["chart"] : Json(nullptr),
                 detector);
  } else {
    out += "<p class=\"muted\">No evidence series.</p>";
  }

  out += R"(<div class="facts"><table class="kv"><tr><th colspan="2">Subject</th></tr>)";
  if (subject.is_object()) {
    for (const auto& [k, v] : subject.items()) {
      if (!v.is_null()) {
        out += "<tr><td>" + html_escape(k) + "</td><td>" + text_of(v) + "</td></tr>";
      }
    }
  }
  out += R"(</table><table class="kv"><tr><th colspan="2">Evidence</th></tr>)";
  out += "<tr><td>first seen</td><td>" + html_escape(str_of(f, "first_seen")) + "</td></tr>";
  out += "<tr><td>last seen</td><td>" + html_escape(str_of(f, "last_seen")) + "</td></tr>";
  if (evidence.is_object()) {
    for (const auto& [k, v] : evidence.items()) {
      if (k != "series") {
        out += "<tr><td>" + html_escape(k) + "</td><td>" + text_of(v) + "</td></tr>";
      }
    }
  }
  out += "</table></div>";
  if (has_series) {
    write_series_table(out, evidence["series"]);
  }
  out += "</article>\n";
}

void write_summary(std::string& out, const Json& r) {
  std::string hosts;
  if (r.contains("hosts") && r["hosts"].is_array()) {
    for (const Json& h : r["hosts"]) {
      hosts += (hosts.empty() ? "" : ", ") + (h.is_string() ? h.get<std::string>() : h.dump());
    }
  }
  out += R"(<section class="summary"><h2>Capture</h2><table class="kv">)";
  const auto row = [&out](const std::string& k, const std::string& escaped_v) {
    out += "<tr><td>" + k + "</td><td>" + escaped_v + "</td></tr>";
  };
  row("host(s)", html_escape(hosts.empty() ? "-" : hosts));
  row("file(s)", html_escape(str_of(r, "files")));
  std::string snaps = str_of(r, "snapshots");
  if (r.value("duplicate_snapshots", 0) > 0) {
    snaps += " (" + str_of(r, "duplicate_snapshots") + " seen in more than one file, counted once)";
  }
  row("snapshots", html_escape(snaps));
  row("from", html_escape(str_of(r, "from")));
  row("to", html_escape(str_of(r, "to")));
  out += "</table>";
  if (r.contains("timelines") && r["timelines"].is_array() && !r["timelines"].empty()) {
    out += "<table class=\"grid\"><tr><th>host</th><th>boot id</th><th>kernel</th><th>snapshots</"
           "th><th>from</th><th>to</th><th>median interval s</th></tr>";
    for (const Json& t : r["timelines"]) {
      out += "<tr>";
      for (const char* k : {"host", "boot_id", "kernel", "snapshots", "from", "to"}) {
        out += "<td>" + html_escape(str_of(t, k)) + "</td>";
      }
      const Json iv = t.value("median_interval_s", Json());
      out += "<td>" + (iv.is_number() ? html_escape(fmt(Style::sig3, iv.get<double>())) : "-")
             + "</td></tr>";
    }
    out += "</table>";
  }
  if (r.contains("file_names") && r["file_names"].is_array() && !r["file_names"].empty()) {
    const Json& names = r["file_names"];
    out += "<details><summary>" + std::to_string(names.size())
           + " file(s)</summary><ul class=\"files\">";
    for (const Json& n : names) {
      out += "<li><code>" + text_of(n, 1000) + "</code></li>";
    }
    out += "</ul></details>";
  }
  out += "</section>\n";
}

constexpr const char* k_style = R"(
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
  color:#1b1b1b;background:#fff;margin:0 auto;max-width:1120px;padding:16px 24px}
h1{font-size:22px;margin:8px 0}
h2{font-size:18px;margin:24px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:0 0 6px}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:12.5px}
.muted{color:#666}
.sub{color:#444;margin:0 0 8px}
table{border-collapse:collapse}
td,th{padding:2px 8px;text-align:left;vertical-align:top}
table.kv td:first-child{color:#555;white-space:nowrap}
table.kv td{word-break:break-all}
table.grid td,table.grid th,table.series td,table.series th{border:1px solid #ddd}
table.series{font-size:12px}
table.series th{background:#f4f4f4}
.scroll{overflow-x:auto}
.counts span{display:inline-block;margin-right:8px}
.sev{display:inline-block;padding:1px 8px;border-radius:3px;color:#fff;text-transform:uppercase;
  font-size:12px;font-weight:600}
.sev.critical{background:#b00020}
.sev.warning{background:#b35c00}
.sev.info{background:#33658a}
.finding{border:1px solid #ddd;border-left:6px solid #33658a;border-radius:4px;padding:10px 14px;
  margin:12px 0;break-inside:avoid}
.finding.critical{border-left-color:#b00020}
.finding.warning{border-left-color:#b35c00}
.summary{font-weight:600;margin:4px 0}
.owner{margin:4px 0 8px}
.cmd{background:#f4f4f4;padding:1px 4px;word-break:break-all}
.esc{color:#b00020;font-size:12px;font-weight:normal}
svg.chart{max-width:100%;height:auto;display:block;background:#fcfcfc}
svg .axis{stroke:#333;fill:none;stroke-width:1}
svg .grid{stroke:#ccc;fill:none;stroke-dasharray:2 3}
svg .series{fill:none;stroke-width:2;stroke-linejoin:round;stroke-linecap:round}
svg .limit{stroke-dasharray:7 4;stroke-width:2}
svg .dots{fill:none;stroke-width:6;stroke-linecap:round}
svg text{font-size:11px;fill:#333}
svg .ylab{text-anchor:end}
svg .xlab.end{text-anchor:end}
.legend{list-style:none;padding:0;margin:4px 0 8px;font-size:12.5px}
.legend li{display:inline-block;margin-right:16px}
.swatch{display:inline-block;width:22px;border-top:3px solid;vertical-align:middle;margin-right:5px}
.swatch.limit{border-top-style:dashed}
.smalls{display:flex;flex-wrap:wrap;gap:8px 16px}
.small{flex:0 0 372px}
.facts{display:flex;flex-wrap:wrap;align-items:flex-start;gap:0 24px;font-size:13px}
.facts table{flex:1 1 420px}
nav ol{padding-left:22px;margin:4px 0}
nav li{margin:2px 0}
nav a{color:#1b1b1b}
footer{color:#666;font-size:12px;margin:24px 0 8px;border-top:1px solid #ddd;padding-top:6px}
)";

} // namespace

std::string render_report_html(const Json& report) {
  std::string out;
  const Json& findings =
      report.contains("findings") && report["findings"].is_array() ? report["findings"] : Json();
  std::string hosts;
  if (report.contains("hosts") && report["hosts"].is_array()) {
    for (const Json& h : report["hosts"]) {
      hosts += (hosts.empty() ? "" : ", ") + (h.is_string() ? h.get<std::string>() : h.dump());
    }
  }
  out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n";
  out +=
      R"(<meta http-equiv="Content-Security-Policy" content=")" + std::string(k_html_csp) + "\">\n";
  out += "<meta name=\"referrer\" content=\"no-referrer\">\n";
  out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  out += "<title>sockrewind report: " + html_escape(hosts) + "</title>\n<style>";
  out += k_style;
  out += "</style></head>\n<body>\n<h1>sockrewind report</h1>\n<p class=\"sub\">"
         + html_escape(hosts.empty() ? "no host" : hosts);
  if (!str_of(report, "from").empty()) {
    out += ", " + html_escape(str_of(report, "from")) + " .. " + html_escape(str_of(report, "to"));
  }
  out += "</p>\n";
  write_summary(out, report);

  static constexpr std::array<const char*, 3> k_order{"critical", "warning", "info"};
  std::array<size_t, 3> counts{};
  for (const Json& f : findings) {
    for (size_t s = 0; s < k_order.size(); ++s) {
      counts.at(s) += str_of(f, "severity") == k_order.at(s) ? 1U : 0U;
    }
  }
  out += R"(<section class="findings"><h2>Findings</h2><p class="counts">)";
  for (size_t s = 0; s < k_order.size(); ++s) {
    out += "<span><span class=\"sev " + std::string(k_order.at(s)) + "\">"
           + std::to_string(counts.at(s)) + " " + k_order.at(s) + "</span></span>";
  }
  out += "</p>\n";
  if (findings.empty()) {
    out += "<p>No findings.</p>\n";
  } else {
    out += "<nav><ol>";
    for (size_t i = 0; i < findings.size(); ++i) {
      const Json& f = findings[i];
      out += "<li><a href=\"#f" + std::to_string(i + 1) + "\"><span class=\"sev "
             + html_escape(str_of(f, "severity")) + "\">" + html_escape(str_of(f, "severity"))
             + "</span> <code>" + html_escape(str_of(f, "detector")) + "</code> "
             + text_of(Json(str_of(f, "summary")), 200) + "</a></li>";
    }
    out += "</ol></nav>\n";
  }
  // Findings come most severe first; grouped under one heading per severity.
  for (size_t s = 0; s < k_order.size(); ++s) {
    bool heading = false;
    for (size_t i = 0; i < findings.size(); ++i) {
      if (str_of(findings[i], "severity") != k_order.at(s)) {
        continue;
      }
      if (!heading) {
        out += "<h2 class=\"sevhead\">" + std::string(k_order.at(s)) + " ("
               + std::to_string(counts.at(s)) + ")</h2>\n";
        heading = true;
      }
      write_finding(out, findings[i], i + 1);
    }
  }
  out += "</section>\n<footer>sockrewind-analyze " + html_escape(str_of(report, "version"))
         + " &middot; a self-contained page: no scripts, fonts, images or other resources are "
           "loaded, and its Content-Security-Policy forbids them.</footer>\n</body></html>\n";
  return out;
}

} // namespace sockrewind::analyze
