//! API keys and the audit log: who may reach what through the HTTP API,
//! and the record of every change made through it.
//!
//! ## Keys
//!
//! A key's secret reads `cvk_<id>_<secret>`: `cvk_` makes a leaked key easy
//! to recognise (and to scan for), `<id>` is 12 hex digits that name the
//! key in listings and the audit log, and `<secret>` is 64 hex digits, 256
//! bits from the operating system's generator. The secret is shown once,
//! when the key is created; the store keeps only the blake3 hash of the
//! whole string, and [`verify`] compares hashes in constant time
//! (`blake3::Hash`'s equality is constant-time).
//!
//! A key belongs to one tenant and has a [`ApiKeyRole`]: a `tenant` key
//! reaches that tenant's packages and executions only; an `operator` key
//! reaches every tenant and the operator-only routes (tenants, grants,
//! keys, the audit log, metrics). A key may expire; a revoked or expired
//! key is refused exactly like an unknown one.
//!
//! ## Audit
//!
//! [`AuditEntry`] is one change: which key, acting on which tenant, when,
//! what ([`AuditAction`]), on what (`subject`), with details (for a
//! package, its content hash).

use serde::{Deserialize, Serialize};
use std::fmt;

/// The prefix of every key's secret.
pub const API_KEY_PREFIX: &str = "cvk_";

/// Hex digits of a key's public id.
const ID_HEX: usize = 12;
/// Hex digits of a key's secret part: 256 bits.
const SECRET_HEX: usize = 64;

/// What a key may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyRole {
    /// Its own tenant's packages and executions.
    Tenant,
    /// Everything, including tenants, grants, keys, the audit log and
    /// metrics.
    Operator,
}

impl ApiKeyRole {
    /// The stored name: `tenant` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiKeyRole::Tenant => "tenant",
            ApiKeyRole::Operator => "operator",
        }
    }

    /// Parse [`as_str`](Self::as_str)'s output.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tenant" => Some(ApiKeyRole::Tenant),
            "operator" => Some(ApiKeyRole::Operator),
            _ => None,
        }
    }
}

impl fmt::Display for ApiKeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key as stored and listed: never its secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRow {
    /// The public id (12 hex digits), the middle of the secret.
    pub id: String,
    /// The tenant it belongs to.
    pub tenant: String,
    /// A name for people, unique among the tenant's live keys.
    pub name: String,
    /// What it may reach.
    pub role: ApiKeyRole,
    /// Created, in ms since the epoch.
    pub created_at: i64,
    /// When it stops working, in ms since the epoch; `None`: never.
    pub expires_at: Option<i64>,
    /// When it was revoked, in ms since the epoch.
    pub revoked_at: Option<i64>,
}

impl ApiKeyRow {
    /// Whether the key works at `now_ms`: not revoked, not expired.
    pub fn is_live(&self, now_ms: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now_ms < e)
    }
}

/// A freshly generated key: its secret (shown once) and what is stored.
#[derive(Clone)]
pub struct NewApiKey {
    /// The public id.
    pub id: String,
    /// The whole secret, `cvk_<id>_<secret>`.
    pub secret: String,
    /// blake3 of `secret`, hex: all the store keeps.
    pub hash: String,
}

impl fmt::Debug for NewApiKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewApiKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Generate a key from the operating system's random generator.
///
/// # Errors
/// When the generator fails (the error says so).
pub fn generate_api_key() -> Result<NewApiKey, String> {
    let mut bytes = [0u8; ID_HEX / 2 + SECRET_HEX / 2];
    getrandom::fill(&mut bytes).map_err(|e| format!("the random generator failed: {e}"))?;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let id = hex(&bytes[..ID_HEX / 2]);
    let secret = format!("{API_KEY_PREFIX}{id}_{}", hex(&bytes[ID_HEX / 2..]));
    let hash = blake3::hash(secret.as_bytes()).to_hex().to_string();
    Ok(NewApiKey { id, secret, hash })
}

/// The public id inside a presented secret, or `None` when it does not
/// have the shape of a key (then it is refused without a database read).
pub fn api_key_id(secret: &str) -> Option<&str> {
    let rest = secret.strip_prefix(API_KEY_PREFIX)?;
    let (id, tail) = rest.split_once('_')?;
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(id, ID_HEX) && hex(tail, SECRET_HEX)).then_some(id)
}

