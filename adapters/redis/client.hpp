// Redis client on Asio: hiredis' RESP formatter and reader over Asio sockets, a small
// pool of connections, pipelining, per-command deadlines and reconnect with backoff. Against a
// Redis Cluster it finds the masters, keeps such a pool per master and routes every command by
// its key's slot, following MOVED and ASK; the caller does not say which it talks to.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace boost::asio {
class io_context;
} // namespace boost::asio

namespace sessiond::redis {

/// Transport-level failures. A Redis error reply ("ERR …") is not one of these:
/// it arrives as a reply of kind `error`.
enum class errc {
  ok = 0,
  disconnected, ///< no connection up: failed at once, never queued
  timeout,      ///< no reply within the command timeout (the connection is reset)
  protocol,     ///< unparsable reply (the connection is reset)
  closed,       ///< client stopped or connection lost with the command pending
};
const char* to_string(errc e);

struct reply {
  enum class kind { nil, string, status, integer, array, error };
  kind type = kind::nil;
  std::string str; ///< string, status and error text
  long long integer = 0;
  std::vector<reply> elements;
  bool is_error() const { return type == kind::error; }
};

/// Runs exactly once on an I/O thread. `e != ok` means `r` is empty. It may call command()
/// or eval() again. An exception it throws is swallowed (it must not unwind through Asio).
using callback = std::function<void(errc e, reply&& r)>;

struct client_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string password; ///< AUTH when not empty
  int db = 0;
  std::size_t connections = 2;
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds command_timeout{1000};
  std::chrono::milliseconds reconnect_min{100};
  std::chrono::milliseconds reconnect_max{5000};
  bool tls = false;        ///< rediss://: TLS 1.2 or later, the server's certificate verified
  std::string tls_ca_file; ///< CA certificates (PEM) to verify it with; empty: the system's
  /// A client certificate (PEM, chain allowed) and its unencrypted private key (PEM), shown to a
  /// server that asks for one (`tls-auth-clients`); both empty: none.
  std::string tls_cert_file;
  std::string tls_key_file;
  /// More servers to start from (host, port): a comma-separated URL's later entries. Any one
  /// that answers tells whether this is a cluster and, if so, where its masters are.
  std::vector<std::pair<std::string, std::uint16_t>> seeds;
  /// Cluster: at most this many MOVED / ASK redirects per command, then an error reply.
  int max_redirects = 5;
  /// Cluster: the topology is read again at least this often, and at most every
  /// refresh_min_interval when redirects or a lost master ask for it.
  std::chrono::milliseconds refresh_interval{5000};
  std::chrono::milliseconds refresh_min_interval{100};
};

/// Parses redis://[[user]:password@]host[:port][/db] (or rediss:// for TLS) into host, port
/// (6379), password (none; %-decoded), db (0) and tls; the user is ignored, [v6] hosts are
/// accepted and other options kept. Several URLs separated by commas (seeds of one cluster)
/// fill `seeds` from the second on; they must agree on the scheme, the password and the db.
/// Returns false and sets `error`, leaving `out` alone.
bool parse_url(std::string_view url, client_options& out, std::string& error);

/// Appends one command in RESP (`*N`, then `$len` and the bytes of each argument) to `out`.
/// The same bytes as hiredis' redisFormatCommandArgv, without its printf and allocation.
void append_command(std::string& out, std::size_t argc, const char* const* argv,
                    const std::size_t* lens);

/// A Lua script run with EVALSHA; loaded with SCRIPT LOAD on first use per connection and on
/// NOSCRIPT (then retried once).
struct script {
  explicit script(std::string src);
  std::string source;
  std::string sha1; ///< hex SHA-1 of source (OpenSSL)
};

struct client_stats {
  std::uint64_t commands = 0;   ///< command() and eval() calls
  std::uint64_t errors = 0;     ///< transport errors (errc != ok)
  std::uint64_t reconnects = 0; ///< connections re-established after being up
  std::size_t connections_up = 0;
  std::uint64_t moved = 0;     ///< cluster: MOVED redirects followed
  std::uint64_t asked = 0;     ///< cluster: ASK redirects followed
  std::uint64_t retried = 0;   ///< cluster: TRYAGAIN / CLUSTERDOWN / a new master awaited
  std::uint64_t refreshes = 0; ///< cluster: topology reads that succeeded
};

