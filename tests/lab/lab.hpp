#pragma once
// The scenario lab: a private network namespace in which a test builds one detector's condition
// on loopback (research/detectors.md §5), the real collector captures it (`ip netns exec NS
// sockrewind-collect --netns self`) and the real analyzer judges it (`report --format json`).
// Sockets made inside run_in() are owned by this test process, so findings name getpid().

#include "live/netns.hpp"
#include "live/sockets.hpp"
#include "support.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sockrewind::test {

class Lab {
public:
  Lab() = default;

  TestNetns& ns() { return m_ns; }

  std::string dir() const { return m_dir.path().string(); }

  // Sets a per-netns sysctl inside the lab namespace (e.g. "net.ipv4.tcp_fin_timeout=5").
  void sysctl(const std::string& assignment) {
    if (m_ns.exec("sysctl -q -w " + assignment) != 0) {
      throw std::runtime_error("sysctl failed: " + assignment);
    }
  }

  // Runs the collector inside the namespace: `count` snapshots `interval` s apart. While it
  // runs, `background` (if given) is called repeatedly on a thread inside the namespace until
  // the collector is done (e.g. to keep a sender pumping or clients churning).
  std::string
  collect(int count = 6, double interval = 1.0, const std::function<void()>& background = {}) {
    std::atomic<bool> stop{false};
    std::thread bg;
    if (background) {
      bg = std::thread([&] {
        m_ns.run_in([&] {
          while (!stop.load()) {
            background();
          }
        });
      });
    }
    const CmdResult r = run_cmd_output(
        "ip netns exec " + m_ns.name() + " " SOCKREWIND_COLLECT_BIN " --netns self --quiet --count "
        + std::to_string(count) + " --interval " + std::to_string(interval) + " --out "
        + m_dir.path().string());
    stop = true;
    if (bg.joinable()) {
      bg.join();
    }
    if (r.status != 0) {
      throw std::runtime_error("sockrewind-collect failed (" + std::to_string(r.status) + ")");
    }
    m_last = trim_newlines(r.out);
    return m_last;
  }

  // With SOCKREWIND_LAB_SAMPLES=DIR in the environment, copies the last collected file to
  // DIR/NAME.sqlite: how samples/ is made (see samples/README.md). Otherwise does nothing.
  void keep_sample(const std::string& name) const {
    const char* dir = std::getenv("SOCKREWIND_LAB_SAMPLES"); // NOLINT(concurrency-mt-unsafe)
    if (dir == nullptr || m_last.empty()) {
      return;
    }
    std::filesystem::copy_file(m_last,
                               std::filesystem::path(dir) / (name + ".sqlite"),
                               std::filesystem::copy_options::overwrite_existing);
  }

  // `sockrewind-analyze report DIR --format json [extra]` parsed; throws if it fails.
  nlohmann::json report(const std::string& extra = "") const {
    const CmdResult r = run_cmd_output(std::string(SOCKREWIND_ANALYZE_BIN) + " report "
                                       + m_dir.path().string() + " --format json " + extra);
    if (r.status != 0) {
      throw std::runtime_error("sockrewind-analyze report failed (" + std::to_string(r.status)
                               + "): " + r.out);
    }
    return nlohmann::json::parse(r.out);
  }

private:
  // Checked before m_ns is made (`ip netns add` fails without root): a clean skip, not a failure.
  [[maybe_unused]] bool m_root = (require_root("the scenario lab"), true);
  TestNetns m_ns;
  TempDir m_dir;
  std::string m_last;
};

inline int severity_rank(const std::string& s) {
  return s == "critical" ? 2 : (s == "warning" ? 1 : 0);
}

// The port of an endpoint "addr:port" / "[v6]:port"; -1 for "*" or unix paths.
inline int endpoint_port(const std::string& ep) {
  const size_t colon = ep.rfind(':');
  if (colon == std::string::npos || colon + 1 >= ep.size() || ep[colon + 1] == '*') {
    return -1;
  }
  try {
    return std::stoi(ep.substr(colon + 1));
  } catch (const std::exception&) {
    return -1;
  }
}

// Findings of `detector` whose subject has local port `port` (if given; also matched against
// the remote port when `either_end`) and owner pid `pid` (if given).
inline std::vector<nlohmann::json> findings_of(const nlohmann::json& report,
                                               const std::string& detector,
                                               std::optional<int> port = std::nullopt,
                                               std::optional<int> pid = std::nullopt,
                                               bool either_end = false) {
  std::vector<nlohmann::json> out;
  for (const auto& f : report.at("findings")) {
    if (f.at("detector") != detector) {
      continue;
    }
    const auto& s = f.at("subject");
    if (port) {
      const int lp = s.contains("local") && s["local"].is_string()
                         ? endpoint_port(s["local"].get<std::string>())
                         : -1;
      const int rp = s.contains("remote") && s["remote"].is_string()
                         ? endpoint_port(s["remote"].get<std::string>())
                         : -1;
      if (lp != *port && !(either_end && rp == *port)) {
        continue;
      }
    }
    if (pid && !(s.contains("pid") && s["pid"].is_number() && s["pid"].get<int>() == *pid)) {
      continue;
    }
    out.push_back(f);
  }
  return out;
}

// One line per finding, for failure messages.
inline std::string summarize(const nlohmann::json& report) {
  std::string out;
  for (const auto& f : report.at("findings")) {
    out += f.at("severity").get<std::string>() + " " + f.at("detector").get<std::string>() + ": "
           + f.at("summary").get<std::string>() + "\n";
  }
  return out.empty() ? "(no findings)\n" : out;
}

inline void set_nonblocking(const Sock& s) {
  ::fcntl(s.fd(), F_SETFL, ::fcntl(s.fd(), F_GETFL) | O_NONBLOCK);
}

// Writes until the socket would block; returns the bytes written.
inline size_t pump(const Sock& s) {
  static const std::vector<char> buf(65536, 'p');
  size_t total = 0;
  for (;;) {
    const ssize_t n = ::send(s.fd(), buf.data(), buf.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) {
      return total;
    }
    total += static_cast<size_t>(n);
  }
}

// A non-blocking connect to 127.0.0.1:port that may stay in progress (e.g. a full listener).
inline Sock connect_nonblocking(uint16_t port) {
  Sock s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  const sockaddr_in a = loopback4(port);
  const int rc = ::connect(s.fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a);
  if (rc != 0 && errno != EINPROGRESS) {
    sys_fail("connect");
  }
  return s;
}

// Loads an nftables ruleset inside the lab's namespace; throws if nft rejects it.
inline void nft(Lab& lab, const std::string& ruleset) {
  const std::string file = lab.dir() + "/rules.nft";
  {
    std::ofstream out(file);
    out << ruleset;
  }
  const int rc = lab.ns().exec("nft -f " + file);
  std::filesystem::remove(file); // the analyzer reads the directory
  if (rc != 0) {
    throw std::runtime_error("nft -f failed for: " + ruleset);
  }
}

} // namespace sockrewind::test
