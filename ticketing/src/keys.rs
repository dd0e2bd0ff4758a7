//! The Redis key layout. Every key of one event carries the hash tag `{<event id>}`, so an event's
//! queue, inventory and reservations live in one Redis Cluster slot and every Lua script that
//! touches them stays legal there, while different events spread over the cluster.

use uuid::Uuid;

use crate::queue::QueueId;

/// The keys of one event.
#[derive(Clone, Debug)]
pub struct EventKeys {
    tag: String,
}

impl EventKeys {
    pub fn new(event_id: Uuid) -> Self {
        Self {
            tag: format!("{{{event_id}}}"),
        }
    }

    fn key(&self, name: &str) -> String {
        format!("ev:{}:{name}", self.tag)
    }

    // Inventory.

    /// Hash: `epoch`, `soldout`, and per tier `<code>:cap`, `<code>:next`, `<code>:avail`,
    /// `<code>:held` (numbers reserved, not yet confirmed or released).
    pub fn inventory(&self) -> String {
        self.key("inv")
    }
    /// Set of ticket numbers below the tier's `next` that are free again (released or cancelled).
    pub fn free_numbers(&self, tier: &str) -> String {
        self.key(&format!("free:{tier}"))
    }
    /// Free numbers of `tier` rebuilt under `epoch`, staged until the switch makes them live.
    pub fn staged_free_numbers(&self, epoch: i64, tier: &str) -> String {
        self.key(&format!("stage:{epoch}:free:{tier}"))
    }
    /// Sorted set of reservation ids (token `jti`) by the deadline (ms, Redis's clock) of their
    /// hold.
    pub fn holds(&self) -> String {
        self.key("holds")
    }
    /// Hash of reservation id to the request's fingerprint, the attempt that owns the hold and
    /// the numbers it holds, `<fingerprint>|<attempt>|VIP=1,2;GA=7`.
    pub fn hold_numbers(&self) -> String {
        self.key("holdv")
    }
    /// Set of token ids that reserved (one booking per token).
    pub fn used_tokens(&self) -> String {
        self.key("used")
    }

    /// Sharded Pub/Sub channel (not a key; in the event's slot by its hash tag) where admission
    /// steps and sell-outs are told to every gateway's open streams (`gateway/src/notices.rs`).
    pub fn notices(&self) -> String {
        self.key("notices")
    }

    /// Stream of one sample per second of the sale (id = the second), capped at 30 minutes, for
    /// the operator's live view (`crate::live`).
    pub fn live(&self) -> String {
        self.key("live")
    }

    // Waiting room.

