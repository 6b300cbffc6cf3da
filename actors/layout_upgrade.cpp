// upgrade_session: HGETALL and PTTL of the old key (one pipelined pair on one connection), then
// upgrade_in on the new key's slot, index_add on the user's slot for a live session, and
// upgrade_out on the old key's slot. A crash between the steps leaves both copies, which the next
// attempt resolves the same way (upgrade_in keeps a layout-2 key that exists).
#include "actors/layout_upgrade.hpp"

#include <charconv>
#include <memory>

namespace sessiond::actors {

namespace {

struct upgrade_state {
  upgrade_context c;
  std::size_t hint = 0;
  std::string id;
  std::int64_t now_ms = 0;
  std::function<void(upgrade_outcome)> done;
  redis::reply hash;
  std::string version, user, status, created;
};

std::int64_t to_int(const std::string& s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

bool failed(redis::errc e, const redis::reply& r) {
  return e != redis::errc::ok || r.is_error();
}

void delete_old(const std::shared_ptr<upgrade_state>& st, upgrade_outcome outcome) {
  st->c.redis->eval(st->hint, st->c.scripts->upgrade_out, {st->c.keys.legacy_session(st->id)},
                    {st->version}, [st, outcome](redis::errc e, redis::reply&& r) {
                      st->done(failed(e, r) ? upgrade_outcome::failed : outcome);
                    });
}

void copy_in(const std::shared_ptr<upgrade_state>& st, std::int64_t pttl) {
  const auto& h = st->hash.elements;
  std::vector<std::string> args{st->id, std::to_string(st->now_ms), std::to_string(pttl)};
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    const auto& name = h[i].str;
    const auto& value = h[i + 1].str;
    if (name == "v")
      st->version = value;
    else if (name == "u")
      st->user = value;
    else if (name == "st")
      st->status = value;
    else if (name == "ca")
      st->created = value;
    args.push_back(name);
    args.push_back(value);
  }
  auto key = st->c.keys.session(st->id);
  auto dirty = st->c.keys.dirty(model::partition_of(st->id));
  st->c.redis->eval(
      st->hint, st->c.scripts->upgrade_in, {key, dirty}, std::move(args),
      [st](redis::errc e, redis::reply&& r) {
        if (failed(e, r))
          return st->done(upgrade_outcome::failed);
        auto outcome = r.integer == 1 ? upgrade_outcome::moved : upgrade_outcome::kept;
        if (outcome == upgrade_outcome::kept || st->status != "A" || st->user.empty())
          return delete_old(st, outcome);
        // Indexed before the old key goes, so a listing finds it in one layout or the other.
        auto created = to_int(st->created);
        st->c.redis->eval(st->hint, st->c.scripts->index_add, {st->c.keys.user(st->user)},
                          {st->created, st->id, std::to_string(st->now_ms),
                           std::to_string(created + st->c.max_lifetime_ms)},
                          [st, outcome](redis::errc e2, redis::reply&& r2) {
                            if (failed(e2, r2))
                              return st->done(upgrade_outcome::failed);
                            delete_old(st, outcome);
                          });
      });
}

} // namespace

void upgrade_session(const upgrade_context& c, std::size_t hint, const std::string& id,
                     std::int64_t now_ms, std::function<void(upgrade_outcome)> done) {
  auto st = std::make_shared<upgrade_state>();
  st->c = c;
  st->hint = hint;
  st->id = id;
  st->now_ms = now_ms;
  st->done = std::move(done);
  auto old_key = c.keys.legacy_session(id);
  c.redis->command(hint, {"HGETALL", old_key}, [st](redis::errc e, redis::reply&& r) {
    if (failed(e, r))
      return st->done(upgrade_outcome::failed);
    if (r.type != redis::reply::kind::array || r.elements.empty())
      return st->done(upgrade_outcome::absent);
    st->hash = std::move(r);
    st->c.redis->command(st->hint, {"PTTL", st->c.keys.legacy_session(st->id)},
                         [st](redis::errc e2, redis::reply&& r2) {
                           if (failed(e2, r2))
                             return st->done(upgrade_outcome::failed);
                           if (r2.integer == -2) // expired between the two reads
                             return st->done(upgrade_outcome::absent);
                           copy_in(st, r2.integer);
                         });
  });
}

} // namespace sessiond::actors
