//! `GET /api/v1/status`: what `culvert status` prints, as far as the key
//! may see it.
//!
//! An operator's key sees the fleet: the database (its URL without a
//! password), the live hosts with their reports, every tenant's packages,
//! execution counts by status, and this host's compiled-code cache. A
//! tenant's key sees its own packages and execution counts, and whether
//! any host is serving: nothing about the fleet (hosts, the database, the
//! cache), as a tenant never learns what it does not own.
//!
//! [`status_json`] builds the document for both `culvert status` against
//! the database and this route, so the two print the same.

use crate::auth::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::state::AppState;
use crate::views::{cache_dir_summary, package_json};
use axum::Json;
use axum::extract::State;
use culvert::{ExecutionFilter, ExecutionStatus, Store, StoreError, now_ms};
use serde_json::{Map, Value, json};
use std::path::Path;
use std::sync::Arc;

/// How long a host may go without a heartbeat before it counts as gone
/// (hosts write theirs every 2 s).
const HOST_SILENCE_MS: i64 = 10_000;

/// What a status report covers.
#[derive(Debug, Clone, Copy)]
pub enum StatusScope<'a> {
    /// Everything: the database, the hosts, every tenant, and the cache in
    /// this directory (when there is one).
    Fleet {
        /// The compiled-code cache to summarize.
        cache_dir: Option<&'a Path>,
    },
    /// One tenant's packages and execution counts.
    Tenant(&'a str),
}

/// The status report: `database`, `serving`, `hosts`, `packages`,
/// `executions` (counts by status) and `cache` for the fleet; `serving`,
/// `packages` and `executions` for a tenant.
///
/// # Errors
/// When the database cannot be read.
pub async fn status_json(store: &dyn Store, scope: StatusScope<'_>) -> Result<Value, StoreError> {
    let tenant = match scope {
        StatusScope::Fleet { .. } => None,
        StatusScope::Tenant(t) => Some(t),
    };
    let hosts = store.live_hosts(now_ms() - HOST_SILENCE_MS).await?;
    let packages = store.list_packages(tenant).await?;
    let mut by_status = Map::new();
    for s in ["pending", "running", "completed", "failed", "cancelled"] {
        let n = store
            .list_executions(ExecutionFilter {
                tenant,
                status: ExecutionStatus::parse(s),
                limit: Some(100_000),
                ..ExecutionFilter::default()
            })
            .await?
            .len();
        by_status.insert(s.into(), json!(n));
    }
    let packages: Vec<Value> = packages.iter().map(package_json).collect();
    Ok(match scope {
        StatusScope::Fleet { cache_dir } => {
            let mut v = json!({
                "database": store.display_url(),
                "serving": !hosts.is_empty(),
                "hosts": hosts,
                "packages": packages,
                "executions": by_status,
            });
            if let Some(dir) = cache_dir {
                v["cache"] = cache_dir_summary(dir);
            }
            v
        }
        StatusScope::Tenant(_) => json!({
            "serving": !hosts.is_empty(),
            "packages": packages,
            "executions": by_status,
        }),
    })
}

/// The fleet's status for an operator's key, the key's tenant's for a
/// tenant's key.
#[utoipa::path(get, path = "/api/v1/status", tag = "health",
    responses(
        (status = 200, description = "What `culvert status --json` prints, less what the key may not see", body = Object),
        (status = 401, description = "No valid key", body = ErrorBody),
    ))]
pub async fn status(State(state): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Value>> {
    let scope = if caller.is_operator() {
        // The cache's directory is `<cache-dir>/<engine-key>`: report the
        // root, as `culvert status` does with `--cache-dir`.
        StatusScope::Fleet {
            cache_dir: state.runner.loader().cache().dir().and_then(Path::parent),
        }
    } else {
        StatusScope::Tenant(&caller.tenant)
    };
    Ok(Json(
        status_json(state.runner.store().as_ref(), scope).await?,
    ))
}
