// A track's samples packed while the track is open, so that a long-lived socket costs a few
// bytes a snapshot rather than sizeof(Sample): each sample is written as what changed since the
// one before it (most of an idle pooled connection's fields never change). The load packs open
// tracks when it streams them to a TrackObserver (report) and unpacks a track when it closes.
#pragma once

#include <sockrewind/analyze/series.hpp>

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sockrewind::analyze {

// Unsigned LEB128: 7 bits a byte, low bits first. Writes at most 10 bytes at `out` and returns
// the end of what it wrote.
uint8_t* put_varint(uint8_t* out, uint64_t v);
// The same, appended to `out`.
void put_varint(std::vector<uint8_t>& out, uint64_t v);
// Reads the varint at `i` and moves `i` past it (`in` holds a whole one there).
uint64_t get_varint(const std::vector<uint8_t>& in, size_t& i);

// Samples in order, each stored as its differences from the one before (the first from a
// default Sample): per sample a varint of the zigzagged snapshot distance, a varint bit mask of
// the fields that differ, and per such field a varint of the zigzagged difference.
class PackedSamples {
public:
  void push(const Sample& x);
  // Every sample pushed, in order.
  std::vector<Sample> unpack() const;
  // Appends every sample pushed to `out`.
  void unpack_into(std::vector<Sample>& out) const;

  size_t size() const { return m_count; }

  // Bytes the samples take packed (the buffer holding them grows by half when full).
  size_t bytes() const { return m_bytes.size(); }

  // The last sample pushed (a default Sample when none was).
  const Sample& last() const { return m_last; }

private:
  std::vector<uint8_t> m_bytes;
  Sample m_last;
  size_t m_count = 0;
};

} // namespace sockrewind::analyze
