// The model of `sockrewind-analyze replay` (replay_model.hpp): navigation, sorting, filtering
// and the snapshot diff, free of any terminal code so that it is unit-tested.
#include <sockrewind/analyze/commands.hpp>
#include <sockrewind/analyze/host_series.hpp>
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/primitives.hpp>
#include <sockrewind/analyze/replay_model.hpp>
#include <sockrewind/analyze/text.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <map>
#include <set>
#include <sstream>
#include <tuple>
#include <utility>

namespace sockrewind::analyze::replay {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) {
    return static_cast<char>(std::tolower(c));
  });
  return out;
}

int64_t parse_number(std::string_view v, const char* what, int64_t max) {
  int64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size() || n < 0 || n > max) {
    throw UsageError(std::string("bad ") + what + " '" + escape_text(std::string(v)) + "'");
  }
  return n;
}

// The comm of `pid` as the owner column shows it ("?" when the snapshot has none).
std::string owner_name(const SnapshotView& v, int64_t pid) {
  const auto it = v.comm.find(pid);
  return it == v.comm.end() ? std::string("?") : it->second;
}

// The rank of each value's text among all the texts (equal texts, equal ranks), by key.
std::map<int64_t, int64_t> text_ranks(const std::map<int64_t, std::string>& texts) {
  std::vector<std::pair<std::string_view, int64_t>> sorted;
  sorted.reserve(texts.size());
  for (const auto& [k, text] : texts) {
    sorted.emplace_back(text, k);
  }
  std::sort(sorted.begin(), sorted.end());
  std::map<int64_t, int64_t> rank;
  int64_t r = -1;
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i == 0 || sorted[i].first != sorted[i - 1].first) {
      ++r;
    }
    rank[sorted[i].second] = r;
  }
  return rank;
}

} // namespace

std::string_view sort_name(SortKey k) {
  switch (k) {
  case SortKey::ss:
    return "ss";
  case SortKey::recv_q:
    return "Recv-Q";
  case SortKey::send_q:
    return "Send-Q";
  case SortKey::state:
    return "state";
  case SortKey::owner:
    return "owner";
  case SortKey::port:
    return "port";
  }
  return "ss";
}

SortKey next_sort(SortKey k) {
  return static_cast<SortKey>((static_cast<size_t>(k) + 1) % k_sort_keys);
}

std::string Filter::describe() const {
  std::string s;
  const auto add = [&s](const std::string& part) { s += (s.empty() ? "" : " ") + part; };
  if (port) {
    add("port:" + std::to_string(*port));
  }
  if (pid) {
    add("pid:" + std::to_string(*pid));
  }
  if (state) {
    add("state:" + state_name(static_cast<uint8_t>(*state)));
  }
  if (!text.empty()) {
    add(text);
  }
  return s;
}

Filter parse_filter(std::string_view spec) {
  Filter f;
  std::istringstream in{std::string(spec)};
  std::string word;
  while (in >> word) {
    const std::string_view w = word;
    if (w.starts_with("port:")) {
      f.port = parse_number(w.substr(5), "port", 65535);
    } else if (w.starts_with("pid:")) {
      f.pid = parse_number(w.substr(4), "pid", INT32_MAX);
    } else if (w.starts_with("state:")) {
      f.state = parse_state(w.substr(6));
    } else {
      f.text += (f.text.empty() ? "" : " ") + word;
    }
  }
  return f;
}

bool matches(const SocketRow& r, const std::map<int64_t, std::string>& comm, const Filter& f) {
  if (f.state && r.state != *f.state) {
    return false;
  }
  if (f.port && (r.family == k_af_unix || (r.local_port != *f.port && r.remote_port != *f.port))) {
    return false;
  }
  if (f.pid && std::none_of(r.owners.begin(), r.owners.end(), [&](const RowOwner& o) {
        return o.pid == *f.pid;
      })) {
    return false;
  }
  if (!f.text.empty()) {
    const std::string hay = lower(r.proto_name + " " + row_state_text(r) + " " + r.local + " "
                                  + r.remote + " " + users_text(r, comm));
    if (hay.find(lower(f.text)) == std::string::npos) {
      return false;
    }
  }
  return true;
}

