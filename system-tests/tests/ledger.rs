//! The ledger check itself: quiet on a consistent sale, and loud about every broken promise it
//! lists, each made by hand on a private PostgreSQL and a private Redis.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::ledger::{Ledger, Outcome};
use system_tests::private_redis::PrivateRedis;
use system_tests::processes::PrivatePostgres;
use ticketing::inventory::{self, Reservation};
use ticketing::redis_client::RedisClient;
use ticketing::token::TokenId;
use uuid::Uuid;

struct Store {
    db: PgPool,
    redis: RedisClient,
    event: Uuid,
}

impl Store {
    async fn tier(&self, code: &str) -> (Uuid, i32) {
        sqlx::query_as("SELECT id, capacity FROM ticket_tiers WHERE event_id = $1 AND code = $2")
            .bind(self.event)
            .bind(code)
            .fetch_one(&self.db)
            .await
            .expect("tier")
    }

    /// Reserves `quantity` of `code` in Redis for `jti`, holding them for `hold_ms`.
    async fn reserve(&self, jti: Uuid, code: &str, quantity: u32, hold_ms: u64) -> Vec<i32> {
        let reserved = inventory::reserve(
            &self.redis,
            self.event,
            TokenId(jti),
            hold_ms,
            ticketing::inventory::HoldFor {
                fingerprint: "fp",
                attempt: "attempt",
                claim: None,
            },
            &[(ticketing::tier::TierCode::known(code), quantity)],
        )
        .await
        .expect("reserve");
        let Reservation::Held { numbers, .. } = reserved else {
            panic!("not held: {reserved:?}");
        };
        numbers[code].clone()
    }

    /// A booking as the booking service makes it: reserved, written, confirmed. Its 201 body.
    async fn book(&self, jti: Uuid, code: &str, quantity: u32) -> Value {
        let numbers = self.reserve(jti, code, quantity, 60_000).await;
        let body = self.insert(jti, code, &numbers).await;
        let code = ticketing::tier::TierCode::known(code);
        inventory::confirm(
            &self.redis,
            self.event,
            TokenId(jti),
            ticketing::queue::QueueId(Uuid::nil()),
            &[(code.clone(), numbers)].into(),
            &[code],
        )
        .await
        .expect("confirm");
        body
    }

    /// Writes a booking of `numbers` to Postgres only.
    async fn insert(&self, jti: Uuid, code: &str, numbers: &[i32]) -> Value {
        let booking = Uuid::new_v4();
        let (tier, capacity) = self.tier(code).await;
        sqlx::query(
            "INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id,
                                   request_hash, total_cents)
             VALUES ($1, $2, 'a@example.com', 'confirmed', $3, $4, '\\x00', 0)",
        )
        .bind(booking)
        .bind(self.event)
        .bind(jti)
        .bind(Uuid::nil())
        .execute(&self.db)
        .await
        .expect("booking");
        let mut tickets = Vec::new();
        for number in numbers {
            let id: Uuid = sqlx::query_scalar(
                "INSERT INTO tickets (booking_id, tier_id, tier_capacity, number)
                 VALUES ($1, $2, $3, $4) RETURNING id",
            )
            .bind(booking)
            .bind(tier)
            .bind(capacity)
            .bind(number)
            .fetch_one(&self.db)
            .await
            .expect("ticket");
            tickets.push(json!({"id": id, "tier": code, "number": number}));
        }
        json!({"booking_id": booking, "event_id": self.event, "status": "confirmed", "tickets": tickets})
    }
}

fn created(body: Value) -> Outcome {
    Outcome::Answered { status: 201, body }
}

