// Loading and merging snapshot files into timelines of socket tracks and processes.
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/progress.hpp>
#include <sockrewind/analyze/sample_pack.hpp>
#include <sockrewind/analyze/series.hpp>
#include <sockrewind/analyze/time.hpp>
#include <sockrewind/store/archive.hpp>
#include <sockrewind/store/db.hpp>
#include <sockrewind/store/runs.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>

namespace sockrewind::analyze {

// Samples are most of the memory of a long series: owner_set took what was padding.
static_assert(sizeof(void*) != 8 || sizeof(Sample) == 88, "Sample grew: see series.hpp");

uint32_t Strings::intern(std::string_view s) {
  const auto it = m_index.find(std::string(s));
  if (it != m_index.end()) {
    return it->second;
  }
  const auto id = static_cast<uint32_t>(m_all.size());
  m_all.emplace_back(s);
  m_index.emplace(m_all.back(), id);
  return id;
}

uint32_t Strings::find(std::string_view s) const {
  const auto it = m_index.find(std::string(s));
  return it == m_index.end() ? k_na : it->second;
}

const std::vector<int64_t>* Timeline::counter(uint32_t netns_index, uint32_t name_id) const {
  if (netns_index >= netns.size()) {
    return nullptr;
  }
  const auto& c = netns[netns_index].counters;
  const auto it = c.find(name_id);
  return it == c.end() ? nullptr : &it->second;
}

std::string_view
Timeline::limit(uint32_t netns_index, const std::string& name, uint32_t snap) const {
  if (netns_index >= netns.size()) {
    return {};
  }
  const auto& l = netns[netns_index].limits;
  const auto it = l.find(name);
  if (it == l.end() || snap >= it->second.size()) {
    return {};
  }
  return it->second[snap];
}

const ProcSample* Timeline::proc_at(const Process& p, uint32_t snap) {
  const auto it = std::lower_bound(p.samples.begin(),
                                   p.samples.end(),
                                   snap,
                                   [](const ProcSample& s, uint32_t v) { return s.snap < v; });
  return it != p.samples.end() && it->snap == snap ? &*it : nullptr;
}

std::vector<uint32_t> owners_of(const Timeline& tl, const Sample& x) {
  if (x.owner_set != k_na && x.owner_set < tl.owner_sets.size()) {
    return tl.owner_sets[x.owner_set];
  }
  if (x.owner != k_na) {
    return {x.owner};
  }
  return {};
}

size_t Series::snapshot_count() const {
  size_t n = 0;
  for (const Timeline& tl : timelines) {
    n += tl.snaps.size();
  }
  return n;
}

void split_runs(Timeline& tl) {
  std::vector<int64_t> boottime;
  boottime.reserve(tl.snaps.size());
  for (const Snap& s : tl.snaps) {
    boottime.push_back(s.boottime_ns);
  }
  const Intervals iv = snapshot_intervals(boottime);
  tl.median_interval_s = iv.median_s;
  uint32_t run = 0;
  size_t next_gap = 0;
  for (size_t i = 0; i < tl.snaps.size(); ++i) {
    if (i > 0 && next_gap < iv.gaps.size() && iv.gaps[next_gap] == i - 1) {
      ++run;
      ++next_gap;
    }
    tl.snaps[i].run = run;
  }
}

namespace {

// A socket's identity key within one timeline: with a cookie (netns, kind, cookie); without
// one, the fallback (netns, kind, addresses, ports, path, and the inode for sockets that may
// share a 4-tuple: listeners, unconnected sockets, unix).
struct SockKey {
  uint32_t netns = 0;
  uint32_t kind = 0; // family | type << 8 | proto << 16
  uint64_t cookie = 0;
  uint32_t local_addr = k_na;
  uint32_t remote_addr = k_na;
  uint32_t ports = 0;
  uint32_t path = k_na;
  uint64_t inode = 0;

  bool operator==(const SockKey& o) const {
    return std::tie(netns, kind, cookie, local_addr, remote_addr, ports, path, inode)
           == std::tie(
               o.netns, o.kind, o.cookie, o.local_addr, o.remote_addr, o.ports, o.path, o.inode);
  }
};

struct SockKeyHash {
  size_t operator()(const SockKey& k) const noexcept {
    uint64_t h = 1469598103934665603ULL;
    const auto mix = [&h](uint64_t v) { h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6U) + (h >> 2U); };
    mix(k.netns);
    mix(k.kind);
    mix(k.cookie);
    mix(k.local_addr);
    mix(k.remote_addr);
    mix(k.ports);
    mix(k.path);
    mix(k.inode);
    return static_cast<size_t>(h);
  }
};

// The first track of each SockKey, in one flat table probed linearly: placing a row looks its
// key up, and a node-based map costs two cache misses there (bucket, then node) where this
// costs one. Capacity is a power of two, at most 3/4 full; a slot is free when its value is
// k_na (track numbers are below it).
class KeyIndex {
public:
  // The value of `k`, set to `v` if `k` was absent, and whether it was.
  std::pair<uint32_t*, bool> try_emplace(const SockKey& k, uint32_t v) {
    if (4 * (m_used + 1) > 3 * m_slots.size()) {
      grow(std::max<size_t>(16, 2 * m_slots.size()));
    }
    for (size_t i = home(k);; i = (i + 1) & (m_slots.size() - 1)) {
      Slot& s = m_slots[i];
      if (s.value == k_na) {
        s.key = k;
        s.value = v;
        ++m_used;
        return {&s.value, true};
      }
      if (s.key == k) {
        return {&s.value, false};
      }
    }
  }

  // Keeps the keys for which `keep(key, value)` is true (it may change the value), in a table
  // sized for them: the room of the keys gone is given back.
  template <class F> void retain(F keep) {
    std::vector<Slot> old = std::move(m_slots);
    size_t kept = 0;
    for (Slot& s : old) {
      if (s.value != k_na && keep(s.key, s.value)) {
        old[kept++] = s;
      }
    }
    m_slots.clear();
    m_used = 0;
    size_t cap = 16;
    while (3 * cap < 4 * kept) {
      cap *= 2;
    }
    m_slots.assign(kept == 0 ? 0 : cap, Slot{});
    for (size_t i = 0; i < kept; ++i) {
      try_emplace(old[i].key, old[i].value);
    }
  }

  [[nodiscard]] size_t size() const { return m_used; }

private:
  struct Slot {
    SockKey key;
    uint32_t value = k_na;
  };

  [[nodiscard]] size_t home(const SockKey& k) const {
    // SockKeyHash combines well but its low bits alone do not spread: multiply, take the top.
    const uint64_t h = static_cast<uint64_t>(SockKeyHash{}(k)) * 0x9e3779b97f4a7c15ULL;
    return static_cast<size_t>(h >> 32U) & (m_slots.size() - 1);
  }

  void grow(size_t capacity) {
    std::vector<Slot> old = std::move(m_slots);
    m_slots.assign(capacity, Slot{});
    m_used = 0;
    for (const Slot& s : old) {
      if (s.value != k_na) {
        try_emplace(s.key, s.value);
      }
    }
  }

  std::vector<Slot> m_slots;
  size_t m_used = 0;
};

struct OwnerSetHash {
  size_t operator()(const std::vector<uint32_t>& v) const noexcept {
    uint64_t h = 1469598103934665603ULL;
    for (const uint32_t x : v) {
      h = (h ^ x) * 1099511628211ULL;
    }
    return static_cast<size_t>(h);
  }
};

// Loader state of one timeline. Socket keys map to the first track of that key; further tracks
// of the same key (a reused 4-tuple, identical unix embryos) are chained through `next`.
struct TimelineState {
  std::unordered_map<uint64_t, uint32_t> netns_index; // inode -> Timeline::netns index
  KeyIndex tracks;
  std::vector<uint32_t> next; // per track: the next track with the same key, or k_na
  // Tracks given a sample by the file being placed (each once: `touched_by` holds, per track,
  // the number of the last file that touched it), and the latest snapshot that file placed.
  std::vector<uint32_t> touched;
  std::vector<uint32_t> touched_by;
  uint32_t file_number = 0;
  uint32_t file_last_snap = 0;

  void touch(uint32_t track, uint32_t snap) {
    if (touched_by[track] != file_number) {
      touched_by[track] = file_number;
      touched.push_back(track);
    }
    file_last_snap = std::max(file_last_snap, snap);
  }

  std::map<std::pair<int32_t, uint64_t>, uint32_t> procs; // (pid, start) -> index
  // Timeline::owner_sets entry -> its index (each distinct set stored once).
  std::unordered_map<std::vector<uint32_t>, uint32_t, OwnerSetHash> owner_sets;

  // Per snapshot index i of the timeline: how many snapshots before i had their rows read (the
  // others are left out by SocketFilter::snapshots); one more entry than the timeline has.
  std::vector<uint32_t> rows_before;

  // Whether place_one() applies the absence rule (see Track) as rows come: when the files come
  // in time order per timeline; otherwise split_absent() does once the samples are sorted.
  bool split_on_absence = true;

  // Snapshots read strictly between snapshot indices `last` and `at` (last < at) in which a
  // socket seen in `last` and again in `at` was absent.
  uint32_t absent_between(uint32_t last, uint32_t at) const {
    return at <= last + 1 ? 0 : rows_before[at] - rows_before[last + 1];
  }

  // With a TrackObserver: per track, whether it was reported closed (never extended after);
  // the tracks still open after the last file; the latest snapshot placed so far.
  bool observed = false;
  std::vector<bool> reported;
  std::vector<uint32_t> open;
  uint32_t last_placed = 0;

  // Open tracks packed (see sample_pack.hpp): while streaming in time order, a track's samples
  // but its last are in `packed` (per track) until it is reported, its last in Track::samples,
  // so that a socket open for days costs a few bytes a snapshot rather than sizeof(Sample).
  // Per track, null unless it has packed samples (8 bytes for a track that has none).
  bool pack = false;
  std::vector<std::unique_ptr<PackedSamples>> packed;

  // Appends `x` to track `idx`, whose samples are `v`.
  void append(uint32_t idx, std::vector<Sample>& v, const Sample& x) {
    if (pack && v.size() == 1 && x.snap > v[0].snap) {
      if (!packed[idx]) {
        packed[idx] = std::make_unique<PackedSamples>();
      }
      packed[idx]->push(v[0]);
      v[0] = x;
      return;
    }
    unpack(idx, v); // out of snapshot order (files overlapping in time): kept whole
    if (v.size() == v.capacity()) {
      v.reserve(v.size() + v.size() / 2 + 4); // by half: long tracks hold most of the memory
    }
    v.push_back(x);
  }

