//! Faults injected in the middle of a sale, against the real gateway, booking and queue-worker
//! processes on a private PostgreSQL and a private Redis. After each fault and a recovery window,
//! the ledger check (`system_tests::ledger`): every 201 in Postgres with its tickets, no booking
//! nobody was told about, no ticket sold twice, no booking without its tickets, no ticket held by
//! a reservation that never became a booking, Redis and Postgres agree on every tier, no session
//! left in a transaction; and the sale resumed on its own, and every request got a clean answer
//! within a bounded time.

use std::time::{Duration, Instant};

use serde_json::json;
use system_tests::private_redis::PrivateRedis;
use system_tests::processes::{PrivatePostgres, Service, Services, HOLD_TTL};
use system_tests::sale::{assert_clean, Sale, ANSWER_BOUND};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

/// How soon after a fault the sale must sell again.
const RESUMES_WITHIN: Duration = Duration::from_secs(20);

async fn with_fault(
    name: &str,
    down: Option<Service>,
    fault: impl AsyncFnOnce(&mut PrivateRedis, &PrivatePostgres, &mut Services),
) {
    with_fault_resuming(name, down, RESUMES_WITHIN, fault).await
}

async fn with_fault_resuming(
    name: &str,
    down: Option<Service>,
    resumes_within: Duration,
    fault: impl AsyncFnOnce(&mut PrivateRedis, &PrivatePostgres, &mut Services),
) {
    let postgres = PrivatePostgres::start();
    let mut redis = PrivateRedis::start().await;
    let logs = std::env::temp_dir().join(format!(
        "ticketing-faults-{name}-{}",
        Uuid::new_v4().simple()
    ));
    let mut services = Services::start(&postgres.url(), &redis.url(), &logs).await;
    let http = reqwest::Client::builder()
        .timeout(ANSWER_BOUND)
        .build()
        .unwrap();
    let event = services
        .create_event(
            &http,
            json!({
            "name": format!("fault {name}"), "venue_name": "Fault Hall", "starts_at": "2031-01-01T20:00:00Z",
            "waiting_room": {"enabled": true, "admission_per_minute": 6000, "max_active": 1000, "paused": false, "token_ttl_s": 600},
            "tiers": [{"code": "VIP", "name": "VIP", "price_cents": 100, "capacity": 400},
                      {"code": "GA", "name": "GA", "price_cents": 50, "capacity": 4000}]
        }),
        )
        .await;
    let sale = Sale::new(
        vec![services.gateway.clone()],
        vec![services.booking.clone()],
        vec![event],
    );
    let buyers = sale.start(6);

    tokio::time::sleep(Duration::from_secs(3)).await;
    let fault_started = Instant::now();
    fault(&mut redis, &postgres, &mut services).await;
    let fault_ended = Instant::now();
    services.wait_ready().await;
    let resumed = sale.resumes_after(fault_ended, resumes_within).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    sale.stop(buyers).await;
    assert!(
        resumed,
        "{name}: the sale did not resume within {resumes_within:?} of the fault ending"
    );
    let before = sale
        .answers()
        .iter()
        .filter(|a| a.what == "book" && a.status == 201 && a.at < fault_started)
        .count();
    assert!(before > 0, "{name}: the sale was running before the fault");
    assert_clean(name, &sale.answers(), down.map(|_| fault_started));

    // Recovery window: holds past their life are swept, the reconciler runs once a second.
    let db = sqlx::PgPool::connect(&postgres.url()).await.unwrap();
    let store = RedisClient::connect_single(&redis.url()).await.unwrap();
    sale.ledger()
        .assert_holds(&db, &store, event, HOLD_TTL + Duration::from_secs(6))
        .await;
    let _ = std::fs::remove_dir_all(&logs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_that_loses_everything_is_survived() {
    // After losing the line, admission waits one longest poll interval, so that buyers who were
    // waiting are back at their places (from their receipts) before anyone behind them is
    // admitted; these buyers rejoin and are admitted after it.
    let grace = Duration::from_millis(ticketing::queue::LONGEST_POLL_MS);
    with_fault_resuming(
        "redis-restart",
        None,
        RESUMES_WITHIN + grace,
        async |redis, _, _| redis.restart_empty().await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_for_ten_seconds_is_survived() {
    with_fault("redis-unreachable", None, async |redis, _, _| {
        redis.freeze();
        tokio::time::sleep(Duration::from_secs(10)).await;
        redis.resume();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_for_ten_seconds_is_survived() {
    with_fault("postgres-stopped", None, async |_, postgres, _| {
        postgres.stop_server();
        tokio::time::sleep(Duration::from_secs(10)).await;
        postgres.start_server();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_booking_process_killed_under_load_loses_nothing() {
    with_fault(
        "booking-killed",
        Some(Service::Booking),
        async |_, _, services| {
            services.kill(Service::Booking);
            tokio::time::sleep(Duration::from_secs(1)).await;
            services.start_again(Service::Booking);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_worker_killed_and_restarted_loses_nothing() {
    with_fault(
        "worker-killed",
        Some(Service::Worker),
        async |_, _, services| {
            services.kill(Service::Worker);
            tokio::time::sleep(Duration::from_secs(3)).await;
            services.start_again(Service::Worker);
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restart_loses_nothing() {
    with_fault(
        "gateway-restart",
        Some(Service::Gateway),
        async |_, _, services| {
            services.terminate(Service::Gateway);
            services.start_again(Service::Gateway);
        },
    )
    .await;
}
