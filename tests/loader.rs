//! The loader, the compiled-code cache, the sandbox and metadata
//! validation, against real components: the examples, the `sandbox-probe`
//! and `liar` fixtures, and WAT.

use culvert::TaskCall;
use culvert::{
    CacheConfig, CacheSource, CallLabels, CompiledCache, EngineConfig, FailureKind, LoadError,
    LoadedPackage, LoaderConfig, PackageLoader, SandboxEngine, SandboxLimits, TaskFailure,
};
use culvert_tests::{artifacts, engine, init_tracing, load, loader, read};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn call<'a>(workflow: &'a str, task: &'a str, ctx: &'a str) -> TaskCall<'a> {
    TaskCall {
        workflow,
        task,
        context_json: ctx,
        execution_id: "00000000-0000-0000-0000-000000000001",
        attempt: 1,
        max_attempts: 1,
    }
}

async fn run(
    pkg: &LoadedPackage,
    workflow: &str,
    task: &str,
    ctx: &str,
    limits: &SandboxLimits,
) -> Result<serde_json::Map<String, serde_json::Value>, TaskFailure> {
    culvert::run_task(
        &engine(),
        &pkg.compiled,
        &call(workflow, task, ctx),
        limits,
        Arc::new(CallLabels::default()),
        None,
    )
    .await
    .map(|o| o.context)
}

/// The well-behaved call that must still work after each attack.
async fn hello_still_works() {
    let hello = load(artifacts::HELLO).await;
    let out = run(
        &hello,
        "hello",
        "greet",
        r#"{"name":"Ada"}"#,
        &SandboxLimits::default(),
    )
    .await
    .expect("hello after an attack");
    assert_eq!(out["greeting"], "Hello, Ada!");
}

fn short_limits() -> SandboxLimits {
    SandboxLimits {
        timeout: Duration::from_millis(500),
        ..SandboxLimits::default()
    }
}

mod sdk_round_trip {
    use super::*;

    /// The etl example's metadata, as the host reads it: every attribute of
    /// the `#[task]`s arrives intact.
    #[tokio::test]
    async fn etl_metadata_matches_the_source() {
        let etl = load(artifacts::ETL).await;
        let m = &etl.metadata;
        assert_eq!(m.name, "etl");
        assert_eq!(m.version, "0.1.0");
        assert_eq!(m.contract_version, "0.2.0");
        let wf = m.workflow("etl").expect("workflow etl");
        let ids: Vec<&str> = wf.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["extract", "clean", "enrich", "load", "notify"]);
        let load_task = wf.task("load").unwrap();
        assert_eq!(load_task.dependencies, ["clean", "enrich"]);
        let enrich = wf.task("enrich").unwrap();
        assert_eq!(enrich.retry.max_attempts, 3);
        assert_eq!(enrich.retry.backoff, culvert::Backoff::Exponential);
        assert_eq!(enrich.retry.initial_delay_ms, 50);
        assert_eq!(enrich.timeout_ms, Some(5000));
        let notify = wf.task("notify").unwrap();
        assert_eq!(
            notify.trigger,
            Some(culvert::TriggerRule::All(vec![
                culvert::Condition::TaskSucceeded {
                    task: "load".into()
                },
                culvert::Condition::ContextEquals {
                    key: "notify".into(),
                    value: serde_json::json!(true)
                },
            ]))
        );
        assert!(wf.task("extract").unwrap().description.contains("raw rows"));
        assert_eq!(wf.topological_order()[0], "extract");
    }

    #[tokio::test]
    async fn tasks_run_and_see_their_attempt() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let mut c = call("probe", "echo_attempt", "{}");
        c.attempt = 2;
        c.max_attempts = 5;
        let out = culvert::run_task(
            &engine(),
            &probe.compiled,
            &c,
            &SandboxLimits::default(),
            Arc::new(CallLabels::default()),
            None,
        )
        .await
        .unwrap()
        .context;
        assert_eq!(out["attempt"], 2);
        assert_eq!(out["max_attempts"], 5);
        assert_eq!(out["execution_id"], "00000000-0000-0000-0000-000000000001");
    }

    #[tokio::test]
    async fn task_errors_keep_their_kind_and_message() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let l = SandboxLimits::default();
        let t = run(&probe, "probe", "fail_transient", "{}", &l)
            .await
            .unwrap_err();
        assert_eq!(t.kind, FailureKind::Transient);
        assert_eq!(t.message, "the probe failed transiently");
        let p = run(&probe, "probe", "fail_permanent", "{}", &l)
            .await
            .unwrap_err();
        assert_eq!(p.kind, FailureKind::Permanent);
        let unknown = run(&probe, "probe", "no_such_task", "{}", &l)
            .await
            .unwrap_err();
        assert_eq!(unknown.kind, FailureKind::Permanent);
        assert!(
            unknown.message.contains("no task 'no_such_task'"),
            "{}",
            unknown.message
        );
    }
}