std::vector<size_t>
visible_rows(const SnapshotView& v, const Filter& f, SortKey key, bool reverse) {
  std::vector<size_t> out;
  out.reserve(v.rows.size());
  for (size_t i = 0; i < v.rows.size(); ++i) {
    if (f.empty() || matches(v.rows[i], v.comm, f)) {
      out.push_back(i);
    }
  }
  if (key == SortKey::ss) { // ss order is the rows' own: `out` holds it already
    if (reverse) {
      std::reverse(out.begin(), out.end());
    }
    return out;
  }

  // Each row gets an integer key once (a text becomes its rank among the texts met), then the
  // keys are sorted with the row's position last, as a stable sort of the rows would order
  // them: no text is built or compared per comparison (at 100k sockets that took 0.1-0.2 s).
  struct Keyed {
    int64_t a;
    int64_t b;
    size_t idx;
  };

  // Kept by the thread between calls: at 100k rows fresh pages for the keys cost as much as
  // the sort.
  thread_local std::vector<Keyed> keys;
  keys.clear();
  keys.reserve(out.size());
  // Queues: largest first, NULL last (as -1 under a descending order).
  const auto queue = [](const std::optional<int64_t>& q) { return -q.value_or(-1); };
  switch (key) {
  case SortKey::ss:
    break;
  case SortKey::recv_q:
    for (const size_t i : out) {
      keys.push_back({queue(v.rows[i].rx_queue), 0, i});
    }
    break;
  case SortKey::send_q:
    for (const size_t i : out) {
      keys.push_back({queue(v.rows[i].tx_queue), 0, i});
    }
    break;
  case SortKey::state: {
    // State names in alphabetical order (as the texts shown sort).
    std::map<int64_t, std::string> names;
    for (const size_t i : out) {
      const int64_t st = v.rows[i].state;
      if (names.find(st) == names.end()) {
        names.emplace(st, row_state_text(v.rows[i]));
      }
    }
    const std::map<int64_t, int64_t> rank = text_ranks(names);
    for (const size_t i : out) {
      keys.push_back({rank.at(v.rows[i].state), 0, i});
    }
    break;
  }
  case SortKey::owner: {
    // The first owner's comm, then its pid; sockets without an owner last.
    std::map<int64_t, std::string> names; // first owner's pid -> its comm
    for (const size_t i : out) {
      const SocketRow& r = v.rows[i];
      if (!r.owners.empty() && names.find(r.owners.front().pid) == names.end()) {
        names.emplace(r.owners.front().pid, owner_name(v, r.owners.front().pid));
      }
    }
    const std::map<int64_t, int64_t> rank = text_ranks(names);
    const auto none = static_cast<int64_t>(rank.size()); // after every name
    for (const size_t i : out) {
      const SocketRow& r = v.rows[i];
      keys.push_back(r.owners.empty()
                         ? Keyed{none, INT64_MAX, i}
                         : Keyed{rank.at(r.owners.front().pid), r.owners.front().pid, i});
    }
    break;
  }
  case SortKey::port:
    for (const size_t i : out) {
      keys.push_back({v.rows[i].local_port.value_or(-1), 0, i});
    }
    break;
  }
  std::sort(keys.begin(), keys.end(), [](const Keyed& x, const Keyed& y) {
    return std::tie(x.a, x.b, x.idx) < std::tie(y.a, y.b, y.idx);
  });
  for (size_t k = 0; k < keys.size(); ++k) {
    out[k] = keys[k].idx;
  }
  if (reverse) {
    std::reverse(out.begin(), out.end());
  }
  return out;
}

uint64_t row_identity(const SocketRow& r) {
  constexpr uint64_t k_top = uint64_t{1} << 63;
  if (r.cookie && *r.cookie != 0) {
    return static_cast<uint64_t>(*r.cookie) & ~k_top;
  }
  const std::string key = std::to_string(r.netns) + "|" + r.proto_name + "|" + r.local + "|"
                          + r.remote + "|" + std::to_string(r.inode);
  return std::hash<std::string>{}(key) | k_top;
}

