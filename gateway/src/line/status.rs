//! What a buyer is told of their entry: [`QueueStatus`], made by one pure function,
//! [`describe`], from where the entry stands and the facts the line read for it (the stock, the
//! sale's pace, the entry token). Nothing here touches Redis or Postgres.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;
use serde::{Deserialize, Serialize};
use ticketing::failure::Failure;
use ticketing::inventory::Shortfall;
use ticketing::queue::{
    self, Line, QueueId, QueueStats, Receipt, ReceiptKeys, Standing, TierStock, Wish,
};
use ticketing::tier::TierCode;
use uuid::Uuid;

use crate::error::ApiError;
use crate::wait::{self, WaitNote};
use ticketing::event::Event;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum QueueState {
    PreQueue,
    Waiting,
    Admitted,
    Expired,
    SoldOut,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueStatus {
    pub queue_id: QueueId,
    pub event_id: Uuid,
    pub state: QueueState,
    /// 1-based place in line while waiting (1 = next).
    pub position: Option<u64>,
    /// People ahead while waiting.
    pub people_ahead: Option<u64>,
    pub estimated_wait_s: Option<u64>,
    /// When to poll again.
    pub poll_after_ms: u64,
    /// The entry token once admitted.
    pub token: Option<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub on_sale_at: DateTime<Utc>,
    /// A sealed receipt of the place in line (while pre-queued or waiting). Send the latest back
    /// on polls (header `X-Queue-Receipt`, or query parameter `receipt`): should the queue lose
    /// its data, the entry comes back at this place. Absent when the poll presented a receipt
    /// that still holds (keep that one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receipt: Option<String>,
    /// `[low, high]` seconds, from the sale's measured pace; the upper bound grows at most 20 %
    /// from one answer to the next unless `wait_note` says why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_wait_range_s: Option<[u64; 2]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_note: Option<WaitNote>,
    /// The tiers and quantities chosen while waiting (`PUT /api/queue/{queue_id}/wish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wish: Option<BTreeMap<String, u32>>,
    /// Every tier of the event while in line: on sale, held, and people ahead wishing for it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierStatus>,
    /// Tiers of the wish that cannot be met at all (less left, held included, than wished): the
    /// place is kept, but admission waits until the wish changes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wish_shortfall: Vec<Shortfall>,
    /// Nothing is on sale now, but some tickets are held by buyers and may come back: keep
    /// waiting (it is not sold out).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_only: bool,
    /// Admitted with the wish's tickets reserved (hold on admission): booking it is one step.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wish_held: bool,
    /// On a stream (`GET /api/queue/{queue_id}/events`): Redis's time (ms) of the worker's
    /// admission or the sell-out that caused this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice_ms: Option<i64>,
}

/// One tier as a buyer in line sees it.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TierStatus {
    pub code: TierCode,
    /// On sale now.
    pub available: i64,
    /// Reserved by buyers now; they may come back.
    pub held: i64,
    /// People ahead whose wish includes this tier, for the tiers of the buyer's own wish (absent
    /// for the others, and before the opening).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wanted_ahead: Option<u64>,
}

/// The longest `poll_after_ms` before jitter: with its 10 % spread, a live page polls at least
/// every `queue::LONGEST_POLL_MS`, which is how long admission waits after a Redis data loss.
const MAX_POLL_AFTER_MS: u64 = queue::LONGEST_POLL_MS * 10 / 11;

/// The header a poll carries its place receipt in.
/// What [`describe`] needs besides the standing: read by the line beforehand, only what the
/// standing asks for.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    /// Each tier's stock, for an entry in line.
    pub stock: &'a [TierStock],
    /// The sale's numbers, for an entry waiting.
    pub sale: Option<&'a QueueStats>,
    /// For an admitted entry: its entry token and when the time to book ends (Redis ms); None
    /// when the admission ended before it was delivered.
    pub token: Option<(String, i64)>,
    /// For an admitted entry with a held wish: whether the hold still holds (a rebuild of the
    /// inventory drops every hold).
    pub wish_held: bool,
}

