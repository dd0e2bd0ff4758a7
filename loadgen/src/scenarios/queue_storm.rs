//! Queue storm: joins, then polls, and nothing else, against a paused waiting room.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use uuid::Uuid;

use crate::client::Api;

/// `concurrency` clients join unique visitors for `join_for`, then poll the entries for `poll_for`.
pub async fn run(
    api: &Api,
    event: Uuid,
    concurrency: usize,
    join_for: Duration,
    poll_for: Duration,
) -> anyhow::Result<usize> {
    let deadline = Instant::now() + join_for;
    let joiners = (0..concurrency).map(|worker| {
        let api = api.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut n = 0;
            while Instant::now() < deadline {
                let (status, body) = api.join(event, &format!("storm-{worker}-{n}")).await;
                n += 1;
                if status == 202 {
                    if let Some(id) = body["queue_id"].as_str() {
                        ids.push(id.to_string());
                    }
                }
            }
            ids
        })
    });
    let mut ids = Vec::new();
    for joiner in joiners.collect::<Vec<_>>() {
        ids.extend(joiner.await?);
    }
    anyhow::ensure!(!ids.is_empty(), "no join succeeded");
    let ids = Arc::new(ids);
    let deadline = Instant::now() + poll_for;
    let pollers = (0..concurrency).map(|_| {
        let (api, ids) = (api.clone(), ids.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let pick = rand::thread_rng().gen_range(0..ids.len());
                api.poll(&ids[pick]).await;
            }
        })
    });
    for poller in pollers.collect::<Vec<_>>() {
        poller.await?;
    }
    Ok(ids.len())
}
