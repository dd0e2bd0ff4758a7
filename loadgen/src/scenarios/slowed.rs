//! Adaptive admission against a booking service that Postgres slows down (issue 24's fourth
//! aim). Visitors keep arriving faster than the set rate admits them; each admitted buyer books
//! a ticket or two after a second on the form. After a calm phase, every booking row costs
//! Postgres an injected delay (a trigger on `bookings` sleeping, so the writers' group commits
//! serve fewer bookings a second than the set rate admits buyers); after the slowed phase the
//! delay ends. The same crowd is replayed against a room with adaptive admission on and one with
//! it off, one after the other. Reported per room and phase: the bookings' p95 as the pages saw
//! it, the worst ten seconds of the slowed phase once the controller had ten seconds to act, the
//! share of 503s, admissions a minute, and how long after the delay ended the rate was back at
//! the set rate.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::client::Api;
use crate::stats::percentile;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Visitors joining a second, for the whole run.
    pub arrival_rate: f64,
    pub calm: Duration,
    pub slowed: Duration,
    pub after: Duration,
    /// Postgres's injected cost of each booking row during the slowed phase.
    pub delay_ms: u32,
    pub admission_per_minute: u32,
    pub max_active: u32,
    pub target_p95_ms: u32,
    pub max_503_pct: u32,
    pub floor_per_minute: u32,
    pub max_poll_ms: u64,
}

impl Plan {
    fn length(&self) -> Duration {
        self.calm + self.slowed + self.after
    }
}

/// One room of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Room {
    pub name: &'static str,
    pub adaptive: bool,
}

pub const ROOMS: [Room; 2] = [
    Room {
        name: "adaptive admission on",
        adaptive: true,
    },
    Room {
        name: "adaptive admission off",
        adaptive: false,
    },
];

/// One booking request a page sent: when (seconds from the start), how long it took, how it
/// ended.
#[derive(Debug, Clone, Copy)]
struct Attempt {
    at: f64,
    latency_ms: f64,
    status: u16,
}

/// The admin view, once a second.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    at: f64,
    admitted_total: i64,
    effective_per_minute: Option<i64>,
    reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub bookings_answered: usize,
    pub booked: usize,
    /// p50 and p95 of every booking answer the pages got in the phase (ms).
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub share_503: f64,
    pub admissions_per_minute: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomResult {
    pub room: Room,
    pub event_id: Uuid,
    pub set_per_minute: u32,
    pub target_p95_ms: u32,
    pub delay_ms: u32,
    pub phases: Vec<Phase>,
    /// The slowed phase after its first ten seconds (the controller reads ten seconds of
    /// bookings): the p95 over it, and the worst p95 of any ten seconds in it.
    pub slowed_settled_p95_ms: Option<f64>,
    pub slowed_worst_10s_p95_ms: Option<f64>,
    /// Seconds after the delay ended until the effective rate was the set rate again (None: not
    /// within the run; 0 for a room without adaptive admission).
    pub recovered_after_s: Option<f64>,
    pub lowest_effective_per_minute: Option<i64>,
    /// How often each reason was seen in the per-second samples.
    pub reasons: std::collections::BTreeMap<String, usize>,
    pub visitors: usize,
    pub admitted: usize,
    /// Second by second: the effective rate and why, and the p95 of the bookings sent in it.
    pub timeline: Vec<Second>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub at: u64,
    pub effective_per_minute: Option<i64>,
    pub reason: Option<String>,
    pub bookings_sent: usize,
    pub p95_ms: Option<f64>,
}

/// Creates the trigger that slows every booking row by the delay in `loadgen_delay` (0 until the
/// slowed phase). Kept out of the migrations: it exists only in a benchmark's database, for the
/// run. The delay carries its own end, so a loadgen killed in the slowed phase (before it could
/// remove the trigger) leaves a trigger that slows nothing once the phase would have ended.
async fn install_delay(db: &PgPool) -> anyhow::Result<()> {
    // In one transaction: a trigger left from a room before never meets its table missing.
    let mut tx = db.begin().await?;
    for statement in [
        "DROP TABLE IF EXISTS loadgen_delay",
        "CREATE TABLE loadgen_delay (ms int NOT NULL, until timestamptz NOT NULL)",
        "INSERT INTO loadgen_delay VALUES (0, now())",
        "CREATE OR REPLACE FUNCTION loadgen_slow_booking() RETURNS trigger LANGUAGE plpgsql AS $$
         DECLARE wait_ms int;
         BEGIN
           SELECT ms INTO wait_ms FROM loadgen_delay WHERE until > clock_timestamp();
           IF wait_ms > 0 THEN PERFORM pg_sleep(wait_ms / 1000.0); END IF;
           RETURN NEW;
         END $$",
        "DROP TRIGGER IF EXISTS loadgen_slow_booking ON bookings",
        "CREATE TRIGGER loadgen_slow_booking BEFORE INSERT ON bookings
         FOR EACH ROW EXECUTE FUNCTION loadgen_slow_booking()",
    ] {
        sqlx::query(statement).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Sets the delay for the next `lasting`.
async fn set_delay(db: &PgPool, ms: u32, lasting: Duration) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE loadgen_delay SET ms = $1, until = clock_timestamp() + $2 * interval '1 ms'",
    )
    .bind(ms as i32)
    .bind(lasting.as_millis() as f64)
    .execute(db)
    .await?;
    Ok(())
}

