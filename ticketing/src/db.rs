//! Postgres pools and the embedded migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The migrations in the repository's `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How long a request waits for a connection before it is answered 503: short, so an exhausted
/// pool sheds load at once instead of piling up requests (and their Redis holds) behind it.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

/// A bounded pool whose acquire fails fast, so an overloaded database answers 503 instead of
/// piling up waiting requests. `statement_timeout` bounds every statement, which the booking
/// path relies on to finish its write well inside a reservation's hold.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.options([("statement_timeout", "5000")]);
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Same as [`connect`], but waits for the server for up to `patience`, so services started together
/// with their database do not crash-loop.
pub async fn connect_patiently(
    url: &str,
    max_connections: u32,
    patience: Duration,
) -> anyhow::Result<PgPool> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match connect(url, max_connections).await {
            Ok(pool) => return Ok(pool),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "postgres not reachable yet");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// What every service does at start: the primary Postgres (migrated) and Redis, waiting up to
/// 30 s for each so services started together with their stores do not crash-loop.
pub async fn connect_stores(
    store: &crate::config::StoreConfig,
) -> anyhow::Result<(PgPool, crate::redis_client::RedisClient)> {
    let patience = Duration::from_secs(30);
    let db = connect_patiently(
        &store.database_url,
        store.database_max_connections,
        patience,
    )
    .await?;
    migrate(&db).await?;
    let redis = crate::redis_client::RedisClient::connect_patiently(store, patience).await?;
    Ok((db, redis))
}

/// Runs pending migrations; safe to call from several processes at once (sqlx takes a lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// A stable 64-bit key for an event's advisory lock: bookings hold it shared, a rebuild of the
/// event's Redis state holds it exclusively.
pub fn event_lock_key(event_id: uuid::Uuid) -> i64 {
    let bytes = event_id.as_bytes();
    i64::from_be_bytes(bytes[..8].try_into().expect("a uuid has 16 bytes"))
}
