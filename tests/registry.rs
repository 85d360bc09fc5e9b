//! The package registry and the reconcile loop, against a real SQLite file
//! and a real PostgreSQL server: every scenario runs on both backends.

use culvert::{NewPackage, Store};
use culvert::{ReconcilerConfig, Runner, RunnerConfig, StoreError};
use culvert_tests::{Db, TestDb, artifacts, init_tracing, read, with_custom_section};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn config(db: &TestDb) -> RunnerConfig {
    let mut c = RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache"));
    c.engine.pool_instances = 32;
    // Passes are driven by hand unless a test starts the loop.
    c.reconciler.reconcile_interval = Duration::from_secs(60);
    c
}

async fn runner(db: &TestDb) -> Runner {
    Runner::open(config(db)).await.expect("open runner")
}

culvert_tests::both_backends!(
    registration_is_idempotent,
    a_conflicting_registration_is_refused_with_both_hashes,
    invalid_packages_never_reach_the_database,
    unknown_tenants_are_refused,
    a_pass_loads_unloads_and_reloads_on_hash_change,
    a_failing_package_does_not_block_the_others,
    the_operation_timeout_fires_on_a_hanging_describe,
    a_restart_restores_every_package_without_compiling,
    unloading_does_not_break_a_running_task,
    newest_version_is_active_and_older_ones_stay_addressable,
    removal_deletes_rows_and_unused_bytes,
);

async fn registration_is_idempotent(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let bytes = read(artifacts::HELLO);
    let first = r.register_package("public", &bytes).await.unwrap();
    assert!(first.created);
    let again = r.register_package("public", &bytes).await.unwrap();
    assert!(!again.created);
    assert_eq!(first.id, again.id);
    assert_eq!(r.list_packages(None).await.unwrap().len(), 1);
    assert!(again.cache_hit, "the second registration compiles nothing");
}

async fn a_conflicting_registration_is_refused_with_both_hashes(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let bytes = read(artifacts::HELLO);
    let first = r.register_package("public", &bytes).await.unwrap();
    let other = with_custom_section(&bytes, "a different build");
    let err = r.register_package("public", &other).await.unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, culvert::Error::Store(StoreError::Conflict(_))),
        "{err:?}"
    );
    assert!(text.contains(&first.content_hash), "{text}");
    assert!(
        text.contains(&culvert::ContentHash::of(&other).to_hex()),
        "{text}"
    );
    assert_eq!(r.list_packages(None).await.unwrap().len(), 1);
}

async fn invalid_packages_never_reach_the_database(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let core = wat::parse_str("(module)").unwrap();
    let wrong_world = wat::parse_str("(component)").unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"definitely not wasm".to_vec()),
        ("core module", core),
        ("wrong world", wrong_world),
        ("cycle", read(artifacts::LIAR_CYCLE)),
        ("unknown dependency", read(artifacts::LIAR_UNKNOWN_DEP)),
        ("hanging describe", read(artifacts::LIAR_DESCRIBE_LOOPS)),
    ];
    for (what, bytes) in cases {
        let err = r.register_package("public", &bytes).await.unwrap_err();
        assert!(matches!(err, culvert::Error::Load(_)), "{what}: {err:?}");
        let hash = culvert::ContentHash::of(&bytes).to_hex();
        assert!(
            matches!(r.store().blob(&hash).await, Err(StoreError::NotFound(_))),
            "{what}: its bytes reached the database"
        );
    }
    assert!(r.list_packages(None).await.unwrap().is_empty());
}

async fn unknown_tenants_are_refused(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let err = r
        .register_package("nobody", &read(artifacts::HELLO))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    assert!(
        err.to_string().contains("tenant 'nobody' does not exist"),
        "{err}"
    );
    let bad = r
        .register_package("Bad Name!", &read(artifacts::HELLO))
        .await
        .unwrap_err();
    assert!(bad.to_string().contains("invalid tenant name"), "{bad}");
}

