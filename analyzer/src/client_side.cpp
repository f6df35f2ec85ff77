#include <sockrewind/analyze/client_side.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <utility>
#include <vector>

namespace sockrewind::analyze {

namespace {

// The key of a TCP port in a netns (the pass's timeline's netns index).
uint64_t port_key(uint32_t netns, uint16_t port) {
  return static_cast<uint64_t>(netns) << 16U | port;
}

bool listens(const Track& t) {
  return std::any_of(
      t.samples.begin(), t.samples.end(), [](const Sample& x) { return x.state == k_listen; });
}

} // namespace

// Only the samples placed since the last look: the load places files in time order when it
// reports sockets before its end, each file's snapshots at once, so they are those in the
// snapshots after the latest one seen with a sample. The timeline's tracks are looked through
// again only when something may have been placed since: the first snapshot after that one has
// sockets, the tracks are not those of the last look, or `t` has a sample there (an empty
// snapshot has no sockets, whether placed or not). A listener this misses is one the pass is
// given itself, and its port's counted sockets are then taken out at the end: what is seen here
// only spares that read-back, the counts are the same.
void ClientPorts::see_listeners(const Timeline& tl, const Track& t) {
  if (m_snaps_seen >= tl.snaps.size()
      || (tl.snaps[m_snaps_seen].sockets == 0 && tl.tracks.size() == m_tracks_seen
          && (t.samples.empty() || t.samples.back().snap < m_snaps_seen))) {
    return;
  }
  ++m_looks;
  size_t seen = m_snaps_seen;
  for (const Track& u : tl.tracks) {
    if (u.samples.empty()) {
      continue;
    }
    seen = std::max<size_t>(seen, u.samples.back().snap + 1);
    if (u.family == k_af_unix || u.proto != k_proto_tcp) {
      continue;
    }
    for (auto x = u.samples.rbegin(); x != u.samples.rend() && x->snap >= m_snaps_seen; ++x) {
      if (x->state == k_listen) {
        m_listening.insert(port_key(u.netns, u.local_port));
        break;
      }
    }
  }
  m_snaps_seen = seen;
  m_tracks_seen = tl.tracks.size();
}

bool ClientPorts::client_side(const Context& ctx, const Track& t) {
  if (t.family == k_af_unix || t.proto != k_proto_tcp) {
    return false;
  }
  see_listeners(ctx.timeline(), t);
  const uint64_t pk = port_key(t.netns, t.local_port);
  if (listens(t)) {
    m_listening.insert(pk);
  }
  if (t.remote_port == 0 || t.remote_addr == k_na) {
    return false;
  }
  if (!m_listening.contains(pk)) {
    return true;
  }
  const auto it = m_counted.find(pk);
  if (it != m_counted.end() && !t.samples.empty() && t.samples.front().snap <= it->second.last
      && t.samples.back().snap >= it->second.first) {
    m_uncounted[pk].push_back({t.local_addr,
                               t.remote_addr,
                               t.samples.front().snap,
                               t.samples.back().snap,
                               t.remote_port});
  }
  return false;
}

void ClientPorts::counted(const Track& t) {
  const uint32_t first = t.samples.front().snap;
  const uint32_t last = t.samples.back().snap;
  const auto [it, fresh] = m_counted.try_emplace(port_key(t.netns, t.local_port));
  it->second.first = fresh ? first : std::min(it->second.first, first);
  it->second.last = fresh ? last : std::max(it->second.last, last);
}

bool ClientPorts::listening(const Track& t) const {
  return m_listening.contains(port_key(t.netns, t.local_port));
}

void ClientPorts::take_out_late(const Context& ctx,
                                const std::function<void(const Late&)>& take_out) const {
  std::vector<uint64_t> late;
  for (const auto& [pk, span] : m_counted) {
    if (m_listening.contains(pk)) {
      late.push_back(pk);
    }
  }
  if (late.empty()) {
    return;
  }
  std::sort(late.begin(), late.end());
  const Series& series = ctx.series();
  const Timeline& tl = ctx.timeline();
  std::map<std::pair<int32_t, uint64_t>, uint32_t> procs; // (pid, start_ticks) -> index
  for (uint32_t i = 0; i < tl.procs.size(); ++i) {
    procs.emplace(std::make_pair(tl.procs[i].pid, tl.procs[i].start_ticks), i);
  }
  for (const uint64_t pk : late) {
    const auto ns = static_cast<uint32_t>(pk >> 16U);
    const auto port = static_cast<uint16_t>(pk & 0xffffU);
    const Span& span = m_counted.at(pk);
    const auto found = m_uncounted.find(pk);
    const std::vector<Uncounted> none;
    const std::vector<Uncounted>& skip = found == m_uncounted.end() ? none : found->second;
    // Read back a batch of snapshots at a time (one read per file, bounded memory).
    constexpr uint32_t k_batch = 256;
    std::vector<uint32_t> snaps;
    std::vector<Context::SnapshotSockets> backs;
    SocketFilter filter;
    filter.port = port;
    for (uint32_t snap = span.first; snap <= span.last; ++snap) {
      if (snaps.empty() || snap > snaps.back()) {
        snaps.clear();
        for (uint64_t s = snap; s <= span.last && snaps.size() < k_batch; ++s) {
          snaps.push_back(static_cast<uint32_t>(s));
        }
        backs = ctx.read_snapshots(snaps, filter);
      }
      const Context::SnapshotSockets& back = backs[snap - snaps.front()];
      const Timeline& btl = back.tl();
      for (const Track& bt : btl.tracks) {
        const Sample* x = sample_at(bt, back.snap);
        if (x == nullptr || bt.family == k_af_unix || bt.proto != k_proto_tcp
            || bt.local_port != port || bt.remote_port == 0 || bt.remote_addr == k_na
            || btl.netns[bt.netns].inode != tl.netns[ns].inode) {
          continue;
        }
        Track at; // bt in the terms of this timeline
        at.netns = ns;
        at.family = bt.family;
        at.type = bt.type;
        at.proto = bt.proto;
        at.local_addr = series.strings.find(back.series.strings.get(bt.local_addr));
        at.remote_addr = series.strings.find(back.series.strings.get(bt.remote_addr));
        at.local_port = bt.local_port;
        at.remote_port = bt.remote_port;
        at.cookie = bt.cookie;
        const bool uncounted = std::any_of(skip.begin(), skip.end(), [&](const Uncounted& u) {
          return u.local_addr == at.local_addr && u.remote_addr == at.remote_addr
                 && u.remote_port == at.remote_port && snap >= u.first && snap <= u.last;
        });
        if (uncounted) {
          continue;
        }
        Late l{snap, at, *x, {}};
        for (const uint32_t bo : owners_of(btl, *x)) {
          const Process& bp = btl.procs[bo];
          const auto o = procs.find({bp.pid, bp.start_ticks});
          if (o != procs.end()) {
            l.owners.push_back(o->second);
          }
        }
        take_out(l);
      }
    }
  }
}

} // namespace sockrewind::analyze
