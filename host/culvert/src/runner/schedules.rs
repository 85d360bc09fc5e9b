//! Schedules through the [`Runner`]: creating, listing, pausing, resuming,
//! deleting and triggering them, and keeping the schedules packages declare
//! in step with each package's active version.

use super::{Error, Runner, validate_tenant};
use crate::cron::ScheduleSpec;
use crate::package::PackageMetadata;
use crate::registry::find_runnable_workflow;
use crate::store::{
    DeclaredSchedule, FireRow, NewSchedule, PackageRow, ScheduleRow, Store, StoreError,
};
use crate::tenants::TenantLimits;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use uuid::Uuid;

/// The schedules `meta` declares, checked against `limits` (their
/// workflows named `package::workflow`, keyed `workflow#n`).
///
/// # Errors
/// [`Error::Invalid`] naming the package, the workflow and the rule.
pub(super) fn declared_schedules(
    meta: &PackageMetadata,
    limits: &TenantLimits,
    now: i64,
) -> Result<Vec<DeclaredSchedule>, Error> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(meta.schedules.len());
    for s in &meta.schedules {
        let n = seen.entry(s.workflow.as_str()).or_default();
        let key = format!("{}#{n}", s.workflow);
        *n += 1;
        let mut spec = s.clone();
        spec.workflow = format!("{}::{}", meta.name, s.workflow);
        let refuse = |why: String| {
            Error::Invalid(format!(
                "package {}: the schedule of workflow '{}' ({}): {why}",
                meta.label(),
                s.workflow,
                s.cron
            ))
        };
        let times = spec
            .validate(limits.min_schedule_interval_ms, now)
            .map_err(|e| refuse(e.to_string()))?;
        check_context(&spec, limits).map_err(refuse)?;
        out.push(DeclaredSchedule {
            key,
            next_due_at: times.next_after(now),
            spec,
        });
    }
    Ok(out)
}

/// Make `package`'s declared schedules in `tenant` those of its newest row
/// in `packages` (the tenant's, oldest first), or none.
async fn sync_package(
    store: &Arc<dyn Store>,
    tenant: &str,
    package: &str,
    packages: &[PackageRow],
    limits: &TenantLimits,
    now: i64,
) -> Result<(), StoreError> {
    let declared = match packages
        .iter()
        .rev()
        .find(|p| p.tenant == tenant && p.name == package)
    {
        Some(active) => declared_schedules(&active.metadata, limits, now).unwrap_or_else(|e| {
            // Registered when the tenant's limits allowed it; they changed.
            tracing::warn!(tenant, package, error = %e, "declared schedules left out");
            Vec::new()
        }),
        None => Vec::new(),
    };
    store
        .sync_declared_schedules(tenant, package, &declared)
        .await
}

/// Bring every package's declared schedules in line with its active
/// version: what a host does when its firing loop starts, so that a crash
/// between registering a package and syncing its schedules is repaired.
pub(super) async fn resync_declared(store: &Arc<dyn Store>, now: i64) -> Result<(), StoreError> {
    let packages = store.list_packages(None).await?;
    let mut pairs: BTreeSet<(String, String)> = packages
        .iter()
        .map(|p| (p.tenant.clone(), p.name.clone()))
        .collect();
    // Declared schedules of packages no longer registered go too.
    for s in store.list_schedules(None).await? {
        if let Some(package) = s.package {
            pairs.insert((s.tenant, package));
        }
    }
    let mut limits: HashMap<String, TenantLimits> = HashMap::new();
    for (tenant, package) in pairs {
        if !limits.contains_key(&tenant) {
            let l = store.get_tenant(&tenant).await?.limits;
            limits.insert(tenant.clone(), l);
        }
        sync_package(store, &tenant, &package, &packages, &limits[&tenant], now).await?;
    }
    Ok(())
}

/// A schedule's initial context against `max_context_bytes`.
fn check_context(spec: &ScheduleSpec, limits: &TenantLimits) -> Result<(), String> {
    let bytes = crate::scheduler::json_len(&spec.context) as u64;
    if bytes > limits.max_context_bytes {
        return Err(format!(
            "the initial context is {bytes} bytes, over the max_context_bytes limit of {}",
            limits.max_context_bytes
        ));
    }
    Ok(())
}

impl Runner {
    /// The time on the firing loop's clock.
    fn now(&self) -> i64 {
        self.firer.clock().now_ms()
    }