/// Removes the trigger and its table.
pub async fn remove_delay(db_url: &str) -> anyhow::Result<()> {
    let db = PgPool::connect(db_url).await?;
    sqlx::query("DROP TRIGGER IF EXISTS loadgen_slow_booking ON bookings")
        .execute(&db)
        .await?;
    sqlx::query("DROP FUNCTION IF EXISTS loadgen_slow_booking()")
        .execute(&db)
        .await?;
    sqlx::query("DROP TABLE IF EXISTS loadgen_delay")
        .execute(&db)
        .await?;
    Ok(())
}

/// Replays the crowd against one room.
pub async fn run(
    api: &Api,
    db_url: &str,
    plan: &Plan,
    room: Room,
    run_id: &str,
) -> anyhow::Result<RoomResult> {
    let db = PgPool::connect(db_url).await?;
    install_delay(&db).await?;
    let adaptive = room.adaptive.then(|| {
        json!({"target_p95_ms": plan.target_p95_ms, "max_503_pct": plan.max_503_pct,
               "floor_per_minute": plan.floor_per_minute})
    });
    let event = api
        .create_event(
            &format!("loadgen slowed backend {run_id} {}", room.name),
            &[("GA".to_string(), 1_000_000)],
            json!({"enabled": true, "admission_per_minute": plan.admission_per_minute,
                   "max_active": plan.max_active, "paused": false, "token_ttl_s": 600,
                   "adaptive": adaptive}),
        )
        .await?;
    let start = Instant::now();
    let end = start + plan.length();
    let attempts: Arc<Mutex<Vec<Attempt>>> = Arc::default();
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let sampler = tokio::spawn(sample(api.clone(), event, start, end, samples.clone()));
    let injector = {
        let (db, plan) = (db.clone(), plan.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until((start + plan.calm).into()).await;
            set_delay(&db, plan.delay_ms, plan.slowed).await?;
            tokio::time::sleep_until((start + plan.calm + plan.slowed).into()).await;
            set_delay(&db, 0, Duration::ZERO).await
        })
    };
    let visitors = (plan.arrival_rate * plan.length().as_secs_f64()) as usize;
    let visits: Vec<_> = (0..visitors)
        .map(|i| {
            let (api, plan, attempts) = (api.clone(), plan.clone(), attempts.clone());
            let arrival = start + Duration::from_secs_f64(i as f64 / plan.arrival_rate);
            tokio::spawn(async move {
                tokio::time::sleep_until(arrival.into()).await;
                visit(&api, event, i, &plan, start, end, &attempts).await
            })
        })
        .collect();
    let mut admitted = 0;
    for v in visits {
        admitted += usize::from(v.await?);
    }
    let delay_set = injector.await?;
    // Whatever happened, the next room starts without the delay.
    set_delay(&db, 0, Duration::ZERO).await?;
    delay_set?;
    sampler.await?;
    let attempts = std::mem::take(&mut *attempts.lock().expect("attempts"));
    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    Ok(summarize(
        plan, room, event, visitors, admitted, &attempts, &samples,
    ))
}

/// Seconds from `start`.
fn since(start: Instant) -> f64 {
    start.elapsed().as_secs_f64()
}

