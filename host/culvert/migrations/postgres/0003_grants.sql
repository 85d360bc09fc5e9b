-- Capability grants: what operators give tenants (the second key of the
-- two-key rule). Numbered in lockstep with migrations/sqlite.

CREATE TABLE grants (
    tenant      TEXT NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    -- The package name the grant is limited to; '' for every package.
    package     TEXT NOT NULL DEFAULT '',
    -- env, dir, http, wall_clock or random.
    kind        TEXT NOT NULL,
    -- The env var, guest path or HTTP host; '' for wall_clock and random.
    name        TEXT NOT NULL DEFAULT '',
    -- The env var's value, or the host directory.
    value       TEXT NOT NULL DEFAULT '',
    writable    BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant, package, kind, name)
);
