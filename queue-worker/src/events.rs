//! The events the worker looks after: every event that has not started more than a day ago.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use ticketing::queue::{RoomColumns, WaitingRoom, ROOM_COLUMNS};
use ticketing::tier::TierCode;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WatchedEvent {
    pub id: Uuid,
    pub on_sale_at: DateTime<Utc>,
    #[sqlx(flatten)]
    pub room: RoomColumns,
    /// The event's tier codes in their order (tiers never change once the event exists).
    pub tier_codes: Vec<TierCode>,
}

impl WatchedEvent {
    pub fn waiting_room(&self) -> WaitingRoom {
        WaitingRoom::from_columns(self.room)
    }
}

fn watched_columns() -> String {
    format!(
        "id, on_sale_at, {ROOM_COLUMNS},
         ARRAY(SELECT t.code FROM ticket_tiers t WHERE t.event_id = events.id ORDER BY t.position)
             AS tier_codes"
    )
}

/// One event's waiting room as Postgres has it now.
pub async fn room_of(db: &PgPool, event_id: Uuid) -> sqlx::Result<Option<WaitingRoom>> {
    let row: Option<WatchedEvent> = sqlx::query_as(&format!(
        "SELECT {} FROM events WHERE id = $1",
        watched_columns()
    ))
    .bind(event_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|e| e.waiting_room()))
}

pub async fn watched(db: &PgPool) -> sqlx::Result<Vec<WatchedEvent>> {
    sqlx::query_as(&format!(
        "SELECT {} FROM events WHERE starts_at > now() - interval '1 day' ORDER BY on_sale_at, id",
        watched_columns()
    ))
    .fetch_all(db)
    .await
}
