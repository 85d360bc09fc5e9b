//! The compiled-code cache: component bytes in, a ready-to-instantiate
//! [`Compiled`] out, compiling at most once per content hash.
//!
//! Two levels:
//! - **memory**: a map from [`ContentHash`] to [`Compiled`], which holds the
//!   wasmtime `Component` and its `InstancePre`. Concurrent requests for one
//!   hash share one compile (single-flight), and a semaphore bounds how many
//!   compiles run at once.
//! - **disk**: `<cache-dir>/<engine-key>/<blake3>.cwasm`, where the engine
//!   key covers wasmtime's `precompile_compatibility_hash` and version. Each
//!   file starts with a header recording the engine key, the component's
//!   hash, and the blake3 hash and length of the compiled payload. The file
//!   is written to a temporary name and renamed into place.
//!
//! `Component::deserialize` is `unsafe`: it trusts its input to be
//! wasmtime's own output. The cache only passes it bytes whose header
//! matches this engine and this component and whose payload hash checks
//! out. A truncated, bit-flipped, foreign or swapped file fails those checks;
//! it is logged, deleted and recompiled, never deserialized. The file is
//! opened without following a symbolic link and without blocking, must be a
//! regular file (checked on the open handle), and is read no further than
//! its header says, at most [`MAX_ARTIFACT_BYTES`]: a FIFO, a device, or a
//! link (to `/dev/zero`, or to a valid artifact elsewhere) in its place is
//! discarded the same way, without hanging or reading without bound. Any
//! other disk problem is a miss, never an error.
//!
//! The disk cache has a size bound: after each write, the least recently
//! used files (by modification time, which a disk hit refreshes at most once
//! a minute) are deleted until the total fits.
//!
//! Hits (by tier), misses, compiles (with their time) and evictions are
//! counted twice, at the same points: in [`CacheStats`] for this cache, and
//! as the process's metrics (`telemetry`).

use super::link::{IncompatibleComponent, prepare};
use crate::contract::ContractPre;
use crate::files::{self, Links, OpenError};
use crate::sandbox::{HostState, SandboxEngine};
use crate::telemetry;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{OnceCell, Semaphore};
use wasmtime::component::Component;

/// The blake3 hash of a component's bytes: its identity everywhere.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContentHash([u8; 32]);

impl ContentHash {
    /// Hash `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lower-case hex, 64 characters.
    pub fn to_hex(&self) -> String {
        blake3::Hash::from_bytes(self.0).to_hex().to_string()
    }

    /// Parse 64 hex characters.
    ///
    /// # Errors
    /// When `s` is not 64 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        blake3::Hash::from_hex(s)
            .map(|h| Self(*h.as_bytes()))
            .map_err(|e| format!("invalid content hash '{s}': {e}"))
    }

    /// The first 12 hex characters, for messages.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }
}

impl fmt::Display for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ContentHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ContentHash({})", self.short())
    }
}

impl Serialize for ContentHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// A compiled component, linked and ready to instantiate.
pub struct Compiled {
    /// The component's content hash.
    pub hash: ContentHash,
    /// The compiled component (its type lists its imports and exports).
    pub component: Component,
    /// Pre-linked against the host: instantiating from it is cheap.
    pub(crate) pre: ContractPre<HostState>,
}

impl fmt::Debug for Compiled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compiled")
            .field("hash", &self.hash)
            .finish()
    }
}

/// Where a [`Compiled`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSource {
    /// Already in memory.
    Memory,
    /// Deserialized from the disk cache.
    Disk,
    /// Compiled now.
    Compiled,
}

impl CacheSource {
    /// Whether no compile was needed.
    pub fn is_hit(self) -> bool {
        !matches!(self, CacheSource::Compiled)
    }
}

