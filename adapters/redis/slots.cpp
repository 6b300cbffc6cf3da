// See slots.hpp.
#include "adapters/redis/slots.hpp"

#include "model/text.hpp"

#include <array>

namespace sessiond::redis {

namespace {

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial 0), the table Redis's crc16.c uses.
constexpr std::array<std::uint16_t, 256> make_table() {
  std::array<std::uint16_t, 256> t{};
  for (unsigned i = 0; i < 256; ++i) {
    std::uint16_t c = static_cast<std::uint16_t>(i << 8);
    for (int b = 0; b < 8; ++b)
      c = static_cast<std::uint16_t>((c & 0x8000) != 0 ? (c << 1) ^ 0x1021 : c << 1);
    t[i] = c;
  }
  return t;
}

constexpr auto crc_table = make_table();

std::uint16_t crc16(std::string_view s) {
  std::uint16_t crc = 0;
  for (unsigned char ch : s)
    crc = static_cast<std::uint16_t>((crc << 8) ^ crc_table[((crc >> 8) ^ ch) & 0xff]);
  return crc;
}

bool is(const std::string& word, std::string_view name) {
  return model::iequals(word, name);
}

} // namespace

std::uint16_t key_slot(std::string_view key) {
  auto open = key.find('{');
  if (open != std::string_view::npos) {
    auto close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1)
      key = key.substr(open + 1, close - open - 1);
  }
  return static_cast<std::uint16_t>(crc16(key) & (slot_count - 1));
}

std::size_t key_position(const std::vector<std::string>& args) {
  if (args.size() < 2)
    return no_key;
  const std::string& cmd = args[0];
  if (is(cmd, "EVAL") || is(cmd, "EVALSHA") || is(cmd, "EVAL_RO") || is(cmd, "EVALSHA_RO") ||
      is(cmd, "FCALL") || is(cmd, "FCALL_RO"))
    return args.size() > 3 && args[2] != "0" ? 3 : no_key;
  if (is(cmd, "MEMORY") || is(cmd, "OBJECT"))
    return args.size() > 2 ? 2 : no_key;
  for (std::string_view keyless :
       {"PING",   "INFO",     "SCAN",      "KEYS",     "PUBLISH",  "CLUSTER", "SCRIPT",
        "CONFIG", "WAIT",     "DBSIZE",    "FLUSHDB",  "FLUSHALL", "CLIENT",  "DEBUG",
        "ECHO",   "TIME",     "ROLE",      "COMMAND",  "SLOWLOG",  "LATENCY", "FUNCTION",
        "SELECT", "AUTH",     "HELLO",     "LASTSAVE", "SAVE",     "BGSAVE",  "BGREWRITEAOF",
        "ASKING", "READONLY", "READWRITE", "MULTI",    "EXEC"})
    if (is(cmd, keyless))
      return no_key;
  return 1;
}

} // namespace sessiond::redis
