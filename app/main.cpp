// sessiond: parse flags, load the configuration, run a node until SIGTERM/SIGINT; SIGHUP re-reads
// the tokens files.
#include "adapters/crypto/keyring.hpp"
#include "app/auth.hpp"
#include "app/log.hpp"
#include "app/node.hpp"
#include "config/config.hpp"

#include <csignal>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>

namespace {

constexpr const char* usage = R"(usage: sessiond [--config FILE] [--check-config | --print-config]
       sessiond migrate [--config FILE]

Runs a sessiond node: the session API on Redis, written behind to PostgreSQL.
`migrate` applies the pending PostgreSQL schema migrations (embedded in this binary) and exits.

  --config FILE    TOML configuration (default: $SESSIOND_CONFIG, else built-in defaults)
  --check-config   validate the configuration (file and environment) and exit 0, or 2
  --print-config   print the effective configuration as TOML, secrets masked, and exit
  --version        print the version and exit
  --help           this text

Every key can be overridden by SESSIOND_<SECTION>_<KEY>; see docs/configuration.md.
SIGTERM or SIGINT stops the node gracefully; SIGHUP re-reads auth's tokens files and encryption's keys file.
)";

struct flags {
  std::string config_path;
  bool migrate = false;
  bool check = false;
  bool print = false;
};

/// Returns 0 to go on, or an exit code.
int parse_flags(int argc, char** argv, flags& f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "migrate" && i == 1) {
      f.migrate = true;
    } else if (a == "--config" && i + 1 < argc) {
      f.config_path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      f.config_path = a.substr(9);
    } else if (a == "--check-config") {
      f.check = true;
    } else if (a == "--print-config") {
      f.print = true;
    } else if (a == "--help" || a == "-h") {
      std::cout << usage;
      return -1;
    } else if (a == "--version") {
      std::cout << "sessiond 0.1.0\n";
      return -1;
    } else {
      std::cerr << "sessiond: unknown argument \"" << a << "\" (see --help)\n";
      return 2;
    }
  }
  if (f.config_path.empty())
    if (const char* p = std::getenv("SESSIOND_CONFIG"))
      f.config_path = p;
  return 0;
}

/// Waits for the signals on a thread of its own: SIGHUP re-reads the tokens files (rotation
/// without a restart), SIGTERM/SIGINT ask the node to stop.
std::thread signal_thread(sessiond::app::node& n, sigset_t set) {
  return std::thread([&n, set] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0)
        continue;
      if (sig == SIGHUP) {
        sessiond::app::log_info("received SIGHUP, re-reading the tokens and keys files");
        n.reload_auth();
        n.reload_encryption();
        continue;
      }
      sessiond::app::log_info(std::string("received ") + strsignal(sig) + ", shutting down");
      n.request_stop(0);
      return;
    }
  });
}

} // namespace

int main(int argc, char** argv) {
  flags f;
  if (int rc = parse_flags(argc, argv, f); rc != 0)
    return rc < 0 ? 0 : rc;
  sessiond::config::config cfg;
  try {
    cfg = sessiond::config::load(f.config_path, sessiond::config::process_env());
  } catch (const sessiond::config::config_error& e) {
    std::cerr << e.what() << '\n';
    return 2;
  }
  if (f.print) {
    std::cout << sessiond::config::to_toml(cfg);
    return 0;
  }
  if (f.migrate) {
    try {
      auto applied = sessiond::app::migrate(cfg);
      for (const auto& name : applied)
        std::cout << "applied " << name << '\n';
      std::cout << (applied.empty() ? "schema up to date" : "migrations applied") << " (schema "
                << cfg.postgres.schema << ")\n";
      return 0;
    } catch (const std::exception& e) {
      std::cerr << "sessiond migrate: " << e.what() << '\n';
      return 1;
    }
  }
  try { // the tokens and keys files too: one that cannot be used is a configuration error
    sessiond::app::load_tokens(cfg.auth);
    if (!cfg.encryption.keys_file.empty())
      sessiond::crypto::keyring::load_file(cfg.encryption.keys_file);
  } catch (const sessiond::crypto::key_file_error& e) {
    std::cerr << "config: encryption: " << e.what() << '\n';
    return 2;
  } catch (const sessiond::config::config_error& e) {
    std::cerr << e.what() << '\n';
    return 2;
  }
  if (f.check) {
    std::cout << "config ok" << (f.config_path.empty() ? "" : ": " + f.config_path) << '\n';
    return 0;
  }
  // Block the stop signals in every thread; one thread waits for them with sigwait.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  sessiond::app::node node{cfg};
  std::uint16_t port = 0;
  try {
    port = node.start();
  } catch (const sessiond::config::config_error& e) { // a tokens file changed since the check
    std::cerr << e.what() << '\n';
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sessiond: cannot start: " << e.what() << '\n';
    return 1;
  }
  auto host = cfg.http.listen.substr(0, cfg.http.listen.rfind(':'));
  std::cout << "sessiond listening on http://" << host << ':' << port << std::endl;
  sessiond::app::log_info("node " + cfg.node.id + " started, mode " + cfg.sessions.mode + ", " +
                          std::to_string(cfg.sessions.shards) + " shards");
  auto waiter = signal_thread(node, set);
  int code = node.wait_for_stop();
  node.stop();
  sessiond::app::log_info("stopped");
  if (code != 0) {
    // Escalation: the signal thread still waits; leave without joining it.
    waiter.detach();
    std::_Exit(code);
  }
  waiter.join();
  return 0;
}
