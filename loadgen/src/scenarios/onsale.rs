//! The on-sale night: visitors join a hot event's queue (in a burst or at an arrival rate), poll
//! at the cadence the server asks, are admitted at the configured rate and book a random mix of
//! tiers until the event sells out; some abandon on the way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::client::Api;
use crate::scenarios::bookings::random_order;

#[derive(Debug, Clone)]
pub struct Plan {
    pub visitors: usize,
    /// Joins per second; None joins everyone at once.
    pub arrival_rate: Option<f64>,
    pub abandon_fraction: f64,
    pub token_ttl_s: i64,
    pub max_duration: Duration,
    /// Admission tick of the worker, for counting inversions "beyond one tick".
    pub tick: Duration,
}

/// How one visitor's night ended.
#[derive(Debug, Clone, Default)]
struct Visit {
    position: Option<u64>,
    admitted_ms: Option<i64>,
    outcome: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct OnSaleResult {
    pub time_to_sell_out_s: Option<f64>,
    pub configured_admissions_per_minute: f64,
    pub measured_admissions_per_minute: Option<f64>,
    /// Visitors admitted more than one admission tick after someone behind them in line (line
    /// order as the position first answered). A position is counted after the admissions so far,
    /// so two joins answered across one tick can swap by up to a tick's admissions; admission
    /// times of neighbours differ by a tick, hence the tolerance.
    pub fifo_inversions: usize,
    pub admitted_observed: usize,
    pub outcomes: std::collections::BTreeMap<String, usize>,
}

pub async fn run(
    api: &Api,
    event: Uuid,
    tiers: &[String],
    plan: &Plan,
    configured_rate: f64,
) -> anyhow::Result<OnSaleResult> {
    let started = Instant::now();
    let deadline = started + plan.max_duration;
    let sold_out_at: Arc<Mutex<Option<Duration>>> = Arc::default();
    let finished = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(monitor(
        api.clone(),
        event,
        started,
        sold_out_at.clone(),
        finished.clone(),
    ));

    let visitors = (0..plan.visitors).map(|i| {
        let (api, tiers, plan) = (api.clone(), tiers.to_vec(), plan.clone());
        let arrival = match plan.arrival_rate {
            Some(rate) => started + Duration::from_secs_f64(i as f64 / rate),
            None => started,
        };
        let abandons = rand::thread_rng().gen_bool(plan.abandon_fraction.clamp(0.0, 1.0));
        tokio::spawn(async move {
            tokio::time::sleep_until(arrival.into()).await;
            visit(&api, event, &tiers, i, abandons, &plan, deadline).await
        })
    });
    let mut visits = Vec::with_capacity(plan.visitors);
    for visitor in visitors.collect::<Vec<_>>() {
        visits.push(visitor.await?);
    }
    finished.store(true, Ordering::Relaxed);
    let samples = monitor.await?;

    let mut outcomes = std::collections::BTreeMap::new();
    for visit in &visits {
        *outcomes.entry(visit.outcome.to_string()).or_insert(0) += 1;
    }
    let mut admitted: Vec<(u64, i64)> = visits
        .iter()
        .filter_map(|v| Some((v.position?, v.admitted_ms?)))
        .collect();
    admitted.sort_unstable();
    let tick_ms = plan.tick.as_millis() as i64;
    let mut latest = i64::MIN;
    let mut inversions = 0;
    for (_, at) in &admitted {
        if *at + tick_ms < latest {
            inversions += 1;
        }
        latest = latest.max(*at);
    }
    let time_to_sell_out_s = sold_out_at.lock().expect("lock").map(|d| d.as_secs_f64());
    Ok(OnSaleResult {
        time_to_sell_out_s,
        configured_admissions_per_minute: configured_rate,
        measured_admissions_per_minute: admission_rate(&samples, time_to_sell_out_s),
        fifo_inversions: inversions,
        admitted_observed: admitted.len(),
        outcomes,
    })
}

/// Admissions per minute while people were waiting: the slope of `admitted_total` between the
/// first admission and the last sample that still had a line.
fn admission_rate(samples: &[(f64, i64, i64)], sold_out_at: Option<f64>) -> Option<f64> {
    // Admission stops at the sell-out (waiting buyers are told instead), so the window ends there.
    let selling = |at: f64| sold_out_at.is_none_or(|end| at <= end);
    let first = samples.iter().find(|(_, admitted, _)| *admitted > 0)?;
    let last = samples
        .iter()
        .rev()
        .find(|(at, _, waiting)| *waiting > 0 && selling(*at))?;
    (last.0 > first.0 + 5.0).then(|| (last.1 - first.1) as f64 / (last.0 - first.0) * 60.0)
}

/// Samples the waiting room and availability every second; returns (second, admitted_total,
/// waiting) samples.
async fn monitor(
    api: Api,
    event: Uuid,
    started: Instant,
    sold_out_at: Arc<Mutex<Option<Duration>>>,
    finished: Arc<AtomicBool>,
) -> Vec<(f64, i64, i64)> {
    let mut samples = Vec::new();
    while !finished.load(Ordering::Relaxed) {
        if let Ok(room) = api.waiting_room(event).await {
            let stats = &room["stats"];
            let at = started.elapsed().as_secs_f64();
            let admitted = stats["admitted_total"].as_i64().unwrap_or(0);
            let waiting = stats["waiting"].as_i64().unwrap_or(0);
            samples.push((at, admitted, waiting));
            api.recorder.sample("waiting", waiting as f64);
            api.recorder.sample(
                "admitted_last_minute",
                stats["admitted_last_minute"].as_f64().unwrap_or(0.0),
            );
            api.recorder
                .sample("active", stats["active"].as_f64().unwrap_or(0.0));
        }
        if let Ok(tiers) = api.availability(event).await {
            let left: i64 = tiers
                .as_object()
                .map(|t| t.values().filter_map(Value::as_i64).sum())
                .unwrap_or(-1);
            api.recorder.sample("tickets_left", left as f64);
            let mut sold_out = sold_out_at.lock().expect("lock");
            if left == 0 && sold_out.is_none() {
                *sold_out = Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    samples
}

async fn visit(
    api: &Api,
    event: Uuid,
    tiers: &[String],
    i: usize,
    abandons: bool,
    plan: &Plan,
    deadline: Instant,
) -> Visit {
    let mut visit = Visit {
        outcome: "gave_up",
        ..Visit::default()
    };
    let visitor = format!("loadgen-{i}-{}", Uuid::new_v4().simple());
    let mut answer = api.join(event, &visitor).await;
    let mut failures = 0u32;
    let patience =
        abandons.then(|| Instant::now() + Duration::from_secs(rand::thread_rng().gen_range(1..30)));
    loop {
        if Instant::now() > deadline {
            visit.outcome = "still_waiting_at_deadline";
            return visit;
        }
        if patience.is_some_and(|p| Instant::now() > p) {
            visit.outcome = "abandoned";
            return visit;
        }
        let (status, body) = &answer;
        let wait = match (status, body["state"].as_str()) {
            (200 | 202, Some(state)) => {
                failures = 0;
                if visit.position.is_none() {
                    visit.position = body["position"].as_u64();
                }
                match state {
                    "admitted" => {
                        let token = body["token"].as_str().unwrap_or_default();
                        visit.admitted_ms = body["token_expires_at"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| t.timestamp_millis() - plan.token_ttl_s * 1000);
                        visit.outcome = buy(api, event, tiers, token).await;
                        return visit;
                    }
                    "sold_out" => {
                        visit.outcome = "sold_out";
                        return visit;
                    }
                    "expired" => {
                        visit.outcome = "expired";
                        return visit;
                    }
                    _ => Duration::from_millis(body["poll_after_ms"].as_u64().unwrap_or(2000)),
                }
            }
            (429, _) => Duration::from_secs(1),
            _ => {
                failures += 1;
                if failures > 8 {
                    visit.outcome = "errors";
                    return visit;
                }
                Duration::from_millis(500 * 2u64.pow(failures.min(5)))
            }
        };
        tokio::time::sleep(wait).await;
        answer = match body["queue_id"].as_str() {
            Some(queue_id) => api.poll(queue_id).await,
            None => api.join(event, &visitor).await,
        };
    }
}

/// Books a random mix; when tiers fall short, tries again with what is left, as a buyer would.
async fn buy(api: &Api, event: Uuid, tiers: &[String], token: &str) -> &'static str {
    let mut order = random_order(event, tiers);
    for _ in 0..3 {
        let (status, body) = api.book(token, &order, Instant::now()).await;
        match status {
            201 => return "booked",
            409 if body["error"]["code"] == "insufficient_inventory" => {
                let Ok(left) = api.availability(event).await else {
                    return "booking_failed";
                };
                let open: Vec<String> = tiers
                    .iter()
                    .filter(|t| left[t.as_str()].as_i64().unwrap_or(0) > 0)
                    .cloned()
                    .collect();
                if open.is_empty() {
                    return "sold_out_at_booking";
                }
                order = random_order(event, &open);
                if let Some(chosen) = order["tiers"].as_object_mut() {
                    for (tier, quantity) in chosen.iter_mut() {
                        let available = left[tier.as_str()].as_i64().unwrap_or(0);
                        *quantity =
                            Value::from(quantity.as_i64().unwrap_or(1).min(available).max(1));
                    }
                }
            }
            _ => return "booking_failed",
        }
    }
    "gave_up_after_shortfalls"
}
