//! A retry storm against the real gateway, booking and queue-worker processes: buyers whose
//! clients give up after 50 ms (every other one after 500 ms) and retry the same request (same
//! entry token, same `Idempotency-Key`) at once, against a booking service whose one writer and short write queue
//! are kept nearly full, for 30 s. Retries continue holds whose first attempt is still queued or
//! writing; retries fail for overload while that write commits; the sweeper runs throughout.
//!
//! At the end every buyer asks once more until it gets a definite answer, and: every 201 is in
//! Postgres with its tickets and nothing is booked that its buyer cannot learn of (the ledger),
//! Redis's stock per tier equals capacity − sold − held, and no event was rebuilt more than once
//! after its creation.
//!
//! Run alone with `cargo build -p gateway -p booking -p queue-worker && cargo test -p system-tests
//! --test retry_storm`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::{ConnectOptions, PgPool};
use system_tests::ledger::{self, Ledger, Outcome};
use system_tests::processes::{Services, STATEMENT_TIMEOUT, SWEEP_INTERVAL};
use ticketing::token::{EntryClaims, EntrySigner, TokenId};
use uuid::Uuid;

/// How long the storm lasts.
const STORM: Duration = Duration::from_secs(30);
/// Buyers at once.
const BUYERS: usize = 48;
/// The impatient clients' patience: every other buyer's.
const CLIENT_TIMEOUT: Duration = Duration::from_millis(50);
/// The other buyers wait this long, so the service's answers under overload (503 "busy") are
/// read whatever this machine's speed: where a loaded service answers in 50-200 ms, impatient
/// clients alone time out on nearly everything and never see one (seen: 6 of 17,000).
const PATIENT_TIMEOUT: Duration = Duration::from_millis(500);

