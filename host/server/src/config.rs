//! How the server listens and what it allows a client: addresses,
//! timeouts, rate limits and body caps.

use std::net::SocketAddr;
use std::time::Duration;

/// The default address of the API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8470";

/// How the server listens and what it allows a client. Each field
/// documents its default.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the API listens. Default `127.0.0.1:8470`.
    pub listen: SocketAddr,
    /// Where `/metrics` is also served without a key; `None` (the default)
    /// serves it only on `listen`, to operator keys.
    pub metrics_listen: Option<SocketAddr>,
    /// How long a client may take to send a request's headers, on a new or
    /// a kept-alive connection. Default 10 s.
    pub header_timeout: Duration,
    /// How long one request may take, its body included (the event stream
    /// excepted). Default 30 s.
    pub request_timeout: Duration,
    /// How long an upload's body may take to arrive. Default 60 s.
    pub upload_timeout: Duration,
    /// Requests per second each key may make, on average (a token bucket
    /// per key and per host). Default 200.
    pub rate_per_second: u32,
    /// How many requests a key may make at once above the average. Default
    /// 400.
    pub rate_burst: u32,
    /// Package uploads (and inspections) this host handles at once; more
    /// answer 429. Default 4.
    pub max_concurrent_uploads: usize,
    /// The largest JSON request body, in bytes. Default 4 MiB (a start's
    /// context is also held to the tenant's `max_context_bytes`).
    pub max_json_bytes: usize,
    /// Open connections this host accepts at once; more wait in the
    /// kernel's backlog. Default 1,024.
    pub max_connections: usize,
    /// How long a key's lookup is reused before the database is asked
    /// again: the bound on how late a revocation takes effect on other
    /// hosts. Default 500 ms.
    pub key_cache_ttl: Duration,
    /// Event streams this host serves at once; more answer 429. Default
    /// 256.
    pub max_streams: usize,
    /// How often the event stream polls the database for new events.
    /// Default 200 ms.
    pub stream_poll: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a valid address"),
            metrics_listen: None,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(60),
            rate_per_second: 200,
            rate_burst: 400,
            max_concurrent_uploads: 4,
            max_json_bytes: 4 << 20,
            max_connections: 1024,
            key_cache_ttl: Duration::from_millis(500),
            max_streams: 256,
            stream_poll: Duration::from_millis(200),
        }
    }
}
