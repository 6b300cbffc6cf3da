// Helpers shared by the fuzz targets: a check that stays on in release builds (NDEBUG turns
// assert off in RelWithDebInfo) and the raw input viewed as text.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

/// Aborts with the failed condition, so libFuzzer and the replay driver both report a crash.
#define FUZZ_CHECK(cond)                                                                           \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      ::sessiond::fuzz::check_failed(#cond, __FILE__, __LINE__);                                   \
  } while (false)

namespace sessiond::fuzz {

[[noreturn]] inline void check_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", file, line, what);
  std::fflush(stderr);
  std::abort();
}

/// The fuzzer's bytes as a string_view (no copy; valid for the call only).
inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

} // namespace sessiond::fuzz
