//! The ledger check: what the clients were told about their bookings against what Postgres and
//! Redis hold once the system is quiet.
//!
//! A test records every outcome of `POST /api/bookings` its clients saw (an answer, or none:
//! abandoned, timed out, connection lost) with the entry token's `jti`. [`Ledger::assert_holds`]
//! then proves, retrying while holds may still be swept:
//! - every booking answered 201 is in Postgres, confirmed (unless the test cancelled it), with
//!   exactly the tickets the answer listed;
//! - every booking in Postgres was answered 201 to some client, or is replayable: its token got
//!   no definite answer at least once (503, no answer, connection lost), so a retry with the same
//!   token finds it; anything else is a booking nobody was told about;
//! - per tier, Redis availability = capacity − tickets issued in Postgres, and never oversold;
//! - no hold outlives its deadline by more than a couple of sweeps, and none is left at the end;
//! - no ticket number issued twice, no booking without tickets;
//! - no Postgres session idle in a transaction for longer than the statement timeout.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value;
use sqlx::PgPool;
use ticketing::keys::EventKeys;
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

/// What a client got for one `POST /api/bookings`.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// An HTTP answer, with its JSON body (Null when it had none).
    Answered { status: u16, body: Value },
    /// The client gave up before the request was complete (connected and dropped, or closed
    /// mid-body): the server cannot have acted on it.
    Unsent,
    /// The request was sent in full and the client stopped waiting for the answer.
    Abandoned,
    /// No answer within the client's timeout.
    TimedOut,
    /// The connection was refused or broke: the request may or may not have been served.
    ConnectionLost,
}

impl Outcome {
    /// The outcome of a call answered with `status` (0: connection refused or reset, 999: no
    /// answer in time, as `sale` records them).
    pub fn from_status(status: u16, body: Value) -> Self {
        match status {
            0 => Self::ConnectionLost,
            999 => Self::TimedOut,
            status => Self::Answered { status, body },
        }
    }

    /// True when the client cannot know whether the request booked: a retry with the same
    /// token is how it finds out.
    pub fn is_unknown(&self) -> bool {
        matches!(
            self,
            Self::Abandoned | Self::TimedOut | Self::ConnectionLost
        ) || self.status() == Some(503)
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            _ => None,
        }
    }

    fn label(&self) -> String {
        match self {
            Self::Answered { status, body } => match body["error"]["code"].as_str() {
                Some(code) => format!("{status} {code}"),
                None => status.to_string(),
            },
            Self::Unsent => "unsent".into(),
            Self::Abandoned => "abandoned".into(),
            Self::TimedOut => "timed out".into(),
            Self::ConnectionLost => "connection lost".into(),
        }
    }
}

/// One booking request as its client saw it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub event_id: Uuid,
    /// The `jti` of the entry token the request carried.
    pub jti: Uuid,
    pub outcome: Outcome,
    pub at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cancel {
    /// The cancel was answered 200: the booking must be cancelled.
    Done,
    /// The cancel got no definite answer: either state is right.
    Unknown,
}

/// Counts of the outcomes recorded, for summaries.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub attempts: usize,
    /// Distinct bookings some client was answered 201 for.
    pub booked: usize,
    pub answered: BTreeMap<u16, usize>,
    pub unsent: usize,
    pub abandoned: usize,
    pub timed_out: usize,
    pub connection_lost: usize,
    pub cancelled: usize,
}

/// Every booking outcome a test's clients saw.
pub struct Ledger {
    attempts: Mutex<Vec<Attempt>>,
    cancels: Mutex<HashMap<Uuid, Cancel>>,
    sweep_interval: Duration,
    statement_timeout: Duration,
}

/// The `jti` claim of an entry token (a JWT), without checking its signature.
pub fn token_jti(token: &str) -> Option<Uuid> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    claims["jti"].as_str()?.parse().ok()
}

/// Bookings of `event_id` that have no ticket at all.
pub async fn bookings_without_tickets(db: &PgPool, event_id: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM bookings b WHERE b.event_id = $1
            AND NOT EXISTS (SELECT 1 FROM tickets k WHERE k.booking_id = b.id)",
    )
    .bind(event_id)
    .fetch_one(db)
    .await
}

/// Sessions of this database idle inside a transaction for longer than `longer_than`.
pub async fn sessions_idle_in_transaction(
    db: &PgPool,
    longer_than: Duration,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT format('pid %s (%s) %s for %s: %s', pid, application_name, state,
                       now() - state_change, left(query, 120))
           FROM pg_stat_activity
          WHERE datname = current_database()
            AND state LIKE 'idle in transaction%'
            AND now() - state_change > make_interval(secs => $1)",
    )
    .bind(longer_than.as_secs_f64())
    .fetch_all(db)
    .await
}

