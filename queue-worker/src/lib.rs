//! The queue-worker: admits waiting buyers at each event's rate, releases reservations that
//! never became bookings, and keeps Redis in agreement with Postgres.

pub mod config;
pub mod events;
pub mod jobs;

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use ticketing::envelope::ErrorBody;
use ticketing::http::{metrics_route, serve, with_common_layers};
use ticketing::redis_client::RedisClient;
use ticketing::telemetry;

use crate::config::WorkerConfig;
use crate::events::HotSet;
use crate::jobs::admission::Admission;
use crate::jobs::reconcile::{DriftMemory, QuietRound};
use ticketing::event::Event;

/// Bounds each request to the worker's own HTTP surface (health and metrics).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The worker's state, shared by its loops.
#[derive(Clone)]
pub struct Worker {
    pub db: PgPool,
    pub redis: RedisClient,
    pub config: Arc<WorkerConfig>,
    /// The events with something to do (`events`): every job's pass covers these only.
    hot: Arc<Mutex<HotSet>>,
    /// Unix ms of the last admission tick that completed, for `/healthz`.
    last_tick_ms: Arc<AtomicI64>,
}

impl Worker {
    pub fn new(db: PgPool, redis: RedisClient, config: WorkerConfig) -> Self {
        Self {
            db,
            redis,
            hot: Arc::new(Mutex::new(HotSet::new(config.hot))),
            config: Arc::new(config),
            last_tick_ms: Arc::new(AtomicI64::new(Utc::now().timestamp_millis())),
        }
    }

    /// The ids of the events this worker looks after now.
    pub fn hot_events(&self) -> Vec<uuid::Uuid> {
        self.events().iter().map(|e| e.id).collect()
    }

    fn events(&self) -> Vec<Event> {
        self.hot.lock().expect("hot set lock").events()
    }

    /// Runs every loop until `cancel` fires; each loop finishes the pass it is in, within the
    /// configured grace.
    pub async fn run(self, cancel: CancellationToken) {
        let loops = [
            Job::Admission,
            Job::RefreshEvents,
            Job::SweepHolds,
            Job::Reconcile,
            Job::Sample,
            Job::Dormancy,
        ]
        .map(|job| tokio::spawn(self.clone().repeat(job, cancel.clone())));
        cancel.cancelled().await;
        let grace = self.config.shutdown_grace;
        if tokio::time::timeout(grace, futures::future::join_all(loops))
            .await
            .is_err()
        {
            tracing::warn!("worker loops did not finish within the shutdown grace");
        }
    }

