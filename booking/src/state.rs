//! What handlers share, and the one way to build it.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sqlx::PgPool;
use ticketing::redis_client::RedisClient;
use ticketing::token::{EntryVerifier, TokenId};

use crate::access::AccessCodes;
use crate::config::BookingConfig;
use crate::confirmer::Confirmer;
use crate::sold_out::SoldOutMemory;
use crate::tiers::TierCatalog;
use crate::writer::Writer;

ticketing::shared_state!(
    /// What every handler and checkout task of the booking service reads, behind one reference
    /// count (the writer's channel sender alone is two atomic counters shared by every core).
    pub AppState(Shared)
);

pub struct Shared {
    pub db: PgPool,
    pub redis: RedisClient,
    pub verifier: Arc<EntryVerifier>,
    pub access: AccessCodes,
    pub tiers: TierCatalog,
    pub sold_out: SoldOutMemory,
    pub writer: Writer,
    /// Ends the holds of written bookings, many to a script call.
    pub confirmer: Confirmer,
    /// Requests per entry token.
    pub per_token: Arc<DefaultKeyedRateLimiter<TokenId>>,
    pub config: Arc<BookingConfig>,
    /// Bookings made (201) in the last seconds, by time taken: its p95 is published for the
    /// operator's live view.
    pub latency: Arc<ticketing::live::LatencyWindow>,
}

impl AppState {
    /// Checks the settings, connects to the stores and starts the writers: what `main` and the
    /// tests both run.
    pub async fn build(config: BookingConfig) -> anyhow::Result<Self> {
        config.check()?;
        let (db, redis) = ticketing::db::connect_stores(&config.store).await?;
        let verifier = EntryVerifier::from_dir(&config.public_keys_dir)?;
        Ok(Self::with_stores(config, db, redis, verifier))
    }

    /// Same as [`AppState::build`] on stores the caller connected.
    pub fn with_stores(
        config: BookingConfig,
        db: PgPool,
        redis: RedisClient,
        verifier: EntryVerifier,
    ) -> Self {
        let rate = NonZeroU32::new(config.per_token_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
        let per_token = Arc::new(RateLimiter::keyed(
            Quota::per_second(rate).allow_burst(burst),
        ));
        forget_idle_tokens(&per_token);
        let latency = Arc::new(ticketing::live::LatencyWindow::for_writers(
            config.writers.max(1),
        ));
        let sold_out = SoldOutMemory::new(config.sold_out_memory);
        let confirmer = Confirmer::start(redis.clone(), sold_out.clone());
        ticketing::live::LatencyWindow::publish_in_background(&latency, redis.clone());
        let writer = Writer::start(
            db.clone(),
            config.writers,
            config.write_batch,
            config.write_queue,
            config.write_patience,
            latency.clone(),
        );
        Self(Arc::new(Shared {
            latency,
            writer,
            db,
            redis,
            verifier: Arc::new(if config.signature_batches {
                verifier.with_batches()
            } else {
                verifier
            }),
            access: AccessCodes::new(config.access_code_secret.expose().as_bytes()),
            tiers: TierCatalog::default(),
            confirmer,
            sold_out,
            per_token,
            config: Arc::new(config),
        }))
    }
}

/// Keeps the per-token limiter's memory bounded: tokens idle long enough to be back at a full
/// burst are forgotten every few seconds.
fn forget_idle_tokens(limiter: &Arc<DefaultKeyedRateLimiter<TokenId>>) {
    let limiter = Arc::downgrade(limiter);
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            every.tick().await;
            let Some(limiter) = limiter.upgrade() else {
                return;
            };
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    });
}
