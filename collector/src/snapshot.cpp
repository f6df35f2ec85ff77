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

// The rows of one table of one namespace, on their way to NetnsCapture::sockets or to a
// SocketSink. Drops rows a non-atomic dump returned twice (same cookie), counting them; and
// can drop the whole table when its dump fails.
class TableOut {
public:
  TableOut(NetnsCapture& cap, SocketSink* sink, uint64_t ns_inode, std::string source)
      : m_cap(cap),
        m_sink(sink),
        m_source(std::move(source)),
        m_before(cap.sockets.size()) {
    if (m_sink != nullptr) {
      m_sink->begin_table(ns_inode);
    }
  }

  TableOut(const TableOut&) = delete;
  TableOut& operator=(const TableOut&) = delete;
  TableOut(TableOut&&) = delete;
  TableOut& operator=(TableOut&&) = delete;

  ~TableOut() { finish(true); }

  void add(std::vector<SocketRow>& batch) {
    size_t out = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      if (batch[i].cookie && !m_seen.insert(*batch[i].cookie).second) {
        m_cap.issues.push_back(
            {"sock_diag:" + m_source, "duplicate", "cookie " + std::to_string(*batch[i].cookie)});
        continue;
      }
      if (out != i) {
        batch[out] = std::move(batch[i]);
      }
      ++out;
    }
    batch.resize(out);
    m_rows += out;
    if (m_sink != nullptr) {
      m_sink->rows(batch);
    } else {
      m_cap.sockets.insert(m_cap.sockets.end(),
                           std::make_move_iterator(batch.begin()),
                           std::make_move_iterator(batch.end()));
    }
    batch.clear();
  }

  uint64_t rows() const { return m_rows; }

  // keep = false: the table's rows are dropped (a failed dump; /proc is read instead).
  void finish(bool keep) {
    if (m_done) {
      return;
    }
    m_done = true;
    if (!keep) {
      m_rows = 0;
      m_cap.sockets.resize(m_before);
    }
    m_cap.socket_rows += m_rows;
    if (m_sink != nullptr) {
      m_sink->end_table(keep);
    }
  }

private:
  NetnsCapture& m_cap;
  SocketSink* m_sink;
  std::string m_source;
  size_t m_before;
  uint64_t m_rows = 0;
  std::unordered_set<uint64_t> m_seen;
  bool m_done = false;
};

// Reads one /proc/net socket table. A missing file means the protocol is not there.
void read_proc_table(const Table& t, NetnsCapture& cap, SourceStatus& st, TableOut& out) {
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
    out.add(p.rows);
    append_issues(cap.issues, p.issues);
  }
  st.duration_us = micros_since(t0);
}

