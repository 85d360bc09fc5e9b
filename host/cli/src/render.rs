//! Text and JSON forms shared by several commands: times, executions and
//! their tasks and events, and the exit code an execution's status maps to.

use crate::EXIT_WORKFLOW_FAILED;
use culvert::{Escaped, EventRow, ExecutionRow, ExecutionStatus, TaskRow, TaskStatus};
use serde_json::{Value, json};

/// `ms` since the epoch as RFC 3339 UTC, to the millisecond.
pub fn fmt_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// An execution with its tasks (and events) as JSON.
pub(crate) fn execution_json(
    row: &ExecutionRow,
    tasks: &[TaskRow],
    events: Option<&[EventRow]>,
) -> Value {
    let mut v = json!({
        "id": row.id,
        "tenant": row.tenant,
        "workflow": row.workflow,
        "package": format!("{}@{}", row.package_name, row.package_version),
        "content_hash": row.content_hash,
        "status": row.status,
        "context": row.output,
        "initial_context": row.context,
        "error": row.error,
        "created_at": fmt_ms(row.created_at),
        "started_at": row.started_at.map(fmt_ms),
        "finished_at": row.finished_at.map(fmt_ms),
        "duration_ms": row.finished_at.map(|f| f - row.created_at),
        "tasks": tasks.iter().map(|t| json!({
            "id": t.task_id,
            "status": t.status,
            "attempts": t.attempt,
            "max_attempts": t.max_attempts,
            "duration_ms": t.duration_ms,
            "error": t.last_error,
            "error_kind": t.last_error_kind,
            "skip_reason": t.skip_reason,
            "recoveries": t.recoveries,
        })).collect::<Vec<_>>(),
    });
    if let Some(events) = events {
        v["events"] = json!(
            events
                .iter()
                .map(|e| json!({
                    "at": fmt_ms(e.at),
                    "task": e.task_id,
                    "kind": e.kind,
                    "detail": e.detail,
                    "host": e.host,
                }))
                .collect::<Vec<_>>()
        );
    }
    v
}

/// An execution as text: a header, a task table, the final context. What
/// a guest wrote (errors, context keys and values) is escaped (see
/// [`crate::guest_text`]): a line of this table is one line.
pub(crate) fn execution_text(
    row: &ExecutionRow,
    tasks: &[TaskRow],
    events: Option<&[EventRow]>,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let took = row
        .finished_at
        .map(|f| format!(" in {} ms", f - row.created_at))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "execution {}  {} ({}@{}, tenant {})  {}{took}",
        row.id, row.workflow, row.package_name, row.package_version, row.tenant, row.status
    );
    if let Some(e) = &row.error {
        let _ = writeln!(out, "  error: {}", Escaped(e));
    }
    let _ = writeln!(
        out,
        "  {:<20} {:<10} {:>8} {:>10}  ERROR / NOTE",
        "TASK", "STATUS", "ATTEMPTS", "DURATION"
    );
    for t in tasks {
        let note = match (&t.last_error, &t.skip_reason) {
            (_, Some(skip)) if t.status == TaskStatus::Skipped => format!("skipped: {skip}"),
            (Some(err), _) => format!(
                "{}: {}{}",
                t.last_error_kind.as_deref().unwrap_or("error"),
                Escaped(err),
                if t.status == TaskStatus::Completed {
                    " (then retried)"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<20} {:<10} {:>8} {:>10}  {}",
            t.task_id,
            t.status.as_str(),
            format!("{}/{}", t.attempt, t.max_attempts),
            t.duration_ms
                .map(|d| format!("{d} ms"))
                .unwrap_or_else(|| "-".into()),
            note
        );
    }
    if let Some(events) = events {
        let _ = writeln!(out, "  events:");
        for e in events {
            let _ = writeln!(
                out,
                "    {}  {:<18} {:<20} {}",
                fmt_ms(e.at),
                e.kind,
                e.task_id.as_deref().unwrap_or("-"),
                Escaped(e.detail.as_deref().unwrap_or(""))
            );
        }
    }
    match &row.output {
        Some(ctx) => {
            // One line per top-level key, each value as compact JSON, cut
            // at 200 characters (`--json` shows everything).
            let _ = writeln!(out, "  final context:");
            match ctx.as_object() {
                Some(map) if !map.is_empty() => {
                    for (k, v) in map {
                        let mut text = v.to_string();
                        if text.len() > 200 {
                            let mut cut = 200;
                            while !text.is_char_boundary(cut) {
                                cut -= 1;
                            }
                            text.truncate(cut);
                            text.push('…');
                        }
                        let _ = writeln!(out, "    {}: {}", Escaped(k), Escaped(&text));
                    }
                }
                _ => {
                    let _ = writeln!(out, "    {}", Escaped(&ctx.to_string()));
                }
            }
        }
        None if row.status.is_finished() => {
            let _ = writeln!(out, "  final context: (none: the execution {})", row.status);
        }
        None => {
            let _ = writeln!(out, "  final context: (none yet)");
        }
    }
    out
}

pub(crate) fn exit_code(status: ExecutionStatus) -> i32 {
    if status == ExecutionStatus::Completed {
        0
    } else {
        EXIT_WORKFLOW_FAILED
    }
}

/// Print an execution with its tasks (and events, when given): one JSON
/// document with `json`, else the text form.
pub(crate) fn print_execution(
    row: &ExecutionRow,
    tasks: &[TaskRow],
    events: Option<&[EventRow]>,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&execution_json(row, tasks, events))?
        );
    } else {
        print!("{}", execution_text(row, tasks, events));
    }
    Ok(())
}
