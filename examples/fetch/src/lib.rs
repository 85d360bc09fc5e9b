//! Outbound HTTP with `culvert_sdk::http`: fetch a JSON document, summarize
//! it, and (if asked) post the summary on.
//!
//! Workflow `fetch`:
//!
//! - `fetch` GETs the context's `url` (10 s timeouts), fails on a 4xx or
//!   5xx status, and writes the parsed body to `fetched`, with
//!   `fetched_status` and `fetched_bytes`. Timeouts, connection failures,
//!   429 and 5xx are transient: it tries up to 3 times.
//! - `summarize` writes `summary`: the JSON type of `fetched`, and for an
//!   object its number of keys and their names (the first 20), for an array
//!   its length, for a string, number or bool the value itself.
//! - `post` runs only when the context has `post_url`: it POSTs
//!   `{"summary": ..., "source": url}` there and writes `posted_status`.
//!
//! The package declares `http_hosts = ["*:*"]`: any host, on any port (a
//! bare `"*"` is any host on its scheme's default port, 80 or 443). That is
//! one of the two keys; the other is the operator's grant to the tenant
//! (`culvert grant --tenant public --http api.example.com`), so what the
//! tenant was granted is what this package can reach. A package that knows
//! its destinations should declare them instead (`["api.example.com"]`).

#[culvert_sdk::workflow(
    name = "fetch",
    description = "GET a JSON document, summarize it, optionally POST the summary."
)]
mod fetch {
    use culvert_sdk::http;
    use serde_json::{Value, json};
    use std::time::Duration;

    /// Object keys listed in a summary, at most.
    const MAX_KEYS: usize = 20;

    /// GETs `url` and writes the parsed JSON body to `fetched`, with
    /// `fetched_status` and `fetched_bytes`.
    #[task(
        id = "fetch",
        retry(max_attempts = 3, backoff = "exponential", initial_delay_ms = 500)
    )]
    fn fetch(ctx: &mut Context) -> Result<(), TaskError> {
        let url: String = ctx.get("url")?;
        let response = http::Request::get(&url)
            .header("accept", "application/json")
            .timeout(Duration::from_secs(10))
            .send()?
            .error_for_status()?;
        let fetched: Value = response.json()?;
        culvert_sdk::log::log(
            culvert_sdk::log::Level::Info,
            "fetched",
            &[
                ("status", &response.status().to_string()),
                ("bytes", &response.bytes().len().to_string()),
            ],
        );
        ctx.set("fetched_status", response.status())?;
        ctx.set("fetched_bytes", response.bytes().len())?;
        ctx.set("fetched", fetched)?;
        Ok(())
    }

    /// Writes `summary`: what `fetched` is, in a few words.
    #[task(id = "summarize", dependencies = ["fetch"])]
    fn summarize(ctx: &mut Context) -> Result<(), TaskError> {
        let fetched: Value = ctx.get("fetched")?;
        ctx.set("summary", summary(&fetched))?;
        Ok(())
    }

    /// POSTs `{"summary": ..., "source": url}` to `post_url`, when the
    /// context has one; writes `posted_status`. Not retried: a POST may
    /// not be safe to repeat.
    #[task(
        id = "post",
        dependencies = ["summarize"],
        trigger = all(succeeded("summarize"), exists("post_url"))
    )]
    fn post(ctx: &mut Context) -> Result<(), TaskError> {
        let post_url: String = ctx.get("post_url")?;
        let source: String = ctx.get("url")?;
        let summary: Value = ctx.get("summary")?;
        let response = http::Request::post(&post_url)
            .json(&json!({ "summary": summary, "source": source }))
            .timeout(Duration::from_secs(10))
            .send()?
            .error_for_status()?;
        ctx.set("posted_status", response.status())?;
        Ok(())
    }

    /// The summary of a JSON value.
    pub(crate) fn summary(value: &Value) -> Value {
        match value {
            Value::Object(map) => json!({
                "type": "object",
                "keys": map.len(),
                "key_names": map.keys().take(MAX_KEYS).collect::<Vec<_>>(),
            }),
            Value::Array(items) => json!({ "type": "array", "length": items.len() }),
            Value::String(s) => json!({ "type": "string", "value": s }),
            Value::Number(n) => json!({ "type": "number", "value": n }),
            Value::Bool(b) => json!({ "type": "bool", "value": b }),
            Value::Null => json!({ "type": "null" }),
        }
    }
}

// Any host, any port: the tenant's grants decide.
culvert_sdk::export_package!(fetch, capabilities(http_hosts = ["*:*"]));

#[cfg(test)]
mod tests {
    use culvert_sdk::testing::{self, FailureKind, Status, json};

    #[test]
    fn summarize_describes_objects_arrays_and_scalars() {
        let keys: serde_json::Map<String, serde_json::Value> =
            (0..25).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let run =
            testing::run_task::<super::fetch::Workflow>("summarize", json!({ "fetched": keys }));
        assert_eq!(run.status, Status::Completed, "{:?}", run.failure);
        let summary = &run.output.unwrap()["summary"];
        assert_eq!(summary["type"], "object");
        assert_eq!(summary["keys"], 25);
        let names = summary["key_names"].as_array().unwrap();
        assert_eq!(names.len(), 20);
        assert_eq!(names[0], "k00");

        for (fetched, expected) in [
            (json!([1, 2, 3]), json!({"type": "array", "length": 3})),
            (json!("hi"), json!({"type": "string", "value": "hi"})),
            (json!(4.5), json!({"type": "number", "value": 4.5})),
            (json!(true), json!({"type": "bool", "value": true})),
            (json!(null), json!({"type": "null"})),
        ] {
            let run = testing::run_task::<super::fetch::Workflow>(
                "summarize",
                json!({ "fetched": fetched }),
            );
            assert_eq!(run.output.unwrap()["summary"], expected);
        }
    }

    #[test]
    fn natively_the_fetch_fails_permanently_without_a_host() {
        let run = testing::run_workflow::<super::fetch::Workflow>(
            json!({"url": "http://127.0.0.1:9/items"}),
        );
        assert!(!run.succeeded());
        let fetch = run.task("fetch");
        assert_eq!(fetch.status, Status::Failed);
        assert_eq!(fetch.attempts, 1, "permanent: not retried");
        let failure = fetch.failure.as_ref().unwrap();
        assert_eq!(failure.kind, FailureKind::Permanent);
        assert!(
            failure
                .message
                .starts_with("GET http://127.0.0.1:9/items: outbound HTTP only works inside"),
            "{}",
            failure.message
        );
        assert_eq!(run.status("summarize"), Status::Skipped);
        assert_eq!(run.status("post"), Status::Skipped);
    }

    #[test]
    fn post_needs_a_post_url() {
        let input = json!({
            "url": "http://127.0.0.1:9/items",
            "summary": {"type": "array", "length": 3},
        });
        // The trigger rule is the host's to apply; the task itself needs
        // `post_url`.
        let run = testing::run_task::<super::fetch::Workflow>("post", input);
        assert_eq!(run.status, Status::Failed);
        assert!(
            run.failure.unwrap().message.contains("post_url"),
            "a missing post_url is named"
        );
    }
}
