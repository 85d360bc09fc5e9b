//! Text and JSON forms shared by several commands: times, executions and
//! their tasks and events, and the exit code an execution's status maps to.

use crate::EXIT_WORKFLOW_FAILED;
use culvert::{Escaped, EventRow, ExecutionRow, ExecutionStatus, TaskRow, TaskStatus};
pub(crate) use culvert_server::views::{execution_json, fmt_ms};

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
