#include <sockrewind/collect/counters.hpp>
#include <sockrewind/collect/fileio.hpp>
#include <sockrewind/collect/proc_net.hpp>
#include <sockrewind/collect/snapshot.hpp>
#include <sockrewind/collect/sock_diag.hpp>

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_set>

namespace sockrewind::collect {

namespace {

// The socket tables: sock_diag family/protocol and the /proc/net file of the same rows.
struct Table {
  const char* name;
  uint8_t family;
  uint16_t proto;
};

constexpr Table k_tables[] = {
    {"tcp", k_af_inet, k_ipproto_tcp},
    {"tcp6", k_af_inet6, k_ipproto_tcp},
    {"udp", k_af_inet, k_ipproto_udp},
    {"udp6", k_af_inet6, k_ipproto_udp},
    {"udplite", k_af_inet, k_ipproto_udplite},
    {"udplite6", k_af_inet6, k_ipproto_udplite},
    {"raw", k_af_inet, k_ipproto_raw},
    {"raw6", k_af_inet6, k_ipproto_raw},
};

// /proc/thread-self/net shows the namespace of this thread (it may have joined another).
std::string net_path(const char* file) {
  return std::string("/proc/thread-self/net/") + file;
}

int64_t micros_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now()
                                                               - t0)
      .count();
}

std::string errno_text(int err) {
  return std::strerror(err); // NOLINT(concurrency-mt-unsafe)
}

void append_issues(std::vector<Issue>& to, std::vector<Issue>& from) {
  to.insert(to.end(), std::make_move_iterator(from.begin()), std::make_move_iterator(from.end()));
}

// Reads one /proc/net socket table. A missing file means the protocol is not there.
void read_proc_table(const Table& t, NetnsCapture& cap, SourceStatus& st) {
  const auto t0 = std::chrono::steady_clock::now();
  const ReadResult r = read_whole_file(net_path(t.name).c_str());
  st.method = "proc";
  if (!r.ok()) {
    st.status = r.error == ENOENT ? "unavailable" : "failed";
    st.error = "/proc/net/" + std::string(t.name) + ": " + errno_text(r.error);
  } else {
    Parsed<SocketRow> p = parse_proc_net_inet(r.data,
                                              t.family,
                                              t.proto,
                                              std::string("proc:") + t.name,
                                              std::endian::native == std::endian::little);
    st.status = "ok";
    st.rows = p.rows.size();
    cap.sockets.insert(cap.sockets.end(),
                       std::make_move_iterator(p.rows.begin()),
                       std::make_move_iterator(p.rows.end()));
    append_issues(cap.issues, p.issues);
  }
  st.duration_us = micros_since(t0);
}

// Drops rows a non-atomic dump returned twice (same cookie), counting them.
void dedupe_by_cookie(std::vector<SocketRow>& rows,
                      size_t from,
                      const char* source,
                      NetnsCapture& cap) {
  std::unordered_set<uint64_t> seen;
  seen.reserve(rows.size() - from);
  size_t out = from;
  for (size_t i = from; i < rows.size(); ++i) {
    if (rows[i].cookie && !seen.insert(*rows[i].cookie).second) {
      cap.issues.push_back({std::string("sock_diag:") + source,
                            "duplicate",
                            "cookie " + std::to_string(*rows[i].cookie)});
      continue;
    }
    if (out != i) {
      rows[out] = std::move(rows[i]);
    }
    ++out;
  }
  rows.resize(out);
}

void capture_sockets(const CaptureOptions& opts, NetnsCapture& cap) {
  std::optional<DiagSocket> diag;
  std::string diag_error;
  if (opts.source == SocketSource::automatic) {
    try {
      diag.emplace();
    } catch (const std::system_error& e) {
      diag_error = std::string("sock_diag unavailable: ") + e.what();
    }
  }
  for (const Table& t : k_tables) {
    SourceStatus st;
    st.source = t.name;
    bool fallback = !diag.has_value();
    if (diag) {
      const auto t0 = std::chrono::steady_clock::now();
      const size_t before = cap.sockets.size();
      DiagDumpState ds = diag->dump_inet(t.family, t.proto, cap.sockets);
      append_issues(cap.issues, ds.issues);
      if (ds.error != 0) {
        // No handler for this protocol (ENOENT: e.g. raw_diag not built), or refused: drop
        // what the failed dump returned and read /proc/net instead.
        cap.sockets.resize(before);
        diag_error = std::string("sock_diag ") + t.name + ": " + errno_text(-ds.error);
        fallback = true;
      } else {
        dedupe_by_cookie(cap.sockets, before, t.name, cap);
        st.method = "sock_diag";
        st.status = ds.interrupted || !ds.done ? "partial" : "ok";
        if (ds.interrupted) {
          cap.issues.push_back({std::string("sock_diag:") + t.name,
                                "dump_interrupted",
                                "NLM_F_DUMP_INTR: the table changed during the dump"});
        }
        st.rows = cap.sockets.size() - before;
        st.duration_us = micros_since(t0);
      }
    }
    if (fallback) {
      read_proc_table(t, cap, st);
      if (!diag_error.empty()) {
        st.error = st.error.empty() ? diag_error : diag_error + "; " + st.error;
      }
    }
    cap.sources.push_back(std::move(st));
  }

  // Unix: unix_diag has queues and peers but skips sockets without an inode (connections a
  // listener has not accepted yet); /proc/net/unix lists those, so take them from there.
  SourceStatus st;
  st.source = "unix";
  const auto t0 = std::chrono::steady_clock::now();
  const size_t before = cap.sockets.size();
  bool have_diag = false;
  if (diag) {
    DiagDumpState ds = diag->dump_unix(cap.sockets);
    append_issues(cap.issues, ds.issues);
    if (ds.error == 0) {
      have_diag = true;
      dedupe_by_cookie(cap.sockets, before, "unix", cap);
      st.status = ds.interrupted || !ds.done ? "partial" : "ok";
    } else {
      cap.sockets.resize(before);
      st.error = std::string("sock_diag unix: ") + errno_text(-ds.error);
    }
  }
  const ReadResult r = read_whole_file(net_path("unix").c_str());
  if (r.ok()) {
    Parsed<SocketRow> p = parse_proc_net_unix(r.data);
    append_issues(cap.issues, p.issues);
    for (SocketRow& row : p.rows) {
      if (!have_diag || row.inode == 0) {
        cap.sockets.push_back(std::move(row));
      }
    }
    st.method = have_diag ? "sock_diag+proc" : "proc";
    if (!have_diag) {
      st.status = "ok";
    }
  } else if (have_diag) {
    st.method = "sock_diag";
    cap.issues.push_back(
        {"proc:unix",
         "unreadable",
         "/proc/net/unix: " + errno_text(r.error) + " (pending unix connections not captured)"});
  } else {
    st.method = "proc";
    st.status = "failed";
    st.error +=
        (st.error.empty() ? "" : "; ") + std::string("/proc/net/unix: ") + errno_text(r.error);
  }
  st.rows = cap.sockets.size() - before;
  st.duration_us = micros_since(t0);
  cap.sources.push_back(std::move(st));
}

