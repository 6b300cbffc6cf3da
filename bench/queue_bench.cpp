// `sessiond-bench queue`: N no-op jobs through sessiond's job queue, run by the node's built-in
// pool (--mode pool) or by the bench's own workers on the lease API (--mode lease), in phases:
// enqueue into a paused queue, drain after resume, producers and workers together, a paced
// arrival rate; and Redis memory per 100,000 waiting jobs. Redis CPU from INFO.
//
// One file although it passes ~800 lines: its blocking HTTP and Redis helpers serve this bench
// alone, and its phases share them and one report.
#include "bench/queue_bench.hpp"

#include "bench/histogram.hpp"
#include "bench/options.hpp"
#include "bench/proc_cpu.hpp"

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nlohmann/json.hpp>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netdb.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_set>

namespace sessiond::bench {

namespace {

using json = nlohmann::ordered_json; // phases print in the order they ran
using steady = std::chrono::steady_clock;

struct queue_args {
  std::string url = "http://127.0.0.1:8080";
  target http;
  std::string redis_url = "redis://127.0.0.1:6379/0";
  target redis;
  bool redis_given = false;
  std::string queue = "bench";
  std::string type = "noop";
  std::string key_prefix = "sessiond:"; ///< redis.key_prefix of the node (pool-mode sampling)
  std::uint64_t jobs = 100000;
  std::size_t payload_bytes = 200;
  bool lease_mode = false;
  std::size_t workers = 8;
  std::size_t lease_max = 100;
  std::int64_t wait_ms = 500;
  std::size_t producers = 4;
  std::size_t batch = 100;
  double paced_rate = 2000;    ///< jobs/s of the paced phase, one job per request
  double paced_seconds = 5;
  std::int64_t poll_ms = 10;   ///< pool mode: how often the bench looks whether all finished
  double timeout_s = 300;      ///< a phase not finished by then fails the run
  long pid = 0;                ///< sessiond's pid: its CPU per job from /proc
  std::vector<std::string> phases{"enqueue", "drain", "concurrent", "paced"};
  bool json_out = false;
};

constexpr const char* help = R"(usage: sessiond-bench queue [--url URL] [--redis-url URL] [--queue NAME]
       [--mode pool|lease] [--jobs N] [--payload-bytes B] [--producers P] [--batch B]
       [--workers W] [--lease-max M] [--wait-ms MS] [--paced-rate R] [--paced-seconds S]
       [--phases LIST] [--type T] [--key-prefix P] [--pid PID] [--poll-ms MS]
       [--timeout-s S] [--json]

No-op jobs through sessiond's job queue. Phases (--phases, comma-separated, in this order):
  enqueue     --jobs jobs into the paused queue by --producers connections, --batch jobs per
              request (jobs:batch; --batch 1: POST /jobs one by one): the enqueue rate
  drain       resume; time until every job finished: the processing rate from a full queue
  concurrent  --jobs more with producers and workers running together: processing rate from
              the first enqueue to the last completion, enqueue-to-start latency
  paced       --paced-rate jobs/s for --paced-seconds, one job per request: latency below
              saturation
  memory      alone: Redis used_memory before and after --jobs jobs enqueued into the paused
              queue, per 100,000 jobs; the jobs stay (paused) for the caller to flush
--mode pool: the node's built-in workers run them (a queue with a noop handler for --type);
--mode lease: --workers connections long-poll POST lease (max --lease-max, wait --wait-ms)
and report with jobs:complete. Payloads are {"t":<enqueue ms>,"pad":"xx…"}, --payload-bytes
long. Latency: lease mode, the worker's clock at the lease answer - t; pool mode, the job's
lease start (`ls` in its Redis hash) - t, sampled from the 20 newest completed jobs every 10 ms.
Redis CPU per job: INFO cpu and INFO commandstats deltas (--redis-url); with --pid, the CPU
of that process (sessiond) per job from /proc.
)";

// --- flags ---------------------------------------------------------------------------------

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty())
      out.push_back(item);
  return out;
}

