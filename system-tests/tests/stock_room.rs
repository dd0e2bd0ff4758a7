//! The inventory-aware waiting room end to end: buyers choose while they wait, are told each
//! tier's stock at their next poll, and are admitted only for what the stock can serve; with hold
//! on admission the wish is theirs the moment they are admitted. Admission is stepped by hand
//! (the worker's admission tick is set an hour apart) so each step's outcome can be named; the
//! worker still sweeps holds. Every test ends with the ledger: Redis agrees with Postgres.

use std::time::Duration;

use gateway::wait::WaitNote;
use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::{eventually, Options, QueueState, System};
use ticketing::inventory;
use ticketing::queue::{self, QueueId};
use ticketing::tier::TierCode;
use uuid::Uuid;

const TIERS: [&str; 2] = ["GA", "VIP"];

async fn start(db: PgPool) -> System {
    System::start_with(
        db,
        Options {
            admit_interval: Duration::from_secs(3600),
            sweep_interval: Duration::from_millis(100),
            ..Options::default()
        },
    )
    .await
}

async fn open_event(system: &System, ga: i32, vip: i32, hold_on_admission: bool) -> Uuid {
    let event = system
        .create_event(
            &[("GA", ga), ("VIP", vip)],
            json!({"enabled": true, "admission_per_minute": 60000, "max_active": 1000,
                   "paused": false, "token_ttl_s": 600, "hold_on_admission": hold_on_admission}),
        )
        .await;
    assert_eq!(admit(system, event).await.admitted, 0, "nobody in line yet");
    event
}

fn tiers() -> Vec<TierCode> {
    TIERS.iter().map(|t| TierCode::known(t)).collect()
}

/// One admission step, as the worker takes it. The rate (1,000 a second) refills its bucket
/// between steps; the first step of an event only starts the bucket, so `open_event` takes it.
async fn admit(system: &System, event: Uuid) -> queue::AdmissionStep {
    tokio::time::sleep(Duration::from_millis(100)).await;
    queue::admit(&system.redis, event, 1000, &tiers())
        .await
        .expect("admission step")
}

/// Joins as `visitor` and returns the queue id.
async fn join(system: &System, event: Uuid, visitor: &str) -> String {
    let entry = system.enter(event, visitor).await;
    assert_eq!(entry.state, QueueState::Waiting, "{entry:?}");
    entry.queue_id.to_string()
}

async fn wish(system: &System, queue_id: &str, tiers: Value) -> (u16, Value) {
    let response = system
        .http
        .put(format!("{}/api/queue/{queue_id}/wish", system.gateway))
        .json(&json!({ "tiers": tiers }))
        .send()
        .await
        .expect("wish");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A gateway reads each tier's stock at most every 100 ms (it is the event's, the same for every
/// poll): a change is told from then on.
async fn stock_settles() {
    tokio::time::sleep(Duration::from_millis(150)).await;
}

fn tier<'a>(status: &'a Value, code: &str) -> &'a Value {
    status["tiers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["code"] == code))
        .unwrap_or_else(|| panic!("no {code} in {status}"))
}

/// Polls until admitted and books `tiers` with the entry token it got.
async fn book(system: &System, event: Uuid, queue_id: &str, tiers: Value) -> (u16, Value) {
    let entry = system.status(queue_id).await;
    assert_eq!(entry.state, QueueState::Admitted, "{entry:?}");
    let token = entry.token.as_deref().expect("token");
    system
        .book(
            token,
            &json!({"event_id": event, "tiers": tiers, "buyer_email": "fan@example.com"}),
            None,
        )
        .await
}

