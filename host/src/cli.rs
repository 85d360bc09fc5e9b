//! The `culvert` command line.
//!
//! Every command prints plain text by default and one JSON document with
//! `--json`. Errors are one line on stderr and a non-zero exit code.

use crate::files;
use crate::guest_text::{self, Escaped};
use crate::loader::LoadedPackage;
use crate::metadata::{Condition, PackageMetadata, RetryPolicy, TriggerRule};
use crate::scheduler::{ExecutionStatus, TaskStatus};
use crate::store::{
    self, EventRow, ExecutionFilter, ExecutionRow, HostRecord, PackageRow, Store, TaskRow,
    redact_url,
};
use crate::tenants::{Grant, GrantKind, TenantLimits};
use crate::{
    CacheConfig, CacheSource, CompiledCache, EngineConfig, LoaderConfig, PackageLoader, Runner,
    RunnerConfig, SandboxEngine,
};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Culvert: durable workflows whose tasks run as sandboxed WebAssembly
/// components.
#[derive(Debug, Parser)]
#[command(name = "culvert", version, about, long_about = None)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalArgs {
    /// Database URL: `sqlite://PATH` or `postgres://...`. Default: an SQLite
    /// file in the data directory.
    #[arg(long, global = true, env = "CULVERT_DATABASE_URL")]
    pub database: Option<String>,
    /// Where compiled code is cached. Default: `cache/` in the data
    /// directory.
    #[arg(long, global = true, env = "CULVERT_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The data directory. Default: `$XDG_DATA_HOME/culvert`, or
    /// `~/.local/share/culvert`.
    #[arg(long, global = true, env = "CULVERT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log filter, as in `RUST_LOG` (e.g. `info`, `culvert=debug`).
    #[arg(long, global = true, env = "CULVERT_LOG", default_value = "warn")]
    pub log: String,
    /// Log line format: `text`, or `json` for one JSON object per line.
    #[arg(
        long,
        global = true,
        env = "CULVERT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines: time, level, target, message, fields.
    Text,
    /// One JSON object per line, with `timestamp`, `level`, `target` and
    /// `fields` (the message included).
    Json,
}

