//! The firing loop: every host runs one, and each pass turns the schedules
//! that came due into executions.
//!
//! A pass reads the due schedules, asks the pure [`plan`](crate::cron::plan)
//! what each due time becomes under the schedule's catch-up and overlap
//! policies, and writes the result with
//! [`ScheduleStore::commit_fires`], which claims the due times and creates
//! their executions in one transaction, from the schedule's version this
//! host read. On several hosts over one PostgreSQL every host reads the same
//! due schedule; exactly one advances it, and the others' writes change
//! nothing. The time comes from a [`Clock`], which tests set by hand.

use crate::cron::{CronTimes, FireOutcome, PlanInput, ScheduleSpec, plan};
use crate::registry::find_runnable_workflow;
use crate::scheduler::ExecutionPlan;
use crate::store::{
    Advance, FireCommit, FireRow, NewExecution, PackageRow, PlannedFire, ScheduleRow, Store,
    StoreError,
};
use crate::tenants::TenantLimits;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// How often a host looks for due schedules.
pub const FIRING_INTERVAL: Duration = Duration::from_millis(250);
/// The most schedules one pass handles (the most overdue first).
const PASS_LIMIT: i64 = 200;

/// Where the firing loop reads the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::store::now_ms()
    }
}

/// A clock that moves only when told: for tests of the scheduling logic.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock reading `ms`.
    pub fn new(ms: i64) -> Self {
        Self(AtomicI64::new(ms))
    }

    /// Set the time.
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    /// Move the time on by `ms`.
    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What one pass did, summed over its schedules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Executions started.
    pub started: usize,
    /// Due times recorded without a start (skipped, queued, failed).
    pub recorded: usize,
    /// Missed due times a catch-up policy dropped.
    pub missed: u64,
    /// Schedules another host advanced first.
    pub lost: usize,
}

/// The firing loop of one host.
pub struct Firer {
    store: Arc<dyn Store>,
    host: Uuid,
    clock: Arc<dyn Clock>,
    wake: Box<dyn Fn() + Send + Sync>,
}

impl std::fmt::Debug for Firer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Firer").field("host", &self.host).finish()
    }
}

/// A package row, its workflow index and the tenant's limits: what a start
/// needs, looked up once per tenant and pass.
type Target = Result<(PackageRow, usize, TenantLimits), String>;

impl Firer {
    /// A firing loop for `host`, reading `clock`; `wake` is called after a
    /// pass started something (the executor's wake-up).
    pub fn new(
        store: Arc<dyn Store>,
        host: Uuid,
        clock: Arc<dyn Clock>,
        wake: Box<dyn Fn() + Send + Sync>,
    ) -> Self {
        Self {
            store,
            host,
            clock,
            wake,
        }
    }

