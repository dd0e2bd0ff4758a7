//! Live availability per tier, straight from the Redis inventory.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::Serialize;
use ticketing::inventory;
use ticketing::rebuild::{self, When};
use ticketing::tier::TierCode;
use uuid::Uuid;

use ticketing::failure::{Failure, Json, Path};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Availability {
    pub event_id: Uuid,
    /// Tickets left per tier code.
    #[schema(value_type = std::collections::HashMap<String, i64>)]
    pub tiers: BTreeMap<TierCode, i64>,
}

#[utoipa::path(get, path = "/api/events/{event_id}/availability",
    params(("event_id" = Uuid, Path)),
    responses(
        (status = 200, body = Availability),
        (status = 404, body = ticketing::envelope::ErrorEnvelope),
        (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn show(
    State(state): State<AppState>,
    Path(event_id): Path<Uuid>,
) -> Result<Json<Availability>, ApiError> {
    // An id Postgres does not have costs one cached lookup, never a lock or a rebuild.
    if state
        .tiers
        .get(&state.db, &state.redis, event_id)
        .await?
        .is_none()
    {
        return Err(Failure::EventNotFound.into());
    }
    let mut live = inventory::availability(&state.redis, event_id).await?;
    if live.is_none() {
        let restored = rebuild::rebuild_inventory(&state.db, &state.redis, event_id, When::Missing)
            .await
            .map_err(|e| {
                tracing::warn!(error = ?e, "inventory rebuild failed");
                ApiError::unavailable("ticket inventory is being restored; try again")
            })?;
        if restored.is_none() {
            return Err(Failure::EventNotFound.into());
        }
        live = inventory::availability(&state.redis, event_id).await?;
    }
    let tiers = live
        .ok_or(ApiError::unavailable(
            "ticket inventory is being restored; try again",
        ))?
        .into_iter()
        .collect();
    Ok(Json(Availability { event_id, tiers }))
}