queue_args parse(const std::vector<std::string>& a) {
  queue_args s;
  for (std::size_t i = 0; i < a.size(); ++i) {
    std::string flag = a[i], inline_value;
    bool has_inline = false;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      inline_value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_inline = true;
    }
    auto next = [&]() -> std::string {
      if (has_inline)
        return inline_value;
      if (i + 1 >= a.size())
        throw usage_error(flag + " needs a value");
      return a[++i];
    };
    if (flag == "--url")
      s.url = next();
    else if (flag == "--redis-url") {
      s.redis_url = next();
      s.redis_given = true;
    } else if (flag == "--queue")
      s.queue = next();
    else if (flag == "--type")
      s.type = next();
    else if (flag == "--key-prefix")
      s.key_prefix = next();
    else if (flag == "--jobs")
      s.jobs = parse_whole("--jobs", next(), 1, 100000000);
    else if (flag == "--payload-bytes")
      s.payload_bytes = parse_whole("--payload-bytes", next(), 40, 65536);
    else if (flag == "--mode") {
      auto m = next();
      if (m != "pool" && m != "lease")
        throw usage_error("--mode " + m + ": expected pool or lease");
      s.lease_mode = m == "lease";
    } else if (flag == "--workers")
      s.workers = parse_whole("--workers", next(), 1, 1000);
    else if (flag == "--lease-max")
      s.lease_max = parse_whole("--lease-max", next(), 1, 1000);
    else if (flag == "--wait-ms")
      s.wait_ms = static_cast<std::int64_t>(parse_whole("--wait-ms", next(), 0, 30000));
    else if (flag == "--producers")
      s.producers = parse_whole("--producers", next(), 1, 1000);
    else if (flag == "--batch")
      s.batch = parse_whole("--batch", next(), 1, 1000);
    else if (flag == "--paced-rate")
      s.paced_rate = parse_number("--paced-rate", next());
    else if (flag == "--paced-seconds")
      s.paced_seconds = parse_number("--paced-seconds", next());
    else if (flag == "--poll-ms")
      s.poll_ms = static_cast<std::int64_t>(parse_whole("--poll-ms", next(), 1, 1000));
    else if (flag == "--timeout-s")
      s.timeout_s = parse_number("--timeout-s", next());
    else if (flag == "--pid")
      s.pid = static_cast<long>(parse_whole("--pid", next(), 1, 1 << 30));
    else if (flag == "--phases")
      s.phases = split_list(next());
    else if (flag == "--json")
      s.json_out = true;
    else if (flag == "--help") {
      std::cout << help;
      std::exit(0);
    } else
      throw usage_error("unknown argument " + a[i]);
  }
  s.http = parse_url("--url", s.url, "http");
  s.redis = parse_url("--redis-url", s.redis_url, "redis");
  static const std::vector<std::string> known{"enqueue", "drain", "concurrent", "paced", "memory"};
  for (const auto& p : s.phases)
    if (std::find(known.begin(), known.end(), p) == known.end())
      throw usage_error("--phases: unknown phase " + p);
  if (s.phases.empty())
    throw usage_error("--phases: none given");
  bool has_memory = std::find(s.phases.begin(), s.phases.end(), "memory") != s.phases.end();
  if (has_memory && s.phases.size() > 1)
    throw usage_error("--phases memory runs alone");
  if (has_memory && !s.redis_given)
    throw usage_error("--phases memory needs --redis-url");
  if (!(s.paced_rate > 0) || !(s.paced_seconds > 0) || !(s.timeout_s > 0))
    throw usage_error("--paced-rate, --paced-seconds and --timeout-s must be above 0");
  return s;
}

// --- a blocking HTTP/1.1 keep-alive client, one request at a time ----------------------------

struct http_reply {
  int status = 0;
  std::string body;
};

struct io_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool iequal_prefix(const std::string& line, const char* name) {
  auto n = std::strlen(name);
  if (line.size() < n)
    return false;
  for (std::size_t i = 0; i < n; ++i)
    if (std::tolower(static_cast<unsigned char>(line[i])) != name[i])
      return false;
  return true;
}

class http_conn {
public:
  explicit http_conn(const target& t) : t_(t) {}
  ~http_conn() { close(); }
  http_conn(const http_conn&) = delete;
  http_conn& operator=(const http_conn&) = delete;

  http_reply post(const std::string& path, const std::string& body) {
    return request("POST", path, &body);
  }
  http_reply get(const std::string& path) { return request("GET", path, nullptr); }

private:
  http_reply request(const char* method, const std::string& path, const std::string* body) {
    std::string req = std::string(method) + " " + path + " HTTP/1.1\r\nHost: " + t_.host + ":" +
                      std::to_string(t_.port) + "\r\n";
    if (body)
      req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body->size()) +
             "\r\n";
    req += "\r\n";
    if (body)
      req += *body;
    for (int attempt = 0;; ++attempt) {
      bool reused = fd_ >= 0;
      if (fd_ < 0)
        open();
      std::size_t got = 0;
      try {
        write_all(req);
        return read_reply(got);
      } catch (const io_failure&) {
        close();
        // A kept-alive connection the server closed while idle: once more on a new one.
        if (!reused || got > 0 || attempt > 0)
          throw;
      }
    }
  }

  void open() {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(t_.host.c_str(), std::to_string(t_.port).c_str(), &hints, &res) != 0 || !res)
      throw io_failure("cannot resolve " + t_.host);
    fd_ = ::socket(res->ai_family, SOCK_STREAM, 0);
    bool ok = fd_ >= 0 && ::connect(fd_, res->ai_addr, res->ai_addrlen) == 0;
    freeaddrinfo(res);
    if (!ok) {
      close();
      throw io_failure("cannot connect to " + t_.host + ":" + std::to_string(t_.port) + ": " +
                       std::strerror(errno));
    }
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{60, 0}; // a long poll waits at most 30 s
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    in_.clear();
  }

  void close() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

  void write_all(const std::string& out) {
    std::size_t off = 0;
    while (off < out.size()) {
      auto n = ::send(fd_, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        throw io_failure(std::string("send: ") + std::strerror(errno));
      off += static_cast<std::size_t>(n);
    }
  }

  void fill(std::size_t& got) {
    char buf[65536];
    auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0)
      throw io_failure(n == 0 ? "connection closed by the server"
                              : std::string("recv: ") + std::strerror(errno));
    in_.append(buf, static_cast<std::size_t>(n));
    got += static_cast<std::size_t>(n);
  }

  http_reply read_reply(std::size_t& got) {
    std::size_t head_end;
    while ((head_end = in_.find("\r\n\r\n")) == std::string::npos)
      fill(got);
    http_reply r;
    std::size_t length = 0;
    bool close_after = false;
    std::istringstream head(in_.substr(0, head_end));
    std::string line;
    std::getline(head, line);
    if (line.size() < 12 || line.rfind("HTTP/1.", 0) != 0)
      throw io_failure("not an HTTP response: " + line);
    r.status = std::atoi(line.c_str() + 9);
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      if (iequal_prefix(line, "content-length:"))
        length = std::strtoull(line.c_str() + 15, nullptr, 10);
      else if (iequal_prefix(line, "connection:") && line.find("close") != std::string::npos)
        close_after = true;
      else if (iequal_prefix(line, "transfer-encoding:"))
        throw io_failure("chunked responses are not supported by the bench");
    }
    in_.erase(0, head_end + 4);
    while (in_.size() < length)
      fill(got);
    r.body = in_.substr(0, length);
    in_.erase(0, length);
    if (close_after)
      close();
    return r;
  }

  target t_;
  int fd_ = -1;
  std::string in_;
};

