-- One row per retention run (dry runs included): who ran it, when, with which criterion and
-- how many rows it deleted; `error` is set when the run stopped on a failure.
create table session_retention_audit (
  id bigserial primary key,
  started_at timestamptz not null,
  finished_at timestamptz,
  rows_deleted bigint not null default 0,
  criterion text not null,
  actor text not null,
  node_id text not null,
  dry_run boolean not null,
  error text
);

create index session_retention_audit_started_idx on session_retention_audit (started_at);
