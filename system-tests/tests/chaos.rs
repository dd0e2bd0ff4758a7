//! Chaos on the real gateway, booking and queue-worker processes (private PostgreSQL made with
//! `initdb`, private `redis-server`, each on free ports).
//!
//! Hundreds of buyers join the waiting room, poll until admitted and book, some with an
//! `Idempotency-Key`, retrying with the same token (and key) after a 503 or a lost answer. A third
//! of all their requests are abandoned by the client at a random moment: connected and dropped
//! before anything is sent, closed in the middle of the body, or dropped 0–50 ms after the whole
//! request was sent. A flood of availability reads for made-up events (some sharing the real
//! event's first 8 bytes) runs throughout. In the middle of the sale, one after the other, each
//! a few milliseconds after a burst of bookings was sent (a third of whose buyers give up after
//! that first attempt): the booking process is killed with SIGKILL and started again, Redis is
//! frozen (SIGSTOP) for 5 s, and PostgreSQL is stopped and started. After each fault the test
//! waits for recovery, books afresh, pauses the buyers and runs the ledger check
//! (`system_tests::ledger`): every booking answered 201 is in Postgres with exactly its tickets,
//! every booking in Postgres was answered or is replayable, Redis and Postgres agree on every
//! tier, no hold outlives its deadline, no number is sold twice, and no Postgres session is left
//! idle in a transaction. At the end, every booking no client was answered 201 for is fetched
//! back with its client's token (and key), and every request that got an answer got the
//! contract's, in time.
//!
//! Run alone with `cargo build -p gateway -p booking -p queue-worker && cargo test -p system-tests
//! --test chaos`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::ledger::{token_jti, Ledger, Outcome};
use system_tests::private_redis::PrivateRedis;
use system_tests::processes::{
    PrivatePostgres, Service, Services, HOLD_TTL, STATEMENT_TIMEOUT, SWEEP_INTERVAL,
};
use system_tests::sale::ANSWER_BOUND;
use ticketing::redis_client::RedisClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

/// Buyers served at once.
const BUYER_TASKS: usize = 32;
/// At most one new buyer this often (about 15 a second).
const BUYER_GAP: Duration = Duration::from_millis(65);
/// One availability read for a made-up event this often (about 250 a second), at most
/// `FLOOD_AT_ONCE` in flight.
const FLOOD_GAP: Duration = Duration::from_millis(4);
const FLOOD_AT_ONCE: usize = 16;
/// How long the system may take to be quiet for the ledger check: a hold's life, a few sweeps,
/// two reconciler passes.
const QUIET_WAIT: Duration = Duration::from_secs(HOLD_TTL.as_secs() + 8);
/// The longest the sale may take to book again after a fault.
const RECOVERY: Duration = Duration::from_secs(30);
/// How long a buyer keeps trying to book with its token.
const RETRYING: Duration = Duration::from_secs(15);
/// Bookings sent at once just before each fault.
const BURST: usize = 24;
/// How long after the burst is sent the fault strikes, ms.
const STRIKE_AFTER_MS: std::ops::Range<u64> = 2..25;
const VIP_CAPACITY: i32 = 40;
const GA_CAPACITY: i32 = 20_000;

/// Where a client abandons a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cut {
    /// Connects, then drops the connection without sending anything.
    BeforeSending,
    /// Sends the headers and part of the body, then closes.
    MidBody,
    /// Sends the whole request, then drops the connection after 0–50 ms.
    AwaitingAnswer,
}

/// What a client got.
#[derive(Debug, Clone)]
enum Reply {
    Answer(u16, Value),
    /// Connection refused: nothing was sent.
    Refused,
    /// The client abandoned the request before it was complete.
    Unsent,
    /// The client abandoned the request after sending it in full.
    Abandoned,
    TimedOut,
    /// The connection broke after the request was sent.
    Lost,
}

