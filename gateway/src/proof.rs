//! Adaptive proof of work at join: fair to crowds, costly for bots.
//!
//! When joins come faster than a threshold — from one address, or to this gateway overall — a
//! join without a valid proof is answered 428 `proof_required` with a challenge; the client finds
//! a decimal `nonce` such that SHA-256(`challenge:nonce`) starts with `difficulty` zero bits and
//! joins again with `proof: {challenge, nonce}`. A crowd behind one NAT pays about a second per
//! person once; a bot pays for every identity it invents.
//!
//! Challenges are stateless: the gateway signs (HMAC-SHA256, `PROOF_SECRET`, the same on every
//! gateway) the event id, the time of issue, the difficulty and 8 random bytes, so any gateway
//! verifies one in microseconds without storage. Only a solved challenge is stored, in Redis
//! under the event's hash tag, with `SET NX` expiring with the challenge: each solution joins once.
//!
//! What a bot farm would lean on is priced too:
//! - **The signature also covers the client's network** (IPv4 /24, IPv6 /48; not the address
//!   itself, as a carrier's NAT may move a phone between addresses of a pool): challenges solved
//!   in one place cannot be handed to bots elsewhere.
//! - **Proofs are asked for per network as well as per address**: a /48 holds 65,536 /64s, and a
//!   /24 many addresses, each of which would otherwise start under the threshold.
//! - **The difficulty rises with the event's join rate** in this gateway: a bit once above
//!   `PROOF_EVENT_JOINS_PER_SECOND`, another for each doubling, up to `PROOF_MAX_DIFFICULTY`, so
//!   a flood costs each identity more while a quiet sale stays at the base.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use ticketing::keys::EventKeys;
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

use crate::client_addr::ClientAddr;
use crate::config::ProofSettings;
use crate::error::{ApiError, ProofRequired, Refusal};
use crate::keyed::Keyed;

const VERSION: u8 = 1;
/// version, event id, issued at (ms), difficulty, random.
const BODY_LEN: usize = 1 + 16 + 8 + 1 + 8;
const TAG_LEN: usize = 16;
/// Base64url of the 50 signed bytes: 67 characters, so `challenge:` fills the first 64-byte
/// SHA-256 block by itself and a solver hashes that block once, then one block per nonce.
pub const CHALLENGE_LEN: usize = (BODY_LEN + TAG_LEN).div_ceil(3) * 4 - 1;
/// A challenge issued by a gateway whose clock is ahead of this one's is still good.
const CLOCK_SKEW_MS: i64 = 5_000;
/// Longest nonce accepted: a u64 in decimal.
const MAX_NONCE_LEN: usize = 20;

/// What a client sends back.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct Proof {
    /// The challenge from the 428 answer, unchanged.
    pub challenge: String,
    /// A decimal string such that SHA-256 of `challenge:nonce` starts with `difficulty` zero bits.
    pub nonce: String,
}

/// What the first half of the check decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Gate {
    /// No proof to spend: none was required.
    Open,
    /// A proof that holds, to be spent once the join limits pass.
    Spend(Solved),
}

/// A proof whose signature, event, age and hash are right; still to be spent.
#[derive(Debug, PartialEq, Eq)]
pub struct Solved {
    /// Names the challenge in Redis: its random bytes, unique per challenge.
    id: String,
    expires_ms: i64,
}

pub struct ProofOfWork {
    key: Hmac<Sha256>,
    difficulty: u8,
    max_difficulty: u8,
    /// Joins a second to one event at which the difficulty starts to rise.
    easy_joins_per_second: u32,
    ttl: Duration,
    /// None: every join without a proof is asked for one (a threshold of 0).
    per_address: Option<Keyed<IpAddr>>,
    /// Same per IPv4 /24 or IPv6 /48; None: no per-network threshold.
    per_network: Option<Keyed<IpAddr>>,
    overall: Option<DefaultDirectRateLimiter>,
    /// Joins let into each event's line, by second (see [`JoinRate`]).
    join_rates: Mutex<HashMap<Uuid, JoinRate>>,
    max_keys: usize,
}

/// An event's joins in the current second and the one before.
#[derive(Debug, Clone, Copy, Default)]
struct JoinRate {
    second: i64,
    this: u32,
    last: u32,
}

impl JoinRate {
    fn roll(&mut self, second: i64) {
        if second != self.second {
            self.last = if second == self.second + 1 {
                self.this
            } else {
                0
            };
            self.this = 0;
            self.second = second;
        }
    }
}

