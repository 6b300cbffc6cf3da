// The encryption keyring and envelope (adapters/crypto): the keys file's parser, sealing and
// opening, and what a wrong owner, a changed byte or a missing key gives.
#include "adapters/crypto/keyring.hpp"

#include <catch2/catch.hpp>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

using namespace sessiond::crypto;

namespace {

/// base64 of 32 bytes of `fill`.
std::string key_b64(char fill) {
  return base64_encode(std::string(key_bytes, fill));
}

std::string refusal(const std::string& text) {
  try {
    keyring::parse(text);
    return "";
  } catch (const key_file_error& e) {
    return e.what();
  }
}

} // namespace

TEST_CASE("a keys file's first key is current; comments and blank lines are skipped") {
  auto ring = keyring::parse("# rotated 2026-12\n\n  k2:" + key_b64('b') +
                             "  \r\nk1:" + key_b64('a') + "\n");
  CHECK(ring->current_id() == "k2");
  CHECK(ring->ids() == std::vector<std::string>{"k2", "k1"});
  CHECK(ring->has("k1"));
  CHECK_FALSE(ring->has("k3"));
}

TEST_CASE("each bad line of a keys file is refused with its line and reason, never the key") {
  auto good = key_b64('a');
  CHECK(refusal("") == "holds no key (only comments and blank lines)");
  CHECK(refusal("# only a comment\n\n") == "holds no key (only comments and blank lines)");
  CHECK(refusal("k1:" + good + "\nno-colon-here\n") ==
        "holds a line that is not key_id:base64 (line 2)");
  CHECK(refusal(":" + good) ==
        "holds a key id that is not 1-32 characters of [A-Za-z0-9._-] (line 1)");
  CHECK(refusal("bad id:" + good).find("key id") != std::string::npos);
  CHECK(refusal(std::string(33, 'k') + ":" + good).find("key id") != std::string::npos);
  CHECK(refusal("k1:not*base64!") == "holds a key that is not valid base64 (line 1)");
  CHECK(refusal("k1:" + good.substr(1)) == "holds a key that is not valid base64 (line 1)");
  CHECK(refusal("k1:" + base64_encode(std::string(16, 'x'))) ==
        "holds a key that does not decode to 32 bytes (line 1)");
  CHECK(refusal("k1:" + base64_encode(std::string(33, 'x'))) ==
        "holds a key that does not decode to 32 bytes (line 1)");
  CHECK(refusal("k1:" + good + "\nk1:" + key_b64('b')) == "holds the same key id twice (line 2)");
  auto why = refusal("k1:" + base64_encode(std::string(31, 'x')));
  CHECK(why.find(base64_encode(std::string(31, 'x'))) == std::string::npos);
}

TEST_CASE("a keys file that cannot be read is refused naming the file") {
  try {
    keyring::load_file("/nonexistent/sessiond-keys");
    FAIL("loaded");
  } catch (const key_file_error& e) {
    CHECK(std::string(e.what()).find("keys file \"/nonexistent/sessiond-keys\" cannot be read") ==
          0);
  }
  try { // a directory opens, and fails to read
    keyring::load_file("/tmp");
    FAIL("loaded");
  } catch (const key_file_error& e) {
    CHECK(std::string(e.what()) == "keys file \"/tmp\" cannot be read: Is a directory");
  }
  auto path = std::string("/tmp/sessiond-test-keys-") + std::to_string(::getpid());
  std::ofstream(path) << "k1:" << key_b64('a') << "\nk1:" << key_b64('b') << "\n";
  try {
    keyring::load_file(path);
    FAIL("loaded");
  } catch (const key_file_error& e) {
    CHECK(std::string(e.what()) ==
          "keys file \"" + path + "\" holds the same key id twice (line 2)");
  }
  std::remove(path.c_str());
}

TEST_CASE("a sealed value opens under its own associated data and names its key") {
  auto ring = keyring::parse("k1:" + key_b64('a'));
  std::string plain = R"({"cart":[1,2],"secret":"hunter2"})";
  auto sealed = ring->seal("session:s1", plain);
  CHECK(is_envelope(sealed));
  CHECK(envelope_key_id(sealed) == "k1");
  CHECK(sealed.find("hunter2") == std::string::npos);
  CHECK(sealed.size() == 2 + 2 + nonce_bytes + plain.size() + tag_bytes);
  auto o = ring->open("session:s1", sealed);
  CHECK(o.code == errc::ok);
  CHECK(o.was_sealed);
  CHECK(o.plaintext == plain);
  CHECK(ring->seal("session:s1", plain) != sealed); // a fresh nonce each time
}