void capture_sockets(const CaptureOptions& opts,
                     NetnsCapture& cap,
                     SocketSink* sink,
                     uint64_t ns_inode) {
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
      TableOut out(cap, sink, ns_inode, t.name);
      DiagDumpState ds = diag->dump_inet(
          t.family, t.proto, [&](std::vector<SocketRow>& batch) { out.add(batch); });
      append_issues(cap.issues, ds.issues);
      if (ds.error != 0) {
        // No handler for this protocol (ENOENT: e.g. raw_diag not built), or refused: drop
        // what the failed dump returned and read /proc/net instead.
        out.finish(false);
        diag_error = std::string("sock_diag ") + t.name + ": " + errno_text(-ds.error);
        fallback = true;
      } else {
        out.finish(true);
        st.method = "sock_diag";
        st.status = ds.interrupted || !ds.done ? "partial" : "ok";
        if (ds.interrupted) {
          cap.issues.push_back({std::string("sock_diag:") + t.name,
                                "dump_interrupted",
                                "NLM_F_DUMP_INTR: the table changed during the dump"});
        }
        st.rows = out.rows();
        st.duration_us = micros_since(t0);
      }
    }
    if (fallback) {
      TableOut out(cap, sink, ns_inode, t.name);
      read_proc_table(t, cap, st, out);
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
  uint64_t unix_rows = 0;
  bool have_diag = false;
  if (diag) {
    TableOut out(cap, sink, ns_inode, "unix");
    DiagDumpState ds = diag->dump_unix([&](std::vector<SocketRow>& batch) { out.add(batch); });
    append_issues(cap.issues, ds.issues);
    if (ds.error == 0) {
      have_diag = true;
      out.finish(true);
      unix_rows += out.rows();
      st.status = ds.interrupted || !ds.done ? "partial" : "ok";
    } else {
      out.finish(false);
      st.error = std::string("sock_diag unix: ") + errno_text(-ds.error);
    }
  }
  const ReadResult r = read_whole_file(net_path("unix").c_str());
  if (r.ok()) {
    Parsed<SocketRow> p = parse_proc_net_unix(r.data);
    append_issues(cap.issues, p.issues);
    if (have_diag) {
      std::erase_if(p.rows, [](const SocketRow& row) { return row.inode != 0; });
    }
    TableOut out(cap, sink, ns_inode, "proc:unix");
    out.add(p.rows);
    out.finish(true);
    unix_rows += out.rows();
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
  st.rows = unix_rows;
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
NetnsCapture
capture_netns(const NetnsRef& ref, const CaptureOptions& opts, bool is_self, SocketSink* sink) {
  if (is_self) {
    NetnsCapture cap = capture_current_netns(opts, sink, ref.inode);
    cap.ref = ref;
    return cap;
  }
  NetnsCapture cap;
  std::thread worker([&] {
    // Through the fd held since discovery when there is one: the process the namespace was
    // found through may have exited since, the namespace lives on while anything holds it.
    const int fd = ref.fd ? *ref.fd : ::open(ref.path.c_str(), O_RDONLY | O_CLOEXEC);
    const int rc = fd < 0 ? -1 : ::setns(fd, CLONE_NEWNET);
    const int err = errno;
    if (fd >= 0 && !ref.fd) {
      ::close(fd);
    }
    if (rc != 0) {
      cap.status = (err == ENOENT || err == ESRCH) ? "vanished" : "denied";
      cap.issues.push_back({"netns", cap.status, ref.path + ": " + errno_text(err)});
      return;
    }
    cap = capture_current_netns(opts, sink, ref.inode);
  });
  worker.join();
  cap.ref = ref;
  return cap;
}

} // namespace

NetnsCapture
capture_current_netns(const CaptureOptions& opts, SocketSink* sink, uint64_t ns_inode) {
  NetnsCapture cap;
  capture_sockets(opts, cap, sink, ns_inode);
  capture_counters(cap);
  return cap;
}

Snapshot take_snapshot(const CaptureOptions& opts, const HostInfo& host, SocketSink* sink) {
  Snapshot snap;
  const auto [u0, s0] = process_cpu_us();
  snap.host = host;
  snap.start = read_clocks();
  snap.netns_mode = opts.netns == NetnsMode::all ? "all" : "self";

  // The fd walk dominates the cost (one readlink per fd). Without a sink it runs beside the
  // socket dumps. With one, it runs first, on every core, so that the sink can insert each
  // chunk of rows, owners included, while the kernel builds the next one.
  std::future<OwnerScan> owners;
  if (sink != nullptr) {
    snap.owners = scan_owners();
    sink->owners(snap.owners);
  } else {
    owners = std::async(std::launch::async, [] { return scan_owners(); });
  }

  std::vector<NetnsRef> refs;
  if (opts.netns == NetnsMode::all) {
    refs = discover_netns(snap.issues);
  }
  if (refs.empty()) {
    refs.push_back(
        {host.self_netns, "self", "/proc/self/ns/net", std::nullopt, std::nullopt, nullptr});
  }
  for (const NetnsRef& ref : refs) {
    snap.namespaces.push_back(capture_netns(ref, opts, ref.inode == host.self_netns, sink));
  }
  if (sink != nullptr) {
    sink->flush();
  } else {
    snap.owners = owners.get();
  }
  snap.end = read_clocks();
  const auto [u1, s1] = process_cpu_us();
  snap.cpu_user_us = u1 - u0;
  snap.cpu_sys_us = s1 - s0;
  return snap;
}

} // namespace sockrewind::collect