/// Two buyers are admitted and book two GA each: the sale's history then says every booking took
/// GA, two tickets a booking.
async fn two_bookings_of_two_ga(system: &System, event: Uuid) {
    let mut first = Vec::new();
    for i in 0..2 {
        first.push(join(system, event, &format!("early-{i}")).await);
    }
    assert_eq!(admit(system, event).await.admitted, 2);
    for queue_id in &first {
        let (status, body) = book(system, event, queue_id, json!({"GA": 2})).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// `n` buyers join (`ga-0`, `ga-1`, ...), each wishing for two GA: their queue ids in order.
async fn join_wishing_two_ga(system: &System, event: Uuid, n: usize) -> Vec<String> {
    let mut ga = Vec::new();
    for i in 0..n {
        let queue_id = join(system, event, &format!("ga-{i}")).await;
        assert_eq!(wish(system, &queue_id, json!({"GA": 2})).await.0, 200);
        ga.push(queue_id);
    }
    ga
}

/// One of the event's statistics (`ev:{E}:stats`), 0 when unset.
async fn stats_field(system: &System, event: Uuid, field: &str) -> i64 {
    let value: Option<i64> = redis::cmd("HGET")
        .arg(ticketing::keys::EventKeys::new(event).stats())
        .arg(field)
        .query_async(&mut system.redis.clone())
        .await
        .expect("a statistic");
    value.unwrap_or(0)
}

/// What admitted buyers count against each tier (`admd`: `<code>` fresh, `<code>~` and `<code>^`
/// stale), in hundredths.
async fn counted_demand(system: &System, event: Uuid) -> std::collections::HashMap<String, i64> {
    redis::cmd("HGETALL")
        .arg(ticketing::keys::EventKeys::new(event).demand())
        .query_async(&mut system.redis.clone())
        .await
        .expect("counted demand")
}

#[sqlx::test(migrations = "../migrations")]
async fn a_tier_selling_out_first_is_told_at_the_next_poll_and_never_admitted_for(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 4, 20, false).await;
    let ga = [
        join(&system, event, "ga-1").await,
        join(&system, event, "ga-2").await,
        join(&system, event, "ga-3").await,
    ];
    let vip = join(&system, event, "vip-1").await;
    for queue_id in &ga {
        let (status, body) = wish(&system, queue_id, json!({"GA": 2})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["wish"], json!({"GA": 2}));
    }
    assert_eq!(wish(&system, &vip, json!({"VIP": 1})).await.0, 200);

    // Bad wishes are refused plainly.
    let (status, body) = wish(&system, &vip, json!({"Balcony": 1})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_request"))
    );
    let (status, _) = wish(&system, &vip, json!({"VIP": 9})).await;
    assert_eq!(status, 422, "above max_per_booking (8)");
    let (status, body) = wish(&system, &vip, json!({"GA": 5})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("insufficient_inventory"))
    );
    assert_eq!(body["error"]["shortfall"][0]["available"], 4);

    // The third GA buyer sees the stock and the two ahead who want it.
    let (_, third) = system.poll(&ga[2]).await;
    assert_eq!(tier(&third, "GA")["available"], 4);
    assert_eq!(tier(&third, "GA")["wanted_ahead"], 2);
    assert_eq!(
        tier(&third, "VIP")["wanted_ahead"],
        Value::Null,
        "asked for its wish's tiers only"
    );
    let range = third["estimated_wait_range_s"].as_array().expect("a range");
    assert!(range[0].as_u64() <= range[1].as_u64(), "{third}");

    // 4 GA with 10 % headroom serve two buyers of 2; the third waits for GA, and the VIP buyer
    // behind is not held up by it.
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 3, "{step:?}");
    assert_eq!(system.poll(&ga[2]).await.1["state"], "waiting");
    assert_eq!(system.poll(&vip).await.1["state"], "admitted");

    for queue_id in &ga[..2] {
        let (status, body) = book(&system, event, queue_id, json!({"GA": 2})).await;
        assert_eq!(status, 201, "{body}");
    }
    // GA is gone (nothing on sale, nothing held): told at the next poll, place kept.
    stock_settles().await;
    let (_, third) = system.poll(&ga[2]).await;
    assert_eq!(third["state"], "waiting", "{third}");
    assert_eq!(third["position"], 1, "{third}");
    assert_eq!(third["wish_shortfall"][0]["tier"], "GA", "{third}");
    assert_eq!(tier(&third, "GA")["available"], 0);
    assert_eq!(tier(&third, "GA")["held"], 0);

    // A later VIP buyer goes in past the buyer whose wish cannot be met, who is parked.
    let late = join(&system, event, "vip-2").await;
    assert_eq!(wish(&system, &late, json!({"VIP": 1})).await.0, 200);
    let step = admit(&system, event).await;
    assert_eq!((step.admitted, step.parked), (1, 1), "{step:?}");
    assert_eq!(system.poll(&late).await.1["state"], "admitted");
    let (_, third) = system.poll(&ga[2]).await;
    assert_eq!(third["state"], "waiting", "parked, not admitted: {third}");

    // Changing the wish to what is left puts the buyer back at the same place: next in.
    let (status, body) = wish(&system, &ga[2], json!({"VIP": 2})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["wish_shortfall"], Value::Null, "{body}");
    assert_eq!(body["position"], 1, "{body}");
    assert_eq!(admit(&system, event).await.admitted, 1);
    let (status, body) = book(&system, event, &ga[2], json!({"VIP": 2})).await;
    assert_eq!(status, 201, "{body}");

    // Nobody admitted was refused for stock; the ledger holds.
    for queue_id in [&vip, &late] {
        assert_eq!(
            book(&system, event, queue_id, json!({"VIP": 1})).await.0,
            201
        );
    }
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn hold_on_admission_reserves_the_wish_and_booking_claims_it(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 3, 10, true).await;
    let first = join(&system, event, "first").await;
    let second = join(&system, event, "second").await;
    assert_eq!(wish(&system, &first, json!({"GA": 2})).await.0, 200);
    assert_eq!(wish(&system, &second, json!({"GA": 2})).await.0, 200);

    // The first is admitted with 2 GA held; the second must wait (1 on sale, 2 held: they may
    // come back).
    assert_eq!(admit(&system, event).await.admitted, 1);
    let (_, admitted) = system.poll(&first).await;
    assert_eq!(admitted["state"], "admitted", "{admitted}");
    assert_eq!(admitted["wish_held"], true, "{admitted}");
    assert_eq!(admitted["wish"], json!({"GA": 2}));
    stock_settles().await;
    let (_, waiting) = system.poll(&second).await;
    assert_eq!(tier(&waiting, "GA")["available"], 1, "{waiting}");
    assert_eq!(tier(&waiting, "GA")["held"], 2, "{waiting}");
    assert_eq!(
        waiting["wish_shortfall"],
        Value::Null,
        "held tickets may come back: {waiting}"
    );

    // Booking the wish claims the hold: the same numbers, no second reservation.
    let first_id = QueueId(first.parse().unwrap());
    let hold = inventory::admission_hold_id(first_id);
    let before = inventory::snapshot(&system.redis, event).await.unwrap();
    let held_numbers = before
        .holds
        .get(&hold)
        .cloned()
        .expect("the admission hold");
    let (status, booking) = book(&system, event, &first, json!({"GA": 2})).await;
    assert_eq!(status, 201, "{booking}");
    let mut numbers: Vec<i64> = booking["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    numbers.sort();
    let mut expected: Vec<i64> = held_numbers["GA"].iter().map(|n| i64::from(*n)).collect();
    expected.sort();
    assert_eq!(numbers, expected, "the held numbers were booked");
    let after = inventory::snapshot(&system.redis, event).await.unwrap();
    assert!(!after.holds.contains_key(&hold), "the hold was claimed");
    assert_eq!(after.tiers["GA"].held, 0);

    // Now 1 GA is left and none held: the second's wish cannot be met; it is parked and told.
    let step = admit(&system, event).await;
    assert_eq!((step.admitted, step.parked), (0, 1), "{step:?}");
    stock_settles().await;
    assert_eq!(
        system.poll(&second).await.1["wish_shortfall"][0]["available"],
        1
    );
    assert_eq!(wish(&system, &second, json!({"GA": 1})).await.0, 200);
    assert_eq!(admit(&system, event).await.admitted, 1);
    assert_eq!(system.poll(&second).await.1["wish_held"], true);

    // The second leaves instead of booking: the hold returns to sale at the sweeper's next pass.
    let response = system
        .http
        .delete(format!("{}/api/queue/{second}", system.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    eventually(
        Duration::from_secs(5),
        "the left buyer's hold returns",
        || async {
            let snapshot = inventory::snapshot(&system.redis, event).await.unwrap();
            (snapshot.tiers["GA"].available == 1 && snapshot.tiers["GA"].held == 0).then_some(())
        },
    )
    .await;
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_closed_page_leaves_after_its_grace_unless_it_polls_again(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(
            &[("GA", 100)],
            json!({"enabled": true, "admission_per_minute": 1, "max_active": 1, "paused": true}),
        )
        .await;
    let reloaded = join(&system, event, "reloads").await;
    let closed = join(&system, event, "closes").await;
    for queue_id in [&reloaded, &closed] {
        let response = system
            .http
            .delete(format!("{}/api/queue/{queue_id}?grace_s=1", system.gateway))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    // The reload polls at once: it keeps its place.
    assert_eq!(system.poll(&reloaded).await.1["state"], "waiting");
    // The closed page never polls again (a poll would cancel its leave): watch the line itself.
    let closed_id: QueueId = closed.parse().unwrap();
    eventually(
        Duration::from_secs(5),
        "the closed page's entry is gone",
        || async {
            let place: Option<f64> = redis::cmd("ZSCORE")
                .arg(ticketing::keys::EventKeys::new(event).waiting())
                .arg(closed_id)
                .query_async(&mut system.redis.clone())
                .await
                .unwrap();
            place.is_none().then_some(())
        },
    )
    .await;
    assert_eq!(system.poll(&closed).await.0, 404);
    let (status, body) = system.poll(&reloaded).await;
    assert_eq!(
        (status, body["position"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let bad = system
        .http
        .delete(format!(
            "{}/api/queue/{reloaded}?grace_s=600",
            system.gateway
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_rebuild_drops_admission_holds_and_their_buyers_still_book(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 3, 10, true).await;
    let buyer = join(&system, event, "held-then-rebuilt").await;
    assert_eq!(wish(&system, &buyer, json!({"GA": 2})).await.0, 200);
    assert_eq!(admit(&system, event).await.admitted, 1);
    assert_eq!(system.poll(&buyer).await.1["wish_held"], true);

    // Drift repair (or a Redis loss) rebuilds the inventory from Postgres: holds are not there.
    ticketing::rebuild::rebuild_inventory(
        &system.db,
        &system.redis,
        event,
        ticketing::rebuild::When::Always,
    )
    .await
    .expect("rebuild");
    let snapshot = inventory::snapshot(&system.redis, event).await.unwrap();
    assert_eq!(
        (snapshot.tiers["GA"].available, snapshot.tiers["GA"].held),
        (3, 0)
    );
    let (_, status) = system.poll(&buyer).await;
    assert_eq!(status["state"], "admitted");
    assert_eq!(
        status["wish_held"],
        Value::Null,
        "no false promise: {status}"
    );

    // The buyer books as one admitted without a hold.
    let (status, body) = book(&system, event, &buyer, json!({"GA": 2})).await;
    assert_eq!(status, 201, "{body}");
    system.assert_inventory_agrees(event).await;
}

/// A buyer told no for stock gives back its slot at once: with `max_active` 2 and a third buyer
/// waiting, the refused one's slot admits the third at the next step (not after its token's ten
/// minutes), and the refused buyer still books what is left with the same token.
#[sqlx::test(migrations = "../migrations")]
async fn a_buyer_refused_for_stock_gives_back_its_slot_and_keeps_its_token(db: PgPool) {
    let system = start(db).await;
    let event = system
        .create_event(
            &[("GA", 4), ("VIP", 10)],
            json!({"enabled": true, "admission_per_minute": 60000, "max_active": 2,
                   "paused": false, "token_ttl_s": 600, "headroom_pct": 1000}),
        )
        .await;
    assert_eq!(admit(&system, event).await.admitted, 0);
    let (first, second, third) = (
        join(&system, event, "first").await,
        join(&system, event, "second").await,
        join(&system, event, "third").await,
    );
    assert_eq!(admit(&system, event).await.admitted, 2, "max_active");
    let (status, _) = book(&system, event, &first, json!({"GA": 3})).await;
    assert_eq!(status, 201);
    let (status, refused) = book(&system, event, &second, json!({"GA": 2})).await;
    assert_eq!(status, 409, "{refused}");
    let stats = queue::stats(&system.redis, event).await.unwrap();
    assert_eq!(
        stats.active, 0,
        "the booked slot and the refused one are both free"
    );
    assert_eq!(
        admit(&system, event).await.admitted,
        1,
        "the third gets in now"
    );
    assert_eq!(system.poll(&third).await.1["state"], "admitted");
    // The refused buyer's token still books what is left, and a second refusal gives back
    // nothing more.
    let (status, _) = book(&system, event, &second, json!({"GA": 3})).await;
    assert_eq!(status, 409);
    let (status, booked) = book(&system, event, &second, json!({"GA": 1})).await;
    assert_eq!(status, 201, "{booked}");
    let given_back: Option<i64> = redis::cmd("HGET")
        .arg(ticketing::keys::EventKeys::new(event).stats())
        .arg("given_back_total")
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    assert_eq!(given_back, Some(1));
    system.assert_inventory_agrees(event).await;
}

/// Sets one of the room's timings in Redis (the release writes 49 s and 30 s): what a test
/// shortens to see it happen.
async fn shorten(system: &System, event: Uuid, field: &str, ms: u64) {
    set_room(system, event, field, ms).await;
}

/// Sets one of the room's settings in Redis, where admission reads it.
async fn set_room(system: &System, event: Uuid, field: &str, value: u64) {
    let _: () = redis::cmd("HSET")
        .arg(ticketing::keys::EventKeys::new(event).queue_config())
        .arg(field)
        .arg(value)
        .query_async(&mut system.redis.clone())
        .await
        .expect("a room setting");
}

async fn alive(system: &System, queue_id: &str) -> u16 {
    system
        .http
        .post(format!("{}/api/queue/{queue_id}/alive", system.gateway))
        .send()
        .await
        .expect("alive")
        .status()
        .as_u16()
}

/// Absent buyers hold up nobody: an admission nobody came for is reclaimed after the delivery
/// window (slot, demand and its hold), and a delivered one whose page went silent gives back
/// its slot while its token still books; a page that keeps its heartbeat keeps its slot.
#[sqlx::test(migrations = "../migrations")]
async fn absent_admissions_give_back_their_slots_and_present_ones_keep_them(db: PgPool) {
    let system = start(db).await;
    let event = system
        .create_event(
            &[("GA", 20), ("VIP", 10)],
            json!({"enabled": true, "admission_per_minute": 60000, "max_active": 2,
                   "paused": false, "token_ttl_s": 600, "hold_on_admission": true}),
        )
        .await;
    assert_eq!(admit(&system, event).await.admitted, 0);
    shorten(&system, event, "delivery_window_ms", 1_000).await;
    shorten(&system, event, "page_gone_ms", 1_000).await;
    let never = join(&system, event, "never-comes").await;
    assert_eq!(wish(&system, &never, json!({"GA": 2})).await.0, 200);
    let silent = join(&system, event, "goes-silent").await;
    let present = join(&system, event, "stays").await;
    let last = join(&system, event, "last").await;
    assert_eq!(
        admit(&system, event).await.admitted,
        2,
        "never-comes and goes-silent"
    );
    let held = inventory::snapshot(&system.redis, event).await.unwrap();
    assert_eq!(
        held.tiers[&TierCode::known("GA")].held,
        2,
        "the wish is held"
    );
    // goes-silent takes its token, then its page is gone.
    let (status, delivered) = system.poll(&silent).await;
    assert_eq!(
        (status, delivered["state"].as_str()),
        (200, Some("admitted"))
    );
    let token = delivered["token"].as_str().unwrap().to_string();

    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let step = admit(&system, event).await;
    assert_eq!(step.expired, 1, "never-comes is reclaimed undelivered");
    assert_eq!(
        step.admitted, 2,
        "both slots go to the next in line: {step:?}"
    );
    assert_eq!(system.poll(&never).await.1["state"], "expired");
    // Its hold goes back on sale at the sweeper's next pass.
    eventually(
        Duration::from_secs(5),
        "the undelivered hold returned",
        || async {
            let stock = inventory::snapshot(&system.redis, event).await.ok()?;
            stock.tiers.values().all(|t| t.held == 0).then_some(())
        },
    )
    .await;
    // goes-silent still books with its token.
    let (status, booked) = system
        .book(
            &token,
            &json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": "back@example.com"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{booked}");

    // stays keeps its slot with a heartbeat; last, silent, gives its back.
    assert_eq!(system.poll(&present).await.1["state"], "admitted");
    assert_eq!(system.poll(&last).await.1["state"], "admitted");
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(alive(&system, &present).await, 204);
    }
    admit(&system, event).await;
    let stats = queue::stats(&system.redis, event).await.unwrap();
    assert_eq!(stats.active, 1, "only the page still there holds a slot");
    assert_eq!(alive(&system, &last).await, 404, "its slot is given back");
    assert_eq!(alive(&system, &never).await, 404);
    let gone: Option<i64> = redis::cmd("HGET")
        .arg(ticketing::keys::EventKeys::new(event).stats())
        .arg("page_gone_total")
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    assert_eq!(gone, Some(2), "goes-silent and last");
    system.assert_inventory_agrees(event).await;
}

/// A buyer without a wish counts what one booking takes (2 tickets before any booking), spread
/// over the tiers on sale, not two per tier: on a three-tier event that is 2, not 6.
#[sqlx::test(migrations = "../migrations")]
async fn a_buyer_without_a_wish_counts_one_bookings_tickets_over_the_tiers_on_sale(db: PgPool) {
    let system = start(db).await;
    let event = system
        .create_event(
            &[("GA", 60), ("VIP", 30), ("FRONT", 10)],
            json!({"enabled": true, "admission_per_minute": 60000, "max_active": 1000,
                   "paused": false, "token_ttl_s": 600}),
        )
        .await;
    let codes: Vec<TierCode> = ["GA", "VIP", "FRONT"]
        .iter()
        .map(|c| TierCode::known(c))
        .collect();
    let step = || async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        queue::admit(&system.redis, event, 1000, &codes)
            .await
            .unwrap()
    };
    step().await;
    join(&system, event, "no-wish").await;
    assert_eq!(step().await.admitted, 1);
    let counted = counted_demand(&system, event).await;
    assert_eq!(
        counted.values().sum::<i64>(),
        200,
        "two tickets in all: {counted:?}"
    );
    assert_eq!(counted["GA"], 120, "by what is left: {counted:?}");
    assert_eq!(counted["FRONT"], 20, "{counted:?}");
}

/// The wish-less gate meets a tier few take: when every booking so far took GA, buyers without a
/// wish are gated by what is left of GA (two tickets each, as the bookings took), not by GA and
/// VIP together, whose sum would let in VIP's worth of buyers who want GA like everyone before
/// them. A wish for VIP still goes in past them.
#[sqlx::test(migrations = "../migrations")]
async fn buyers_without_a_wish_are_gated_by_each_tier_by_what_bookings_take_of_it(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 28, 100, false).await;
    two_bookings_of_two_ga(&system, event).await;
    // 24 GA left, 10 % headroom: 26.4 tickets, 13 buyers of two. VIP's 100 let in nobody more.
    for i in 0..20 {
        join(&system, event, &format!("no-wish-{i}")).await;
    }
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 13, "GA's share gates them: {step:?}");
    assert_eq!(admit(&system, event).await.admitted, 0);
    let vip = join(&system, event, "vip").await;
    assert_eq!(wish(&system, &vip, json!({"VIP": 1})).await.0, 200);
    assert_eq!(
        admit(&system, event).await.admitted,
        1,
        "the VIP wish goes ahead"
    );
    assert_eq!(system.status(&vip).await.state, QueueState::Admitted);
    system.assert_inventory_agrees(event).await;
}

/// Stale demand meets the gate, a late delivery and a booking: admitted buyers whose pages have
/// not come for their tokens within the longest poll interval (shortened here to 1 s) stop
/// holding the stock at full weight, so the next buyer goes in without waiting for their slots
/// to be reclaimed (49 s); one that comes after all is fresh again and teaches the gate; nobody
/// is refused for it.
#[sqlx::test(migrations = "../migrations")]
async fn absent_admissions_stop_holding_the_stock_once_stale_and_a_late_one_counts_again(
    db: PgPool,
) {
    let system = start(db).await;
    let event = open_event(&system, 4, 20, false).await;
    shorten(&system, event, "fresh_undelivered_ms", 1_000).await;
    let ga = join_wishing_two_ga(&system, event, 3).await;
    // 4 GA with 10 % headroom: two buyers of two; neither page comes.
    assert_eq!(admit(&system, event).await.admitted, 2);
    assert_eq!(admit(&system, event).await.admitted, 0, "GA is counted");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // Both stale now, counted at (0 back + 2 * 1/4) / (2 stale + 2): an eighth, the sale's share
    // so far being (0 + 1) / (2 + 2). Well before the 4.5 s probe, the third goes in.
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 1, "{step:?}");
    assert_eq!(stats_field(&system, event, "stale_total").await, 2);
    assert_eq!(system.status(&ga[2]).await.state, QueueState::Admitted);
    // The first comes after all: fresh again, and the gate learns.
    let (status, body) = book(&system, event, &ga[0], json!({"GA": 2})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(stats_field(&system, event, "stale_back").await, 1);
    let (status, body) = book(&system, event, &ga[2], json!({"GA": 2})).await;
    assert_eq!(status, 201, "{body}");
    let counted = counted_demand(&system, event).await;
    assert_eq!(
        counted.get("GA^"),
        Some(&200),
        "the absent one: {counted:?}"
    );
    assert_eq!(counted.get("GA"), Some(&0), "{counted:?}");
    system.assert_inventory_agrees(event).await;
}

/// Stale demand meets a tier's last tickets: a pile of absent admissions counts at the share
/// of its kind this sale has seen come back, not at a share drawn towards a half. Ten buyers
/// admitted for 20 GA while the headroom was wide never come for their tokens; with 2 GA left
/// and the headroom back at 10 %, none of the sale's undelivered having come back, they count
/// (0 + 2 * 1/12) / (10 + 2) of their 20 tickets, 0.28, and a buyer for the last ticket goes in
/// at once (at Laplace's 1/12 they counted 1.67 and held it out until a probe). One who comes
/// after all counts in full again and is counted as back.
#[sqlx::test(migrations = "../migrations")]
async fn absent_admissions_the_sale_never_saw_come_back_do_not_hold_a_tiers_last_tickets(
    db: PgPool,
) {
    let system = start(db).await;
    let event = open_event(&system, 2, 20, false).await;
    shorten(&system, event, "fresh_undelivered_ms", 1_000).await;
    set_room(&system, event, "headroom_pct", 1_000).await;
    let absent = join_wishing_two_ga(&system, event, 10).await;
    assert_eq!(admit(&system, event).await.admitted, 10);
    set_room(&system, event, "headroom_pct", 10).await;
    let last = join(&system, event, "last").await;
    assert_eq!(wish(&system, &last, json!({"GA": 1})).await.0, 200);
    let after = join(&system, event, "after").await;
    assert_eq!(wish(&system, &after, json!({"GA": 1})).await.0, 200);
    assert_eq!(admit(&system, event).await.admitted, 0, "fresh, they count");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    // Well before the 4.5 s probe: 0.28 + 1 fits in 2.2; one more (2.28) does not.
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 1, "{step:?}");
    assert_eq!(system.status(&last).await.state, QueueState::Admitted);
    assert_eq!(system.status(&after).await.state, QueueState::Waiting);
    assert_eq!(stats_field(&system, event, "stale_total^").await, 10);
    // One comes after all: in full again, and the sale has now seen one of ten come back.
    assert_eq!(system.status(&absent[0]).await.state, QueueState::Admitted);
    assert_eq!(stats_field(&system, event, "stale_back^").await, 1);
    assert_eq!(counted_demand(&system, event).await.get("GA"), Some(&300));
    let (status, body) = book(&system, event, &last, json!({"GA": 1})).await;
    assert_eq!(status, 201, "{body}");
    system.assert_inventory_agrees(event).await;
}

/// Stale demand meets delivery: buyers whose tokens were delivered but who did not book within
/// the time this sale's buyers take (here the 0.5 s it starts from, before 20 bookings tell)
/// count as stale; the next buyer goes in at once, and one who books after all teaches the gate.
/// Bookings fill the form-time histogram the window is learned from.
#[sqlx::test(migrations = "../migrations")]
async fn delivered_buyers_who_do_not_book_in_the_sales_form_time_count_as_stale(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 4, 20, false).await;
    shorten(&system, event, "fresh_after_delivery_ms", 500).await;
    let ga = join_wishing_two_ga(&system, event, 3).await;
    assert_eq!(admit(&system, event).await.admitted, 2);
    for queue_id in &ga[..2] {
        assert_eq!(system.status(queue_id).await.state, QueueState::Admitted);
    }
    assert_eq!(admit(&system, event).await.admitted, 0, "GA is counted");
    tokio::time::sleep(Duration::from_millis(700)).await;
    // Both stale, counted at (0 back + 2 * 1/4) / (2 stale + 2): an eighth. The third fits.
    assert_eq!(admit(&system, event).await.admitted, 1);
    let (status, body) = book(&system, event, &ga[0], json!({"GA": 2})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = book(&system, event, &ga[2], json!({"GA": 2})).await;
    assert_eq!(status, 201, "{body}");
    let stats: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(ticketing::keys::EventKeys::new(event).stats())
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    assert_eq!(stats.get("stale_total").map(String::as_str), Some("2"));
    assert_eq!(stats.get("stale_back").map(String::as_str), Some("1"));
    let timed: i64 = stats
        .iter()
        .filter(|(field, _)| field.starts_with("form:"))
        .map(|(_, count)| count.parse::<i64>().unwrap())
        .sum();
    assert_eq!(timed, 2, "two bookings timed from delivery: {stats:?}");
    // The one who never books: stale for the window, then, as long again, counted nowhere.
    assert_eq!(counted_demand(&system, event).await.get("GA~"), Some(&200));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    admit(&system, event).await;
    assert_eq!(counted_demand(&system, event).await.get("GA~"), Some(&0));
    system.assert_inventory_agrees(event).await;
}

/// The wish-less gate at a tier's last tickets: with one GA left, buyers without a wish count at
/// most that one ticket each, and the last ticket is offered to a booking's worth (of what such
/// a buyer can still take of it) more than it fills: two buyers at once, not one after another.
#[sqlx::test(migrations = "../migrations")]
async fn a_tiers_last_tickets_go_to_more_than_one_buyer_at_once(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 5, 100, false).await;
    two_bookings_of_two_ga(&system, event).await;
    let mut late = Vec::new();
    for i in 0..6 {
        late.push(join(&system, event, &format!("no-wish-{i}")).await);
    }
    // One GA left, and both bookings so far took two: with two bookings of two in reach as a
    // prior, a buyer without a wish can take (0 + 4) / (4 + 4) of its two, one ticket each (at
    // most what is left), against 1 + a booking's worth of that (1).
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 2, "{step:?}");
    assert_eq!(admit(&system, event).await.admitted, 0);
    // The first takes it; the one after it wants two and is refused.
    let (status, body) = book(&system, event, &late[0], json!({"GA": 1})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = book(&system, event, &late[1], json!({"GA": 2})).await;
    assert_eq!(status, 409, "{body}");
    system.assert_inventory_agrees(event).await;
}

/// The wish-less gate at a tier's last ticket meets the sale's bookings by size: when the sale's
/// buyers took 1-4 GA evenly, a buyer without a wish takes the one GA left only if it wants just
/// one, so it counts what such buyers take of it (about a tenth of its 2.5), not one ticket, and
/// four try at once instead of three (a rehearsal's last ticket waited 7 s on three buyers at a
/// time, each refused in turn). Those who want more are refused; the ledger holds.
#[sqlx::test(migrations = "../migrations")]
async fn a_tiers_last_ticket_goes_to_as_many_buyers_as_the_sales_bookings_say_it_takes(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 5, 100, false).await;
    two_bookings_of_two_ga(&system, event).await;
    // The sale's history as 400 bookings of 1, 2, 3 and 4 GA, a hundred each, had said it (what
    // confirm.lua keeps: the two bookings above are among them).
    let _: () = redis::cmd("HSET")
        .arg(ticketing::keys::EventKeys::new(event).stats())
        .arg(&[
            ("booked_total", 400),
            ("sold:GA", 1000),
            ("buyers:GA", 400),
            ("took:GA:1", 100),
            ("took:GA:2", 100),
            ("took:GA:3", 100),
            ("took:GA:4", 100),
        ])
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    let mut late = Vec::new();
    for i in 0..6 {
        late.push(join(&system, event, &format!("no-wish-{i}")).await);
    }
    // One GA left. Of the 1,000 tickets, 100 were in bookings of one; with two bookings of 2.5
    // as a prior: (100 + 5) / (1000 + 5) of 2.5 tickets, 0.26 each, against 1 + 0.26.
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 4, "{step:?}");
    assert_eq!(counted_demand(&system, event).await.get("GA"), Some(&104));
    assert_eq!(admit(&system, event).await.admitted, 0);
    assert_eq!(system.status(&late[4]).await.state, QueueState::Waiting);
    // The third wants one and takes it; the others want more and are refused.
    for (i, queue_id) in late[..4].iter().enumerate() {
        let (want, expect) = if i == 2 { (1, 201) } else { (2, 409) };
        let (status, body) = book(&system, event, queue_id, json!({"GA": want})).await;
        assert_eq!(status, expect, "{body}");
    }
    system.assert_inventory_agrees(event).await;
}

/// The gate at a tier's last tickets meets a buyer admitted earlier: a buyer counted at two GA
/// when three were left can take at most one once one is left, and no more than any buyer
/// without a wish can take of it then, so it counts that, and the last ticket still goes to a
/// newcomer. Before, its full count held the line to one buyer at a time (a rehearsal's last
/// ticket waited 7 s on such a buyer).
#[sqlx::test(migrations = "../migrations")]
async fn a_buyer_counts_at_most_what_is_left_of_a_tier_once_it_falls_below_its_count(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 7, 100, false).await;
    two_bookings_of_two_ga(&system, event).await;
    // Three GA left; both go in together while the headroom is wide: the first counts two (a
    // booking's worth), the second its wish.
    set_room(&system, event, "headroom_pct", 1_000).await;
    let thinking = join(&system, event, "thinking").await;
    let two = join(&system, event, "two").await;
    assert_eq!(wish(&system, &two, json!({"GA": 2})).await.0, 200);
    assert_eq!(admit(&system, event).await.admitted, 2);
    set_room(&system, event, "headroom_pct", 10).await;
    // The first is on the form (delivered, fresh); the second takes two of the three.
    assert_eq!(system.status(&thinking).await.state, QueueState::Admitted);
    let (status, body) = book(&system, event, &two, json!({"GA": 2})).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(counted_demand(&system, event).await.get("GA"), Some(&200));
    let mut late = Vec::new();
    for i in 0..3 {
        late.push(join(&system, event, &format!("late-{i}")).await);
    }
    // One left, and the sale's three bookings all took two: with two bookings of two in reach as
    // a prior, a buyer without a wish can take (0 + 4) / (6 + 4) of its two, 0.8. The one on the
    // form counts that too, not its two, and a newcomer 0.8, against 1 + 0.8: one goes in, the
    // others wait. (Counted at its two, the one on the form would hold out every newcomer.)
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 1, "{step:?}");
    assert_eq!(system.status(&late[1]).await.state, QueueState::Waiting);
    let (status, body) = book(&system, event, &late[0], json!({"GA": 1})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = book(&system, event, &thinking, json!({"GA": 1})).await;
    assert_eq!(status, 409, "{body}");
    system.assert_inventory_agrees(event).await;
}

