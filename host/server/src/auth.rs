//! Who is calling: the `Authorization: Bearer <key>` header checked against
//! the stored key (its hash, in constant time), the key's rate limit, and
//! which tenant a request acts on.
//!
//! A key's row is reused for at most `key_cache_ttl` (500 ms by default)
//! before the database is asked again, so a revocation reaches every host
//! within that time; nothing else about a caller is kept between requests.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use culvert::{ApiKeyRole, ApiKeyRow, StoreError, api_key_id, now_ms, verify_api_key};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries the key cache holds before it is cleared.
const KEY_CACHE_ENTRIES: usize = 10_000;

/// A looked-up key: its row and stored hash, or `None` when no such key
/// exists; and when it was read.
type CachedKey = (Option<(ApiKeyRow, String)>, Instant);

/// Recently read keys, and the per-key token buckets.
pub struct KeyGuard {
    ttl: Duration,
    cache: Mutex<HashMap<String, CachedKey>>,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl KeyGuard {
    /// A guard that reuses a read for `ttl` and allows each key `rate`
    /// requests per second with bursts of `burst`.
    pub fn new(ttl: Duration, rate: u32, burst: u32) -> Self {
        let rate = NonZeroU32::new(rate.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        Self {
            ttl,
            cache: Mutex::new(HashMap::new()),
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
        }
    }

    /// Forget rate-limit state of keys idle for a while (bounds memory).
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// The key `id`, from the cache when fresh.
    pub(crate) async fn lookup(
        &self,
        state: &AppState,
        id: &str,
    ) -> Result<Option<(ApiKeyRow, String)>, ApiError> {
        if let Some((hit, at)) = self.cache.lock().expect("key cache").get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(hit.clone());
        }
        let found = match state.runner.store().api_key(id).await {
            Ok(found) => Some(found),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut cache = self.cache.lock().expect("key cache");
        if cache.len() >= KEY_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(id.to_string(), (found.clone(), Instant::now()));
        Ok(found)
    }

    /// Spend one token of `key`'s bucket, or say how long to wait.
    pub(crate) fn charge(&self, key: &str) -> Result<(), ApiError> {
        self.limiter
            .check_key(&key.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                ApiError::rate_limited(
                    format!(
                        "this key's rate limit is exceeded: retry in {} ms",
                        wait.as_millis().max(1)
                    ),
                    wait.as_secs_f64().ceil() as u64,
                )
            })
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The key's public id.
    pub key_id: String,
    /// The key's name.
    pub key_name: String,
    /// The key's tenant.
    pub tenant: String,
    /// What the key may reach.
    pub role: ApiKeyRole,
}

impl Caller {
    /// Whether this is an operator's key.
    pub fn is_operator(&self) -> bool {
        self.role == ApiKeyRole::Operator
    }

    /// Refuse a tenant key (operator-only routes). A tenant key is told
    /// "not found", as for any route it cannot see.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(ApiError::not_found("no such route for this key"))
        }
    }

    /// The tenant a request acts on: `?tenant=` for an operator (default
    /// the key's own tenant); a tenant key's own tenant, and "not found"
    /// when it names another.
    pub fn tenant_for(&self, asked: Option<&str>) -> Result<String, ApiError> {
        match asked {
            None => Ok(self.tenant.clone()),
            Some(t) if t == self.tenant || self.is_operator() => Ok(t.to_string()),
            Some(t) => Err(ApiError::not_found(format!(
                "tenant '{}' not found",
                culvert::escape_guest_text(t)
            ))),
        }
    }

    /// The tenant a read is restricted to: `None` (every tenant) for an
    /// operator that names none, else as [`tenant_for`](Self::tenant_for).
    pub fn scope(&self, asked: Option<&str>) -> Result<Option<String>, ApiError> {
        if asked.is_none() && self.is_operator() {
            return Ok(None);
        }
        self.tenant_for(asked).map(Some)
    }

    /// The key, as the audit log names it.
    pub fn audit(
        &self,
        tenant: &str,
        action: culvert::AuditAction,
        subject: impl Into<String>,
        detail: serde_json::Value,
    ) -> culvert::AuditEntry {
        culvert::AuditEntry {
            key_id: Some(self.key_id.clone()),
            key_name: Some(self.key_name.clone()),
            tenant: tenant.to_string(),
            action,
            subject: subject.into(),
            detail,
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        let id = api_key_id(secret).ok_or_else(ApiError::unauthorized)?;
        let (row, hash) = state
            .keys
            .lookup(state, id)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if !verify_api_key(secret, &hash) || !row.is_live(now_ms()) {
            return Err(ApiError::unauthorized());
        }
        state.keys.charge(&row.id)?;
        Ok(Caller {
            key_id: row.id,
            key_name: row.name,
            tenant: row.tenant,
            role: row.role,
        })
    }
}
