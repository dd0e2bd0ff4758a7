//! The waiting room's routes: wire requests in, calls to [`crate::line`], wire answers out.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use ticketing::failure::{Failure, Json, Path};
use ticketing::queue::{Leaving, Wish};
use uuid::Uuid;

use crate::client_addr::ClientAddr;
use crate::domain::is_visitor_id;
use crate::error::ApiError;
use crate::line::{self, QueueStatus};
use crate::presented::{presented_receipt, query_value};
use crate::proof::Proof;
use crate::state::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct JoinRequest {
    /// The visitor's stable id (1-64 of `A-Z a-z 0-9 _ - . :`); joining again with it returns the
    /// same entry. A random one is made when absent.
    #[schema(pattern = r"^[A-Za-z0-9_.:-]{1,64}$")]
    pub visitor_id: Option<String>,
    /// The solved challenge of a 428 `proof_required` answer.
    pub proof: Option<Proof>,
}

/// The 428 answer: `{"error": {"code": "proof_required", "message", "challenge", "difficulty",
/// "reason"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ProofRequiredEnvelope {
    pub error: ProofRequiredDetail,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProofRequiredDetail {
    /// `proof_required`.
    pub code: String,
    pub message: String,
    /// Send back unchanged in `proof.challenge`.
    pub challenge: String,
    /// Leading zero bits SHA-256(`challenge:nonce`) must have.
    pub difficulty: u8,
    /// Why: `missing`, `wrong`, `expired` or `reused`.
    pub reason: String,
}

/// `PUT /api/queue/{queue_id}/wish`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WishRequest {
    /// Tier code → quantity (≥ 1; in all at most the event's `max_per_booking`); `{}` clears it.
    pub tiers: BTreeMap<String, u32>,
}

#[utoipa::path(post, path = "/api/events/{event_id}/queue",
    params(("event_id" = Uuid, Path)),
    request_body(content = Option<JoinRequest>),
    responses(
        (status = 202, body = QueueStatus),
        (status = 404, body = ticketing::envelope::ErrorEnvelope),
        (status = 400, body = ticketing::envelope::ErrorEnvelope),
        (status = 413, body = ticketing::envelope::ErrorEnvelope),
        (status = 422, body = ticketing::envelope::ErrorEnvelope),
        (status = 428, body = ProofRequiredEnvelope,
            description = "Joins are coming fast: solve the challenge and join again with `proof`"),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, body = ticketing::envelope::ErrorEnvelope,
            description = "Redis or Postgres cannot answer now, or the line is full")))]
pub async fn join(
    State(state): State<AppState>,
    client: ClientAddr,
    Path(event_id): Path<Uuid>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<QueueStatus>), ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::Failure(Failure::TooLarge)
        } else {
            ApiError::Failure(Failure::Invalid(r.body_text()))
        }
    })?;
    let request: Option<JoinRequest> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::Failure(Failure::Invalid(e.to_string())))?
    };
    let (visitor_id, proof) = request.map_or((None, None), |r| (r.visitor_id, r.proof));
    let chosen = match visitor_id {
        Some(id) if is_visitor_id(&id) => Some(id),
        Some(_) => {
            return Err(
                (Failure::Invalid("visitor_id must be 1-64 of A-Z a-z 0-9 _ - . :".into())).into(),
            )
        }
        None => None,
    };
    // Proof first, limits next, the event last: a 428 charges no limiter, a proof is spent only
    // once the limits let its join through (a 429 leaves it good for the retry), and a flood of
    // joins (even for made-up events) is turned away before it costs a Postgres lookup.
    let gate = state
        .proof_of_work
        .check(event_id, client, proof.as_ref())?;
    state.limits.join(event_id, chosen.as_deref(), client)?;
    state
        .proof_of_work
        .spend(&state.redis, event_id, client, gate)
        .await?;
    let visitor_id = chosen.unwrap_or_else(|| Uuid::new_v4().simple().to_string());
    let event = state
        .events
        .get(event_id)
        .await?
        .ok_or(Failure::EventNotFound)?;
    state.proof_of_work.note_join(event.id);
    let status = line::join(&state, &event, &visitor_id).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

#[utoipa::path(get, path = "/api/queue/{queue_id}",
    params(("queue_id" = Uuid, Path),
        ("receipt" = Option<String>, Query, description = "The latest place receipt (or header X-Queue-Receipt)"),
        ("x-queue-receipt" = Option<String>, Header, description = "The latest place receipt")),
    responses(
        (status = 200, body = QueueStatus),
        (status = 400, body = ticketing::envelope::ErrorEnvelope,
            description = "The client's address cannot be told"),
        (status = 404, body = ticketing::envelope::ErrorEnvelope),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, body = ticketing::envelope::ErrorEnvelope,
            description = "Redis or Postgres cannot answer now")))]