fn expect_found(violations: &[String], what: &str) {
    assert!(
        violations.iter().any(|v| v.contains(what)),
        "the ledger check did not report {what:?}: {violations:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_check_passes_a_consistent_sale_and_reports_every_broken_promise() {
    let postgres = PrivatePostgres::start();
    let private_redis = PrivateRedis::start().await;
    let db = PgPool::connect(&postgres.url()).await.expect("postgres");
    ticketing::db::migrate(&db).await.expect("migrations");
    let redis = RedisClient::connect_single(&private_redis.url())
        .await
        .expect("redis");
    let venue: Uuid =
        sqlx::query_scalar("INSERT INTO venues (name) VALUES ('Ledger Hall') RETURNING id")
            .fetch_one(&db)
            .await
            .expect("venue");
    let event: Uuid = sqlx::query_scalar(
        "INSERT INTO events (name, venue_id, starts_at, on_sale_at)
         VALUES ('ledger', $1, now() + interval '30 days', now()) RETURNING id",
    )
    .bind(venue)
    .fetch_one(&db)
    .await
    .expect("event");
    for (position, (code, capacity)) in [("VIP", 5), ("GA", 50)].into_iter().enumerate() {
        sqlx::query(
            "INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position)
             VALUES ($1, $2, $2, 100, $3, $4)",
        )
        .bind(event)
        .bind(code)
        .bind(capacity)
        .bind(position as i32)
        .execute(&db)
        .await
        .expect("tier");
    }
    ticketing::rebuild::rebuild_inventory(&db, &redis, event, ticketing::rebuild::When::Always)
        .await
        .expect("inventory");
    let store = Store { db, redis, event };
    let sweep = Duration::from_millis(100);
    let ledger = Ledger::new(sweep, Duration::from_millis(200));

    // A consistent sale: a booking answered 201, a booking whose client lost the answer, a
    // cancelled booking, a refusal.
    let answered_jti = Uuid::new_v4();
    let answered = store.book(answered_jti, "GA", 2).await;
    ledger.record(event, answered_jti, Outcome::Abandoned);
    ledger.record(event, answered_jti, created(answered.clone()));
    let lost = Uuid::new_v4();
    store.book(lost, "VIP", 1).await;
    ledger.record(event, lost, Outcome::Abandoned);
    let refused = Uuid::new_v4();
    ledger.record(
        event,
        refused,
        Outcome::Answered {
            status: 409,
            body: json!({"error": {"code": "insufficient_inventory"}}),
        },
    );
    ledger
        .assert_holds(&store.db, &store.redis, event, Duration::from_secs(5))
        .await;
    let summary = ledger.summary();
    assert_eq!((summary.booked, summary.abandoned), (1, 2), "{summary:?}");

    // Every broken promise, at once.
    // A 201 whose booking Postgres does not have.
    let mut phantom = answered.clone();
    phantom["booking_id"] = json!(Uuid::new_v4());
    ledger.record(event, Uuid::new_v4(), created(phantom));
    // A 201 listing other tickets than Postgres has.
    let mut other_tickets = answered.clone();
    other_tickets["tickets"][0]["number"] = json!(49);
    ledger.record(event, answered_jti, created(other_tickets));
    // A booking nobody was told about, and one whose client was told it was refused.
    store.book(Uuid::new_v4(), "GA", 1).await;
    store.book(refused, "GA", 1).await;
    // A booking without tickets (its client lost the answer).
    let empty = Uuid::new_v4();
    store.insert(empty, "GA", &[]).await;
    ledger.record(event, empty, Outcome::TimedOut);
    // A hold nobody releases, past its deadline.
    store.reserve(Uuid::new_v4(), "VIP", 1, 1).await;
    // Redis availability that drifted from Postgres.
    let () = redis::cmd("HINCRBY")
        .arg(ticketing::keys::EventKeys::new(event).inventory())
        .arg("GA:avail")
        .arg(-3)
        .query_async(&mut store.redis.clone())
        .await
        .expect("drift");
    // A session left inside a transaction.
    let mut idle = store.db.begin().await.expect("begin");
    sqlx::query("SELECT 1")
        .execute(&mut *idle)
        .await
        .expect("select");
    tokio::time::sleep(3 * sweep).await;

    let violations = ledger.violations(&store.db, &store.redis, event).await;
    for what in [
        "is not in postgres",
        "the 201 listed tickets",
        "no client used that token",
        "its client was told only [\"409 insufficient_inventory\"]",
        "has no tickets",
        "past its deadline",
        "hold(s) left",
        "GA: redis says",
        "idle in transaction",
    ] {
        expect_found(&violations, what);
    }
    idle.rollback().await.expect("rollback");
}