TEST_CASE("a value copied to another owner does not open: the tag fails") {
  auto ring = keyring::parse("k1:" + key_b64('a'));
  auto sealed = ring->seal("session:s1", "{}");
  auto o = ring->open("session:s2", sealed);
  CHECK(o.code == errc::auth_failed);
  CHECK(o.key_id == "k1");
  CHECK(o.plaintext.empty());
}

TEST_CASE("any byte changed makes the value fail to open, never decrypt to garbage") {
  auto ring = keyring::parse("k1:" + key_b64('a') + "\nk2:" + key_b64('b'));
  auto sealed = ring->seal("session:s1", R"({"a":"bcdefgh"})");
  for (std::size_t i = 2; i < sealed.size(); ++i) { // from the id on (0, 1: marker and length)
    auto t = sealed;
    t[i] = static_cast<char>(t[i] ^ 0x01);
    auto o = ring->open("session:s1", t);
    CAPTURE(i);
    CHECK(o.code != errc::ok);
    CHECK(o.plaintext.empty());
  }
  CHECK(ring->open("session:s1", sealed.substr(0, sealed.size() - 1)).code != errc::ok);
  CHECK(ring->open("session:s1", sealed.substr(0, 10)).code == errc::malformed);
}

TEST_CASE("a value under a key the keyring lacks reports key_missing with the key id") {
  auto old_ring = keyring::parse("old-1:" + key_b64('a'));
  auto sealed = old_ring->seal("session:s1", "{}");
  auto ring = keyring::parse("new-2:" + key_b64('b'));
  auto o = ring->open("session:s1", sealed);
  CHECK(o.code == errc::key_missing);
  CHECK(o.key_id == "old-1");
  auto none = open_without_keys(sealed);
  CHECK(none.code == errc::key_missing);
  CHECK(none.key_id == "old-1");
}

TEST_CASE("rotation: an older key still opens what it sealed; seal uses the first key") {
  auto k1 = keyring::parse("k1:" + key_b64('a'));
  auto old_value = k1->seal("session:s1", R"({"v":1})");
  auto both = keyring::parse("k2:" + key_b64('b') + "\nk1:" + key_b64('a'));
  auto o = both->open("session:s1", old_value);
  CHECK(o.code == errc::ok);
  CHECK(o.plaintext == R"({"v":1})");
  CHECK(envelope_key_id(both->seal("session:s1", o.plaintext)) == "k2");
}

TEST_CASE("plaintext JSON is passed through as not sealed") {
  auto ring = keyring::parse("k1:" + key_b64('a'));
  for (std::string p : {R"({"a":1})", " {}", "", "[]"}) {
    auto o = ring->open("session:s1", p);
    CHECK(o.code == errc::ok);
    CHECK_FALSE(o.was_sealed);
    CHECK(o.plaintext == p);
  }
}

TEST_CASE("every errc has a text") {
  for (auto e : {errc::ok, errc::key_missing, errc::auth_failed, errc::malformed, errc::unreadable,
                 errc::no_keys, errc::bad_line, errc::bad_key_id, errc::bad_base64,
                 errc::bad_length, errc::duplicate_id, errc::internal})
    CHECK(std::string(to_string(e)) != "unknown error");
}

TEST_CASE("base64 is strict: padding required, alphabet checked, round trip") {
  std::string out;
  CHECK(base64_decode("YWJj", out));
  CHECK(out == "abc");
  CHECK(base64_decode("YWI=", out));
  CHECK(out == "ab");
  CHECK(base64_decode("YQ==", out));
  CHECK(out == "a");
  CHECK_FALSE(base64_decode("YQ", out));
  CHECK_FALSE(base64_decode("Y===", out));
  CHECK_FALSE(base64_decode("YQ=a", out));
  CHECK_FALSE(base64_decode("YW-j", out));
  std::string all;
  for (int i = 0; i < 256; ++i)
    all.push_back(static_cast<char>(i));
  CHECK(base64_decode(base64_encode(all), out));
  CHECK(out == all);
}
