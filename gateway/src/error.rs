//! Every failure the gateway answers, mapped in one place to its status and contract code.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ticketing::envelope::ErrorBody;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("the request body is too large")]
    TooLarge,
    #[error("no such event")]
    EventNotFound,
    #[error("no such queue entry")]
    QueueEntryNotFound,
    #[error("no such resource")]
    NotFound,
    #[error("missing or wrong admin token")]
    Unauthorized,
    #[error("a dependency is unavailable")]
    Unavailable,
    #[error("too many requests from this client; slow down")]
    RateLimited { retry_after: std::time::Duration },
    #[error("solve the proof of work and join again with it")]
    ProofRequired(ProofRequired),
    #[error("cannot identify the client")]
    UnknownClient,
    #[error("the entry is no longer waiting (admitted, or gone)")]
    NotWaiting,
    #[error("not enough tickets left for this choice")]
    WishShort(Vec<ticketing::inventory::Shortfall>),
    #[error("too many open streams for this entry or address; poll instead")]
    TooManyStreams,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let body = match self {
            Self::BadQuery(_) => {
                ErrorBody::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            Self::InvalidBody(_) => {
                ErrorBody::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            }
            Self::TooLarge => {
                ErrorBody::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            Self::EventNotFound => {
                ErrorBody::new(StatusCode::NOT_FOUND, "event_not_found", message)
            }
            Self::QueueEntryNotFound => {
                ErrorBody::new(StatusCode::NOT_FOUND, "queue_entry_not_found", message)
            }
            Self::NotFound => ErrorBody::new(StatusCode::NOT_FOUND, "not_found", message),
            Self::Unauthorized => ErrorBody::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
            Self::Unavailable => ErrorBody::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "try again shortly",
            )
            .retry_after(1),
            Self::RateLimited { retry_after } => {
                ErrorBody::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
                    // Whole seconds, rounded up: a client waiting the truncated value would
                    // come back a moment too early and be refused again.
                    .retry_after(retry_after.as_secs_f64().ceil() as u64)
            }
            Self::ProofRequired(required) => {
                ErrorBody::new(StatusCode::PRECONDITION_REQUIRED, "proof_required", message)
                    .with_detail("challenge", required.challenge)
                    .with_detail("difficulty", required.difficulty)
                    .with_detail("reason", required.reason.as_str())
            }
            Self::UnknownClient => {
                ErrorBody::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            Self::NotWaiting => ErrorBody::new(StatusCode::CONFLICT, "not_waiting", message),
            Self::WishShort(shortfall) => {
                ErrorBody::new(StatusCode::CONFLICT, "insufficient_inventory", message)
                    .with_detail("shortfall", shortfall)
            }
            Self::TooManyStreams => {
                ErrorBody::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message)
                    .retry_after(5)
            }
            Self::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                ErrorBody::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "something went wrong",
                )
            }
        };
        body.into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // One mapping for both services: outages and timeouts are 503 with Retry-After.
        if ticketing::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "postgres unavailable");
            Self::Unavailable
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "redis unavailable");
        Self::Unavailable
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge
        } else {
            Self::InvalidBody(rejection.body_text())
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadQuery(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(_: PathRejection) -> Self {
        Self::NotFound
    }
}

/// `axum::Json`, answering malformed bodies with the envelope.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Path`, answering bad ids with the envelope.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query`, answering bad query strings with the envelope.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// Why a join has to (re)do the exchange; sent as `reason` beside the fresh challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Wrong,
    Expired,
    Reused,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Wrong => "wrong",
            Self::Expired => "expired",
            Self::Reused => "reused",
        }
    }
}

/// The 428 answer's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofRequired {
    pub challenge: String,
    pub difficulty: u8,
    pub reason: Refusal,
}
