-- Tenants, content-addressed component bytes, and registered packages.
-- Numbered in lockstep with migrations/postgres.
-- Times are milliseconds since the Unix epoch.

CREATE TABLE tenants (
    name        TEXT PRIMARY KEY,
    limits      TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);

INSERT INTO tenants (name, limits, created_at)
VALUES ('public', '{}', CAST(strftime('%s', 'now') AS INTEGER) * 1000);

-- Component bytes, stored once per content hash whoever registers them.
-- A blob outlives its packages while executions pinned to it still run.
CREATE TABLE blobs (
    content_hash  TEXT PRIMARY KEY,
    size          INTEGER NOT NULL,
    bytes         BLOB NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE packages (
    id             BLOB PRIMARY KEY,
    tenant         TEXT NOT NULL REFERENCES tenants (name),
    name           TEXT NOT NULL,
    version        TEXT NOT NULL,
    content_hash   TEXT NOT NULL REFERENCES blobs (content_hash),
    size           INTEGER NOT NULL,
    metadata       TEXT NOT NULL,
    registered_at  INTEGER NOT NULL,
    UNIQUE (tenant, name, version)
);

CREATE INDEX packages_by_hash ON packages (content_hash);

-- One row per running `culvert serve`: its heartbeat and last status, so
-- that `culvert status` can report on hosts it is not part of.
CREATE TABLE hosts (
    id            BLOB PRIMARY KEY,
    hostname      TEXT NOT NULL,
    pid           INTEGER NOT NULL,
    started_at    INTEGER NOT NULL,
    heartbeat_at  INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT '{}'
);
