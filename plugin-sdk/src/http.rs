//! Outbound HTTP from a task: a small blocking client over `wasi:http`.
//!
//! A package asks for the hosts it wants to reach with
//! `export_package!(.., capabilities(http_hosts = ["api.example.com"]))`,
//! and an operator grants them to a tenant (`culvert grant --tenant T --http
//! api.example.com`). A request goes out only when its destination is both
//! declared and granted; the host refuses anything else before it touches the
//! network, and counts every request and response byte against the tenant's
//! limits.
//!
//! ```
//! use culvert_sdk::http::{self, HttpError};
//! use std::time::Duration;
//!
//! #[culvert_sdk::workflow(name = "prices")]
//! mod prices {
//!     use super::*;
//!
//!     #[derive(serde::Deserialize)]
//!     struct Quote {
//!         price: f64,
//!     }
//!
//!     /// Fetches a quote and posts it on. An `HttpError` becomes a
//!     /// `TaskError` with `?`: timeouts, connection failures, 429 and 5xx
//!     /// are transient (retried as the policy allows), the rest permanent.
//!     #[task(id = "quote", retry(max_attempts = 3))]
//!     fn quote(ctx: &mut Context) -> Result<(), TaskError> {
//!         let quote: Quote = http::Request::get("https://api.example.com/quote")
//!             .header("accept", "application/json")
//!             .timeout(Duration::from_secs(10))
//!             .send()?
//!             .error_for_status()?
//!             .json()?;
//!         ctx.set("price", quote.price)?;
//!
//!         let posted = http::post_json(
//!             "https://hooks.example.com/prices",
//!             &serde_json::json!({ "price": quote.price }),
//!         );
//!         match posted {
//!             Ok(response) => ctx.set("posted", response.status())?,
//!             // Decide for yourself instead of failing the task.
//!             Err(HttpError { message, .. }) => culvert_sdk::log::warn(&message),
//!         }
//!         Ok(())
//!     }
//! }
//!
//! culvert_sdk::export_package!(
//!     prices,
//!     capabilities(http_hosts = ["api.example.com", "hooks.example.com"])
//! );
//! # fn main() {}
//! ```
//!
//! ## Semantics
//!
//! - **Blocking.** [`Request::send`] returns when the whole response is in:
//!   its status, its headers and its body, read to the end. Stream nothing,
//!   hold nothing open.
//! - **No redirects.** A 3xx comes back as it is, `Location` header and all.
//!   The host never follows redirects either: to follow one, send a new
//!   request to the `Location`, which the host checks against the package's
//!   declaration and the tenant's grant like any other (each hop is
//!   policed).
//! - **Timeouts.** [`Request::timeout`] bounds connecting, the wait for the
//!   response's first byte and each wait between body bytes (the request
//!   options of `wasi:http`); a host that does not support one of them
//!   leaves it unset. With or without it, the host's own per-request
//!   timeout and the task's `timeout_ms` still apply.
//! - **Headers.** A `user-agent` of `culvert-sdk/VERSION` is sent unless the
//!   request sets one, and a body goes with its `content-length` (not
//!   chunked); [`Request::json`] sets `content-type: application/json`
//!   unless the request sets one.
//! - **Errors** name the request: `GET https://api.example.com/quote: timed
//!   out: ...` (the query string is left out of messages, as it often
//!   carries keys; so is any user information). See [`HttpErrorKind`].
//!
//! In a native build (`cargo test`, [`testing`](crate::testing)) there is
//! no host to send through: every request fails with
//! [`HttpErrorKind::Unavailable`].

use crate::TaskError;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::time::Duration;

/// `GET url`, with no timeout of its own.
///
/// ```no_run
/// let body = culvert_sdk::http::get("https://api.example.com/items")?
///     .error_for_status()?
///     .text()?;
/// # Ok::<(), culvert_sdk::http::HttpError>(())
/// ```
pub fn get(url: &str) -> Result<Response, HttpError> {
    Request::get(url).send()
}

/// `POST url` with `value` serialized as its JSON body
/// (`content-type: application/json`).
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, HttpError> {
    Request::post(url).json(value).send()
}

/// `POST url` with `body` as its body, of type `content_type`.
pub fn post(
    url: &str,
    body: impl Into<Vec<u8>>,
    content_type: &str,
) -> Result<Response, HttpError> {
    Request::post(url)
        .header("content-type", content_type)
        .body(body)
        .send()
}

/// A request to build up, then [`send`](Request::send).
///
/// Building never fails: a problem (a value that does not serialize) is
/// reported by `send`.
#[derive(Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    timeout: Option<Duration>,
    error: Option<HttpError>,
}