mod sandbox {
    use super::*;

    #[tokio::test]
    async fn an_infinite_loop_is_preempted_by_its_deadline() {
        init_tracing();
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let started = Instant::now();
        let e = run(&probe, "probe", "loop_forever", "{}", &short_limits())
            .await
            .unwrap_err();
        let elapsed = started.elapsed();
        assert_eq!(e.kind, FailureKind::Timeout, "{e}");
        assert!(e.message.contains("500 ms"), "{}", e.message);
        assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
        hello_still_works().await;
    }

    #[tokio::test]
    async fn a_sleep_in_a_host_call_is_stopped_by_the_deadline() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let started = Instant::now();
        let e = run(&probe, "probe", "sleep_forever", "{}", &short_limits())
            .await
            .unwrap_err();
        assert_eq!(e.kind, FailureKind::Timeout, "{e}");
        // The guest would sleep forever; the bound is wide for a loaded
        // machine.
        assert!(started.elapsed() < Duration::from_secs(20));
        hello_still_works().await;
    }

    #[tokio::test]
    async fn unbounded_memory_growth_is_out_of_memory() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let e = run(
            &probe,
            "probe",
            "grow_memory_unbounded",
            "{}",
            &SandboxLimits::default(),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::OutOfMemory, "{e}");
        assert!(e.message.contains("memory limit"), "{}", e.message);
        hello_still_works().await;
    }

    #[tokio::test]
    async fn unbounded_recursion_is_a_stack_overflow() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        // Large frames overflow the shadow stack in linear memory; small
        // ones overflow the engine's bounded wasm stack.
        for task in ["recurse_unbounded", "recurse_native"] {
            let e = run(&probe, "probe", task, "{}", &SandboxLimits::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind, FailureKind::StackOverflow, "{task}: {e}");
        }
        hello_still_works().await;
    }

    #[tokio::test]
    async fn files_env_and_sockets_are_denied() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let l = SandboxLimits::default();
        for (task, needle) in [
            ("open_file", "open /etc/passwd denied"),
            ("list_root", "list / denied"),
            ("read_env", "env (0 vars visible) denied"),
            ("open_socket", "connect 127.0.0.1:5432 denied"),
        ] {
            let e = run(&probe, "probe", task, "{}", &l).await.unwrap_err();
            assert_eq!(e.kind, FailureKind::Permanent, "{task}: {e}");
            assert!(e.message.contains(needle), "{task}: {}", e.message);
        }
        hello_still_works().await;
    }

    #[tokio::test]
    async fn output_floods_hit_the_output_limit() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        for task in ["flood_stdout", "flood_stderr", "flood_log"] {
            let e = run(&probe, "probe", task, "{}", &SandboxLimits::default())
                .await
                .unwrap_err();
            assert_eq!(e.kind, FailureKind::OutputLimit, "{task}: {e}");
        }
        // Under the cap, output is fine.
        let out = run(
            &probe,
            "probe",
            "flood_stdout",
            r#"{"lines":10}"#,
            &SandboxLimits::default(),
        )
        .await
        .unwrap();
        assert_eq!(out["printed"], 10);
        hello_still_works().await;
    }

    #[tokio::test]
    async fn panics_and_traps_are_told_apart() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let l = SandboxLimits::default();
        let p = run(&probe, "probe", "panic_with_message", "{}", &l)
            .await
            .unwrap_err();
        assert_eq!(p.kind, FailureKind::Panic, "{p}");
        assert!(
            p.message.contains("the probe panicked on purpose"),
            "{}",
            p.message
        );
        let t = run(&probe, "probe", "trap_unreachable", "{}", &l)
            .await
            .unwrap_err();
        assert_eq!(t.kind, FailureKind::Trap, "{t}");
        assert!(t.message.contains("unreachable"), "{}", t.message);
        hello_still_works().await;
    }

    #[tokio::test]
    async fn hostile_outputs_are_invalid_output() {
        let liar = load(artifacts::LIAR).await;
        let l = SandboxLimits {
            memory_bytes: 256 * 1024 * 1024,
            max_context_bytes: 16 * 1024 * 1024,
            ..SandboxLimits::default()
        };
        for (task, needle) in [
            ("deep_json", "recursion limit"),
            ("not_an_object", "must be a JSON object"),
            ("invalid_json", "not valid JSON"),
            ("big_output", "over the limit"),
        ] {
            let e = run(&liar, "lies", task, "{}", &l).await.unwrap_err();
            assert_eq!(e.kind, FailureKind::InvalidOutput, "{task}: {e}");
            assert!(e.message.contains(needle), "{task}: {}", e.message);
        }
        hello_still_works().await;
    }

    #[tokio::test]
    async fn fuel_runs_out_when_the_engine_counts_it() {
        let fuel_engine = SandboxEngine::new(EngineConfig {
            fuel: true,
            pool_instances: 16,
            ..EngineConfig::default()
        })
        .unwrap();
        let cache = Arc::new(CompiledCache::new(
            fuel_engine.clone(),
            CacheConfig::default(),
        ));
        let loader = PackageLoader::new(cache, LoaderConfig::default());
        let probe = loader.load(&read(artifacts::SANDBOX_PROBE)).await.unwrap();
        let limits = SandboxLimits {
            fuel: Some(1_000_000),
            ..SandboxLimits::default()
        };
        let e = culvert::run_task(
            &fuel_engine,
            &probe.compiled,
            &call("probe", "loop_forever", "{}"),
            &limits,
            Arc::new(CallLabels::default()),
            None,
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::OutOfFuel, "{e}");
    }

    /// Without the pooling allocator's own table checks, the limiter's
    /// element cap stops table bombs when `describe` instantiates.
    #[tokio::test]
    async fn table_bombs_hit_the_table_cap_without_pooling() {
        let engine = SandboxEngine::new(EngineConfig {
            pooling: false,
            ..EngineConfig::default()
        })
        .unwrap();
        assert!(!engine.pooling());
        let loader = PackageLoader::new(
            Arc::new(CompiledCache::new(engine, CacheConfig::default())),
            LoaderConfig::default(),
        );
        for path in [artifacts::TABLE_BOMB_ONE, artifacts::TABLE_BOMB_MANY] {
            let e = loader.load(&read(path)).await.unwrap_err();
            assert_eq!(e.kind(), "describe_out_of_memory", "{path}: {e}");
            assert!(e.to_string().contains("table limit"), "{path}: {e}");
        }
    }

    #[tokio::test]
    async fn a_cancel_flag_stops_a_running_call() {
        let probe = load(artifacts::SANDBOX_PROBE).await;
        let flag = culvert::CancelFlag::new();
        let f2 = flag.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            f2.cancel();
        });
        let e = culvert::run_task(
            &engine(),
            &probe.compiled,
            &call("probe", "loop_forever", "{}"),
            &SandboxLimits::default(),
            Arc::new(CallLabels::default()),
            Some(flag),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, FailureKind::Cancelled, "{e}");
    }
}