impl Reply {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Answer(status, body) => Outcome::Answered {
                status: *status,
                body: body.clone(),
            },
            Self::Refused | Self::Unsent => Outcome::Unsent,
            Self::Abandoned => Outcome::Abandoned,
            Self::TimedOut => Outcome::TimedOut,
            Self::Lost => Outcome::ConnectionLost,
        }
    }
}

/// A request as it went out, for the cleanliness check.
#[derive(Debug, Clone)]
struct Seen {
    what: &'static str,
    reply: String,
    status: Option<u16>,
    has_code: bool,
    at: Instant,
}

#[derive(Default)]
struct Stats {
    buyers: usize,
    admitted: usize,
    cuts: BTreeMap<(&'static str, String), usize>,
    /// Requests the client meant to abandon after sending that were answered first.
    cut_but_answered: usize,
    flood: BTreeMap<String, usize>,
    flood_skipped: usize,
    cancels: usize,
}

struct Chaos {
    http: reqwest::Client,
    gateway: String,
    booking: String,
    event: Uuid,
    ledger: Ledger,
    paused: AtomicBool,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    next_buyer: AtomicUsize,
    pace: tokio::sync::Mutex<tokio::time::Instant>,
    stats: Mutex<Stats>,
    seen: Mutex<Vec<Seen>>,
    /// When the booking service was down (its connections refused or cut).
    booking_down: Mutex<Vec<(Instant, Instant)>>,
    /// What each client booked with, by its token's `jti`: to retry it at the end.
    clients: Mutex<HashMap<Uuid, Client>>,
}

/// A client's booking request: its token, key and order.
#[derive(Clone)]
struct Client {
    token: String,
    key: Option<String>,
    order: Value,
}

/// Counts a request in flight for as long as it lives; taken only while the buyers are not
/// paused.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn host(base: &str) -> &str {
    base.trim_start_matches("http://")
}

/// The bytes of an HTTP/1.1 request, and where its body starts.
fn request_bytes(
    method: &str,
    base: &str,
    path: &str,
    bearer: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
) -> (Vec<u8>, usize) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
        host(base)
    );
    if let Some(bearer) = bearer {
        head.push_str(&format!("Authorization: Bearer {bearer}\r\n"));
    }
    if let Some(key) = key {
        head.push_str(&format!("Idempotency-Key: {key}\r\n"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    let start = head.len();
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    (bytes, start)
}

/// Status and JSON body of a whole HTTP/1.1 response (`Connection: close`).
fn parse_response(bytes: &[u8]) -> Option<(u16, Value)> {
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&bytes[..split]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = bytes[split + 4..].to_vec();
    if chunked {
        let mut plain = Vec::new();
        let mut rest = &body[..];
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..end]).ok()?.trim(), 16).ok()?;
            if size == 0 {
                break;
            }
            let chunk = rest.get(end + 2..end + 2 + size)?;
            plain.extend_from_slice(chunk);
            rest = rest.get(end + 4 + size..)?;
        }
        body = plain;
    }
    Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

