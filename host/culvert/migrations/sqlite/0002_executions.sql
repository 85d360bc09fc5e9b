-- Workflow executions, their tasks, and the append-only event log.
-- Numbered in lockstep with migrations/postgres.

CREATE TABLE executions (
    id               BLOB PRIMARY KEY,
    tenant           TEXT NOT NULL,
    package_id       BLOB NOT NULL,
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
    tasks_remaining  INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER
);

CREATE INDEX executions_by_tenant ON executions (tenant, created_at);
CREATE INDEX executions_by_status ON executions (status);

CREATE TABLE task_executions (
    execution_id      BLOB NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task_id           TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    status            TEXT NOT NULL,
    -- Attempts started so far; max_attempts from the retry policy.
    attempt           INTEGER NOT NULL DEFAULT 0,
    max_attempts      INTEGER NOT NULL,
    -- Dependencies not finished yet.
    deps_remaining    INTEGER NOT NULL,
    -- When a ready task may run (retry backoff).
    next_run_at       INTEGER,
    input             TEXT,
    output            TEXT,
    last_error        TEXT,
    last_error_kind   TEXT,
    skip_reason       TEXT,
    claimed_by        BLOB,
    -- Set at each claim: a completion must present it, so a late result
    -- from an earlier claim is refused.
    claim_token       BLOB,
    lease_expires_at  INTEGER,
    recoveries        INTEGER NOT NULL DEFAULT 0,
    started_at        INTEGER,
    finished_at       INTEGER,
    duration_ms       INTEGER,
    ready_at          INTEGER,
    PRIMARY KEY (execution_id, task_id)
);

CREATE INDEX task_executions_ready ON task_executions (tenant, next_run_at) WHERE status = 'ready';
CREATE INDEX task_executions_running ON task_executions (lease_expires_at) WHERE status = 'running';
CREATE INDEX task_executions_running_tenant ON task_executions (tenant) WHERE status = 'running';
CREATE INDEX task_executions_claimed ON task_executions (claimed_by) WHERE status = 'running';

CREATE TABLE execution_events (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id  BLOB NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task_id       TEXT,
    kind          TEXT NOT NULL,
    detail        TEXT,
    host          BLOB,
    at            INTEGER NOT NULL
);

CREATE INDEX execution_events_by_execution ON execution_events (execution_id, id);