impl ProofOfWork {
    pub fn new(settings: &ProofSettings, max_keys: usize) -> Self {
        let threshold = |per_second: u32| {
            // A burst of one second's worth: "more than N joins within a second" asks.
            NonZeroU32::new(per_second).map(|n| Quota::per_second(n).allow_burst(n))
        };
        Self {
            key: Hmac::new_from_slice(settings.secret.expose().as_bytes())
                .expect("hmac takes keys of any length"),
            difficulty: settings.difficulty,
            max_difficulty: settings.max_difficulty.max(settings.difficulty),
            easy_joins_per_second: settings.event_joins_per_second.max(1),
            ttl: settings.ttl,
            per_address: NonZeroU32::new(settings.address_joins_per_second)
                .map(|n| Keyed::new("proof_per_address", n.get(), n.get())),
            per_network: NonZeroU32::new(settings.network_joins_per_second)
                .map(|n| Keyed::new("proof_per_network", n.get(), n.get())),
            overall: threshold(settings.joins_per_second).map(RateLimiter::direct),
            join_rates: Mutex::new(HashMap::new()),
            max_keys,
        }
    }

    /// The first half of letting a join through, before the join limits: no Redis, no spending.
    /// A join carrying a proof that holds passes whatever the load (to be spent once the limits
    /// let it through, so a join refused by a limit keeps its proof for the retry); one without,
    /// or with a proof that does not hold, is asked for one only when proofs are required right
    /// now (a 428 with a fresh challenge, which no limit counts).
    pub fn check(
        &self,
        event_id: Uuid,
        client: ClientAddr,
        proof: Option<&Proof>,
    ) -> Result<Gate, ApiError> {
        let refusal = match proof {
            None => Refusal::Missing,
            Some(proof) => match self.verify(event_id, client, proof, now_ms()) {
                Ok(solved) => return Ok(Gate::Spend(solved)),
                Err(refusal) => refusal,
            },
        };
        self.refuse(event_id, client, proof.is_some(), refusal)?;
        Ok(Gate::Open)
    }

    /// The second half, once the limits let the join through: spends its proof (each works once).
    /// Answers 503 when Redis cannot say whether the proof was spent.
    pub async fn spend(
        &self,
        redis: &RedisClient,
        event_id: Uuid,
        client: ClientAddr,
        gate: Gate,
    ) -> Result<(), ApiError> {
        let Gate::Spend(solved) = gate else {
            return Ok(());
        };
        if spend(redis, event_id, &solved).await? {
            metrics::counter!("proofs_accepted_total").increment(1);
            return Ok(());
        }
        self.refuse(event_id, client, true, Refusal::Reused)
    }

    /// A join without a proof that holds: through when proofs are not required now, else 428.
    fn refuse(
        &self,
        event_id: Uuid,
        client: ClientAddr,
        had_proof: bool,
        refusal: Refusal,
    ) -> Result<(), ApiError> {
        if had_proof {
            metrics::counter!("proofs_refused_total", "reason" => refusal.as_str()).increment(1);
        }
        if !self.required(client) {
            return Ok(());
        }
        metrics::counter!("proofs_required_total").increment(1);
        let difficulty = self.difficulty_for(event_id);
        Err(ApiError::ProofRequired(ProofRequired {
            challenge: self.issue_at(event_id, client, now_ms(), difficulty),
            difficulty,
            reason: refusal,
        }))
    }

    /// Whether joins are over a threshold: this client's, its network's, or this gateway's
    /// overall. Counts the join it is asked about.
    pub fn required(&self, client: ClientAddr) -> bool {
        let Some(per_address) = &self.per_address else {
            return true;
        };
        let Some(overall) = &self.overall else {
            return true;
        };
        let network_over = self
            .per_network
            .as_ref()
            .is_some_and(|per_network| per_network.check(&client.network_key()).is_err());
        overall.check().is_err() || per_address.check(&client.limit_key()).is_err() || network_over
    }

    /// Counts a join let into `event_id`'s line: the rate the difficulty follows.
    pub fn note_join(&self, event_id: Uuid) {
        let second = now_ms().div_euclid(1_000);
        let mut rates = self.join_rates();
        let rate = rates.entry(event_id).or_default();
        rate.roll(second);
        rate.this = rate.this.saturating_add(1);
    }