impl Chaos {
    fn new(gateway: String, booking: String, event: Uuid) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(ANSWER_BOUND)
                .build()
                .expect("http client"),
            gateway,
            booking,
            event,
            ledger: Ledger::new(SWEEP_INTERVAL, STATEMENT_TIMEOUT),
            paused: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            next_buyer: AtomicUsize::new(0),
            pace: tokio::sync::Mutex::new(tokio::time::Instant::now()),
            stats: Mutex::default(),
            seen: Mutex::default(),
            booking_down: Mutex::default(),
            clients: Mutex::default(),
        }
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    async fn enter(&self) -> InFlight<'_> {
        loop {
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            if !self.paused.load(Ordering::SeqCst) {
                return InFlight(&self.in_flight);
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Pauses the buyers and waits until none of their requests is in flight.
    async fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + ANSWER_BOUND + Duration::from_secs(2);
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "buyers' requests still in flight {ANSWER_BOUND:?} after the pause"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
    }

    /// Sends a request; with `cuts`, a third of them are abandoned at a random moment.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        what: &'static str,
        method: &str,
        base: &str,
        path: &str,
        bearer: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
        cuts: bool,
    ) -> Reply {
        let _in_flight = self.enter().await;
        let cut = {
            let mut rng = rand::thread_rng();
            (cuts && rng.gen_ratio(1, 3)).then(|| match rng.gen_range(0..3) {
                0 => Cut::BeforeSending,
                1 => Cut::MidBody,
                _ => Cut::AwaitingAnswer,
            })
        };
        let reply = match cut {
            None => self.send_whole(method, base, path, bearer, key, body).await,
            Some(cut) => {
                let reply = send_cut(cut, method, base, path, bearer, key, body).await;
                let mut stats = self.stats.lock().expect("stats lock");
                *stats.cuts.entry((what, format!("{cut:?}"))).or_insert(0) += 1;
                if matches!(reply, Reply::Answer(..)) {
                    stats.cut_but_answered += 1;
                }
                reply
            }
        };
        if !matches!(reply, Reply::Unsent | Reply::Abandoned) {
            let (label, status, has_code) = match &reply {
                Reply::Answer(status, body) => (
                    format!("{status} {}", body["error"]["code"].as_str().unwrap_or("")),
                    Some(*status),
                    body["error"]["code"].is_string(),
                ),
                other => (format!("{other:?}"), None, false),
            };
            self.seen.lock().expect("seen lock").push(Seen {
                what,
                reply: label,
                status,
                has_code,
                at: Instant::now(),
            });
        }
        reply
    }

    async fn send_whole(
        &self,
        method: &str,
        base: &str,
        path: &str,
        bearer: Option<&str>,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{base}{path}"));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                match response.bytes().await {
                    Ok(bytes) => Reply::Answer(
                        status,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    ),
                    Err(e) if e.is_timeout() => Reply::TimedOut,
                    Err(_) => Reply::Lost,
                }
            }
            Err(e) if e.is_timeout() => Reply::TimedOut,
            Err(e) if e.is_connect() => Reply::Refused,
            Err(_) => Reply::Lost,
        }
    }

    /// Joins and polls until admitted; the entry token, or None when the sale stopped or the
    /// place could not be had within `limit`.
    async fn admitted(&self, visitor: &str, limit: Duration, cuts: bool) -> Option<String> {
        let deadline = Instant::now() + limit;
        let join_path = format!("/api/events/{}/queue", self.event);
        let join_body = json!({ "visitor_id": visitor });
        let mut status: Option<Value> = None;
        while Instant::now() < deadline && !self.stopped() {
            let reply = match &status {
                None => {
                    self.send(
                        "join",
                        "POST",
                        &self.gateway,
                        &join_path,
                        None,
                        None,
                        Some(&join_body),
                        cuts,
                    )
                    .await
                }
                Some(body) => {
                    let queue_id = body["queue_id"].as_str().unwrap_or_default();
                    self.send(
                        "poll",
                        "GET",
                        &self.gateway,
                        &format!("/api/queue/{queue_id}"),
                        None,
                        None,
                        None,
                        cuts,
                    )
                    .await
                }
            };
            match reply {
                Reply::Answer(200 | 202, body) => {
                    if let Some(token) = body["token"].as_str() {
                        return Some(token.to_owned());
                    }
                    if !matches!(body["state"].as_str(), Some("waiting" | "pre_queue")) {
                        return None;
                    }
                    let wait = body["poll_after_ms"].as_u64().unwrap_or(300).min(300);
                    status = Some(body);
                    tokio::time::sleep(Duration::from_millis(wait)).await;
                }
                // The place was lost: join again.
                Reply::Answer(404, _) => status = None,
                Reply::Unsent | Reply::Abandoned => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        None
    }

    /// One buyer: a place in line, a token, a booking, sometimes cancelled.
    async fn buyer(&self, n: usize) {
        self.stats.lock().expect("stats lock").buyers += 1;
        let visitor = format!("chaos-buyer-{n}");
        let Some(token) = self.admitted(&visitor, Duration::from_secs(30), true).await else {
            return;
        };
        self.stats.lock().expect("stats lock").admitted += 1;
        let (key, tiers) = {
            let mut rng = rand::thread_rng();
            let key = rng.gen_bool(0.5).then(|| Uuid::new_v4().to_string());
            let tiers = if rng.gen_ratio(1, 3) {
                json!({"VIP": 1, "GA": 1})
            } else {
                json!({"GA": 2})
            };
            (key, tiers)
        };
        if let Some(booking) = self
            .book(&token, key.as_deref(), tiers, true, RETRYING)
            .await
        {
            if rand::thread_rng().gen_ratio(1, 10) {
                self.cancel(&booking).await;
            }
        }
    }

    /// Books `tiers` with `token` (and `key`), trying again with the same token and key after
    /// a 503, a 429 or no answer, for up to `patience` (zero: one attempt). The 201's body, if
    /// one came.
    async fn book(
        &self,
        token: &str,
        key: Option<&str>,
        tiers: Value,
        cuts: bool,
        patience: Duration,
    ) -> Option<Value> {
        let jti = token_jti(token).expect("the gateway's token carries a jti");
        let order =
            json!({"event_id": self.event, "tiers": tiers, "buyer_email": "buyer@example.com"});
        self.remember(jti, token, key, &order);
        let deadline = Instant::now() + patience;
        loop {
            let reply = self
                .send(
                    "book",
                    "POST",
                    &self.booking,
                    "/api/bookings",
                    Some(token),
                    key,
                    Some(&order),
                    cuts,
                )
                .await;
            self.ledger.record(self.event, jti, reply.outcome());
            let wait = match reply {
                Reply::Answer(201, body) => return Some(body),
                Reply::Answer(429 | 503, _) | Reply::Lost | Reply::TimedOut | Reply::Refused => {
                    rand::thread_rng().gen_range(200..400)
                }
                Reply::Unsent | Reply::Abandoned => rand::thread_rng().gen_range(20..200),
                Reply::Answer(..) => return None,
            };
            if Instant::now() >= deadline || self.stopped() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Admits [`BURST`] fresh buyers, then sends all their bookings at once: the next fault
    /// strikes while they are being served. Two in three retry until booked; the others give
    /// up after the first attempt, leaving whatever it held to the hold sweeper.
    async fn burst(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let tag = Uuid::new_v4().simple().to_string();
        let visitors: Vec<String> = (0..BURST).map(|i| format!("burst-{tag}-{i}")).collect();
        let tokens = futures::future::join_all(
            visitors
                .iter()
                .map(|visitor| self.admitted(visitor, RECOVERY, false)),
        )
        .await;
        tokens
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, token)| {
                let chaos = self.clone();
                tokio::spawn(async move {
                    let key = (i % 2 == 0).then(|| Uuid::new_v4().to_string());
                    let patience = if i % 3 == 0 { Duration::ZERO } else { RETRYING };
                    chaos
                        .book(&token, key.as_deref(), json!({"GA": 1}), false, patience)
                        .await;
                })
            })
            .collect()
    }

    /// Cancels a booking with the access code of its 201.
    async fn cancel(&self, booking: &Value) {
        let (Some(id), Some(code)) = (
            booking["booking_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok()),
            booking["access_code"].as_str(),
        ) else {
            return;
        };
        let reply = self
            .send(
                "cancel",
                "DELETE",
                &self.booking,
                &format!("/api/bookings/{id}"),
                Some(code),
                None,
                None,
                false,
            )
            .await;
        match reply {
            Reply::Answer(200, body) if body["status"] == "cancelled" => {
                self.ledger.cancelled(id);
                self.stats.lock().expect("stats lock").cancels += 1;
            }
            _ => self.ledger.cancel_unknown(id),
        }
    }

    /// Buyers, one after another, paced, until the sale stops.
    async fn buyers(self: Arc<Self>) {
        while !self.stopped() {
            if self.paused.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let start = {
                let mut next = self.pace.lock().await;
                let start = (*next).max(tokio::time::Instant::now());
                *next = start + BUYER_GAP;
                start
            };
            tokio::time::sleep_until(start).await;
            if self.stopped() {
                break;
            }
            let n = self.next_buyer.fetch_add(1, Ordering::SeqCst);
            self.buyer(n).await;
        }
    }

    /// Availability reads for made-up events, some sharing the real event's first 8 bytes.
    async fn flood(self: Arc<Self>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(FLOOD_AT_ONCE));
        let mut every = tokio::time::interval(FLOOD_GAP);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let prefix: [u8; 8] = self.event.as_bytes()[..8].try_into().expect("8 bytes");
        while !self.stopped() {
            every.tick().await;
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                self.stats.lock().expect("stats lock").flood_skipped += 1;
                continue;
            };
            let id = {
                let mut rng = rand::thread_rng();
                let mut bytes: [u8; 16] = rng.gen();
                if rng.gen_ratio(1, 4) {
                    bytes[..8].copy_from_slice(&prefix);
                }
                Uuid::from_bytes(bytes)
            };
            let chaos = self.clone();
            tokio::spawn(async move {
                let reply = chaos
                    .send_whole(
                        "GET",
                        &chaos.booking,
                        &format!("/api/events/{id}/availability"),
                        None,
                        None,
                        None,
                    )
                    .await;
                let (label, status, has_code) = match &reply {
                    Reply::Answer(status, body) => (
                        format!("{status} {}", body["error"]["code"].as_str().unwrap_or("")),
                        Some(*status),
                        body["error"]["code"].is_string(),
                    ),
                    other => (format!("{other:?}"), None, false),
                };
                *chaos
                    .stats
                    .lock()
                    .expect("stats lock")
                    .flood
                    .entry(label.clone())
                    .or_insert(0) += 1;
                chaos.seen.lock().expect("seen lock").push(Seen {
                    what: "flood",
                    reply: label,
                    status,
                    has_code,
                    at: Instant::now(),
                });
                drop(permit);
            });
        }
    }

    /// A fresh buyer books one GA ticket, retrying until it succeeds; how long it took.
    async fn fresh_booking(&self, label: &str) -> Duration {
        let started = Instant::now();
        let deadline = started + RECOVERY;
        let visitor = format!("fresh-{}", Uuid::new_v4().simple());
        let token = self
            .admitted(&visitor, RECOVERY, false)
            .await
            .unwrap_or_else(|| panic!("{label}: no fresh buyer admitted within {RECOVERY:?}"));
        let jti = token_jti(&token).expect("a jti");
        let key = Uuid::new_v4().to_string();
        let order =
            json!({"event_id": self.event, "tiers": {"GA": 1}, "buyer_email": "fresh@example.com"});
        self.remember(jti, &token, Some(&key), &order);
        let mut replies = Vec::new();
        while Instant::now() < deadline {
            let reply = self
                .send(
                    "book",
                    "POST",
                    &self.booking,
                    "/api/bookings",
                    Some(&token),
                    Some(&key),
                    Some(&order),
                    false,
                )
                .await;
            self.ledger.record(self.event, jti, reply.outcome());
            if let Reply::Answer(201, _) = reply {
                return started.elapsed();
            }
            replies.push(format!("{reply:?}"));
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        panic!("{label}: no fresh booking within {RECOVERY:?} of recovery: {replies:?}");
    }

    /// After a fault: a fresh booking, the burst's buyers done, the sale running a little, then
    /// the ledger check on the quiet system.
    async fn recover(
        &self,
        label: &str,
        burst: Vec<tokio::task::JoinHandle<()>>,
        db: &PgPool,
        redis: &RedisClient,
    ) {
        let booked_in = self.fresh_booking(label).await;
        for buyer in burst {
            buyer.await.expect("a burst buyer panicked");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let paused = Instant::now();
        self.pause().await;
        self.ledger
            .assert_holds(db, redis, self.event, QUIET_WAIT)
            .await;
        let checked_in = paused.elapsed();
        self.resume();
        let summary = self.ledger.summary();
        eprintln!(
            "chaos: after {label}: a fresh booking in {booked_in:.1?}; the ledger holds \
             (paused and checked in {checked_in:.1?}); so far {} bookings answered 201, {:?} \
             answers, {} unknown outcomes",
            summary.booked,
            summary.answered,
            summary.abandoned + summary.timed_out + summary.connection_lost
        );
    }

    fn remember(&self, jti: Uuid, token: &str, key: Option<&str>, order: &Value) {
        self.clients.lock().expect("clients lock").insert(
            jti,
            Client {
                token: token.to_owned(),
                key: key.map(str::to_owned),
                order: order.clone(),
            },
        );
    }

    /// Every booking in Postgres that no client was answered 201 for is replayable: its client
    /// gets it back with the same token: `POST` again with the same key (the first answer, 201),
    /// or, without a key, `GET` it with the token. Returns how many there were.
    async fn replay_unanswered(&self, db: &PgPool) -> usize {
        let answered: HashSet<Uuid> = self
            .ledger
            .attempts()
            .iter()
            .filter_map(|a| match &a.outcome {
                Outcome::Answered { status: 201, body } => {
                    body["booking_id"].as_str().and_then(|id| id.parse().ok())
                }
                _ => None,
            })
            .collect();
        let bookings: Vec<(Uuid, Uuid)> =
            sqlx::query_as("SELECT id, token_jti FROM bookings WHERE event_id = $1")
                .bind(self.event)
                .fetch_all(db)
                .await
                .expect("bookings");
        let mut replayed = 0;
        for (id, jti) in bookings
            .into_iter()
            .filter(|(id, _)| !answered.contains(id))
        {
            let client = self
                .clients
                .lock()
                .expect("clients lock")
                .get(&jti)
                .cloned()
                .unwrap_or_else(|| panic!("booking {id}: no client booked with token {jti}"));
            let reply = match &client.key {
                Some(key) => {
                    let reply = self
                        .send_whole(
                            "POST",
                            &self.booking,
                            "/api/bookings",
                            Some(&client.token),
                            Some(key),
                            Some(&client.order),
                        )
                        .await;
                    self.ledger.record(self.event, jti, reply.outcome());
                    reply
                }
                None => {
                    self.send_whole(
                        "GET",
                        &self.booking,
                        &format!("/api/bookings/{id}"),
                        Some(&client.token),
                        None,
                        None,
                    )
                    .await
                }
            };
            let expected = if client.key.is_some() { 201 } else { 200 };
            match &reply {
                Reply::Answer(status, body)
                    if *status == expected && body["booking_id"] == json!(id) => {}
                other => panic!(
                    "booking {id} is not replayable with its token {jti} (key {:?}): {other:?}",
                    client.key
                ),
            }
            replayed += 1;
        }
        replayed
    }

    fn booking_down(&self, from: Instant, to: Instant) {
        self.booking_down
            .lock()
            .expect("down lock")
            .push((from, to));
    }

    /// Every answer was the contract's, and in time; a connection was refused or cut only
    /// while the booking service was down.
    fn unclean(&self) -> Vec<String> {
        let down = self.booking_down.lock().expect("down lock").clone();
        let seen = self.seen.lock().expect("seen lock").clone();
        let mut unclean = Vec::new();
        for s in &seen {
            let allowed: &[u16] = match s.what {
                "book" => &[201, 409, 429, 503],
                "join" => &[202, 429, 503],
                "poll" => &[200, 429, 503],
                "cancel" => &[200, 503],
                _ => &[404, 503],
            };
            let ok = match s.status {
                Some(status) => allowed.contains(&status) && (status < 400 || s.has_code),
                None => {
                    s.reply != "TimedOut"
                        && matches!(s.what, "book" | "cancel" | "flood")
                        && down.iter().any(|(from, to)| *from <= s.at && s.at <= *to)
                }
            };
            if !ok {
                unclean.push(format!("{} answered {} at {:?}", s.what, s.reply, s.at));
            }
        }
        unclean
    }
}

/// Sends a request the client abandons at `cut`.
async fn send_cut(
    cut: Cut,
    method: &str,
    base: &str,
    path: &str,
    bearer: Option<&str>,
    key: Option<&str>,
    body: Option<&Value>,
) -> Reply {
    let connected =
        tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(host(base))).await;
    let Ok(Ok(mut stream)) = connected else {
        return Reply::Unsent;
    };
    let (bytes, body_start) = request_bytes(method, base, path, bearer, key, body);
    match cut {
        Cut::BeforeSending => Reply::Unsent,
        Cut::MidBody => {
            let end = {
                let mut rng = rand::thread_rng();
                if bytes.len() > body_start {
                    rng.gen_range(body_start..bytes.len())
                } else {
                    rng.gen_range(1..body_start)
                }
            };
            let _ = stream.write_all(&bytes[..end]).await;
            Reply::Unsent
        }
        Cut::AwaitingAnswer => {
            if stream.write_all(&bytes).await.is_err() {
                return Reply::Abandoned;
            }
            let patience = Duration::from_millis(rand::thread_rng().gen_range(0..=50));
            let mut answer = Vec::new();
            match tokio::time::timeout(patience, stream.read_to_end(&mut answer)).await {
                Ok(Ok(_)) => match parse_response(&answer) {
                    Some((status, body)) => Reply::Answer(status, body),
                    None => Reply::Lost,
                },
                Ok(Err(_)) => Reply::Lost,
                Err(_) => Reply::Abandoned,
            }
        }
    }
}

/// How often the services logged the messages that show which recovery paths ran.
fn logged(logs: &std::path::Path) -> BTreeMap<&'static str, usize> {
    let text: String = ["gateway.log", "booking.log", "queue-worker.log"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(logs.join(f)).ok())
        .collect();
    [
        "released reservations that never became bookings",
        "booking write outcome unknown",
        "booking batch failed",
        "release failed",
        "confirm failed",
        "inventory rebuilt from postgres",
        "came back inside a transaction",
        "ticket number conflict",
        "postgres refused a booking",
    ]
    .into_iter()
    .map(|what| (what, text.matches(what).count()))
    .collect()
}

