// `sockrewind-analyze diff`: what changed between two snapshots of a host: sockets new and gone,
// state, queue and owner changes (sockets matched by Track identity), and counter deltas per
// network namespace (a counter that went down was reset: said so, never a negative delta).
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/host_series.hpp>
#include <sockrewind/analyze/json_out.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/analyze/text.hpp>
#include <sockrewind/analyze/time.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <tuple>
#include <utility>

namespace sockrewind::analyze {

namespace {

using nlohmann::json;
using Table = std::vector<std::vector<std::string>>;

// A --from/--to value: a 1-based position in the host's merged series, or an ISO 8601 time
// (the last snapshot at or before it).
size_t resolve(const std::string& arg, const char* option, const Series& s, const HostSeries& hs) {
  const size_t n = hs.snaps.size();
  if (!arg.empty() && std::all_of(arg.begin(), arg.end(), [](char c) {
        return std::isdigit(static_cast<unsigned char>(c)) != 0;
      })) {
    size_t pos = 0;
    const auto [end, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), pos);
    if (ec != std::errc() || end != arg.data() + arg.size() || pos < 1 || pos > n) {
      throw UsageError(std::string(option) + " " + arg + ": host " + escape_text(hs.host)
                       + " has snapshots 1.." + std::to_string(n));
    }
    return pos - 1;
  }
  const int64_t t = parse_time(arg);
  std::optional<size_t> best;
  for (size_t i = 0; i < n; ++i) {
    if (s.timelines[hs.snaps[i].timeline].snaps[hs.snaps[i].snap].realtime_ns <= t) {
      best = i;
    }
  }
  if (!best) {
    const HostSnap& first = hs.snaps.front();
    throw UsageError(std::string(option) + " " + escape_text(arg)
                     + ": no snapshot at or before it; the first of host " + escape_text(hs.host)
                     + " is at " + snap_time(s.timelines[first.timeline], first.snap));
  }
  return *best;
}

// Levels rather than cumulative counts: sockstat (`TCP.inuse`, `sockets.used`...) and the few
// snmp gauges. They may go down without a reset.
bool is_gauge(std::string_view name) {
  const size_t dot = name.find('.');
  if (dot == std::string_view::npos) {
    return false; // snmp6: all counters
  }
  const std::string_view group = name.substr(0, dot);
  if (group == "sockets") {
    return true;
  }
  if (std::all_of(group.begin(), group.end(), [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
      })) {
    return true; // sockstat groups: TCP, UDP, UDPLITE, RAW, FRAG, TCP6, ...
  }
  static constexpr std::array<std::string_view, 7> k_gauges{"Tcp.CurrEstab",
                                                            "Tcp.RtoAlgorithm",
                                                            "Tcp.RtoMin",
                                                            "Tcp.RtoMax",
                                                            "Tcp.MaxConn",
                                                            "Ip.Forwarding",
                                                            "Ip.DefaultTTL"};
  return std::find(k_gauges.begin(), k_gauges.end(), name) != k_gauges.end();
}

struct Item {
  const Timeline* tl = nullptr;
  const Track* track = nullptr;
  const Sample* from = nullptr;
  const Sample* to = nullptr;

