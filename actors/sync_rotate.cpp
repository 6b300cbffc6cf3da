// sync_engine::rotate_step: the background pass of encryption at rest (docs/security.md
// "Encryption at rest"). It SCANs every master for session keys (layout 2, s{p}:<id>), reads
// each one's version and value, and re-seals under the current key every value sealed under an
// older key or stored as plaintext, each with one reseal script fenced by version and value, so
// a write that lands meanwhile is never overwritten. The counts per key id of a whole pass are
// published when it ends; they are as of that pass. Split from sync_engine.cpp for its size.
#include "actors/sync_engine.hpp"
#include "adapters/redis/blocking.hpp"

#include <future>
#include <memory>

namespace sessiond::actors {

namespace {

/// The session id of a key of layout 2, "<prefix>s{<p>}:<id>"; empty when it is not one.
std::string_view id_of(std::string_view key, std::size_t prefix_chars) {
  auto close = key.find("}:", prefix_chars);
  return close == std::string_view::npos ? std::string_view{} : key.substr(close + 2);
}

/// The keys one SCAN of `master` returned, and the cursor to go on from ("0": done).
std::pair<std::string, std::vector<std::string>>
scan_master(redis::client& redis, const std::string& master, std::size_t hint,
            const std::string& cursor, const std::string& pattern, std::size_t count,
            std::chrono::milliseconds wait) {
  auto p = std::make_shared<std::promise<redis::waited>>();
  auto f = p->get_future();
  redis.command_at(master, hint, {"SCAN", cursor, "MATCH", pattern, "COUNT", std::to_string(count)},
                   [p](redis::errc e, redis::reply&& r) {
                     p->set_value({e, std::move(r)});
                   });
  if (f.wait_for(wait) != std::future_status::ready)
    throw sync_error(false, "Redis: SCAN for the rotation pass timed out");
  auto w = f.get();
  if (w.error != redis::errc::ok || w.value.is_error() ||
      w.value.type != redis::reply::kind::array || w.value.elements.size() != 2)
    throw sync_error(false, "Redis: SCAN for the rotation pass failed");
  std::vector<std::string> keys;
  for (auto& k : w.value.elements[1].elements)
    keys.push_back(std::move(k.str));
  return {w.value.elements[0].str, std::move(keys)};
}

} // namespace

std::uint64_t sync_engine::rotate_step() {
  auto ring = settings_.crypto->keys.get();
  if (!ring) {
    rotate_cursors_.clear();
    return 0;
  }
  auto& c = *settings_.crypto;
  auto masters = redis_.masters();
  if (rotate_cursors_.size() != masters.size()) {
    // A new pass (or the topology changed under one: start over, the counts would be off).
    auto last = c.last_pass().finished_ms;
    if (last != 0 && clock_.now_ms() - last < settings_.rotate_interval_ms &&
        rotate_cursors_.empty())
      return 0;
    rotate_cursors_.assign(masters.size(), "0");
    rotate_counts_ = {};
  }
  auto pattern = settings_.prefix + "s{*}:*";
  std::uint64_t resealed = 0;
  bool pass_done = true;
  for (std::size_t m = 0; m < masters.size(); ++m) {
    if (rotate_cursors_[m] == "done")
      continue;
    auto [next, keys] = scan_master(redis_, masters[m], settings_.first_hint, rotate_cursors_[m],
                                    pattern, settings_.rotate_batch, settings_.redis_wait);
    std::vector<std::vector<std::string>> reads;
    for (const auto& k : keys)
      reads.push_back({"HMGET", k, "v", "d"});
    auto values = call_all(std::move(reads));
    for (std::size_t i = 0; i < keys.size(); ++i) {
      const auto& f = values[i];
      if (f.type != redis::reply::kind::array || f.elements.size() != 2 ||
          f.elements[0].type != redis::reply::kind::string)
        continue; // gone since the SCAN
      ++rotate_counts_.scanned;
      const auto& stored = f.elements[1].str;
      auto id = id_of(keys[i], settings_.prefix.size());
      auto key_id = crypto::envelope_key_id(stored);
      if (key_id == ring->current_id()) {
        ++rotate_counts_.by_key[ring->current_id()];
        continue;
      }
      auto o = ring->open(session_crypto::aad(id), stored);
      if (o.code != crypto::errc::ok || id.empty()) {
        // Left as it is: never overwritten (a missing key comes back when it is restored).
        if (key_id.empty())
          ++rotate_counts_.plaintext;
        else
          ++rotate_counts_.by_key[std::string(key_id)];
        continue;
      }
      auto sealed = ring->seal(session_crypto::aad(id), o.plaintext);
      auto r = eval(scripts_.reseal, {keys[i]}, {f.elements[0].str, stored, std::move(sealed)});
      if (r.type == redis::reply::kind::integer && r.integer == 1) {
        ++resealed;
        ++rotate_counts_.by_key[ring->current_id()];
      } else {
        c.rotate_conflicts.fetch_add(1, std::memory_order_relaxed); // a write sealed it anew
        ++rotate_counts_.by_key[ring->current_id()];
      }
    }
    rotate_cursors_[m] = next == "0" ? "done" : next;
    pass_done = pass_done && rotate_cursors_[m] == "done";
  }
  c.rotated.fetch_add(resealed, std::memory_order_relaxed);
  if (pass_done) {
    rotate_counts_.finished_ms = clock_.now_ms();
    c.set_last_pass(std::move(rotate_counts_));
    c.passes.fetch_add(1, std::memory_order_relaxed);
    rotate_counts_ = {};
    rotate_cursors_.clear();
  }
  return resealed;
}

} // namespace sessiond::actors
