// One snapshot read from a file's tables (snapshot_view.hpp), shared by `show` and `replay`.
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/snapshot_view.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

namespace sockrewind::analyze {

namespace {

using nlohmann::json;

json opt_json(const std::optional<int64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

// ss's order of socket kinds.
int proto_rank(const std::string& name) {
  static const std::array<std::string, 7> k_order{
      "tcp", "udp", "udplite", "raw", "u_str", "u_dgr", "u_seq"};
  const auto* it = std::find(k_order.begin(), k_order.end(), name);
  return static_cast<int>(it - k_order.begin());
}

std::string inet_endpoint(int64_t family,
                          const std::optional<std::string>& addr,
                          const std::optional<int64_t>& port) {
  std::string a = addr ? *addr : std::string("*");
  if (family == k_af_inet6 && addr) {
    a = "[" + a + "]";
  }
  return a + ":" + (!port || *port == 0 ? std::string("*") : std::to_string(*port));
}

} // namespace

std::string opt_text(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string("-");
}

SnapshotView read_snapshot(store::Db& db, const SnapshotInfo& info) {
  SnapshotView snap;
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
    std::multimap<int64_t, RowOwner> extra_owners; // sock_id -> owner, in (pid, fd) order
    store::Stmt extra = db.prepare("SELECT e.sock_id, e.pid, e.fd FROM extra_owners e "
                                   "JOIN sockets s ON s.sock_id = e.sock_id "
                                   "WHERE s.snapshot_id = ?1 ORDER BY e.sock_id, e.pid, e.fd");
    extra.bind(1, info.snapshot_id);
    while (extra.step()) {
      extra_owners.emplace(extra.get_int(0), RowOwner{extra.get_int(1), extra.get_int(2)});
    }
    store::Stmt st = db.prepare(
        "SELECT s.sock_id, n.inode AS netns_inode, s.family, s.type, s.proto, s.state, "
        "la.text AS local_text, s.local_port, ra.text AS remote_text, s.remote_port, s.rx_queue, "
        "s.tx_queue, s.inode, s.cookie, s.uid, s.timer, s.expires_ms, s.retrans, s.shutdown, "
        "s.skm_rmem_alloc, s.skm_rcvbuf, s.skm_drops, s.path, s.peer_inode, s.pid, s.fd "
        "FROM sockets s JOIN netns n ON n.netns_id = s.netns_id "
        "LEFT JOIN addrs la ON la.addr_id = s.local_addr_id "
        "LEFT JOIN addrs ra ON ra.addr_id = s.remote_addr_id "
        "WHERE s.snapshot_id = ?1");
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
    snap.rows.reserve(static_cast<size_t>(std::max<int64_t>(info.sockets, 0)));
    while (st.step()) {
      SocketRow r;
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
      snap.rows.push_back(std::move(r));
    }
    // The (few) further owners, in (sock_id, pid, fd) order, after each socket's first owner.
    if (!extra_owners.empty()) {
      for (SocketRow& r : snap.rows) {
        const auto [lo, hi] = extra_owners.equal_range(r.sock_id);
        for (auto it = lo; it != hi; ++it) {
          r.owners.push_back(it->second);
        }
      }
    }
  } catch (const store::DbError& e) {
    throw read_error(info.file, e);
  }
  // ss order; a total order (sock_id last), so the SQL's row order does not matter. Sorting
  // indices rather than the rows themselves (large structs) halves the time at 100k sockets.
  std::vector<uint32_t> order(snap.rows.size());
  for (size_t i = 0; i < order.size(); ++i) {
    order[i] = static_cast<uint32_t>(i);
  }
  std::sort(order.begin(), order.end(), [&snap](uint32_t ia, uint32_t ib) {
    const SocketRow& a = snap.rows[ia];
    const SocketRow& b = snap.rows[ib];
    const int64_t pa = a.local_port.value_or(0);
    const int64_t pb = b.local_port.value_or(0);
    return std::tie(a.netns, a.rank, a.proto_name, a.family, pa, a.local, a.remote, a.sock_id)
           < std::tie(b.netns, b.rank, b.proto_name, b.family, pb, b.local, b.remote, b.sock_id);
  });
  std::vector<SocketRow> sorted;
  sorted.reserve(order.size());
  for (const uint32_t i : order) {
    sorted.push_back(std::move(snap.rows[i]));
  }
  snap.rows = std::move(sorted);
  return snap;
}

SnapshotView read_snapshot(const SnapshotInfo& info) {
  store::Db db = open_validated(info.file);
  return read_snapshot(db, info);
}

CounterValues read_counters(store::Db& db, const SnapshotInfo& info) {
  CounterValues out;
  try {
    store::Stmt st = db.prepare("SELECT n.inode, c.name, c.value FROM counters c "
                                "JOIN netns n ON n.netns_id = c.netns_id WHERE c.snapshot_id = ?1");
    st.bind(1, info.snapshot_id);
    while (st.step()) {
      out[{static_cast<uint64_t>(st.get_int(0)), st.get_text(1)}] = st.get_int(2);
    }
  } catch (const store::DbError& e) {
    throw read_error(info.file, e);
  }
  return out;
}

std::string row_state_text(const SocketRow& r) {
  return state_name(static_cast<uint8_t>(std::clamp<int64_t>(r.state, 0, 255)));
}

std::string users_text(const SocketRow& r, const std::map<int64_t, std::string>& comm) {
  if (r.owners.empty()) {
    return "";
  }
  std::string s = "users:(";
  for (size_t i = 0; i < r.owners.size(); ++i) {
    const RowOwner& o = r.owners[i];
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

std::string timer_text(const SocketRow& r) {
  if (!r.timer || *r.timer == 0) {
    return "";
  }
  return "timer:(" + timer_name(*r.timer) + ","
         + (r.expires_ms ? format_ms(*r.expires_ms) : std::string("-")) + ","
         + (r.retrans ? std::to_string(*r.retrans) : std::string("-")) + ")";
}

std::string details_text(const SocketRow& r, const std::map<int64_t, std::string>& comm) {
  std::string details;
  const auto add = [&details](const std::string& part) {
    if (!part.empty()) {
      details += (details.empty() ? "" : " ") + part;
    }
  };
  add(timer_text(r));
  add(r.uid ? "uid:" + std::to_string(*r.uid) : "");
  add("ino:" + std::to_string(r.inode));
  add(r.cookie ? "cookie:" + std::to_string(static_cast<uint64_t>(*r.cookie)) : "");
  add(users_text(r, comm));
  return details;
}

} // namespace sockrewind::analyze
