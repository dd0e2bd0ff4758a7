//! Losing Redis mid-sale (flush, or a restart that forgets everything) neither oversells nor
//! stalls the sale for more than a few seconds. Each test runs its own redis-server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::private_redis::PrivateRedis;
use system_tests::{room_off, Options, System};
use uuid::Uuid;

/// Books continuously from several clients until `stop`, returning every answer's status and
/// how long the sale went without a success at its longest after `lost_at` is set.
async fn sell(system: &System, event: Uuid, stop: Arc<AtomicBool>) -> Vec<(u16, Value, Instant)> {
    let clients = (0..8).map(|_| {
        let stop = stop.clone();
        async move {
            let mut answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let (token, _) = system.keys.token(event, 4, 60);
                let body = json!({"event_id": event, "tiers": {"GA": 1, "VIP": 1}, "buyer_email": "a@b.co"});
                let (status, answer) = system.book(&token, &body, None).await;
                answers.push((status, answer, Instant::now()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            answers
        }
    });
    futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect()
}

async fn lose_redis_mid_sale(db: PgPool, lose: impl AsyncFnOnce(&mut PrivateRedis)) {
    let mut redis = PrivateRedis::start().await;
    let system = System::start_with(
        db,
        Options {
            redis_url: redis.url(),
            ..Options::default()
        },
    )
    .await;
    let event = system
        // Far more than the clients can buy in the test's seconds, so "no sale after the fault"
        // can only mean a stall, never a sell-out.
        .create_event(&[("VIP", 50_000), ("GA", 50_000)], room_off())
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let selling = sell(&system, event, stop.clone());
    let fault = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        lose(&mut redis).await;
        let lost_at = Instant::now();
        tokio::time::sleep(Duration::from_secs(6)).await;
        stop.store(true, Ordering::Relaxed);
        lost_at
    };
    let (answers, lost_at) = tokio::join!(selling, fault);

    let before = answers
        .iter()
        .filter(|(s, _, at)| *s == 201 && *at < lost_at)
        .count();
    let after: Vec<Instant> = answers
        .iter()
        .filter(|(s, _, at)| *s == 201 && *at > lost_at)
        .map(|a| a.2)
        .collect();
    assert!(before > 0, "the sale was running before the fault");
    assert!(
        answers
            .iter()
            .all(|(_, answer, _)| answer["error"]["code"] != "insufficient_inventory"),
        "the event must not sell out during the test"
    );
    let first_after = after
        .iter()
        .min()
        .expect("the sale resumed after the fault");
    assert!(
        first_after.duration_since(lost_at) < Duration::from_secs(4),
        "the sale stalled {:?} after losing redis",
        first_after.duration_since(lost_at)
    );
    for (status, answer, _) in &answers {
        assert!(
            matches!(status, 201 | 409 | 503),
            "every request gets a clean answer, got {status}: {answer}"
        );
        if *status != 201 {
            assert!(answer["error"]["code"].is_string(), "{answer}");
        }
    }
    let created = answers.iter().filter(|(s, _, _)| *s == 201).count() as i64;
    let issued = system.issued(event).await;
    assert_eq!(
        issued["VIP"], created,
        "every 201 is one VIP ticket in postgres, and nothing else is"
    );
    assert_eq!(issued["GA"], created);
    // After the reconciler's pass, Redis agrees with Postgres again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn flushing_redis_mid_sale_neither_oversells_nor_stalls(db: PgPool) {
    lose_redis_mid_sale(db, async |redis: &mut PrivateRedis| {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    })
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_redis_restart_that_loses_its_data_neither_oversells_nor_stalls(db: PgPool) {
    lose_redis_mid_sale(db, async |redis: &mut PrivateRedis| {
        redis.restart_empty().await
    })
    .await;
}
