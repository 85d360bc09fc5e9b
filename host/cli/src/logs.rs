//! `culvert executions logs` (what an execution's guests said, per
//! attempt), `culvert prune` and the retention loop of `culvert serve`.

use crate::args::*;
use crate::client::Api;
use crate::common::*;
use culvert::{
    AttemptLogs, ExecutionStatus, LogRecord, LogStream, PruneReport, Runner, escape_guest_text,
};
use std::collections::HashSet;
use std::time::Duration;

/// How often `--follow` looks for attempts that finished.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

/// How often `serve --retention` prunes, after once at start.
pub(crate) const RETENTION_INTERVAL: Duration = Duration::from_secs(600);

/// One line for `record` of `attempt`: `TASK#ATTEMPT LEVEL message
/// name=value ...`, where LEVEL is the log level in capitals or `stdout`
/// / `stderr`. Every piece of guest text is escaped, so a record is always
/// one line and cannot pass for a line of the host's.
pub(crate) fn record_line(attempt: &AttemptLogs, record: &LogRecord) -> String {
    let source = match (record.stream, &record.level) {
        (LogStream::Log, Some(level)) => {
            escape_guest_text(&level.to_ascii_uppercase()).into_owned()
        }
        (stream, _) => stream.as_str().to_string(),
    };
    let mut line = format!(
        "{}#{} {source:<6} {}",
        escape_guest_text(&attempt.task),
        attempt.attempt,
        escape_guest_text(&record.message)
    );
    for (name, value) in &record.fields {
        line.push(' ');
        line.push_str(&escape_guest_text(name));
        line.push('=');
        line.push_str(&escape_guest_text(value));
    }
    line
}

/// The lines of one attempt, with the truncation marker last.
pub(crate) fn attempt_lines(attempt: &AttemptLogs) -> Vec<String> {
    let mut lines: Vec<String> = attempt
        .records
        .iter()
        .map(|r| record_line(attempt, r))
        .collect();
    if attempt.truncated {
        lines.push(format!(
            "{}#{} [truncated: {} bytes dropped]",
            escape_guest_text(&attempt.task),
            attempt.attempt,
            attempt.dropped_bytes
        ));
    }
    lines
}

pub(crate) async fn executions_logs(g: &GlobalArgs, args: LogsArgs) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    print_logs(&LogSource::Database(&runner), &args).await
}

/// Where `executions logs` reads: the database, or a server's API
/// (`--server`). Both give the same [`AttemptLogs`], printed alike.
pub(crate) enum LogSource<'a> {
    /// The database, through the runner.
    Database(&'a Runner),
    /// `GET /api/v1/executions/{id}/logs` and `GET .../{id}`.
    Api(&'a Api),
}

impl LogSource<'_> {
    /// The attempts' logs `args` asks for.
    async fn logs(&self, args: &LogsArgs) -> anyhow::Result<Vec<AttemptLogs>> {
        match self {
            LogSource::Database(runner) => Ok(runner
                .logs(
                    tenant_or_default(&args.tenant),
                    args.id,
                    args.task.as_deref(),
                    args.attempt,
                )
                .await?),
            LogSource::Api(api) => {
                let attempt = args.attempt.map(|a| a.to_string());
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(t) = &args.tenant {
                    query.push(("tenant", t));
                }
                if let Some(t) = &args.task {
                    query.push(("task", t));
                }
                if let Some(a) = &attempt {
                    query.push(("attempt", a));
                }
                let id = args.id.to_string();
                let answer = api.get(&["executions", &id, "logs"], &query).await?;
                serde_json::from_value(answer)
                    .map_err(|e| anyhow::anyhow!("the server's answer is not a list of logs: {e}"))
            }
        }
    }

    /// Whether the execution has finished.
    async fn finished(&self, args: &LogsArgs) -> anyhow::Result<bool> {
        match self {
            LogSource::Database(runner) => Ok(runner
                .store()
                .get_execution(Some(tenant_or_default(&args.tenant)), args.id)
                .await?
                .status
                .is_finished()),
            LogSource::Api(api) => {
                let query: Vec<(&str, &str)> =
                    args.tenant.iter().map(|t| ("tenant", t.as_str())).collect();
                let row = api
                    .get(&["executions", &args.id.to_string()], &query)
                    .await?;
                Ok(row["status"]
                    .as_str()
                    .and_then(ExecutionStatus::parse)
                    .is_some_and(ExecutionStatus::is_finished))
            }
        }
    }
}

