//! The seams between a retry, the writers, the sweeper and a rebuild, each interleaving driven
//! on purpose against the real booking service (in process), the real sweeper's code and a
//! test-owned Postgres database:
//! - writes are paused by holding the event's advisory lock exclusively, as a rebuild does (every
//!   booking write of the event waits for it); with one writer and a queue of one, the next
//!   order finds the queue full;
//! - the sweeper runs when the test says, its listing and its settling apart;
//! - a commit that waits (a synchronous standby's acknowledgement) is a deferred trigger that
//!   sleeps at commit, which `statement_timeout` does not count, as it does not count the wait
//!   for a standby.
//!
//! Each test ends with the ledger (every 201 in Postgres with its tickets, nothing booked that
//! nobody could learn of, nothing oversold) and with Redis's stock per tier equal to capacity −
//! sold − held, and counts the inventory rebuilds from Postgres's own log of epoch changes.

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::ledger::{self, Ledger, Outcome};
use system_tests::{eventually, room_off, writes_waiting, Options, System};
use ticketing::inventory::{self, HoldFor, Reservation};
use ticketing::keys::EventKeys;
use ticketing::token::TokenId;
use uuid::Uuid;

fn order(event: Uuid, quantity: u32, email: &str) -> Value {
    json!({"event_id": event, "tiers": {"GA": quantity}, "buyer_email": email})
}

/// One writer and a queue of one, no queue-worker: the test is the sweeper.
fn options() -> Options {
    Options {
        workers: 0,
        writers: 1,
        write_queue: 1,
        ..Options::default()
    }
}

/// Counts every change of an event's inventory epoch (one per rebuild, the first load at the
/// event's creation included) in a table of the test's own database.
async fn log_rebuilds(db: &PgPool) {
    for statement in [
        "CREATE TABLE epoch_log (event_id uuid, epoch bigint, at timestamptz DEFAULT clock_timestamp())",
        "CREATE FUNCTION log_epoch() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO epoch_log (event_id, epoch) VALUES (NEW.id, NEW.inventory_epoch);
             RETURN NULL;
         END $$",
        "CREATE TRIGGER log_epoch AFTER UPDATE OF inventory_epoch ON events
         FOR EACH ROW WHEN (OLD.inventory_epoch IS DISTINCT FROM NEW.inventory_epoch)
         EXECUTE FUNCTION log_epoch()",
    ] {
        sqlx::query(statement)
            .execute(db)
            .await
            .expect("logging rebuilds");
    }
}

async fn rebuilds(db: &PgPool, event: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM epoch_log WHERE event_id = $1")
        .bind(event)
        .fetch_one(db)
        .await
        .expect("counting rebuilds")
}

/// Holds the event's lock exclusively until dropped (rolled back): every booking write of the
/// event waits meanwhile.
async fn pause_writes(db: &PgPool, event: Uuid) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = db.begin().await.expect("begin");
    let exists: bool = sqlx::query_scalar("SELECT lock_event($1, true)")
        .bind(event)
        .fetch_one(&mut *tx)
        .await
        .expect("locking the event");
    assert!(exists);
    tx
}

/// The numbers the token holds in Redis, if it holds any.
async fn hold_of(system: &System, event: Uuid, jti: Uuid) -> Option<inventory::Numbers> {
    let snapshot = inventory::snapshot(&system.redis, event)
        .await
        .expect("snapshot");
    snapshot.holds.get(&TokenId(jti)).cloned()
}

async fn hold_appears(system: &System, event: Uuid, jti: Uuid) -> inventory::Numbers {
    eventually(Duration::from_secs(10), "a hold", || async {
        hold_of(system, event, jti).await
    })
    .await
}

/// Ends the test: Redis's stock agrees with Postgres now, and the ledger holds once quiet.
async fn assert_settled(system: &System, ledger: &Ledger, event: Uuid) {
    let drift = ledger::stock_drift(&system.db, &system.redis, event).await;
    assert!(drift.is_empty(), "redis drifted from postgres: {drift:#?}");
    ledger
        .assert_holds(&system.db, &system.redis, event, Duration::from_secs(5))
        .await;
}

