//! The layers in front of routes: the poll routes' and the admin API's rate limits.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::client_addr::ClientAddr;
use crate::presented::presented_receipt;
use crate::state::AppState;

/// The poll route's limits, as a layer: polls have no exchange that must stay free, and so the
/// poll handler stays as it is.
pub async fn limit_polls(
    State(state): State<AppState>,
    client: ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    // `/api/queue/{queue_id}` and the paths below it (`/wish`).
    let queue_id = request
        .uri()
        .path()
        .strip_prefix("/api/queue/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|id| Uuid::parse_str(id).ok());
    match state.limits.poll(queue_id, client) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            // Refused, but a live page asked: its entry must not look abandoned.
            let receipt = presented_receipt(request.headers(), request.uri().query())
                .and_then(|text| state.config.receipt_keys.verify(text))
                .filter(|r| Some(r.queue_id.0) == queue_id);
            if let Some(receipt) = receipt {
                state.signs_of_life.note(&receipt);
            }
            refusal.into_response()
        }
    }
}

/// The admin API's limit, as a layer in front of its routes.
pub async fn limit_admin(
    State(state): State<AppState>,
    client: ClientAddr,
    request: Request,
    next: Next,
) -> Response {
    match state.limits.admin(client) {
        Ok(()) => next.run(request).await,
        Err(refusal) => refusal.into_response(),
    }
}
