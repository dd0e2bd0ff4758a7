//! Confirmations gathered: a booking's hold ends once Postgres has the booking, off the answer's
//! path (`checkout::Checkout::confirm`). The confirmer sends every confirmation waiting when its
//! last call ended in one script call per event (`confirm.lua`): a script call costs Redis more
//! than one confirmation's work, and under load the writers commit bookings by the batch. A
//! booking alone is confirmed at once; nothing waits for a batch to fill.
//!
//! A confirmation that is lost (the queue full, Redis failing, the process ending with some
//! queued) loses nothing: the hold stays until its deadline, and the hold sweeper finds the
//! booking in Postgres and confirms it then, as it does for any confirmation that failed.

use std::collections::HashMap;

use ticketing::inventory::{self, Confirmation, Confirmed};
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::sold_out::SoldOutMemory;

/// Most confirmations one pass takes from the queue (one script call per event among them).
const MOST_PER_PASS: usize = inventory::MOST_CONFIRMATIONS_PER_CALL;

/// Confirmations waiting at most: beyond this, the sweeper confirms (a Redis that slow is
/// failing bookings anyway).
const QUEUE: usize = 20_000;

struct Pending {
    event_id: Uuid,
    all_tiers: Vec<TierCode>,
    confirmation: Confirmation,
}

#[derive(Clone)]
pub struct Confirmer {
    queue: mpsc::Sender<Pending>,
}

impl Confirmer {
    /// Starts the task that sends the confirmations; it ends when every `Confirmer` is dropped.
    pub fn start(redis: RedisClient, sold_out: SoldOutMemory) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(pending, redis, sold_out));
        Self { queue }
    }

    /// Queues the confirmation of a booking of `event_id`, whose tiers are `all_tiers`.
    pub fn confirm(&self, event_id: Uuid, all_tiers: Vec<TierCode>, confirmation: Confirmation) {
        let pending = Pending {
            event_id,
            all_tiers,
            confirmation,
        };
        if self.queue.try_send(pending).is_err() {
            metrics::counter!("booking_confirmations_left_to_sweeper_total").increment(1);
        }
    }
}

async fn run(mut queue: mpsc::Receiver<Pending>, redis: RedisClient, sold_out: SoldOutMemory) {
    let mut taken = Vec::with_capacity(MOST_PER_PASS);
    while queue.recv_many(&mut taken, MOST_PER_PASS).await > 0 {
        // One call per event and tier list: the script finds each tier's pool by the list, and
        // a list read before a tier was added lacks it.
        let mut by_event: HashMap<(Uuid, Vec<TierCode>), Vec<Confirmation>> = HashMap::new();
        for pending in taken.drain(..) {
            by_event
                .entry((pending.event_id, pending.all_tiers))
                .or_default()
                .push(pending.confirmation);
        }
        metrics::histogram!("booking_confirmations_per_pass")
            .record(by_event.values().map(Vec::len).sum::<usize>() as f64);
        let calls = by_event.into_iter().map(|((event_id, all_tiers), list)| {
            let (redis, sold_out) = (&redis, &sold_out);
            async move {
                match inventory::confirm_all(redis, event_id, &all_tiers, &list).await {
                    Ok(outcomes) => {
                        let returned = outcomes
                            .iter()
                            .filter(|o| **o == Confirmed::Returned)
                            .count();
                        if returned > 0 {
                            sold_out.forget(event_id);
                            metrics::counter!("booking_holds_returned_on_confirm_total")
                                .increment(returned as u64);
                        }
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        bookings = list.len(),
                        "confirm failed; the hold sweeper will find the bookings"
                    ),
                }
            }
        });
        futures::future::join_all(calls).await;
    }
}