#[sqlx::test(migrations = "../migrations")]
async fn retries_under_overload_lose_nothing_and_drift_nothing(db: PgPool) {
    sqlx::query("CREATE TABLE epoch_log (event_id uuid, epoch bigint)")
        .execute(&db)
        .await
        .expect("epoch log");
    sqlx::query(
        "CREATE FUNCTION log_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO epoch_log VALUES (NEW.id, NEW.inventory_epoch); RETURN NULL; END $$",
    )
    .execute(&db)
    .await
    .expect("epoch log");
    sqlx::query(
        "CREATE TRIGGER log_epoch AFTER UPDATE OF inventory_epoch ON events FOR EACH ROW
         WHEN (OLD.inventory_epoch IS DISTINCT FROM NEW.inventory_epoch) EXECUTE FUNCTION log_epoch()",
    )
    .execute(&db)
    .await
    .expect("epoch log");

    let logs = std::env::temp_dir().join(format!("ticketing-storm-{}", Uuid::new_v4().simple()));
    let database_url = db.connect_options().to_url_lossy().to_string();
    let services = Services::start_with(
        &database_url,
        &system_tests::redis_url(),
        &logs,
        &[
            // One writer taking a few orders at a time behind a short queue: the storm keeps it
            // nearly full, so retries meet "busy" while their first attempt is being written.
            ("BOOKING_WRITERS", "1"),
            ("BOOKING_WRITE_BATCH", "4"),
            ("BOOKING_WRITE_QUEUE", "16"),
            ("BOOKING_PER_TOKEN_PER_SECOND", "1000"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let mut events = Vec::new();
    for i in 0..2 {
        let event = services
            .create_event(
                &http,
                json!({
                    "name": format!("storm {i}"), "venue_name": "Storm Hall",
                    "starts_at": "2031-01-01T20:00:00Z",
                    "on_sale_at": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
                    "waiting_room": {"enabled": false, "admission_per_minute": 600, "max_active": 1000, "paused": false, "token_ttl_s": 600},
                    "tiers": [{"code": "VIP", "name": "VIP", "price_cents": 100, "capacity": 300},
                              {"code": "GA", "name": "GA", "price_cents": 50, "capacity": 3000}]
                }),
            )
            .await;
        events.push(event);
    }
    let created: Vec<i64> = {
        let mut counts = Vec::new();
        for event in &events {
            counts.push(rebuilds(&db, *event).await);
        }
        counts
    };

    let pem = std::fs::read(services.keys_dir.join("fault.key.pem")).expect("signing key");
    let signer = Arc::new(EntrySigner::from_pem("fault", &pem).expect("signer"));
    let ledger = Arc::new(Ledger::new(SWEEP_INTERVAL, STATEMENT_TIMEOUT));
    let stop = Arc::new(AtomicBool::new(false));
    let impatient = reqwest::Client::builder()
        .timeout(CLIENT_TIMEOUT)
        .build()
        .expect("client");
    let less_impatient = reqwest::Client::builder()
        .timeout(PATIENT_TIMEOUT)
        .build()
        .expect("client");
    let mut buyers = Vec::new();
    for b in 0..BUYERS {
        let buyer = Buyer {
            http: if b % 2 == 0 {
                impatient.clone()
            } else {
                less_impatient.clone()
            },
            booking: services.booking.clone(),
            event: events[b % events.len()],
            signer: signer.clone(),
            ledger: ledger.clone(),
        };
        let stop = stop.clone();
        buyers.push(tokio::spawn(async move {
            let mut unsettled = Vec::new();
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if let Some(request) = buyer.buy(b, n, &stop).await {
                    unsettled.push(request);
                }
            }
            unsettled
        }));
    }
    tokio::time::sleep(STORM).await;
    stop.store(true, Ordering::Relaxed);
    let mut unsettled = Vec::new();
    for buyer in buyers {
        unsettled.extend(buyer.await.expect("buyer"));
    }

    // Every request left without a definite answer is asked again, patiently, until it has one.
    let patient = Buyer {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client"),
        booking: services.booking.clone(),
        event: events[0],
        signer,
        ledger: ledger.clone(),
    };
    for request in &unsettled {
        patient.settle(request).await;
    }

    let summary = ledger.summary();
    eprintln!("storm: {summary:?}, {} asked again", unsettled.len());
    assert!(summary.booked > 0, "the storm booked nothing: {summary:?}");
    assert!(
        summary.timed_out > 0 && summary.answered.get(&503).copied().unwrap_or(0) > 0,
        "the storm never overloaded the booking service: {summary:?}"
    );
    let redis = ticketing::redis_client::RedisClient::connect(
        &ticketing::config::StoreConfig::from_vars(&ticketing::config::Vars::of([
            ("DATABASE_URL", database_url.clone()),
            ("REDIS_URL", system_tests::redis_url()),
        ]))
        .expect("the store settings"),
    )
    .await
    .expect("redis");
    for (event, created) in events.iter().zip(created) {
        ledger
            .assert_holds(&db, &redis, *event, Duration::from_secs(20))
            .await;
        let drift = ledger::stock_drift(&db, &redis, *event).await;
        assert!(drift.is_empty(), "redis drifted from postgres: {drift:#?}");
        let rebuilt = rebuilds(&db, *event).await - created;
        assert!(
            rebuilt <= 1,
            "event {event} rebuilt {rebuilt} times in the storm"
        );
    }
}

async fn rebuilds(db: &PgPool, event: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM epoch_log WHERE event_id = $1")
        .bind(event)
        .fetch_one(db)
        .await
        .expect("counting rebuilds")
}

/// One request as its client keeps sending it.
struct Request {
    event: Uuid,
    token: String,
    key: String,
    body: Value,
}

struct Buyer {
    http: reqwest::Client,
    booking: String,
    event: Uuid,
    signer: Arc<EntrySigner>,
    ledger: Arc<Ledger>,
}

impl Buyer {
    /// One buyer's purchase: a fresh token, retried with the same key until a definite answer
    /// or the storm's end. Returns the request when it ended without one.
    async fn buy(&self, buyer: usize, n: u32, stop: &AtomicBool) -> Option<Request> {
        let now = chrono::Utc::now().timestamp();
        let claims = EntryClaims {
            sub: ticketing::queue::QueueId(Uuid::new_v4()),
            evt: self.event,
            jti: TokenId::new_v4(),
            iat: now,
            exp: now + 600,
            max: 4,
        };
        let token = self.signer.sign(&claims).expect("signing");
        let tiers = if n % 10 == 0 {
            json!({"VIP": 1, "GA": 1})
        } else {
            json!({"GA": 1 + (n % 3)})
        };
        let request = Request {
            event: self.event,
            token,
            key: format!("storm-{buyer}-{n}"),
            body: json!({"event_id": self.event, "tiers": tiers, "buyer_email": format!("b{buyer}n{n}@example.com")}),
        };
        loop {
            let outcome = self.send(&request).await;
            if !outcome.is_unknown() {
                return None;
            }
            if stop.load(Ordering::Relaxed) {
                return Some(request);
            }
            // At once, or nearly: the worst moment for the first attempt.
            tokio::time::sleep(Duration::from_millis(u64::from(n % 5))).await;
        }
    }

    async fn send(&self, request: &Request) -> Outcome {
        let sent = self
            .http
            .post(format!("{}/api/bookings", self.booking))
            .bearer_auth(&request.token)
            .header("Idempotency-Key", &request.key)
            .json(&request.body)
            .send()
            .await;
        let outcome = match sent {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.json::<Value>().await {
                    Ok(body) => Outcome::from_status(status, body),
                    Err(e) if e.is_timeout() => Outcome::TimedOut,
                    Err(_) => Outcome::ConnectionLost,
                }
            }
            Err(e) if e.is_timeout() => Outcome::TimedOut,
            Err(_) => Outcome::ConnectionLost,
        };
        self.ledger
            .record_token(request.event, &request.token, outcome.clone());
        outcome
    }

    /// Sends `request` until it gets a definite answer.
    async fn settle(&self, request: &Request) {
        for _ in 0..100 {
            if !self.send(request).await.is_unknown() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no definite answer for {} after 100 tries", request.key);
    }
}
