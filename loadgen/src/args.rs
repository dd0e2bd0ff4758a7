//! `--name value` options, each with a default.

use std::collections::HashMap;
use std::str::FromStr;

use anyhow::{anyhow, bail};

pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    pub fn parse(raw: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut values = HashMap::new();
        let mut raw = raw.peekable();
        while let Some(arg) = raw.next() {
            let Some(name) = arg.strip_prefix("--") else {
                bail!("unexpected argument {arg:?}");
            };
            if let Some((name, value)) = name.split_once('=') {
                values.insert(name.to_string(), value.to_string());
            } else if raw.peek().is_some_and(|next| !next.starts_with("--")) {
                values.insert(name.to_string(), raw.next().expect("peeked"));
            } else {
                values.insert(name.to_string(), "true".to_string());
            }
        }
        Ok(Self { values })
    }

    pub fn get<T: FromStr>(&self, name: &str, default: T) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.values.get(name) {
            Some(raw) => raw.parse().map_err(|e| anyhow!("--{name} {raw:?}: {e}")),
            None => Ok(default),
        }
    }

    pub fn text(&self, name: &str, default: &str) -> String {
        self.values
            .get(name)
            .cloned()
            .unwrap_or_else(|| default.to_string())
    }

    pub fn optional(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }

    /// `--admin-token`, else `$ADMIN_TOKEN`, else empty.
    pub fn admin_token(&self) -> String {
        self.optional("admin-token")
            .or_else(|| std::env::var("ADMIN_TOKEN").ok())
            .unwrap_or_default()
    }

    /// `--redis-url`, else `$REDIS_URL`, else the local default.
    pub fn redis_url(&self) -> String {
        self.optional("redis-url")
            .or_else(|| std::env::var("REDIS_URL").ok())
            .unwrap_or_else(|| "redis://127.0.0.1:6379".into())
    }
}
