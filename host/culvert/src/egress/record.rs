//! What the host reports about each request ([`RequestRecord`]), and the
//! [`Report`] that makes sure each request is reported exactly once,
//! however it ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// One request a guest made: what the call's log and metrics receive.
/// Never a header value, a query string or a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The tenant.
    pub tenant: String,
    /// The method (`GET`, ...; `OTHER` for any other).
    pub method: &'static str,
    /// `scheme://host:port`.
    pub origin: String,
    /// The path, without the query, printable and at most 256 characters.
    pub path: String,
    /// The grant that let it through, or `None` when it was refused first.
    pub grant: Option<String>,
    /// The address it was connected to, once it was.
    pub address: Option<std::net::SocketAddr>,
    /// The response's status, when one came.
    pub status: Option<u16>,
    /// Response body bytes received.
    pub bytes: u64,
    /// From the request to its end.
    pub elapsed: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The response body was read to its end.
    Completed,
    /// The host refused it before it went out (policy, address, limit):
    /// the refusal's text.
    Refused(String),
    /// It failed on the way (DNS, connection, TLS, timeout, byte cap).
    Failed(String),
    /// The guest dropped the response before reading its body to the end
    /// (or the call ended first).
    Abandoned,
}

impl Outcome {
    /// `completed`, `refused`, `failed` or `abandoned`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Refused(_) => "refused",
            Outcome::Failed(_) => "failed",
            Outcome::Abandoned => "abandoned",
        }
    }
}

/// Where [`RequestRecord`]s go: the sandbox writes them to the call's log.
pub type RecordSink = Arc<dyn Fn(&RequestRecord) + Send + Sync>;

/// A request being made; reports its record once, when told how it ended
/// or, failing that, when dropped ([`Outcome::Abandoned`]).
pub(crate) struct Report {
    record: Option<RequestRecord>,
    started: Instant,
    sink: RecordSink,
}

impl Report {
    pub(crate) fn new(record: RequestRecord, sink: RecordSink) -> Self {
        Self {
            record: Some(record),
            started: Instant::now(),
            sink,
        }
    }

    pub(crate) fn set_grant(&mut self, grant: &str) {
        if let Some(r) = &mut self.record {
            r.grant = Some(grant.to_string());
        }
    }

    pub(crate) fn set_address(&mut self, address: std::net::SocketAddr) {
        if let Some(r) = &mut self.record {
            r.address = Some(address);
        }
    }

    pub(crate) fn set_status(&mut self, status: u16) {
        if let Some(r) = &mut self.record {
            r.status = Some(status);
        }
    }

    /// Report it, once.
    pub(crate) fn end(&mut self, bytes: u64, outcome: Outcome) {
        if let Some(mut r) = self.record.take() {
            r.bytes = bytes;
            r.elapsed = self.started.elapsed();
            r.outcome = outcome;
            crate::telemetry::record_egress(
                &r.tenant,
                r.method,
                r.grant.as_deref().unwrap_or(""),
                r.status,
                r.outcome.as_str(),
                r.bytes,
                r.elapsed,
            );
            (self.sink)(&r);
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        self.end(0, Outcome::Abandoned);
    }
}
