//! Readiness: Postgres and Redis both answer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ticketing::envelope::ErrorBody;

use crate::state::AppState;

#[utoipa::path(get, path = "/readyz", responses((status = 200), (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    if state.draining.is_draining() {
        // Shutting down: a load balancer stops sending here before the listener closes.
        return ErrorBody::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this gateway is shutting down",
        )
        .with_detail("draining", true)
        .into_response();
    }
    ticketing::http::readiness(&state.db, &state.redis).await
}
