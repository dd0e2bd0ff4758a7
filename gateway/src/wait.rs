//! Wait estimates as a range, from the sale's measured pace, and held steady between polls: the
//! upper bound rises at most 20 % from one answer to the next unless the room was paused, its
//! rate lowered (by the operator, or by adaptive admission) or the stock gate holds admissions
//! below the rate, which the answer then names. The bound last shown travels in the place receipt
//! (`ticketing::queue::receipt::WaitShown`), so no server keeps anything per visitor.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use ticketing::queue::receipt::WaitShown;
use ticketing::queue::{self, QueueStats, TierStock, WaitingRoom};
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use uuid::Uuid;

/// Most the upper bound may grow between two answers, unless the note says why.
const MOST_GROWTH: f64 = 1.2;

/// The share of the rate the slow end assumes before the sale has run a minute's worth.
const EARLY_PACE: f64 = 2.0 / 3.0;

/// Why an estimate grew more than it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitNote {
    /// The operator paused admissions (now, or since the last answer).
    Paused,
    /// The operator lowered the admission rate since the last answer.
    RateLowered,
    /// Adaptive admission slowed the room to keep bookings fast.
    Slowed,
    /// Admitted buyers are being refused for stock (a tier they wanted is gone): admissions slow
    /// to the share of them who book.
    Refusals,
    /// The stock gate, not the rate, sets the pace: admissions wait for tickets to come back or
    /// for admitted buyers to finish.
    StockGate,
    /// No range: the tiers the sale's buyers took are gone (or nearly every recent admission was
    /// refused), so a buyer without a wish goes in only as a probe of whether anyone still books
    /// what is left. A time would be a guess that grows at every poll; the page says what is
    /// left instead, and a wish for it is judged at the set rate.
    TiersGone,
    /// No range: more buyers ahead will reach the head than the stock on sale is foreseen to
    /// serve (what is left of the tier most buyers take, at what admitted buyers took of it so
    /// far), so it will likely be gone before this buyer's turn; a range would hold only until
    /// then. A wish for what is left is judged by it.
    BeyondStock,
}

/// Why a waiting buyer can be promised no time, if it cannot. It states no wish (a buyer with a
/// wish is judged by it: admitted at the rate while it can be met, parked when it cannot, so it
/// keeps a range; so does everyone while the room is paused, whose note says why), and either
/// admissions of buyers without a wish are down to probes (`QueueStats::probes_only`), or more
/// buyers ahead of it will reach the head than the stock on sale is foreseen to serve
/// (`QueueStats::stock_horizon`): the range it would get holds only until the tier most buyers
/// take runs out, then jumps.
pub fn unpromised(
    position: u64,
    room: &WaitingRoom,
    sale: &QueueStats,
    has_wish: bool,
) -> Option<WaitNote> {
    if !room.enabled || room.paused || has_wish {
        return None;
    }
    if sale.probes_only {
        return Some(WaitNote::TiersGone);
    }
    let horizon = sale.stock_horizon?;
    let reaching = position.saturating_sub(1) as f64 * (1.0 - abandon_share(sale));
    (reaching >= horizon as f64).then_some(WaitNote::BeyondStock)
}

/// The share of those the head reached who had left by then (at most 0.9).
fn abandon_share(sale: &QueueStats) -> f64 {
    let reached = (sale.admitted_total + sale.dropped_total) as f64;
    if reached > 0.0 {
        (sale.dropped_total as f64 / reached).min(0.9)
    } else {
        0.0
    }
}

/// An estimate, seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub low_s: u64,
    pub high_s: u64,
    pub note: Option<WaitNote>,
    /// What the receipt remembers of it.
    pub shown: WaitShown,
}

