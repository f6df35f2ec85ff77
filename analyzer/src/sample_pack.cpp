#include <sockrewind/analyze/sample_pack.hpp>
#include <sockrewind/assert.hpp>

#include <array>
#include <cstddef>
#include <type_traits>

namespace sockrewind::analyze {

namespace {

// Every field of Sample but `snap`, those an idle connection changes first (its time-relative
// fields), then those a busy one changes, so that the usual mask fits in one varint byte.
// A field added to Sample is added here (the size check below is the reminder).
template <class A, class B, class F> void each_field(A& a, B& b, F f) {
  f(a.last_data_recv_ms, b.last_data_recv_ms);
  f(a.last_ack_recv_ms, b.last_ack_recv_ms);
  f(a.bytes_acked, b.bytes_acked);
  f(a.bytes_received, b.bytes_received);
  f(a.segs_out, b.segs_out);
  f(a.snd_wnd, b.snd_wnd);
  f(a.rx_queue, b.rx_queue);
  f(a.tx_queue, b.tx_queue);
  f(a.rmem_alloc, b.rmem_alloc);
  f(a.wmem_queued, b.wmem_queued);
  f(a.timer, b.timer);
  f(a.retrans, b.retrans);
  f(a.probes, b.probes);
  f(a.backoff, b.backoff);
  f(a.total_retrans, b.total_retrans);
  f(a.state, b.state);
  f(a.inode, b.inode);
  f(a.owner, b.owner);
  f(a.owner_set, b.owner_set);
  f(a.rcvbuf, b.rcvbuf);
  f(a.sndbuf, b.sndbuf);
  f(a.drops, b.drops);
}

// The last field ends at byte 85 (then padding): a field added anywhere moves it.
static_assert(offsetof(Sample, backoff) == 84 && sizeof(Sample) == 88,
              "a field added to Sample is packed in each_field");

// Differences are taken modulo 2^64 and read as signed, so that any two values of one unsigned
// field give a difference that adds back to the exact value (truncated to the field's width).
uint64_t zigzag(uint64_t d) {
  return (d << 1U) ^ (0 - (d >> 63U));
}

uint64_t unzigzag(uint64_t z) {
  return (z >> 1U) ^ (0 - (z & 1U));
}

} // namespace

uint8_t* put_varint(uint8_t* out, uint64_t v) {
  while (v >= 0x80) {
    *out++ = static_cast<uint8_t>(v | 0x80U);
    v >>= 7U;
  }
  *out++ = static_cast<uint8_t>(v);
  return out;
}

void put_varint(std::vector<uint8_t>& out, uint64_t v) {
  std::array<uint8_t, 10> buf{};
  uint8_t* end = put_varint(buf.data(), v);
  out.insert(out.end(), buf.data(), end);
}

uint64_t get_varint(const std::vector<uint8_t>& in, size_t& i) {
  uint64_t v = 0;
  for (unsigned shift = 0;; shift += 7) {
    SR_ASSERT(i < in.size());
    const uint8_t b = in[i++];
    v |= static_cast<uint64_t>(b & 0x7FU) << shift;
    if ((b & 0x80U) == 0) {
      return v;
    }
  }
}

void PackedSamples::push(const Sample& x) {
  // At most two varints and 22 differences of 10 bytes each.
  std::array<uint8_t, size_t{24} * 10> buf{};
  uint8_t* out = put_varint(
      buf.data(), zigzag(static_cast<uint64_t>(x.snap) - static_cast<uint64_t>(m_last.snap)));
  uint64_t mask = 0;
  std::array<uint64_t, 22> diff{};
  unsigned n = 0;
  unsigned bit = 0;
  each_field(x, m_last, [&](const auto& now, const auto& before) {
    if (now != before) {
      mask |= uint64_t{1} << bit;
      diff[n++] = zigzag(static_cast<uint64_t>(now) - static_cast<uint64_t>(before));
    }
    ++bit;
  });
  out = put_varint(out, mask);
  for (unsigned k = 0; k < n; ++k) {
    out = put_varint(out, diff[k]);
  }
  const auto len = static_cast<size_t>(out - buf.data());
  if (m_bytes.capacity() - m_bytes.size() < len) {
    m_bytes.reserve(m_bytes.size() + m_bytes.size() / 2 + len); // by half, not doubling
  }
  m_bytes.insert(m_bytes.end(), buf.data(), out);
  m_last = x;
  ++m_count;
}

void PackedSamples::unpack_into(std::vector<Sample>& out) const {
  out.reserve(out.size() + m_count);
  Sample x;
  size_t i = 0;
  for (size_t k = 0; k < m_count; ++k) {
    x.snap = static_cast<uint32_t>(x.snap + unzigzag(get_varint(m_bytes, i)));
    const uint64_t mask = get_varint(m_bytes, i);
    unsigned bit = 0;
    Sample unused;
    each_field(x, unused, [&](auto& field, const auto& /*other*/) {
      if ((mask >> bit & 1U) != 0) {
        using T = std::remove_reference_t<decltype(field)>;
        field = static_cast<T>(static_cast<uint64_t>(field) + unzigzag(get_varint(m_bytes, i)));
      }
      ++bit;
    });
    out.push_back(x);
  }
}

std::vector<Sample> PackedSamples::unpack() const {
  std::vector<Sample> out;
  unpack_into(out);
  return out;
}

} // namespace sockrewind::analyze
