//! Fair shares of CPU between tenants: the [`CpuLedger`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Fair shares of CPU between tenants.
///
/// Every epoch tick a guest spends running wasm is charged to its tenant,
/// against a token bucket that refills at the tenant's share of the
/// machine's cores: all of them for a tenant alone; with several tenants
/// that had tasks running in the last second, one core is kept back for
/// the host's own work (claiming, recording, the database) and the rest is
/// split evenly. A guest whose tenant is in debt pauses until the debt is
/// paid back, so a tenant that floods the machine with CPU loops gets its
/// share and no more, however many loops it runs. Guests waiting in host
/// calls (sleeping, say) use no ticks.
#[derive(Debug)]
pub struct CpuLedger {
    cores: f64,
    tick: Duration,
    state: Mutex<LedgerState>,
}

#[derive(Debug, Default)]
struct LedgerState {
    /// Per tenant: tokens (in ticks) and when they were last refilled.
    buckets: std::collections::HashMap<String, (f64, Instant)>,
    seen: std::collections::HashMap<String, Instant>,
    /// Per tenant: ticks charged in the current window, when it began, and
    /// the cores used over the last whole window (what [`CpuLedger::in_use`]
    /// reports).
    used: std::collections::HashMap<String, (f64, Instant, f64)>,
}

/// How long a window of [`CpuLedger::in_use`] lasts.
const USE_WINDOW: Duration = Duration::from_secs(1);

impl CpuLedger {
    /// A ledger for `cores` cores and an epoch tick of `tick`.
    pub fn new(cores: usize, tick: Duration) -> Self {
        Self {
            cores: cores.max(1) as f64,
            tick,
            state: Mutex::new(LedgerState::default()),
        }
    }

    /// Note that `tenant` has a task running.
    pub fn seen(&self, tenant: &str) {
        let mut s = self.state.lock().expect("ledger lock");
        s.seen.insert(tenant.to_string(), Instant::now());
    }

    /// Charge one tick to `tenant`; how long its guest should pause if the
    /// tenant has used more than its share (or than `cap` cores).
    pub fn tick(&self, tenant: &str, cap: Option<f64>) -> Option<Duration> {
        self.charge_ticks(tenant, 1.0, cap)
    }

    /// Charge `work` done by the host on `tenant`'s behalf (parsing, merging
    /// and storing the data its tasks return) to its bucket, as if its
    /// guests had run that long: its guests then pause until the debt is
    /// paid, so a tenant cannot make the host work for it beyond its share.
    pub fn charge(&self, tenant: &str, work: Duration, cap: Option<f64>) {
        let ticks = work.as_secs_f64() / self.tick.as_secs_f64();
        if ticks > 0.0 {
            self.charge_ticks(tenant, ticks, cap);
        }
    }