#[derive(sqlx::FromRow)]
struct TierRow {
    code: String,
    capacity: i32,
}

#[derive(sqlx::FromRow)]
struct BookingRow {
    id: Uuid,
    status: String,
    token_jti: Uuid,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    id: Uuid,
    booking_id: Uuid,
    code: String,
    number: i32,
    status: String,
}

/// One consistent read of an event's rows.
struct Rows {
    epoch: i64,
    tiers: Vec<TierRow>,
    bookings: Vec<BookingRow>,
    tickets: Vec<TicketRow>,
}

async fn read_rows(db: &PgPool, event_id: Uuid) -> sqlx::Result<Rows> {
    let mut tx = db.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let epoch = sqlx::query_scalar("SELECT inventory_epoch FROM events WHERE id = $1")
        .bind(event_id)
        .fetch_one(&mut *tx)
        .await?;
    let tiers = sqlx::query_as("SELECT code, capacity FROM ticket_tiers WHERE event_id = $1")
        .bind(event_id)
        .fetch_all(&mut *tx)
        .await?;
    let bookings = sqlx::query_as("SELECT id, status, token_jti FROM bookings WHERE event_id = $1")
        .bind(event_id)
        .fetch_all(&mut *tx)
        .await?;
    let tickets = sqlx::query_as(
        "SELECT k.id, k.booking_id, t.code, k.number, k.status
           FROM tickets k JOIN ticket_tiers t ON t.id = k.tier_id
          WHERE t.event_id = $1",
    )
    .bind(event_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Rows {
        epoch,
        tiers,
        bookings,
        tickets,
    })
}

/// The tickets of a 201 answer: (ticket id, tier code, number).
fn answered_tickets(body: &Value) -> Option<BTreeSet<(Uuid, String, i32)>> {
    body["tickets"]
        .as_array()?
        .iter()
        .map(|t| {
            Some((
                t["id"].as_str()?.parse().ok()?,
                t["tier"].as_str()?.to_string(),
                i32::try_from(t["number"].as_i64()?).ok()?,
            ))
        })
        .collect()
}

impl Ledger {
    /// A ledger for a system whose queue-worker sweeps holds every `sweep_interval` and whose
    /// statements time out after `statement_timeout`.
    pub fn new(sweep_interval: Duration, statement_timeout: Duration) -> Self {
        Self {
            attempts: Mutex::default(),
            cancels: Mutex::default(),
            sweep_interval,
            statement_timeout,
        }
    }

    pub fn record(&self, event_id: Uuid, jti: Uuid, outcome: Outcome) {
        self.attempts.lock().expect("ledger lock").push(Attempt {
            event_id,
            jti,
            outcome,
            at: Instant::now(),
        });
    }

    /// Records a request made with `token` (its `jti` read from it).
    pub fn record_token(&self, event_id: Uuid, token: &str, outcome: Outcome) {
        let jti = token_jti(token).expect("an entry token with a jti");
        self.record(event_id, jti, outcome);
    }

    /// The client cancelled `booking_id` and was answered 200.
    pub fn cancelled(&self, booking_id: Uuid) {
        self.cancels
            .lock()
            .expect("ledger lock")
            .insert(booking_id, Cancel::Done);
    }

    /// The client asked to cancel `booking_id` and got no definite answer.
    pub fn cancel_unknown(&self, booking_id: Uuid) {
        self.cancels
            .lock()
            .expect("ledger lock")
            .entry(booking_id)
            .or_insert(Cancel::Unknown);
    }

    pub fn attempts(&self) -> Vec<Attempt> {
        self.attempts.lock().expect("ledger lock").clone()
    }

    pub fn summary(&self) -> Summary {
        let attempts = self.attempts();
        let mut summary = Summary {
            attempts: attempts.len(),
            cancelled: self
                .cancels
                .lock()
                .expect("ledger lock")
                .values()
                .filter(|c| **c == Cancel::Done)
                .count(),
            ..Summary::default()
        };
        let mut booked = HashSet::new();
        for attempt in &attempts {
            match &attempt.outcome {
                Outcome::Answered { status, body } => {
                    *summary.answered.entry(*status).or_insert(0) += 1;
                    if *status == 201 {
                        booked.insert(body["booking_id"].as_str().unwrap_or_default().to_owned());
                    }
                }
                Outcome::Unsent => summary.unsent += 1,
                Outcome::Abandoned => summary.abandoned += 1,
                Outcome::TimedOut => summary.timed_out += 1,
                Outcome::ConnectionLost => summary.connection_lost += 1,
            }
        }
        summary.booked = booked.len();
        summary
    }

