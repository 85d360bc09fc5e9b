//! [`plan`]: what one pass of the firing loop does with one schedule, given
//! the time. Pure, so that every catch-up and overlap policy is tested with
//! a clock the test sets.

use super::spec::{CatchUp, CronTimes, Overlap};
use serde::Serialize;

/// A due time at most this old is on time and fires as usual; an older one
/// was missed (the host was down, or the clock jumped) and is left to the
/// catch-up policy. At a schedule's shortest interval of 1 s this bounds
/// the on-time fires of one pass to 10.
pub const ON_TIME_MS: i64 = 10_000;

/// How far [`plan`] counts missed due times (for the metrics) before it
/// stops counting.
const MISSED_COUNT_LIMIT: u64 = 10_000;

/// What the firing loop knows about one schedule.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// Its due times.
    pub times: &'a CronTimes,
    /// Its catch-up policy.
    pub catch_up: CatchUp,
    /// The most missed due times `CatchUp::All` starts.
    pub catch_up_cap: u32,
    /// Its overlap policy.
    pub overlap: Overlap,
    /// The first due time not handled yet.
    pub next_due_at: i64,
    /// A due time kept by `Overlap::QueueOne`.
    pub queued_for: Option<i64>,
    /// Whether an execution it started is still pending or running.
    pub running: bool,
    /// The time now.
    pub now: i64,
}

/// What becomes of one due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FireOutcome {
    /// Started on time.
    Started,
    /// Started late, by the catch-up policy.
    CaughtUp,
    /// Not started: the previous execution was still going.
    SkippedOverlap,
    /// Kept, to start when the previous execution finishes.
    Queued,
    /// A due time kept earlier, started now.
    Dequeued,
    /// Started by hand (`schedule trigger`), outside the due times.
    Triggered,
}

impl FireOutcome {
    /// As stored and shown, and as the metrics label it.
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Started => "started",
            FireOutcome::CaughtUp => "caught_up",
            FireOutcome::SkippedOverlap => "skipped_overlap",
            FireOutcome::Queued => "queued",
            FireOutcome::Dequeued => "dequeued",
            FireOutcome::Triggered => "triggered",
        }
    }

    /// Whether this outcome starts an execution.
    pub fn starts(self) -> bool {
        matches!(
            self,
            FireOutcome::Started
                | FireOutcome::CaughtUp
                | FireOutcome::Dequeued
                | FireOutcome::Triggered
        )
    }
}

/// One due time and what becomes of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fire {
    /// The due time.
    pub due: i64,
    /// What becomes of it.
    pub outcome: FireOutcome,
}

/// The result of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Due times to record, oldest first (a dequeued one first of all).
    pub fires: Vec<Fire>,
    /// Missed due times the catch-up policy dropped (counted up to 10,000).
    pub missed: u64,
    /// The next due time after now; `None` when it never comes due again.
    pub next_due_at: Option<i64>,
    /// The due time kept by `Overlap::QueueOne`, if any.
    pub queued_for: Option<i64>,
}