impl GlobalArgs {
    /// The data directory, created if missing.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        let dir = match &self.data_dir {
            Some(d) => d.clone(),
            None => {
                if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
                    PathBuf::from(x).join("culvert")
                } else if let Some(home) = std::env::var_os("HOME") {
                    PathBuf::from(home).join(".local/share/culvert")
                } else {
                    PathBuf::from(".culvert")
                }
            }
        };
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        Ok(dir)
    }

    /// The cache directory.
    ///
    /// # Errors
    /// When the data directory cannot be created.
    pub fn cache_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.cache_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(self.data_dir()?.join("cache")),
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect, register, list and remove packages.
    #[command(subcommand)]
    Package(PackageCommand),
    /// Run the reconcile loop and the executor (which claims, runs and
    /// schedules tasks) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Show what running hosts report (or, with none, what the database
    /// holds), with cache counters.
    Status {
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Start an execution of a registered workflow.
    Run(RunArgs),
    /// Run a package file end to end in a throwaway in-memory store,
    /// without registering it anywhere (the sandboxed-CI mode).
    Exec(ExecArgs),
    /// List and show executions.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Cancel an execution: pending tasks are skipped, running ones
    /// interrupted.
    Cancel {
        /// The execution id.
        id: Uuid,
        /// The tenant that owns it.
        #[arg(long, default_value = "public")]
        tenant: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Register the example packages in a database, run `etl` and `flaky`
    /// to completion, and print what happened.
    Demo(DemoArgs),
    /// Create, list, show, update and delete tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Grant a tenant a capability its packages declare (the operator's key
    /// of the two-key rule).
    Grant(GrantArgs),
    /// Take a grant back.
    Revoke(GrantArgs),
    /// Run the benchmarks behind docs/PERFORMANCE.md (build with
    /// --release first).
    Bench(BenchArgs),
}

/// `culvert tenant ...`
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant, optionally with limits (`--set key=value`).
    Create {
        /// The tenant: 1 to 63 of [a-z0-9_-].
        name: String,
        /// A limit, as `key=value` (repeatable); see `tenant show`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show a tenant's limits (defaults included), grants and usage.
    Show {
        /// The tenant.
        name: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's limits.
    Update {
        /// The tenant.
        name: String,
        /// A limit, as `key=value` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        set: Vec<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Delete a tenant with its packages, executions and grants. Refused
    /// while executions are unfinished, unless --force.
    Delete {
        /// The tenant.
        name: String,
        /// Cancel unfinished executions first.
        #[arg(long)]
        force: bool,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `culvert grant` / `culvert revoke`
#[derive(Debug, Args)]
pub struct GrantArgs {
    /// The tenant.
    #[arg(long, default_value = "public")]
    pub tenant: String,
    /// Limit the grant to this package (default: every package of the
    /// tenant).
    #[arg(long, default_value = "")]
    pub package: String,
    /// An environment variable: `NAME=VALUE` (revoke takes `NAME`).
    #[arg(long, conflicts_with_all = ["dir", "http", "wall_clock", "random"])]
    pub env: Option<String>,
    /// A directory: `GUEST_PATH=HOST_DIR` (revoke takes `GUEST_PATH`).
    #[arg(long, conflicts_with_all = ["http", "wall_clock", "random"])]
    pub dir: Option<String>,
    /// With --dir: allow writes.
    #[arg(long)]
    pub writable: bool,
    /// Outbound HTTP to this host (recorded; this host version offers no
    /// HTTP, so packages importing it do not load).
    #[arg(long, conflicts_with_all = ["wall_clock", "random"])]
    pub http: Option<String>,
    /// The real wall clock.
    #[arg(long, conflicts_with = "random")]
    pub wall_clock: bool,
    /// The secure random generator.
    #[arg(long)]
    pub random: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `culvert bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark.
    #[arg(value_enum)]
    pub which: BenchKind,
    /// A directory holding hello.wasm, etl.wasm and shapes.wasm (and
    /// sandbox_probe.wasm for `tenants`). Default: build them with cargo.
    #[arg(long)]
    pub packages: Option<PathBuf>,
    /// For `throughput`: also run on this PostgreSQL server (URL without a
    /// database, e.g. postgres://postgres@127.0.0.1:5432), with one host and
    /// with two.
    #[arg(long)]
    pub postgres: Option<String>,
    /// Tasks each host runs at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// For `tenants`: the hostile tenant's max_concurrent_tasks.
    #[arg(long, default_value_t = 4)]
    pub hostile_slots: u32,
    /// For `tenants`: the hostile tenant's max_cpu_cores (default: none,
    /// its fair share).
    #[arg(long)]
    pub hostile_cpu: Option<f64>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// The benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKind {
    /// Compile vs disk load vs memory hit; instantiate + call.
    Cache,
    /// No-op reconcile passes, registration, warm vs cold startup.
    Reconcile,
    /// End-to-end no-op task throughput and dispatch latency.
    Throughput,
    /// A well-behaved tenant alone, then next to a hostile one.
    Tenants,
}

/// `culvert package ...`
#[derive(Debug, Subcommand)]
pub enum PackageCommand {
    /// Validate a package file and print its metadata: workflows, tasks,
    /// dependencies, retry policies, timeouts and trigger rules.
    Inspect {
        /// The package: a `.wasm` component.
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Output format (`--json` is short for `--format json`).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Validate, pre-compile and register a package file.
    Add {
        /// The package: a `.wasm` component.
        file: PathBuf,
        /// The owning tenant.
        #[arg(long, default_value = "public")]
        tenant: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's registered packages.
    List {
        /// The tenant.
        #[arg(long, default_value = "public")]
        tenant: String,
        /// Every tenant's packages (an operator's view).
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Remove a package: every version, or `NAME@VERSION`.
    Remove {
        /// `NAME` or `NAME@VERSION`.
        package: String,
        /// The owning tenant.
        #[arg(long, default_value = "public")]
        tenant: String,
        /// Print one JSON array of what was removed.
        #[arg(long)]
        json: bool,
    },
}

/// `culvert serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Tasks this host runs at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Seconds between reconcile passes when nothing announces a change.
    #[arg(long, default_value_t = 5)]
    pub reconcile_interval: u64,
    /// Seconds a claimed task's lease lasts without a heartbeat.
    #[arg(long, default_value_t = 30)]
    pub lease: u64,
    /// Count fuel, so that tenants' `fuel_per_call` limits apply (costs
    /// some speed; compiled code is cached separately).
    #[arg(long)]
    pub fuel: bool,
}

/// `culvert run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow: `NAME`, or `PACKAGE::NAME` when several packages
    /// define `NAME`.
    pub workflow: String,
    /// The tenant that owns the package.
    #[arg(long, default_value = "public")]
    pub tenant: String,
    /// The initial context: a JSON object.
    #[arg(long, default_value = "{}")]
    pub context: String,
    /// Run this version of the package instead of the newest.
    #[arg(long)]
    pub version: Option<String>,
    /// Wait for the end (running it in this process when no `serve` is
    /// running) and print the final status and context.
    #[arg(long)]
    pub wait: bool,
    /// With `--wait`: give up after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `culvert exec`
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The package: a `.wasm` component.
    pub file: PathBuf,
    /// The workflow to run.
    #[arg(long)]
    pub workflow: String,
    /// The initial context: a JSON object.
    #[arg(long, default_value = "{}")]
    pub context: String,
    /// Give up after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `culvert executions ...`
#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// List a tenant's executions, newest first.
    List {
        /// The tenant.
        #[arg(long, default_value = "public")]
        tenant: String,
        /// Every tenant's executions (an operator's view).
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Only with this status: pending, running, completed, failed or
        /// cancelled.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show one execution: each task's status, attempts, duration and
    /// error, and the event log.
    Show {
        /// The execution id.
        id: Uuid,
        /// The tenant that owns it.
        #[arg(long, default_value = "public")]
        tenant: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `culvert demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// A directory holding `hello.wasm`, `etl.wasm` and `flaky.wasm`.
    /// Default: build the repository's examples with cargo.
    #[arg(long)]
    pub packages: Option<PathBuf>,
}

/// Output formats of `package inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    Text,
    /// One JSON object.
    Json,
    /// Graphviz: one cluster per workflow.
    Dot,
}

/// The exit code of a command whose workflow failed or was cancelled.
pub const EXIT_WORKFLOW_FAILED: i32 = 3;

/// Parse the arguments and run the command. Returns the process exit code:
/// 0 on success, 1 on an error (printed as one line on stderr), 2 on a
/// usage error, and 3 when a workflow run by the command did not complete
/// (it failed or was cancelled).
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_tracing(&cli.global.log, cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            1
        }
    }
}

/// An error and its causes on one line. Errors can quote a guest (a panic
/// in `describe`, say): any control character left after joining the lines
/// is escaped (see [`crate::guest_text`]).
fn one_line(e: &anyhow::Error) -> String {
    guest_text::escape(&format!("{e:#}").replace('\n', " ")).into_owned()
}

fn init_tracing(filter: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // Colours only on a terminal: a log file or pipe gets plain lines, in
    // which any escape byte would have come from a guest (and is escaped).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    let g = &cli.global;
    match cli.command {
        Command::Package(PackageCommand::Inspect { file, json, format }) => {
            let format = if json { Format::Json } else { format };
            inspect(g, &file, format).await
        }
        Command::Package(PackageCommand::Add { file, tenant, json }) => {
            package_add(g, &file, &tenant, json).await
        }
        Command::Package(PackageCommand::List {
            tenant,
            all_tenants,
            json,
        }) => package_list(g, (!all_tenants).then_some(tenant.as_str()), json).await,
        Command::Package(PackageCommand::Remove {
            package,
            tenant,
            json,
        }) => package_remove(g, &package, &tenant, json).await,
        Command::Serve(args) => serve(g, args).await,
        Command::Status { json } => status(g, json).await,
        Command::Run(args) => run_workflow(g, args).await,
        Command::Exec(args) => exec(g, args).await,
        Command::Executions(ExecutionsCommand::List {
            tenant,
            all_tenants,
            status,
            limit,
            json,
        }) => {
            let tenant = (!all_tenants).then_some(tenant.as_str());
            executions_list(g, tenant, status.as_deref(), limit, json).await
        }
        Command::Executions(ExecutionsCommand::Show { id, tenant, json }) => {
            executions_show(g, id, &tenant, json).await
        }
        Command::Cancel { id, tenant, json } => cancel(g, id, &tenant, json).await,
        Command::Demo(args) => demo(g, args).await,
        Command::Tenant(cmd) => tenant(g, cmd).await,
        Command::Grant(args) => grant(g, args, true).await,
        Command::Revoke(args) => grant(g, args, false).await,
        Command::Bench(args) => bench(g, args).await,
    }
}

/// The engine, cache and loader, as the CLI configures them.
fn local_loader(global: &GlobalArgs) -> anyhow::Result<PackageLoader> {
    let engine = SandboxEngine::new(EngineConfig::default()).context("cannot start the engine")?;
    let cache = CompiledCache::new(
        engine,
        CacheConfig {
            dir: Some(global.cache_dir()?),
            ..CacheConfig::default()
        },
    );
    Ok(PackageLoader::new(Arc::new(cache), LoaderConfig::default()))
}

/// Read a package file, with an error that names it. Only a regular file
/// (or a link to one) is read, and only up to the loader's size limit plus
/// one byte: a FIFO, a directory or a device is refused without blocking,
/// and `/dev/zero` or a huge file cannot exhaust memory.
fn read_package(file: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = LoaderConfig::default().max_component_bytes as u64;
    let (handle, meta) = files::open_regular(file, files::Links::Follow).map_err(|e| match e {
        files::OpenError::Io(e) => anyhow::anyhow!("cannot read {}: {e}", file.display()),
        other => anyhow::anyhow!(
            "cannot read {}: {other}; give the path of a package file (a .wasm component)",
            file.display()
        ),
    })?;
    let too_large = |size: String| {
        anyhow::anyhow!(
            "cannot read {}: it is {size} bytes, over the package size limit of {limit} bytes",
            file.display()
        )
    };
    if meta.len() > limit {
        return Err(too_large(meta.len().to_string()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    let read = files::read_bounded(handle, limit, &mut bytes)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if read > limit {
        return Err(too_large(format!("more than {limit}")));
    }
    Ok(bytes)
}

async fn inspect(global: &GlobalArgs, file: &Path, format: Format) -> anyhow::Result<i32> {
    let bytes = read_package(file)?;
    let loader = local_loader(global)?;
    let pkg = loader
        .load(&bytes)
        .await
        .with_context(|| format!("{} is not a valid package", file.display()))?;
    match format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&inspect_json(&pkg, loader.engine()))?
        ),
        Format::Dot => print!("{}", to_dot(&pkg.metadata)),
        Format::Text => print!(
            "{}",
            inspect_text(
                &pkg,
                &crate::loader::imports_of(loader.engine(), &pkg.compiled.component)
            )
        ),
    }
    Ok(0)
}

fn inspect_json(pkg: &LoadedPackage, engine: &SandboxEngine) -> serde_json::Value {
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
        json!(crate::loader::imports_of(engine, &pkg.compiled.component)),
    );
    v
}

fn describe_source(source: CacheSource) -> &'static str {
    match source {
        CacheSource::Memory => "cache hit (memory)",
        CacheSource::Disk => "cache hit (disk), no compile",
        CacheSource::Compiled => "compiled now (cache miss)",
    }
}

fn inspect_text(pkg: &LoadedPackage, imports: &[String]) -> String {
    use std::fmt::Write;
    let m = &pkg.metadata;
    let mut out = String::new();
    let _ = writeln!(out, "{} {}", m.name, m.version);
    if !m.description.is_empty() {
        let _ = writeln!(out, "  {}", m.description);
    }
    let _ = writeln!(out, "content hash  {}", pkg.content_hash);
    let _ = writeln!(out, "size          {} bytes", pkg.size);
    let _ = writeln!(
        out,
        "contract      culvert:plugin@{} (sdk {})",
        m.contract_version,
        if m.sdk_version.is_empty() {
            "none"
        } else {
            &m.sdk_version
        }
    );
    if !m.author.is_empty() {
        let _ = writeln!(out, "author        {}", m.author);
    }
    let _ = writeln!(out, "compile       {}", describe_source(pkg.source));
    let _ = writeln!(out, "capabilities  {}", capabilities_text(m));
    let _ = writeln!(out, "imports       {}", imports.join(", "));
    for wf in &m.workflows {
        let _ = writeln!(out, "\nworkflow {} ({} tasks)", wf.name, wf.tasks.len());
        if !wf.description.is_empty() {
            let _ = writeln!(out, "  {}", wf.description);
        }
        for t in &wf.tasks {
            let _ = writeln!(out, "  task {}", t.id);
            if !t.dependencies.is_empty() {
                let _ = writeln!(out, "    depends on  {}", t.dependencies.join(", "));
            }
            let _ = writeln!(out, "    retry       {}", retry_text(&t.retry));
            let _ = writeln!(
                out,
                "    timeout     {}",
                t.timeout_ms
                    .map(|ms| format!("{ms} ms"))
                    .unwrap_or_else(|| "host default".into())
            );
            if let Some(rule) = &t.trigger {
                let _ = writeln!(out, "    trigger     {}", trigger_text(rule));
            }
        }
    }
    out
}

fn capabilities_text(m: &PackageMetadata) -> String {
    let c = &m.capabilities;
    if c.is_empty() {
        return "none requested".into();
    }
    let mut parts = Vec::new();
    if !c.env.is_empty() {
        parts.push(format!("env {}", c.env.join(",")));
    }
    for d in &c.dirs {
        parts.push(format!(
            "dir {} ({})",
            d.guest_path,
            if d.writable {
                "read-write"
            } else {
                "read-only"
            }
        ));
    }
    if !c.http_hosts.is_empty() {
        parts.push(format!("http {}", c.http_hosts.join(",")));
    }
    if c.wall_clock {
        parts.push("wall-clock".into());
    }
    if c.random {
        parts.push("random".into());
    }
    parts.join("; ")
}

/// A retry policy in one line.
pub fn retry_text(r: &RetryPolicy) -> String {
    if r.max_attempts <= 1 {
        return "none (1 attempt)".into();
    }
    format!(
        "{} attempts, {:?} backoff from {} ms to {} ms{}, on {}",
        r.max_attempts,
        r.backoff,
        r.initial_delay_ms,
        r.max_delay_ms,
        if r.jitter { " with jitter" } else { "" },
        match r.retry_on {
            crate::metadata::RetryOn::AllErrors => "all errors",
            crate::metadata::RetryOn::TransientOnly => "transient errors",
            crate::metadata::RetryOn::Never => "no errors",
        }
    )
    .to_lowercase()
}

/// A trigger rule in one line.
pub fn trigger_text(rule: &TriggerRule) -> String {
    let conds = |cs: &[Condition]| cs.iter().map(condition_text).collect::<Vec<_>>().join(", ");
    match rule {
        TriggerRule::Always => "always".into(),
        TriggerRule::All(c) => format!("all of [{}]", conds(c)),
        TriggerRule::Any(c) => format!("any of [{}]", conds(c)),
        TriggerRule::None(c) => format!("none of [{}]", conds(c)),
    }
}

fn condition_text(c: &Condition) -> String {
    match c {
        Condition::TaskSucceeded { task } => format!("{task} succeeded"),
        Condition::TaskFailed { task } => format!("{task} failed"),
        Condition::TaskSkipped { task } => format!("{task} skipped"),
        Condition::ContextExists { key } => format!("context has {key}"),
        Condition::ContextEquals { key, value } => format!("{key} == {value}"),
        Condition::ContextNotEquals { key, value } => format!("{key} != {value}"),
        Condition::ContextGreaterThan { key, value } => format!("{key} > {value}"),
        Condition::ContextLessThan { key, value } => format!("{key} < {value}"),
        Condition::ContextContains { key, value } => format!("{key} contains {value}"),
    }
}

/// Graphviz for every workflow of a package, one cluster each.
pub fn to_dot(m: &PackageMetadata) -> String {
    use std::fmt::Write;
    let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", q(&m.label()));
    let _ = writeln!(out, "  rankdir=LR;");
    let _ = writeln!(out, "  node [shape=box, style=rounded];");
    for wf in &m.workflows {
        let _ = writeln!(out, "  subgraph {} {{", q(&format!("cluster_{}", wf.name)));
        let _ = writeln!(out, "    label={};", q(&wf.name));
        for t in &wf.tasks {
            let id = q(&format!("{}/{}", wf.name, t.id));
            let style = if t.trigger.is_some() {
                ", style=\"rounded,dashed\""
            } else {
                ""
            };
            let _ = writeln!(out, "    {id} [label={}{style}];", q(&t.id));
            for d in &t.dependencies {
                let _ = writeln!(out, "    {} -> {id};", q(&format!("{}/{}", wf.name, d)));
            }
        }
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "}}");
    out
}

impl GlobalArgs {
    /// The database URL: `--database`, or an SQLite file in the data
    /// directory.
    ///
    /// # Errors
    /// When the data directory cannot be created.
    pub fn database_url(&self) -> anyhow::Result<String> {
        match &self.database {
            Some(url) => Ok(url.clone()),
            None => Ok(format!(
                "sqlite://{}",
                self.data_dir()?.join("culvert.db").display()
            )),
        }
    }
}

fn runner_config(g: &GlobalArgs) -> anyhow::Result<RunnerConfig> {
    Ok(RunnerConfig::new(g.database_url()?).cache_dir(g.cache_dir()?))
}

async fn open_runner(config: RunnerConfig) -> anyhow::Result<Runner> {
    let url = redact_url(&config.database_url);
    Runner::open(config)
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

async fn open_store(g: &GlobalArgs) -> anyhow::Result<Arc<dyn Store>> {
    let url = g.database_url()?;
    store::open(&url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))
}

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

fn parse_context(text: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => anyhow::bail!("--context must be a JSON object, like '{{\"key\": 1}}'"),
        Err(e) => anyhow::bail!("--context is not valid JSON: {e}"),
    }
}

fn split_name_version(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@') {
        Some((n, v)) if !v.is_empty() => (n, Some(v)),
        _ => (spec.trim_end_matches('@'), None),
    }
}

