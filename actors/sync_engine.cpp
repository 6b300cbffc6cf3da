// sync_engine: dirty set → PostgreSQL in batches. Per batch: one ZRANGE takes the oldest dirty
// ids and one pipelined HGETALL each reads their fields, one upsert (COPY into a staging table,
// one INSERT … SELECT) writes them, one EVALSHA clears the marks of sessions that did not change
// meanwhile. Batch k+1 is read while batch k is written, so Redis works while PostgreSQL does. A
// dirty set is synced by one node at a time (a Redis lease), so two nodes do not write the same
// batch twice.
#include "actors/sync_engine.hpp"

#include "actors/layout_upgrade.hpp"
#include "adapters/postgres/bulk_upsert.hpp"
#include "adapters/postgres/migrate.hpp"
#include "adapters/redis/blocking.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <future>
#include <string_view>
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

std::uint64_t micros_since(std::chrono::steady_clock::time_point t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t)
          .count());
}

std::int64_t to_int(const std::string& s) {
  std::int64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

/// A session's hash fields as sync_read returns them, in this order; nullptr for an absent one.
using hash_fields = std::array<const redis::reply*, 10>;
constexpr std::array<std::string_view, 10> field_names{"v",  "u",   "st", "ca", "la",
                                                       "ex", "ttl", "d",  "t",  "rv"};

const std::string& text(const redis::reply* f) {
  static const std::string none;
  return f != nullptr && f->type == redis::reply::kind::string ? f->str : none;
}

dirty_entry make_entry(std::string id, const hash_fields& f, std::int64_t now_ms) {
  dirty_entry e;
  e.id = std::move(id);
  e.version = text(f[0]);
  e.last_activity = text(f[4]);
  e.present = !e.version.empty() && !text(f[1]).empty();
  if (!e.present)
    return e;
  auto& row = e.row;
  row.session_id = e.id;
  row.version = to_int(e.version);
  row.user_id = text(f[1]);
  row.data = text(f[7]).empty() ? "{}" : text(f[7]);
  row.created_at_ms = to_int(text(f[3]));
  row.last_activity_at_ms = to_int(text(f[4]));
  row.expires_at_ms = to_int(text(f[5]));
  if (text(f[2]) == "R") {
    row.status = "REVOKED";
    row.is_active = false;
    row.revoked_at_ms = to_int(text(f[9]));
    if (row.revoked_at_ms == 0)
      row.revoked_at_ms = row.last_activity_at_ms;
  } else if (model::expired(row.expires_at_ms, now_ms)) {
    row.status = "EXPIRED";
    row.is_active = false;
  } else {
    row.status = "ACTIVE";
    row.is_active = true;
  }
  return e;
}

/// Opens the sealed data of a dirty session for PostgreSQL. Data that does not open is set aside
/// (the entry's refusal) rather than written as garbage, except a tombstone's: a revocation must
/// reach PostgreSQL, so it goes with data {} (a revoked session's data is never served).
void open_data(const session_crypto& c, dirty_entry& e, sync_counts& counts) {
  if (!e.present || !crypto::is_envelope(e.row.data))
    return;
  auto o = c.open(e.id, e.row.data);
  if (o.code == crypto::errc::ok) {
    e.row.data = std::move(o.plaintext);
    return;
  }
  ++counts.undecryptable;
  if (e.row.status == "REVOKED")
    e.row.data = "{}";
  else
    e.refusal = "encryption: " + open_failure_detail(o);
}

/// An HGETALL reply (field, value, …) as hash_fields; unknown fields are ignored.
hash_fields by_name(const redis::reply& h) {
  if (h.type != redis::reply::kind::array || h.elements.size() % 2 != 0)
    throw sync_error(false, "HGETALL: unexpected reply from Redis");
  hash_fields f{};
  for (std::size_t i = 0; i < h.elements.size(); i += 2) {
    const auto& name = h.elements[i].str;
    for (std::size_t k = 0; k < field_names.size(); ++k)
      if (name == field_names[k]) {
        f[k] = &h.elements[i + 1];
        break;
      }
  }
  return f;
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

bool row_refused(const postgres::pg_error& e) {
  if (e.code() == postgres::errc::invalid_argument)
    return true;
  if (e.code() != postgres::errc::server_error || e.sqlstate().size() != 5)
    return false;
  auto cls = e.sqlstate().substr(0, 2);
  return cls == "22" || cls == "23" || cls == "54" || cls == "P0";
}

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
    hash_fields fields{};
    for (std::size_t k = 0; k < fields.size(); ++k)
      fields[k] = &f.elements[k];
    out.push_back(make_entry(id.str, fields, now_ms));
  }
  return out;
}

