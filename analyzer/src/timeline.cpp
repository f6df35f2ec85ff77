// `sockrewind-analyze timeline`: one socket (by cookie), one port or one pid over the merged
// series of a host, one line per snapshot, with gaps and reboots marked.
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/host_series.hpp>
#include <sockrewind/analyze/json_out.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/analyze/text.hpp>

#include <nlohmann/json.hpp>

#include <charconv>
#include <map>
#include <set>
#include <utility>

namespace sockrewind::analyze {

namespace {

using nlohmann::json;
using Table = std::vector<std::vector<std::string>>;

uint64_t parse_cookie(const std::string& s) {
  std::string_view v = s;
  int base = 10;
  if (v.size() > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
    v.remove_prefix(2);
    base = 16;
  }
  uint64_t c = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), c, base);
  if (ec != std::errc() || end != v.data() + v.size() || v.empty() || c == 0) {
    throw UsageError("bad socket cookie '" + escape_text(s)
                     + "': expected a number (decimal, or hex with 0x)");
  }
  return c;
}

// Walks a host series in emission order and says what lies between two emitted snapshots.
class Cursor {
public:
  Cursor(const Series& s, const HostSeries& hs) : m_series(s), m_hs(hs) {}

  struct Step {
    std::vector<std::string> markers; // text lines ("gap: ...", "not seen in 2 snapshots")
    bool gap = false;                 // a gap or reboot lies between
    size_t absent = 0;                // snapshots skipped (subject not in them)
  };

  Step advance(size_t pos, const std::string& absent_what) {
    Step step;
    if (m_started) {
      step.absent = pos - m_last - 1;
      if (step.absent > 0) {
        step.markers.push_back(absent_what + " not seen in " + std::to_string(step.absent)
                               + " snapshot" + (step.absent == 1 ? "" : "s"));
      }
      for (size_t j = m_last + 1; j <= pos; ++j) {
        const std::string b = boundary(m_series, m_hs.snaps[j - 1], m_hs.snaps[j]);
        if (!b.empty()) {
          step.markers.push_back(b);
          step.gap = true;
        }
      }
    }
    m_started = true;
    m_last = pos;
    return step;
  }

  // Rows for the markers of a step.
  static void add_markers(Table& table, const Step& step) {
    for (const std::string& m : step.markers) {
      table.push_back({"-- " + m + " --"});
    }
  }

private:
  const Series& m_series;
  const HostSeries& m_hs;
  bool m_started = false;
  size_t m_last = 0;
};

json entry_head(const Timeline& tl, uint32_t snap, size_t pos, const Cursor::Step& step) {
  json e;
  e["t"] = snap_time(tl, snap);
  e["snapshot"] = pos + 1;
  e["boot_id"] = tl.boot_id;
  e["gap_before"] = step.gap;
  e["absent_before"] = step.absent;
  return e;
}

std::string plural(size_t n, const char* what) {
  return std::to_string(n) + " " + what + (n == 1 ? "" : "s");
}

// "tcp ESTAB 3, tcp TIME-WAIT 1" from proto -> state -> count.
using StateCounts = std::map<std::string, std::map<std::string, size_t>>;

std::string counts_text(const StateCounts& c) {
  std::string s;
  for (const auto& [proto, states] : c) {
    for (const auto& [state, n] : states) {
      if (!s.empty()) {
        s += ", ";
      }
      s.append(proto).append(" ").append(state).append(" ").append(std::to_string(n));
    }
  }
  return s.empty() ? "-" : s;
}

size_t counts_total(const StateCounts& c) {
  size_t n = 0;
  for (const auto& [proto, states] : c) {
    for (const auto& [state, k] : states) {
      n += k;
    }
  }
  return n;
}

json counts_json(const StateCounts& c) {
  json j = json::object();
  for (const auto& [proto, states] : c) {
    for (const auto& [state, n] : states) {
      j[proto][state] = n;
    }
  }
  return j;
}

