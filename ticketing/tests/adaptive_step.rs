//! Adaptive admission takes one step a second per event, however many workers ask
//! (`lua/adapt_rate.lua`): with two workers each asking every second, a verdict over the target
//! must cut the rate to 70 % once a second, not twice.

mod support;

use std::time::Instant;

use ticketing::queue::room::{adapt, Adaptive, Verdict, WaitingRoom};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test]
async fn workers_asking_in_the_same_second_take_one_step_between_them() {
    let redis = RedisClient::connect_single(&redis_url())
        .await
        .expect("connecting to redis");
    let event_id = Uuid::new_v4();
    let room = WaitingRoom {
        admission_per_minute: 6000,
        ..WaitingRoom::default()
    };
    let targets = Adaptive {
        target_p95_ms: 100,
        max_503_pct: 5,
        floor_per_minute: 60,
    };
    let started = Instant::now();
    let mut rate = 0;
    for _ in 0..10 {
        rate = adapt(
            &redis,
            event_id,
            &room,
            &targets,
            Verdict::BookingP95AboveTarget,
        )
        .await
        .expect("adaptive step");
    }
    // Ten asks within one second cut once; a slow machine may cross a second or more between
    // them, and each second crossed allows one more cut.
    let seconds_touched = started.elapsed().as_secs() as i32 + 2;
    let fewest = (6000.0 * 0.7f64.powi(seconds_touched)).floor() as u32;
    support::delete_event_keys(&redis, event_id)
        .await
        .expect("cleaning up");
    assert!(
        rate >= fewest,
        "ten asks over {:?} cut the rate to {rate}/min: more than one step a second",
        started.elapsed()
    );
    assert!(rate < 6000, "a verdict over the target cut nothing");
}
