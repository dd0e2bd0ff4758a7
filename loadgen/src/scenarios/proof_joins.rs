//! Joins with proof of work on against off, in one run: what verifying a proof (a signature, one
//! hash, one `SET NX` in Redis) costs a gateway.
//!
//! Two gateways on the same stores: one never asks for proofs, the other asks every join
//! (`PROOF_ADDRESS_JOINS_PER_SECOND=0`). Before the timed phases, the load generator collects one
//! challenge per join from the second gateway (its 428 answers) and solves them all, so the timed
//! joins carry ready proofs and the client's hashing is not measured. Then `rounds` rounds, each a
//! slice of joins of fresh visitors without proofs and a slice with, in alternating order (off-on,
//! on-off, …): this machine's speed drifts from second to second (two cores shared with the
//! database, Redis and whatever else runs), and interleaving short slices exposes both modes to
//! the same drift. Each mode's rate is its joins over its time, summed over the rounds.

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
    pub joins_per_mode: usize,
    pub rounds: usize,
    pub concurrency: usize,
    pub difficulty: u64,
    pub off_per_s: f64,
    pub on_per_s: f64,
    /// `on_per_s / off_per_s`.
    pub ratio: f64,
    /// The same ratio round by round, lowest and highest.
    pub round_ratio_range: [f64; 2],
    /// Timed joins not answered 202: without proofs, with.
    pub not_accepted: [usize; 2],
}

/// One solved challenge, ready to send.
type Proof = Value;

pub async fn run(
    off: &Api,
    on: &Api,
    event: Uuid,
    joins: usize,
    rounds: usize,
    concurrency: usize,
) -> anyhow::Result<Outcome> {
    let rounds = rounds.clamp(1, joins.max(1));
    let slice = joins / rounds;
    let joins = slice * rounds;
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

    let (mut off_time, mut on_time) = (Duration::ZERO, Duration::ZERO);
    let (mut off_refused, mut on_refused) = (0, 0);
    let mut round_ratios = Vec::new();
    for round in 0..rounds {
        let mut times = [Duration::ZERO; 2];
        let order = if round % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        for with_proof in order {
            let first = round * slice;
            let (api, proofs, name) = match with_proof {
                true => (on, Some((proofs.clone(), first)), "on"),
                false => (off, None, "off"),
            };
            let (took, refused) =
                phase(api, event, first, slice, concurrency, &run, name, proofs).await?;
            times[usize::from(with_proof)] = took;
            if with_proof {
                on_refused += refused;
            } else {
                off_refused += refused;
            }
        }
        off_time += times[0];
        on_time += times[1];
        round_ratios.push(times[0].as_secs_f64() / times[1].as_secs_f64());
    }
    let rate = |time: Duration| joins as f64 / time.as_secs_f64();
    let (lowest, highest) = round_ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    Ok(Outcome {
        joins_per_mode: joins,
        rounds,
        concurrency,
        difficulty: difficulty.into(),
        off_per_s: rate(off_time),
        on_per_s: rate(on_time),
        ratio: off_time.as_secs_f64() / on_time.as_secs_f64(),
        round_ratio_range: [lowest, highest],
        not_accepted: [off_refused, on_refused],
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

/// Joins `first..first + count` (fresh visitors; with `proofs[i]` when given) by `concurrency`
/// clients: how long they took, and how many were not answered 202.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site, each argument named there"
)]
async fn phase(
    api: &Api,
    event: Uuid,
    first: usize,
    count: usize,
    concurrency: usize,
    run: &str,
    name: &str,
    proofs: Option<(Arc<Vec<Proof>>, usize)>,
) -> anyhow::Result<(Duration, usize)> {
    let endpoint = format!("POST /api/events/{{id}}/queue (proof {name})");
    let next = Arc::new(AtomicUsize::new(first));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers = (0..concurrency).map(|_| {
        let (api, next, refused) = (api.clone(), next.clone(), refused.clone());
        let proofs = proofs.as_ref().map(|(p, _)| p.clone());
        let (endpoint, visitor) = (endpoint.clone(), format!("pow-{run}-{name}"));
        tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= first + count {
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
    Ok((
        started.elapsed().max(Duration::from_micros(1)),
        refused.load(Ordering::Relaxed),
    ))
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
