//! The worker follows the sales, not the catalog: it looks after the events with something to
//! do (its hot set), picks up an event the moment something happens to it, lets events go once
//! they are quiet, and still reconciles the quiet ones, a page per pass.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::{eventually, Options, System};
use ticketing::keys::EventKeys;
use uuid::Uuid;

/// A sale that opened an hour ago (out of the opening window), with a room admitting freely.
fn opened_long_ago(name: &str) -> Value {
    json!({
        "name": format!("{name} {}", Uuid::new_v4()),
        "venue_name": "Quiet Hall",
        "starts_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
        "on_sale_at": (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339(),
        "waiting_room": {"enabled": true, "admission_per_minute": 6000, "max_active": 1000, "paused": false, "token_ttl_s": 600},
        "tiers": [{"code": "GA", "name": "GA", "price_cents": 1000, "capacity": 50}],
    })
}

fn options(admit_interval: Duration) -> Options {
    Options {
        admit_interval,
        hot_quiet: Duration::from_secs(1),
        ..Options::default()
    }
}

async fn gone_quiet(system: &System, events: &[Uuid]) {
    eventually(Duration::from_secs(20), "events going quiet", || async {
        let hot = system.hot_events(0);
        events.iter().all(|e| !hot.contains(e)).then_some(())
    })
    .await;
}

/// An event nobody touches leaves the hot set; its first join brings it back at the next
/// admission tick, and the joiner is admitted then.
#[sqlx::test(migrations = "../migrations")]
async fn a_quiet_event_is_admitted_from_within_a_tick_of_its_first_join(db: PgPool) {
    let tick = Duration::from_secs(1);
    let system = System::start_with(db, options(tick)).await;
    let event = system
        .create_event_from(opened_long_ago("first join"))
        .await;
    // Created: looked after at once (an operator's change), then quiet.
    eventually(
        Duration::from_secs(5),
        "the new event picked up",
        || async { system.hot_events(0).contains(&event).then_some(()) },
    )
    .await;
    gone_quiet(&system, &[event]).await;

    let joined = Instant::now();
    let queue_id = system.join_line(event, "the-first").await;
    let admitted = eventually(Duration::from_secs(10), "admission", || async {
        let (_, status) = system.poll(&queue_id).await;
        (status["state"] == "admitted").then(|| joined.elapsed())
    })
    .await;
    // One tick to pick it up and admit, with room for a loaded machine's late tick.
    assert!(
        admitted <= tick * 2 + Duration::from_millis(500),
        "admitted {admitted:?} after the first join, with ticks every {tick:?}"
    );
    assert!(system.hot_events(0).contains(&event));
}

/// A catalog of quiet events costs the worker nothing per pass: only the events with something
/// to do are in its hot set, and those with people in line stay in it however long since their
/// last activity.
#[sqlx::test(migrations = "../migrations")]
async fn only_events_with_something_to_do_are_looked_after(db: PgPool) {
    let system = System::start_with(
        db,
        Options {
            // A paused room: the line stays, nobody is admitted.
            ..options(Duration::from_millis(100))
        },
    )
    .await;
    let mut quiet = Vec::new();
    for i in 0..40 {
        quiet.push(
            system
                .create_event_from(opened_long_ago(&format!("catalog {i}")))
                .await,
        );
    }
    let mut waiting = opened_long_ago("line");
    waiting["waiting_room"]["paused"] = json!(true);
    let waiting = system.create_event_from(waiting).await;
    system.join_line(waiting, "in-line").await;
    gone_quiet(&system, &quiet).await;
    // Well past the quiet time: the event with a line is still looked after.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let hot = system.hot_events(0);
    assert_eq!(hot, vec![waiting], "the hot set");
}

/// A drift planted in a quiet event (Redis offering two tickets fewer than Postgres says are
/// left) is found by the reconciler's round over quiet events and repaired, while the event
/// stays out of the hot set.
#[sqlx::test(migrations = "../migrations")]
async fn a_drift_in_a_quiet_event_is_repaired_within_the_round(db: PgPool) {
    let system = System::start_with(
        db,
        Options {
            reconcile_interval: Duration::from_millis(200),
            reconcile_quiet_per_pass: 5,
            ..options(Duration::from_millis(100))
        },
    )
    .await;
    let mut events = Vec::new();
    for i in 0..20 {
        events.push(
            system
                .create_event_from(opened_long_ago(&format!("round {i}")))
                .await,
        );
    }
    gone_quiet(&system, &events).await;
    let drifted = events[13];
    let _: i64 = redis::cmd("HINCRBY")
        .arg(EventKeys::new(drifted).inventory())
        .arg("GA:avail")
        .arg(-2)
        .query_async(&mut system.redis.clone())
        .await
        .expect("planting drift");
    // A round is 20 / 5 = 4 passes of 200 ms; the repair needs a second look the pass after.
    let planted = Instant::now();
    eventually(Duration::from_secs(10), "the drift repaired", || async {
        let available = system.availability(drifted).await;
        (available["GA"] == 50).then_some(())
    })
    .await;
    let repaired = planted.elapsed();
    assert!(
        repaired < Duration::from_secs(5),
        "repaired after {repaired:?}, a round being about 1 s"
    );
    assert!(!system.hot_events(0).contains(&drifted));
}
