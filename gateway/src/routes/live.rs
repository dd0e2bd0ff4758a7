//! `GET /api/admin/events/{event_id}/live`: the operator's live view of a sale, one sample per
//! second for the last 30 minutes (written by the queue-worker, so every gateway serves the same
//! history) and what will happen next at this pace. The page asks every second with `since`.

use axum::extract::State;
use serde::{Deserialize, Serialize};
use ticketing::failure::{Failure, Json, Path, Query};
use ticketing::live::{self, Sample};
use uuid::Uuid;

use super::admin::Admin;
use crate::error::ApiError;
use crate::projections::{project, Projections};
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LiveQuery {
    /// The id of the last sample the page has: only later ones are returned.
    pub since: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LiveView {
    pub event_id: Uuid,
    /// The gateway's clock (ms), to tell how old the last sample is.
    pub now_ms: i64,
    /// Oldest first.
    pub samples: Vec<Sample>,
    /// From the last minute of samples; absent before the first sample.
    pub projections: Option<Projections>,
}

#[utoipa::path(get, path = "/api/admin/events/{event_id}/live",
    params(("event_id" = Uuid, Path), LiveQuery), security(("admin" = [])),
    responses(
        (status = 200, body = LiveView),
        (status = 400, body = ticketing::envelope::ErrorEnvelope),
        (status = 401, body = ticketing::envelope::ErrorEnvelope),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            description = "`rate_limited`: too many admin requests from this address (counted before the token)",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 404, body = ticketing::envelope::ErrorEnvelope),
        (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn show(
    _: Admin,
    State(state): State<AppState>,
    Path(event_id): Path<Uuid>,
    Query(query): Query<LiveQuery>,
) -> Result<Json<LiveView>, ApiError> {
    if let Some(since) = &query.since {
        if !is_stream_id(since) {
            return Err(Failure::BadQuery(
                "since must be a sample id such as 1764100000000-0".into(),
            )
            .into());
        }
    }
    state
        .events
        .get(event_id)
        .await?
        .ok_or(Failure::EventNotFound)?;
    let samples = live::samples(&state.redis, event_id, query.since.as_deref()).await?;
    // Projections look back a minute (and a sample): the page's new samples alone are too few.
    let projections = project(&live::latest(&state.redis, event_id, 61).await?);
    Ok(Json(LiveView {
        event_id,
        now_ms: chrono::Utc::now().timestamp_millis(),
        samples,
        projections,
    }))
}

fn is_stream_id(text: &str) -> bool {
    let (ms, seq) = text.split_once('-').unwrap_or((text, "0"));
    !ms.is_empty()
        && ms.len() <= 20
        && ms.bytes().all(|b| b.is_ascii_digit())
        && !seq.is_empty()
        && seq.len() <= 20
        && seq.bytes().all(|b| b.is_ascii_digit())
}
