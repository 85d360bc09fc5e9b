-- Tenants, content-addressed component bytes, and registered packages.
-- Numbered in lockstep with migrations/sqlite.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    limits      TEXT NOT NULL DEFAULT '{}',
    created_at  BIGINT NOT NULL
);

INSERT INTO tenants (name, limits, created_at)
VALUES ('public', '{}', (EXTRACT(EPOCH FROM now()) * 1000)::BIGINT);

-- Component bytes, stored once per content hash whoever registers them.
-- A blob outlives its packages while executions pinned to it still run.
CREATE TABLE blobs (
    content_hash  TEXT PRIMARY KEY,
    size          BIGINT NOT NULL,
    bytes         BYTEA NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE packages (
    id             UUID PRIMARY KEY,
    tenant         TEXT NOT NULL REFERENCES tenants (name),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    content_hash   TEXT NOT NULL REFERENCES blobs (content_hash),
    size           BIGINT NOT NULL,
    metadata       TEXT NOT NULL,
    registered_at  BIGINT NOT NULL,
    UNIQUE (tenant, name, version)
);

CREATE INDEX packages_by_hash ON packages (content_hash);

-- One row per running `culvert serve`: its heartbeat and last status, so
-- that `culvert status` can report on hosts it is not part of.
CREATE TABLE hosts (
    id            UUID PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    started_at    BIGINT NOT NULL,
    heartbeat_at  BIGINT NOT NULL,
    status        TEXT NOT NULL DEFAULT '{}'
);
