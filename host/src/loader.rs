//! Package bytes in, a validated, compiled, callable [`LoadedPackage`] out.
//!
//! The steps, each with its own typed error ([`LoadError`]):
//! 1. check the size limit, and that the bytes are a component (not a core
//!    module, not garbage);
//! 2. compile through the [`CompiledCache`], checking the contract version
//!    and the world: the component must export `metadata` and `task` of a
//!    compatible `culvert:plugin` version, and import nothing the host does
//!    not provide;
//! 3. call `describe` in a fresh store, under a short deadline and a small
//!    memory cap;
//! 4. validate the metadata (see [`crate::metadata::validate`]).

use crate::bindings::{CONTRACT_PACKAGE, CONTRACT_VERSION, PluginPre};
use crate::cache::{CacheError, CacheSource, Compiled, CompiledCache, ContentHash};
use crate::engine::SandboxEngine;
use crate::invoke::{self, TaskFailure};
use crate::metadata::{self, MetadataLimits, PackageMetadata};
use crate::sandbox::{CallLabels, HostState, SandboxLimits};
use std::sync::Arc;
use wasmtime::component::Component;

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// The largest package accepted, in bytes. Default 32 MiB.
    pub max_component_bytes: usize,
    /// Limits of the `describe` call. Default [`SandboxLimits::describe`].
    pub describe_limits: SandboxLimits,
    /// Bounds on the metadata.
    pub metadata_limits: MetadataLimits,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            max_component_bytes: 32 * 1024 * 1024,
            describe_limits: SandboxLimits::describe(),
            metadata_limits: MetadataLimits::default(),
        }
    }
}

/// A package ready to run.
#[derive(Debug, Clone)]
pub struct LoadedPackage {
    /// What the package says about itself, validated.
    pub metadata: PackageMetadata,
    /// blake3 of the bytes.
    pub content_hash: ContentHash,
    /// Size of the bytes.
    pub size: usize,
    /// The compiled component and its `InstancePre`.
    pub compiled: Arc<Compiled>,
    /// Where the compiled code came from.
    pub source: CacheSource,
}

/// A valid component that does not fit this host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IncompatibleComponent {
    /// Built against another, incompatible contract version.
    #[error(
        "built against contract {CONTRACT_PACKAGE}@{found}, but this host speaks {CONTRACT_PACKAGE}@{expected}"
    )]
    ContractMismatch {
        /// The version the component uses.
        found: String,
        /// The version this host speaks.
        expected: String,
    },
    /// Does not target the `culvert:plugin/plugin` world.
    #[error("not a Culvert package: {0}")]
    WrongWorld(String),
    /// Imports something the host does not provide.
    #[error("imports '{0}', which this host does not provide")]
    UnsupportedImport(String),
}

/// Why bytes did not become a package.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LoadError {
    /// Over the size limit.
    #[error("package is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Not WebAssembly at all.
    #[error("not a WebAssembly component (no wasm header)")]
    NotWasm,
    /// A core module, not a component.
    #[error(
        "a core WebAssembly module, not a component: build packages with `cargo build --target wasm32-wasip2`"
    )]
    CoreModule,
    /// wasmtime could not compile it.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// A valid component that does not fit the contract.
    #[error(transparent)]
    Incompatible(#[from] IncompatibleComponent),
    /// `describe` trapped, timed out or ran out of memory.
    #[error("describe failed: {0}")]
    Describe(TaskFailure),
    /// `describe` returned metadata that does not validate.
    #[error("{0}")]
    InvalidMetadata(String),
}