/// Shows the method, the URL as messages show it, the header names and
/// the body's size: never a header value (credentials) or the query.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &shown_url(&self.url).0)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Request {
    /// A request of `method` (such as `"PUT"` or `"DELETE"`; it is
    /// upper-cased) to `url`.
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.trim().to_ascii_uppercase(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            timeout: None,
            error: None,
        }
    }

    /// A `GET` request to `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request to `url`.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header. Names are case-insensitive; adding a name twice sends
    /// it twice. The host refuses some (`host`, `connection`, ...): such a
    /// request fails with [`HttpErrorKind::Protocol`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body to `value` serialized as JSON, and `content-type:
    /// application/json` unless a content type is set.
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(bytes) => self.body = Some(bytes),
            Err(e) => {
                let target = Target::new(&self.method, &self.url);
                self.error = Some(target.error(
                    HttpErrorKind::Protocol,
                    format!("the JSON body could not be serialized: {e}"),
                ));
            }
        }
        if !self.has_header("content-type") {
            self.headers
                .push(("content-type".into(), "application/json".into()));
        }
        self
    }

    /// Sets the body. Set a `content-type` header to say what it is.
    pub fn body(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.body = Some(bytes.into());
        self
    }

    /// Bounds each wait of the request by `timeout`: connecting, the first
    /// byte of the response, and each gap between body bytes. Not a
    /// deadline for the whole request: the task's `timeout_ms` is that.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the request and reads the whole response. A response of any
    /// status is `Ok`: see [`Response::error_for_status`].
    pub fn send(mut self) -> Result<Response, HttpError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.add_default_headers();
        let target = Target::new(&self.method, &self.url);
        exchange(self, target)
    }

    /// `user-agent`, and a body's `content-length` (sent with its length
    /// rather than chunked: some servers refuse chunked uploads), unless
    /// the request sets them.
    fn add_default_headers(&mut self) {
        if !self.has_header("user-agent") {
            self.headers.push((
                "user-agent".into(),
                format!("culvert-sdk/{}", crate::SDK_VERSION),
            ));
        }
        if let Some(body) = &self.body
            && !self.has_header("content-length")
        {
            self.headers
                .push(("content-length".into(), body.len().to_string()));
        }
    }

    fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    }
}

/// A response, read to the end.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    target: Target,
}

/// Shows the status, the request, the header names and the body's size:
/// never a header value (a `set-cookie`, say).
impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("request", &self.target.shown)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

impl Response {
    /// The status code: 200, 302, 404, ...
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first value of header `name` (case-insensitive), if any.
    /// `response.header("location")` is a redirect's target.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header, in the order received, names in lower case. A value
    /// that is not UTF-8 is decoded lossily.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }

    /// The body, taken.
    pub fn into_bytes(self) -> Vec<u8> {
        self.body
    }

    /// The body as UTF-8 text; [`HttpErrorKind::Body`] if it is not.
    pub fn text(&self) -> Result<String, HttpError> {
        String::from_utf8(self.body.clone()).map_err(|e| {
            self.target.error(
                HttpErrorKind::Body,
                format!("the response body is not UTF-8: {e}"),
            )
        })
    }

    /// The body parsed as JSON into `T`; [`HttpErrorKind::Body`] if it does
    /// not parse.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            self.target.error(
                HttpErrorKind::Body,
                format!("the response body is not the JSON expected: {e}"),
            )
        })
    }

    /// The response itself for a status below 400;
    /// [`HttpErrorKind::Status`] for a 4xx or 5xx (transient for 429 and
    /// 5xx, permanent for the rest).
    pub fn error_for_status(self) -> Result<Response, HttpError> {
        if (400..=599).contains(&self.status) {
            let status = match reason(self.status) {
                Some(reason) => format!("HTTP {} {reason}", self.status),
                None => format!("HTTP {}", self.status),
            };
            return Err(self
                .target
                .error(HttpErrorKind::Status(self.status), status));
        }
        Ok(self)
    }
}

/// What went wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpErrorKind {
    /// The host refused the destination: not declared by the package, not
    /// granted to the tenant, a prohibited address (a private or local one
    /// that was not granted by its literal address), user information in
    /// the URL. Permanent.
    Denied,
    /// A limit of the tenant: requests per call, response bytes per call
    /// (permanent), or its concurrent connections (transient: it depends on
    /// what else runs at that moment).
    Limit,
    /// Connecting, the response or its body took too long. Transient.
    Timeout,
    /// No connection, or it broke: name resolution failed, the connection
    /// was refused or reset, TLS failed. Transient.
    Connect,
    /// [`Response::error_for_status`] on a 4xx or 5xx. Transient for 429
    /// and 5xx, permanent for the rest.
    Status(u16),
    /// The URL does not parse, or is not an absolute `http` or `https`
    /// URL. Permanent.
    InvalidUrl,
    /// Any other failure of the exchange: a header the host refuses, a
    /// malformed response, a body that does not serialize. Permanent.
    Protocol,
    /// The response body could not be read, or is not the text or JSON
    /// expected. Permanent.
    Body,
    /// No host to send through: a native build (`cargo test`). Permanent.
    Unavailable,
}

/// A failed request: its kind, and a message that names the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// What went wrong.
    pub kind: HttpErrorKind,
    /// What the host or the server said, with the request's method and URL
    /// (`GET https://api.example.com/items: timed out: ...`), or the
    /// host's own words when they already name the destination
    /// (`egress denied: https://api.example.com:443 is ...`).
    pub message: String,
    /// Whether retrying may help, when the kind alone does not say (the
    /// tenant's connection limit, a transient [`HttpErrorKind::Limit`]).
    transient: bool,
}

impl HttpError {
    /// An error of `kind`; transient as the kind says (see
    /// [`HttpErrorKind`]).
    pub fn new(kind: HttpErrorKind, message: impl Into<String>) -> Self {
        HttpError {
            kind,
            message: message.into(),
            transient: false,
        }
    }