/// Waits a moment after a burst was sent, so the fault strikes while it is being served.
async fn strike() {
    let after = rand::thread_rng().gen_range(STRIKE_AFTER_MS);
    tokio::time::sleep(Duration::from_millis(after)).await;
}

async fn create_event(gateway: &str) -> Uuid {
    let body = json!({
        "name": "chaos", "venue_name": "Chaos Hall", "starts_at": "2031-01-01T20:00:00Z",
        "waiting_room": {"enabled": true, "admission_per_minute": 6000, "max_active": 1000,
                         "paused": false, "token_ttl_s": 600},
        "tiers": [{"code": "VIP", "name": "VIP", "price_cents": 100, "capacity": VIP_CAPACITY},
                  {"code": "GA", "name": "GA", "price_cents": 50, "capacity": GA_CAPACITY}]
    });
    system_tests::create_event_at(&reqwest::Client::new(), gateway, &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_requests_and_faults_lose_no_booking_and_leak_no_transaction() {
    let began = Instant::now();
    let postgres = PrivatePostgres::start();
    let redis = PrivateRedis::start().await;
    let logs = std::env::temp_dir().join(format!("ticketing-chaos-{}", Uuid::new_v4().simple()));
    eprintln!("chaos: service logs in {}", logs.display());
    let mut services = Services::start(&postgres.url(), &redis.url(), &logs).await;
    let event = create_event(&services.gateway).await;
    let db = PgPool::connect(&postgres.url()).await.expect("postgres");
    let store = RedisClient::connect_single(&redis.url())
        .await
        .expect("redis");
    let chaos = Arc::new(Chaos::new(
        services.gateway.clone(),
        services.booking.clone(),
        event,
    ));
    let flood = tokio::spawn(chaos.clone().flood());
    let buyers: Vec<_> = (0..BUYER_TASKS)
        .map(|_| tokio::spawn(chaos.clone().buyers()))
        .collect();

    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        chaos.ledger.summary().booked > 0,
        "the sale was running before the faults: {:?}",
        chaos.ledger.summary()
    );

    // 1. The booking process killed in the middle of bookings, then started again.
    let burst = chaos.burst().await;
    strike().await;
    let killed = Instant::now();
    services.kill(Service::Booking);
    tokio::time::sleep(Duration::from_secs(1)).await;
    services.start_again(Service::Booking);
    services.wait_ready().await;
    chaos.booking_down(killed, Instant::now() + Duration::from_secs(2));
    chaos
        .recover("the booking process SIGKILLed", burst, &db, &store)
        .await;

    // 2. Redis frozen for 5 s.
    let burst = chaos.burst().await;
    strike().await;
    redis.freeze();
    tokio::time::sleep(Duration::from_secs(5)).await;
    redis.resume();
    services.wait_ready().await;
    chaos
        .recover("Redis SIGSTOPped for 5 s", burst, &db, &store)
        .await;

    // 3. PostgreSQL stopped (immediate) and started again.
    let burst = chaos.burst().await;
    strike().await;
    postgres.stop_server();
    tokio::time::sleep(Duration::from_secs(1)).await;
    postgres.start_server();
    services.wait_ready().await;
    chaos
        .recover("PostgreSQL restarted", burst, &db, &store)
        .await;

    chaos.stop.store(true, Ordering::SeqCst);
    for buyer in buyers {
        buyer.await.expect("a buyer panicked");
    }
    flood.await.expect("the flood panicked");
    chaos
        .ledger
        .assert_holds(&db, &store, event, QUIET_WAIT)
        .await;
    // The summary counts what the buyers were told, before the replays.
    let summary = chaos.ledger.summary();
    let replayed = chaos.replay_unanswered(&db).await;
    chaos
        .ledger
        .assert_holds(&db, &store, event, QUIET_WAIT)
        .await;

    let in_postgres: i64 = sqlx::query_scalar("SELECT count(*) FROM bookings WHERE event_id = $1")
        .bind(event)
        .fetch_one(&db)
        .await
        .expect("bookings");
    let stats = chaos.stats.lock().expect("stats lock");
    let cut: usize = stats.cuts.values().sum();
    let requests = chaos
        .seen
        .lock()
        .expect("seen lock")
        .iter()
        .filter(|s| s.what != "flood")
        .count()
        + cut;
    let flood_total: usize = stats.flood.values().sum();
    eprintln!(
        "chaos: summary, {:.1?} in all\n  \
         buyers: {} started, {} admitted\n  \
         bookings: {} answered 201 to a buyer, {} in postgres ({} whose answer was lost, each \
         got back with its token), {} cancelled\n  \
         booking answers: {:?}; {} abandoned after sending; {} never sent in full (cut, or \
         refused while the booking service was down); {} lost connections; {} timed out\n  \
         client requests cut: {} of {} {:?}, {} of them answered before the cut\n  \
         availability flood: {} requests {:?} ({} skipped, all permits busy)",
        began.elapsed(),
        stats.buyers,
        stats.admitted,
        summary.booked,
        in_postgres,
        replayed,
        stats.cancels,
        summary.answered,
        summary.abandoned,
        summary.unsent,
        summary.connection_lost,
        summary.timed_out,
        cut,
        requests,
        stats.cuts,
        stats.cut_but_answered,
        flood_total,
        stats.flood,
        stats.flood_skipped,
    );
    let unclean = chaos.unclean();
    assert!(
        unclean.is_empty(),
        "{} requests got no clean answer, e.g. {:?}",
        unclean.len(),
        &unclean[..unclean.len().min(20)]
    );
    assert!(
        summary.abandoned > 0 && summary.unsent > 0,
        "requests were abandoned"
    );
    drop(stats);
    drop(services);
    eprintln!("chaos: what the services logged: {:?}", logged(&logs));
    if std::env::var_os("KEEP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&logs);
    }
}
