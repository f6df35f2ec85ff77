#include <sockrewind/collect/proc_net.hpp>

#include <algorithm>
#include <charconv>
#include <limits>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

namespace sockrewind::collect {

namespace text {

namespace {

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

} // namespace

std::string_view next_line(std::string_view& rest) {
  const size_t nl = rest.find('\n');
  const std::string_view line = rest.substr(0, nl);
  rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
  return line;
}

std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) {
      ++i;
    }
    size_t j = i;
    while (j < line.size() && !is_blank(line[j])) {
      ++j;
    }
    if (j > i) {
      out.push_back(line.substr(i, j - i));
    }
    i = j;
  }
  return out;
}

std::string issue_example(std::string_view raw) {
  constexpr size_t k_max = 200;
  constexpr std::string_view k_hex = "0123456789abcdef";
  std::string out;
  for (const char c : raw) {
    if (out.size() >= k_max) {
      out += "...";
      break;
    }
    const auto b = static_cast<unsigned char>(c);
    if (b < 0x20 || b == 0x7f) {
      out += "\\x";
      out += k_hex[b >> 4U];
      out += k_hex[b & 0xfU];
    } else {
      out += c;
    }
  }
  return out;
}

} // namespace text

namespace {

constexpr uint8_t k_tcp_state_max = 12;        // TCP_NEW_SYN_RECV; /proc never prints more
constexpr uint32_t k_so_acceptcon = 1U << 16U; // __SO_ACCEPTCON in /proc/net/unix Flags
constexpr uint8_t k_ss_unconnected = 1;
constexpr uint8_t k_ss_connecting = 2;
constexpr uint8_t k_ss_connected = 3;
constexpr uint8_t k_ss_disconnecting = 4;

// The whole of `s` as a number in `base`; nullopt when empty, out of range or not all digits
// (from_chars takes no sign for unsigned types, no blanks and no "0x").
template <typename T> std::optional<T> parse_num(std::string_view s, int base = 10) {
  T v{};
  const char* end = s.data() + s.size();
  const auto [p, ec] = std::from_chars(s.data(), end, v, base);
  if (s.empty() || ec != std::errc{} || p != end) {
    return std::nullopt;
  }
  return v;
}

// "a:b" split at the first ':'.
std::optional<std::pair<std::string_view, std::string_view>> split_colon(std::string_view s) {
  const size_t pos = s.find(':');
  if (pos == std::string_view::npos) {
    return std::nullopt;
  }
  return std::pair{s.substr(0, pos), s.substr(pos + 1)};
}

bool blank_line(std::string_view line) {
  return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

// Decodes "ADDR:PORT" of /proc/net/{tcp,udp,raw}[6]. The kernel prints the address as
// 32-bit words with %08X (the __be32, or each s6_addr32[i]), i.e. the memory bytes read as a
// host-order integer: on little-endian hosts 127.0.0.1 prints 0100007F. Writing each word
// back in the producing host's byte order restores network order. The port is plain hex.
bool parse_endpoint(std::string_view tok,
                    uint8_t addr_len,
                    bool host_le,
                    std::array<uint8_t, 16>& addr,
                    uint16_t& port) {
  const auto parts = split_colon(tok);
  if (!parts || parts->first.size() != size_t{addr_len} * 2) {
    return false;
  }
  for (size_t w = 0; w < addr_len / 4U; ++w) {
    const auto word = parse_num<uint32_t>(parts->first.substr(w * 8, 8), 16);
    if (!word) {
      return false;
    }
    for (size_t b = 0; b < 4; ++b) {
      const size_t shift = 8 * (host_le ? b : 3 - b);
      addr[w * 4 + b] = static_cast<uint8_t>(*word >> shift);
    }
  }
  const auto p = parse_num<uint16_t>(parts->second, 16);
  if (!p) {
    return false;
  }
  port = *p;
  return true;
}

struct InetTable {
  uint8_t family;
  uint16_t proto;
  uint8_t addr_len;
  bool host_le;
  bool has_drops; // header ends with "ref pointer drops" (udp/raw since 2.6.2x)
};

// One row of an inet table, or nullopt when malformed. Columns are counted, not assumed:
// every kernel prints sl..inode, ref and pointer (12 fields); full TCP sockets add rto, ato,
// qack, cwnd, ssthresh (17), TIME_WAIT and SYN_RECV rows stop after pointer, udp/raw add
// drops.
std::optional<SocketRow> parse_inet_row(std::string_view line, const InetTable& t) {
  const auto f = text::split_fields(line);
  if (f.size() < 12 || f[0].back() != ':'
      || !parse_num<uint32_t>(f[0].substr(0, f[0].size() - 1))) {
    return std::nullopt;
  }
  SocketRow r;
  r.family = t.family;
  r.proto = t.proto;
  r.addr_len = t.addr_len;
  r.type = t.proto == k_ipproto_tcp   ? k_sock_stream
           : t.proto == k_ipproto_raw ? k_sock_raw
                                      : k_sock_dgram;
  if (!parse_endpoint(f[1], t.addr_len, t.host_le, r.local_addr, r.local_port)
      || !parse_endpoint(f[2], t.addr_len, t.host_le, r.remote_addr, r.remote_port)) {
    return std::nullopt;
  }
  const auto state = parse_num<uint8_t>(f[3], 16);
  const auto queues = split_colon(f[4]);
  const auto timer = split_colon(f[5]);
  if (!state || *state < 1 || *state > k_tcp_state_max || !queues || !timer) {
    return std::nullopt;
  }
  const auto tx = parse_num<uint32_t>(queues->first, 16);
  const auto rx = parse_num<uint32_t>(queues->second, 16);
  const auto tr = parse_num<uint8_t>(timer->first, 16);
  const auto when = parse_num<uint64_t>(timer->second, 16); // %08lX: clock_t, 1/100 s
  const auto retrans = parse_num<uint32_t>(f[6], 16);       // hex, unlike its neighbours
  const auto uid = parse_num<uint32_t>(f[7]);
  const auto probes = parse_num<int32_t>(f[8]); // "timeout" is icsk_probes_out; not kept
  const auto inode = parse_num<uint64_t>(f[9]);
  if (!tx || !rx || !tr || !when || !retrans || !uid || !probes || !inode) {
    return std::nullopt;
  }
  r.state = *state;
  r.rx_queue = *rx;
  // LISTEN: rx_queue is the accept queue; tx_queue is a meaningless 0 (the backlog limit is
  // only in sock_diag), so it stays NULL.
  if (!(t.proto == k_ipproto_tcp && r.state == k_tcp_listen)) {
    r.tx_queue = *tx;
  }
  r.timer = *tr;
  constexpr uint64_t k_max_ms = std::numeric_limits<uint32_t>::max();
  r.expires_ms = static_cast<uint32_t>(std::min(*when, k_max_ms / 10) * 10);
  r.retrans = *retrans;
  r.uid = *uid;
  r.inode = *inode;
  if (t.has_drops && t.proto != k_ipproto_tcp) {
    const auto drops = f.size() > 12 ? parse_num<uint32_t>(f[12]) : std::nullopt;
    if (!drops) {
      return std::nullopt;
    }
    r.drops = *drops;
  }
  return r;
}

using InetKey = std::
    tuple<uint64_t, std::array<uint8_t, 16>, uint16_t, std::array<uint8_t, 16>, uint16_t, uint8_t>;

// Maps /proc/net/unix "Type" to k_sock_*; 0 when unknown.
uint8_t unix_type(uint16_t type) {
  switch (type) {
  case k_sock_stream:
  case k_sock_dgram:
  case k_sock_seqpacket:
    return static_cast<uint8_t>(type);
  default:
    return 0;
  }
}

// Maps the socket-layer St (and the ACCEPTCON flag) to TCP state numbers as unix_diag
// reports sk_state. St 02/04 are printed for sockets without a file: 02 when established
// (an embryo in a listener's accept queue), 04 otherwise. 0 when St is unknown.
uint8_t unix_state(uint32_t flags, uint8_t st) {
  if ((flags & k_so_acceptcon) != 0) {
    return k_tcp_listen;
  }
  switch (st) {
  case k_ss_connected:
  case k_ss_connecting:
    return k_tcp_established;
  case k_ss_unconnected:
  case k_ss_disconnecting:
    return k_tcp_close;
  default:
    return 0;
  }
}

// Removes and returns the next space/tab-separated field of `rest`; the separator after it
// stays in `rest`.
std::string_view pop_field(std::string_view& rest) {
  const size_t begin = rest.find_first_not_of(" \t");
  if (begin == std::string_view::npos) {
    rest = {};
    return {};
  }
  rest.remove_prefix(begin);
  const std::string_view field = rest.substr(0, rest.find_first_of(" \t"));
  rest.remove_prefix(field.size());
  return field;
}

struct UnixRow {
  SocketRow row;
  uint64_t pointer = 0; // the Num column (%pK): 0 when kptr_restrict hides it
};

// One /proc/net/unix row: "%pK: %08X %08X %08X %04X %02X %5lu" then " path" when bound.
// The path is raw bytes to the end of the line (spaces allowed); 2.6.18 printed abstract
// names with their NUL padding, modern kernels print each NUL as '@', so NULs become '@'.
std::optional<UnixRow> parse_unix_row(std::string_view line) {
  std::string_view rest = line;
  const std::string_view num = pop_field(rest);
  if (num.size() < 2 || num.back() != ':') {
    return std::nullopt;
  }
  const auto pointer = parse_num<uint64_t>(num.substr(0, num.size() - 1), 16);
  const auto refcount = parse_num<uint32_t>(pop_field(rest), 16);
  const auto protocol = parse_num<uint32_t>(pop_field(rest), 16);
  const auto flags = parse_num<uint32_t>(pop_field(rest), 16);
  const auto type = parse_num<uint16_t>(pop_field(rest), 16);
  const auto st = parse_num<uint8_t>(pop_field(rest), 16);
  const auto inode = parse_num<uint64_t>(pop_field(rest));
  if (!pointer || !refcount || !protocol || !flags || !type || !st || !inode) {
    return std::nullopt;
  }
  UnixRow u;
  u.pointer = *pointer;
  SocketRow& r = u.row;
  r.family = k_af_unix;
  r.type = unix_type(*type);
  r.state = unix_state(*flags, *st);
  if (r.type == 0 || r.state == 0) {
    return std::nullopt;
  }
  r.inode = *inode;
  if (rest.size() > 1) { // rest is " path"
    std::string path(rest.substr(1));
    std::replace(path.begin(), path.end(), '\0', '@');
    r.path = std::move(path);
  }
  return u;
}

} // namespace

Parsed<SocketRow> parse_proc_net_inet(std::string_view text,
                                      uint8_t family,
                                      uint16_t proto,
                                      std::string_view source,
                                      bool host_little_endian) {
  Parsed<SocketRow> out;
  if (text.empty()) {
    return out;
  }
  const std::string src(source);
  if (family != k_af_inet && family != k_af_inet6) {
    out.issues.push_back({src, "bad_argument", "address family " + std::to_string(family)});
    return out;
  }
  std::string_view rest = text;
  const std::string_view header_line = text::next_line(rest);
  const auto header = text::split_fields(header_line);
  // Header words differ (rem_address / remote_address, with or without ref pointer drops) but
  // every kernel starts with "sl local_address" and has the columns up to "inode".
  const auto has_word = [&header](std::string_view w) {
    return std::find(header.begin(), header.end(), w) != header.end();
  };
  if (header.size() < 2 || header[0] != "sl" || header[1] != "local_address"
      || !has_word("inode")) {
    out.issues.push_back({src, "bad_header", text::issue_example(header_line)});
    return out;
  }
  const InetTable table{family,
                        proto,
                        family == k_af_inet ? uint8_t{4} : uint8_t{16},
                        host_little_endian,
                        has_word("drops")};
  // Rows the seq_file walk printed twice. Sockets with a file are identified by inode; inode-0
  // rows (TIME_WAIT, SYN_RECV, accept queue) by their 4-tuple and state.
  std::set<InetKey> seen;
  while (!rest.empty()) {
    const std::string_view line = text::next_line(rest);
    if (blank_line(line)) {
      continue;
    }
    auto row = parse_inet_row(line, table);
    if (!row) {
      out.issues.push_back({src, "bad_row", text::issue_example(line)});
      continue;
    }
    if (!seen.emplace(row->inode,
                      row->local_addr,
                      row->local_port,
                      row->remote_addr,
                      row->remote_port,
                      row->state)
             .second) {
      out.issues.push_back({src, "duplicate", text::issue_example(line)});
      continue;
    }
    out.rows.push_back(std::move(*row));
  }
  return out;
}

Parsed<SocketRow> parse_proc_net_unix(std::string_view text) {
  Parsed<SocketRow> out;
  if (text.empty()) {
    return out;
  }
  const std::string src = "proc:unix";
  std::string_view rest = text;
  const std::string_view header_line = text::next_line(rest);
  const auto header = text::split_fields(header_line);
  // Pre-2.6 kernels had no Inode column; without it rows cannot be joined to anything.
  constexpr std::array<std::string_view, 7> k_header = {
      "Num", "RefCount", "Protocol", "Flags", "Type", "St", "Inode"};
  if (header.size() < k_header.size()
      || !std::equal(k_header.begin(), k_header.end(), header.begin())) {
    out.issues.push_back({src, "bad_header", text::issue_example(header_line)});
    return out;
  }
  // Dedupe by inode; inode-0 embryos only by their Num pointer, and not at all when
  // kptr_restrict zeroes it (distinct embryos of one listener print identical rows).
  std::set<std::pair<bool, uint64_t>> seen;
  while (!rest.empty()) {
    const std::string_view line = text::next_line(rest);
    if (blank_line(line)) {
      continue;
    }
    auto u = parse_unix_row(line);
    if (!u) {
      out.issues.push_back({src, "bad_row", text::issue_example(line)});
      continue;
    }
    const bool by_inode = u->row.inode != 0;
    if ((by_inode || u->pointer != 0)
        && !seen.emplace(by_inode, by_inode ? u->row.inode : u->pointer).second) {
      out.issues.push_back({src, "duplicate", text::issue_example(line)});
      continue;
    }
    out.rows.push_back(std::move(u->row));
  }
  return out;
}

} // namespace sockrewind::collect