/// Admission steps every 100 ms for `span`: how many were admitted.
async fn admitted_over(system: &System, event: Uuid, span: Duration) -> i64 {
    let until = std::time::Instant::now() + span;
    let mut admitted = 0;
    while std::time::Instant::now() < until {
        admitted += admit(system, event).await.admitted;
    }
    admitted
}

#[sqlx::test(migrations = "../migrations")]
async fn refusals_slow_admissions_to_the_share_that_books_and_never_stop_them(db: PgPool) {
    let system = start(db).await;
    // 10 admissions a second; the stock gate out of the way (headroom 1000 %).
    let event = system
        .create_event(
            &[("GA", 2), ("VIP", 40)],
            json!({"enabled": true, "admission_per_minute": 600, "max_active": 1000,
                   "paused": false, "token_ttl_s": 600, "headroom_pct": 1000}),
        )
        .await;
    assert_eq!(admit(&system, event).await.admitted, 0);
    let mut first = Vec::new();
    for i in 0..6 {
        first.push(join(&system, event, &format!("early-{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        admit(&system, event).await.admitted,
        6,
        "no refusals yet: the set rate"
    );
    // One books the GA there was; the five after it want GA too and are refused.
    let (status, _) = book(&system, event, &first[0], json!({"GA": 2})).await;
    assert_eq!(status, 201);
    for queue_id in &first[1..] {
        let (status, body) = book(&system, event, queue_id, json!({"GA": 1})).await;
        assert_eq!(status, 409, "{body}");
    }
    // The wait estimates know it: the rate is the share that books (600 a minute × 1/6).
    let stats = queue::stats(&system.redis, event).await.unwrap();
    assert!((95..=100).contains(&stats.refusal_per_minute), "{stats:?}");
    assert!(!stats.probes_only, "slowed, not down to probes: {stats:?}");
    for i in 0..20 {
        join(&system, event, &format!("late-{i}")).await;
    }
    // One attempt in six booked: about 100 admissions a minute, not 600 (30 in 3 s at the set
    // rate, with the bucket full).
    let admitted = admitted_over(&system, event, Duration::from_secs(3)).await;
    assert!(
        (1..=8).contains(&admitted),
        "admissions slowed to the share that books, not stopped: {admitted} in 3 s"
    );

    // Every recent attempt refused: a probe every 4.5 s, never a stop.
    let _: () = redis::cmd("HSET")
        .arg(ticketing::keys::EventKeys::new(event).stats())
        .arg(&["conv_booked", "0", "conv_refused", "1000"])
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    let probes = admitted_over(&system, event, Duration::from_secs(6)).await;
    assert!(
        (1..=2).contains(&probes),
        "one probe admission every 4.5 s while every attempt is refused: {probes} in 6 s"
    );
    system.assert_inventory_agrees(event).await;
}

/// The seam of a tier selling out and the refusal slowing: when every buyer so far took GA and GA
/// has none left, the next admitted buyers without a wish could only be refused, so their
/// admissions slow to probes at once, from the sale's history, before a single refusal; the
/// estimates know it too. Buyers whose wish is VIP still go in at the set rate.
#[sqlx::test(migrations = "../migrations")]
async fn a_tier_every_buyer_took_selling_out_slows_admissions_before_any_refusal(db: PgPool) {
    let system = start(db).await;
    let event = system
        .create_event(
            &[("GA", 8), ("VIP", 40)],
            json!({"enabled": true, "admission_per_minute": 600, "max_active": 1000,
                   "paused": false, "token_ttl_s": 600, "headroom_pct": 1000}),
        )
        .await;
    assert_eq!(admit(&system, event).await.admitted, 0);
    let mut first = Vec::new();
    for i in 0..4 {
        first.push(join(&system, event, &format!("early-{i}")).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(admit(&system, event).await.admitted, 4);
    // Four buyers, each two GA: GA has none left, and every booking took it.
    for queue_id in &first {
        let (status, body) = book(&system, event, queue_id, json!({"GA": 2})).await;
        assert_eq!(status, 201, "{body}");
    }
    let stats = queue::stats(&system.redis, event).await.unwrap();
    // A probe every 4.5 s: 13.3 a minute, told in whole admissions.
    assert_eq!(stats.refusal_per_minute, 13, "probes only: {stats:?}");
    assert!(stats.probes_only, "{stats:?}");
    let mut late = Vec::new();
    for i in 0..20 {
        late.push(join(&system, event, &format!("late-{i}")).await);
    }
    // At the set rate 30 would go in over 3 s (the bucket full): a probe, at most two.
    let admitted = admitted_over(&system, event, Duration::from_secs(3)).await;
    assert!(
        (1..=2).contains(&admitted),
        "admissions slowed to probes before anyone was refused: {admitted} in 3 s"
    );
    // The last of them is promised no time (it would grow at every poll), and told why.
    let last = system.status(&late[19]).await;
    assert_eq!(last.state, QueueState::Waiting, "{last:?}");
    assert_eq!(last.wait_note, Some(WaitNote::TiersGone), "{last:?}");
    assert_eq!(last.estimated_wait_range_s, None, "{last:?}");
    // A buyer with a wish is judged by it: VIP wishes, behind the wish-less ones still waiting,
    // go in at the set rate (10 a second), not at the probes'.
    let mut vip = Vec::new();
    for i in 0..6 {
        let queue_id = join(&system, event, &format!("vip-{i}")).await;
        let (status, body) = wish(&system, &queue_id, json!({"VIP": 1})).await;
        assert_eq!(status, 200, "{body}");
        // A wish is judged by itself, at the set rate: its wait has a range.
        assert!(body["estimated_wait_range_s"].is_array(), "{body}");
        vip.push(queue_id);
    }
    let admitted = admitted_over(&system, event, Duration::from_secs(2)).await;
    assert!(
        (6..=7).contains(&admitted),
        "the six VIP wishes went in (and at most a probe of the rest): {admitted} in 2 s"
    );
    // GA back on sale (as a cancellation or a returned hold would put it) lifts the slowing.
    let _: () = redis::cmd("HSET")
        .arg(ticketing::keys::EventKeys::new(event).inventory())
        .arg(&["GA:avail", "1"])
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    let stats = queue::stats(&system.redis, event).await.unwrap();
    assert_eq!(stats.refusal_per_minute, 0, "GA on sale again: {stats:?}");
    assert!(!stats.probes_only, "{stats:?}");
}

/// The gate meets absent buyers: admitted buyers who count the whole stock and never book it
/// would hold the line until their admissions are reclaimed. After 4.5 s without an admission, the
/// first entry the gate holds back goes in as a probe (one, not a burst); once the tier is gone
/// for good, nobody is probed in for it.
#[sqlx::test(migrations = "../migrations")]
async fn the_gate_never_stops_the_line_while_tickets_are_on_sale(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 4, 20, false).await;
    let ga = join_wishing_two_ga(&system, event, 4).await;
    let probes = || async {
        let probes: Option<i64> = redis::cmd("HGET")
            .arg(ticketing::keys::EventKeys::new(event).stats())
            .arg("stock_probes_total")
            .query_async(&mut system.redis.clone())
            .await
            .unwrap();
        probes.unwrap_or(0)
    };
    // 4 GA with 10 % headroom serve two buyers of 2; both take their tokens and stay.
    assert_eq!(admit(&system, event).await.admitted, 2);
    for queue_id in &ga[..2] {
        assert_eq!(system.status(queue_id).await.state, QueueState::Admitted);
    }
    // Just after an admission, the gate holds the third back: no probe is due.
    assert_eq!(admit(&system, event).await.admitted, 0);
    tokio::time::sleep(Duration::from_millis(4_700)).await;
    let step = admit(&system, event).await;
    assert_eq!(step.admitted, 1, "a probe after 4.5 s: {step:?}");
    assert_eq!(system.status(&ga[2]).await.state, QueueState::Admitted);
    assert_eq!(system.status(&ga[3]).await.state, QueueState::Waiting);
    assert_eq!(probes().await, 1);
    assert_eq!(
        admit(&system, event).await.admitted,
        0,
        "one probe, then the gate again"
    );

    // The second buyer never books; the first and the probe do, and GA is gone.
    for queue_id in [&ga[0], &ga[2]] {
        let (status, body) = book(&system, event, queue_id, json!({"GA": 2})).await;
        assert_eq!(status, 201, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(4_700)).await;
    let step = admit(&system, event).await;
    assert_eq!(
        (step.admitted, step.parked),
        (0, 1),
        "nothing on sale for the fourth: parked, not probed in"
    );
    assert_eq!(probes().await, 1);
    system.assert_inventory_agrees(event).await;
}

/// Absent admissions meet the poll cadence: an entry that polled near the head every second and
/// then went silent has its admission reclaimed within two of those intervals and the grace
/// (about 7 s, not the 49 s any page may need), its counted demand back for the next in line;
/// one that keeps polling gets its token and keeps it; one that never polled near the head
/// keeps the whole delivery window.
#[sqlx::test(migrations = "../migrations")]
async fn an_admission_nobody_comes_for_is_reclaimed_after_two_of_its_poll_intervals(db: PgPool) {
    let system = start(db).await;
    let event = open_event(&system, 4, 20, false).await;
    let present = join(&system, event, "present").await;
    let absent = join(&system, event, "absent").await;
    let unpolled = join(&system, event, "unpolled").await;
    for (queue_id, wanted) in [
        (&present, json!({"GA": 2})),
        (&absent, json!({"GA": 2})),
        (&unpolled, json!({"VIP": 1})),
    ] {
        assert_eq!(wish(&system, queue_id, wanted).await.0, 200);
    }
    // The two GA buyers poll near the head and are told about a second.
    for queue_id in [&present, &absent] {
        let status = system.status(queue_id).await;
        assert!(status.poll_after_ms <= 1_100, "{status:?}");
    }
    assert_eq!(admit(&system, event).await.admitted, 3);
    // A fourth wants GA: the two admitted GA buyers count all 4.
    let later = join(&system, event, "later").await;
    assert_eq!(wish(&system, &later, json!({"GA": 2})).await.0, 200);

    // The present buyer polls on and gets its token; the absent one never comes.
    let until = std::time::Instant::now() + Duration::from_millis(8_500);
    while std::time::Instant::now() < until {
        assert_eq!(system.status(&present).await.state, QueueState::Admitted);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let step = admit(&system, event).await;
    assert_eq!(step.expired, 1, "the absent admission reclaimed: {step:?}");
    assert_eq!(
        step.admitted, 1,
        "its demand went to the next GA buyer: {step:?}"
    );
    assert_eq!(system.status(&absent).await.state, QueueState::Expired);
    assert_eq!(system.status(&later).await.state, QueueState::Admitted);
    assert_eq!(
        system.status(&unpolled).await.state,
        QueueState::Admitted,
        "never polled near the head: the whole window"
    );
    let (status, body) = book(&system, event, &present, json!({"GA": 2})).await;
    assert_eq!(status, 201, "{body}");
    system.assert_inventory_agrees(event).await;
}

/// The stock horizon meets admission, wishes and a pause: once the sale has shown what an
/// admission takes, a buyer without a wish further back than the stock left will serve is told
/// so (no range, `beyond_stock`) instead of a range that would jump when the tier runs out.
/// Admitting those ahead moves the horizon and the positions alike, so nobody's answer flips.
#[sqlx::test(migrations = "../migrations")]
async fn a_buyer_further_back_than_the_stock_will_serve_is_told_so_not_a_range(db: PgPool) {
    let system = start(db).await;
    let event = system
        .create_event(
            &[("GA", 100), ("VIP", 40)],
            json!({"enabled": true, "admission_per_minute": 60000, "max_active": 10,
                   "paused": false, "token_ttl_s": 600, "headroom_pct": 1000}),
        )
        .await;
    assert_eq!(admit(&system, event).await.admitted, 0);
    // 22 buyers, 10 at a time (max_active), each two GA: 44 sold, two a finished admission.
    let mut early = Vec::new();
    for i in 0..22 {
        early.push(join(&system, event, &format!("early-{i}")).await);
    }
    for batch in early.chunks(10) {
        assert_eq!(admit(&system, event).await.admitted as usize, batch.len());
        for queue_id in batch {
            let (status, body) = book(&system, event, queue_id, json!({"GA": 2})).await;
            assert_eq!(status, 201, "{body}");
        }
    }
    let stats = queue::stats(&system.redis, event).await.unwrap();
    // 56 GA left at two an admission: 28 more admissions.
    assert_eq!(stats.stock_horizon, Some(28), "{stats:?}");
    let mut late = Vec::new();
    for i in 0..40 {
        late.push(join(&system, event, &format!("late-{i}")).await);
    }
    // The sale's numbers are read at most once a second per gateway.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    // 27 ahead of the 28th: served. 28 ahead of the 29th: the stock is foreseen gone by then.
    let served = system.status(&late[27]).await;
    assert_eq!(served.wait_note, None, "{served:?}");
    assert!(served.estimated_wait_range_s.is_some(), "{served:?}");
    let beyond = system.status(&late[28]).await;
    assert_eq!(beyond.state, QueueState::Waiting, "{beyond:?}");
    assert_eq!(beyond.wait_note, Some(WaitNote::BeyondStock), "{beyond:?}");
    assert_eq!(beyond.estimated_wait_range_s, None, "{beyond:?}");
    // A wish is judged by itself: one for VIP, further back still, keeps a range.
    let (status, body) = wish(&system, &late[35], json!({"VIP": 1})).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["estimated_wait_range_s"].is_array(), "{body}");
    assert_eq!(body["wait_note"], Value::Null, "{body}");

    // Ten go in (max_active) and have not booked yet: they go first, so the horizon is ten
    // fewer, and everyone is ten places nearer: the same answers.
    assert_eq!(admit(&system, event).await.admitted, 10);
    let stats = queue::stats(&system.redis, event).await.unwrap();
    assert_eq!(stats.stock_horizon, Some(18), "{stats:?}");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let served = system.status(&late[27]).await;
    assert_eq!(served.position, Some(18), "{served:?}");
    assert_eq!(served.wait_note, None, "{served:?}");
    let beyond = system.status(&late[28]).await;
    assert_eq!(beyond.wait_note, Some(WaitNote::BeyondStock), "{beyond:?}");

    // Paused, everyone keeps a range and is told why.
    let (status, body) = system
        .change_waiting_room(event, json!({"paused": true}))
        .await;
    assert_eq!(status, 200, "{body}");
    let paused = eventually(Duration::from_secs(5), "the pause told", || async {
        let status = system.status(&late[28]).await;
        (status.wait_note == Some(WaitNote::Paused)).then_some(status)
    })
    .await;
    assert!(paused.estimated_wait_range_s.is_some(), "{paused:?}");

    // The ten book; the ledger holds.
    for queue_id in &late[..10] {
        let (status, body) = book(&system, event, queue_id, json!({"GA": 2})).await;
        assert_eq!(status, 201, "{body}");
    }
    system.assert_inventory_agrees(event).await;
}
