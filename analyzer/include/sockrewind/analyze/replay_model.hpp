#pragma once
// `sockrewind-analyze replay`: the model behind the terminal view (replay_ui.cpp draws it). One
// host's snapshot index for navigation, ONE snapshot's rows in memory at a time (read by SQL as
// `show` reads them), the sort and filter state, and what changed since the previous snapshot.
// The follow view and the findings load the series only when asked for.

#include <sockrewind/analyze/detector.hpp>
#include <sockrewind/analyze/load.hpp>
#include <sockrewind/analyze/snapshot_view.hpp>

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sockrewind::analyze::replay {

enum class SortKey : uint8_t { ss, recv_q, send_q, state, owner, port };
inline constexpr size_t k_sort_keys = 6;

std::string_view sort_name(SortKey k); // "ss", "Recv-Q", ...
SortKey next_sort(SortKey k);

// What rows are shown; every set part must match.
struct Filter {
  std::optional<int64_t> port;  // local or remote port (inet sockets only)
  std::optional<int64_t> pid;   // one of the owners
  std::optional<int64_t> state; // kernel state number (parse_state)
  std::string text;             // case-insensitive substring of Netid, State, Local, Peer, users

  bool empty() const { return !port && !pid && !state && text.empty(); }

  // "port:80 state:LISTEN nginx" (parse_filter's syntax), "" when empty.
  std::string describe() const;
};

// Parses "port:N pid:N state:NAME WORDS...": words without a known prefix are the free text
// (joined by one space). Throws UsageError for a bad port, pid or state.
Filter parse_filter(std::string_view spec);

bool matches(const SocketRow& r, const std::map<int64_t, std::string>& comm, const Filter& f);

// Indices into v.rows that pass `f`, ordered by `key` (ties keep ss order). Recv-Q and Send-Q
// sort largest first (missing values last), the others ascending; `reverse` flips the order.
std::vector<size_t>
visible_rows(const SnapshotView& v, const Filter& f, SortKey key, bool reverse = false);

// A socket's identity between snapshots of one boot: its cookie, or (without one, the /proc
// fallback) a hash of netns, Netid, local, peer and inode with the top bit set.
uint64_t row_identity(const SocketRow& r);

struct CounterDelta {
  uint64_t netns = 0;
  std::string name;
  int64_t delta = 0;
};

// What changed from one snapshot to the next (the header's second line).
struct SnapshotDiff {
  bool first = false;                 // no previous snapshot
  bool reboot = false;                // another boot: identities are not comparable
  size_t added = 0;                   // sockets in `cur` but not in `prev`
  size_t gone = 0;                    // sockets in `prev` but not in `cur`
  std::vector<CounterDelta> counters; // non-zero deltas, largest |delta| first, then by name
  // One line: "+3 new, -1 gone; TcpExt.ListenOverflows +5, ..." (fits `width` columns).
  std::string text(size_t width) const;
};

// `prev_ids` and `cur_ids` sorted (identities of the two snapshots' rows).
SnapshotDiff diff_snapshots(const std::vector<uint64_t>& prev_ids,
                            const std::vector<uint64_t>& cur_ids,
                            const CounterValues& prev_counters,
                            const CounterValues& cur_counters);

// One snapshot of the followed socket.
struct FollowPoint {
  size_t pos = 0; // position in the model's index
  std::string state;
  std::string recv_q;
  std::string send_q;
  std::string timer;
  std::string owner;
};

// The followed socket over the whole series.
struct Follow {
  std::string title; // "tcp 127.0.0.1:7102 -> *  cookie 123"
  std::string error; // why there is nothing to follow ("" when points are set)
  std::vector<FollowPoint> points;
};

class Model {
public:
  // Loads the index of `files` (already expanded): one host (`host`, or the only one), every
  // snapshot once (duplicates across files by store::SnapshotKey), in time order. Reads the
  // first snapshot. Throws LoadError (bad files) and UsageError (several hosts, no --host).
  Model(std::vector<std::string> files, const std::optional<std::string>& host);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  Model(Model&&) = delete;
  Model& operator=(Model&&) = delete;

  size_t size() const { return m_index.size(); }

  size_t pos() const { return m_pos; }

  const std::vector<SnapshotInfo>& index() const { return m_index; }

  const std::string& host() const { return m_host; }

  const SnapshotView& view() const { return *m_cur.view; }

  const SnapshotDiff& diff() const { return m_diff; }

  // Shows snapshot `pos` (clamped): reads it (and, unless it is the next one, its predecessor
  // for the diff). The next snapshot is then read ahead on a worker thread (its own
  // connections), so that stepping forward takes it ready-made.
  void go(size_t pos);
  // Waits until the read-ahead is done (for --bench: a user who looks at the screen first).
  void wait_read_ahead();
  // The last snapshot at or before `realtime_ns` (the first when none is).
  size_t find_time(int64_t realtime_ns) const;

  // The socket `r` of the current snapshot over the series (load_series with its cookie).
  Follow follow(const SocketRow& r) const;

  // The report's detectors over the whole series; run on the first call, then kept.
  const std::vector<Finding>& findings();

  bool findings_loaded() const { return m_findings_loaded; }

  // Where a finding fires: the snapshot of its first_seen time.
  size_t finding_pos(const Finding& f) const { return find_time(f.first_seen_ns); }

  // One snapshot as the model keeps it. The view is shared with the read-ahead while it is the
  // base of the next snapshot's read (SnapshotReader::read_next), never changed once read.
  struct Loaded {
    size_t pos = 0;
    std::shared_ptr<SnapshotView> view = std::make_shared<SnapshotView>();
    std::vector<uint64_t> ids; // sorted identities of view.rows
    CounterValues counters;
  };

private:
  // One file's connection and its reader (which keeps prepared statements and lookups).
  struct Conn {
    explicit Conn(store::Db&& d) : db(std::move(d)), reader(db) {}

    store::Db db;
    SnapshotReader reader;
  };

  using Dbs = std::map<std::string, std::unique_ptr<Conn>>;
  using Base = std::shared_ptr<const SnapshotView>;
  // Reads `pos`; from `base` (the snapshot before it) where the file allows.
  Loaded load(size_t pos, Dbs& dbs, const Base& base);
  // Keeps the larger rows and runs memory in m_spare (when no read-ahead still reads the
  // view).
  void recycle(std::shared_ptr<SnapshotView>&& view);
  // From the read-ahead when it holds `pos`, else read now (from `base`, if given).
  Loaded take(size_t pos, const Base& base = nullptr);
  void keep_ready(Loaded&& l); // offers `l` as the read-ahead (unless one is being read)
  void read_ahead(size_t pos, Base base = nullptr);
  void worker();

  std::vector<std::string> m_files;
  std::string m_host;
  std::vector<SnapshotInfo> m_index;
  Dbs m_dbs; // the UI thread's connections
  size_t m_pos = 0;
  bool m_loaded = false;
  Loaded m_cur;
  Loaded m_prev; // m_cur's predecessor (its diff), when m_has_prev
  bool m_has_prev = false;
  SnapshotDiff m_diff;
  // Read-ahead: the worker reads m_want into m_ready with its own connections.
  std::mutex m_mutex;
  std::condition_variable m_cv;
  std::optional<size_t> m_want;
  Base m_want_base; // the snapshot before m_want, when the model holds it
  std::optional<size_t> m_busy;
  std::unique_ptr<Loaded> m_ready;
  ViewMemory m_spare; // the memory of a snapshot no longer shown, for a read
  bool m_stop = false;
  std::thread m_worker; // last: started once the rest is constructed
  std::vector<Finding> m_findings;
  bool m_findings_loaded = false;
};

// Filter for a finding's subject: its local port, else its unix path (free text), else its pid.
Filter subject_filter(const Finding& f);

} // namespace sockrewind::analyze::replay

namespace sockrewind::analyze {

struct ReplayOptions {
  std::vector<std::string> paths; // expanded
  std::optional<std::string> host;
  int play_ms = 1000; // play: one snapshot per this many milliseconds
  bool bench = false; // hidden: time opening and stepping, print the figures, no terminal
  size_t bench_steps = 20;
};

// The terminal view (replay_ui.cpp, linked into sockrewind-analyze only): returns the exit
// code; 2 with one line on stderr when stdout is not a terminal. Throws LoadError (exit 3).
int run_replay(const ReplayOptions& opts);

} // namespace sockrewind::analyze
