//! The waiting room as buyers see it: join, and poll one's place.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use std::collections::BTreeMap;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use ticketing::inventory::Shortfall;
use ticketing::queue::{
    self, place, Leaving, Line, QueueId, Receipt, Standing, TierStock, Wish, WishSet,
};
use ticketing::tier::TierCode;
use ticketing::token::{EntryClaims, TokenId};
use uuid::Uuid;

use crate::client_addr::ClientAddr;
use crate::db::events::EventRow;
use crate::domain::is_visitor_id;
use crate::error::{ApiError, Json, Path};
use crate::presented::{presented_receipt, query_value};
use crate::proof::Proof;
use crate::state::AppState;
use crate::wait::{self, WaitNote};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    PreQueue,
    Waiting,
    Admitted,
    Expired,
    SoldOut,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStatus {
    pub queue_id: QueueId,
    pub event_id: Uuid,
    pub state: QueueState,
    /// 1-based place in line while waiting (1 = next).
    pub position: Option<u64>,
    /// People ahead while waiting.
    pub people_ahead: Option<u64>,
    pub estimated_wait_s: Option<u64>,
    /// When to poll again.
    pub poll_after_ms: u64,
    /// The entry token once admitted.
    pub token: Option<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub on_sale_at: DateTime<Utc>,
    /// A sealed receipt of the place in line (while pre-queued or waiting). Send the latest back
    /// on polls (header `X-Queue-Receipt`, or query parameter `receipt`): should the queue lose
    /// its data, the entry comes back at this place. Absent when the poll presented a receipt
    /// that still holds (keep that one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// `[low, high]` seconds, from the sale's measured pace; the upper bound grows at most 20 %
    /// from one answer to the next unless `wait_note` says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_range_s: Option<[u64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_note: Option<WaitNote>,
    /// The tiers and quantities chosen while waiting (`PUT /api/queue/{queue_id}/wish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wish: Option<BTreeMap<String, u32>>,
    /// Every tier of the event while in line: on sale, held, and people ahead wishing for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierStatus>,
    /// Tiers of the wish that cannot be met at all (less left, held included, than wished): the
    /// place is kept, but admission waits until the wish changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wish_shortfall: Vec<Shortfall>,
    /// Nothing is on sale now, but some tickets are held by buyers and may come back: keep
    /// waiting (it is not sold out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_only: bool,
    /// Admitted with the wish's tickets reserved (hold on admission): booking it is one step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wish_held: bool,
    /// On a stream (`GET /api/queue/{queue_id}/events`): Redis's time (ms) of the worker's
    /// admission or the sell-out that caused this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_ms: Option<i64>,
}

/// One tier as a buyer in line sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierStatus {
    pub code: TierCode,
    /// On sale now.
    pub available: i64,
    /// Reserved by buyers now; they may come back.
    pub held: i64,
    /// People ahead whose wish includes this tier, for the tiers of the buyer's own wish (absent
    /// for the others, and before the opening).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_ahead: Option<u64>,
}

/// `PUT /api/queue/{queue_id}/wish`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WishRequest {
    /// Tier code → quantity (≥ 1; in all at most the event's `max_per_booking`); `{}` clears it.
    pub tiers: BTreeMap<String, u32>,
}

/// The longest `poll_after_ms` before jitter: with its 10 % spread, a live page polls at least
/// every `queue::LONGEST_POLL_MS`, which is how long admission waits after a Redis data loss.
const MAX_POLL_AFTER_MS: u64 = queue::LONGEST_POLL_MS * 10 / 11;

