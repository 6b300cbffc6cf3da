// sync_engine: dirty set → PostgreSQL, one batch at a time. Per batch: one EVALSHA reads the
// oldest dirty ids with their fields, one statement upserts them, one EVALSHA clears the marks
// of sessions that did not change meanwhile. A dirty set is synced by one node at a time (a
// Redis lease), so two nodes do not write the same batch twice.
#include "actors/sync_engine.hpp"

#include "adapters/postgres/migrate.hpp"
#include "adapters/redis/blocking.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <thread>
#include <unordered_map>
#include <unordered_set>

namespace sessiond::actors {

namespace {

const redis::script& lease_release_script() {
  static const redis::script s{R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
)lua"};
  return s;
}

std::int64_t to_int(const std::string& s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

const std::string& field_text(const redis::reply& f) {
  static const std::string none;
  return f.type == redis::reply::kind::string ? f.str : none;
}

void fill_row(dirty_entry& e, const std::vector<redis::reply>& f, std::int64_t now_ms) {
  // Fields: v u st ca la ex ttl d t rv
  auto& row = e.row;
  row.session_id = e.id;
  row.version = to_int(e.version);
  row.user_id = field_text(f[1]);
  row.data = field_text(f[7]).empty() ? "{}" : field_text(f[7]);
  row.created_at_ms = to_int(field_text(f[3]));
  row.last_activity_at_ms = to_int(field_text(f[4]));
  row.expires_at_ms = to_int(field_text(f[5]));
  if (field_text(f[2]) == "R") {
    row.status = "REVOKED";
    row.is_active = false;
    row.revoked_at_ms = to_int(field_text(f[9]));
    if (row.revoked_at_ms == 0)
      row.revoked_at_ms = row.last_activity_at_ms;
  } else if (model::expired(row.expires_at_ms, now_ms)) {
    row.status = "EXPIRED";
    row.is_active = false;
  } else {
    row.status = "ACTIVE";
    row.is_active = true;
  }
}

/// The reply of a blocking call, or sync_error (transport failure, no reply in time, or an
/// error reply).
redis::reply checked(redis::waited&& w) {
  if (w.error != redis::errc::ok)
    throw sync_error(false, std::string("Redis: ") + redis::to_string(w.error));
  if (w.value.is_error())
    throw sync_error(false, "Redis: " + w.value.str);
  return std::move(w.value);
}

} // namespace

std::vector<dirty_entry> parse_dirty(const redis::reply& r, std::int64_t now_ms) {
  if (r.type != redis::reply::kind::array || r.elements.size() % 2 != 0)
    throw sync_error(false, "sync_read: unexpected reply from Redis");
  std::vector<dirty_entry> out;
  out.reserve(r.elements.size() / 2);
  for (std::size_t i = 0; i < r.elements.size(); i += 2) {
    const auto& id = r.elements[i];
    const auto& f = r.elements[i + 1];
    if (id.type != redis::reply::kind::string || f.type != redis::reply::kind::array ||
        f.elements.size() != 10)
      throw sync_error(false, "sync_read: unexpected entry in the reply from Redis");
    dirty_entry e;
    e.id = id.str;
    e.version = field_text(f.elements[0]);
    e.last_activity = field_text(f.elements[4]);
    e.present = !e.version.empty() && !field_text(f.elements[1]).empty();
    if (e.present)
      fill_row(e, f.elements, now_ms);
    out.push_back(std::move(e));
  }
  return out;
}

sync_engine::sync_engine(redis::client& redis, const redis_scripts& scripts,
                         postgres::client_options pg, sync_settings settings,
                         const model::clock& clock)
    : redis_(redis),
      scripts_(scripts),
      pg_options_(std::move(pg)),
      settings_(std::move(settings)),
      clock_(clock),
      pg_(std::max<std::size_t>(1, settings_.connections)) {}

sync_engine::~sync_engine() = default;

// Both block the sync thread (never an I/O thread) until the reply arrives.
redis::reply sync_engine::call(std::vector<std::string> args) {
  return checked(
      redis::command_wait(redis_, settings_.dirty_sets, std::move(args), settings_.redis_wait));
}

redis::reply sync_engine::eval(const redis::script& s, std::vector<std::string> keys,
                               std::vector<std::string> args) {
  return checked(redis::eval_wait(redis_, settings_.dirty_sets, s, std::move(keys), std::move(args),
                                  settings_.redis_wait));
}

postgres::client& sync_engine::pg(std::size_t worker) {
  auto& c = pg_[worker];
  try {
    if (!c)
      c = std::make_unique<postgres::client>(pg_options_);
    std::lock_guard<std::mutex> guard{migrate_mtx_};
    if (settings_.migrate && !migrated_) {
      postgres::create_schema(*c,
                              pg_options_.search_path.empty() ? "public" : pg_options_.search_path);
      postgres::apply_migrations(*c, postgres::embedded_migrations());
      migrated_ = true;
    }
    return *c;
  } catch (const postgres::pg_error& e) {
    c.reset();
    throw sync_error(true, std::string("PostgreSQL: ") + e.what());
  }
}

void sync_engine::ping_postgres() {
  try {
    pg().exec("select 1");
  } catch (const postgres::pg_error& e) {
    throw sync_error(true, std::string("PostgreSQL: ") + e.what());
  }
}

bool sync_engine::acquire(std::size_t set) {
  auto key = settings_.prefix + "sync:lease:" + std::to_string(set);
  auto ttl = std::to_string(settings_.lease_ttl.count());
  auto r = call({"SET", key, settings_.node_id, "NX", "PX", ttl});
  if (r.type == redis::reply::kind::status)
    return true;
  // Our own lease left over from a run that failed half-way: take it again.
  auto holder = call({"GET", key});
  if (holder.type == redis::reply::kind::string && holder.str == settings_.node_id) {
    call({"PEXPIRE", key, ttl});
    return true;
  }
  return false;
}

void sync_engine::release(std::size_t set) {
  eval(lease_release_script(), {settings_.prefix + "sync:lease:" + std::to_string(set)},
       {settings_.node_id});
}

std::int64_t sync_engine::backlog() {
  std::int64_t total = 0;
  for (std::size_t i = 0; i < settings_.dirty_sets; ++i) {
    auto r = call({"ZCARD", settings_.prefix + "dirty:" + std::to_string(i)});
    total += r.integer;
  }
  return total;
}

/// Writes one batch of set `set`; returns how many dirty ids it read.
std::size_t sync_engine::sync_batch(std::size_t set, std::size_t worker, sync_counts& counts) {
  auto dirty_key = settings_.prefix + "dirty:" + std::to_string(set);
  auto now = clock_.now_ms();
  auto entries = parse_dirty(eval(scripts_.sync_read, {dirty_key},
                                  {settings_.prefix + "s:", std::to_string(settings_.batch_size)}),
                             now);
  if (entries.empty())
    return 0;
  counts.read += entries.size();
  std::vector<postgres::session_row> rows;
  rows.reserve(entries.size());
  for (auto& e : entries)
    if (e.present)
      rows.push_back(e.row);
  std::vector<std::string> written;
  std::unordered_map<std::string, postgres::stored_version> ahead; // PostgreSQL is newer
  try {
    if (!rows.empty())
      ++counts.statements;
    counts.written += postgres::upsert_sessions(pg(worker), rows, &written);
    if (written.size() < rows.size()) {
      std::unordered_set<std::string> done(written.begin(), written.end());
      std::vector<std::string> fenced;
      for (const auto& r : rows)
        if (!done.count(r.session_id))
          fenced.push_back(r.session_id);
      ++counts.statements;
      for (auto& v : postgres::load_versions(pg(worker), fenced))
        ahead.emplace(v.session_id, std::move(v));
    }
  } catch (const postgres::pg_error& e) {
    throw sync_error(true, std::string("PostgreSQL: ") + e.what());
  }
  std::vector<std::string> ack{settings_.prefix + "s:"};
  std::vector<std::string> repair{settings_.prefix + "s:", std::to_string(now),
                                  std::to_string(settings_.tombstone_ttl_ms)};
  for (const auto& e : entries) {
    auto it = e.present ? ahead.find(e.id) : ahead.end();
    if (it != ahead.end() && it->second.version > e.row.version) {
      repair.insert(repair.end(),
                    {e.id, e.version, std::to_string(it->second.version), it->second.status});
      continue;
    }
    ack.insert(ack.end(), {e.id, e.version, e.last_activity});
  }
  counts.acked += static_cast<std::uint64_t>(eval(scripts_.sync_ack, {dirty_key}, ack).integer);
  if (repair.size() > 3)
    counts.repaired +=
        static_cast<std::uint64_t>(eval(scripts_.sync_repair, {dirty_key}, repair).integer);
  return entries.size();
}

void sync_engine::sync_set(std::size_t set, std::size_t worker, sync_counts& counts) {
  auto dirty_key = settings_.prefix + "dirty:" + std::to_string(set);
  auto pending = call({"ZCARD", dirty_key}).integer;
  if (pending == 0)
    return;
  if (!acquire(set)) {
    ++counts.skipped_sets;
    return;
  }
  // Bounded: the ids present at the start, plus one batch for writes landing meanwhile.
  auto batches = pending / static_cast<long long>(settings_.batch_size) + 2;
  try {
    while (batches-- > 0 && sync_batch(set, worker, counts) == settings_.batch_size)
      call({"PEXPIRE", settings_.prefix + "sync:lease:" + std::to_string(set),
            std::to_string(settings_.lease_ttl.count())});
  } catch (const sync_error&) {
    try {
      release(set);
    } catch (const sync_error&) {
    }
    throw;
  }
  release(set);
}

sync_counts sync_engine::run() {
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mtx;
  sync_counts total;
  std::exception_ptr first_error;
  auto work = [&](std::size_t worker) {
    sync_counts mine;
    try {
      for (std::size_t set; !failed && (set = next++) < settings_.dirty_sets;)
        sync_set(set, worker, mine);
    } catch (...) {
      std::lock_guard<std::mutex> guard{mtx};
      if (!first_error)
        first_error = std::current_exception();
      failed = true;
    }
    std::lock_guard<std::mutex> guard{mtx};
    total.read += mine.read;
    total.written += mine.written;
    total.statements += mine.statements;
    total.acked += mine.acked;
    total.repaired += mine.repaired;
    total.skipped_sets += mine.skipped_sets;
  };
  std::vector<std::thread> helpers;
  auto workers = std::min(pg_.size(), settings_.dirty_sets);
  for (std::size_t w = 1; w < workers; ++w)
    helpers.emplace_back(work, w);
  work(0);
  for (auto& t : helpers)
    t.join();
  if (first_error)
    std::rethrow_exception(first_error);
  return total;
}

} // namespace sessiond::actors