mod validation {
    use super::*;

    async fn rejected(path: &str) -> LoadError {
        match loader().load(&read(path)).await {
            Ok(p) => panic!("{path} loaded as {}", p.metadata.label()),
            Err(e) => e,
        }
    }

    #[tokio::test]
    async fn hostile_metadata_is_rejected_with_a_clear_error() {
        for (path, needle) in [
            (artifacts::LIAR_CYCLE, "dependency cycle"),
            (
                artifacts::LIAR_UNKNOWN_DEP,
                "task 'load' depends on unknown task 'transfrom'",
            ),
            (
                artifacts::LIAR_DUPLICATE_ID,
                "duplicate task id 'deep_json'",
            ),
            (artifacts::LIAR_EMPTY_NAME, "invalid package name ''"),
            (
                artifacts::LIAR_MANY_TASKS,
                "100004 tasks is over the limit of 10000",
            ),
            (artifacts::LIAR_HUGE_NAME, "(10485760 bytes)"),
            (artifacts::LIAR_CONTROL_CHARS, "invalid task id 'bell\\u{7}"),
            (artifacts::LIAR_ODD_UNICODE_NAME, "invalid package name"),
            (
                artifacts::LIAR_WRONG_CONTRACT_VERSION,
                "culvert:plugin@0.9.0",
            ),
            (
                artifacts::LIAR_SCHEDULE_UNKNOWN_WORKFLOW,
                "invalid schedule: it names workflow 'nowhere', which the package does not define",
            ),
            (
                artifacts::LIAR_SCHEDULE_BAD_CRON,
                "workflow 'lies': invalid schedule: invalid cron expression 'every tuesday'",
            ),
        ] {
            let e = rejected(path).await;
            assert_eq!(e.kind(), "invalid_metadata", "{path}: {e}");
            let text = e.to_string();
            assert!(text.contains(needle), "{path}: {text}");
            assert!(
                text.len() < 2048,
                "error text is bounded: {} bytes",
                text.len()
            );
        }
    }