async fn package_add(g: &GlobalArgs, file: &Path, tenant: &str, json: bool) -> anyhow::Result<i32> {
    let bytes = read_package(file)?;
    let runner = open_runner(runner_config(g)?).await?;
    let r = runner
        .register_package(tenant, &bytes)
        .await
        .with_context(|| format!("cannot register {}", file.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{} {} (tenant {})",
            if r.created {
                "registered"
            } else {
                "already registered:"
            },
            r.label(),
            r.tenant
        );
        println!("  id            {}", r.id);
        println!("  content hash  {}", r.content_hash);
    }
    Ok(0)
}

fn package_json(p: &PackageRow) -> Value {
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
    })
}

async fn package_list(g: &GlobalArgs, tenant: Option<&str>, json: bool) -> anyhow::Result<i32> {
    let store = open_store(g).await?;
    let rows = store.list_packages(tenant).await?;
    if json {
        let items: Vec<Value> = rows.iter().map(package_json).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no packages registered");
        return Ok(0);
    }
    println!(
        "{:<10} {:<24} {:<10} {:<14} {:<36} WORKFLOWS",
        "TENANT", "NAME", "VERSION", "HASH", "ID"
    );
    for p in &rows {
        let workflows: Vec<&str> = p
            .metadata
            .workflows
            .iter()
            .map(|w| w.name.as_str())
            .collect();
        println!(
            "{:<10} {:<24} {:<10} {:<14} {:<36} {}",
            p.tenant,
            p.name,
            p.version,
            &p.content_hash[..12],
            p.id,
            workflows.join(",")
        );
    }
    Ok(0)
}

