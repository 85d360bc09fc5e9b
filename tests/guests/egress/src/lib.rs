//! Test fixture: outbound HTTP through `culvert_sdk::http`, for the host's
//! egress tests (tests/egress.rs). Package `egress`.
//!
//! It declares `127.0.0.1:*`, `localhost:*`, `*.egress.test:*` and
//! `egress.test:*`; a test grants what it needs, and reaches an undeclared
//! destination with a name outside that list (`other.test`).
//!
//! Each workflow is one task of the same name. A failed request fails the
//! task with the SDK's `From<HttpError> for TaskError` (transient or
//! permanent as the SDK maps it), whose message is the error's text.

use culvert_sdk::http::{self, Response};
use culvert_sdk::{Context, TaskError};
use std::time::Duration;

/// GET the context's `url`, with its optional `timeout_ms`.
fn get_url(ctx: &Context) -> Result<Response, TaskError> {
    let url: String = ctx.get("url")?;
    get(ctx, &url)
}

/// GET `url`, with the context's optional `timeout_ms`.
fn get(ctx: &Context, url: &str) -> Result<Response, TaskError> {
    let mut request = http::Request::get(url);
    if let Some(ms) = ctx.get_or::<Option<u64>>("timeout_ms", None)? {
        request = request.timeout(Duration::from_millis(ms));
    }
    Ok(request.send()?)
}

/// Writes what the tests look at: `status`, `location` (or null), `body`
/// (its text, lossily, first 1000 characters) and `bytes` (its length).
fn record(ctx: &mut Context, response: &Response) -> Result<(), TaskError> {
    ctx.set("status", response.status())?;
    ctx.set("location", response.header("location"))?;
    let body: String = String::from_utf8_lossy(response.bytes())
        .chars()
        .take(1000)
        .collect();
    ctx.set("body", body)?;
    ctx.set("bytes", response.bytes().len())?;
    Ok(())
}

#[culvert_sdk::workflow(name = "get", description = "GET `url`; record the response as it is.")]
mod get {
    /// GETs `url` (optional `timeout_ms`); writes `status`, `location`,
    /// `body` and `bytes`. No `error_for_status`: a 404 is recorded.
    #[task(id = "get")]
    fn get(ctx: &mut Context) -> Result<(), TaskError> {
        let response = super::get_url(ctx)?;
        super::record(ctx, &response)
    }
}

#[culvert_sdk::workflow(
    name = "undeclared",
    description = "Same as `get`, under another name."
)]
mod undeclared {
    /// Same as `get`.
    #[task(id = "undeclared")]
    fn undeclared(ctx: &mut Context) -> Result<(), TaskError> {
        let response = super::get_url(ctx)?;
        super::record(ctx, &response)
    }
}

#[culvert_sdk::workflow(name = "many", description = "GET `url` `count` times in a row.")]
mod many {
    /// GETs `url` `count` times; writes `done`, the number that succeeded.
    /// The first failure fails the task, its message prefixed `request N: `.
    #[task(id = "many")]
    fn many(ctx: &mut Context) -> Result<(), TaskError> {
        let count: u32 = ctx.get("count")?;
        let mut done = 0u32;
        for n in 1..=count {
            if let Err(mut e) = super::get_url(ctx) {
                e.message = format!("request {n}: {}", e.message);
                return Err(e);
            }
            done += 1;
        }
        ctx.set("done", done)?;
        Ok(())
    }
}

#[culvert_sdk::workflow(
    name = "follow",
    description = "GET `url`, expect a redirect, GET its Location."
)]
mod follow {
    /// GETs `url`, which must answer 3xx with an absolute `Location`, then
    /// GETs that; writes `first_status` and `second_status`.
    #[task(id = "follow")]
    fn follow(ctx: &mut Context) -> Result<(), TaskError> {
        let first = super::get_url(ctx)?;
        if !(300..400).contains(&first.status()) {
            return Err(TaskError::permanent(format!(
                "expected a redirect, got status {}",
                first.status()
            )));
        }
        let Some(location) = first.header("location") else {
            return Err(TaskError::permanent("the redirect has no Location header"));
        };
        let second = super::get(ctx, location)?;
        ctx.set("first_status", first.status())?;
        ctx.set("second_status", second.status())?;
        Ok(())
    }
}

#[culvert_sdk::workflow(name = "post", description = "POST a JSON object to `url`.")]
mod post {
    /// POSTs `{"hello": "world"}` to `url`; writes `status` and `body`.
    #[task(id = "post")]
    fn post(ctx: &mut Context) -> Result<(), TaskError> {
        let url: String = ctx.get("url")?;
        let response = culvert_sdk::http::post_json(&url, &serde_json::json!({"hello": "world"}))?;
        ctx.set("status", response.status())?;
        ctx.set(
            "body",
            String::from_utf8_lossy(response.bytes()).into_owned(),
        )?;
        Ok(())
    }
}

#[culvert_sdk::workflow(
    name = "twice",
    description = "GET `url` in two attempts: the first fails on purpose after its request."
)]
mod twice {
    /// GETs `url`; on a non-final attempt then fails transiently, so that
    /// the next attempt (2 s later) fetches again. A refused request fails
    /// the attempt as `get` does.
    #[task(
        id = "twice",
        retry(
            max_attempts = 2,
            backoff = "fixed",
            initial_delay_ms = 2000,
            jitter = false
        )
    )]
    fn twice(ctx: &mut Context) -> Result<(), TaskError> {
        let response = super::get_url(ctx)?;
        super::record(ctx, &response)?;
        let attempt = ctx.attempt();
        if !attempt.is_last() {
            return Err(TaskError::transient(format!(
                "attempt {} fetched; failing on purpose so that attempt {} fetches again",
                attempt.number,
                attempt.number + 1
            )));
        }
        Ok(())
    }
}

culvert_sdk::export_package!(
    get,
    undeclared,
    many,
    follow,
    post,
    twice,
    name = "egress",
    capabilities(
        http_hosts = [
            "127.0.0.1:*",
            "localhost:*",
            "*.egress.test:*",
            "egress.test:*"
        ]
    )
);