    /// The same packages, as the typed error a caller branches on.
    #[tokio::test]
    async fn hostile_metadata_errors_are_typed() {
        use culvert::{MetadataError as M, NameKind};
        let typed = |e: LoadError| match e {
            LoadError::InvalidMetadata(m) => *m,
            other => panic!("not invalid metadata: {other:?}"),
        };
        let e = typed(rejected(artifacts::LIAR_CYCLE).await);
        assert!(
            matches!(&e, M::Cycle { path, .. } if path.len() >= 2 && path.first() == path.last()),
            "{e:?}"
        );
        let e = typed(rejected(artifacts::LIAR_UNKNOWN_DEP).await);
        let M::UnknownDependency {
            at,
            task,
            dependency,
        } = &e
        else {
            panic!("{e:?}")
        };
        assert_eq!((task.as_str(), dependency.as_str()), ("load", "transfrom"));
        assert!(at.package.starts_with("liar@"), "{at:?}");
        assert!(at.workflow.is_some(), "{at:?}");
        let e = typed(rejected(artifacts::LIAR_DUPLICATE_ID).await);
        assert!(
            matches!(&e, M::Duplicate { kind: NameKind::Task, name, .. } if name == "deep_json"),
            "{e:?}"
        );
        let e = typed(rejected(artifacts::LIAR_MANY_TASKS).await);
        assert!(
            matches!(
                &e,
                M::LimitExceeded {
                    limit: "tasks",
                    value: 100_004,
                    cap: 10_000,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = typed(rejected(artifacts::LIAR_EMPTY_NAME).await);
        assert!(
            matches!(
                &e,
                M::InvalidName {
                    kind: NameKind::Package,
                    ..
                }
            ),
            "{e:?}"
        );
        let e = typed(rejected(artifacts::LIAR_SCHEDULE_BAD_CRON).await);
        assert!(
            matches!(&e, M::BadSchedule { at, .. } if at.workflow.as_deref() == Some("lies")),
            "{e:?}"
        );
        let e = typed(rejected(artifacts::LIAR_WRONG_CONTRACT_VERSION).await);
        assert!(
            matches!(&e, M::UnsupportedContract { source, .. } if source.found == "0.9.0"),
            "{e:?}"
        );
    }

    #[tokio::test]
    async fn a_describe_that_never_returns_times_out() {
        let started = Instant::now();
        let e = rejected(artifacts::LIAR_DESCRIBE_LOOPS).await;
        assert_eq!(e.kind(), "describe_timeout", "{e}");
        assert!(started.elapsed() < Duration::from_secs(10));
        let p = rejected(artifacts::LIAR_DESCRIBE_PANICS).await;
        assert!(
            p.to_string().contains("describe panicked on purpose"),
            "{p}"
        );
        let m = rejected(artifacts::LIAR_DESCRIBE_OOM).await;
        assert_eq!(m.kind(), "describe_out_of_memory", "{m}");
        hello_still_works().await;
    }

    #[tokio::test]
    async fn non_components_are_rejected_by_kind() {
        let l = loader();
        let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
        assert_eq!(l.load(&core).await.unwrap_err().kind(), "core_module");
        let random: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        assert_eq!(l.load(&random).await.unwrap_err().kind(), "not_wasm");
        let hello = read(artifacts::HELLO);
        let truncated = &hello[..hello.len() / 2];
        assert_eq!(
            l.load(truncated).await.unwrap_err().kind(),
            "invalid_component"
        );
        let small = LoaderConfig {
            max_component_bytes: 1024,
            ..LoaderConfig::default()
        };
        let tiny = PackageLoader::new(l.cache().clone(), small);
        assert_eq!(tiny.load(&hello).await.unwrap_err().kind(), "too_large");
    }

    #[tokio::test]
    async fn components_of_other_worlds_and_contracts_are_rejected() {
        let l = loader();
        let empty = wat::parse_str("(component)").unwrap();
        let e = l.load(&empty).await.unwrap_err();
        assert_eq!(e.kind(), "wrong_world", "{e}");

        let other_version = wat::parse_str(
            r#"(component
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (instance $inst (export "describe" (func $f)))
                 (export "culvert:plugin/metadata@0.3.0" (instance $inst)))"#,
        )
        .unwrap();
        let e = l.load(&other_version).await.unwrap_err();
        assert_eq!(e.kind(), "contract_mismatch", "{e}");
        let text = e.to_string();
        assert!(
            text.contains("culvert:plugin@0.3.0") && text.contains("culvert:plugin@0.2.0"),
            "{text}"
        );

        let evil_import = wat::parse_str(
            r#"(component
                 (import "evil:net/raw-socket" (instance (export "connect" (func))))
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (instance $inst (export "describe" (func $f)))
                 (export "culvert:plugin/metadata@0.1.0" (instance $inst)))"#,
        )
        .unwrap();
        let e = l.load(&evil_import).await.unwrap_err();
        assert_eq!(e.kind(), "unsupported_import", "{e}");
        assert!(e.to_string().contains("evil:net/raw-socket"), "{e}");
    }
}

mod cache {
    use super::*;

