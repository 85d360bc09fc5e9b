//! Outbound HTTP from guests: `wasi:http/outgoing-handler`, policed by the
//! host on every request.
//!
//! - `policy`: the allowlist as pure rules: [`HostPattern`]
//!   (`[scheme://]host[:port]`, `*.suffix`, `*`), the two keys of a call
//!   ([`EgressPolicy`]: declared by the package *and* granted to the
//!   tenant), and the addresses no request reaches unless an operator
//!   granted that literal address ([`prohibited`]).
//! - `ledger`: the tenant's concurrent connections on this host
//!   ([`ConnectionLedger`]).
//! - `record`: what is reported about each request ([`RequestRecord`]),
//!   exactly once however it ends.
//! - `send`: the network ([`Network`]): name resolution (with the
//!   operator's overrides), the address check, a connection *to the
//!   checked address* (a DNS rebind between check and connect cannot slip
//!   through), TLS with the system's root store, HTTP/1.1; the response
//!   body metered against the call's byte budget and deadline.
//! - `hooks`: [`EgressHooks`], wasmtime-wasi-http's send hook for one
//!   call: counts requests, applies the policy, and reports each request
//!   ([`RequestRecord`]) to the call's log and to metrics.
//!
//! Redirects are never followed here: the guest sees the 3xx and a request
//! to the next hop is policed like any other.
//!
//! Refusals reach the guest as `wasi:http` error codes. Those that need
//! words (which key is missing, which address is off limits and what would
//! allow it, which limit) are `internal-error("egress denied: …")` and
//! `internal-error("egress limit: …")`; the others are typed:
//! `connection-limit-reached` (the one limit a retry can get past),
//! `HTTP-response-body-size`, `connection-timeout` and
//! `HTTP-response-timeout`, `DNS-error`, `connection-refused`.
//!
//! Imports inside run one way: `policy`, `ledger`, `record` → `send` →
//! `hooks`.

mod hooks;
mod ledger;
mod policy;
mod record;
mod send;

pub use hooks::EgressHooks;
pub use ledger::ConnectionLedger;
pub use policy::{
    Denial, Destination, EgressPolicy, HostPattern, HostRule, MAX_PATTERN_BYTES, PatternError,
    PortRule, SchemeRule, prohibited,
};
pub use record::{Outcome, RecordSink, RequestRecord};
pub use send::Network;

use std::net::IpAddr;
use std::time::Duration;

/// What one call may do over HTTP: the tenant's egress limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressLimits {
    /// Requests one call may make (refused ones count). Default 64.
    pub max_requests: u32,
    /// Response body bytes one call may receive, over all its requests.
    /// Default 16 MiB.
    pub max_response_bytes: u64,
    /// One request, from its start to the end of its response body; never
    /// past the call's own deadline. Default 30 s.
    pub request_timeout: Duration,
    /// Connections the tenant's calls may hold open at once on one host.
    /// Default 16.
    pub max_connections: u32,
}

impl Default for EgressLimits {
    fn default() -> Self {
        Self {
            max_requests: 64,
            max_response_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            max_connections: 16,
        }
    }
}

/// Engine-wide egress settings, chosen by the operator.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressConfig {
    /// Names resolved to a fixed address instead of through DNS (as curl's
    /// `--resolve`): `serve --resolve NAME=ADDRESS`. The address is checked
    /// like any resolved one.
    pub resolve: Vec<(String, IpAddr)>,
}

impl EgressConfig {
    /// Parse `NAME=ADDRESS`.
    ///
    /// # Errors
    /// A message naming the expected form.
    pub fn parse_resolve(text: &str) -> Result<(String, IpAddr), String> {
        let (name, addr) = text
            .split_once('=')
            .ok_or_else(|| format!("'{text}' is not NAME=ADDRESS"))?;
        let ip: IpAddr = addr
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| format!("'{addr}' is not an IP address (in '{text}')"))?;
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        if name.is_empty() {
            return Err(format!("'{text}' has no name"));
        }
        Ok((name, ip))
    }
}
