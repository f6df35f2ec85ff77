// The detector toolkit (toolkit.hpp): context, finding builder and the grouping sink.
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/time.hpp>
#include <sockrewind/analyze/toolkit.hpp>
#include <sockrewind/assert.hpp>

#include <algorithm>
#include <map>
#include <optional>
#include <utility>

namespace sockrewind::analyze {

std::string_view unit_name(Unit u) {
  switch (u) {
  case Unit::seconds:
    return "s";
  case Unit::bytes:
    return "bytes";
  case Unit::count:
    return "count";
  case Unit::ratio:
    return "ratio";
  case Unit::per_second:
    return "/s";
  case Unit::milliseconds:
    return "ms";
  }
  return "count";
}

// ---- CounterSeries

CounterSeries::CounterSeries(const Timeline& tl,
                             std::span<const std::vector<int64_t>* const> parts) {
  const size_t n = tl.snaps.size();
  m_delta.assign(n, -1);
  m_dt.assign(n, 0);
  m_from.assign(n, k_na);
  m_value.assign(n, k_no_counter);
  for (const std::vector<int64_t>* v : parts) {
    if (v == nullptr) {
      continue;
    }
    m_any = true;
    uint32_t prev = k_na;
    for (uint32_t i = 0; i < n && i < v->size(); ++i) {
      const int64_t x = (*v)[i];
      if (x == k_no_counter) {
        continue;
      }
      m_value[i] = (m_value[i] == k_no_counter ? 0 : m_value[i]) + x;
      if (prev != k_na && x >= (*v)[prev]) {
        m_delta[i] = std::max<int64_t>(m_delta[i], 0) + (x - (*v)[prev]);
        m_dt[i] = tl.dt(prev, i);
        m_from[i] = prev;
      }
      prev = i;
    }
  }
}

std::optional<int64_t> CounterSeries::delta(uint32_t snap) const {
  if (snap >= m_delta.size() || m_delta[snap] < 0) {
    return std::nullopt;
  }
  return m_delta[snap];
}

double CounterSeries::rate(uint32_t snap) const {
  const auto d = delta(snap);
  return !d || m_dt[snap] <= 0 ? 0 : static_cast<double>(*d) / m_dt[snap];
}

int64_t CounterSeries::total(uint32_t first, uint32_t last) const {
  int64_t sum = 0;
  for (uint32_t i = first; i <= last && i < m_delta.size(); ++i) {
    sum += std::max<int64_t>(m_delta[i], 0);
  }
  return sum;
}

std::optional<int64_t> CounterSeries::value(uint32_t snap) const {
  if (snap >= m_value.size() || m_value[snap] == k_no_counter) {
    return std::nullopt;
  }
  return m_value[snap];
}

Json CounterSeries::delta_json(uint32_t snap) const {
  const auto d = delta(snap);
  return d ? Json(*d) : Json(nullptr);
}

bool is_stopped_state(char state) {
  return state == 'T' || state == 't';
}

// ---- Context

Context::Context(const Series& series, const Timeline& tl, const Params& params)
    : m_series(series),
      m_tl(tl),
      m_params(params) {}

bool Context::lasted(uint32_t first, uint32_t last, size_t samples, double min_seconds) const {
  // Snapshots start on a timer, not to the nanosecond: "5 s" between 6 one-second snapshots
  // measures 4.9999 s. 1% (at least 50 ms) of slack keeps a threshold that is a multiple of the
  // interval from flipping between runs.
  const double slack = std::max(0.01 * min_seconds, 0.05);
  return samples >= k_min_support && last >= first && seconds(first, last) + slack >= min_seconds;
}

const CounterSeries& Context::counter(uint32_t netns, std::string_view name) const {
  const std::string_view names[] = {name};
  return counter_sum(netns, names);
}

const CounterSeries& Context::counter_sum(uint32_t netns,
                                          std::span<const std::string_view> names) const {
  std::string key;
  for (const std::string_view n : names) {
    key += n;
    key += '+';
  }
  auto [it, fresh] = m_counters.try_emplace({netns, key});
  if (fresh) {
    std::vector<const std::vector<int64_t>*> parts;
    for (const std::string_view n : names) {
      const uint32_t id = m_series.strings.find(n);
      parts.push_back(id == k_na ? nullptr : m_tl.counter(netns, id));
    }
    it->second = CounterSeries(m_tl, parts);
  }
  return it->second;
}

std::optional<int64_t>
Context::limit(uint32_t netns, const std::string& name, uint32_t snap, size_t field) const {
  const std::vector<int64_t> v = limit_numbers(m_tl, netns, name, snap);
  if (field >= v.size()) {
    return std::nullopt;
  }
  return v[field];
}

const ListenerIndex& Context::listeners() const {
  if (!m_listeners) {
    m_listeners = std::make_unique<ListenerIndex>(m_series, m_tl);
  }
  return *m_listeners;
}

const std::unordered_map<uint32_t, std::vector<Child>>&
Context::children(std::span<const uint8_t> states) const {
  const std::string key(states.begin(), states.end());
  auto it = m_children.find(key);
  if (it == m_children.end()) {
    it = m_children.emplace(key, children_by_listener(m_tl, listeners(), states)).first;
  }
  return it->second;
}

Context::SnapshotSockets Context::read_snapshot(uint32_t snap, SocketFilter filter) const {
  const uint32_t snaps[] = {snap};
  return std::move(read_snapshots(snaps, std::move(filter)).front());
}

std::vector<Context::SnapshotSockets> Context::read_snapshots(std::span<const uint32_t> snaps,
                                                              SocketFilter filter) const {
  filter.counters_and_limits = false;
  filter.timeline_per_snapshot = true;
  filter.open_files = m_series.open_files;
  std::map<uint32_t, std::vector<size_t>> by_file; // file -> indices in snaps
  for (size_t k = 0; k < snaps.size(); ++k) {
    by_file[m_tl.snaps[snaps[k]].file].push_back(k);
  }
  std::vector<std::optional<SnapshotSockets>> found(snaps.size());
  for (const auto& [file, ks] : by_file) {
    filter.snapshots.emplace();
    for (const size_t k : ks) {
      filter.snapshots->push_back({m_tl.host, m_tl.boot_id, m_tl.snaps[snaps[k]].boottime_ns});
    }
    const auto read = std::make_shared<const Series>(load_series({m_series.files[file]}, filter));
    for (const size_t k : ks) {
      const Snap& at = m_tl.snaps[snaps[k]];
      for (uint32_t i = 0; i < read->timelines.size() && !found[k]; ++i) {
        const Timeline& tl = read->timelines[i];
        if (tl.host != m_tl.host || tl.boot_id != m_tl.boot_id) {
          continue;
        }
        const auto it = std::find_if(tl.snaps.begin(), tl.snaps.end(), [&](const Snap& s) {
          return s.boottime_ns == at.boottime_ns;
        });
        if (it != tl.snaps.end()) {
          found[k].emplace(
              SnapshotSockets{read, *read, i, static_cast<uint32_t>(it - tl.snaps.begin())});
        }
      }
      if (!found[k]) {
        // The file held this snapshot when the series was loaded.
        throw LoadError(m_series.files[file] + ": snapshot " + std::to_string(at.snapshot_id)
                        + " is no longer there");
      }
    }
  }
  std::vector<SnapshotSockets> out;
  out.reserve(snaps.size());
  for (std::optional<SnapshotSockets>& s : found) {
    out.push_back(std::move(*s));
  }
  return out;
}

uint32_t Context::SnapshotSockets::process(const Process& p) const {
  const std::vector<Process>& procs = tl().procs;
  for (uint32_t i = 0; i < procs.size(); ++i) {
    if (procs[i].pid == p.pid && procs[i].start_ticks == p.start_ticks) {
      return i;
    }
  }
  return k_na;
}

std::optional<Sample>
Context::own_sample(const SnapshotSockets& back, const Sample& x, uint32_t snap) const {
  const auto own = [&](uint32_t p) -> uint32_t {
    const Process& bp = back.tl().procs[p];
    const auto it = std::find_if(m_tl.procs.begin(), m_tl.procs.end(), [&](const Process& q) {
      return q.pid == bp.pid && q.start_ticks == bp.start_ticks;
    });
    return it == m_tl.procs.end() ? k_na : static_cast<uint32_t>(it - m_tl.procs.begin());
  };
  Sample y = x;
  y.snap = snap;
  y.owner = x.owner == k_na ? k_na : own(x.owner);
  y.owner_set = k_na;
  if (x.owner != k_na && y.owner == k_na) {
    return std::nullopt;
  }
  std::vector<uint32_t> set;
  for (const uint32_t p : owners_of(back.tl(), x)) {
    set.push_back(own(p));
    if (set.back() == k_na) {
      return std::nullopt;
    }
  }
  if (set.size() > 1) {
    std::sort(set.begin(), set.end());
    const auto it = std::find(m_tl.owner_sets.begin(), m_tl.owner_sets.end(), set);
    if (it == m_tl.owner_sets.end()) {
      return std::nullopt;
    }
    y.owner_set = static_cast<uint32_t>(it - m_tl.owner_sets.begin());
  }
  return y;
}

std::vector<uint32_t> Context::owners(const Sample& x) const {
  return owners_of(m_tl, x);
}

char Context::proc_state(uint32_t proc, uint32_t snap) const {
  if (proc == k_na || proc >= m_tl.procs.size()) {
    return 0;
  }
  const ProcSample* p = Timeline::proc_at(m_tl.procs[proc], snap);
  return p == nullptr ? '\0' : p->state;
}

uint32_t Context::culprit(const Sample& x) const {
  const std::vector<uint32_t> all = owners(x);
  if (all.empty()) {
    return k_na;
  }
  // Some owners stopped and others not (nginx's workers stopped, its master running): the
  // first stopped one. Otherwise the first owner.
  const auto stopped = std::find_if(
      all.begin(), all.end(), [&](uint32_t p) { return is_stopped_state(proc_state(p, x.snap)); });
  const bool some = stopped != all.end() && std::any_of(all.begin(), all.end(), [&](uint32_t p) {
                      return !is_stopped_state(proc_state(p, x.snap));
                    });
  return some ? *stopped : x.owner != k_na ? x.owner : all.front();
}

std::string Context::process_text(uint32_t proc, std::string_view none) const {
  if (proc == k_na || proc >= m_tl.procs.size()) {
    return std::string(none);
  }
  const Process& p = m_tl.procs[proc];
  return "pid " + std::to_string(p.pid) + " (" + std::string(m_series.strings.get(p.comm)) + ")";
}

std::string Context::owners_text(const Sample& x, std::string_view none) const {
  const std::vector<uint32_t> all = owners(x);
  if (all.empty()) {
    return std::string(none);
  }
  if (all.size() == 1) {
    std::string s = process_text(all.front(), none);
    if (is_stopped_state(proc_state(all.front(), x.snap))) {
      s.insert(s.size() - 1, ", stopped");
    }
    return s;
  }
  // Same comm for all: "pids 1, 2, 3 (nginx)"; otherwise each named.
  const auto comm = [&](uint32_t p) { return m_series.strings.get(m_tl.procs[p].comm); };
  const bool same =
      std::all_of(all.begin(), all.end(), [&](uint32_t p) { return comm(p) == comm(all.front()); });
  constexpr size_t k_listed = 4;
  std::string list;
  for (size_t i = 0; i < all.size() && i < k_listed; ++i) {
    list += (i == 0 ? "" : ", ") + std::to_string(m_tl.procs[all[i]].pid);
    if (!same) {
      list += " (" + std::string(comm(all[i])) + ")";
    }
  }
  if (all.size() > k_listed) {
    list += " and " + std::to_string(all.size() - k_listed) + " more";
  }
  std::string s = "pids " + list + (same ? " (" + std::string(comm(all.front())) + ")" : "");
  std::string stopped;
  size_t n_stopped = 0;
  for (const uint32_t p : all) {
    if (is_stopped_state(proc_state(p, x.snap))) {
      stopped += (n_stopped++ == 0 ? "" : ", ") + std::to_string(m_tl.procs[p].pid);
    }
  }
  if (n_stopped == all.size()) {
    s += ", all stopped";
  } else if (n_stopped == 1) {
    std::string who = process_text(culprit(x));
    who.insert(who.size() - 1, ", stopped");
    s = who + " of " + s;
  } else if (n_stopped > 1) {
    s = "stopped pids " + stopped + " of " + s;
  }
  return s;
}

Json Context::owners_json(const Sample& x) const {
  Json out = Json::array();
  for (const uint32_t p : owners(x)) {
    const Process& pr = m_tl.procs[p];
    Json j;
    j["pid"] = pr.pid;
    j["comm"] = m_series.strings.get(pr.comm);
    j["start_ticks"] = pr.start_ticks;
    const char st = proc_state(p, x.snap);
    j["state"] = st == 0 ? Json(nullptr) : Json(std::string(1, st));
    out.push_back(std::move(j));
  }
  return out;
}

// ---- FindingBuilder

FindingBuilder::FindingBuilder(const Context& ctx, std::string_view detector) : m_ctx(ctx) {
  m_f.detector = detector;
}

FindingBuilder& FindingBuilder::socket(const Track& t, const Sample& x) {
  const uint32_t who = m_ctx.culprit(x);
  Sample named = x;
  named.owner = who;
  m_f.subject = socket_subject(m_ctx.series(), m_ctx.timeline(), t, named);
  m_f.subject["owners"] = m_ctx.owners_json(x);
  set_owner(m_f, m_ctx.timeline(), who);
  return *this;
}

FindingBuilder& FindingBuilder::process(uint32_t proc) {
  m_f.subject = process_subject(m_ctx.series(), m_ctx.timeline(), proc);
  set_owner(m_f, m_ctx.timeline(), proc);
  return *this;
}

FindingBuilder& FindingBuilder::netns(uint32_t netns) {
  m_f.subject = netns_subject(m_ctx.timeline(), netns);
  return *this;
}

FindingBuilder& FindingBuilder::subject(Json subject, uint32_t owner) {
  m_f.subject = std::move(subject);
  set_owner(m_f, m_ctx.timeline(), owner);
  return *this;
}

FindingBuilder& FindingBuilder::seen(uint32_t first_snap, uint32_t last_snap) {
  m_f.first_seen_ns = m_ctx.realtime(first_snap);
  m_f.last_seen_ns = m_ctx.realtime(last_snap);
  m_seen = true;
  return *this;
}

FindingBuilder& FindingBuilder::severity(Severity s) {
  m_f.severity = s;
  return *this;
}

FindingBuilder& FindingBuilder::weight(double w) {
  m_f.weight = w;
  return *this;
}

FindingBuilder& FindingBuilder::summary(std::string s) {
  m_f.summary = std::move(s);
  return *this;
}

FindingBuilder& FindingBuilder::fact(const std::string& key, Json value) {
  m_f.evidence[key] = std::move(value);
  return *this;
}

FindingBuilder&
FindingBuilder::series(Json rows, std::string_view value, const std::vector<std::string>& limits) {
  set_series(m_f, std::move(rows), value, limits);
  return *this;
}

void set_series(Finding& f,
                Json rows,
                std::string_view value,
                const std::vector<std::string>& limits) {
  f.evidence["series"] = std::move(rows);
  Json chart;
  chart["value"] = value;
  chart["limits"] = limits;
  f.evidence["chart"] = std::move(chart);
}

FindingBuilder& FindingBuilder::group(std::string_view by,
                                      const std::string& key,
                                      std::string label,
                                      std::string noun) {
  m_f.group_by = by;
  m_f.group_key = std::string(by) + ":" + key;
  m_f.group_label = std::move(label);
  m_f.group_noun = std::move(noun);
  m_grouped = true;
  return *this;
}

FindingBuilder& FindingBuilder::group_by_owner(const Track& t, const Sample& x, std::string noun) {
  const uint32_t who = m_ctx.culprit(x);
  if (who == k_na) {
    const std::string ep =
        endpoint(m_ctx.series(), t, true) + " " + endpoint(m_ctx.series(), t, false);
    return group("socket", std::to_string(t.netns) + " " + ep, "at " + ep, std::move(noun));
  }
  const Process& p = m_ctx.timeline().procs[who];
  return group("process",
               std::to_string(p.pid) + ":" + std::to_string(p.start_ticks),
               "in " + m_ctx.process_text(who),
               std::move(noun));
}

Finding FindingBuilder::build() && {
  SR_ASSERT(m_seen && m_grouped && !m_f.summary.empty()); // a finding needs all three
  m_f.subject["host"] = m_ctx.timeline().host;            // every subject names its host
  return std::move(m_f);
}

// ---- Sink

bool worse(const Finding& a, const Finding& b) {
  if (a.severity != b.severity) {
    return a.severity > b.severity;
  }
  if (a.weight != b.weight) {
    return a.weight > b.weight;
  }
  if (a.first_seen_ns != b.first_seen_ns) {
    return a.first_seen_ns < b.first_seen_ns;
  }
  // Ties are broken by what the finding says, so that the examples kept and their order do
  // not depend on the order subjects were looked at (track order, or closing order).
  if (a.summary != b.summary) {
    return a.summary < b.summary;
  }
  return a.subject.dump() < b.subject.dump();
}

namespace {

Json example_json(const Finding& f) {
  Json j;
  for (const char* k : {"proto", "state", "local", "remote", "pid", "comm"}) {
    if (f.subject.contains(k)) {
      j[k] = f.subject[k];
    }
  }
  j["severity"] = severity_name(f.severity);
  j["summary"] = f.summary;
  j["first_seen"] = iso8601(f.first_seen_ns);
  j["last_seen"] = iso8601(f.last_seen_ns);
  return j;
}

} // namespace

void Sink::add(Finding f) {
  SR_ASSERT(!f.group_key.empty());
  auto [it, fresh] = m_groups.try_emplace(f.detector + "\n" + f.group_key);
  Group& g = it->second;
  if (fresh) {
    m_order.push_back(it->first);
    g.first_seen_ns = f.first_seen_ns;
    g.last_seen_ns = f.last_seen_ns;
  }
  ++g.count;
  g.severity = std::max(g.severity, f.severity);
  g.first_seen_ns = std::min(g.first_seen_ns, f.first_seen_ns);
  g.last_seen_ns = std::max(g.last_seen_ns, f.last_seen_ns);
  if (g.best.size() < m_max_examples) {
    g.best.push_back(std::move(f));
    return;
  }
  const auto least = std::min_element(
      g.best.begin(), g.best.end(), [](const Finding& a, const Finding& b) { return worse(b, a); });
  if (worse(f, *least)) {
    *least = std::move(f);
  }
}

std::vector<Finding> Sink::take() {
  // Causes in the order they were first seen (their earliest member), then by key: the same
  // whatever order their members were added in.
  std::sort(m_order.begin(), m_order.end(), [this](const std::string& a, const std::string& b) {
    const int64_t ta = m_groups.at(a).first_seen_ns;
    const int64_t tb = m_groups.at(b).first_seen_ns;
    return ta != tb ? ta < tb : a < b;
  });
  std::vector<Finding> out;
  out.reserve(m_order.size());
  for (const std::string& key : m_order) {
    Group& g = m_groups.at(key);
    std::sort(g.best.begin(), g.best.end(), worse);
    Finding f = std::move(g.best.front());
    Json group;
    group["by"] = f.group_by;
    group["label"] = f.group_label;
    group["count"] = g.count;
    if (g.count > 1) {
      Json examples = Json::array();
      examples.push_back(example_json(f));
      for (size_t i = 1; i < g.best.size(); ++i) {
        examples.push_back(example_json(g.best[i]));
      }
      group["examples"] = std::move(examples);
      f.summary = std::to_string(g.count) + " " + f.group_noun + " " + f.group_label
                  + "; the worst: " + f.summary;
      f.first_seen_ns = g.first_seen_ns;
      f.last_seen_ns = g.last_seen_ns;
    }
    f.evidence["group"] = std::move(group);
    f.severity = g.severity;
    out.push_back(std::move(f));
  }
  m_groups.clear();
  m_order.clear();
  return out;
}

// track_part copies every field but the samples: a new field must be copied there too.
static_assert(sizeof(void*) != 8 || sizeof(Track) == 72, "Track changed: see track_part");

Track track_part(const Track& t, Range r) {
  SR_ASSERT(r.begin <= r.end && r.end <= t.samples.size());
  Track out;
  out.netns = t.netns;
  out.family = t.family;
  out.type = t.type;
  out.proto = t.proto;
  out.local_addr = t.local_addr;
  out.remote_addr = t.remote_addr;
  out.local_port = t.local_port;
  out.remote_port = t.remote_port;
  out.cookie = t.cookie;
  out.path = t.path;
  out.peer_inode = t.peer_inode;
  out.samples.assign(t.samples.begin() + static_cast<std::ptrdiff_t>(r.begin),
                     t.samples.begin() + static_cast<std::ptrdiff_t>(r.end));
  return out;
}

// ---- added by det-proc

bool listener_or_child(const Context& /*ctx*/, const Track& t) {
  if (t.family == k_af_unix || t.proto != k_proto_tcp) {
    return false;
  }
  return std::any_of(t.samples.begin(), t.samples.end(), [](const Sample& x) {
    return x.state == k_listen
           || (x.inode == 0
               && (x.state == k_established || x.state == k_syn_recv || x.state == k_close_wait));
  });
}

bool is_loopback_address(std::string_view addr) {
  if (addr.starts_with("::ffff:")) {
    addr.remove_prefix(7);
  }
  return addr.starts_with("127.") || addr == "::1";
}

std::string
processes_text(const Context& ctx, std::span<const uint32_t> procs, std::string_view none) {
  if (procs.empty()) {
    return std::string(none);
  }
  if (procs.size() == 1) {
    return ctx.process_text(procs.front(), none);
  }
  const auto& all = ctx.processes();
  const auto comm = [&](uint32_t p) { return ctx.series().strings.get(all[p].comm); };
  const bool same = std::all_of(
      procs.begin(), procs.end(), [&](uint32_t p) { return comm(p) == comm(procs.front()); });
  constexpr size_t k_listed = 4;
  std::string s = same ? "pids " : "";
  for (size_t i = 0; i < procs.size() && i < k_listed; ++i) {
    s += i == 0 ? "" : ", ";
    s += same ? std::to_string(all[procs[i]].pid) : ctx.process_text(procs[i]);
  }
  if (same) {
    s += " (" + std::string(comm(procs.front())) + ")";
  }
  if (procs.size() > k_listed) {
    s += " and " + std::to_string(procs.size() - k_listed) + " more";
  }
  return s;
}

std::string host_text(const Context& ctx, const Track& t, uint32_t addr) {
  std::string a = addr == k_na ? "*" : std::string(ctx.series().strings.get(addr));
  if (t.family == k_af_inet6 && addr != k_na) {
    a = "[" + a + "]";
  }
  return a;
}

Json destination_subject(const Context& ctx,
                         const Track& t,
                         std::string_view state,
                         std::string local,
                         std::span<const uint32_t> procs) {
  Json j = netns_subject(ctx.timeline(), t.netns);
  j["proto"] = proto_name(t);
  j["family"] = t.family == k_af_inet6 ? "inet6" : "inet";
  j["state"] = state;
  j["local"] = std::move(local);
  j["remote"] = endpoint(ctx.series(), t, false);
  const Json p =
      procs.empty() ? Json(nullptr) : process_json(ctx.series(), ctx.timeline(), procs.front());
  for (const char* k : {"pid", "comm", "cmdline", "start_ticks"}) {
    j[k] = p.is_null() ? Json(nullptr) : p[k];
  }
  Json owners = Json::array();
  for (const uint32_t proc : procs) {
    owners.push_back(process_json(ctx.series(), ctx.timeline(), proc));
  }
  j["owners"] = std::move(owners);
  return j;
}

} // namespace sockrewind::analyze