impl LoadError {
    /// A stable, snake_case name for the kind of error, for JSON output and
    /// for tests.
    pub fn kind(&self) -> &'static str {
        match self {
            LoadError::TooLarge { .. } => "too_large",
            LoadError::NotWasm => "not_wasm",
            LoadError::CoreModule => "core_module",
            LoadError::Invalid(_) => "invalid_component",
            LoadError::Incompatible(IncompatibleComponent::ContractMismatch { .. }) => {
                "contract_mismatch"
            }
            LoadError::Incompatible(IncompatibleComponent::WrongWorld(_)) => "wrong_world",
            LoadError::Incompatible(IncompatibleComponent::UnsupportedImport(_)) => {
                "unsupported_import"
            }
            LoadError::Describe(f) => match f.kind {
                invoke::FailureKind::Timeout => "describe_timeout",
                invoke::FailureKind::OutOfMemory => "describe_out_of_memory",
                _ => "describe_failed",
            },
            LoadError::InvalidMetadata(_) => "invalid_metadata",
        }
    }
}

impl From<CacheError> for LoadError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::Compile { reason, .. } => LoadError::Invalid(reason),
            CacheError::Incompatible(i) => LoadError::Incompatible(i),
            CacheError::Internal { reason, .. } => LoadError::Invalid(reason),
        }
    }
}

/// Check a contract version string against [`CONTRACT_VERSION`]: compatible
/// when the semver caret rule allows it (same major; for `0.x`, same minor).
///
/// # Errors
/// A message naming both versions.
pub fn check_contract_version(found: &str) -> Result<(), String> {
    if contract_compatible(found) {
        Ok(())
    } else {
        Err(IncompatibleComponent::ContractMismatch {
            found: metadata::printable(found),
            expected: CONTRACT_VERSION.to_string(),
        }
        .to_string())
    }
}

fn contract_compatible(found: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        let mut parts = v.split(['.', '-', '+']);
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    };
    match (parse(found), parse(CONTRACT_VERSION)) {
        (Some((fmaj, fmin)), Some((emaj, emin))) => fmaj == emaj && (emaj != 0 || fmin == emin),
        _ => false,
    }
}

/// The contract version in a name like `culvert:plugin/task@0.1.0`.
fn contract_version_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(CONTRACT_PACKAGE)?.strip_prefix('/')?;
    Some(rest.split_once('@').map(|(_, v)| v).unwrap_or(""))
}

/// Check a compiled component against the contract and link it: the
/// contract version first (so a mismatch is named as such), then the
/// imports, then the exports.
///
/// # Errors
/// [`IncompatibleComponent`] naming the offending version or import.
pub(crate) fn prepare(
    engine: &SandboxEngine,
    component: &Component,
) -> Result<PluginPre<HostState>, IncompatibleComponent> {
    let ty = component.component_type();
    let wasmtime_engine = engine.engine();
    let mut exports_contract = false;
    for (name, _) in ty.exports(wasmtime_engine) {
        if let Some(version) = contract_version_of(name) {
            exports_contract = true;
            if !contract_compatible(version) {
                return Err(IncompatibleComponent::ContractMismatch {
                    found: version.to_string(),
                    expected: CONTRACT_VERSION.to_string(),
                });
            }
        }
    }
    for (name, _) in ty.imports(wasmtime_engine) {
        if let Some(version) = contract_version_of(name)
            && !contract_compatible(version)
        {
            return Err(IncompatibleComponent::ContractMismatch {
                found: version.to_string(),
                expected: CONTRACT_VERSION.to_string(),
            });
        }
    }
    if !exports_contract {
        let exports: Vec<String> = ty
            .exports(wasmtime_engine)
            .map(|(n, _)| n.to_string())
            .take(8)
            .collect();
        return Err(IncompatibleComponent::WrongWorld(format!(
            "it exports no {CONTRACT_PACKAGE} interface (its exports: {})",
            if exports.is_empty() {
                "none".to_string()
            } else {
                exports.join(", ")
            }
        )));
    }
    // Only WASI and the contract's own interfaces may be imported; anything
    // else is refused by name, before linking.
    if let Some(import) = unsupported_import(component, engine) {
        return Err(IncompatibleComponent::UnsupportedImport(import));
    }
    let instance_pre = engine
        .linker()
        .instantiate_pre(component)
        .map_err(|e| IncompatibleComponent::UnsupportedImport(format!("{e:#}")))?;
    PluginPre::new(instance_pre).map_err(|e| IncompatibleComponent::WrongWorld(format!("{e:#}")))
}