void capture_counters(NetnsCapture& cap) {
  struct CounterFile {
    const char* file;
    int kind; // 0 pairs, 1 snmp6, 2 sockstat
  };

  constexpr CounterFile k_files[] = {
      {"netstat", 0}, {"snmp", 0}, {"snmp6", 1}, {"sockstat", 2}, {"sockstat6", 2}};
  for (const CounterFile& f : k_files) {
    const auto t0 = std::chrono::steady_clock::now();
    SourceStatus st{f.file, "proc", "ok", 0, 0, {}};
    const ReadResult r = read_whole_file(net_path(f.file).c_str());
    if (!r.ok()) {
      st.status = r.error == ENOENT ? "unavailable" : "failed";
      st.error = "/proc/net/" + std::string(f.file) + ": " + errno_text(r.error);
    } else {
      Parsed<CounterRow> p = f.kind == 0   ? parse_proc_net_pairs(r.data, f.file)
                             : f.kind == 1 ? parse_proc_net_snmp6(r.data)
                                           : parse_proc_net_sockstat(r.data, f.file);
      st.rows = p.rows.size();
      cap.counters.insert(cap.counters.end(),
                          std::make_move_iterator(p.rows.begin()),
                          std::make_move_iterator(p.rows.end()));
      append_issues(cap.issues, p.issues);
    }
    st.duration_us = micros_since(t0);
    cap.sources.push_back(std::move(st));
  }
  const auto t0 = std::chrono::steady_clock::now();
  cap.limits = read_limits();
  cap.sources.push_back({"limits",
                         "proc",
                         cap.limits.empty() ? "failed" : "ok",
                         cap.limits.size(),
                         micros_since(t0),
                         {}});
}

// Runs capture_current_netns on a thread that joined `ref`'s namespace, so that the calling
// thread never changes namespace.
NetnsCapture capture_netns(const NetnsRef& ref, const CaptureOptions& opts, bool is_self) {
  if (is_self) {
    NetnsCapture cap = capture_current_netns(opts);
    cap.ref = ref;
    return cap;
  }
  NetnsCapture cap;
  std::thread worker([&] {
    const int fd = ::open(ref.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      const int err = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      cap.status = (err == ENOENT || err == ESRCH) ? "vanished" : "denied";
      cap.issues.push_back({"netns", cap.status, ref.path + ": " + errno_text(err)});
      return;
    }
    ::close(fd);
    cap = capture_current_netns(opts);
  });
  worker.join();
  cap.ref = ref;
  return cap;
}

} // namespace

NetnsCapture capture_current_netns(const CaptureOptions& opts) {
  NetnsCapture cap;
  capture_sockets(opts, cap);
  capture_counters(cap);
  return cap;
}

Snapshot take_snapshot(const CaptureOptions& opts, const HostInfo& host) {
  Snapshot snap;
  const auto [u0, s0] = process_cpu_us();
  snap.host = host;
  snap.start = read_clocks();
  snap.netns_mode = opts.netns == NetnsMode::all ? "all" : "self";

  // The fd walk dominates the cost (one readlink per fd); run it beside the socket dumps.
  std::future<OwnerScan> owners = std::async(std::launch::async, [] { return scan_owners(); });

  std::vector<NetnsRef> refs;
  if (opts.netns == NetnsMode::all) {
    refs = discover_netns(snap.issues);
  }
  if (refs.empty()) {
    refs.push_back({host.self_netns, "self", "/proc/self/ns/net", std::nullopt, std::nullopt});
  }
  for (const NetnsRef& ref : refs) {
    snap.namespaces.push_back(capture_netns(ref, opts, ref.inode == host.self_netns));
  }
  snap.owners = owners.get();
  snap.end = read_clocks();
  const auto [u1, s1] = process_cpu_us();
  snap.cpu_user_us = u1 - u0;
  snap.cpu_sys_us = s1 - s0;
  return snap;
}

} // namespace sockrewind::collect