/// Why a component could not be compiled and linked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// wasmtime could not compile the bytes: not a valid component.
    #[error("invalid component {hash}: {reason}")]
    Compile {
        /// Short content hash.
        hash: String,
        /// wasmtime's explanation.
        reason: String,
    },
    /// A valid component that does not fit this host's contract.
    #[error(transparent)]
    Incompatible(#[from] IncompatibleComponent),
    /// The compile task died.
    #[error("compile of {hash} failed: {reason}")]
    Internal {
        /// Short content hash.
        hash: String,
        /// What happened.
        reason: String,
    },
}

/// Counters since the cache was created.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CacheStats {
    /// Served from memory.
    pub memory_hits: u64,
    /// Served from disk without compiling.
    pub disk_hits: u64,
    /// Compiled.
    pub misses: u64,
    /// Total time spent compiling, in microseconds.
    pub compile_micros: u64,
    /// Total time spent loading from disk, in microseconds.
    pub load_micros: u64,
    /// Disk files discarded as corrupt, foreign or unreadable.
    pub discarded: u64,
    /// Disk files deleted to respect the size bound.
    pub evictions: u64,
    /// Compiled components held in memory.
    pub in_memory: u64,
}

#[derive(Default)]
struct Counters {
    memory_hits: AtomicU64,
    disk_hits: AtomicU64,
    misses: AtomicU64,
    compile_micros: AtomicU64,
    load_micros: AtomicU64,
    discarded: AtomicU64,
    evictions: AtomicU64,
}

/// Cache settings.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// The cache root; `None` keeps compiled code in memory only.
    pub dir: Option<PathBuf>,
    /// The disk bound, in bytes. Default 1 GiB.
    pub max_disk_bytes: u64,
    /// Compiles that may run at once. Default: the number of CPUs.
    pub max_concurrent_compiles: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            dir: None,
            max_disk_bytes: 1 << 30,
            max_concurrent_compiles: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        }
    }
}

type Flight = Arc<OnceCell<Result<(Arc<Compiled>, CacheSource), CacheError>>>;

/// The two-level compiled-code cache.
pub struct CompiledCache {
    engine: Arc<SandboxEngine>,
    engine_key: String,
    dir: Option<PathBuf>,
    max_disk_bytes: u64,
    memory: Mutex<HashMap<ContentHash, Arc<Compiled>>>,
    inflight: Mutex<HashMap<ContentHash, Flight>>,
    compile_permits: Semaphore,
    counters: Counters,
}

impl fmt::Debug for CompiledCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledCache")
            .field("dir", &self.dir)
            .field("engine_key", &self.engine_key)
            .finish()
    }
}

const MAGIC: &[u8; 8] = b"CULVCWA1";
const HEADER_LEN: usize = 8 + 32 + 32 + 32 + 8;

/// The largest compiled payload the disk cache writes or reads: 1 GiB, far
/// above what a component within the loader's 32 MiB limit compiles to. A
/// header stating more marks a file this host did not write.
pub const MAX_ARTIFACT_BYTES: u64 = 1 << 30;

impl CompiledCache {
    /// A cache for `engine`. With a directory, the engine's own
    /// subdirectory is created if missing; if that fails the cache logs a
    /// warning and works in memory only.
    pub fn new(engine: Arc<SandboxEngine>, config: CacheConfig) -> Self {
        let engine_key = engine.compatibility_key();
        let dir = config.dir.and_then(|root| {
            let dir = root.join(&engine_key);
            match create_private_dir(&dir) {
                Ok(()) => {
                    warn_if_shared(&root);
                    Some(dir)
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot create the cache directory; caching in memory only");
                    None
                }
            }
        });
        Self {
            engine,
            engine_key,
            dir,
            max_disk_bytes: config.max_disk_bytes,
            memory: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            compile_permits: Semaphore::new(config.max_concurrent_compiles.max(1)),
            counters: Counters::default(),
        }
    }

    /// The engine this cache compiles for.
    pub fn engine(&self) -> &Arc<SandboxEngine> {
        &self.engine
    }

