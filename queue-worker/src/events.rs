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

pub async fn watched(db: &PgPool) -> sqlx::Result<Vec<WatchedEvent>> {
    sqlx::query_as(
        "SELECT id, on_sale_at, wr_enabled, admission_per_minute, max_active, paused, token_ttl_s,
                drain_per_minute
           FROM events WHERE starts_at > now() - interval '1 day'",
    )
    .fetch_all(db)
    .await
}
