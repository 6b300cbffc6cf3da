// command_wait and eval_wait: a promise shared with the callback, so a reply arriving after
// the wait gave up has somewhere to go.
#include "adapters/redis/blocking.hpp"

#include <future>
#include <memory>

namespace sessiond::redis {

namespace {

using promise_ptr = std::shared_ptr<std::promise<waited>>;

callback fulfil(const promise_ptr& p) {
  return [p](errc e, reply&& r) { p->set_value(waited{e, std::move(r)}); };
}

waited wait(std::future<waited> f, std::chrono::milliseconds limit) {
  if (f.wait_for(limit) != std::future_status::ready)
    return waited{errc::timeout, {}};
  try {
    return f.get();
  } catch (const std::future_error&) {
    return waited{errc::closed, {}};
  }
}

} // namespace

waited command_wait(client& c, std::size_t conn_hint, std::vector<std::string> args,
                    std::chrono::milliseconds limit) {
  auto p = std::make_shared<std::promise<waited>>();
  auto f = p->get_future();
  c.command(conn_hint, std::move(args), fulfil(p));
  return wait(std::move(f), limit);
}

waited eval_wait(client& c, std::size_t conn_hint, const script& s, std::vector<std::string> keys,
                 std::vector<std::string> args, std::chrono::milliseconds limit) {
  auto p = std::make_shared<std::promise<waited>>();
  auto f = p->get_future();
  c.eval(conn_hint, s, std::move(keys), std::move(args), fulfil(p));
  return wait(std::move(f), limit);
}

} // namespace sessiond::redis