SnapshotDiff diff_snapshots(const std::vector<uint64_t>& prev_ids,
                            const std::vector<uint64_t>& cur_ids,
                            const CounterValues& prev_counters,
                            const CounterValues& cur_counters) {
  SnapshotDiff d;
  size_t i = 0;
  size_t j = 0;
  while (i < prev_ids.size() || j < cur_ids.size()) {
    if (j == cur_ids.size() || (i < prev_ids.size() && prev_ids[i] < cur_ids[j])) {
      ++d.gone;
      ++i;
    } else if (i == prev_ids.size() || cur_ids[j] < prev_ids[i]) {
      ++d.added;
      ++j;
    } else {
      ++i;
      ++j;
    }
  }
  for (const auto& [key, value] : cur_counters) {
    const auto it = prev_counters.find(key);
    if (it != prev_counters.end() && it->second != value) {
      d.counters.push_back({key.first, key.second, value - it->second});
    }
  }
  std::stable_sort(d.counters.begin(), d.counters.end(), [](const auto& a, const auto& b) {
    const int64_t ma = a.delta < 0 ? -a.delta : a.delta;
    const int64_t mb = b.delta < 0 ? -b.delta : b.delta;
    return std::tie(mb, a.name, a.netns) < std::tie(ma, b.name, b.netns);
  });
  return d;
}

std::string SnapshotDiff::text(size_t width) const {
  if (first) {
    return "first snapshot";
  }
  if (reboot) {
    // Cookies and counters start again with a boot: nothing to compare.
    const std::string s = "reboot: a new boot ID, sockets and counters not compared";
    return s.size() > width ? s.substr(0, width) : s;
  }
  std::string s = "+" + std::to_string(added) + " new, -" + std::to_string(gone) + " gone";
  bool any = false;
  std::set<std::string> shown; // one entry per counter name (the largest netns' delta)
  for (const CounterDelta& c : counters) {
    if (!shown.insert(c.name).second) {
      continue;
    }
    const std::string part = std::string(any ? ", " : "; ") + escape_text(c.name) + " "
                             + (c.delta > 0 ? "+" : "") + std::to_string(c.delta);
    if (s.size() + part.size() > width) {
      break;
    }
    s += part;
    any = true;
  }
  if (!any && counters.empty()) {
    s += "; counters unchanged";
  }
  return s.size() > width ? s.substr(0, width) : s;
}

Model::Model(std::vector<std::string> files, const std::optional<std::string>& host)
    : m_files(std::move(files)) {
  std::vector<SnapshotInfo> all;
  std::vector<std::string> hosts;
  for (const std::string& f : m_files) {
    auto& handle = m_dbs[f];
    handle = std::make_unique<Conn>(open_validated(f));
    for (SnapshotInfo& s : load_snapshot_index(handle->db, f)) {
      hosts.push_back(s.host);
      all.push_back(std::move(s));
    }
  }
  require_snapshots(m_files, all.size());
  m_host = pick_host(hosts, host);
  std::erase_if(all, [&](const SnapshotInfo& s) { return s.host != m_host; });
  // Time order; a snapshot held by several files (pack, fold, copies) is shown once.
  std::stable_sort(all.begin(), all.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return std::tie(a.realtime_ns, a.boot_id, a.boottime_ns)
           < std::tie(b.realtime_ns, b.boot_id, b.boottime_ns);
  });
  std::set<std::tuple<std::string, int64_t>> seen;
  for (SnapshotInfo& s : all) {
    if (seen.emplace(s.boot_id, s.boottime_ns).second) {
      m_index.push_back(std::move(s));
    }
  }
  go(0);
}

Model::~Model() {
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    m_stop = true;
  }
  m_cv.notify_all();
  if (m_worker.joinable()) {
    m_worker.join();
  }
}

Model::Loaded Model::load(size_t pos, Dbs& dbs, const Base& base) {
  const SnapshotInfo& info = m_index[pos];
  auto& handle = dbs[info.file];
  if (!handle) {
    handle = std::make_unique<Conn>(open_validated(info.file));
  }
  Loaded l;
  l.pos = pos;
  ViewMemory spare;
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    std::swap(spare, m_spare);
  }
  l.view =
      std::make_shared<SnapshotView>(base ? handle->reader.read_next(info, *base, std::move(spare))
                                          : handle->reader.read(info, std::move(spare)));
  l.counters = handle->reader.counters(info);
  l.ids.reserve(l.view->rows.size());
  for (const SocketRow& r : l.view->rows) {
    l.ids.push_back(row_identity(r));
  }
  std::sort(l.ids.begin(), l.ids.end());
  return l;
}

