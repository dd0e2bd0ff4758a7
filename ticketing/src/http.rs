//! What every HTTP service has: request ids, one span per request, metrics per route, a request
//! timeout answered with the JSON envelope, health and metrics endpoints, graceful shutdown.

use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::envelope::ErrorBody;

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps a service's router with the layers every service shares. `timeout` bounds each request;
/// past it the client gets a 503 `unavailable` instead of waiting on a stuck dependency.
pub fn with_common_layers(router: Router, service: &'static str, timeout: Duration) -> Router {
    router
        .layer(middleware::from_fn_with_state(timeout, bounded_in_time))
        .layer(middleware::from_fn_with_state(service, record_metrics))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                let request_id = request
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                let path = request
                    .extensions()
                    .get::<MatchedPath>()
                    .map(MatchedPath::as_str)
                    .unwrap_or("-");
                tracing::info_span!("request", method = %request.method(), matched_path = path, request_id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID.clone()))
        .layer(SetRequestIdLayer::new(REQUEST_ID.clone(), MakeRequestUuid))
}

async fn bounded_in_time(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ErrorBody::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the request took too long; try again",
        )
        .retry_after(1)
        .into_response(),
    }
}

async fn record_metrics(
    State(service): State<&'static str>,
    request: Request,
    next: Next,
) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [
        ("service", service.to_string()),
        ("path", path),
        ("method", method),
        ("status", status),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `/healthz` (the process runs) and `/metrics` (Prometheus text).
pub fn health_routes<S: Clone + Send + Sync + 'static>(metrics: PrometheusHandle) -> Router<S> {
    metrics_route(metrics).merge(liveness())
}

/// `/healthz` alone: the process runs.
pub fn liveness<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route(
        "/healthz",
        get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
    )
}

/// `/metrics` alone, for a service with a health check of its own.
pub fn metrics_route<S: Clone + Send + Sync + 'static>(metrics: PrometheusHandle) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move { metrics.render() }
        }),
    )
}

/// `/readyz`: 200 when Postgres and Redis both answer, else 503 saying which did not, so a load
/// balancer takes the instance out of rotation.
pub async fn readiness(db: &sqlx::PgPool, redis: &crate::redis_client::RedisClient) -> Response {
    let postgres = sqlx::query("SELECT 1").execute(db).await.is_ok();
    let redis = redis.ping().await;
    if postgres && redis {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        ErrorBody::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a dependency is down",
        )
        .with_detail("postgres", postgres)
        .with_detail("redis", redis)
        .into_response()
    }
}

/// The 404 for any path no route matches, in the envelope.
pub async fn not_found() -> ErrorBody {
    ErrorBody::new(StatusCode::NOT_FOUND, "not_found", "no such resource")
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Serves `router` until `shutdown` resolves; in-flight requests finish first, for at most the
/// service's `request_timeout` and a second after the signal. The peer address is
/// available to handlers (rate limits key on it).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    request_timeout: Duration,
) -> std::io::Result<()> {
    drained_within(shutdown, request_timeout, |signal| {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future()
    })
    .await
}

/// The time graceful shutdown gives open connections beyond the request timeout. By then every
/// request in flight has been answered (the timeout layer answers 503); what can be left is a
/// client that never finished sending its request, which hyper would wait on for ever (axum
/// gives hyper no timer, so hyper has no header-read timeout), holding a deploy's old process.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// Runs the server `serve` builds around a graceful-shutdown signal until it ends, or until the
/// service's `request_timeout` and `DRAIN_MARGIN` after `shutdown` fired; connections still
/// open then are dropped with the process.
pub async fn drained_within<Served>(
    shutdown: impl Future<Output = ()> + Send + 'static,
    request_timeout: Duration,
    serve: impl FnOnce(futures::future::BoxFuture<'static, ()>) -> Served,
) -> std::io::Result<()>
where
    Served: Future<Output = std::io::Result<()>>,
{
    let limit = request_timeout + DRAIN_MARGIN;
    let (fired, heard) = tokio::sync::oneshot::channel::<()>();
    let signal = Box::pin(async move {
        shutdown.await;
        let _ = fired.send(());
    });
    let deadline = async move {
        match heard.await {
            Ok(()) => tokio::time::sleep(limit).await,
            // The server ended without a signal: no deadline.
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        served = serve(signal) => served,
        () = deadline => {
            tracing::warn!(?limit, "connections still open after the shutdown signal; dropping them");
            Ok(())
        }
    }
}