    fn disk_loader(dir: &std::path::Path) -> PackageLoader {
        let cache = CompiledCache::new(
            engine(),
            CacheConfig {
                dir: Some(dir.to_path_buf()),
                ..CacheConfig::default()
            },
        );
        PackageLoader::new(Arc::new(cache), LoaderConfig::default())
    }

    #[tokio::test]
    async fn a_warm_load_does_not_compile() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = read(artifacts::ETL);
        let cold = disk_loader(dir.path());
        let pkg = cold.load(&bytes).await.unwrap();
        assert_eq!(pkg.source, CacheSource::Compiled);
        assert_eq!(cold.cache().stats().misses, 1);
        let again = cold.load(&bytes).await.unwrap();
        assert_eq!(again.source, CacheSource::Memory);

        // A new process: a new cache over the same directory.
        let warm = disk_loader(dir.path());
        let pkg = warm.load(&bytes).await.unwrap();
        assert_eq!(pkg.source, CacheSource::Disk);
        let stats = warm.cache().stats();
        assert_eq!((stats.misses, stats.disk_hits), (0, 1));
        let path = warm.cache().artifact_path(&pkg.content_hash).unwrap();
        assert!(path.starts_with(dir.path().join(warm.cache().engine_key())));
        assert!(
            path.to_string_lossy()
                .ends_with(&format!("{}.cwasm", pkg.content_hash))
        );
    }

    async fn recompiles_after(damage: impl FnOnce(&std::path::Path, &PackageLoader)) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = read(artifacts::HELLO);
        let first = disk_loader(dir.path());
        let pkg = first.load(&bytes).await.unwrap();
        // Also cache another package, whose valid artifact can be swapped in.
        first.load(&read(artifacts::FLAKY)).await.unwrap();
        let path = first.cache().artifact_path(&pkg.content_hash).unwrap();
        damage(&path, &first);

