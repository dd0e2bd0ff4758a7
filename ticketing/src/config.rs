//! Reading settings from the environment: every service reads its config once at start, and a bad
//! value stops it with the variable's name in the message.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, Context};

/// Where settings are read from: the process's environment, or a fixed set that stands in for
/// it. A test starts a service from the same reading of its settings as production (every
/// default, every check), with only what it means to change set.
#[derive(Debug, Clone)]
pub struct Vars(Option<HashMap<String, String>>);

impl Vars {
    /// The process's environment.
    pub fn process() -> Self {
        Self(None)
    }

    /// A fixed set of variables in place of the environment (unset: the default applies).
    pub fn of<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self(Some(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        ))
    }

    /// The same set with `name` set to `value`.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.0
            .get_or_insert_with(HashMap::new)
            .insert(name.into(), value.into());
        self
    }

    /// `name`'s value, `None` when unset or blank.
    pub fn optional(&self, name: &str) -> Option<String> {
        let raw = match &self.0 {
            None => std::env::var(name).ok(),
            Some(vars) => vars.get(name).cloned(),
        };
        raw.filter(|v| !v.trim().is_empty())
    }

    /// `name`'s value parsed, or `default` when it is unset or empty.
    pub fn or<T>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.optional(name) {
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| anyhow!("{name}={raw:?} is not valid: {e}")),
            None => Ok(default),
        }
    }

    /// A value that must be present.
    pub fn required(&self, name: &str) -> anyhow::Result<String> {
        self.optional(name)
            .with_context(|| format!("{name} must be set"))
    }

    /// A secret that must be set: a service refuses to start on a missing, short or
    /// placeholder value (`.env.example` shows `change-me`), rather than run with a key anyone
    /// can read.
    pub fn secret(&self, name: &str) -> anyhow::Result<Secret> {
        checked_secret(name, &self.required(name)?)
    }

    /// A comma-separated list, empty when unset.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.optional(name)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// Whether `name` is set at all (to refuse settings no longer read).
    pub fn is_set(&self, name: &str) -> bool {
        match &self.0 {
            None => std::env::var_os(name).is_some(),
            Some(vars) => vars.contains_key(name),
        }
    }
}

/// A value read from the environment, or `default` when the variable is unset or empty.
pub fn env_or<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    Vars::process().or(name, default)
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
        Self::from_vars(&Vars::process())
    }

    pub fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        Ok(Self {
            database_url: vars.or(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/ticket_booking".to_string(),
            )?,
            database_read_url: vars.optional("DATABASE_READ_URL"),
            database_max_connections: vars.or("DATABASE_MAX_CONNECTIONS", 16)?,
            database_acquire_timeout: std::time::Duration::from_millis(
                vars.or("DATABASE_ACQUIRE_TIMEOUT_MS", 500)?,
            ),
            database_statement_timeout: std::time::Duration::from_millis(
                vars.or("DATABASE_STATEMENT_TIMEOUT_MS", 5_000)?,
            ),
            redis_url: vars.or("REDIS_URL", "redis://127.0.0.1:6379".to_string())?,
            redis_cluster_nodes: vars.list("REDIS_CLUSTER_NODES"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{StoreConfig, Vars};

    /// A fixed set stands in for the environment entirely: what it leaves unset takes the
    /// production default, and the production checks still refuse a bad value.
    #[test]
    fn a_fixed_set_reads_like_the_environment_with_its_defaults_and_checks() {
        let vars = Vars::of([
            ("DATABASE_MAX_CONNECTIONS", "3"),
            ("DATABASE_READ_URL", " "),
        ]);
        let store = StoreConfig::from_vars(&vars).expect("defaults fill the rest");
        assert_eq!(store.database_max_connections, 3);
        assert_eq!(store.database_read_url, None, "blank is unset");
        assert_eq!(store.redis_url, "redis://127.0.0.1:6379");
        assert!(store.redis_cluster_nodes.is_empty());

        let bad = vars.clone().with("DATABASE_MAX_CONNECTIONS", "many");
        let error = StoreConfig::from_vars(&bad).expect_err("not a number");
        assert!(
            error.to_string().contains("DATABASE_MAX_CONNECTIONS"),
            "{error}"
        );

        assert!(vars.secret("ADMIN_TOKEN").is_err(), "unset");
        let placeholder = vars.clone().with("ADMIN_TOKEN", "change-me-change-me");
        assert!(
            placeholder.secret("ADMIN_TOKEN").is_err(),
            "the placeholder"
        );
        let strong = vars.with("ADMIN_TOKEN", "a-long-random-admin-token");
        assert_eq!(
            strong.secret("ADMIN_TOKEN").expect("accepted").expose(),
            "a-long-random-admin-token"
        );
        assert!(strong.is_set("ADMIN_TOKEN") && !strong.is_set("JOIN_BURST"));
        assert_eq!(
            strong
                .with("REDIS_CLUSTER_NODES", "redis://a:1, redis://b:2,")
                .list("REDIS_CLUSTER_NODES"),
            ["redis://a:1", "redis://b:2"]
        );
    }
}
