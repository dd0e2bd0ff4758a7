//! A group-commit writer's own Postgres connection.
//!
//! Each writer keeps one connection for as long as it works, rather than borrowing one from the
//! pool per batch. A borrowed connection costs a second round trip on its way back: the pool's
//! release check (`ticketing::db::connect`, a guard against sqlx leaving a cancelled `BEGIN`
//! open) is a query of its own, as dear to the service as a batch's write (BENCHMARKS.md, issue
//! 25). A writer's connection needs no such check: it only ever runs `book_orders`, one
//! autocommit statement, from a task no request can cancel.
//!
//! The connection is opened with the pool's options (the same `statement_timeout`), within the
//! pool's acquire timeout, so a write still lasts at most that timeout plus the statement
//! timeout (`checkout`'s rule). One that has been idle is pinged first, as the pool pings what it
//! lends: after a Postgres restart the first batch finds a dead socket before its orders are
//! sent, not after (which would leave their outcome unknown). After any failed write the
//! connection is dropped and the next batch opens another.

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
        if let Some((connection, last_used)) = &mut self.open {
            if last_used.elapsed() >= PING_WHEN_IDLE
                && tokio::time::timeout(self.open_within, connection.ping())
                    .await
                    .map_or(true, |pinged| pinged.is_err())
            {
                tracing::info!("a writer's idle connection failed its ping; opening another");
                self.open = None;
            }
        }
        if self.open.is_none() {
            let opened = tokio::time::timeout(self.open_within, self.options.connect())
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