/// The header a poll carries its place receipt in.
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
            ApiError::TooLarge
        } else {
            ApiError::InvalidBody(r.body_text())
        }
    })?;
    let request: Option<JoinRequest> = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidBody(e.to_string()))?
    };
    let (visitor_id, proof) = request.map_or((None, None), |r| (r.visitor_id, r.proof));
    let chosen = match visitor_id {
        Some(id) if is_visitor_id(&id) => Some(id),
        Some(_) => {
            return Err(ApiError::InvalidBody(
                "visitor_id must be 1-64 of A-Z a-z 0-9 _ - . :".into(),
            ))
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
        .ok_or(ApiError::EventNotFound)?;
    state.proof_of_work.note_join(event.id);
    let queue_id = QueueId::for_visitor(
        state.config.queue_id_secret.expose().as_bytes(),
        event.short_id,
        event.id,
        &visitor_id,
    );
    let standing = standing(&state, &event, queue_id, Step::Join).await?;
    metrics::counter!("queue_joins_total").increment(1);
    let status = present(&state, &event, queue_id, standing, None).await?;
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
    let (queue_id, event) = entry_of(&state, &queue_id).await?;
    let receipt = presented_receipt(&headers, query.as_deref())
        .and_then(|text| state.config.receipt_keys.verify(text));
    let status = status_of(&state, &event, queue_id, receipt.as_ref()).await?;
    metrics::counter!("queue_polls_total", "state" => state_label(status.state)).increment(1);
    Ok(Json(status))
}

/// What a poll answers for an entry of `event`, given the verified receipt it presented (the
/// poll and each check of a stream). An entry that is not there is 404.
pub(crate) async fn status_of(
    state: &AppState,
    event: &EventRow,
    queue_id: QueueId,
    receipt: Option<&Receipt>,
) -> Result<QueueStatus, ApiError> {
    let standing = standing(state, event, queue_id, Step::Poll(receipt)).await?;
    if standing == Standing::NotFound {
        return Err(ApiError::QueueEntryNotFound);
    }
    present(state, event, queue_id, standing, receipt).await
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
            _ => return Err(ApiError::BadQuery("grace_s must be 1-60".into())),
        },
    };
    let (queue_id, event) = entry_of(&state, &queue_id).await?;
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
    let (queue_id, event) = entry_of(&state, &queue_id).await?;
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
        return Err(ApiError::InvalidBody(format!("unknown tier {unknown:?}")));
    }
    if wish.0.iter().any(|(_, quantity)| *quantity == 0) {
        return Err(ApiError::InvalidBody(
            "each quantity must be at least 1".into(),
        ));
    }
    let most = event.max_per_booking.max(1) as u32;
    if wish.total() > most {
        return Err(ApiError::InvalidBody(format!(
            "at most {most} tickets per booking"
        )));
    }
    match queue::set_wish(&state.redis, event.id, queue_id, &wish, &event.tier_codes).await? {
        WishSet::Set => {}
        WishSet::NotFound => return Err(ApiError::QueueEntryNotFound),
        WishSet::NotWaiting => return Err(ApiError::NotWaiting),
        WishSet::Short(shortfall) => return Err(ApiError::WishShort(shortfall)),
    }
    metrics::counter!("queue_wishes_set_total").increment(1);
    let receipt = presented_receipt(&headers, query.as_deref())
        .and_then(|text| state.config.receipt_keys.verify(text));
    let standing = standing(&state, &event, queue_id, Step::Poll(receipt.as_ref())).await?;
    Ok(Json(
        present(&state, &event, queue_id, standing, receipt.as_ref()).await?,
    ))
}

/// The queue id a path names and the event whose line it stands in (its first four bytes).
pub(crate) async fn entry_of(
    state: &AppState,
    queue_id: &str,
) -> Result<(QueueId, Arc<EventRow>), ApiError> {
    let queue_id: QueueId = queue_id.parse().map_err(|_| ApiError::QueueEntryNotFound)?;
    let event = state
        .events
        .by_short_id(queue_id.event_short_id())
        .await?
        .ok_or(ApiError::QueueEntryNotFound)?;
    Ok((queue_id, event))
}

pub(crate) fn state_label(state: QueueState) -> &'static str {
    match state {
        QueueState::PreQueue => "pre_queue",
        QueueState::Waiting => "waiting",
        QueueState::Admitted => "admitted",
        QueueState::Expired => "expired",
        QueueState::SoldOut => "sold_out",
    }
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
    event: &EventRow,
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