/// The status of `queue_id` in `event`'s line, as `standing` and `facts` say it at `now`. `held`
/// is the verified receipt the poll presented: one that already says all a new one would
/// (place, generation, the estimate shown) is kept, as sealing a new one would buy nothing.
pub fn describe(
    event: &Event,
    queue_id: QueueId,
    standing: Standing,
    facts: Facts<'_>,
    held: Option<&Receipt>,
    receipt_keys: &ReceiptKeys,
    now: DateTime<Utc>,
) -> Result<QueueStatus, ApiError> {
    let room = event.waiting_room();
    let mut status = QueueStatus {
        queue_id,
        event_id: event.id,
        state: QueueState::Expired,
        position: None,
        people_ahead: None,
        estimated_wait_s: None,
        poll_after_ms: 5_000,
        token: None,
        token_expires_at: None,
        on_sale_at: event.on_sale_at,
        receipt: None,
        estimated_wait_range_s: None,
        wait_note: None,
        wish: None,
        tiers: Vec::new(),
        wish_shortfall: Vec::new(),
        held_only: false,
        wish_held: false,
        notice_ms: None,
    };
    let held = held.filter(|r| r.queue_id == queue_id && r.event_id == event.id);
    let receipt = |place, generation, wait| {
        let current =
            |r: &&Receipt| r.place == place && r.generation == generation && r.wait == wait;
        if held.filter(current).is_some() {
            return None;
        }
        Some(receipt_keys.sign(&Receipt {
            event_id: event.id,
            queue_id,
            place,
            generation,
            issued_ms: now.timestamp_millis(),
            wait,
        }))
    };
    match standing {
        Standing::PreQueue {
            place,
            generation,
            line,
        } => {
            status.state = QueueState::PreQueue;
            status.receipt = receipt(place, generation, None);
            let until_open = (event.on_sale_at - now).num_milliseconds().max(0) as u64;
            status.poll_after_ms = pre_queue_poll_after(until_open);
            describe_line(&mut status, &line, facts.stock);
        }
        Standing::Waiting {
            position,
            place,
            generation,
            line,
        } => {
            status.state = QueueState::Waiting;
            status.position = Some(position);
            status.people_ahead = Some(position.saturating_sub(1));
            let sale = facts.sale.cloned().unwrap_or_default();
            let estimate = wait::estimate(position, &room, &sale, held.and_then(|r| r.wait));
            // Those far back poll rarely; those near the front often enough to act at once.
            status.poll_after_ms =
                jitter((estimate.low_s * 1000 / 10).clamp(1_000, MAX_POLL_AFTER_MS));
            if let Some(why) = wait::unpromised(position, &room, &sale, line.wish.is_some()) {
                // No time is promised, and the receipt keeps the bound last shown: were a range
                // given again, it grows from there or says why.
                status.wait_note = Some(why);
                status.receipt = receipt(place, generation, held.and_then(|r| r.wait));
            } else {
                status.estimated_wait_range_s = Some([estimate.low_s, estimate.high_s]);
                status.estimated_wait_s = Some((estimate.low_s + estimate.high_s).div_ceil(2));
                status.wait_note = estimate.note;
                status.receipt = receipt(place, generation, Some(estimate.shown));
            }
            describe_line(&mut status, &line, facts.stock);
        }
        Standing::Admitted { admitted_as, .. } => {
            let Some((token, expires_ms)) = facts.token else {
                return Ok(status);
            };
            status.state = QueueState::Admitted;
            status.token = Some(token);
            status.token_expires_at = Utc.timestamp_millis_opt(expires_ms).single();
            status.poll_after_ms = 10_000;
            if let Some(admitted_as) = admitted_as {
                status.wish = admitted_as.wish.as_ref().map(wish_map);
                status.wish_held = admitted_as.held && facts.wish_held;
            }
        }
        Standing::SoldOut => status.state = QueueState::SoldOut,
        Standing::Full => return Err(Failure::Unavailable("the line is full; try again").into()),
        Standing::Expired | Standing::NotFound | Standing::NoConfig => {}
    }
    Ok(status)
}

/// The state's name in metrics.
pub fn state_label(state: QueueState) -> &'static str {
    match state {
        QueueState::PreQueue => "pre_queue",
        QueueState::Waiting => "waiting",
        QueueState::Admitted => "admitted",
        QueueState::Expired => "expired",
        QueueState::SoldOut => "sold_out",
    }
}

/// What the line tells a buyer of the stock and of their wish.
fn describe_line(status: &mut QueueStatus, line: &Line, stock: &[TierStock]) {
    let tiers = line.tiers(stock);
    status.wish = line.wish.as_ref().map(wish_map);
    status.wish_shortfall = queue::wish::shortfall(line.wish.as_ref(), &tiers);
    status.held_only = queue::wish::held_only(&tiers);
    status.tiers = tiers
        .into_iter()
        .map(|t| TierStatus {
            code: t.code,
            available: t.available,
            held: t.held,
            wanted_ahead: t.wanted_ahead,
        })
        .collect();
}

fn wish_map(wish: &Wish) -> BTreeMap<String, u32> {
    wish.0
        .iter()
        .map(|(code, q)| (code.to_string(), *q))
        .collect()
}

