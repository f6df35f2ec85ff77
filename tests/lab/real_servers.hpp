#pragma once
// Real, Debian-packaged servers and clients for the lab (tests/lab/test_lab_real.cpp): each is
// started by the test itself inside the Lab's network namespace (fork, setns, exec; never a
// system service), in a process group of its own, with its own config and log in a temporary
// directory. A RealProc is killed (SIGKILL to its whole group) and reaped when it goes out of
// scope, so an assertion that fails mid-scenario leaves nothing running. The test process is a
// child subreaper, so the workers of a killed master (nginx) are reaped here too.

#include "lab/lab.hpp"

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace sockrewind::test {

// The absolute path of `name` on PATH or in the sbin directories ("" if absent).
inline std::string find_program(const std::string& name) {
  std::string dirs = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
  if (const char* path = std::getenv("PATH")) { // NOLINT(concurrency-mt-unsafe)
    dirs = std::string(path) + ":" + dirs;
  }
  std::stringstream in(dirs);
  std::string dir;
  while (std::getline(in, dir, ':')) {
    const std::filesystem::path p = std::filesystem::path(dir) / name;
    if (!dir.empty() && ::access(p.c_str(), X_OK) == 0) {
      return p.string();
    }
  }
  return "";
}

// Skips the test (exit 4, "SKIPPED: ...") unless every program is installed; returns their paths.
inline std::vector<std::string> require_programs(const std::vector<std::string>& names) {
  std::vector<std::string> paths;
  for (const std::string& n : names) {
    paths.push_back(find_program(n));
    if (paths.back().empty()) {
      skip_test("the real-software lab needs '" + n
                + "' (tests/scripts/install-deps.sh installs nginx-light, redis-server, "
                  "redis-tools, haproxy, memcached, iperf3, apache2-utils and curl)");
    }
  }
  return paths;
}

// The /proc/PID/stat fields after comm: state letter and process group (nullopt if gone).
struct ProcStat {
  char state = '?';
  pid_t pgrp = 0;
};

inline std::optional<ProcStat> proc_stat(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) {
    return std::nullopt;
  }
  const size_t paren = line.rfind(')');
  if (paren == std::string::npos) {
    return std::nullopt;
  }
  std::istringstream rest(line.substr(paren + 1));
  ProcStat st;
  pid_t ppid = 0;
  rest >> st.state >> ppid >> st.pgrp;
  return rest ? std::optional<ProcStat>(st) : std::nullopt;
}

// Every live process whose process group is `pgrp`.
inline std::vector<pid_t> group_members(pid_t pgrp) {
  std::vector<pid_t> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string n = e.path().filename().string();
    if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos) {
      continue;
    }
    const pid_t pid = std::stoi(n);
    const auto st = proc_stat(pid);
    if (st && st->pgrp == pgrp && st->state != 'Z') {
      out.push_back(pid);
    }
  }
  return out;
}

// This process's comm (what the collector records for sockets the test itself holds).
inline std::string self_comm() {
  return trim_newlines(read_file("/proc/self/comm"));
}