    /// The difficulty asked of a join to `event_id` now: the base, plus a bit once the event's
    /// join rate (the last full second, or this one if already higher) is above the easy rate
    /// and another for each doubling, up to the most.
    pub fn difficulty_for(&self, event_id: Uuid) -> u8 {
        let second = now_ms().div_euclid(1_000);
        let rate = match self.join_rates().get_mut(&event_id) {
            Some(rate) => {
                rate.roll(second);
                rate.this.max(rate.last)
            }
            None => 0,
        };
        let easy = self.easy_joins_per_second;
        let extra = if rate <= easy {
            0
        } else {
            // 1 bit above the easy rate, 2 from twice it, 3 from four times...
            (rate / easy).ilog2() + 1
        };
        let extra = u8::try_from(extra).unwrap_or(u8::MAX);
        self.difficulty
            .saturating_add(extra)
            .min(self.max_difficulty)
    }

    fn join_rates(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, JoinRate>> {
        // Nothing panics while holding it; a poisoned map still holds sound counts.
        self.join_rates
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh challenge for `client`'s join to `event_id`, at the difficulty asked now.
    pub fn issue(&self, event_id: Uuid, client: ClientAddr) -> String {
        self.issue_at(event_id, client, now_ms(), self.difficulty_for(event_id))
    }

    /// A challenge as if issued at `issued_ms` with `difficulty`: what `issue` does, open to
    /// tests that need an old or easy one signed with the same secret.
    pub fn issue_at(
        &self,
        event_id: Uuid,
        client: ClientAddr,
        issued_ms: i64,
        difficulty: u8,
    ) -> String {
        let mut signed = [0u8; BODY_LEN + TAG_LEN];
        signed[0] = VERSION;
        signed[1..17].copy_from_slice(event_id.as_bytes());
        signed[17..25].copy_from_slice(&issued_ms.to_be_bytes());
        signed[25] = difficulty;
        rand::thread_rng().fill_bytes(&mut signed[26..BODY_LEN]);
        let tag = self.tag(&signed[..BODY_LEN], client);
        signed[BODY_LEN..].copy_from_slice(&tag[..TAG_LEN]);
        URL_SAFE_NO_PAD.encode(signed)
    }

    /// The signature of a challenge's body for `client`'s network (not sent: the verifier
    /// knows the network of whoever presents it).
    fn tag(&self, body: &[u8], client: ClientAddr) -> [u8; 32] {
        let network = match client.network_key() {
            IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
            IpAddr::V6(v6) => v6.octets(),
        };
        let mut mac = self.key.clone();
        mac.update(body);
        mac.update(&network);
        mac.finalize().into_bytes().into()
    }

    /// Everything but single use: the signature (for this event and `client`'s network), the
    /// age, the work.
    fn verify(
        &self,
        event_id: Uuid,
        client: ClientAddr,
        proof: &Proof,
        now_ms: i64,
    ) -> Result<Solved, Refusal> {
        if proof.challenge.len() != CHALLENGE_LEN
            || proof.nonce.is_empty()
            || proof.nonce.len() > MAX_NONCE_LEN
            || !proof.nonce.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(Refusal::Wrong);
        }
        let signed = URL_SAFE_NO_PAD
            .decode(&proof.challenge)
            .map_err(|_| Refusal::Wrong)?;
        if signed.len() != BODY_LEN + TAG_LEN || signed[0] != VERSION {
            return Err(Refusal::Wrong);
        }
        let (body, tag) = signed.split_at(BODY_LEN);
        let expected = self.tag(body, client);
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..TAG_LEN], tag)) {
            return Err(Refusal::Wrong);
        }
        if body[1..17] != event_id.as_bytes()[..] {
            return Err(Refusal::Wrong);
        }
        let issued_ms = i64::from_be_bytes(body[17..25].try_into().expect("8 bytes"));
        let expires_ms = issued_ms.saturating_add(self.ttl.as_millis() as i64);
        if issued_ms > now_ms + CLOCK_SKEW_MS {
            return Err(Refusal::Wrong);
        }
        if expires_ms <= now_ms {
            return Err(Refusal::Expired);
        }
        if zero_bits(&proof.challenge, &proof.nonce) < u32::from(body[25]) {
            return Err(Refusal::Wrong);
        }
        Ok(Solved {
            id: URL_SAFE_NO_PAD.encode(&body[26..BODY_LEN]),
            expires_ms,
        })
    }

    pub fn sweep(&self) {
        if let Some(per_address) = &self.per_address {
            per_address.sweep(self.max_keys);
        }
        if let Some(per_network) = &self.per_network {
            per_network.sweep(self.max_keys);
        }
        // Events with no join for two seconds ask the base difficulty again: forget them.
        let second = now_ms().div_euclid(1_000);
        self.join_rates()
            .retain(|_, rate| rate.second >= second - 1);
    }
}