// --- Redis: INFO and the pool-mode sampler, blocking hiredis --------------------------------

using reply_ptr = std::unique_ptr<redisReply, void (*)(void*)>;

class redis_conn {
public:
  explicit redis_conn(const target& t) {
    c_ = redisConnectWithTimeout(t.host.c_str(), t.port, timeval{5, 0});
    if (!c_ || c_->err)
      throw std::runtime_error("cannot connect to Redis at " + shown_url(t) +
                               (c_ ? std::string(": ") + c_->errstr : std::string()));
    if (!t.password.empty())
      t.user.empty() ? check(command({"AUTH", t.password})) : check(command({"AUTH", t.user, t.password}));
    if (t.db != 0)
      check(command({"SELECT", std::to_string(t.db)}));
  }
  ~redis_conn() { redisFree(c_); }
  redis_conn(const redis_conn&) = delete;
  redis_conn& operator=(const redis_conn&) = delete;

  reply_ptr command(const std::vector<std::string>& args) {
    append(args);
    return reply();
  }
  void append(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(c_, static_cast<int>(args.size()), argv.data(), lens.data());
  }
  reply_ptr reply() {
    void* r = nullptr;
    if (redisGetReply(c_, &r) != REDIS_OK || !r)
      throw std::runtime_error(std::string("Redis: ") + (c_->err ? c_->errstr : "no reply"));
    return reply_ptr(static_cast<redisReply*>(r), freeReplyObject);
  }
  std::string info(const char* section) {
    auto r = command({"INFO", section});
    return r->type == REDIS_REPLY_STRING ? std::string(r->str, r->len) : std::string();
  }

private:
  static void check(const reply_ptr& r) {
    if (r->type == REDIS_REPLY_ERROR)
      throw std::runtime_error("Redis refused the handshake: " + std::string(r->str, r->len));
  }
  redisContext* c_ = nullptr;
};

/// The number after `key` (e.g. "used_memory:") at the start of a line of an INFO answer.
double info_number(const std::string& info, const std::string& key) {
  auto at = info.find("\n" + key);
  if (at == std::string::npos)
    at = info.rfind(key, 0) == 0 ? 0 : std::string::npos;
  else
    ++at;
  return at == std::string::npos ? 0.0 : std::strtod(info.c_str() + at + key.size(), nullptr);
}

struct cmdstat {
  double calls = 0, usec = 0;
};

std::map<std::string, cmdstat> commandstats(redis_conn& r) {
  std::map<std::string, cmdstat> out;
  std::istringstream lines(r.info("commandstats"));
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("cmdstat_", 0) != 0)
      continue;
    auto colon = line.find(':');
    auto calls = line.find("calls=", colon), usec = line.find("usec=", colon);
    if (colon == std::string::npos || calls == std::string::npos || usec == std::string::npos)
      continue;
    out[line.substr(8, colon - 8)] = {std::strtod(line.c_str() + calls + 6, nullptr),
                                      std::strtod(line.c_str() + usec + 5, nullptr)};
  }
  return out;
}

bool is_script_command(const std::string& name) {
  for (const char* s : {"eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro"})
    if (name == s)
      return true;
  return false;
}

// --- measurements ---------------------------------------------------------------------------

double now_ms() {
  using namespace std::chrono;
  return static_cast<double>(
             duration_cast<microseconds>(system_clock::now().time_since_epoch()).count()) /
         1000.0;
}

double self_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

/// What the machine had spent at one moment: Redis (INFO), sessiond (/proc), the bench.
struct snapshot {
  steady::time_point at;
  double redis_cpu_s = 0, server_cpu_s = 0, bench_cpu_s = 0;
  std::map<std::string, cmdstat> cmds;
};

