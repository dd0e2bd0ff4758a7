//! A place in line: the score of an entry in the waiting sorted set, and what it encodes.
//!
//! Whoever joins before `on_sale_at` has a lot (24 bits of a keyed hash of its queue id, so of
//! the event and its visitor id: leaving and joining again draws the same lot, and nobody
//! without the gateway's secret can tell or choose it): the place is
//! `lot * 2^28 + arrival`, so the pre-queue already stands in the random order of its lots when the
//! sale opens, and opening is nothing but the clock passing `on_sale_at` — there is no shuffle to
//! run, stall or retry, whatever its size. Ties between equal lots (about 6 % of a million
//! entries share one with someone) go to the earlier arrival. Whoever joins after the opening gets
//! `2^52 + arrival`: behind every pre-queue place, in arrival order. The low 28 bits are always
//! the arrival number, a dense counter that indexes the liveness bitmaps. Every place is an
//! integer below 2^53, so a Redis score (a double) and a Postgres `bigint` hold it exactly.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Arrival numbers one event can give (about 268 million joins).
pub const ARRIVALS: u64 = 1 << 28;
/// Lots a pre-queue join draws from: 1 ..= LOTS - 1.
pub const LOTS: u32 = 1 << 24;
/// The first place given after the opening.
pub const OPENED: u64 = 1 << 52;

/// 0 is no place: what `admitted_through` is before anyone reached the head.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct Place(pub i64);

impl Place {
    pub fn pre_queue(lot: u32, arrival: u64) -> Self {
        debug_assert!(lot > 0 && lot < LOTS && arrival < ARRIVALS);
        Self((u64::from(lot) * ARRIVALS + arrival) as i64)
    }

    pub fn after_opening(arrival: u64) -> Self {
        debug_assert!(arrival < ARRIVALS);
        Self((OPENED + arrival) as i64)
    }

    /// The arrival number: which bit of the liveness bitmaps this entry sets.
    pub fn arrival(self) -> u64 {
        self.0 as u64 % ARRIVALS
    }

    /// Whether this place was drawn in the pre-queue's lottery.
    pub fn is_pre_queue(self) -> bool {
        (self.0 as u64) < OPENED
    }

    /// A place as a score: exact, since every place is below 2^53.
    pub fn score(self) -> f64 {
        self.0 as f64
    }

    /// A place the scripts can have given: positive and below `OPENED + ARRIVALS`.
    pub fn is_valid(self) -> bool {
        self.0 > 0 && (self.0 as u64) < OPENED + ARRIVALS
    }
}

impl redis::ToRedisArgs for Place {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.0.to_string().as_bytes())
    }
}

/// The pre-queue lot of `queue_id`: a keyed hash of it under the gateway's queue-id secret,
/// apart from the hash that made the queue id (so the id, which its holder sees, tells nothing
/// of the lot). The same visitor in the same event always has the same lot: a lot cannot be
/// re-rolled by leaving and joining again; only another visitor id (another identity, which
/// joins, proofs and limits price) has another.
pub fn lot_for(secret: &[u8], queue_id: super::QueueId) -> u32 {
    use hmac::{Hmac, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(secret).expect("hmac takes keys of any length");
    mac.update(b"pre-queue lot\0");
    mac.update(queue_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let value = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    1 + value % (LOTS - 1)
}

/// A random lot, for entries that have no visitor (tests and the load generator's synthetic
/// pre-queues).
pub fn draw_lot() -> u32 {
    rand::thread_rng().gen_range(1..LOTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pre_queue_place_is_ahead_of_every_later_one_and_exact_as_a_score() {
        let last_lottery = Place::pre_queue(LOTS - 1, ARRIVALS - 1);
        let first_after = Place::after_opening(1);
        assert!(last_lottery < first_after);
        assert!(last_lottery.is_pre_queue() && !first_after.is_pre_queue());
        for place in [
            last_lottery,
            first_after,
            Place::after_opening(ARRIVALS - 1),
        ] {
            assert!(place.is_valid());
            assert_eq!(
                place.score() as i64,
                place.0,
                "{place:?} is not exact as a double"
            );
        }
        assert_eq!(Place::pre_queue(7, 12_345).arrival(), 12_345);
        assert_eq!(Place::after_opening(99).arrival(), 99);
    }

    #[test]
    fn a_visitor_keeps_its_lot_and_lots_spread_over_the_range() {
        let secret = b"a queue id secret of some length";
        let ids: Vec<super::super::QueueId> = (0..2000)
            .map(|i| {
                super::super::QueueId::for_visitor(secret, 7, uuid::Uuid::nil(), &format!("v{i}"))
            })
            .collect();
        for id in &ids {
            assert_eq!(lot_for(secret, *id), lot_for(secret, *id));
            assert!((1..LOTS).contains(&lot_for(secret, *id)));
        }
        // Another secret, other lots: nobody without it can compute one.
        let other = b"another secret, just as long....";
        let differ = ids
            .iter()
            .filter(|id| lot_for(secret, **id) != lot_for(other, **id))
            .count();
        assert!(differ > 1990);
        // Uniform enough: each quarter of the range holds about a quarter of the lots.
        for quarter in 0..4u32 {
            let (low, high) = (quarter * LOTS / 4, (quarter + 1) * LOTS / 4);
            let n = ids
                .iter()
                .filter(|id| (low..high).contains(&lot_for(secret, **id)))
                .count();
            assert!((400..600).contains(&n), "quarter {quarter}: {n} of 2000");
        }
    }

    #[test]
    fn lots_order_the_pre_queue_and_arrival_breaks_ties() {
        assert!(Place::pre_queue(2, 900) < Place::pre_queue(3, 1));
        assert!(Place::pre_queue(5, 1) < Place::pre_queue(5, 2));
        for _ in 0..1000 {
            let lot = draw_lot();
            assert!((1..LOTS).contains(&lot));
        }
    }
}