    /// Whether a later attempt may succeed: a timeout, a connection
    /// failure, a 429 or 5xx status, the tenant's connection limit.
    pub fn is_transient(&self) -> bool {
        match self.kind {
            HttpErrorKind::Timeout | HttpErrorKind::Connect => true,
            HttpErrorKind::Status(status) => status == 429 || (500..=599).contains(&status),
            _ => self.transient,
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpError {}

/// `?` in a task: [transient](HttpError::is_transient) errors become
/// [`TaskError::transient`] (retried as the task's policy allows), the
/// others [`TaskError::permanent`]; the message is kept.
impl From<HttpError> for TaskError {
    fn from(e: HttpError) -> Self {
        if e.is_transient() {
            TaskError::transient(e.message)
        } else {
            TaskError::permanent(e.message)
        }
    }
}

/// The request an error or a response belongs to, for messages:
/// `GET https://api.example.com/items`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `GET https://api.example.com/items`: no user information, no query.
    shown: String,
    /// The URL's host, lower case, for "does this text name it".
    host: String,
}

impl Target {
    fn new(method: &str, url: &str) -> Self {
        let (url, host) = shown_url(url);
        Target {
            shown: format!("{method} {url}"),
            host,
        }
    }

    /// An error of `kind` saying `what` about this request.
    fn error(&self, kind: HttpErrorKind, what: impl fmt::Display) -> HttpError {
        HttpError::new(kind, format!("{}: {what}", self.shown))
    }
}

/// `url` as messages show it (no user information, the query replaced by
/// `?...`, at most 200 characters), and its host in lower case.
fn shown_url(url: &str) -> (String, String) {
    let url = url.trim();
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    // User information ends at the last '@' before the query: a password
    // may hold '/', '#' or ':' (`https://u:p/w@host/`), so nothing before
    // that '@' is ever shown.
    let before_query = rest.find('?').unwrap_or(rest.len());
    let rest = match rest[..before_query].rfind('@') {
        Some(at) => &rest[at + 1..],
        None => rest,
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, after) = rest.split_at(end);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let path_end = after.find(['?', '#']).unwrap_or(after.len());
    let (path, tail) = after.split_at(path_end);
    let query = if tail.starts_with('?') { "?..." } else { "" };
    let host = if let Some(inner) = authority.strip_prefix('[') {
        inner.split(']').next().unwrap_or(inner)
    } else {
        authority.split(':').next().unwrap_or(authority)
    };
    (
        bounded(&format!("{scheme}{authority}{path}{query}"), 200),
        host.to_ascii_lowercase(),
    )
}

/// `text`, cut to at most `max` characters (`...` marks a cut).
fn bounded(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

/// The standard reason phrase of `status`, where one is known.
fn reason(status: u16) -> Option<&'static str> {
    #[cfg(target_arch = "wasm32")]
    {
        wstd::http::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let _ = status;
        None
    }
}

// ---------------------------------------------------------------------------
// Classification: what the host said, as plain text and names, so that it is
// testable natively. This is the contract with the host's egress policy:
//
// - `internal-error("egress denied: ...")` is Denied, `internal-error("egress
//   limit: ...")` is Limit, and their words are the message;
// - the typed `wasi:http` error codes map by name (`CODES`);
// - a failure that reached the guest only as text (a response body stream
//   error, which wstd turns into `reading incoming body stream: <the host
//   error's debug string>`) is searched for the same markers and names, and
//   for the words wasmtime-wasi-http prints its errors with (`PHRASES`:
//   its body stream errors print as `connection read timeout`, `HTTP
//   response body size exceeds limit: 1000 bytes`, `internal error: egress
//   limit: ...`).
// ---------------------------------------------------------------------------

mod classify {
    // Natively only the tests use these.
    #![cfg_attr(not(any(target_arch = "wasm32", test)), allow(dead_code))]

    use super::{HttpError, HttpErrorKind, Target, bounded};

    /// The prefix of the host's refusals.
    pub(super) const DENIED: &str = "egress denied:";
    /// The prefix of the host's limits.
    const LIMIT: &str = "egress limit:";

    /// The `wasi:http` error codes that are not [`HttpErrorKind::Protocol`], by
    /// their case names (as `wasip2`'s `ErrorCode` prints them).
    const CODES: &[(&str, HttpErrorKind)] = &[
        ("DestinationIpProhibited", HttpErrorKind::Denied),
        ("HttpRequestDenied", HttpErrorKind::Denied),
        ("HttpResponseBodySize", HttpErrorKind::Limit),
        ("ConnectionLimitReached", HttpErrorKind::Limit),
        ("ConnectionTimeout", HttpErrorKind::Timeout),
        ("ConnectionReadTimeout", HttpErrorKind::Timeout),
        ("ConnectionWriteTimeout", HttpErrorKind::Timeout),
        ("HttpResponseTimeout", HttpErrorKind::Timeout),
        ("DnsTimeout", HttpErrorKind::Timeout),
        ("DnsError", HttpErrorKind::Connect),
        ("DestinationNotFound", HttpErrorKind::Connect),
        ("DestinationUnavailable", HttpErrorKind::Connect),
        ("DestinationIpUnroutable", HttpErrorKind::Connect),
        ("ConnectionRefused", HttpErrorKind::Connect),
        ("ConnectionTerminated", HttpErrorKind::Connect),
        // The connection ended before the response did: a broken connection.
        ("HttpResponseIncomplete", HttpErrorKind::Connect),
        ("TlsProtocolError", HttpErrorKind::Connect),
        ("TlsCertificateError", HttpErrorKind::Connect),
        ("TlsAlertReceived", HttpErrorKind::Connect),
        ("HttpRequestUriInvalid", HttpErrorKind::InvalidUrl),
        ("HttpRequestUriTooLong", HttpErrorKind::InvalidUrl),
    ];

    /// How wasmtime-wasi-http prints the error codes that are not
    /// [`HttpErrorKind::Protocol`] (lower case), and their case names. Its
    /// body stream errors reach the guest only as this text.
    const PHRASES: &[(&str, &str)] = &[
        (
            "destination ip address is prohibited",
            "DestinationIpProhibited",
        ),
        ("http request denied", "HttpRequestDenied"),
        (
            "http response body size exceeds limit",
            "HttpResponseBodySize",
        ),
        ("connection limit reached", "ConnectionLimitReached"),
        ("dns lookup timed out", "DnsTimeout"),
        ("connection timeout", "ConnectionTimeout"),
        ("connection read timeout", "ConnectionReadTimeout"),
        ("connection write timeout", "ConnectionWriteTimeout"),
        ("http response timeout", "HttpResponseTimeout"),
        ("dns error", "DnsError"),
        ("destination not found", "DestinationNotFound"),
        ("destination unavailable", "DestinationUnavailable"),
        (
            "destination ip address is unroutable",
            "DestinationIpUnroutable",
        ),
        ("connection refused", "ConnectionRefused"),
        ("connection terminated", "ConnectionTerminated"),
        ("connection reset", "ConnectionTerminated"),
        ("connection error:", "ConnectionTerminated"),
        ("incomplete http response", "HttpResponseIncomplete"),
        ("tls protocol error", "TlsProtocolError"),
        ("tls certificate error", "TlsCertificateError"),
        ("tls alert received", "TlsAlertReceived"),
        ("tls error:", "TlsProtocolError"),
        ("invalid http request uri", "HttpRequestUriInvalid"),
        ("http request uri too long", "HttpRequestUriTooLong"),
    ];

    /// The one limit that is transient: the tenant's concurrent connections.
    const CONNECTION_LIMIT: &str = "ConnectionLimitReached";

    /// What a failure is.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) struct Verdict {
        pub(super) kind: HttpErrorKind,
        /// See [`HttpError::is_transient`]: only the connection limit sets it.
        pub(super) transient: bool,
        /// The host's own words (`egress denied: ...`), when it gave some.
        pub(super) words: Option<String>,
    }

    impl Verdict {
        pub(super) fn of(kind: HttpErrorKind) -> Self {
            Verdict {
                kind,
                transient: false,
                words: None,
            }
        }
    }

    /// The verdict on a typed error code: `name` is its case name
    /// (`ConnectionRefused`), `internal` the text of an `InternalError`.
    pub(super) fn verdict_of_code(name: &str, internal: Option<&str>) -> Verdict {
        if name == "InternalError" {
            let text = internal.unwrap_or("").trim_start();
            for (marker, kind) in [
                (DENIED, HttpErrorKind::Denied),
                (LIMIT, HttpErrorKind::Limit),
            ] {
                if text.starts_with(marker) {
                    return Verdict {
                        kind,
                        transient: false,
                        words: Some(text.trim_end().to_string()),
                    };
                }
            }
            return Verdict::of(HttpErrorKind::Protocol);
        }
        let kind = CODES
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(HttpErrorKind::Protocol, |(_, kind)| *kind);
        Verdict {
            kind,
            transient: name == CONNECTION_LIMIT,
            words: None,
        }
    }

    /// The verdict on a failure known only by its text, if the text says
    /// anything the contract knows: the host's markers first, then an error
    /// code's name (`ErrorCode::ConnectionReadTimeout`, or the bare name),
    /// then how wasmtime-wasi-http prints one (`connection read timeout`).
    pub(super) fn verdict_of_text(text: &str) -> Option<Verdict> {
        for (marker, kind) in [
            (DENIED, HttpErrorKind::Denied),
            (LIMIT, HttpErrorKind::Limit),
        ] {
            if let Some(words) = host_words(text, marker) {
                return Some(Verdict {
                    kind,
                    transient: false,
                    words: Some(words),
                });
            }
        }
        if let Some(at) = text.find("ErrorCode::") {
            let rest = &text[at + "ErrorCode::".len()..];
            let name_end = rest
                .find(|c: char| !c.is_ascii_alphanumeric())
                .unwrap_or(rest.len());
            let name = &rest[..name_end];
            if CODES.iter().any(|(n, _)| *n == name) {
                return Some(verdict_of_code(name, None));
            }
        }
        let lower = text.to_ascii_lowercase();
        earliest(text, CODES.iter().map(|(name, _)| (*name, *name)))
            .or_else(|| earliest(&lower, PHRASES.iter().copied()))
            .map(|name| verdict_of_code(name, None))
    }

    /// The name of the `(needle, name)` whose needle comes first in `text`.
    fn earliest(
        text: &str,
        needles: impl Iterator<Item = (&'static str, &'static str)>,
    ) -> Option<&'static str> {
        needles
            .filter_map(|(needle, name)| text.find(needle).map(|at| (at, name)))
            .min_by_key(|(at, _)| *at)
            .map(|(_, name)| name)
    }

