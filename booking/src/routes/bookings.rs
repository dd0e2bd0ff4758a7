//! Bookings: create (token-gated, reserved in Redis, written to Postgres), read, cancel.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde::Serialize;
use ticketing::inventory::{self, Numbers, ReleaseMode, Reservation};
use ticketing::rebuild::{self, When};
use ticketing::token::EntryClaims;
use uuid::Uuid;

use crate::db::bookings::{self, NewBooking, StoredBooking};
use crate::domain::{idempotency_key, BookingRequest, Order};
use crate::error::{is_unavailable, ApiError, Json, Path};
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

#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Confirmed,
    Cancelled,
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
        status: if booking.status == "cancelled" {
            BookingStatus::Cancelled
        } else {
            BookingStatus::Confirmed
        },
        buyer_email: booking.buyer_email.clone(),
        tickets: tickets
            .into_iter()
            .map(|t| Ticket {
                id: t.id,
                tier: tiers
                    .by_id(t.tier_id)
                    .map(|x| x.code.clone())
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
        Err(ApiError::Unavailable(_)) => "unavailable",
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
    let claims = gate::entry_token(headers, &state.verifier)?;
    if claims.evt != request.event_id {
        return Err(ApiError::TokenEventMismatch);
    }
    let key = idempotency_key(headers.get("idempotency-key").and_then(|v| v.to_str().ok()))?;
    let tiers = state
        .tiers
        .get(&state.db, request.event_id)
        .await?
        .ok_or_else(|| ApiError::InvalidRequest("unknown event".into()))?;
    let order = Order::parse(request, &tiers, claims.max)?;
    let fingerprint = order.fingerprint();

    if let Some(key) = &key {
        if let Some(answer) = replay(state, &claims, key, &fingerprint, &tiers).await? {
            return answer;
        }
    }

    // Checked after the replay so a retry still gets its first answer. A token that has booked
    // before hears "sold out" here rather than `token_used`: either way this request cannot book.
    if let Some(shortfall) = state.sold_out.shortfall(order.event_id, &order.quantities) {
        metrics::counter!("bookings_refused_from_memory_total").increment(1);
        return Err(ApiError::InsufficientInventory(shortfall));
    }

    let deadline_ms = Utc::now().timestamp_millis() + state.config.hold_ttl.as_millis() as i64;
    let mut reservation = inventory::reserve(
        &state.redis,
        order.event_id,
        claims.jti,
        deadline_ms,
        &order.quantities,
    )
    .await?;
    if reservation == Reservation::NotLoaded {
        // Redis lost this event (restart, flush, failover): rebuild it from Postgres, fenced
        // against in-flight writes, then try once more.
        rebuild::rebuild_inventory(&state.db, &state.redis, order.event_id, When::Missing)
            .await
            .map_err(|e| {
                tracing::warn!(error = ?e, "inventory rebuild failed");
                ApiError::Unavailable("ticket inventory is being restored; try again")
            })?;
        reservation = inventory::reserve(
            &state.redis,
            order.event_id,
            claims.jti,
            deadline_ms,
            &order.quantities,
        )
        .await?;
    }
    let reserved_at = Instant::now();
    let (epoch, numbers) = match reservation {
        Reservation::Held { epoch, numbers } => (epoch, numbers),
        Reservation::Short {
            shortfall,
            sold_out,
        } => {
            if sold_out {
                state.sold_out.remember(order.event_id);
            }
            return Err(ApiError::InsufficientInventory(shortfall));
        }
        Reservation::UnknownTier(code) => {
            return Err(ApiError::InvalidRequest(format!("unknown tier {code:?}")))
        }
        Reservation::DuplicateTier(code) => {
            return Err(ApiError::InvalidRequest(format!(
                "tier {code:?} listed twice"
            )))
        }
        Reservation::NotLoaded => {
            return Err(ApiError::Unavailable(
                "ticket inventory is being restored; try again",
            ))
        }
        Reservation::TokenUsed => {
            // A retry racing its own first attempt: wait briefly for that attempt to land.
            if let Some(key) = &key {
                for _ in 0..20 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Some(answer) = replay(state, &claims, key, &fingerprint, &tiers).await? {
                        return answer;
                    }
                }
            }
            return Err(ApiError::TokenUsed);
        }
    };

    let event_id = order.event_id;
    let release = |mode: ReleaseMode| {
        let (redis, epoch, jti, codes) = (
            state.redis.clone(),
            epoch.clone(),
            claims.jti.to_string(),
            tiers.codes(),
        );
        if mode == ReleaseMode::Return {
            state.sold_out.forget(event_id);
        }
        async move {
            if let Err(e) = inventory::release(&redis, event_id, &epoch, &jti, mode, &codes).await {
                // The hold expires and the queue-worker releases it.
                tracing::warn!(error = %e, "release failed; left to the hold sweeper");
            }
        }
    };

    // Past half the hold, the sweeper may be about to release these numbers: do not write.
    if reserved_at.elapsed() > state.config.hold_ttl / 2 {
        release(ReleaseMode::Return).await;
        return Err(ApiError::Unavailable(
            "the booking took too long; try again",
        ));
    }
    let booking_id = Uuid::new_v4();
    let written = write(
        state,
        &order,
        &claims,
        booking_id,
        key.as_deref(),
        &fingerprint,
        &epoch,
        &numbers,
        &tiers,
    )
    .await;
    match written {
        Ok(Some(stored)) => {
            // The booking stands once Postgres has it; ending the hold need not delay the
            // answer (if it fails, the hold sweeper finds the booking and confirms it).
            let redis = state.redis.clone();
            let (jti, queue_id) = (claims.jti, claims.sub);
            tokio::spawn(async move {
                if let Err(e) = inventory::confirm(&redis, event_id, jti, queue_id).await {
                    tracing::warn!(error = %e, "confirm failed; the hold sweeper will find the booking");
                }
            });
            metrics::counter!("tickets_sold_total").increment(stored.tickets.len() as u64);
            Ok(present(
                &stored,
                &tiers,
                Some(state.access.code(booking_id)),
            ))
        }
        Ok(None) => {
            // Fenced out: Postgres's inventory epoch moved past the one these numbers came from.
            // Undo the hold, then bring Redis to the new epoch so a retry can succeed.
            release(ReleaseMode::Return).await;
            if let Err(e) =
                rebuild::rebuild_inventory(&state.db, &state.redis, event_id, When::Missing).await
            {
                tracing::warn!(error = ?e, "rebuild after a fenced write failed; left to the reconciler");
            }
            Err(ApiError::Unavailable(
                "ticket inventory was restored meanwhile; try again",
            ))
        }
        Err(e) => {
            let constraint = match &e {
                sqlx::Error::Database(db) => db.constraint().map(str::to_owned),
                _ => None,
            };
            match constraint.as_deref() {
                Some("bookings_token_jti_key") => {
                    release(ReleaseMode::Return).await;
                    if let Some(key) = &key {
                        if let Some(answer) =
                            replay(state, &claims, key, &fingerprint, &tiers).await?
                        {
                            return answer;
                        }
                    }
                    Err(ApiError::TokenUsed)
                }
                Some("tickets_tier_number_key" | "tickets_number_in_range") => {
                    // Redis handed out a number Postgres has sold: Redis drifted. Keep the numbers
                    // out of sale; the reconciler rebuilds the event from Postgres.
                    metrics::counter!("inventory_conflicts_total").increment(1);
                    tracing::error!(error = %e, "ticket number conflict: redis drifted from postgres");
                    release(ReleaseMode::Discard).await;
                    rebuild::rebuild_inventory(
                        &state.db,
                        &state.redis,
                        order.event_id,
                        When::Always,
                    )
                    .await
                    .ok();
                    Err(ApiError::Unavailable(
                        "ticket inventory is being repaired; try again",
                    ))
                }
                _ => {
                    release(ReleaseMode::Return).await;
                    if is_unavailable(&e) {
                        Err(ApiError::from(e))
                    } else {
                        Err(ApiError::Internal(e.into()))
                    }
                }
            }
        }
    }
}

