//! What a schedule is ([`ScheduleSpec`], [`CatchUp`], [`Overlap`]) and when
//! it is due ([`CronTimes`]).
//!
//! Cron expressions are parsed by croner (seconds optional: six fields with
//! seconds, or the classic five, whose second is 0) and read in an IANA
//! timezone from chrono-tz, on the wall clock. Daylight saving, as the tests
//! below pin it (croner's `find_next_occurrence`, and a guard of ours):
//! - a wall-clock time that happens twice (the autumn change) fires
//!   **once**, at its first occurrence, for every expression: an interval
//!   expression (`0 */30 * * * *`) has no due time in the repeated hour's
//!   second pass;
//! - a wall-clock time that does not exist (the spring change): a
//!   **fixed-time** expression (no wildcard or step in its second, minute
//!   and hour fields, such as `0 30 2 * * *`) fires at the first valid
//!   instant after the gap; an interval expression has no due time inside
//!   the gap.

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The longest cron expression accepted, in bytes.
pub const MAX_CRON_BYTES: usize = 256;
/// The most missed due times one catch-up starts (`catch_up = all`).
pub const MAX_CATCH_UP_CAP: u32 = 100;
/// How many consecutive due times are compared to find a schedule's
/// shortest interval.
const INTERVAL_SAMPLES: usize = 256;

/// What happens to due times missed while no host ran (or while the clock
/// was wrong): any due time older than [`ON_TIME_MS`](super::ON_TIME_MS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Drop them: the schedule goes on from now.
    #[default]
    Skip,
    /// Start the latest of them, once.
    Latest,
    /// Start each of them, oldest first, but at most the latest
    /// `catch_up_cap`.
    All,
}

/// What happens when a due time comes while the previous execution of the
/// same schedule is still pending or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start it anyway.
    #[default]
    Allow,
    /// Do not start it.
    Skip,
    /// Keep one due time and start it when the previous execution
    /// finishes; skip any further ones meanwhile.
    QueueOne,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),* $(,)? }) => {
        impl $ty {
            /// Every value, as text.
            pub const NAMES: &'static [&'static str] = &[$($text),*];

            /// The value as text (as stored and shown).
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),* }
            }

            /// Parse the text [`as_str`](Self::as_str) gives (a `-` reads as `_`).
            pub fn parse(text: &str) -> Option<Self> {
                match text.replace('-', "_").as_str() { $($text => Some($ty::$variant),)* _ => None }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum!(CatchUp { Skip => "skip", Latest => "latest", All => "all" });
text_enum!(Overlap { Allow => "allow", Skip => "skip", QueueOne => "queue_one" });

/// A schedule as a tenant sets it or a package declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// The workflow it starts: `name` or `package::name`, on the active
    /// version of its package at each fire.
    pub workflow: String,
    /// A cron expression (seconds optional).
    pub cron: String,
    /// An IANA timezone, such as `Europe/Berlin`. Default `UTC`.
    pub timezone: String,
    /// The initial context of every execution it starts.
    pub context: Map<String, Value>,
    /// After downtime.
    pub catch_up: CatchUp,
    /// The most missed due times `catch_up = all` starts (1 to
    /// [`MAX_CATCH_UP_CAP`]).
    pub catch_up_cap: u32,
    /// When the previous run is still going.
    pub overlap: Overlap,
}

impl ScheduleSpec {
    /// A schedule of `workflow` on `cron`, in UTC, with an empty context
    /// and the default policies.
    pub fn new(workflow: impl Into<String>, cron: impl Into<String>) -> Self {
        Self {
            workflow: workflow.into(),
            cron: cron.into(),
            timezone: "UTC".into(),
            context: Map::new(),
            catch_up: CatchUp::Skip,
            catch_up_cap: 10,
            overlap: Overlap::Allow,
        }
    }