    /// The host's words in `text`, from `marker` on: as they are in plain text,
    /// unescaped when they sit in a debug-printed string
    /// (`InternalError(Some("egress limit: ..."))`).
    pub(super) fn host_words(text: &str, marker: &str) -> Option<String> {
        let at = text.find(marker)?;
        let rest = &text[at..];
        if !text[..at].ends_with('"') {
            // One line: anything after is another error's.
            return Some(rest.lines().next().unwrap_or("").trim_end().to_string());
        }
        let mut words = String::new();
        let mut chars = rest.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => words.push('\n'),
                    Some('r') => words.push('\r'),
                    Some('t') => words.push('\t'),
                    Some('0') => words.push('\0'),
                    Some('u') => {
                        // \u{hex}
                        let hex: String = chars
                            .by_ref()
                            .skip_while(|&c| c == '{')
                            .take_while(|&c| c != '}')
                            .collect();
                        if let Some(c) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32)
                        {
                            words.push(c);
                        }
                    }
                    Some(other) => words.push(other),
                    None => break,
                },
                c => words.push(c),
            }
        }
        Some(words)
    }

    /// The error for what the host said (`verdict`) about the request to
    /// `target`; `detail` is the failure as received.
    pub(super) fn failure(target: &Target, verdict: Verdict, detail: &str) -> HttpError {
        let message = match &verdict.words {
            Some(words)
                if !target.host.is_empty() && words.to_ascii_lowercase().contains(&target.host) =>
            {
                words.clone()
            }
            Some(words) => format!("{}: {words}", target.shown),
            None => format!(
                "{}: {}: {}",
                target.shown,
                phrase(verdict.kind),
                bounded(detail, 1000)
            ),
        };
        HttpError {
            kind: verdict.kind,
            message,
            transient: verdict.transient,
        }
    }

    /// How a failure reads after the request: `GET url: timed out: ...`.
    fn phrase(kind: HttpErrorKind) -> &'static str {
        match kind {
            HttpErrorKind::Denied => "refused by the host",
            HttpErrorKind::Limit => "over a limit of the host",
            HttpErrorKind::Timeout => "timed out",
            HttpErrorKind::Connect => "connection failed",
            HttpErrorKind::Status(_) => "bad status",
            HttpErrorKind::InvalidUrl => "invalid URL",
            HttpErrorKind::Protocol => "failed",
            HttpErrorKind::Body => "reading the response body failed",
            HttpErrorKind::Unavailable => "unavailable",
        }
    }
}

