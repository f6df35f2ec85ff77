// `sockrewind-analyze replay`: the full-screen terminal view (ncurses) over replay::Model. Only
// drawing and keys live here; everything that decides what is shown is in replay_model.cpp.
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/progress.hpp>
#include <sockrewind/analyze/replay_model.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>

#include <curses.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

namespace sockrewind::analyze {

namespace {

using namespace replay;
using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_signal = 0; // NOLINT: set by the signal handler only

extern "C" void on_signal(int sig) {
  g_signal = sig;
}

// Bytes of `s` that fill at most `width` columns (UTF-8 aware: continuation bytes take none;
// text is escape_text()ed, so no control characters are left).
std::string fit(const std::string& s, size_t width) {
  size_t cols = 0;
  size_t i = 0;
  for (; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0U) != 0x80U) {
      if (cols == width) {
        break;
      }
      ++cols;
    }
  }
  std::string out = s.substr(0, i);
  if (i < s.size() && width > 0) {
    // Cut: mark it with '>' in the last column.
    size_t j = out.size();
    while (j > 0 && (static_cast<unsigned char>(out[j - 1]) & 0xC0U) == 0x80U) {
      --j;
    }
    out = out.substr(0, j > 0 ? j - 1 : 0) + ">";
  }
  return out + std::string(width > cols ? width - cols : 0, ' ');
}