/// Work out what to do with the due times in `[next_due_at, now]` and a
/// kept one, under the schedule's catch-up and overlap policies.
///
/// - Due times at most [`ON_TIME_MS`] old fire.
/// - Older ones were missed: `skip` drops them, `latest` starts the
///   latest, `all` starts the latest `catch_up_cap` of them. They are
///   found backwards from now, so a clock that jumped years costs no more
///   than one that jumped seconds.
/// - Then the overlap policy: with an execution still going, `allow`
///   starts anyway, `skip` records the due time as skipped, `queue_one`
///   keeps the first and skips the rest. A kept due time starts as soon as
///   nothing is going, before any new one.
pub fn plan(input: PlanInput<'_>) -> Plan {
    let PlanInput {
        times,
        now,
        next_due_at,
        ..
    } = input;
    let mut fires = Vec::new();
    let mut running = input.running;
    let mut queued = input.queued_for;
    if let Some(due) = queued
        && !running
    {
        fires.push(Fire {
            due,
            outcome: FireOutcome::Dequeued,
        });
        queued = None;
        running = true;
    }
    let mut due: Vec<Fire> = Vec::new();
    let mut missed = 0;
    let late = now - ON_TIME_MS;
    let handled = next_due_at - 1;
    if next_due_at <= late {
        let keep = match input.catch_up {
            CatchUp::Skip => 0,
            CatchUp::Latest => 1,
            CatchUp::All => input.catch_up_cap as usize,
        };
        let caught = times.latest_in(handled, late - 1, keep);
        let total = if caught.len() < keep {
            // Every missed one was kept.
            caught.len() as u64
        } else {
            times.count_in(handled, late - 1, MISSED_COUNT_LIMIT)
        };
        missed = total.saturating_sub(caught.len() as u64);
        due.extend(caught.into_iter().map(|d| Fire {
            due: d,
            outcome: FireOutcome::CaughtUp,
        }));
    }
    let mut cursor = handled.max(late - 1);
    while let Some(d) = times.next_after(cursor) {
        if d > now {
            break;
        }
        due.push(Fire {
            due: d,
            outcome: FireOutcome::Started,
        });
        cursor = d;
    }
    for mut fire in due {
        if running {
            fire.outcome = match input.overlap {
                Overlap::Allow => fire.outcome,
                Overlap::Skip => FireOutcome::SkippedOverlap,
                Overlap::QueueOne if queued.is_none() => {
                    queued = Some(fire.due);
                    FireOutcome::Queued
                }
                Overlap::QueueOne => FireOutcome::SkippedOverlap,
            };
        }
        if fire.outcome.starts() {
            running = true;
        }
        fires.push(fire);
    }
    Plan {
        fires,
        missed,
        next_due_at: times.next_after(now.max(handled)),
        queued_for: queued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    /// 2026-12-01T00:00:00Z.
    const T0: i64 = 1_796_083_200_000;

    fn every_five_minutes() -> CronTimes {
        CronTimes::parse("0 */5 * * * *", "UTC").unwrap()
    }

    fn input(times: &CronTimes, catch_up: CatchUp, overlap: Overlap, now: i64) -> PlanInput<'_> {
        PlanInput {
            times,
            catch_up,
            catch_up_cap: 5,
            overlap,
            next_due_at: T0 + 5 * MIN,
            queued_for: None,
            running: false,
            now,
        }
    }

    fn outcomes(plan: &Plan) -> Vec<(i64, &'static str)> {
        plan.fires
            .iter()
            .map(|f| ((f.due - T0) / MIN, f.outcome.as_str()))
            .collect()
    }

    #[test]
    fn on_time_due_times_fire_and_the_cursor_moves_past_now() {
        let t = every_five_minutes();
        let p = plan(input(&t, CatchUp::Skip, Overlap::Allow, T0 + 5 * MIN + 300));
        assert_eq!(outcomes(&p), vec![(5, "started")]);
        assert_eq!(p.next_due_at, Some(T0 + 10 * MIN));
        assert_eq!(p.missed, 0);
        // Not due yet: nothing.
        let p = plan(input(&t, CatchUp::Skip, Overlap::Allow, T0 + 4 * MIN));
        assert!(p.fires.is_empty());
        assert_eq!(p.next_due_at, Some(T0 + 5 * MIN));
    }

    /// The host was down from T0 to T0 + 3 h: 36 due times (5 min to 180
    /// min) passed, the one at 180 min just now.
    #[test]
    fn catch_up_after_a_three_hour_outage() {
        let t = every_five_minutes();
        let now = T0 + 180 * MIN + 2_000;
        let skip = plan(input(&t, CatchUp::Skip, Overlap::Allow, now));
        assert_eq!(
            outcomes(&skip),
            vec![(180, "started")],
            "only the on-time one"
        );
        assert_eq!(skip.missed, 35);
        assert_eq!(skip.next_due_at, Some(T0 + 185 * MIN));

        let latest = plan(input(&t, CatchUp::Latest, Overlap::Allow, now));
        assert_eq!(
            outcomes(&latest),
            vec![(175, "caught_up"), (180, "started")]
        );
        assert_eq!(latest.missed, 34);

        let all = plan(input(&t, CatchUp::All, Overlap::Allow, now));
        assert_eq!(
            outcomes(&all),
            vec![
                (155, "caught_up"),
                (160, "caught_up"),
                (165, "caught_up"),
                (170, "caught_up"),
                (175, "caught_up"),
                (180, "started")
            ],
            "the latest five (the cap), never a burst of 35"
        );
        assert_eq!(all.missed, 30);
    }

    #[test]
    fn a_clock_that_jumps_years_costs_the_cap_and_no_more() {
        let t = CronTimes::parse("* * * * * *", "UTC").unwrap();
        let now = T0 + 3 * 365 * 24 * 60 * MIN;
        let mut i = input(&t, CatchUp::All, Overlap::Allow, now);
        i.next_due_at = T0 + 1000;
        let p = plan(i);
        let caught = p
            .fires
            .iter()
            .filter(|f| f.outcome == FireOutcome::CaughtUp)
            .count();
        assert_eq!(caught, 5);
        let on_time = p
            .fires
            .iter()
            .filter(|f| f.outcome == FireOutcome::Started)
            .count();
        assert!(on_time <= 11, "{on_time}");
        assert_eq!(p.missed, 10_000 - 5, "counted up to the limit");
        assert_eq!(p.next_due_at, Some(now + 1000));
    }

    #[test]
    fn overlap_allow_starts_anyway() {
        let t = every_five_minutes();
        let mut i = input(&t, CatchUp::Latest, Overlap::Allow, T0 + 180 * MIN);
        i.running = true;
        let p = plan(i);
        assert_eq!(outcomes(&p), vec![(175, "caught_up"), (180, "started")]);
        assert_eq!(p.queued_for, None);
    }

    #[test]
    fn overlap_skip_records_a_skip() {
        let t = every_five_minutes();
        let mut i = input(&t, CatchUp::Skip, Overlap::Skip, T0 + 5 * MIN);
        i.running = true;
        assert_eq!(outcomes(&plan(i)), vec![(5, "skipped_overlap")]);
        // Several due at once with nothing running: the first starts, and
        // then it is the one still going.
        let mut i = input(&t, CatchUp::All, Overlap::Skip, T0 + 180 * MIN);
        i.catch_up_cap = 2;
        assert_eq!(
            outcomes(&plan(i)),
            vec![
                (170, "caught_up"),
                (175, "skipped_overlap"),
                (180, "skipped_overlap")
            ]
        );
    }

    #[test]
    fn overlap_queue_one_keeps_one_and_starts_it_after() {
        let t = every_five_minutes();
        let mut i = input(&t, CatchUp::Skip, Overlap::QueueOne, T0 + 5 * MIN);
        i.running = true;
        let p = plan(i);
        assert_eq!(outcomes(&p), vec![(5, "queued")]);
        assert_eq!(p.queued_for, Some(T0 + 5 * MIN));
        // Still running at the next due time: skipped, the kept one stays.
        let mut i = input(&t, CatchUp::Skip, Overlap::QueueOne, T0 + 10 * MIN);
        i.next_due_at = T0 + 10 * MIN;
        i.queued_for = p.queued_for;
        i.running = true;
        let p = plan(i);
        assert_eq!(outcomes(&p), vec![(10, "skipped_overlap")]);
        assert_eq!(p.queued_for, Some(T0 + 5 * MIN));
        // Finished: the kept one starts, between due times.
        let mut i = input(&t, CatchUp::Skip, Overlap::QueueOne, T0 + 12 * MIN);
        i.next_due_at = T0 + 15 * MIN;
        i.queued_for = p.queued_for;
        let p = plan(i);
        assert_eq!(outcomes(&p), vec![(5, "dequeued")]);
        assert_eq!(p.queued_for, None);
        assert_eq!(p.next_due_at, Some(T0 + 15 * MIN));
    }
}