async fn package_remove(
    g: &GlobalArgs,
    spec: &str,
    tenant: &str,
    json: bool,
) -> anyhow::Result<i32> {
    let (name, version) = split_name_version(spec);
    let runner = open_runner(runner_config(g)?).await?;
    let removed = runner.remove_package(tenant, name, version).await?;
    if json {
        let items: Vec<Value> = removed.iter().map(package_json).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
    } else {
        for p in &removed {
            println!(
                "removed {}@{} (tenant {}, id {})",
                p.name, p.version, p.tenant, p.id
            );
        }
    }
    Ok(0)
}

/// What a host reports about itself.
async fn host_status(runner: &Runner) -> Value {
    json!({
        "host_id": runner.executor().host_id(),
        "reconciler": runner.status().await,
        "cache": runner.loader().cache().stats(),
        "executor": runner.executor().stats(),
        "pooling_allocator": runner.loader().engine().pooling(),
    })
}

async fn serve(g: &GlobalArgs, args: ServeArgs) -> anyhow::Result<i32> {
    let mut config = runner_config(g)?;
    config.executor.concurrency = args.concurrency.max(1);
    config.engine.fuel = args.fuel;
    config.reconciler.reconcile_interval = Duration::from_secs(args.reconcile_interval.max(1));
    config.executor.lease = Duration::from_secs(args.lease.max(1));
    config.executor.heartbeat_interval = config.executor.lease / 3;
    config.executor.recovery_interval = (config.executor.lease / 2).min(Duration::from_secs(5));
    let url = redact_url(&config.database_url);
    let runner = open_runner(config).await?;
    let host_id = runner.executor().host_id();
    runner.start();
    let started_at = store::now_ms();
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    eprintln!("culvert serving: host {host_id}, database {url}. Stop with Ctrl-C or SIGTERM.");
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut beat = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = beat.tick() => {
                let record = HostRecord {
                    id: host_id,
                    hostname: hostname.clone(),
                    pid: std::process::id() as i64,
                    started_at,
                    heartbeat_at: store::now_ms(),
                    status: host_status(&runner).await,
                };
                if let Err(e) = runner.store().upsert_host(&record).await {
                    tracing::warn!(error = %e, "cannot record this host's heartbeat");
                }
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
        }
    }
    eprintln!("culvert: shutting down; waiting for running tasks to finish");
    runner.shutdown().await;
    let _ = runner.store().remove_host(host_id).await;
    eprintln!("culvert: stopped");
    Ok(0)
}