// ---------------------------------------------------------------------------
// The exchange.
// ---------------------------------------------------------------------------

/// Natively there is no host to send through.
#[cfg(not(target_arch = "wasm32"))]
fn exchange(request: Request, target: Target) -> Result<Response, HttpError> {
    let Request {
        method: _,
        url: _,
        headers: _,
        body: _,
        timeout: _,
        error: _,
    } = request;
    Err(target.error(
        HttpErrorKind::Unavailable,
        "outbound HTTP only works inside the Culvert host (a wasm32 build run by `culvert`), not in a native build",
    ))
}

#[cfg(target_arch = "wasm32")]
use wasi::exchange;

/// The exchange over `wasi:http`, through wstd, blocking.
#[cfg(target_arch = "wasm32")]
mod wasi {
    use super::classify::{Verdict, failure as verdict_failure, verdict_of_code, verdict_of_text};
    use super::{HttpError, HttpErrorKind, Request, Response, Target};
    use std::time::Duration;
    use wstd::http::body::{Body, Bytes, util::Empty};
    use wstd::http::error::ErrorCode;
    use wstd::http::{Client, Method, Uri};

    /// Where a failure happened: sending and waiting for the response
    /// head, or reading the body.
    #[derive(Clone, Copy)]
    enum Phase {
        Exchange,
        Body,
    }

    pub(super) fn exchange(request: Request, target: Target) -> Result<Response, HttpError> {
        let Request {
            method,
            url,
            headers,
            body,
            timeout,
            error: _,
        } = request;
        let uri: Uri = url
            .trim()
            .parse()
            .map_err(|e| target.error(HttpErrorKind::InvalidUrl, format_args!("{e}")))?;
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {}
            _ => {
                return Err(target.error(
                    HttpErrorKind::InvalidUrl,
                    "not an absolute http:// or https:// URL",
                ));
            }
        }
        if uri.authority().is_none_or(|a| a.host().is_empty()) {
            return Err(target.error(HttpErrorKind::InvalidUrl, "the URL has no host"));
        }
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| {
            target.error(HttpErrorKind::Protocol, format_args!("invalid method: {e}"))
        })?;
        let mut builder = wstd::http::Request::builder().method(method).uri(uri);
        for (name, value) in &headers {
            builder = builder.header(name.trim(), value.as_str());
        }
        // No body: nothing is written, so a refusal by the host is what the
        // guest sees (an empty write could meet a body stream the host has
        // already closed, and report that instead).
        let body = match body {
            Some(bytes) => Body::from(bytes),
            None => Body::from_http_body(Empty::<Bytes>::new()),
        };
        let request = builder.body(body).map_err(|e| {
            target.error(
                HttpErrorKind::Protocol,
                format_args!("the request could not be built: {e}"),
            )
        })?;
        let client = client(timeout);
        wstd::runtime::block_on(async {
            let mut response = client
                .send(request)
                .await
                .map_err(|e| failure(&e, &target, Phase::Exchange))?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(name, value)| {
                    (
                        name.as_str().to_string(),
                        String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let body = response
                .body_mut()
                .contents()
                .await
                .map_err(|e| failure(&e, &target, Phase::Body))?
                .to_vec();
            Ok(Response {
                status,
                headers,
                body,
                target: target.clone(),
            })
        })
    }

    /// A client whose request options carry `timeout`, each option only if
    /// the host supports it (wstd would fail the request otherwise).
    fn client(timeout: Option<Duration>) -> Client {
        let mut client = Client::new();
        let Some(timeout) = timeout else {
            return client;
        };
        let nanos = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        let probe = wasip2::http::types::RequestOptions::new();
        if probe.set_connect_timeout(Some(nanos)).is_ok() {
            client.set_connect_timeout(timeout);
        }
        if probe.set_first_byte_timeout(Some(nanos)).is_ok() {
            client.set_first_byte_timeout(timeout);
        }
        if probe.set_between_bytes_timeout(Some(nanos)).is_ok() {
            client.set_between_bytes_timeout(timeout);
        }
        client
    }

    /// The [`HttpError`] for a failure wstd reports: a typed error code
    /// anywhere in its chain, else what its text says.
    fn failure(error: &wstd::http::Error, target: &Target, phase: Phase) -> HttpError {
        for cause in error.chain() {
            if let Some(code) = cause.downcast_ref::<ErrorCode>() {
                let debug = format!("{code:?}");
                let internal = match code {
                    ErrorCode::InternalError(text) => Some(text.as_deref().unwrap_or("")),
                    _ => None,
                };
                let verdict = verdict_of_code(case_name(&debug), internal);
                return verdict_failure(target, verdict, &debug);
            }
            if let Some(io) = cause.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                )
            {
                // A body stream closed under the guest: the connection
                // ended (or the host dropped the request).
                let detail = format!("{error:#}");
                return verdict_failure(target, Verdict::of(HttpErrorKind::Connect), &detail);
            }
        }
        let text = format!("{error:#}");
        let verdict = verdict_of_text(&text).unwrap_or_else(|| {
            Verdict::of(match phase {
                Phase::Exchange => HttpErrorKind::Protocol,
                Phase::Body => HttpErrorKind::Body,
            })
        });
        verdict_failure(target, verdict, &text)
    }

    /// `ConnectionRefused` from `ErrorCode::ConnectionRefused` (or
    /// `ErrorCode::DnsError(..)`).
    fn case_name(debug: &str) -> &str {
        let name = debug.strip_prefix("ErrorCode::").unwrap_or(debug);
        let end = name
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(name.len());
        &name[..end]
    }
}

