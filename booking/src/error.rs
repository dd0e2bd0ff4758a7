//! The failures only the booking service answers (entry tokens, stock, idempotency, bookings);
//! the rest are `ticketing::failure::Failure`, mapped once for both services.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ticketing::envelope::ErrorBody;
use ticketing::failure::Failure;
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
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyKeyReused,
    #[error("no such booking")]
    BookingNotFound,
    #[error("this event is not on sale yet")]
    NotOnSale(chrono::DateTime<chrono::Utc>),
    #[error(transparent)]
    Failure(Failure),
}

ticketing::service_failures!(ApiError);

impl ApiError {
    /// 422 `invalid_request`: a booking request that parses but cannot be served as asked.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Failure(Failure::Invalid(message.into()))
    }

    /// 503 `unavailable` with `Retry-After`, saying why.
    pub fn unavailable(why: &'static str) -> Self {
        Self::Failure(Failure::Unavailable(why))
    }

    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Failure(Failure::Unavailable(_)))
    }
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
            Self::IdempotencyKeyReused => ErrorBody::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                message,
            ),
            Self::BookingNotFound => {
                ErrorBody::new(StatusCode::NOT_FOUND, "booking_not_found", message)
            }
            Self::Failure(failure) => failure.body(),
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