fn cache_dir_summary(dir: &Path) -> Value {
    let mut files = 0u64;
    let mut bytes = 0u64;
    if let Ok(keys) = std::fs::read_dir(dir) {
        for key in keys.flatten() {
            if !crate::cache::is_engine_key(&key.file_name().to_string_lossy()) {
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

async fn status(g: &GlobalArgs, json_out: bool) -> anyhow::Result<i32> {
    let store = open_store(g).await?;
    let hosts = store.live_hosts(store::now_ms() - 10_000).await?;
    let packages = store.list_packages(None).await?;
    let mut by_status = serde_json::Map::new();
    for s in ["pending", "running", "completed", "failed", "cancelled"] {
        let n = store
            .list_executions(ExecutionFilter {
                status: ExecutionStatus::parse(s),
                limit: Some(100_000),
                ..ExecutionFilter::default()
            })
            .await?
            .len();
        by_status.insert(s.into(), json!(n));
    }
    let cache = cache_dir_summary(&g.cache_dir()?);
    let report = json!({
        "database": store.display_url(),
        "serving": !hosts.is_empty(),
        "hosts": hosts,
        "packages": packages.iter().map(package_json).collect::<Vec<_>>(),
        "executions": by_status,
        "cache": cache,
    });
    if json_out {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(0);
    }
    println!("database   {}", store.display_url());
    if hosts.is_empty() {
        println!("serving    no `culvert serve` is running (status below is the database's)");
    }
    for h in &hosts {
        println!(
            "host       {} (pid {} on {}, up since {}, last heartbeat {})",
            h.id,
            h.pid,
            h.hostname,
            fmt_ms(h.started_at),
            fmt_ms(h.heartbeat_at)
        );
        let r = &h.status["reconciler"];
        println!(
            "  packages loaded {}, failed {}",
            r["packages_loaded"],
            r["failed"].as_array().map(|a| a.len()).unwrap_or(0)
        );
        for f in r["failed"].as_array().into_iter().flatten() {
            println!(
                "    failed {}: {}",
                f["id"],
                f["error"].as_str().unwrap_or("")
            );
        }
        let c = &h.status["cache"];
        println!(
            "  cache: {} memory hits, {} disk hits, {} compiles ({} µs compiling), {} discarded",
            c["memory_hits"], c["disk_hits"], c["misses"], c["compile_micros"], c["discarded"]
        );
        let e = &h.status["executor"];
        println!(
            "  executor: {} running, {} claimed, {} succeeded, {} failed attempts",
            e["running"], e["claimed"], e["succeeded"], e["failed"]
        );
    }
    println!("packages   {} registered", packages.len());
    for p in &packages {
        println!(
            "  {}::{}@{}  {}",
            p.tenant,
            p.name,
            p.version,
            &p.content_hash[..12]
        );
    }
    println!(
        "executions {}",
        by_status
            .iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "cache dir  {} ({} artifacts, {} bytes)",
        cache["dir"].as_str().unwrap_or(""),
        cache["artifacts"],
        cache["bytes"]
    );
    Ok(0)
}

/// An execution with its tasks (and events) as JSON.
fn execution_json(row: &ExecutionRow, tasks: &[TaskRow], events: Option<&[EventRow]>) -> Value {
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
fn execution_text(row: &ExecutionRow, tasks: &[TaskRow], events: Option<&[EventRow]>) -> String {
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
        None => {
            let _ = writeln!(out, "  final context: (none yet)");
        }
    }
    out
}

fn exit_code(status: ExecutionStatus) -> i32 {
    if status == ExecutionStatus::Completed {
        0
    } else {
        EXIT_WORKFLOW_FAILED
    }
}

async fn run_workflow(g: &GlobalArgs, args: RunArgs) -> anyhow::Result<i32> {
    let context = parse_context(&args.context)?;
    let runner = open_runner(runner_config(g)?).await?;
    let row = runner
        .start_execution(
            &args.tenant,
            &args.workflow,
            args.version.as_deref(),
            context,
        )
        .await?;
    if !args.wait {
        if args.json {
            println!("{}", json!({"id": row.id, "status": row.status}));
        } else {
            println!("{}", row.id);
        }
        return Ok(0);
    }
    let serving = !runner
        .store()
        .live_hosts(store::now_ms() - 10_000)
        .await?
        .is_empty();
    if !serving {
        // Run this execution here, and nothing else.
        runner.executor().only_execution(row.id);
        runner.start_executor();
    }
    let done = runner
        .wait(row.id, args.timeout.map(Duration::from_secs))
        .await;
    runner.shutdown().await;
    let done = done?;
    let (_, tasks, _) = runner.execution(&args.tenant, done.id).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&execution_json(&done, &tasks, None))?
        );
    } else {
        print!("{}", execution_text(&done, &tasks, None));
    }
    Ok(exit_code(done.status))
}

async fn exec(g: &GlobalArgs, args: ExecArgs) -> anyhow::Result<i32> {
    let context = parse_context(&args.context)?;
    let bytes = read_package(&args.file)?;
    let config = RunnerConfig::new("sqlite::memory:").cache_dir(g.cache_dir()?);
    let runner = open_runner(config).await?;
    runner
        .register_package("public", &bytes)
        .await
        .with_context(|| format!("{} is not a valid package", args.file.display()))?;
    let row = runner
        .start_execution("public", &args.workflow, None, context)
        .await?;
    runner.start_executor();
    let done = runner
        .wait(row.id, args.timeout.map(Duration::from_secs))
        .await;
    runner.shutdown().await;
    let done = done?;
    let (_, tasks, _) = runner.execution("public", done.id).await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&execution_json(&done, &tasks, None))?
        );
    } else {
        print!("{}", execution_text(&done, &tasks, None));
    }
    Ok(exit_code(done.status))
}