class meter {
public:
  explicit meter(const queue_args& a) : a_(a) {
    if (a.redis_given)
      redis_ = std::make_unique<redis_conn>(a.redis);
  }
  snapshot take() {
    snapshot s;
    if (redis_) {
      auto cpu = redis_->info("cpu");
      s.redis_cpu_s = info_number(cpu, "used_cpu_sys:") + info_number(cpu, "used_cpu_user:");
      s.cmds = commandstats(*redis_);
    }
    if (a_.pid > 0)
      s.server_cpu_s = proc_cpu_s(a_.pid, false);
    s.bench_cpu_s = self_cpu_s();
    s.at = steady::now();
    return s;
  }
  bool has_redis() const { return redis_ != nullptr; }
  redis_conn& redis() { return *redis_; }

private:
  const queue_args& a_;
  std::unique_ptr<redis_conn> redis_;
};

struct phase_report {
  phase_report(std::string phase, std::uint64_t n) : name(std::move(phase)), jobs(n) {}
  std::string name;
  std::uint64_t jobs = 0;
  double seconds = 0;
  std::optional<histogram> latency; ///< ns, enqueue (payload t) to start
  snapshot from, to;
  std::map<std::string, std::uint64_t> statuses; ///< HTTP answers other than the expected
  std::uint64_t lost = 0, failed = 0;
  std::string note;
};

json cost_json(const queue_args& a, const phase_report& p, bool has_redis) {
  auto per_job = [&](double s) { return 1e6 * s / static_cast<double>(p.jobs); };
  json out{{"bench_cpu_us_per_job", per_job(p.to.bench_cpu_s - p.from.bench_cpu_s)},
           {"sessiond_cpu_us_per_job",
            a.pid > 0 ? json(per_job(p.to.server_cpu_s - p.from.server_cpu_s)) : json(nullptr)}};
  if (!has_redis)
    return out;
  double all = 0, scripts = 0;
  json calls = json::object();
  for (const auto& [name, c] : p.to.cmds) {
    auto before = p.from.cmds.count(name) ? p.from.cmds.at(name) : cmdstat{};
    double usec = c.usec - before.usec, n = c.calls - before.calls;
    if (n <= 0)
      continue;
    all += usec;
    if (is_script_command(name))
      scripts += usec;
    calls[name] = {{"calls_per_job", n / static_cast<double>(p.jobs)},
                   {"usec_per_job", usec / static_cast<double>(p.jobs)}};
  }
  out["redis_cpu_us_per_job"] = per_job(p.to.redis_cpu_s - p.from.redis_cpu_s);
  out["cmdstat_us_per_job"] = all / static_cast<double>(p.jobs);
  out["cmdstat_script_us_per_job"] = scripts / static_cast<double>(p.jobs);
  out["commands"] = calls;
  return out;
}

json latency_json(const std::optional<histogram>& h) {
  if (!h || h->count() == 0)
    return nullptr;
  auto ms = [](std::uint64_t ns) { return static_cast<double>(ns) / 1e6; };
  return {{"p50", ms(h->percentile(50))}, {"p90", ms(h->percentile(90))},
          {"p99", ms(h->percentile(99))}, {"max", ms(h->max())},
          {"mean", h->mean() / 1e6},      {"samples", h->count()}};
}

json phase_json(const queue_args& a, const phase_report& p, bool has_redis) {
  json out{{"jobs", p.jobs},
           {"seconds", p.seconds},
           {"jobs_per_s", static_cast<double>(p.jobs) / p.seconds},
           {"latency_ms", latency_json(p.latency)},
           {"unexpected_status", p.statuses},
           {"lost_leases", p.lost},
           {"failed", p.failed},
           {"cost", cost_json(a, p, has_redis)}};
  if (!p.note.empty())
    out["note"] = p.note;
  return out;
}

void print_phase(const queue_args& a, const phase_report& p, bool has_redis) {
  auto j = phase_json(a, p, has_redis);
  std::printf("%-10s %8llu jobs in %7.3f s: %9.0f jobs/s", p.name.c_str(),
              static_cast<unsigned long long>(p.jobs), p.seconds, j["jobs_per_s"].get<double>());
  if (auto l = j["latency_ms"]; !l.is_null())
    std::printf("  latency ms p50 %.2f p99 %.2f max %.2f (%llu samples)", l["p50"].get<double>(),
                l["p99"].get<double>(), l["max"].get<double>(),
                static_cast<unsigned long long>(l["samples"].get<std::uint64_t>()));
  std::printf("\n");
  auto& c = j["cost"];
  if (has_redis)
    std::printf("           Redis %.2f us CPU/job (commandstats %.2f us, scripts %.2f us)",
                c["redis_cpu_us_per_job"].get<double>(), c["cmdstat_us_per_job"].get<double>(),
                c["cmdstat_script_us_per_job"].get<double>());
  if (a.pid > 0)
    std::printf("  sessiond %.2f us CPU/job", c["sessiond_cpu_us_per_job"].get<double>());
  std::printf("  bench %.2f us CPU/job\n", c["bench_cpu_us_per_job"].get<double>());
  if (!p.statuses.empty() || p.lost || p.failed)
    std::printf("           unexpected answers %s, lost leases %llu, failed %llu\n",
                json(p.statuses).dump().c_str(), static_cast<unsigned long long>(p.lost),
                static_cast<unsigned long long>(p.failed));
  if (!p.note.empty())
    std::printf("           %s\n", p.note.c_str());
  std::fflush(stdout);
}