/// The first import the linker cannot satisfy, by name.
fn unsupported_import(component: &Component, engine: &SandboxEngine) -> Option<String> {
    let ty = component.component_type();
    ty.imports(engine.engine())
        .map(|(name, _)| name)
        .find(|name| !name.starts_with("wasi:") && contract_version_of(name).is_none())
        .map(str::to_string)
}

/// The names of everything a component imports (WASI interfaces and the
/// contract's `host`), for `package inspect`.
pub fn imports_of(engine: &SandboxEngine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .imports(engine.engine())
        .map(|(name, _)| name.to_string())
        .collect()
}

/// What kind of wasm the bytes are, from the header alone.
fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // Core modules have version 1 and layer 0; components have layer 1.
    match (&bytes[4..6], &bytes[6..8]) {
        (_, [1, 0]) => Ok(()),
        ([1, 0], [0, 0]) => Err(LoadError::CoreModule),
        _ => Err(LoadError::NotWasm),
    }
}

/// Turns package bytes into [`LoadedPackage`]s.
#[derive(Debug, Clone)]
pub struct PackageLoader {
    cache: Arc<CompiledCache>,
    config: LoaderConfig,
}

impl PackageLoader {
    /// A loader compiling through `cache`.
    pub fn new(cache: Arc<CompiledCache>, config: LoaderConfig) -> Self {
        Self { cache, config }
    }

    /// The cache.
    pub fn cache(&self) -> &Arc<CompiledCache> {
        &self.cache
    }

    /// The engine.
    pub fn engine(&self) -> &Arc<SandboxEngine> {
        self.cache.engine()
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Validate, compile (or fetch from the cache), describe and check
    /// `bytes`.
    ///
    /// # Errors
    /// A [`LoadError`] for the first step that fails.
    pub async fn load(&self, bytes: &[u8]) -> Result<LoadedPackage, LoadError> {
        if bytes.len() > self.config.max_component_bytes {
            return Err(LoadError::TooLarge {
                size: bytes.len(),
                limit: self.config.max_component_bytes,
            });
        }
        check_header(bytes)?;
        let content_hash = ContentHash::of(bytes);
        let (compiled, source) = self.cache.get_or_compile(content_hash, bytes).await?;
        let labels = Arc::new(CallLabels {
            package: format!("<{}>", content_hash.short()),
            ..CallLabels::default()
        });
        let info = invoke::describe(
            self.engine(),
            &compiled,
            &self.config.describe_limits,
            labels,
        )
        .await
        .map_err(LoadError::Describe)?;
        let metadata = metadata::validate(info, &self.config.metadata_limits)
            .map_err(LoadError::InvalidMetadata)?;
        Ok(LoadedPackage {
            metadata,
            content_hash,
            size: bytes.len(),
            compiled,
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_follow_the_caret_rule() {
        assert!(contract_compatible("0.1.0"));
        assert!(contract_compatible("0.1.7"));
        assert!(!contract_compatible("0.2.0"));
        assert!(!contract_compatible("1.1.0"));
        assert!(!contract_compatible("garbage"));
        let err = check_contract_version("0.2.0").unwrap_err();
        assert!(err.contains("0.2.0") && err.contains("0.1.0"), "{err}");
    }

    #[test]
    fn headers_tell_modules_from_components() {
        assert!(matches!(check_header(b"junk"), Err(LoadError::NotWasm)));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }

    #[test]
    fn contract_names_are_recognised() {
        assert_eq!(
            contract_version_of("culvert:plugin/task@0.1.0"),
            Some("0.1.0")
        );
        assert_eq!(contract_version_of("wasi:io/poll@0.2.0"), None);
    }
}
