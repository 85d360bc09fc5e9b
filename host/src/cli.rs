//! The `culvert` command line.
//!
//! Every command prints plain text by default and one JSON document with
//! `--json`. Errors are one line on stderr and a non-zero exit code.

use crate::loader::LoadedPackage;
use crate::metadata::{Condition, PackageMetadata, RetryPolicy, TriggerRule};
use crate::{
    CacheConfig, CacheSource, CompiledCache, EngineConfig, LoaderConfig, PackageLoader,
    SandboxEngine,
};
use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Parse the arguments and run the command. Returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    init_tracing(&cli.global.log);
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

/// An error and its causes on one line.
fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Package(PackageCommand::Inspect { file, json, format }) => {
            let format = if json { Format::Json } else { format };
            inspect(&cli.global, &file, format).await
        }
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

/// Read a package file, with an error that names it.
fn read_package(file: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
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
        Format::Text => print!("{}", inspect_text(&pkg)),
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

fn inspect_text(pkg: &LoadedPackage) -> String {
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
