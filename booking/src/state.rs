//! What handlers share.

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;
use ticketing::redis_client::RedisClient;
use ticketing::token::EntryVerifier;

use crate::access::AccessCodes;
use crate::config::BookingConfig;
use crate::sold_out::SoldOutMemory;
use crate::tiers::TierCatalog;

#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: PgPool,
    pub redis: RedisClient,
    pub verifier: Arc<EntryVerifier>,
    pub access: AccessCodes,
    pub tiers: TierCatalog,
    pub sold_out: SoldOutMemory,
    pub config: Arc<BookingConfig>,
}

impl AppState {
    pub async fn connect(config: BookingConfig) -> anyhow::Result<Self> {
        let (db, redis) = ticketing::db::connect_stores(&config.store).await?;
        let verifier = EntryVerifier::from_dir(&config.public_keys_dir)?;
        Ok(Self {
            db,
            redis,
            verifier: Arc::new(verifier),
            access: AccessCodes::new(config.access_code_secret.expose().as_bytes()),
            tiers: TierCatalog::default(),
            sold_out: SoldOutMemory::new(config.sold_out_memory),
            config: Arc::new(config),
        })
    }
}