        let second = disk_loader(dir.path());
        let again = second.load(&bytes).await.unwrap();
        assert_eq!(again.source, CacheSource::Compiled);
        let stats = second.cache().stats();
        assert_eq!((stats.discarded, stats.misses, stats.disk_hits), (1, 1, 0));
        // The package still works, and the rewritten artifact is good.
        let out = culvert::run_task(
            &engine(),
            &again.compiled,
            &call("hello", "greet", "{}"),
            &SandboxLimits::default(),
            Arc::new(CallLabels::default()),
            None,
        )
        .await
        .unwrap();
        assert_eq!(out.context["greeting"], "Hello, world!");
        let third = disk_loader(dir.path());
        assert_eq!(third.load(&bytes).await.unwrap().source, CacheSource::Disk);
    }

    #[tokio::test]
    async fn a_truncated_artifact_is_recompiled() {
        recompiles_after(|path, _| {
            let data = std::fs::read(path).unwrap();
            std::fs::write(path, &data[..data.len() / 2]).unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn a_bit_flipped_artifact_is_recompiled() {
        recompiles_after(|path, _| {
            let mut data = std::fs::read(path).unwrap();
            let mid = data.len() / 2;
            data[mid] ^= 0x10;
            std::fs::write(path, &data).unwrap();
        })
        .await;
    }

    #[tokio::test]
    async fn a_swapped_artifact_is_recompiled() {
        recompiles_after(|path, loader| {
            let flaky = culvert::ContentHash::of(&read(artifacts::FLAKY));
            let other = loader.cache().artifact_path(&flaky).unwrap();
            std::fs::copy(other, path).unwrap();
        })
        .await;
    }

    /// Run `recompiles_after(damage)` on a thread of its own and fail if it
    /// has not finished within 60 s: a load that blocks (on a FIFO, say)
    /// must fail the test, not hang it. (A tokio timeout would not do: a
    /// blocking read cannot be cancelled, and the runtime would wait for
    /// it when dropped.)
    fn recompiles_within_a_minute(
        damage: impl FnOnce(&std::path::Path, &PackageLoader) + Send + 'static,
    ) {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rt.block_on(recompiles_after(damage))
            }));
            let _ = done.send(outcome);
        });
        match finished.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => panic!("the load did not finish within 60 s: it blocks"),
        }
    }

    fn replace_with_fifo(path: &std::path::Path) {
        std::fs::remove_file(path).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo");
        assert!(made.success());
    }

    #[test]
    fn a_fifo_in_place_of_an_artifact_is_recompiled() {
        recompiles_within_a_minute(|path, _| replace_with_fifo(path));
    }

    /// The peak resident memory of this test process, in bytes.
    fn peak_rss() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/self/status");
        kib * 1024
    }

    #[test]
    fn a_link_to_dev_zero_in_place_of_an_artifact_is_recompiled() {
        recompiles_within_a_minute(|path, _| {
            std::fs::remove_file(path).unwrap();
            std::os::unix::fs::symlink("/dev/zero", path).unwrap();
        });
        // Following the link reads zeros until memory runs out (or a
        // memory limit stops the read, several GiB in); this whole test
        // binary peaks at a few hundred MiB.
        let peak = peak_rss();
        assert!(peak < 1 << 30, "peak resident memory {peak} bytes");
    }

    #[test]
    fn a_link_to_a_valid_artifact_elsewhere_is_recompiled() {
        // The right artifact, byte for byte, but outside the cache: the
        // cache reads only files it wrote, so it does not follow the link.
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("planted.cwasm");
        let planted = target.clone();
        recompiles_within_a_minute(move |path, _| {
            std::fs::rename(path, &planted).unwrap();
            std::os::unix::fs::symlink(&planted, path).unwrap();
        });
        assert!(
            target.exists(),
            "discarding the link leaves its target alone"
        );
    }

    #[test]
    fn an_artifact_longer_than_its_header_says_is_recompiled() {
        // Valid up to the stated length, then padding: refused by size,
        // before the padding is read.
        recompiles_within_a_minute(|path, _| {
            let mut f = std::fs::File::options().append(true).open(path).unwrap();
            std::io::Write::write_all(&mut f, &[0u8; 4096]).unwrap();
        });
    }

    #[tokio::test]
    async fn another_engine_config_gets_another_key() {
        let fuel = SandboxEngine::new(EngineConfig {
            fuel: true,
            pool_instances: 8,
            ..EngineConfig::default()
        })
        .unwrap();
        let base = engine().compatibility_key();
        assert_ne!(fuel.compatibility_key(), base);
        assert_eq!(engine().compatibility_key(), base, "the key is stable");

        let dir = tempfile::tempdir().unwrap();
        let bytes = read(artifacts::HELLO);
        disk_loader(dir.path()).load(&bytes).await.unwrap();
        let other = PackageLoader::new(
            Arc::new(CompiledCache::new(
                fuel,
                CacheConfig {
                    dir: Some(dir.path().to_path_buf()),
                    ..CacheConfig::default()
                },
            )),
            LoaderConfig::default(),
        );
        assert_eq!(
            other.load(&bytes).await.unwrap().source,
            CacheSource::Compiled
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn eight_concurrent_loads_compile_once() {
        let dir = tempfile::tempdir().unwrap();
        let loader = disk_loader(dir.path());
        let bytes = Arc::new(read(artifacts::ETL));
        let mut handles = Vec::new();
        for _ in 0..8 {
            let (l, b) = (loader.clone(), bytes.clone());
            handles.push(tokio::spawn(
                async move { l.load(&b).await.map(|p| p.source) },
            ));
        }
        let mut sources = Vec::new();
        for h in handles {
            sources.push(h.await.unwrap().unwrap());
        }
        let stats = loader.cache().stats();
        assert_eq!(stats.misses, 1, "{sources:?}");
        assert_eq!(
            sources
                .iter()
                .filter(|s| **s == CacheSource::Compiled)
                .count(),
            1,
            "{sources:?}"
        );
    }

    /// Set a file's modification time (the cache's LRU order) to `ago`
    /// before now.
    fn age(path: &std::path::Path, ago: Duration) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(std::time::SystemTime::now() - ago)
            .unwrap();
    }

    /// Four artifacts, written A, B, C (A oldest), then A read back from
    /// disk: the least recently *used* is B. A bound that leaves room for
    /// three evicts B, not A (the oldest written) and not C.
    #[tokio::test]
    async fn the_disk_bound_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let make = |max| {
            PackageLoader::new(
                Arc::new(CompiledCache::new(
                    engine(),
                    CacheConfig {
                        dir: Some(dir.path().to_path_buf()),
                        max_disk_bytes: max,
                        ..CacheConfig::default()
                    },
                )),
                LoaderConfig::default(),
            )
        };
        let [a, b, c, d] = [
            artifacts::HELLO,
            artifacts::FLAKY,
            artifacts::ETL,
            artifacts::SHAPES,
        ]
        .map(read);
        let writer = make(u64::MAX);
        let mut paths = Vec::new();
        for (bytes, hours) in [(&a, 3), (&b, 2), (&c, 1)] {
            let loaded = writer.load(bytes).await.unwrap();
            let path = writer.cache().artifact_path(&loaded.content_hash).unwrap();
            age(&path, Duration::from_secs(hours * 3600));
            paths.push(path);
        }
        let size = |p: &std::path::PathBuf| std::fs::metadata(p).unwrap().len();
        // A disk hit on A refreshes its place in the LRU order.
        let reader = make(u64::MAX);
        assert_eq!(reader.load(&a).await.unwrap().source, CacheSource::Disk);
        // Room for A, C and D: writing D must evict exactly B.
        let d_size = {
            let scratch = tempfile::tempdir().unwrap();
            let l = disk_loader(scratch.path());
            let loaded = l.load(&d).await.unwrap();
            size(&l.cache().artifact_path(&loaded.content_hash).unwrap())
        };
        let bounded = make(size(&paths[0]) + size(&paths[2]) + d_size);
        let loaded = bounded.load(&d).await.unwrap();
        assert_eq!(loaded.source, CacheSource::Compiled);
        assert_eq!(bounded.cache().stats().evictions, 1);
        assert!(paths[0].exists(), "A was used last: kept");
        assert!(!paths[1].exists(), "B was least recently used: evicted");
        assert!(paths[2].exists(), "C: kept");
        assert!(
            bounded
                .cache()
                .artifact_path(&loaded.content_hash)
                .unwrap()
                .exists()
        );
    }

    /// Temporary files a crash left mid-write are deleted once over an
    /// hour old; a fresh one (a write in progress) is left alone.
    #[tokio::test]
    async fn stale_temporary_files_are_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let first = disk_loader(dir.path());
        first.load(&read(artifacts::HELLO)).await.unwrap();
        let key_dir = first.cache().dir().unwrap().to_path_buf();
        let stale = key_dir.join(".deadbeef.1.1.tmp");
        let fresh = key_dir.join(".cafebabe.2.2.tmp");
        std::fs::write(&stale, b"half an artifact").unwrap();
        std::fs::write(&fresh, b"being written").unwrap();
        age(&stale, Duration::from_secs(2 * 3600));
        // Housekeeping runs after the next artifact is written.
        disk_loader(dir.path())
            .load(&read(artifacts::FLAKY))
            .await
            .unwrap();
        assert!(!stale.exists(), "a stale temporary file was left behind");
        assert!(fresh.exists(), "a fresh temporary file was deleted");
    }

    /// The engine-key directory is made private (0700) even if it existed
    /// with wider permissions, and a cache root others can write to draws
    /// a warning.
    #[test]
    fn the_cache_directory_is_private_and_a_shared_root_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let key_dir = root.join(engine().compatibility_key());
        std::fs::create_dir_all(&key_dir).unwrap();
        std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let logs = Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
        let writer = {
            let logs = logs.clone();
            move || Captured(logs.clone())
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        let cache = tracing::subscriber::with_default(subscriber, || {
            CompiledCache::new(
                engine(),
                CacheConfig {
                    dir: Some(root.clone()),
                    ..CacheConfig::default()
                },
            )
        });
        assert_eq!(cache.dir(), Some(key_dir.as_path()));
        let mode = std::fs::metadata(&key_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "engine-key directory mode {mode:o}");
        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        assert!(
            text.contains("WARN") && text.contains("writable by other users"),
            "{text}"
        );
        // A private root: no warning.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        logs.lock().unwrap().clear();
        let subscriber = tracing_subscriber::fmt()
            .with_writer({
                let logs = logs.clone();
                move || Captured(logs.clone())
            })
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            CompiledCache::new(
                engine(),
                CacheConfig {
                    dir: Some(root.clone()),
                    ..CacheConfig::default()
                },
            )
        });
        assert!(logs.lock().unwrap().is_empty());
    }

    /// A log writer into a shared buffer.
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}

