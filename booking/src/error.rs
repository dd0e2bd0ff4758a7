//! Every failure the booking service answers, mapped in one place to its status and code.

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ticketing::envelope::ErrorBody;
use ticketing::inventory::Shortfall;
use ticketing::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the entry token is missing or not valid")]
    InvalidToken,
    #[error("the entry token has expired; join the queue again")]
    TokenExpired,
    #[error("this entry token is for another event")]
    TokenEventMismatch,
    #[error("this entry token has already been used for a booking")]
    TokenUsed,
    #[error("not enough tickets left")]
    InsufficientInventory(Vec<Shortfall>),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("the request body is too large")]
    TooLarge,
    #[error("no such booking")]
    BookingNotFound,
    #[error("no such event")]
    EventNotFound,
    #[error("no such resource")]
    NotFound,
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("too many requests with this entry token; slow down")]
    RateLimited,
    #[error("this event is not on sale yet")]
    NotOnSale(chrono::DateTime<chrono::Utc>),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let body = match self {
            Self::InvalidToken => {
                ErrorBody::new(StatusCode::UNAUTHORIZED, "invalid_token", message)
            }
            Self::TokenExpired => {
                ErrorBody::new(StatusCode::UNAUTHORIZED, "token_expired", message)
            }
            Self::TokenEventMismatch => {
                ErrorBody::new(StatusCode::FORBIDDEN, "token_event_mismatch", message)
            }
            Self::TokenUsed => ErrorBody::new(StatusCode::CONFLICT, "token_used", message),
            Self::NotOnSale(on_sale_at) => {
                ErrorBody::new(StatusCode::FORBIDDEN, "not_on_sale", message)
                    .with_detail("on_sale_at", on_sale_at)
            }
            Self::InsufficientInventory(shortfall) => {
                ErrorBody::new(StatusCode::CONFLICT, "insufficient_inventory", message)
                    .with_detail("shortfall", shortfall)
            }
            Self::InvalidRequest(_) => {
                ErrorBody::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            }
            Self::IdempotencyKeyReused => ErrorBody::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            ),
            Self::TooLarge => {
                ErrorBody::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
            }
            Self::BookingNotFound => {
                ErrorBody::new(StatusCode::NOT_FOUND, "booking_not_found", message)
            }
            Self::EventNotFound => {
                ErrorBody::new(StatusCode::NOT_FOUND, "event_not_found", message)
            }
            Self::NotFound => ErrorBody::new(StatusCode::NOT_FOUND, "not_found", message),
            Self::Unavailable(_) => {
                ErrorBody::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                    .retry_after(1)
            }
            Self::RateLimited => {
                ErrorBody::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
                    .retry_after(1)
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

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Expired => Self::TokenExpired,
            TokenError::Invalid => Self::InvalidToken,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        if ticketing::db::is_unavailable(&e) {
            tracing::warn!(error = %e, "postgres unavailable");
            Self::Unavailable("the database is busy or unreachable; try again")
        } else {
            Self::Internal(e.into())
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        tracing::warn!(error = %e, "redis unavailable");
        Self::Unavailable("ticket inventory is unreachable; try again")
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::TooLarge
        } else {
            Self::InvalidRequest(rejection.body_text())
        }
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
