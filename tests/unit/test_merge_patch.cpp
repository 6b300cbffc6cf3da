// RFC 7396 merge patch of session data: the RFC's appendix A cases and sessiond's own rules.
#include "model/merge_patch.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using sessiond::model::apply_merge_patch;
using sessiond::model::check_merge_patch;
using json = nlohmann::json;

namespace {

// Applies a patch with nlohmann's implementation, as sessiond does, for the RFC table (which
// includes non-object targets and patches that sessiond's data never has).
json rfc_apply(const char* target, const char* patch) {
  auto t = json::parse(target);
  t.merge_patch(json::parse(patch));
  return t;
}

} // namespace

TEST_CASE("merge patch follows every example of RFC 7396 appendix A") {
  CHECK(rfc_apply(R"({"a":"b"})", R"({"a":"c"})") == json::parse(R"({"a":"c"})"));
  CHECK(rfc_apply(R"({"a":"b"})", R"({"b":"c"})") == json::parse(R"({"a":"b","b":"c"})"));
  CHECK(rfc_apply(R"({"a":"b"})", R"({"a":null})") == json::parse(R"({})"));
  CHECK(rfc_apply(R"({"a":"b","b":"c"})", R"({"a":null})") == json::parse(R"({"b":"c"})"));
  CHECK(rfc_apply(R"({"a":["b"]})", R"({"a":"c"})") == json::parse(R"({"a":"c"})"));
  CHECK(rfc_apply(R"({"a":"c"})", R"({"a":["b"]})") == json::parse(R"({"a":["b"]})"));
  CHECK(rfc_apply(R"({"a":{"b":"c"}})", R"({"a":{"b":"d","c":null}})") ==
        json::parse(R"({"a":{"b":"d"}})"));
  CHECK(rfc_apply(R"({"a":[{"b":"c"}]})", R"({"a":[1]})") == json::parse(R"({"a":[1]})"));
  CHECK(rfc_apply(R"(["a","b"])", R"(["c","d"])") == json::parse(R"(["c","d"])"));
  CHECK(rfc_apply(R"({"a":"b"})", R"(["c"])") == json::parse(R"(["c"])"));
  CHECK(rfc_apply(R"({"a":"foo"})", "null") == json());
  CHECK(rfc_apply(R"({"a":"foo"})", R"("bar")") == json("bar"));
  CHECK(rfc_apply(R"({"e":null})", R"({"a":1})") == json::parse(R"({"e":null,"a":1})"));
  CHECK(rfc_apply(R"([1,2])", R"({"a":"b","c":null})") == json::parse(R"({"a":"b"})"));
  CHECK(rfc_apply(R"({})", R"({"a":{"bb":{"ccc":null}}})") == json::parse(R"({"a":{"bb":{}}})"));
}

TEST_CASE("patching session data merges, deletes with null and keeps other fields") {
  std::string out;
  REQUIRE_FALSE(apply_merge_patch(R"({"a":1,"b":{"c":2,"d":3}})", R"({"b":{"c":null,"e":4},"f":5})",
                                  1024, out));
  CHECK(json::parse(out) == json::parse(R"({"a":1,"b":{"d":3,"e":4},"f":5})"));
}

TEST_CASE("a patch that is not JSON is a 400") {
  std::string out;
  auto err = apply_merge_patch("{}", "{oops", 1024, out);
  REQUIRE(err);
  CHECK(err->status == 400);
  CHECK(check_merge_patch("{oops")->status == 400);
}

TEST_CASE("a patch that would make data a non-object is a 422") {
  std::string out;
  CHECK(apply_merge_patch("{}", "[1]", 1024, out)->status == 422);
  CHECK(apply_merge_patch("{}", "null", 1024, out)->status == 422);
  CHECK(check_merge_patch("\"x\"")->status == 422);
  CHECK_FALSE(check_merge_patch("{}"));
}

TEST_CASE("a patch that makes data larger than the limit is a 413") {
  std::string out;
  auto err = apply_merge_patch("{}", R"({"v":")" + std::string(100, 'x') + "\"}", 64, out);
  REQUIRE(err);
  CHECK(err->status == 413);
}

TEST_CASE("a merge patch nested deeper than 128 levels is a 400, not a stack overflow") {
  std::string deep;
  for (int i = 0; i < 100000; ++i)
    deep += "{\"a\":";
  deep += "1";
  for (int i = 0; i < 100000; ++i)
    deep += "}";
  std::string out;
  CHECK(check_merge_patch(deep)->status == 400);
  CHECK(apply_merge_patch("{}", deep, 1 << 30, out)->status == 400);
}

TEST_CASE("a patch putting the NUL character into data is a 400") {
  std::string out;
  auto err = apply_merge_patch("{}", R"({"k":"\u0000"})", 1024, out);
  REQUIRE(err);
  CHECK(err->status == 400);
  CHECK(check_merge_patch(R"({"\u0000":1})")->status == 400);
}
