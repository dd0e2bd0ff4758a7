//! The booking service: token-gated bookings reserved atomically in Redis and written to Postgres.

pub mod access;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod gate;
pub mod routes;
pub mod sold_out;
pub mod state;
pub mod tiers;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use ticketing::http::{health_routes, not_found, serve, with_common_layers};
use ticketing::telemetry;

use crate::routes::{availability, bookings, health, openapi};
pub use crate::state::AppState;

const BODY_LIMIT: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    let origins: Vec<HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("idempotency-key"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600));
    let router = Router::new()
        .route("/api/bookings", axum::routing::post(bookings::create))
        .route(
            "/api/bookings/{booking_id}",
            get(bookings::show).delete(bookings::cancel),
        )
        .route(
            "/api/events/{event_id}/availability",
            get(availability::show),
        )
        .route("/api/openapi.json", get(openapi::document))
        .route("/readyz", get(health::ready))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
        .merge(health_routes(telemetry::metrics()))
        .fallback(not_found);
    with_common_layers(router, "booking", config.request_timeout).layer(cors)
}

pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Ok(serve(listener, router(state), shutdown).await?)
}