/// The first answer to a retried request with the same `Idempotency-Key`.
async fn replay(
    state: &AppState,
    claims: &EntryClaims,
    key: &str,
    fingerprint: &[u8],
    tiers: &EventTiers,
) -> Result<Option<Result<Booking, ApiError>>, ApiError> {
    let Some(stored) = bookings::find_by_token(&state.db, claims.jti).await? else {
        return Ok(None);
    };
    let booking = &stored.booking;
    Ok(Some(if booking.idempotency_key.as_deref() != Some(key) {
        Err(ApiError::TokenUsed)
    } else if booking.request_hash != fingerprint {
        Err(ApiError::IdempotencyKeyReused)
    } else {
        Ok(present(&stored, tiers, Some(state.access.code(booking.id))))
    }))
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the booking being written"
)]
async fn write(
    state: &AppState,
    order: &Order,
    claims: &EntryClaims,
    booking_id: Uuid,
    key: Option<&str>,
    fingerprint: &[u8],
    epoch: &str,
    numbers: &Numbers,
    tiers: &EventTiers,
) -> Result<Option<StoredBooking>, sqlx::Error> {
    let epoch: i64 = epoch
        .parse()
        .map_err(|_| sqlx::Error::Protocol("bad epoch in redis".into()))?;
    let mut tickets = Vec::new();
    for (code, list) in numbers {
        let tier = tiers
            .by_code(code)
            .ok_or_else(|| sqlx::Error::Protocol(format!("redis returned unknown tier {code}")))?;
        tickets.extend(list.iter().map(|n| (tier.id, tier.capacity, *n)));
    }
    let new = NewBooking {
        id: booking_id,
        event_id: order.event_id,
        buyer_email: &order.buyer_email,
        token_jti: claims.jti,
        queue_id: claims.sub,
        idempotency_key: key,
        request_hash: fingerprint,
        total_cents: order.total_cents,
        epoch,
        tickets,
    };
    let Some((created_at, tickets)) = bookings::insert(&state.db, &new).await? else {
        return Ok(None);
    };
    Ok(Some(StoredBooking {
        booking: bookings::BookingRow {
            id: booking_id,
            event_id: order.event_id,
            status: "confirmed".into(),
            buyer_email: order.buyer_email.clone(),
            token_jti: claims.jti,
            idempotency_key: key.map(str::to_owned),
            request_hash: fingerprint.to_vec(),
            total_cents: order.total_cents,
            created_at,
        },
        tickets,
    }))
}