// One real program running inside a Lab's namespace, leader of its own process group.
class RealProc {
public:
  // Starts argv[0] (an absolute path) with stdin /dev/null and stdout+stderr to `log`.
  RealProc(const TestNetns& ns, std::vector<std::string> argv, std::string log)
      : m_argv(std::move(argv)),
        m_log(std::move(log)) {
    (void)::prctl(PR_SET_CHILD_SUBREAPER, 1);
    std::vector<char*> args;
    for (std::string& a : m_argv) {
      args.push_back(a.data());
    }
    args.push_back(nullptr);
    const int nsfd = ::open(ns.path().c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0) {
      sys_fail("open " + ns.path());
    }
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(nsfd);
      sys_fail("fork");
    }
    if (pid == 0) { // the child: only async-signal-safe calls until exec
      ::setpgid(0, 0);
      const int devnull = ::open("/dev/null", O_RDONLY);
      const int out = ::open(m_log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (::setns(nsfd, CLONE_NEWNET) != 0 || devnull < 0 || out < 0) {
        ::_exit(126);
      }
      ::dup2(devnull, 0);
      ::dup2(out, 1);
      ::dup2(out, 2);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(nsfd);
    (void)::setpgid(pid, pid); // also in the parent, so signals to the group work at once
    m_pid = pid;
  }

  RealProc(const RealProc&) = delete;
  RealProc& operator=(const RealProc&) = delete;
  RealProc(RealProc&&) = delete;
  RealProc& operator=(RealProc&&) = delete;

  ~RealProc() { kill_and_reap(); }

  pid_t pid() const { return m_pid; }

  std::string name() const { return std::filesystem::path(m_argv[0]).filename().string(); }

  // What it wrote so far (for failure messages).
  std::string log() const {
    std::error_code ec;
    return std::filesystem::exists(m_log, ec) ? read_file(m_log) : std::string();
  }

  // Whether the leader still runs (it is reaped here if it exited).
  bool running() {
    if (m_pid <= 0) {
      return false;
    }
    int st = 0;
    if (::waitpid(m_pid, &st, WNOHANG) == m_pid) {
      m_exit = st;
      m_pid = -1;
      return false;
    }
    return true;
  }

  // Waits up to `seconds` for the leader to exit by itself; its wait status, or nullopt.
  std::optional<int> wait_exit(double seconds) {
    const auto until = deadline(seconds);
    while (running() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return m_pid < 0 ? std::optional<int>(m_exit) : std::nullopt;
  }

  // The processes of its group (the leader and, e.g., nginx's workers).
  std::vector<pid_t> members() const {
    return m_pid > 0 ? group_members(m_pid) : std::vector<pid_t>{};
  }

  // The group without its leader (nginx's workers), waiting up to 5 s for `n` of them.
  std::vector<pid_t> workers(size_t n) const {
    const auto until = deadline(5);
    for (;;) {
      std::vector<pid_t> w = members();
      std::erase(w, m_pid);
      if (w.size() >= n || std::chrono::steady_clock::now() >= until) {
        return w;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }

  // SIGSTOP to `pids` (default: the whole group); returns once each shows state T.
  void stop(std::vector<pid_t> pids = {}) const {
    if (pids.empty()) {
      pids = members();
    }
    for (const pid_t p : pids) {
      ::kill(p, SIGSTOP);
    }
    const auto until = deadline(5);
    for (const pid_t p : pids) {
      for (auto st = proc_stat(p); st && st->state != 'T' && st->state != 't'; st = proc_stat(p)) {
        if (std::chrono::steady_clock::now() >= until) {
          throw std::runtime_error("pid " + std::to_string(p) + " did not stop");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }

  // SIGKILL to the group and reap the leader and every member that was re-parented here.
  void kill_and_reap() {
    if (m_pid <= 0) {
      return;
    }
    const pid_t pgrp = m_pid;
    ::kill(-pgrp, SIGKILL);
    int st = 0;
    (void)::waitpid(m_pid, &st, 0);
    m_pid = -1;
    const auto until = deadline(5);
    while (std::chrono::steady_clock::now() < until) {
      ::kill(-pgrp, SIGKILL);
      const pid_t r = ::waitpid(-pgrp, &st, WNOHANG);
      if (r < 0) { // ECHILD: nothing of the group is left to reap
        break;
      }
      if (r == 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }

private:
  static std::chrono::steady_clock::time_point deadline(double seconds) {
    return std::chrono::steady_clock::now()
           + std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  }

  std::vector<std::string> m_argv;
  std::string m_log;
  pid_t m_pid = -1;
  int m_exit = -1;
};

// Waits (up to 10 s) until 127.0.0.1:port accepts a TCP connection inside the namespace; throws
// with the server's log if it does not, or if the server exited.
inline void wait_tcp(const TestNetns& ns, uint16_t port, RealProc& server) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    bool ok = false;
    ns.run_in([&] {
      const Sock s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      const sockaddr_in a = loopback4(port);
      ok = ::connect(s.fd(), reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0;
    });
    if (ok) {
      return;
    }
    if (!server.running() || std::chrono::steady_clock::now() >= until) {
      throw std::runtime_error(server.name() + " is not listening on port " + std::to_string(port)
                               + "; its log:\n" + server.log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Waits (up to 10 s) until the program's log contains `text` (for servers that a probe
// connection would disturb, like iperf3's one-test-at-a-time server).
inline void wait_log(RealProc& server, const std::string& text) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (server.log().find(text) == std::string::npos) {
    if (!server.running() || std::chrono::steady_clock::now() >= until) {
      throw std::runtime_error(server.name() + " did not log \"" + text + "\"; its log:\n"
                               + server.log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Waits (up to 10 s) until the unix stream socket at `path` accepts a connection.
inline void wait_unix(const TestNetns& ns, const std::string& path, RealProc& server) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    bool ok = false;
    ns.run_in([&] {
      const Sock s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      socklen_t len = 0;
      const sockaddr_un a = unix_addr(path, len);
      ok = ::connect(s.fd(), reinterpret_cast<const sockaddr*>(&a), len) == 0;
    });
    if (ok) {
      return;
    }
    if (!server.running() || std::chrono::steady_clock::now() >= until) {
      throw std::runtime_error(server.name() + " is not listening on " + path + "; its log:\n"
                               + server.log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

// Writes `text` to `path` (configs, documents).
inline void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) {
    throw std::runtime_error("cannot write " + path.string());
  }
}

// ---- Configs: each server bound to 127.0.0.1 in the lab's namespace, state under `dir`.

// nginx in the foreground (master + `workers` workers) serving `dir`/www on `port` with
// `backlog`; run as root so the workers can read the test's 0700 directory.
inline std::vector<std::string> nginx_argv(
    const std::string& bin, const std::string& dir, uint16_t port, int backlog, int workers) {
  std::filesystem::create_directories(dir + "/www");
  write_text(dir + "/nginx.conf",
             "user root;\nworker_processes " + std::to_string(workers) + ";\npid " + dir
                 + "/nginx.pid;\nerror_log " + dir
                 + "/nginx-error.log;\nevents { worker_connections 4096; }\nhttp {\n"
                   "  access_log off;\n  keepalive_timeout 60s;\n  client_body_temp_path "
                 + dir + "/body;\n  proxy_temp_path " + dir + "/proxy;\n  fastcgi_temp_path " + dir
                 + "/fastcgi;\n  uwsgi_temp_path " + dir + "/uwsgi;\n  scgi_temp_path " + dir
                 + "/scgi;\n  server {\n    listen 127.0.0.1:" + std::to_string(port) + " backlog="
                 + std::to_string(backlog) + ";\n    root " + dir + "/www;\n  }\n}\n");
  return {bin,
          "-p",
          dir,
          "-c",
          dir + "/nginx.conf",
          "-e",
          dir + "/nginx-error.log",
          "-g",
          "daemon off; master_process on;"};
}

// redis-server in the foreground on `port` (0: no TCP) and, if given, a unix socket; no
// persistence. `extra` is appended to the config.
inline std::vector<std::string> redis_argv(const std::string& bin,
                                           const std::string& dir,
                                           uint16_t port,
                                           const std::string& extra = "") {
  write_text(dir + "/redis.conf",
             "bind 127.0.0.1\nport " + std::to_string(port) + "\ndaemonize no\ndir " + dir
                 + "\nsave \"\"\nappendonly no\nlogfile \"\"\n" + extra);
  return {bin, dir + "/redis.conf"};
}

// haproxy in the foreground (-db), TCP mode, one frontend on `front` to one server on `back`.
inline std::vector<std::string> haproxy_argv(const std::string& bin,
                                             const std::string& dir,
                                             uint16_t front,
                                             uint16_t back,
                                             const std::string& timeouts) {
  write_text(dir + "/haproxy.cfg",
             "global\n  maxconn 1000\ndefaults\n  mode tcp\n" + timeouts
                 + "frontend fe\n  bind 127.0.0.1:" + std::to_string(front)
                 + "\n  default_backend be\nbackend be\n  server s1 127.0.0.1:"
                 + std::to_string(back) + "\n");
  return {bin, "-db", "-f", dir + "/haproxy.cfg"};
}

} // namespace sockrewind::test
