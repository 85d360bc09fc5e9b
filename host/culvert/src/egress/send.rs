//! The network side of a request: [`Network`] resolves the name (or takes
//! the operator's override), keeps only addresses the policy lets it reach,
//! connects to one of *those* addresses, speaks TLS with the system's root
//! store for `https`, and HTTP/1.1 with an origin-form request line. The
//! response body is metered ([`MeteredBody`]) against the call's byte
//! budget and the request's deadline.
//!
//! Everything a request holds (its socket, the connection task, its
//! [`ConnectionPermit`]) is owned by futures that wasmtime aborts when the
//! guest drops the response or its store goes away, so a preempted task's
//! connection closes with it.

use super::EgressConfig;
use super::ledger::{ConnectionLedger, ConnectionPermit};
use super::policy::{Destination, EgressPolicy, prohibited};
use super::record::{Outcome, Report};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody};

/// The most addresses of one name tried in turn.
const MAX_ADDRESSES: usize = 4;
/// The most request body read (and thrown away) from a refused request, so
/// the guest's write completes and it sees the refusal, not a broken pipe.
const DRAIN_BYTES: usize = 1024 * 1024;

/// The host's side of the network, shared by every call of one engine:
/// the operator's settings, the TLS configuration (built on first use) and
/// the tenants' open connections.
pub struct Network {
    config: EgressConfig,
    ledger: Arc<ConnectionLedger>,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A call's budget of response bytes, shared by its requests.
#[derive(Debug)]
pub(crate) struct ByteBudget {
    cap: u64,
    used: AtomicU64,
}

impl ByteBudget {
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            cap,
            used: AtomicU64::new(0),
        }
    }
    /// Take `n` bytes, or nothing and `false` when they do not fit.
    fn take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|t| *t <= self.cap)
            })
            .is_ok()
    }
    fn left(&self) -> u64 {
        self.cap.saturating_sub(self.used.load(Ordering::Acquire))
    }
    /// Bytes received so far.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// One request the policy let through, with what bounds it.
pub(crate) struct Outbound {
    pub(crate) dest: Destination,
    pub(crate) policy: Arc<EgressPolicy>,
    pub(crate) max_connections: u32,
    /// Its own deadline: the tenant's request timeout, never past the
    /// call's deadline.
    pub(crate) deadline: Instant,
    pub(crate) options: Option<RequestOptions>,
    pub(crate) budget: Arc<ByteBudget>,
    /// Taken by the response body once there is one.
    pub(crate) report: Option<Report>,
}

impl Outbound {
    /// The request's deadline, or sooner when the guest asked for `limit`.
    fn within(&self, limit: Option<Duration>) -> Instant {
        match limit {
            Some(d) => self.deadline.min(Instant::now() + d),
            None => self.deadline,
        }
    }
}

/// A failure: what the guest receives, and what the log says.
type Failed = (Error, String);

/// What `send_request` returns on success.
pub(crate) type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