  // Track `idx` whole again in `v`.
  void unpack(uint32_t idx, std::vector<Sample>& v) {
    if (!pack || !packed[idx]) {
      return;
    }
    std::vector<Sample> whole;
    whole.reserve(packed[idx]->size() + v.size());
    packed[idx]->unpack_into(whole);
    whole.insert(whole.end(), v.begin(), v.end());
    v = std::move(whole);
    packed[idx].reset();
  }
};

// Where a (file, snapshot_id) landed: timeline and snapshot index, or dropped as a duplicate.
struct Slot {
  uint32_t timeline = k_na;
  uint32_t snap = 0;
  bool rows = true; // false: only the header (SocketFilter::snapshots left it out)
};

// Values by a file's integer id (snapshot_id), looked up for every row read and placed: the
// ids, dense in every file the collector or pack writes, index a flat table; sparse ones (a
// hand-made file) keep the map.
template <class T> class IdTable {
public:
  void set(int64_t id, T v) { m_map[id] = std::move(v); }

  bool empty() const { return m_map.empty(); }

  const std::unordered_map<int64_t, T>& all() const { return m_map; }

  // Builds the flat table; call once every value is set, before find().
  void freeze() {
    if (m_map.empty()) {
      return;
    }
    int64_t lo = std::numeric_limits<int64_t>::max();
    int64_t hi = std::numeric_limits<int64_t>::min();
    for (const auto& [id, v] : m_map) {
      lo = std::min(lo, id);
      hi = std::max(hi, id);
    }
    // Dense: at most about 4 entries per value (the span in unsigned arithmetic, which
    // cannot overflow).
    const uint64_t span = static_cast<uint64_t>(hi) - static_cast<uint64_t>(lo);
    if (span < 4 * m_map.size() + 64) {
      m_lo = lo;
      m_flat.assign(span + 1, std::nullopt);
      for (const auto& [id, v] : m_map) {
        m_flat[static_cast<uint64_t>(id) - static_cast<uint64_t>(lo)] = v;
      }
      m_dense = true;
    }
  }

  const T* find(int64_t id) const {
    if (m_dense) {
      const uint64_t at = static_cast<uint64_t>(id) - static_cast<uint64_t>(m_lo);
      if (id < m_lo || at >= m_flat.size()) {
        return nullptr;
      }
      const std::optional<T>& v = m_flat[at];
      return v ? &*v : nullptr;
    }
    const auto it = m_map.find(id);
    return it == m_map.end() ? nullptr : &it->second;
  }

private:
  std::unordered_map<int64_t, T> m_map;
  std::vector<std::optional<T>> m_flat; // [id - m_lo]
  int64_t m_lo = 0;
  bool m_dense = false;
};

// One file's slots by snapshot_id; find() gives only kept snapshots (not duplicates).
class SlotIndex : public IdTable<Slot> {
public:
  const Slot* find(int64_t snapshot_id) const {
    const Slot* s = IdTable<Slot>::find(snapshot_id);
    return s == nullptr || s->timeline == k_na ? nullptr : s;
  }
};

uint32_t clamp32(int64_t v) {
  if (v < 0) {
    return 0;
  }
  return v >= static_cast<int64_t>(k_na) ? k_na - 1 : static_cast<uint32_t>(v);
}

uint8_t clamp8(int64_t v) {
  if (v < 0) {
    return 0;
  }
  return v >= static_cast<int64_t>(k_na8) ? k_na8 - 1 : static_cast<uint8_t>(v);
}

uint16_t clamp16(int64_t v) {
  return static_cast<uint16_t>(std::clamp<int64_t>(v, 0, 0xffff));
}

uint32_t opt32(const store::Stmt& st, int col) {
  const std::optional<int64_t> v = st.get_opt_int(col);
  return v ? clamp32(*v) : k_na;
}

uint64_t opt64(const store::Stmt& st, int col) {
  const std::optional<int64_t> v = st.get_opt_int(col);
  return v ? static_cast<uint64_t>(*v) : k_na64;
}

uint8_t opt8(const store::Stmt& st, int col) {
  const std::optional<int64_t> v = st.get_opt_int(col);
  return v ? clamp8(*v) : k_na8;
}

// One file's rows as plain data, decoded on a reader thread. Ids are the file's own.
struct RawSock {
  int64_t snapshot_id = 0;
  int64_t netns_id = 0;
  int64_t local_addr_id = -1; // -1: NULL
  int64_t remote_addr_id = -1;
  int64_t pid = -1; // -1: no owner
  uint64_t cookie = 0;
  uint64_t peer_inode = 0;
  uint32_t path = k_na; // unix only: index into FileData::paths; k_na without one
  uint8_t family = 0;
  uint8_t type = 0;
  uint16_t proto = 0;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  // This socket's rows of extra_owners: FileData::extra_pids[extra_begin, + extra_count).
  uint32_t extra_begin = 0;
  uint32_t extra_count = 0;
  int64_t sock_id = 0; // the file's, for the order within a snapshot
  Sample sample;       // sample.snap, sample.owner and sample.owner_set are set when placed
};

struct RawProc {
  int64_t snapshot_id = 0;
  int32_t pid = 0;
  uint64_t start_ticks = 0;
  std::string comm;
  std::optional<std::string> cmdline;
  uint32_t uid = k_na;
  ProcSample sample;
};

struct RawValue {
  int64_t snapshot_id = 0;
  int64_t netns_id = 0;
  std::string name;
  int64_t number = 0; // counters
  std::string text;   // limits
};

struct FileData {
  std::vector<std::pair<int64_t, uint64_t>> netns; // netns_id -> inode
  std::vector<std::pair<int64_t, std::string>> addrs;
  std::vector<RawProc> procs;
  std::vector<RawValue> counters;
  std::vector<RawValue> limits;
  std::vector<RawSock> sockets;
  std::vector<std::string> paths;  // RawSock::path
  std::vector<int32_t> extra_pids; // owners beyond sockets.pid, per socket (RawSock::extra_*)
  bool idents_apart = false; // the file's identities were read apart (IdentCache): first chunk
};

// The scheduler state letter of a processes.state value: 0 unless it is one ASCII letter (as
// the collector writes it).
char state_letter(const store::Stmt& st, int col) {
  if (st.is_null(col)) {
    return 0;
  }
  const std::string s = st.get_text(col);
  if (s.size() != 1) {
    return 0;
  }
  const char c = s[0];
  const bool letter = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
  return letter ? c : '\0';
}

// A socket's identity columns (sock_ident's, the same in the sockets view), by name.
struct IdentColumns {
  int netns_id, family, type, proto, local_addr_id, local_port, remote_addr_id, remote_port, inode,
      cookie, path, peer_inode;

  explicit IdentColumns(const store::Stmt& st)
      : netns_id(st.column_index("netns_id")),
        family(st.column_index("family")),
        type(st.column_index("type")),
        proto(st.column_index("proto")),
        local_addr_id(st.column_index("local_addr_id")),
        local_port(st.column_index("local_port")),
        remote_addr_id(st.column_index("remote_addr_id")),
        remote_port(st.column_index("remote_port")),
        inode(st.column_index("inode")),
        cookie(st.column_index("cookie")),
        path(st.column_index("path")),
        peer_inode(st.column_index("peer_inode")) {}
};

// The sockets columns read_file_data reads, by name: each name is resolved to its index once
// per statement, so reading a row costs no string lookup.
struct SocketColumns {
  // The identity's columns; none where the statement has the run's ident_id instead, its
  // identity read apart (IdentCache).
  std::optional<IdentColumns> ident;
  int ident_id = -1;
  int snapshot_id, state, rx_queue, tx_queue, timer, retrans, rmem_alloc, rcvbuf, wmem_queued,
      sndbuf, drops, backoff, probes, total_retrans, last_data_recv_ms, last_ack_recv_ms,
      bytes_acked, bytes_received, segs_out, snd_wnd, pid, sock_id;

  SocketColumns(const store::Stmt& st, bool with_ident)
      : ident(with_ident ? std::optional<IdentColumns>(IdentColumns(st)) : std::nullopt),
        ident_id(with_ident ? -1 : st.column_index("ident_id")),
        snapshot_id(st.column_index("snapshot_id")),
        state(st.column_index("state")),
        rx_queue(st.column_index("rx_queue")),
        tx_queue(st.column_index("tx_queue")),
        timer(st.column_index("timer")),
        retrans(st.column_index("retrans")),
        rmem_alloc(st.column_index("skm_rmem_alloc")),
        rcvbuf(st.column_index("skm_rcvbuf")),
        wmem_queued(st.column_index("skm_wmem_queued")),
        sndbuf(st.column_index("skm_sndbuf")),
        drops(st.column_index("skm_drops")),
        backoff(st.column_index("ti_backoff")),
        probes(st.column_index("ti_probes")),
        total_retrans(st.column_index("ti_total_retrans")),
        last_data_recv_ms(st.column_index("ti_last_data_recv_ms")),
        last_ack_recv_ms(st.column_index("ti_last_ack_recv_ms")),
        bytes_acked(st.column_index("ti_bytes_acked")),
        bytes_received(st.column_index("ti_bytes_received")),
        segs_out(st.column_index("ti_segs_out")),
        snd_wnd(st.column_index("ti_snd_wnd")),
        pid(st.column_index("pid")),
        sock_id(st.column_index("sock_id")) {}
};

// A socket's identity as a RawSock holds it (its path apart).
struct Ident {
  int64_t netns_id = 0;
  int64_t local_addr_id = -1; // -1: NULL
  int64_t remote_addr_id = -1;
  uint64_t cookie = 0;
  uint64_t peer_inode = 0;
  uint32_t inode = 0;
  uint32_t path = k_na; // IdentCache: index into its paths
  uint8_t family = 0;
  uint8_t type = 0;
  uint16_t proto = 0;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  bool present = false;

