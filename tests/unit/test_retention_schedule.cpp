// Unit tests of the retention schedule (next run after a given instant, UTC) and of the small
// pure helpers of adapters/postgres/retention.hpp; no server, no sleeping.
#include "adapters/postgres/retention.hpp"

#include <catch2/catch.hpp>

#include <string>

using namespace sessiond::postgres;

namespace {

constexpr std::int64_t minute_ms = 60'000;
constexpr std::int64_t day_ms = 86'400'000;
// 2026-11-21 00:00:00 UTC.
constexpr std::int64_t day0 = 1'795'219'200'000;

std::int64_t at(int h, int m, int s = 0, int ms = 0) {
  return day0 + (h * 60 + m) * minute_ms + s * 1000 + ms;
}

} // namespace

TEST_CASE("the fixed day used by these tests is a UTC midnight") {
  CHECK(timestamptz_literal(day0 * 1000) == "2026-11-21 00:00:00.000000+00");
}

TEST_CASE("a run later today is scheduled today") {
  CHECK(next_retention_run_ms("03:30", at(0, 0)) == at(3, 30));
  CHECK(next_retention_run_ms("03:30", at(3, 29, 59, 999)) == at(3, 30));
  CHECK(next_retention_run_ms("23:59", at(23, 58, 59, 999)) == at(23, 59));
}

TEST_CASE("a run whose time has come or passed today is scheduled tomorrow") {
  // Strictly after now: at exactly 03:30:00.000 the run that is due now is not scheduled again.
  CHECK(next_retention_run_ms("03:30", at(3, 30)) == at(3, 30) + day_ms);
  CHECK(next_retention_run_ms("03:30", at(3, 30, 0, 1)) == at(3, 30) + day_ms);
  CHECK(next_retention_run_ms("03:30", at(23, 59, 59, 999)) == at(3, 30) + day_ms);
  CHECK(next_retention_run_ms("00:00", at(0, 0)) == day0 + day_ms);
}

TEST_CASE("midnight is scheduled at the next midnight") {
  CHECK(next_retention_run_ms("00:00", at(0, 0) - 1) == day0);
  CHECK(next_retention_run_ms("00:00", at(12, 0)) == day0 + day_ms);
}

TEST_CASE("repeated scheduling from each run's due time advances exactly one day") {
  std::int64_t due = next_retention_run_ms("03:30", at(12, 0));
  for (int i = 0; i < 400; ++i) { // more than a year: UTC has no DST or calendar drift
    std::int64_t next = next_retention_run_ms("03:30", due);
    CHECK(next - due == day_ms);
    due = next;
  }
  CHECK(timestamptz_literal(due * 1000).substr(11) == "03:30:00.000000+00");
}

TEST_CASE("instants before 1970 schedule correctly (floor, not truncation)") {
  CHECK(next_retention_run_ms("03:30", -day_ms + 1) == -day_ms + 210 * minute_ms);
  CHECK(next_retention_run_ms("00:00", -1) == 0);
}

TEST_CASE("retention.at must be HH:MM from 00:00 to 23:59") {
  CHECK(parse_hh_mm("00:00") == 0);
  CHECK(parse_hh_mm("03:30") == 210);
  CHECK(parse_hh_mm("23:59") == 23 * 60 + 59);
  for (const char* bad : {"24:00", "3:30", "03:60", "03-30", "", "03:30 ", " 03:30", "0a:30",
                          "03:3", "003:30", "+3:30"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_hh_mm(bad));
    CHECK_THROWS_AS(next_retention_run_ms(bad, at(0, 0)), pg_error);
  }
}

TEST_CASE("timestamps go to PostgreSQL as exact UTC literals with microseconds") {
  CHECK(timestamptz_literal(0) == "1970-01-01 00:00:00.000000+00");
  CHECK(timestamptz_literal(1) == "1970-01-01 00:00:00.000001+00");
  CHECK(timestamptz_literal(-1) == "1969-12-31 23:59:59.999999+00");
  CHECK(timestamptz_literal(1'795'231'800'123'456) == "2026-11-21 03:30:00.123456+00");
}

TEST_CASE("every retention status has a name") {
  CHECK(std::string(to_string(retention_status::ran)) == "ran");
  CHECK(std::string(to_string(retention_status::skipped)) == "skipped");
  CHECK(std::string(to_string(retention_status::failed)) == "failed");
  CHECK(std::string(to_string(retention_status::disabled)) == "disabled");
}

TEST_CASE("the audited criterion names the days and all four conditions") {
  auto c = retention_criterion(60);
  CHECK(c == "is_active = false AND status <> 'ACTIVE' AND expires_at < now() AND "
             "coalesce(last_activity_at, created_at) < now() - 60 days");
}

TEST_CASE("the last scheduled instant is at or before now, the day before the next one") {
  CHECK(last_retention_run_ms("03:30", at(3, 30)) == at(3, 30));
  CHECK(last_retention_run_ms("03:30", at(5, 30)) == at(3, 30));
  CHECK(last_retention_run_ms("03:30", at(3, 29, 59, 999)) == at(3, 30) - day_ms);
  CHECK_THROWS(last_retention_run_ms("3:30", at(0, 0)));
}
