//! The events the worker looks after: every event that has not started more than a day ago.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use ticketing::queue::WaitingRoom;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WatchedEvent {
    pub id: Uuid,
    pub on_sale_at: DateTime<Utc>,
    pub wr_enabled: bool,
    pub admission_per_minute: i32,
    pub max_active: i32,
    pub paused: bool,
    pub token_ttl_s: i32,
    pub drain_per_minute: i32,
}

impl WatchedEvent {
    pub fn waiting_room(&self) -> WaitingRoom {
        WaitingRoom::from_columns(
            self.wr_enabled,
            self.admission_per_minute,
            self.max_active,
            self.paused,
            self.token_ttl_s,
            self.drain_per_minute,
        )
    }
}

/// One event's waiting room as Postgres has it now.
pub async fn room_of(db: &PgPool, event_id: Uuid) -> sqlx::Result<Option<WaitingRoom>> {
    let row: Option<WatchedEvent> = sqlx::query_as(
        "SELECT id, on_sale_at, wr_enabled, admission_per_minute, max_active, paused, token_ttl_s,
                drain_per_minute
           FROM events WHERE id = $1",
    )
    .bind(event_id)
    .fetch_optional(db)
    .await?;
    Ok(row.map(|e| e.waiting_room()))
}

pub async fn watched(db: &PgPool) -> sqlx::Result<Vec<WatchedEvent>> {
    sqlx::query_as(
        "SELECT id, on_sale_at, wr_enabled, admission_per_minute, max_active, paused, token_ttl_s,
                drain_per_minute
           FROM events WHERE starts_at > now() - interval '1 day'
          ORDER BY on_sale_at, id",
    )
    .fetch_all(db)
    .await
}