    async fn repeat(self, job: Job, cancel: CancellationToken) {
        let period = match job {
            Job::Admission => self.config.admit_interval,
            Job::RefreshEvents => Duration::from_secs(1),
            Job::SweepHolds => self.config.sweep_interval,
            Job::Reconcile => self.config.reconcile_interval,
            Job::Sample => Duration::from_secs(1),
            Job::Dormancy => Duration::from_secs(1),
        };
        let mut walks = jobs::dormancy::Walks::default();
        let mut admission = Admission::default();
        let mut drift = DriftMemory::default();
        let mut quiet = QuietRound::default();
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = interval.tick() => {}
            }
            match job {
                Job::Admission => self.admission_pass(&mut admission).await,
                Job::RefreshEvents => self.refresh_events().await,
                Job::SweepHolds => self.sweep_pass().await,
                Job::Reconcile => self.reconcile_pass(&mut drift, &mut quiet).await,
                Job::Sample => self.sample_pass().await,
                Job::Dormancy => walks.pass(&self.redis, &self.events()).await,
            }
        }
    }

    async fn refresh_events(&self) {
        match events::refresh(&self.hot, &self.db, &self.redis).await {
            Ok(refreshed) if refreshed.dropped > 0 => {
                tracing::info!(?refreshed, "events went quiet")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot refresh the hot events; keeping them"),
        }
    }

    async fn admission_pass(&self, admission: &mut Admission) {
        // A first join, a hold or an operator's change since the last tick is looked after now.
        if let Err(e) = events::pick_up(&self.hot, &self.db, &self.redis).await {
            tracing::warn!(error = %e, "cannot read the events' activity");
        }
        let events = self.events();
        let report = admission.tick(&self.db, &self.redis, &events).await;
        if report.failed == 0 || report.failed < report.events {
            // Healthy while some event ticks: one broken event must not restart the worker.
            self.last_tick_ms
                .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        } else {
            // Every event failed: Redis is likely away; do not hammer it.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn sweep_pass(&self) {
        for event in self.events() {
            // Errors are logged by the job's span; the next pass retries.
            let _ = jobs::holds::sweep(&self.db, &self.redis, event.id).await;
        }
    }

    /// The samples' ids are the second by Redis's clock, so workers sampling side by side write
    /// one per second between them; a second missed (a slow pass) is a gap the charts show. The
    /// same pass takes adaptive admission's step for the events that ask for it.
    async fn sample_pass(&self) {
        let now_ms = Utc::now().timestamp_millis();
        let health = match ticketing::live::booking_health(&self.redis, now_ms).await {
            Ok(health) => health,
            Err(error) => {
                tracing::debug!(%error, "cannot read the booking fleet's health");
                Default::default()
            }
        };
        let p95 = health.p95_us;
        for event in self.events() {
            let room = event.waiting_room();
            if let Some(targets) = room.adaptive {
                let verdict = ticketing::queue::room::Verdict::of(&targets, &health);
                match ticketing::queue::room::adapt(&self.redis, event.id, &room, &targets, verdict)
                    .await
                {
                    Ok(rate) => {
                        metrics::gauge!("queue_effective_per_minute", "event" => event.id.to_string())
                            .set(f64::from(rate))
                    }
                    Err(error) => tracing::debug!(event_id = %event.id, %error, "adaptive step failed"),
                }
            }
            if let Err(error) =
                ticketing::live::record_sample(&self.redis, event.id, &event.tier_codes, p95).await
            {
                tracing::debug!(event_id = %event.id, %error, "live sample failed");
            }
        }
    }

    async fn reconcile_pass(&self, drift: &mut DriftMemory, quiet: &mut QuietRound) {
        for event in self.events() {
            let _ = jobs::reconcile::reconcile(&self.db, &self.redis, &event, drift).await;
        }
        let per_pass = self.config.reconcile_quiet_per_pass;
        let hot = |id| self.hot.lock().expect("hot set lock").contains(id);
        let quiet_events = match quiet.next(&self.db, per_pass, hot).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list quiet events to reconcile");
                return;
            }
        };
        for event in quiet_events {
            let _ = jobs::reconcile::reconcile_quiet(&self.db, &self.redis, &event, drift).await;
            quiet.reconciled(&event, drift);
        }
    }

    /// `/healthz` (503 when admission has not ticked for 10 s), `/readyz`, `/metrics`.
    pub fn router(&self) -> Router {
        let router = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/api/openapi.json", get(openapi))
            .with_state(self.clone())
            .merge(metrics_route(telemetry::metrics()));
        with_common_layers(router, "queue-worker", REQUEST_TIMEOUT)
    }

    pub async fn serve_health(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        serve(listener, self.router(), shutdown, REQUEST_TIMEOUT).await
    }
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Admission,
    RefreshEvents,
    SweepHolds,
    Reconcile,
    /// One sample per second per event for the operator's live view.
    Sample,
    /// Silent entries out of the count of those ahead (`jobs::dormancy`).
    Dormancy,
}

/// The worker's own HTTP surface: health and metrics.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Ticketing queue-worker",
        description = "Health of the admission and reconciliation loops."
    ),
    paths(healthz, readyz),
    components(schemas(ticketing::envelope::ErrorEnvelope, ticketing::envelope::ErrorDetail))
)]
struct WorkerApi;

async fn openapi() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(<WorkerApi as utoipa::OpenApi>::openapi())
}

#[utoipa::path(get, path = "/healthz",
    responses((status = 200, description = "admission ticked in the last 10 s"),
              (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
async fn healthz(State(worker): State<Worker>) -> Response {
    let age_ms = Utc::now().timestamp_millis() - worker.last_tick_ms.load(Ordering::Relaxed);
    if age_ms < 10_000 {
        let hot = worker.hot.lock().expect("hot set lock").len();
        axum::Json(serde_json::json!({
            "status": "ok",
            "last_admission_tick_ms_ago": age_ms,
            "hot_events": hot,
        }))
        .into_response()
    } else {
        ErrorBody::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "admission is not ticking",
        )
        .with_detail("last_admission_tick_ms_ago", age_ms)
        .into_response()
    }
}

#[utoipa::path(get, path = "/readyz",
    responses((status = 200, description = "Postgres and Redis answer"),
              (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
async fn readyz(State(worker): State<Worker>) -> Response {
    ticketing::http::readiness(&worker.db, &worker.redis).await
}
