#pragma once
// Client-side TCP sockets, for the passes that count connections per destination
// (port_exhaustion, syn_sent_stuck). A socket is client-side when its local port is not a
// listening port of its netns: a server's accepted connections share the listener's port, a
// client's connections use ports of their own (ephemeral ones).
//
// A pass sees each socket once it is gone, and may count one before the listener of its port
// comes (a listener opened later on a port a client used before). ClientPorts keeps the
// listening ports seen so far and, per local port, the snapshots of the sockets the pass counted
// on it; at the end it reads back from the files those snapshots of the ports a listener used:
// the pass takes out what their sockets added, as if the listening port had been known when
// they came. The sockets there that were not counted (they came once the port was known to
// listen, though they were open before) are noted as they come, so that nothing of them is
// taken out: only those open on such a port when its listener came, a few per port.

#include <sockrewind/analyze/toolkit.hpp>

#include <cstdint>
#include <functional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace sockrewind::analyze {

class ClientPorts {
public:
  // Notes the listening ports of `ctx`'s timeline placed since the last call (a socket with a
  // LISTEN sample: that port of its netns listens) and `t`'s if it listens. True when `t` is a
  // TCP socket with a remote end whose local port is no listening port so far: the pass may
  // count it (then counted(t)). False for such a socket on a listening port: it is noted when
  // it shares snapshots with sockets counted on that port.
  bool client_side(const Context& ctx, const Track& t);

  // The pass counted `t` (client_side was true): the snapshots from its first to its last
  // sample join those of its local port.
  void counted(const Track& t);

  // True when a listener was seen on `t`'s local port in its netns.
  bool listening(const Track& t) const;

  // A sample read back from its file, of a client-side socket on a port that a listener used.
  struct Late {
    uint32_t snap = 0;            // in the pass's timeline
    const Track& socket;          // in the pass's terms (netns, addresses), without samples
    const Sample& sample;         // the socket in `snap`
    std::vector<uint32_t> owners; // of `sample`, as indices into the timeline's procs
  };

  // Reads back the snapshots of the sockets counted on a port that a listener used (ports in
  // order, each one's snapshots from the first to the last of its counted sockets) and calls
  // `take_out` for each client-side sample there (TCP, with a remote end), but those of the
  // sockets client_side said no to: what the pass added, when its rule counts that sample.
  void take_out_late(const Context& ctx, const std::function<void(const Late&)>& take_out) const;

  // For tests: how many times the timeline's tracks were looked through for listeners.
  size_t looks() const { return m_looks; }

private:
  // A socket client_side said no to on a port with counted sockets: its addresses (no two
  // sockets hold the same ones in one snapshot of a netns, so they name it within its
  // snapshots) and its snapshots.
  struct Uncounted {
    uint32_t local_addr = 0;
    uint32_t remote_addr = 0;
    uint32_t first = 0; // snapshots of its first and last sample
    uint32_t last = 0;
    uint16_t remote_port = 0;
  };

  // The snapshots of the first and last sample of the sockets counted on a port.
  struct Span {
    uint32_t first = 0;
    uint32_t last = 0;
  };

  void see_listeners(const Timeline& tl, const Track& t);

  // (netns << 16 | port) of every listening port seen: the sockets given to client_side and
  // those in the timeline.
  std::unordered_set<uint64_t> m_listening;
  // When the timeline's tracks were last looked through: the snapshot after the latest one
  // with a sample then, and how many tracks there were.
  size_t m_snaps_seen = 0;
  size_t m_tracks_seen = 0;
  size_t m_looks = 0;
  // (netns << 16 | local port) of the ports with counted sockets -> their snapshots.
  std::unordered_map<uint64_t, Span> m_counted;
  // Those ports -> their sockets not counted that share some of those snapshots (once a port is
  // known to listen, no more of its sockets are counted: its span stays).
  std::unordered_map<uint64_t, std::vector<Uncounted>> m_uncounted;
};

} // namespace sockrewind::analyze
