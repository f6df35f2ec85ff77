#include <sockrewind/collect/model.hpp>

#include <catch2/catch.hpp>

TEST_CASE("live::SocketRow defaults are NULL, not zero", "[collect]") {
  const sockrewind::collect::SocketRow r;
  CHECK_FALSE(r.cookie.has_value());
  CHECK_FALSE(r.tx_queue.has_value());
  CHECK(r.skmem_count == 0);
}
