//! The HTTP API client behind `--server URL --api-key KEY`: a few typed
//! calls over `reqwest`, and the mapping of every failure to one CLI error
//! line.
//!
//! The server answers with the same JSON views the CLI prints against the
//! database (`culvert_server::views`), so a command through the API
//! prints what it prints against the database. Errors carry the server's
//! message (`{"error": {"kind", "message"}}`); a refused key, a server
//! that cannot be reached and an answer that is not Culvert's each say so
//! and what to check. The key is sent only in the `Authorization` header
//! and never printed.

use crate::args::{ApiKey, GlobalArgs};
use anyhow::Context as _;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;
use std::time::Duration;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one request (an upload included) may take; the event stream
/// has none.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Pause before the one retry of a request that could not be sent or
/// answered.
const RETRY_PAUSE: Duration = Duration::from_millis(500);

/// A server's API, as one key reaches it.
pub(crate) struct Api {
    /// The base URL as given (for messages).
    shown: String,
    /// The base URL, ending in `/`.
    base: Url,
    key: ApiKey,
    http: reqwest::Client,
}

/// What a request sends.
pub(crate) enum Body {
    /// Nothing.
    Empty,
    /// A JSON document.
    Json(Value),
    /// A package's bytes (`application/wasm`).
    Wasm(Vec<u8>),
}

/// Whether a failed request may be sent again: only reads, and starts
/// that carry an `Idempotency-Key` (the server returns the first start's
/// execution to the second).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Send once.
    Never,
    /// Send again once after a transport error (no answer).
    Once,
}

impl Api {
    /// The API client `--server` asks for, or `None` without `--server`.
    ///
    /// # Errors
    /// When `--server` is not an http(s) URL, or no key is given.
    pub(crate) fn from_global(g: &GlobalArgs) -> anyhow::Result<Option<Api>> {
        let Some(server) = g.server.as_deref().map(str::trim) else {
            return Ok(None);
        };
        let Some(key) = g.api_key.clone() else {
            anyhow::bail!(
                "--server {server} needs an API key: pass --api-key KEY or set CULVERT_API_KEY \
                 (an operator makes one with `culvert apikey create --tenant T --name N`)"
            );
        };
        let not_url = |why: &str| {
            anyhow::anyhow!(
                "--server '{server}' is not a server URL such as http://127.0.0.1:8470 or \
                 https://culvert.example.com ({why})"
            )
        };
        let mut base = Url::parse(server).map_err(|e| not_url(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(not_url("use http:// or https://"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(not_url("no query or fragment"));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("culvert-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Some(Api {
            shown: server.trim_end_matches('/').to_string(),
            base,
            key,
            http,
        }))
    }

    /// The URL of `/api/v1/` + `segments` (each one percent-encoded as a
    /// path segment) with `query`.
    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url.path_segments_mut().expect("an http(s) URL has a path");
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Send a request and return the answer's JSON, or the error the CLI
    /// prints.
    ///
    /// # Errors
    /// A refused key, an error answer (with the server's message), no
    /// answer, or an answer that is not JSON.
    pub(crate) async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, &str)],
        body: Body,
        headers: &[(&str, &str)],
        retry: Retry,
    ) -> anyhow::Result<Value> {
        let url = self.url(segments, query);
        let build = || {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(&self.key.0)
                .timeout(REQUEST_TIMEOUT);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            match &body {
                Body::Empty => request,
                Body::Json(v) => request.json(v),
                Body::Wasm(bytes) => request
                    .header(reqwest::header::CONTENT_TYPE, "application/wasm")
                    .body(bytes.clone()),
            }
        };
        let response = match build().send().await {
            Ok(r) => r,
            Err(e) if retry == Retry::Once => {
                tracing::info!(error = %e, "no answer from the server; sending the request again");
                tokio::time::sleep(RETRY_PAUSE).await;
                build().send().await.map_err(|e| self.transport_error(&e))?
            }
            Err(e) => return Err(self.transport_error(&e)),
        };
        let response = self.check(response).await?;
        let text = response
            .text()
            .await
            .map_err(|e| self.transport_error(&e))?;
        serde_json::from_str(&text).map_err(|_| {
            anyhow::anyhow!(
                "the server at {} answered {} with something other than JSON: is --server \
                 (or CULVERT_SERVER) the address of `culvert serve`?",
                self.shown,
                url.path()
            )
        })
    }

    /// GET, retried once without an answer.
    pub(crate) async fn get(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        self.call(Method::GET, segments, query, Body::Empty, &[], Retry::Once)
            .await
    }

    /// Open a `text/event-stream` (no request timeout: it lasts until its
    /// execution finishes).
    ///
    /// # Errors
    /// As [`call`](Self::call).
    pub(crate) async fn stream(
        &self,
        segments: &[&str],
        query: &[(&str, &str)],
    ) -> anyhow::Result<reqwest::Response> {
        let response = self
            .http
            .get(self.url(segments, query))
            .bearer_auth(&self.key.0)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        self.check(response).await
    }

    /// The response when it succeeded, else the error to print.
    async fn check(&self, response: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            anyhow::bail!(
                "the server at {} refused the API key: it is missing, wrong, expired or revoked. \
                 Check --api-key (or CULVERT_API_KEY); an operator makes a new one with \
                 `culvert apikey create`",
                self.shown
            );
        }
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_owned));
        match message {
            Some(m) => Err(anyhow::anyhow!("{m}")),
            None => Err(anyhow::anyhow!(
                "the server at {} answered {status} without a Culvert error: is --server (or \
                 CULVERT_SERVER) the address of `culvert serve`?",
                self.shown
            )),
        }
    }

    /// A request that got no answer, as one line naming the server.
    fn transport_error(&self, e: &reqwest::Error) -> anyhow::Error {
        // The innermost cause says what happened ("Connection refused").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        if e.is_connect() {
            anyhow::anyhow!(
                "cannot connect to the server at {} ({cause}): is `culvert serve` running there? \
                 Check --server (or CULVERT_SERVER)",
                self.shown
            )
        } else if e.is_timeout() {
            anyhow::anyhow!(
                "the server at {} did not answer in time ({cause}); try again",
                self.shown
            )
        } else {
            anyhow::anyhow!(
                "the request to the server at {} failed ({cause}); try again",
                self.shown
            )
        }
    }
}