void Model::worker() {
  Dbs dbs; // this thread's own connections
  std::unique_lock<std::mutex> lock(m_mutex);
  for (;;) {
    m_cv.wait(lock, [this] { return m_stop || m_want.has_value(); });
    if (m_stop) {
      return;
    }
    const size_t pos = *m_want;
    Base base = std::move(m_want_base);
    m_want.reset();
    m_want_base.reset();
    if (m_ready && m_ready->pos == pos) {
      m_cv.notify_all(); // take() and wait_read_ahead() wait for m_want to clear
      continue;
    }
    m_busy = pos;
    lock.unlock();
    std::unique_ptr<Loaded> result;
    try {
      result = std::make_unique<Loaded>(load(pos, dbs, base));
    } catch (...) {
      // Dropped: the UI thread reads it again itself and reports the error.
    }
    base.reset(); // before the UI thread may see the read done (recycle)
    lock.lock();
    m_busy.reset();
    if (result) {
      m_ready = std::move(result);
    }
    m_cv.notify_all();
  }
}

void Model::read_ahead(size_t pos, Base base) {
  if (pos >= m_index.size()) {
    return;
  }
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    m_want = pos;
    m_want_base = std::move(base);
  }
  m_cv.notify_all();
}

void Model::wait_read_ahead() {
  std::unique_lock<std::mutex> lock(m_mutex);
  m_cv.wait(lock, [this] { return !m_want && !m_busy; });
}

Model::Loaded Model::take(size_t pos, const Base& base) {
  {
    std::unique_lock<std::mutex> lock(m_mutex);
    m_cv.wait(lock, [&] { return m_busy != pos && m_want != pos; });
    if (m_ready && m_ready->pos == pos) {
      Loaded l = std::move(*m_ready);
      m_ready.reset();
      return l;
    }
  }
  return load(pos, m_dbs, base);
}

void Model::recycle(std::shared_ptr<SnapshotView>&& view) {
  ViewMemory mem;
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    // Only the model holds it (the worker drops its base before it takes the lock): its
    // memory is free to reuse.
    if (!view || view.use_count() != 1) {
      return;
    }
    mem.rows = std::move(view->rows);
    mem.runs = std::move(view->runs);
  }
  {
    const std::lock_guard<std::mutex> lock(m_mutex);
    if (m_spare.rows.capacity() < mem.rows.capacity()) {
      m_spare.rows.swap(mem.rows);
    }
    if (m_spare.runs.capacity() < mem.runs.capacity()) {
      m_spare.runs.swap(mem.runs);
    }
  }
  // `mem` (the smaller) is freed here, outside the lock.
}

void Model::keep_ready(Loaded&& l) {
  const std::lock_guard<std::mutex> lock(m_mutex);
  if (!m_busy) {
    m_ready = std::make_unique<Loaded>(std::move(l));
  }
}

void Model::go(size_t pos) {
  pos = std::min(pos, m_index.size() - 1);
  if (m_loaded && pos == m_pos) {
    return;
  }
  const bool forward = !m_loaded || pos > m_pos;
  Loaded cur;
  Loaded prev;
  if (m_loaded && pos == m_pos + 1) {
    cur = take(pos, m_cur.view);
    prev = std::move(m_cur);
  } else if (m_loaded && pos + 1 == m_pos && m_has_prev) {
    // One back: the kept predecessor is shown; the snapshot left is kept as the next one.
    cur = std::move(m_prev);
    keep_ready(std::move(m_cur));
    if (pos > 0) {
      prev = take(pos - 1);
    }
  } else {
    // A jump: the worker reads the predecessor while this thread reads the snapshot.
    if (pos > 0 && m_worker.joinable()) {
      read_ahead(pos - 1);
    }
    cur = take(pos);
    if (pos > 0) {
      prev = take(pos - 1);
    }
  }
  // The snapshots no longer shown: the larger's rows memory is kept for the next read.
  Loaded old_cur = std::move(m_cur);
  Loaded old_prev = std::move(m_prev);
  m_cur = std::move(cur);
  m_prev = std::move(prev);
  recycle(std::move(old_prev.view));
  recycle(std::move(old_cur.view));
  m_has_prev = pos > 0;
  m_pos = pos;
  m_loaded = true;
  if (!m_worker.joinable()) {
    m_worker = std::thread([this] { worker(); });
  }
  // Read ahead in the direction of travel: the next snapshot, or (going back) the one the
  // next step back needs for its diff.
  if (forward || pos < 2) {
    read_ahead(pos + 1, m_cur.view);
  } else {
    read_ahead(pos - 2);
  }
  if (pos == 0) {
    m_diff = SnapshotDiff{};
    m_diff.first = true;
    return;
  }
  if (m_index[pos - 1].boot_id != m_index[pos].boot_id) {
    m_diff = SnapshotDiff{};
    m_diff.reboot = true;
    return;
  }
  m_diff = diff_snapshots(m_prev.ids, m_cur.ids, m_prev.counters, m_cur.counters);
}

