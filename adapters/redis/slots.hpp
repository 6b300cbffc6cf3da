// Redis Cluster key slots: which of the 16384 slots a key lives in, and which argument of a
// command is the key that routes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::redis {

inline constexpr std::uint16_t slot_count = 16384;

/// CRC16 (XMODEM) of the key's hash tag — the bytes between the first '{' and the next '}', when
/// there are any — or else of the whole key, modulo 16384: Redis Cluster's HASH_SLOT.
std::uint16_t key_slot(std::string_view key);

inline constexpr std::size_t no_key = static_cast<std::size_t>(-1);

/// The index in `args` of the key a command routes by: 1 for most commands, the first key of
/// EVAL/EVALSHA (3, or none when numkeys is 0), 2 for MEMORY USAGE and OBJECT; `no_key` for
/// commands without one (PING, INFO, SCAN, PUBLISH, CLUSTER, SCRIPT, CONFIG, WAIT, …), which any
/// master can answer.
std::size_t key_position(const std::vector<std::string>& args);

} // namespace sessiond::redis
