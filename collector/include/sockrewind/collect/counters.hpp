#pragma once
// Parsers for kernel counter files and /proc/[pid]/stat. Pure functions over text.

#include <sockrewind/collect/model.hpp>

#include <optional>
#include <string_view>

namespace sockrewind::collect {

// /proc/net/netstat and /proc/net/snmp: pairs of "Group: Name1 Name2" / "Group: v1 v2" lines,
// zipped by name (column sets differ between kernels). Rows are named "Group.Name".
// `file` is "netstat" or "snmp".
Parsed<CounterRow> parse_proc_net_pairs(std::string_view text, std::string_view file);

// /proc/net/snmp6: one "Name value" per line. Rows are named as in the file.
Parsed<CounterRow> parse_proc_net_snmp6(std::string_view text);

// /proc/net/sockstat and sockstat6: "GROUP: key value key value" lines. Rows are named
// "GROUP.key" (e.g. "TCP.inuse", "sockets.used", "TCP6.inuse"). `file` is the file name.
Parsed<CounterRow> parse_proc_net_sockstat(std::string_view text, std::string_view file);

// /proc/[pid]/stat: comm is everything between the first '(' and the LAST ')'.
// Returns nullopt when the text is not a stat line.
std::optional<ProcStat> parse_proc_pid_stat(std::string_view text);

// The scheduler state to record from a parsed stat line (field 3): the letter itself when it is
// an ASCII letter (R, S, D, T, t, Z, X, I, P, W, K, ...), nullopt otherwise (unknown).
std::optional<char> process_state(const ProcStat& ps);

} // namespace sockrewind::collect