async fn executions_list(
    g: &GlobalArgs,
    tenant: Option<&str>,
    status: Option<&str>,
    limit: i64,
    json_out: bool,
) -> anyhow::Result<i32> {
    let status = match status {
        None => None,
        Some(s) => Some(ExecutionStatus::parse(s).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown status '{s}': use pending, running, completed, failed or cancelled"
            )
        })?),
    };
    let store = open_store(g).await?;
    let rows = store
        .list_executions(ExecutionFilter {
            tenant,
            status,
            limit: Some(limit),
        })
        .await?;
    if json_out {
        let items: Vec<Value> = rows
            .iter()
            .map(|r| execution_json(r, &[], None))
            .map(|mut v| {
                if let Some(o) = v.as_object_mut() {
                    o.remove("tasks");
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    if rows.is_empty() {
        println!("no executions");
        return Ok(0);
    }
    println!(
        "{:<36} {:<10} {:<20} {:<10} {:<24} DURATION",
        "ID", "TENANT", "WORKFLOW", "STATUS", "CREATED"
    );
    for r in &rows {
        println!(
            "{:<36} {:<10} {:<20} {:<10} {:<24} {}",
            r.id,
            r.tenant,
            r.workflow,
            r.status.as_str(),
            fmt_ms(r.created_at),
            r.finished_at
                .map(|f| format!("{} ms", f - r.created_at))
                .unwrap_or_else(|| "-".into())
        );
    }
    Ok(0)
}

async fn executions_show(
    g: &GlobalArgs,
    id: Uuid,
    tenant: &str,
    json_out: bool,
) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    let (row, tasks, events) = runner.execution(tenant, id).await?;
    if json_out {
        println!(
            "{}",
            serde_json::to_string_pretty(&execution_json(&row, &tasks, Some(&events)))?
        );
    } else {
        print!("{}", execution_text(&row, &tasks, Some(&events)));
    }
    Ok(0)
}

async fn cancel(g: &GlobalArgs, id: Uuid, tenant: &str, json_out: bool) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    let row = runner.cancel(tenant, id).await?;
    if json_out {
        println!("{}", json!({"id": row.id, "status": row.status}));
    } else {
        println!("cancelled {}", row.id);
    }
    Ok(0)
}

/// The package files in `dir`, or, without one, the given guest crates of
/// this repository built with cargo (`--profile guest`, wasm32-wasip2):
/// what `demo` and `bench` run.
fn guest_packages(dir: Option<PathBuf>, crates: &[&str]) -> anyhow::Result<PathBuf> {
    if let Some(d) = dir {
        return Ok(d);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| p.join("examples").is_dir() && p.join("tests/guests").is_dir())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot find this repository's guest crates to build; pass --packages DIR holding {}",
                crates
                    .iter()
                    .map(|c| format!("{}.wasm", c.replace('-', "_")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    eprintln!(
        "building {} (cargo build --target wasm32-wasip2) ...",
        crates.join(", ")
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut args = vec![
        "build",
        "--quiet",
        "--profile",
        "guest",
        "--target",
        "wasm32-wasip2",
    ];
    for c in crates {
        args.extend(["-p", c]);
    }
    let status = std::process::Command::new(cargo)
        .current_dir(&workspace)
        .args(&args)
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .context("cannot run cargo to build the packages")?;
    if !status.success() {
        anyhow::bail!(
            "building {} failed; is the wasm target installed? Run: rustup target add wasm32-wasip2",
            crates.join(", ")
        );
    }
    Ok(target.join("wasm32-wasip2").join("guest"))
}

async fn demo(g: &GlobalArgs, args: DemoArgs) -> anyhow::Result<i32> {
    let dir = guest_packages(args.packages, &["hello", "etl", "flaky"])?;
    let runner = open_runner(runner_config(g)?).await?;
    println!("database: {}", redact_url(&g.database_url()?));
    for name in ["hello", "etl", "flaky"] {
        let file = dir.join(format!("{name}.wasm"));
        let bytes = read_package(&file)?;
        let r = runner
            .register_package("public", &bytes)
            .await
            .with_context(|| format!("cannot register {}", file.display()))?;
        println!(
            "{} {} ({}, compile {})",
            if r.created {
                "registered"
            } else {
                "already registered"
            },
            r.label(),
            &r.content_hash[..12],
            if r.cache_hit { "from cache" } else { "fresh" }
        );
    }
    runner.start_executor();
    let mut code = 0;
    for (workflow, context) in [
        ("etl", json!({"notify": true})),
        ("flaky", json!({"fail_times": 2})),
    ] {
        let ctx = context.as_object().cloned().unwrap_or_default();
        println!("\nrunning {workflow} with context {context}");
        let row = runner
            .start_execution("public", workflow, None, ctx)
            .await?;
        let done = runner.wait(row.id, Some(Duration::from_secs(120))).await?;
        let (_, tasks, _) = runner.execution("public", done.id).await?;
        print!("{}", execution_text(&done, &tasks, None));
        code = code.max(exit_code(done.status));
    }
    runner.shutdown().await;
    println!("\nsee them again with: culvert executions list");
    Ok(code)
}

fn apply_limits(limits: &mut TenantLimits, set: &[String]) -> anyhow::Result<()> {
    for kv in set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--set takes KEY=VALUE, got '{kv}'"))?;
        limits
            .set(k.trim(), v.trim())
            .map_err(|e| anyhow::anyhow!(e))?;
    }
    Ok(())
}

fn limits_text(l: &TenantLimits) -> String {
    let defaults = TenantLimits::default();
    let v = serde_json::to_value(l).unwrap_or_default();
    let d = serde_json::to_value(&defaults).unwrap_or_default();
    TenantLimits::KEYS
        .iter()
        .map(|k| {
            let mark = if v[k] == d[k] { " (default)" } else { "" };
            format!("  {k:<28} {}{mark}", v[k])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn tenant(g: &GlobalArgs, cmd: TenantCommand) -> anyhow::Result<i32> {
    let runner = open_runner(runner_config(g)?).await?;
    match cmd {
        TenantCommand::Create { name, set, json } => {
            let mut limits = TenantLimits::default();
            apply_limits(&mut limits, &set)?;
            let t = runner.create_tenant(&name, &limits).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("created tenant {}\n{}", t.name, limits_text(&t.limits));
            }
        }
        TenantCommand::List { json } => {
            let tenants = runner.tenants().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tenants)?);
            } else {
                for t in &tenants {
                    println!("{}", t.name);
                }
            }
        }
        TenantCommand::Show { name, json } => {
            let t = runner.tenant(&name).await?;
            let grants = runner.grants(&name).await?;
            let packages = runner.list_packages(Some(&name)).await?.len();
            let unfinished = runner.store().count_unfinished(&name).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({
                        "name": t.name,
                        "created_at": fmt_ms(t.created_at),
                        "limits": t.limits,
                        "defaults": TenantLimits::default(),
                        "grants": grants,
                        "packages": packages,
                        "unfinished_executions": unfinished,
                    }))?
                );
            } else {
                println!("tenant {} (created {})", t.name, fmt_ms(t.created_at));
                println!("limits:\n{}", limits_text(&t.limits));
                println!(
                    "usage:\n  packages                 {packages}\n  unfinished executions    {unfinished}"
                );
                println!("grants:");
                if grants.is_empty() {
                    println!("  none");
                }
                for gr in &grants {
                    println!(
                        "  {:<10} {:<24} {}{}{}",
                        gr.kind.as_str(),
                        gr.name,
                        gr.value,
                        if gr.writable { " (writable)" } else { "" },
                        if gr.package.is_empty() {
                            String::new()
                        } else {
                            format!(" [package {}]", gr.package)
                        }
                    );
                }
            }
        }
        TenantCommand::Update { name, set, json } => {
            let mut limits = runner.tenant(&name).await?.limits;
            apply_limits(&mut limits, &set)?;
            let t = runner.update_tenant(&name, &limits).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
            } else {
                println!("updated tenant {}\n{}", t.name, limits_text(&t.limits));
            }
        }
        TenantCommand::Delete { name, force, json } => {
            runner.delete_tenant(&name, force).await?;
            if json {
                println!("{}", json!({"deleted": name}));
            } else {
                println!("deleted tenant {name}");
            }
        }
    }
    Ok(0)
}