/// Turns a standing into the wire status, signing the entry token the first time an admitted
/// entry is seen. `held` is the verified receipt the poll presented, if any.
async fn present(
    state: &AppState,
    event: &EventRow,
    queue_id: QueueId,
    standing: Standing,
    held: Option<&Receipt>,
) -> Result<QueueStatus, ApiError> {
    let room = event.waiting_room();
    let now = Utc::now();
    let mut status = QueueStatus {
        queue_id,
        event_id: event.id,
        state: QueueState::Expired,
        position: None,
        people_ahead: None,
        estimated_wait_s: None,
        poll_after_ms: 5_000,
        token: None,
        token_expires_at: None,
        on_sale_at: event.on_sale_at,
        receipt: None,
        estimated_wait_range_s: None,
        wait_note: None,
        wish: None,
        tiers: Vec::new(),
        wish_shortfall: Vec::new(),
        held_only: false,
        wish_held: false,
        notice_ms: None,
    };
    // A poll whose receipt already says all a new one would (place, generation, the estimate
    // shown) keeps it (the page keeps what it holds when the answer has none): sealing a new
    // one, a random nonce and an encryption, would buy nothing.
    let held = held.filter(|r| r.queue_id == queue_id && r.event_id == event.id);
    let receipt = |place, generation, wait| {
        let current =
            |r: &&Receipt| r.place == place && r.generation == generation && r.wait == wait;
        if held.filter(current).is_some() {
            return None;
        }
        Some(state.config.receipt_keys.sign(&Receipt {
            event_id: event.id,
            queue_id,
            place,
            generation,
            issued_ms: now.timestamp_millis(),
            wait,
        }))
    };
    match standing {
        Standing::PreQueue {
            place,
            generation,
            line,
        } => {
            status.state = QueueState::PreQueue;
            status.receipt = receipt(place, generation, None);
            let until_open = (event.on_sale_at - now).num_milliseconds().max(0) as u64;
            status.poll_after_ms = pre_queue_poll_after(until_open);
            let stock = state
                .pace
                .stock(&state.redis, event.id, &event.tier_codes)
                .await?;
            describe_line(&mut status, &line, &stock);
        }
        Standing::Waiting {
            position,
            place,
            generation,
            line,
        } => {
            status.state = QueueState::Waiting;
            status.position = Some(position);
            status.people_ahead = Some(position.saturating_sub(1));
            let sale = state.pace.of(&state.redis, event.id).await?;
            let estimate = wait::estimate(position, &room, &sale, held.and_then(|r| r.wait));
            status.estimated_wait_range_s = Some([estimate.low_s, estimate.high_s]);
            status.estimated_wait_s = Some((estimate.low_s + estimate.high_s).div_ceil(2));
            status.wait_note = estimate.note;
            status.receipt = receipt(place, generation, Some(estimate.shown));
            // Those far back poll rarely; those near the front often enough to act at once.
            status.poll_after_ms =
                jitter((estimate.low_s * 1000 / 10).clamp(1_000, MAX_POLL_AFTER_MS));
            let stock = state
                .pace
                .stock(&state.redis, event.id, &event.tier_codes)
                .await?;
            describe_line(&mut status, &line, &stock);
        }
        Standing::Admitted {
            expires_ms,
            token,
            admitted_as,
        } => {
            let (token, expires_ms) = match token {
                Some(token) => (token, expires_ms),
                // The first delivery: the time to book starts now.
                None => match queue::deliver_entry_token(&state.redis, event.id, queue_id).await? {
                    Some(expires_ms) => (
                        sign_entry(state, event, queue_id, expires_ms).await?,
                        expires_ms,
                    ),
                    None => return Ok(status),
                },
            };
            status.state = QueueState::Admitted;
            status.token = Some(token);
            status.token_expires_at = Utc.timestamp_millis_opt(expires_ms).single();
            status.poll_after_ms = 10_000;
            if let Some(admitted_as) = admitted_as {
                status.wish = admitted_as.wish.as_ref().map(wish_map);
                // A rebuild of the inventory (after a Redis loss or drift) drops every hold:
                // say it is held only while it is.
                status.wish_held = admitted_as.held
                    && ticketing::inventory::holds(&state.redis, event.id, queue_id).await?;
            }
        }
        Standing::SoldOut => status.state = QueueState::SoldOut,
        Standing::Full => return Err(ApiError::Unavailable),
        Standing::Expired | Standing::NotFound | Standing::NoConfig => {}
    }
    Ok(status)
}

/// What the line tells a buyer of the stock and of their wish.
fn describe_line(status: &mut QueueStatus, line: &Line, stock: &[TierStock]) {
    let tiers = line.tiers(stock);
    status.wish = line.wish.as_ref().map(wish_map);
    status.wish_shortfall = queue::wish::shortfall(line.wish.as_ref(), &tiers);
    status.held_only = queue::wish::held_only(&tiers);
    status.tiers = tiers
        .into_iter()
        .map(|t| TierStatus {
            code: t.code,
            available: t.available,
            held: t.held,
            wanted_ahead: t.wanted_ahead,
        })
        .collect();
}

fn wish_map(wish: &Wish) -> BTreeMap<String, u32> {
    wish.0
        .iter()
        .map(|(code, q)| (code.to_string(), *q))
        .collect()
}

async fn sign_entry(
    state: &AppState,
    event: &EventRow,
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
    let signer = Arc::clone(&state.signer);
    let token = signer.sign(&claims)?;
    metrics::counter!("entry_tokens_signed_total").increment(1);
    let ttl_ms = expires_ms - now.timestamp_millis();
    Ok(queue::keep_entry_token(&state.redis, event.id, queue_id, &token, ttl_ms).await?)
}

/// A pre-queue page polls at the longest interval until the opening nears; then its next poll is
/// set for just after the opening, spread at random over the longest interval, so a million
/// pre-queued pages never poll in the same second. The spread is drawn afresh for every answer
/// and owes nothing to the entry's lot: before the opening no answer may tell a visitor where
/// its lot fell (a bot would keep its best identities and drop the rest). Pages stay alive: no
/// two of their polls are more than three intervals apart, well inside the two liveness windows.
fn pre_queue_poll_after(until_open_ms: u64) -> u64 {
    if until_open_ms > 2 * MAX_POLL_AFTER_MS {
        return jitter(MAX_POLL_AFTER_MS);
    }
    until_open_ms + 500 + rand::thread_rng().gen_range(0..=MAX_POLL_AFTER_MS)
}

/// Spreads polls of people who joined together so they do not arrive in waves.
fn jitter(ms: u64) -> u64 {
    let spread = ms / 10;
    ms - spread + rand::thread_rng().gen_range(0..=spread * 2)
}
