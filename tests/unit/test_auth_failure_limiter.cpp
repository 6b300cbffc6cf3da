// Unit tests of adapters/auth/failure_limiter: how many failures block an address, for how long,
// per address (IPv6 by /64), and that its table stays bounded. Time is passed in: no sleeping.
#include "adapters/auth/failure_limiter.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

using namespace sessiond;

TEST_CASE("twenty failures within ten seconds block an address for ten seconds") {
  auth::failure_limiter lim; // 20 in 10 s by default
  const std::string a = "192.0.2.1";
  std::int64_t t = 1000;
  for (int i = 0; i < 19; ++i) {
    CHECK_FALSE(lim.record_failure(a, t + i * 100));
    CHECK(lim.blocked_ms(a, t + i * 100) == 0);
  }
  CHECK(lim.record_failure(a, t + 1900)); // the 20th
  CHECK(lim.blocked_ms(a, t + 1900) == 10000);
  CHECK(lim.blocked_ms(a, t + 6900) == 5000);
  CHECK(lim.blocked_ms(a, t + 11899) == 1);
  CHECK(lim.blocked_ms(a, t + 11900) == 0);
  // Counting starts afresh after the block: one more failure does not block again.
  CHECK_FALSE(lim.record_failure(a, t + 12000));
  CHECK(lim.blocked_ms(a, t + 12000) == 0);
}

TEST_CASE("failures spread wider than the window do not block") {
  auth::failure_limiter lim;
  const std::string a = "192.0.2.2";
  for (int round = 0; round < 5; ++round)
    for (int i = 0; i < 19; ++i)
      CHECK_FALSE(lim.record_failure(a, round * 10000 + i));
  CHECK(lim.blocked_ms(a, 50000) == 0);
}

TEST_CASE("a blocked address does not block another") {
  auth::failure_limiter lim({3, 1000, 100});
  for (int i = 0; i < 3; ++i)
    lim.record_failure("192.0.2.3", 0);
  CHECK(lim.blocked_ms("192.0.2.3", 1) > 0);
  CHECK(lim.blocked_ms("192.0.2.4", 1) == 0);
  CHECK_FALSE(lim.record_failure("192.0.2.4", 1));
}

TEST_CASE("the table of addresses is bounded: the address that failed longest ago goes first") {
  auth::failure_limiter lim({3, 10000, 4});
  for (int i = 0; i < 1000; ++i)
    lim.record_failure("198.51.100." + std::to_string(i % 250) + "-" + std::to_string(i), i);
  CHECK(lim.size() == 4);
  // A recent failure keeps an address in: "kept" fails now and then while others come and go.
  auth::failure_limiter lru({3, 10000, 2});
  lru.record_failure("kept", 0);
  lru.record_failure("other-1", 1);
  lru.record_failure("kept", 2);
  lru.record_failure("other-2", 3);     // evicts other-1, not kept
  CHECK(lru.record_failure("kept", 4)); // kept's third failure: it was never forgotten
}

TEST_CASE("IPv4 addresses count alone, IPv6 addresses by their /64") {
  CHECK(auth::client_key("192.0.2.7") == "192.0.2.7");
  CHECK(auth::client_key("2001:db8:1:2::1") == auth::client_key("2001:db8:1:2:ffff::9"));
  CHECK(auth::client_key("2001:db8:1:2::1") != auth::client_key("2001:db8:1:3::1"));
  CHECK(auth::client_key("2001:db8:1:2::1") == "2001:0db8:0001:0002::/64");
  CHECK(auth::client_key("::ffff:192.0.2.7") == "192.0.2.7");
  CHECK(auth::client_key("") == "");
  CHECK(auth::client_key("not:an:address") == "not:an:address");
}

TEST_CASE("failures from many threads are all counted") {
  auth::failure_limiter lim({400, 10000, 100});
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 99; ++i)
        lim.record_failure("203.0.113.9", 5);
    });
  for (auto& t : threads)
    t.join();
  CHECK(lim.blocked_ms("203.0.113.9", 5) == 0); // 396 < 400
  for (int i = 0; i < 3; ++i)
    lim.record_failure("203.0.113.9", 5);
  CHECK_FALSE(lim.blocked_ms("203.0.113.9", 5) > 0); // 399
  CHECK(lim.record_failure("203.0.113.9", 5));       // the 400th
}