fn new_ledger() -> Ledger {
    Ledger::new(Duration::from_millis(500), Duration::from_secs(5))
}

/// POST /api/bookings, recorded in the ledger.
async fn book(
    system: &System,
    ledger: &Ledger,
    event: Uuid,
    token: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, Value) {
    let (status, answer) = system.book(token, body, key).await;
    ledger.record_token(event, token, Outcome::from_status(status, answer.clone()));
    (status, answer)
}

/// Sends a booking in a task of its own, so the test goes on while it waits: its status and
/// body.
fn spawn_booking(
    system: &System,
    token: &str,
    body: &Value,
    key: Option<&str>,
) -> tokio::task::JoinHandle<(u16, Value)> {
    let (http, base) = (system.http.clone(), system.booking.clone());
    let (token, body, key) = (token.to_string(), body.clone(), key.map(str::to_string));
    tokio::spawn(async move {
        let mut request = http
            .post(format!("{base}/api/bookings"))
            .bearer_auth(&token)
            .json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("booking request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

/// Holds the booking service's only writer: another event's writes are paused and one of its
/// bookings is sent, which the writer takes and waits on. Orders sent meanwhile wait in the
/// queue holding no lock. Roll the transaction back to let the writer go; the booking is 201.
async fn hold_the_writer(
    system: &System,
    db: &PgPool,
) -> (
    sqlx::Transaction<'static, sqlx::Postgres>,
    tokio::task::JoinHandle<(u16, Value)>,
) {
    let elsewhere = system.create_event(&[("GA", 10)], room_off()).await;
    let paused = pause_writes(db, elsewhere).await;
    let (token, _) = system.keys.token(elsewhere, 4, 600);
    let blocker = spawn_booking(
        system,
        &token,
        &order(elsewhere, 1, "blocker@example.com"),
        None,
    );
    writes_waiting(db, 1).await;
    (paused, blocker)
}

/// Seam 1: a retry continues the hold of an attempt whose write is queued, then fails for
/// overload (the writer queue is full). It must not put back the numbers the first attempt is
/// still writing: the first attempt commits, and the next retry gets its answer.
#[sqlx::test(migrations = "../migrations")]
async fn a_failing_retry_never_returns_the_numbers_its_first_attempt_is_writing(db: PgPool) {
    log_rebuilds(&db).await;
    let system = System::start_with(db.clone(), options()).await;
    let ledger = new_ledger();
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let created = rebuilds(&db, event).await;
    let (token, claims) = system.keys.token(event, 4, 600);
    let body = order(event, 2, "first@example.com");

    let paused = pause_writes(&db, event).await;
    let first = spawn_booking(&system, &token, &body, Some("key-1"));
    writes_waiting(&db, 1).await;
    let held = hold_of(&system, event, claims.jti.0)
        .await
        .expect("the first attempt's hold");

    // Another buyer's order fills the queue of one behind the paused write.
    let (other_token, other_claims) = system.keys.token(event, 4, 600);
    let other = spawn_booking(
        &system,
        &other_token,
        &order(event, 1, "other@example.com"),
        None,
    );
    hold_appears(&system, event, other_claims.jti.0).await;
    // The order goes into the queue right after its hold is made.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The client gave up on the first attempt and retries: the hold is continued, and the
    // retry finds the write queue full.
    let (status, answer) = book(&system, &ledger, event, &token, &body, Some("key-1")).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(
        hold_of(&system, event, claims.jti.0).await.as_ref(),
        Some(&held),
        "the retry's failure must leave the hold its first attempt is writing"
    );
    let drift = ledger::stock_drift(&system.db, &system.redis, event).await;
    assert!(drift.is_empty(), "{drift:#?}");

    paused.rollback().await.expect("resuming writes");
    let (status, first_answer) = first.await.expect("first attempt");
    ledger.record_token(
        event,
        &token,
        Outcome::from_status(status, first_answer.clone()),
    );
    assert_eq!(status, 201, "{first_answer}");
    let (status, answer) = other.await.expect("other buyer");
    ledger.record_token(
        event,
        &other_token,
        Outcome::from_status(status, answer.clone()),
    );
    assert_eq!(status, 201, "{answer}");

    // The next retry is told what the first attempt booked.
    let (status, answer) = book(&system, &ledger, event, &token, &body, Some("key-1")).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["booking_id"], first_answer["booking_id"]);

    assert_settled(&system, &ledger, event).await;
    assert_eq!(system.issued(event).await["GA"], 3);
    assert_eq!(rebuilds(&db, event).await - created, 0);
}

/// Seam 2: a token whose booking is written reserves again (a rebuild emptied the used set), with
/// the same request and with another. The new hold's numbers are not the booking's: confirming
/// must put them back on sale, not count them as sold.
#[sqlx::test(migrations = "../migrations")]
async fn confirming_a_hold_of_other_numbers_than_the_booking_returns_them(db: PgPool) {
    log_rebuilds(&db).await;
    let system = System::start_with(db.clone(), options()).await;
    let ledger = new_ledger();
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let created = rebuilds(&db, event).await;
    let (token, _) = system.keys.token(event, 4, 600);
    let body = order(event, 2, "twice@example.com");
    let (status, first) = book(&system, &ledger, event, &token, &body, None).await;
    assert_eq!(status, 201, "{first}");

    ticketing::rebuild::rebuild_inventory(
        &db,
        &system.redis,
        event,
        ticketing::rebuild::When::Always,
    )
    .await
    .expect("rebuild");

    // Same request, no key: reserved afresh, refused by Postgres as the token's, answered with
    // the booking it has.
    let (status, again) = book(&system, &ledger, event, &token, &body, None).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["booking_id"], first["booking_id"]);
    assert_settled(&system, &ledger, event).await;

    // Another request with the same token: token_used, and the numbers it reserved go back.
    let other = order(event, 1, "twice@example.com");
    let (status, answer) = book(&system, &ledger, event, &token, &other, None).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["error"]["code"], "token_used", "{answer}");
    assert_settled(&system, &ledger, event).await;
    assert_eq!(system.availability(event).await["GA"], 8);
    assert_eq!(rebuilds(&db, event).await - created, 1);
}

/// Seam 3: the sweeper lists an overdue hold; a retry then continues it (re-arming it) and
/// queues its write; the sweeper's release must see the new deadline and leave the hold, and the
/// retry's write commits.
#[sqlx::test(migrations = "../migrations")]
async fn the_sweeper_never_releases_a_hold_a_retry_rearmed_after_its_listing(db: PgPool) {
    log_rebuilds(&db).await;
    let system = System::start_with(
        db.clone(),
        Options {
            write_queue: 8,
            ..options()
        },
    )
    .await;
    let ledger = new_ledger();
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let created = rebuilds(&db, event).await;
    let (token, claims) = system.keys.token(event, 4, 600);
    let body = order(event, 2, "late@example.com");

    // A booking process reserved for this request and died: its hold is overdue.
    let request: booking::domain::BookingRequest =
        serde_json::from_value(body.clone()).expect("request");
    let tiers = booking::tiers::TierCatalog::default()
        .named(&db, event)
        .await
        .expect("tiers")
        .expect("event");
    let fingerprint: String = booking::domain::Order::parse(request, &tiers, claims.max)
        .expect("order")
        .fingerprint()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dead = inventory::reserve(
        &system.redis,
        event,
        claims.jti,
        1,
        HoldFor {
            fingerprint: &fingerprint,
            attempt: "a-process-that-died",
            claim: None,
        },
        &[(ticketing::tier::TierCode::known("GA"), 2)],
    )
    .await
    .expect("reserve");
    assert!(matches!(dead, Reservation::Held { .. }), "{dead:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let listing = inventory::overdue_holds(&system.redis, event)
        .await
        .expect("listing");
    assert_eq!(listing.reservations, vec![claims.jti]);

    // The only writer is busy with another event's paused write, so the retry's order waits in
    // the queue: it holds no lock the sweeper would wait for.
    let (paused, blocker) = hold_the_writer(&system, &db).await;
    let retry = spawn_booking(&system, &token, &body, Some("late-key"));
    let keys = EventKeys::new(event);
    eventually(
        Duration::from_secs(10),
        "the retry re-arming the hold",
        || {
            let mut redis = system.redis.clone();
            let holds = keys.holds();
            async move {
                let (deadline, time): (Option<f64>, (i64, i64)) = redis::pipe()
                    .cmd("ZSCORE")
                    .arg(holds)
                    .arg(claims.jti)
                    .cmd("TIME")
                    .query_async(&mut redis)
                    .await
                    .ok()?;
                // Re-armed: a whole hold ahead of Redis's clock, not the dead hold's past deadline.
                let now_ms = time.0 * 1000 + time.1 / 1000;
                (deadline? > (now_ms + 10_000) as f64).then_some(())
            }
        },
    )
    .await;

    let swept = queue_worker::jobs::holds::settle(&db, &system.redis, event, listing)
        .await
        .expect("sweeping");
    assert_eq!(swept.released, 0, "{swept:?}");
    assert_eq!(swept.kept, 1, "{swept:?}");
    assert!(hold_of(&system, event, claims.jti.0).await.is_some());

    paused.rollback().await.expect("resuming writes");
    assert_eq!(blocker.await.expect("blocker").0, 201);
    let (status, answer) = retry.await.expect("retry");
    ledger.record_token(event, &token, Outcome::from_status(status, answer.clone()));
    assert_eq!(status, 201, "{answer}");

    assert_settled(&system, &ledger, event).await;
    assert_eq!(system.issued(event).await["GA"], 2);
    assert_eq!(rebuilds(&db, event).await - created, 0);
}

/// Seam 4: a wave of orders meets the same drift (Redis offers numbers Postgres has sold): the
/// event is rebuilt once, not once per order, and the buyers' retries book.
#[sqlx::test(migrations = "../migrations")]
async fn one_wave_of_number_conflicts_rebuilds_the_event_once(db: PgPool) {
    log_rebuilds(&db).await;
    let system = System::start_with(
        db.clone(),
        Options {
            write_queue: 8,
            ..options()
        },
    )
    .await;
    let ledger = new_ledger();
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let created = rebuilds(&db, event).await;
    let mut sold = Vec::new();
    for i in 0..3 {
        let (token, _) = system.keys.token(event, 4, 600);
        let body = order(event, 1, &format!("early{i}@example.com"));
        let (status, answer) = book(&system, &ledger, event, &token, &body, None).await;
        assert_eq!(status, 201, "{answer}");
        sold.push(answer["tickets"][0]["number"].as_i64().expect("number"));
    }
    // Drift: the sold numbers are offered again (drawn first: free numbers go before fresh).
    let keys = EventKeys::new(event);
    let ga = ticketing::tier::TierCode::known("GA");
    let _: () = redis::pipe()
        .cmd("SADD")
        .arg(keys.free_numbers(&ga))
        .arg(&sold)
        .ignore()
        .cmd("HINCRBY")
        .arg(keys.inventory())
        .arg("GA:avail")
        .arg(sold.len())
        .ignore()
        .query_async(&mut system.redis.clone())
        .await
        .expect("planting drift");

    // The only writer is held by another event's paused write, so the wave queues up and is
    // written as one batch: every order of it meets the drift before any rebuild.
    let (paused, blocker) = hold_the_writer(&system, &db).await;
    let mut wave = Vec::new();
    for i in 0..3 {
        let (token, claims) = system.keys.token(event, 4, 600);
        let body = order(event, 1, &format!("wave{i}@example.com"));
        let answer = spawn_booking(&system, &token, &body, None);
        hold_appears(&system, event, claims.jti.0).await;
        wave.push((token, body, answer));
    }
    // Each order goes into the queue right after its hold is made.
    tokio::time::sleep(Duration::from_millis(300)).await;
    paused.rollback().await.expect("resuming writes");
    assert_eq!(blocker.await.expect("blocker").0, 201);
    for (token, _, answer) in &mut wave {
        let (status, body) = answer.await.expect("wave answer");
        ledger.record_token(event, token, Outcome::from_status(status, body.clone()));
        assert_eq!(status, 503, "{body}");
    }
    assert_eq!(
        rebuilds(&db, event).await - created,
        1,
        "one rebuild for one wave"
    );
    for (token, body, _) in &wave {
        let (status, answer) = book(&system, &ledger, event, token, body, None).await;
        assert_eq!(status, 201, "{answer}");
    }
    assert_settled(&system, &ledger, event).await;
    assert_eq!(system.issued(event).await["GA"], 6);
    assert_eq!(rebuilds(&db, event).await - created, 1);
}

/// Seam 5: an order of the per-order fallback meets a lock it is not granted in time (here a
/// ticket number another transaction is inserting): the buyer is told 503 with Retry-After, not
/// 500, and the retry books.
#[sqlx::test(migrations = "../migrations")]
async fn a_lock_timeout_in_the_write_is_503_with_retry_after(db: PgPool) {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&db)
        .await
        .expect("database");
    sqlx::query(&format!(
        "ALTER DATABASE \"{database}\" SET lock_timeout = '300ms'"
    ))
    .execute(&db)
    .await
    .expect("lock timeout");
    let system = System::start_with(db.clone(), options()).await;
    let ledger = new_ledger();
    let event = system.create_event(&[("GA", 1)], room_off()).await;

    // Someone else's transaction is inserting number 1 of GA, the only one, and has not ended.
    let (tier, capacity): (Uuid, i32) =
        sqlx::query_as("SELECT id, capacity FROM ticket_tiers WHERE event_id = $1")
            .bind(event)
            .fetch_one(&db)
            .await
            .expect("tier");
    let mut other = db.begin().await.expect("begin");
    let booking = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id,
                               request_hash, total_cents)
         VALUES ($1, $2, 'x@example.com', 'confirmed', $3, $4, '\\x00', 0)",
    )
    .bind(booking)
    .bind(event)
    .bind(Uuid::new_v4())
    .bind(Uuid::nil())
    .execute(&mut *other)
    .await
    .expect("booking");
    sqlx::query(
        "INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, $3, 1)",
    )
    .bind(booking)
    .bind(tier)
    .bind(capacity)
    .execute(&mut *other)
    .await
    .expect("ticket");

    let (token, _) = system.keys.token(event, 4, 600);
    let body = order(event, 1, "locked@example.com");
    let response = system
        .http
        .post(format!("{}/api/bookings", system.booking))
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .expect("booking");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    ledger.record_token(event, &token, Outcome::from_status(status, answer.clone()));
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["code"], "unavailable");
    assert!(retry_after.is_some(), "a 503 says when to retry");
    let drift = ledger::stock_drift(&system.db, &system.redis, event).await;
    assert!(drift.is_empty(), "{drift:#?}");

    other.rollback().await.expect("rollback");
    let (status, answer) = book(&system, &ledger, event, &token, &body, None).await;
    assert_eq!(status, 201, "{answer}");
    assert_settled(&system, &ledger, event).await;
}