  // The identity columns `c` of the current row of `st` (not the path).
  static Ident read(const store::Stmt& st, const IdentColumns& c) {
    Ident i;
    i.netns_id = st.get_int(c.netns_id);
    i.family = clamp8(st.get_int(c.family));
    i.type = clamp8(st.get_int(c.type));
    i.proto = clamp16(st.get_int(c.proto));
    i.local_addr_id = st.get_opt_int(c.local_addr_id).value_or(-1);
    i.local_port = clamp16(st.get_opt_int(c.local_port).value_or(0));
    i.remote_addr_id = st.get_opt_int(c.remote_addr_id).value_or(-1);
    i.remote_port = clamp16(st.get_opt_int(c.remote_port).value_or(0));
    i.cookie = static_cast<uint64_t>(st.get_opt_int(c.cookie).value_or(0));
    i.peer_inode = static_cast<uint64_t>(st.get_opt_int(c.peer_inode).value_or(0));
    i.inode = clamp32(st.get_int(c.inode));
    i.present = true;
    return i;
  }

  void into(RawSock& r) const {
    r.netns_id = netns_id;
    r.family = family;
    r.type = type;
    r.proto = proto;
    r.local_addr_id = local_addr_id;
    r.local_port = local_port;
    r.remote_addr_id = remote_addr_id;
    r.remote_port = remote_port;
    r.cookie = cookie;
    r.peer_inode = peer_inode;
    r.sample.inode = inode;
  }
};

// A schema-3 file's identities read once, by ident_id, so that a whole load reads its runs
// without the join: a run then costs its own columns, not also a seek into sock_ident and a
// dozen columns of it (an hourly file has several runs per identity). Only where the ids are
// dense (the writers number them 1, 2, ...) and not too many; otherwise the join, as before.
class IdentCache {
public:
  // At most this many identities. The table spans the ids from the least to the greatest,
  // up to twice as many (sizeof(Ident) is 64 bytes): at most ~16 MiB per reader.
  static constexpr int64_t k_max = int64_t{1} << 17U;

  // Reads `db`'s identities if they fit; whether they did.
  bool load(store::Db& db) {
    store::Stmt n = db.prepare(
        "SELECT count(*), coalesce(min(ident_id), 0), coalesce(max(ident_id), 0) FROM sock_ident");
    if (!n.step()) {
      return false;
    }
    const int64_t count = n.get_int(0);
    const int64_t min = n.get_int(1);
    const int64_t max = n.get_int(2);
    if (count > k_max || min < 0 || max - min >= 2 * count + 64) {
      return false;
    }
    m_min = min;
    m_idents.assign(static_cast<size_t>(max - min + 1), Ident{});
    store::Stmt st = db.prepare("SELECT ident_id, netns_id, family, type, proto, local_addr_id, "
                                "local_port, remote_addr_id, remote_port, inode, cookie, path, "
                                "peer_inode FROM sock_ident");
    const IdentColumns c(st);
    while (st.step()) {
      Ident& i = m_idents[static_cast<size_t>(st.get_int(0) - min)];
      i = Ident::read(st, c);
      if (!st.is_null(c.path)) {
        i.path = static_cast<uint32_t>(m_paths.size());
        m_paths.push_back(st.get_text(c.path));
      }
    }
    return true;
  }

  // The identity `ident_id`, or null where sock_ident has none (the join gives no row).
  [[nodiscard]] const Ident* find(int64_t ident_id) const {
    if (ident_id < m_min || ident_id - m_min >= static_cast<int64_t>(m_idents.size())) {
      return nullptr;
    }
    const Ident& i = m_idents[static_cast<size_t>(ident_id - m_min)];
    return i.present ? &i : nullptr;
  }

  [[nodiscard]] std::optional<std::string> path(const Ident& i) const {
    if (i.path == k_na) {
      return std::nullopt;
    }
    return m_paths[i.path];
  }

private:
  std::vector<Ident> m_idents;
  std::vector<std::string> m_paths;
  int64_t m_min = 0;
};

// Row buffers of chunks already placed, given back for the next chunks to fill: a chunk's rows
// (megabytes) are then written into memory already mapped, not into a fresh allocation the
// kernel maps a page at a time and takes back when it is freed (a fault per 4 KiB, and the
// unmap's TLB flush on every core). At most k_max buffers wait here. Thread-safe.
class SpareRows {
public:
  static constexpr size_t k_max = 2;
  static constexpr size_t k_step = 1024;
  // A buffer with room for more rows than this is not kept: more than a whole load's chunk is
  // ever reserved (twice k_chunk_rows and a little): a file read in one chunk grew it.
  static constexpr size_t k_keep_rows = size_t{3} << 15U;

  // An empty buffer with room for at least `rows` and not much more (a chunk waits to be placed
  // in the room it was built in), or a new one. Room comes in steps of k_step rows, so that
  // chunks of about the same rows share buffers.
  std::vector<RawSock> take(size_t rows) {
    const size_t room = (rows + k_step - 1) / k_step * k_step;
    std::vector<RawSock> out;
    {
      const std::lock_guard<std::mutex> lock(m_mutex);
      auto best = m_spare.end();
      for (auto it = m_spare.begin(); it != m_spare.end(); ++it) {
        const size_t cap = it->capacity();
        if (cap >= rows && cap <= room + room / 16
            && (best == m_spare.end() || cap < best->capacity())) {
          best = it;
        }
      }
      if (best != m_spare.end()) {
        out = std::move(*best);
        m_spare.erase(best);
        return out;
      }
    }
    out.reserve(room);
    return out;
  }

