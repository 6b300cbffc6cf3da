// The bench's output: a human-readable summary or one JSON object, from the phase results.
#pragma once

#include "bench/load.hpp"
#include "bench/options.hpp"

#include <nlohmann/json.hpp>

#include <iosfwd>
#include <vector>

namespace sessiond::bench {

/// Everything about the run: parameters, each phase's results, sessiond/redis ratios.
nlohmann::ordered_json to_json(const options& o, const std::vector<phase_result>& phases);

/// The same content as text, for a terminal.
void print_text(std::ostream& out, const options& o, const std::vector<phase_result>& phases);

} // namespace sessiond::bench