  const Sample& shown() const { return to != nullptr ? *to : *from; }
};

struct Counter {
  uint64_t netns = 0;
  std::string name;
  int64_t from = 0;
  int64_t to = 0;
  int64_t delta = 0;  // sum of the increases between consecutive snapshots
  size_t resets = 0;  // decreases between consecutive snapshots
  bool gauge = false; // a level: from -> to, no delta
};

std::string cookie_text(const Track& t) {
  return t.cookie == 0 ? std::string("-") : std::to_string(t.cookie);
}

json socket_json(const Series& s, const Item& it) {
  const Sample& x = it.shown();
  json j = socket_subject(s, *it.tl, *it.track, x);
  j["rx_queue"] = na_json(x.rx_queue);
  j["tx_queue"] = na_json(x.tx_queue);
  return j;
}

std::string change(const std::string& a, const std::string& b) {
  return a == b ? a : a + " -> " + b;
}

void sort_items(const Series& s, std::vector<Item>& v) {
  const auto key = [&s](const Item& i) {
    const Track& t = *i.track;
    return std::make_tuple(i.tl->netns[t.netns].inode,
                           proto_name(t),
                           s.strings.get(t.local_addr),
                           t.local_port,
                           s.strings.get(t.path),
                           s.strings.get(t.remote_addr),
                           t.remote_port,
                           t.peer_inode,
                           t.cookie);
  };
  std::stable_sort(
      v.begin(), v.end(), [&](const Item& a, const Item& b) { return key(a) < key(b); });
}

std::vector<Counter>
counter_changes(const Series& s, const Timeline& tl, uint32_t from, uint32_t to) {
  std::vector<Counter> out;
  for (const Netns& ns : tl.netns) {
    for (const auto& [name_id, values] : ns.counters) {
      if (values.size() <= to || values[from] == k_no_counter || values[to] == k_no_counter) {
        continue;
      }
      Counter c;
      c.netns = ns.inode;
      c.name = s.strings.at(name_id);
      c.from = values[from];
      c.to = values[to];
      c.gauge = is_gauge(c.name);
      if (c.gauge) {
        if (c.from != c.to) {
          out.push_back(std::move(c));
        }
        continue;
      }
      int64_t prev = values[from];
      for (uint32_t i = from + 1; i <= to; ++i) {
        if (values[i] == k_no_counter) {
          continue;
        }
        if (values[i] >= prev) {
          c.delta += values[i] - prev;
        } else {
          ++c.resets;
        }
        prev = values[i];
      }
      if (c.delta != 0 || c.resets != 0) {
        out.push_back(std::move(c));
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const Counter& a, const Counter& b) {
    return std::tie(a.netns, a.gauge, a.name) < std::tie(b.netns, b.gauge, b.name);
  });
  return out;
}

json snap_json(const Series& s, const HostSeries& hs, size_t pos) {
  const Timeline& tl = s.timelines[hs.snaps[pos].timeline];
  const Snap& sn = tl.snaps[hs.snaps[pos].snap];
  return {{"snapshot", pos + 1},
          {"t", snap_time(tl, hs.snaps[pos].snap)},
          {"file", s.files[sn.file]},
          {"snapshot_id", sn.snapshot_id},
          {"boot_id", tl.boot_id}};
}

} // namespace

void write_diff(const DiffOptions& opts, std::ostream& out) {
  if (opts.paths.empty()) {
    throw UsageError("no snapshot files given");
  }
  // Two reads: the headers and counters of every snapshot to find the two compared, then the
  // sockets and processes of those two only.
  SocketFilter filter;
  filter.snapshots.emplace();
  size_t a = 0;
  size_t b = 0;
  {
    const Series index = load_series(opts.paths, filter);
    check_series(index);
    require_snapshots(opts.paths, index.snapshot_count());
    const HostSeries hs = host_series(index, pick_host(series_hosts(index), opts.host));
    if (hs.snaps.empty()) {
      throw UsageError("host " + escape_text(hs.host) + " has no snapshots");
    }
    a = resolve(opts.from, "--from", index, hs);
    b = resolve(opts.to, "--to", index, hs);
    if (a > b) {
      throw UsageError("--from (#" + std::to_string(a + 1) + ") is after --to (#"
                       + std::to_string(b + 1) + ")");
    }
    for (const size_t pos : {a, b}) {
      const Timeline& tl = index.timelines[hs.snaps[pos].timeline];
      filter.snapshots->push_back({tl.host, tl.boot_id, tl.snaps[hs.snaps[pos].snap].boottime_ns});
    }
  }
  const Series s = load_series(opts.paths, filter);
  check_series(s);
  const HostSeries hs = host_series(s, pick_host(series_hosts(s), opts.host));
  SR_ASSERT(hs.snaps.size() > b); // the same files, read again
  const HostSnap& ha = hs.snaps[a];
  const HostSnap& hb = hs.snaps[b];
  const Timeline& ta = s.timelines[ha.timeline];
  const Timeline& tb = s.timelines[hb.timeline];
  const bool same_boot = ha.timeline == hb.timeline;
  size_t gaps = 0;
  for (size_t i = a + 1; i <= b; ++i) {
    if (!boundary(s, hs.snaps[i - 1], hs.snaps[i]).empty()) {
      ++gaps;
    }
  }
  const double interval_s =
      same_boot ? ta.dt(ha.snap, hb.snap)
                : static_cast<double>(tb.snaps[hb.snap].realtime_ns - ta.snaps[ha.snap].realtime_ns)
                      / 1e9;

  std::vector<Item> added;
  std::vector<Item> gone;
  std::vector<Item> states;
  std::vector<Item> queues;
  std::vector<Item> owners;
  if (same_boot) {
    for (const Track& t : ta.tracks) {
      const Sample* x = sample_at(t, ha.snap);
      const Sample* y = sample_at(t, hb.snap);
      const Item it{&ta, &t, x, y};
      if (x == nullptr && y == nullptr) {
        continue;
      }
      if (x == nullptr) {
        added.push_back(it);
        continue;
      }
      if (y == nullptr) {
        gone.push_back(it);
        continue;
      }
      if (x->state != y->state) {
        states.push_back(it);
      }
      if (x->rx_queue != y->rx_queue || x->tx_queue != y->tx_queue) {
        queues.push_back(it);
      }
      if (x->owner != y->owner) {
        owners.push_back(it);
      }
    }
  } else {
    // Another boot: cookies and inodes start over, nothing can be matched.
    for (const Track& t : ta.tracks) {
      if (const Sample* x = sample_at(t, ha.snap)) {
        gone.push_back({&ta, &t, x, nullptr});
      }
    }
    for (const Track& t : tb.tracks) {
      if (const Sample* y = sample_at(t, hb.snap)) {
        added.push_back({&tb, &t, nullptr, y});
      }
    }
  }
  for (auto* v : {&added, &gone, &states, &queues, &owners}) {
    sort_items(s, *v);
  }
  const std::vector<Counter> counters =
      same_boot ? counter_changes(s, ta, ha.snap, hb.snap) : std::vector<Counter>{};

  if (opts.format == Format::json) {
    json doc;
    doc["host"] = hs.host;
    doc["from"] = snap_json(s, hs, a);
    doc["to"] = snap_json(s, hs, b);
    doc["interval_s"] = interval_s;
    doc["gaps"] = gaps;
    doc["same_boot"] = same_boot;
    const auto list = [&](const std::vector<Item>& v) {
      json arr = json::array();
      for (const Item& it : v) {
        arr.push_back(socket_json(s, it));
      }
      return arr;
    };
    doc["new"] = list(added);
    doc["gone"] = list(gone);
    json arr = json::array();
    for (const Item& it : states) {
      arr.push_back({{"socket", socket_json(s, it)},
                     {"from", state_name(it.from->state)},
                     {"to", state_name(it.to->state)}});
    }
    doc["state_changes"] = std::move(arr);
    arr = json::array();
    for (const Item& it : queues) {
      arr.push_back(
          {{"socket", socket_json(s, it)},
           {"rx_queue", {{"from", na_json(it.from->rx_queue)}, {"to", na_json(it.to->rx_queue)}}},
           {"tx_queue", {{"from", na_json(it.from->tx_queue)}, {"to", na_json(it.to->tx_queue)}}}});
    }
    doc["queue_changes"] = std::move(arr);
    arr = json::array();
    for (const Item& it : owners) {
      arr.push_back({{"socket", socket_json(s, it)},
                     {"from", process_json(s, *it.tl, it.from->owner)},
                     {"to", process_json(s, *it.tl, it.to->owner)}});
    }
    doc["owner_changes"] = std::move(arr);
    json cs = json::array();
    json gs = json::array();
    for (const Counter& c : counters) {
      if (c.gauge) {
        gs.push_back({{"netns", c.netns}, {"name", c.name}, {"from", c.from}, {"to", c.to}});
      } else {
        cs.push_back({{"netns", c.netns},
                      {"name", c.name},
                      {"from", c.from},
                      {"to", c.to},
                      {"delta", c.delta},
                      {"reset", c.resets > 0}});
      }
    }
    doc["counters_comparable"] = same_boot;
    doc["counters"] = std::move(cs);
    doc["gauges"] = std::move(gs);
    out << dump_json(doc) << "\n";
    return;
  }

  char span[64];
  (void)std::snprintf(span, sizeof span, "%.1f s", interval_s);
  out << "host " << escape_text(hs.host) << "  from #" << a + 1 << " " << snap_time(ta, ha.snap)
      << "  to #" << b + 1 << " " << snap_time(tb, hb.snap) << "  (" << span;
  if (gaps > 0) {
    out << ", " << gaps << (gaps == 1 ? " gap" : " gaps") << " between";
  }
  out << ")\n";
  if (!same_boot) {
    out << "different boots (" << escape_text(ta.boot_id) << " -> " << escape_text(tb.boot_id)
        << "): sockets cannot be matched, counters are not comparable\n";
  }
  const auto section = [&](const char* title, const std::vector<Item>& v, char mark) {
    out << "\n" << title << ": " << v.size() << "\n";
    if (v.empty()) {
      return;
    }
    Table t{{"",
             "Netid",
             "State",
             "Recv-Q",
             "Send-Q",
             "Local Address:Port",
             "Peer Address:Port",
             "Owner",
             "Cookie"}};
    for (const Item& it : v) {
      const Sample& x = it.shown();
      t.push_back({std::string(1, mark),
                   proto_name(*it.track),
                   state_name(x.state),
                   na_text(x.rx_queue),
                   na_text(x.tx_queue),
                   escape_text(endpoint(s, *it.track, true)),
                   escape_text(endpoint(s, *it.track, false)),
                   owner_text(s, *it.tl, x.owner),
                   cookie_text(*it.track)});
    }
    write_table(t, out, "  ");
  };
  section("new sockets", added, '+');
  section("gone sockets", gone, '-');
  const auto changes =
      [&](const char* title, const std::vector<Item>& v, const char* what, const auto& cell) {
        out << "\n" << title << ": " << v.size() << "\n";
        if (v.empty()) {
          return;
        }
        Table t{{"Netid", "Local Address:Port", "Peer Address:Port", what, "Cookie"}};
        for (const Item& it : v) {
          t.push_back({proto_name(*it.track),
                       escape_text(endpoint(s, *it.track, true)),
                       escape_text(endpoint(s, *it.track, false)),
                       cell(it),
                       cookie_text(*it.track)});
        }
        write_table(t, out, "  ");
      };
  changes("state changes", states, "State", [](const Item& it) {
    return state_name(it.from->state) + " -> " + state_name(it.to->state);
  });
  changes("queue changes", queues, "Recv-Q / Send-Q", [](const Item& it) {
    return "Recv-Q " + change(na_text(it.from->rx_queue), na_text(it.to->rx_queue)) + ", Send-Q "
           + change(na_text(it.from->tx_queue), na_text(it.to->tx_queue)) + " ("
           + state_name(it.to->state) + ")";
  });
  changes("owner changes", owners, "Owner", [&s](const Item& it) {
    return owner_text(s, *it.tl, it.from->owner) + " -> " + owner_text(s, *it.tl, it.to->owner);
  });

  out << "\ncounters";
  if (!same_boot) {
    out << ": not comparable across a reboot\n";
    return;
  }
  out << " (non-zero deltas; a decrease is a counter reset):" << (counters.empty() ? " none" : "")
      << "\n";
  uint64_t netns = 0;
  bool first = true;
  Table t;
  for (const Counter& c : counters) {
    if (first || c.netns != netns) {
      t.push_back({"netns " + std::to_string(c.netns)});
      netns = c.netns;
      first = false;
    }
    std::string value;
    if (c.gauge) {
      value = std::to_string(c.from) + " -> " + std::to_string(c.to) + " (gauge)";
    } else {
      value = "+" + std::to_string(c.delta);
      if (c.resets > 0) {
        value += "  reset (" + std::to_string(c.from) + " -> " + std::to_string(c.to)
                 + "; the delta counts only the increases between snapshots)";
      }
    }
    t.push_back({"  " + escape_text(c.name), value});
  }
  write_table(t, out, "  ");
}

} // namespace sockrewind::analyze