async fn a_pass_loads_unloads_and_reloads_on_hash_change(db: Db) {
    init_tracing();
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let reg = r
        .register_package("public", &read(artifacts::ETL))
        .await
        .unwrap();
    let pass = r.reconciler().reconcile().await.unwrap();
    assert_eq!(pass.packages_loaded, vec![reg.id]);
    assert_eq!(pass.total_packages_tracked, 1);
    let wf = r.registry().find_workflow("public", "etl", None).unwrap();
    assert_eq!(wf.workflow().tasks.len(), 5);
    let ns = culvert::TaskNamespace::parse("public::etl::etl::load").unwrap();
    assert!(r.registry().task(&ns, None).is_some());

    // A no-op pass changes nothing.
    let noop = r.reconciler().reconcile().await.unwrap();
    assert!(!noop.has_changes());

    // Change the stored bytes behind the row: the pass reloads.
    let changed = with_custom_section(&read(artifacts::ETL), "rebuilt");
    let new_hash = culvert::ContentHash::of(&changed).to_hex();
    rewrite_hash(&db, reg.id, &new_hash, &changed).await;
    let reload = r.reconciler().reconcile().await.unwrap();
    assert_eq!(reload.packages_unloaded, vec![reg.id]);
    assert_eq!(reload.packages_loaded, vec![reg.id]);
    assert_eq!(
        r.registry().get(reg.id).unwrap().content_hash().to_hex(),
        new_hash
    );

    // Remove it: the pass unloads.
    r.remove_package("public", "etl", None).await.unwrap();
    let gone = r.reconciler().reconcile().await.unwrap();
    assert_eq!(gone.packages_unloaded, vec![reg.id]);
    assert!(r.registry().find_workflow("public", "etl", None).is_err());
    assert!(r.registry().task(&ns, None).is_none());
}

/// Point a package row at other bytes, as another tool writing the
/// database directly might.
async fn rewrite_hash(db: &TestDb, id: uuid::Uuid, hash: &str, bytes: &[u8]) {
    let store = culvert::open_store(&db.url).await.unwrap();
    // Register the bytes as a throwaway package so the blob exists, then
    // repoint the row.
    let meta = culvert::PackageMetadata {
        name: "blob-holder".into(),
        ..(*store.get_package(id).await.unwrap().metadata).clone()
    };
    store
        .register_package(NewPackage {
            tenant: "public",
            metadata: &meta,
            content_hash: hash,
            bytes,
            max_packages: u32::MAX,
            signature: None,
        })
        .await
        .unwrap();
    execute(
        db,
        "UPDATE packages SET content_hash = $1 WHERE id = $2",
        hash,
        id,
    )
    .await;
    store
        .remove_packages("public", "blob-holder", None)
        .await
        .unwrap();
}

