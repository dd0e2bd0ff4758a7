//! What handlers share.

use std::sync::Arc;

use axum::extract::FromRef;
use sqlx::PgPool;
use ticketing::redis_client::RedisClient;
use ticketing::token::EntrySigner;

use crate::client_addr::TrustedProxies;
use crate::config::GatewayConfig;
use crate::connections::Draining;
use crate::directory::EventDirectory;
use crate::limits::Limits;
use crate::notices::Notices;
use crate::proof::ProofOfWork;
use crate::restore::Restores;
use crate::signs_of_life::{self, SignsOfLife};
use crate::wait::SalePace;

/// Catalog reads go to the read pool (a replica when `DATABASE_READ_URL` is set).
#[derive(Clone)]
pub struct ReadDb(pub PgPool);

ticketing::shared_state!(
    /// What every handler of the gateway reads, behind one reference count.
    pub AppState(Shared)
);

impl FromRef<AppState> for ReadDb {
    fn from_ref(state: &AppState) -> Self {
        state.read_db.clone()
    }
}

impl FromRef<AppState> for EventDirectory {
    fn from_ref(state: &AppState) -> Self {
        state.events.clone()
    }
}

impl FromRef<AppState> for RedisClient {
    fn from_ref(state: &AppState) -> Self {
        state.redis.clone()
    }
}

impl FromRef<AppState> for TrustedProxies {
    fn from_ref(state: &AppState) -> Self {
        state.config.trusted_proxies.clone()
    }
}

impl FromRef<AppState> for Arc<GatewayConfig> {
    fn from_ref(state: &AppState) -> Self {
        state.config.clone()
    }
}

pub struct Shared {
    pub db: PgPool,
    pub read_db: ReadDb,
    pub redis: RedisClient,
    pub signer: Arc<EntrySigner>,
    pub config: Arc<GatewayConfig>,
    pub events: EventDirectory,
    pub limits: Arc<Limits>,
    pub proof_of_work: Arc<ProofOfWork>,
    pub signs_of_life: Arc<SignsOfLife>,
    pub pace: SalePace,
    /// Open queue streams and the subscriber that wakes them.
    pub notices: Notices,
    /// Set from the shutdown signal on: `/readyz` answers 503 while requests are still served.
    pub draining: Draining,
    /// Restores after a Redis loss running in this gateway, one per event.
    pub restores: Restores,
}

impl AppState {
    /// Connects to the stores and loads the signing key the config names.
    pub async fn connect(config: GatewayConfig) -> anyhow::Result<Self> {
        let (db, redis) = ticketing::db::connect_stores(&config.store).await?;
        let store = &config.store;
        let patience = std::time::Duration::from_secs(30);
        let read_db = match &store.database_read_url {
            Some(url) => {
                ticketing::db::connect_patiently(
                    url,
                    ticketing::db::PoolLimits::of(store),
                    patience,
                )
                .await?
            }
            None => db.clone(),
        };
        let key_path = config
            .keys_dir
            .join(format!("{}.key.pem", config.signing_kid));
        let pem = std::fs::read(&key_path)
            .map_err(|e| anyhow::anyhow!("reading the signing key {}: {e}", key_path.display()))?;
        let signer = EntrySigner::from_pem(&config.signing_kid, &pem)?;
        Ok(Self::with_stores(
            config,
            db,
            read_db,
            redis,
            Arc::new(signer),
        ))
    }

    /// Same as [`AppState::connect`] on stores and a signer the caller has: what tests use.
    pub fn with_stores(
        config: GatewayConfig,
        db: PgPool,
        read_db: PgPool,
        redis: RedisClient,
        signer: Arc<EntrySigner>,
    ) -> Self {
        let limits = Arc::new(Limits::new(&config.limits));
        let proof_of_work = Arc::new(ProofOfWork::new(&config.proof, config.limits.max_keys));
        sweep_in_background(&limits, &proof_of_work);
        let signs_of_life = Arc::new(SignsOfLife::default());
        signs_of_life::flush_in_background(&signs_of_life, redis.clone());
        let notices = Notices::start(config.store.clone(), config.streams);
        Self(Arc::new(Shared {
            notices,
            draining: Draining::default(),
            restores: Restores::default(),
            signs_of_life,
            pace: SalePace::default(),
            events: EventDirectory::new(db.clone(), redis.clone()),
            limits,
            proof_of_work,
            db,
            read_db: ReadDb(read_db),
            redis,
            signer,
            config: Arc::new(config),
        }))
    }
}

/// Sweeps the limiters every second for as long as they are in use.
fn sweep_in_background(limits: &Arc<Limits>, proofs: &Arc<ProofOfWork>) {
    let (limits, proofs) = (Arc::downgrade(limits), Arc::downgrade(proofs));
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            every.tick().await;
            let (Some(limits), Some(proofs)) = (limits.upgrade(), proofs.upgrade()) else {
                return;
            };
            limits.sweep();
            proofs.sweep();
        }
    });
}
