#include <sockrewind/collect/tcp_info.hpp>
#include <sockrewind/collect/writer.hpp>

#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

using namespace sockrewind::collect;

namespace {

const TcpInfoField& field(std::string_view name) {
  for (const TcpInfoField& f : tcp_info_fields()) {
    if (f.column == name) {
      return f;
    }
  }
  FAIL("no field " << name);
  throw std::logic_error("unreachable");
}

} // namespace

TEST_CASE("collect::read_tcp_info_field honours the kernel's length", "[collect][tcp_info]") {
  std::vector<uint8_t> info(104, 0); // a 2.6-era struct: ends after total_retrans
  const uint32_t rtt = 1234;
  std::memcpy(info.data() + 68, &rtt, sizeof rtt);
  info[6] = 0x97; // snd_wscale 7, rcv_wscale 9
  info[7] = 0x05; // app_limited 1, fastopen_client_fail 2
  CHECK(read_tcp_info_field(info, field("rtt_us")) == 1234U);
  CHECK(read_tcp_info_field(info, field("snd_wscale")) == 7U);
  CHECK(read_tcp_info_field(info, field("rcv_wscale")) == 9U);
  CHECK(read_tcp_info_field(info, field("delivery_rate_app_limited")) == 1U);
  CHECK(read_tcp_info_field(info, field("fastopen_client_fail")) == 2U);
  CHECK(read_tcp_info_field(info, field("total_retrans")) == 0U);
  // Fields the kernel did not send are absent, not zero.
  CHECK_FALSE(read_tcp_info_field(info, field("pacing_rate")).has_value());
  CHECK_FALSE(read_tcp_info_field(info, field("snd_wnd")).has_value());
  CHECK_FALSE(read_tcp_info_field({}, field("state")).has_value());
}

TEST_CASE("collect::tcp_info fields are ordered, non-overlapping and cover 248 bytes",
          "[collect][tcp_info]") {
  unsigned end = 0;
  for (const TcpInfoField& f : tcp_info_fields()) {
    if (f.size != 0) {
      CHECK(f.offset >= end);
      end = f.offset + f.size;
    }
  }
  CHECK(end == 248);
  CHECK(tcp_info_inline_fields().size() == 15);
  for (const TcpInfoField& f : tcp_info_inline_fields()) {
    CHECK_FALSE(f.column.empty());
  }
}

TEST_CASE("collect::snapshot_base_name is host-UTC-timestamp", "[collect][writer]") {
  CHECK(snapshot_base_name("web1", 1700000000'123456789) == "web1-20231114T221320Z");
  CHECK(snapshot_base_name("", 0) == "localhost-19700101T000000Z");
  CHECK(snapshot_base_name("a/b", 0) == "a_b-19700101T000000Z");
}
