//! The queue-worker's settings, read once from the environment.

use std::net::SocketAddr;
use std::time::Duration;

use ticketing::config::{StoreConfig, Vars};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub store: StoreConfig,
    /// `WORKER_ADDR`: health and metrics, default 127.0.0.1:5100.
    pub addr: SocketAddr,
    /// `ADMIT_INTERVAL_MS`: admission ticks (the token bucket makes the rate independent of it).
    pub admit_interval: Duration,
    /// `SWEEP_INTERVAL_MS`: how often overdue reservations are released.
    pub sweep_interval: Duration,
    /// `RECONCILE_INTERVAL_MS`: how often Redis is compared with Postgres.
    pub reconcile_interval: Duration,
    /// `SHUTDOWN_GRACE_MS`: how long a running pass may finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// `HOT_LEAD_S` and `HOT_QUIET_S`: a sale opening within the lead is looked after; an event
    /// with no activity for the quiet time and nothing left in Redis is not (see `events`).
    pub hot: crate::events::HotSettings,
    /// `RECONCILE_QUIET_PER_PASS`: quiet events the reconciler visits per pass, round-robin over
    /// the catalog (0: none).
    pub reconcile_quiet_per_pass: i64,
}

impl WorkerConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_vars(&Vars::process())
    }

    pub fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        Ok(Self {
            store: StoreConfig::from_vars(vars)?,
            addr: vars.or("WORKER_ADDR", SocketAddr::from(([127, 0, 0, 1], 5100)))?,
            admit_interval: Duration::from_millis(vars.or("ADMIT_INTERVAL_MS", 100)?),
            sweep_interval: Duration::from_millis(vars.or("SWEEP_INTERVAL_MS", 2_000)?),
            reconcile_interval: Duration::from_millis(vars.or("RECONCILE_INTERVAL_MS", 5_000)?),
            shutdown_grace: Duration::from_millis(vars.or("SHUTDOWN_GRACE_MS", 5_000)?),
            hot: crate::events::HotSettings {
                lead: Duration::from_secs(vars.or("HOT_LEAD_S", 900)?),
                quiet: Duration::from_secs(vars.or("HOT_QUIET_S", 300)?),
            },
            reconcile_quiet_per_pass: vars.or("RECONCILE_QUIET_PER_PASS", 20)?,
        })
    }
}