/// One visitor: joins, polls as asked until admitted (or the run ends), spends a second on the
/// form and books 1-2 GA as a page does (up to three tries while the service answers 503).
/// Returns whether it was admitted.
async fn visit(
    api: &Api,
    event: Uuid,
    i: usize,
    plan: &Plan,
    start: Instant,
    end: Instant,
    attempts: &Mutex<Vec<Attempt>>,
) -> bool {
    let visitor = format!("slowed-{i}-{}", Uuid::new_v4().simple());
    let (status, mut body) = api.join(event, &visitor).await;
    if status != 202 {
        return false;
    }
    let queue_id = body["queue_id"].as_str().unwrap_or_default().to_string();
    while body["state"] != "admitted" {
        if body["state"] != "waiting" || Instant::now() >= end {
            return false;
        }
        let Some(next) = api
            .poll_when_asked(&queue_id, &body, plan.max_poll_ms)
            .await
        else {
            return false;
        };
        body = next;
    }
    let (think, tickets) = {
        let mut rng = rand::thread_rng();
        (rng.gen_range(0.5..1.5), rng.gen_range(1..=2))
    };
    tokio::time::sleep(Duration::from_secs_f64(think)).await;
    let token = body["token"].as_str().unwrap_or_default().to_string();
    let request = json!({"event_id": event, "tiers": {"GA": tickets},
                         "buyer_email": "buyer@example.com"});
    for _ in 0..3 {
        let at = since(start);
        let sent = Instant::now();
        let (status, _) = api.book(&token, &request, sent).await;
        attempts.lock().expect("attempts").push(Attempt {
            at,
            latency_ms: sent.elapsed().as_secs_f64() * 1000.0,
            status,
        });
        if status != 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    true
}

async fn sample(
    api: Api,
    event: Uuid,
    start: Instant,
    end: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    // A few seconds past the end: the recovery may finish as the last visitors book.
    while Instant::now() < end + Duration::from_secs(5) {
        every.tick().await;
        let Ok(room) = api.waiting_room(event).await else {
            continue;
        };
        samples.lock().expect("samples").push(Sample {
            at: since(start),
            admitted_total: room["stats"]["admitted_total"].as_i64().unwrap_or(0),
            effective_per_minute: room["effective_per_minute"].as_i64(),
            reason: room["adaptive_reason"].as_str().map(str::to_string),
        });
    }
}

fn latencies(attempts: &[Attempt], from: f64, to: f64) -> Vec<f64> {
    attempts
        .iter()
        .filter(|a| a.at >= from && a.at < to)
        .map(|a| a.latency_ms)
        .collect()
}

fn summarize(
    plan: &Plan,
    room: Room,
    event: Uuid,
    visitors: usize,
    admitted: usize,
    attempts: &[Attempt],
    samples: &[Sample],
) -> RoomResult {
    let calm_end = plan.calm.as_secs_f64();
    let slowed_end = calm_end + plan.slowed.as_secs_f64();
    let run_end = plan.length().as_secs_f64();
    let admissions_per_minute = |from: f64, to: f64| {
        let first = samples.iter().find(|s| s.at >= from)?;
        let last = samples.iter().rev().find(|s| s.at <= to)?;
        (last.at > first.at).then(|| {
            (last.admitted_total - first.admitted_total) as f64 / (last.at - first.at) * 60.0
        })
    };
    let phases = [
        ("calm", 0.0, calm_end),
        ("slowed", calm_end, slowed_end),
        ("after", slowed_end, run_end),
    ]
    .into_iter()
    .map(|(name, from, to)| {
        let answered: Vec<&Attempt> = attempts
            .iter()
            .filter(|a| a.at >= from && a.at < to)
            .collect();
        let unavailable = answered.iter().filter(|a| a.status == 503).count();
        Phase {
            name,
            bookings_answered: answered.len(),
            booked: answered.iter().filter(|a| a.status == 201).count(),
            p50_ms: percentile(latencies(attempts, from, to), 0.50),
            p95_ms: percentile(latencies(attempts, from, to), 0.95),
            share_503: if answered.is_empty() {
                0.0
            } else {
                unavailable as f64 / answered.len() as f64
            },
            admissions_per_minute: admissions_per_minute(from, to),
        }
    })
    .collect();
    let settled = calm_end + 10.0;
    let worst_window = (settled as usize..slowed_end as usize)
        .filter(|second| *second as f64 + 10.0 <= slowed_end)
        .filter_map(|second| {
            percentile(
                latencies(attempts, second as f64, second as f64 + 10.0),
                0.95,
            )
        })
        .reduce(f64::max);
    let recovered_after_s = if room.adaptive {
        samples
            .iter()
            .filter(|s| s.at >= slowed_end)
            .find(|s| {
                s.effective_per_minute
                    .is_some_and(|rate| rate >= i64::from(plan.admission_per_minute))
            })
            .map(|s| s.at - slowed_end)
    } else {
        Some(0.0)
    };
    let mut reasons = std::collections::BTreeMap::new();
    for reason in samples.iter().filter_map(|s| s.reason.clone()) {
        *reasons.entry(reason).or_insert(0) += 1;
    }
    RoomResult {
        room,
        event_id: event,
        set_per_minute: plan.admission_per_minute,
        target_p95_ms: plan.target_p95_ms,
        delay_ms: plan.delay_ms,
        phases,
        slowed_settled_p95_ms: percentile(latencies(attempts, settled, slowed_end), 0.95),
        slowed_worst_10s_p95_ms: worst_window,
        recovered_after_s,
        lowest_effective_per_minute: samples.iter().filter_map(|s| s.effective_per_minute).min(),
        reasons,
        visitors,
        admitted,
        timeline: samples
            .iter()
            .map(|sample| {
                let second = sample.at.floor();
                let sent = latencies(attempts, second, second + 1.0);
                Second {
                    at: second as u64,
                    effective_per_minute: sample.effective_per_minute,
                    reason: sample.reason.clone(),
                    bookings_sent: sent.len(),
                    p95_ms: percentile(sent, 0.95),
                }
            })
            .collect(),
    }
}