  // Keeps `rows`' buffer for a later chunk (emptied), unless it has room for more than
  // k_keep_rows; the oldest kept goes when k_max wait already.
  void give_back(std::vector<RawSock>&& rows) {
    if (rows.capacity() > k_keep_rows) {
      return; // freed with `rows`
    }
    rows.clear();
    std::vector<RawSock> dropped;
    const std::lock_guard<std::mutex> lock(m_mutex);
    m_spare.push_back(std::move(rows));
    if (m_spare.size() > k_max) {
      dropped = std::move(m_spare.front());
      m_spare.erase(m_spare.begin());
    }
  }

private:
  std::mutex m_mutex;
  std::vector<std::vector<RawSock>> m_spare;
};

// About this many socket rows are decoded into one FileData chunk unless SocketFilter::chunk_rows
// says otherwise (whole snapshots, so more in a snapshot bigger than that): the load holds a few
// chunks per file rather than whole files.
constexpr size_t k_chunk_rows = size_t{1} << 15U;

// A run of several snapshots (schema 3) decoded once and copied into each snapshot it covers,
// chunk by chunk: what is kept of it until its last snapshot has been given out.
struct OpenRun {
  RawSock row;  // as decoded, at its first snapshot
  int64_t next; // the next snapshot_id to copy it into
  int64_t last; // the last snapshot_id that sees it
  int64_t first_time;
  std::optional<int64_t> last_data_recv_ms; // stored, relative to its first snapshot
  std::optional<int64_t> last_ack_recv_ms;
  std::optional<std::string> path;
  uint32_t path_chunk = k_na; // the chunk whose FileData::paths holds `path` at row.path
};

// Reads every row the analysis needs from one file. Only snapshots in `wanted` (the others are
// duplicates of snapshots seen in another file).
// `db` is the file open_validated() returned, or empty to open it here.
// The rows go to `emit` in chunks of whole snapshots in snapshot_id order (each chunk's rows in
// the order a whole read gives them), the first chunk with the file's netns, addrs, processes,
// counters and limits; one chunk when snapshot_id order is not the order rows are placed in (a
// pack across a wall-clock step back) or the rows come in another order (an archive's port
// index). A chunk's rows are built in a buffer from `spare` where one fits (may be null).
void read_file_data(const std::string& file,
                    const SlotIndex& wanted,
                    DbLease db_open,
                    const SocketFilter& filter,
                    SpareRows* spare,
                    const std::function<void(FileData&&)>& emit) {
  FileData d;
  // Counters and limits of every snapshot (unless the filter leaves them out); sockets and
  // processes of those with rows.
  const auto keep = [&wanted](int64_t snapshot_id) { return wanted.find(snapshot_id) != nullptr; };
  const auto keep_rows = [&wanted](int64_t snapshot_id) {
    const Slot* s = wanted.find(snapshot_id);
    return s != nullptr && s->rows;
  };
  // SocketFilter::snapshots, in SQL: "snapshot_id IN (...)" of the snapshots kept here.
  std::string only_snapshots;
  if (filter.snapshots) {
    std::vector<int64_t> ids;
    for (const auto& [id, slot] : wanted.all()) {
      if (slot.timeline != k_na && slot.rows) {
        ids.push_back(id);
      }
    }
    std::sort(ids.begin(), ids.end());
    only_snapshots = "snapshot_id IN (";
    for (size_t i = 0; i < ids.size(); ++i) {
      only_snapshots += (i > 0 ? "," : "") + std::to_string(ids[i]);
    }
    only_snapshots += ")";
  }
  const auto where = [&only_snapshots](const std::string& cond) {
    if (only_snapshots.empty()) {
      return cond.empty() ? std::string() : " WHERE " + cond;
    }
    return " WHERE " + only_snapshots + (cond.empty() ? "" : " AND (" + cond + ")");
  };
  DbLease lease = db_open.empty() ? open_file(filter.open_files.get(), file) : std::move(db_open);
  store::Db& db = lease.db();
  try {
    store::Stmt ns = db.prepare("SELECT netns_id, inode FROM netns");
    while (ns.step()) {
      d.netns.emplace_back(ns.get_int(0), static_cast<uint64_t>(ns.get_int(1)));
    }
    store::Stmt ad = db.prepare("SELECT addr_id, text FROM addrs");
    while (ad.step()) {
      d.addrs.emplace_back(ad.get_int(0), ad.get_text(1));
    }
    // processes.state came with schema version 2 (a validated file of version >= 2 has it).
    const int64_t version = db.query_int("PRAGMA user_version");
    const bool has_state = version >= 2;
    store::Stmt pr = db.prepare(std::string("SELECT snapshot_id, pid, start_ticks, comm, cmdline, "
                                            "uid, fd_count, socket_fds, nofile_soft, ")
                                + (has_state ? "state" : "NULL") + " FROM processes" + where(""));
    while (pr.step()) {
      if (!keep_rows(pr.get_int(0))) {
        continue;
      }
      RawProc p;
      p.snapshot_id = pr.get_int(0);
      p.pid = static_cast<int32_t>(pr.get_int(1));
      p.start_ticks = static_cast<uint64_t>(pr.get_int(2));
      p.comm = pr.get_text(3);
      p.cmdline = pr.get_opt_text(4);
      p.uid = opt32(pr, 5);
      p.sample.fd_count = opt32(pr, 6);
      p.sample.socket_fds = clamp32(pr.get_int(7));
      p.sample.nofile_soft = opt32(pr, 8);
      p.sample.state = state_letter(pr, 9);
      d.procs.push_back(std::move(p));
    }
    if (filter.counters_and_limits) {
      store::Stmt co = db.prepare("SELECT snapshot_id, netns_id, name, value FROM counters");
      while (co.step()) {
        if (keep(co.get_int(0))) {
          d.counters.push_back({co.get_int(0), co.get_int(1), co.get_text(2), co.get_int(3), {}});
        }
      }
      store::Stmt li = db.prepare("SELECT snapshot_id, netns_id, name, value FROM limits");
      while (li.step()) {
        if (keep(li.get_int(0))) {
          d.limits.push_back({li.get_int(0), li.get_int(1), li.get_text(2), 0, li.get_text(3)});
        }
      }
    }
    // Owners beyond the first, (sock_id, pid) in order (the table's primary key order).
    std::vector<std::pair<int64_t, int32_t>> extra;
    store::Stmt ex = db.prepare("SELECT sock_id, pid FROM extra_owners ORDER BY sock_id, pid");
    while (ex.step()) {
      extra.emplace_back(ex.get_int(0), static_cast<int32_t>(ex.get_int(1)));
    }
    // Schema 3: the run tables themselves, each run decoded once and copied into every
    // snapshot it covers (as the `sockets` view gives them, which decodes the run again for
    // each snapshot and joins the snapshots table twice per row).
    const bool runs = version >= 3;
    IdTable<int64_t> boottime; // snapshot_id -> CLOCK_BOOTTIME (runs only)
    if (runs) {
      store::Stmt bt = db.prepare("SELECT snapshot_id, boottime_ns FROM snapshots");
      while (bt.step()) {
        boottime.set(bt.get_int(0), bt.get_int(1));
      }
      boottime.freeze();
    }
    std::string cond = filter.port     ? "local_port = ?1 OR remote_port = ?1"
                       : filter.cookie ? "cookie = ?1"
                       : filter.pid    ? "pid = ?1"
                                       : "";
    // An archive's indexes where they pay. Through them the runs come in identity order and
    // are not sorted in SQL (every column of every run): the rows they expand to are sorted
    // below by (snapshot_id, sock_id), one row's key, whatever order they came in.
    bool run_order = true;
    if (runs && filter.port) {
      store::PortRuns port = store::sql_port_runs(db, *filter.port);
      cond = std::move(port.where);
      run_order = !port.indexed;
    }
    std::string sql;
    std::string split_sql; // the other half of a port's runs read through the indexes
    IdentCache idents;
    bool cached_idents = false;
    if (runs) {
      // A run is seen by the snapshots from its first to its last within the first's block of
      // 64 ids (the view's rule); with SocketFilter::snapshots, only runs one of them sees.
      std::string where_runs = cond.empty() ? "" : "(" + cond + ")";
      if (filter.snapshots) {
        std::string any;
        for (const auto& [id, slot] : wanted.all()) {
          if (slot.timeline != k_na && slot.rows) {
            any.append(any.empty() ? "(" : " OR (");
            any.append(store::sql_runs_seen_by("sock_runs", std::to_string(id))).append(")");
          }
        }
        const std::string snaps = any.empty() ? "0" : "(" + any + ")";
        where_runs = where_runs.empty() ? snaps : where_runs + " AND " + snaps;
      }
      // A whole load reads the identities apart where they fit (IdentCache), the runs alone.
      cached_idents = filter.ident_cache && where_runs.empty() && run_order && idents.load(db);
      d.idents_apart = cached_idents;
      const std::string ident_cols =
          cached_idents ? "ident_id, "
                        : "netns_id, family, type, proto, local_addr_id, local_port, "
                          "remote_addr_id, remote_port, inode, cookie, path, peer_inode, ";
      const auto sql_runs = [&](const std::string& runs_where) {
        return "SELECT first_snapshot_id AS snapshot_id, last_snapshot_id, " + ident_cols
               + "state, rx_queue, tx_queue, timer, retrans, skm_rmem_alloc, skm_rcvbuf, "
                 "skm_wmem_queued, skm_sndbuf, skm_drops, ti_backoff, ti_probes, "
                 "ti_total_retrans, ti_last_data_recv_ms, ti_last_ack_recv_ms, ti_bytes_acked, "
                 "ti_bytes_received, ti_segs_out, ti_snd_wnd, pid, run_id AS sock_id "
               + (cached_idents ? "FROM sock_runs"
                                : "FROM sock_runs JOIN sock_ident USING (ident_id)")
               + (runs_where.empty() ? std::string() : " WHERE " + runs_where)
               + (run_order ? " ORDER BY first_snapshot_id, run_id" : "");
      };
      if (!run_order) {
        // Through the port's indexes, a seek per run: the identities above the middle one
        // are read on a second connection (below), each half on a core of its own.
        split_sql = sql_runs(where_runs + " AND sock_ident.ident_id > ?2");
        where_runs += " AND sock_ident.ident_id <= ?2";
      }
      sql = sql_runs(where_runs);
    } else {
      sql = "SELECT snapshot_id, netns_id, family, type, proto, state, local_addr_id, "
            "local_port, remote_addr_id, remote_port, rx_queue, tx_queue, inode, cookie, timer, "
            "retrans, skm_rmem_alloc, skm_rcvbuf, skm_wmem_queued, skm_sndbuf, skm_drops, path, "
            "peer_inode, ti_backoff, ti_probes, ti_total_retrans, ti_last_data_recv_ms, "
            "ti_last_ack_recv_ms, ti_bytes_acked, ti_bytes_received, ti_segs_out, ti_snd_wnd, "
            "pid, sock_id FROM sockets"
            + where(cond) + " ORDER BY snapshot_id, sock_id";
    }
    // The snapshot ids with rows, in order, cut into chunks of `per_chunk` ids: a first guess
    // from the file's row count, then corrected by each chunk's rows.
    std::vector<int64_t> ids;
    for (const auto& [id, slot] : wanted.all()) {
      if (slot.timeline != k_na && slot.rows) {
        ids.push_back(id);
      }
    }
    std::sort(ids.begin(), ids.end());
    bool chunked = run_order;
    for (size_t i = 1; i < ids.size() && chunked; ++i) {
      const Slot* a = wanted.find(ids[i - 1]);
      const Slot* b = wanted.find(ids[i]);
      chunked = std::pair(a->timeline, a->snap) < std::pair(b->timeline, b->snap);
    }
    const size_t chunk_rows = filter.chunk_rows != 0 ? filter.chunk_rows : k_chunk_rows;
    size_t per_chunk = ids.size();
    // A whole load's chunks have about the rows guessed for them (a filtered load's are few):
    // each chunk's rows are reserved, with a little room for a guess short of them, rather
    // than grown by doubling.
    bool expect_rows = false;
    // At most twice a chunk's rows: the guess comes from the file's own socket counts, which a
    // damaged file may inflate (a chunk with more rows than that grows as usual).
    const auto reserve = [&](size_t rows) {
      rows = std::min(rows, 2 * chunk_rows);
      rows += rows / 16 + 16;
      if (spare != nullptr && d.sockets.capacity() == 0) {
        d.sockets = spare->take(rows);
      }
      d.sockets.reserve(rows);
    };
    if (chunked && cond.empty() && !filter.snapshots && !ids.empty()) {
      // SQLite counts a table's rows without decoding them. An archive's run covers up to 64
      // snapshots: the snapshots' socket counts say how many rows its runs make (summed as
      // floating point and capped: the file's own counts, which a damaged file may inflate).
      const auto rows = static_cast<size_t>(std::max<int64_t>(
          1,
          db.query_int(runs ? "SELECT max((SELECT count(*) FROM sock_runs), "
                              "(SELECT CAST(min(total(sockets), 1e15) AS INTEGER) FROM snapshots))"
                            : "SELECT count(*) FROM sockets")));
      per_chunk = std::clamp<size_t>(chunk_rows * ids.size() / rows, 1, ids.size());
      expect_rows = true;
      reserve(rows / ids.size() * per_chunk); // per_chunk is 1 where rows is large
    } else if (chunked && !ids.empty()) {
      per_chunk = std::clamp<size_t>(chunk_rows, 1, std::min<size_t>(64, ids.size()));
    }
    size_t chunk_begin = 0; // index in `ids` of the chunk's first snapshot
    uint32_t chunk_number = 0;
    // The last snapshot_id of the chunk being filled.
    const auto chunk_end = [&]() {
      if (!chunked || chunk_begin + per_chunk >= ids.size()) {
        return std::numeric_limits<int64_t>::max();
      }
      return ids[chunk_begin + per_chunk - 1];
    };
    int64_t hi = chunk_end();
    const auto bind = [&filter](store::Stmt& q) {
      if (filter.port) {
        q.bind(1, static_cast<int64_t>(*filter.port));
      } else if (filter.cookie) {
        q.bind(1, *filter.cookie);
      } else if (filter.pid) {
        q.bind(1, static_cast<int64_t>(*filter.pid));
      }
    };
    store::Stmt st = db.prepare(sql);
    bind(st);
    // The split of a port's identities read through the indexes: the middle one by id.
    int64_t middle = 0;
    if (!split_sql.empty()) {
      std::vector<int64_t> port_idents;
      store::Stmt m =
          db.prepare("SELECT ident_id FROM sock_ident WHERE local_port = ?1 OR remote_port = ?1");
      bind(m);
      while (m.step()) {
        port_idents.push_back(m.get_int(0));
      }
      if (!port_idents.empty()) {
        const auto mid =
            port_idents.begin() + static_cast<std::ptrdiff_t>((port_idents.size() - 1) / 2);
        std::nth_element(port_idents.begin(), mid, port_idents.end());
        middle = *mid;
      }
      st.bind(2, middle);
    }
    const SocketColumns c(st, !cached_idents);
    const int last_col = runs ? st.column_index("last_snapshot_id") : -1;
    // Owners beyond the first of the socket `sock_id` (in `extra`, sorted by sock_id).
    const auto add_extra = [&](RawSock& r) {
      if (extra.empty()) {
        return;
      }
      auto it = std::lower_bound(
          extra.begin(),
          extra.end(),
          std::pair<int64_t, int32_t>(r.sock_id, std::numeric_limits<int32_t>::min()));
      r.extra_begin = static_cast<uint32_t>(d.extra_pids.size());
      for (; it != extra.end() && it->first == r.sock_id; ++it) {
        d.extra_pids.push_back(it->second);
      }
      r.extra_count = static_cast<uint32_t>(d.extra_pids.size()) - r.extra_begin;
    };
    // A time-relative field stored at a run's first snapshot, `elapsed_ms` later, as the view
    // moves it.
    const auto moved = [](const std::optional<int64_t>& stored, int64_t elapsed_ms) {
      if (!stored) {
        return k_na;
      }
      int64_t v = 0;
      return store::run_since_ms(*stored, elapsed_ms, v) ? clamp32(v) : k_na - 1;
    };
    std::vector<OpenRun> open_runs;
    // Copies the open runs into their snapshots up to `upto` (the chunk being filled).
    const auto copy_runs = [&](int64_t upto) {
      for (OpenRun& o : open_runs) {
        const int64_t end = std::min(o.last, upto);
        for (int64_t id = o.next; id <= end; ++id) {
          const int64_t* t = boottime.find(id);
          if (t == nullptr || !keep_rows(id)) {
            continue;
          }
          if (o.path && o.path_chunk != chunk_number) {
            o.path_chunk = chunk_number;
            o.row.path = static_cast<uint32_t>(d.paths.size());
            d.paths.push_back(*o.path);
          }
          RawSock copy = o.row;
          copy.snapshot_id = id;
          copy.sock_id = store::run_sock_id(o.row.sock_id, id);
          if (id != o.row.snapshot_id) {
            const int64_t elapsed_ms = store::run_elapsed_ms(o.first_time, *t);
            copy.sample.last_data_recv_ms = moved(o.last_data_recv_ms, elapsed_ms);
            copy.sample.last_ack_recv_ms = moved(o.last_ack_recv_ms, elapsed_ms);
          }
          add_extra(copy);
          d.sockets.push_back(copy);
        }
        o.next = std::max(o.next, end + 1);
      }
      std::erase_if(open_runs, [](const OpenRun& o) { return o.next > o.last; });
    };
    // Gives out the chunk being filled (its snapshots up to `hi`) and starts the next.
    const auto flush = [&]() {
      copy_runs(hi);
      if (runs) {
        // The order the view gives: by snapshot, then sock_id (run_id within a snapshot).
        // Runs of one snapshot each (every collector file) come in that order already.
        const auto before = [](const RawSock& a, const RawSock& b) {
          return std::tie(a.snapshot_id, a.sock_id) < std::tie(b.snapshot_id, b.sock_id);
        };
        if (!std::is_sorted(d.sockets.begin(), d.sockets.end(), before)) {
          std::stable_sort(d.sockets.begin(), d.sockets.end(), before);
        }
      }
      const size_t rows = d.sockets.size();
      if (rows > 0 || chunk_number == 0) {
        // A chunk waits to be placed with the capacity it was built in: a guess that fell
        // short left up to twice its rows.
        if (d.sockets.capacity() - rows > rows / 8) {
          d.sockets.shrink_to_fit();
        }
        emit(std::move(d));
      }
      d = FileData{};
      ++chunk_number;
      chunk_begin += per_chunk;
      const size_t was = per_chunk;
      per_chunk = rows == 0 ? per_chunk * 2 : per_chunk * chunk_rows / rows;
      per_chunk = std::clamp<size_t>(per_chunk, 1, std::max<size_t>(ids.size(), 1));
      hi = chunk_end();
      if (expect_rows && chunk_begin < ids.size()) {
        reserve(rows * std::min(per_chunk, ids.size() - chunk_begin) / was);
      }
    };
    // The columns of the row `q` is on, read with `k`, into `r` (but the path); `ident` is set
    // to its identity where the identities were read apart. False when it has none.
    const auto decode =
        [&idents](const store::Stmt& q, const SocketColumns& k, RawSock& r, const Ident*& ident) {
          if (k.ident) {
            Ident::read(q, *k.ident).into(r);
          } else {
            // The join matches integers only: a NULL or REAL ident_id (a hand-edited file)
            // finds no identity, where reading it as an integer would find 0 or 5 for 5.5.
            if (q.column_type(k.ident_id) != SQLITE_INTEGER) {
              return false;
            }
            ident = idents.find(q.get_int(k.ident_id));
            if (ident == nullptr) {
              return false; // the join finds no identity: no row
            }
            ident->into(r);
          }
          r.sock_id = q.get_int(k.sock_id);
          r.pid = q.get_opt_int(k.pid).value_or(-1);
          Sample& x = r.sample;
          x.state = clamp8(q.get_int(k.state));
          x.rx_queue = opt32(q, k.rx_queue);
          x.tx_queue = opt32(q, k.tx_queue);
          x.timer = opt8(q, k.timer);
          x.retrans = opt8(q, k.retrans);
          x.rmem_alloc = opt32(q, k.rmem_alloc);
          x.rcvbuf = opt32(q, k.rcvbuf);
          x.wmem_queued = opt32(q, k.wmem_queued);
          x.sndbuf = opt32(q, k.sndbuf);
          x.drops = opt32(q, k.drops);
          x.backoff = opt8(q, k.backoff);
          x.probes = opt8(q, k.probes);
          x.total_retrans = opt32(q, k.total_retrans);
          x.last_data_recv_ms = opt32(q, k.last_data_recv_ms);
          x.last_ack_recv_ms = opt32(q, k.last_ack_recv_ms);
          x.bytes_acked = opt64(q, k.bytes_acked);
          x.bytes_received = opt64(q, k.bytes_received);
          x.segs_out = opt32(q, k.segs_out);
          x.snd_wnd = opt32(q, k.snd_wnd);
          return true;
        };
    // The row `q` is on as a run, or nothing when no snapshot kept sees it.
    const auto read_run = [&](const store::Stmt& q, const SocketColumns& k, int last_k) {
      std::optional<OpenRun> o;
      const int64_t first = q.get_int(k.snapshot_id);
      const int64_t last = store::run_seen_until(first, q.get_int(last_k));
      bool any = false;
      for (int64_t id = first; id <= last && !any; ++id) {
        any = keep_rows(id);
      }
      RawSock r;
      const Ident* ident = nullptr;
      if (!any || !decode(q, k, r, ident)) {
        return o;
      }
      r.snapshot_id = first;
      const int64_t* first_time = boottime.find(first);
      if (first_time == nullptr) {
        return o; // the view's join finds no first snapshot: no row
      }
      o = OpenRun{r,
                  first,
                  last,
                  *first_time,
                  q.get_opt_int(k.last_data_recv_ms),
                  q.get_opt_int(k.last_ack_recv_ms),
                  ident != nullptr ? idents.path(*ident) : q.get_opt_text(k.ident->path),
                  k_na};
      return o;
    };
    // The other half of the port's runs, on a connection and a thread of their own. Through the
    // indexes the runs come in no useful order: the rows they expand to are sorted (below) by
    // their own key either way.
    std::vector<OpenRun> split_runs;
    const auto read_half = [&](store::Stmt& q) {
      bind(q);
      q.bind(2, middle);
      const SocketColumns k(q, !cached_idents);
      const int last_k = q.column_index("last_snapshot_id");
      while (q.step()) {
        if (std::optional<OpenRun> o = read_run(q, k, last_k)) {
          split_runs.push_back(std::move(*o));
        }
      }
    };
    std::exception_ptr split_error;
    // No thread (none could be started, or SocketFilter::split_threads), or the file under its
    // name is not the one this connection reads: the other half is read after this one, on
    // this connection.
    bool split_here = !split_sql.empty() && !filter.split_threads;
    bool other_file = false; // set by the thread: its half is left to this connection
    std::jthread split;
    if (!split_sql.empty() && !split_here) {
      try {
        split = std::jthread([&, known = lease.identity()](const std::stop_token& stop) {
          try {
            // The file this connection reads, by its name: the same file (device, inode, size,
            // mtime) before and after the open as when this connection opened it. Else (the
            // fold renamed another over it, say) this connection reads both halves.
            if (!known || file_identity(file) != known) {
              other_file = true;
              return;
            }
            store::Db other = open_validated(file);
            if (file_identity(file) != known) {
              other_file = true;
              return;
            }
            // An error in the first half ends this one: its query is interrupted, not run to
            // its end (jthread asks it to stop as it is joined). A stop asked before the query
            // steps would find no statement to interrupt: looked at once more here.
            const std::stop_callback interrupt(stop,
                                               [h = other.handle()]() { sqlite3_interrupt(h); });
            store::Stmt q = other.prepare(split_sql);
            if (stop.stop_requested()) {
              return;
            }
            read_half(q);
          } catch (...) {
            split_error = std::current_exception();
          }
        });
      } catch (const std::system_error&) {
        split_here = true;
      }
    }
    while (st.step()) {
      const int64_t first = st.get_int(c.snapshot_id);
      while (first > hi) {
        flush();
      }
      if (runs) {
        if (std::optional<OpenRun> o = read_run(st, c, last_col)) {
          open_runs.push_back(std::move(*o));
        }
        continue;
      }
      RawSock r;
      const Ident* ident = nullptr;
      if (!keep_rows(first) || !decode(st, c, r, ident)) {
        continue;
      }
      r.snapshot_id = first;
      if (!st.is_null(c.ident->path)) {
        r.path = static_cast<uint32_t>(d.paths.size());
        d.paths.push_back(st.get_text(c.ident->path));
      }
      add_extra(r);
      d.sockets.push_back(r);
    }
    if (split.joinable()) {
      split.join();
      if (split_error) {
        std::rethrow_exception(split_error);
      }
      split_here = other_file;
    }
    if (split_here) {
      store::Stmt q = db.prepare(split_sql);
      read_half(q);
    }
    open_runs.insert(open_runs.end(),
                     std::make_move_iterator(split_runs.begin()),
                     std::make_move_iterator(split_runs.end()));
    for (bool more = true; more;) {
      more = hi != std::numeric_limits<int64_t>::max();
      flush();
    }
  } catch (const store::DbError& e) {
    throw read_error(file, e);
  }
}

// Places one file's rows into the series (single-threaded: interning and track identity).
class Placer {
public:
  Placer(Series& series, std::vector<TimelineState>& states, const SlotIndex& slots)
      : m_series(series),
        m_states(states),
        m_slots(slots) {}

