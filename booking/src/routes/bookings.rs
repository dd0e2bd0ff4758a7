//! Bookings: create (token-gated, reserved in Redis, written to Postgres), read, cancel.

use std::time::Instant;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Serialize;
use ticketing::failure::{Failure, Json, Path};
use ticketing::inventory::{self, Numbers};
use ticketing::tier::TierCode;
use uuid::Uuid;

use crate::checkout::{self, Checkout};
use crate::db::bookings::{self, StoredBooking};
use crate::domain::{idempotency_key, BookingRequest, BookingStatus, Order};

use crate::error::ApiError;
use crate::gate;
use crate::state::AppState;
use crate::tiers::EventTiers;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ticket {
    pub id: Uuid,
    pub tier: String,
    /// Unique within the event and tier.
    pub number: i32,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Booking {
    pub booking_id: Uuid,
    pub event_id: Uuid,
    pub status: BookingStatus,
    pub buyer_email: String,
    pub tickets: Vec<Ticket>,
    pub total_cents: i64,
    pub created_at: DateTime<Utc>,
    /// The secret for reading and cancelling this booking later; only in the 201 answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_code: Option<String>,
}

fn present(stored: &StoredBooking, tiers: &EventTiers, access_code: Option<String>) -> Booking {
    let booking = &stored.booking;
    let mut tickets: Vec<_> = stored.tickets.iter().collect();
    // Tiers in the event's order, numbers ascending within each.
    tickets.sort_by_key(|t| (tiers.tiers.iter().position(|x| x.id == t.tier_id), t.number));
    Booking {
        booking_id: booking.id,
        event_id: booking.event_id,
        status: booking.status,
        buyer_email: booking.buyer_email.clone(),
        tickets: tickets
            .into_iter()
            .map(|t| Ticket {
                id: t.id,
                tier: tiers
                    .by_id(t.tier_id)
                    .map(|x| x.code.to_string())
                    .unwrap_or_default(),
                number: t.number,
            })
            .collect(),
        total_cents: booking.total_cents,
        created_at: booking.created_at,
        access_code,
    }
}

#[utoipa::path(post, path = "/api/bookings", request_body = BookingRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes retries safe")),
    security(("entry_token" = [])),
    responses(
        (status = 201, body = Booking),
        (status = 401, body = ticketing::envelope::ErrorEnvelope),
        (status = 403, body = ticketing::envelope::ErrorEnvelope),
        (status = 409, body = ticketing::envelope::ErrorEnvelope),
        (status = 413, body = ticketing::envelope::ErrorEnvelope),
        (status = 422, body = ticketing::envelope::ErrorEnvelope),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            description = "too many requests with this entry token (`rate_limited`, with Retry-After)"),
        (status = 503, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(request): Json<BookingRequest>,
) -> Result<(StatusCode, Json<Booking>), ApiError> {
    let started = Instant::now();
    let result = create_booking(&state, &headers, request).await;
    let outcome = match &result {
        Ok(_) => "created",
        Err(ApiError::InsufficientInventory(_)) => "sold_out",
        Err(ApiError::TokenUsed) => "token_used",
        Err(error) if error.is_unavailable() => "unavailable",
        Err(_) => "refused",
    };
    metrics::histogram!("booking_duration_seconds", "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
    result.map(|booking| (StatusCode::CREATED, Json(booking)))
}

async fn create_booking(
    state: &AppState,
    headers: &HeaderMap,
    request: BookingRequest,
) -> Result<Booking, ApiError> {
    let key = idempotency_key(headers.get("idempotency-key").and_then(|v| v.to_str().ok()))?;
    // A sold-out event's shortfall is public (availability says it): while it is remembered,
    // a request without an Idempotency-Key (which could be owed a replay) is answered before
    // the signature is checked, so the storm of clicks after a sell-out costs no verification.
    // A credential that is not even shaped like a token still gets 401.
    if key.is_none() {
        if let Some(shortfall) = remembered_shortfall(state, &request) {
            gate::bearer(headers)
                .filter(|t| gate::looks_like_jwt(t))
                .ok_or(ApiError::InvalidToken)?;
            metrics::counter!("bookings_refused_from_memory_total").increment(1);
            return Err(ApiError::InsufficientInventory(shortfall));
        }
    }
    let claims = gate::entry_token(headers, &state.verifier).await?;
    if claims.evt != request.event_id {
        return Err(ApiError::TokenEventMismatch);
    }
    if state.per_token.check_key(&claims.jti).is_err() {
        return Err((Failure::RateLimited {
            retry_after: std::time::Duration::from_secs(1),
        })
        .into());
    }
    // The token is the gateway's word that this event exists: read it, never refuse it from
    // the set of known ids, which may predate the event by a moment.
    let tiers = state
        .tiers
        .named(&state.db, request.event_id)
        .await?
        .ok_or_else(|| ApiError::invalid("unknown event"))?;
    if chrono::Utc::now() < tiers.on_sale_at {
        return Err(ApiError::NotOnSale(tiers.on_sale_at));
    }
    let order = Order::parse(request, &tiers, claims.max)?;
    let fingerprint = order.fingerprint();
    // The 201 answer, with the access code only the booker's own answers carry.
    let booked = |stored: StoredBooking| {
        let code = state.access.code(stored.booking.id);
        present(&stored, &tiers, Some(code))
    };

    if let Some(key) = &key {
        if let Some(answer) = checkout::replay(state, claims.jti, key, &fingerprint).await? {
            return answer.map(booked);
        }
    }

    // Checked after the replay so a retry still gets its first answer. A token that has booked
    // before hears "sold out" here rather than `token_used`: either way this request cannot book.
    if let Some(shortfall) = state.sold_out.shortfall(order.event_id, &order.quantities) {
        metrics::counter!("bookings_refused_from_memory_total").increment(1);
        return Err(ApiError::InsufficientInventory(shortfall));
    }

    let jti = claims.jti;
    let outcome = Checkout {
        order,
        claims,
        idempotency_key: key.clone(),
        fingerprint: fingerprint.clone(),
        tiers: tiers.clone(),
    }
    .run(state.clone())
    .await;
    match (outcome, key.as_deref()) {
        (Ok(stored), _) => Ok(booked(stored)),
        // The token booked already: a retry with its key gets its first answer.
        (Err(ApiError::TokenUsed), Some(key)) => {
            match checkout::replay(state, jti, key, &fingerprint).await? {
                Some(answer) => answer.map(booked),
                None => Err(ApiError::TokenUsed),
            }
        }
        (Err(e), _) => Err(e),
    }
}

/// The shortfall the sold-out memory would answer for this request, if the request is well
/// formed enough to have one (every tier one of the event's); anything else takes the full path
/// and gets its own answer.
fn remembered_shortfall(
    state: &AppState,
    request: &BookingRequest,
) -> Option<Vec<ticketing::inventory::Shortfall>> {
    let tiers = state.tiers.cached(request.event_id)?;
    if request
        .tiers
        .keys()
        .any(|code| tiers.by_code(code).is_none())
    {
        return None;
    }
    let quantities: Vec<(TierCode, u32)> = request
        .tiers
        .iter()
        .filter(|(_, q)| **q > 0)
        .map(|(code, q)| Some((tiers.by_code(code)?.code.clone(), u32::try_from(*q).ok()?)))
        .collect::<Option<_>>()?;
    if quantities.is_empty() {
        return None;
    }
    state.sold_out.shortfall(request.event_id, &quantities)
}

/// The booking the bearer may see: the entry token that made it, or its access code.
async fn authorized(
    state: &AppState,
    headers: &HeaderMap,
    booking_id: Uuid,
) -> Result<StoredBooking, ApiError> {
    let credential = gate::bearer(headers).ok_or(ApiError::InvalidToken)?;
    if gate::looks_like_jwt(credential) {
        let claims = state.verifier.verify_batched(credential).await?;
        let stored = bookings::find(&state.db, booking_id)
            .await?
            .ok_or(ApiError::BookingNotFound)?;
        if stored.booking.token_jti != claims.jti {
            return Err(ApiError::BookingNotFound);
        }
        Ok(stored)
    } else {
        if !state.access.verify(booking_id, credential) {
            return Err(ApiError::InvalidToken);
        }
        bookings::find(&state.db, booking_id)
            .await?
            .ok_or(ApiError::BookingNotFound)
    }
}

async fn tiers_of(
    state: &AppState,
    event_id: Uuid,
) -> Result<std::sync::Arc<EventTiers>, ApiError> {
    state
        .tiers
        .named(&state.db, event_id)
        .await?
        .ok_or_else(|| ApiError::from(anyhow::anyhow!("booking of unknown event {event_id}")))
}

#[utoipa::path(get, path = "/api/bookings/{booking_id}",
    params(("booking_id" = Uuid, Path)), security(("entry_token" = []), ("access_code" = [])),
    responses(
        (status = 200, body = Booking),
        (status = 401, body = ticketing::envelope::ErrorEnvelope),
        (status = 404, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(booking_id): Path<Uuid>,
) -> Result<Json<Booking>, ApiError> {
    let stored = authorized(&state, &headers, booking_id).await?;
    let tiers = tiers_of(&state, stored.booking.event_id).await?;
    Ok(Json(present(&stored, &tiers, None)))
}

#[utoipa::path(delete, path = "/api/bookings/{booking_id}",
    params(("booking_id" = Uuid, Path)), security(("entry_token" = []), ("access_code" = [])),
    responses(
        (status = 200, body = Booking),
        (status = 401, body = ticketing::envelope::ErrorEnvelope),
        (status = 404, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn cancel(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(booking_id): Path<Uuid>,
) -> Result<Json<Booking>, ApiError> {
    let stored = authorized(&state, &headers, booking_id).await?;
    let event_id = stored.booking.event_id;
    let tiers = tiers_of(&state, event_id).await?;
    // The transaction and the restock run to the end even if the client goes away: a cancel
    // cut between Postgres and Redis would keep its numbers off sale until the reconciler.
    let (worker, tiers_of_event) = (state.clone(), tiers.clone());
    ticketing::detached::finish(async move {
        let state = worker;
        let Some(cancelled) = bookings::cancel(&state.db, booking_id, event_id).await? else {
            return Ok::<_, ApiError>(());
        };
        let mut freed = Numbers::new();
        for (tier_id, number) in cancelled.freed {
            if let Some(tier) = tiers_of_event.by_id(tier_id) {
                freed.entry(tier.code.clone()).or_default().push(number);
            }
        }
        // Under the epoch read with the lock held: if Redis was rebuilt since, the rebuild
        // already saw this cancellation and the script does nothing. If Redis is unreachable,
        // the reconciler finds the drift and repairs it.
        match inventory::restock(&state.redis, event_id, cancelled.epoch, &freed).await {
            Ok(_) => state.sold_out.forget(event_id),
            Err(e) => tracing::warn!(error = %e, "restock failed; left to the reconciler"),
        }
        metrics::counter!("bookings_cancelled_total").increment(1);
        Ok(())
    })
    .await?;
    let stored = bookings::find(&state.db, booking_id)
        .await?
        .ok_or(ApiError::BookingNotFound)?;
    Ok(Json(present(&stored, &tiers, None)))
}
