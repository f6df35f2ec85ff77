#include <sockrewind/collect/tcp_info.hpp>
#include <sockrewind/store/schema.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <set>
#include <stdexcept>
#include <string_view>
#include <synth/synth.hpp>
#include <unordered_map>

namespace sockrewind::synth {

namespace {

using collect::k_af_inet;
using collect::k_af_inet6;
using collect::k_af_unix;

// Length of struct tcp_info up to total_rto_time (Linux 6.7).
size_t tcp_info_len() {
  static const size_t len = [] {
    size_t n = 0;
    for (const collect::TcpInfoField& f : collect::tcp_info_fields()) {
      n = std::max(n, static_cast<size_t>(f.offset) + (f.size == 0 ? 1U : f.size));
    }
    return n;
  }();
  return len;
}

const collect::TcpInfoField& tcp_info_field(const std::string& name) {
  static const auto by_name = [] {
    std::unordered_map<std::string_view, const collect::TcpInfoField*> m;
    for (const collect::TcpInfoField& f : collect::tcp_info_fields()) {
      m.emplace(f.column, &f);
    }
    return m;
  }();
  const auto it = by_name.find(name);
  if (it == by_name.end()) {
    throw std::invalid_argument("synth: no tcp_info field '" + name + "'");
  }
  return *it->second;
}

void put_tcp_info(std::vector<uint8_t>& info, const std::string& name, uint64_t value) {
  const collect::TcpInfoField& f = tcp_info_field(name);
  uint8_t* p = info.data() + f.offset;
  switch (f.size) {
  case 0: {
    const auto mask = static_cast<uint8_t>(((1U << f.bits) - 1U) << f.shift);
    const auto bits = static_cast<uint8_t>((value << f.shift) & mask);
    *p = static_cast<uint8_t>((*p & ~mask) | bits);
    break;
  }
  case 1:
    *p = static_cast<uint8_t>(value);
    break;
  case 2: {
    const auto v = static_cast<uint16_t>(value);
    std::memcpy(p, &v, sizeof v);
    break;
  }
  case 4: {
    const auto v = static_cast<uint32_t>(value);
    std::memcpy(p, &v, sizeof v);
    break;
  }
  default:
    std::memcpy(p, &value, sizeof value);
    break;
  }
}

// Parses `text` for `family` into `out`; returns the address length.
uint8_t parse_addr(uint8_t family, const std::string& text, std::array<uint8_t, 16>& out) {
  const int af = family == k_af_inet6 ? AF_INET6 : AF_INET;
  if (inet_pton(af, text.c_str(), out.data()) != 1) {
    throw std::invalid_argument("synth: bad address '" + text + "' for family "
                                + std::to_string(family));
  }
  return family == k_af_inet6 ? 16 : 4;
}

// The sources-table name of a socket: tcp, tcp6, udp, ..., unix.
std::string table_of(const Sock& s) {
  if (s.family == k_af_unix) {
    return "unix";
  }
  std::string name;
  if (s.type == collect::k_sock_raw) {
    name = "raw";
  } else if (s.proto == collect::k_ipproto_udp) {
    name = "udp";
  } else if (s.proto == collect::k_ipproto_udplite) {
    name = "udplite";
  } else {
    name = "tcp";
  }
  return s.family == k_af_inet6 ? name + "6" : name;
}

collect::SocketRow to_row(const Sock& s) {
  collect::SocketRow r;
  r.family = s.family;
  r.type = s.type;
  r.proto = s.family == k_af_unix ? uint16_t{0} : s.proto;
  r.state = s.state;
  if (s.family == k_af_inet || s.family == k_af_inet6) {
    r.addr_len = parse_addr(s.family, s.local, r.local_addr);
    (void)parse_addr(s.family, s.remote, r.remote_addr);
    r.local_port = s.lport;
    r.remote_port = s.rport;
  }
  r.rx_queue = s.rx;
  r.tx_queue = s.tx;
  r.inode = s.inode;
  r.cookie = s.cookie;
  r.uid = s.uid;
  r.timer = s.timer;
  r.expires_ms = s.expires_ms;
  r.retrans = s.retrans;
  if (s.rmem_alloc || s.rcvbuf || s.wmem_alloc || s.sndbuf || s.wmem_queued || s.drops) {
    // SK_MEMINFO order: rmem_alloc, rcvbuf, wmem_alloc, sndbuf, fwd_alloc, wmem_queued, optmem,
    // backlog, drops.
    r.skmem = {s.rmem_alloc.value_or(0),
               s.rcvbuf.value_or(0),
               s.wmem_alloc.value_or(0),
               s.sndbuf.value_or(0),
               0,
               s.wmem_queued.value_or(0),
               0,
               0,
               s.drops.value_or(0)};
    r.skmem_count = collect::k_skmem_fields;
  }
  r.path = s.path;
  r.peer_inode = s.peer_inode;
  if (!s.tcp_info.empty()) {
    r.tcp_info.assign(tcp_info_len(), 0);
    for (const auto& [name, value] : s.tcp_info) {
      put_tcp_info(r.tcp_info, name, value);
    }
    r.cong = s.cong;
  }
  return r;
}

collect::NetnsCapture& capture_for(std::vector<collect::NetnsCapture>& caps, uint64_t inode) {
  for (collect::NetnsCapture& c : caps) {
    if (c.ref.inode == inode) {
      return c;
    }
  }
  collect::NetnsCapture& c = caps.emplace_back();
  c.ref = {inode,
           "run-netns",
           "/run/netns/synth-" + std::to_string(inode),
           std::nullopt,
           std::nullopt,
           nullptr};
  return c;
}

} // namespace

std::string counter_file(const std::string& name) {
  const size_t dot = name.find('.');
  if (dot == std::string::npos) {
    if (name.empty()) {
      throw std::invalid_argument("synth: empty counter name");
    }
    return "snmp6";
  }
  const std::string group = name.substr(0, dot);
  static const std::set<std::string> netstat = {"TcpExt", "IpExt", "MPTcpExt"};
  static const std::set<std::string> snmp = {"Ip", "Icmp", "IcmpMsg", "Tcp", "Udp", "UdpLite"};
  static const std::set<std::string> sockstat = {"sockets", "TCP", "UDP", "UDPLITE", "RAW", "FRAG"};
  static const std::set<std::string> sockstat6 = {"TCP6", "UDP6", "UDPLITE6", "RAW6", "FRAG6"};
  if (netstat.contains(group)) {
    return "netstat";
  }
  if (snmp.contains(group)) {
    return "snmp";
  }
  if (sockstat.contains(group)) {
    return "sockstat";
  }
  if (sockstat6.contains(group)) {
    return "sockstat6";
  }
  throw std::invalid_argument("synth: no counters file for '" + name + "'");
}

collect::Snapshot to_snapshot(const Host& host, const Snap& snap) {
  collect::Snapshot out;
  out.host.hostname = host.hostname;
  out.host.kernel = host.kernel;
  out.host.boot_id = host.boot_id;
  out.host.euid = host.euid;
  out.host.self_netns = host.netns_inode;
  out.start = {snap.realtime_ns, snap.boottime_ns};
  out.end = {snap.realtime_ns + snap.duration_ns, snap.boottime_ns + snap.duration_ns};
  out.netns_mode = "self";
  out.cpu_user_us = snap.cpu_user_us;
  out.cpu_sys_us = snap.cpu_sys_us;

  out.namespaces.emplace_back().ref = {
      host.netns_inode, "self", "/proc/self/ns/net", std::nullopt, std::nullopt, nullptr};

  // Rows per (namespace, table), for the sources table.
  std::map<uint64_t, std::map<std::string, uint64_t>> rows;
  for (const Sock& s : snap.sockets) {
    const uint64_t ns = s.netns == 0 ? host.netns_inode : s.netns;
    capture_for(out.namespaces, ns).sockets.push_back(to_row(s));
    ++rows[ns][table_of(s)];
    if (!s.owners.empty()) {
      if (s.inode == 0) {
        throw std::invalid_argument("synth: a socket with owners needs an inode");
      }
      const auto& [pid, fd] = s.owners.front();
      out.owners.first[s.inode] = {pid, fd};
      for (size_t i = 1; i < s.owners.size(); ++i) {
        out.owners.extra.emplace_back(s.inode,
                                      collect::Owner{s.owners[i].first, s.owners[i].second});
      }
    }
  }

  for (collect::NetnsCapture& c : out.namespaces) {
    const auto& counts = rows[c.ref.inode];
    for (const char* table :
         {"tcp", "tcp6", "udp", "udp6", "udplite", "udplite6", "raw", "raw6", "unix"}) {
      const auto it = counts.find(table);
      const uint64_t n = it == counts.end() ? 0 : it->second;
      const std::string method = std::string_view(table) == "unix" ? "sock_diag+proc" : "sock_diag";
      c.sources.push_back({table, method, "ok", n, 0, {}});
    }
  }

  // Only now: capture_for() may have grown the vector (a reference taken earlier would dangle).
  collect::NetnsCapture& self = out.namespaces.front();
  std::map<std::string, uint64_t> per_file;
  for (const auto& [name, value] : snap.counters) {
    std::string file = counter_file(name);
    ++per_file[file];
    self.counters.push_back({std::move(file), name, value});
  }
  for (const char* file : {"netstat", "snmp", "snmp6", "sockstat", "sockstat6"}) {
    self.sources.push_back({file, "proc", "ok", per_file[file], 0, {}});
  }
  for (const auto& [name, value] : snap.limits) {
    self.limits.emplace_back(name, value);
  }
  self.sources.push_back({"limits", "proc", "ok", self.limits.size(), 0, {}});

  for (const Proc& p : snap.procs) {
    collect::ProcessRow r;
    r.pid = p.pid;
    r.start_ticks = p.start_ticks;
    r.ppid = p.ppid;
    r.state = p.state;
    r.uid = p.uid;
    r.netns_inode = host.netns_inode;
    r.comm = p.comm;
    r.cmdline = p.cmdline;
    r.fd_count = p.fd_count;
    r.socket_fds = p.socket_fds;
    r.nofile_soft = p.nofile_soft;
    r.nofile_hard = p.nofile_hard;
    out.owners.processes.push_back(std::move(r));
  }
  out.owners.pids_scanned = static_cast<uint32_t>(snap.procs.size());
  return out;
}

SeriesWriter::SeriesWriter(std::string dir, Host host, collect::TcpInfoMode mode)
    : m_dir(std::move(dir)),
      m_host(std::move(host)),
      m_mode(mode) {}

void SeriesWriter::add(const Snap& snap) {
  const collect::Snapshot s = to_snapshot(m_host, snap);
  if (!m_file) {
    m_file = std::make_unique<collect::SnapshotFile>(
        m_dir, collect::snapshot_base_name(m_host.hostname, snap.realtime_ns), m_mode);
  }
  m_file->write(s);
}

std::string SeriesWriter::commit() {
  if (!m_file) {
    throw std::logic_error("synth: SeriesWriter::commit() without a snapshot");
  }
  std::string path = m_file->commit();
  m_file.reset();
  return path;
}

std::string write_series(const std::string& dir,
                         const Host& host,
                         const std::vector<Snap>& snaps,
                         collect::TcpInfoMode mode) {
  if (snaps.empty()) {
    throw std::invalid_argument("synth: write_series needs at least one snapshot");
  }
  SeriesWriter w(dir, host, mode);
  for (const Snap& s : snaps) {
    w.add(s);
  }
  return w.commit();
}

void rewrite_as_version(const std::string& path, int version) {
  const std::string old = path + ".v3";
  if (std::rename(path.c_str(), old.c_str()) != 0) {
    throw std::runtime_error("rewrite_as_version: cannot rename " + path);
  }
  {
    store::Db db = store::Db::create(path);
    store::migrate(db, version);
    db.exec("ATTACH DATABASE '" + old + "' AS src");
    store::Txn txn(db);
    store::Stmt tables = db.prepare("SELECT name FROM main.sqlite_schema WHERE type = 'table'");
    while (tables.step()) {
      const std::string t = tables.get_text(0);
      std::string cols;
      store::Stmt c = db.prepare("SELECT name FROM pragma_table_info(?1, 'main')");
      c.bind(1, t);
      while (c.step()) {
        cols += (cols.empty() ? "" : ", ") + c.get_text(0);
      }
      db.exec("INSERT INTO main." + t + " (" + cols + ") SELECT " + cols + " FROM src." + t);
    }
    db.exec("UPDATE main.meta SET value = '" + std::to_string(version)
            + "' WHERE key = 'schema_version'");
    txn.commit();
    db.exec("DETACH DATABASE src");
  }
  std::remove(old.c_str());
}

} // namespace sockrewind::synth