/// Seam 6: a write's commit waits past the hold's deadline (a synchronous standby that does not
/// answer; `statement_timeout` does not count it). The sweeper must treat the hold as unknown,
/// not overdue, while the commit may still land, and confirm it once it has.
#[sqlx::test(migrations = "../migrations")]
async fn the_sweeper_waits_for_a_write_still_committing(db: PgPool) {
    for statement in [
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN PERFORM pg_sleep(3); RETURN NULL; END $$",
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON bookings
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
         WHEN (NEW.buyer_email = 'slow@example.com') EXECUTE FUNCTION slow_commit()",
    ] {
        sqlx::query(statement)
            .execute(&db)
            .await
            .expect("slow commits");
    }
    log_rebuilds(&db).await;
    let system = System::start_with(db.clone(), options()).await;
    let ledger = new_ledger();
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let created = rebuilds(&db, event).await;
    let (token, claims) = system.keys.token(event, 4, 600);
    let body = order(event, 2, "slow@example.com");
    let booking = spawn_booking(&system, &token, &body, None);
    eventually(Duration::from_secs(10), "a commit waiting", || async {
        let committing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event = 'PgSleep'
                AND query LIKE '%book_orders%'",
        )
        .fetch_one(&db)
        .await
        .ok()?;
        (committing > 0).then_some(())
    })
    .await;
    // The stall outlasts the hold: its deadline passes.
    let _: i64 = redis::cmd("ZADD")
        .arg(EventKeys::new(event).holds())
        .arg("XX")
        .arg(0)
        .arg(claims.jti)
        .query_async(&mut system.redis.clone())
        .await
        .expect("the deadline passing");

    let swept = queue_worker::jobs::holds::sweep(&db, &system.redis, event)
        .await
        .expect("sweeping");
    assert_eq!(swept.released, 0, "{swept:?}");
    assert_eq!(swept.kept, 1, "{swept:?}");

    let (status, answer) = booking.await.expect("booking");
    ledger.record_token(event, &token, Outcome::from_status(status, answer.clone()));
    assert_eq!(status, 201, "{answer}");
    // The checkout's confirm ran off the answer's path; the sweeper finds the rest.
    let swept = queue_worker::jobs::holds::sweep(&db, &system.redis, event)
        .await
        .expect("sweeping");
    assert_eq!(swept.released, 0, "{swept:?}");
    assert_settled(&system, &ledger, event).await;
    assert_eq!(system.issued(event).await["GA"], 2);
    assert_eq!(rebuilds(&db, event).await - created, 0);
}

