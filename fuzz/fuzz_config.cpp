// Fuzz target: configuration text, config::load_string with an empty environment. A config_error
// is the expected answer to bad input; any other exception, a crash or UB is a bug.
#include "config/config.hpp"
#include "fuzz/fuzz_check.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <string>

namespace {

using sessiond::fuzz::as_text;
namespace config = sessiond::config;

/// Loads `text`; nullopt on config_error. Any other exception is reported and aborts.
std::optional<config::config> load(const std::string& text, const char* what) {
  static const config::env_map no_env;
  try {
    return config::load_string(text, no_env);
  } catch (const config::config_error&) {
    return std::nullopt;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: load_string threw a non-config_error: %s\n", what, e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "%s: load_string threw a non-standard exception\n", what);
    std::abort();
  }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto c = load(std::string(as_text(data, size)), "input");
  if (!c)
    return 0;
  // What load accepted is valid, and the effective configuration it prints (the node logs it at
  // start) loads back to itself: printing is reversible up to the masked passwords.
  try {
    config::validate(*c);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "validate refused what load accepted: %s\n", e.what());
    std::abort();
  }
  const std::string printed = config::to_toml(*c);
  auto reloaded = load(printed, "printed config");
  if (!reloaded)
    std::fprintf(stderr, "the printed configuration does not load:\n%s\n", printed.c_str());
  FUZZ_CHECK(reloaded);
  FUZZ_CHECK(config::to_toml(*reloaded) == printed);
  return 0;
}
