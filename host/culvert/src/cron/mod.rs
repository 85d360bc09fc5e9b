//! Schedules as pure rules: what a schedule is, when it is due, and what a
//! host does with the due times it finds. Nothing here reads a clock or a
//! database; the firing loop (`firing.rs`) passes `now` in, which is how
//! tests run a 3-hour outage in a millisecond.
//!
//! | File | What it holds |
//! |---|---|
//! | `spec.rs` | [`ScheduleSpec`] and its policies; [`CronTimes`]: a cron expression (croner) read in an IANA timezone (chrono-tz), its due times and the daylight-saving rule |
//! | `plan.rs` | [`plan`]: the due times between the last one handled and now, turned into starts, skips and a queued one by the catch-up and overlap policies |
//!
//! Every time is milliseconds since the Unix epoch, as in the store.

mod plan;
mod spec;

pub use plan::{Fire, FireOutcome, ON_TIME_MS, Plan, PlanInput, plan};
pub(crate) use spec::wall_clock_ms;
pub use spec::{
    CatchUp, CronTimes, MAX_CATCH_UP_CAP, Overlap, ScheduleError, ScheduleSpec, rfc3339,
};
