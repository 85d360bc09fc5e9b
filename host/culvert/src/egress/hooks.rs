//! [`EgressHooks`]: wasmtime-wasi-http's send hook for one call. Every
//! request passes here: it is counted against the call's
//! `max_http_requests_per_call`, its URL is checked (`http` or `https`, no
//! user information) and matched against both keys of the call's
//! [`EgressPolicy`]; a refused request never touches the network, and one
//! let through goes to the [`Network`] with its own deadline.

use super::EgressLimits;
use super::policy::{Destination, EgressPolicy, is_dns_name};
use super::record::{Outcome, RecordSink, Report, RequestRecord};
use super::send::{ByteBudget, Network, Outbound, drain};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The send hook of one call.
pub struct EgressHooks {
    network: Arc<Network>,
    policy: Arc<EgressPolicy>,
    limits: EgressLimits,
    call_deadline: Instant,
    requests: u32,
    budget: Arc<ByteBudget>,
    sink: RecordSink,
}

impl std::fmt::Debug for EgressHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressHooks")
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

impl EgressHooks {
    /// The hook of a call that ends at `call_deadline`, under `policy` and
    /// `limits`, reporting each request to `sink`.
    pub fn new(
        network: Arc<Network>,
        policy: Arc<EgressPolicy>,
        limits: EgressLimits,
        call_deadline: Instant,
        sink: RecordSink,
    ) -> Self {
        let budget = Arc::new(ByteBudget::new(limits.max_response_bytes));
        Self {
            network,
            policy,
            limits,
            call_deadline,
            requests: 0,
            budget,
            sink,
        }
    }

    /// Requests made so far, refused ones included.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// Response body bytes received so far.
    pub fn received_bytes(&self) -> u64 {
        self.budget.used()
    }

    /// Why the policy or a limit refuses `uri`, or where it goes.
    fn admit(&self, uri: &http::Uri, report: &mut Report) -> Result<Destination, String> {
        let tenant = &self.policy.tenant;
        if self.requests > self.limits.max_requests {
            return Err(format!(
                "egress limit: request {} of this call is over tenant '{tenant}''s max_http_requests_per_call of {}",
                self.requests, self.limits.max_requests
            ));
        }
        let dest = destination(uri)?;
        match self.policy.check(&dest) {
            Ok(grant) => {
                report.set_grant(&grant.text);
                Ok(dest)
            }
            Err(denial) => Err(self.policy.explain(&dest, &denial)),
        }
    }
}

impl WasiHttpHooks for EgressHooks {
    /// Every scheme reaches [`send_request`](Self::send_request), which
    /// refuses all but `http` and `https` with words the guest can read.
    fn is_supported_scheme(&mut self, _scheme: &http::uri::Scheme) -> bool {
        true
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), Error>> + Send>,
                    ),
                    Error,
                >,
            > + Send,
    > {
        self.requests = self.requests.saturating_add(1);
        if self.requests > self.limits.max_requests.saturating_add(1) {
            // Past the limit and already reported once: refused without a
            // record, so a guest looping on refusals cannot flood the logs.
            let text = format!(
                "egress limit: request {} of this call is over tenant '{}''s max_http_requests_per_call of {}",
                self.requests, self.policy.tenant, self.limits.max_requests
            );
            let body = request.into_body();
            return Box::new(async move {
                drain(body).await;
                Err(Error::InternalError(Some(text)))
            });
        }
        let uri = request.uri().clone();
        let mut report = Report::new(
            RequestRecord {
                tenant: self.policy.tenant.clone(),
                method: method_label(request.method()),
                origin: origin_text(&uri),
                path: bounded(uri.path(), 256),
                grant: None,
                address: None,
                status: None,
                bytes: 0,
                elapsed: Duration::ZERO,
                outcome: Outcome::Abandoned,
            },
            self.sink.clone(),
        );
        match self.admit(&uri, &mut report) {
            Err(text) => {
                report.end(0, Outcome::Refused(text.clone()));
                let body = request.into_body();
                Box::new(async move {
                    drain(body).await;
                    Err(Error::InternalError(Some(text)))
                })
            }
            Ok(dest) => {
                let deadline = self
                    .call_deadline
                    .min(Instant::now() + self.limits.request_timeout);
                let out = Outbound {
                    dest,
                    policy: self.policy.clone(),
                    max_connections: self.limits.max_connections,
                    deadline,
                    options,
                    budget: self.budget.clone(),
                    report: Some(report),
                };
                Box::new(self.network.clone().send(out, request))
            }
        }
    }
}