/// A pre-queue page polls at the longest interval until the opening nears; then its next poll is
/// set for just after the opening, spread at random over the longest interval, so a million
/// pre-queued pages never poll in the same second. The spread is drawn afresh for every answer
/// and owes nothing to the entry's lot: before the opening no answer may tell a visitor where
/// its lot fell (a bot would keep its best identities and drop the rest). Pages stay alive: no
/// two of their polls are more than three intervals apart, well inside the two liveness windows.
fn pre_queue_poll_after(until_open_ms: u64) -> u64 {
    if until_open_ms > 2 * MAX_POLL_AFTER_MS {
        return jitter(MAX_POLL_AFTER_MS);
    }
    until_open_ms + 500 + rand::thread_rng().gen_range(0..=MAX_POLL_AFTER_MS)
}

/// Spreads polls of people who joined together so they do not arrive in waves.
fn jitter(ms: u64) -> u64 {
    let spread = ms / 10;
    ms - spread + rand::thread_rng().gen_range(0..=spread * 2)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use ticketing::queue::{AdmittedAs, Generation, Place, RoomColumns};

    use super::*;

    fn event(on_sale_in: Duration) -> Event {
        Event {
            id: Uuid::new_v4(),
            short_id: 7,
            name: "Status".into(),
            venue_id: Uuid::new_v4(),
            venue_name: "Hall".into(),
            starts_at: Utc::now() + Duration::days(30),
            on_sale_at: Utc::now() + on_sale_in,
            room: RoomColumns {
                wr_enabled: true,
                admission_per_minute: 600,
                max_active: 100,
                paused: false,
                token_ttl_s: 300,
                drain_per_minute: 0,
                headroom_pct: 10,
                hold_on_admission: false,
                adaptive_target_p95_ms: None,
                adaptive_max_503_pct: None,
                adaptive_floor_per_minute: None,
            },
            max_per_booking: 4,
            tier_codes: vec!["GA".parse().unwrap()],
        }
    }

    fn keys() -> ReceiptKeys {
        ReceiptKeys::parse("keys", "k1:a-receipt-secret-for-tests-0001").unwrap()
    }

    fn stock() -> Vec<TierStock> {
        vec![TierStock {
            code: "GA".parse().unwrap(),
            available: 40,
            held: 2,
        }]
    }

    /// A sale with ten in line and nothing measured yet.
    fn ten_waiting() -> QueueStats {
        QueueStats {
            waiting: 10,
            ..QueueStats::default()
        }
    }

    fn line() -> Line {
        Line {
            wish: None,
            wanted_ahead: vec![None],
        }
    }

    #[test]
    fn a_pre_queue_answer_tells_nothing_of_the_lot() {
        let event = event(Duration::hours(1));
        let queue_id = QueueId(Uuid::new_v4());
        let stock = stock();
        let answer = |lot: i64| {
            describe(
                &event,
                queue_id,
                Standing::PreQueue {
                    place: Place(lot << 28),
                    generation: Generation(1),
                    line: line(),
                },
                Facts {
                    stock: &stock,
                    ..Facts::default()
                },
                None,
                &keys(),
                Utc::now(),
            )
            .unwrap()
        };
        let (best, worst) = (answer(1), answer((1 << 24) - 1));
        for status in [&best, &worst] {
            assert_eq!(status.state, QueueState::PreQueue);
            assert_eq!(status.position, None);
            assert_eq!(status.estimated_wait_s, None);
            assert!(status.receipt.is_some(), "a sealed receipt");
            let longest = MAX_POLL_AFTER_MS + MAX_POLL_AFTER_MS / 10;
            assert!(status.poll_after_ms <= longest, "{}", status.poll_after_ms);
        }
        assert_eq!(best.tiers.len(), 1);
        assert_eq!(best.tiers[0].available, 40);
    }

    #[test]
    fn a_waiting_answer_tells_the_place_and_keeps_a_receipt_that_still_holds() {
        let event = event(-Duration::minutes(1));
        let queue_id = QueueId(Uuid::new_v4());
        let stock = stock();
        let sale = ten_waiting();
        let standing = || Standing::Waiting {
            position: 3,
            place: Place(1 << 52),
            generation: Generation(1),
            line: line(),
        };
        let facts = || Facts {
            stock: &stock,
            sale: Some(&sale),
            ..Facts::default()
        };
        let now = Utc::now();
        let first = describe(&event, queue_id, standing(), facts(), None, &keys(), now).unwrap();
        assert_eq!(first.state, QueueState::Waiting);
        assert_eq!((first.position, first.people_ahead), (Some(3), Some(2)));
        let [low, high] = first.estimated_wait_range_s.unwrap();
        assert!(low <= high);
        // At least a second, less the 10 % jitter; at most the longest, plus it.
        assert!((900..=MAX_POLL_AFTER_MS + MAX_POLL_AFTER_MS / 10).contains(&first.poll_after_ms));
        let held = keys().verify(first.receipt.as_deref().unwrap()).unwrap();
        let again = describe(
            &event,
            queue_id,
            standing(),
            facts(),
            Some(&held),
            &keys(),
            now,
        )
        .unwrap();
        assert_eq!(
            again.receipt, None,
            "the receipt presented still says it all"
        );
        let elsewhere = describe(
            &event,
            QueueId(Uuid::new_v4()),
            standing(),
            facts(),
            Some(&held),
            &keys(),
            now,
        )
        .unwrap();
        assert!(
            elsewhere.receipt.is_some(),
            "another entry's receipt is not kept"
        );
    }

    #[test]
    fn a_buyer_without_a_wish_is_promised_no_time_once_admissions_are_down_to_probes() {
        let event = event(-Duration::minutes(1));
        let queue_id = QueueId(Uuid::new_v4());
        let stock = stock();
        let moving = ten_waiting();
        let probing = QueueStats {
            refusal_per_minute: 15,
            probes_only: true,
            ..moving
        };
        let answer = |sale: &QueueStats, wish: Option<Wish>, held: Option<&Receipt>| {
            let standing = Standing::Waiting {
                position: 300,
                place: Place(1 << 52),
                generation: Generation(1),
                line: Line { wish, ..line() },
            };
            let facts = Facts {
                stock: &stock,
                sale: Some(sale),
                ..Facts::default()
            };
            describe(&event, queue_id, standing, facts, held, &keys(), Utc::now()).unwrap()
        };
        let first = answer(&moving, None, None);
        let [_, high] = first.estimated_wait_range_s.unwrap();
        let held = keys().verify(first.receipt.as_deref().unwrap()).unwrap();
        let gone = answer(&probing, None, Some(&held));
        assert_eq!(gone.wait_note, Some(WaitNote::TiersGone));
        assert_eq!(
            (gone.estimated_wait_range_s, gone.estimated_wait_s),
            (None, None)
        );
        assert_eq!(
            gone.receipt, None,
            "the receipt keeps the bound last shown: {high} s"
        );
        // A wish is judged by itself: it keeps a range.
        let wished = answer(&probing, Some(Wish::parse("GA=2")), Some(&held));
        assert!(wished.estimated_wait_range_s.is_some());
        assert_ne!(wished.wait_note, Some(WaitNote::TiersGone));
    }

    #[test]
    fn an_admission_tells_its_token_or_that_it_ended_undelivered() {
        let event = event(-Duration::minutes(1));
        let queue_id = QueueId(Uuid::new_v4());
        let admitted = || Standing::Admitted {
            expires_ms: 0,
            token: None,
            admitted_as: Some(AdmittedAs {
                wish: Some(Wish::parse("GA=2")),
                held: true,
            }),
        };
        let until = Utc::now() + Duration::minutes(5);
        let with_token = describe(
            &event,
            queue_id,
            admitted(),
            Facts {
                token: Some(("signed".into(), until.timestamp_millis())),
                wish_held: true,
                ..Facts::default()
            },
            None,
            &keys(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(with_token.state, QueueState::Admitted);
        assert_eq!(with_token.token.as_deref(), Some("signed"));
        assert_eq!(
            with_token.token_expires_at.map(|t| t.timestamp_millis()),
            Some(until.timestamp_millis())
        );
        assert_eq!(
            with_token.wish,
            Some(BTreeMap::from([("GA".to_string(), 2)]))
        );
        assert!(with_token.wish_held);
        let ended = describe(
            &event,
            queue_id,
            admitted(),
            Facts::default(),
            None,
            &keys(),
            Utc::now(),
        )
        .unwrap();
        assert_eq!(ended.state, QueueState::Expired);
        assert_eq!(ended.token, None);
    }

    #[test]
    fn sold_out_expired_and_a_full_line() {
        let event = event(-Duration::minutes(1));
        let queue_id = QueueId(Uuid::new_v4());
        let tell = |standing| {
            describe(
                &event,
                queue_id,
                standing,
                Facts::default(),
                None,
                &keys(),
                Utc::now(),
            )
        };
        assert_eq!(tell(Standing::SoldOut).unwrap().state, QueueState::SoldOut);
        assert_eq!(tell(Standing::Expired).unwrap().state, QueueState::Expired);
        assert!(matches!(
            tell(Standing::Full),
            Err(ApiError::Failure(Failure::Unavailable(_)))
        ));
    }
}
