#pragma once
// The replayed series: every snapshot of every file, merged per (host, boot) in time order, with
// each socket followed across snapshots as a Track and each process as a Process.
//
// Memory matters (a day of one-minute snapshots of 1,000 sockets is 1.44M samples), so a Sample
// is a compact fixed-size record: numbers the file left NULL are k_na, strings are interned.

#include <sockrewind/assert.hpp>
#include <sockrewind/store/snapshot_key.hpp>

#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace sockrewind::analyze {

class OpenFiles; // load.hpp

// "Not available": the file had NULL (the source does not provide it) or no such row.
inline constexpr uint32_t k_na = std::numeric_limits<uint32_t>::max();
inline constexpr uint64_t k_na64 = std::numeric_limits<uint64_t>::max();
inline constexpr uint8_t k_na8 = std::numeric_limits<uint8_t>::max();
// A counter absent from a snapshot.
inline constexpr int64_t k_no_counter = std::numeric_limits<int64_t>::min();

// Kernel numbering, as the file stores it (schema/README.md).
inline constexpr uint8_t k_af_unix = 1;
inline constexpr uint8_t k_af_inet = 2;
inline constexpr uint8_t k_af_inet6 = 10;
inline constexpr uint16_t k_proto_tcp = 6;
inline constexpr uint16_t k_proto_udp = 17;
inline constexpr uint16_t k_proto_udplite = 136;
inline constexpr uint16_t k_proto_raw = 255;
inline constexpr uint8_t k_unix_stream = 1;
inline constexpr uint8_t k_unix_dgram = 2;
inline constexpr uint8_t k_unix_seqpacket = 5;

enum TcpState : uint8_t {
  k_established = 1,
  k_syn_sent = 2,
  k_syn_recv = 3,
  k_fin_wait1 = 4,
  k_fin_wait2 = 5,
  k_time_wait = 6,
  k_close = 7, // also UNCONN (udp, raw, unbound unix)
  k_close_wait = 8,
  k_last_ack = 9,
  k_listen = 10,
  k_closing = 11,
};

// Interned strings (addresses, paths, comm, cmdline, counter names), shared by all timelines.
class Strings {
public:
  uint32_t intern(std::string_view s);
  // k_na for a string never interned.
  uint32_t find(std::string_view s) const;

  const std::string& at(uint32_t id) const {
    SR_ASSERT(id < m_all.size()); // never k_na: callers check for it
    return m_all[id];
  }

  size_t size() const { return m_all.size(); }

  // "" for k_na.
  std::string_view get(uint32_t id) const {
    return id == k_na ? std::string_view() : std::string_view(m_all[id]);
  }

private:
  std::vector<std::string> m_all;
  std::unordered_map<std::string, uint32_t> m_index;
};

// One socket in one snapshot. Fields are k_na (k_na64, k_na8) where the file had NULL. Only the
// fields the detectors use are kept (88 bytes on x86-64, owner_set filling what was padding);
// `show` reads everything else from the file.
struct Sample {
  uint32_t snap = 0;           // index into Timeline::snaps
  uint32_t inode = 0;          // 0: no fd (accept queue, TIME_WAIT, SYN_RECV, orphan, embryo)
  uint32_t owner = k_na;       // index into Timeline::procs of the first owner; k_na: no owner seen
  uint32_t rx_queue = k_na;    // LISTEN: accept queue length; UDP: truesize bytes; else bytes
  uint32_t tx_queue = k_na;    // LISTEN: max backlog (sock_diag only)
  uint32_t rmem_alloc = k_na;  // skmeminfo r
  uint32_t rcvbuf = k_na;      // rb
  uint32_t wmem_queued = k_na; // w
  uint32_t sndbuf = k_na;      // tb
  uint32_t drops = k_na;       // d (cumulative per socket), or /proc/net/udp's drops
  uint32_t total_retrans = k_na;
  uint32_t segs_out = k_na;
  uint32_t last_data_recv_ms = k_na;
  uint32_t last_ack_recv_ms = k_na;
  uint32_t snd_wnd = k_na;
  // k_na when the socket has at most one owning process in this snapshot (then `owner` is it);
  // otherwise an index into Timeline::owner_sets: every process holding it. See owners_of().
  uint32_t owner_set = k_na;
  uint64_t bytes_acked = k_na64;
  uint64_t bytes_received = k_na64;
  uint8_t state = 0;
  uint8_t timer = k_na8;   // 0 none, 1 retransmit, 2 keepalive, 3 timewait, 4 zero-window probe
  uint8_t retrans = k_na8; // consecutive unrecovered RTOs (capped at 254)
  uint8_t probes = k_na8;
  uint8_t backoff = k_na8;
};

