-- The HTTP API's state: API keys, the audit log, and idempotent starts.
-- Numbered in lockstep with migrations/postgres.

-- A key's secret is `cvk_<id>_<secret>`; only the blake3 hash of the whole
-- secret is stored.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    name        TEXT NOT NULL,
    role        TEXT NOT NULL,
    hash        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER
);
-- Names are unique among a tenant's live keys.
CREATE UNIQUE INDEX api_keys_live_name ON api_keys (tenant, name) WHERE revoked_at IS NULL;

-- Every change made through the API (and the key and tenant commands).
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    key_id    TEXT,
    key_name  TEXT,
    tenant    TEXT NOT NULL,
    action    TEXT NOT NULL,
    subject   TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_log_by_tenant ON audit_log (tenant, id);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- A client's `Idempotency-Key`: a retried start returns the same execution.
ALTER TABLE executions ADD COLUMN idempotency_key TEXT;
CREATE UNIQUE INDEX executions_idempotency ON executions (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Listing a tenant's executions of one workflow, newest first.
CREATE INDEX executions_by_workflow ON executions (tenant, workflow, created_at);
-- A start counts the tenant's unfinished executions (max_queued_executions)
-- through this index, not by reading every execution the tenant kept.
CREATE INDEX executions_by_tenant_status ON executions (tenant, status);
