#include <sockrewind/collect/counters.hpp>
#include <sockrewind/collect/proc_net.hpp>

#include <charconv>
#include <string>
#include <vector>

namespace sockrewind::collect {

namespace {

// A counter value. Most are unsigned long, a few are signed (Tcp MaxConn prints -1), so
// parse as int64 with a sign allowed and keep a u64 above INT64_MAX as the same 64 bits.
std::optional<int64_t> parse_counter(std::string_view s) {
  if (s.empty()) {
    return std::nullopt;
  }
  const char* end = s.data() + s.size();
  int64_t v = 0;
  if (const auto [p, ec] = std::from_chars(s.data(), end, v); ec == std::errc{} && p == end) {
    return v;
  }
  uint64_t u = 0;
  if (const auto [p, ec] = std::from_chars(s.data(), end, u); ec == std::errc{} && p == end) {
    return static_cast<int64_t>(u);
  }
  return std::nullopt;
}

// "Group:" → "Group"; nullopt for anything else.
std::optional<std::string_view> group_of(std::string_view field) {
  if (field.size() < 2 || field.back() != ':') {
    return std::nullopt;
  }
  return field.substr(0, field.size() - 1);
}

// Appends the counter `name` = `value` to `out`, or a bad_row issue when `value` is not a number.
void add_counter(Parsed<CounterRow>& out,
                 const std::string& file,
                 std::string name,
                 std::string_view value) {
  if (const auto v = parse_counter(value)) {
    out.rows.push_back({file, std::move(name), *v});
  } else {
    out.issues.push_back(
        {"proc:" + file, "bad_row", text::issue_example(name + " " + std::string(value))});
  }
}

} // namespace

Parsed<CounterRow> parse_proc_net_pairs(std::string_view text, std::string_view file) {
  Parsed<CounterRow> out;
  const std::string f(file);
  const std::string src = "proc:" + f;
  std::string_view rest = text;
  // The names line waiting for its values line (empty when none).
  std::vector<std::string_view> names;
  std::string_view names_line;
  while (!rest.empty()) {
    const std::string_view line = text::next_line(rest);
    auto fields = text::split_fields(line);
    if (fields.empty()) {
      continue;
    }
    const auto group = group_of(fields[0]);
    if (!group) {
      out.issues.push_back({src, "bad_row", text::issue_example(line)});
      names.clear();
      continue;
    }
    if (names.empty()) {
      names = std::move(fields);
      names_line = line;
      continue;
    }
    if (names[0] != fields[0]) { // a names line without its values line
      out.issues.push_back({src, "bad_row", text::issue_example(names_line)});
      names = std::move(fields);
      names_line = line;
      continue;
    }
    if (names.size() != fields.size()) { // the pair disagrees: keep none of it
      out.issues.push_back({src, "bad_row", text::issue_example(line)});
      names.clear();
      continue;
    }
    for (size_t i = 1; i < names.size(); ++i) {
      add_counter(out, f, std::string(*group) + "." + std::string(names[i]), fields[i]);
    }
    names.clear();
  }
  if (!names.empty()) {
    out.issues.push_back({src, "bad_row", text::issue_example(names_line)});
  }
  return out;
}

Parsed<CounterRow> parse_proc_net_snmp6(std::string_view text) {
  Parsed<CounterRow> out;
  const std::string file = "snmp6";
  std::string_view rest = text;
  while (!rest.empty()) {
    const std::string_view line = text::next_line(rest);
    const auto fields = text::split_fields(line);
    if (fields.empty()) {
      continue;
    }
    if (fields.size() != 2) {
      out.issues.push_back({"proc:" + file, "bad_row", text::issue_example(line)});
      continue;
    }
    add_counter(out, file, std::string(fields[0]), fields[1]);
  }
  return out;
}

Parsed<CounterRow> parse_proc_net_sockstat(std::string_view text, std::string_view file) {
  Parsed<CounterRow> out;
  const std::string f(file);
  std::string_view rest = text;
  while (!rest.empty()) {
    const std::string_view line = text::next_line(rest);
    const auto fields = text::split_fields(line);
    if (fields.empty()) {
      continue;
    }
    const auto group = group_of(fields[0]);
    if (!group || fields.size() % 2 != 1) { // "GROUP:" then key/value pairs
      out.issues.push_back({"proc:" + f, "bad_row", text::issue_example(line)});
      continue;
    }
    for (size_t i = 1; i + 1 < fields.size(); i += 2) {
      add_counter(out, f, std::string(*group) + "." + std::string(fields[i]), fields[i + 1]);
    }
  }
  return out;
}

std::optional<ProcStat> parse_proc_pid_stat(std::string_view text) {
  // comm may hold spaces, newlines and ')' itself: it ends at the LAST ')'.
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return std::nullopt;
  }
  const auto head = text::split_fields(text.substr(0, open));
  const auto tail = text::split_fields(text.substr(close + 1));
  // tail[0] is field 3 (state); field N is tail[N - 3].
  constexpr size_t k_ppid = 4 - 3;
  constexpr size_t k_num_threads = 20 - 3;
  constexpr size_t k_starttime = 22 - 3;
  if (head.size() != 1 || tail.size() <= k_starttime || tail[0].size() != 1) {
    return std::nullopt;
  }
  ProcStat ps;
  const auto num = [](std::string_view s, auto& v) {
    const char* end = s.data() + s.size();
    const auto [p, ec] = std::from_chars(s.data(), end, v);
    return ec == std::errc{} && p == end;
  };
  if (!num(head[0], ps.pid) || !num(tail[k_ppid], ps.ppid)
      || !num(tail[k_num_threads], ps.num_threads) || !num(tail[k_starttime], ps.start_ticks)) {
    return std::nullopt;
  }
  ps.comm = std::string(text.substr(open + 1, close - open - 1));
  ps.state = tail[0][0];
  return ps;
}

std::optional<char> process_state(const ProcStat& ps) {
  const char c = ps.state;
  if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')) {
    return c;
  }
  return std::nullopt;
}

} // namespace sockrewind::collect