    /// The clock it reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Run passes every [`FIRING_INTERVAL`] until `shutdown` turns true. A
    /// failed pass (the database away) is logged and the next one tries
    /// again.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(FIRING_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "schedule pass failed; retrying");
            }
        }
    }

    /// One pass: handle every schedule due now.
    ///
    /// # Errors
    /// When the due schedules cannot be read. A schedule that fails alone
    /// is logged and left for the next pass.
    pub async fn pass(&self) -> Result<PassReport, StoreError> {
        let now = self.clock.now_ms();
        let due = self.store.due_schedules(now, PASS_LIMIT).await?;
        let mut report = PassReport::default();
        let mut targets: HashMap<(String, String), Target> = HashMap::new();
        for schedule in due {
            if let Err(e) = self.fire(&schedule, now, &mut targets, &mut report).await {
                tracing::warn!(
                    schedule = %schedule.id,
                    tenant = %schedule.tenant,
                    error = %e,
                    "could not fire a schedule; the next pass tries again"
                );
            }
        }
        if report.started > 0 {
            (self.wake)();
        }
        Ok(report)
    }

    /// Start `schedule`'s workflow once, now, whatever its due times
    /// (`culvert schedule trigger`).
    ///
    /// # Errors
    /// [`StoreError`] when its workflow or the tenant is gone, or a quota
    /// refuses the start (the fire is recorded as `failed` too).
    pub async fn trigger(&self, schedule: &ScheduleRow) -> Result<FireRow, StoreError> {
        let now = self.clock.now_ms();
        let target = self.target(&schedule.tenant, &schedule.spec).await;
        let (package, index, limits) = target
            .as_ref()
            .map_err(|e| StoreError::NotFound(e.clone()))?;
        let plan = ExecutionPlan::new(package.metadata.workflows[*index].clone());
        let fire = PlannedFire {
            due: now,
            outcome: FireOutcome::Triggered,
            start: Some(new_execution(schedule, package, &plan, limits, now)),
            error: None,
        };
        let rows = self
            .store
            .commit_fires(FireCommit {
                schedule: schedule.id,
                tenant: &schedule.tenant,
                advance: None,
                fires: vec![fire],
                host: self.host,
            })
            .await
            .map_err(|e| match e {
                // Its due time is the millisecond: taken by a trigger just now.
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "schedule {} was triggered in this very millisecond already: try again",
                    schedule.id
                )),
                e => e,
            })?
            .unwrap_or_default();
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Other("the trigger recorded nothing".into()))?;
        if let Some(e) = &row.error {
            return Err(StoreError::Quota(e.clone()));
        }
        telemetry_fires(&schedule.tenant, std::slice::from_ref(&row), now);
        (self.wake)();
        Ok(row)
    }

    /// The package row, workflow index and limits a start of `spec` uses:
    /// the active version of the package holding its workflow.
    async fn target(&self, tenant: &str, spec: &ScheduleSpec) -> Target {
        let limits = match self.store.get_tenant(tenant).await {
            Ok(t) => t.limits,
            Err(e) => return Err(e.to_string()),
        };
        let packages = self
            .store
            .list_packages(Some(tenant))
            .await
            .map_err(|e| e.to_string())?;
        let (package, index) = find_runnable_workflow(&packages, tenant, &spec.workflow, None)
            .map_err(|e| e.to_string())?;
        Ok((package.clone(), index, limits))
    }

    async fn fire(
        &self,
        schedule: &ScheduleRow,
        now: i64,
        targets: &mut HashMap<(String, String), Target>,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let times = match CronTimes::parse(&schedule.spec.cron, &schedule.spec.timezone) {
            Ok(t) => t,
            Err(e) => {
                // Stored data that no longer parses (a host with another
                // timezone database, say): stop the schedule, say why, and
                // never fail the pass over it again.
                let due = schedule.next_due_at.unwrap_or(now);
                return self
                    .commit(
                        schedule,
                        None,
                        None,
                        vec![failed(due, e.to_string())],
                        now,
                        report,
                    )
                    .await;
            }
        };
        let running = if schedule.queued_for.is_some()
            || schedule.spec.overlap != crate::cron::Overlap::Allow
        {
            self.store.schedule_running(schedule.id).await?
        } else {
            false
        };
        let p = plan(PlanInput {
            times: &times,
            catch_up: schedule.spec.catch_up,
            catch_up_cap: schedule.spec.catch_up_cap,
            overlap: schedule.spec.overlap,
            next_due_at: schedule.next_due_at.unwrap_or(now + 1),
            queued_for: schedule.queued_for,
            running,
            now,
        });
        report.missed += p.missed;
        if p.missed > 0 {
            crate::telemetry::schedule_fires(&schedule.tenant, "missed", p.missed);
        }
        if p.fires.is_empty()
            && p.next_due_at == schedule.next_due_at
            && p.queued_for == schedule.queued_for
        {
            return Ok(());
        }
        let key = (schedule.tenant.clone(), schedule.spec.workflow.clone());
        if !targets.contains_key(&key) && p.fires.iter().any(|f| f.outcome.starts()) {
            let target = self.target(&schedule.tenant, &schedule.spec).await;
            targets.insert(key.clone(), target);
        }
        let target = targets.get(&key);
        let plans: Vec<Option<ExecutionPlan>> = p
            .fires
            .iter()
            .map(|f| match target {
                Some(Ok((package, index, _))) if f.outcome.starts() => Some(ExecutionPlan::new(
                    package.metadata.workflows[*index].clone(),
                )),
                _ => None,
            })
            .collect();
        let fires: Vec<PlannedFire<'_>> = p
            .fires
            .iter()
            .zip(&plans)
            .map(|(f, plan)| match (target, plan) {
                (Some(Ok((package, _, limits))), Some(plan)) => PlannedFire {
                    due: f.due,
                    outcome: f.outcome,
                    start: Some(new_execution(schedule, package, plan, limits, f.due)),
                    error: None,
                },
                (Some(Err(e)), _) if f.outcome.starts() => failed(f.due, e.clone()),
                _ => PlannedFire {
                    due: f.due,
                    outcome: f.outcome,
                    start: None,
                    error: None,
                },
            })
            .collect();
        self.commit(schedule, p.next_due_at, p.queued_for, fires, now, report)
            .await
    }

    async fn commit(
        &self,
        schedule: &ScheduleRow,
        next_due_at: Option<i64>,
        queued_for: Option<i64>,
        fires: Vec<PlannedFire<'_>>,
        now: i64,
        report: &mut PassReport,
    ) -> Result<(), StoreError> {
        let written = self
            .store
            .commit_fires(FireCommit {
                schedule: schedule.id,
                tenant: &schedule.tenant,
                advance: Some(Advance {
                    version: schedule.version,
                    next_due_at,
                    queued_for,
                }),
                fires,
                host: self.host,
            })
            .await;
        let rows = match written {
            Ok(Some(rows)) => rows,
            Ok(None) => {
                report.lost += 1;
                return Ok(());
            }
            // A due time claimed by another host that read an older
            // version: its claim stands.
            Err(StoreError::Conflict(_)) => {
                report.lost += 1;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for row in &rows {
            match row.execution_id {
                Some(execution) => {
                    report.started += 1;
                    tracing::info!(
                        schedule = %schedule.id,
                        tenant = %schedule.tenant,
                        workflow = %schedule.spec.workflow,
                        %execution,
                        scheduled_for = %crate::cron::rfc3339(row.due_at),
                        outcome = %row.outcome,
                        "schedule started an execution"
                    );
                }
                None => {
                    report.recorded += 1;
                    if let Some(error) = &row.error {
                        tracing::warn!(
                            schedule = %schedule.id,
                            tenant = %schedule.tenant,
                            workflow = %schedule.spec.workflow,
                            scheduled_for = %crate::cron::rfc3339(row.due_at),
                            error = %error,
                            "a schedule's due time could not start"
                        );
                    }
                }
            }
        }
        telemetry_fires(&schedule.tenant, &rows, now);
        Ok(())
    }
}

/// A due time that cannot start, for `error`.
fn failed(due: i64, error: String) -> PlannedFire<'static> {
    PlannedFire {
        due,
        outcome: FireOutcome::Started,
        start: None,
        error: Some(error),
    }
}

/// The start of `schedule`'s workflow for due time `due`.
fn new_execution<'a>(
    schedule: &'a ScheduleRow,
    package: &'a PackageRow,
    plan: &'a ExecutionPlan,
    limits: &'a TenantLimits,
    due: i64,
) -> NewExecution<'a> {
    NewExecution {
        tenant: &schedule.tenant,
        package_id: package.id,
        package_name: &package.name,
        package_version: &package.version,
        content_hash: &package.content_hash,
        plan,
        context: &schedule.spec.context,
        limits,
        idempotency_key: None,
        audit: None,
        schedule: Some((schedule.id, due)),
    }
}

fn telemetry_fires(tenant: &str, rows: &[FireRow], now: i64) {
    for row in rows {
        crate::telemetry::schedule_fires(tenant, &row.outcome, 1);
        if row.execution_id.is_some() {
            crate::telemetry::schedule_lag(tenant, row.due_at, now);
        }
    }
}
