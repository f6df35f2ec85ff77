// libFuzzer target: parse_proc_net_unix (/proc/net/unix). The whole input is the file's text.

#include "fuzz_check.hpp"

#include <sockrewind/collect/proc_net.hpp>

#include <set>

namespace {

namespace sc = sockrewind::collect;
namespace sf = sockrewind::fuzz;

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text = sf::as_text(data, size);
  const auto out = sc::parse_proc_net_unix(text);
  FUZZ_CHECK(out.rows.size() + out.issues.size() <= sf::line_count(text));
  sf::check_issues(out.issues, "proc:unix", {"bad_header", "bad_row", "duplicate"});
  std::set<uint64_t> inodes;
  for (const sc::SocketRow& r : out.rows) {
    FUZZ_CHECK(r.family == sc::k_af_unix && r.proto == 0 && r.addr_len == 0);
    FUZZ_CHECK(r.type == sc::k_sock_stream || r.type == sc::k_sock_dgram
               || r.type == sc::k_sock_seqpacket);
    FUZZ_CHECK(r.state == sc::k_tcp_established || r.state == sc::k_tcp_close
               || r.state == sc::k_tcp_listen);
    if (r.path) {
      // The rest of the row after one separator; NULs are shown as '@'.
      FUZZ_CHECK(!r.path->empty() && r.path->size() < size);
      FUZZ_CHECK(r.path->find('\0') == std::string::npos);
      FUZZ_CHECK(r.path->find('\n') == std::string::npos);
    }
    // Rows with an inode are unique by inode.
    FUZZ_CHECK(r.inode == 0 || inodes.insert(r.inode).second);
    FUZZ_CHECK(!r.cookie && !r.rx_queue && !r.tx_queue && r.skmem_count == 0);
  }
  return 0;
}
