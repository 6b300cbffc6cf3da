-- Sessions written behind from Redis: one row per session, fenced by `version`.
--
-- Indexes: the primary key serves upserts and read-through loads, user_session_user_idx serves
-- "the user's sessions", user_session_retention_idx serves the retention scan. The retention
-- index is partial (only rows that are no longer active, so active sessions never enter it) and
-- keyed on created_at, which a save never changes: no index references last_activity_at,
-- expires_at, data, version or updated_at, so a save of an existing session can be a HOT update
-- (no new index entries), which fillfactor 90 leaves room for. See docs/postgres.md.
create table user_session (
  session_id text primary key,
  user_id text not null,
  data jsonb not null,
  version bigint not null,
  status text not null,
  is_active boolean not null,
  created_at timestamptz,
  last_activity_at timestamptz,
  expires_at timestamptz,
  updated_at timestamptz,
  revoked_at timestamptz
) with (fillfactor = 90);

create index user_session_user_idx on user_session (user_id);

-- Retention deletes rows with is_active = false, status <> 'ACTIVE', expires_at < now() and
-- coalesce(last_activity_at, created_at) < now() - retention; its query adds the implied
-- `created_at < now() - retention` to range-scan this index, and filters the rest per row.
create index user_session_retention_idx on user_session (created_at)
  where is_active = false and status <> 'ACTIVE';