    /// Make the declared schedules of `package` in `tenant` those of its
    /// active (newest registered) version, or none when no version is
    /// left.
    pub(super) async fn sync_declared(&self, tenant: &str, package: &str) -> Result<(), Error> {
        let limits = self.tenant(tenant).await?.limits;
        let packages = self.store.list_packages(Some(tenant)).await?;
        sync_package(&self.store, tenant, package, &packages, &limits, self.now()).await?;
        Ok(())
    }

    /// Create a schedule for `tenant`: its cron expression, timezone,
    /// interval, policies and context are checked, and its workflow must
    /// exist now (it is looked up again, on the active version, at every
    /// fire).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming the rule broken, [`Error::Lookup`] for an
    /// unknown workflow, [`Error::Quota`] over `max_schedules` or
    /// `max_context_bytes`.
    pub async fn create_schedule(
        &self,
        tenant: &str,
        spec: ScheduleSpec,
    ) -> Result<ScheduleRow, Error> {
        validate_tenant(tenant)?;
        let limits = self.tenant(tenant).await?.limits;
        let now = self.now();
        let times = spec
            .validate(limits.min_schedule_interval_ms, now)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        check_context(&spec, &limits)
            .map_err(|e| Error::Quota(format!("tenant '{tenant}': {e}")))?;
        let packages = self.store.list_packages(Some(tenant)).await?;
        find_runnable_workflow(&packages, tenant, &spec.workflow, None)?;
        let row = self
            .store
            .create_schedule(NewSchedule {
                tenant,
                spec: &spec,
                next_due_at: times.next_after(now),
                max_schedules: limits.max_schedules,
            })
            .await?;
        tracing::info!(schedule = %row.id, tenant, workflow = %spec.workflow, cron = %spec.cron, "schedule created");
        Ok(row)
    }

    /// The schedules of `tenant`, or of every tenant, oldest first.
    ///
    /// # Errors
    /// When the database cannot be read.
    pub async fn schedules(&self, tenant: Option<&str>) -> Result<Vec<ScheduleRow>, Error> {
        Ok(self.store.list_schedules(tenant).await?)
    }

    /// One schedule (of `tenant`, when given).
    ///
    /// # Errors
    /// "Not found", also for another tenant's.
    pub async fn schedule(&self, tenant: Option<&str>, id: Uuid) -> Result<ScheduleRow, Error> {
        Ok(self.store.get_schedule(tenant, id).await?)
    }

    /// The latest `limit` due times a schedule recorded, newest first.
    ///
    /// # Errors
    /// "Not found", also for another tenant's schedule.
    pub async fn schedule_fires(
        &self,
        tenant: Option<&str>,
        id: Uuid,
        limit: i64,
    ) -> Result<Vec<FireRow>, Error> {
        self.store.get_schedule(tenant, id).await?;
        Ok(self.store.schedule_fires(id, limit.clamp(1, 1000)).await?)
    }

    /// Pause a schedule: it fires nothing until resumed (declared ones
    /// too).
    ///
    /// # Errors
    /// "Not found", also for another tenant's.
    pub async fn pause_schedule(&self, tenant: &str, id: Uuid) -> Result<ScheduleRow, Error> {
        Ok(self
            .store
            .set_schedule_paused(tenant, id, true, None)
            .await?)
    }

    /// Resume a schedule from now: due times that passed while it was
    /// paused are not caught up.
    ///
    /// # Errors
    /// "Not found", also for another tenant's.
    pub async fn resume_schedule(&self, tenant: &str, id: Uuid) -> Result<ScheduleRow, Error> {
        let row = self.store.get_schedule(Some(tenant), id).await?;
        let now = self.now();
        let next = crate::cron::CronTimes::parse(&row.spec.cron, &row.spec.timezone)
            .map_err(|e| Error::Invalid(e.to_string()))?
            .next_after(now);
        Ok(self
            .store
            .set_schedule_paused(tenant, id, false, next)
            .await?)
    }

    /// Delete a schedule set at run time (a declared one goes with its
    /// package).
    ///
    /// # Errors
    /// "Not found", also for another tenant's; a conflict for a declared
    /// one.
    pub async fn delete_schedule(&self, tenant: &str, id: Uuid) -> Result<ScheduleRow, Error> {
        Ok(self.store.delete_schedule(tenant, id).await?)
    }

    /// Start a schedule's workflow once, now (paused or not).
    ///
    /// # Errors
    /// "Not found", also for another tenant's schedule or a workflow that
    /// is gone; [`Error::Quota`] when a quota refuses the start.
    pub async fn trigger_schedule(&self, tenant: &str, id: Uuid) -> Result<FireRow, Error> {
        let row = self.store.get_schedule(Some(tenant), id).await?;
        Ok(self.firer.trigger(&row).await?)
    }
}
