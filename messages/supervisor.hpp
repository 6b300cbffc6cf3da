// The supervisor's interface: it spawns and monitors the session actors and restarts a crashed
// one with backoff.
#pragma once

#include "messages/session.hpp"

#include <caf/atom.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>

namespace sessiond::messages {

using restart_atom = caf::atom_constant<caf::atom("restart")>;
using get_router_atom = caf::atom_constant<caf::atom("getrouter")>;

using supervisor_actor = caf::typed_actor<
    // Restart child i after its backoff (shards are 0..n-1, the router is n).
    caf::reacts_to<restart_atom, std::uint64_t>,
    // The current router handle.
    caf::replies_to<get_router_atom>::with<router_actor>>;

} // namespace sessiond::messages
