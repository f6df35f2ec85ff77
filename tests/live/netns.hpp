#pragma once
// A private, named network namespace for live tests (needs root): created with `ip netns add`,
// loopback up, deleted at scope exit. run_in() runs code on a thread that has joined it, so
// sockets created there live in the namespace while this process holds them.

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>

namespace sockrewind::test {

class TestNetns {
public:
  TestNetns() {
    static std::atomic<int> counter{0};
    m_name = "sockrewind-t" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    run_cmd("ip netns add " + m_name);
    run_cmd("ip -n " + m_name + " link set lo up");
  }

  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;
  TestNetns(TestNetns&&) = delete;
  TestNetns& operator=(TestNetns&&) = delete;

  ~TestNetns() {
    const std::string cmd = "ip netns del " + m_name + " 2>/dev/null";
    (void)std::system(cmd.c_str()); // NOLINT(concurrency-mt-unsafe)
  }

  const std::string& name() const { return m_name; }

  std::string path() const { return "/run/netns/" + m_name; }

  // Runs `f` on a new thread inside the namespace and waits for it. Exceptions propagate.
  void run_in(const std::function<void()>& f) const {
    std::exception_ptr err;
    std::thread t([&] {
      try {
        const int fd = ::open(path().c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
          throw std::system_error(errno, std::generic_category(), "setns " + path());
        }
        ::close(fd);
        f();
      } catch (...) {
        err = std::current_exception();
      }
    });
    t.join();
    if (err) {
      std::rethrow_exception(err);
    }
  }

  // Runs a shell command inside the namespace (ip netns exec); returns the exit status.
  int exec(const std::string& cmd) const {
    const std::string full = "ip netns exec " + m_name + " " + cmd;
    return std::system(full.c_str()); // NOLINT(concurrency-mt-unsafe)
  }

private:
  static void run_cmd(const std::string& cmd) {
    if (std::system(cmd.c_str()) != 0) { // NOLINT(concurrency-mt-unsafe)
      throw std::runtime_error("command failed: " + cmd);
    }
  }

  std::string m_name;
};

} // namespace sockrewind::test