/// The wait of the entry at 1-based `position`, given the room's settings, the sale's numbers,
/// and the estimate shown with the receipt the poll presented.
pub fn estimate(
    position: u64,
    room: &WaitingRoom,
    sale: &QueueStats,
    before: Option<WaitShown>,
) -> Estimate {
    let paused = room.enabled && room.paused;
    // Adaptive admission's rate, when it is below the set one; refusals of admitted buyers slow
    // either further.
    let slowed = room.enabled
        && sale.effective_per_minute > 0
        && sale.effective_per_minute < i64::from(room.admission_per_minute);
    let refused = room.enabled && sale.refusal_per_minute > 0;
    // The ceiling: the set rate (or adaptive admission's, below it, or the refusals', below
    // either), or with the room off the drain rate (0 = all at once).
    let set = if refused {
        sale.refusal_per_minute as f64
    } else if slowed {
        sale.effective_per_minute as f64
    } else if room.enabled {
        f64::from(room.admission_per_minute)
    } else if room.drain_per_minute == 0 {
        60_000.0
    } else {
        f64::from(room.drain_per_minute)
    };
    // The slow end: what the last minute admitted (the stock or max_active may hold admission
    // below the rate), once the sale has run a minute's worth; never below a twentieth of the
    // rate, or one buyer out of stock would make the bound endless. Before that, two thirds of
    // the rate: an opening admits near the rate (the rehearsal in BENCHMARKS.md measured 0.86-1.0
    // of it), and the half used before put the middle of every first range a third beyond the
    // actual wait (the first estimate's median error was 33-35 %).
    let measured = sale.admitted_last_minute as f64;
    let slow = if (sale.admitted_total as f64) < set {
        set * EARLY_PACE
    } else {
        measured
    }
    .clamp(set / 20.0, set);
    // Some ahead will have left by their turn: the fast end counts the sale's share of them.
    let abandon = abandon_share(sale);
    let ahead = position.saturating_sub(1) as f64;
    let mut low = (ahead * (1.0 - abandon) / set * 60.0).floor() as u64;
    let mut high = ((position as f64) / slow * 60.0).ceil().max(1.0) as u64;
    let rate_now = if paused { 0 } else { set as u32 };
    // The stock gate holds admissions well below the rate (the sale has run long enough to
    // tell): the wait follows the gate's pace, and says so.
    let gated = (sale.admitted_total as f64) >= set && measured < set / 2.0;
    let note = match before {
        _ if paused => Some(WaitNote::Paused),
        Some(b) if b.rate_per_minute == 0 => Some(WaitNote::Paused),
        Some(b) if rate_now < b.rate_per_minute && refused => Some(WaitNote::Refusals),
        Some(b) if rate_now < b.rate_per_minute && slowed => Some(WaitNote::Slowed),
        Some(b) if rate_now < b.rate_per_minute => Some(WaitNote::RateLowered),
        Some(b) => {
            let most = (f64::from(b.high_s) * MOST_GROWTH).floor() as u64;
            if high > most && gated {
                Some(WaitNote::StockGate)
            } else {
                high = high.min(most);
                None
            }
        }
        // No estimate to compare with (a first answer, or a page that lost its receipt): what
        // holds the pace below the set rate is named all the same, or the range the page shows
        // next to an earlier one it kept would seem to jump for no reason.
        None if refused => Some(WaitNote::Refusals),
        None if slowed => Some(WaitNote::Slowed),
        None if gated => Some(WaitNote::StockGate),
        None => None,
    };
    low = low.min(high);
    Estimate {
        low_s: low,
        high_s: high,
        note,
        shown: WaitShown {
            high_s: u32::try_from(high).unwrap_or(u32::MAX).max(1),
            rate_per_minute: rate_now,
        },
    }
}

/// Each event's sale numbers, read from Redis at most once a second per gateway (every waiting
/// poll needs them, and they move slowly), and each tier's stock, at most every 100 ms (every
/// poll tells it: read once for all of them, it is the event's, not the buyer's).
#[derive(Clone)]
pub struct SalePace(Arc<Caches>);

struct Caches {
    stats: Cache<QueueStats>,
    stock: Cache<Arc<[TierStock]>>,
}

impl Default for SalePace {
    fn default() -> Self {
        Self(Arc::new(Caches {
            stats: Cache::new(Duration::from_secs(1)),
            stock: Cache::new(Duration::from_millis(100)),
        }))
    }
}

impl SalePace {
    pub async fn of(&self, redis: &RedisClient, event_id: Uuid) -> redis::RedisResult<QueueStats> {
        if let Some(stats) = self.0.stats.get(event_id) {
            return Ok(stats);
        }
        let stats = queue::stats(redis, event_id).await?;
        self.0.stats.put(event_id, stats);
        Ok(stats)
    }

    /// Each tier's stock (`codes`, the event's tiers in order), at most 100 ms old.
    pub async fn stock(
        &self,
        redis: &RedisClient,
        event_id: Uuid,
        codes: &[TierCode],
    ) -> redis::RedisResult<Arc<[TierStock]>> {
        if let Some(stock) = self.0.stock.get(event_id) {
            return Ok(stock);
        }
        let stock: Arc<[TierStock]> = queue::wish::stock(redis, event_id, codes).await?.into();
        self.0.stock.put(event_id, stock.clone());
        Ok(stock)
    }
}

/// Values per event, each kept for `fresh_for`.
struct Cache<T> {
    fresh_for: Duration,
    by_event: RwLock<HashMap<Uuid, (Instant, T)>>,
}

