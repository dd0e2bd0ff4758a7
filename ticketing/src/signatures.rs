//! Entry-token signatures checked many at a time. An Ed25519 check is one double scalar
//! multiplication, ~250 point doublings; signatures waiting together are checked with one
//! multiscalar multiplication, whose doublings they share (each adds a 128-bit random
//! coefficient's additions and its `R`'s decompression). The booking service's flamegraph put
//! the single check at 28 % of its CPU at the booking ceiling (BENCHMARKS.md, session 19).
//!
//! Like the confirmer, one task takes every check waiting, after letting the request tasks that
//! are ready run first (so their checks join; nothing waits on a timer): alone, a signature is
//! checked alone at once, and under load the batches grow with the load.
//!
//! What a batch accepts: `s` canonical, `R` and the key not of small order (as `verify_strict`),
//! and the cofactored batch equation `[8](Σ zᵢ(Rᵢ + kᵢA − sᵢB)) = 0` with random 128-bit `zᵢ`.
//! A batch holding any signature that fails its own check fails (but with chance 2⁻¹²⁸), and
//! then each of its signatures is checked alone. A batch and the single check disagree only on a
//! signature whose `R` carries a torsion component, which nobody without the private key can
//! make. A failed batch costs the batch and then each alone: for a second after one, checks go
//! one by one, so a flood of bad signatures costs what it costs without batches.

use std::time::{Duration, Instant};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::{Signature, VerifyingKey};
use rand::RngCore;
use sha2::{Digest, Sha512};
use tokio::sync::{mpsc, oneshot};

/// Most signatures in one batch: past a few dozen the shared doublings are a small part of the
/// cost, and a batch holds its worker thread (~25 µs a signature).
const MOST_PER_BATCH: usize = 32;

/// Checks waiting at most; beyond, a check runs alone on its caller's task.
const QUEUE: usize = 4096;

/// How long checks go one by one after a batch failed.
const ALONE_AFTER_FAILURE: Duration = Duration::from_secs(1);

struct Pending {
    key: VerifyingKey,
    message: Vec<u8>,
    signature: Signature,
    answer: oneshot::Sender<bool>,
}

/// Hands signature checks to the batching task.
#[derive(Clone)]
pub struct SignatureBatcher {
    queue: mpsc::Sender<Pending>,
}

impl SignatureBatcher {
    /// Starts the task that checks the signatures; it ends when every handle is dropped. Must be
    /// called within a Tokio runtime.
    pub fn start() -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(pending));
        Self { queue }
    }

    /// Whether `signature` is `key`'s over `message`: the answer `verify_strict` gives.
    pub async fn check(&self, key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            key: *key,
            message: message.to_vec(),
            signature: *signature,
            answer,
        };
        if self.queue.try_send(pending).is_err() {
            return check_one(key, message, signature);
        }
        match answered.await {
            Ok(valid) => valid,
            // The task is gone (the process is ending): checked here instead.
            Err(_) => check_one(key, message, signature),
        }
    }
}

async fn run(mut queue: mpsc::Receiver<Pending>) {
    let mut taken = Vec::with_capacity(MOST_PER_BATCH);
    let mut alone_until: Option<Instant> = None;
    while queue.recv_many(&mut taken, MOST_PER_BATCH).await > 0 {
        // The first check wakes this task at once, and alone it would be checked alone: request
        // tasks ready to run reach their own check within a few µs, so they run first (their
        // work runs anyway; nothing waits on a timer) and what they sent joins this batch.
        tokio::task::yield_now().await;
        while taken.len() < MOST_PER_BATCH {
            let Ok(pending) = queue.try_recv() else {
                break;
            };
            taken.push(pending);
        }
        metrics::histogram!("entry_signature_batch_size").record(taken.len() as f64);
        let alone = alone_until.is_some_and(|until| Instant::now() < until);
        // One batch per key (a new key is added before the gateway signs with it, so for a
        // while two are in use): sorted by key in place, each key's run at the end is a batch,
        // drained off, and `taken` keeps its room for the next pass (nearly always one key, one
        // run: no vectors made per pass).
        taken.sort_unstable_by(|a, b| a.key.as_bytes().cmp(b.key.as_bytes()));
        while let Some(last) = taken.last() {
            let key = last.key;
            let start = taken
                .iter()
                .rposition(|p| p.key != key)
                .map_or(0, |i| i + 1);
            let batch = &taken[start..];
            let tried = !alone && batch.len() > 1;
            let together = tried && check_many(&key, batch);
            if tried && !together {
                alone_until = Some(Instant::now() + ALONE_AFTER_FAILURE);
                metrics::counter!("entry_signature_batches_failed_total").increment(1);
            }
            for pending in taken.drain(start..) {
                let valid =
                    together || check_one(&pending.key, &pending.message, &pending.signature);
                // The caller may have gone (its client closed): nothing to tell.
                let _ = pending.answer.send(valid);
            }
        }
    }
}

/// The single check.
fn check_one(key: &VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    key.verify_strict(message, signature).is_ok()
}