#[cfg(test)]
mod tests {
    use super::classify::{DENIED, Verdict, failure, host_words, verdict_of_code, verdict_of_text};
    use super::*;

    fn kind_of_code(name: &str) -> HttpErrorKind {
        verdict_of_code(name, None).kind
    }

    #[test]
    fn typed_codes_map_by_name() {
        use HttpErrorKind::*;
        for (name, kind) in [
            ("DestinationIpProhibited", Denied),
            ("HttpRequestDenied", Denied),
            ("HttpResponseBodySize", Limit),
            ("ConnectionLimitReached", Limit),
            ("ConnectionTimeout", Timeout),
            ("ConnectionReadTimeout", Timeout),
            ("ConnectionWriteTimeout", Timeout),
            ("HttpResponseTimeout", Timeout),
            ("DnsTimeout", Timeout),
            ("DnsError", Connect),
            ("DestinationNotFound", Connect),
            ("DestinationUnavailable", Connect),
            ("ConnectionRefused", Connect),
            ("ConnectionTerminated", Connect),
            ("TlsProtocolError", Connect),
            ("TlsCertificateError", Connect),
            ("TlsAlertReceived", Connect),
            ("HttpRequestUriInvalid", InvalidUrl),
            ("HttpProtocolError", Protocol),
            ("HttpRequestMethodInvalid", Protocol),
            ("LoopDetected", Protocol),
            ("SomethingNew", Protocol),
        ] {
            assert_eq!(kind_of_code(name), kind, "{name}");
        }
    }

    #[test]
    fn internal_errors_are_classified_by_the_hosts_prefix() {
        let v = verdict_of_code(
            "InternalError",
            Some("egress denied: http://other.test:80 is neither declared nor granted"),
        );
        assert_eq!(v.kind, HttpErrorKind::Denied);
        assert_eq!(
            v.words.as_deref(),
            Some("egress denied: http://other.test:80 is neither declared nor granted")
        );
        let v = verdict_of_code(
            "InternalError",
            Some("egress limit: request 11 of this call"),
        );
        assert_eq!(v.kind, HttpErrorKind::Limit);
        assert!(!v.transient);
        let v = verdict_of_code("InternalError", Some("hyper went away"));
        assert_eq!((v.kind, v.words), (HttpErrorKind::Protocol, None));
        assert_eq!(
            verdict_of_code("InternalError", None).kind,
            HttpErrorKind::Protocol
        );
    }

