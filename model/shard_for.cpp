// FNV-1a, the fixed hash behind shard_for.
#include "model/shard_for.hpp"

namespace sessiond::model {

std::uint64_t fnv1a64(std::string_view id) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

} // namespace sessiond::model
