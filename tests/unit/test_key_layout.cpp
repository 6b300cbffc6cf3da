// Unit tests of the session key layout: the names are pinned (changing one strands every session
// stored under it), every key of one session script shares a slot, and the 1024 partitions
// spread over the slots of any three masters.
#include "adapters/redis/slots.hpp"
#include "model/key_layout.hpp"

#include <catch2/catch.hpp>

#include <set>

using sessiond::model::key_layout;
using sessiond::model::partition_of;
using sessiond::model::sync_partitions;
using sessiond::redis::key_slot;

TEST_CASE("the key names of layout 2 are pinned") {
  key_layout k{"sessiond:"};
  CHECK(partition_of("abc") == sessiond::model::fnv1a64("abc") % 1024);
  CHECK(k.session("abc") == "sessiond:s{" + std::to_string(partition_of("abc")) + "}:abc");
  CHECK(k.dirty(17) == "sessiond:dirty{17}");
  CHECK(k.lease(17) == "sessiond:sync:lease{17}");
  CHECK(k.user("u1") == "sessiond:u{u1}");
  CHECK(k.rejected() == "sessiond:sync:rejected");
  CHECK(k.legacy_session("abc") == "sessiond:s:abc");
  CHECK(k.legacy_dirty(3) == "sessiond:dirty:3");
  CHECK(k.legacy_user("u1") == "sessiond:u:u1");
}

TEST_CASE("a session, its dirty set and its lease share one slot; layout 1's did not") {
  key_layout k{"app.1:"};
  for (const char* id : {"a", "b", "session-123", "4f3c2b1a-0000-4000-8000-000000000000"}) {
    auto p = partition_of(id);
    CHECK(key_slot(k.session(id)) == key_slot(k.dirty(p)));
    CHECK(key_slot(k.session(id)) == key_slot(k.lease(p)));
  }
  int apart = 0;
  for (int i = 0; i < 100; ++i) {
    auto id = "s" + std::to_string(i);
    apart += key_slot(k.legacy_session(id)) != key_slot(k.legacy_dirty(0)) ? 1 : 0;
  }
  CHECK(apart > 90);
}

TEST_CASE("the partitions fall on at least 20% of any third of the slots") {
  key_layout k;
  std::set<int> slots;
  int per_third[3] = {0, 0, 0};
  for (std::size_t p = 0; p < sync_partitions; ++p) {
    auto slot = key_slot(k.dirty(p));
    slots.insert(slot);
    ++per_third[slot * 3 / 16384]; // the slot ranges redis-cli --cluster create gives 3 masters
  }
  CHECK(slots.size() > 1000); // about one slot each
  for (int n : per_third)
    CHECK(n > static_cast<int>(sync_partitions) / 5);
}
