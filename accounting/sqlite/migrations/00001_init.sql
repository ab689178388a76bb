-- +goose Up
-- The same tables as accounting/postgres. Times are INTEGER unix microseconds (UTC), days are
-- TEXT YYYY-MM-DD.
CREATE TABLE executions (
    execution_id      TEXT PRIMARY KEY,
    tenant_id         TEXT NOT NULL,
    key_id            TEXT NOT NULL,
    tier              TEXT NOT NULL,
    module_id         TEXT NOT NULL,
    status            TEXT NOT NULL,
    exit_code         INTEGER NOT NULL,
    wall_ms           REAL NOT NULL,
    cpu_ms            REAL NOT NULL,
    memory_peak_bytes INTEGER NOT NULL,
    stdin_bytes       INTEGER NOT NULL,
    stdout_bytes      INTEGER NOT NULL,
    stderr_bytes      INTEGER NOT NULL,
    billed_wall_ms    INTEGER NOT NULL,
    memory_mb_ms      INTEGER NOT NULL,
    queued_at         INTEGER,
    started_at        INTEGER,
    finished_at       INTEGER NOT NULL,
    day               TEXT NOT NULL,
    node_id           TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    event_seq         INTEGER NOT NULL,
    inserted_at       INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX executions_tenant_finished ON executions (tenant_id, finished_at);

CREATE TABLE usage_daily (
    tenant_id    TEXT NOT NULL,
    day          TEXT NOT NULL,
    executions   INTEGER NOT NULL,
    succeeded    INTEGER NOT NULL,
    failed       INTEGER NOT NULL,
    timed_out    INTEGER NOT NULL,
    wall_ms      INTEGER NOT NULL,
    memory_mb_ms INTEGER NOT NULL,
    bytes_in     INTEGER NOT NULL,
    bytes_out    INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day)
) WITHOUT ROWID;

CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    type        TEXT NOT NULL,
    tenant_id   TEXT NOT NULL,
    time        INTEGER NOT NULL,
    data        TEXT NOT NULL,
    event_seq   INTEGER NOT NULL,
    inserted_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX events_tenant_time ON events (tenant_id, time);

-- +goose Down
DROP TABLE events;
DROP TABLE usage_daily;
DROP TABLE executions;