/// Whether every signature of `batch` (all by `key`) passes, in one multiscalar multiplication:
/// false when any fails (each is then checked alone).
fn check_many(key: &VerifyingKey, batch: &[Pending]) -> bool {
    if key.is_weak() {
        return false;
    }
    let key_bytes = key.as_bytes();
    let mut rng = rand::thread_rng();
    let mut scalars = Vec::with_capacity(batch.len() + 2);
    let mut points = Vec::with_capacity(batch.len() + 2);
    // Each signature says sᵢB = Rᵢ + kᵢA; the batch checks Σ zᵢ(Rᵢ + kᵢA − sᵢB) = 0, so the
    // basepoint's coefficient is −Σ zᵢsᵢ and the key's Σ zᵢkᵢ.
    let (mut on_base, mut on_key) = (Scalar::ZERO, Scalar::ZERO);
    for pending in batch {
        let r_bytes = pending.signature.r_bytes();
        let Some(s) =
            Option::<Scalar>::from(Scalar::from_canonical_bytes(*pending.signature.s_bytes()))
        else {
            return false;
        };
        let Some(r) = CompressedEdwardsY(*r_bytes).decompress() else {
            return false;
        };
        if r.is_small_order() {
            return false;
        }
        let digest = Sha512::new()
            .chain_update(r_bytes)
            .chain_update(key_bytes)
            .chain_update(&pending.message)
            .finalize();
        let k = Scalar::from_bytes_mod_order_wide(&digest.into());
        let mut z_bytes = [0u8; 32];
        rng.fill_bytes(&mut z_bytes[..16]);
        let z = Scalar::from_bytes_mod_order(z_bytes);
        on_base -= z * s;
        on_key += z * k;
        scalars.push(z);
        points.push(r);
    }
    scalars.push(on_base);
    points.push(ED25519_BASEPOINT_POINT);
    scalars.push(on_key);
    points.push(key.to_edwards());
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points)
        .mul_by_cofactor()
        .is_identity()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn pending(key: &SigningKey, message: &[u8], signature: Signature) -> Pending {
        Pending {
            key: key.verifying_key(),
            message: message.to_vec(),
            signature,
            answer: oneshot::channel().0,
        }
    }

    fn signed(key: &SigningKey, i: usize) -> Pending {
        let message = format!("header.claims-{i}").into_bytes();
        let signature = key.sign(&message);
        pending(key, &message, signature)
    }

    #[test]
    fn a_batch_of_good_signatures_passes_and_one_bad_one_fails_it() {
        let signer = key(7);
        let mut batch: Vec<Pending> = (0..9).map(|i| signed(&signer, i)).collect();
        assert!(check_many(&signer.verifying_key(), &batch));
        // Another message under a good signature.
        batch[4].message = b"header.claims-tampered".to_vec();
        assert!(!check_many(&signer.verifying_key(), &batch));
        // Another key's signature.
        batch[4] = signed(&key(8), 4);
        batch[4].key = signer.verifying_key();
        assert!(!check_many(&signer.verifying_key(), &batch));
    }

    #[test]
    fn a_batch_refuses_what_the_strict_check_refuses_by_form() {
        let signer = key(9);
        let good = signed(&signer, 1);
        // s + l: the same signature made non-canonical (malleated).
        let mut s = *good.signature.s_bytes();
        // l, the group's order, little-endian.
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        l[31] = 0x10;
        let mut carry = 0u16;
        for (byte, add) in s.iter_mut().zip(l) {
            let sum = u16::from(*byte) + u16::from(add) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let malleated = Signature::from_components(*good.signature.r_bytes(), s);
        // R of small order (the identity), whatever s.
        let identity = EdwardsPoint::default().compress().to_bytes();
        let small = Signature::from_components(identity, *good.signature.s_bytes());
        for bad in [malleated, small] {
            let batch = [signed(&signer, 2), pending(&signer, &good.message, bad)];
            assert!(!check_one(&batch[1].key, &batch[1].message, &bad));
            assert!(!check_many(&signer.verifying_key(), &batch));
        }
    }

    #[tokio::test]
    async fn checks_sent_together_each_get_the_single_checks_answer() {
        let batcher = SignatureBatcher::start();
        let (signer, other) = (key(3), key(4));
        let checks = (0..40).map(|i| {
            let batcher = batcher.clone();
            // Every fifth is signed by another key but presented as the signer's; every
            // seventh is by the other key, presented as its own (a second key in use).
            let (by, as_key) = match i {
                i if i % 5 == 0 => (&other, &signer),
                i if i % 7 == 0 => (&other, &other),
                _ => (&signer, &signer),
            };
            let message = format!("token {i}").into_bytes();
            let signature = by.sign(&message);
            let presented = as_key.verifying_key();
            async move {
                let valid = batcher.check(&presented, &message, &signature).await;
                (i, valid)
            }
        });
        for (i, valid) in futures::future::join_all(checks).await {
            assert_eq!(valid, i % 5 != 0, "check {i}");
        }
    }
}
