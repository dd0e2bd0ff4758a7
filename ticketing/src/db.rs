//! Postgres pools and the embedded migrations.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

/// The migrations in the repository's `migrations/`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Limits every pool shares: how long a caller waits for a connection, how long a statement may
/// run. The booking path's hold arithmetic is built on both (see `booking::config`).
#[derive(Debug, Clone, Copy)]
pub struct PoolLimits {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl PoolLimits {
    pub fn of(store: &crate::config::StoreConfig) -> Self {
        Self {
            max_connections: store.database_max_connections,
            acquire_timeout: store.database_acquire_timeout,
            statement_timeout: store.database_statement_timeout,
        }
    }
}

/// A bounded pool whose acquire fails fast, so an overloaded database answers 503 instead of
/// piling up waiting requests. `statement_timeout` bounds every statement.
///
/// Every connection coming back to the pool is checked to be outside any transaction, and closed
/// if it is not. sqlx 0.8.6 returns a connection whose `BEGIN` was cancelled in flight with the
/// server still inside that transaction (launchbadge/sqlx#4385, #4393; fixed upstream by #4394,
/// not yet released), and its check on release never reads the transaction status. The next
/// borrower's statements would then run inside a transaction nobody commits: bookings answered
/// 201 that are never stored. The check is one simple-protocol query after the connection is
/// released, off the request's path.
pub async fn connect(url: &str, limits: PoolLimits) -> anyhow::Result<PgPool> {
    let options: PgConnectOptions = url.parse()?;
    let options = options.options([(
        "statement_timeout",
        limits.statement_timeout.as_millis().to_string(),
    )]);
    let pool = PgPoolOptions::new()
        .max_connections(limits.max_connections)
        .min_connections(1)
        .acquire_timeout(limits.acquire_timeout)
        .after_release(|conn, _| Box::pin(async move { outside_transaction(conn).await }))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// True when the session is outside any transaction. Inside one, `now()` (the transaction's
/// start) is earlier than this statement's start; in an aborted one the query fails, which
/// also makes the pool close the connection.
pub async fn outside_transaction(conn: &mut sqlx::PgConnection) -> sqlx::Result<bool> {
    use futures::TryStreamExt;
    let row = sqlx::raw_sql("SELECT (now() = statement_timestamp())::text")
        .fetch(&mut *conn)
        .try_next()
        .await?;
    let clean = match row {
        Some(row) => sqlx::Row::try_get::<String, _>(&row, 0)? == "true",
        None => false,
    };
    if !clean {
        metrics::counter!("db_connections_discarded_in_transaction_total").increment(1);
        tracing::error!("a pooled connection came back inside a transaction; closing it");
    }
    Ok(clean)
}

/// Same as [`connect`], but waits for the server for up to `patience`, so services started together
/// with their database do not crash-loop.
pub async fn connect_patiently(
    url: &str,
    limits: PoolLimits,
    patience: Duration,
) -> anyhow::Result<PgPool> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match connect(url, limits).await {
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
    let db = connect_patiently(&store.database_url, PoolLimits::of(store), patience).await?;
    migrate(&db).await?;
    let redis = crate::redis_client::RedisClient::connect_patiently(store, patience).await?;
    Ok((db, redis))
}

/// Runs pending migrations; safe to call from several processes at once (sqlx takes a lock).
pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Errors that mean "try again later" rather than a bug: both services answer them 503 with
/// `Retry-After`.
pub fn is_unavailable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        // 57014: statement_timeout; 57P01..03: server shutting down or restarting; 53300: too
        // many connections; 55P03: lock not available; 40001/40P01: serialization, deadlock.
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("57014" | "57P01" | "57P02" | "57P03" | "53300" | "55P03" | "40001" | "40P01")
        ),
        _ => false,
    }
}