// One socket identity over time (DESIGN.md "Socket identity across snapshots"). A socket absent
// from k_absent_ends_track snapshots in a row (of those whose rows were read) and seen again
// starts a new track: absent from one, as when a dump failed and was rolled back, it goes on.
// Whole and streamed loads (TrackObserver) follow this one rule, so they give the same tracks.
inline constexpr uint32_t k_absent_ends_track = 2;

struct Track {
  uint32_t netns = 0; // index into Timeline::netns
  uint8_t family = 0;
  uint8_t type = 0;
  uint16_t proto = 0;         // 0 for unix
  uint32_t local_addr = k_na; // Strings id of the address text (no brackets)
  uint32_t remote_addr = k_na;
  uint16_t local_port = 0;
  uint16_t remote_port = 0;
  uint64_t cookie = 0;         // 0: no cookie (the /proc fallback)
  uint32_t path = k_na;        // unix path (Strings id)
  uint64_t peer_inode = 0;     // unix peer, 0 = none
  std::vector<Sample> samples; // in snapshot order, at most one per snapshot
};

struct ProcSample {
  uint32_t snap = 0;
  uint32_t socket_fds = 0;
  uint32_t fd_count = k_na;
  uint32_t nofile_soft = k_na; // k_na also for "unlimited" beyond 32 bits
  // Scheduler state letter from /proc/PID/stat in this snapshot (R, S, D, T stopped, t traced,
  // Z, I, ...); 0 when unknown (schema v1 files, NULL).
  char state = 0;
};

// One process identity: (pid, start time), since pids are reused.
struct Process {
  int32_t pid = 0;
  uint64_t start_ticks = 0;
  uint32_t comm = k_na;    // Strings id
  uint32_t cmdline = k_na; // Strings id
  uint32_t uid = k_na;
  std::vector<ProcSample> samples;
};

struct Netns {
  uint64_t inode = 0;
  // counter name (Strings id of "Group.Field") -> value per snapshot (k_no_counter if absent)
  std::unordered_map<uint32_t, std::vector<int64_t>> counters;
  // sysctl name ("net.core.somaxconn") -> value per snapshot ("" if absent)
  std::map<std::string, std::vector<std::string>> limits;
};

struct Snap {
  uint32_t file = 0; // index into Series::files
  int64_t snapshot_id = 0;
  int64_t realtime_ns = 0;
  int64_t boottime_ns = 0;
  uint32_t run = 0; // gap-free run number; a new run starts after a gap
  uint32_t sockets = 0;
};

// All snapshots of one host within one boot, in time order.
struct Timeline {
  std::string host;
  std::string boot_id;
  std::string kernel;
  std::vector<Snap> snaps;
  std::vector<Netns> netns;
  std::vector<Track> tracks;
  std::vector<Process> procs;
  // Sets of processes holding one socket in one snapshot (Sample::owner_set): each a sorted,
  // de-duplicated list of indices into `procs` (the Sample's `owner` among them). Identical
  // sets are stored once per timeline.
  std::vector<std::vector<uint32_t>> owner_sets;
  double median_interval_s = 0;

  // Seconds between two snapshots, from CLOCK_BOOTTIME (immune to wall-clock jumps).
  double dt(uint32_t from, uint32_t to) const {
    return static_cast<double>(snaps[to].boottime_ns - snaps[from].boottime_ns) / 1e9;
  }

  // Counter values per snapshot, or nullptr when this netns never had it.
  const std::vector<int64_t>* counter(uint32_t netns_index, uint32_t name_id) const;
  // The sysctl's value in `snap` ("" when not captured).
  std::string_view limit(uint32_t netns_index, const std::string& name, uint32_t snap) const;
  // The sample of `pid` in `snap`, or nullptr.
  static const ProcSample* proc_at(const Process& p, uint32_t snap);
};

// What load_series() may leave out: only the sockets a command will look at (timeline --port,
// --socket, --pid), or only the snapshots it compares (diff), selected in SQL so the rest of the
// series is never decoded. Every snapshot's header is loaded whatever the filter, and so are
// its counters and limits (a few hundred rows per snapshot, whatever the number of sockets)
// unless counters_and_limits is false.
struct SocketFilter {
  std::optional<uint16_t> port;   // local or remote port
  std::optional<uint64_t> cookie; // the socket of this cookie
  std::optional<int32_t> pid;     // the sockets this pid is the first owner of

  // Only these snapshots' sockets and processes (the other snapshots hold no samples and no
  // process samples).
  struct Snapshot {
    std::string host;
    std::string boot_id;
    int64_t boottime_ns = 0;

    store::SnapshotKey key() const { return {host, boot_id, boottime_ns}; }
  };

  std::optional<std::vector<Snapshot>> snapshots;

  // false: no counters and no limits are read (every Netns's counters and limits stay empty),
  // for a command that shows neither (timeline). Not a socket filter: active() ignores it.
  bool counters_and_limits = true;

