//! Signed place receipts: what lets a waiting buyer's place survive a Redis data loss.
//!
//! The join and poll answers carry one; the page sends the latest back on each poll. When Redis
//! lost the line (a flush, a restart without persistence, a failover to a stale replica), the
//! queue's generation changes, and a poll that presents a receipt of an earlier generation puts its
//! entry back at the place the receipt names (see `lua/queue_entry.lua`). Receipts are sealed
//! (ChaCha20-Poly1305) with a key every gateway shares: nobody can forge one, and nobody can read
//! one either — a pre-queue place holds the lot drawn at join, which stays hidden until the
//! opening (a bot holding many identities must not learn which ones drew well). The `kid` in
//! front says which key, so keys can rotate: the first of `QUEUE_RECEIPT_KEYS` seals, every
//! listed key opens.
//!
//! A receipt also remembers the wait estimate last shown with it (its upper bound, and the
//! admission rate it was made under), so the next answer's bound can be held to at most 20 %
//! more than the last unless the room was paused or slowed meanwhile, without any per-visitor
//! state on the servers.
//!
//! Wire form: `<kid>.<base64url(nonce ‖ sealed payload ‖ tag)>`: a random 12-byte nonce, the
//! 64-byte payload (event id, queue id, place, generation, issue time, last wait bound, its rate)
//! encrypted, a 16-byte tag; the kid is authenticated as associated data. Receipts of the
//! release before (a 56-byte payload, no estimate) still open.

use std::collections::HashMap;

use anyhow::{anyhow, bail};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Generation, Place, QueueId};
use crate::config::checked_secret;

const PAYLOAD_LEN: usize = 64;
/// The payload of the release before, without the wait estimate.
const PAYLOAD_V1_LEN: usize = 56;
const TAG_LEN: usize = 16;
const SEALED_LEN: usize = NONCE_LEN + PAYLOAD_LEN + TAG_LEN;
/// Longest receipt text accepted: a kid of up to 16 characters, a dot, the encoded seal.
pub const MAX_LEN: usize = 16 + 1 + (SEALED_LEN * 4).div_ceil(3);

/// What a receipt says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Receipt {
    pub event_id: Uuid,
    pub queue_id: QueueId,
    pub place: Place,
    pub generation: Generation,
    pub issued_ms: i64,
    /// The wait estimate shown with this receipt, if any.
    pub wait: Option<WaitShown>,
}

/// A wait estimate as shown: its upper bound and the admission rate (per minute, 0 while
/// paused) it was made under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitShown {
    pub high_s: u32,
    pub rate_per_minute: u32,
}

impl Receipt {
    fn payload(&self) -> [u8; PAYLOAD_LEN] {
        let mut out = [0u8; PAYLOAD_LEN];
        out[..16].copy_from_slice(self.event_id.as_bytes());
        out[16..32].copy_from_slice(self.queue_id.as_bytes());
        out[32..40].copy_from_slice(&self.place.0.to_be_bytes());
        out[40..48].copy_from_slice(&self.generation.0.to_be_bytes());
        out[48..56].copy_from_slice(&self.issued_ms.to_be_bytes());
        // A bound of 0 never shows (a wait is at least a second): it stands for none.
        let wait = self.wait.unwrap_or(WaitShown {
            high_s: 0,
            rate_per_minute: 0,
        });
        out[56..60].copy_from_slice(&wait.high_s.to_be_bytes());
        out[60..].copy_from_slice(&wait.rate_per_minute.to_be_bytes());
        out
    }

