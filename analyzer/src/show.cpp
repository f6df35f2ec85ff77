// `sockrewind-analyze show`: one snapshot like `ss -tuwxanp`, read straight from the file's
// tables (the defensive read-only open trusts no views). Also the helpers shared with `timeline`
// and `diff` (show.hpp).
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/host_series.hpp>
#include <sockrewind/analyze/json_out.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/snapshot_view.hpp>
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

json opt_json(const std::optional<int64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

// `state` < 0: any state. (An int, not std::optional<uint8_t>: g++ 12 -O2 warns
// -Wmaybe-uninitialized on the optional's payload.)
bool keep(const SocketRow& r, const ShowOptions& opts, int state) {
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
        r.owners.begin(), r.owners.end(), [&](const RowOwner& o) { return o.pid == *opts.pid; });
  }
  return true;
}

json socket_json(const SocketRow& r, const std::map<int64_t, std::string>& comm) {
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
  for (const RowOwner& o : r.owners) {
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
  const SnapshotView snap = read_snapshot(select_snapshot(all, opts));

  std::vector<const SocketRow*> shown;
  std::set<uint64_t> netns_shown;
  for (const SocketRow& r : snap.rows) {
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
    for (const SocketRow* r : shown) {
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
  for (const SocketRow* r : shown) {
    const std::string details = details_text(*r, snap.comm);
    std::vector<std::string> row{escape_text(r->proto_name),
                                 row_state_text(*r),
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