/// Where `uri` goes, or why it may not go anywhere.
fn destination(uri: &http::Uri) -> Result<Destination, String> {
    let https = match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => true,
        Some(s) if s.eq_ignore_ascii_case("http") => false,
        other => {
            return Err(format!(
                "egress denied: the scheme {} is not allowed: use http or https",
                crate::guest_text::printable(other.unwrap_or("(none)"))
            ));
        }
    };
    let authority = uri
        .authority()
        .ok_or_else(|| "egress denied: the URL has no host".to_string())?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if authority.as_str().contains('@') {
        return Err(format!(
            "egress denied: user information in the URL of {} is refused: send credentials in a header",
            crate::guest_text::printable(&host)
        ));
    }
    let ip = host.parse::<IpAddr>().ok();
    if ip.is_none() && !is_dns_name(&host) {
        return Err(format!(
            "egress denied: '{}' is not a host name or an address",
            bounded(&host, 64)
        ));
    }
    // A port that does not parse (`:99999`, `:http`) is refused, not
    // replaced by the default one.
    let after_host = authority
        .as_str()
        .rsplit_once(']')
        .map_or(authority.as_str(), |(_, rest)| rest);
    if after_host.contains(':') && authority.port_u16().is_none_or(|p| p == 0) {
        return Err(format!(
            "egress denied: the port of {} is not a number from 1 to 65535",
            bounded(&host, 64)
        ));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok(Destination {
        https,
        ip,
        host,
        port,
    })
}

/// `scheme://authority` without user information, escaped, bounded.
fn origin_text(uri: &http::Uri) -> String {
    let authority = uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or("").to_string())
        .unwrap_or_default();
    bounded(
        &format!("{}://{authority}", uri.scheme_str().unwrap_or("")),
        300,
    )
}

/// Guest text made one safe line of at most `max` characters.
fn bounded(text: &str, max: usize) -> String {
    let mut out: String = crate::guest_text::escape(text).chars().take(max).collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// The method, one of a fixed set (a guest's own method is `OTHER`), so a
/// metric label stays bounded.
fn method_label(m: &http::Method) -> &'static str {
    match *m {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_destinations_or_refusals() {
        let d = destination(&"https://API.Example.com./x?k=v".parse().unwrap()).unwrap();
        assert_eq!(
            (d.https, d.host.as_str(), d.port, d.ip),
            (true, "api.example.com", 443, None)
        );
        let d = destination(&"http://[::1]:8080/".parse().unwrap()).unwrap();
        assert_eq!(d.ip, Some("::1".parse().unwrap()));
        assert_eq!(d.origin(), "http://[::1]:8080");
        let e = destination(&"http://user:pw@a.test/".parse().unwrap()).unwrap_err();
        assert!(
            e.contains("user information") && e.contains("a.test"),
            "{e}"
        );
        assert!(!e.contains("pw"), "the password is not echoed: {e}");
        let e = destination(&"ftp://a.test/".parse().unwrap()).unwrap_err();
        assert!(e.contains("scheme"), "{e}");
        let e = destination(&"http://a.test:99999/".parse().unwrap()).unwrap_err();
        assert!(e.contains("port"), "{e}");
        let e = destination(&"http://a.test:0/".parse().unwrap()).unwrap_err();
        assert!(e.contains("port"), "{e}");
        let long = format!("http://{}.test/", "a".repeat(300));
        let e = destination(&long.parse().unwrap()).unwrap_err();
        assert!(e.len() < 200, "bounded: {e}");
        assert_eq!(
            destination(&"http://a.test:8080/".parse().unwrap())
                .unwrap()
                .port,
            8080
        );
        assert_eq!(
            origin_text(&"http://user:pw@a.test:81/p".parse().unwrap()),
            "http://a.test:81"
        );
    }
}