    /// Reads a payload of this release or the one before.
    fn from_payload(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != PAYLOAD_LEN && bytes.len() != PAYLOAD_V1_LEN {
            return None;
        }
        let eight = |at: usize| <[u8; 8]>::try_from(&bytes[at..at + 8]).expect("8 bytes");
        let four = |at: usize| <[u8; 4]>::try_from(&bytes[at..at + 4]).expect("4 bytes");
        let wait = (bytes.len() == PAYLOAD_LEN)
            .then(|| WaitShown {
                high_s: u32::from_be_bytes(four(56)),
                rate_per_minute: u32::from_be_bytes(four(60)),
            })
            .filter(|w| w.high_s > 0);
        Some(Self {
            event_id: Uuid::from_slice(&bytes[..16]).expect("16 bytes"),
            queue_id: QueueId(Uuid::from_slice(&bytes[16..32]).expect("16 bytes")),
            place: Place(i64::from_be_bytes(eight(32))),
            generation: Generation(u64::from_be_bytes(eight(40))),
            issued_ms: i64::from_be_bytes(eight(48)),
            wait,
        })
    }
}

/// The keys receipts are sealed and opened with.
#[derive(Clone)]
pub struct ReceiptKeys {
    signing_kid: String,
    keys: HashMap<String, std::sync::Arc<LessSafeKey>>,
}