// --- the queue through its HTTP API ---------------------------------------------------------

struct run_failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/// {"t":<ms>,"pad":"xx…"}, exactly `bytes` long (t has a fixed width: 13 digits and 3 decimals).
std::string make_job_payload(double t_ms, std::size_t bytes) {
  char head[64];
  int n = std::snprintf(head, sizeof head, "{\"t\":%.3f,\"pad\":\"", t_ms);
  std::string p(head, static_cast<std::size_t>(n));
  p.append(bytes > p.size() + 2 ? bytes - p.size() - 2 : 0, 'x');
  return p + "\"}";
}

/// The shared state of the producers of one phase.
struct producing {
  std::atomic<std::uint64_t> next{0};
  std::uint64_t total = 0;
  double rate = 0; ///< 0: flat out; else job i is due at start + i / rate
  steady::time_point start;
  std::mutex mtx;
  std::map<std::string, std::uint64_t> statuses;
  std::string error;
  std::atomic<bool> failed{false};
};

void produce_loop(const queue_args& a, producing& st, std::size_t batch) {
  http_conn c(a.http);
  const std::string base = "/v1/queues/" + a.queue;
  std::string body;
  for (;;) {
    auto from = st.next.fetch_add(batch);
    if (from >= st.total || st.failed)
      return;
    auto n = std::min<std::uint64_t>(batch, st.total - from);
    if (st.rate > 0)
      std::this_thread::sleep_until(
          st.start + std::chrono::nanoseconds(static_cast<std::int64_t>(1e9 * from / st.rate)));
    for (int tries = 0;; ++tries) {
      auto t = now_ms();
      body.clear();
      auto job = [&] {
        body += "{\"type\":\"" + a.type + "\",\"payload\":" + make_job_payload(t, a.payload_bytes) +
                "}";
      };
      if (batch == 1) {
        job();
      } else {
        body = "{\"jobs\":[";
        for (std::uint64_t k = 0; k < n; ++k) {
          if (k)
            body += ',';
          job();
        }
        body += "]}";
      }
      auto r = c.post(batch == 1 ? base + "/jobs" : base + "/jobs:batch", body);
      if (r.status == 201) {
        if (batch > 1 && json::parse(r.body, nullptr, false).value("ids", json::array()).size() != n)
          throw run_failure("jobs:batch answered 201 without " + std::to_string(n) + " ids: " +
                            r.body.substr(0, 200));
        break;
      }
      {
        std::lock_guard<std::mutex> guard{st.mtx};
        ++st.statuses[std::to_string(r.status)];
      }
      // Backpressure (429 full, 503 overloaded) is retried; anything else ends the run.
      if ((r.status != 429 && r.status != 503) || tries > 1000)
        throw run_failure("enqueue answered " + std::to_string(r.status) + ": " +
                          r.body.substr(0, 300));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

/// Enqueues `total` jobs on --producers connections; returns when all were acknowledged.
void produce(const queue_args& a, std::uint64_t total, double rate, std::size_t batch,
             std::map<std::string, std::uint64_t>& statuses) {
  producing st;
  st.total = total;
  st.rate = rate;
  st.start = steady::now();
  std::vector<std::thread> threads;
  for (std::size_t p = 0; p < a.producers; ++p)
    threads.emplace_back([&] {
      try {
        produce_loop(a, st, batch);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> guard{st.mtx};
        if (st.error.empty())
          st.error = e.what();
        st.failed = true;
      }
    });
  for (auto& t : threads)
    t.join();
  for (auto& [k, v] : st.statuses)
    statuses[k] += v;
  if (st.failed)
    throw run_failure(st.error);
}

void post_expect(http_conn& c, const std::string& path, int status) {
  auto r = c.post(path, "");
  if (r.status != status)
    throw run_failure("POST " + path + " answered " + std::to_string(r.status) + ": " +
                      r.body.substr(0, 300));
}

json queue_counts(http_conn& c, const queue_args& a) {
  auto r = c.get("/v1/queues/" + a.queue);
  if (r.status != 200)
    throw run_failure("GET /v1/queues/" + a.queue + " answered " + std::to_string(r.status));
  return json::parse(r.body);
}

std::int64_t unfinished(const json& q) {
  return q.value("waiting", std::int64_t{0}) + q.value("paused", std::int64_t{0}) +
         q.value("delayed", std::int64_t{0}) + q.value("active", std::int64_t{0});
}

/// sessiond_queue_<name>_total{queue="<q>"} from /metrics; -1 when the node does not expose it.
double node_counter(http_conn& c, const queue_args& a, const std::string& name) {
  auto r = c.get("/metrics");
  if (r.status != 200)
    return -1;
  std::istringstream lines(r.body);
  auto want = "sessiond_queue_" + name + "_total{";
  auto label = "queue=\"" + a.queue + "\"";
  for (std::string line; std::getline(lines, line);)
    if (line.rfind(want, 0) == 0 && line.find(label) != std::string::npos &&
        line.find("reason=") == std::string::npos)
      return std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
  return 0;
}

// --- lease-mode workers ---------------------------------------------------------------------

/// The bench's external workers: --workers connections leasing and completing until `target`
/// jobs completed.
class lease_workers {
public:
  lease_workers(const queue_args& a, std::uint64_t target) : a_(a), target_(target) {
    for (std::size_t w = 0; w < a.workers; ++w)
      threads_.emplace_back([this] { guarded(); });
  }
  ~lease_workers() { stop(); }

  /// Blocks until `target` completions (true) or `timeout` (false); `done_at` is when the
  /// last one was acknowledged.
  bool wait(std::chrono::duration<double> timeout, steady::time_point& done_at) {
    std::unique_lock<std::mutex> lock{mtx_};
    bool ok = cv_.wait_for(lock, timeout, [this] { return done_ || !error_.empty(); });
    if (!error_.empty())
      throw run_failure(error_);
    done_at = done_at_;
    return ok;
  }
  void stop() {
    stopping_ = true;
    for (auto& t : threads_)
      if (t.joinable())
        t.join();
  }
  histogram latency() {
    histogram h;
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& l : latencies_)
      h.merge(l);
    return h;
  }
  std::uint64_t completed() const { return completed_; }
  std::uint64_t lost() const { return lost_; }
  std::map<std::string, std::uint64_t> statuses() {
    std::lock_guard<std::mutex> guard{mtx_};
    return statuses_;
  }

private:
  void guarded() {
    try {
      loop();
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> guard{mtx_};
      if (error_.empty())
        error_ = std::string("lease worker: ") + e.what();
      cv_.notify_all();
    }
  }

  void loop() {
    http_conn c(a_.http);
    histogram lat;
    const std::string base = "/v1/queues/" + a_.queue;
    const std::string lease_body = "{\"max\":" + std::to_string(a_.lease_max) +
                                   ",\"wait_ms\":" + std::to_string(a_.wait_ms) + "}";
    std::string done;
    while (!stopping_) {
      auto r = c.post(base + "/lease", lease_body);
      auto at = now_ms();
      if (r.status != 200) {
        unexpected(r, "lease");
        continue;
      }
      auto leased = json::parse(r.body);
      const auto& jobs = leased.at("jobs");
      if (jobs.empty())
        continue;
      done = "{\"jobs\":[";
      for (std::size_t i = 0; i < jobs.size(); ++i) {
        const auto& j = jobs[i];
        auto t = j.at("payload").value("t", 0.0);
        lat.record(static_cast<std::uint64_t>(std::max(0.0, at - t) * 1e6));
        if (i)
          done += ',';
        done += "{\"id\":" + j.at("id").dump() + ",\"lease_token\":" + j.at("lease_token").dump() +
                "}";
      }
      done += "]}";
      auto rc = c.post(base + "/jobs:complete", done);
      if (rc.status != 200) {
        unexpected(rc, "jobs:complete");
        continue;
      }
      auto answer = json::parse(rc.body);
      lost_ += answer.at("lost").size();
      auto n = answer.at("completed").size();
      if (completed_.fetch_add(n) + n >= target_ && !done_flag_.exchange(true)) {
        std::lock_guard<std::mutex> guard{mtx_};
        done_ = true;
        done_at_ = steady::now();
        cv_.notify_all();
      }
    }
    std::lock_guard<std::mutex> guard{mtx_};
    latencies_.push_back(std::move(lat));
  }

  void unexpected(const http_reply& r, const char* what) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ++statuses_[std::string(what) + " " + std::to_string(r.status)];
    }
    if (r.status != 503 && r.status != 429)
      throw run_failure(std::string(what) + " answered " + std::to_string(r.status) + ": " +
                        r.body.substr(0, 300));
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }

  const queue_args& a_;
  const std::uint64_t target_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stopping_{false}, done_flag_{false};
  std::atomic<std::uint64_t> completed_{0}, lost_{0};
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
  steady::time_point done_at_;
  std::string error_;
  std::vector<histogram> latencies_;
  std::map<std::string, std::uint64_t> statuses_;
};