std::string pad_left(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

// Restores the terminal whatever way the view ends (return, exception).
class Screen {
public:
  Screen() : m_term(newterm(nullptr, stdout, stdin)) {
    if (m_term == nullptr) {
      return;
    }
    Progress::hold_terminal(true); // the findings' load draws no bar over the view
    cbreak();                      // not raw(): ^C stays SIGINT, handled like SIGTERM
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout(100);
    set_escdelay(25); // Esc closes at once, not after ncurses' default second
    const char* no_color = std::getenv("NO_COLOR"); // NOLINT(concurrency-mt-unsafe)
    m_color = has_colors() && (no_color == nullptr || *no_color == '\0');
    if (m_color) {
      start_color();
      use_default_colors();
      init_pair(1, COLOR_BLACK, COLOR_CYAN); // header
      init_pair(2, COLOR_RED, -1);           // critical, finding marks
      init_pair(3, COLOR_YELLOW, -1);        // warning
      init_pair(4, COLOR_GREEN, -1);         // follow: current snapshot
    }
  }

  ~Screen() {
    if (m_term != nullptr) {
      curs_set(1);
      endwin();
      delscreen(m_term);
      Progress::hold_terminal(false);
    }
  }

  Screen(const Screen&) = delete;
  Screen& operator=(const Screen&) = delete;
  Screen(Screen&&) = delete;
  Screen& operator=(Screen&&) = delete;

  bool ok() const { return m_term != nullptr; }

  bool color() const { return m_color; }

private:
  SCREEN* m_term = nullptr;
  bool m_color = false;
};

enum class Mode : uint8_t { table, follow, help };

class View {
public:
  View(Model& m, const ReplayOptions& opts, bool color) : m_m(m), m_opts(opts), m_color(color) {
    refresh_rows();
  }

  // The key loop; returns when the user quits or a signal arrives.
  void run() {
    draw();
    while (g_signal == 0) {
      const int ch = getch();
      if (ch == ERR) {
        if (m_playing && Clock::now() - m_last_play >= std::chrono::milliseconds(m_opts.play_ms)) {
          step_play();
          draw();
        }
        continue;
      }
      if (!key(ch)) {
        return;
      }
      draw();
    }
  }

private:
  // ---- state changes ----

  void refresh_rows() {
    std::optional<uint64_t> keep;
    if (m_sel < m_rows.size() && m_rows_of == m_m.pos()) {
      keep = row_identity(m_m.view().rows[m_rows[m_sel]]);
    } else if (m_sel_id) {
      keep = m_sel_id;
    }
    m_rows = visible_rows(m_m.view(), m_filter, m_sort, m_reverse);
    m_rows_of = m_m.pos();
    if (keep) {
      for (size_t i = 0; i < m_rows.size(); ++i) {
        if (row_identity(m_m.view().rows[m_rows[i]]) == *keep) {
          m_sel = i;
          break;
        }
      }
    }
    m_sel = m_rows.empty() ? 0 : std::min(m_sel, m_rows.size() - 1);
    m_sel_id = m_rows.empty()
                   ? std::nullopt
                   : std::optional<uint64_t>(row_identity(m_m.view().rows[m_rows[m_sel]]));
  }

  void go(size_t pos) {
    if (pos >= m_m.size()) {
      return;
    }
    m_m.go(pos);
    refresh_rows();
  }

  void step_play() {
    m_last_play = Clock::now();
    if (m_m.pos() + 1 >= m_m.size()) {
      m_playing = false;
      m_status = "end of the series: paused";
      return;
    }
    go(m_m.pos() + 1);
  }

  static void move_sel(long delta, size_t count, size_t& sel) {
    if (count == 0) {
      sel = 0;
      return;
    }
    const long to = std::clamp(static_cast<long>(sel) + delta, 0L, static_cast<long>(count) - 1);
    sel = static_cast<size_t>(to);
  }

  void select_table(long delta) {
    move_sel(delta, m_rows.size(), m_sel);
    if (!m_rows.empty()) {
      m_sel_id = row_identity(m_m.view().rows[m_rows[m_sel]]);
    }
  }

  // Reads a line on the bottom row; nullopt on Esc (or a signal).
  std::optional<std::string> prompt(const std::string& label) {
    std::string text;
    curs_set(1);
    while (g_signal == 0) {
      move(LINES - 1, 0);
      clrtoeol();
      mvaddstr(LINES - 1, 0, fit(label + text, static_cast<size_t>(std::max(COLS - 1, 1))).c_str());
      move(LINES - 1, std::min(static_cast<int>(label.size() + text.size()), COLS - 1));
      refresh();
      const int ch = getch();
      if (ch == ERR || ch == KEY_RESIZE) {
        if (ch == KEY_RESIZE) {
          draw();
        }
        continue;
      }
      if (ch == 27) {
        break;
      }
      if (ch == '\n' || ch == '\r' || ch == KEY_ENTER) {
        curs_set(0);
        return text;
      }
      if (ch == KEY_BACKSPACE || ch == 127 || ch == 8) {
        if (!text.empty()) {
          text.pop_back();
        }
      } else if (ch >= 32 && ch < 127) {
        text += static_cast<char>(ch);
      }
    }
    curs_set(0);
    return std::nullopt;
  }

  void jump_to_time() {
    const auto in = prompt("jump to (snapshot number or ISO 8601 time, Esc cancels): ");
    if (!in || in->empty()) {
      return;
    }
    try {
      if (std::all_of(in->begin(), in->end(), [](char c) { return std::isdigit(c) != 0; })) {
        const size_t n = std::stoul(*in);
        if (n < 1 || n > m_m.size()) {
          m_status = "no snapshot " + *in + ": 1.." + std::to_string(m_m.size());
          return;
        }
        go(n - 1);
      } else {
        go(m_m.find_time(parse_time(*in)));
      }
    } catch (const UsageError& e) {
      m_status = e.what();
    } catch (const std::out_of_range&) {
      m_status = "no snapshot " + *in;
    }
  }

  void ask_filter() {
    const auto in = prompt("filter (port:N pid:N state:NAME text; empty clears): ");
    if (!in) {
      return;
    }
    try {
      m_filter = parse_filter(*in);
      m_sel = 0;
      m_sel_id.reset();
      refresh_rows();
    } catch (const UsageError& e) {
      m_status = e.what();
    }
  }

  void open_follow() {
    if (m_rows.empty()) {
      m_status = "nothing to follow: no socket shown";
      return;
    }
    message("loading the socket's timeline...");
    m_follow = m_m.follow(m_m.view().rows[m_rows[m_sel]]);
    if (!m_follow->error.empty()) {
      m_status = m_follow->error;
      m_follow.reset();
      return;
    }
    m_follow_sel = 0;
    for (size_t i = 0; i < m_follow->points.size(); ++i) {
      if (m_follow->points[i].pos <= m_m.pos()) {
        m_follow_sel = i;
      }
    }
    m_mode = Mode::follow;
  }

  void toggle_findings() {
    if (m_findings_open) {
      m_findings_open = false;
      return;
    }
    if (!m_m.findings_loaded()) {
      message("running the report's detectors over the whole series...");
      m_m.findings();
    }
    m_findings_open = true;
    m_focus_findings = true;
  }

  void jump_to_finding() {
    const auto& fs = m_m.findings();
    if (m_finding_sel >= fs.size()) {
      return;
    }
    const Finding& f = fs[m_finding_sel];
    m_filter = subject_filter(f);
    m_sel = 0;
    m_sel_id.reset();
    m_m.go(m_m.finding_pos(f));
    refresh_rows();
    m_focus_findings = false;
    m_status = escape_text(f.detector) + " fires at " + iso8601(f.first_seen_ns) + ": "
               + escape_text(f.summary);
  }

  // Returns false to quit.
  bool key(int ch) {
    m_status.clear();
    if (ch == KEY_RESIZE) {
      return true;
    }
    if (m_mode == Mode::help) {
      m_mode = Mode::table; // any key returns
      return true;
    }
    if (m_mode == Mode::follow) {
      return follow_key(ch);
    }
    const bool in_findings = m_findings_open && m_focus_findings;
    switch (ch) {
    case 'q':
      return false;
    case 27:
      if (m_findings_open) {
        m_findings_open = false;
      }
      break;
    case 'n':
    case KEY_RIGHT:
      go(m_m.pos() + 1);
      break;
    case 'p':
    case KEY_LEFT:
      if (m_m.pos() > 0) {
        go(m_m.pos() - 1);
      }
      break;
    case 'g':
    case KEY_HOME:
      go(0);
      break;
    case 'G':
    case KEY_END:
      go(m_m.size() - 1);
      break;
    case ' ':
      m_playing = !m_playing;
      m_last_play = Clock::now();
      break;
    case 't':
      jump_to_time();
      break;
    case 's':
      m_sort = next_sort(m_sort);
      refresh_rows();
      break;
    case 'r':
      m_reverse = !m_reverse;
      refresh_rows();
      break;
    case '/':
      ask_filter();
      break;
    case 'c':
      m_filter = Filter{};
      refresh_rows();
      break;
    case 'f':
      toggle_findings();
      break;
    case '\t':
      if (m_findings_open) {
        m_focus_findings = !m_focus_findings;
      }
      break;
    case '?':
      m_mode = Mode::help;
      break;
    case KEY_UP:
    case 'k':
      in_findings ? move_sel(-1, m_m.findings().size(), m_finding_sel) : select_table(-1);
      break;
    case KEY_DOWN:
    case 'j':
      in_findings ? move_sel(1, m_m.findings().size(), m_finding_sel) : select_table(1);
      break;
    case KEY_PPAGE:
      select_table(-std::max(1L, static_cast<long>(m_table_h)));
      break;
    case KEY_NPAGE:
      select_table(std::max(1L, static_cast<long>(m_table_h)));
      break;
    case '\n':
    case '\r':
    case KEY_ENTER:
      in_findings ? jump_to_finding() : open_follow();
      break;
    default:
      break;
    }
    return true;
  }

  bool follow_key(int ch) {
    const size_t n = m_follow->points.size();
    switch (ch) {
    case 'q':
      return false;
    case 27:
    case KEY_BACKSPACE:
    case 127:
    case 'F':
      m_mode = Mode::table;
      m_follow.reset();
      break;
    case KEY_UP:
    case 'k':
      move_sel(-1, n, m_follow_sel);
      break;
    case KEY_DOWN:
    case 'j':
      move_sel(1, n, m_follow_sel);
      break;
    case 'g':
    case KEY_HOME:
      m_follow_sel = 0;
      break;
    case 'G':
    case KEY_END:
      m_follow_sel = n == 0 ? 0 : n - 1;
      break;
    case KEY_PPAGE:
      move_sel(-std::max(1L, static_cast<long>(LINES - 4)), n, m_follow_sel);
      break;
    case KEY_NPAGE:
      move_sel(std::max(1L, static_cast<long>(LINES - 4)), n, m_follow_sel);
      break;
    case '\n':
    case '\r':
    case KEY_ENTER:
      if (m_follow_sel < n) {
        go(m_follow->points[m_follow_sel].pos);
      }
      m_mode = Mode::table;
      m_follow.reset();
      break;
    default:
      break;
    }
    return true;
  }

  // ---- drawing ----

  static void line(int y, const std::string& s, attr_t attr = A_NORMAL) {
    if (y < 0 || y >= LINES) {
      return;
    }
    attrset(static_cast<int>(attr));
    mvaddstr(y, 0, fit(s, static_cast<size_t>(COLS)).c_str());
    attrset(A_NORMAL);
  }

  attr_t pair(short p, attr_t fallback) const {
    return m_color ? static_cast<attr_t>(COLOR_PAIR(p)) : fallback;
  }

  static void message(const std::string& s) {
    line(LINES - 1, s, A_BOLD);
    refresh();
  }

  std::string time_bar(size_t width) {
    if (width < 3) {
      return "";
    }
    const size_t cells = width - 2;
    std::string bar(cells, '-');
    const size_t n = m_m.size();
    const auto cell = [&](size_t pos) { return n <= 1 ? 0 : pos * (cells - 1) / (n - 1); };
    if (m_m.findings_loaded()) {
      for (const Finding& f : m_m.findings()) {
        bar[cell(m_m.finding_pos(f))] = '!';
      }
    }
    bar[cell(m_m.pos())] = '#';
    return "[" + bar + "]";
  }

  void draw_header() {
    const SnapshotView& v = m_m.view();
    const SnapshotInfo& info = v.info;
    std::string head = "host " + escape_text(m_m.host()) + "  " + iso8601(info.realtime_ns)
                       + "  snapshot " + std::to_string(m_m.pos() + 1) + "/"
                       + std::to_string(m_m.size()) + "  sockets " + std::to_string(v.rows.size());
    if (m_rows.size() != v.rows.size()) {
      head += " (shown " + std::to_string(m_rows.size()) + ")";
    }
    line(0, head, pair(1, A_REVERSE));
    line(1, "changes: " + m_m.diff().text(static_cast<size_t>(std::max(COLS - 9, 0))));
    std::string st = "sort " + std::string(sort_name(m_sort)) + (m_reverse ? " (reversed)" : "");
    st += "  filter " + (m_filter.empty() ? std::string("none") : escape_text(m_filter.describe()));
    if (m_playing) {
      st += "  PLAYING";
    }
    if (m_m.findings_loaded()) {
      st += "  findings " + std::to_string(m_m.findings().size());
    }
    line(2, st);
    const std::string bar = time_bar(static_cast<size_t>(COLS));
    line(3, bar);
    if (m_m.findings_loaded()) {
      attron(static_cast<int>(pair(2, A_BOLD)));
      for (size_t i = 0; i < bar.size(); ++i) {
        if (bar[i] == '!') {
          mvaddch(3, static_cast<int>(i), '!');
        }
      }
      attroff(static_cast<int>(pair(2, A_BOLD)));
    }
  }

  struct Widths {
    size_t addr = 0;
    size_t details = 0;
  };

  static Widths widths() {
    const size_t fixed = 6 + 11 + 7 + 7; // Netid, State, Recv-Q, Send-Q with separators
    const auto cols = static_cast<size_t>(COLS);
    const size_t rest = cols > fixed ? cols - fixed : 0;
    Widths w;
    // 18 columns each at 80 (IPv4 with an ephemeral port fits), up to 46 (IPv6) when wider.
    w.addr = std::clamp<size_t>((rest - std::min<size_t>(rest, 2)) * 2 / 5, 8, 46);
    w.details = rest > 2 * (w.addr + 1) ? rest - 2 * (w.addr + 1) : 0;
    return w;
  }

  std::string row_text(const SocketRow& r, const Widths& w) const {
    // Owners compactly, "comm(pid)" each: at 80 columns `show`'s users:((...)) would not fit.
    std::string details;
    for (const RowOwner& o : r.owners) {
      const auto it = m_m.view().comm.find(o.pid);
      details += (details.empty() ? "" : ",")
                 + (it == m_m.view().comm.end() ? std::string("?") : escape_text(it->second)) + "("
                 + std::to_string(o.pid) + ")";
    }
    const std::string timer = timer_text(r);
    if (!timer.empty()) {
      details += (details.empty() ? "" : " ") + timer;
    }
    return fit(escape_text(r.proto_name), 5) + " " + fit(row_state_text(r), 10) + " "
           + pad_left(opt_text(r.rx_queue), 6) + " " + pad_left(opt_text(r.tx_queue), 6) + " "
           + fit(escape_text(r.local), w.addr) + " " + fit(escape_text(r.remote), w.addr) + " "
           + details;
  }

  void draw_table(int y0, int height) {
    const Widths w = widths();
    line(y0,
         fit("Netid", 5) + " " + fit("State", 10) + " " + pad_left("Recv-Q", 6) + " "
             + pad_left("Send-Q", 6) + " " + fit("Local Address:Port", w.addr) + " "
             + fit("Peer Address:Port", w.addr) + " Process",
         A_BOLD);
    const int rows_h = std::max(height - 1, 0);
    m_table_h = static_cast<size_t>(rows_h);
    if (m_sel < m_top) {
      m_top = m_sel;
    } else if (rows_h > 0 && m_sel >= m_top + static_cast<size_t>(rows_h)) {
      m_top = m_sel - static_cast<size_t>(rows_h) + 1;
    }
    if (m_rows.empty()) {
      line(y0 + 1,
           m_filter.empty() ? "(no sockets in this snapshot)" : "(no socket matches the filter)");
      return;
    }
    for (int i = 0; i < rows_h; ++i) {
      const size_t k = m_top + static_cast<size_t>(i);
      if (k >= m_rows.size()) {
        break;
      }
      const bool sel = k == m_sel && !(m_findings_open && m_focus_findings);
      line(y0 + 1 + i, row_text(m_m.view().rows[m_rows[k]], w), sel ? A_REVERSE : A_NORMAL);
    }
  }

  void draw_findings(int y0, int height) {
    const auto& fs = m_m.findings();
    line(y0,
         "Findings (" + std::to_string(fs.size()) + ")  Up/Down select, Enter jumps, Tab "
             + (m_focus_findings ? "to table" : "to findings") + ", f closes",
         pair(1, A_REVERSE));
    if (fs.empty()) {
      line(y0 + 1, "(no findings in this series)");
      return;
    }
    const int rows_h = std::max(height - 1, 0);
    if (m_finding_sel < m_ftop) {
      m_ftop = m_finding_sel;
    } else if (rows_h > 0 && m_finding_sel >= m_ftop + static_cast<size_t>(rows_h)) {
      m_ftop = m_finding_sel - static_cast<size_t>(rows_h) + 1;
    }
    for (int i = 0; i < rows_h; ++i) {
      const size_t k = m_ftop + static_cast<size_t>(i);
      if (k >= fs.size()) {
        break;
      }
      const Finding& f = fs[k];
      const std::string text = fit(std::string(severity_name(f.severity)), 8) + " #"
                               + pad_left(std::to_string(m_m.finding_pos(f) + 1), 4) + " "
                               + escape_text(f.detector) + ": " + escape_text(f.summary);
      attr_t a = f.severity == Severity::critical  ? pair(2, A_BOLD)
                 : f.severity == Severity::warning ? pair(3, A_NORMAL)
                                                   : A_NORMAL;
      if (k == m_finding_sel && m_focus_findings) {
        a = A_REVERSE;
      }
      line(y0 + 1 + i, text, a);
    }
  }

  void draw_follow() {
    const Follow& f = *m_follow;
    line(0, "follow " + escape_text(f.title), pair(1, A_REVERSE));
    line(1,
         "seen in " + std::to_string(f.points.size()) + " of " + std::to_string(m_m.size())
             + " snapshots  (Enter: show that snapshot, Esc: back)");
    line(2,
         pad_left("#", 5) + " " + fit("Time", 24) + " " + fit("State", 10) + " "
             + pad_left("Recv-Q", 6) + " " + pad_left("Send-Q", 6) + " " + fit("Timer", 9)
             + " Owner",
         A_BOLD);
    const int rows_h = std::max(LINES - 4, 0);
    if (m_follow_sel < m_follow_top) {
      m_follow_top = m_follow_sel;
    } else if (rows_h > 0 && m_follow_sel >= m_follow_top + static_cast<size_t>(rows_h)) {
      m_follow_top = m_follow_sel - static_cast<size_t>(rows_h) + 1;
    }
    for (int i = 0; i < rows_h; ++i) {
      const size_t k = m_follow_top + static_cast<size_t>(i);
      if (k >= f.points.size()) {
        break;
      }
      const FollowPoint& p = f.points[k];
      const std::string text = pad_left(std::to_string(p.pos + 1), 5) + " "
                               + fit(iso8601(m_m.index()[p.pos].realtime_ns), 24) + " "
                               + fit(p.state, 10) + " " + pad_left(p.recv_q, 6) + " "
                               + pad_left(p.send_q, 6) + " " + fit(p.timer, 9) + " "
                               + escape_text(p.owner);
      attr_t a = p.pos == m_m.pos() ? pair(4, A_BOLD) : A_NORMAL;
      if (k == m_follow_sel) {
        a = A_REVERSE;
      }
      line(3 + i, text, a);
    }
  }

  static void draw_help() {
    static const std::vector<std::string> k_help{
        "sockrewind-analyze replay: keys",
        "",
        "  n, Right      next snapshot          p, Left     previous snapshot",
        "  g, Home       first snapshot         G, End      last snapshot",
        "  Space         play / pause           t           jump to a time or number",
        "  s             sort: ss, Recv-Q, Send-Q, state, owner, port",
        "  r             reverse the sort       c           clear the filter",
        "  /             filter: port:N pid:N state:NAME and/or free text",
        "  Up/Down, j/k  select a socket        PgUp/PgDn   page",
        "  Enter         follow the selected socket over the whole series",
        "  f             findings pane (runs the report's detectors once)",
        "  Tab           move between table and findings; Enter on a finding",
        "                jumps to its snapshot and filters to its subject",
        "  ?             this help              q           quit",
        "",
        "Time bar: # is this snapshot, ! where a finding fires (after f).",
        "",
        "Press any key to return.",
    };
    for (size_t i = 0; i < k_help.size(); ++i) {
      line(static_cast<int>(i), k_help[i], i == 0 ? A_BOLD : A_NORMAL);
    }
  }

  void draw() {
    erase();
    if (COLS < 40 || LINES < 10) {
      line(0, "terminal too small (40x10 at least)");
      refresh();
      return;
    }
    if (m_mode == Mode::help) {
      draw_help();
    } else if (m_mode == Mode::follow) {
      draw_follow();
    } else {
      draw_header();
      const int body = LINES - 5 - 1; // header 4 lines + column header is in the table
      int table_h = body + 1;
      if (m_findings_open) {
        const int want = static_cast<int>(std::max<size_t>(m_m.findings().size(), 1)) + 1;
        const int fh = std::min(want, std::max((LINES - 5) / 2, 3));
        table_h -= fh;
        draw_findings(4 + table_h, fh);
      }
      draw_table(4, table_h);
    }
    const std::string help = m_status.empty()
                                 ? std::string("n/p:step SPC:play t:time s:sort /:filter "
                                               "Enter:follow f:findings ?:help q:quit")
                                 : m_status;
    line(LINES - 1, help, m_status.empty() ? pair(1, A_REVERSE) : A_BOLD);
    refresh();
  }

  Model& m_m;
  const ReplayOptions& m_opts;
  bool m_color = false;
  Mode m_mode = Mode::table;
  Filter m_filter;
  SortKey m_sort = SortKey::ss;
  bool m_reverse = false;
  std::vector<size_t> m_rows;
  size_t m_rows_of = SIZE_MAX;
  size_t m_sel = 0;
  size_t m_top = 0;
  size_t m_table_h = 1;
  std::optional<uint64_t> m_sel_id;
  bool m_playing = false;
  Clock::time_point m_last_play = Clock::now();
  std::string m_status;
  bool m_findings_open = false;
  bool m_focus_findings = false;
  size_t m_finding_sel = 0;
  size_t m_ftop = 0;
  std::optional<Follow> m_follow;
  size_t m_follow_sel = 0;
  size_t m_follow_top = 0;
};

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// --bench: the figures of opening (index + first snapshot + its first screen's rows) and of
// stepping, without a terminal. A step is measured twice: after the read-ahead has finished
// (a user who looks at the screen for the read time first) and back to back (holding a key:
// the read itself).
int bench(const ReplayOptions& opts) {
  const Clock::time_point t0 = Clock::now();
  Model m(opts.paths, opts.host);
  std::vector<size_t> rows = visible_rows(m.view(), Filter{}, SortKey::ss);
  const double open_ms = ms_since(t0);
  std::vector<double> ready;
  std::vector<double> back_to_back;
  // Re-sorting the shown snapshot by each key but ss (whose order is the rows' own).
  constexpr std::array<std::pair<SortKey, const char*>, 5> k_resort{{{SortKey::recv_q, "recvq"},
                                                                     {SortKey::send_q, "sendq"},
                                                                     {SortKey::state, "state"},
                                                                     {SortKey::owner, "owner"},
                                                                     {SortKey::port, "port"}}};
  std::array<std::vector<double>, k_resort.size()> resort;
  for (size_t i = 0; i < opts.bench_steps && m.pos() + 1 < m.size(); ++i) {
    const bool wait = i % 2 == 0;
    if (wait) {
      m.wait_read_ahead();
      // The re-sorts only before a step that waits anyway: a back-to-back step follows its
      // predecessor at once, so nothing lets its read-ahead catch up.
      for (size_t k = 0; k < k_resort.size(); ++k) {
        const Clock::time_point ts = Clock::now();
        rows = visible_rows(m.view(), Filter{}, k_resort[k].first);
        resort[k].push_back(ms_since(ts));
      }
    }
    const Clock::time_point t = Clock::now();
    m.go(m.pos() + 1);
    rows = visible_rows(m.view(), Filter{}, SortKey::ss);
    (wait ? ready : back_to_back).push_back(ms_since(t));
  }
  const auto median = [](std::vector<double> v) {
    if (v.empty()) {
      return 0.0;
    }
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  const auto max = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
  };
  std::printf("snapshots %zu  sockets %zu  open_ms %.1f  step_ready_median_ms %.1f  "
              "step_ready_max_ms %.1f  step_back_to_back_median_ms %.1f  "
              "step_back_to_back_max_ms %.1f  steps %zu",
              m.size(),
              m.view().rows.size(),
              open_ms,
              median(ready),
              max(ready),
              median(back_to_back),
              max(back_to_back),
              ready.size() + back_to_back.size());
  for (size_t k = 0; k < k_resort.size(); ++k) {
    std::printf("  sort_%s_median_ms %.1f", k_resort[k].second, median(resort[k]));
  }
  std::printf("\n");
  return 0;
}

} // namespace