impl Network {
    /// A network with the operator's `config`.
    pub fn new(config: EgressConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            ledger: Arc::new(ConnectionLedger::default()),
            tls: OnceLock::new(),
        })
    }

    /// The tenants' open connections on this host.
    pub fn ledger(&self) -> &Arc<ConnectionLedger> {
        &self.ledger
    }

    /// Send `request`; report how it ends through `out.report`.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut out: Outbound,
        request: http::Request<WasiBody>,
    ) -> Result<Sent, Error> {
        match self.try_send(&mut out, request).await {
            Ok(sent) => Ok(sent),
            Err((code, note)) => {
                let outcome = if note.starts_with("egress") {
                    Outcome::Refused(note)
                } else {
                    Outcome::Failed(note)
                };
                if let Some(report) = out.report.as_mut() {
                    report.end(0, outcome);
                }
                Err(code)
            }
        }
    }

    /// Resolve, check, connect (TLS for `https`) and shake hands: a sender
    /// for the request, and the task that drives the connection.
    async fn open(
        &self,
        out: &Outbound,
        started: Instant,
    ) -> Result<
        (
            hyper::client::conn::http1::SendRequest<WasiBody>,
            wasmtime_wasi::runtime::AbortOnDropJoinHandle<()>,
            SocketAddr,
        ),
        Failed,
    > {
        let dest = &out.dest;
        // The permit comes first: a name lookup holds a thread until the
        // resolver gives up, so it counts as a connection too.
        let permit = self
            .ledger
            .try_open(&out.policy.tenant, out.max_connections)
            .ok_or_else(|| {
                (
                    Error::ConnectionLimitReached,
                    format!(
                        "egress limit: tenant '{}' already has {} connections open on this host (max_http_connections)",
                        out.policy.tenant, out.max_connections
                    ),
                )
            })?;
        let ips = self.resolve(dest, out.deadline).await?;
        let addrs = reachable(&ips, dest, &out.policy)?;
        let connect_by = out.within(out.options.and_then(|o| o.connect_timeout));
        let tcp = connect(&addrs, connect_by).await?;
        let address = tcp.peer_addr().map_err(|e| {
            (
                Error::ConnectionTerminated,
                format!("the connection closed: {e}"),
            )
        })?;
        let stream: Box<dyn Stream> = if dest.https {
            Box::new(self.tls_handshake(dest, tcp, connect_by).await?)
        } else {
            Box::new(tcp)
        };
        let handshake = hyper::client::conn::http1::Builder::new()
            .max_buf_size(256 * 1024)
            .handshake::<_, WasiBody>(wasmtime_wasi_http::io::TokioIo::new(stream));
        let (sender, conn) = tokio::time::timeout_at(connect_by.into(), handshake)
            .await
            .map_err(|_| timed_out(Error::ConnectionTimeout, "the HTTP handshake", started))?
            .map_err(|e| (from_hyper(&e), format!("the HTTP handshake failed: {e}")))?;
        // The connection is driven by its own task, which holds the permit:
        // dropping the handle (the guest dropped the response, or its store
        // went away) aborts it and closes the socket.
        // It ends at the request's deadline too, body read or not (a moment
        // after, so that the request's own timers report the timeout).
        let closes_at = out.deadline + Duration::from_millis(100);
        let conn_task = wasmtime_wasi::runtime::spawn(async move {
            let _permit: ConnectionPermit = permit;
            let _ = tokio::time::timeout_at(closes_at.into(), conn).await;
        });
        Ok((sender, conn_task, address))
    }

    async fn try_send(
        &self,
        out: &mut Outbound,
        mut request: http::Request<WasiBody>,
    ) -> Result<Sent, Failed> {
        let started = Instant::now();
        let head_request = request.method() == http::Method::HEAD;
        let (mut sender, conn_task) = match self.open(out, started).await {
            Ok((sender, conn_task, address)) => {
                if let Some(report) = out.report.as_mut() {
                    report.set_address(address);
                }
                (sender, conn_task)
            }
            Err(failed) => {
                // Let the guest finish writing its body, so that it reads
                // this failure and not a broken stream.
                drain(request.into_body()).await;
                return Err(failed);
            }
        };
        // The request line is origin-form: the authority is in the Host
        // header wasmtime set from the URL.
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| "/".into());
        *request.uri_mut() = http::Uri::builder()
            .path_and_query(path)
            .build()
            .map_err(|e| (Error::HttpRequestUriInvalid, format!("invalid path: {e}")))?;
        let headers_by = out.within(out.options.and_then(|o| o.first_byte_timeout));
        let response = tokio::time::timeout_at(headers_by.into(), sender.send_request(request))
            .await
            .map_err(|_| timed_out(Error::HttpResponseTimeout, "the response", started))?
            .map_err(|e| (from_hyper(&e), format!("the request failed: {e}")))?;
        let status = response.status().as_u16();
        if let Some(report) = out.report.as_mut() {
            report.set_status(status);
        }
        let length = response
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // HEAD, 1xx, 204 and 304 carry no body, whatever their length says.
        let bodiless = head_request || matches!(status, 100..=199 | 204 | 304);
        if let Some(len) = length
            && !bodiless
            && len > out.budget.left()
        {
            return Err((
                Error::HttpResponseBodySize(Some(out.budget.cap)),
                format!(
                    "egress limit: the response of {len} bytes does not fit in what is left ({}) of tenant '{}''s max_http_response_bytes of {} for this call",
                    out.budget.left(),
                    out.policy.tenant,
                    out.budget.cap
                ),
            ));
        }
        let between = out
            .options
            .and_then(|o| o.between_bytes_timeout)
            .map(|d| (d, Box::pin(tokio::time::sleep(d))));
        let (parts, incoming) = response.into_parts();
        let body = MeteredBody {
            inner: Some(incoming),
            budget: out.budget.clone(),
            received: 0,
            deadline: Box::pin(tokio::time::sleep_until(out.deadline.into())),
            between,
            report: out.report.take(),
            tenant: out.policy.tenant.clone(),
        };
        let io = async move {
            conn_task.await;
            Ok(())
        };
        Ok((
            http::Response::from_parts(parts, body.boxed_unsync()),
            Box::new(io),
        ))
    }

    /// The addresses of `dest`: its literal address, the operator's
    /// override, or DNS.
    async fn resolve(&self, dest: &Destination, until: Instant) -> Result<Vec<IpAddr>, Failed> {
        if let Some(ip) = dest.ip {
            return Ok(vec![ip]);
        }
        if let Some((_, ip)) = self.config.resolve.iter().find(|(n, _)| *n == dest.host) {
            return Ok(vec![*ip]);
        }
        let lookup = tokio::net::lookup_host((dest.host.as_str(), dest.port));
        match tokio::time::timeout_at(until.into(), lookup).await {
            Err(_) => Err((
                Error::DnsTimeout,
                format!("resolving {} timed out", dest.host),
            )),
            Ok(Err(e)) => Err((
                Error::DnsError {
                    rcode: None,
                    info_code: None,
                },
                format!("cannot resolve {}: {e}", dest.host),
            )),
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = Vec::new();
                for a in addrs {
                    if !ips.contains(&a.ip()) {
                        ips.push(a.ip());
                    }
                }
                if ips.is_empty() {
                    Err((
                        Error::DestinationNotFound,
                        format!("{} has no address", dest.host),
                    ))
                } else {
                    Ok(ips)
                }
            }
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, Failed> {
        self.tls
            .get_or_init(build_tls)
            .clone()
            .map_err(|e| (Error::TlsProtocolError, e))
    }

    async fn tls_handshake(
        &self,
        dest: &Destination,
        tcp: TcpStream,
        until: Instant,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Failed> {
        let config = self.tls_config()?;
        let name = match dest.ip {
            Some(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
            None => rustls::pki_types::ServerName::try_from(dest.host.clone()).map_err(|_| {
                (
                    Error::HttpRequestUriInvalid,
                    format!("'{}' is not a TLS server name", dest.host),
                )
            })?,
        };
        let connector = tokio_rustls::TlsConnector::from(config);
        match tokio::time::timeout_at(until.into(), connector.connect(name, tcp)).await {
            Err(_) => Err((
                Error::ConnectionTimeout,
                "the TLS handshake timed out".into(),
            )),
            Ok(Err(e)) => {
                let text = e.to_string();
                let certificate = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| {
                        matches!(
                            r,
                            rustls::Error::InvalidCertificate(_)
                                | rustls::Error::NoCertificatesPresented
                        )
                    });
                Err((
                    if certificate {
                        Error::TlsCertificateError
                    } else {
                        Error::TlsProtocolError
                    },
                    format!("TLS with {} failed: {text}", dest.host),
                ))
            }
            Ok(Ok(stream)) => Ok(stream),
        }
    }
}

/// The TLS client configuration: the system's root store (as
/// rustls-native-certs reads it), TLS 1.2 and 1.3 with ring, HTTP/1.1.
fn build_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(format!(
            "no usable root certificates in the system's store (install the ca-certificates package){}",
            found
                .errors
                .first()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The addresses of `ips` a request to `dest` may reach: public ones, and
/// prohibited ones only when granted literally. None: refused, naming the
/// address and the grant that would allow it.
fn reachable(
    ips: &[IpAddr],
    dest: &Destination,
    policy: &EgressPolicy,
) -> Result<Vec<SocketAddr>, Failed> {
    let mut refused = None;
    let mut ok = Vec::new();
    for &ip in ips {
        match prohibited(ip) {
            None => ok.push(SocketAddr::new(ip, dest.port)),
            Some(why) => {
                // Both keys again, for the address itself: granted literally,
                // and declared by a pattern that allows it.
                let literal = Destination {
                    https: dest.https,
                    host: ip.to_string(),
                    ip: Some(ip),
                    port: dest.port,
                };
                if policy
                    .granted
                    .iter()
                    .any(|g| g.literally_allows(ip, dest.https, dest.port))
                    && policy.declared.iter().any(|d| d.allows(&literal))
                {
                    ok.push(SocketAddr::new(ip, dest.port));
                } else if refused.is_none() {
                    refused = Some((ip, why));
                }
            }
        }
        if ok.len() == MAX_ADDRESSES {
            break;
        }
    }
    if ok.is_empty() {
        let (ip, why) = refused.expect("at least one address");
        let literal = match ip {
            IpAddr::V6(v6) => format!("[{v6}]:{}", dest.port),
            IpAddr::V4(v4) => format!("{v4}:{}", dest.port),
        };
        // In words rather than `destination-IP-prohibited`, which has none:
        // the guest's error then says which address and what would allow it.
        let note = format!(
            "egress denied: {} resolves to {ip}, a {why} address, which only a grant of that literal address allows (culvert grant --tenant {} --http {literal})",
            dest.origin(),
            policy.tenant
        );
        return Err((Error::InternalError(Some(note.clone())), note));
    }
    Ok(ok)
}

/// Connect to the first of `addrs` that answers by `until`.
async fn connect(addrs: &[SocketAddr], until: Instant) -> Result<TcpStream, Failed> {
    let mut last = None;
    for addr in addrs {
        match tokio::time::timeout_at(until.into(), TcpStream::connect(addr)).await {
            Err(_) => {
                return Err((
                    Error::ConnectionTimeout,
                    format!("connecting to {addr} timed out"),
                ));
            }
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = Some((addr, e)),
        }
    }
    let (addr, e) = last.expect("at least one address");
    Err((
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            Error::ConnectionRefused
        } else {
            Error::DestinationUnavailable
        },
        format!("cannot connect to {addr}: {e}"),
    ))
}

/// A wasi:http code for what hyper reports, so that a dropped connection
/// reads as one (and the SDK retries it) rather than as a protocol error.
fn from_hyper(e: &hyper::Error) -> Error {
    if e.is_timeout() {
        Error::HttpResponseTimeout
    } else if e.is_incomplete_message() {
        Error::HttpResponseIncomplete
    } else if e.is_closed() || e.is_canceled() {
        Error::ConnectionTerminated
    } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        Error::HttpProtocolError
    } else {
        Error::ConnectionTerminated
    }
}

fn timed_out(code: Error, what: &str, started: Instant) -> Failed {
    (
        code,
        format!(
            "timed out waiting for {what} after {} ms",
            started.elapsed().as_millis()
        ),
    )
}

/// Read and throw away a refused request's body (up to [`DRAIN_BYTES`],
/// for at most a second), so that the guest's writes finish and it sees
/// the refusal rather than a closed stream.
pub(crate) async fn drain(mut body: WasiBody) {
    let drain = async {
        let mut n = 0;
        while let Some(Ok(frame)) = body.frame().await {
            n += frame.data_ref().map_or(0, |d| d.len());
            if n > DRAIN_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}

/// A response body, metered: each data frame is taken from the call's
/// byte budget, the request's deadline and the guest's between-bytes
/// timeout apply, and the request is reported when the body ends, fails or
/// is dropped.
struct MeteredBody {
    inner: Option<hyper::body::Incoming>,
    budget: Arc<ByteBudget>,
    received: u64,
    deadline: Pin<Box<tokio::time::Sleep>>,
    between: Option<(Duration, Pin<Box<tokio::time::Sleep>>)>,
    report: Option<Report>,
    tenant: String,
}

impl MeteredBody {
    fn fail(&mut self, code: Error, note: String) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.inner = None;
        if let Some(r) = self.report.as_mut() {
            r.end(self.received, Outcome::Failed(note));
        }
        Poll::Ready(Some(Err(code)))
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(None) => {
                this.inner = None;
                if let Some(r) = this.report.as_mut() {
                    r.end(this.received, Outcome::Completed);
                }
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                if this.deadline.is_elapsed() {
                    return this.fail(
                        Error::HttpResponseTimeout,
                        "the request timed out while its body was read".into(),
                    );
                }
                let note = format!("the response body failed: {e}");
                this.fail(from_hyper(&e), note)
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if !this.budget.take(n) {
                        let cap = this.budget.cap;
                        let note = format!(
                            "egress limit: the responses of this call passed tenant '{}''s max_http_response_bytes of {cap}",
                            this.tenant
                        );
                        return this.fail(Error::HttpResponseBodySize(Some(cap)), note);
                    }
                    this.received += n;
                    if let Some((d, sleep)) = &mut this.between {
                        sleep.as_mut().reset((Instant::now() + *d).into());
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    return this.fail(
                        Error::HttpResponseTimeout,
                        "the request timed out while its body was read".into(),
                    );
                }
                if let Some((_, sleep)) = &mut this.between
                    && sleep.as_mut().poll(cx).is_ready()
                {
                    return this.fail(
                        Error::ConnectionReadTimeout,
                        "the guest's between-bytes timeout passed".into(),
                    );
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|i| i.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map(|i| i.size_hint())
            .unwrap_or_else(|| SizeHint::with_exact(0))
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        if let Some(r) = self.report.as_mut() {
            r.end(self.received, Outcome::Abandoned);
        }
    }
}