/// One batch being read: its ids, then one HGETALL per id, answered on a Redis I/O thread. Shared
/// with the callbacks, so replies arriving after the worker gave up have somewhere to go.
struct sync_engine::batch_read {
  std::vector<std::string> ids;
  std::vector<std::int64_t> marked; ///< marked[i]: the dirty mark's score of ids[i]
  std::vector<redis::reply> hashes; ///< hashes[i]: the HGETALL of ids[i]
  std::atomic<std::size_t> left{0};
  std::atomic<bool> failed{false};
  redis::errc error = redis::errc::ok; ///< the first failure; read once all callbacks ran
  std::promise<void> answered;         ///< set by the last callback
};

sync_engine::sync_engine(redis::client& redis, const redis_scripts& scripts,
                         postgres::client_options pg, sync_settings settings,
                         const model::clock& clock)
    : redis_(redis),
      scripts_(scripts),
      pg_options_(std::move(pg)),
      settings_(std::move(settings)),
      clock_(clock),
      pg_(std::max<std::size_t>(1, settings_.connections)),
      keys_{settings_.prefix} {}

sync_engine::~sync_engine() = default;

// Both block the sync thread (never an I/O thread) until the reply arrives. Worker w's calls go
// out on connection hint first_hint + w, in the order it sends them.
redis::reply sync_engine::call(std::vector<std::string> args, std::size_t worker) {
  return checked(redis::command_wait(redis_, settings_.first_hint + worker, std::move(args),
                                     settings_.redis_wait));
}

std::vector<redis::reply> sync_engine::call_all(std::vector<std::vector<std::string>> commands,
                                                std::size_t worker) {
  struct pending {
    std::vector<redis::reply> replies;
    std::atomic<std::size_t> left{0};
    std::atomic<bool> failed{false};
    redis::errc error = redis::errc::ok;
    std::promise<void> answered;
  };
  auto p = std::make_shared<pending>();
  p->replies.resize(commands.size());
  p->left = commands.size();
  if (commands.empty())
    return {};
  auto answered = p->answered.get_future();
  for (std::size_t i = 0; i < commands.size(); ++i)
    redis_.command(settings_.first_hint + worker, std::move(commands[i]),
                   [p, i](redis::errc e, redis::reply&& r) {
                     if (e != redis::errc::ok && !p->failed.exchange(true))
                       p->error = e;
                     p->replies[i] = std::move(r);
                     if (--p->left == 0)
                       p->answered.set_value();
                   });
  if (answered.wait_for(settings_.redis_wait) != std::future_status::ready)
    throw sync_error(false, "Redis: " + std::string(redis::to_string(redis::errc::timeout)));
  if (p->failed)
    throw sync_error(false, "Redis: " + std::string(redis::to_string(p->error)));
  for (const auto& r : p->replies)
    if (r.is_error())
      throw sync_error(false, "Redis: " + r.str);
  return std::move(p->replies);
}

