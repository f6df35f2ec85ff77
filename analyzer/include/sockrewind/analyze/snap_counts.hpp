// A count (or a few counts) per snapshot for one subject of a pass, kept for the whole series.
// A std::map<uint32_t, T> spends a node (~48 bytes) per snapshot; this keeps sorted
// (snapshot, value) pairs while they are few and far between, and switches to one value per
// snapshot from the first to the last one seen once that is the smaller of the two. A value
// equal to T{} is the same as no value: reading skips it, so a count taken back down to zero
// reads as absent, as an erased map entry would.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace sockrewind::analyze {

template <typename T> class SnapCounts {
public:
  // The value at `snap`, T{} when it had none. The reference lasts until the next call.
  T& operator[](uint32_t snap) {
    if (m_dense && far_out(snap)) {
      to_sparse();
    }
    if (!m_dense) {
      const auto it = lower(snap);
      if (it != m_sparse.end() && it->first == snap) {
        return it->second;
      }
      if (!worth_dense(snap)) {
        return m_sparse.insert(it, {snap, T{}})->second;
      }
      to_dense();
    }
    cover(snap);
    return m_values[snap - m_first];
  }

  // The value at `snap`, or nullptr when it has none (the value may also be T{}).
  T* find(uint32_t snap) { return find_in(*this, snap); }

  const T* find(uint32_t snap) const { return find_in(*this, snap); }

  // The value at `snap`, T{} when it has none.
  T at(uint32_t snap) const {
    const T* v = find(snap);
    return v == nullptr ? T{} : *v;
  }

  // f(snapshot, value) for each value other than T{}, by snapshot.
  template <typename F> void for_each(const F& f) const {
    if (!m_dense) {
      for (const auto& [snap, v] : m_sparse) {
        if (!(v == T{})) {
          f(snap, v);
        }
      }
      return;
    }
    for (size_t i = 0; i < m_values.size(); ++i) {
      if (!(m_values[i] == T{})) {
        f(static_cast<uint32_t>(m_first + i), m_values[i]);
      }
    }
  }

  // Values other than T{}.
  size_t size() const {
    size_t n = 0;
    for_each([&n](uint32_t /*snap*/, const T& /*v*/) { ++n; });
    return n;
  }

  bool dense() const { return m_dense; }

private:
  using Pair = std::pair<uint32_t, T>;

  template <typename Self> static auto* find_in(Self& self, uint32_t snap) {
    if (!self.m_dense) {
      const auto it = std::lower_bound(self.m_sparse.begin(),
                                       self.m_sparse.end(),
                                       snap,
                                       [](const Pair& p, uint32_t s) { return p.first < s; });
      return it != self.m_sparse.end() && it->first == snap ? &it->second : nullptr;
    }
    return snap >= self.m_first && snap - self.m_first < self.m_values.size()
               ? &self.m_values[snap - self.m_first]
               : nullptr;
  }

  typename std::vector<Pair>::iterator lower(uint32_t snap) {
    return std::lower_bound(m_sparse.begin(), m_sparse.end(), snap, [](const Pair& p, uint32_t s) {
      return p.first < s;
    });
  }

  // Would one value per snapshot over the span take no more room than the pairs, `snap` added?
  bool worth_dense(uint32_t snap) const {
    if (m_sparse.empty()) {
      return false;
    }
    const uint64_t lo = std::min(snap, m_sparse.front().first);
    const uint64_t hi = std::max(snap, m_sparse.back().first);
    return (hi - lo + 1) * sizeof(T) <= (m_sparse.size() + 1) * sizeof(Pair);
  }

  // Dense, and `snap` would stretch the span well past the values (other than T{}) it holds:
  // more than twice the room of the pairs. Looked at on a jump of 16 snapshots or a sixteenth
  // of the span, so that smaller steps cost nothing (they leave at most 15 empty in 16).
  bool far_out(uint32_t snap) const {
    const uint64_t lo = std::min<uint64_t>(snap, m_first);
    const uint64_t hi = std::max<uint64_t>(snap, m_first + m_values.size() - 1);
    const uint64_t span = hi - lo + 1;
    const uint64_t jump = span - m_values.size();
    if (jump < 16 && jump * 16 <= m_values.size()) {
      return false;
    }
    return span * sizeof(T) > 2 * (size() + 1) * sizeof(Pair);
  }

  void to_sparse() {
    for_each([this](uint32_t snap, const T& v) { m_sparse.emplace_back(snap, v); });
    m_dense = false;
    std::vector<T>().swap(m_values);
  }

  void to_dense() {
    m_dense = true;
    m_first = m_sparse.front().first;
    m_values.assign(m_sparse.back().first - m_first + 1, T{});
    for (const auto& [snap, v] : m_sparse) {
      m_values[snap - m_first] = v;
    }
    std::vector<Pair>().swap(m_sparse);
  }

  // Grow the dense span to hold `snap`: at the back by half its room when full, not doubling; at
  // the front by at least half the span (down to snapshot 0), so that sockets coming in from
  // ever earlier snapshots stay linear.
  void cover(uint32_t snap) {
    if (snap < m_first) {
      const size_t need = m_first - snap;
      const size_t grow = std::min<size_t>(m_first, std::max(need, m_values.size() / 2));
      m_values.insert(m_values.begin(), grow, T{});
      m_first -= static_cast<uint32_t>(grow);
    } else if (snap - m_first >= m_values.size()) {
      const size_t n = static_cast<size_t>(snap - m_first) + 1;
      if (n > m_values.capacity()) {
        m_values.reserve(std::max(n, m_values.size() + m_values.size() / 2)); // by half
      }
      m_values.resize(n, T{});
    }
  }

  bool m_dense = false;
  uint32_t m_first = 0;       // dense: snapshot of m_values[0]
  std::vector<T> m_values;    // dense: the value of each snapshot from m_first on
  std::vector<Pair> m_sparse; // sparse: (snapshot, value), by snapshot
};

} // namespace sockrewind::analyze