    /// Waits for the system to be quiet (up to `quiet_wait`: holds may still be swept, Redis
    /// repaired), then panics listing every broken promise if the check still fails.
    pub async fn assert_holds(
        &self,
        db: &PgPool,
        redis: &RedisClient,
        event_id: Uuid,
        quiet_wait: Duration,
    ) {
        let started = Instant::now();
        loop {
            let violations = self.violations(db, redis, event_id).await;
            if violations.is_empty() {
                return;
            }
            if started.elapsed() >= quiet_wait {
                let mut message = format!(
                    "ledger check of event {event_id} failed after waiting {quiet_wait:?} for \
                     the system to be quiet ({} broken promises; {:?}):",
                    violations.len(),
                    self.summary()
                );
                for v in violations.iter().take(40) {
                    let _ = write!(message, "\n  - {v}");
                }
                panic!("{message}");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// One pass of every check; empty when all promises hold right now.
    pub async fn violations(
        &self,
        db: &PgPool,
        redis: &RedisClient,
        event_id: Uuid,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let rows = match read_rows(db, event_id).await {
            Ok(rows) => rows,
            Err(e) => return vec![format!("cannot read postgres: {e}")],
        };
        let attempts: Vec<Attempt> = self
            .attempts()
            .into_iter()
            .filter(|a| a.event_id == event_id)
            .collect();
        let cancels = self.cancels.lock().expect("ledger lock").clone();
        self.check_answers(&rows, &attempts, &cancels, &mut out);
        check_tickets(&rows, &mut out);
        check_redis(redis, event_id, &rows, self.sweep_interval, &mut out).await;
        match sessions_idle_in_transaction(db, self.statement_timeout).await {
            Ok(sessions) => out.extend(
                sessions
                    .into_iter()
                    .map(|s| format!("postgres session idle in transaction: {s}")),
            ),
            Err(e) => out.push(format!("cannot read pg_stat_activity: {e}")),
        }
        out
    }

    /// 201s against Postgres, and Postgres's bookings against what clients were told.
    fn check_answers(
        &self,
        rows: &Rows,
        attempts: &[Attempt],
        cancels: &HashMap<Uuid, Cancel>,
        out: &mut Vec<String>,
    ) {
        let bookings: HashMap<Uuid, &BookingRow> =
            rows.bookings.iter().map(|b| (b.id, b)).collect();
        let mut tickets: HashMap<Uuid, Vec<&TicketRow>> = HashMap::new();
        for t in &rows.tickets {
            tickets.entry(t.booking_id).or_default().push(t);
        }
        let mut answered = HashSet::new();
        for attempt in attempts {
            let Outcome::Answered { status: 201, body } = &attempt.outcome else {
                continue;
            };
            let Some(id) = body["booking_id"]
                .as_str()
                .and_then(|s| s.parse::<Uuid>().ok())
            else {
                out.push(format!("a 201 without a booking id: {body}"));
                continue;
            };
            // Every 201 is checked, replays too: each must list the booking's very tickets.
            answered.insert(id);
            let Some(booking) = bookings.get(&id) else {
                out.push(format!(
                    "booking {id} answered 201 (token {}) is not in postgres",
                    attempt.jti
                ));
                continue;
            };
            if booking.token_jti != attempt.jti {
                out.push(format!(
                    "booking {id} answered 201 to token {} belongs to token {} in postgres",
                    attempt.jti, booking.token_jti
                ));
            }
            let expected = match cancels.get(&id) {
                None => &["confirmed"][..],
                Some(Cancel::Done) => &["cancelled"][..],
                Some(Cancel::Unknown) => &["confirmed", "cancelled"][..],
            };
            if !expected.contains(&booking.status.as_str()) {
                out.push(format!(
                    "booking {id} is {} in postgres, expected {}",
                    booking.status,
                    expected.join(" or ")
                ));
            }
            let ticket_status = if booking.status == "confirmed" {
                "issued"
            } else {
                "void"
            };
            let stored: BTreeSet<(Uuid, String, i32)> = tickets
                .get(&id)
                .into_iter()
                .flatten()
                .map(|t| (t.id, t.code.clone(), t.number))
                .collect();
            match answered_tickets(body) {
                Some(told) if told == stored => {}
                Some(told) => out.push(format!(
                    "booking {id}: the 201 listed tickets {told:?}, postgres has {stored:?}"
                )),
                None => out.push(format!(
                    "booking {id}: a 201 with malformed tickets: {body}"
                )),
            }
            for t in tickets.get(&id).into_iter().flatten() {
                if t.status != ticket_status {
                    out.push(format!(
                        "booking {id} is {} but its ticket {} {}#{} is {}",
                        booking.status, t.id, t.code, t.number, t.status
                    ));
                }
            }
        }
        let mut seen: HashMap<Uuid, Vec<String>> = HashMap::new();
        for attempt in attempts {
            seen.entry(attempt.jti)
                .or_default()
                .push(attempt.outcome.label());
        }
        let replayable: HashSet<Uuid> = attempts
            .iter()
            .filter(|a| a.outcome.is_unknown())
            .map(|a| a.jti)
            .collect();
        for booking in &rows.bookings {
            if answered.contains(&booking.id) || replayable.contains(&booking.token_jti) {
                continue;
            }
            match seen.get(&booking.token_jti) {
                Some(outcomes) => out.push(format!(
                    "booking {} (token {}) is in postgres, but its client was told only {:?}",
                    booking.id, booking.token_jti, outcomes
                )),
                None => out.push(format!(
                    "booking {} (token {}) is in postgres, but no client used that token",
                    booking.id, booking.token_jti
                )),
            }
        }
    }
}

/// Numbers issued once each and within capacity, every booking with tickets.
fn check_tickets(rows: &Rows, out: &mut Vec<String>) {
    let capacity: HashMap<&str, i32> = rows
        .tiers
        .iter()
        .map(|t| (t.code.as_str(), t.capacity))
        .collect();
    let mut issued: HashMap<(&str, i32), Vec<Uuid>> = HashMap::new();
    for t in rows.tickets.iter().filter(|t| t.status == "issued") {
        issued
            .entry((t.code.as_str(), t.number))
            .or_default()
            .push(t.booking_id);
        if !(1..=capacity.get(t.code.as_str()).copied().unwrap_or(0)).contains(&t.number) {
            out.push(format!(
                "ticket {} {}#{} is out of range",
                t.id, t.code, t.number
            ));
        }
    }
    for ((code, number), holders) in &issued {
        if holders.len() > 1 {
            out.push(format!(
                "{code}#{number} issued {} times: {holders:?}",
                holders.len()
            ));
        }
    }
    let with_tickets: HashSet<Uuid> = rows.tickets.iter().map(|t| t.booking_id).collect();
    let booked: HashSet<Uuid> = rows.bookings.iter().map(|b| b.id).collect();
    for booking in &rows.bookings {
        if !with_tickets.contains(&booking.id) {
            out.push(format!("booking {} has no tickets", booking.id));
        }
    }
    for t in &rows.tickets {
        if !booked.contains(&t.booking_id) {
            out.push(format!(
                "ticket {} of this event belongs to booking {} of another event",
                t.id, t.booking_id
            ));
        }
    }
}

/// Redis's `TIME`: seconds and microseconds.
type RedisTime = (String, String);

/// Redis availability against Postgres, and holds against their deadlines.
async fn check_redis(
    redis: &RedisClient,
    event_id: Uuid,
    rows: &Rows,
    sweep_interval: Duration,
    out: &mut Vec<String>,
) {
    let snapshot = match ticketing::inventory::snapshot(redis, event_id).await {
        Ok(snapshot) => snapshot,
        Err(e) => {
            out.push(format!("cannot read the redis inventory: {e}"));
            return;
        }
    };
    match snapshot.epoch {
        None => out.push("the event's inventory is not in redis".into()),
        Some(epoch) if epoch.0 != rows.epoch => out.push(format!(
            "redis inventory epoch {epoch} differs from postgres's {}",
            rows.epoch
        )),
        Some(_) => {}
    }
    for tier in &rows.tiers {
        let issued = rows
            .tickets
            .iter()
            .filter(|t| t.status == "issued" && t.code == tier.code)
            .count() as i64;
        let capacity = i64::from(tier.capacity);
        if issued > capacity {
            out.push(format!("{}: {issued} issued of {capacity}", tier.code));
        }
        if snapshot.epoch.is_none() {
            continue;
        }
        match snapshot.tiers.get(tier.code.as_str()) {
            None => out.push(format!("{}: missing from the redis inventory", tier.code)),
            Some(stock) => {
                if stock.available != capacity - issued {
                    out.push(format!(
                        "{}: redis says {} available, postgres {} (capacity {capacity}, {issued} issued)",
                        tier.code,
                        stock.available,
                        capacity - issued
                    ));
                }
                if stock.capacity != capacity {
                    out.push(format!(
                        "{}: redis capacity {} differs from postgres's {capacity}",
                        tier.code, stock.capacity
                    ));
                }
            }
        }
    }
    if !snapshot.holds.is_empty() {
        out.push(format!(
            "{} hold(s) still recorded with their numbers: {:?}",
            snapshot.holds.len(),
            snapshot.holds.keys().take(5).collect::<Vec<_>>()
        ));
    }
    let mut conn = redis.clone();
    let holds: redis::RedisResult<(Vec<(String, f64)>, RedisTime)> = redis::pipe()
        .cmd("ZRANGE")
        .arg(EventKeys::new(event_id).holds())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .cmd("TIME")
        .query_async(&mut conn)
        .await;
    let (holds, (seconds, micros)) = match holds {
        Ok(read) => read,
        Err(e) => {
            out.push(format!("cannot read the holds: {e}"));
            return;
        }
    };
    let now_ms =
        seconds.parse::<i64>().unwrap_or(0) * 1000 + micros.parse::<i64>().unwrap_or(0) / 1000;
    let grace = 2 * sweep_interval.as_millis() as i64;
    for (jti, deadline) in &holds {
        let overdue = now_ms - *deadline as i64;
        if overdue > grace {
            out.push(format!("hold {jti} is {overdue} ms past its deadline"));
        }
    }
    if !holds.is_empty() {
        out.push(format!(
            "{} hold(s) left: {:?}",
            holds.len(),
            &holds[..holds.len().min(5)]
        ));
    }
}

/// Redis's stock against Postgres at any moment, holds open or not: per tier, available =
/// capacity − issued in Postgres − numbers in open holds, the held count = numbers in open holds,
/// and no number both issued in Postgres and on sale or held in Redis. Empty when all agree.
/// Read while nothing reserves, writes or sweeps (a test's pause), or it may see a write halfway.
pub async fn stock_drift(db: &PgPool, redis: &RedisClient, event_id: Uuid) -> Vec<String> {
    let mut out = Vec::new();
    let rows = match read_rows(db, event_id).await {
        Ok(rows) => rows,
        Err(e) => return vec![format!("cannot read postgres: {e}")],
    };
    let snapshot = match ticketing::inventory::snapshot(redis, event_id).await {
        Ok(snapshot) => snapshot,
        Err(e) => return vec![format!("cannot read the redis inventory: {e}")],
    };
    if snapshot.epoch.map(|e| e.0) != Some(rows.epoch) {
        out.push(format!(
            "redis inventory epoch {:?} differs from postgres's {}",
            snapshot.epoch, rows.epoch
        ));
    }
    let held = snapshot.held_per_tier();
    let mut conn = redis.clone();
    for tier in &rows.tiers {
        let issued: BTreeSet<i32> = rows
            .tickets
            .iter()
            .filter(|t| t.status == "issued" && t.code == tier.code)
            .map(|t| t.number)
            .collect();
        let in_holds = held.get(tier.code.as_str()).copied().unwrap_or(0);
        let expected = i64::from(tier.capacity) - issued.len() as i64 - in_holds;
        match snapshot.tiers.get(tier.code.as_str()) {
            None => out.push(format!("{}: missing from the redis inventory", tier.code)),
            Some(stock) => {
                if stock.available != expected || stock.held != in_holds {
                    out.push(format!(
                        "{}: redis says {} available and {} held; capacity {} − {} issued − {} in \
                         holds = {expected}",
                        tier.code,
                        stock.available,
                        stock.held,
                        tier.capacity,
                        issued.len(),
                        in_holds
                    ));
                }
            }
        }
        for (jti, numbers) in &snapshot.holds {
            for n in numbers.get(tier.code.as_str()).into_iter().flatten() {
                if issued.contains(n) {
                    out.push(format!(
                        "{}: number {n} issued yet held by {jti}",
                        tier.code
                    ));
                }
            }
        }
        let code = ticketing::tier::TierCode::known(&tier.code);
        let free: redis::RedisResult<Vec<i32>> = redis::cmd("SMEMBERS")
            .arg(EventKeys::new(event_id).free_numbers(&code))
            .query_async(&mut conn)
            .await;
        match free {
            Ok(free) => {
                for n in free.iter().filter(|n| issued.contains(n)) {
                    out.push(format!("{}: number {n} issued yet on sale", tier.code));
                }
            }
            Err(e) => out.push(format!("cannot read the free numbers: {e}")),
        }
    }
    out
}
