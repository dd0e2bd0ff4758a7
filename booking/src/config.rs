//! The booking service's settings, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ticketing::config::{Secret, StoreConfig, Vars};

#[derive(Debug, Clone)]
pub struct BookingConfig {
    pub store: StoreConfig,
    /// `BOOKING_ADDR`, default 127.0.0.1:5000.
    pub addr: SocketAddr,
    /// `ENTRY_PUBLIC_KEYS_DIR`: every `<kid>.pub.pem` in it verifies entry tokens.
    pub public_keys_dir: PathBuf,
    /// `ACCESS_CODE_SECRET`: keys the access codes that let buyers read and cancel bookings.
    pub access_code_secret: Secret,
    /// `CORS_ORIGINS`: browser origins allowed to call this service (the gateway's by default).
    pub cors_origins: Vec<String>,
    /// `HOLD_TTL_MS`: how long a reservation may wait for its Postgres write before the
    /// queue-worker releases it. A booking never starts its write after half of it.
    pub hold_ttl: Duration,
    /// `DATABASE_COMMIT_WAIT_MS`: the longest a booking's commit may wait once its statement
    /// ended (WAL flush, a synchronous standby's acknowledgement), which `statement_timeout`
    /// does not count. Part of the hold's safety margin; a commit that stalls longer is still
    /// safe (the sweeper waits for in-flight writes before it releases), only slower to settle.
    pub commit_wait: Duration,
    /// `REQUEST_TIMEOUT_MS`.
    pub request_timeout: Duration,
    /// `SOLD_OUT_MEMORY_MS`: how long a sold-out answer from Redis is reused for the same event
    /// (0 = never). Tickets that come back through another instance wait at most this long.
    pub sold_out_memory: Duration,
    /// `BOOKING_WRITERS`: tasks writing batches of bookings to Postgres at once (group commit),
    /// each on a connection of its own, beside the pool's.
    pub writers: usize,
    /// `BOOKING_WRITE_BATCH`: most orders one writer commits at once (1 to 32; 1 turns group
    /// commit off, one transaction per booking, as the benchmark's baseline does).
    pub write_batch: usize,
    /// `BOOKING_WRITE_QUEUE`: reserved orders waiting for a writer; beyond it, 503 at once.
    pub write_queue: usize,
    /// `BOOKING_WRITE_PATIENCE_MS`: how long a writer holding orders waits for a write in
    /// progress before writing beside it (`writer`); 0 = never waits, every writer writes what
    /// it took at once.
    pub write_patience: Duration,
    /// `BOOKING_WRITE_QUEUE_WAIT_MS`: longest an order waits for a writer before it is answered
    /// 503 and its hold released.
    pub write_queue_wait: Duration,
    /// `BOOKING_MAX_IN_FLIGHT`: booking requests served at once; beyond it, 503 at once.
    pub max_in_flight: usize,
    /// `BOOKING_PER_TOKEN_PER_SECOND` (burst twice that): requests one entry token may make.
    /// Keyed by the token, not the address: crowds share addresses, a token is one buyer.
    pub per_token_per_second: u32,
    /// `ENTRY_SIGNATURE_BATCHES` (true): entry-token signatures waiting together are checked in
    /// one multiscalar multiplication (`ticketing::signatures`); false checks each alone.
    pub signature_batches: bool,
}

