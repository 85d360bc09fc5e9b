//! # culvert-server: Culvert's HTTP API
//!
//! `culvert serve` runs this next to the executor. It puts a service
//! boundary in front of a [`culvert::Runner`]: JSON under `/api/v1` for
//! packages, executions (with Server-Sent Events and stored logs), and for
//! operators tenants, grants, API keys and the audit log; `/healthz`,
//! `/readyz` and Prometheus `/metrics`; the OpenAPI 3.1 document at
//! `/api/v1/openapi.json`. docs/API.md walks through it.
//!
//! Every request but the health checks carries `Authorization: Bearer
//! <key>`. The server keeps no session state: any number of `serve`
//! processes on one PostgreSQL database answer a request the same way.
//!
//! | Module | What it does |
//! |---|---|
//! | `config` | [`ServerConfig`]: addresses, timeouts, rate limits, caps |
//! | `error` | the one error shape and the status each library error maps to |
//! | `auth` | bearer keys, their rate limits, which tenant a request acts on |
//! | `state` | what every handler shares |
//! | `routes` | the routes, and [`router`] |
//! | `openapi` | the generated OpenAPI document |
//! | `metrics` | the Prometheus recorder and the HTTP metrics |
//! | `http` | accepting connections with a header-read timeout |
//! | [`views`] | the JSON forms shared with the CLI's `--json` |

#![deny(missing_docs)]

mod auth;
mod config;
mod dashboard;
mod error;
mod http;
mod metrics;
mod openapi;
mod routes;
mod state;
pub mod views;

pub use auth::Caller;
pub use config::{DEFAULT_LISTEN, ServerConfig};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use http::{bind, serve_on};
pub use metrics::{HTTP_DURATION, HTTP_REQUESTS, install as install_metrics};
pub use openapi::ApiDoc;
pub use routes::admin::{audit_json, create_key, key_json, tenant_json};
pub use routes::executions::list_item as execution_list_item;
pub use routes::health::render_metrics;
pub use routes::packages::SIGNATURE_HEADER;
pub use routes::schedules::ScheduleRequest;
pub use routes::status::{StatusScope, status_json};
pub use routes::{metrics_router, router};
pub use state::AppState;