pub async fn poll(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<QueueStatus>, ApiError> {
    let (queue_id, event) = line::entry_of(&state, &queue_id).await?;
    let receipt = presented_receipt(&headers, query.as_deref())
        .and_then(|text| state.config.receipt_keys.verify(text));
    let status = line::poll(&state, &event, queue_id, receipt.as_ref()).await?;
    metrics::counter!("queue_polls_total", "state" => line::state_label(status.state)).increment(1);
    Ok(Json(status))
}

#[utoipa::path(delete, path = "/api/queue/{queue_id}",
    params(("queue_id" = Uuid, Path),
        ("grace_s" = Option<u32>, Query, description = "Leave only after this many seconds (1-60), unless the entry polls meanwhile: what a page sends when it is closed, so a reload keeps the place")),
    responses(
        (status = 204, description = "Left the line (or will after the grace): the place and any admission slot are free; polls now answer 404"),
        (status = 400, body = ticketing::envelope::ErrorEnvelope,
            description = "The client's address cannot be told"),
        (status = 404, body = ticketing::envelope::ErrorEnvelope,
            description = "No such entry in line or admitted"),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, body = ticketing::envelope::ErrorEnvelope,
            description = "Redis or Postgres cannot answer now")))]
pub async fn leave(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<StatusCode, ApiError> {
    let when = match query_value(query.as_deref(), "grace_s") {
        None => Leaving::Now,
        Some(text) => match text.parse::<u64>() {
            Ok(s @ 1..=60) => Leaving::After(s * 1000),
            _ => return Err(Failure::BadQuery("grace_s must be 1-60".into()).into()),
        },
    };
    let (queue_id, event) = line::entry_of(&state, &queue_id).await?;
    line::leave(&state, &event, queue_id, when).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(put, path = "/api/queue/{queue_id}/wish",
    params(("queue_id" = Uuid, Path)),
    request_body = WishRequest,
    responses(
        (status = 200, body = QueueStatus, description = "The wish is set; the status as a poll answers it"),
        (status = 404, body = ticketing::envelope::ErrorEnvelope),
        (status = 409, body = ticketing::envelope::ErrorEnvelope,
            description = "`insufficient_inventory` with `shortfall`: a tier has less left (held included) than wished; `not_waiting`: admitted already"),
        (status = 422, body = ticketing::envelope::ErrorEnvelope,
            description = "An unknown tier, a quantity below 1, or more in all than `max_per_booking`"),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn set_wish(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    Json(request): Json<WishRequest>,
) -> Result<Json<QueueStatus>, ApiError> {
    let (queue_id, event) = line::entry_of(&state, &queue_id).await?;
    let mut wish = Wish::default();
    for code in &event.tier_codes {
        if let Some(quantity) = request.tiers.get(code.as_str()) {
            wish.0.push((code.clone(), *quantity));
        }
    }
    if let Some(unknown) = request
        .tiers
        .keys()
        .find(|c| !event.tier_codes.iter().any(|code| code == c.as_str()))
    {
        return Err(Failure::Invalid(format!("unknown tier {unknown:?}")).into());
    }
    if wish.0.iter().any(|(_, quantity)| *quantity == 0) {
        return Err(Failure::Invalid("each quantity must be at least 1".into()).into());
    }
    let most = event.max_per_booking.max(1) as u32;
    if wish.total() > most {
        return Err(Failure::Invalid(format!("at most {most} tickets per booking")).into());
    }
    let receipt = presented_receipt(&headers, query.as_deref())
        .and_then(|text| state.config.receipt_keys.verify(text));
    Ok(Json(
        line::set_wish(&state, &event, queue_id, &wish, receipt.as_ref()).await?,
    ))
}

#[utoipa::path(post, path = "/api/queue/{queue_id}/alive",
    params(("queue_id" = Uuid, Path)),
    responses(
        (status = 204, description = "The admitted entry's page is still open: its admission slot stays counted"),
        (status = 400, body = ticketing::envelope::ErrorEnvelope,
            description = "The client's address cannot be told"),
        (status = 404, body = ticketing::envelope::ErrorEnvelope,
            description = "The entry holds no admission slot (its token, if any, stays valid until it expires)"),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn alive(
    State(state): State<AppState>,
    Path(queue_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (queue_id, event) = line::entry_of(&state, &queue_id).await?;
    line::alive(&state, &event, queue_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