    /// Check the expression, the timezone and the cap, and that due times
    /// are at least `min_interval_ms` apart (from `now`).
    ///
    /// # Errors
    /// The [`ScheduleError`] naming what is wrong.
    pub fn validate(&self, min_interval_ms: u64, now: i64) -> Result<CronTimes, ScheduleError> {
        // `name` or `package::name`: two names of at most 128 bytes.
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 128
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        };
        let workflow_ok = match self.workflow.split_once("::") {
            Some((package, name)) => name_ok(package) && name_ok(name),
            None => name_ok(&self.workflow),
        };
        if !workflow_ok {
            return Err(ScheduleError::Workflow(crate::guest_text::printable(
                &self.workflow,
            )));
        }
        let times = CronTimes::parse(&self.cron, &self.timezone)?;
        if self.catch_up_cap == 0 || self.catch_up_cap > MAX_CATCH_UP_CAP {
            return Err(ScheduleError::CatchUpCap(self.catch_up_cap));
        }
        times.check_interval(min_interval_ms, now)?;
        Ok(times)
    }
}

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression does not parse.
    #[error(
        "invalid cron expression '{cron}': {reason} (six fields, seconds first, e.g. '0 */5 * * * *'; or the classic five)"
    )]
    Cron {
        /// The expression (printable, bounded).
        cron: String,
        /// croner's reason.
        reason: String,
    },
    /// The workflow is not a name (`name` or `package::name`).
    #[error(
        "invalid workflow '{0}': give NAME or PACKAGE::NAME (letters, digits, '_', '-', '.'; at most 128 bytes each)"
    )]
    Workflow(String),
    /// The timezone is not an IANA name.
    #[error("unknown timezone '{0}': use an IANA name such as 'UTC' or 'Europe/Berlin'")]
    Timezone(String),
    /// Due times come closer together than the tenant allows.
    #[error(
        "cron expression '{cron}' fires {gap_ms} ms apart, under this tenant's min_schedule_interval_ms of {min_ms}"
    )]
    TooFrequent {
        /// The expression.
        cron: String,
        /// The shortest gap found.
        gap_ms: i64,
        /// The tenant's minimum.
        min_ms: u64,
    },
    /// The expression never comes due (30 February, say).
    #[error("cron expression '{0}' never comes due")]
    NeverDue(String),
    /// `catch_up_cap` out of range.
    #[error("catch_up_cap {0} is out of range: use 1 to {MAX_CATCH_UP_CAP}")]
    CatchUpCap(u32),
}

/// A cron expression read in a timezone: the due times of a schedule.
#[derive(Debug, Clone)]
pub struct CronTimes {
    cron: Cron,
    tz: Tz,
}

impl CronTimes {
    /// Parse `cron` (seconds optional, no year field) in timezone `tz`.
    ///
    /// # Errors
    /// [`ScheduleError::Cron`] or [`ScheduleError::Timezone`].
    pub fn parse(cron: &str, tz: &str) -> Result<Self, ScheduleError> {
        let shown = crate::guest_text::printable(cron);
        if cron.len() > MAX_CRON_BYTES {
            return Err(ScheduleError::Cron {
                cron: shown,
                reason: format!("longer than {MAX_CRON_BYTES} bytes"),
            });
        }
        let parsed = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(cron)
            .map_err(|e| ScheduleError::Cron {
                cron: shown,
                reason: e.to_string(),
            })?;
        let tz: Tz = tz
            .parse()
            .map_err(|_| ScheduleError::Timezone(crate::guest_text::printable(tz)))?;
        Ok(Self { cron: parsed, tz })
    }

    /// The timezone's IANA name.
    pub fn timezone(&self) -> &str {
        self.tz.name()
    }

    fn at(&self, ms: i64) -> Option<DateTime<Tz>> {
        Some(DateTime::<Utc>::from_timestamp_millis(ms)?.with_timezone(&self.tz))
    }

    /// The first due time strictly after `after` (ms), or `None` when the
    /// expression never comes due again (before year 5000).
    pub fn next_after(&self, after: i64) -> Option<i64> {
        let mut start = self.at(after.div_euclid(1000) * 1000)?;
        // croner searches by wall-clock time: from inside the second pass of
        // a repeated hour it can land on the first pass, before `after`.
        // Move past that wall-clock time (the rule: it fires once).
        for _ in 0..8 {
            let next = self.cron.find_next_occurrence(&start, false).ok()?;
            let ms = next.timestamp_millis();
            if ms > after {
                return Some(ms);
            }
            let wall = next.naive_local() + chrono::Duration::seconds(1);
            start = self.tz.from_local_datetime(&wall).latest()?;
        }
        None
    }

