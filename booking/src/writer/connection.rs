//! A group-commit writer's own Postgres connection.
//!
//! Each writer keeps one connection for as long as it works, rather than borrowing one from the
//! pool per batch. A borrowed connection costs a second round trip on its way back: the pool's
//! release check (`ticketing::db::connect`, a guard against sqlx leaving a cancelled `BEGIN`
//! open) is a query of its own, as dear to the service as a batch's write (BENCHMARKS.md, issue
//! 25). A writer's connection needs no such check: it only ever runs `book_orders`, one
//! autocommit statement, from a task no request can cancel.
//!
//! The connection is opened with the pool's options (the same `statement_timeout`), and pinging
//! and opening it together take at most the pool's acquire timeout, so a write still lasts at
//! most that timeout plus the statement timeout (`checkout`'s rule). One that has been idle is
//! pinged first, as the pool pings what it lends: after a Postgres restart the first batch finds
//! a dead socket before its orders are sent, not after (which would leave their outcome
//! unknown). After any failed write the connection is dropped and the next batch opens another.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::time::Instant;

/// Idle longer than this, the connection is pinged before a batch is sent on it. Under load a
/// writer writes every few milliseconds and never pings.
const PING_WHEN_IDLE: Duration = Duration::from_secs(1);

pub struct WriterConnection {
    options: PgConnectOptions,
    open_within: Duration,
    open: Option<(PgConnection, Instant)>,
}

impl WriterConnection {
    /// Opens nothing yet: the first batch does.
    pub fn for_pool(pool: &PgPool) -> Self {
        Self {
            options: (*pool.connect_options()).clone(),
            open_within: pool.options().get_acquire_timeout(),
            open: None,
        }
    }

    /// The connection to send the next batch on, opened or checked first when needed. An error
    /// here means nothing was sent.
    pub async fn ready(&mut self) -> sqlx::Result<&mut PgConnection> {
        // One deadline for the ping and the connect after it: together they are this write's
        // wait for a connection, which `checkout` counts as at most the pool's acquire timeout.
        let deadline = Instant::now() + self.open_within;
        if let Some((connection, last_used)) = &mut self.open {
            if last_used.elapsed() >= PING_WHEN_IDLE
                && tokio::time::timeout_at(deadline, connection.ping())
                    .await
                    .map_or(true, |pinged| pinged.is_err())
            {
                tracing::info!("a writer's idle connection failed its ping; opening another");
                self.open = None;
            }
        }
        if self.open.is_none() {
            let opened = tokio::time::timeout_at(deadline, self.options.connect())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??;
            self.open = Some((opened, Instant::now()));
        }
        let (connection, last_used) = self.open.as_mut().expect("opened just above");
        *last_used = Instant::now();
        Ok(connection)
    }

    /// After a write that failed, the connection may be gone or its state unknown: the next
    /// batch opens a new one. Failures are rare, so a connection per failure costs nothing.
    pub fn discard(&mut self) {
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::WriterConnection;

    /// The writer's own connection keeps the pool's `statement_timeout`, which `checkout`'s
    /// bound on a write counts on. (The system tests hand the service the test's own pool, which
    /// has none, so the setting is checked here, on a pool made as the service makes it.)
    #[tokio::test]
    async fn a_writer_connection_keeps_the_pools_statement_timeout() {
        let url = std::env::var("DATABASE_URL").expect("DATABASE_URL: a Postgres to connect to");
        let limits = ticketing::db::PoolLimits {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_millis(1234),
        };
        let pool = ticketing::db::connect(&url, limits).await.unwrap();
        let mut writer = WriterConnection::for_pool(&pool);
        let timeout: String = sqlx::query_scalar("SHOW statement_timeout")
            .fetch_one(writer.ready().await.unwrap())
            .await
            .unwrap();
        assert_eq!(timeout, "1234ms");
    }
}