    /// The cores each tenant's guests (and the host's work charged to it)
    /// used on this host over the last second or so, for tenants that
    /// used any recently.
    pub fn in_use(&self) -> Vec<(String, f64)> {
        let now = Instant::now();
        let tick = self.tick.as_secs_f64();
        let s = self.state.lock().expect("ledger lock");
        let mut out: Vec<(String, f64)> = s
            .used
            .iter()
            .filter_map(|(tenant, (ticks, start, last))| {
                let elapsed = now.duration_since(*start);
                let cores = if elapsed >= 2 * USE_WINDOW {
                    // Quiet for a whole window: nothing now.
                    0.0
                } else if elapsed >= USE_WINDOW {
                    ticks * tick / elapsed.as_secs_f64()
                } else {
                    *last
                };
                (cores > 0.0).then(|| (tenant.clone(), cores))
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn charge_ticks(&self, tenant: &str, ticks: f64, cap: Option<f64>) -> Option<Duration> {
        if tenant.is_empty() {
            return None;
        }
        let now = Instant::now();
        let mut s = self.state.lock().expect("ledger lock");
        let tick = self.tick.as_secs_f64();
        let used = s.used.entry(tenant.to_string()).or_insert((0.0, now, 0.0));
        let elapsed = now.duration_since(used.1);
        if elapsed >= USE_WINDOW {
            *used = (0.0, now, used.0 * tick / elapsed.as_secs_f64());
        }
        used.0 += ticks;
        if s.used.len() > 256 {
            s.used
                .retain(|_, (_, start, _)| now.duration_since(*start) < 10 * USE_WINDOW);
        }
        s.seen.insert(tenant.to_string(), now);
        s.seen
            .retain(|_, at| now.duration_since(*at) < Duration::from_secs(1));
        // Buckets of tenants gone quiet are full again anyway: forget them.
        if s.buckets.len() > 64 {
            s.buckets
                .retain(|_, (_, last)| now.duration_since(*last) < Duration::from_secs(10));
        }
        let active = s.seen.len().max(1) as f64;
        let cores = if active <= 1.0 {
            self.cores
        } else {
            (self.cores - 1.0).max(1.0)
        };
        // The tenant's share, in ticks per second, and a bucket of 100 ms.
        let share = (cores / active).min(cap.unwrap_or(f64::INFINITY));
        let rate = share / self.tick.as_secs_f64();
        let capacity = rate * 0.1;
        let (tokens, last) = s
            .buckets
            .entry(tenant.to_string())
            .or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(capacity);
        *last = now;
        *tokens -= ticks;
        if *tokens < 0.0 {
            Some(Duration::from_secs_f64(-*tokens / rate))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tick counts below mirror the ledger's formula (a bucket of 100 ms
    // of the tenant's share); they document it. What the formula does to a
    // real guest is checked end to end by `cpu_caps_hold_end_to_end` in
    // tests/tenants.rs (the CPU a capped guest gets) and by
    // `culvert bench tenants`.
    #[test]
    fn use_is_reported_per_tenant_over_a_window() {
        let ledger = CpuLedger::new(2, Duration::from_millis(10));
        assert!(ledger.in_use().is_empty());
        // 50 ticks of 10 ms charged at once: half a second of CPU, reported
        // once the window it fell in has ended.
        ledger.charge("a", Duration::from_millis(500), None);
        std::thread::sleep(USE_WINDOW + Duration::from_millis(50));
        let used = ledger.in_use();
        assert_eq!(used.len(), 1, "{used:?}");
        assert_eq!(used[0].0, "a");
        assert!((0.3..=0.55).contains(&used[0].1), "{used:?}");
    }

    #[test]
    fn a_tenant_alone_gets_every_core_and_pauses_when_over() {
        let ledger = CpuLedger::new(2, Duration::from_millis(10));
        // Alone: 2 cores, a 100 ms bucket of 20 ticks.
        let paused_after = (1..=100).find(|_| ledger.tick("a", None).is_some());
        assert_eq!(paused_after, Some(21));
    }

    #[test]
    fn several_tenants_split_the_cores_minus_one() {
        let ledger = CpuLedger::new(3, Duration::from_millis(10));
        ledger.seen("a");
        ledger.seen("b");
        // Two active tenants on 3 cores: (3 - 1) / 2 = 1 core each, a
        // bucket of 10 ticks; the pause is one tick's worth of debt.
        let paused_after = (1..=100).find(|_| ledger.tick("a", None).is_some());
        assert_eq!(paused_after, Some(11));
        let pause = ledger.tick("a", None).unwrap();
        assert!(
            pause >= Duration::from_millis(15) && pause <= Duration::from_millis(25),
            "{pause:?}"
        );
        // The other tenant's bucket is untouched.
        assert!(ledger.tick("b", None).is_none());
    }

    #[test]
    fn host_work_charged_to_a_tenant_pauses_its_guests() {
        let ledger = CpuLedger::new(2, Duration::from_millis(10));
        // Alone: a bucket of 20 ticks. 150 ms of host work is 15 of them.
        ledger.charge("a", Duration::from_millis(150), None);
        let paused_after = (1..=100).find(|_| ledger.tick("a", None).is_some());
        assert_eq!(paused_after, Some(6));
        // Another tenant's bucket is untouched by that debt.
        assert!(ledger.tick("b", None).is_none());
    }

    #[test]
    fn a_cpu_cap_lowers_the_share() {
        let ledger = CpuLedger::new(2, Duration::from_millis(10));
        // A quarter of a core: a bucket of 2.5 ticks.
        let paused_after = (1..=100).find(|_| ledger.tick("a", Some(0.25)).is_some());
        assert_eq!(paused_after, Some(3));
        assert!(ledger.tick("", None).is_none(), "no tenant, no accounting");
    }
}