// --- pool-mode latency sampler --------------------------------------------------------------

/// Every 10 ms, the 20 newest completed jobs of the queue: lease start `ls` (the node's clock,
/// ms) - the payload's t. Reads Redis directly: the node keeps only keep_completed jobs.
class pool_sampler {
public:
  explicit pool_sampler(const queue_args& a) : a_(a), redis_(a.redis), since_ms_(now_ms()) {
    base_ = a.key_prefix + "{q:" + a.queue + "}:";
    thread_ = std::thread([this] { guarded(); });
  }
  ~pool_sampler() { stop(); }
  histogram stop() {
    stopping_ = true;
    if (thread_.joinable())
      thread_.join();
    return latency_;
  }
  const std::string& error() const { return error_; }

private:
  void guarded() {
    try {
      while (!stopping_) {
        sample();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      sample();
    } catch (const std::exception& e) {
      error_ = e.what();
    }
  }
  void sample() {
    auto ids = redis_.command({"ZREVRANGE", base_ + "c", "0", "19"});
    std::vector<std::string> fresh;
    for (std::size_t i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements; ++i) {
      std::string id(ids->element[i]->str, ids->element[i]->len);
      if (seen_.insert(id).second)
        fresh.push_back(id);
    }
    for (const auto& id : fresh)
      redis_.append({"HMGET", base_ + "j:" + id, "ls", "p"});
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      auto r = redis_.reply();
      if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !r->element[0]->str ||
          !r->element[1]->str)
        continue; // trimmed in between
      double ls = std::strtod(r->element[0]->str, nullptr);
      std::string p(r->element[1]->str, r->element[1]->len);
      auto at = p.find("\"t\":");
      if (at == std::string::npos)
        continue;
      double t = std::strtod(p.c_str() + at + 4, nullptr);
      if (t < since_ms_)
        continue; // a job of an earlier phase
      // ls is whole ms (truncated): compare it with t truncated too, so the error is within
      // ±1 ms either way and not a bias.
      latency_.record(static_cast<std::uint64_t>(std::max(0.0, ls - std::floor(t)) * 1e6));
    }
  }

  const queue_args& a_;
  redis_conn redis_;
  const double since_ms_; ///< jobs enqueued before the phase began are not its samples
  std::string base_;
  std::unordered_set<std::string> seen_;
  histogram latency_;
  std::atomic<bool> stopping_{false};
  std::string error_;
  std::thread thread_;
};

