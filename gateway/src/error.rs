//! The failures only the gateway answers (queue entries, the admin token, proof of work,
//! wishes, streams); the rest are `ticketing::failure::Failure`, mapped once for both services.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ticketing::envelope::ErrorBody;
use ticketing::failure::Failure;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such queue entry")]
    QueueEntryNotFound,
    #[error("missing or wrong admin token")]
    Unauthorized,
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
    Failure(Failure),
}

ticketing::service_failures!(ApiError);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.body().into_response()
    }
}

impl ApiError {
    /// The envelope this failure is answered with.
    pub fn body(self) -> ErrorBody {
        let message = self.to_string();
        match self {
            Self::QueueEntryNotFound => {
                ErrorBody::new(StatusCode::NOT_FOUND, "queue_entry_not_found", message)
            }
            Self::Unauthorized => ErrorBody::new(StatusCode::UNAUTHORIZED, "unauthorized", message),
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
            Self::Failure(failure) => failure.body(),
        }
    }
}

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