void write_socket(const Series& s, const TimelineOptions& opts, std::ostream& out) {
  const uint64_t cookie = parse_cookie(*opts.socket);
  std::vector<std::pair<uint32_t, uint32_t>> found; // (timeline, track)
  for (size_t i = 0; i < s.timelines.size(); ++i) {
    const Timeline& tl = s.timelines[i];
    if (opts.host && tl.host != *opts.host) {
      continue;
    }
    for (size_t k = 0; k < tl.tracks.size(); ++k) {
      if (tl.tracks[k].cookie == cookie && !tl.tracks[k].samples.empty()) {
        found.emplace_back(static_cast<uint32_t>(i), static_cast<uint32_t>(k));
      }
    }
  }
  if (found.empty()) {
    throw UsageError("no socket with cookie " + std::to_string(cookie) + " in the files"
                     + (opts.host ? " for host " + escape_text(*opts.host) : std::string()));
  }
  std::set<std::string> hosts;
  for (const auto& [t, k] : found) {
    hosts.insert(s.timelines[t].host);
  }
  if (hosts.size() > 1) {
    (void)pick_host({hosts.begin(), hosts.end()}, std::nullopt); // throws, listing the hosts
  }
  // Cookies are unique per boot; with several boots of the host, the most recent one.
  const HostSeries hs = host_series(s, *hosts.begin());
  std::pair<uint32_t, uint32_t> pick = found.front();
  for (const auto& f : found) {
    if (hs.pos(f.first, s.timelines[f.first].tracks[f.second].samples.back().snap)
        > hs.pos(pick.first, s.timelines[pick.first].tracks[pick.second].samples.back().snap)) {
      pick = f;
    }
  }
  const Timeline& tl = s.timelines[pick.first];
  const Track& t = tl.tracks[pick.second];
  const size_t first_pos = hs.pos(pick.first, t.samples.front().snap);
  const size_t last_pos = hs.pos(pick.first, t.samples.back().snap);
  const size_t before = t.samples.front().snap;
  const size_t after = tl.snaps.size() - 1 - t.samples.back().snap;

  Cursor cur(s, hs);
  json series = json::array();
  Table table;
  table.push_back({"#",
                   "Time",
                   "State",
                   "Recv-Q",
                   "Send-Q",
                   "Inode",
                   "Owner",
                   "Timer",
                   "Retrans",
                   "Mem r/rb",
                   "Drops"});
  if (before > 0) {
    table.push_back({"-- not seen in the " + plural(before, "snapshot") + " before --"});
  }
  for (const Sample& x : t.samples) {
    const size_t pos = hs.pos(pick.first, x.snap);
    const Cursor::Step step = cur.advance(pos, "socket");
    Cursor::add_markers(table, step);
    const std::string timer = x.timer == k_na8 ? "-" : timer_name(x.timer);
    table.push_back({std::to_string(pos + 1),
                     snap_time(tl, x.snap),
                     state_name(x.state),
                     na_text(x.rx_queue),
                     na_text(x.tx_queue),
                     std::to_string(x.inode),
                     owner_text(s, tl, x.owner),
                     timer,
                     x.retrans == k_na8 ? "-" : std::to_string(x.retrans),
                     na_text(x.rmem_alloc) + "/" + na_text(x.rcvbuf),
                     na_text(x.drops)});
    json e = entry_head(tl, x.snap, pos, step);
    e["state"] = state_name(x.state);
    e["rx_queue"] = na_json(x.rx_queue);
    e["tx_queue"] = na_json(x.tx_queue);
    e["inode"] = x.inode;
    e["owner"] = process_json(s, tl, x.owner);
    e["timer"] = x.timer == k_na8 ? json(nullptr) : json(timer_name(x.timer));
    e["retrans"] = na_json(x.retrans);
    e["total_retrans"] = na_json(x.total_retrans);
    e["rmem_alloc"] = na_json(x.rmem_alloc);
    e["rcvbuf"] = na_json(x.rcvbuf);
    e["drops"] = na_json(x.drops);
    series.push_back(std::move(e));
  }
  if (after > 0) {
    table.push_back({"-- not seen in the " + plural(after, "snapshot") + " after (closed) --"});
  }

  json subject = socket_subject(s, tl, t, t.samples.back());
  subject["kind"] = "socket";
  subject["boot_id"] = tl.boot_id;
  subject["first_seen"] = snap_time(tl, t.samples.front().snap);
  subject["last_seen"] = snap_time(tl, t.samples.back().snap);
  subject["absent_before"] = before;
  subject["absent_after"] = after;
  if (opts.format == Format::json) {
    out << dump_json(json{{"subject", std::move(subject)}, {"series", std::move(series)}}) << "\n";
    return;
  }
  out << "socket " << proto_name(t) << " " << escape_text(endpoint(s, t, true)) << " -> "
      << escape_text(endpoint(s, t, false)) << "  cookie " << cookie << "  host "
      << escape_text(tl.host) << "  netns " << tl.netns[t.netns].inode << "\n";
  out << "seen in " << plural(t.samples.size(), "snapshot") << ", #" << first_pos + 1 << " "
      << snap_time(tl, t.samples.front().snap) << " to #" << last_pos + 1 << " "
      << snap_time(tl, t.samples.back().snap) << "\n";
  write_table(table, out);
}

