//! The command line's arguments: every command, subcommand and flag, as clap
//! types. `culvert --help` and each command's `--help` come from here.

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
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
    /// `~/.local/share/culvert`, or `./.culvert` when neither is set.
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
    /// Run through this server's HTTP API instead of the database, e.g.
    /// `https://culvert.example.com` (needs `--api-key`). For `package
    /// add|list|remove`, `run`, `executions list|show|retry|logs`, `cancel`
    /// and `status`; the other commands that use a database refuse it.
    #[arg(long, global = true, env = "CULVERT_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// The API key for `--server` (`culvert apikey create` makes one).
    /// Prefer the environment variable: a flag shows in `ps`.
    #[arg(
        long,
        global = true,
        env = "CULVERT_API_KEY",
        hide_env_values = true,
        value_name = "KEY",
        value_parser = parse_api_key
    )]
    pub api_key: Option<ApiKey>,
}

/// An API key's secret. Its `Debug` form hides it, so no log or error
/// prints it.
#[derive(Clone)]
pub struct ApiKey(pub String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}

/// Read `--api-key`: any non-empty text (the server judges it).
///
/// # Errors
/// When it is empty.
pub fn parse_api_key(text: &str) -> Result<ApiKey, String> {
    let key = text.trim();
    if key.is_empty() {
        return Err("the API key is empty: pass the secret `culvert apikey create` printed".into());
    }
    Ok(ApiKey(key.to_string()))
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
    /// Delete finished executions (completed, failed or cancelled) older
    /// than a duration, with their tasks, events and logs, and the component
    /// bytes nothing uses any more. Every tenant's.
    Prune(PruneArgs),
    /// Cancel an execution: pending tasks are skipped, running ones
    /// interrupted.
    Cancel {
        /// The execution id.
        id: Uuid,
        /// The tenant that owns it (default `public`; through `--server`,
        /// the key's own).
        #[arg(long)]
        tenant: Option<String>,
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
    /// Ed25519 signing keys: generate a pair.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Take a grant back.
    Revoke(RevokeArgs),
    /// Run the benchmarks behind docs/PERFORMANCE.md (build with
    /// --release first).
    Bench(BenchArgs),
    /// Print a shell completion script: `culvert completions bash >
    /// ~/.local/share/bash-completion/completions/culvert`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Scaffold a package crate in ./NAME: a sample workflow, its native
    /// tests, and the settings that build it for wasm32-wasip2.
    New(NewArgs),
    /// Start workflows on a schedule: create, list, show, pause, resume,
    /// delete and trigger schedules (declared ones come with packages).
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Create, list and revoke API keys for the HTTP API.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Show the audit log: every change made through the API (and with
    /// `apikey`), newest first.
    Audit(AuditArgs),
}

/// `culvert apikey ...`
#[derive(Debug, Subcommand)]
pub enum ApikeyCommand {
    /// Create a key. Its secret is printed once: store it now.
    Create {
        /// The tenant the key belongs to (and, for a tenant key, the only
        /// one it reaches).
        #[arg(long)]
        tenant: String,
        /// A name for people, unique among the tenant's live keys.
        #[arg(long)]
        name: String,
        /// `tenant` (its own tenant only) or `operator` (everything).
        #[arg(long, value_enum, default_value_t = KeyRole::Tenant)]
        role: KeyRole,
        /// How long until it stops working: `90d`, `12h`, `30m`. Default
        /// never.
        #[arg(long, value_parser = parse_duration)]
        expires: Option<std::time::Duration>,
        /// Print one JSON object, the secret under `"secret"`.
        #[arg(long)]
        json: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: it stops working on every host within a second.
    Revoke {
        /// The key's id (the 12 hex digits after `cvk_`).
        id: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// What a key may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyRole {
    /// Its own tenant's packages and executions.
    Tenant,
    /// Every tenant, and tenants, grants, keys, the audit log and metrics.
    Operator,
}

/// `culvert audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only changes to this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=100_000))]
    pub limit: i64,
    /// Print one JSON array.
    #[arg(long)]
    pub json: bool,
}

/// `culvert new`
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The package's name (also its workflow's): an ASCII letter, then up
    /// to 63 of [A-Za-z0-9_-].
    pub name: String,
    /// Create it in this directory instead of ./NAME. It must not exist, or
    /// be empty.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Depend on the SDK in this directory: the `plugin-sdk` folder of a
    /// Culvert checkout (a path dependency).
    #[arg(long, value_name = "DIR", conflicts_with = "sdk_version")]
    pub sdk_path: Option<PathBuf>,
    /// Depend on this version of `culvert-sdk` from crates.io. Default:
    /// this culvert's own version.
    #[arg(long, value_name = "VERSION")]
    pub sdk_version: Option<String>,
    /// Print one JSON object: `path`, `package` (the .wasm the build
    /// writes), `build` and `test` (the commands to run in `path`).
    #[arg(long)]
    pub json: bool,
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

/// `culvert key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Write a new Ed25519 key pair: `NAME.key` (the secret key, mode
    /// 0600) and `NAME.pub` (the public key). Never overwrites.
    Generate {
        /// The files' path without extension.
        #[arg(long, value_name = "NAME")]
        out: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Trust a public key for a tenant: where the tenant requires
    /// signatures (`require_signature`), packages it signs may be added.
    /// Operators only, unless the operator set the tenant's
    /// `allow_tenant_key_trust`.
    Trust {
        /// The tenant (default `public`; through `--server`, the key's
        /// own).
        #[arg(long)]
        tenant: Option<String>,
        /// The name to trust it under (1 to 64 letters, digits, `.`, `_`,
        /// `-`), unique among the tenant's trusted keys.
        #[arg(long)]
        name: String,
        /// The public key: `NAME.pub` from `culvert key generate`.
        #[arg(value_name = "NAME.pub")]
        file: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List the signing keys tenants trust, and the ones they untrusted.
    List {
        /// The tenant (default `public`; through `--server`, what the key
        /// sees).
        #[arg(long)]
        tenant: Option<String>,
        /// Every tenant's keys (an operator's view).
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Untrust a key: its packages are marked in `package list`, and stop
    /// loading at the next reconcile pass where the tenant's `on_untrust`
    /// is `disable`.
    Untrust {
        /// The tenant (default `public`; through `--server`, the key's
        /// own).
        #[arg(long)]
        tenant: Option<String>,
        /// The key: its id, or the name it was trusted under.
        key: String,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// `culvert grant` / `culvert revoke`
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("capability").required(true).args(["env", "dir", "http", "wall_clock", "random"])))]
pub struct GrantArgs {
    /// The tenant.
    #[arg(long, default_value = "public")]
    pub tenant: String,
    /// Limit the grant to this package (default: every package of the
    /// tenant).
    #[arg(long)]
    pub package: Option<String>,
    /// An environment variable: `NAME=VALUE`.
    #[arg(long, value_name = "NAME=VALUE", conflicts_with_all = ["dir", "http", "wall_clock", "random"])]
    pub env: Option<String>,
    /// A directory: `GUEST_PATH=HOST_DIR`.
    #[arg(long, value_name = "GUEST_PATH=HOST_DIR", conflicts_with_all = ["http", "wall_clock", "random"])]
    pub dir: Option<String>,
    /// With --dir: allow writes.
    #[arg(long, requires = "dir")]
    pub writable: bool,
    /// Outbound HTTP to `[http://|https://]HOST[:PORT]`: HOST a name, an
    /// address, `*.SUFFIX` (names under it, never SUFFIX itself) or `*`;
    /// PORT a number or `*` (default: 80 for http, 443 for https). A
    /// loopback or private address is reached only through a grant of that
    /// literal address, such as `127.0.0.1:8080`.
    #[arg(long, value_name = "HOST[:PORT]", conflicts_with_all = ["wall_clock", "random"])]
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

/// `culvert revoke`: which grant to take back.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("capability").required(true).args(["env", "dir", "http", "wall_clock", "random"])))]
pub struct RevokeArgs {
    /// The tenant.
    #[arg(long, default_value = "public")]
    pub tenant: String,
    /// The grant was limited to this package (default: the tenant-wide
    /// grant).
    #[arg(long)]
    pub package: Option<String>,
    /// An environment variable, by name.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["dir", "http", "wall_clock", "random"])]
    pub env: Option<String>,
    /// A directory, by its path in the guest.
    #[arg(long, value_name = "GUEST_PATH", conflicts_with_all = ["http", "wall_clock", "random"])]
    pub dir: Option<String>,
    /// Outbound HTTP, by the pattern it was granted with.
    #[arg(long, value_name = "HOST[:PORT]", conflicts_with_all = ["wall_clock", "random"])]
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
    /// The directory holding hello.wasm, etl.wasm, shapes.wasm and
    /// sandbox_probe.wasm (and fetch.wasm for `egress`).
    /// `scripts/build-packages` builds them and prints this directory.
    #[arg(long, env = "CULVERT_PACKAGES")]
    pub packages: Option<PathBuf>,
    /// For `throughput` and `schedules`: also run on this PostgreSQL
    /// server (URL without a database, e.g.
    /// postgres://postgres@127.0.0.1:5432); `throughput` with one host and
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
    /// The HTTP API over loopback: getting and starting executions.
    Http,
    /// The firing loop: 1,000 schedules due at once, and idle passes.
    Schedules,
    /// Outbound HTTP from a task: a policed GET to loopback vs the bare
    /// request, a refusal, and calls per second.
    Egress,
    /// The same `hello` and 10-task workflow in Rust, Python and
    /// JavaScript: cold compile, cache load, a fresh call, tasks/s
    /// (py_bench.wasm and js_bench.wasm from `culvert package build
    /// tests/guests/py-bench` and `.../js-bench`).
    Languages,
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
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format (`--json` is short for `--format json`).
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Build a package project into a component: Rust (Cargo.toml, with
    /// cargo for wasm32-wasip2), Python (pyproject.toml, with
    /// componentize-py) or JavaScript (package.json, with esbuild and
    /// componentize-js), against this host's contract; then print what
    /// `package inspect` prints.
    Build {
        /// The project directory.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where to write the component (default: cargo's output for Rust,
        /// `DIR/NAME.wasm` for Python and JavaScript).
        #[arg(long, value_name = "FILE.wasm")]
        out: Option<PathBuf>,
        /// Build a Python package against this WIT file instead of this
        /// host's contract (to try another contract version; the host
        /// refuses one it does not speak).
        #[arg(long, value_name = "FILE.wit")]
        wit: Option<PathBuf>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Validate, pre-compile and register a package file. A signature
    /// (`FILE.sig` next to it, or `--signature`) is checked before the
    /// compile, against the keys the tenant trusts.
    Add {
        /// The package: a `.wasm` component.
        file: PathBuf,
        /// The owning tenant (default `public`; through `--server`, the
        /// key's own).
        #[arg(long)]
        tenant: Option<String>,
        /// Its detached signature (default: `FILE.sig` when it exists).
        #[arg(long, value_name = "PATH")]
        signature: Option<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Show one registered package: its signature, workflows and tasks.
    Show {
        /// `NAME` or `NAME@VERSION` (default the newest registered).
        package: String,
        /// The owning tenant (default `public`; through `--server`, the
        /// key's own).
        #[arg(long)]
        tenant: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's registered packages.
    List {
        /// The tenant (default `public`; through `--server`, what the key
        /// sees: its own tenant's, or an operator's every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// Every tenant's packages (an operator's view).
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Sign a package file with a secret key: writes `FILE.sig`, a
    /// detached signature over its content hash and the name and version
    /// its `describe` returns (docs/OPERATIONS.md, "Signing packages").
    Sign {
        /// The package: a `.wasm` component.
        file: PathBuf,
        /// The secret key: `NAME.key` from `culvert key generate`.
        #[arg(long, value_name = "NAME.key")]
        key: PathBuf,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Remove a package: every version, or `NAME@VERSION`.
    Remove {
        /// `NAME` or `NAME@VERSION`.
        package: String,
        /// The owning tenant (default `public`; through `--server`, the
        /// key's own).
        #[arg(long)]
        tenant: Option<String>,
        /// Print one JSON array of what was removed.
        #[arg(long)]
        json: bool,
    },
}

/// `culvert serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Tasks this host runs at once (1 or more).
    #[arg(long, default_value_t = 32, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub concurrency: usize,
    /// Seconds between reconcile passes when nothing announces a change
    /// (1 or more).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub reconcile_interval: u64,
    /// Seconds a claimed task's lease lasts without a heartbeat (1 or more).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease: u64,
    /// Count fuel, so that tenants' `fuel_per_call` limits apply (costs
    /// some speed; compiled code is cached separately).
    #[arg(long)]
    pub fuel: bool,
    /// Resolve NAME to ADDRESS for guests' outbound HTTP instead of asking
    /// DNS (repeatable), as curl's --resolve. The address is still checked:
    /// a private or loopback one needs a grant of that literal address.
    #[arg(long, value_name = "NAME=ADDRESS", value_parser = parse_resolve)]
    pub resolve: Vec<(String, std::net::IpAddr)>,
    /// Where the HTTP API listens, or `none` for no API.
    #[arg(long, default_value = culvert_server::DEFAULT_LISTEN, env = "CULVERT_LISTEN")]
    pub listen: String,
    /// Also serve `/metrics` here, without a key (for a Prometheus on a
    /// private network).
    #[arg(long, env = "CULVERT_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Requests per second each API key may make (a token bucket per key
    /// and host).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: u32,
    /// Requests a key may make at once above its rate.
    #[arg(long, default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: u32,
    /// Seconds a client may take to send a request's headers.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_timeout: u64,
    /// Seconds one API request may take (uploads and event streams
    /// excepted).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_timeout: u64,
    /// Package uploads this host handles at once; more are answered 429.
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_uploads: usize,
    /// Delete finished executions older than this (with their tasks,
    /// events and logs), at start and then every 10 minutes: `30d`, `12h`,
    /// `90m`, or `none` to keep everything.
    #[arg(long, value_name = "DURATION|none", default_value = "30d", value_parser = parse_retention)]
    pub retention: Retention,
}

/// `culvert run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow: `NAME`, or `PACKAGE::NAME` when several packages
    /// define `NAME`.
    pub workflow: String,
    /// The tenant that owns the package (default `public`; through
    /// `--server`, the key's own).
    #[arg(long)]
    pub tenant: Option<String>,
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
    /// Grant outbound HTTP to `[http://|https://]HOST[:PORT]` for this run
    /// (repeatable; the package must also declare it). A literal
    /// `127.0.0.1:PORT` is what allows loopback.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub http: Vec<String>,
    /// Resolve NAME to ADDRESS instead of asking DNS (repeatable), as
    /// curl's --resolve; the address is checked like any other.
    #[arg(long, value_name = "NAME=ADDRESS", value_parser = parse_resolve)]
    pub resolve: Vec<(String, std::net::IpAddr)>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

fn parse_resolve(text: &str) -> Result<(String, std::net::IpAddr), String> {
    culvert::EgressConfig::parse_resolve(text)
}

/// `culvert executions ...`
#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// List a tenant's executions, newest first.
    List {
        /// The tenant (default `public`; through `--server`, what the key
        /// sees: its own tenant's, or an operator's every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// Every tenant's executions (an operator's view).
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Only with this status.
        #[arg(long, value_parser = ["pending", "running", "completed", "failed", "cancelled"])]
        status: Option<String>,
        /// Only those this schedule (its id) started.
        #[arg(long)]
        schedule: Option<Uuid>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i64).range(1..))]
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
        /// The tenant that owns it (default `public`; through `--server`,
        /// the key's own).
        #[arg(long)]
        tenant: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Re-run a failed execution from its failed tasks: completed tasks
    /// keep their outputs, the package version stays the pinned one.
    Retry(RetryArgs),
    /// Print what an execution's guests said: each attempt's log records
    /// and stdout and stderr lines (the first 64 KiB per attempt), guest
    /// text escaped.
    Logs(LogsArgs),
}

/// `culvert executions logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The execution id.
    pub id: Uuid,
    /// The tenant that owns it (default `public`; through `--server`, the
    /// key's own).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only this task's attempts.
    #[arg(long)]
    pub task: Option<String>,
    /// Only this attempt (1 for the first).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempt: Option<u32>,
    /// Keep printing attempts as they finish, until the execution does.
    #[arg(long)]
    pub follow: bool,
    /// Print one JSON array of attempts (with `--follow`: one JSON object
    /// per attempt and line, as each finishes).
    #[arg(long)]
    pub json: bool,
}

/// `culvert prune`
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete executions that finished longer ago than this: `30d`, `12h`,
    /// `90m`, `1h 30m`.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub older_than: std::time::Duration,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// A duration such as `30d`, `12h`, `90m` or `1h 30m`.
///
/// # Errors
/// When it is not one, with an example.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("'{s}' is not a duration ({e}); write e.g. 30d, 12h, 90m or 1h 30m"))
}

/// How long `serve` keeps finished executions: a duration, or `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention(pub Option<std::time::Duration>);

/// `none`, or a duration (see [`parse_duration`]).
///
/// # Errors
/// When it is neither.
pub fn parse_retention(s: &str) -> Result<Retention, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Retention(None));
    }
    parse_duration(s).map(|d| Retention(Some(d)))
}

/// `culvert executions retry`
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The failed execution's id.
    pub id: Uuid,
    /// The tenant that owns it (default `public`; through `--server`, the
    /// key's own).
    #[arg(long)]
    pub tenant: Option<String>,
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

/// `culvert demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The directory holding hello.wasm, etl.wasm and flaky.wasm.
    /// `scripts/build-packages` builds them and prints this directory;
    /// `scripts/demo` does both.
    #[arg(long, env = "CULVERT_PACKAGES")]
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

/// The tenant commands act on against the database when none is given.
pub const DEFAULT_TENANT: &str = "public";

/// `--tenant`, or [`DEFAULT_TENANT`].
pub fn tenant_or_default(tenant: &Option<String>) -> &str {
    tenant.as_deref().unwrap_or(DEFAULT_TENANT)
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

/// `culvert schedule ...`
#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Create a schedule of a registered workflow.
    Create(ScheduleCreateArgs),
    /// List a tenant's schedules, with their next due times; declared ones
    /// are marked.
    List {
        /// The tenant (default `public`; through `--server`, what the key
        /// sees).
        #[arg(long)]
        tenant: Option<String>,
        /// Every tenant's schedules (an operator's view).
        #[arg(long, conflicts_with = "tenant")]
        all_tenants: bool,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show a schedule and its latest due times with what each became.
    Show(ScheduleIdArgs),
    /// Pause a schedule: it fires nothing until resumed.
    Pause(ScheduleIdArgs),
    /// Resume a schedule from now (due times while paused are not caught
    /// up).
    Resume(ScheduleIdArgs),
    /// Delete a schedule set at run time (declared ones go with their
    /// package).
    Delete(ScheduleIdArgs),
    /// Start the schedule's workflow once, now.
    Trigger(ScheduleIdArgs),
}

/// One schedule.
#[derive(Debug, Args)]
pub struct ScheduleIdArgs {
    /// The schedule id.
    pub id: Uuid,
    /// The tenant that owns it (default `public`; through `--server`, the
    /// key's own).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `culvert schedule create`
#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    /// The workflow: `NAME`, or `PACKAGE::NAME`; each fire runs the
    /// package's active version.
    #[arg(long)]
    pub workflow: String,
    /// A cron expression: six fields with seconds first
    /// (`0 */5 * * * *`), or the classic five (second 0).
    #[arg(long)]
    pub cron: String,
    /// An IANA timezone the expression is read in.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// The initial context of each execution, a JSON object.
    #[arg(long, default_value = "{}")]
    pub context: String,
    /// Due times missed while no host ran: skip them, start the latest
    /// once, or start all of them up to --catch-up-cap.
    #[arg(long, default_value = "skip", value_parser = ["skip", "latest", "all"])]
    pub catch_up: String,
    /// The most missed due times `--catch-up all` starts (1 to 100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub catch_up_cap: u32,
    /// When the previous execution is still going: start anyway, skip, or
    /// keep one due time and start it after.
    #[arg(long, default_value = "allow", value_parser = ["allow", "skip", "queue-one"])]
    pub overlap: String,
    /// The owning tenant (default `public`; through `--server`, the key's
    /// own).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}
