-- What each attempt's guest said, and retention. Numbered in lockstep with
-- migrations/postgres.

-- One row per attempt that ran: its log records and stdout and stderr
-- lines as one JSON array, at most TASK_LOG_BYTES (64 KiB) of guest text,
-- written in the transaction that records the attempt's completion.
CREATE TABLE task_logs (
    execution_id   BLOB NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    task_id        TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    tenant         TEXT NOT NULL,
    records        TEXT NOT NULL,
    -- What the records count against the cap.
    bytes          INTEGER NOT NULL,
    -- Whether anything was dropped, and how many bytes of guest text.
    truncated      BOOLEAN NOT NULL,
    dropped_bytes  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    PRIMARY KEY (execution_id, task_id, attempt)
);

CREATE INDEX task_logs_by_tenant ON task_logs (tenant);

-- Retention prunes finished executions oldest first.
CREATE INDEX executions_finished ON executions (finished_at) WHERE status IN ('completed', 'failed', 'cancelled');