    #[test]
    fn body_stream_texts_are_classified_as_wstd_reports_them() {
        // What wstd makes of a body stream error: its context, then the
        // host error's debug string.
        let v = verdict_of_text(
            r#"reading incoming body stream: ErrorCode::InternalError(Some("egress limit: the responses of this call passed tenant 'public''s max_http_response_bytes of 1024 \"x\""))"#,
        )
        .unwrap();
        assert_eq!(v.kind, HttpErrorKind::Limit);
        assert_eq!(
            v.words.as_deref(),
            Some(
                r#"egress limit: the responses of this call passed tenant 'public''s max_http_response_bytes of 1024 "x""#
            )
        );
        let v = verdict_of_text(
            "reading incoming body stream: ErrorCode::HttpResponseBodySize(Some(1024))",
        )
        .unwrap();
        assert_eq!((v.kind, v.words), (HttpErrorKind::Limit, None));
        // Only the name: still a limit.
        assert_eq!(
            verdict_of_text("body failed: HttpResponseBodySize")
                .unwrap()
                .kind,
            HttpErrorKind::Limit
        );
        assert_eq!(
            verdict_of_text("reading incoming body stream: ErrorCode::ConnectionReadTimeout")
                .unwrap()
                .kind,
            HttpErrorKind::Timeout
        );
        assert_eq!(
            verdict_of_text("reading incoming body stream: ErrorCode::ConnectionTerminated")
                .unwrap()
                .kind,
            HttpErrorKind::Connect
        );
        assert_eq!(
            verdict_of_text(
                r#"ErrorCode::DnsError(DnsErrorPayload { rcode: Some("address not available"), info_code: Some(0) })"#
            )
            .unwrap()
            .kind,
            HttpErrorKind::Connect
        );
        // Plain text from the host, not debug-printed.
        let v = verdict_of_text("sending: egress denied: the scheme ftp is not allowed").unwrap();
        assert_eq!(v.kind, HttpErrorKind::Denied);
        assert_eq!(
            v.words.as_deref(),
            Some("egress denied: the scheme ftp is not allowed")
        );
        // As wasmtime-wasi-http prints its body stream errors (anyhow's
        // debug form: the error's Display, then its causes).
        for (text, kind, transient) in [
            (
                "reading incoming body stream: HTTP response body size exceeds limit: 1000 bytes",
                HttpErrorKind::Limit,
                false,
            ),
            (
                "reading incoming body stream: connection read timeout",
                HttpErrorKind::Timeout,
                true,
            ),
            (
                "reading incoming body stream: HTTP response timeout",
                HttpErrorKind::Timeout,
                true,
            ),
            (
                "reading incoming body stream: connection terminated",
                HttpErrorKind::Connect,
                true,
            ),
            (
                "reading incoming body stream: connection limit reached",
                HttpErrorKind::Limit,
                true,
            ),
            (
                "reading incoming body stream: destination IP address is prohibited",
                HttpErrorKind::Denied,
                false,
            ),
        ] {
            let v = verdict_of_text(text).unwrap();
            assert_eq!(v.kind, kind, "{text}");
            let e = failure(&Target::new("GET", "http://a.test/"), v, text);
            assert_eq!(e.is_transient(), transient, "{text}");
        }
        let v = verdict_of_text(
            "reading incoming body stream: internal error: egress limit: over it\n\nCaused by:\n    x",
        )
        .unwrap();
        assert_eq!(v.kind, HttpErrorKind::Limit);
        assert_eq!(v.words.as_deref(), Some("egress limit: over it"));
        // Nothing the contract knows.
        assert_eq!(verdict_of_text("reading incoming body stream: oops"), None);
        assert_eq!(verdict_of_text("ErrorCode::InternalError(None)"), None);
    }

    #[test]
    fn debug_escapes_in_the_hosts_words_are_undone() {
        assert_eq!(
            host_words(
                r#"Some("egress denied: a\\b \u{e9}t\u{e9}\n")) tail"#,
                DENIED
            )
            .as_deref(),
            Some("egress denied: a\\b \u{e9}t\u{e9}\n")
        );
    }

    #[test]
    fn only_the_connection_limit_is_a_transient_limit() {
        let t = Target::new("GET", "http://a.test/x");
        let e = failure(
            &t,
            verdict_of_code("ConnectionLimitReached", None),
            "ErrorCode::ConnectionLimitReached",
        );
        assert_eq!(e.kind, HttpErrorKind::Limit);
        assert!(e.is_transient());
        let e = failure(
            &t,
            verdict_of_code("HttpResponseBodySize", None),
            "ErrorCode::HttpResponseBodySize(None)",
        );
        assert_eq!(e.kind, HttpErrorKind::Limit);
        assert!(!e.is_transient());
    }

    #[test]
    fn task_errors_follow_is_transient() {
        use crate::TaskErrorKind::{Permanent, Transient};
        for (kind, expected) in [
            (HttpErrorKind::Timeout, Transient),
            (HttpErrorKind::Connect, Transient),
            (HttpErrorKind::Status(500), Transient),
            (HttpErrorKind::Status(503), Transient),
            (HttpErrorKind::Status(429), Transient),
            (HttpErrorKind::Status(404), Permanent),
            (HttpErrorKind::Status(400), Permanent),
            (HttpErrorKind::Denied, Permanent),
            (HttpErrorKind::Limit, Permanent),
            (HttpErrorKind::InvalidUrl, Permanent),
            (HttpErrorKind::Protocol, Permanent),
            (HttpErrorKind::Body, Permanent),
            (HttpErrorKind::Unavailable, Permanent),
        ] {
            let e = TaskError::from(HttpError::new(kind, "GET http://a.test/: boom"));
            assert_eq!(e.kind, expected, "{kind:?}");
            assert_eq!(e.message, "GET http://a.test/: boom");
        }
    }

    #[test]
    fn messages_name_the_request_without_its_secrets() {
        let t = Target::new(
            "GET",
            " https://user:pw@API.example.com:8443/v1/items?key=secret#frag ",
        );
        assert_eq!(t.shown, "GET https://API.example.com:8443/v1/items?...");
        assert_eq!(t.host, "api.example.com");
        let e = failure(
            &t,
            verdict_of_code("ConnectionRefused", None),
            "ErrorCode::ConnectionRefused",
        );
        assert_eq!(
            e.message,
            "GET https://API.example.com:8443/v1/items?...: connection failed: ErrorCode::ConnectionRefused"
        );
        assert!(e.is_transient());
        assert_eq!(Target::new("GET", "http://[::1]:8080").host, "::1");
        assert_eq!(
            Target::new("GET", "http://127.0.0.1:8080/").host,
            "127.0.0.1"
        );
        assert_eq!(Target::new("GET", "not a url").shown, "GET not a url");
        // A password holding '/', '#' or ':' is not shown either.
        for url in [
            "https://user:pa/ss@host.test/x",
            "https://user:p#w@host.test/x",
        ] {
            let t = Target::new("GET", url);
            assert_eq!(t.shown, "GET https://host.test/x", "{url}");
            assert_eq!(t.host, "host.test");
        }
        let debug = format!(
            "{:?}",
            Request::get("https://u:pw@a.test/?k=secret").header("authorization", "Bearer secret")
        );
        assert!(
            !debug.contains("secret") && !debug.contains("pw"),
            "{debug}"
        );
        assert!(debug.contains("authorization"), "{debug}");
    }

