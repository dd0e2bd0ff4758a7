//! The gateway's settings, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ticketing::config::{env_or, env_required, env_secret, Secret, StoreConfig};
use ticketing::queue::ReceiptKeys;

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub store: StoreConfig,
    /// `GATEWAY_ADDR`, default 127.0.0.1:3000.
    pub addr: SocketAddr,
    /// `ADMIN_TOKEN`: bearer for the admin API.
    pub admin_token: Secret,
    /// `QUEUE_ID_SECRET`: keys the hash that turns a visitor id into a queue id.
    pub queue_id_secret: Secret,
    /// `QUEUE_RECEIPT_KEYS`: `kid:secret[,kid:secret...]`, the same on every gateway; the first
    /// signs place receipts, every one listed verifies them (so keys rotate without losing places).
    pub receipt_keys: ReceiptKeys,
    /// `ENTRY_KEYS_DIR`: holds `<kid>.key.pem`; `ENTRY_SIGNING_KID` picks the signing key.
    pub keys_dir: PathBuf,
    pub signing_kid: String,
    /// `BOOKING_URL`: where browsers send bookings (served at `/api/config`).
    pub booking_url: String,
    /// `FRONTEND_DIR`: the static frontend.
    pub frontend_dir: PathBuf,
    /// `TRUST_FORWARDED_FOR`: key rate limits on `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// `JOIN_PER_SECOND` / `JOIN_BURST`: joins per client IP.
    pub join_per_second: u64,
    pub join_burst: u32,
    /// `POLL_PER_SECOND` / `POLL_BURST`: polls per client IP.
    pub poll_per_second: u64,
    pub poll_burst: u32,
    /// `REQUEST_TIMEOUT_MS`.
    pub request_timeout: Duration,
}

impl GatewayConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            store: StoreConfig::from_env()?,
            addr: env_or("GATEWAY_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?,
            admin_token: Secret::new(env_required("ADMIN_TOKEN")?),
            queue_id_secret: env_secret("QUEUE_ID_SECRET")?,
            receipt_keys: ReceiptKeys::parse(
                "QUEUE_RECEIPT_KEYS",
                &env_required("QUEUE_RECEIPT_KEYS")?,
            )?,
            keys_dir: env_or("ENTRY_KEYS_DIR", PathBuf::from(".run/keys"))?,
            signing_kid: env_or("ENTRY_SIGNING_KID", "dev".to_string())?,
            booking_url: env_or("BOOKING_URL", "http://127.0.0.1:5000".to_string())?,
            frontend_dir: env_or("FRONTEND_DIR", PathBuf::from("frontend"))?,
            trust_forwarded_for: env_or("TRUST_FORWARDED_FOR", false)?,
            join_per_second: env_or("JOIN_PER_SECOND", 5)?,
            join_burst: env_or("JOIN_BURST", 20)?,
            poll_per_second: env_or("POLL_PER_SECOND", 20)?,
            poll_burst: env_or("POLL_BURST", 60)?,
            request_timeout: Duration::from_millis(env_or("REQUEST_TIMEOUT_MS", 10_000)?),
        })
    }
}
