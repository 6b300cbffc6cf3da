// sessiond-bench command line: the options struct, the parser and the --help text.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace sessiond::bench {

/// The operations a mix can draw from; indexes into `mix::weight`.
enum class op : std::uint8_t { get, put, patch, del };
inline constexpr std::size_t op_count = 4;
const char* to_string(op o);

/// Relative weights of each operation, e.g. get=80,put=15,patch=5.
struct mix {
  std::uint32_t weight[op_count] = {80, 20, 0, 0};
  std::uint32_t total() const;
};

/// Host and port of a target, plus what the URL scheme carries on top.
struct target {
  std::string host;
  std::uint16_t port = 0;
  std::string password; ///< redis only: AUTH when not empty
  std::string user;     ///< redis only: ACL user for AUTH
  int db = 0;           ///< redis only: SELECT when not 0
};

struct options {
  /// --url, given once or more, each a URL or a comma-separated list; the first --url replaces
  /// the default. Connection i loads urls[i % urls.size()].
  std::vector<std::string> urls = {"http://127.0.0.1:8080"};
  std::vector<target> http; ///< one per url, in the same order
  bool url_given = false;   ///< the parser saw a --url (so the default was dropped)
  std::size_t connections = 64;
  std::size_t threads = 1;
  std::chrono::nanoseconds duration = std::chrono::seconds(30);
  std::chrono::nanoseconds warmup = std::chrono::seconds(2);
  std::chrono::nanoseconds timeout = std::chrono::seconds(5);
  double rate = 0; ///< total requests/s; 0 = closed loop
  struct mix mix;
  std::uint64_t sessions = 10000;
  std::size_t value_bytes = 512;
  bool prefill = true;
  bool json = false;
  bool baseline_redis = false;
  bool only_redis = false;
  std::string redis_url = "redis://127.0.0.1:6379/0";
  target redis;
  long rss_pid = 0;       ///< 0 = no sampling
  std::string acked_file; ///< --acked-file: every write's outcome and version (sessiond phase)
};

/// A bad command line; `what()` is the one line printed before exiting with status 2.
struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// Parses argv. Throws usage_error. Sets `help` when --help was given.
options parse_options(const std::vector<std::string>& args, bool& help);

/// The --help text.
const char* help_text();

/// A whole number in [min, max] ("1e5", "12x" and "-1" are refused). Throws usage_error naming
/// `flag`.
std::uint64_t parse_whole(std::string_view flag, std::string_view text, std::uint64_t min,
                          std::uint64_t max);

/// A finite number ("1e5" is fine). Throws usage_error naming `flag`.
double parse_number(std::string_view flag, std::string_view text);

/// Parses "500ms", "30s", "5m", "1.5h". Throws usage_error naming `flag`.
std::chrono::nanoseconds parse_duration(std::string_view flag, std::string_view text);

/// Parses "get=80,put=15,patch=5,delete=0". Throws usage_error.
struct mix parse_mix(std::string_view text);

/// Parses http://host[:port][/] and redis://[[user]:password@]host[:port][/db].
target parse_url(std::string_view flag, std::string_view url, std::string_view scheme);

/// A Redis target as printed: redis://host:port/db, a password masked as ***.
std::string shown_url(const target& redis);

/// The URLs as shown in the report: "http://a:1,http://b:2".
std::string joined(const std::vector<std::string>& urls);

/// "get=80,put=20" (zero weights omitted).
std::string to_string(const struct mix& m);

} // namespace sessiond::bench
