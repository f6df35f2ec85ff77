#include <sockrewind/analyze/progress.hpp>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace sockrewind::analyze {

namespace {

// A bar is on screen: one at a time, the outermost (the evidence a check reads back loads files
// while "analyzing" is shown; their "loading files" stays silent).
std::atomic<bool> g_shown{false};
std::atomic<bool> g_held{false}; // Progress::hold_terminal

} // namespace

bool Progress::enabled() {
  static const bool on = [] {
    const char* force = std::getenv("SOCKREWIND_PROGRESS"); // NOLINT(concurrency-mt-unsafe)
    if (force != nullptr && *force != '\0') {
      return std::strcmp(force, "0") != 0;
    }
    const char* term = std::getenv("TERM"); // NOLINT(concurrency-mt-unsafe)
    return ::isatty(STDERR_FILENO) == 1 && (term == nullptr || std::strcmp(term, "dumb") != 0);
  }();
  return on;
}

Progress::Progress(std::string label, size_t total)
    : m_label(std::move(label)),
      m_total(total),
      m_on(enabled() && total > 0 && !g_held && !g_shown.exchange(true)) {
  if (m_on) {
    draw(0, true);
  }
}

void Progress::hold_terminal(bool held) {
  g_held = held;
}

Progress::~Progress() {
  if (m_on && m_drawn) {
    const std::lock_guard<std::mutex> lock(m_mutex);
    (void)std::fputs("\r\033[K", stderr); // erase the line: the output that follows is clean
    (void)std::fflush(stderr);
  }
  if (m_on) {
    g_shown = false;
  }
}

void Progress::add(size_t n) {
  const size_t done = m_done += n;
  if (m_on) {
    draw(done, done == m_total);
  }
}

void Progress::draw(size_t done, bool force) {
  const std::lock_guard<std::mutex> lock(m_mutex);
  const auto now = std::chrono::steady_clock::now();
  if (!force && m_drawn && now - m_last < std::chrono::milliseconds(100)) {
    return;
  }
  m_last = now;
  m_drawn = true;
  constexpr size_t k_width = 30;
  const size_t filled = m_total == 0 ? k_width : std::min(k_width, done * k_width / m_total);
  std::string bar(filled, '=');
  bar.resize(k_width, ' ');
  (void)std::fprintf(stderr,
                     "\r%s [%s] %zu/%zu\033[K",
                     m_label.c_str(),
                     bar.c_str(),
                     std::min(done, m_total),
                     m_total);
  (void)std::fflush(stderr);
}

} // namespace sockrewind::analyze
