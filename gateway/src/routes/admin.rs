//! The operator's API: create events, read and tune waiting rooms live.

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use ticketing::event;
use ticketing::failure::{Failure, Json, Path};
use ticketing::queue::{self, QueueMarks, QueueStats, Sync, WaitingRoom};
use ticketing::rebuild::{self, When};
use uuid::Uuid;

use crate::db::events;
use crate::domain::{room_problems, EventDraft, WaitingRoomChange};
use crate::error::ApiError;
use crate::routes::catalog::{assemble, Event};
use crate::state::AppState;

/// Proof that the request carried the admin token.
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        // Comparing digests in constant time hides both the token and its length.
        let expected = Sha256::digest(state.config.admin_token.expose().as_bytes());
        let presented = Sha256::digest(presented.trim().as_bytes());
        if bool::from(expected.ct_eq(&presented)) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WaitingRoomView {
    #[serde(flatten)]
    pub room: WaitingRoom,
    pub stats: QueueStats,
    /// With adaptive admission on: the rate it sets now (per minute, at most
    /// `admission_per_minute`) and why (`booking_p95_above_target`, `too_many_503s`,
    /// `within_targets`, `at_set_rate`, `writers_near_full`, `nothing_measured`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_reason: Option<String>,
}

#[utoipa::path(post, path = "/api/admin/events", request_body = EventDraft,
    security(("admin" = [])),
    responses(
        (status = 201, body = Event),
        (status = 401, body = ticketing::envelope::ErrorEnvelope),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            description = "`rate_limited`: too many admin requests from this address (counted before the token)",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 413, body = ticketing::envelope::ErrorEnvelope),
        (status = 422, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn create_event(
    _: Admin,
    State(state): State<AppState>,
    Json(draft): Json<EventDraft>,
) -> Result<(StatusCode, Json<Event>), ApiError> {
    let problems = draft.problems();
    if !problems.is_empty() {
        return Err(Failure::Invalid(problems.join("; ")).into());
    }
    // The insert's transaction runs to the end even if the client goes away (a `BEGIN` cut in
    // flight would return its connection to the pool inside a transaction).
    let db = state.db.clone();
    let event_id = ticketing::detached::finish(async move {
        let mut tx = db.begin().await?;
        let event_id = events::insert(&mut tx, &draft).await?;
        tx.commit().await?;
        Ok::<_, ApiError>(event_id)
    })
    .await?;
    let row = event::find(&state.db, event_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("event {event_id} vanished after insert"))?;
    state.events.created(row.id, row.short_id).await;
    // Redis gets the event now so its first buyers need not wait for the worker; if Redis is
    // down, the worker loads it once Redis is back.
    if let Err(e) = prepare_redis(&state, &row).await {
        tracing::warn!(error = ?e, %event_id, "event created; redis will be loaded by the worker");
    }
    let mut events = assemble(&state.db, &state.redis, vec![row]).await?;
    Ok((StatusCode::CREATED, Json(events.remove(0))))
}

async fn prepare_redis(state: &AppState, row: &event::Event) -> anyhow::Result<()> {
    rebuild::rebuild_inventory(&state.db, &state.redis, row.id, When::Missing).await?;
    queue::sync_config(
        &state.redis,
        row.id,
        &row.waiting_room(),
        row.on_sale_at.timestamp_millis(),
        Sync::Settings,
    )
    .await?;
    // A new event: the worker looks after it from its next tick (and checks it before its sale).
    ticketing::activity::note(&state.redis, row.id).await;
    Ok(())
}

#[utoipa::path(get, path = "/api/admin/events/{event_id}/waiting-room",
    params(("event_id" = Uuid, Path)), security(("admin" = [])),
    responses(
        (status = 200, body = WaitingRoomView),
        (status = 401, body = ticketing::envelope::ErrorEnvelope),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            description = "`rate_limited`: too many admin requests from this address (counted before the token)",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 404, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn show_waiting_room(
    _: Admin,
    State(state): State<AppState>,
    Path(event_id): Path<Uuid>,
) -> Result<Json<WaitingRoomView>, ApiError> {
    let row = event::find(&state.db, event_id)
        .await?
        .ok_or(Failure::EventNotFound)?;
    let stats = queue::stats(&state.redis, event_id).await?;
    let room = row.waiting_room();
    let (effective_per_minute, adaptive_reason) = if room.adaptive.is_some() {
        queue::room::adapted(&state.redis, event_id).await?
    } else {
        (None, None)
    };
    Ok(Json(WaitingRoomView {
        room,
        stats,
        effective_per_minute,
        adaptive_reason,
    }))
}

#[utoipa::path(put, path = "/api/admin/events/{event_id}/waiting-room",
    params(("event_id" = Uuid, Path)), request_body = WaitingRoomChange, security(("admin" = [])),
    responses(
        (status = 200, body = WaitingRoom),
        (status = 401, body = ticketing::envelope::ErrorEnvelope),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            description = "`rate_limited`: too many admin requests from this address (counted before the token)",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 404, body = ticketing::envelope::ErrorEnvelope),
        (status = 413, body = ticketing::envelope::ErrorEnvelope),
        (status = 422, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn change_waiting_room(
    _: Admin,
    State(state): State<AppState>,
    Path(event_id): Path<Uuid>,
    Json(change): Json<WaitingRoomChange>,
) -> Result<Json<WaitingRoom>, ApiError> {
    let row = event::find(&state.db, event_id)
        .await?
        .ok_or(Failure::EventNotFound)?;
    let mut room = row.waiting_room();
    change.apply(&mut room);
    let problems = room_problems(&room);
    if !problems.is_empty() {
        return Err(Failure::Invalid(problems.join("; ")).into());
    }
    if !events::update_waiting_room(&state.db, event_id, &room).await? {
        return Err(Failure::EventNotFound.into());
    }
    state.events.forget(event_id);
    // Postgres holds the change; the worker re-syncs Redis from it within its next pass should
    // this write fail.
    let sync = if queue::room::config_exists(&state.redis, event_id).await? {
        Sync::Settings
    } else {
        Sync::AfterLoss(QueueMarks::load(&state.db, event_id).await?)
    };
    queue::sync_config(
        &state.redis,
        event_id,
        &room,
        row.on_sale_at.timestamp_millis(),
        sync,
    )
    .await?;
    // An operator's change (a rate, a pause, the room turned off to drain): the worker carries it
    // out from its next tick.
    ticketing::activity::note(&state.redis, event_id).await;
    tracing::info!(%event_id, ?room, "waiting room changed");
    Ok(Json(room))
}