/// Print the logs `args` asks for from `source`: once, or (`--follow`)
/// attempt by attempt until the execution finishes.
pub(crate) async fn print_logs(source: &LogSource<'_>, args: &LogsArgs) -> anyhow::Result<i32> {
    if !args.follow {
        let attempts = source.logs(args).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&attempts)?);
        } else if attempts.is_empty() {
            println!("no logs (no attempt of this execution has finished yet)");
        } else {
            for attempt in &attempts {
                for line in attempt_lines(attempt) {
                    println!("{line}");
                }
            }
        }
        return Ok(0);
    }
    follow(source, args).await
}

/// Print attempts as their completions are recorded, until the execution
/// finishes (then once more, for the last ones).
async fn follow(source: &LogSource<'_>, args: &LogsArgs) -> anyhow::Result<i32> {
    let mut printed: HashSet<(String, u32)> = HashSet::new();
    loop {
        let finished = source.finished(args).await?;
        let attempts = source.logs(args).await?;
        for attempt in attempts {
            if !printed.insert((attempt.task.clone(), attempt.attempt)) {
                continue;
            }
            if args.json {
                println!("{}", serde_json::to_string(&attempt)?);
            } else {
                for line in attempt_lines(&attempt) {
                    println!("{line}");
                }
            }
        }
        if finished {
            return Ok(0);
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

pub(crate) async fn prune(g: &GlobalArgs, args: PruneArgs) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    let report = runner.prune(args.older_than).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "pruned {} finished executions older than {} ({})",
            report.executions,
            humantime::format_duration(args.older_than),
            report_counts(&report)
        );
    }
    Ok(0)
}

fn report_counts(r: &PruneReport) -> String {
    format!(
        "{} tasks, {} events, {} attempts' logs, {} unused component blobs, {} audit entries",
        r.tasks, r.events, r.logs, r.blobs, r.audit
    )
}

/// `serve --retention`: prune at start, then every
/// [`RETENTION_INTERVAL`], until `shutdown`. A failure is logged and tried
/// again at the next interval; it never stops `serve`.
pub(crate) async fn retention_loop(
    runner: std::sync::Arc<Runner>,
    older_than: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match runner.prune(older_than).await {
            Ok(report) if !report.is_empty() => tracing::info!(
                executions = report.executions,
                tasks = report.tasks,
                events = report.events,
                logs = report.logs,
                blobs = report.blobs,
                audit = report.audit,
                "pruned finished executions older than {}",
                humantime::format_duration(older_than)
            ),
            Ok(_) => tracing::debug!("nothing to prune"),
            Err(e) => tracing::warn!(
                error = %e,
                "pruning finished executions failed; trying again in {}",
                humantime::format_duration(RETENTION_INTERVAL)
            ),
        }
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_INTERVAL) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_stays_on_one_line() {
        let attempt = AttemptLogs {
            task: "t".into(),
            attempt: 2,
            records: vec![LogRecord {
                stream: LogStream::Log,
                level: Some("info".into()),
                message: "a\nFORGED\x1b[2J".into(),
                fields: vec![("k\r".into(), "v\u{202e}".into())],
            }],
            bytes: 0,
            truncated: true,
            dropped_bytes: 7,
            recorded_at: 0,
        };
        let lines = attempt_lines(&attempt);
        assert_eq!(
            lines,
            [
                "t#2 INFO   a\\nFORGED\\u{1b}[2J k\\r=v\\u{202e}",
                "t#2 [truncated: 7 bytes dropped]"
            ]
        );
    }

    #[test]
    fn durations_and_retention_parse() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("soon").unwrap_err().contains("30d"));
        assert_eq!(parse_retention("none"), Ok(Retention(None)));
        assert_eq!(
            parse_retention("12h"),
            Ok(Retention(Some(Duration::from_secs(43_200))))
        );
    }
}