impl<T: Clone> Cache<T> {
    fn new(fresh_for: Duration) -> Self {
        Self {
            fresh_for,
            by_event: RwLock::default(),
        }
    }

    fn get(&self, event_id: Uuid) -> Option<T> {
        let map = self.by_event.read().expect("cache lock");
        let (at, value) = map.get(&event_id)?;
        (at.elapsed() < self.fresh_for).then(|| value.clone())
    }

    fn put(&self, event_id: Uuid, value: T) {
        let mut map = self.by_event.write().expect("cache lock");
        // Events whose sale ended stop asking; forget them now and then.
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < self.fresh_for);
        }
        map.insert(event_id, (Instant::now(), value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(rate: u32) -> WaitingRoom {
        WaitingRoom {
            enabled: true,
            admission_per_minute: rate,
            ..WaitingRoom::default()
        }
    }

    fn sale(admitted_total: i64, last_minute: i64, dropped: i64) -> QueueStats {
        QueueStats {
            admitted_total,
            admitted_last_minute: last_minute,
            dropped_total: dropped,
            ..QueueStats::default()
        }
    }

    #[test]
    fn once_buyers_without_a_wish_go_in_only_as_probes_they_get_no_range() {
        let probing = QueueStats {
            refusal_per_minute: 15,
            probes_only: true,
            ..sale(10_000, 300, 0)
        };
        let gone = Some(WaitNote::TiersGone);
        assert_eq!(unpromised(1, &room(600), &probing, false), gone);
        assert_eq!(
            unpromised(1, &room(600), &probing, true),
            None,
            "a wish is judged by itself"
        );
        let paused = WaitingRoom {
            paused: true,
            ..room(600)
        };
        assert_eq!(
            unpromised(1, &paused, &probing, false),
            None,
            "paused says so, with a range"
        );
        let slowed = QueueStats {
            probes_only: false,
            ..probing
        };
        assert_eq!(
            unpromised(1, &room(600), &slowed, false),
            None,
            "slowed, not down to probes"
        );
    }

    #[test]
    fn buyers_further_back_than_the_stock_will_serve_get_no_range() {
        // 800 more admissions foreseen; a fifth of those reached had left.
        let selling = QueueStats {
            stock_horizon: Some(800),
            ..sale(8_000, 3_000, 2_000)
        };
        // 999 ahead, 799 of them will reach the head: all served before this one.
        assert_eq!(unpromised(1_000, &room(600), &selling, false), None);
        // 1,001 ahead, 800.8 reach the head: the stock is foreseen gone by then.
        assert_eq!(
            unpromised(1_002, &room(600), &selling, false),
            Some(WaitNote::BeyondStock)
        );
        assert_eq!(
            unpromised(1_002, &room(600), &selling, true),
            None,
            "a wish is judged by itself"
        );
        let paused = WaitingRoom {
            paused: true,
            ..room(600)
        };
        assert_eq!(unpromised(1_002, &paused, &selling, false), None);
        let off = WaitingRoom {
            enabled: false,
            ..room(600)
        };
        assert_eq!(unpromised(1_002, &off, &selling, false), None, "a drain");
        let unknown = QueueStats {
            stock_horizon: None,
            ..selling
        };
        assert_eq!(unpromised(50_000, &room(600), &unknown, false), None);
        // Everything left goes to those admitted already: even the first in line.
        let taken = QueueStats {
            stock_horizon: Some(0),
            ..selling
        };
        assert_eq!(
            unpromised(1, &room(600), &taken, false),
            Some(WaitNote::BeyondStock)
        );
    }

    #[test]
    fn without_an_earlier_estimate_what_holds_the_pace_down_is_named_all_the_same() {
        let refusing = QueueStats {
            refusal_per_minute: 60,
            ..sale(10_000, 600, 0)
        };
        assert_eq!(
            estimate(601, &room(600), &refusing, None).note,
            Some(WaitNote::Refusals)
        );
        let slowed = QueueStats {
            effective_per_minute: 120,
            ..sale(10_000, 120, 0)
        };
        assert_eq!(
            estimate(601, &room(600), &slowed, None).note,
            Some(WaitNote::Slowed)
        );
    }

    #[test]
    fn the_range_spans_the_set_rate_and_the_measured_pace() {
        let e = estimate(601, &room(600), &sale(10_000, 300, 0), None);
        assert_eq!((e.low_s, e.high_s, e.note), (60, 121, None));
        assert_eq!(e.shown.rate_per_minute, 600);
    }

    #[test]
    fn before_a_minute_of_sale_the_slow_end_is_two_thirds_of_the_rate() {
        // At the opening: nothing measured yet. 600 ahead at 600 a minute is a minute at the
        // rate, 90 s at two thirds of it; the middle (75 s) is a quarter above the fast end.
        let e = estimate(601, &room(600), &sale(0, 0, 0), None);
        assert_eq!((e.low_s, e.high_s, e.note), (60, 91, None));
    }

    #[test]
    fn abandonment_shortens_the_low_end() {
        let e = estimate(601, &room(600), &sale(7_500, 600, 2_500), None);
        assert_eq!(e.low_s, 45);
    }

    #[test]
    fn the_upper_bound_grows_at_most_a_fifth_between_answers() {
        let before = WaitShown {
            high_s: 100,
            rate_per_minute: 600,
        };
        // Admission at half the rate (the stock or max_active may hold it there): the bound
        // may not jump.
        let e = estimate(601, &room(600), &sale(10_000, 300, 0), Some(before));
        assert_eq!((e.high_s, e.note), (120, None));
        assert!(e.low_s <= e.high_s);
    }

    #[test]
    fn when_the_stock_gate_sets_the_pace_the_bound_follows_it_and_says_so() {
        let before = WaitShown {
            high_s: 100,
            rate_per_minute: 600,
        };
        // Admission slowed to a trickle: the stock gate, not the rate, is the limit.
        let e = estimate(601, &room(600), &sale(10_000, 30, 0), Some(before));
        assert_eq!(e.note, Some(WaitNote::StockGate));
        assert!(e.high_s > 120, "{e:?}");
        let first = estimate(601, &room(600), &sale(10_000, 30, 0), None);
        assert_eq!(first.note, Some(WaitNote::StockGate));
        // Before the sale has run a minute's worth, nothing can tell the gate from a start.
        let early = estimate(601, &room(600), &sale(100, 30, 0), None);
        assert_eq!(early.note, None);
    }

    #[test]
    fn adaptive_admission_sets_the_pace_below_the_rate_and_says_so() {
        let before = WaitShown {
            high_s: 100,
            rate_per_minute: 600,
        };
        let slowed = QueueStats {
            effective_per_minute: 120,
            ..sale(10_000, 120, 0)
        };
        let e = estimate(601, &room(600), &slowed, Some(before));
        assert_eq!(e.note, Some(WaitNote::Slowed));
        assert_eq!(e.shown.rate_per_minute, 120);
        // The fast end is the effective rate's: 600 ahead at 120 a minute.
        assert_eq!(e.low_s, 300);
        // At the set rate again, it is no longer named.
        let back = QueueStats {
            effective_per_minute: 600,
            ..sale(10_000, 600, 0)
        };
        assert_eq!(estimate(601, &room(600), &back, Some(e.shown)).note, None);
    }

    #[test]
    fn refusals_of_admitted_buyers_set_the_pace_and_say_so() {
        let before = WaitShown {
            high_s: 100,
            rate_per_minute: 600,
        };
        // One attempt in ten books: 60 a minute, below adaptive admission's 300.
        let refusing = QueueStats {
            effective_per_minute: 300,
            refusal_per_minute: 60,
            ..sale(10_000, 60, 0)
        };
        let e = estimate(601, &room(600), &refusing, Some(before));
        assert_eq!(e.note, Some(WaitNote::Refusals));
        assert_eq!(e.shown.rate_per_minute, 60);
        // 600 ahead at 60 a minute.
        assert_eq!(e.low_s, 600);
        // Nobody refused lately: the rate is adaptive admission's again, and says so no more.
        let booking = QueueStats {
            effective_per_minute: 300,
            ..sale(10_000, 300, 0)
        };
        let later = estimate(601, &room(600), &booking, Some(e.shown));
        assert_eq!((later.note, later.shown.rate_per_minute), (None, 300));
    }

    #[test]
    fn a_pause_or_a_lower_rate_may_grow_it_and_says_so() {
        let before = WaitShown {
            high_s: 100,
            rate_per_minute: 600,
        };
        let slower = estimate(601, &room(60), &sale(10_000, 60, 0), Some(before));
        assert_eq!(slower.note, Some(WaitNote::RateLowered));
        assert!(slower.high_s > 120);
        let paused_room = WaitingRoom {
            paused: true,
            ..room(600)
        };
        let paused = estimate(601, &paused_room, &sale(10_000, 0, 0), Some(before));
        assert_eq!(paused.note, Some(WaitNote::Paused));
        assert_eq!(paused.shown.rate_per_minute, 0);
        // The answer after the pause may still grow, once, and says why.
        let resumed = estimate(601, &room(600), &sale(10_000, 0, 0), Some(paused.shown));
        assert_eq!(resumed.note, Some(WaitNote::Paused));
    }
}
