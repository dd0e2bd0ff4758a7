//! Reading settings from the environment: every service reads its config once at start, and a bad
//! value stops it with the variable's name in the message.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, Context};

/// A value read from the environment, or `default` when the variable is unset or empty.
pub fn env_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match std::env::var(name) {
        Ok(raw) if !raw.trim().is_empty() => raw
            .trim()
            .parse()
            .map_err(|e| anyhow!("{name}={raw:?} is not valid: {e}")),
        _ => Ok(default),
    }
}

/// A value that must be present.
pub fn env_required(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("{name} must be set"))
}

/// A secret that must be set: a service refuses to start on a missing, short or placeholder
/// value (`.env.example` shows `change-me`), rather than run with a key anyone can read.
pub fn env_secret(name: &str) -> anyhow::Result<Secret> {
    checked_secret(name, &env_required(name)?)
}

/// A secret that is not the placeholder and long enough to resist guessing; `name` says which
/// setting it came from in the error.
pub fn checked_secret(name: &str, value: &str) -> anyhow::Result<Secret> {
    if value.to_ascii_lowercase().contains("change-me") {
        return Err(anyhow!(
            "{name} is still the placeholder; set a random secret"
        ));
    }
    if value.trim().len() < 16 {
        return Err(anyhow!("{name} must be at least 16 characters"));
    }
    Ok(Secret::new(value.trim()))
}

/// A comma-separated list, empty when unset.
pub fn env_list(name: &str) -> Vec<String> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A secret that never shows up in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where the shared stores are; every service reads these the same way.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Primary Postgres; all writes go here.
    pub database_url: String,
    /// Optional read replica for catalog reads; the primary when unset.
    pub database_read_url: Option<String>,
    /// Most Postgres connections this process holds.
    pub database_max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS`: how long a request waits for a pooled connection before it
    /// is answered 503. Short, so an exhausted pool sheds load instead of piling requests up.
    pub database_acquire_timeout: std::time::Duration,
    /// `DATABASE_STATEMENT_TIMEOUT_MS`: Postgres cancels any statement running longer. The
    /// booking path relies on it to finish (or fail) every write well inside a hold.
    pub database_statement_timeout: std::time::Duration,
    /// A single Redis URL, used when `redis_cluster_nodes` is empty.
    pub redis_url: String,
    /// Redis Cluster seed nodes (`REDIS_CLUSTER_NODES=redis://h:p,redis://h:p`).
    pub redis_cluster_nodes: Vec<String>,
}

impl StoreConfig {
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self {
            database_url: env_or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/ticket_booking".to_string(),
            )?,
            database_read_url: std::env::var("DATABASE_READ_URL")
                .ok()
                .filter(|v| !v.is_empty()),
            database_max_connections: env_or("DATABASE_MAX_CONNECTIONS", 16)?,
            database_acquire_timeout: std::time::Duration::from_millis(env_or(
                "DATABASE_ACQUIRE_TIMEOUT_MS",
                500,
            )?),
            database_statement_timeout: std::time::Duration::from_millis(env_or(
                "DATABASE_STATEMENT_TIMEOUT_MS",
                5_000,
            )?),
            redis_url: env_or("REDIS_URL", "redis://127.0.0.1:6379".to_string())?,
            redis_cluster_nodes: env_list("REDIS_CLUSTER_NODES"),
        })
    }
}