async fn grant(g: &GlobalArgs, args: GrantArgs, give: bool) -> anyhow::Result<i32> {
    let (kind, name, value) = if let Some(env) = &args.env {
        let (n, v) = env.split_once('=').unwrap_or((env.as_str(), ""));
        (GrantKind::Env, n.to_string(), v.to_string())
    } else if let Some(dir) = &args.dir {
        let (n, v) = dir.split_once('=').unwrap_or((dir.as_str(), ""));
        let host = if give && !v.is_empty() {
            std::fs::canonicalize(v)
                .with_context(|| format!("cannot use {v} as a granted directory"))?
                .display()
                .to_string()
        } else {
            v.to_string()
        };
        (GrantKind::Dir, n.to_string(), host)
    } else if let Some(host) = &args.http {
        (GrantKind::Http, host.clone(), String::new())
    } else if args.wall_clock {
        (GrantKind::WallClock, String::new(), String::new())
    } else if args.random {
        (GrantKind::Random, String::new(), String::new())
    } else {
        anyhow::bail!("say what to grant: --env, --dir, --http, --wall-clock or --random");
    };
    let runner = open_runner(runner_config(g)?).await?;
    let record = Grant {
        tenant: args.tenant.clone(),
        package: args.package.clone(),
        kind,
        name,
        value,
        writable: args.writable,
    };
    if give {
        if kind == GrantKind::Env && !args.env.as_deref().unwrap_or("").contains('=') {
            anyhow::bail!("--env takes NAME=VALUE");
        }
        runner.grant(&record).await?;
    } else {
        runner
            .revoke(&record.tenant, &record.package, kind, &record.name)
            .await?;
    }
    if args.json {
        println!("{}", json!({"granted": give, "grant": record}));
    } else {
        println!(
            "{} {} {} for tenant {}{}",
            if give { "granted" } else { "revoked" },
            kind.as_str(),
            record.name,
            record.tenant,
            if record.package.is_empty() {
                String::new()
            } else {
                format!(" (package {})", record.package)
            }
        );
    }
    Ok(0)
}

