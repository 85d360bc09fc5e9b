//! `GET /api/v1/executions/{id}/stream`: the execution's events as
//! Server-Sent Events, until it finishes.
//!
//! Each event is `event: <kind>`, `id: <event id>` and `data:` the event as
//! JSON (as in `/events`). The stream ends with `event: end`, whose data is
//! `{"id", "status"}` of the finished execution. A client that reconnects
//! with `Last-Event-ID` resumes after that event. The stream reads the
//! database (it holds no state another host lacks), so any host can serve
//! it.

use super::TenantQuery;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::routes::executions::visible;
use crate::state::AppState;
use crate::views::event_json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;
use uuid::Uuid;

/// Events read per poll.
const BATCH: i64 = 500;

/// Where a stream is: the last event sent, and whether it is done.
struct Cursor {
    state: Arc<AppState>,
    id: Uuid,
    after: i64,
    done: bool,
    _slot: OwnedSemaphorePermit,
}

/// Read the next batch: events, or the end, or (after a poll interval)
/// nothing yet.
async fn next_batch(mut c: Cursor) -> Option<(Vec<Event>, Cursor)> {
    if c.done {
        return None;
    }
    let store = c.state.runner.store();
    loop {
        let events = match store.execution_events_after(c.id, c.after, BATCH).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(execution = %c.id, error = %e, "the event stream cannot read events; ending it");
                c.done = true;
                let error = Event::default()
                    .event("error")
                    .data(json!({"message": "the events could not be read; reconnect with Last-Event-ID"}).to_string());
                return Some((vec![error], c));
            }
        };
        if let Some(last) = events.last() {
            c.after = last.id;
            let batch = events
                .iter()
                .map(|e| {
                    Event::default()
                        .event(e.kind.clone())
                        .id(e.id.to_string())
                        .data(event_json(e).to_string())
                })
                .collect();
            return Some((batch, c));
        }
        // Nothing new: finished (its last events were sent above), or wait.
        match store.get_execution(None, c.id).await {
            Ok(row) if row.status.is_finished() => {
                c.done = true;
                let end = Event::default()
                    .event("end")
                    .data(json!({"id": row.id, "status": row.status}).to_string());
                return Some((vec![end], c));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(execution = %c.id, error = %e, "the event stream cannot read its execution; ending it");
                return None;
            }
        }
        tokio::time::sleep(c.state.config.stream_poll).await;
    }
}

/// Stream an execution's events until it finishes.
#[utoipa::path(get, path = "/api/v1/executions/{id}/stream", tag = "executions",
    params(("id" = Uuid, Path), TenantQuery,
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event")),
    responses(
        (status = 200, description = "text/event-stream: one event per log entry, then `end`", content_type = "text/event-stream"),
        (status = 404, description = "No such execution for this key", body = ErrorBody),
        (status = 429, description = "This host serves too many streams", body = ErrorBody),
    ))]
pub async fn stream(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<Uuid>,
    Query(q): Query<TenantQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    visible(&state, &caller, q.tenant.as_deref(), id).await?;
    let slot = state
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::rate_limited("this host serves too many event streams", 5))?;
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(0);
    let cursor = Cursor {
        state,
        id,
        after,
        done: false,
        _slot: slot,
    };
    let events = stream::unfold(cursor, next_batch)
        .flat_map(stream::iter)
        .map(Ok);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
