// sessiond-tcp-proxy: the integration tests' cuttable loopback TCP proxy
// (tests/integration/tcp_proxy.hpp) as a process, for bench/soak.sh.
//
//   sessiond-tcp-proxy TARGET_PORT
//
// Listens on a free loopback port and prints "listening on 127.0.0.1:PORT" once; relays every
// connection to 127.0.0.1:TARGET_PORT. SIGUSR1 cuts it (the listener and every relayed
// connection closed, new connections refused, as a stopped or unreachable server looks),
// SIGUSR2 restores it on the same port; each change prints one line. SIGTERM or SIGINT end it.
#include "tests/integration/tcp_proxy.hpp"

#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: sessiond-tcp-proxy TARGET_PORT\n";
    return 2;
  }
  char* end = nullptr;
  long target = std::strtol(argv[1], &end, 10);
  if (*end != '\0' || target < 1 || target > 65535) {
    std::cerr << "sessiond-tcp-proxy: bad port '" << argv[1] << "'\n";
    return 2;
  }
  try {
    sessiond::test::tcp_proxy proxy(static_cast<std::uint16_t>(target));
    std::cout << "listening on 127.0.0.1:" << proxy.port() << std::endl;
    boost::asio::io_context io;
    boost::asio::signal_set signals(io, SIGUSR1, SIGUSR2, SIGTERM);
    signals.add(SIGINT);
    std::function<void(const boost::system::error_code&, int)> on_signal =
        [&](const boost::system::error_code& ec, int sig) {
          if (ec || sig == SIGTERM || sig == SIGINT)
            return; // io.run() returns: nothing else is pending
          proxy.set_down(sig == SIGUSR1);
          std::cout << (sig == SIGUSR1 ? "down" : "up") << std::endl;
          signals.async_wait(on_signal);
        };
    signals.async_wait(on_signal);
    io.run();
  } catch (const std::exception& e) {
    std::cerr << "sessiond-tcp-proxy: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