    /// Up to `k` due times in `(after, at]`, the latest ones, oldest first:
    /// found backwards from `at`, so the cost is `k` searches however far
    /// behind `after` is.
    pub fn latest_in(&self, after: i64, at: i64, k: usize) -> Vec<i64> {
        let mut out = Vec::new();
        // Due times are whole seconds: search from the second `at` is in.
        let Some(mut cursor) = self.at(at.div_euclid(1000) * 1000) else {
            return out;
        };
        let mut inclusive = true;
        while out.len() < k {
            let Ok(prev) = self.cron.find_previous_occurrence(&cursor, inclusive) else {
                break;
            };
            let ms = prev.timestamp_millis();
            if ms <= after || ms > at || out.last().is_some_and(|&l| ms >= l) {
                break;
            }
            out.push(ms);
            cursor = prev;
            inclusive = false;
        }
        out.reverse();
        out
    }

    /// How many due times fall in `(after, at]`, counting at most `limit`.
    pub fn count_in(&self, after: i64, at: i64, limit: u64) -> u64 {
        let mut n = 0;
        let mut cursor = after;
        while n < limit {
            match self.next_after(cursor) {
                Some(t) if t <= at => {
                    n += 1;
                    cursor = t;
                }
                _ => break,
            }
        }
        n
    }