  void place(FileData& d) {
    for (const auto& [id, inode] : d.netns) {
      m_netns_inode[id] = inode;
    }
    for (const auto& [id, text] : d.addrs) {
      m_addrs[id] = m_series.strings.intern(text);
    }
    place_processes(d.procs);
    place_counters(d.counters);
    place_limits(d.limits);
    place_sockets(d.sockets, d.extra_pids, d.paths);
  }

private:
  const Slot* slot(int64_t snapshot_id) const { return m_slots.find(snapshot_id); }

  // Timeline::netns index of this file's netns_id in timeline `tl`.
  uint32_t netns_of(uint32_t tl, int64_t netns_id) {
    const auto it = m_netns_inode.find(netns_id);
    const uint64_t inode = it == m_netns_inode.end() ? 0 : it->second;
    TimelineState& st = m_states[tl];
    const auto found = st.netns_index.find(inode);
    if (found != st.netns_index.end()) {
      return found->second;
    }
    Timeline& t = m_series.timelines[tl];
    const auto idx = static_cast<uint32_t>(t.netns.size());
    t.netns.push_back(Netns{inode, {}, {}});
    st.netns_index.emplace(inode, idx);
    return idx;
  }

  void place_processes(std::vector<RawProc>& procs) {
    for (RawProc& r : procs) {
      const Slot* s = slot(r.snapshot_id);
      if (s == nullptr) {
        continue;
      }
      Timeline& tl = m_series.timelines[s->timeline];
      auto [it, fresh] = m_states[s->timeline].procs.try_emplace(
          {r.pid, r.start_ticks}, static_cast<uint32_t>(tl.procs.size()));
      if (fresh) {
        Process p;
        p.pid = r.pid;
        p.start_ticks = r.start_ticks;
        p.comm = m_series.strings.intern(r.comm);
        p.cmdline = r.cmdline ? m_series.strings.intern(*r.cmdline) : k_na;
        p.uid = r.uid;
        tl.procs.push_back(std::move(p));
      }
      r.sample.snap = s->snap;
      tl.procs[it->second].samples.push_back(r.sample);
      m_owner[(static_cast<uint64_t>(r.snapshot_id) << 32U) | static_cast<uint32_t>(r.pid)] =
          it->second;
    }
  }

