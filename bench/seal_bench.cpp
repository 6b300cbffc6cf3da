// sessiond-seal-bench: the CPU cost of sealing and opening one session value (adapters/crypto,
// AES-256-GCM) on one thread, without Redis or HTTP.
//   build/bench/sessiond-seal-bench [value_bytes=512] [iterations=200000]
#include "adapters/crypto/keyring.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

int main(int argc, char** argv) {
  using namespace sessiond::crypto;
  std::size_t bytes = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 512;
  int n = argc > 2 ? std::atoi(argv[2]) : 200000;
  auto ring = keyring::parse("bench:" + base64_encode(std::string(key_bytes, 'k')));
  std::string data = "{\"blob\":\"" + std::string(bytes > 11 ? bytes - 11 : 0, 'x') + "\"}";
  std::string sealed;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i)
    sealed = ring->seal("session:bench-session-id", data);
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i)
    if (ring->open("session:bench-session-id", sealed).code != errc::ok)
      return 1;
  auto t2 = std::chrono::steady_clock::now();
  auto per = [n](auto a, auto b) {
    return std::chrono::duration<double, std::micro>(b - a).count() / n;
  };
  std::printf("%zu-byte value (%zu sealed): seal %.2f us, open %.2f us per call (%d calls each)\n",
              data.size(), sealed.size(), per(t0, t1), per(t1, t2), n);
  return 0;
}
