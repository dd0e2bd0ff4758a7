//! The booking service's settings, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ticketing::config::{env_list, env_or, Secret, StoreConfig};

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
    /// `REQUEST_TIMEOUT_MS`.
    pub request_timeout: Duration,
    /// `SOLD_OUT_MEMORY_MS`: how long a sold-out answer from Redis is reused for the same event
    /// (0 = never). Tickets that come back through another instance wait at most this long.
    pub sold_out_memory: Duration,
}

impl BookingConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        let mut cors_origins = env_list("CORS_ORIGINS");
        if cors_origins.is_empty() {
            cors_origins = vec![
                "http://127.0.0.1:3000".into(),
                "http://localhost:3000".into(),
            ];
        }
        Ok(Self {
            store: StoreConfig::from_env()?,
            addr: env_or("BOOKING_ADDR", SocketAddr::from(([127, 0, 0, 1], 5000)))?,
            public_keys_dir: env_or("ENTRY_PUBLIC_KEYS_DIR", PathBuf::from(".run/keys"))?,
            access_code_secret: Secret::new(env_or(
                "ACCESS_CODE_SECRET",
                "dev-access-code-secret-change-me".to_string(),
            )?),
            cors_origins,
            hold_ttl: Duration::from_millis(env_or("HOLD_TTL_MS", 30_000)?),
            request_timeout: Duration::from_millis(env_or("REQUEST_TIMEOUT_MS", 10_000)?),
            sold_out_memory: Duration::from_millis(env_or("SOLD_OUT_MEMORY_MS", 250)?),
        })
    }
}
