//! The hostile-package gauntlet. Each attack ends with a specific error
//! kind recorded on the execution or the registration, the host still
//! serving, a concurrent well-behaved workflow of another tenant completing
//! correctly, and nothing written for a rejected registration.

use culvert::{Error, ExecutionStatus, Runner, RunnerConfig, StoreError, TaskStatus, TenantLimits};
use culvert_tests::{Db, TestDb, artifacts, read};
use serde_json::{Value, json};
use std::time::Duration;

struct Arena {
    _db: TestDb,
    r: Runner,
}

async fn arena(db: Db) -> Arena {
    let db = TestDb::new(db).await;
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 64;
    c.executor.poll_interval = Duration::from_millis(20);
    let r = Runner::open(c).await.unwrap();
    // 3 s, not 1: the attacker's own CPU loops use up its CPU share, so the
    // ledger pauses its memory-growing guest too; on a loaded 2-core
    // machine 1 s was seen to end that guest by its deadline before it
    // reached its memory cap (`timeout` instead of `out_of_memory`).
    let hostile = TenantLimits {
        max_task_timeout_ms: 3000,
        max_concurrent_tasks: 8,
        ..TenantLimits::default()
    };
    r.create_tenant("attacker", &hostile).await.unwrap();
    r.create_tenant("victim", &TenantLimits::default())
        .await
        .unwrap();
    r.register_package("victim", &read(artifacts::ETL))
        .await
        .unwrap();
    r.start();
    Arena { _db: db, r }
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

/// Start the victim's etl now; check its result later.
async fn victim_starts(r: &Runner) -> uuid::Uuid {
    r.start_execution("victim", "etl", None, obj(json!({"notify": true})))
        .await
        .unwrap()
        .id
}

async fn victim_completed(r: &Runner, id: uuid::Uuid) {
    let done = r.wait(id, Some(Duration::from_secs(120))).await.unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let out = done.output.unwrap();
    assert_eq!(out["total"], 150);
    assert_eq!(out["notified"], "loaded a total of 150");
}

/// The host still serves: a fresh victim workflow runs to the end.
async fn still_serving(r: &Runner) {
    let id = victim_starts(r).await;
    victim_completed(r, id).await;
}

/// Attacks 1-6, 9 and 10 in one execution: every task of the probe's
/// `probe` workflow attacks the sandbox in its own way, while the victim
/// runs.
async fn task_attacks_fail_alone(db: Db) {
    let arena = arena(db).await;
    let r = &arena.r;
    r.register_package("attacker", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let victim = victim_starts(r).await;
    let done = attack(r, "probe", json!({})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
    let kind = |t: &str| {
        let row = tasks.iter().find(|x| x.task_id == t).unwrap();
        (
            row.last_error_kind.clone(),
            row.last_error.clone().unwrap_or_default(),
        )
    };
    for (t, expected) in [
        ("loop_forever", "timeout"),
        ("sleep_forever", "timeout"),
        ("grow_memory_unbounded", "out_of_memory"),
        ("huge_output", "out_of_memory"),
        ("recurse_unbounded", "stack_overflow"),
        ("recurse_native", "stack_overflow"),
        ("panic_with_message", "panic"),
        ("trap_unreachable", "trap"),
        ("flood_stdout", "output_limit"),
        ("flood_stderr", "output_limit"),
        ("flood_log", "output_limit"),
        ("open_file", "permanent"),
        ("list_root", "permanent"),
        ("read_env", "permanent"),
        ("open_socket", "permanent"),
    ] {
        let (k, message) = kind(t);
        assert_eq!(k.as_deref(), Some(expected), "{t}: {message}");
        if expected == "permanent" {
            assert!(message.contains("denied"), "{t}: {message}");
        }
    }
    assert!(
        kind("panic_with_message")
            .1
            .contains("the probe panicked on purpose")
    );
    victim_completed(r, victim).await;
    still_serving(r).await;
    r.shutdown().await;
}

/// Attack 6 (the output side): deeply nested JSON, non-objects and
/// oversized contexts returned by a guest speaking the raw contract.
async fn hostile_outputs_fail_alone(db: Db) {
    let arena = arena(db).await;
    let r = &arena.r;
    r.register_package("attacker", &read(artifacts::LIAR))
        .await
        .unwrap();
    let victim = victim_starts(r).await;
    let done = r
        .wait(
            r.start_execution("attacker", "lies", None, obj(json!({})))
                .await
                .unwrap()
                .id,
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
    for t in &tasks {
        // A 20 MiB output cannot even be built under the 64 MiB memory cap.
        let expected = if t.task_id == "big_output" {
            "out_of_memory"
        } else {
            "invalid_output"
        };
        assert_eq!(
            t.last_error_kind.as_deref(),
            Some(expected),
            "{}: {:?}",
            t.task_id,
            t.last_error
        );
    }
    assert_eq!(tasks.len(), 4);
    victim_completed(r, victim).await;
    still_serving(r).await;
    r.shutdown().await;
}

/// Attacks 1 (in describe), 7 and 8: rejected at registration, with a
/// specific kind, and nothing written.
async fn hostile_registrations_write_nothing(db: Db) {
    let arena = arena(db).await;
    let r = &arena.r;
    let victim = victim_starts(r).await;
    let hello = read(artifacts::HELLO);
    let core = wat::parse_str("(module (memory 1) (func (export \"run\")))").unwrap();
    let other_world = wat::parse_str(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (export "run" (func $f)))"#,
    )
    .unwrap();
    let foreign_import = wat::parse_str(
        r#"(component
             (import "evil:kernel/syscalls" (instance (export "exec" (func))))
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (instance $inst (export "describe" (func $f)))
             (export "culvert:plugin/metadata@0.1.0" (instance $inst)))"#,
    )
    .unwrap();
    let random: Vec<u8> = (0..10_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "describe loops forever",
            read(artifacts::LIAR_DESCRIBE_LOOPS),
            "describe_timeout",
        ),
        (
            "describe exhausts memory",
            read(artifacts::LIAR_DESCRIBE_OOM),
            "describe_out_of_memory",
        ),
        (
            "one huge table",
            read(artifacts::TABLE_BOMB_ONE),
            // The pooling allocator refuses the table when linking; on-demand
            // allocation refuses it when `describe` instantiates.
            if r.loader().engine().pooling() {
                "invalid_component"
            } else {
                "describe_out_of_memory"
            },
        ),
        (
            "many large tables",
            read(artifacts::TABLE_BOMB_MANY),
            if r.loader().engine().pooling() {
                "invalid_component"
            } else {
                "describe_out_of_memory"
            },
        ),
        (
            "a dependency cycle",
            read(artifacts::LIAR_CYCLE),
            "invalid_metadata",
        ),
        (
            "an unknown dependency",
            read(artifacts::LIAR_UNKNOWN_DEP),
            "invalid_metadata",
        ),
        (
            "duplicate task ids",
            read(artifacts::LIAR_DUPLICATE_ID),
            "invalid_metadata",
        ),
        (
            "100,000 tasks",
            read(artifacts::LIAR_MANY_TASKS),
            "invalid_metadata",
        ),
        (
            "a 10 MB name",
            read(artifacts::LIAR_HUGE_NAME),
            "invalid_metadata",
        ),
        (
            "a non-UTF-8-looking name",
            read(artifacts::LIAR_ODD_UNICODE_NAME),
            "invalid_metadata",
        ),
        (
            "control characters",
            read(artifacts::LIAR_CONTROL_CHARS),
            "invalid_metadata",
        ),
        ("a core module", core, "core_module"),
        ("random bytes", random, "not_wasm"),
        (
            "a truncated component",
            hello[..hello.len() / 3].to_vec(),
            "invalid_component",
        ),
        ("a component of another world", other_world, "wrong_world"),
        (
            "an import the host does not provide",
            foreign_import,
            "unsupported_import",
        ),
    ];
    let before = r.list_packages(None).await.unwrap().len();
    for (what, bytes, kind) in cases {
        let err = r.register_package("attacker", &bytes).await.unwrap_err();
        match &err {
            Error::Load(l) => assert_eq!(l.kind(), kind, "{what}: {err}"),
            other => panic!("{what}: {other:?}"),
        }
        assert!(err.to_string().len() < 2048, "{what}: the error is bounded");
        let hash = culvert::ContentHash::of(&bytes).to_hex();
        assert!(
            matches!(r.store().blob(&hash).await, Err(StoreError::NotFound(_))),
            "{what}: bytes were written"
        );
    }
    assert_eq!(
        r.list_packages(None).await.unwrap().len(),
        before,
        "no package row was written"
    );
    victim_completed(r, victim).await;
    still_serving(r).await;
    r.shutdown().await;
}

/// Attack 11: a package of tenant A that tries to reach tenant B's data by
/// its context or by names. Names are per tenant, and nothing in a context
/// can address another execution.
async fn a_tenant_cannot_reach_another_by_context_or_name(db: Db) {
    let arena = arena(db).await;
    let r = &arena.r;
    let victim = victim_starts(r).await;
    victim_completed(r, victim).await;
    // The attacker registers a package with the victim's package name.
    r.register_package("attacker", &read(artifacts::ETL))
        .await
        .unwrap();
    let before = r.execution("victim", victim).await.unwrap().0;
    let spoof = json!({
        "tenant": "victim",
        "execution_id": victim.to_string(),
        "source_rows": [666],
    });
    let done = r
        .wait(
            r.start_execution("attacker", "etl", None, obj(spoof))
                .await
                .unwrap()
                .id,
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed);
    assert_eq!(done.tenant, "attacker");
    assert_eq!(done.output.as_ref().unwrap()["total"], 6660);
    // The victim's execution and packages are untouched and unseen.
    let after = r.execution("victim", victim).await.unwrap().0;
    assert_eq!(before.output, after.output);
    assert!(
        r.execution("attacker", victim)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        r.execution("victim", done.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(r.list_packages(Some("victim")).await.unwrap().len(), 1);
    // Removing the attacker's "etl" leaves the victim's.
    r.remove_package("attacker", "etl", None).await.unwrap();
    still_serving(r).await;
    r.shutdown().await;
}

/// Run the attacker's `workflow` with `context` to its end.
async fn attack(r: &Runner, workflow: &str, context: Value) -> culvert::ExecutionRow {
    let started = r
        .start_execution("attacker", workflow, None, obj(context))
        .await
        .unwrap();
    r.wait(started.id, Some(Duration::from_secs(120)))
        .await
        .unwrap()
}

/// An arena whose attacker has the `shapes` package and `limit` applied.
async fn shapes_arena(db: Db, limit: impl FnOnce(&mut TenantLimits)) -> Arena {
    let arena = arena(db).await;
    let mut limits = TenantLimits::default();
    limit(&mut limits);
    arena.r.update_tenant("attacker", &limits).await.unwrap();
    arena
        .r
        .register_package("attacker", &read(artifacts::SHAPES))
        .await
        .unwrap();
    arena
}

/// The data around the sandbox, case 1: 64 leaves, each inside every
/// per-call limit, whose outputs together are far over the final-context
/// limit. The final context is assembled one output at a time and refused
/// at the limit (the memory bound is checked on a real process in
/// `host/tests/data_plane.rs`); the victim is not held up.
async fn a_bloated_final_context_fails_alone(db: Db) {
    let arena = shapes_arena(db, |l| l.max_final_context_bytes = 1024 * 1024).await;
    let r = &arena.r;
    let victim = victim_starts(r).await;
    // 64 x 64 KiB = 4 MiB of leaf outputs against a 1 MiB final context.
    let done = attack(r, "bloat", json!({"bytes": 65536})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let error = done.error.unwrap_or_default();
    assert!(
        error.contains("context_too_large") && error.contains("max_final_context_bytes"),
        "{error}"
    );
    assert!(done.output.is_none());
    let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
    assert!(
        tasks.iter().all(|t| t.status == TaskStatus::Completed),
        "every leaf itself succeeded"
    );
    victim_completed(r, victim).await;
    still_serving(r).await;
    r.shutdown().await;
}

/// Case 2: a fan-in of 64 such leaves. The join's input is merged by the
/// host that claims it, outside any write transaction, and refused at the
/// tenant's max_context_bytes before the join runs.
async fn a_bloated_fan_in_fails_alone(db: Db) {
    let arena = shapes_arena(db, |l| l.max_context_bytes = 1024 * 1024).await;
    let r = &arena.r;
    let victim = victim_starts(r).await;
    let done = attack(r, "bloat_join", json!({"bytes": 65536})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
    let join = tasks.iter().find(|t| t.task_id == "join").unwrap();
    assert_eq!(join.status, TaskStatus::Failed);
    assert_eq!(join.last_error_kind.as_deref(), Some("context_too_large"));
    let message = join.last_error.clone().unwrap_or_default();
    assert!(
        message.contains("'join'") && message.contains("max_context_bytes"),
        "{message}"
    );
    assert!(join.output.is_none());
    victim_completed(r, victim).await;
    still_serving(r).await;
    r.shutdown().await;
}

/// Case 3: two roots return 150,000 distinct integers each under one key,
/// and a join merges them. Unioned by scanning, that merge took minutes
/// inside the write transaction, and every other tenant's claims,
/// completions and heartbeats waited. Now it is linear and outside any
/// transaction: the victim completes, and so does the attack.
async fn a_quadratic_merge_blocks_no_one(db: Db) {
    let arena = shapes_arena(db, |_| {}).await;
    let r = &arena.r;
    let attack = r
        .start_execution("attacker", "ints_join", None, obj(json!({"ints": 150_000})))
        .await
        .unwrap();
    let victim = victim_starts(r).await;
    victim_completed(r, victim).await;
    let done = r
        .wait(attack.id, Some(Duration::from_secs(120)))
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
    let xs = done.output.unwrap()["xs"].as_array().unwrap().len();
    assert_eq!(xs, 300_000);
    still_serving(r).await;
    r.shutdown().await;
}

/// The third bound: the bytes of task output one execution stores. Each
/// leaf fits every other limit; the outputs that would take the execution
/// past max_execution_output_bytes fail instead of being stored.
async fn stored_outputs_are_capped_per_execution(db: Db) {
    let arena = shapes_arena(db, |l| l.max_execution_output_bytes = 1024 * 1024).await;
    let r = &arena.r;
    let victim = victim_starts(r).await;
    // 64 x 100 KB = 6.4 MB of outputs against 1 MiB.
    let done = r
        .wait(
            r.start_execution("attacker", "bloat", None, obj(json!({"bytes": 100_000})))
                .await
                .unwrap()
                .id,
            Some(Duration::from_secs(120)),
        )
        .await
        .unwrap();
    assert_eq!(done.status, ExecutionStatus::Failed);
    let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
    let stored: usize = tasks
        .iter()
        .filter_map(|t| t.output.as_ref())
        .map(|o| o.to_string().len())
        .sum();
    assert!(stored <= 1024 * 1024, "{stored} bytes stored");
    let refused: Vec<_> = tasks
        .iter()
        .filter(|t| t.last_error_kind.as_deref() == Some("context_too_large"))
        .collect();
    assert!(refused.len() >= 50, "{} refused", refused.len());
    let message = refused[0].last_error.clone().unwrap_or_default();
    assert!(message.contains("max_execution_output_bytes"), "{message}");
    victim_completed(r, victim).await;
    still_serving(r).await;
    r.shutdown().await;
}

/// The egress section: a package granted "any public host on any port"
/// aims at what lies behind the host (the cloud metadata address, private
/// and loopback addresses by number and by name, IPv4 hidden in IPv6,
/// credentials in the URL), floods requests, and pulls an unbounded body.
/// Each request fails alone in the guest with a refusal or a limit, nothing
/// reaches the operator's server, and the victim carries on.
async fn egress_attacks_fail_alone(db: Db) {
    use culvert::{Grant, GrantKind};
    use culvert_tests::http_server::TestServer;
    let arena = arena(db).await;
    let r = &arena.r;
    let server = TestServer::start().await;
    let port = server.port();
    r.update_tenant(
        "attacker",
        &TenantLimits {
            max_task_timeout_ms: 3000,
            max_concurrent_tasks: 8,
            max_http_requests_per_call: 10,
            max_http_response_bytes: 64 * 1024,
            ..TenantLimits::default()
        },
    )
    .await
    .unwrap();
    r.register_package("attacker", &read(artifacts::FETCH))
        .await
        .unwrap();
    r.register_package("attacker", &read(artifacts::EGRESS_GUEST))
        .await
        .unwrap();
    // Any public host, any port: the operator's own network stays out of
    // reach all the same.
    r.grant(&Grant {
        tenant: "attacker".into(),
        package: String::new(),
        kind: GrantKind::Http,
        name: "*:*".into(),
        value: String::new(),
        writable: false,
    })
    .await
    .unwrap();
    let victim = victim_starts(r).await;
    for (what, url, expect) in [
        (
            "the cloud metadata address",
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "link-local",
        ),
        ("a private address", "http://10.0.0.1/".into(), "private"),
        (
            "loopback by number",
            format!("http://127.0.0.1:{port}/json"),
            "loopback",
        ),
        (
            "loopback by name",
            format!("http://localhost:{port}/json"),
            "loopback",
        ),
        (
            "loopback inside IPv6",
            format!("http://[::ffff:127.0.0.1]:{port}/json"),
            "loopback",
        ),
        (
            "the unspecified address",
            format!("http://0.0.0.0:{port}/"),
            "unspecified",
        ),
        (
            "credentials in the URL",
            "http://user:secret@example.com/".into(),
            "user information",
        ),
        (
            "another scheme",
            "ftp://example.com/".into(),
            "http://", // the SDK refuses it before asking the host (which would too)
        ),
    ] {
        let done = attack(r, "fetch", json!({ "url": url })).await;
        assert_eq!(done.status, ExecutionStatus::Failed, "{what}");
        let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
        let t = tasks.iter().find(|t| t.task_id == "fetch").unwrap();
        assert_eq!(t.last_error_kind.as_deref(), Some("permanent"), "{what}");
        let message = t.last_error.clone().unwrap_or_default();
        assert!(
            message.contains(expect),
            "{what}: expected '{expect}' in: {message}"
        );
        assert!(!message.contains("secret"), "{what}: {message}");
    }
    assert!(
        server.seen().is_empty(),
        "nothing reached the server on the host's loopback"
    );
    // Limits: with the loopback server granted literally, a flood of
    // requests stops at the tenant's cap, and an endless body at its bytes.
    r.grant(&Grant {
        tenant: "attacker".into(),
        package: String::new(),
        kind: GrantKind::Http,
        name: format!("127.0.0.1:{port}"),
        value: String::new(),
        writable: false,
    })
    .await
    .unwrap();
    let done = attack(
        r,
        "many",
        json!({"url": server.url("/json"), "count": 1000}),
    )
    .await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
    let message = tasks[0].last_error.clone().unwrap_or_default();
    assert!(
        message.contains("max_http_requests_per_call of 10"),
        "{message}"
    );
    assert_eq!(server.seen().len(), 10);
    let done = attack(r, "get", json!({"url": server.url("/chunked?n=50000000")})).await;
    assert_eq!(done.status, ExecutionStatus::Failed);
    let (_, tasks, _) = r.execution("attacker", done.id).await.unwrap();
    assert_eq!(tasks[0].last_error_kind.as_deref(), Some("permanent"));
    victim_completed(r, victim).await;
    still_serving(r).await;
    r.shutdown().await;
}

culvert_tests::both_backends!(
    egress_attacks_fail_alone,
    task_attacks_fail_alone,
    hostile_outputs_fail_alone,
    hostile_registrations_write_nothing,
    a_tenant_cannot_reach_another_by_context_or_name,
    a_bloated_final_context_fails_alone,
    a_bloated_fan_in_fails_alone,
    a_quadratic_merge_blocks_no_one,
    stored_outputs_are_capped_per_execution,
);
