//! The gateway's settings, read once from the environment.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail};
use ticketing::config::{Secret, StoreConfig, Vars};
use ticketing::queue::ReceiptKeys;

use crate::client_addr::TrustedProxies;
use crate::connections::ConnectionLimits;
use crate::takeover::Serving;

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
    /// `TRUSTED_PROXIES`: comma-separated networks (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`) whose
    /// `X-Forwarded-For` is believed; empty (the default) believes no one.
    pub trusted_proxies: TrustedProxies,
    pub limits: LimitSettings,
    pub proof: ProofSettings,
    /// Caps on open queue streams (`STREAMS_PER_ADDRESS`, `STREAMS_MAX`).
    pub streams: crate::notices::StreamLimits,
    /// `REQUEST_TIMEOUT_MS`.
    pub request_timeout: Duration,
    /// How connections are bounded and whether streams are taken over from hyper.
    pub serving: Serving,
    /// `METRICS_ADDR`: when set, `/metrics` is served there (an internal address) and not on the
    /// buyers' listener; unset, on the buyers' listener as before.
    pub metrics_addr: Option<SocketAddr>,
}

/// A sustained rate and the burst allowed on top of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

impl Rate {
    pub fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }

    /// `name` in requests per second (at least 1), with a burst of two seconds' worth, so a
    /// client that was quiet may catch up at once.
    fn from_vars(vars: &Vars, name: &str, default: u32) -> anyhow::Result<Self> {
        let per_second: u32 = vars.or(name, default)?;
        if per_second == 0 {
            bail!("{name} must be at least 1");
        }
        Ok(Self::new(per_second, per_second.saturating_mul(2)))
    }
}

/// The waiting room's rate limits (429 `rate_limited` beyond them).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// `JOIN_PER_VISITOR_PER_SECOND` (1): joins per visitor id and event.
    pub join_per_visitor: Rate,
    /// `JOIN_PER_ADDRESS_PER_SECOND` (200): joins per client address, generous since a crowd
    /// may share one NAT; 428 answers do not count.
    pub join_per_address: Rate,
    /// `POLL_PER_QUEUE_ID_PER_SECOND` (2): polls per queue entry (the page polls at most every
    /// 500 ms).
    pub poll_per_queue_id: Rate,
    /// `POLL_PER_ADDRESS_PER_SECOND` (1000): polls per client address.
    pub poll_per_address: Rate,
    /// `ADMIN_PER_ADDRESS_PER_SECOND` (20): admin API requests per client address, counted
    /// before the token is checked, so guessing it costs time.
    pub admin_per_address: Rate,
    /// `LIMITER_MAX_KEYS` (100,000): most keys one limiter keeps; beyond it (after idle keys are
    /// forgotten) it starts afresh.
    pub max_keys: usize,
}

/// When and how hard joins must prove work (see `proof.rs`).
#[derive(Debug, Clone)]
pub struct ProofSettings {
    /// `PROOF_SECRET`: signs challenges; the same on every gateway.
    pub secret: Secret,
    /// `PROOF_ADDRESS_JOINS_PER_SECOND` (20): above this many joins a second from one address,
    /// joins without a proof are asked for one; 0 asks always.
    pub address_joins_per_second: u32,
    /// `PROOF_JOINS_PER_SECOND` (2000): the same, over all of this gateway's joins.
    pub joins_per_second: u32,
    /// `PROOF_NETWORK_JOINS_PER_SECOND` (100): the same per IPv4 /24 or IPv6 /48; 0 turns
    /// this threshold off.
    pub network_joins_per_second: u32,
    /// `PROOF_EVENT_JOINS_PER_SECOND` (500): an event's join rate in this gateway above which
    /// the difficulty rises a bit, and another per doubling.
    pub event_joins_per_second: u32,
    /// `PROOF_MAX_DIFFICULTY` (22): the most it rises to (about 16 s on a mid-range phone).
    pub max_difficulty: u8,
    /// `PROOF_DIFFICULTY` (18): leading zero bits asked for, 0-64; 18 bits is about 262,000
    /// hashes, about a second on a mid-range phone.
    pub difficulty: u8,
    /// `PROOF_TTL_S` (300): how long a challenge may be solved and used.
    pub ttl: Duration,
}

fn difficulty(bits: u8) -> anyhow::Result<u8> {
    if bits > 64 {
        bail!("PROOF_DIFFICULTY must be 0-64 bits");
    }
    Ok(bits)
}

/// Settings this gateway used to read: refusing to start is kinder than silently keying every
/// client on its proxy's address.
const REPLACED: [(&str, &str); 5] = [
    ("TRUST_FORWARDED_FOR", "TRUSTED_PROXIES"),
    (
        "JOIN_PER_SECOND",
        "JOIN_PER_VISITOR_PER_SECOND and JOIN_PER_ADDRESS_PER_SECOND",
    ),
    ("JOIN_BURST", "JOIN_PER_ADDRESS_PER_SECOND"),
    (
        "POLL_PER_SECOND",
        "POLL_PER_QUEUE_ID_PER_SECOND and POLL_PER_ADDRESS_PER_SECOND",
    ),
    ("POLL_BURST", "POLL_PER_ADDRESS_PER_SECOND"),
];