impl BookingConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&Vars::process())
    }

    pub fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        let mut cors_origins = vars.list("CORS_ORIGINS");
        if cors_origins.is_empty() {
            cors_origins = vec![
                "http://127.0.0.1:3000".into(),
                "http://localhost:3000".into(),
            ];
        }
        Ok(Self {
            store: StoreConfig::from_vars(vars)?,
            addr: vars.or("BOOKING_ADDR", SocketAddr::from(([127, 0, 0, 1], 5000)))?,
            public_keys_dir: vars.or("ENTRY_PUBLIC_KEYS_DIR", PathBuf::from(".run/keys"))?,
            access_code_secret: vars.secret("ACCESS_CODE_SECRET")?,
            cors_origins,
            hold_ttl: Duration::from_millis(vars.or("HOLD_TTL_MS", 30_000)?),
            commit_wait: Duration::from_millis(vars.or("DATABASE_COMMIT_WAIT_MS", 2_000)?),
            request_timeout: Duration::from_millis(vars.or("REQUEST_TIMEOUT_MS", 10_000)?),
            sold_out_memory: Duration::from_millis(vars.or("SOLD_OUT_MEMORY_MS", 250)?),
            writers: vars.or("BOOKING_WRITERS", 4)?,
            write_batch: vars.or("BOOKING_WRITE_BATCH", crate::writer::MAX_BATCH)?,
            write_queue: vars.or("BOOKING_WRITE_QUEUE", 1024)?,
            write_patience: Duration::from_millis(vars.or("BOOKING_WRITE_PATIENCE_MS", 10)?),
            write_queue_wait: Duration::from_millis(vars.or("BOOKING_WRITE_QUEUE_WAIT_MS", 2_000)?),
            max_in_flight: vars.or("BOOKING_MAX_IN_FLIGHT", 1024)?,
            per_token_per_second: vars.or("BOOKING_PER_TOKEN_PER_SECOND", 5)?,
            signature_batches: vars.or("ENTRY_SIGNATURE_BATCHES", true)?,
        })
    }

    /// The longest a booking's write can last once its numbers are held: the wait for a writer,
    /// for a connection, for the statement, and for its commit.
    pub fn longest_write(&self) -> Duration {
        self.write_queue_wait
            + self.store.database_acquire_timeout
            + self.store.database_statement_timeout
            + self.commit_wait
    }

    /// Refuses settings under which a hold could expire (and its numbers be sold again) while
    /// its write may still commit: the hold must outlast twice the longest write, plus a margin
    /// for the sweeper's pass.
    pub fn check(&self) -> anyhow::Result<()> {
        let needed = self.longest_write() * 2 + HOLD_MARGIN;
        if self.hold_ttl < needed {
            anyhow::bail!(
                "HOLD_TTL_MS={} is too short: a write may take up to {} ms (queue wait + acquire \
                 timeout + statement timeout + commit wait), and a hold must outlast twice that plus {} ms; \
                 raise HOLD_TTL_MS to at least {} or lower the others",
                self.hold_ttl.as_millis(),
                self.longest_write().as_millis(),
                HOLD_MARGIN.as_millis(),
                needed.as_millis()
            );
        }
        if !(1..=crate::writer::MAX_BATCH).contains(&self.write_batch) {
            anyhow::bail!(
                "BOOKING_WRITE_BATCH must be between 1 and {}",
                crate::writer::MAX_BATCH
            );
        }
        if self.writers == 0 || self.write_queue == 0 || self.max_in_flight == 0 {
            anyhow::bail!(
                "BOOKING_WRITERS, BOOKING_WRITE_QUEUE and BOOKING_MAX_IN_FLIGHT must be at least 1"
            );
        }
        if self.per_token_per_second == 0 {
            anyhow::bail!("BOOKING_PER_TOKEN_PER_SECOND must be at least 1");
        }
        Ok(())
    }
}

/// Time left for the sweeper's pass on top of twice the longest write.
const HOLD_MARGIN: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::BookingConfig;

    fn config(hold_ms: u64, commit_wait_ms: u64) -> BookingConfig {
        BookingConfig {
            store: ticketing::config::StoreConfig {
                database_url: String::new(),
                database_read_url: None,
                database_max_connections: 4,
                database_acquire_timeout: Duration::from_millis(500),
                database_statement_timeout: Duration::from_millis(5_000),
                redis_url: String::new(),
                redis_cluster_nodes: Vec::new(),
            },
            addr: "127.0.0.1:0".parse().expect("address"),
            public_keys_dir: Default::default(),
            access_code_secret: ticketing::config::Secret::new("x"),
            cors_origins: Vec::new(),
            hold_ttl: Duration::from_millis(hold_ms),
            commit_wait: Duration::from_millis(commit_wait_ms),
            request_timeout: Duration::from_secs(10),
            sold_out_memory: Duration::ZERO,
            writers: 1,
            write_batch: 1,
            write_queue: 1,
            write_patience: Duration::ZERO,
            write_queue_wait: Duration::from_millis(2_000),
            max_in_flight: 1,
            per_token_per_second: 1,
            signature_batches: true,
        }
    }

    /// The hold must outlast twice the longest write, commit included: a commit waiting for a
    /// standby is not counted by the statement timeout, so it is counted here.
    #[test]
    fn the_hold_must_cover_the_commit_wait_too() {
        // 2 × (2,000 queue + 500 acquire + 5,000 statement + 2,000 commit) + 1,000 = 20,000.
        assert!(config(20_000, 2_000).check().is_ok());
        assert!(config(19_999, 2_000).check().is_err());
        assert!(config(19_999, 1_999).check().is_ok());
    }
}
