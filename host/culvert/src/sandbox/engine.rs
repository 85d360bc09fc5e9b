//! The one shared wasmtime [`Engine`](wasmtime::Engine), its linker, and the
//! epoch ticker that lets deadlines preempt guests.
//!
//! [`SandboxEngine::new`] builds an engine with the component model, epoch
//! interruption, a bounded wasm stack, optional fuel, and the pooling
//! allocator when the OS allows it (on-demand allocation otherwise, with a
//! warning). A background thread increments the epoch every
//! [`EngineConfig::epoch_tick`]; each store's epoch callback turns that tick
//! into a timeout, a cancellation, or a yield to the async runtime.
//!
//! The linker offers a guest WASI p2, whose capabilities each store opens
//! only as granted (none by default; see the `call` module), `wasi:http`'s
//! outgoing handler (every request policed by the store's send hook, see
//! [`crate::egress`]), and the contract's `host` interface. Nothing else: a
//! component that imports anything more fails to load.

use super::cpu::CpuLedger;
use super::state::HostState;
use crate::egress::{EgressConfig, Network};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Engine-wide settings. Changing any of the ones marked *keyed* changes the
/// compiled-code cache key, since compiled code depends on them.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// How often the epoch advances: the granularity of every deadline.
    /// Default 10 ms.
    pub epoch_tick: Duration,
    /// The most wasm stack a guest call may use, in bytes. *Keyed.* Default
    /// 512 KiB.
    pub max_wasm_stack: usize,
    /// The native stack of each async call, which must exceed
    /// `max_wasm_stack`. Default 2 MiB.
    pub async_stack_size: usize,
    /// Count fuel, so that per-call fuel limits can apply. *Keyed.* Costs
    /// some speed. Default off.
    pub fuel: bool,
    /// Use the pooling allocator when the OS allows it. Default on.
    pub pooling: bool,
    /// With pooling: how many component instances may live at once. Default
    /// 256.
    pub pool_instances: u32,
    /// The largest linear memory any guest may have, in bytes: the ceiling
    /// over every per-call memory cap, and the pooling slot size. Default
    /// 256 MiB.
    pub max_memory_bytes: u64,
    /// The most table elements a guest table may have. Default 100,000.
    pub max_table_elements: usize,
    /// Outbound HTTP settings: names resolved to fixed addresses. Default
    /// none.
    pub egress: EgressConfig,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            epoch_tick: Duration::from_millis(10),
            max_wasm_stack: 512 * 1024,
            async_stack_size: 2 * 1024 * 1024,
            fuel: false,
            pooling: true,
            pool_instances: 256,
            max_memory_bytes: 256 * 1024 * 1024,
            max_table_elements: 100_000,
            egress: EgressConfig::default(),
        }
    }
}

/// The shared engine: wasmtime's engine, the linker every package is linked
/// against, and the epoch ticker. Cheap to share behind an [`Arc`].
pub struct SandboxEngine {
    engine: Engine,
    linker: Linker<HostState>,
    config: EngineConfig,
    pooling: bool,
    /// Held for its `Drop`, which stops the ticker thread.
    _ticker: Ticker,
    cpu: Arc<CpuLedger>,
    network: Arc<Network>,
}

impl std::fmt::Debug for SandboxEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEngine")
            .field("config", &self.config)
            .field("pooling", &self.pooling)
            .finish()
    }
}

impl SandboxEngine {
    /// Build the engine, link WASI and the host interface, and start the
    /// epoch ticker.
    ///
    /// # Errors
    /// When wasmtime rejects the configuration (on-demand allocation is
    /// tried before giving up on pooling).
    pub fn new(config: EngineConfig) -> anyhow::Result<Arc<Self>> {
        let (engine, pooling) = if config.pooling {
            match Engine::new(&wasmtime_config(&config, true)) {
                Ok(engine) => (engine, true),
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        "the pooling allocator is not available here; falling back to on-demand allocation"
                    );
                    (Engine::new(&wasmtime_config(&config, false))?, false)
                }
            }
        } else {
            (Engine::new(&wasmtime_config(&config, false))?, false)
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // wasi:http's client side; each request meets the call's policy in
        // its store's send hook (crate::egress).
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        crate::contract::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let ticker = Ticker::start(engine.clone(), config.epoch_tick);
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let cpu = Arc::new(CpuLedger::new(cores, config.epoch_tick));
        let network = Network::new(config.egress.clone());
        Ok(Arc::new(Self {
            network,
            engine,
            linker,
            config,
            pooling,
            _ticker: ticker,
            cpu,
        }))
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker: WASI p2 without capabilities, plus the host interface.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// The settings the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The ledger that shares CPU fairly between tenants.
    pub fn cpu(&self) -> &Arc<CpuLedger> {
        &self.cpu
    }

    /// The network guests' HTTP requests go out through.
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// The number of epoch ticks in `d`, rounded up, at least 1.
    pub fn ticks(&self, d: Duration) -> u64 {
        let tick = self.config.epoch_tick.as_nanos().max(1);
        (d.as_nanos().div_ceil(tick)).max(1) as u64
    }

    /// A key that changes whenever compiled code from this engine would not
    /// be valid in another: wasmtime's compatibility hash plus its version
    /// and this crate's cache format. Hex, 32 characters.
    pub fn compatibility_key(&self) -> String {
        use std::hash::Hash;
        let mut hasher = Blake3Hasher(blake3::Hasher::new());
        hasher.0.update(b"culvert-cache-v1\0");
        hasher.0.update(WASMTIME_VERSION.as_bytes());
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let hash = hasher.0.finalize();
        hash.to_hex()[..32].to_string()
    }
}

/// The wasmtime version this host is built with.
pub const WASMTIME_VERSION: &str = "48.0.8";

/// Feeds `Hash` into blake3, for a hash that is stable across runs (unlike
/// std's `DefaultHasher`, whose output may change between Rust versions).
struct Blake3Hasher(blake3::Hasher);

impl std::hash::Hasher for Blake3Hasher {
    fn finish(&self) -> u64 {
        let bytes = self.0.finalize();
        u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"))
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn wasmtime_config(c: &EngineConfig, pooling: bool) -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(c.fuel);
    config.max_wasm_stack(c.max_wasm_stack);
    config.async_stack_size(c.async_stack_size.max(c.max_wasm_stack + 64 * 1024));
    // Component-model async makes every call slower and no package needs it.
    config.concurrency_support(false);
    // Backtraces make every trap slow (RUST_BACKTRACE is set on these
    // machines); the error kinds we report do not need them.
    config.wasm_backtrace_max_frames(None);
    // Address maps only serve backtraces and debuggers: without them the
    // compiled artifacts are smaller and load faster from the disk cache.
    config.generate_address_map(false);
    config.parallel_compilation(true);
    if pooling {
        let n = c.pool_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 4)
            .total_stacks(n)
            .max_memory_size(c.max_memory_bytes as usize)
            .table_elements(c.max_table_elements)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_component_instance_size(1 << 20)
            .max_core_instance_size(1 << 20);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// The thread that advances the epoch.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("culvert-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .expect("spawn the epoch ticker thread");
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