// --- phases ---------------------------------------------------------------------------------

class queue_bench {
public:
  explicit queue_bench(const queue_args& a) : a_(a), meter_(a), ctl_(a.http) {
    failed0_ = node_counter(ctl_, a_, "failed");
  }

  /// Runs the phases in order, appending each report to `out` as it is done.
  void run(std::vector<phase_report>& out) {
    for (const auto& p : a_.phases) {
      if (p == "enqueue")
        out.push_back(enqueue());
      else if (p == "drain")
        out.push_back(drain());
      else if (p == "concurrent")
        out.push_back(together("concurrent", a_.jobs, 0, a_.batch));
      else if (p == "paced")
        out.push_back(together(
            "paced", static_cast<std::uint64_t>(std::llround(a_.paced_rate * a_.paced_seconds)),
            a_.paced_rate, 1));
      if (!a_.json_out)
        print_phase(a_, out.back(), meter_.has_redis());
    }
    // An enqueue without its drain leaves the jobs paused: let them go.
    if (paused_)
      post_expect(ctl_, base() + "/resume", 204);
  }

  json memory() {
    if (queue_counts(ctl_, a_).value("is_paused", false) == false)
      post_expect(ctl_, base() + "/pause", 204);
    auto before = info_number(meter_.redis().info("memory"), "used_memory:");
    std::map<std::string, std::uint64_t> statuses;
    produce(a_, a_.jobs, 0, a_.batch, statuses);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto after = info_number(meter_.redis().info("memory"), "used_memory:");
    auto counts = queue_counts(ctl_, a_);
    return {{"jobs", a_.jobs},
            {"payload_bytes", a_.payload_bytes},
            {"used_memory_before", before},
            {"used_memory_after", after},
            {"bytes_per_job", (after - before) / static_cast<double>(a_.jobs)},
            {"mib_per_100k_jobs", (after - before) * 100000.0 / static_cast<double>(a_.jobs) /
                                      1048576.0},
            {"queue_paused_jobs", counts.value("paused", 0)},
            {"unexpected_status", statuses}};
  }

private:
  std::string base() const { return "/v1/queues/" + a_.queue; }

  phase_report enqueue() {
    post_expect(ctl_, base() + "/pause", 204);
    paused_ = true;
    phase_report p{"enqueue", a_.jobs};
    p.from = meter_.take();
    produce(a_, a_.jobs, 0, a_.batch, p.statuses);
    p.to = meter_.take();
    p.seconds = seconds(p.from.at, p.to.at);
    auto q = queue_counts(ctl_, a_);
    pending_ = unfinished(q);
    p.note = "queue paused; " + std::to_string(q.value("paused", 0)) + " jobs waiting after it";
    return p;
  }

  phase_report drain() {
    phase_report p{"drain", pending_};
    if (pending_ == 0)
      throw run_failure("drain: nothing waiting (run the enqueue phase first)");
    auto completed0 = node_counter(ctl_, a_, "completed");
    std::unique_ptr<lease_workers> workers;
    if (a_.lease_mode)
      workers = std::make_unique<lease_workers>(a_, pending_);
    p.from = meter_.take();
    post_expect(ctl_, base() + "/resume", 204);
    paused_ = false;
    auto end = finish(p, workers.get(), nullptr);
    p.latency.reset(); // the jobs waited for the resume: their wait says nothing
    p.seconds = seconds(p.from.at, end);
    check_node(p, completed0);
    pending_ = 0;
    return p;
  }

  /// Producers and workers at once: `total` jobs at `rate` (0: flat out) in batches of `batch`.
  phase_report together(const char* name, std::uint64_t total, double rate, std::size_t batch) {
    phase_report p{name, total};
    if (paused_) {
      post_expect(ctl_, base() + "/resume", 204);
      paused_ = false;
    }
    auto completed0 = node_counter(ctl_, a_, "completed");
    std::unique_ptr<lease_workers> workers;
    std::unique_ptr<pool_sampler> sampler;
    if (a_.lease_mode)
      workers = std::make_unique<lease_workers>(a_, total);
    else if (meter_.has_redis())
      sampler = std::make_unique<pool_sampler>(a_);
    p.from = meter_.take();
    produce(a_, total, rate, batch, p.statuses);
    auto end = finish(p, workers.get(), sampler.get());
    p.seconds = seconds(p.from.at, end);
    if (sampler)
      p.note = sampler->error().empty()
                   ? "latency: lease start of the 20 newest completed jobs every 10 ms, read from "
                     "Redis (the sampler's ZREVRANGE and HMGET calls are in the Redis figures)"
                   : "latency sampler failed: " + sampler->error();
    else if (!a_.lease_mode)
      p.note = "no --redis-url: no latency in pool mode";
    check_node(p, completed0);
    return p;
  }

