//! The gateway: catalog, waiting room, admin API and the static frontend.

pub mod client_addr;
pub mod config;
pub mod connections;
pub mod db;
pub mod directory;
pub mod domain;
pub mod error;
pub mod keyed;
pub mod limits;
pub mod line;
pub mod notices;
pub mod presented;
pub mod projections;
pub mod proof;
pub mod restore;
pub mod routes;
pub mod seed;
pub mod signs_of_life;
pub mod state;
pub mod takeover;
pub mod wait;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::middleware;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use ticketing::http::{health_routes, liveness, not_found, with_common_layers};
use ticketing::queue;
use ticketing::telemetry;

use crate::routes::{
    admin, catalog, guards, health, live, openapi, queue as queue_routes, queue_stream,
};
pub use crate::state::AppState;

/// Largest request body the gateway reads.
const BODY_LIMIT: usize = 16 * 1024;

pub fn router(state: AppState) -> Router {
    let config = state.config.clone();
    // Join limits are checked inside the handler, after the proof-of-work exchange (a 428 must
    // not count); polls have no such exchange and are limited in front of the handler.
    let join = Router::new().route("/api/events/{event_id}/queue", post(queue_routes::join));
    let poll = Router::new()
        .route(
            "/api/queue/{queue_id}",
            get(queue_routes::poll).delete(queue_routes::leave),
        )
        .route("/api/queue/{queue_id}/wish", put(queue_routes::set_wish))
        .route("/api/queue/{queue_id}/alive", post(queue_routes::alive))
        .route("/api/queue/{queue_id}/events", get(queue_stream::events))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guards::limit_polls,
        ));
    // Counted per address before the token is checked: guessing the token costs time.
    let admin = Router::new()
        .route("/api/admin/events", post(admin::create_event))
        .route(
            "/api/admin/events/{event_id}/waiting-room",
            get(admin::show_waiting_room).put(admin::change_waiting_room),
        )
        .route("/api/admin/events/{event_id}/live", get(live::show))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guards::limit_admin,
        ));
    let api = Router::new()
        .route("/api/events", get(catalog::list))
        .route("/api/events/{event_id}", get(catalog::show))
        .route("/api/config", get(catalog::frontend_config))
        .route("/api/openapi.json", get(openapi::document))
        .route("/readyz", get(health::ready))
        .merge(admin)
        .merge(join)
        .merge(poll)
        .route("/api/{*rest}", axum::routing::any(not_found))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state);
    // `/metrics` moves to its own listener when `METRICS_ADDR` is set (see `run`).
    let api = match config.metrics_addr {
        None => api.merge(health_routes(telemetry::metrics())),
        Some(_) => api.merge(liveness()),
    };
    // Static pages: revalidated after a minute, so a deploy reaches queued browsers quickly while
    // tens of thousands of reloads stay cheap (ETag / Last-Modified answers 304).
    let frontend = ServeDir::new(&config.frontend_dir)
        .append_index_html_on_directories(true)
        .not_found_service(axum::routing::any(not_found).with_state(()));
    let router = api.fallback_service(Router::new().fallback_service(frontend).layer(
        SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=60"),
        ),
    ));
    with_common_layers(router, "gateway", config.request_timeout)
}

/// Serves until `shutdown`, publishing queue gauges in the background.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let gauges = tokio::spawn(publish_queue_gauges(state.clone()));
    // Open streams end on their own when told (with a jittered `retry:`), or graceful shutdown
    // would wait for them forever.
    let notices = state.notices.clone();
    let shutdown = async move {
        shutdown.await;
        tracing::info!(streams = notices.open_streams(), "closing open streams");
        notices.shut();
    };
    let config = state.config.clone();
    let metrics = match config.metrics_addr {
        Some(addr) => Some(serve_metrics(addr).await?),
        None => None,
    };
    let result = takeover::serve(
        listener,
        router(state.clone()),
        config.serving.clone(),
        config.trusted_proxies.clone(),
        state.draining.clone(),
        shutdown,
        config.request_timeout,
    )
    .await;
    gauges.abort();
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    Ok(result?)
}

/// `/metrics` on an internal listener of its own, so the buyers' listener does not show the
/// sale's figures to anyone who asks.
async fn serve_metrics(addr: std::net::SocketAddr) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics listening");
    let router = ticketing::http::metrics_route(telemetry::metrics());
    Ok(tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router).await {
            tracing::error!(%error, "the metrics listener failed");
        }
    }))
}

/// How long after its last activity an event's gauges are still published.
const GAUGED_WHILE_ACTIVE: Duration = Duration::from_secs(300);

/// Queue length, admissions and bookings per event as Prometheus gauges, every few seconds.
async fn publish_queue_gauges(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        // The events active in the last few minutes, not the whole catalog.
        let since = chrono::Utc::now().timestamp_millis() - GAUGED_WHILE_ACTIVE.as_millis() as i64;
        let Ok((marks, _)) = ticketing::activity::since(&state.redis, since).await else {
            continue;
        };
        for (event_id, _) in marks {
            if let Ok(stats) = queue::stats(&state.redis, event_id).await {
                let event = event_id.to_string();
                metrics::gauge!("queue_waiting", "event" => event.clone())
                    .set(stats.waiting as f64);
                metrics::gauge!("queue_active", "event" => event.clone()).set(stats.active as f64);
                metrics::gauge!("queue_admitted_total", "event" => event.clone())
                    .set(stats.admitted_total as f64);
                metrics::gauge!("queue_admitted_last_minute", "event" => event.clone())
                    .set(stats.admitted_last_minute as f64);
                metrics::gauge!("queue_booked_total", "event" => event)
                    .set(stats.booked_total as f64);
            }
        }
    }
}