/// Seam 7: the booking service's set of known event ids (refreshed at most every 100 ms by
/// look-ups of unknown ids) meets a token the gateway signed a moment after the event was
/// created. The token proves the event: every booking made at once is 201, never "unknown event".
#[sqlx::test(migrations = "../migrations")]
async fn a_fresh_event_is_never_unknown_to_its_tokens_during_an_unknown_id_flood(db: PgPool) {
    let system = System::start_with(db.clone(), Options::default()).await;
    let flood = {
        let (http, base) = (system.http.clone(), system.booking.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            loop {
                tick.tick().await;
                let url = format!("{base}/api/events/{}/availability", Uuid::new_v4());
                let status = http.get(url).send().await.map(|r| r.status().as_u16());
                assert_eq!(status.ok(), Some(404), "an unknown id is 404");
            }
        })
    };
    for i in 0..50 {
        let event = system.create_event(&[("GA", 5)], room_off()).await;
        let (status, joined) = system.join(event, &format!("visitor-{i}")).await;
        assert_eq!(status, 202, "{joined}");
        let token = match joined["token"].as_str() {
            Some(token) => token.to_string(),
            None => {
                let queue_id = joined["queue_id"].as_str().expect("queue id");
                let (_, polled) = system.poll(queue_id).await;
                polled["token"]
                    .as_str()
                    .expect("admitted at once")
                    .to_string()
            }
        };
        let (status, answer) = system
            .book(&token, &order(event, 1, "fresh@example.com"), None)
            .await;
        assert_eq!(
            status, 201,
            "booking {i} right after creating its event: {answer}"
        );
    }
    assert!(!flood.is_finished(), "the flood ran throughout");
    flood.abort();
}
