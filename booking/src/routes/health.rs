//! Readiness: Postgres and Redis both answer.

use axum::extract::State;
use axum::response::Response;

use crate::state::AppState;

#[utoipa::path(get, path = "/readyz", responses((status = 200), (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    ticketing::http::readiness(&state.db, &state.redis).await
}
