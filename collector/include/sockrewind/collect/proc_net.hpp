#pragma once
// Parsers for /proc/net socket tables. Pure functions over the file's text: no I/O.
// Every malformed row becomes an Issue (kind "bad_row", example = the row), never a crash.
// Rows the kernel printed twice (non-atomic seq_file reads) are dropped with kind "duplicate".

#include <sockrewind/collect/model.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace sockrewind::collect {

// /proc/net/{tcp,tcp6,udp,udp6,udplite,udplite6,raw,raw6}. `family` is k_af_inet or
// k_af_inet6, `proto` the k_ipproto_* of the table. `source` names the table in issues
// (e.g. "proc:tcp6"). `host_little_endian` is the byte order of the host that produced the
// text (addresses are printed as host-order 32-bit words).
Parsed<SocketRow> parse_proc_net_inet(std::string_view text,
                                      uint8_t family,
                                      uint16_t proto,
                                      std::string_view source,
                                      bool host_little_endian = true);

// /proc/net/unix. Embryo connections (St 02, inode 0) are kept: unix_diag omits them.
Parsed<SocketRow> parse_proc_net_unix(std::string_view text);

// Small text helpers shared by the /proc parsers (proc_net.cpp, counters.cpp).
namespace text {

// Removes the first line from `rest` and returns it without its '\n' (the last line may lack one).
std::string_view next_line(std::string_view& rest);

// The fields of `line` separated by runs of blanks (space, tab, CR, LF, VT, FF).
std::vector<std::string_view> split_fields(std::string_view line);

// `raw` made fit for Issue::example: control bytes (incl. NUL) escaped as \xNN, cut to about
// 200 bytes with "..." appended when longer.
std::string issue_example(std::string_view raw);

} // namespace text

} // namespace sockrewind::collect
