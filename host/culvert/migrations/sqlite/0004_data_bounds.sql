-- Bounds on the data around the sandbox, and finalisation that cannot
-- crash-loop. Numbered in lockstep with migrations/postgres.

-- Bytes of task output this execution has stored, counted in the
-- transaction that stores each (the tenant's max_execution_output_bytes).
ALTER TABLE executions ADD COLUMN output_bytes INTEGER NOT NULL DEFAULT 0;
-- Assembling the final context runs outside any write transaction, under a
-- lease like a task's: how often it was started, and until when the host
-- doing it holds it. After a bounded number of tries the execution fails.
ALTER TABLE executions ADD COLUMN finalize_attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE executions ADD COLUMN finalize_lease_until INTEGER;

CREATE INDEX executions_finalizing ON executions (finalize_lease_until) WHERE tasks_remaining <= 0 AND status IN ('pending', 'running');