redis::reply sync_engine::eval(const redis::script& s, std::vector<std::string> keys,
                               std::vector<std::string> args, std::size_t worker) {
  return checked(redis::eval_wait(redis_, settings_.first_hint + worker, s, std::move(keys),
                                  std::move(args), settings_.redis_wait));
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

bool sync_engine::acquire(std::size_t set, std::size_t worker) {
  auto key = keys_.lease(set);
  auto ttl = std::to_string(settings_.lease_ttl.count());
  auto r = call({"SET", key, settings_.node_id, "NX", "PX", ttl}, worker);
  if (r.type == redis::reply::kind::status) {
    holding_[set] = true;
    return true;
  }
  // Our own lease left over from a run that failed half-way: take it again.
  auto holder = call({"GET", key}, worker);
  if (holder.type == redis::reply::kind::string && holder.str == settings_.node_id) {
    call({"PEXPIRE", key, ttl}, worker);
    holding_[set] = true;
    return true;
  }
  return false;
}

void sync_engine::release(std::size_t set, std::size_t worker) {
  holding_[set] = false; // a release that fails leaves the lease to expire: not held either way
  eval(lease_release_script(), {keys_.lease(set)}, {settings_.node_id}, worker);
}

std::vector<std::size_t> sync_engine::holding() const {
  std::vector<std::size_t> out;
  for (std::size_t p = 0; p < holding_.size(); ++p)
    if (holding_[p])
      out.push_back(p);
  return out;
}

std::int64_t sync_engine::backlog() {
  std::vector<std::vector<std::string>> cards;
  for (std::size_t p = 0; p < model::sync_partitions; ++p)
    cards.push_back({"ZCARD", keys_.dirty(p)});
  if (settings_.legacy != nullptr && settings_.legacy->load())
    for (std::size_t n = 0; n < settings_.legacy_sets; ++n)
      cards.push_back({"ZCARD", keys_.legacy_dirty(n)});
  std::int64_t total = 0;
  for (const auto& r : call_all(std::move(cards)))
    total += r.integer;
  return total;
}

std::vector<std::size_t> sync_engine::sets_to_drain() {
  std::vector<std::vector<std::string>> cards;
  cards.reserve(model::sync_partitions);
  for (std::size_t p = 0; p < model::sync_partitions; ++p)
    cards.push_back({"ZCARD", keys_.dirty(p)});
  auto replies = call_all(std::move(cards));
  std::vector<std::size_t> sets;
  for (std::size_t p = 0; p < replies.size(); ++p)
    if (replies[p].integer > 0)
      sets.push_back(p);
  return sets;
}

bool sync_engine::upgrade_one(const std::string& id) {
  upgrade_context c{&redis_, &scripts_, keys_, settings_.max_lifetime_ms};
  auto p = std::make_shared<std::promise<upgrade_outcome>>();
  auto f = p->get_future();
  upgrade_session(c, settings_.first_hint, id, clock_.now_ms(),
                  [p](upgrade_outcome o) { p->set_value(o); });
  if (f.wait_for(settings_.redis_wait) != std::future_status::ready)
    throw sync_error(false, "Redis: " + std::string(redis::to_string(redis::errc::timeout)));
  auto o = f.get();
  if (o == upgrade_outcome::failed)
    throw sync_error(false, "Redis failed while moving session " + id + " to key layout 2");
  return o == upgrade_outcome::moved;
}

std::uint64_t sync_engine::upgrade_step() {
  if (settings_.legacy == nullptr)
    return 0;
  if (!upgrade_checked_) {
    upgrade_checked_ = true;
    auto mark = call({"GET", keys_.layout_mark()});
    settings_.legacy->store(!(mark.type == redis::reply::kind::string && mark.str == "2"));
  }
  if (!settings_.legacy->load())
    return 0;
  std::uint64_t moved = 0;
  auto budget = settings_.upgrade_batch;
  if (upgrade_phase_ == 0) {
    // Layout 1's dirty sets first: their sessions hold acknowledged writes not yet synced.
    std::vector<std::vector<std::string>> cards;
    for (std::size_t n = 0; n < settings_.legacy_sets; ++n)
      cards.push_back({"ZCARD", keys_.legacy_dirty(n)});
    auto replies = call_all(std::move(cards));
    bool left = false;
    for (std::size_t n = 0; n < replies.size() && budget > 0; ++n) {
      if (replies[n].integer == 0)
        continue;
      auto set = keys_.legacy_dirty(n);
      auto ids = call({"ZRANGE", set, "0", std::to_string(budget - 1)});
      for (const auto& id : ids.elements) {
        moved += upgrade_one(id.str) ? 1 : 0;
        call({"ZREM", set, id.str});
        --budget;
      }
      left = left || replies[n].integer > static_cast<long long>(ids.elements.size());
    }
    for (std::size_t n = 0; n < replies.size() && !left; ++n)
      left = replies[n].integer > 0 && budget == 0;
    if (left || budget == 0)
      return moved;
    upgrade_phase_ = 1;
    scan_cursors_.clear();
  }
  // Then every key of layout 1 a SCAN of each master finds: sessions (phase 1), and once they
  // are all moved, the user indexes (phase 2), whose ids a listing reads until then.
  auto masters = redis_.masters();
  if (scan_cursors_.size() != masters.size()) {
    scan_cursors_.assign(masters.size(), "0");
    upgrade_found_ = 0;
  }
  auto pattern = settings_.prefix + (upgrade_phase_ == 1 ? "s:*" : "u:*");
  bool pass_done = true;
  for (std::size_t m = 0; m < masters.size(); ++m) {
    if (scan_cursors_[m] == "done")
      continue;
    auto p = std::make_shared<std::promise<redis::waited>>();
    auto f = p->get_future();
    redis_.command_at(masters[m], settings_.first_hint,
                      {"SCAN", scan_cursors_[m], "MATCH", pattern, "COUNT",
                       std::to_string(settings_.upgrade_batch)},
                      [p](redis::errc e, redis::reply&& r) {
                        p->set_value({e, std::move(r)});
                      });
    if (f.wait_for(settings_.redis_wait) != std::future_status::ready)
      throw sync_error(false, "Redis: " + std::string(redis::to_string(redis::errc::timeout)));
    auto r = checked(f.get());
    if (r.type != redis::reply::kind::array || r.elements.size() != 2)
      throw sync_error(false, "SCAN: unexpected reply from Redis");
    auto skip = settings_.prefix.size() + 2; // "s:" or "u:"
    for (const auto& k : r.elements[1].elements) {
      ++upgrade_found_;
      if (upgrade_phase_ == 1)
        moved += upgrade_one(k.str.substr(skip)) ? 1 : 0;
      else
        call({"DEL", k.str});
    }
    scan_cursors_[m] = r.elements[0].str == "0" ? "done" : r.elements[0].str;
    pass_done = pass_done && scan_cursors_[m] == "done";
  }
  if (!pass_done)
    return moved;
  if (upgrade_phase_ == 1) {
    upgrade_phase_ = 2;
  } else if (upgrade_found_ == 0) {
    // A whole pass over both found nothing of layout 1 (its dirty sets were drained first).
    call({"SET", keys_.layout_mark(), "2"});
    settings_.legacy->store(false);
  } else {
    upgrade_phase_ = 0; // found some: one more pass, to be sure nothing was written meanwhile
  }
  scan_cursors_.clear();
  return moved;
}

std::int64_t sync_engine::rejected() {
  return call({"HLEN", rejected_hash_key(settings_.prefix)}).integer;
}

// The ids come from one ZRANGE (waited for: a short reply); their hashes from one HGETALL each,
// pipelined and not waited for: the worker writes the previous batch meanwhile. The ids and the
// hashes are not read atomically, which the ack makes harmless: it compares each session with
// the version and activity its own HGETALL read.
std::shared_ptr<sync_engine::batch_read>
sync_engine::read_next(std::size_t set, std::size_t worker, const std::vector<dirty_entry>& skip,
                       sync_counts& counts) {
  auto started = std::chrono::steady_clock::now();
  auto ids = call({"ZRANGE", keys_.dirty(set), "0",
                   std::to_string(settings_.batch_size + skip.size() - 1), "WITHSCORES"},
                  worker);
  counts.redis_wait_us += micros_since(started);
  if (ids.type != redis::reply::kind::array)
    throw sync_error(false, "ZRANGE: unexpected reply from Redis");
  std::unordered_set<std::string_view> skipped;
  for (const auto& e : skip)
    skipped.insert(e.id);
  auto read = std::make_shared<batch_read>();
  for (std::size_t i = 0; i + 1 < ids.elements.size(); i += 2) {
    auto& id = ids.elements[i];
    if (read->ids.size() == settings_.batch_size)
      break;
    if (id.type != redis::reply::kind::string)
      throw sync_error(false, "ZRANGE: unexpected entry in the reply from Redis");
    if (!skipped.count(id.str)) {
      read->ids.push_back(std::move(id.str));
      read->marked.push_back(to_int(ids.elements[i + 1].str));
    }
  }
  read->hashes.resize(read->ids.size());
  read->left = read->ids.size();
  if (read->ids.empty())
    read->answered.set_value();
  for (std::size_t i = 0; i < read->ids.size(); ++i)
    redis_.command(settings_.first_hint + worker, {"HGETALL", keys_.session(read->ids[i])},
                   [read, i](redis::errc e, redis::reply&& r) {
                     if (e != redis::errc::ok && !read->failed.exchange(true))
                       read->error = e;
                     read->hashes[i] = std::move(r);
                     if (--read->left == 0)
                       read->answered.set_value();
                   });
  return read;
}

std::vector<dirty_entry> sync_engine::await_read(batch_read& read, sync_counts& counts) {
  auto started = std::chrono::steady_clock::now();
  auto ready = read.answered.get_future().wait_for(settings_.redis_wait);
  counts.redis_wait_us += micros_since(started);
  if (ready != std::future_status::ready)
    throw sync_error(false, "Redis: " + std::string(redis::to_string(redis::errc::timeout)));
  if (read.failed)
    throw sync_error(false, "Redis: " + std::string(redis::to_string(read.error)));
  auto now = clock_.now_ms();
  std::vector<dirty_entry> entries;
  entries.reserve(read.ids.size());
  for (std::size_t i = 0; i < read.ids.size(); ++i) {
    if (read.hashes[i].is_error())
      throw sync_error(false, "Redis: " + read.hashes[i].str);
    entries.push_back(make_entry(std::move(read.ids[i]), by_name(read.hashes[i]), now));
    entries.back().marked_ms = read.marked[i];
    open_data(*settings_.crypto, entries.back(), counts);
  }
  counts.read += entries.size();
  return entries;
}

void sync_engine::upsert_isolating(std::size_t worker, std::vector<postgres::session_row> rows,
                                   std::vector<std::string>& written,
                                   std::vector<std::pair<std::string, std::string>>& refused,
                                   sync_counts& counts) {
  if (rows.empty())
    return;
  try {
    ++counts.statements;
    counts.written += postgres::bulk_upsert_sessions(pg(worker), rows, &written);
    return;
  } catch (const postgres::pg_error& e) {
    if (!row_refused(e))
      throw; // write_batch reports it as a PostgreSQL failure
    if (rows.size() == 1) {
      // A few bad rows are set aside; a table that refuses many (a new constraint, a schema
      // change) fails the run instead of emptying the dirty sets into the rejected hash.
      if (++refused_in_run_ > settings_.max_rejected_per_run)
        throw sync_error(true, "PostgreSQL refused more than " +
                                   std::to_string(settings_.max_rejected_per_run) +
                                   " rows in one run (sync.max_rejected_per_run), which points at "
                                   "the table rather than at its rows; the last: " +
                                   std::string(e.what()));
      refused.emplace_back(rows.front().session_id, e.what());
      return;
    }
  }
  // One bad row costs about 2 log2(n) statements and 2n rows sent; the good rows are written.
  auto mid = rows.begin() + static_cast<std::ptrdiff_t>(rows.size() / 2);
  std::vector<postgres::session_row> second(std::make_move_iterator(mid),
                                            std::make_move_iterator(rows.end()));
  rows.erase(mid, rows.end());
  upsert_isolating(worker, std::move(rows), written, refused, counts);
  upsert_isolating(worker, std::move(second), written, refused, counts);
}

void sync_engine::write_batch(std::size_t set, std::size_t worker,
                              std::vector<dirty_entry>& entries, sync_counts& counts) {
  auto dirty_key = keys_.dirty(set);
  auto session_prefix = settings_.prefix + "s" + model::key_layout::tag(set) + ":";
  reindex(entries, worker, counts); // before the rows move out of the entries
  std::vector<postgres::session_row> rows;
  std::vector<std::pair<std::string, std::string>> refused; // id, PostgreSQL's reason (or ours)
  rows.reserve(entries.size());
  for (auto& e : entries)
    if (e.present && !e.refusal.empty())
      refused.emplace_back(e.id, e.refusal); // set aside like a row PostgreSQL refused
    else if (e.present)
      rows.push_back(std::move(e.row));
  auto to_write = rows.size() + refused.size();
  std::vector<std::string> written;
  std::unordered_map<std::string, postgres::stored_version> stored; // of the rows not written
  auto started = std::chrono::steady_clock::now();
  try {
    upsert_isolating(worker, std::move(rows), written, refused, counts);
    if (written.size() + refused.size() < to_write) {
      std::unordered_set<std::string_view> done(written.begin(), written.end());
      for (const auto& r : refused)
        done.insert(r.first);
      std::vector<std::string> fenced;
      for (const auto& e : entries)
        if (e.present && !done.count(e.id))
          fenced.push_back(e.id);
      ++counts.statements;
      for (auto& v : postgres::load_versions(pg(worker), fenced))
        stored.emplace(v.session_id, std::move(v));
    }
  } catch (const postgres::pg_error& e) {
    counts.postgres_us += micros_since(started);
    throw sync_error(true, std::string("PostgreSQL: ") + e.what());
  } catch (const sync_error&) {
    counts.postgres_us += micros_since(started);
    throw;
  }
  counts.postgres_us += micros_since(started);
  auto now = clock_.now_ms();
  std::unordered_map<std::string, std::string> refused_by_id(refused.begin(), refused.end());
  std::vector<std::string> ack{session_prefix};
  std::vector<std::string> repair{session_prefix, std::to_string(now),
                                  std::to_string(settings_.tombstone_ttl_ms)};
  std::vector<std::string> reject{session_prefix};
  std::vector<std::string> record{"HSET", rejected_hash_key(settings_.prefix)};
  ack.reserve(1 + 3 * entries.size());
  for (const auto& e : entries) {
    if (auto r = refused_by_id.find(e.id); r != refused_by_id.end()) {
      reject.insert(reject.end(), {e.id, e.version, e.last_activity});
      record.insert(record.end(), {e.id, std::to_string(set) + " " + e.version + " " +
                                             std::to_string(now) + " " + r->second});
      counts.last_rejection = e.id + " v" + e.version + ": " + r->second;
      continue;
    }
    auto it = e.present ? stored.find(e.id) : stored.end();
    if (it != stored.end() && it->second.repair_pending)
      continue; // PostgreSQL holds a newer write made while Redis was down: the node puts it
                // back into Redis first; until then the mark stays and nothing is repaired
    if (it != stored.end() && it->second.version > to_int(e.version)) {
      repair.insert(repair.end(),
                    {e.id, e.version, std::to_string(it->second.version), it->second.status});
      continue;
    }
    ack.insert(ack.end(), {e.id, e.version, e.last_activity});
  }
  started = std::chrono::steady_clock::now();
  auto rejected_key = rejected_hash_key(settings_.prefix);
  if (ack.size() > 1)
    counts.acked +=
        static_cast<std::uint64_t>(eval(scripts_.sync_ack, {dirty_key}, ack, worker).integer);
  if (repair.size() > 3)
    counts.repaired +=
        static_cast<std::uint64_t>(eval(scripts_.sync_repair, {dirty_key}, repair, worker).integer);
  if (reject.size() > 1) {
    // Recorded first, so a crash between the two leaves the row marked and listed, not lost.
    call(std::move(record), worker);
    rejected_present_ = true;
    counts.rejected +=
        static_cast<std::uint64_t>(eval(scripts_.sync_reject, {dirty_key}, reject, worker).integer);
  }
  if (rejected_present_ && !written.empty()) {
    // Written now: no longer rejected (a later save PostgreSQL took, or a requeue).
    std::vector<std::string> hdel{"HDEL", rejected_key};
    hdel.insert(hdel.end(), written.begin(), written.end());
    call(std::move(hdel), worker);
  }
  counts.redis_wait_us += micros_since(started);
}

// Batches of one set are read in order under the set's lease, each while the one before is
// written: batch k+1's ids are taken (ZRANGE) before batch k is written and leave out batch k's
// (whose marks are still there); batch k+2's only after batch k's ack, so marks batch k could not
// clear (a save landed meanwhile, a repair) are read again. A mark is removed only by the ack of a
// batch PostgreSQL has committed (or fenced off); a failure leaves every mark not acked in place.
// A session is created with its dirty mark in one script and added to its user's index by a
// second command; a node that died between the two left it out of the index. Such a session was
// created no earlier than its mark was set, which the sessions written again since do not match:
// the sync adds just those (index_add keeps an entry that exists).
void sync_engine::reindex(const std::vector<dirty_entry>& entries, std::size_t worker,
                          sync_counts& counts) {
  struct pending {
    std::atomic<std::size_t> left{0};
    std::atomic<bool> failed{false};
    std::promise<void> answered;
  };
  auto p = std::make_shared<pending>();
  auto now = std::to_string(clock_.now_ms());
  std::vector<const dirty_entry*> todo;
  for (const auto& e : entries)
    if (e.present && e.row.status == "ACTIVE" && e.row.created_at_ms >= e.marked_ms)
      todo.push_back(&e);
  if (todo.empty())
    return;
  p->left = todo.size();
  auto answered = p->answered.get_future();
  for (const auto* e : todo)
    redis_.eval(settings_.first_hint + worker, scripts_.index_add, {keys_.user(e->row.user_id)},
                {std::to_string(e->row.created_at_ms), e->id, now,
                 std::to_string(e->row.created_at_ms + settings_.max_lifetime_ms)},
                [p](redis::errc err, redis::reply&& r) {
                  if (err != redis::errc::ok || r.is_error())
                    p->failed = true;
                  if (--p->left == 0)
                    p->answered.set_value();
                });
  if (answered.wait_for(settings_.redis_wait) != std::future_status::ready || p->failed)
    throw sync_error(false, "Redis failed while adding new sessions to their users' indexes");
  counts.indexed += todo.size();
}

void sync_engine::sync_set(std::size_t set, std::size_t worker, sync_counts& counts) {
  auto pending_ids = call({"ZCARD", keys_.dirty(set)}, worker);
  if (pending_ids.integer == 0)
    return;
  if (!acquire(set, worker)) {
    ++counts.skipped_sets;
    return;
  }
  // Bounded: the ids present at the start, plus one batch for writes landing meanwhile.
  auto batches = pending_ids.integer / static_cast<long long>(settings_.batch_size) + 2;
  auto lease = keys_.lease(set);
  try {
    auto next = read_next(set, worker, {}, counts);
    for (;;) {
      auto entries = await_read(*next, counts);
      if (entries.empty())
        break;
      bool more = entries.size() == settings_.batch_size && --batches > 0;
      if (more)
        next = read_next(set, worker, entries, counts);
      write_batch(set, worker, entries, counts);
      if (!more)
        break;
      // Renewed after every batch; the reply is not waited for (a lease that lapses lets another
      // node in, which the version fence and the compare-in-Lua ack make harmless).
      redis_.command(settings_.first_hint + worker,
                     {"PEXPIRE", lease, std::to_string(settings_.lease_ttl.count())},
                     [](redis::errc, redis::reply&&) {});
    }
  } catch (const sync_error&) {
    try {
      release(set, worker);
    } catch (const sync_error&) {
    }
    throw;
  }
  release(set, worker);
  counts.partitions.push_back(set);
}

sync_counts sync_engine::run() {
  auto upgraded = upgrade_step();
  rejected_present_ = rejected() > 0;
  refused_in_run_ = 0;
  const auto sets = sets_to_drain();
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mtx;
  sync_counts total;
  std::exception_ptr first_error;
  auto work = [&](std::size_t worker) {
    sync_counts mine;
    try {
      for (std::size_t i; !failed && (i = next++) < sets.size();)
        sync_set(sets[i], worker, mine);
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
    total.rejected += mine.rejected;
    if (!mine.last_rejection.empty())
      total.last_rejection = mine.last_rejection;
    total.postgres_us += mine.postgres_us;
    total.redis_wait_us += mine.redis_wait_us;
    total.indexed += mine.indexed;
    total.undecryptable += mine.undecryptable;
    total.partitions.insert(total.partitions.end(), mine.partitions.begin(), mine.partitions.end());
  };
  std::vector<std::thread> helpers;
  auto workers = std::min(pg_.size(), sets.size());
  for (std::size_t w = 1; w < workers; ++w)
    helpers.emplace_back(work, w);
  work(0);
  for (auto& t : helpers)
    t.join();
  if (first_error)
    std::rethrow_exception(first_error);
  total.upgraded = upgraded;
  total.resealed = rotate_step();
  std::sort(total.partitions.begin(), total.partitions.end());
  // Nothing was dirty, so nothing went to PostgreSQL: ask it, or an idle node would report it up
  // (sessiond_postgres_up, /readyz) however long it has been gone.
  if (total.statements == 0)
    ping_postgres();
  return total;
}

} // namespace sessiond::actors