size_t Model::find_time(int64_t realtime_ns) const {
  const auto it = std::upper_bound(
      m_index.begin(), m_index.end(), realtime_ns, [](int64_t t, const SnapshotInfo& s) {
        return t < s.realtime_ns;
      });
  return it == m_index.begin() ? 0 : static_cast<size_t>(it - m_index.begin()) - 1;
}

Follow Model::follow(const SocketRow& r) const {
  Follow out;
  out.title = r.proto_name + " " + r.local + " -> " + r.remote;
  if (!r.cookie || *r.cookie == 0) {
    out.error = "this socket has no cookie (the /proc fallback): follow it with `timeline --port`";
    return out;
  }
  const auto cookie = static_cast<uint64_t>(*r.cookie);
  out.title += "  cookie " + std::to_string(cookie);
  SocketFilter filter;
  filter.cookie = cookie;
  const Series s = load_series(m_files, filter);
  const std::string& boot = m_index[m_pos].boot_id;         // cookies are unique within a boot
  std::map<std::pair<std::string, int64_t>, size_t> pos_of; // (boot, boottime) -> position
  for (size_t i = 0; i < m_index.size(); ++i) {
    pos_of[{m_index[i].boot_id, m_index[i].boottime_ns}] = i;
  }
  std::set<size_t> seen;
  for (const Timeline& tl : s.timelines) {
    if (tl.host != m_host || tl.boot_id != boot) {
      continue;
    }
    for (const Track& t : tl.tracks) {
      if (t.cookie != cookie) {
        continue;
      }
      for (const Sample& x : t.samples) {
        const Snap& sn = tl.snaps[x.snap];
        const auto it = pos_of.find({tl.boot_id, sn.boottime_ns});
        if (it == pos_of.end() || !seen.insert(it->second).second) {
          continue;
        }
        FollowPoint p;
        p.pos = it->second;
        p.state = state_name(x.state);
        p.recv_q = na_text(x.rx_queue);
        p.send_q = na_text(x.tx_queue);
        p.timer = x.timer == k_na8 || x.timer == 0 ? "" : timer_name(x.timer);
        p.owner = x.owner == k_na ? "" : owner_text(s, tl, x.owner);
        out.points.push_back(std::move(p));
      }
    }
  }
  std::sort(out.points.begin(), out.points.end(), [](const FollowPoint& a, const FollowPoint& b) {
    return a.pos < b.pos;
  });
  if (out.points.empty()) {
    out.error = "no snapshot holds this socket";
  }
  return out;
}

const std::vector<Finding>& Model::findings() {
  if (!m_findings_loaded) {
    // As `report` runs them: while loading, each socket analysed once it is gone, so memory
    // follows the sockets open at once rather than the length of the series.
    ReportOptions opts;
    opts.paths = m_files;
    std::vector<Finding> all = analyze_files(opts).findings;
    std::erase_if(all, [&](const Finding& f) {
      return !f.subject.contains("host") || f.subject["host"] != m_host;
    });
    m_findings = std::move(all);
    m_findings_loaded = true;
  }
  return m_findings;
}

Filter subject_filter(const Finding& f) {
  Filter out;
  const Json& s = f.subject;
  if (s.contains("local") && s["local"].is_string()) {
    const std::string local = s["local"].get<std::string>();
    const size_t colon = local.rfind(':');
    if (colon != std::string::npos && colon + 1 < local.size()) {
      const std::string_view port = std::string_view(local).substr(colon + 1);
      int64_t n = 0;
      const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), n);
      if (ec == std::errc() && end == port.data() + port.size() && n > 0) {
        out.port = n;
        return out;
      }
    }
    if (!local.empty() && local.front() == '/') {
      out.text = local;
      return out;
    }
  }
  if (s.contains("path") && s["path"].is_string() && !s["path"].get<std::string>().empty()) {
    out.text = s["path"].get<std::string>();
    return out;
  }
  if (s.contains("pid") && s["pid"].is_number_integer()) {
    out.pid = s["pid"].get<int64_t>();
  }
  return out;
}

} // namespace sockrewind::analyze::replay
