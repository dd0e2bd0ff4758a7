//! The waiting line, step by step, as one state machine the routes call: a buyer joins, polls
//! (or is pushed) their place, sets a wish, leaves, and once admitted is handed an entry token.
//! Each step returns what the buyer is told ([`QueueStatus`], made by the pure
//! [`status::describe`]) or why not ([`ApiError`]); the routes only turn wire requests into these
//! calls.
//!
//! Rules, in the order a request meets them:
//! 0. **An admission is only kept for a page that is there**: undelivered within two of the poll
//!    intervals its entry was told near the head and a grace ([`poll`] notes them), or within
//!    `queue::DELIVERY_WINDOW_MS` when it never polled there, it is reclaimed; delivered, a page silent for
//!    `queue::PAGE_GONE_MS` (no poll, stream check or [`alive`]) gives back its slot and demand
//!    while its token stays valid (`lua/admit.lua`).
//! 1. **Where an entry stands is one Lua script** (`lua/queue_entry.lua`): a join that creates it,
//!    a poll that reads it and counts as a sign of life, a receipt that puts it back after a
//!    loss. A request dropped half-way changed Redis entirely or not at all.
//! 2. **A Redis that lost the event is restored once** ([`crate::restore`]), then asked again.
//! 3. **An admitted entry's token is delivered once**: the first poll that sees the admission
//!    starts the time to book (`deliver_entry_token`), signs the token and keeps it, so every
//!    later poll (any gateway) answers the same token.
//! 4. **What the buyer is told is read, then described**: the stock and the sale's pace come
//!    from [`crate::wait::SalePace`] (at most 100 ms old), then [`status::describe`] makes the
//!    answer without touching a store.

pub mod status;

use std::sync::Arc;

use chrono::Utc;
use ticketing::queue::{self, place, Leaving, QueueId, Receipt, Standing, Wish, WishSet};
use ticketing::token::{EntryClaims, TokenId};

use crate::error::ApiError;
use crate::state::AppState;
pub use status::{state_label, QueueState, QueueStatus, TierStatus};
use ticketing::event::Event;

/// The queue id a path names and the event whose line it stands in (its first four bytes).
pub async fn entry_of(state: &AppState, queue_id: &str) -> Result<(QueueId, Arc<Event>), ApiError> {
    let queue_id: QueueId = queue_id.parse().map_err(|_| ApiError::QueueEntryNotFound)?;
    let event = state
        .events
        .by_short_id(queue_id.event_short_id())
        .await?
        .ok_or(ApiError::QueueEntryNotFound)?;
    Ok((queue_id, event))
}

/// Joins `event`'s line as `visitor_id` (or finds the entry it has).
pub async fn join(
    state: &AppState,
    event: &Event,
    visitor_id: &str,
) -> Result<QueueStatus, ApiError> {
    let queue_id = QueueId::for_visitor(
        state.config.queue_id_secret.expose().as_bytes(),
        event.short_id,
        event.id,
        visitor_id,
    );
    let standing = standing(state, event, queue_id, Step::Join).await?;
    metrics::counter!("queue_joins_total").increment(1);
    present(state, event, queue_id, standing, None).await
}

/// What a poll answers for an entry of `event`, given the verified receipt it presented (the
/// poll and each check of a stream). An entry that is not there is 404.
pub async fn status_of(
    state: &AppState,
    event: &Event,
    queue_id: QueueId,
    receipt: Option<&Receipt>,
) -> Result<QueueStatus, ApiError> {
    let standing = standing(state, event, queue_id, Step::Poll(receipt)).await?;
    if standing == Standing::NotFound {
        return Err(ApiError::QueueEntryNotFound);
    }
    present(state, event, queue_id, standing, receipt).await
}

/// A poll: what [`status_of`] answers, and for an entry near the head the interval it was just
/// told noted (rule 0), so that were it admitted, an absent page's admission is reclaimed within
/// two such intervals rather than the longest window.
pub async fn poll(
    state: &AppState,
    event: &Event,
    queue_id: QueueId,
    receipt: Option<&Receipt>,
) -> Result<QueueStatus, ApiError> {
    let status = status_of(state, event, queue_id, receipt).await?;
    if status.state == QueueState::Waiting && status.position.is_some_and(|p| p <= near_head(event))
    {
        queue::note_cadence(&state.redis, event.id, queue_id, status.poll_after_ms).await?;
    }
    Ok(status)
}

/// How far back an entry is near the head: about ten seconds of admissions at the set rate, and
/// never fewer than the first 200.
fn near_head(event: &Event) -> u64 {
    (u64::from(event.waiting_room().admission_per_minute) / 6).max(200)
}

/// Sets the wish of an entry in line (`wish` already checked against the event's tiers), then
/// answers as a poll does.
pub async fn set_wish(
    state: &AppState,
    event: &Event,
    queue_id: QueueId,
    wish: &Wish,
    receipt: Option<&Receipt>,
) -> Result<QueueStatus, ApiError> {
    match queue::set_wish(&state.redis, event.id, queue_id, wish, &event.tier_codes).await? {
        WishSet::Set => {}
        WishSet::NotFound => return Err(ApiError::QueueEntryNotFound),
        WishSet::NotWaiting => return Err(ApiError::NotWaiting),
        WishSet::Short(shortfall) => return Err(ApiError::WishShort(shortfall)),
    }
    metrics::counter!("queue_wishes_set_total").increment(1);
    let standing = standing(state, event, queue_id, Step::Poll(receipt)).await?;
    present(state, event, queue_id, standing, receipt).await
}

