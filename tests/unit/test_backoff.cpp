// Backoff delays and the circuit breaker, with time and randomness given (no sleeping).
#include "model/backoff.hpp"

#include <catch2/catch.hpp>

using namespace sessiond::model;

TEST_CASE("the backoff doubles per failure up to the cap, jittered between half and all") {
  backoff_policy p{500, 60000};
  CHECK(backoff_delay_ms(p, 1, 0.0) == 250);
  CHECK(backoff_delay_ms(p, 1, 0.999999) == 499);
  CHECK(backoff_delay_ms(p, 2, 0.0) == 500);
  CHECK(backoff_delay_ms(p, 3, 0.5) == 1500);
  CHECK(backoff_delay_ms(p, 8, 0.0) == 30000);  // 500 * 2^7 = 64000, capped at 60000
  CHECK(backoff_delay_ms(p, 60, 1.0) == 60000); // no overflow however long it fails
  for (int f = 1; f < 40; ++f)
    for (double r : {0.0, 0.3, 0.99}) {
      auto d = backoff_delay_ms(p, f, r);
      CHECK(d >= 250);
      CHECK(d <= 60000);
    }
}

TEST_CASE("the circuit opens after the threshold, lets one probe through when due, closes on "
          "success") {
  circuit_breaker c({1000, 8000}, 3);
  CHECK(c.allow(0));
  CHECK(c.on_failure(0, 1.0) == 1000); // closed: the next attempt still waits its backoff
  CHECK(c.current() == circuit_breaker::state::closed);
  CHECK_FALSE(c.allow(999));
  CHECK(c.allow(1000));
  c.on_failure(1000, 1.0);                // retry at 3000
  CHECK(c.on_failure(3000, 1.0) == 7000); // third failure: open until 7000
  CHECK(c.current() == circuit_breaker::state::open);
  CHECK_FALSE(c.allow(6999));
  CHECK(c.allow(7000));
  CHECK(c.current() == circuit_breaker::state::half_open);
  CHECK(c.on_failure(7000, 1.0) == 15000); // the probe failed: open again, capped at 8000
  CHECK(c.current() == circuit_breaker::state::open);
  CHECK(c.allow(15000));
  c.on_success();
  CHECK(c.current() == circuit_breaker::state::closed);
  CHECK(c.failures() == 0);
  CHECK(c.allow(15001));
  CHECK(std::string(to_string(circuit_breaker::state::half_open)) == "half-open");
}
