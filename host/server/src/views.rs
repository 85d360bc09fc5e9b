//! The JSON forms of what the API answers and the CLI prints with
//! `--json`: written once here, so that `culvert ... --json` against the
//! database and against a server print the same document.

use culvert::{
    EventRow, ExecutionRow, FireRow, LoadedPackage, PackageRow, SandboxEngine, ScheduleRow,
    TaskRow, TrustedKey,
};
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
pub fn execution_json(row: &ExecutionRow, tasks: &[TaskRow], events: Option<&[EventRow]>) -> Value {
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
        "schedule": row.schedule,
        "scheduled_for": row.scheduled_for.map(fmt_ms),
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
        v["events"] = json!(events.iter().map(event_json).collect::<Vec<_>>());
    }
    v
}

/// A registered package as JSON (without its DAG: see [`package_detail_json`]).
pub fn package_json(p: &PackageRow) -> Value {
    json!({
        "id": p.id,
        "tenant": p.tenant,
        "name": p.name,
        "version": p.version,
        "content_hash": p.content_hash,
        "size": p.size,
        "registered_at": fmt_ms(p.registered_at),
        "workflows": p.metadata.workflows.iter().map(|w| &w.name).collect::<Vec<_>>(),
        "capabilities": p.metadata.capabilities,
        "signature": p.signature.as_ref().map(|s| json!({
            "key_id": s.key_id,
            "signed_at": fmt_ms(s.signed_at),
            "key": if s.key_untrusted_at.is_some() { "untrusted" } else { "trusted" },
            "key_untrusted_at": s.key_untrusted_at.map(fmt_ms),
            "disabled": s.disabled,
        })),
    })
}

/// A tenant's signing key (`key list --json`, `GET /api/v1/signing-keys`).
pub fn trusted_key_json(k: &TrustedKey) -> Value {
    json!({
        "tenant": k.tenant,
        "key_id": k.key_id,
        "name": k.name,
        "status": if k.is_trusted() { "trusted" } else { "untrusted" },
        "public_key": k.public_key,
        "trusted_at": fmt_ms(k.trusted_at),
        "trusted_by": k.trusted_by,
        "untrusted_at": k.untrusted_at.map(fmt_ms),
        "untrusted_by": k.untrusted_by,
    })
}

/// A registered package with its workflows, their tasks and DAG (the
/// validated metadata).
pub fn package_detail_json(p: &PackageRow) -> Value {
    let mut v = package_json(p);
    if let Some(s) = &p.signature {
        v["signature"]["signature"] = json!(s.signature);
    }
    v["metadata"] = serde_json::to_value(&*p.metadata).unwrap_or(Value::Null);
    v
}

/// What `package inspect --json` prints: the metadata, the content hash,
/// the size, where the compiled code came from and the imports.
pub fn inspect_json(pkg: &LoadedPackage, engine: &SandboxEngine) -> serde_json::Value {
    let mut v = serde_json::to_value(&pkg.metadata).expect("metadata serializes");
    let obj = v.as_object_mut().expect("an object");
    obj.insert("content_hash".into(), json!(pkg.content_hash));
    obj.insert("size".into(), json!(pkg.size));
    obj.insert(
        "cache".into(),
        json!({ "source": pkg.source, "hit": pkg.source.is_hit() }),
    );
    obj.insert(
        "imports".into(),
        json!(culvert::imports_of(engine, &pkg.compiled.component)),
    );
    v
}

/// An event of an execution's log as JSON.
pub fn event_json(e: &EventRow) -> Value {
    json!({
        "id": e.id,
        "at": fmt_ms(e.at),
        "task": e.task_id,
        "kind": e.kind,
        "detail": e.detail,
        "host": e.host,
    })
}

/// The compiled-code cache in `dir`: its artifacts (`.cwasm` files under
/// an engine key) and their total size.
pub fn cache_dir_summary(dir: &std::path::Path) -> Value {
    let mut files = 0u64;
    let mut bytes = 0u64;
    if let Ok(keys) = std::fs::read_dir(dir) {
        for key in keys.flatten() {
            if !culvert::is_engine_key(&key.file_name().to_string_lossy()) {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(key.path()) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().ends_with(".cwasm") {
                        files += 1;
                        bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                    }
                }
            }
        }
    }
    json!({ "dir": dir, "artifacts": files, "bytes": bytes })
}

/// A schedule as JSON (`schedule list|show --json`, the API). Times are
/// RFC 3339.
pub fn schedule_json(s: &ScheduleRow) -> Value {
    json!({
        "id": s.id,
        "tenant": s.tenant,
        "workflow": s.spec.workflow,
        "cron": s.spec.cron,
        "timezone": s.spec.timezone,
        "context": s.spec.context,
        "catch_up": s.spec.catch_up,
        "catch_up_cap": s.spec.catch_up_cap,
        "overlap": s.spec.overlap,
        "declared": s.declared,
        "package": s.package,
        "paused": s.paused,
        "next_due_at": s.next_due_at.filter(|_| !s.paused).map(fmt_ms),
        "queued_for": s.queued_for.map(fmt_ms),
        "last_fired_at": s.last_fired_at.map(fmt_ms),
        "last_error": s.last_error,
        "created_at": fmt_ms(s.created_at),
    })
}

/// One recorded due time of a schedule as JSON.
pub fn fire_json(f: &FireRow) -> Value {
    json!({
        "schedule": f.schedule_id,
        "scheduled_for": fmt_ms(f.due_at),
        "outcome": f.outcome,
        "execution": f.execution_id,
        "error": f.error,
        "fired_at": fmt_ms(f.fired_at),
    })
}
