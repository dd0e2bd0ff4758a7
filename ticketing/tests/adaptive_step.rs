//! Adaptive admission's step (`lua/adapt_rate.lua`): one a second per event however many
//! workers ask (with two workers each asking every second, a verdict over the target must cut the
//! rate once a second, not twice), and a cut given three seconds to show before the next.

mod support;

use std::time::{Duration, Instant};

use ticketing::queue::room::{adapt, Adaptive, Verdict, WaitingRoom};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

const TARGETS: Adaptive = Adaptive {
    target_p95_ms: 100,
    max_503_pct: 5,
    floor_per_minute: 60,
};

fn room() -> WaitingRoom {
    WaitingRoom {
        admission_per_minute: 6000,
        ..WaitingRoom::default()
    }
}

async fn ask(redis: &RedisClient, event_id: Uuid, verdict: Verdict, times: usize) -> u32 {
    let mut rate = 0;
    for _ in 0..times {
        rate = adapt(redis, event_id, &room(), &TARGETS, verdict)
            .await
            .expect("adaptive step");
    }
    rate
}

#[tokio::test]
async fn workers_asking_in_the_same_second_take_one_step_between_them() {
    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .expect("connecting to redis");
    let event_id = Uuid::new_v4();
    let started = Instant::now();
    let over = Verdict::BookingP95AboveTarget { keep_permille: 700 };
    let cut = ask(&redis, event_id, over, 10).await;
    // Cuts come three seconds apart at most often: ten asks cut once, unless a slow machine took
    // three seconds or more over them.
    let most_cuts = started.elapsed().as_secs() as i32 / 3 + 1;
    assert!(
        cut >= (6000.0 * 0.7f64.powi(most_cuts)).floor() as u32 && cut < 6000,
        "ten asks over {:?} cut the rate to {cut}/min",
        started.elapsed()
    );
    // Ten asks within the targets (far below them: 5 % of the set rate a step) climb once a
    // second; each second crossed allows one more.
    let started = Instant::now();
    let within = Verdict::WithinTargets { step_permille: 50 };
    let climbed = ask(&redis, event_id, within, 10).await;
    let seconds_touched = started.elapsed().as_secs() as u32 + 2;
    support::delete_event_keys(&redis, event_id)
        .await
        .expect("cleaning up");
    assert!(
        climbed <= cut + seconds_touched * 300,
        "ten asks over {:?} climbed from {cut} to {climbed}/min: more than one step a second",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_cut_gets_three_seconds_to_show_before_the_next() {
    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .expect("connecting to redis");
    let event_id = Uuid::new_v4();
    let first = ask(&redis, event_id, Verdict::TooMany503s, 1).await;
    assert_eq!(first, 4200);
    // A second or two later, still over: the buyers admitted before the cut are still booking.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let held = ask(&redis, event_id, Verdict::TooMany503s, 1).await;
    // Three seconds after the cut, still over: it did not suffice, cut again.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = ask(&redis, event_id, Verdict::TooMany503s, 1).await;
    support::delete_event_keys(&redis, event_id)
        .await
        .expect("cleaning up");
    assert_eq!(held, 4200, "cut again within three seconds of the last cut");
    assert_eq!(again, 2940);
}

#[tokio::test]
async fn writers_near_full_hold_the_rate_and_say_so() {
    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .expect("connecting to redis");
    let event_id = Uuid::new_v4();
    let cut = ask(&redis, event_id, Verdict::TooMany503s, 1).await;
    assert_eq!(cut, 4200);
    // Each a second later: a climb would add 300 a second; busy writers hold it where it is.
    for _ in 0..2 {
        tokio::time::sleep(Duration::from_millis(1050)).await;
        let held = ask(&redis, event_id, Verdict::WritersNearFull, 1).await;
        assert_eq!(held, cut, "busy writers moved the rate");
    }
    let (effective, reason) = ticketing::queue::room::adapted(&redis, event_id)
        .await
        .expect("reading the adapted rate");
    // Room again: the climb resumes from where it was held.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let climbed = ask(
        &redis,
        event_id,
        Verdict::WithinTargets { step_permille: 50 },
        1,
    )
    .await;
    support::delete_event_keys(&redis, event_id)
        .await
        .expect("cleaning up");
    assert_eq!(effective, Some(cut));
    assert_eq!(reason.as_deref(), Some("writers_near_full"));
    assert_eq!(climbed, cut + 300);
}
