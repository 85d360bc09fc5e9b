-- Workflow executions, their tasks, and the append-only event log.
-- Numbered in lockstep with migrations/sqlite.

CREATE TABLE executions (
    id               UUID PRIMARY KEY,
    tenant           TEXT NOT NULL,
    package_id       UUID NOT NULL,
    package_name     TEXT NOT NULL,
    package_version  TEXT NOT NULL,
    -- The execution is pinned to these bytes, even if the package is
    -- removed or a new version is registered while it runs.
    content_hash     TEXT NOT NULL,
    workflow         TEXT NOT NULL,
    -- The workflow's DAG as it was when the execution started (JSON).
    dag              TEXT NOT NULL,
    status           TEXT NOT NULL,
    context          TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    tasks_remaining  BIGINT NOT NULL,
    created_at       BIGINT NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT
);

CREATE INDEX executions_by_tenant ON executions (tenant, created_at);
CREATE INDEX executions_by_status ON executions (status);

CREATE TABLE task_executions (
    execution_id      UUID NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task_id           TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    status            TEXT NOT NULL,
    -- Attempts started so far; max_attempts from the retry policy.
    attempt           BIGINT NOT NULL DEFAULT 0,
    max_attempts      BIGINT NOT NULL,
    -- Dependencies not finished yet.
    deps_remaining    BIGINT NOT NULL,
    -- When a ready task may run (retry backoff).
    next_run_at       BIGINT,
    input             TEXT,
    output            TEXT,
    last_error        TEXT,
    last_error_kind   TEXT,
    skip_reason       TEXT,
    claimed_by        UUID,
    -- Set at each claim: a completion must present it, so a late result
    -- from an earlier claim is refused.
    claim_token       UUID,
    lease_expires_at  BIGINT,
    recoveries        BIGINT NOT NULL DEFAULT 0,
    started_at        BIGINT,
    finished_at       BIGINT,
    duration_ms       BIGINT,
    ready_at          BIGINT,
    PRIMARY KEY (execution_id, task_id)
);

CREATE INDEX task_executions_ready ON task_executions (tenant, next_run_at) WHERE status = 'ready';
CREATE INDEX task_executions_running ON task_executions (lease_expires_at) WHERE status = 'running';
CREATE INDEX task_executions_running_tenant ON task_executions (tenant) WHERE status = 'running';
CREATE INDEX task_executions_claimed ON task_executions (claimed_by) WHERE status = 'running';

CREATE TABLE execution_events (
    id            BIGSERIAL PRIMARY KEY,
    execution_id  UUID NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task_id       TEXT,
    kind          TEXT NOT NULL,
    detail        TEXT,
    host          UUID,
    at            BIGINT NOT NULL
);

CREATE INDEX execution_events_by_execution ON execution_events (execution_id, id);
