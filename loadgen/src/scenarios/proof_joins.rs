//! Joins with proof of work on against off, in one run: what verifying a proof (a signature, one
//! hash, one `SET NX` in Redis) costs a gateway.
//!
//! Two gateways on the same stores: one never asks for proofs, the other asks every join
//! (`PROOF_ADDRESS_JOINS_PER_SECOND=0`). Before the timed phases, the load generator collects one
//! challenge per join from the second gateway (its 428 answers) and solves them all, so the timed
//! joins carry ready proofs and the client's hashing is not measured. Then: the same number of
//! joins of fresh visitors without proofs, with proofs, and without again (this machine's speed
//! drifts; the "off" rate is the mean of the runs around the "on" one).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::client::Api;

#[derive(Debug, Serialize)]
pub struct Outcome {
    pub joins_per_phase: usize,
    pub concurrency: usize,
    pub difficulty: u64,
    pub off_per_s: f64,
    pub on_per_s: f64,
    pub off_after_per_s: f64,
    /// `on_per_s` over the mean of the two "off" runs.
    pub ratio: f64,
    /// Timed joins not answered 202, per phase.
    pub not_accepted: [usize; 3],
}

/// One solved challenge, ready to send.
type Proof = Value;

pub async fn run(
    off: &Api,
    on: &Api,
    event: Uuid,
    joins: usize,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    let run = Uuid::new_v4().simple().to_string()[..8].to_string();
    let (challenges, difficulty) = collect_challenges(on, event, joins, concurrency, &run).await?;
    eprintln!("solving {joins} challenges at {difficulty} bits before the timed phases");
    let proofs: Vec<Proof> = tokio::task::spawn_blocking(move || {
        challenges
            .into_iter()
            .map(|challenge| {
                let nonce = solve(&challenge, difficulty);
                json!({"challenge": challenge, "nonce": nonce})
            })
            .collect()
    })
    .await?;
    let proofs = Arc::new(proofs);

    let (off_per_s, off_refused) = phase(off, event, joins, concurrency, &run, "off", None).await?;
    let (on_per_s, on_refused) = phase(
        on,
        event,
        joins,
        concurrency,
        &run,
        "on",
        Some(proofs.clone()),
    )
    .await?;
    let (off_after_per_s, off_after_refused) =
        phase(off, event, joins, concurrency, &run, "off-after", None).await?;
    Ok(Outcome {
        joins_per_phase: joins,
        concurrency,
        difficulty: difficulty.into(),
        off_per_s,
        on_per_s,
        off_after_per_s,
        ratio: 2.0 * on_per_s / (off_per_s + off_after_per_s),
        not_accepted: [off_refused, on_refused, off_after_refused],
    })
}

/// `joins` challenges from the gateway that always asks, and their difficulty.
async fn collect_challenges(
    on: &Api,
    event: Uuid,
    joins: usize,
    concurrency: usize,
    run: &str,
) -> anyhow::Result<(Vec<String>, u8)> {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..concurrency).map(|_| {
        let (on, next, run) = (on.clone(), next.clone(), run.to_string());
        tokio::spawn(async move {
            let mut found = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < joins {
                let (status, body) = on
                    .join_with(
                        "POST /api/events/{id}/queue (collecting challenges)",
                        event,
                        json!({"visitor_id": format!("pow-{run}-collect")}),
                    )
                    .await;
                let error = &body["error"];
                match (
                    status,
                    error["challenge"].as_str(),
                    error["difficulty"].as_u64(),
                ) {
                    (428, Some(challenge), Some(bits)) => {
                        found.push((challenge.to_string(), bits as u8))
                    }
                    _ => anyhow::bail!(
                        "the proof gateway did not ask for a proof ({status} {body}): start it \
                         with PROOF_ADDRESS_JOINS_PER_SECOND=0"
                    ),
                }
            }
            Ok(found)
        })
    });
    let mut challenges = Vec::with_capacity(joins);
    let mut difficulty = 0;
    for worker in futures_join(workers).await {
        for (challenge, bits) in worker?? {
            difficulty = bits;
            challenges.push(challenge);
        }
    }
    Ok((challenges, difficulty))
}

async fn futures_join<T>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<Result<T, tokio::task::JoinError>> {
    let mut results = Vec::new();
    for handle in handles.collect::<Vec<_>>() {
        results.push(handle.await);
    }
    results
}

/// `joins` joins of fresh visitors by `concurrency` clients; joins per second, and how many were
/// not answered 202.
async fn phase(
    api: &Api,
    event: Uuid,
    joins: usize,
    concurrency: usize,
    run: &str,
    name: &str,
    proofs: Option<Arc<Vec<Proof>>>,
) -> anyhow::Result<(f64, usize)> {
    let endpoint = format!("POST /api/events/{{id}}/queue (proof {name})");
    let next = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (api, next, refused, proofs) =
            (api.clone(), next.clone(), refused.clone(), proofs.clone());
        let (endpoint, visitor) = (endpoint.clone(), format!("pow-{run}-{name}"));
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= joins {
                    return;
                }
                let mut body = json!({"visitor_id": format!("{visitor}-{i}")});
                if let Some(proofs) = &proofs {
                    body["proof"] = proofs[i].clone();
                }
                let (status, _) = api.join_with(&endpoint, event, body).await;
                if status != 202 {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    });
    for worker in futures_join(workers).await {
        worker?;
    }
    let elapsed = started.elapsed().max(Duration::from_millis(1));
    let per_s = joins as f64 / elapsed.as_secs_f64();
    eprintln!("proof {name}: {joins} joins in {elapsed:.2?}, {per_s:.0}/s");
    Ok((per_s, refused.load(Ordering::Relaxed)))
}

/// The smallest decimal nonce whose `challenge:nonce` hash starts with `difficulty` zero bits.
fn solve(challenge: &str, difficulty: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| {
            let hash = Sha256::new()
                .chain_update(challenge.as_bytes())
                .chain_update(b":")
                .chain_update(nonce.as_bytes())
                .finalize();
            let zeros = hash
                .iter()
                .position(|b| *b != 0)
                .map_or(256, |i| i as u32 * 8 + hash[i].leading_zeros());
            zeros >= u32::from(difficulty)
        })
        .expect("some nonce solves any difficulty up to 64 bits")
}
