#include <sockrewind/collect/fileio.hpp>
#include <sockrewind/collect/host.hpp>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <ctime>

namespace sockrewind::collect {

namespace {

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\t')) {
    s.pop_back();
  }
  for (char& c : s) {
    if (c == '\t' || c == '\n') {
      c = ' '; // multi-value sysctls (tcp_mem) are tab separated
    }
  }
  return s;
}

int64_t to_ns(const timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<int64_t>(ts.tv_nsec);
}

} // namespace

Clocks read_clocks() {
  Clocks c;
  timespec ts{};
  if (clock_gettime(CLOCK_REALTIME, &ts) == 0) {
    c.realtime_ns = to_ns(ts);
  }
  if (clock_gettime(CLOCK_BOOTTIME, &ts) == 0) {
    c.boottime_ns = to_ns(ts);
  }
  return c;
}

HostInfo read_host_info() {
  HostInfo h;
  utsname u{};
  if (uname(&u) == 0) {
    h.hostname = u.nodename;
    h.kernel = u.release;
  }
  const ReadResult boot = read_whole_file("/proc/sys/kernel/random/boot_id");
  h.boot_id = boot.ok() ? trimmed(boot.data) : "unknown";
  h.euid = geteuid();

  struct stat st {};

  if (stat("/proc/self/ns/net", &st) == 0) {
    h.self_netns = st.st_ino;
  }
  h.little_endian = std::endian::native == std::endian::little;
  h.user_hz = sysconf(_SC_CLK_TCK);
  h.page_size = sysconf(_SC_PAGESIZE);
  return h;
}

std::vector<std::pair<std::string, std::string>> read_limits() {
  static constexpr std::array k_sysctls = {
      "net/core/somaxconn",
      "net/core/rmem_default",
      "net/core/rmem_max",
      "net/core/wmem_default",
      "net/core/wmem_max",
      "net/ipv4/tcp_max_syn_backlog",
      "net/ipv4/tcp_mem",
      "net/ipv4/tcp_rmem",
      "net/ipv4/tcp_wmem",
      "net/ipv4/udp_mem",
      "net/ipv4/udp_rmem_min",
      "net/ipv4/ip_local_port_range",
      "net/ipv4/ip_local_reserved_ports",
      "net/ipv4/tcp_max_orphans",
      "net/ipv4/tcp_fin_timeout",
      "net/ipv4/tcp_tw_reuse",
      "net/ipv4/tcp_timestamps",
      "net/ipv4/tcp_syncookies",
      "net/ipv4/tcp_max_tw_buckets",
      "net/ipv4/tcp_abort_on_overflow",
      "net/ipv4/tcp_congestion_control",
      "net/ipv4/tcp_keepalive_time",
      "net/ipv4/tcp_retries2",
      "net/ipv4/tcp_syn_retries",
      "net/ipv4/tcp_synack_retries",
      "net/unix/max_dgram_qlen",
      "fs/file-nr",
      "fs/file-max",
      "fs/nr_open",
  };
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(k_sysctls.size());
  for (const char* rel : k_sysctls) {
    const std::string path = std::string("/proc/sys/") + rel;
    ReadResult r = read_whole_file(path.c_str());
    if (!r.ok()) {
      continue;
    }
    std::string name = rel;
    for (char& c : name) {
      if (c == '/') {
        c = '.';
      }
    }
    out.emplace_back(std::move(name), trimmed(std::move(r.data)));
  }
  return out;
}

std::pair<int64_t, int64_t> process_cpu_us() {
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) {
    return {0, 0};
  }
  const auto us = [](const timeval& tv) {
    return static_cast<int64_t>(tv.tv_sec) * 1'000'000 + static_cast<int64_t>(tv.tv_usec);
  };
  return {us(ru.ru_utime), us(ru.ru_stime)};
}

} // namespace sockrewind::collect
