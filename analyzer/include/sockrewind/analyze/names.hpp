#pragma once
// Names as ss prints them: TCP states (parsed from options), timers, and owners.

#include <sockrewind/analyze/series.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace sockrewind::analyze {

// The TCP state number of an ss state name, case-insensitive, '_' as '-': ESTAB (ESTABLISHED),
// SYN-SENT, SYN-RECV, FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, UNCONN (CLOSE, CLOSED), CLOSE-WAIT,
// LAST-ACK, LISTEN (LISTENING), CLOSING. Throws UsageError listing the names.
uint8_t parse_state(std::string_view name);

// ss -o timer names: 0 "off", 1 "on", 2 "keepalive", 3 "timewait", 4 "persist".
std::string timer_name(int64_t timer);

// "comm/pid" of a timeline process (comm escaped for a terminal), "-" for k_na.
std::string owner_text(const Series& s, const Timeline& tl, uint32_t proc);

} // namespace sockrewind::analyze
