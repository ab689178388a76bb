-- +goose Up
-- One row per execution, however often its event was delivered or published.
CREATE TABLE executions (
    execution_id      text PRIMARY KEY,
    tenant_id         text NOT NULL,
    key_id            text NOT NULL,
    tier              text NOT NULL,
    module_id         text NOT NULL,
    status            text NOT NULL,
    exit_code         integer NOT NULL,
    wall_ms           double precision NOT NULL, -- as measured
    cpu_ms            double precision NOT NULL,
    memory_peak_bytes bigint NOT NULL,
    stdin_bytes       bigint NOT NULL,
    stdout_bytes      bigint NOT NULL,
    stderr_bytes      bigint NOT NULL,
    billed_wall_ms    bigint NOT NULL,           -- ceil(wall_ms)
    memory_mb_ms      bigint NOT NULL,           -- ceil(memory_peak_bytes / MiB) * billed_wall_ms
    queued_at         timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz NOT NULL,
    day               date NOT NULL,             -- finished_at's UTC day
    node_id           text NOT NULL,
    event_id          text NOT NULL,
    event_seq         bigint NOT NULL,           -- sequence in WASMWIZ_EVENTS
    inserted_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX executions_tenant_finished ON executions (tenant_id, finished_at);

-- Per tenant and UTC day, the sums of the executions rows; maintained in the transaction that
-- inserts them.
CREATE TABLE usage_daily (
    tenant_id    text NOT NULL,
    day          date NOT NULL,
    executions   bigint NOT NULL,
    succeeded    bigint NOT NULL,
    failed       bigint NOT NULL, -- failed and killed
    timed_out    bigint NOT NULL,
    wall_ms      bigint NOT NULL,
    memory_mb_ms bigint NOT NULL,
    bytes_in     bigint NOT NULL,
    bytes_out    bigint NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

-- Non-execution events (modules, keys, rate limits), for audit.
CREATE TABLE events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    tenant_id   text NOT NULL,
    time        timestamptz NOT NULL,
    data        jsonb NOT NULL,
    event_seq   bigint NOT NULL,
    inserted_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant_time ON events (tenant_id, time);

-- +goose Down
DROP TABLE events;
DROP TABLE usage_daily;
DROP TABLE executions;