int run_replay(const ReplayOptions& opts) {
  if (opts.bench) {
    return bench(opts);
  }
  // UTF-8 paths and names draw as text. Before the model starts its read-ahead thread.
  (void)std::setlocale(LC_ALL, ""); // NOLINT(concurrency-mt-unsafe): no other thread yet
  // Bad files first (exit 3 as in every command), then the terminal.
  Model model(opts.paths, opts.host);
  const char* term = std::getenv("TERM"); // NOLINT(concurrency-mt-unsafe)
  const bool dumb = term == nullptr || *term == '\0' || std::string_view(term) == "dumb";
  const bool out_tty = isatty(STDOUT_FILENO) != 0;
  if (!out_tty || isatty(STDIN_FILENO) == 0 || dumb) {
    const char* why = !out_tty ? "stdout is not a terminal"
                      : dumb   ? "TERM is dumb or unset"
                               : "stdin is not a terminal";
    (void)std::fprintf(stderr,
                       "sockrewind-analyze replay: needs a full-screen terminal (%s); use `show` "
                       "for one snapshot or `timeline` for one socket over time\n",
                       why);
    return 2;
  }

  using SigAction = struct sigaction;
  SigAction sa{};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  SigAction old_int{};
  SigAction old_term{};
  SigAction old_hup{};
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGHUP, &sa, &old_hup);
  {
    Screen screen;
    if (!screen.ok()) {
      (void)std::fprintf(stderr,
                         "sockrewind-analyze replay: cannot use terminal '%s'; use `show` or "
                         "`timeline`\n",
                         term);
      return 2;
    }
    View view(model, opts, screen.color());
    view.run();
  } // the terminal is restored here, also on an exception
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGHUP, &old_hup, nullptr);
  if (g_signal != 0) {
    // Die of the signal as if unhandled (exit status 128+N), the terminal already restored.
    const int sig = g_signal;
    (void)std::fflush(stdout);
    (void)std::raise(sig);
    return 128 + sig;
  }
  return 0;
}

} // namespace sockrewind::analyze
