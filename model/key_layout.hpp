// Where a session lives in Redis: the key layout (version 2), one pure function per key, pinned
// by a unit test. Every key of one session script shares one hash tag, so each script touches one
// slot and runs on Redis Cluster unchanged:
//   P s{<p>}:<id>       hash  v u st ca la ex ttl d t [rv] [pb]   the session
//   P dirty{<p>}        zset  member session id, score first-dirty ms   partition p's unsynced
//   writes P sync:lease{<p>}   string  node id, PX                    which node syncs partition p
//   now P u{<uid>}          zset  member session id, score created ms   the user's sessions (its
//   own slot) P sync:rejected     hash  id -> "<p> <version> <ms> <reason>"  rows PostgreSQL
//   refused P layout            string "2" once no key of layout 1 is left
// where p = partition_of(id) in [0, 1024). 1024 tags fall on about 1024 distinct slots, so the
// sessions and their sync work spread over every master of a cluster. Layout 1 (before 0.9):
//   P s:<id>, P u:<uid>, P dirty:<n> (n: the shard), read and moved by the upgrade path.
#pragma once

#include "model/shard_for.hpp"

#include <cstddef>
#include <string>
#include <string_view>

namespace sessiond::model {

/// Sync partitions. Fixed forever: it is part of every session key's name.
constexpr std::size_t sync_partitions = 1024;

/// The partition of a session id.
inline std::size_t partition_of(std::string_view id) {
  return static_cast<std::size_t>(fnv1a64(id) % sync_partitions);
}

struct key_layout {
  std::string prefix = "sessiond:";

  static std::string tag(std::size_t p) { return "{" + std::to_string(p) + "}"; }

  std::string session(std::string_view id) const {
    return prefix + "s" + tag(partition_of(id)) + ":" + std::string(id);
  }
  std::string dirty(std::size_t p) const { return prefix + "dirty" + tag(p); }
  std::string lease(std::size_t p) const { return prefix + "sync:lease" + tag(p); }
  std::string user(std::string_view uid) const { return prefix + "u{" + std::string(uid) + "}"; }
  std::string rejected() const { return prefix + "sync:rejected"; }
  std::string layout_mark() const { return prefix + "layout"; }

  // Layout 1, read by the upgrade path only.
  std::string legacy_session(std::string_view id) const { return prefix + "s:" + std::string(id); }
  std::string legacy_user(std::string_view uid) const { return prefix + "u:" + std::string(uid); }
  std::string legacy_dirty(std::size_t n) const { return prefix + "dirty:" + std::to_string(n); }
};

} // namespace sessiond::model