impl GatewayConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&Vars::process())
    }

    pub fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        for (old, new) in REPLACED {
            if vars.is_set(old) {
                bail!("{old} is no longer read; use {new}");
            }
        }
        Ok(Self {
            store: StoreConfig::from_vars(vars)?,
            addr: vars.or("GATEWAY_ADDR", SocketAddr::from(([127, 0, 0, 1], 3000)))?,
            // Held to the secrets' rules: anyone who reads `.env.example` knows its placeholder,
            // and the admin API can pause or retune every sale.
            admin_token: vars.secret("ADMIN_TOKEN")?,
            queue_id_secret: vars.secret("QUEUE_ID_SECRET")?,
            receipt_keys: ReceiptKeys::parse(
                "QUEUE_RECEIPT_KEYS",
                &vars.required("QUEUE_RECEIPT_KEYS")?,
            )?,
            keys_dir: vars.or("ENTRY_KEYS_DIR", PathBuf::from(".run/keys"))?,
            signing_kid: vars.or("ENTRY_SIGNING_KID", "dev".to_string())?,
            booking_url: vars.or("BOOKING_URL", "http://127.0.0.1:5000".to_string())?,
            frontend_dir: vars.or("FRONTEND_DIR", PathBuf::from("frontend"))?,
            trusted_proxies: TrustedProxies::parse(&vars.or("TRUSTED_PROXIES", String::new())?)
                .map_err(|e| anyhow!("TRUSTED_PROXIES: {e}"))?,
            limits: LimitSettings {
                join_per_visitor: Rate::from_vars(vars, "JOIN_PER_VISITOR_PER_SECOND", 1)?,
                join_per_address: Rate::from_vars(vars, "JOIN_PER_ADDRESS_PER_SECOND", 200)?,
                poll_per_queue_id: Rate::from_vars(vars, "POLL_PER_QUEUE_ID_PER_SECOND", 2)?,
                poll_per_address: Rate::from_vars(vars, "POLL_PER_ADDRESS_PER_SECOND", 1_000)?,
                admin_per_address: Rate::from_vars(vars, "ADMIN_PER_ADDRESS_PER_SECOND", 20)?,
                max_keys: vars.or("LIMITER_MAX_KEYS", 100_000)?,
            },
            proof: ProofSettings {
                secret: vars.secret("PROOF_SECRET")?,
                address_joins_per_second: vars.or("PROOF_ADDRESS_JOINS_PER_SECOND", 20)?,
                joins_per_second: vars.or("PROOF_JOINS_PER_SECOND", 2_000)?,
                difficulty: difficulty(vars.or("PROOF_DIFFICULTY", 18)?)?,
                network_joins_per_second: vars.or("PROOF_NETWORK_JOINS_PER_SECOND", 100)?,
                event_joins_per_second: vars.or("PROOF_EVENT_JOINS_PER_SECOND", 500)?,
                max_difficulty: difficulty(vars.or("PROOF_MAX_DIFFICULTY", 22)?)?,
                ttl: Duration::from_secs(vars.or("PROOF_TTL_S", 300)?.max(1)),
            },
            request_timeout: Duration::from_millis(vars.or("REQUEST_TIMEOUT_MS", 10_000)?),
            streams: crate::notices::StreamLimits {
                per_address: vars.or("STREAMS_PER_ADDRESS", 5_000)?,
                total: vars.or("STREAMS_MAX", 100_000)?,
                ..Default::default()
            },
            serving: Serving {
                connections: connection_limits(vars)?,
                takeover: vars.or("STREAM_TAKEOVER", true)?,
            },
            metrics_addr: match vars.or("METRICS_ADDR", String::new())? {
                addr if addr.is_empty() => None,
                addr => Some(
                    addr.parse()
                        .map_err(|e| anyhow!("METRICS_ADDR {addr:?}: {e}"))?,
                ),
            },
        })
    }
}

fn connection_limits(vars: &Vars) -> anyhow::Result<ConnectionLimits> {
    let defaults = ConnectionLimits::default();
    let millis = |name: &str, default: Duration| -> anyhow::Result<Duration> {
        Ok(Duration::from_millis(
            vars.or(name, default.as_millis() as u64)?,
        ))
    };
    let limits = ConnectionLimits {
        header_read_timeout: millis("HTTP_HEADER_READ_TIMEOUT_MS", defaults.header_read_timeout)?,
        max: vars.or("HTTP_MAX_CONNECTIONS", defaults.max)?,
        per_address: vars.or("HTTP_CONNECTIONS_PER_ADDRESS", defaults.per_address)?,
        unacknowledged: millis("TCP_USER_TIMEOUT_MS", defaults.unacknowledged)?,
        drain: millis("SHUTDOWN_DRAIN_MS", defaults.drain)?,
    };
    if limits.header_read_timeout.is_zero() || limits.unacknowledged.is_zero() {
        bail!("HTTP_HEADER_READ_TIMEOUT_MS and TCP_USER_TIMEOUT_MS must be above 0");
    }
    if limits.max == 0 || limits.per_address == 0 {
        bail!("HTTP_MAX_CONNECTIONS and HTTP_CONNECTIONS_PER_ADDRESS must be at least 1");
    }
    Ok(limits)
}
