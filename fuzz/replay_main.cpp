// Replay driver for builds without libFuzzer: runs a target's LLVMFuzzerTestOneInput over its seed
// corpus, then over N deterministic pseudo-random mutations of it, so ctest exercises every target.
//
//   fuzz_<target> [--iterations=N] [--seed=S] [--max-len=BYTES] [FILE|DIR]...
//
// N defaults to $FUZZ_REPLAY_ITERATIONS or 2000, S to $FUZZ_REPLAY_SEED or 1. On a crash the
// current input is written to replay-crash-<pid>.bin in the working directory.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

namespace fs = std::filesystem;

struct options {
  std::size_t iterations = 2000;
  std::uint64_t seed = 1;
  std::size_t max_len = 4096;
  std::vector<std::string> paths;
};

/// splitmix64: tiny, fixed, and the same on every platform, so a seed names one run.
class rng {
public:
  explicit rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform-enough in [0, n); n must be > 0.
  std::size_t below(std::size_t n) { return static_cast<std::size_t>(next() % n); }

private:
  std::uint64_t state_;
};

// The input being run, for the crash handler. Only read there; written between runs.
std::string current_input;
char crash_path[64] = "replay-crash.bin";

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    auto w = ::write(fd, p, n);
    if (w <= 0)
      return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

/// Async-signal-safe: saves the input that crashed, then dies by the same signal.
void on_fatal_signal(int sig) {
  int fd = ::open(crash_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    write_all(fd, current_input.data(), current_input.size());
    ::close(fd);
  }
  static constexpr char msg[] = "\nreplay: crashing input written to ";
  write_all(2, msg, sizeof msg - 1);
  write_all(2, crash_path, std::strlen(crash_path));
  write_all(2, "\n", 1);
  std::raise(sig); // SA_RESETHAND: the default action now
}

/// On its own stack, so that a stack overflow (deeply nested input) is reported too.
void install_crash_handler() {
  static std::vector<char> alt_stack(1 << 16);
  stack_t ss{};
  ss.ss_sp = alt_stack.data();
  ss.ss_size = alt_stack.size();
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) {
    // A sanitizer build has its own handlers, with better reports: leave those in place.
    struct sigaction old {};
    if (::sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_DFL)
      ::sigaction(sig, &sa, nullptr);
  }
}

std::size_t parse_size(const char* text, const char* what) {
  char* end = nullptr;
  auto v = std::strtoull(text, &end, 10);
  if (end == text || *end != '\0') {
    std::fprintf(stderr, "replay: %s must be a number, got \"%s\"\n", what, text);
    std::exit(2);
  }
  return static_cast<std::size_t>(v);
}

options parse_options(int argc, char** argv) {
  options o;
  if (const char* env = std::getenv("FUZZ_REPLAY_ITERATIONS"))
    o.iterations = parse_size(env, "FUZZ_REPLAY_ITERATIONS");
  if (const char* env = std::getenv("FUZZ_REPLAY_SEED"))
    o.seed = parse_size(env, "FUZZ_REPLAY_SEED");
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string_view flag) { return argv[i] + flag.size(); };
    if (arg.rfind("--iterations=", 0) == 0)
      o.iterations = parse_size(value("--iterations="), "--iterations");
    else if (arg.rfind("--seed=", 0) == 0)
      o.seed = parse_size(value("--seed="), "--seed");
    else if (arg.rfind("--max-len=", 0) == 0)
      o.max_len = std::max<std::size_t>(1, parse_size(value("--max-len="), "--max-len"));
    else if (arg.rfind("-", 0) == 0) {
      std::fprintf(stderr,
                   "usage: %s [--iterations=N] [--seed=S] [--max-len=BYTES] [FILE|DIR]...\n",
                   argv[0]);
      std::exit(2);
    } else
      o.paths.emplace_back(arg);
  }
  return o;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Every regular file named, and every regular file directly in a named directory, sorted.
std::vector<std::string> load_corpus(const std::vector<std::string>& paths) {
  std::vector<fs::path> files;
  for (const auto& p : paths) {
    if (fs::is_directory(p)) {
      for (const auto& entry : fs::directory_iterator(p))
        if (entry.is_regular_file())
          files.push_back(entry.path());
    } else if (fs::is_regular_file(p)) {
      files.emplace_back(p);
    } else {
      std::fprintf(stderr, "replay: no such file or directory: %s\n", p.c_str());
      std::exit(2);
    }
  }
  std::sort(files.begin(), files.end());
  std::vector<std::string> corpus;
  for (const auto& f : files)
    corpus.push_back(read_file(f));
  return corpus;
}

