-- Secrets every host of a fleet shares, created by the first host that
-- needs one: the dashboard signs its session cookies with
-- 'dashboard-session', so a cookie one host issued is valid on all.
-- Numbered in lockstep with migrations/sqlite.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