async fn bench(_g: &GlobalArgs, args: BenchArgs) -> anyhow::Result<i32> {
    if cfg!(debug_assertions) {
        eprintln!("warning: this is a debug build; numbers will be far from a release build's");
    }
    let packages = crate::bench::BenchPackages::new(guest_packages(
        args.packages,
        &["hello", "etl", "shapes", "sandbox-probe"],
    )?);
    let scratch = tempfile_dir()?;
    let started = std::time::Instant::now();
    let result = match args.which {
        BenchKind::Cache => crate::bench::cache(&packages, &scratch).await,
        BenchKind::Reconcile => crate::bench::reconcile(&packages, &scratch, None).await,
        BenchKind::Throughput => {
            crate::bench::throughput(
                &packages,
                &scratch,
                args.postgres.as_deref(),
                args.concurrency,
            )
            .await
        }
        BenchKind::Tenants => {
            crate::bench::tenants(
                &packages,
                &scratch,
                args.concurrency,
                args.hostile_slots,
                args.hostile_cpu,
            )
            .await
        }
    };
    let _ = std::fs::remove_dir_all(&scratch);
    let mut result = result?;
    result["machine"] = crate::bench::machine();
    result["elapsed_seconds"] = json!(started.elapsed().as_secs_f64());
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!("{}", crate::bench::render(&result));
    }
    Ok(0)
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("culvert-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("cannot create a scratch directory")?;
    Ok(dir)
}
