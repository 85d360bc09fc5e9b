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
//! 4. validate the metadata (see the `validate` module).

use super::cache::{CacheError, CacheSource, Compiled, CompiledCache, ContentHash};
use super::invoke::{self, TaskFailure};
use super::link::IncompatibleComponent;
use super::metadata::PackageMetadata;
use super::validate::{self, MetadataError, MetadataLimits};
use crate::sandbox::{CallLabels, SandboxEngine, SandboxLimits};
use std::sync::Arc;

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
    InvalidMetadata(Box<MetadataError>),
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

impl From<MetadataError> for LoadError {
    fn from(e: MetadataError) -> Self {
        LoadError::InvalidMetadata(Box::new(e))
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
        let metadata = validate::validate(info, &self.config.metadata_limits)?;
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
    fn headers_tell_modules_from_components() {
        assert!(matches!(check_header(b"junk"), Err(LoadError::NotWasm)));
        assert!(matches!(
            check_header(b"\0asm\x01\0\0\0"),
            Err(LoadError::CoreModule)
        ));
        assert!(check_header(b"\0asm\x0d\0\x01\0").is_ok());
    }
}
