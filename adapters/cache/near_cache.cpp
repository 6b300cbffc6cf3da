// See near_cache.hpp.
#include "adapters/cache/near_cache.hpp"

#include <functional>

namespace sessiond::cache {

near_cache::near_cache(std::size_t capacity, std::int64_t ttl_ms)
    : per_stripe_(capacity == 0 ? 0 : (capacity + 15) / 16), ttl_ms_(ttl_ms) {}

near_cache::stripe& near_cache::stripe_of(const std::string& key) {
  return stripes_[std::hash<std::string>{}(key) % stripes_.size()];
}

near_cache::entry_ptr near_cache::get(const std::string& key, std::int64_t now_ms) {
  if (per_stripe_ == 0)
    return nullptr;
  auto& s = stripe_of(key);
  std::lock_guard<std::mutex> guard{s.mtx};
  auto it = s.index.find(key);
  if (it == s.index.end())
    return nullptr;
  auto slot_it = it->second;
  if (now_ms - slot_it->kept_at_ms >= ttl_ms_) {
    s.index.erase(it);
    s.lru.erase(slot_it);
    return nullptr;
  }
  s.lru.splice(s.lru.begin(), s.lru, slot_it);
  return slot_it->entry;
}

void near_cache::put(const std::string& key, entry_ptr e, std::int64_t now_ms) {
  if (per_stripe_ == 0)
    return;
  auto& s = stripe_of(key);
  std::lock_guard<std::mutex> guard{s.mtx};
  if (auto it = s.index.find(key); it != s.index.end()) {
    it->second->entry = std::move(e);
    it->second->kept_at_ms = now_ms;
    s.lru.splice(s.lru.begin(), s.lru, it->second);
    return;
  }
  s.lru.push_front(slot{key, std::move(e), now_ms});
  s.index.emplace(s.lru.front().key, s.lru.begin());
  if (s.lru.size() > per_stripe_) {
    s.index.erase(s.lru.back().key);
    s.lru.pop_back();
  }
}

void near_cache::erase(const std::string& key) {
  if (per_stripe_ == 0)
    return;
  auto& s = stripe_of(key);
  std::lock_guard<std::mutex> guard{s.mtx};
  if (auto it = s.index.find(key); it != s.index.end()) {
    auto slot_it = it->second;
    s.index.erase(it);
    s.lru.erase(slot_it);
  }
}

std::size_t near_cache::erase_prefix(std::string_view prefix) {
  std::size_t n = 0;
  for (auto& s : stripes_) {
    std::lock_guard<std::mutex> guard{s.mtx};
    for (auto it = s.lru.begin(); it != s.lru.end();) {
      if (std::string_view(it->key).substr(0, prefix.size()) == prefix) {
        s.index.erase(it->key);
        it = s.lru.erase(it);
        ++n;
      } else {
        ++it;
      }
    }
  }
  return n;
}

std::size_t near_cache::size() const {
  std::size_t n = 0;
  for (const auto& s : stripes_) {
    std::lock_guard<std::mutex> guard{s.mtx};
    n += s.lru.size();
  }
  return n;
}

} // namespace sessiond::cache