/// The entry leaves the line or gives back its admission, now or after a grace.
pub async fn leave(
    state: &AppState,
    event: &Event,
    queue_id: QueueId,
    when: Leaving,
) -> Result<(), ApiError> {
    // One script: a client gone mid-request either left or did not, never half.
    if !queue::leave(&state.redis, event.id, queue_id, when, &event.tier_codes).await? {
        return Err(ApiError::QueueEntryNotFound);
    }
    let how = if when == Leaving::Now {
        "asked"
    } else {
        "closed"
    };
    metrics::counter!("queue_left_total", "how" => how).increment(1);
    Ok(())
}

/// The booking page of an admitted entry is still open: its slot and demand stay counted. An
/// entry holding no admission slot is 404 (its token, if any, stays valid).
pub async fn alive(state: &AppState, event: &Event, queue_id: QueueId) -> Result<(), ApiError> {
    if !queue::page_alive(&state.redis, event.id, queue_id).await? {
        return Err(ApiError::QueueEntryNotFound);
    }
    metrics::counter!("queue_pages_alive_total").increment(1);
    Ok(())
}

/// Which step of the line a request takes.
#[derive(Clone, Copy)]
enum Step<'a> {
    Join,
    /// With the verified receipt the poll presented, if any.
    Poll(Option<&'a Receipt>),
}

/// Runs the entry script; when Redis has lost the event (restart, flush, failover), puts its
/// settings, line marks and inventory back from Postgres first.
async fn standing(
    state: &AppState,
    event: &Event,
    queue_id: QueueId,
    step: Step<'_>,
) -> Result<Standing, ApiError> {
    let run = || async {
        match step {
            Step::Join => {
                queue::join(
                    &state.redis,
                    event.id,
                    queue_id,
                    place::lot_for(state.config.queue_id_secret.expose().as_bytes(), queue_id),
                    &event.tier_codes,
                )
                .await
            }
            Step::Poll(receipt) => {
                queue::poll(&state.redis, event.id, queue_id, receipt, &event.tier_codes).await
            }
        }
    };
    let standing = run().await?;
    if standing != Standing::NoConfig {
        return Ok(standing);
    }
    state
        .restores
        .restore(&state.db, &state.redis, event)
        .await?;
    Ok(run().await?)
}

/// Reads what the standing's answer needs (the stock, the pace, the entry token), then
/// describes it. `held` is the verified receipt the poll presented, if any.
async fn present(
    state: &AppState,
    event: &Event,
    queue_id: QueueId,
    standing: Standing,
    held: Option<&Receipt>,
) -> Result<QueueStatus, ApiError> {
    let in_line = matches!(
        standing,
        Standing::PreQueue { .. } | Standing::Waiting { .. }
    );
    let stock = if in_line {
        Some(
            state
                .pace
                .stock(&state.redis, event.id, &event.tier_codes)
                .await?,
        )
    } else {
        None
    };
    let sale = if matches!(standing, Standing::Waiting { .. }) {
        Some(state.pace.of(&state.redis, event.id).await?)
    } else {
        None
    };
    let (mut token, mut wish_held) = (None, false);
    if let Standing::Admitted {
        expires_ms,
        token: kept,
        admitted_as,
    } = &standing
    {
        token = match kept {
            Some(kept) => Some((kept.clone(), *expires_ms)),
            // The first delivery: the time to book starts now.
            None => match queue::deliver_entry_token(&state.redis, event.id, queue_id).await? {
                Some(expires_ms) => Some((
                    sign_entry(state, event, queue_id, expires_ms).await?,
                    expires_ms,
                )),
                None => None,
            },
        };
        if token.is_some() && admitted_as.as_ref().is_some_and(|a| a.held) {
            wish_held = ticketing::inventory::holds(&state.redis, event.id, queue_id).await?;
        }
    }
    let facts = status::Facts {
        stock: stock.as_deref().unwrap_or_default(),
        sale: sale.as_ref(),
        token,
        wish_held,
    };
    status::describe(
        event,
        queue_id,
        standing,
        facts,
        held,
        &state.config.receipt_keys,
        Utc::now(),
    )
}

/// Signs the entry token of an admission delivered now and keeps it (the first kept wins, so
/// two gateways delivering at once answer the same token).
async fn sign_entry(
    state: &AppState,
    event: &Event,
    queue_id: QueueId,
    expires_ms: i64,
) -> Result<String, ApiError> {
    let now = Utc::now();
    let claims = EntryClaims {
        sub: queue_id,
        evt: event.id,
        jti: TokenId::new_v4(),
        iat: now.timestamp(),
        exp: expires_ms / 1000,
        max: event.max_per_booking.max(1) as u32,
    };
    let token = state.signer.sign(&claims)?;
    metrics::counter!("entry_tokens_signed_total").increment(1);
    let ttl_ms = expires_ms - now.timestamp_millis();
    Ok(queue::keep_entry_token(&state.redis, event.id, queue_id, &token, ttl_ms).await?)
}
