// Which shard owns a session id: one pure function with a fixed hash, pinned by a unit test.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace sessiond::model {

/// 64-bit FNV-1a of the bytes of `id`. Fixed forever: changing it moves every session's owner.
std::uint64_t fnv1a64(std::string_view id);

/// The shard in [0, shards) that owns `id`. `shards` must be > 0.
inline std::size_t shard_for(std::string_view id, std::size_t shards) {
  return static_cast<std::size_t>(fnv1a64(id) % shards);
}

} // namespace sessiond::model