  void place_counters(const std::vector<RawValue>& rows) {
    std::unordered_map<std::string, uint32_t> names; // local cache of interned names
    for (const RawValue& r : rows) {
      const Slot* s = slot(r.snapshot_id);
      if (s == nullptr) {
        continue;
      }
      const uint32_t ns = netns_of(s->timeline, r.netns_id);
      auto found = names.find(r.name);
      if (found == names.end()) {
        found = names.emplace(r.name, m_series.strings.intern(r.name)).first;
      }
      Timeline& tl = m_series.timelines[s->timeline];
      std::vector<int64_t>& v = tl.netns[ns].counters[found->second];
      if (v.empty()) {
        v.assign(tl.snaps.size(), k_no_counter);
      }
      v[s->snap] = r.number;
    }
  }

  void place_limits(std::vector<RawValue>& rows) {
    for (RawValue& r : rows) {
      const Slot* s = slot(r.snapshot_id);
      if (s == nullptr) {
        continue;
      }
      const uint32_t ns = netns_of(s->timeline, r.netns_id);
      Timeline& tl = m_series.timelines[s->timeline];
      std::vector<std::string>& v = tl.netns[ns].limits[r.name];
      if (v.empty()) {
        v.resize(tl.snaps.size());
      }
      v[s->snap] = std::move(r.text);
    }
  }

  uint32_t addr(int64_t id) const {
    if (id < 0) {
      return k_na;
    }
    const auto it = m_addrs.find(id);
    return it == m_addrs.end() ? k_na : it->second;
  }

  // Every owner of one socket row as proc indices: Sample::owner_set, or k_na for fewer than two.
  uint32_t owner_set(uint32_t tl_index,
                     int64_t snapshot_id,
                     uint32_t first,
                     const int32_t* extra,
                     uint32_t count) {
    m_set.clear();
    if (first != k_na) {
      m_set.push_back(first);
    }
    for (uint32_t i = 0; i < count; ++i) {
      const auto it = m_owner.find((static_cast<uint64_t>(snapshot_id) << 32U)
                                   | static_cast<uint32_t>(extra[i]));
      if (it != m_owner.end()) {
        m_set.push_back(it->second);
      }
    }
    std::sort(m_set.begin(), m_set.end());
    m_set.erase(std::unique(m_set.begin(), m_set.end()), m_set.end());
    if (m_set.size() < 2) {
      return k_na;
    }
    auto& index = m_states[tl_index].owner_sets;
    const auto found = index.find(m_set);
    if (found != index.end()) {
      return found->second;
    }
    auto& sets = m_series.timelines[tl_index].owner_sets;
    const auto id = static_cast<uint32_t>(sets.size());
    sets.push_back(m_set);
    index.emplace(m_set, id);
    return id;
  }

  // Where a row lands: (timeline, snapshot index), or k_na for a row left out.
  std::pair<uint32_t, uint32_t> landing(const RawSock& r) const {
    const Slot* s = slot(r.snapshot_id);
    return s == nullptr ? std::pair<uint32_t, uint32_t>{k_na, 0} : std::pair{s->timeline, s->snap};
  }

  // Rows are placed in their timeline's snapshot order, as place_one() needs: a file's rows
  // come by snapshot_id, which is not that order in a pack across a wall-clock step back.
  void place_sockets(const std::vector<RawSock>& rows,
                     const std::vector<int32_t>& extra_pids,
                     const std::vector<std::string>& paths) {
    std::pair<uint32_t, uint32_t> prev{0, 0};
    bool in_order = true;
    for (const RawSock& r : rows) {
      const auto at = landing(r);
      if (at.first != k_na) {
        in_order = in_order && !(at < prev);
        prev = at;
      }
    }
    if (in_order) {
      for (const RawSock& r : rows) {
        place_socket(r, extra_pids, paths);
      }
      return;
    }
    std::vector<uint32_t> order(rows.size());
    std::iota(order.begin(), order.end(), 0U);
    std::stable_sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      return landing(rows[a]) < landing(rows[b]);
    });
    for (const uint32_t i : order) {
      place_socket(rows[i], extra_pids, paths);
    }
  }

  void place_socket(const RawSock& r,
                    const std::vector<int32_t>& extra_pids,
                    const std::vector<std::string>& paths) {
    const Slot* s = slot(r.snapshot_id);
    if (s == nullptr) {
      return;
    }
    Timeline& tl = m_series.timelines[s->timeline];
    tl.snaps[s->snap].sockets++;
    Track t;
    t.netns = netns_of(s->timeline, r.netns_id);
    t.family = r.family;
    t.type = r.type;
    t.proto = r.proto;
    t.local_addr = addr(r.local_addr_id);
    t.local_port = r.local_port;
    t.remote_addr = addr(r.remote_addr_id);
    t.remote_port = r.remote_port;
    t.cookie = r.cookie;
    t.path = r.path == k_na ? k_na : m_series.strings.intern(paths[r.path]);
    t.peer_inode = r.peer_inode;
    Sample x = r.sample;
    x.snap = s->snap;
    if (r.pid >= 0) {
      const auto it = m_owner.find((static_cast<uint64_t>(r.snapshot_id) << 32U)
                                   | static_cast<uint32_t>(r.pid));
      if (it != m_owner.end()) {
        x.owner = it->second;
      }
    }
    if (r.extra_count != 0) {
      x.owner_set =
          owner_set(s->timeline, r.snapshot_id, x.owner, &extra_pids[r.extra_begin], r.extra_count);
    }
    place_one(tl, m_states[s->timeline], std::move(t), x);
  }

  // Appends `x` to the track of its identity, creating the track when it is new.
  static void place_one(Timeline& tl, TimelineState& st, Track&& t, const Sample& x) {
    SockKey k;
    k.netns = t.netns;
    k.kind = static_cast<uint32_t>(t.family) | static_cast<uint32_t>(t.type) << 8U
             | static_cast<uint32_t>(t.proto) << 16U;
    const bool shared_tuple = t.family == k_af_unix || x.state == k_listen || x.state == k_close;
    if (t.cookie != 0) {
      k.cookie = t.cookie;
    } else {
      k.local_addr = t.local_addr;
      k.remote_addr = t.remote_addr;
      k.ports = static_cast<uint32_t>(t.local_port) << 16U | t.remote_port;
      k.path = t.path;
      k.inode = shared_tuple ? x.inode : 0;
    }
    const auto new_index = static_cast<uint32_t>(tl.tracks.size());
    auto [head, fresh] = st.tracks.try_emplace(k, new_index);
    uint32_t* link = head;
    for (uint32_t idx = fresh ? k_na : *head; idx != k_na; idx = st.next[idx]) {
      Track& existing = tl.tracks[idx];
      link = &st.next[idx];
      if (st.observed && st.reported[idx]) {
        continue; // reported gone to a TrackObserver: complete, never extended (maybe empty)
      }
      const Sample& last = existing.samples.back();
      if (last.snap == x.snap) {
        continue; // this one is taken in this snapshot (e.g. identical unix embryos)
      }
      if (st.split_on_absence && last.snap < x.snap
          && st.absent_between(last.snap, x.snap) >= k_absent_ends_track) {
        continue; // gone, and this is a new socket under its identity (see Track)
      }
      // Without a cookie, an inode N -> M (both non-zero) is a new socket on a reused 4-tuple;
      // 0 -> N is accept() and N -> 0 is close into TIME_WAIT.
      if (t.cookie == 0 && last.inode != 0 && x.inode != 0 && last.inode != x.inode) {
        continue;
      }
      st.append(idx, existing.samples, x);
      st.touch(idx, x.snap);
      return;
    }
    *link = new_index; // no-op for a fresh key (already new_index)
    st.next.push_back(k_na);
    st.touched_by.push_back(0);
    if (st.observed) {
      st.reported.push_back(false);
    }
    if (st.pack) {
      st.packed.emplace_back();
    }
    st.touch(new_index, x.snap);
    t.samples.push_back(x);
    tl.tracks.push_back(std::move(t));
  }

  Series& m_series;
  std::vector<TimelineState>& m_states;
  const SlotIndex& m_slots;
  std::unordered_map<int64_t, uint64_t> m_netns_inode;
  std::unordered_map<int64_t, uint32_t> m_addrs;
  std::unordered_map<uint64_t, uint32_t> m_owner; // (snapshot_id << 32 | pid) -> proc index
  std::vector<uint32_t> m_set;                    // owner_set()'s scratch
};

