#include <sockrewind/collect/tcp_info.hpp>

#include <linux/tcp.h>

#include <array>
#include <cstddef>
#include <cstring>

namespace sockrewind::collect {

namespace {

// Offsets follow include/uapi/linux/tcp.h; the static_asserts below check those present in
// this build's headers, the later ones come from the kernel source (6.2: rcv_wnd, rehash;
// 6.7: total_rto*).
constexpr std::array k_fields = {
    TcpInfoField{"state", 0, 1, 0, 0},
    TcpInfoField{"ca_state", 1, 1, 0, 0},
    TcpInfoField{"retransmits", 2, 1, 0, 0},
    TcpInfoField{"probes", 3, 1, 0, 0},
    TcpInfoField{"backoff", 4, 1, 0, 0},
    TcpInfoField{"options", 5, 1, 0, 0},
    TcpInfoField{"snd_wscale", 6, 0, 0, 4},
    TcpInfoField{"rcv_wscale", 6, 0, 4, 4},
    TcpInfoField{"delivery_rate_app_limited", 7, 0, 0, 1},
    TcpInfoField{"fastopen_client_fail", 7, 0, 1, 2},
    TcpInfoField{"rto_us", 8, 4, 0, 0},
    TcpInfoField{"ato_us", 12, 4, 0, 0},
    TcpInfoField{"snd_mss", 16, 4, 0, 0},
    TcpInfoField{"rcv_mss", 20, 4, 0, 0},
    TcpInfoField{"unacked", 24, 4, 0, 0},
    TcpInfoField{"sacked", 28, 4, 0, 0},
    TcpInfoField{"lost", 32, 4, 0, 0},
    TcpInfoField{"retrans", 36, 4, 0, 0},
    TcpInfoField{"fackets", 40, 4, 0, 0},
    TcpInfoField{"last_data_sent_ms", 44, 4, 0, 0},
    TcpInfoField{"last_ack_sent_ms", 48, 4, 0, 0},
    TcpInfoField{"last_data_recv_ms", 52, 4, 0, 0},
    TcpInfoField{"last_ack_recv_ms", 56, 4, 0, 0},
    TcpInfoField{"pmtu", 60, 4, 0, 0},
    TcpInfoField{"rcv_ssthresh", 64, 4, 0, 0},
    TcpInfoField{"rtt_us", 68, 4, 0, 0},
    TcpInfoField{"rttvar_us", 72, 4, 0, 0},
    TcpInfoField{"snd_ssthresh", 76, 4, 0, 0},
    TcpInfoField{"snd_cwnd", 80, 4, 0, 0},
    TcpInfoField{"advmss", 84, 4, 0, 0},
    TcpInfoField{"reordering", 88, 4, 0, 0},
    TcpInfoField{"rcv_rtt_us", 92, 4, 0, 0},
    TcpInfoField{"rcv_space", 96, 4, 0, 0},
    TcpInfoField{"total_retrans", 100, 4, 0, 0},
    TcpInfoField{"pacing_rate", 104, 8, 0, 0},
    TcpInfoField{"max_pacing_rate", 112, 8, 0, 0},
    TcpInfoField{"bytes_acked", 120, 8, 0, 0},
    TcpInfoField{"bytes_received", 128, 8, 0, 0},
    TcpInfoField{"segs_out", 136, 4, 0, 0},
    TcpInfoField{"segs_in", 140, 4, 0, 0},
    TcpInfoField{"notsent_bytes", 144, 4, 0, 0},
    TcpInfoField{"min_rtt_us", 148, 4, 0, 0},
    TcpInfoField{"data_segs_in", 152, 4, 0, 0},
    TcpInfoField{"data_segs_out", 156, 4, 0, 0},
    TcpInfoField{"delivery_rate", 160, 8, 0, 0},
    TcpInfoField{"busy_time_us", 168, 8, 0, 0},
    TcpInfoField{"rwnd_limited_us", 176, 8, 0, 0},
    TcpInfoField{"sndbuf_limited_us", 184, 8, 0, 0},
    TcpInfoField{"delivered", 192, 4, 0, 0},
    TcpInfoField{"delivered_ce", 196, 4, 0, 0},
    TcpInfoField{"bytes_sent", 200, 8, 0, 0},
    TcpInfoField{"bytes_retrans", 208, 8, 0, 0},
    TcpInfoField{"dsack_dups", 216, 4, 0, 0},
    TcpInfoField{"reord_seen", 220, 4, 0, 0},
    TcpInfoField{"rcv_ooopack", 224, 4, 0, 0},
    TcpInfoField{"snd_wnd", 228, 4, 0, 0},
    TcpInfoField{"rcv_wnd", 232, 4, 0, 0},
    TcpInfoField{"rehash", 236, 4, 0, 0},
    TcpInfoField{"total_rto", 240, 2, 0, 0},
    TcpInfoField{"total_rto_recoveries", 242, 2, 0, 0},
    TcpInfoField{"total_rto_time_ms", 244, 4, 0, 0},
};

static_assert(offsetof(tcp_info, tcpi_rto) == 8);
static_assert(offsetof(tcp_info, tcpi_unacked) == 24);
static_assert(offsetof(tcp_info, tcpi_last_ack_recv) == 56);
static_assert(offsetof(tcp_info, tcpi_rtt) == 68);
static_assert(offsetof(tcp_info, tcpi_total_retrans) == 100);
static_assert(offsetof(tcp_info, tcpi_bytes_acked) == 120);
static_assert(offsetof(tcp_info, tcpi_segs_out) == 136);
static_assert(offsetof(tcp_info, tcpi_notsent_bytes) == 144);
static_assert(offsetof(tcp_info, tcpi_delivery_rate) == 160);
static_assert(offsetof(tcp_info, tcpi_busy_time) == 168);
static_assert(offsetof(tcp_info, tcpi_delivered) == 192);
static_assert(offsetof(tcp_info, tcpi_bytes_sent) == 200);
static_assert(offsetof(tcp_info, tcpi_rcv_ooopack) == 224);
static_assert(offsetof(tcp_info, tcpi_snd_wnd) == 228);

constexpr std::array<std::string_view, 15> k_inline = {
    "rto_us",
    "rtt_us",
    "rttvar_us",
    "snd_cwnd",
    "unacked",
    "backoff",
    "probes",
    "total_retrans",
    "last_data_recv_ms",
    "last_ack_recv_ms",
    "bytes_acked",
    "bytes_received",
    "segs_out",
    "notsent_bytes",
    "snd_wnd",
};

std::array<TcpInfoField, k_inline.size()> make_inline() {
  std::array<TcpInfoField, k_inline.size()> out{};
  for (size_t i = 0; i < k_inline.size(); ++i) {
    for (const TcpInfoField& f : k_fields) {
      if (f.column == k_inline[i]) {
        out[i] = f;
      }
    }
  }
  return out;
}

} // namespace

std::span<const TcpInfoField> tcp_info_fields() {
  return k_fields;
}

std::span<const TcpInfoField> tcp_info_inline_fields() {
  static const auto k_inline_fields = make_inline();
  return k_inline_fields;
}

std::optional<uint64_t> read_tcp_info_field(std::span<const uint8_t> info, const TcpInfoField& f) {
  const size_t bytes = f.size == 0 ? 1 : f.size;
  if (static_cast<size_t>(f.offset) + bytes > info.size()) {
    return std::nullopt;
  }
  const uint8_t* p = info.data() + f.offset;
  switch (f.size) {
  case 0:
    return static_cast<uint64_t>((p[0] >> f.shift) & ((1U << f.bits) - 1U));
  case 1:
    return p[0];
  case 2: {
    uint16_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  case 4: {
    uint32_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  default: {
    uint64_t v = 0;
    std::memcpy(&v, p, sizeof v);
    return v;
  }
  }
}

} // namespace sockrewind::collect
