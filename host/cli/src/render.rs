//! Text and JSON forms shared by several commands: times, executions and
//! their tasks and events, and the exit code an execution's status maps to.

use crate::EXIT_WORKFLOW_FAILED;
use culvert::{Escaped, EventRow, ExecutionRow, ExecutionStatus, TaskRow, TaskStatus};
pub(crate) use culvert_server::views::{execution_json, fmt_ms};
use serde_json::Value;

/// An execution as text, from its JSON form ([`execution_json`], as
/// `--json` prints it and the API answers it): a header, a task table,
/// the events when the document has them, the final context. Rendering
/// from the JSON form keeps the text the same against the database and
/// through a server. What a guest wrote (errors, context keys and values)
/// is escaped (see [`crate::guest_text`]): a line of this table is one
/// line.
pub(crate) fn execution_text(v: &Value) -> String {
    use std::fmt::Write;
    let s = |v: &Value| v.as_str().map(str::to_owned);
    let status = v["status"].as_str().unwrap_or("");
    let mut out = String::new();
    let took = v["duration_ms"]
        .as_i64()
        .map(|d| format!(" in {d} ms"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "execution {}  {} ({}, tenant {})  {status}{took}",
        v["id"].as_str().unwrap_or(""),
        v["workflow"].as_str().unwrap_or(""),
        v["package"].as_str().unwrap_or(""),
        v["tenant"].as_str().unwrap_or(""),
    );
    if let Some(e) = s(&v["error"]) {
        let _ = writeln!(out, "  error: {}", Escaped(&e));
    }
    let _ = writeln!(
        out,
        "  {:<20} {:<10} {:>8} {:>10}  ERROR / NOTE",
        "TASK", "STATUS", "ATTEMPTS", "DURATION"
    );
    for t in v["tasks"].as_array().into_iter().flatten() {
        let task_status = t["status"].as_str().unwrap_or("");
        let note = match (s(&t["error"]), s(&t["skip_reason"])) {
            (_, Some(skip)) if task_status == TaskStatus::Skipped.as_str() => {
                format!("skipped: {skip}")
            }
            (Some(err), _) => format!(
                "{}: {}{}",
                t["error_kind"].as_str().unwrap_or("error"),
                Escaped(&err),
                if task_status == TaskStatus::Completed.as_str() {
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
            t["id"].as_str().unwrap_or(""),
            task_status,
            format!("{}/{}", t["attempts"], t["max_attempts"]),
            t["duration_ms"]
                .as_i64()
                .map(|d| format!("{d} ms"))
                .unwrap_or_else(|| "-".into()),
            note
        );
    }
    if let Some(events) = v["events"].as_array() {
        let _ = writeln!(out, "  events:");
        for e in events {
            let _ = writeln!(
                out,
                "    {}  {:<18} {:<20} {}",
                e["at"].as_str().unwrap_or(""),
                e["kind"].as_str().unwrap_or(""),
                e["task"].as_str().unwrap_or("-"),
                Escaped(e["detail"].as_str().unwrap_or(""))
            );
        }
    }
    let finished = ExecutionStatus::parse(status).is_some_and(|s| s.is_finished());
    match &v["context"] {
        Value::Null if finished => {
            let _ = writeln!(out, "  final context: (none: the execution {status})");
        }
        Value::Null => {
            let _ = writeln!(out, "  final context: (none yet)");
        }
        ctx => {
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
    print_execution_json(&execution_json(row, tasks, events), json)
}

/// Print an execution's JSON form ([`execution_json`]) as it is, or as
/// text ([`execution_text`]).
pub(crate) fn print_execution_json(v: &Value, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(v)?);
    } else {
        print!("{}", execution_text(v));
    }
    Ok(())
}