    /// The directory artifacts go to: `<cache-dir>/<engine-key>`.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The engine key (see [`SandboxEngine::compatibility_key`]).
    pub fn engine_key(&self) -> &str {
        &self.engine_key
    }

    /// The path of `hash`'s artifact, if the cache has a directory.
    pub fn artifact_path(&self, hash: &ContentHash) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}.cwasm", hash.to_hex())))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> CacheStats {
        let c = &self.counters;
        CacheStats {
            memory_hits: c.memory_hits.load(Ordering::Relaxed),
            disk_hits: c.disk_hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            compile_micros: c.compile_micros.load(Ordering::Relaxed),
            load_micros: c.load_micros.load(Ordering::Relaxed),
            discarded: c.discarded.load(Ordering::Relaxed),
            evictions: c.evictions.load(Ordering::Relaxed),
            in_memory: self.memory.lock().expect("cache lock").len() as u64,
        }
    }

    /// The compiled component already in memory, if any.
    pub fn get_in_memory(&self, hash: &ContentHash) -> Option<Arc<Compiled>> {
        self.memory.lock().expect("cache lock").get(hash).cloned()
    }

    /// Drop `hash` from memory (the disk copy stays).
    pub fn forget(&self, hash: &ContentHash) {
        self.memory.lock().expect("cache lock").remove(hash);
    }

    /// The compiled form of `bytes`, whose hash is `hash`: from memory, from
    /// disk, or compiled now, in that order of preference.
    ///
    /// # Errors
    /// [`CacheError::Compile`] for bytes wasmtime rejects, and
    /// [`CacheError::Incompatible`] for a component that does not fit the
    /// contract.
    pub async fn get_or_compile(
        &self,
        hash: ContentHash,
        bytes: &[u8],
    ) -> Result<(Arc<Compiled>, CacheSource), CacheError> {
        if let Some(c) = self.get_in_memory(&hash) {
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            telemetry::cache_hit("memory");
            return Ok((c, CacheSource::Memory));
        }
        let flight = self
            .inflight
            .lock()
            .expect("cache lock")
            .entry(hash)
            .or_default()
            .clone();
        let mut leader = false;
        let result = flight
            .get_or_init(|| {
                leader = true;
                self.load_or_compile(hash, bytes)
            })
            .await
            .clone();
        if leader {
            self.inflight.lock().expect("cache lock").remove(&hash);
        } else if let Ok((c, _)) = &result {
            // Followers of a flight were served without compiling.
            self.counters.memory_hits.fetch_add(1, Ordering::Relaxed);
            telemetry::cache_hit("memory");
            return Ok((c.clone(), CacheSource::Memory));
        }
        result
    }

    async fn load_or_compile(
        &self,
        hash: ContentHash,
        bytes: &[u8],
    ) -> Result<(Arc<Compiled>, CacheSource), CacheError> {
        // Another flight may have finished between our memory check and now.
        if let Some(c) = self.get_in_memory(&hash) {
            return Ok((c, CacheSource::Memory));
        }
        if let Some(compiled) = self.load_from_disk(hash).await {
            let compiled = Arc::new(compiled);
            self.memory
                .lock()
                .expect("cache lock")
                .insert(hash, compiled.clone());
            return Ok((compiled, CacheSource::Disk));
        }
        telemetry::cache_miss();
        let compiled = Arc::new(self.compile(hash, bytes).await?);
        self.memory
            .lock()
            .expect("cache lock")
            .insert(hash, compiled.clone());
        Ok((compiled, CacheSource::Compiled))
    }

    async fn compile(&self, hash: ContentHash, bytes: &[u8]) -> Result<Compiled, CacheError> {
        let _permit = self
            .compile_permits
            .acquire()
            .await
            .map_err(|e| CacheError::Internal {
                hash: hash.short(),
                reason: e.to_string(),
            })?;
        let engine = self.engine.clone();
        let owned = bytes.to_vec();
        let started = Instant::now();
        let joined = tokio::task::spawn_blocking(move || {
            let component =
                Component::new(engine.engine(), &owned).map_err(|e| CacheError::Compile {
                    hash: hash.short(),
                    reason: format!("{e:#}"),
                })?;
            let pre = prepare(&engine, &component)?;
            let artifact = component.serialize().map_err(|e| CacheError::Internal {
                hash: hash.short(),
                reason: format!("serialize: {e:#}"),
            })?;
            Ok::<_, CacheError>((component, pre, artifact))
        })
        .await
        .map_err(|e| CacheError::Internal {
            hash: hash.short(),
            reason: e.to_string(),
        })?;
        let (component, pre, artifact) = joined?;
        self.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.counters
            .compile_micros
            .fetch_add(micros(started.elapsed()), Ordering::Relaxed);
        telemetry::compiled(started.elapsed());
        tracing::debug!(hash = %hash.short(), elapsed_ms = started.elapsed().as_millis() as u64, "compiled component");
        if self.dir.is_some() {
            if let Err(e) = self.write_artifact(hash, &artifact) {
                tracing::warn!(hash = %hash.short(), error = %e, "cannot write the compiled artifact; continuing without it");
            } else {
                self.evict_to_bound(&hash);
            }
        }
        Ok(Compiled {
            hash,
            component,
            pre,
        })
    }

    /// Read, verify and deserialize `hash`'s artifact. Any problem is a
    /// miss; a file that fails verification is also deleted.
    async fn load_from_disk(&self, hash: ContentHash) -> Option<Compiled> {
        let path = self.artifact_path(&hash)?;
        let started = Instant::now();
        let engine = self.engine.clone();
        let key = self.engine_key.clone();
        let path2 = path.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            let (mut file, meta) = match files::open_regular(&path2, Links::Refuse) {
                Ok(opened) => opened,
                Err(OpenError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Ok(None);
                }
                Err(e) => return Err(format!("unreadable: {e}")),
            };
            let data = read_artifact(&mut file, meta.len())?;
            let t1 = Instant::now();
            let payload = verify_artifact(&data, &key, &hash)?;
            let t2 = Instant::now();
            // SAFETY: `Component::deserialize` requires bytes produced by
            // `Component::serialize` on a compatible engine. These bytes come
            // from a regular file (not a link, FIFO or device) in this
            // host's own cache directory, where only `write_artifact` puts
            // files (atomically, by rename), and `verify_artifact` has just
            // checked that the header names this engine's compatibility key
            // and this component's content hash, and that the payload's
            // blake3 hash and length match the header. A truncated, altered,
            // foreign or swapped file fails one of those checks and never
            // gets here.
            let component = unsafe { Component::deserialize(engine.engine(), payload) }
                .map_err(|e| format!("deserialize: {e:#}"))?;
            let t3 = Instant::now();
            let pre = prepare(&engine, &component).map_err(|e| e.to_string())?;
            let t4 = Instant::now();
            tracing::debug!(
                bytes = data.len(),
                read_us = (t1 - t0).as_micros() as u64,
                verify_us = (t2 - t1).as_micros() as u64,
                deserialize_us = (t3 - t2).as_micros() as u64,
                prepare_us = (t4 - t3).as_micros() as u64,
                "disk cache load"
            );
            // Refresh the modification time (the LRU order), at most once a
            // minute per file: a hit should not cost a write. Through the
            // handle already open, so no second open can meet another file.
            let now = SystemTime::now();
            let fresh = meta
                .modified()
                .is_ok_and(|m| now.duration_since(m).unwrap_or_default() < Duration::from_secs(60));
            if !fresh {
                let _ = file.set_modified(now);
            }
            Ok(Some((component, pre)))
        })
        .await;
        match outcome {
            Ok(Ok(Some((component, pre)))) => {
                self.counters.disk_hits.fetch_add(1, Ordering::Relaxed);
                telemetry::cache_hit("disk");
                self.counters
                    .load_micros
                    .fetch_add(micros(started.elapsed()), Ordering::Relaxed);
                Some(Compiled {
                    hash,
                    component,
                    pre,
                })
            }
            Ok(Ok(None)) => None,
            Ok(Err(reason)) => {
                tracing::warn!(
                    path = %path.display(),
                    %reason,
                    "discarding a cached artifact that failed verification; recompiling"
                );
                self.counters.discarded.fetch_add(1, Ordering::Relaxed);
                let _ = std::fs::remove_file(&path);
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cache load task failed");
                None
            }
        }
    }

    fn write_artifact(&self, hash: ContentHash, payload: &[u8]) -> std::io::Result<()> {
        let Some(path) = self.artifact_path(&hash) else {
            return Ok(());
        };
        if payload.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(std::io::Error::other(format!(
                "the artifact is {} bytes, over the cache's cap of {MAX_ARTIFACT_BYTES}",
                payload.len()
            )));
        }
        let dir = path.parent().expect("artifact has a parent");
        let tmp = dir.join(format!(
            ".{}.{}.{}.tmp",
            hash.short(),
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&key_bytes(&self.engine_key));
        header.extend_from_slice(hash.as_bytes());
        header.extend_from_slice(blake3::hash(payload).as_bytes());
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        let result = (|| {
            let mut f = std::fs::File::options()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(&header)?;
            f.write_all(payload)?;
            f.flush()?;
            std::fs::rename(&tmp, &path)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Delete least-recently-used artifacts until the cache root fits the
    /// bound, counting the directories of other engine keys too (their
    /// files are useless to this engine and age out first). Temporary files
    /// older than an hour (left by a crash mid-write) are deleted as well.
    /// `keep` (just written) is never deleted.
    fn evict_to_bound(&self, keep: &ContentHash) {
        let Some(dir) = &self.dir else { return };
        let Some(root) = dir.parent() else { return };
        let keep_name = format!("{}.cwasm", keep.to_hex());
        let stale = SystemTime::now() - Duration::from_secs(3600);
        let mut files: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        // Only directories named like engine keys: the root may be shared
        // with other things.
        for key_dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
            if !is_engine_key(&key_dir.file_name().to_string_lossy()) {
                continue;
            }
            for e in std::fs::read_dir(key_dir.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().to_string();
                let Ok(meta) = e.metadata() else { continue };
                let Ok(modified) = meta.modified() else {
                    continue;
                };
                if name.ends_with(".tmp") && modified < stale {
                    let _ = std::fs::remove_file(e.path());
                } else if name.ends_with(".cwasm") {
                    files.push((modified, meta.len(), e.path()));
                }
            }
        }
        let mut total: u64 = files.iter().map(|(_, len, _)| len).sum();
        if total <= self.max_disk_bytes {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_disk_bytes {
                break;
            }
            if path.file_name().is_some_and(|n| n == keep_name.as_str()) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                self.counters.evictions.fetch_add(1, Ordering::Relaxed);
                telemetry::cache_evicted();
                tracing::debug!(path = %path.display(), "evicted a cached artifact");
            }
        }
    }
}