// The rows that a load's readers (FileReader) may hold decoded and not yet placed unless
// SocketFilter::ahead_rows says otherwise (~45 MiB).
constexpr size_t k_ahead_rows = size_t{1} << 18U;

// The readers of one load, in the order their files are placed, and the rows they hold. The
// readers share one budget of rows, except that the reader of the file being placed (the
// front) may always hold two chunks: the one ahead cannot stall it (nor deadlock the load,
// which waits for the front's chunks), and the front's decoding goes on while a chunk is placed.
struct ReadAhead {
  std::mutex mutex;
  std::condition_variable cv;
  size_t budget = k_ahead_rows;
  size_t rows = 0;    // held by all readers
  size_t front = 0;   // the number of the reader whose file is being placed
  size_t started = 0; // readers started so far (the next one's number)
  SpareRows spare;    // the row buffers of chunks placed
};

// Reads one file on a thread of its own (read_file_data) and hands its chunks over in order.
// The reader waits while its rows would go over the load's ReadAhead budget: the next file is
// decoded ahead while this one is placed, without holding the whole of it.
class FileReader {
public:
  FileReader(const std::string& file,
             const SlotIndex& wanted,
             DbLease db,
             const SocketFilter& filter,
             ReadAhead& ahead)
      : m_ahead(ahead),
        m_number(take_number(ahead)),
        m_thread([this, &file, &wanted, &filter, db = std::move(db)]() mutable {
          run(file, wanted, std::move(db), filter);
        }) {}

  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;
  FileReader(FileReader&&) = delete;
  FileReader& operator=(FileReader&&) = delete;

  // Readers end in the order they started: the next one becomes the front.
  ~FileReader() {
    {
      const std::lock_guard<std::mutex> lock(m_ahead.mutex);
      m_cancel = true;
    }
    m_ahead.cv.notify_all();
    m_thread.join();
    {
      const std::lock_guard<std::mutex> lock(m_ahead.mutex);
      m_ahead.rows -= m_rows;
      m_ahead.front = std::max(m_ahead.front, m_number + 1);
    }
    m_ahead.cv.notify_all();
  }

  // The next chunk, or nothing once the file is read; rethrows the reader's error (a LoadError)
  // after the chunks read before it.
  std::optional<FileData> next() {
    std::unique_lock<std::mutex> lock(m_ahead.mutex);
    m_ahead.cv.wait(lock, [this] { return !m_chunks.empty() || m_done; });
    if (m_chunks.empty()) {
      if (m_error) {
        std::rethrow_exception(m_error);
      }
      return std::nullopt;
    }
    FileData d = std::move(m_chunks.front());
    m_chunks.pop_front();
    m_rows -= d.sockets.size();
    m_ahead.rows -= d.sockets.size();
    lock.unlock();
    m_ahead.cv.notify_all();
    return d;
  }

private:
  struct Cancelled {};

  static size_t take_number(ReadAhead& ahead) {
    const std::lock_guard<std::mutex> lock(ahead.mutex);
    return ahead.started++;
  }

  // Whether a chunk may be added now (m_ahead.mutex held).
  bool room() const {
    const bool front = m_ahead.front == m_number;
    return m_ahead.rows < m_ahead.budget || (front && m_chunks.size() < 2);
  }

  void push(FileData&& d) {
    std::unique_lock<std::mutex> lock(m_ahead.mutex);
    m_ahead.cv.wait(lock, [this] { return m_cancel || room(); });
    if (m_cancel) {
      throw Cancelled{};
    }
    m_rows += d.sockets.size();
    m_ahead.rows += d.sockets.size();
    m_chunks.push_back(std::move(d));
    lock.unlock();
    m_ahead.cv.notify_all();
  }

  void
  run(const std::string& file, const SlotIndex& wanted, DbLease db, const SocketFilter& filter) {
    std::exception_ptr error;
    try {
      read_file_data(file, wanted, std::move(db), filter, &m_ahead.spare, [this](FileData&& d) {
        push(std::move(d));
      });
    } catch (const Cancelled&) {
      // the load ended first (an error in another file)
    } catch (...) {
      error = std::current_exception();
    }
    {
      const std::lock_guard<std::mutex> lock(m_ahead.mutex);
      m_done = true;
      m_error = error;
    }
    m_ahead.cv.notify_all();
  }

  ReadAhead& m_ahead;
  size_t m_number; // this reader's place among the load's (ReadAhead::front)
  std::deque<FileData> m_chunks;
  size_t m_rows = 0; // in m_chunks
  bool m_done = false;
  bool m_cancel = false;
  std::exception_ptr m_error;
  std::thread m_thread; // last: starts once the rest is built
};

} // namespace

void sort_process_samples(Timeline& tl) {
  const auto by_snap = [](const ProcSample& a, const ProcSample& b) { return a.snap < b.snap; };
  for (Process& p : tl.procs) {
    if (!std::is_sorted(p.samples.begin(), p.samples.end(), by_snap)) {
      std::sort(p.samples.begin(), p.samples.end(), by_snap);
    }
  }
}

// Gives `closed` (reported tracks of timeline `tli`, in order) to `observer`: packed tracks are
// unpacked a batch of about k_unpacked_samples samples at a time, so that the tracks open at the
// end of a long series are not all whole at once.
void give_closed(Series& series,
                 uint32_t tli,
                 TimelineState& st,
                 const std::vector<uint32_t>& closed,
                 TrackObserver& observer) {
  constexpr size_t k_unpacked_samples = size_t{1} << 17U; // ~11 MiB
  if (!st.pack || closed.empty()) {
    observer.closed(series, tli, closed);
    return;
  }
  Timeline& tl = series.timelines[tli];
  std::vector<uint32_t> batch;
  size_t samples = 0;
  for (size_t k = 0; k < closed.size(); ++k) {
    const uint32_t idx = closed[k];
    st.unpack(idx, tl.tracks[idx].samples);
    samples += tl.tracks[idx].samples.size();
    batch.push_back(idx);
    if (samples >= k_unpacked_samples || k + 1 == closed.size()) {
      observer.closed(series, tli, batch);
      batch.clear();
      samples = 0;
    }
  }
}

// After a file is placed (files in time order): the tracks of timeline `tli` that were open and
// are absent from its latest snapshot are complete; report them and keep the others open.
void report_closed(Series& series, uint32_t tli, TimelineState& st, TrackObserver& observer) {
  Timeline& tl = series.timelines[tli];
  st.last_placed = std::max(st.last_placed, st.file_last_snap);
  std::vector<uint32_t> closed;
  std::vector<uint32_t> open;
  // Gone: absent from k_absent_ends_track snapshots placed after its last sample (see Track).
  const uint32_t after = st.last_placed + 1;
  const auto judge = [&](uint32_t idx) {
    const uint32_t last = tl.tracks[idx].samples.back().snap;
    (st.absent_between(last, after) >= k_absent_ends_track ? closed : open).push_back(idx);
  };
  for (const uint32_t idx : st.open) {
    if (st.touched_by[idx] != st.file_number) {
      judge(idx); // open before this file and absent from it (the touched are judged below)
    }
  }
  for (const uint32_t idx : st.touched) {
    judge(idx);
  }
  st.open = std::move(open);
  if (closed.empty()) {
    return;
  }
  std::sort(closed.begin(), closed.end());
  for (const uint32_t idx : closed) {
    st.reported[idx] = true;
  }
  // The detectors look processes up by snapshot (Timeline::proc_at).
  sort_process_samples(tl);
  give_closed(series, tli, st, closed, observer);
}

// Files out of time order: the absence rule (see Track) on the sorted samples. Each part after
// a gap of k_absent_ends_track snapshots read becomes a track of its own (the same identity),
// after the others.
void split_absent(Timeline& tl, const TimelineState& st) {
  for (size_t i = 0; i < tl.tracks.size(); ++i) {
    const std::vector<Sample>& v = tl.tracks[i].samples;
    size_t cut = 1;
    while (cut < v.size()
           && st.absent_between(v[cut - 1].snap, v[cut].snap) < k_absent_ends_track) {
      ++cut;
    }
    if (cut >= v.size()) {
      continue;
    }
    std::vector<Sample> all = std::move(tl.tracks[i].samples);
    Track rest = tl.tracks[i]; // its identity (the samples moved out)
    tl.tracks[i].samples.assign(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(cut));
    rest.samples.assign(all.begin() + static_cast<std::ptrdiff_t>(cut), all.end());
    tl.tracks.push_back(std::move(rest)); // split again when its turn comes
  }
}

void drop_empty_tracks(Series& series) {
  for (Timeline& tl : series.timelines) {
    const size_t before = tl.tracks.size();
    std::erase_if(tl.tracks, [](const Track& t) { return t.samples.empty(); });
    series.filtered = series.filtered || tl.tracks.size() != before;
  }
}

