//! One error shape for every route, `{"error": {"kind", "message"}}`, with
//! an honest status code, and the mapping from the library's errors to it.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use culvert::{Error, LoadError, LookupError, SignatureError, StoreError};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable kind: `unauthorized`, `not_found`,
    /// `invalid_request`, `invalid_json`, `invalid_package`, `conflict`,
    /// `payload_too_large`, `rate_limited`, `quota_exceeded`,
    /// `unavailable`, `timeout`, `internal`.
    pub kind: String,
    /// For people: what happened and what to do.
    pub message: String,
}

/// An error answer: a status, a kind, a message, and for 429 and 503 how
/// many seconds to wait.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// [`ErrorDetail::kind`].
    pub kind: &'static str,
    /// [`ErrorDetail::message`].
    pub message: String,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, kind and message.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 401: a missing, malformed, wrong, expired or revoked key, all alike.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is required: send `Authorization: Bearer <key>`",
        )
    }

    /// 404, with what was not found.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(message: impl Into<String>, retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after.max(1)),
            ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 500: the details go to the server's log, not to the client.
    pub fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context}: an internal error; the server's log has the details"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.to_string(),
                message: self.message,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(m) => ApiError::not_found(m),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::Quota(m) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", m)
            },
            StoreError::Unavailable(m) => ApiError {
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("the database is unavailable, retry shortly ({m})"),
                )
            },
            e @ (StoreError::Config(_) | StoreError::Other(_)) => {
                ApiError::internal("database error", e)
            }
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e.into(),
            Error::Quota(m) => StoreError::Quota(m).into(),
            Error::Lookup(LookupError::NotFound(m)) => ApiError::not_found(m),
            Error::Lookup(e) => ApiError::invalid(e.to_string()),
            Error::Invalid(m) => ApiError::invalid(m),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            Error::Load(e @ LoadError::TooLarge { .. }) => ApiError::too_large(e.to_string()),
            Error::Load(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_package",
                culvert::escape_guest_text(&e.to_string()).into_owned(),
            ),
            Error::Engine(m) => ApiError::internal("engine error", m),
            // The tenant's policy says no (403); the signature itself is
            // wrong (422). The kind is the typed reason.
            Error::Signature(
                e @ (SignatureError::Missing { .. }
                | SignatureError::UntrustedKey { .. }
                | SignatureError::RevokedKey { .. }),
            ) => ApiError::new(StatusCode::FORBIDDEN, e.kind(), e.to_string()),
            Error::Signature(e) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.kind(), e.to_string())
            }
        }
    }
}

/// What handlers return.
pub type ApiResult<T> = Result<T, ApiError>;
