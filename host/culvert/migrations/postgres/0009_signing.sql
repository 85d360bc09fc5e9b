-- Package signing: the public keys each tenant trusts, and the signature
-- each package was registered with.
-- Numbered in lockstep with migrations/sqlite.

-- A key stays here once untrusted (untrusted_at set): packages it signed
-- are then marked, and stop loading where the tenant's on_untrust says so.
CREATE TABLE trusted_keys (
    tenant        TEXT NOT NULL REFERENCES tenants (name),
    key_id        TEXT NOT NULL,
    name          TEXT NOT NULL,
    -- The 32-byte Ed25519 public key, base64.
    public_key    TEXT NOT NULL,
    trusted_at    BIGINT NOT NULL,
    trusted_by    TEXT NOT NULL,
    untrusted_at  BIGINT,
    untrusted_by  TEXT,
    PRIMARY KEY (tenant, key_id)
);
-- Names are unique among a tenant's trusted keys (`key untrust` takes one).
CREATE UNIQUE INDEX trusted_keys_live_name ON trusted_keys (tenant, name) WHERE untrusted_at IS NULL;

-- What was verified at registration: the signer, the signing time and the
-- signature (base64); with the row's content hash, name and version they
-- are the whole signature file again.
ALTER TABLE packages ADD COLUMN signature_key_id TEXT;
ALTER TABLE packages ADD COLUMN signed_at BIGINT;
ALTER TABLE packages ADD COLUMN signature TEXT;

-- The tenant's on_untrust policy (also in its limits), as a column the
-- reconciler's one query reads: true for 'disable'.
ALTER TABLE tenants ADD COLUMN disable_untrusted BOOLEAN NOT NULL DEFAULT FALSE;