/// Create `dir` (and any missing parents) and make `dir` itself readable
/// and writable by this user only: whoever can write here can plant code
/// that this host will run. The cache root is only checked (see
/// [`warn_if_shared`]).
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Warn when other users could write to the cache root.
fn warn_if_shared(root: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(root)
            && meta.permissions().mode() & 0o022 != 0
        {
            tracing::warn!(
                dir = %root.display(),
                "the cache directory is writable by other users; keep it private (chmod 700)"
            );
        }
    }
}

/// Whether a directory name under the cache root is an engine key (see
/// [`SandboxEngine::compatibility_key`]).
pub fn is_engine_key(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn key_bytes(key: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    let b = key.as_bytes();
    let n = b.len().min(32);
    out[..n].copy_from_slice(&b[..n]);
    out
}

/// Read an artifact from its open handle (`size`: its length per
/// `fstat`): the header, then no more than the payload length the header
/// states and one byte, so that a file which lies about its size or keeps
/// growing is refused without being read to its end. The result still goes
/// through [`verify_artifact`].
fn read_artifact(file: &mut std::fs::File, size: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let header_len = HEADER_LEN as u64;
    if size < header_len {
        return Err(format!("truncated: {size} bytes, shorter than the header"));
    }
    let mut data = vec![0u8; HEADER_LEN];
    file.read_exact(&mut data)
        .map_err(|e| format!("unreadable header: {e}"))?;
    let stated = u64::from_le_bytes(data[104..112].try_into().expect("8 bytes"));
    if stated > MAX_ARTIFACT_BYTES {
        return Err(format!(
            "the header states a payload of {stated} bytes, over the cap of {MAX_ARTIFACT_BYTES}"
        ));
    }
    if size != header_len + stated {
        return Err(format!(
            "truncated or padded: the file is {size} bytes, the header says {}",
            header_len + stated
        ));
    }
    data.reserve_exact(stated as usize + 1);
    files::read_bounded(file, stated, &mut data).map_err(|e| format!("unreadable: {e}"))?;
    Ok(data)
}

/// Check an artifact file's header against this engine and component, and
/// its payload against the recorded hash; return the payload.
fn verify_artifact<'a>(
    data: &'a [u8],
    engine_key: &str,
    hash: &ContentHash,
) -> Result<&'a [u8], String> {
    if data.len() < HEADER_LEN {
        return Err(format!(
            "truncated: {} bytes, shorter than the header",
            data.len()
        ));
    }
    let (header, payload) = data.split_at(HEADER_LEN);
    if &header[..8] != MAGIC {
        return Err("not a Culvert cache file (bad magic)".into());
    }
    if header[8..40] != key_bytes(engine_key) {
        return Err("written by another engine configuration".into());
    }
    if &header[40..72] != hash.as_bytes() {
        return Err("holds the code of another component".into());
    }
    let len = u64::from_le_bytes(header[104..112].try_into().expect("8 bytes"));
    if payload.len() as u64 != len {
        return Err(format!(
            "truncated or padded: payload is {} bytes, header says {len}",
            payload.len()
        ));
    }
    if blake3::hash(payload).as_bytes() != &header[72..104] {
        return Err("payload hash mismatch (corrupted)".into());
    }
    Ok(payload)
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u64::MAX as u128) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_round_trips_through_hex() {
        let h = ContentHash::of(b"abc");
        assert_eq!(ContentHash::from_hex(&h.to_hex()).unwrap(), h);
        assert_eq!(h.short().len(), 12);
        assert!(ContentHash::from_hex("xyz").is_err());
    }

    #[test]
    fn verify_rejects_each_kind_of_damage() {
        let hash = ContentHash::of(b"component");
        let payload = b"compiled code".to_vec();
        let mut file = Vec::new();
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&key_bytes("k1"));
        file.extend_from_slice(hash.as_bytes());
        file.extend_from_slice(blake3::hash(&payload).as_bytes());
        file.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        file.extend_from_slice(&payload);
        assert_eq!(verify_artifact(&file, "k1", &hash).unwrap(), &payload[..]);

        assert!(verify_artifact(&file[..file.len() - 1], "k1", &hash).is_err());
        assert!(verify_artifact(&file[..10], "k1", &hash).is_err());
        let mut flipped = file.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(
            verify_artifact(&flipped, "k1", &hash)
                .unwrap_err()
                .contains("hash mismatch")
        );
        assert!(
            verify_artifact(&file, "k2", &hash)
                .unwrap_err()
                .contains("another engine")
        );
        let other = ContentHash::of(b"other");
        assert!(
            verify_artifact(&file, "k1", &other)
                .unwrap_err()
                .contains("another component")
        );
    }
}
