//! What several commands share: opening the database, the runner and the
//! engine as the flags configure them, reading package files, parsing
//! arguments.

use crate::args::*;
use anyhow::Context as _;
use culvert::{
    CacheConfig, CompiledCache, EngineConfig, LoaderConfig, PackageLoader, Runner, RunnerConfig,
    SandboxEngine, Store, redact_url,
};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The engine, cache and loader, as the CLI configures them.
pub(crate) fn local_loader(global: &GlobalArgs) -> anyhow::Result<PackageLoader> {
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
pub(crate) fn read_package(file: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = LoaderConfig::default().max_component_bytes as u64;
    let (handle, meta) =
        culvert::open_regular(file, culvert::Links::Follow).map_err(|e| match e {
            culvert::OpenError::Io(e) => anyhow::anyhow!("cannot read {}: {e}", file.display()),
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
    // What the file is comes before how big it is: a 400 MB log file is
    // refused for not being wasm, not for its size.
    let mut handle = handle;
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize + 1);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut handle, 8), &mut bytes)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if !bytes.starts_with(b"\0asm") {
        anyhow::bail!(
            "cannot read {}: it is not a WebAssembly component (it does not start with the wasm \
             header); give the path of a package file, built with `cargo build --target wasm32-wasip2`",
            file.display()
        );
    }
    if meta.len() > limit {
        return Err(too_large(meta.len().to_string()));
    }
    let header = bytes.len() as u64;
    let read = culvert::read_bounded(handle, limit - header, &mut bytes)
        .with_context(|| format!("cannot read {}", file.display()))?;
    if header + read > limit {
        return Err(too_large(format!("more than {limit}")));
    }
    Ok(bytes)
}

pub(crate) fn runner_config(g: &GlobalArgs) -> anyhow::Result<RunnerConfig> {
    Ok(RunnerConfig::new(g.database_url()?).cache_dir(g.cache_dir()?))
}

pub(crate) async fn open_runner(config: RunnerConfig) -> anyhow::Result<Runner> {
    let url = redact_url(&config.database_url);
    Runner::open(config)
        .await
        .with_context(|| format!("cannot open the database {url}"))
}

pub(crate) async fn open_store(g: &GlobalArgs) -> anyhow::Result<Arc<dyn Store>> {
    let url = g.database_url()?;
    culvert::open_store(&url)
        .await
        .with_context(|| format!("cannot open the database {}", redact_url(&url)))
}

pub(crate) fn parse_context(text: &str) -> anyhow::Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => anyhow::bail!("--context must be a JSON object, like '{{\"key\": 1}}'"),
        Err(e) => anyhow::bail!("--context is not valid JSON: {e}"),
    }
}

pub(crate) fn split_name_version(spec: &str) -> (&str, Option<&str>) {
    match spec.split_once('@') {
        Some((n, v)) if !v.is_empty() => (n, Some(v)),
        _ => (spec.trim_end_matches('@'), None),
    }
}

/// The directory of example packages `demo` and `bench` run: `dir` (from
/// `--packages` or `CULVERT_PACKAGES`), checked to hold `NAME.wasm` for each
/// of `names`. The binary never builds them: an installed `culvert` has no
/// source tree to build from.
pub(crate) fn package_dir(dir: Option<PathBuf>, names: &[&str]) -> anyhow::Result<PathBuf> {
    let files: Vec<String> = names
        .iter()
        .map(|n| format!("{}.wasm", n.replace('-', "_")))
        .collect();
    let Some(dir) = dir else {
        anyhow::bail!(
            "no package directory given: pass --packages DIR (or set CULVERT_PACKAGES) holding {}. \
             From a checkout, scripts/build-packages builds them and prints the directory",
            files.join(", ")
        );
    };
    let missing: Vec<&str> = files
        .iter()
        .filter(|f| !dir.join(f).is_file())
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} holds no {}; scripts/build-packages builds them",
            dir.display(),
            missing.join(", ")
        );
    }
    Ok(dir)
}
