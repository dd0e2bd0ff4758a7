//! The event catalog: list, one event with live availability, and the frontend's config.

use std::collections::HashMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use ticketing::failure::{Failure, Json, Path, Query};
use ticketing::inventory;
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use uuid::Uuid;

use crate::directory::EventDirectory;
use crate::error::ApiError;
use crate::state::{AppState, ReadDb};
use ticketing::event;

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Venue {
    pub id: Uuid,
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RoomFlag {
    pub enabled: bool,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tier {
    pub code: TierCode,
    pub name: String,
    pub price_cents: i64,
    pub capacity: i32,
    /// Live: tickets still on sale.
    pub available: i64,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: Uuid,
    pub name: String,
    pub venue: Venue,
    pub starts_at: DateTime<Utc>,
    pub on_sale_at: DateTime<Utc>,
    pub waiting_room: RoomFlag,
    /// Most tickets one booking may hold.
    pub max_per_booking: i32,
    pub sold_out: bool,
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub page: i64,
    pub limit: i64,
    pub has_next: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct PageQuery {
    /// 1-based page number (default 1).
    #[param(minimum = 1, maximum = 1000000)]
    pub page: Option<i64>,
    /// Events per page, 1-100 (default 10).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FrontendConfig {
    pub booking_url: String,
}

#[utoipa::path(get, path = "/api/events", params(PageQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn list(
    State(ReadDb(db)): State<ReadDb>,
    State(redis): State<RedisClient>,
    Query(query): Query<PageQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let page = query.page.unwrap_or(1);
    let limit = query.limit.unwrap_or(10);
    if !(1..=1_000_000).contains(&page) {
        return Err(Failure::BadQuery("page must be between 1 and 1000000".into()).into());
    }
    if !(1..=100).contains(&limit) {
        return Err(Failure::BadQuery("limit must be between 1 and 100".into()).into());
    }
    let mut rows = event::list(&db, limit + 1, (page - 1) * limit).await?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let events = assemble(&db, &redis, rows).await?;
    Ok(Json(EventPage {
        events,
        page,
        limit,
        has_next,
    }))
}

#[utoipa::path(get, path = "/api/events/{event_id}",
    params(("event_id" = Uuid, Path)),
    responses((status = 200, body = Event), (status = 404, body = ticketing::envelope::ErrorEnvelope)))]
pub async fn show(
    State(ReadDb(db)): State<ReadDb>,
    State(redis): State<RedisClient>,
    State(directory): State<EventDirectory>,
    Path(event_id): Path<Uuid>,
) -> Result<Json<Event>, ApiError> {
    // A made-up id is answered from the set of known events, not by a query each.
    if !directory.exists(event_id).await? {
        return Err(Failure::EventNotFound.into());
    }
    let row = event::find(&db, event_id)
        .await?
        .ok_or(Failure::EventNotFound)?;
    let mut events = assemble(&db, &redis, vec![row]).await?;
    Ok(Json(events.remove(0)))
}

#[utoipa::path(get, path = "/api/config", responses((status = 200, body = FrontendConfig)))]
pub async fn frontend_config(State(state): State<AppState>) -> Json<FrontendConfig> {
    Json(FrontendConfig {
        booking_url: state.config.booking_url.clone(),
    })
}

/// Builds the wire events with their tiers and live availability: from Redis, or counted in
/// Postgres when Redis lacks the event or cannot be reached (the catalog outlives Redis).
pub async fn assemble(
    db: &sqlx::PgPool,
    redis: &RedisClient,
    rows: Vec<event::Event>,
) -> Result<Vec<Event>, ApiError> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut tiers_by_event: HashMap<Uuid, Vec<event::Tier>> = HashMap::new();
    for tier in event::tiers(db, &ids).await? {
        tiers_by_event.entry(tier.event_id).or_default().push(tier);
    }
    let live =
        futures::future::join_all(ids.iter().map(|id| inventory::availability(redis, *id))).await;
    let mut out = Vec::with_capacity(rows.len());
    for (row, live) in rows.into_iter().zip(live) {
        let available: HashMap<TierCode, i64> = match live {
            Ok(Some(map)) => map,
            _ => event::unsold(db, row.id).await?.into_iter().collect(),
        };
        let tiers: Vec<Tier> = tiers_by_event
            .remove(&row.id)
            .unwrap_or_default()
            .into_iter()
            .map(|t| Tier {
                available: available.get(&t.code).copied().unwrap_or(0).max(0),
                code: t.code,
                name: t.name,
                price_cents: t.price_cents,
                capacity: t.capacity,
            })
            .collect();
        out.push(Event {
            id: row.id,
            name: row.name,
            venue: Venue {
                id: row.venue_id,
                name: row.venue_name,
            },
            starts_at: row.starts_at,
            on_sale_at: row.on_sale_at,
            waiting_room: RoomFlag {
                enabled: row.room.wr_enabled,
            },
            max_per_booking: row.max_per_booking,
            sold_out: tiers.iter().all(|t| t.available == 0),
            tiers,
        });
    }
    Ok(out)
}