struct Listener {
  const Track* track = nullptr;
  const Sample* sample = nullptr;
};

void write_port(const Series& s, const TimelineOptions& opts, std::ostream& out) {
  const auto port = static_cast<uint16_t>(*opts.port);
  const HostSeries hs = host_series(s, pick_host(series_hosts(s), opts.host));
  std::vector<std::vector<Listener>> listeners(hs.snaps.size());
  std::vector<StateCounts> counts(hs.snaps.size());
  for (const auto& [tli, offset] : hs.offset) {
    for (const Track& t : s.timelines[tli].tracks) {
      if (t.family == k_af_unix || (t.local_port != port && t.remote_port != port)) {
        continue;
      }
      for (const Sample& x : t.samples) {
        const size_t pos = offset + x.snap;
        if (x.state == k_listen && t.local_port == port) {
          listeners[pos].push_back({&t, &x});
        } else {
          counts[pos][proto_name(t)][state_name(x.state)]++;
        }
      }
    }
  }
  Cursor cur(s, hs);
  json series = json::array();
  Table table;
  table.push_back({"#", "Time", "Listeners (accept queue/max backlog)", "Sockets by state"});
  for (size_t pos = 0; pos < hs.snaps.size(); ++pos) {
    const Timeline& tl = s.timelines[hs.snaps[pos].timeline];
    const uint32_t snap = hs.snaps[pos].snap;
    const Cursor::Step step = cur.advance(pos, "port");
    Cursor::add_markers(table, step);
    std::string ltext;
    json ljson = json::array();
    for (const Listener& l : listeners[pos]) {
      ltext += (ltext.empty() ? "" : ", ") + proto_name(*l.track) + " "
               + escape_text(endpoint(s, *l.track, true)) + " " + na_text(l.sample->rx_queue) + "/"
               + na_text(l.sample->tx_queue) + " " + owner_text(s, tl, l.sample->owner);
      ljson.push_back({{"proto", proto_name(*l.track)},
                       {"local", endpoint(s, *l.track, true)},
                       {"accept_queue", na_json(l.sample->rx_queue)},
                       {"max_backlog", na_json(l.sample->tx_queue)},
                       {"inode", l.sample->inode},
                       {"cookie", l.track->cookie == 0 ? json(nullptr) : json(l.track->cookie)},
                       {"owner", process_json(s, tl, l.sample->owner)}});
    }
    table.push_back({std::to_string(pos + 1),
                     snap_time(tl, snap),
                     ltext.empty() ? "-" : ltext,
                     counts_text(counts[pos])});
    json e = entry_head(tl, snap, pos, step);
    e["listeners"] = std::move(ljson);
    e["states"] = counts_json(counts[pos]);
    e["sockets"] = counts_total(counts[pos]);
    series.push_back(std::move(e));
  }
  if (opts.format == Format::json) {
    const json subject{{"kind", "port"}, {"host", hs.host}, {"port", port}};
    out << dump_json(json{{"subject", subject}, {"series", std::move(series)}}) << "\n";
    return;
  }
  out << "port " << port << "  host " << escape_text(hs.host) << "  "
      << plural(hs.snaps.size(), "snapshot")
      << "  (sockets: non-listening sockets with this local or remote port)\n";
  write_table(table, out);
}

