// `sockrewind-analyze show`: one snapshot like `ss -tuwxanp`, read straight from the file's
// tables (the defensive read-only open trusts no views). Also the helpers shared with `timeline`
// and `diff` (show.hpp).
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/host_series.hpp>
#include <sockrewind/analyze/json_out.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>
#include <sockrewind/store/db.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>
#include <utility>

namespace sockrewind::analyze {

namespace {

using nlohmann::json;

// ss's order of socket kinds.
int proto_rank(const std::string& name) {
  static const std::array<std::string, 7> k_order{
      "tcp", "udp", "udplite", "raw", "u_str", "u_dgr", "u_seq"};
  const auto* it = std::find(k_order.begin(), k_order.end(), name);
  return static_cast<int>(it - k_order.begin());
}

std::string family_name(int64_t family) {
  switch (family) {
  case k_af_unix:
    return "unix";
  case k_af_inet:
    return "inet";
  case k_af_inet6:
    return "inet6";
  default:
    return std::to_string(family);
  }
}

std::string opt_text(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string("-");
}

json opt_json(const std::optional<int64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

struct Owner {
  int64_t pid = 0;
  std::optional<int64_t> fd;
};

// One socket row of the snapshot.
struct Row {
  int64_t sock_id = 0;
  uint64_t netns = 0;
  int64_t family = 0;
  int64_t type = 0;
  int64_t proto = 0;
  int64_t state = 0;
  std::string proto_name;
  int rank = 0; // proto_rank(proto_name)
  std::string local;
  std::string remote;
  std::optional<int64_t> local_port;
  std::optional<int64_t> remote_port;
  std::optional<int64_t> rx_queue;
  std::optional<int64_t> tx_queue;
  int64_t inode = 0;
  std::optional<int64_t> cookie;
  std::optional<int64_t> uid;
  std::optional<int64_t> timer;
  std::optional<int64_t> expires_ms;
  std::optional<int64_t> retrans;
  std::optional<int64_t> shutdown;
  std::optional<int64_t> rmem_alloc;
  std::optional<int64_t> rcvbuf;
  std::optional<int64_t> drops;
  std::optional<std::string> path;
  std::optional<int64_t> peer_inode;
  std::vector<Owner> owners;
};

std::string inet_endpoint(int64_t family,
                          const std::optional<std::string>& addr,
                          const std::optional<int64_t>& port) {
  std::string a = addr ? *addr : std::string("*");
  if (family == k_af_inet6 && addr) {
    a = "[" + a + "]";
  }
  return a + ":" + (!port || *port == 0 ? std::string("*") : std::to_string(*port));
}

struct Snapshot {
  SnapshotInfo info;
  int64_t self_netns = 0;
  int64_t euid = 0;
  json netns = json::array();
  std::vector<Row> rows;
  std::map<int64_t, std::string> comm; // pid -> comm
};

Snapshot read_snapshot(const SnapshotInfo& info) {
  store::Db db = open_validated(info.file);
  Snapshot snap;
  snap.info = info;
  try {
    store::Stmt head = db.prepare("SELECT self_netns, euid FROM snapshots WHERE snapshot_id = ?1");
    head.bind(1, info.snapshot_id);
    if (head.step()) {
      snap.self_netns = head.get_int(0);
      snap.euid = head.get_int(1);
    }
    store::Stmt ns = db.prepare("SELECT n.inode, sn.found_via, sn.name, sn.pid, sn.status "
                                "FROM snapshot_netns sn JOIN netns n ON n.netns_id = sn.netns_id "
                                "WHERE sn.snapshot_id = ?1 ORDER BY n.inode");
    ns.bind(1, info.snapshot_id);
    while (ns.step()) {
      json j;
      j["inode"] = ns.get_int(0);
      j["found_via"] = ns.get_text(1);
      j["name"] = ns.is_null(2) ? json(nullptr) : json(ns.get_text(2));
      j["pid"] = opt_json(ns.get_opt_int(3));
      j["status"] = ns.get_text(4);
      snap.netns.push_back(std::move(j));
    }
    store::Stmt procs = db.prepare("SELECT pid, comm FROM processes WHERE snapshot_id = ?1");
    procs.bind(1, info.snapshot_id);
    while (procs.step()) {
      snap.comm[procs.get_int(0)] = procs.get_text(1);
    }
    store::Stmt st = db.prepare(
        "SELECT s.sock_id, n.inode AS netns_inode, s.family, s.type, s.proto, s.state, "
        "la.text AS local_text, s.local_port, ra.text AS remote_text, s.remote_port, s.rx_queue, "
        "s.tx_queue, s.inode, s.cookie, s.uid, s.timer, s.expires_ms, s.retrans, s.shutdown, "
        "s.skm_rmem_alloc, s.skm_rcvbuf, s.skm_drops, s.path, s.peer_inode, s.pid, s.fd "
        "FROM sockets s JOIN netns n ON n.netns_id = s.netns_id "
        "LEFT JOIN addrs la ON la.addr_id = s.local_addr_id "
        "LEFT JOIN addrs ra ON ra.addr_id = s.remote_addr_id "
        "WHERE s.snapshot_id = ?1 ORDER BY s.sock_id");
    st.bind(1, info.snapshot_id);
    // Columns by name, each resolved once for the statement.
    const auto col = [&st](std::string_view name) { return st.column_index(name); };
    const int c_sock_id = col("sock_id");
    const int c_netns = col("netns_inode");
    const int c_family = col("family");
    const int c_type = col("type");
    const int c_proto = col("proto");
    const int c_state = col("state");
    const int c_local_text = col("local_text");
    const int c_local_port = col("local_port");
    const int c_remote_text = col("remote_text");
    const int c_remote_port = col("remote_port");
    const int c_rx_queue = col("rx_queue");
    const int c_tx_queue = col("tx_queue");
    const int c_inode = col("inode");
    const int c_cookie = col("cookie");
    const int c_uid = col("uid");
    const int c_timer = col("timer");
    const int c_expires_ms = col("expires_ms");
    const int c_retrans = col("retrans");
    const int c_shutdown = col("shutdown");
    const int c_rmem_alloc = col("skm_rmem_alloc");
    const int c_rcvbuf = col("skm_rcvbuf");
    const int c_drops = col("skm_drops");
    const int c_path = col("path");
    const int c_peer_inode = col("peer_inode");
    const int c_pid = col("pid");
    const int c_fd = col("fd");
    std::map<int64_t, size_t> by_id;
    while (st.step()) {
      Row r;
      r.sock_id = st.get_int(c_sock_id);
      r.netns = static_cast<uint64_t>(st.get_int(c_netns));
      r.family = st.get_int(c_family);
      r.type = st.get_int(c_type);
      r.proto = st.get_int(c_proto);
      r.state = st.get_int(c_state);
      Track t;
      t.family = static_cast<uint8_t>(std::clamp<int64_t>(r.family, 0, 255));
      t.type = static_cast<uint8_t>(std::clamp<int64_t>(r.type, 0, 255));
      t.proto = static_cast<uint16_t>(std::clamp<int64_t>(r.proto, 0, 0xffff));
      r.proto_name = proto_name(t);
      r.rank = proto_rank(r.proto_name);
      r.local_port = st.get_opt_int(c_local_port);
      r.remote_port = st.get_opt_int(c_remote_port);
      r.rx_queue = st.get_opt_int(c_rx_queue);
      r.tx_queue = st.get_opt_int(c_tx_queue);
      r.inode = st.get_int(c_inode);
      r.cookie = st.get_opt_int(c_cookie);
      r.uid = st.get_opt_int(c_uid);
      r.timer = st.get_opt_int(c_timer);
      r.expires_ms = st.get_opt_int(c_expires_ms);
      r.retrans = st.get_opt_int(c_retrans);
      r.shutdown = st.get_opt_int(c_shutdown);
      r.rmem_alloc = st.get_opt_int(c_rmem_alloc);
      r.rcvbuf = st.get_opt_int(c_rcvbuf);
      r.drops = st.get_opt_int(c_drops);
      r.path = st.get_opt_text(c_path);
      r.peer_inode = st.get_opt_int(c_peer_inode);
      if (r.family == k_af_unix) {
        r.local = r.path ? *r.path : std::string("*");
        r.remote = r.peer_inode && *r.peer_inode != 0 ? std::to_string(*r.peer_inode) : "*";
      } else {
        r.local = inet_endpoint(r.family, st.get_opt_text(c_local_text), r.local_port);
        r.remote = inet_endpoint(r.family, st.get_opt_text(c_remote_text), r.remote_port);
      }
      if (!st.is_null(c_pid)) {
        r.owners.push_back({st.get_int(c_pid), st.get_opt_int(c_fd)});
      }
      by_id[r.sock_id] = snap.rows.size();
      snap.rows.push_back(std::move(r));
    }
    store::Stmt extra = db.prepare("SELECT e.sock_id, e.pid, e.fd FROM extra_owners e "
                                   "JOIN sockets s ON s.sock_id = e.sock_id "
                                   "WHERE s.snapshot_id = ?1 ORDER BY e.sock_id, e.pid, e.fd");
    extra.bind(1, info.snapshot_id);
    while (extra.step()) {
      const auto it = by_id.find(extra.get_int(0));
      if (it != by_id.end()) {
        snap.rows[it->second].owners.push_back({extra.get_int(1), extra.get_int(2)});
      }
    }
  } catch (const store::DbError& e) {
    throw read_error(info.file, e);
  }
  std::sort(snap.rows.begin(), snap.rows.end(), [](const Row& a, const Row& b) {
    const int64_t pa = a.local_port.value_or(0);
    const int64_t pb = b.local_port.value_or(0);
    return std::tie(a.netns, a.rank, a.proto_name, a.family, pa, a.local, a.remote, a.sock_id)
           < std::tie(b.netns, b.rank, b.proto_name, b.family, pb, b.local, b.remote, b.sock_id);
  });
  return snap;
}

// `state` < 0: any state. (An int, not std::optional<uint8_t>: g++ 12 -O2 warns
// -Wmaybe-uninitialized on the optional's payload.)
bool keep(const Row& r, const ShowOptions& opts, int state) {
  if (state >= 0 && r.state != state) {
    return false;
  }
  if (opts.port) {
    if (r.family == k_af_unix) {
      return false;
    }
    if (r.local_port != *opts.port && r.remote_port != *opts.port) {
      return false;
    }
  }
  if (opts.pid) {
    return std::any_of(
        r.owners.begin(), r.owners.end(), [&](const Owner& o) { return o.pid == *opts.pid; });
  }
  return true;
}

std::string users_text(const Row& r, const std::map<int64_t, std::string>& comm) {
  if (r.owners.empty()) {
    return "";
  }
  std::string s = "users:(";
  for (size_t i = 0; i < r.owners.size(); ++i) {
    const Owner& o = r.owners[i];
    const auto it = comm.find(o.pid);
    s += i == 0 ? "(" : ",(";
    s += "\"" + (it == comm.end() ? std::string("?") : escape_text(it->second)) + "\"";
    s += ",pid=" + std::to_string(o.pid);
    if (o.fd) {
      s += ",fd=" + std::to_string(*o.fd);
    }
    s += ")";
  }
  return s + ")";
}

std::string timer_text(const Row& r) {
  if (!r.timer || *r.timer == 0) {
    return "";
  }
  return "timer:(" + timer_name(*r.timer) + ","
         + (r.expires_ms ? format_ms(*r.expires_ms) : std::string("-")) + ","
         + (r.retrans ? std::to_string(*r.retrans) : std::string("-")) + ")";
}

json socket_json(const Row& r, const std::map<int64_t, std::string>& comm) {
  json j;
  j["netns"] = r.netns;
  j["proto"] = r.proto_name;
  j["family"] = family_name(r.family);
  j["state"] = state_name(static_cast<uint8_t>(std::clamp<int64_t>(r.state, 0, 255)));
  j["local"] = r.local;
  j["remote"] = r.remote;
  j["rx_queue"] = opt_json(r.rx_queue);
  j["tx_queue"] = opt_json(r.tx_queue);
  j["inode"] = r.inode;
  j["cookie"] = r.cookie ? json(static_cast<uint64_t>(*r.cookie)) : json(nullptr);
  j["uid"] = opt_json(r.uid);
  if (r.timer && *r.timer != 0) {
    j["timer"] = {{"name", timer_name(*r.timer)},
                  {"expires_ms", opt_json(r.expires_ms)},
                  {"retrans", opt_json(r.retrans)}};
  } else {
    j["timer"] = nullptr;
  }
  j["shutdown"] = opt_json(r.shutdown);
  j["rmem_alloc"] = opt_json(r.rmem_alloc);
  j["rcvbuf"] = opt_json(r.rcvbuf);
  j["drops"] = opt_json(r.drops);
  if (r.family == k_af_unix) {
    j["path"] = r.path ? json(*r.path) : json(nullptr);
    j["peer_inode"] = opt_json(r.peer_inode);
  }
  json owners = json::array();
  for (const Owner& o : r.owners) {
    const auto it = comm.find(o.pid);
    owners.push_back({{"pid", o.pid},
                      {"fd", opt_json(o.fd)},
                      {"comm", it == comm.end() ? json(nullptr) : json(it->second)}});
  }
  j["owners"] = std::move(owners);
  return j;
}

// The snapshot that the options select among `all` (one host's snapshots).
const SnapshotInfo& select_snapshot(const std::vector<SnapshotInfo>& all, const ShowOptions& opts) {
  if (opts.snapshot) {
    for (const SnapshotInfo& s : all) {
      if (s.snapshot_id == *opts.snapshot) {
        return s;
      }
    }
    int64_t lo = all.front().snapshot_id;
    int64_t hi = lo;
    for (const SnapshotInfo& s : all) {
      lo = std::min(lo, s.snapshot_id);
      hi = std::max(hi, s.snapshot_id);
    }
    throw UsageError("no snapshot " + std::to_string(*opts.snapshot) + " in " + all.front().file
                     + " (it holds " + std::to_string(lo) + ".." + std::to_string(hi) + ")");
  }
  const SnapshotInfo* best = nullptr;
  const int64_t limit = opts.at ? parse_time(*opts.at) : INT64_MAX;
  const SnapshotInfo* first = &all.front();
  for (const SnapshotInfo& s : all) {
    if (s.realtime_ns < first->realtime_ns) {
      first = &s;
    }
    if (s.realtime_ns <= limit && (best == nullptr || s.realtime_ns >= best->realtime_ns)) {
      best = &s;
    }
  }
  if (best == nullptr) {
    throw UsageError("no snapshot at or before " + *opts.at + ": the first is at "
                     + iso8601(first->realtime_ns));
  }
  return *best;
}

} // namespace

void write_show(const ShowOptions& opts, std::ostream& out) {
  const std::vector<std::string> files = expand_paths({opts.path});
  if (opts.snapshot && files.size() > 1) {
    throw UsageError("--snapshot needs a single file, but " + escape_text(opts.path) + " holds "
                     + std::to_string(files.size()) + " files: name one file, or use --at");
  }
  const int state = opts.state ? static_cast<int>(parse_state(*opts.state)) : -1;
  std::vector<SnapshotInfo> all;
  std::vector<std::string> hosts;
  for (const std::string& f : files) {
    for (SnapshotInfo& s : load_snapshot_index(f)) {
      hosts.push_back(s.host);
      all.push_back(std::move(s));
    }
  }
  require_snapshots(files, all.size());
  const std::string host = pick_host(hosts, opts.host);
  std::erase_if(all, [&](const SnapshotInfo& s) { return s.host != host; });
  const Snapshot snap = read_snapshot(select_snapshot(all, opts));

  std::vector<const Row*> shown;
  std::set<uint64_t> netns_shown;
  for (const Row& r : snap.rows) {
    if (keep(r, opts, state)) {
      shown.push_back(&r);
      netns_shown.insert(r.netns);
    }
  }

  if (opts.format == Format::json) {
    json head;
    head["file"] = snap.info.file;
    head["snapshot_id"] = snap.info.snapshot_id;
    head["host"] = snap.info.host;
    head["boot_id"] = snap.info.boot_id;
    head["kernel"] = snap.info.kernel;
    head["time"] = iso8601(snap.info.realtime_ns);
    head["realtime_ns"] = snap.info.realtime_ns;
    head["netns_mode"] = snap.info.netns_mode;
    head["self_netns"] = snap.self_netns;
    head["euid"] = snap.euid;
    head["netns"] = snap.netns;
    head["sources"] = snap.info.sources;
    head["issues"] = snap.info.issues;
    head["sockets"] = snap.rows.size();
    json socks = json::array();
    for (const Row* r : shown) {
      socks.push_back(socket_json(*r, snap.comm));
    }
    json doc;
    doc["snapshot"] = std::move(head);
    doc["sockets"] = std::move(socks);
    out << dump_json(doc) << "\n";
    return;
  }

  out << "host " << escape_text(snap.info.host) << "  time " << iso8601(snap.info.realtime_ns)
      << "  snapshot " << snap.info.snapshot_id << "  sockets " << snap.rows.size();
  if (shown.size() != snap.rows.size()) {
    out << " (shown " << shown.size() << ")";
  }
  out << "  file " << escape_text(snap.info.file) << "\n";
  const bool netns_column = netns_shown.size() > 1;
  std::vector<std::vector<std::string>> table;
  std::vector<std::string> header{
      "Netid", "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port", "Details"};
  if (netns_column) {
    header.insert(header.begin(), "Netns");
  }
  table.push_back(std::move(header));
  for (const Row* r : shown) {
    std::string details;
    const auto add = [&details](const std::string& part) {
      if (!part.empty()) {
        details += (details.empty() ? "" : " ") + part;
      }
    };
    add(timer_text(*r));
    add(r->uid ? "uid:" + std::to_string(*r->uid) : "");
    add("ino:" + std::to_string(r->inode));
    add(r->cookie ? "cookie:" + std::to_string(static_cast<uint64_t>(*r->cookie)) : "");
    add(users_text(*r, snap.comm));
    std::vector<std::string> row{
        escape_text(r->proto_name),
        state_name(static_cast<uint8_t>(std::clamp<int64_t>(r->state, 0, 255))),
        opt_text(r->rx_queue),
        opt_text(r->tx_queue),
        escape_text(r->local),
        escape_text(r->remote),
        details};
    if (netns_column) {
      row.insert(row.begin(), std::to_string(r->netns));
    }
    table.push_back(std::move(row));
  }
  write_table(table, out);
}

} // namespace sockrewind::analyze
