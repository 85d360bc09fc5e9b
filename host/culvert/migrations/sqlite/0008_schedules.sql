-- Schedules: cron workflows a tenant sets at run time, or a package
-- declares (package is set: they come and go with the package). One row per
-- schedule, with the first due time not handled yet (next_due_at) and a
-- version every change bumps, so that a host advances a schedule only from
-- the state it read.
-- Numbered in lockstep with migrations/postgres.
CREATE TABLE schedules (
    id            UUID PRIMARY KEY,
    tenant        TEXT NOT NULL REFERENCES tenants (name),
    -- The declaring package's name, and the schedule's key within it; NULL
    -- for a schedule set at run time.
    package       TEXT,
    declared_key  TEXT,
    workflow      TEXT NOT NULL,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    context       TEXT NOT NULL,
    catch_up      TEXT NOT NULL,
    catch_up_cap  BIGINT NOT NULL,
    overlap       TEXT NOT NULL,
    paused        BOOLEAN NOT NULL,
    next_due_at   BIGINT,
    -- A due time kept by the queue_one overlap policy.
    queued_for    BIGINT,
    last_fired_at BIGINT,
    last_error    TEXT,
    version       BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX schedules_declared ON schedules (tenant, package, declared_key) WHERE package IS NOT NULL;
-- What each host's firing loop reads four times a second: due ones, and
-- the few with a kept due time.
CREATE INDEX schedules_due ON schedules (next_due_at);
CREATE INDEX schedules_queued ON schedules (queued_for) WHERE queued_for IS NOT NULL;

-- Each due time is claimed once: the row is inserted in the transaction
-- that starts its execution, and its key refuses a second claim.
CREATE TABLE schedule_fires (
    schedule_id  UUID NOT NULL,
    due_at       BIGINT NOT NULL,
    tenant       TEXT NOT NULL,
    -- started, caught_up, dequeued, skipped_overlap, queued, failed, triggered
    outcome      TEXT NOT NULL,
    execution_id UUID,
    error        TEXT,
    fired_at     BIGINT NOT NULL,
    host         UUID,
    PRIMARY KEY (schedule_id, due_at)
);

ALTER TABLE executions ADD COLUMN schedule_id UUID;
ALTER TABLE executions ADD COLUMN scheduled_for BIGINT;
CREATE INDEX executions_by_schedule ON executions (schedule_id, status) WHERE schedule_id IS NOT NULL;