/// Marks a solved challenge spent; false when it already was.
async fn spend(redis: &RedisClient, event_id: Uuid, solved: &Solved) -> redis::RedisResult<bool> {
    let ttl_ms = (solved.expires_ms - now_ms()).max(1);
    let set: Option<String> = redis::cmd("SET")
        .arg(EventKeys::new(event_id).spent_proof(&solved.id))
        .arg(1)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query_async(&mut redis.clone())
        .await?;
    Ok(set.is_some())
}

/// Leading zero bits of SHA-256(`challenge:nonce`).
pub fn zero_bits(challenge: &str, nonce: &str) -> u32 {
    let hash = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(b":")
        .chain_update(nonce.as_bytes())
        .finalize();
    let mut bits = 0;
    for byte in hash {
        bits += byte.leading_zeros();
        if byte != 0 {
            break;
        }
    }
    bits
}

/// The smallest nonce that solves `challenge` at `difficulty`: what a client does (tests and
/// tools; the browser has its own in `frontend/js/proof-worker.js`).
pub fn solve(challenge: &str, difficulty: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| zero_bits(challenge, nonce) >= u32::from(difficulty))
        .expect("some nonce below 2^64 solves any difficulty up to 64 bits")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticketing::config::Secret;

    fn gate(address_threshold: u32, overall: u32) -> ProofOfWork {
        ProofOfWork::new(
            &ProofSettings {
                address_joins_per_second: address_threshold,
                joins_per_second: overall,
                ..gate_settings()
            },
            1_000,
        )
    }

    fn client(ip: &str) -> ClientAddr {
        ClientAddr(ip.parse().unwrap())
    }

    const ME: &str = "198.51.100.20";

    fn solved(gate: &ProofOfWork, event: Uuid) -> Proof {
        let challenge = gate.issue(event, client(ME));
        let nonce = solve(&challenge, gate.difficulty);
        Proof { challenge, nonce }
    }

    #[test]
    fn a_challenge_fills_the_first_hash_block_with_its_separator() {
        let challenge = gate(0, 0).issue(Uuid::new_v4(), client(ME));
        assert_eq!(challenge.len(), CHALLENGE_LEN);
        assert_eq!(challenge.len() + 1, 68);
        assert!(challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn a_solved_challenge_verifies_and_names_itself() {
        let gate = gate(0, 0);
        let event = Uuid::new_v4();
        let proof = solved(&gate, event);
        let now = now_ms();
        let ok = gate
            .verify(event, client(ME), &proof, now)
            .expect("a solved proof holds");
        assert!(ok.expires_ms > now && ok.expires_ms <= now + 60_000);
        assert_ne!(
            ok.id,
            gate.verify(event, client(ME), &solved(&gate, event), now)
                .unwrap()
                .id
        );
    }

    #[test]
    fn wrong_proofs_are_refused() {
        let gate = gate(0, 0);
        let event = Uuid::new_v4();
        let proof = solved(&gate, event);
        let now = now_ms();
        let wrong = |p: Proof| gate.verify(event, client(ME), &p, now);
        assert_eq!(
            gate.verify(Uuid::new_v4(), client(ME), &proof, now),
            Err(Refusal::Wrong),
            "for another event"
        );
        assert_eq!(
            gate.verify(event, client("203.0.113.20"), &proof, now),
            Err(Refusal::Wrong),
            "handed to a client on another network"
        );
        assert!(
            gate.verify(event, client("198.51.100.21"), &proof, now)
                .is_ok(),
            "a phone moved to another address of its carrier's pool keeps it"
        );
        let unsolved = (0u64..)
            .map(|n| n.to_string())
            .find(|n| zero_bits(&proof.challenge, n) < 8)
            .unwrap();
        for (challenge, nonce) in [
            (proof.challenge.clone(), unsolved),
            (proof.challenge.clone(), format!("{} ", proof.nonce)),
            (proof.challenge.clone(), "-1".into()),
            (proof.challenge.clone(), "1".repeat(21)),
            (proof.challenge.clone(), String::new()),
            (proof.challenge[1..].to_string(), proof.nonce.clone()),
            ("!".repeat(CHALLENGE_LEN), proof.nonce.clone()),
        ] {
            assert_eq!(wrong(Proof { challenge, nonce }), Err(Refusal::Wrong));
        }
        // Signed with another secret, at difficulty 0: no work, no entry.
        let forged = ProofOfWork::new(
            &ProofSettings {
                secret: Secret::new("another-proof-secret"),
                ..gate_settings()
            },
            10,
        )
        .issue_at(event, client(ME), now, 0);
        assert_eq!(
            wrong(Proof {
                challenge: forged,
                nonce: "0".into()
            }),
            Err(Refusal::Wrong)
        );
    }

    fn gate_settings() -> ProofSettings {
        ProofSettings {
            secret: Secret::new("a-test-proof-secret"),
            address_joins_per_second: 0,
            joins_per_second: 0,
            network_joins_per_second: 0,
            event_joins_per_second: 100,
            max_difficulty: 12,
            difficulty: 8,
            ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn old_and_future_challenges_are_refused() {
        let gate = gate(0, 0);
        let event = Uuid::new_v4();
        let now = now_ms();
        let old = gate.issue_at(event, client(ME), now - 60_001, 4);
        let nonce = solve(&old, 4);
        assert_eq!(
            gate.verify(
                event,
                client(ME),
                &Proof {
                    challenge: old,
                    nonce
                },
                now
            ),
            Err(Refusal::Expired)
        );
        let future = gate.issue_at(event, client(ME), now + 60_000, 4);
        let nonce = solve(&future, 4);
        assert_eq!(
            gate.verify(
                event,
                client(ME),
                &Proof {
                    challenge: future,
                    nonce
                },
                now
            ),
            Err(Refusal::Wrong)
        );
    }

    #[test]
    fn proofs_are_asked_for_above_a_threshold_per_network() {
        let gate = ProofOfWork::new(
            &ProofSettings {
                address_joins_per_second: 1_000,
                joins_per_second: 1_000,
                network_joins_per_second: 3,
                ..gate_settings()
            },
            1_000,
        );
        // Three /64s of one /48: each alone is far under its own threshold.
        for host in ["2001:db8:7:1::1", "2001:db8:7:2::1", "2001:db8:7:3::1"] {
            assert!(!gate.required(client(host)));
        }
        assert!(gate.required(client("2001:db8:7:4::1")), "the /48's fourth");
        assert!(!gate.required(client("2001:db8:8::1")), "another /48");
        for host in ["192.0.2.1", "192.0.2.2", "192.0.2.3"] {
            assert!(!gate.required(client(host)));
        }
        assert!(gate.required(client("192.0.2.200")), "the /24's fourth");
        assert!(!gate.required(client("192.0.3.1")), "another /24");
    }

    #[test]
    fn the_difficulty_rises_a_bit_per_doubling_of_the_events_join_rate() {
        let gate = gate(0, 0);
        let (busy, quiet) = (Uuid::new_v4(), Uuid::new_v4());
        assert_eq!(gate.difficulty_for(busy), 8, "no joins yet: the base");
        // Joins noted within one second (a second boundary may split them; the higher half
        // counts, so the floor below still holds).
        let mut seen = Vec::new();
        for joins in [100, 100, 200, 400, 800] {
            for _ in 0..joins {
                gate.note_join(busy);
            }
            seen.push(gate.difficulty_for(busy));
        }
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert!(*seen.last().unwrap() >= 11, "{seen:?}");
        assert!(
            seen.iter().all(|d| *d <= 12),
            "never past the most: {seen:?}"
        );
        assert_eq!(
            gate.difficulty_for(quiet),
            8,
            "another event stays at the base"
        );
        let challenge = gate.issue(busy, client(ME));
        let signed = URL_SAFE_NO_PAD.decode(&challenge).unwrap();
        assert_eq!(
            signed[25],
            gate.difficulty_for(busy),
            "the challenge asks it"
        );
    }

    #[test]
    fn proofs_are_asked_for_above_a_threshold_per_address_or_overall() {
        let always = gate(0, 1_000);
        assert!(always.required(client("198.51.100.1")));
        let per_address = gate(3, 1_000);
        for _ in 0..3 {
            assert!(!per_address.required(client("198.51.100.1")));
        }
        assert!(per_address.required(client("198.51.100.1")));
        assert!(!per_address.required(client("198.51.100.2")));
        let overall = gate(1_000, 2);
        assert!(!overall.required(client("198.51.100.1")));
        assert!(!overall.required(client("198.51.100.2")));
        assert!(overall.required(client("198.51.100.3")));
    }

    #[test]
    fn zero_bits_counts_leading_zeros_of_the_hash() {
        // SHA-256("abc:0") starts 0x5f (0101…): one leading zero bit.
        assert_eq!(zero_bits("abc", "0"), 1);
        // SHA-256("abc:181") starts 0x0036 (0000 0000 0011…): ten.
        assert_eq!(zero_bits("abc", "181"), 10);
        let nonce = solve("abc", 12);
        assert!(zero_bits("abc", &nonce) >= 12);
    }
}