    /// Hash: the waiting-room settings, `on_sale_ms`, the liveness windows (`aw0`, `aw1`), the
    /// queue's generation (`gen`), `admitted_through` and, after a loss, `admit_after_ms`.
    pub fn queue_config(&self) -> String {
        self.key("cfg")
    }
    /// Sorted set of queue ids in line (pre-queue included) by place (`queue::Place`).
    pub fn waiting(&self) -> String {
        self.key("wait")
    }
    /// Set of queue ids pre-queued by the release before place lots (it shuffled this set at the
    /// opening); the reconciler moves any it finds into the line (`queue::entry::adopt_legacy`).
    pub fn legacy_pre_queue(&self) -> String {
        self.key("pre")
    }
    /// Counter giving each joiner its arrival number.
    pub fn sequence(&self) -> String {
        self.key("seq")
    }
    /// Set of queue ids put back in line from a receipt in this generation (once each).
    pub fn restored(&self) -> String {
        self.key("restored")
    }
    /// Bitmaps of arrival numbers seen polling in the current and previous liveness window.
    pub fn alive(&self, window_parity: u8) -> String {
        self.key(&format!("alive:{window_parity}"))
    }
    /// Sorted set of admitted, not yet finished queue ids by token expiry (ms).
    pub fn admitted(&self) -> String {
        self.key("adm")
    }
    /// Hash of queue id to why it left the line (`expired`).
    pub fn gone(&self) -> String {
        self.key("gone")
    }
    /// Hash of queue id to its wish, `GA=2;VIP=1` (`queue::Wish`).
    pub fn wishes(&self) -> String {
        self.key("wish")
    }
    /// Sorted set of queue ids in line whose wish includes `tier`, by place: how many people
    /// ahead want it is one `ZCOUNT`.
    pub fn wanting(&self, tier: &str) -> String {
        self.key(&format!("want:{tier}"))
    }
    /// Sorted set of queue ids whose wish cannot be met (a tier has less left, held included,
    /// than wished), by place: out of the line's head so they never stall it, back in line at
    /// the same place once the wish changes.
    pub fn parked(&self) -> String {
        self.key("parked")
    }
    /// Zset of admitted queue id to the last sign of life of its page since the token's delivery
    /// (a poll, a stream's check, `POST /api/queue/{id}/alive`): a page silent for
    /// `page_gone_ms` gives back its slot and demand (admit.lua).
    pub fn admitted_seen(&self) -> String {
        self.key("admseen")
    }
    /// Hash of queue id to when its admission must be delivered by, were it admitted now (Redis
    /// ms): written at each poll of an entry near the head (two of the intervals it was told
    /// and a grace), read and removed by admit.lua, which reclaims an admission nobody came for
    /// by then.
    pub fn deliver_by(&self) -> String {
        self.key("deliverby")
    }
    /// Zset of queue id to place: entries whose page stopped showing signs of life, out of the
    /// line (so nobody counts them ahead) until a poll brings them back to their place.
    pub fn dormant(&self) -> String {
        self.key("dormant")
    }
    /// Hash of admitted queue id to the tickets it counts against each tier's stock,
    /// `GA=200;VIP=100` in hundredths (a buyer without a wish counts the sale's average), or
    /// `held` when admission reserved its wish.
    pub fn admitted_demand(&self) -> String {
        self.key("admw")
    }
    /// Hash of tier code to the sum of `admitted_demand` over admitted buyers, in hundredths:
    /// `<code>` for fresh demand, `<code>^` and `<code>~` for stale undelivered and stale after
    /// delivery (`lua/lib/demand.lua`).
    pub fn demand(&self) -> String {
        self.key("admd")
    }
    /// Sorted set of undelivered admitted queue id to when its demand's state next changes
    /// (Redis ms): admit.lua counts the demand as stale once its page is overdue, and nowhere
    /// once any page that is there would have polled (`lua/lib/demand.lua`).
    pub fn demand_fresh(&self) -> String {
        self.key("admfresh")
    }
    /// Sorted set of delivered admitted queue id to when its token was delivered (Redis ms):
    /// admit.lua counts its demand as stale once this sale's buyers have booked by then, and
    /// confirm.lua learns from it how long they take.
    pub fn demand_delivered(&self) -> String {
        self.key("admdlv")
    }
    /// Sorted set of queue ids that asked to leave after a grace (a closed page), by when.
    pub fn leaving(&self) -> String {
        self.key("leaving")
    }
    /// Hash: `admitted_total`, `booked_total`, `dropped_total`, `sold:<code>` (tickets booked
    /// through the line, for the average per buyer).
    pub fn stats(&self) -> String {
        self.key("stats")
    }
    /// Hash of unix second to admissions in that second, for `admitted_last_minute`.
    pub fn admissions_per_second(&self) -> String {
        self.key("admsec")
    }
    /// Hash: the admission token bucket (`tokens`, `ts`).
    pub fn admission_bucket(&self) -> String {
        self.key("bucket")
    }
    /// The signed entry token of one admitted queue id, expiring with the token.
    pub fn entry_token(&self, queue_id: QueueId) -> String {
        self.key(&format!("tok:{}", queue_id.0.simple()))
    }
    /// Marks one proof-of-work challenge (by its id) as spent, expiring with the challenge, so
    /// each solution joins once.
    pub fn spent_proof(&self, challenge_id: &str) -> String {
        self.key(&format!("pow:{challenge_id}"))
    }
}

/// Hash of booking instance to its recent p95 (`<µs>|<published at ms>`), for the live view.
pub const BOOKING_LATENCY: &str = "svc:booking:latency";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_an_event_carries_its_hash_tag() {
        let id = Uuid::nil();
        let keys = EventKeys::new(id);
        let tag = format!("{{{id}}}");
        for key in [
            keys.inventory(),
            keys.free_numbers("GA"),
            keys.staged_free_numbers(7, "GA"),
            keys.holds(),
            keys.hold_numbers(),
            keys.used_tokens(),
            keys.queue_config(),
            keys.waiting(),
            keys.restored(),
            keys.legacy_pre_queue(),
            keys.sequence(),
            keys.alive(1),
            keys.admitted(),
            keys.gone(),
            keys.stats(),
            keys.admissions_per_second(),
            keys.admission_bucket(),
            keys.entry_token(QueueId(id)),
            keys.spent_proof("abc"),
            keys.wishes(),
            keys.wanting("GA"),
            keys.parked(),
            keys.dormant(),
            keys.admitted_seen(),
            keys.admitted_demand(),
            keys.demand(),
            keys.leaving(),
        ] {
            assert!(key.contains(&tag), "{key} lacks the event's hash tag");
        }
    }
}