impl std::fmt::Debug for ReceiptKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiptKeys")
            .field("signing_kid", &self.signing_kid)
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ReceiptKeys {
    /// `kid:secret[,kid:secret...]`; the first key signs. A kid is 1–16 of `A-Z a-z 0-9 _ -`.
    pub fn parse(setting: &str, value: &str) -> anyhow::Result<Self> {
        let mut keys = HashMap::new();
        let mut signing_kid = None;
        for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (kid, secret) = entry
                .split_once(':')
                .ok_or_else(|| anyhow!("{setting}: each key is kid:secret"))?;
            let kid_ok = (1..=16).contains(&kid.len())
                && kid
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !kid_ok {
                bail!("{setting}: a kid is 1-16 of A-Z a-z 0-9 _ -");
            }
            let secret = checked_secret(&format!("{setting} ({kid})"), secret)?;
            // The secret is text of any length; the cipher wants 32 bytes.
            let derived = Sha256::new()
                .chain_update(b"queue receipt key\0")
                .chain_update(secret.expose().as_bytes())
                .finalize();
            let key = UnboundKey::new(&CHACHA20_POLY1305, &derived)
                .map_err(|_| anyhow!("{setting}: cannot make a key of {kid}"))?;
            if keys
                .insert(kid.to_string(), std::sync::Arc::new(LessSafeKey::new(key)))
                .is_some()
            {
                bail!("{setting}: kid {kid} is listed twice");
            }
            signing_kid.get_or_insert_with(|| kid.to_string());
        }
        let signing_kid = signing_kid.ok_or_else(|| anyhow!("{setting} names no key"))?;
        Ok(Self { signing_kid, keys })
    }

    /// Seals a receipt under the first key.
    pub fn sign(&self, receipt: &Receipt) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system's random source works");
        let mut sealed = Vec::with_capacity(SEALED_LEN);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&receipt.payload());
        let key = &self.keys[&self.signing_kid];
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.signing_kid.as_bytes()),
                &mut sealed[NONCE_LEN..],
            )
            .expect("sealing 64 bytes cannot fail");
        sealed.extend_from_slice(tag.as_ref());
        format!("{}.{}", self.signing_kid, URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The receipt `text` carries, if a listed key sealed it; None for anything else.
    pub fn verify(&self, text: &str) -> Option<Receipt> {
        if text.len() > MAX_LEN {
            return None;
        }
        let (kid, sealed) = text.split_once('.')?;
        let key = self.keys.get(kid)?;
        let mut sealed = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        let v1 = NONCE_LEN + PAYLOAD_V1_LEN + TAG_LEN;
        if sealed.len() != SEALED_LEN && sealed.len() != v1 {
            return None;
        }
        let (nonce, in_out) = sealed.split_at_mut(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let payload = key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), in_out)
            .ok()?;
        let receipt = Receipt::from_payload(payload)?;
        receipt.place.is_valid().then_some(receipt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt() -> Receipt {
        Receipt {
            event_id: Uuid::new_v4(),
            queue_id: QueueId(Uuid::new_v4()),
            place: Place::pre_queue(77, 1234),
            generation: Generation(987_654_321),
            issued_ms: 1_764_000_000_000,
            wait: Some(WaitShown {
                high_s: 600,
                rate_per_minute: 300,
            }),
        }
    }

    #[test]
    fn a_receipt_of_the_release_before_still_opens() {
        let keys = ReceiptKeys::parse("K", "k1:0123456789abcdef0123").unwrap();
        let r = receipt();
        let key = &keys.keys["k1"];
        let nonce = [7u8; NONCE_LEN];
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&r.payload()[..PAYLOAD_V1_LEN]);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(b"k1"),
                &mut sealed[NONCE_LEN..],
            )
            .unwrap();
        sealed.extend_from_slice(tag.as_ref());
        let text = format!("k1.{}", URL_SAFE_NO_PAD.encode(sealed));
        assert_eq!(keys.verify(&text), Some(Receipt { wait: None, ..r }));
    }

    #[test]
    fn a_signed_receipt_verifies_and_says_what_was_signed() {
        let keys = ReceiptKeys::parse("K", "k1:0123456789abcdef0123").unwrap();
        let r = receipt();
        let text = keys.sign(&r);
        assert!(text.len() <= MAX_LEN, "{} > {MAX_LEN}", text.len());
        assert_eq!(keys.verify(&text), Some(r));
    }

    #[test]
    fn tampered_unknown_or_malformed_receipts_are_refused() {
        let keys = ReceiptKeys::parse("K", "k1:0123456789abcdef0123").unwrap();
        let text = keys.sign(&receipt());
        let (kid, sealed) = text.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(sealed).unwrap();
        bytes[NONCE_LEN + 39] ^= 1; // another place
        let forged = format!("{kid}.{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(keys.verify(&forged), None);
        assert_eq!(keys.verify(&format!("k2.{sealed}")), None);
        let other = ReceiptKeys::parse("K", "k1:another-secret-of-16-chars").unwrap();
        assert_eq!(other.verify(&text), None);
        for junk in ["", "a.b", "k1.", "k1.b.c", &"x".repeat(400)] {
            assert_eq!(keys.verify(junk), None);
        }
    }

    #[test]
    fn a_receipt_does_not_show_its_place() {
        let keys = ReceiptKeys::parse("K", "k1:0123456789abcdef0123").unwrap();
        let r = receipt();
        let sealed = URL_SAFE_NO_PAD
            .decode(keys.sign(&r).split_once('.').unwrap().1)
            .unwrap();
        let place = r.place.0.to_be_bytes();
        assert!(
            !sealed.windows(place.len()).any(|w| w == place),
            "the place can be read off the receipt"
        );
        assert_ne!(keys.sign(&r), keys.sign(&r), "a fresh nonce per receipt");
    }

    #[test]
    fn rotation_signs_with_the_first_key_and_verifies_with_every_listed_one() {
        let old = ReceiptKeys::parse("K", "old:0123456789abcdef0123").unwrap();
        let both =
            ReceiptKeys::parse("K", "new:fedcba9876543210fedc, old:0123456789abcdef0123").unwrap();
        let r = receipt();
        assert_eq!(both.verify(&old.sign(&r)), Some(r));
        assert!(both.sign(&r).starts_with("new."));
        assert_eq!(old.verify(&both.sign(&r)), None);
    }

    #[test]
    fn bad_key_settings_are_refused() {
        for bad in [
            "",
            "nokid",
            "k1:short",
            "k1:change-me-change-me",
            "bad kid:0123456789abcdef0123",
            "a:0123456789abcdef0123,a:0123456789abcdef0124",
        ] {
            assert!(ReceiptKeys::parse("K", bad).is_err(), "{bad} accepted");
        }
    }
}