  /// Waits until the phase's jobs finished; takes the closing snapshot; returns the end time.
  steady::time_point finish(phase_report& p, lease_workers* workers, pool_sampler* sampler) {
    auto deadline = std::chrono::duration<double>(a_.timeout_s);
    steady::time_point end;
    if (workers) {
      if (!workers->wait(deadline, end))
        throw run_failure(p.name + ": " + std::to_string(workers->completed()) + " of " +
                          std::to_string(p.jobs) + " jobs completed after " +
                          std::to_string(a_.timeout_s) + " s");
      p.to = meter_.take();
      workers->stop();
      p.latency = workers->latency();
      p.lost = workers->lost();
      for (auto& [k, v] : workers->statuses())
        p.statuses[k] += v;
      return end;
    }
    auto started = steady::now();
    for (;;) {
      auto q = queue_counts(ctl_, a_);
      if (unfinished(q) == 0) {
        end = steady::now();
        break;
      }
      if (steady::now() - started > deadline)
        throw run_failure(p.name + ": still unfinished after " + std::to_string(a_.timeout_s) +
                          " s: " + q.dump());
      std::this_thread::sleep_for(std::chrono::milliseconds(a_.poll_ms));
    }
    p.to = meter_.take();
    if (sampler)
      p.latency = sampler->stop();
    return end;
  }

  /// The node's own counters: every job of the phase completed (pool mode), none failed.
  void check_node(phase_report& p, double completed0) {
    auto completed = node_counter(ctl_, a_, "completed");
    auto failed = node_counter(ctl_, a_, "failed");
    if (completed < 0 || completed0 < 0)
      return;
    p.failed = static_cast<std::uint64_t>(std::max(0.0, failed - failed0_));
    failed0_ = failed;
    auto n = static_cast<std::uint64_t>(completed - completed0);
    if (n != p.jobs)
      p.note += (p.note.empty() ? "" : "; ") + std::string("the node counted ") +
                std::to_string(n) + " completions, not " + std::to_string(p.jobs);
  }

  static double seconds(steady::time_point a, steady::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }

  const queue_args& a_;
  meter meter_;
  http_conn ctl_; ///< pause, resume, counts, /metrics
  bool paused_ = false;
  std::uint64_t pending_ = 0;
  double failed0_ = 0;
};

json parameters_json(const queue_args& a) {
  return {{"url", a.url},
          {"redis_url", a.redis_given ? json(shown_url(a.redis)) : json(nullptr)},
          {"queue", a.queue},
          {"type", a.type},
          {"mode", a.lease_mode ? "lease" : "pool"},
          {"jobs", a.jobs},
          {"payload_bytes", a.payload_bytes},
          {"producers", a.producers},
          {"batch", a.batch},
          {"workers", a.lease_mode ? json(a.workers) : json(nullptr)},
          {"lease_max", a.lease_mode ? json(a.lease_max) : json(nullptr)},
          {"wait_ms", a.lease_mode ? json(a.wait_ms) : json(nullptr)},
          {"paced_rate", a.paced_rate},
          {"paced_seconds", a.paced_seconds},
          {"phases", a.phases},
          {"pid", a.pid > 0 ? json(a.pid) : json(nullptr)}};
}

} // namespace

int run_queue_bench(const std::vector<std::string>& args) {
  queue_args a;
  try {
    a = parse(args);
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench queue: " << e.what() << "\n";
    return 2;
  }
  json out{{"parameters", parameters_json(a)}, {"phases", json::object()}};
  std::vector<phase_report> done;
  int rc = 0;
  try {
    queue_bench b(a);
    if (a.phases.front() == "memory") {
      out["memory"] = b.memory();
      if (!a.json_out)
        std::cout << out["memory"].dump(2) << "\n";
    } else {
      std::string workers = a.lease_mode ? ", " + std::to_string(a.workers) + " workers" : "";
      if (!a.json_out)
        std::printf("sessiond-bench queue: %s mode, queue %s, %llu jobs of %zu bytes, %zu "
                    "producer(s), batch %zu%s\n",
                    a.lease_mode ? "lease" : "pool", a.queue.c_str(),
                    static_cast<unsigned long long>(a.jobs), a.payload_bytes, a.producers,
                    a.batch, workers.c_str());
      b.run(done);
    }
  } catch (const std::exception& e) {
    std::cerr << "sessiond-bench queue: " << e.what() << "\n";
    rc = 1;
  }
  for (const auto& p : done)
    out["phases"][p.name] = phase_json(a, p, a.redis_given);
  if (a.json_out)
    std::cout << out.dump(2) << std::endl;
  return rc;
}

} // namespace sessiond::bench
