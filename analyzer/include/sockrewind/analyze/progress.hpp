#pragma once
// A progress line on stderr for long loads and analyses: only when stderr is a terminal (not
// TERM=dumb), at most about ten updates a second, erased when done; silent otherwise.
// SOCKREWIND_PROGRESS=1 forces it on (tests), =0 off. One line at a time: a Progress made
// while another is shown stays silent (a load nested in an analysis).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>

namespace sockrewind::analyze {

class Progress {
public:
  Progress(std::string label, size_t total);
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  Progress(Progress&&) = delete;
  Progress& operator=(Progress&&) = delete;
  ~Progress();

  // One more unit done; safe from several threads.
  void add(size_t n = 1);

  // Whether progress is shown at all (decided once per process).
  static bool enabled();

  // While a full-screen view (replay) holds the terminal, no bar is drawn: a line written to
  // stderr would land on its screen.
  static void hold_terminal(bool held);

private:
  void draw(size_t done, bool force);

  std::string m_label;
  size_t m_total;
  bool m_on;
  std::atomic<size_t> m_done{0};
  std::mutex m_mutex;
  std::chrono::steady_clock::time_point m_last{};
  bool m_drawn = false;
};

} // namespace sockrewind::analyze