// Tokens that matter to HTTP, JSON and TOML: inserting them reaches deeper than random bytes.
constexpr std::array<std::string_view, 24> tokens = {"{",
                                                     "}",
                                                     "[",
                                                     "]",
                                                     "\"",
                                                     ":",
                                                     ",",
                                                     "null",
                                                     "-1",
                                                     "1e999",
                                                     "\\u0000",
                                                     "\r\n",
                                                     "\r\n\r\n",
                                                     "=",
                                                     "[[",
                                                     "]]",
                                                     "'''",
                                                     "\"\"\"",
                                                     "\n",
                                                     "0x",
                                                     "Transfer-Encoding: chunked\r\n",
                                                     "Content-Length: ",
                                                     "\xff",
                                                     std::string_view("\0", 1)};

void insert_bytes(std::string& s, std::size_t pos, std::string_view bytes) {
  s.insert(std::min(pos, s.size()), bytes.data(), bytes.size());
}

/// One random edit: flip, overwrite, insert, erase, duplicate, splice or insert a token.
void mutate_once(std::string& s, const std::vector<std::string>& corpus, rng& r) {
  const std::size_t pos = r.below(s.size() + 1);
  switch (r.below(7)) {
  case 0:
    if (!s.empty())
      s[pos % s.size()] ^= static_cast<char>(1u << r.below(8));
    break;
  case 1:
    if (!s.empty())
      s[pos % s.size()] = static_cast<char>(r.next());
    break;
  case 2: {
    std::string bytes(1 + r.below(4), '\0');
    for (auto& c : bytes)
      c = static_cast<char>(r.next());
    insert_bytes(s, pos, bytes);
    break;
  }
  case 3:
    if (pos < s.size())
      s.erase(pos, 1 + r.below(std::min<std::size_t>(16, s.size() - pos)));
    break;
  case 4:
    if (!s.empty()) {
      auto from = r.below(s.size());
      auto chunk = s.substr(from, 1 + r.below(std::min<std::size_t>(64, s.size() - from)));
      insert_bytes(s, pos, chunk);
    }
    break;
  case 5:
    if (!corpus.empty()) {
      const auto& other = corpus[r.below(corpus.size())];
      s = s.substr(0, pos) + other.substr(r.below(other.size() + 1));
    }
    break;
  default: {
    insert_bytes(s, pos, tokens[r.below(tokens.size())]);
    break;
  }
  }
}

/// Like libFuzzer, hands the target a heap copy of exactly the input's size, so that a sanitizer
/// build catches a read past its end (a std::string would have a readable NUL there).
void run_one(const std::string& input) {
  current_input = input;
  auto exact = std::make_unique<std::uint8_t[]>(input.size());
  std::memcpy(exact.get(), input.data(), input.size());
  LLVMFuzzerTestOneInput(exact.get(), input.size());
}

} // namespace

int main(int argc, char** argv) {
  const options opts = parse_options(argc, argv);
  std::snprintf(crash_path, sizeof crash_path, "replay-crash-%d.bin", static_cast<int>(::getpid()));
  install_crash_handler();

  const auto started = std::chrono::steady_clock::now();
  const auto corpus = load_corpus(opts.paths);
  run_one({});
  for (const auto& input : corpus)
    run_one(input);

  // Mutants stay within --max-len, or within the largest seed when that is longer (huge headers).
  std::size_t limit = opts.max_len;
  for (const auto& input : corpus)
    limit = std::max(limit, input.size());
  rng r(opts.seed);
  std::string last;
  for (std::size_t i = 0; i < opts.iterations; ++i) {
    // Mostly a fresh corpus entry; sometimes the previous mutant, to walk further from the seeds.
    std::string s = (corpus.empty() || r.below(4) == 0) ? last : corpus[r.below(corpus.size())];
    for (std::size_t n = 1 + r.below(4); n > 0; --n)
      mutate_once(s, corpus, r);
    if (s.size() > limit)
      s.resize(limit);
    run_one(s);
    last = std::move(s);
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  std::printf("replay: %zu corpus inputs and %zu mutations (seed %llu) passed in %lld ms\n",
              corpus.size() + 1, opts.iterations, static_cast<unsigned long long>(opts.seed),
              static_cast<long long>(ms));
  return 0;
}