    #[test]
    fn the_hosts_words_are_the_message_when_they_name_the_host() {
        let t = Target::new("GET", "http://other.test:8080/x");
        let named = verdict_of_code(
            "InternalError",
            Some(
                "egress denied: http://other.test:8080 is granted to tenant 'public' but package 'egress' does not declare it",
            ),
        );
        let e = failure(&t, named, "unused");
        assert_eq!(e.kind, HttpErrorKind::Denied);
        assert!(
            e.message
                .starts_with("egress denied: http://other.test:8080"),
            "{}",
            e.message
        );
        let unnamed = verdict_of_code(
            "InternalError",
            Some(
                "egress limit: request 11 of this call is over tenant 'public''s max_http_requests_per_call of 10",
            ),
        );
        let e = failure(&t, unnamed, "unused");
        assert_eq!(
            e.message,
            "GET http://other.test:8080/x: egress limit: request 11 of this call is over tenant 'public''s max_http_requests_per_call of 10"
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn long_details_are_cut() {
        let t = Target::new("GET", "http://a.test/");
        let e = failure(&t, Verdict::of(HttpErrorKind::Protocol), &"x".repeat(5000));
        assert!(e.message.len() < 1100, "{}", e.message.len());
        assert!(e.message.ends_with("..."));
        let long = format!("http://a.test/{}", "p".repeat(500));
        assert!(Target::new("GET", &long).shown.chars().count() <= 4 + 200 + 3);
    }

    #[test]
    fn natively_every_request_is_unavailable() {
        let e = get("http://127.0.0.1:9/").unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Unavailable);
        assert!(
            e.message.starts_with("GET http://127.0.0.1:9/: "),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("only works inside the Culvert host"),
            "{}",
            e.message
        );
        assert!(!e.is_transient());
        let e = post_json("http://a.test/p", &serde_json::json!({"a": 1})).unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Unavailable);
        assert!(e.message.starts_with("POST http://a.test/p: "));
    }

    #[test]
    fn a_body_that_does_not_serialize_fails_at_send() {
        let mut map = std::collections::HashMap::new();
        map.insert(vec![1u8], 1);
        let e = Request::post("http://a.test/")
            .json(&map)
            .send()
            .unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Protocol);
        assert!(
            e.message.contains("could not be serialized"),
            "{}",
            e.message
        );
    }

    fn response(status: u16, body: &[u8]) -> Response {
        Response {
            status,
            headers: vec![
                ("location".into(), "http://b.test/".into()),
                ("content-type".into(), "application/json".into()),
            ],
            body: body.to_vec(),
            target: Target::new("GET", "http://a.test/items?token=1"),
        }
    }

    #[test]
    fn responses_give_their_parts() {
        let r = response(302, br#"{"a": [1, 2]}"#);
        assert_eq!(r.status(), 302);
        assert_eq!(r.header("Location"), Some("http://b.test/"));
        assert_eq!(r.header("x-missing"), None);
        assert_eq!(r.headers().len(), 2);
        assert_eq!(r.text().unwrap(), r#"{"a": [1, 2]}"#);
        let v: serde_json::Value = r.json().unwrap();
        assert_eq!(v["a"][1], 2);
        // A 3xx is not an error.
        let r = r.error_for_status().unwrap();
        assert_eq!(r.into_bytes().len(), 13);

        let bad = response(200, b"\xff{");
        assert_eq!(bad.text().unwrap_err().kind, HttpErrorKind::Body);
        let e = bad.json::<serde_json::Value>().unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Body);
        assert!(
            e.message.starts_with("GET http://a.test/items?...: "),
            "{}",
            e.message
        );
    }

    #[test]
    fn error_for_status_fails_on_4xx_and_5xx() {
        let e = response(404, b"").error_for_status().unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Status(404));
        assert!(
            e.message
                .starts_with("GET http://a.test/items?...: HTTP 404"),
            "{}",
            e.message
        );
        assert!(!e.is_transient());
        let e = response(503, b"").error_for_status().unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::Status(503));
        assert!(e.is_transient());
        assert!(
            response(429, b"")
                .error_for_status()
                .unwrap_err()
                .is_transient()
        );
        assert!(response(204, b"").error_for_status().is_ok());
    }

    #[test]
    fn requests_set_their_default_headers() {
        let r = Request::post("http://a.test/").json(&1);
        assert!(r.has_header("Content-Type"));
        let r = Request::post("http://a.test/")
            .header("Content-Type", "application/vnd.x+json")
            .json(&1);
        assert_eq!(
            r.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                .count(),
            1
        );
        assert_eq!(Request::new(" delete ", "http://a.test/").method, "DELETE");

        let header = |r: &Request, name: &str| {
            r.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let mut r = Request::post("http://a.test/").body("hello");
        r.add_default_headers();
        assert_eq!(header(&r, "content-length").as_deref(), Some("5"));
        assert_eq!(
            header(&r, "user-agent"),
            Some(format!("culvert-sdk/{}", crate::SDK_VERSION))
        );
        let mut r = Request::get("http://a.test/").header("User-Agent", "me");
        r.add_default_headers();
        assert_eq!(header(&r, "content-length"), None, "no body, no length");
        assert_eq!(header(&r, "user-agent"), None, "the request's own is kept");
    }
}