async fn execute(db: &TestDb, sql: &'static str, a: &str, id: uuid::Uuid) {
    match db.kind {
        Db::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(sql)
                .bind(a)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
        Db::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sql)
                .bind(a)
                .bind(id)
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

/// Insert a package row directly, bypassing validation, as a stale or
/// foreign writer might.
async fn insert_raw(store: &Arc<dyn Store>, name: &str, bytes: &[u8]) -> uuid::Uuid {
    let meta = culvert::PackageMetadata {
        name: name.into(),
        version: "0.0.1".into(),
        description: String::new(),
        author: String::new(),
        contract_version: "0.1.0".into(),
        sdk_version: String::new(),
        workflows: Vec::new(),
        capabilities: Default::default(),
        schedules: Vec::new(),
    };
    store
        .register_package(NewPackage {
            tenant: "public",
            metadata: &meta,
            content_hash: &culvert::ContentHash::of(bytes).to_hex(),
            bytes,
            max_packages: u32::MAX,
            signature: None,
        })
        .await
        .unwrap()
        .id
}

async fn a_failing_package_does_not_block_the_others(db: Db) {
    let db = TestDb::new(db).await;
    let mut c = config(&db);
    c.reconciler.failure_backoff_initial = Duration::from_millis(200);
    let r = Runner::open(c).await.unwrap();
    let bad = insert_raw(r.store(), "garbage", b"not a component at all").await;
    let good = r
        .register_package("public", &read(artifacts::HELLO))
        .await
        .unwrap();
    let pass = r.reconciler().reconcile().await.unwrap();
    assert_eq!(pass.packages_loaded, vec![good.id]);
    assert_eq!(pass.packages_failed.len(), 1);
    assert_eq!(pass.packages_failed[0].0, bad);
    assert!(
        pass.packages_failed[0].1.contains("garbage"),
        "{:?}",
        pass.packages_failed
    );

    let status = r.status().await;
    assert_eq!(status.packages_loaded, 1);
    assert_eq!(status.failed.len(), 1);
    assert!(
        status.failed[0]
            .error
            .contains("not a WebAssembly component"),
        "{:?}",
        status.failed
    );
    assert_eq!(status.failed[0].attempts, 1);

    // Backing off: the next pass right away does not retry it.
    let soon = r.reconciler().reconcile().await.unwrap();
    assert!(soon.packages_failed.is_empty());
    // After the backoff, it is retried (and fails again, counting attempts).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = r.reconciler().reconcile().await.unwrap();
    assert_eq!(later.packages_failed.len(), 1);
    assert_eq!(r.status().await.failed[0].attempts, 2);
}

async fn the_operation_timeout_fires_on_a_hanging_describe(db: Db) {
    let db = TestDb::new(db).await;
    let mut c = config(&db);
    c.reconciler.package_operation_timeout = Duration::from_millis(300);
    // Without the operation timeout, only describe's own deadline would
    // end the load: make that a minute, so that the bound below (wide for
    // a loaded machine) can only be met by the operation timeout.
    c.loader.describe_limits.timeout = Duration::from_secs(60);
    let r = Runner::open(c).await.unwrap();
    let hanging = insert_raw(r.store(), "hangs", &read(artifacts::LIAR_DESCRIBE_LOOPS)).await;
    let good = r
        .register_package("public", &read(artifacts::HELLO))
        .await
        .unwrap();
    let started = Instant::now();
    let pass = r.reconciler().reconcile().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(pass.packages_loaded, vec![good.id]);
    assert_eq!(pass.packages_failed.len(), 1);
    assert_eq!(pass.packages_failed[0].0, hanging);
    assert!(
        pass.packages_failed[0]
            .1
            .contains("package_operation_timeout"),
        "{:?}",
        pass.packages_failed
    );
}

async fn a_restart_restores_every_package_without_compiling(db: Db) {
    let db = TestDb::new(db).await;
    {
        let first = runner(&db).await;
        for path in [artifacts::HELLO, artifacts::ETL, artifacts::FLAKY] {
            first.register_package("public", &read(path)).await.unwrap();
        }
        first.reconciler().reconcile().await.unwrap();
        first.shutdown().await;
    }
    let second = runner(&db).await;
    let pass = second.reconciler().reconcile().await.unwrap();
    assert_eq!(pass.packages_loaded.len(), 3);
    let stats = second.loader().cache().stats();
    assert_eq!(stats.misses, 0, "{stats:?}");
    assert_eq!(stats.disk_hits, 3, "{stats:?}");
    let status = second.status().await;
    assert!(status.package_details.iter().all(|p| p.cache_hit));
    for wf in ["hello", "etl", "flaky"] {
        second.registry().find_workflow("public", wf, None).unwrap();
    }
}

/// Unloading a package from the registry does not break a task of it that
/// is already running: the executor runs `slow`'s first task (its
/// `claimed` event recorded and its row `running`) when the package is
/// removed and unloaded; the task and the rest of the execution finish.
async fn unloading_does_not_break_a_running_task(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let reg = r
        .register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    r.reconciler().reconcile().await.unwrap();
    assert!(r.registry().get(reg.id).is_some());
    r.start_executor();
    let context = serde_json::json!({"ms": 800});
    let started = r
        .start_execution("public", "slow", None, context.as_object().unwrap().clone())
        .await
        .unwrap();
    // Wait (on state, with a generous deadline for a loaded machine) until
    // s1 has been claimed and is running.
    let t0 = Instant::now();
    loop {
        let (_, tasks, events) = r.execution("public", started.id).await.unwrap();
        let s1 = tasks.iter().find(|t| t.task_id == "s1").unwrap();
        let claimed = events
            .iter()
            .any(|e| e.kind == "claimed" && e.task_id.as_deref() == Some("s1"));
        if claimed && s1.status == culvert::TaskStatus::Running {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "s1 never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    r.remove_package("public", "sandbox-probe", None)
        .await
        .unwrap();
    let pass = r.reconciler().reconcile().await.unwrap();
    assert_eq!(pass.packages_unloaded, vec![reg.id]);
    assert!(r.registry().get(reg.id).is_none());
    let done = r
        .wait(started.id, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        done.status,
        culvert::ExecutionStatus::Completed,
        "{:?}",
        done.error
    );
    let (_, tasks, _) = r.execution("public", started.id).await.unwrap();
    let s1 = tasks.iter().find(|t| t.task_id == "s1").unwrap();
    assert_eq!((s1.attempt, s1.recoveries), (1, 0));
    assert_eq!(
        done.output.unwrap()["trail"],
        serde_json::json!(["s1", "s2", "s3", "s4"])
    );
    r.shutdown().await;
}

async fn newest_version_is_active_and_older_ones_stay_addressable(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let v1 = r
        .register_package("public", &read(artifacts::SANDBOX_PROBE))
        .await
        .unwrap();
    let v2 = r
        .register_package("public", &read(artifacts::SANDBOX_PROBE_V2))
        .await
        .unwrap();
    assert_eq!(
        (v1.version.as_str(), v2.version.as_str()),
        ("0.1.0", "0.2.0")
    );
    let pass = r.reconciler().reconcile().await.unwrap();
    assert_eq!(pass.packages_loaded.len(), 2);
    // The newest registered version is active...
    assert_eq!(
        r.registry()
            .package("public", "sandbox-probe", None)
            .unwrap()
            .id,
        v2.id
    );
    let wf = r.registry().find_workflow("public", "chain", None).unwrap();
    assert_eq!(wf.package.version(), "0.2.0");
    let ns = culvert::TaskNamespace::parse("public::sandbox-probe::chain::a").unwrap();
    assert_eq!(r.registry().task(&ns, None).unwrap().0.id, v2.id);
    // ...and the older one stays addressable by version.
    assert_eq!(
        r.registry()
            .package("public", "sandbox-probe", Some("0.1.0"))
            .unwrap()
            .id,
        v1.id
    );
    assert_eq!(r.registry().task(&ns, Some("0.1.0")).unwrap().0.id, v1.id);
    assert_eq!(
        r.registry()
            .find_workflow("public", "chain", Some("0.1.0"))
            .unwrap()
            .package
            .id,
        v1.id
    );
    // Removing the newest makes the older one active again.
    r.remove_package("public", "sandbox-probe", Some("0.2.0"))
        .await
        .unwrap();
    r.reconciler().reconcile().await.unwrap();
    assert_eq!(
        r.registry()
            .package("public", "sandbox-probe", None)
            .unwrap()
            .id,
        v1.id
    );
    // Another tenant sees none of it.
    assert!(
        r.registry()
            .package("other", "sandbox-probe", None)
            .is_none()
    );
    assert!(r.registry().workflows("other").is_empty());
    assert!(r.registry().find_workflow("other", "chain", None).is_err());
    assert!(r.registry().task_namespaces("other").is_empty());
}

async fn removal_deletes_rows_and_unused_bytes(db: Db) {
    let db = TestDb::new(db).await;
    let r = runner(&db).await;
    let reg = r
        .register_package("public", &read(artifacts::HELLO))
        .await
        .unwrap();
    let removed = r
        .remove_package("public", "hello", Some("0.1.0"))
        .await
        .unwrap();
    assert_eq!(removed.len(), 1);
    assert!(r.list_packages(Some("public")).await.unwrap().is_empty());
    assert!(matches!(
        r.store().blob(&reg.content_hash).await,
        Err(StoreError::NotFound(_))
    ));
    let again = r.remove_package("public", "hello", None).await.unwrap_err();
    assert!(again.is_not_found(), "{again:?}");
    assert!(
        again
            .to_string()
            .contains("package 'hello' not found in tenant public"),
        "{again}"
    );
}

/// Two hosts on one PostgreSQL: a registration through one shows up in the
/// other's registries by NOTIFY: well before the reconcile interval (a
/// minute) could. Usually within milliseconds; the bound of 15 s leaves
/// room for a loaded machine and still rules the interval out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_notify_reaches_another_host_before_the_interval() {
    let db = TestDb::new(Db::Postgres).await;
    let a = runner(&db).await;
    let b = runner(&db).await;
    a.start();
    b.start();
    // Let both loops finish their startup pass.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reg = a
        .register_package("public", &read(artifacts::HELLO))
        .await
        .unwrap();
    let registered = Instant::now();
    loop {
        if b.registry().get(reg.id).is_some() {
            break;
        }
        assert!(
            registered.elapsed() < Duration::from_secs(15),
            "host B did not load the package within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    b.remove_package("public", "hello", None).await.unwrap();
    let removed = Instant::now();
    while a.registry().get(reg.id).is_some() {
        assert!(
            removed.elapsed() < Duration::from_secs(15),
            "host A did not unload within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// The defaults keep cloacina's names and values (a contract with its
/// users), and behave as they say: with them, one pass over a database
/// holding a broken package and a good one loads the good one and records
/// the broken one (continue_on_package_error), well inside the operation
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconciler_defaults_match_the_reference() {
    let c = ReconcilerConfig::default();
    assert!(c.enable_startup_reconciliation);
    assert!(c.continue_on_package_error);
    assert_eq!(c.package_operation_timeout, Duration::from_secs(30));

    let db = TestDb::new(Db::Sqlite).await;
    let r = Runner::open(RunnerConfig::new(&db.url).cache_dir(db.dir().join("cache")))
        .await
        .unwrap();
    let junk = insert_raw(r.store(), "junk", b"not a component at all").await;
    let good = r
        .register_package("public", &read(artifacts::HELLO))
        .await
        .unwrap();
    let pass = r.reconciler().reconcile().await.unwrap();
    assert_eq!(pass.packages_loaded, vec![good.id]);
    let status = r.status().await;
    assert!(status.failed.iter().any(|f| f.id == junk), "{status:?}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_error() {
    let err = Runner::open(RunnerConfig::new("postgres://nobody@127.0.0.1:1/none"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, culvert::Error::Store(StoreError::Unavailable(_))),
        "{err:?}"
    );
    let err = Runner::open(RunnerConfig::new("sqlite:///no/such/dir/x.db"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