// After a report: the reported tracks the observer emptied leave the timeline and the
// loader's state (their keys, chains and flags), the others keeping their order, so that a
// streamed load holds the open sockets and what the observer kept, not every socket so far.
void forget_emptied(Timeline& tl, TimelineState& st) {
  const size_t n = tl.tracks.size();
  std::vector<uint32_t> to(n, k_na);
  uint32_t kept = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (!st.reported[i] || !tl.tracks[i].samples.empty()) {
      to[i] = kept++;
    }
  }
  if (kept == n) {
    return;
  }
  // Each key's chain without the emptied tracks (old indices), then every index renumbered.
  st.tracks.retain([&](const SockKey& /*key*/, uint32_t& first) {
    uint32_t head = k_na;
    uint32_t* link = &head;
    for (uint32_t idx = first; idx != k_na;) {
      const uint32_t after = st.next[idx];
      if (to[idx] != k_na) {
        *link = idx;
        link = &st.next[idx];
      }
      idx = after;
    }
    *link = k_na;
    if (head == k_na) {
      return false;
    }
    first = to[head];
    return true;
  });
  std::vector<uint32_t> next(kept);
  std::vector<uint32_t> touched_by(kept);
  std::vector<bool> reported(kept);
  std::vector<std::unique_ptr<PackedSamples>> packed(st.pack ? kept : 0);
  std::vector<Track> tracks;
  tracks.reserve(kept);
  for (uint32_t i = 0; i < n; ++i) {
    if (to[i] == k_na) {
      continue;
    }
    next[to[i]] = st.next[i] == k_na ? k_na : to[st.next[i]];
    touched_by[to[i]] = st.touched_by[i];
    reported[to[i]] = st.reported[i];
    if (st.pack) {
      packed[to[i]] = std::move(st.packed[i]);
    }
    tracks.push_back(std::move(tl.tracks[i]));
  }
  for (uint32_t& idx : st.open) {
    idx = to[idx]; // open tracks are never reported
  }
  st.next = std::move(next);
  st.touched_by = std::move(touched_by);
  st.reported = std::move(reported);
  st.packed = std::move(packed);
  tl.tracks = std::move(tracks);
}

Series load_series(const std::vector<std::string>& files,
                   const SocketFilter& filter,
                   TrackObserver* observer) {
  Series series;
  series.files = files;
  series.filtered = filter.active();
  series.open_files = filter.open_files;
  std::vector<SnapshotInfo> all;
  std::unordered_map<std::string, uint32_t> file_index;
  DbLease first_db;
  for (size_t i = 0; i < files.size(); ++i) {
    if (!file_index.emplace(files[i], static_cast<uint32_t>(i)).second) {
      continue; // the same path twice: its snapshots are the same
    }
    // The first file stays open for its data, which this thread reads first (below): a
    // single-file analysis opens and validates its file once.
    DbLease db = open_file(filter.open_files.get(), files[i]);
    std::vector<SnapshotInfo> idx = load_snapshot_index(db.db(), files[i]);
    if (i == 0) {
      first_db = std::move(db);
    }
    all.insert(all.end(), std::make_move_iterator(idx.begin()), std::make_move_iterator(idx.end()));
  }
  std::stable_sort(all.begin(), all.end(), [](const SnapshotInfo& a, const SnapshotInfo& b) {
    return a.key() < b.key();
  });

  std::set<store::SnapshotKey> picked;
  if (filter.snapshots) {
    for (const SocketFilter::Snapshot& k : *filter.snapshots) {
      picked.insert(k.key());
    }
  }
  std::vector<SlotIndex> slots(files.size());
  for (size_t i = 0; i < all.size(); ++i) {
    const SnapshotInfo& s = all[i];
    const uint32_t fi = file_index.at(s.file);
    if (i > 0 && all[i - 1].key() == s.key()) {
      ++series.duplicate_snapshots;
      slots[fi].set(s.snapshot_id, Slot{});
      continue;
    }
    if (series.timelines.empty() || series.timelines.back().host != s.host
        || series.timelines.back().boot_id != s.boot_id || filter.timeline_per_snapshot) {
      Timeline tl;
      tl.host = s.host;
      tl.boot_id = s.boot_id;
      tl.kernel = s.kernel;
      series.timelines.push_back(std::move(tl));
    }
    Timeline& tl = series.timelines.back();
    Snap snap;
    snap.file = fi;
    snap.snapshot_id = s.snapshot_id;
    snap.realtime_ns = s.realtime_ns;
    snap.boottime_ns = s.boottime_ns;
    slots[fi].set(s.snapshot_id,
                  Slot{static_cast<uint32_t>(series.timelines.size() - 1),
                       static_cast<uint32_t>(tl.snaps.size()),
                       !filter.snapshots || picked.contains(s.key())});
    tl.snaps.push_back(snap);
  }
  for (SlotIndex& f : slots) {
    f.freeze();
  }
  for (Timeline& tl : series.timelines) {
    split_runs(tl);
  }

  // Reader threads decode the next files while this thread places the current one (see
  // `ahead` below).
  std::vector<size_t> todo;
  for (size_t i = 0; i < files.size(); ++i) {
    if (file_index.at(files[i]) == i && !slots[i].empty()) {
      todo.push_back(i);
    }
  }
  std::vector<TimelineState> states(series.timelines.size());
  for (size_t tli = 0; tli < states.size(); ++tli) {
    states[tli].rows_before.assign(series.timelines[tli].snaps.size() + 1, 0);
  }
  for (const SlotIndex& f : slots) {
    for (const auto& [id, slot] : f.all()) {
      if (slot.timeline != k_na && slot.rows) {
        states[slot.timeline].rows_before[slot.snap + 1] = 1;
      }
    }
  }
  for (TimelineState& st : states) {
    std::partial_sum(st.rows_before.begin(), st.rows_before.end(), st.rows_before.begin());
  }
  // Whether, per timeline, every file's snapshots come after those of the files placed before
  // it. Only then are tracks reported closed as the files are placed, and the absence rule
  // applied as rows come (a row of a snapshot not placed yet may fill the gap otherwise).
  bool in_order = true;
  {
    std::vector<int64_t> placed(series.timelines.size(), -1);
    for (const size_t fi : todo) {
      std::vector<std::pair<int64_t, int64_t>> span(series.timelines.size(), {-1, -1});
      for (const auto& [id, slot] : slots[fi].all()) {
        if (slot.timeline == k_na) {
          continue;
        }
        auto& [lo, hi] = span[slot.timeline];
        lo = lo < 0 ? slot.snap : std::min<int64_t>(lo, slot.snap);
        hi = std::max<int64_t>(hi, slot.snap);
      }
      for (size_t t = 0; t < span.size(); ++t) {
        if (span[t].first < 0) {
          continue;
        }
        in_order = in_order && span[t].first > placed[t];
        placed[t] = std::max(placed[t], span[t].second);
      }
    }
  }
  const bool early = observer != nullptr && in_order;
  for (TimelineState& st : states) {
    st.observed = observer != nullptr;
    st.split_on_absence = in_order;
    st.pack = early;
  }
  // Two files are decoded at once, each by a reader thread of its own, whether the load is
  // filtered (decoding is all its work) or whole: decoding a row (~35 columns through SQLite)
  // costs several times what placing it does, so two readers keep both cores busy. Their rows
  // come in chunks (read_file_data), at most about k_ahead_rows of both waiting to be placed
  // (ReadAhead).
  constexpr size_t ahead = 2;
  ReadAhead read_ahead;
  if (filter.ahead_rows != 0) {
    read_ahead.budget = filter.ahead_rows;
  }
  const auto start = [&](size_t k) {
    const size_t fi = todo[k];
    DbLease db;
    if (fi == 0) {
      db = std::move(first_db);
    }
    return std::make_unique<FileReader>(files[fi], slots[fi], std::move(db), filter, read_ahead);
  };
  std::deque<std::unique_ptr<FileReader>> pending;
  for (size_t k = 0; k < std::min(ahead, todo.size()); ++k) {
    pending.push_back(start(k));
  }
  Progress progress("loading files", todo.size());
  for (size_t k = 0; k < todo.size(); ++k) {
    for (TimelineState& st : states) {
      st.file_number = static_cast<uint32_t>(k + 1);
      st.file_last_snap = 0;
    }
    {
      Placer placer(series, states, slots[todo[k]]);
      while (std::optional<FileData> d = pending.front()->next()) { // rethrows a LoadError
        series.idents_read_apart += d->idents_apart ? 1U : 0U;
        placer.place(*d);
        read_ahead.spare.give_back(std::move(d->sockets));
      }
    }
    pending.pop_front();
    if (k + ahead < todo.size()) {
      pending.push_back(start(k + ahead));
    }
    // A track this file placed whose last sample is before the file's last snapshot has closed
    // (a socket seen again later, as after a capture gap, simply grows again): its samples are
    // given back the room kept for growth now rather than after the last file, so the peak
    // holds that room for the open tracks only.
    for (size_t tli = 0; tli < states.size(); ++tli) {
      TimelineState& st = states[tli];
      for (const uint32_t idx : st.touched) {
        std::vector<Sample>& v = series.timelines[tli].tracks[idx].samples;
        if (v.back().snap < st.file_last_snap) {
          v.shrink_to_fit();
        }
      }
      if (early && !st.touched.empty()) {
        report_closed(series, static_cast<uint32_t>(tli), st, *observer);
        forget_emptied(series.timelines[tli], st);
      }
      st.touched.clear();
    }
    progress.add();
  }

  for (Timeline& tl : series.timelines) {
    for (Track& t : tl.tracks) {
      const auto by_snap = [](const Sample& a, const Sample& b) { return a.snap < b.snap; };
      if (!std::is_sorted(t.samples.begin(), t.samples.end(), by_snap)) {
        // Rows out of snapshot order (files that overlap in time, or a hand-made file): a
        // socket listed twice in one snapshot, with other snapshots' rows read in between,
        // lands twice in its track. Keep the first: at most one sample per snapshot, and the
        // snapshot's socket count is what was kept (each row counted once, in one track).
        std::stable_sort(t.samples.begin(), t.samples.end(), by_snap);
        const auto same_snap = [](const Sample& a, const Sample& b) { return a.snap == b.snap; };
        for (auto it = std::adjacent_find(t.samples.begin(), t.samples.end(), same_snap);
             it != t.samples.end();
             it = std::adjacent_find(it + 1, t.samples.end(), same_snap)) {
          tl.snaps[it->snap].sockets--;
        }
        t.samples.erase(std::unique(t.samples.begin(), t.samples.end(), same_snap),
                        t.samples.end());
      }
      t.samples.shrink_to_fit();
    }
    sort_process_samples(tl);
  }
  if (!in_order) {
    for (size_t tli = 0; tli < states.size(); ++tli) {
      split_absent(series.timelines[tli], states[tli]);
    }
  }
  if (observer != nullptr) {
    for (size_t tli = 0; tli < states.size(); ++tli) {
      std::vector<uint32_t> rest;
      for (uint32_t idx = 0; idx < series.timelines[tli].tracks.size(); ++idx) {
        if (idx >= states[tli].reported.size() || !states[tli].reported[idx]) {
          rest.push_back(idx);
        }
      }
      give_closed(series, static_cast<uint32_t>(tli), states[tli], rest, *observer);
    }
  }
  return series;
}

} // namespace sockrewind::analyze