/// What the client knows of a Redis Cluster (CLUSTER SHARDS, or CLUSTER SLOTS on Redis < 7).
struct cluster_node {
  std::string id;      ///< the node's 40-character id (empty from CLUSTER SLOTS on old Redis)
  std::string address; ///< host:port
  std::string health;  ///< online, failed, loading; empty when the server does not say
};
struct cluster_shard {
  std::vector<std::pair<int, int>> slots; ///< inclusive ranges
  cluster_node master;
  std::vector<cluster_node> replicas;
  bool connected = false; ///< this client has a connection up to the master
};
struct cluster_view {
  bool cluster = false; ///< false: a single Redis (or not known yet)
  std::vector<cluster_shard> shards;
  std::int64_t age_ms = -1; ///< since the topology was last read; -1: never
};

/// Thread-safe. Commands given from one thread with the same `conn_hint` go out on the same
/// connection in that order and their callbacks run in that order. Commands that are queued
/// while a write is in flight go out together in one write (pipelining). While the hinted
/// connection is down, commands go to another one that is up; with none up they fail at once
/// with errc::disconnected. Commands that do not answer exactly once (SUBSCRIBE, MONITOR)
/// are not supported; a blocking one (BLPOP) holds its connection and is bounded by
/// command_timeout like any other.
class client {
public:
  client(boost::asio::io_context& io, client_options opts);
  /// Connection i runs on loops[i % loops.size()] (one io_context per I/O thread), so a caller
  /// on an I/O thread can use a connection of its own thread (local_hint). Timers and state
  /// notifications run on the first.
  client(const std::vector<boost::asio::io_context*>& loops, client_options opts);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// Starts connecting every connection (async). Reconnects forever with backoff until stop().
  void start();
  /// Closes connections; pending commands complete with errc::closed (on I/O threads, maybe
  /// after stop() returned; if the io_context never runs again they are destroyed uncalled).
  /// Later commands fail with errc::closed. The destructor calls it; the io_context must
  /// outlive the client.
  void stop();

  /// Sends `args` (an empty command answers an error reply, as Redis would not answer it).
  void command(std::size_t conn_hint, std::vector<std::string> args, callback cb);
  /// EVALSHA, preceded by SCRIPT LOAD the first time a connection sees the script. On
  /// NOSCRIPT (SCRIPT FLUSH behind our back) it loads and retries once on the same connection;
  /// that retry completes after commands sent meanwhile.
  void eval(std::size_t conn_hint, const script& s, std::vector<std::string> keys,
            std::vector<std::string> args, callback cb);

  /// eval(), then WAIT `replicas` `wait` on the same connection in the same write: `cb` gets the
  /// script's reply once that many replicas took the write, else an error reply starting
  /// "NOREPLICAS" (the script ran on the master, which may lose it in a failover). `replicas`
  /// 0 is eval(). `wait` must stay below command_timeout.
  void eval_replicated(std::size_t conn_hint, const script& s, std::vector<std::string> keys,
                       std::vector<std::string> args, int replicas, std::chrono::milliseconds wait,
                       callback cb);

  /// A hint naming a connection that is up and runs on the calling thread's io_context, trying
  /// `hint` first; `hint` itself when there is none (a thread that runs no loop of this client).
  /// Commands sent with it need no hand-off to another thread.
  std::size_t local_hint(std::size_t hint) const;

  /// Why the last connection was refused after TCP connected: a TLS handshake that failed
  /// (certificate not trusted, name mismatch, …) or a server that is a read-only replica (ROLE
  /// at connect, or a READONLY reply later: the connection is dropped and made again, so a
  /// failover that moves a DNS name is followed). Empty once a connection is up.
  std::string last_error() const;
  /// True when at least one connection is up.
  bool connected() const;
  /// Cluster: true when every slot's master has a connection up; a single server: as
  /// connected(). False until the client knows which of the two it talks to (its first
  /// topology read), so a caller waiting for it does not start on the seed alone.
  bool all_slots_connected() const;
  cluster_view cluster() const;
  /// The address of every master (one entry, the server, when not a cluster): where commands
  /// that act on one server's keys (SCAN, DBSIZE, FLUSHDB, INFO) must go to cover them all.
  std::vector<std::string> masters() const;
  /// Sends `args` to the master at `address` (as masters() names it); errc::disconnected when
  /// the client has no connection there.
  void command_at(const std::string& address, std::size_t conn_hint, std::vector<std::string> args,
                  callback cb);
  client_stats stats() const;
  /// Called (on an I/O thread, one call at a time, in order) whenever the "at least one
  /// connection up" state flips, the first connect included. Never called once stop() has
  /// returned; stop() waits for a running call, so `f` must not call stop(),
  /// on_state_change() or destroy the client.
  void on_state_change(std::function<void(bool up)> f);

private:
  struct impl;
  std::shared_ptr<impl> impl_;
};

} // namespace sessiond::redis