void write_pid(const Series& s, const TimelineOptions& opts, std::ostream& out) {
  const int32_t pid = *opts.pid;
  const HostSeries hs = host_series(s, pick_host(series_hosts(s), opts.host));
  // Processes with this pid, and their owned sockets per snapshot.
  std::map<std::pair<uint32_t, uint32_t>, std::map<uint32_t, StateCounts>> owned;
  json processes = json::array();
  for (const auto& [tli, offset] : hs.offset) {
    const Timeline& tl = s.timelines[tli];
    std::set<uint32_t> procs;
    for (size_t p = 0; p < tl.procs.size(); ++p) {
      if (tl.procs[p].pid == pid) {
        procs.insert(static_cast<uint32_t>(p));
        json pj = process_json(s, tl, static_cast<uint32_t>(p));
        pj["boot_id"] = tl.boot_id;
        processes.push_back(std::move(pj));
      }
    }
    if (procs.empty()) {
      continue;
    }
    for (const Track& t : tl.tracks) {
      for (const Sample& x : t.samples) {
        if (x.owner != k_na && procs.contains(x.owner)) {
          owned[{tli, x.owner}][x.snap][proto_name(t)][state_name(x.state)]++;
        }
      }
    }
    for (const uint32_t p : procs) {
      owned[{tli, p}]; // a process without sockets still has its own lines
    }
  }
  if (processes.empty()) {
    throw UsageError("no process with pid " + std::to_string(pid) + " on host "
                     + escape_text(hs.host) + " in the files");
  }
  Cursor cur(s, hs);
  json series = json::array();
  Table table;
  table.push_back({"#", "Time", "Sockets", "By state", "Socket fds", "Fds/nofile"});
  std::pair<uint32_t, uint32_t> current{k_na, k_na};
  for (size_t pos = 0; pos < hs.snaps.size(); ++pos) {
    const uint32_t tli = hs.snaps[pos].timeline;
    const uint32_t snap = hs.snaps[pos].snap;
    const Timeline& tl = s.timelines[tli];
    for (auto& [key, per_snap] : owned) {
      if (key.first != tli) {
        continue;
      }
      const Process& p = tl.procs[key.second];
      const ProcSample* ps = Timeline::proc_at(p, snap);
      if (ps == nullptr) {
        continue;
      }
      const Cursor::Step step = cur.advance(pos, "pid " + std::to_string(pid));
      Cursor::add_markers(table, step);
      if (key != current) {
        std::string who = "== pid " + std::to_string(p.pid) + " start_ticks "
                          + std::to_string(p.start_ticks) + " comm "
                          + escape_text(std::string(s.strings.get(p.comm)));
        if (!s.strings.get(p.cmdline).empty()) {
          who += " cmdline " + escape_text(std::string(s.strings.get(p.cmdline)));
        }
        table.push_back({who + " =="});
        current = key;
      }
      const StateCounts& c = per_snap[snap];
      table.push_back({std::to_string(pos + 1),
                       snap_time(tl, snap),
                       std::to_string(counts_total(c)),
                       counts_text(c),
                       std::to_string(ps->socket_fds),
                       na_text(ps->fd_count) + "/" + na_text(ps->nofile_soft)});
      json e = entry_head(tl, snap, pos, step);
      e["process"] = {{"pid", p.pid},
                      {"start_ticks", p.start_ticks},
                      {"comm", std::string(s.strings.get(p.comm))}};
      e["sockets"] = counts_total(c);
      e["states"] = counts_json(c);
      e["socket_fds"] = ps->socket_fds;
      e["fd_count"] = na_json(ps->fd_count);
      e["nofile_soft"] = na_json(ps->nofile_soft);
      series.push_back(std::move(e));
    }
  }
  if (opts.format == Format::json) {
    const json subject{
        {"kind", "pid"}, {"host", hs.host}, {"pid", pid}, {"processes", std::move(processes)}};
    out << dump_json(json{{"subject", subject}, {"series", std::move(series)}}) << "\n";
    return;
  }
  out << "pid " << pid << "  host " << escape_text(hs.host) << "  " << processes.size()
      << (processes.size() == 1 ? " process" : " processes") << " with this pid"
      << "  (sockets: those it is the first owner of)\n";
  write_table(table, out);
}

} // namespace

void write_timeline(const TimelineOptions& opts, std::ostream& out) {
  if (opts.paths.empty()) {
    throw UsageError("no snapshot files given");
  }
  // Only the sockets shown are decoded: those of the port, of the cookie, or those the pid is
  // the first owner of; no counters or limits (no timeline shows them).
  SocketFilter filter;
  filter.counters_and_limits = false;
  if (opts.socket) {
    filter.cookie = parse_cookie(*opts.socket);
  } else if (opts.port) {
    filter.port = static_cast<uint16_t>(*opts.port);
  } else if (opts.pid) {
    filter.pid = static_cast<int32_t>(*opts.pid);
  }
  const Series s = load_series(opts.paths, filter);
  check_series(s);
  require_snapshots(opts.paths, s.snapshot_count());
  if (opts.socket) {
    write_socket(s, opts, out);
  } else if (opts.port) {
    write_port(s, opts, out);
  } else if (opts.pid) {
    write_pid(s, opts, out);
  } else {
    throw UsageError("timeline needs one of --socket, --port, --pid");
  }
}

} // namespace sockrewind::analyze