/// The booking the bearer may see: the entry token that made it, or its access code.
async fn authorized(
    state: &AppState,
    headers: &HeaderMap,
    booking_id: Uuid,
) -> Result<StoredBooking, ApiError> {
    let credential = gate::bearer(headers).ok_or(ApiError::InvalidToken)?;
    if gate::looks_like_jwt(credential) {
        let claims = state.verifier.verify(credential)?;
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
        .get(&state.db, event_id)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("booking of unknown event {event_id}")))
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
    let mut tx = state.db.begin().await?;
    let cancelled = bookings::cancel(&mut tx, booking_id, event_id).await?;
    tx.commit().await?;
    if let Some(cancelled) = cancelled {
        let mut freed = Numbers::new();
        for (tier_id, number) in cancelled.freed {
            if let Some(tier) = tiers.by_id(tier_id) {
                freed.entry(tier.code.clone()).or_default().push(number);
            }
        }
        // Under the epoch read with the lock held: if Redis was rebuilt since, the rebuild
        // already saw this cancellation and the script does nothing. If Redis is unreachable,
        // the reconciler finds the drift and repairs it.
        match inventory::restock(&state.redis, event_id, &cancelled.epoch.to_string(), &freed).await
        {
            Ok(_) => state.sold_out.forget(event_id),
            Err(e) => tracing::warn!(error = %e, "restock failed; left to the reconciler"),
        }
        metrics::counter!("bookings_cancelled_total").increment(1);
    }
    let stored = bookings::find(&state.db, booking_id)
        .await?
        .ok_or(ApiError::BookingNotFound)?;
    Ok(Json(present(&stored, &tiers, None)))
}
