//! A tier's code (`VIP`, `GA`): one type from the admin API through Rust, the Lua scripts and
//! Postgres. The scripts keep a hold's numbers and a wish in one string (`VIP=1,2;GA=7`,
//! `GA:avail`), so a code that is 1–32 of `A-Z a-z 0-9 _ -` is what keeps those strings
//! readable: every code is checked once, where it enters (the admin API, a request body, JSON),
//! and cannot be made otherwise.

use std::borrow::Borrow;
use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    sqlx::Type,
    utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[sqlx(transparent)]
#[schema(value_type = String, pattern = r"^[A-Za-z0-9_-]{1,32}$")]
pub struct TierCode(String);

impl TierCode {
    /// The code, if `code` is 1–32 of `A-Z a-z 0-9 _ -`.
    pub fn parse(code: &str) -> Option<Self> {
        let valid = (1..=32).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        valid.then(|| Self(code.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A code written in the program itself (a seed, a test): one that does not read as a code
    /// is a bug there, not input to refuse.
    pub fn known(code: &str) -> Self {
        Self::parse(code).unwrap_or_else(|| panic!("{code:?} is not a tier code"))
    }
}

impl TryFrom<String> for TierCode {
    type Error = String;

    fn try_from(code: String) -> Result<Self, Self::Error> {
        Self::parse(&code)
            .ok_or_else(|| format!("tier code {code:?} is not 1-32 of A-Z a-z 0-9 _ -"))
    }
}

impl std::str::FromStr for TierCode {
    type Err = String;

    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Self::try_from(code.to_string())
    }
}

impl From<TierCode> for String {
    fn from(code: TierCode) -> Self {
        code.0
    }
}

impl fmt::Display for TierCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Read-only: a code reads as the text it is wherever text is wanted (key names, messages).
impl std::ops::Deref for TierCode {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TierCode {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Maps keyed by code are looked up with a `&str`.
impl Borrow<str> for TierCode {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for TierCode {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for TierCode {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl redis::ToRedisArgs for TierCode {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.0.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_short_identifiers_that_cannot_break_the_scripts_strings() {
        assert!(TierCode::parse("VIP").is_some());
        assert!(TierCode::parse("Front_Row-2").is_some());
        for bad in [
            "",
            "VIP:1",
            "GA=2",
            "GA;VIP",
            "a|b",
            "x,y",
            &"A".repeat(33),
            "Ünï",
        ] {
            assert_eq!(TierCode::parse(bad), None, "{bad:?} accepted");
        }
    }

    #[test]
    fn json_checks_the_code() {
        let code: TierCode = serde_json::from_str("\"GA\"").unwrap();
        assert_eq!(code, "GA");
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"GA\"");
        assert!(serde_json::from_str::<TierCode>("\"GA;VIP\"").is_err());
    }
}