/// Contract 0.2.0 beside 0.1.0: a package built against the frozen 0.1
/// world (with wit-bindgen alone, as 0.1 packages were) and packages of
/// the current SDK load into the same metadata and run on one host.
mod contracts {
    use super::*;
    use culvert::{ExecutionStatus, Runner, RunnerConfig};
    use serde_json::json;

    #[tokio::test]
    async fn a_0_1_package_and_a_0_2_package_load_side_by_side() {
        let old = load(artifacts::CONTRACT_V01).await;
        assert_eq!(old.metadata.contract_version, "0.1.0");
        assert!(old.metadata.schedules.is_empty(), "0.1 has no schedules");
        let wf = old.metadata.workflow("legacy").expect("workflow legacy");
        assert_eq!(wf.tasks[1].dependencies, ["first"]);
        let new = load(artifacts::SANDBOX_PROBE).await;
        assert_eq!(new.metadata.contract_version, "0.2.0");
        // The schedules `#[workflow(schedule(...))]` declares arrive intact.
        let s = &new.metadata.schedules;
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].workflow, "chain");
        assert_eq!(s[0].cron, "0 0 3 1 1 *");
        assert_eq!(s[0].timezone, "Europe/Berlin");
        assert_eq!(
            s[0].context,
            *json!({"from": "schedule"}).as_object().unwrap()
        );
        assert_eq!(s[0].catch_up, culvert::CatchUp::Latest);
        assert_eq!(s[0].overlap, culvert::Overlap::Skip);
        assert_eq!(s[1].timezone, "UTC", "the default");
        assert_eq!(s[1].catch_up, culvert::CatchUp::Skip);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_0_1_package_runs_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        let r = Runner::open(RunnerConfig::new(&url).cache_dir(dir.path().join("cache")))
            .await
            .unwrap();
        r.start_executor();
        r.register_package("public", &read(artifacts::CONTRACT_V01))
            .await
            .unwrap();
        r.register_package("public", &read(artifacts::HELLO))
            .await
            .unwrap();
        let ctx = |v: serde_json::Value| v.as_object().unwrap().clone();
        let run = |workflow: &'static str, context| {
            let r = &r;
            async move {
                let row = r
                    .start_execution("public", workflow, None, context)
                    .await
                    .unwrap();
                r.wait(row.id, Some(Duration::from_secs(60))).await.unwrap()
            }
        };
        let done = run("legacy", ctx(json!({"n": 1}))).await;
        assert_eq!(done.status, ExecutionStatus::Completed, "{:?}", done.error);
        assert_eq!(
            done.output.unwrap(),
            json!({"n": 1, "first": "0.1", "second": "0.1"})
        );
        // Its log import (0.1's `host`) reaches the attempt's stored logs.
        let logs = r
            .logs("public", done.id, Some("first"), None)
            .await
            .unwrap();
        let text = format!("{:?}", logs[0].records);
        assert!(text.contains("0.1 task first, attempt 1"), "{text}");
        // Its task error (0.1's `task-error`) arrives typed.
        let failed = run("legacy", ctx(json!({"fail": true}))).await;
        assert_eq!(failed.status, ExecutionStatus::Failed);
        let (_, tasks, _) = r.execution("public", failed.id).await.unwrap();
        assert_eq!(tasks[0].last_error_kind.as_deref(), Some("permanent"));
        assert!(
            tasks[0]
                .last_error
                .as_deref()
                .unwrap()
                .contains("first was told to fail"),
            "{:?}",
            tasks[0].last_error
        );
        // And a 0.2 package runs beside it.
        let hello = run("hello", ctx(json!({"name": "both"}))).await;
        assert_eq!(hello.status, ExecutionStatus::Completed);
        r.shutdown().await;
    }
}
