-- Sessions written in PostgreSQL while Redis was unreachable (a redis-primary node serving
-- degraded from PostgreSQL): one note per session with the highest version written so. The node
-- puts each noted session back into Redis when Redis is reachable again and then removes the
-- note (only if no newer write noted it again meanwhile). While a note is pending, the
-- write-behind sync never overwrites the session's row: the row is newer than what Redis holds.
--
-- noted_at orders the repairs oldest first (session_redis_repair_noted_idx).
create table session_redis_repair (
  session_id text primary key,
  version bigint not null,
  noted_at timestamptz not null default now()
);

create index session_redis_repair_noted_idx on session_redis_repair (noted_at);
