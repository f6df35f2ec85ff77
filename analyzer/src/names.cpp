// Names of states, timers and owners (ss words).
#include <sockrewind/analyze/errors.hpp>
#include <sockrewind/analyze/names.hpp>
#include <sockrewind/analyze/text.hpp>

#include <cctype>
#include <map>

namespace sockrewind::analyze {

namespace {

std::string upper(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += c == '_' ? '-' : static_cast<char>(std::toupper(u));
  }
  return out;
}

} // namespace

uint8_t parse_state(std::string_view name) {
  static const std::map<std::string, uint8_t> k_states{
      {"ESTAB", k_established},
      {"ESTABLISHED", k_established},
      {"SYN-SENT", k_syn_sent},
      {"SYN-RECV", k_syn_recv},
      {"FIN-WAIT-1", k_fin_wait1},
      {"FIN-WAIT-2", k_fin_wait2},
      {"TIME-WAIT", k_time_wait},
      {"UNCONN", k_close},
      {"CLOSE", k_close},
      {"CLOSED", k_close},
      {"CLOSE-WAIT", k_close_wait},
      {"LAST-ACK", k_last_ack},
      {"LISTEN", k_listen},
      {"LISTENING", k_listen},
      {"CLOSING", k_closing},
  };
  const auto it = k_states.find(upper(name));
  if (it == k_states.end()) {
    throw UsageError("unknown state '" + escape_text(std::string(name))
                     + "': use ESTAB, SYN-SENT, SYN-RECV, FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, "
                       "UNCONN, CLOSE-WAIT, LAST-ACK, LISTEN or CLOSING");
  }
  return it->second;
}

std::string timer_name(int64_t timer) {
  switch (timer) {
  case 0:
    return "off";
  case 1:
    return "on";
  case 2:
    return "keepalive";
  case 3:
    return "timewait";
  case 4:
    return "persist";
  default:
    return "timer" + std::to_string(timer);
  }
}

std::string owner_text(const Series& s, const Timeline& tl, uint32_t proc) {
  if (proc == k_na || proc >= tl.procs.size()) {
    return "-";
  }
  const Process& p = tl.procs[proc];
  return escape_text(std::string(s.strings.get(p.comm))) + "/" + std::to_string(p.pid);
}

} // namespace sockrewind::analyze