/// Whether `secret` hashes to `stored_hash` (hex), compared in constant
/// time. A stored hash that does not parse matches nothing.
pub fn verify(secret: &str, stored_hash: &str) -> bool {
    match blake3::Hash::from_hex(stored_hash) {
        Ok(stored) => blake3::hash(secret.as_bytes()) == stored,
        Err(_) => false,
    }
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A package was registered.
    PackageAdded,
    /// A package (or one version) was removed.
    PackageRemoved,
    /// A tenant was created.
    TenantCreated,
    /// A tenant's limits changed.
    TenantUpdated,
    /// A tenant was deleted.
    TenantDeleted,
    /// A capability was granted.
    GrantAdded,
    /// A grant was revoked.
    GrantRevoked,
    /// An API key was created.
    KeyCreated,
    /// An API key was revoked.
    KeyRevoked,
    /// An execution was started.
    ExecutionStarted,
    /// An execution was cancelled.
    ExecutionCancelled,
    /// A failed execution was retried.
    ExecutionRetried,
    /// A schedule was created.
    ScheduleCreated,
    /// A schedule was deleted.
    ScheduleDeleted,
    /// A schedule was paused.
    SchedulePaused,
    /// A schedule was resumed.
    ScheduleResumed,
    /// A schedule was fired by hand.
    ScheduleTriggered,
    /// A package signing key was trusted for a tenant.
    SigningKeyTrusted,
    /// A package signing key was untrusted.
    SigningKeyUntrusted,
}

impl AuditAction {
    /// The stored name, e.g. `package_added`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::PackageAdded => "package_added",
            AuditAction::PackageRemoved => "package_removed",
            AuditAction::TenantCreated => "tenant_created",
            AuditAction::TenantUpdated => "tenant_updated",
            AuditAction::TenantDeleted => "tenant_deleted",
            AuditAction::GrantAdded => "grant_added",
            AuditAction::GrantRevoked => "grant_revoked",
            AuditAction::KeyCreated => "key_created",
            AuditAction::KeyRevoked => "key_revoked",
            AuditAction::ExecutionStarted => "execution_started",
            AuditAction::ExecutionCancelled => "execution_cancelled",
            AuditAction::ExecutionRetried => "execution_retried",
            AuditAction::ScheduleCreated => "schedule_created",
            AuditAction::ScheduleDeleted => "schedule_deleted",
            AuditAction::SchedulePaused => "schedule_paused",
            AuditAction::ScheduleResumed => "schedule_resumed",
            AuditAction::ScheduleTriggered => "schedule_triggered",
            AuditAction::SigningKeyTrusted => "signing_key_trusted",
            AuditAction::SigningKeyUntrusted => "signing_key_untrusted",
        }
    }
}

/// One change, to record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    /// The key that made it; `None` when made from the command line with
    /// the database URL.
    pub key_id: Option<String>,
    /// That key's name.
    pub key_name: Option<String>,
    /// The tenant acted on.
    pub tenant: String,
    /// What was done.
    pub action: AuditAction,
    /// To what: `name@version`, an execution id, a key id, a tenant name.
    pub subject: String,
    /// Details, e.g. `{"content_hash": "..."}`.
    pub detail: serde_json::Value,
}

/// A recorded audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRow {
    /// Its position in the log (increasing).
    pub id: i64,
    /// When, in ms since the epoch.
    pub at: i64,
    /// The key that made the change, if any.
    pub key_id: Option<String>,
    /// That key's name.
    pub key_name: Option<String>,
    /// The tenant acted on.
    pub tenant: String,
    /// What was done (an [`AuditAction`] name).
    pub action: String,
    /// To what.
    pub subject: String,
    /// Details (JSON).
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_their_shape_and_verify() {
        let key = generate_api_key().unwrap();
        assert!(key.secret.starts_with("cvk_"));
        assert_eq!(key.secret.len(), 4 + 12 + 1 + 64);
        assert_eq!(api_key_id(&key.secret), Some(key.id.as_str()));
        assert!(verify(&key.secret, &key.hash));
        let mut wrong = key.secret.clone();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        assert!(!verify(&wrong, &key.hash));
        assert!(!verify(&key.secret, "not hex"));
        assert!(!format!("{key:?}").contains(&key.secret));
        let other = generate_api_key().unwrap();
        assert_ne!(key.secret, other.secret);
    }

    #[test]
    fn malformed_secrets_have_no_id() {
        for s in [
            "",
            "cvk_",
            "Bearer x",
            "cvk_0123456789ab",
            "cvk_0123456789ab_00",
            "cvk_0123456789ag_0000000000000000000000000000000000000000000000000000000000000000",
            "xyz_0123456789ab_0000000000000000000000000000000000000000000000000000000000000000",
        ] {
            assert_eq!(api_key_id(s), None, "{s}");
        }
    }

    #[test]
    fn liveness() {
        let mut row = ApiKeyRow {
            id: "0".into(),
            tenant: "t".into(),
            name: "n".into(),
            role: ApiKeyRole::Tenant,
            created_at: 0,
            expires_at: Some(100),
            revoked_at: None,
        };
        assert!(row.is_live(99));
        assert!(!row.is_live(100));
        row.expires_at = None;
        assert!(row.is_live(i64::MAX));
        row.revoked_at = Some(5);
        assert!(!row.is_live(0));
    }
}
