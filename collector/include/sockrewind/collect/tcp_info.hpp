#pragma once
// struct tcp_info, described as data: column name, offset, size. Fields beyond the length the
// running kernel returned read as "absent" (NULL), so older and newer kernels both work.

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace sockrewind::collect {

struct TcpInfoField {
  std::string_view column; // column name in the tcp_info table
  uint16_t offset;         // byte offset in struct tcp_info
  uint8_t size;            // 1, 2, 4 or 8 bytes; 0 = a 4-bit/1-bit/2-bit field (see bits)
  uint8_t shift;           // for bitfields: bit position in the byte at `offset`
  uint8_t bits;            // for bitfields: width
};

// Every field of struct tcp_info up to total_rto_time (Linux 6.7), in table column order.
std::span<const TcpInfoField> tcp_info_fields();

// Reads field `f` from `info` (kernel byte order = host order), or nullopt when `info` is too
// short to contain it.
std::optional<uint64_t> read_tcp_info_field(std::span<const uint8_t> info, const TcpInfoField& f);

// The fields stored inline in the sockets table (ti_* columns), in column order.
std::span<const TcpInfoField> tcp_info_inline_fields();

} // namespace sockrewind::collect
