//! The booking service: token-gated bookings reserved atomically in Redis and written to Postgres.

pub mod access;
pub mod checkout;
pub mod config;
pub mod confirmer;
pub mod db;
pub mod domain;
pub mod error;
pub mod gate;
pub mod routes;
pub mod sold_out;
pub mod state;
pub mod tiers;
pub mod writer;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

use ticketing::http::{health_routes, not_found, serve, with_common_layers};
use ticketing::telemetry;

use crate::error::ApiError;
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
    // Beyond `max_in_flight` bookings at once, the next is answered 503 at once instead of
    // queueing: a crowd that outruns Postgres is told to come back, not kept waiting.
    let create = axum::routing::post(bookings::create)
        .layer(
            tower::ServiceBuilder::new()
                .layer(axum::error_handling::HandleErrorLayer::new(
                    |_: tower::BoxError| async {
                        metrics::counter!("bookings_shed_total").increment(1);
                        ApiError::unavailable("too many bookings at once; try again")
                    },
                ))
                .load_shed()
                .concurrency_limit(config.max_in_flight),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            time_bookings,
        ));
    let router = Router::new()
        .route("/api/bookings", create)
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

/// Times each booking made (201), for the p95 the operator's live view shows: refusals (sold
/// out, shed) are fast and many, and would hide how long a buyer who gets tickets waits. Counts
/// every answer and its 503s, for adaptive admission.
async fn time_bookings(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::CREATED {
        state.latency.record(started.elapsed());
    }
    // Every answer counts toward the share of 503s adaptive admission holds down.
    state
        .latency
        .record_answer(response.status() == axum::http::StatusCode::SERVICE_UNAVAILABLE);
    response
}

/// Serves until `shutdown`, then lets the writers finish every booking already reserved.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let writer = state.writer.clone();
    let grace = state.config.longest_write();
    let request_timeout = state.config.request_timeout;
    let served = serve(listener, router(state), shutdown, request_timeout).await;
    writer.drain(grace).await;
    Ok(served?)
}