  // Not a socket filter either. Files read through these held connections (load.hpp
  // OpenFiles), which keep them open after the load for the reads that follow it
  // (Context::read_snapshots); nullptr: opened by name and closed once read.
  std::shared_ptr<OpenFiles> open_files;

  // Not a socket filter either. true: every snapshot is a timeline of its own, so that a socket
  // seen in several of the snapshots read is a track per snapshot with that snapshot's
  // addresses and ports (a track keeps those of its first sample).
  bool timeline_per_snapshot = false;

  // Not a socket filter either. A file's rows are read and placed in chunks of whole snapshots
  // of about this many rows (0: 32,768), so that a load holds a few chunks per file rather
  // than whole files; tests set 1 (a chunk per snapshot).
  size_t chunk_rows = 0;

  // Not a socket filter either. The rows the load's file readers may hold decoded ahead of
  // placing, together (0: 262,144); the reader of the file being placed always may hold two
  // chunks. Tests set 1.
  size_t ahead_rows = 0;

  // Not a socket filter either. A whole load reads a schema-3 file's identities once, apart
  // from its runs, where they are dense and at most 131,072 (false: always joined to each run,
  // as filtered loads are; tests compare the two).
  bool ident_cache = true;

  // Not a socket filter either. An indexed archive's runs of a port are read in two halves,
  // the second on a connection and a thread of its own (false: one after the other on the
  // load's connection, as when no thread can be started; tests compare the two).
  bool split_threads = true;

  bool active() const {
    return port.has_value() || cookie.has_value() || pid.has_value() || snapshots.has_value();
  }
};

struct Series {
  std::vector<std::string> files;
  // Loaded with an active SocketFilter, or with tracks let go (drop_empty_tracks): a snapshot
  // may hold fewer samples than Snap::sockets.
  bool filtered = false;
  std::vector<Timeline> timelines; // sorted by host, then first snapshot time
  Strings strings;
  size_t snapshot_count() const;
  size_t duplicate_snapshots = 0; // snapshots seen in more than one file, counted once
  size_t idents_read_apart = 0;   // files whose identities were read apart from their runs
  // The files held open by the load (SocketFilter::open_files), or nullptr.
  std::shared_ptr<OpenFiles> open_files;
};

// Every process holding the socket of `x` in its snapshot, as indices into tl.procs: its owner
// set, or {x.owner}, or {} when no owner was seen.
std::vector<uint32_t> owners_of(const Timeline& tl, const Sample& x);

// Told by load_series which tracks are complete while the files are placed, so that a caller
// can analyse each socket once it is gone (detector.hpp TrackPass) rather than after the load.
class TrackObserver {
public:
  TrackObserver() = default;
  virtual ~TrackObserver() = default;
  TrackObserver(const TrackObserver&) = delete;
  TrackObserver& operator=(const TrackObserver&) = delete;
  TrackObserver(TrackObserver&&) = delete;
  TrackObserver& operator=(TrackObserver&&) = delete;

  // `tracks` (indices into series.timelines[timeline].tracks, ascending) are complete; each
  // track is reported once. After a file is placed: the tracks whose socket is gone (a later
  // snapshot of their timeline was placed without them); at the end of the load: all others.
  // A socket is gone once k_absent_ends_track snapshots of its timeline were placed after its
  // last sample (see Track). Reported early only when the files come in time order per
  // timeline (no file holds a snapshot earlier than one already placed); otherwise everything
  // at the end.
  // The observer may let go of the samples of `tracks` (clear them): the load never reads
  // them again, and drop_empty_tracks() takes such tracks out once it is done.
  virtual void closed(Series& series, uint32_t timeline, const std::vector<uint32_t>& tracks) = 0;
};

// Loads and merges `files` (already expanded). Throws LoadError naming the file on bad input.
Series load_series(const std::vector<std::string>& files,
                   const SocketFilter& filter = {},
                   TrackObserver* observer = nullptr);

// Takes out the tracks without samples (let go by a TrackObserver), keeping the others in
// their order, and marks the series `filtered`.
void drop_empty_tracks(Series& series);

// SR_ASSERTs the shape load_series gives a Series (an InternalError when broken): every
// timeline has snapshots, in strict CLOCK_BOOTTIME order, runs never decreasing; every index
// (file, netns, snap, owner, string id) is in range; a track has at most one sample per
// snapshot and a process's samples are in snapshot order; each snapshot's socket count is the
// number of samples placed in it; every counter and limit has one value per snapshot.
void check_series(const Series& s);

// Assigns Snap::run and median_interval_s by snapshot_intervals() (time.hpp): a gap starts a run.
void split_runs(Timeline& tl);

} // namespace sockrewind::analyze
