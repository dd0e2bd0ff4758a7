//! Entry tokens minted for a run with the gateway's signing key (a test key pair), so the booking
//! service can be loaded without going through the queue.

use std::path::Path;

use anyhow::Context;
use ticketing::token::{EntryClaims, EntrySigner};
use uuid::Uuid;

pub struct Minter {
    signer: EntrySigner,
}

impl Minter {
    pub fn from_dir(dir: &Path, kid: &str) -> anyhow::Result<Self> {
        let path = dir.join(format!("{kid}.key.pem"));
        let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            signer: EntrySigner::from_pem(kid, &pem)?,
        })
    }

    pub fn mint(&self, event: Uuid, ttl_s: i64) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        self.signer.sign(&EntryClaims {
            sub: ticketing::queue::QueueId(Uuid::new_v4()),
            evt: event,
            jti: ticketing::token::TokenId::new_v4(),
            iat: now,
            exp: now + ttl_s,
            max: 8,
        })
    }
}