    /// Refuse due times closer than `min_ms`, over the next few hundred
    /// from `now`, and an expression that never comes due.
    ///
    /// # Errors
    /// [`ScheduleError::TooFrequent`] or [`ScheduleError::NeverDue`].
    pub fn check_interval(&self, min_ms: u64, now: i64) -> Result<(), ScheduleError> {
        let shown = || crate::guest_text::printable(&self.cron.pattern.to_string());
        let Some(mut last) = self.next_after(now) else {
            return Err(ScheduleError::NeverDue(shown()));
        };
        for _ in 0..INTERVAL_SAMPLES {
            let Some(next) = self.next_after(last) else {
                break;
            };
            let gap = next - last;
            if gap < min_ms as i64 {
                return Err(ScheduleError::TooFrequent {
                    cron: shown(),
                    gap_ms: gap,
                    min_ms,
                });
            }
            last = next;
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch, from the system clock (for checks
/// that need "from now", outside the firing loop's clock).
pub(crate) fn wall_clock_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A time in ms as RFC 3339 in UTC, with milliseconds
/// (`2026-11-30T10:00:00.000Z`).
pub fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .timestamp_millis()
    }

    #[test]
    fn expressions_and_timezones_are_checked() {
        assert!(CronTimes::parse("0 */5 * * * *", "Europe/Berlin").is_ok());
        assert!(CronTimes::parse("*/5 * * * *", "UTC").is_ok());
        assert!(matches!(
            CronTimes::parse("61 * * * * *", "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
        assert!(matches!(
            CronTimes::parse("* * * * * *", "Mars/Olympus"),
            Err(ScheduleError::Timezone(_))
        ));
        let long = "1,".repeat(200) + "1 * * * * *";
        assert!(matches!(
            CronTimes::parse(&long, "UTC"),
            Err(ScheduleError::Cron { .. })
        ));
    }

    #[test]
    fn a_flood_is_refused_by_the_minimum_interval() {
        let now = ms("2026-11-30T10:00:00Z");
        let every_second = ScheduleSpec::new("w", "* * * * * *");
        assert!(every_second.validate(1000, now).is_ok());
        let err = every_second.validate(5000, now).unwrap_err();
        assert!(
            matches!(err, ScheduleError::TooFrequent { gap_ms: 1000, .. }),
            "{err}"
        );
        // Two fires a second apart once a day are as much a flood.
        let pair = ScheduleSpec::new("w", "0,1 0 0 * * *");
        assert!(pair.validate(5000, now).is_err());
        let long = ScheduleSpec::new("w".repeat(129), "* * * * * *");
        assert!(matches!(
            long.validate(1000, now),
            Err(ScheduleError::Workflow(_))
        ));
        let evil = ScheduleSpec::new("a\nINFO forged", "* * * * * *");
        let err = evil.validate(1000, now).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(
            ScheduleSpec::new("pkg::wf", "* * * * * *")
                .validate(1000, now)
                .is_ok()
        );
        let never = ScheduleSpec::new("w", "0 0 0 30 2 *");
        assert!(matches!(
            never.validate(1000, now),
            Err(ScheduleError::NeverDue(_))
        ));
    }

    #[test]
    fn due_times_are_found_forwards_and_backwards() {
        let t = CronTimes::parse("0 */5 * * * *", "UTC").unwrap();
        let start = ms("2026-11-30T10:02:30Z");
        assert_eq!(t.next_after(start), Some(ms("2026-11-30T10:05:00Z")));
        assert_eq!(
            t.next_after(ms("2026-11-30T10:05:00Z")),
            Some(ms("2026-11-30T10:10:00Z"))
        );
        let at = ms("2026-11-30T13:02:30Z");
        assert_eq!(
            t.latest_in(start, at, 3),
            vec![
                ms("2026-11-30T12:50:00Z"),
                ms("2026-11-30T12:55:00Z"),
                ms("2026-11-30T13:00:00Z")
            ]
        );
        // (10:02:30, 13:02:30] holds 36 due times.
        assert_eq!(t.count_in(start, at, 1000), 36);
        assert_eq!(t.count_in(start, at, 10), 10);
        assert_eq!(t.latest_in(start, at, 100).len(), 36);
    }

    /// Europe/Berlin, spring 2026: 02:00 CET jumps to 03:00 CEST on 29 March.
    #[test]
    fn a_time_that_does_not_exist_fires_at_the_first_valid_instant() {
        let t = CronTimes::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let due = t.next_after(ms("2026-03-27T12:00:00Z")).unwrap();
        assert_eq!(
            due,
            ms("2026-03-28T02:30:00+01:00"),
            "the day before: 02:30 CET"
        );
        let due = t.next_after(due).unwrap();
        assert_eq!(
            due,
            ms("2026-03-29T03:00:00+02:00"),
            "02:30 does not exist: 03:00 CEST"
        );
        let due = t.next_after(due).unwrap();
        assert_eq!(due, ms("2026-03-30T02:30:00+02:00"));
        // An interval expression follows real time across the gap.
        let hourly = CronTimes::parse("0 0 * * * *", "Europe/Berlin").unwrap();
        let after = hourly.next_after(ms("2026-03-29T01:00:00+01:00")).unwrap();
        assert_eq!(
            after,
            ms("2026-03-29T03:00:00+02:00"),
            "an hour of real time later"
        );
    }

    /// Europe/Berlin, autumn 2026: 03:00 CEST falls back to 02:00 CET on
    /// 25 October, so 02:30 happens twice.
    #[test]
    fn a_time_that_happens_twice_fires_once() {
        let t = CronTimes::parse("0 30 2 * * *", "Europe/Berlin").unwrap();
        let due = t.next_after(ms("2026-10-24T12:00:00Z")).unwrap();
        assert_eq!(
            due,
            ms("2026-10-25T02:30:00+02:00"),
            "the first 02:30 (CEST)"
        );
        let due = t.next_after(due).unwrap();
        assert_eq!(
            due,
            ms("2026-10-26T02:30:00+01:00"),
            "not the second 02:30 (CET)"
        );
        // Searching from inside the second pass does not go back to the first.
        let inside = ms("2026-10-25T02:10:00+01:00");
        assert_eq!(t.next_after(inside), Some(ms("2026-10-26T02:30:00+01:00")));
        // An interval expression is read on the wall clock too: 02:00 and
        // 02:30 fire once each, in the first pass, and nothing fires again
        // until 03:00 (an hour of real time later).
        let half = CronTimes::parse("0 */30 * * * *", "Europe/Berlin").unwrap();
        let mut due = ms("2026-10-25T01:45:00+02:00");
        let mut seen = Vec::new();
        for _ in 0..5 {
            due = half.next_after(due).unwrap();
            seen.push(due);
        }
        assert_eq!(
            seen,
            vec![
                ms("2026-10-25T02:00:00+02:00"),
                ms("2026-10-25T02:30:00+02:00"),
                ms("2026-10-25T03:00:00+01:00"),
                ms("2026-10-25T03:30:00+01:00"),
                ms("2026-10-25T04:00:00+01:00"),
            ]
        );
    }

    #[test]
    fn times_read_as_rfc3339() {
        assert_eq!(
            rfc3339(ms("2026-11-30T10:00:01.250Z")),
            "2026-11-30T10:00:01.250Z"
        );
    }

    #[test]
    fn policies_read_and_show_as_text() {
        assert_eq!(CatchUp::parse("latest"), Some(CatchUp::Latest));
        assert_eq!(Overlap::parse("queue-one"), Some(Overlap::QueueOne));
        assert_eq!(Overlap::QueueOne.to_string(), "queue_one");
        assert_eq!(CatchUp::parse("nope"), None);
    }
}
