//! The rehearsal of an on-sale night with a crowd that behaves as crowds do (issue 24's
//! measurement): a pre-queue that opens while more visitors keep arriving, visitors who close the
//! page while waiting, admitted buyers who never book, and buyers who state no wish and book a
//! few GA, some adding a VIP. The same crowd is replayed against two rooms in one run, one after
//! the other: the room as it comes (the stock gate, headroom 10 %) and a rate-only room (headroom
//! 1000 %). Reported per room: when each tier sold out after the opening, the admissions a minute
//! measured against the set rate, the longest stall (stock on sale, people waiting, no
//! admission), admitted buyers refused for stock, and how well the first wait estimate held.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{Api, Booked};
use crate::stats::percentile;

#[derive(Debug, Clone)]
pub struct Plan {
    /// Visitors who join before the opening, spread over `lead`.
    pub pre_queued: usize,
    pub lead: Duration,
    /// Visitors who join after the opening, at `later_rate` a second.
    pub later: usize,
    pub later_rate: f64,
    /// Share of visitors who close the page while waiting (silently: no DELETE), each after a
    /// patience drawn between 5 s and 120 s.
    pub abandon: f64,
    /// Share of admitted buyers who never book (the page closed).
    pub never_book: f64,
    /// Share of buyers who add one VIP to their 1-4 GA.
    pub add_vip: f64,
    pub ga: i64,
    pub vip: i64,
    pub admission_per_minute: u32,
    pub max_active: u32,
    pub token_ttl_s: i64,
    /// The longest a page waits between polls (it polls as the server asks, up to this).
    pub max_poll_ms: u64,
    /// The longest a room's sale runs after the opening.
    pub max_duration: Duration,
}

/// One room of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Room {
    /// How `--rooms` names it.
    pub key: &'static str,
    pub name: &'static str,
    pub headroom_pct: u32,
}

pub const ROOMS: [Room; 2] = [
    Room {
        key: "gate",
        name: "stock gate (headroom 10 %)",
        headroom_pct: 10,
    },
    Room {
        key: "rate",
        name: "rate only (headroom 1000 %)",
        headroom_pct: 1000,
    },
];

/// The rooms `wanted` names ("gate,rate"), in its order: a run that studies one room's sale need
/// not replay the other's.
pub fn rooms(wanted: &str) -> anyhow::Result<Vec<Room>> {
    wanted
        .split(',')
        .map(|key| {
            ROOMS
                .iter()
                .find(|room| room.key == key.trim())
                .copied()
                .ok_or_else(|| anyhow::anyhow!("no room {key:?}: gate or rate"))
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct RoomResult {
    pub room: Room,
    pub event_id: Uuid,
    pub visitors: usize,
    pub admitted: usize,
    pub booked: usize,
    /// Admitted buyers who tried to book and were refused for stock (409).
    pub refused_for_stock: usize,
    /// refused_for_stock / admitted buyers who tried to book.
    pub refused_share: f64,
    /// Of those refused: how many after GA had sold out (every buyer of this crowd wants GA, so
    /// these are the probes the room owes the line while VIP is on sale).
    pub refused_after_ga_sold_out: usize,
    /// Of those: how many had been admitted after GA sold out (every one of them a probe, as this
    /// crowd wants GA); the rest were admitted while GA was on sale and booked too late.
    pub refused_admitted_after_ga_sold_out: usize,
    /// Seconds after the opening when each tier was at 0 for good (None: not within the run).
    pub ga_sold_out_s: Option<f64>,
    pub vip_sold_out_s: Option<f64>,
    /// GA left and admissions so far at each whole second after the opening, until GA sold out:
    /// where a sell-out's time goes (its tail, where the gate holds buyers back, shows here).
    pub ga_left_by_s: Vec<i64>,
    pub admitted_by_s: Vec<i64>,
    pub set_per_minute: u32,
    /// Admissions from the opening to the last one, a minute.
    pub measured_per_minute: Option<f64>,
    /// The longest time with stock on sale, people waiting and no admission (sampled every
    /// 200 ms from the admin view and the booking service's availability).
    pub longest_stall_s: f64,
    /// Of admitted visitors: the share whose first wait range (the first answer after the
    /// opening) held their actual wait, the median error of its middle against the actual wait,
    /// and how many visitors were told later that they would be admitted after the first
    /// range's end (a jump beyond it).
    pub first_range_held_share: Option<f64>,
    pub first_estimate_median_error: Option<f64>,
    pub jumps_beyond_range: usize,
    /// Of those jumps (the first of each visitor): the note the answer gave (`none` when it gave
    /// none), and when they came, seconds after the opening (quartiles).
    pub jumps_by_note: std::collections::BTreeMap<String, usize>,
    pub jumps_at_s: Option<[f64; 3]>,
    /// Visitors told at some poll that no time could be promised (`wait_note: tiers_gone`, no
    /// range): the tiers buyers took were gone and those without a wish went in only as probes.
    pub told_tiers_gone: usize,
    /// Visitors told at some poll that the stock on sale would likely be gone before their turn
    /// (`wait_note: beyond_stock`, no range), and how many of them booked all the same (the
    /// foresight's misses).
    pub told_beyond_stock: usize,
    pub told_beyond_stock_booked: usize,
    pub outcomes: std::collections::BTreeMap<String, usize>,
}

#[derive(Default)]
struct Visit {
    outcome: &'static str,
    admitted: bool,
    tried_to_book: bool,
    refused_for_stock: bool,
    /// When the refusal came, seconds since the opening.
    refused_at: Option<f64>,
    /// Seconds since the opening: the first wait range's [low, high] ends, when it was told,
    /// and the admission (between the last poll that was waiting and the first that was not).
    first_range: Option<(f64, f64)>,
    admitted_between: Option<(f64, f64)>,
    /// The first answer whose range began after the first range's end: when, and its note.
    jumped: Option<(f64, String)>,
    told_tiers_gone: bool,
    told_beyond_stock: bool,
}

/// One sample of the sale, seconds after the opening.
struct Sample {
    at: f64,
    admitted_total: i64,
    waiting: i64,
    available: Vec<i64>,
}

/// Creates the room's event (opening after the plan's lead) and replays the crowd against it.
pub async fn run(api: &Api, plan: &Plan, room: Room, run_id: &str) -> anyhow::Result<RoomResult> {
    // The event opens once the pre-queue has joined, with a margin.
    let opening_in = plan.lead + Duration::from_secs(3);
    let on_sale_at = Utc::now() + chrono::Duration::from_std(opening_in)?;
    let event = api
        .create_event_opening(
            &format!("loadgen rehearsal {run_id} {}", room.name),
            &[("GA".to_string(), plan.ga), ("VIP".to_string(), plan.vip)],
            json!({"enabled": true, "admission_per_minute": plan.admission_per_minute,
                   "max_active": plan.max_active, "paused": false,
                   "token_ttl_s": plan.token_ttl_s, "headroom_pct": room.headroom_pct}),
            on_sale_at,
        )
        .await?;
    let created = Instant::now();
    let opening = created + opening_in;
    let deadline = opening + plan.max_duration;
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let monitor = tokio::spawn(sample(
        api.clone(),
        event,
        opening,
        samples.clone(),
        stopped,
    ));

    let visitors = plan.pre_queued + plan.later;
    let visits = (0..visitors).map(|i| {
        let (api, plan) = (api.clone(), plan.clone());
        let arrival = if i < plan.pre_queued {
            created + plan.lead.mul_f64(i as f64 / plan.pre_queued.max(1) as f64)
        } else {
            opening + Duration::from_secs_f64((i - plan.pre_queued) as f64 / plan.later_rate)
        };
        tokio::spawn(async move {
            tokio::time::sleep_until(arrival.into()).await;
            visit(&api, event, i, &plan, opening, deadline).await
        })
    });
    let mut results = Vec::with_capacity(visitors);
    for v in visits.collect::<Vec<_>>() {
        results.push(v.await?);
    }
    let _ = stop.send(true);
    monitor.await?;
    let samples = std::mem::take(&mut *samples.lock().expect("samples"));
    Ok(summarize(plan, room, event, visitors, &results, &samples))
}

fn summarize(
    plan: &Plan,
    room: Room,
    event: Uuid,
    visitors: usize,
    results: &[Visit],
    samples: &[Sample],
) -> RoomResult {
    let mut outcomes = std::collections::BTreeMap::new();
    for v in results {
        *outcomes.entry(v.outcome.to_string()).or_insert(0) += 1;
    }
    let tried = results.iter().filter(|v| v.tried_to_book).count();
    let refused = results.iter().filter(|v| v.refused_for_stock).count();
    // A tier is sold out for good after the last sample that had some of it.
    let sold_out = |tier: usize| {
        let last_on_sale = samples.iter().rposition(|s| s.available[tier] > 0)?;
        samples.get(last_on_sale + 1).map(|s| s.at)
    };
    let first_admitted = samples.iter().find(|s| s.admitted_total > 0);
    let last_change = samples
        .windows(2)
        .rev()
        .find(|w| w[1].admitted_total > w[0].admitted_total)
        .map(|w| &w[1]);
    let measured_per_minute = match (samples.first(), last_change) {
        (Some(first), Some(last)) if last.at > first.at && first_admitted.is_some() => {
            Some((last.admitted_total - first.admitted_total) as f64 / (last.at - first.at) * 60.0)
        }
        _ => None,
    };
    let mut longest_stall: f64 = 0.0;
    let mut stalled_since: Option<&Sample> = None;
    for pair in samples.windows(2) {
        let (before, now) = (&pair[0], &pair[1]);
        let stalled = now.at > 0.0
            && now.admitted_total == before.admitted_total
            && now.waiting > 0
            && now.available.iter().any(|left| *left > 0);
        if stalled {
            let since = stalled_since.get_or_insert(before);
            longest_stall = longest_stall.max(now.at - since.at);
        } else {
            stalled_since = None;
        }
    }
    let estimated: Vec<((f64, f64), (f64, f64))> = results
        .iter()
        .filter_map(|v| Some((v.first_range?, v.admitted_between?)))
        .collect();
    let held = estimated
        .iter()
        .filter(|((low, high), (after, by))| by >= low && after <= high)
        .count();
    let mut errors: Vec<f64> = estimated
        .iter()
        .filter_map(|((low, high), (after, by))| {
            let told = (low + high) / 2.0;
            let actual = (after + by) / 2.0;
            (actual > 1.0).then(|| (told - actual).abs() / actual)
        })
        .collect();
    errors.sort_by(f64::total_cmp);
    let jumps: Vec<&(f64, String)> = results.iter().filter_map(|v| v.jumped.as_ref()).collect();
    // The first sample at or after each whole second, up to GA's sell-out.
    let by_second: Vec<&Sample> = {
        let end = sold_out(0).unwrap_or(0.0).ceil();
        let mut second = 0.0;
        let mut picked = Vec::new();
        for s in samples.iter().filter(|s| s.at >= 0.0) {
            if second > end {
                break;
            }
            if s.at >= second {
                picked.push(s);
                second = s.at.floor() + 1.0;
            }
        }
        picked
    };
    RoomResult {
        room,
        event_id: event,
        visitors,
        admitted: results.iter().filter(|v| v.admitted).count(),
        booked: results.iter().filter(|v| v.outcome == "booked").count(),
        refused_for_stock: refused,
        refused_share: if tried == 0 {
            0.0
        } else {
            refused as f64 / tried as f64
        },
        refused_after_ga_sold_out: sold_out(0).map_or(0, |at| {
            results
                .iter()
                .filter(|v| v.refused_at.is_some_and(|refused| refused >= at))
                .count()
        }),
        refused_admitted_after_ga_sold_out: sold_out(0).map_or(0, |at| {
            results
                .iter()
                .filter(|v| v.refused_for_stock)
                .filter(|v| v.admitted_between.is_some_and(|(_, by)| by >= at))
                .count()
        }),
        ga_sold_out_s: sold_out(0),
        vip_sold_out_s: sold_out(1),
        ga_left_by_s: by_second.iter().map(|s| s.available[0]).collect(),
        admitted_by_s: by_second.iter().map(|s| s.admitted_total).collect(),
        set_per_minute: plan.admission_per_minute,
        measured_per_minute,
        longest_stall_s: longest_stall,
        first_range_held_share: (!estimated.is_empty())
            .then(|| held as f64 / estimated.len() as f64),
        first_estimate_median_error: (!errors.is_empty()).then(|| errors[errors.len() / 2]),
        jumps_beyond_range: jumps.len(),
        jumps_by_note: jumps.iter().fold(Default::default(), |mut by, (_, note)| {
            *by.entry(note.to_string()).or_default() += 1;
            by
        }),
        jumps_at_s: {
            let at: Vec<f64> = jumps.iter().map(|(at, _)| *at).collect();
            percentile(at.clone(), 0.25)
                .zip(percentile(at.clone(), 0.5))
                .zip(percentile(at, 0.75))
                .map(|((q1, q2), q3)| [q1, q2, q3])
        },
        told_tiers_gone: results.iter().filter(|v| v.told_tiers_gone).count(),
        told_beyond_stock: results.iter().filter(|v| v.told_beyond_stock).count(),
        told_beyond_stock_booked: results
            .iter()
            .filter(|v| v.told_beyond_stock && v.outcome == "booked")
            .count(),
        outcomes,
    }
}

/// Samples the sale every 200 ms until told to stop: admissions so far and people waiting (the
/// admin view), and what is left of each tier (the booking service), from the opening on.
async fn sample(
    api: Api,
    event: Uuid,
    opening: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    tokio::time::sleep_until(opening.into()).await;
    let mut every = tokio::time::interval(Duration::from_millis(200));
    while !*stopped.borrow() {
        tokio::select! {
            _ = every.tick() => {}
            _ = stopped.changed() => break,
        }
        let (Ok(room), Ok(left)) = (api.waiting_room(event).await, api.availability(event).await)
        else {
            continue;
        };
        let stats = &room["stats"];
        samples.lock().expect("samples").push(Sample {
            at: opening.elapsed().as_secs_f64(),
            admitted_total: stats["admitted_total"].as_i64().unwrap_or(0),
            waiting: stats["waiting"].as_i64().unwrap_or(0),
            available: ["GA", "VIP"]
                .iter()
                .map(|code| left[code].as_i64().unwrap_or(0))
                .collect(),
        });
    }
}

/// Seconds since the opening (negative before it).
fn since(opening: Instant) -> f64 {
    let now = Instant::now();
    if now >= opening {
        (now - opening).as_secs_f64()
    } else {
        -(opening - now).as_secs_f64()
    }
}

async fn visit(
    api: &Api,
    event: Uuid,
    i: usize,
    plan: &Plan,
    opening: Instant,
    deadline: Instant,
) -> Visit {
    let mut visit = Visit {
        outcome: "gave_up",
        ..Visit::default()
    };
    let (patience, never_books, order) = {
        let mut rng = rand::thread_rng();
        let patience = rng
            .gen_bool(plan.abandon)
            .then(|| Duration::from_secs_f64(rng.gen_range(5.0..120.0)));
        let mut order = json!({"GA": rng.gen_range(1..=4)});
        if rng.gen_bool(plan.add_vip) {
            order["VIP"] = json!(1);
        }
        (patience, rng.gen_bool(plan.never_book), order)
    };
    let joined = Instant::now();
    let visitor = format!("rehearsal-{i}-{}", Uuid::new_v4().simple());
    let (status, mut body) = api.join(event, &visitor).await;
    if status != 202 {
        visit.outcome = "join_failed";
        return visit;
    }
    let queue_id = body["queue_id"].as_str().unwrap_or_default().to_string();
    // When this visitor was last seen waiting, and the end of the first range it was told.
    let mut last_waiting = since(opening);
    let mut first_range_ends: Option<f64> = None;
    loop {
        let now = since(opening);
        match body["state"].as_str() {
            Some("admitted") => {
                visit.admitted_between = Some((last_waiting.max(0.0), now));
                break;
            }
            Some("sold_out") => {
                visit.outcome = "sold_out";
                return visit;
            }
            Some("expired") => {
                visit.outcome = "expired";
                return visit;
            }
            Some("waiting") => {
                last_waiting = now;
                match body["wait_note"].as_str() {
                    Some("tiers_gone") => visit.told_tiers_gone = true,
                    Some("beyond_stock") => visit.told_beyond_stock = true,
                    _ => {}
                }
                if let Some([low, high]) = range(&body) {
                    let (low, high) = (now + low, now + high);
                    match first_range_ends {
                        None if now >= 0.0 => {
                            visit.first_range = Some((low, high));
                            first_range_ends = Some(high);
                        }
                        Some(end) if low > end + 1.0 && visit.jumped.is_none() => {
                            let note = body["wait_note"].as_str().unwrap_or("none");
                            visit.jumped = Some((now, note.to_string()));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        if Instant::now() > deadline {
            visit.outcome = "still_waiting_at_deadline";
            return visit;
        }
        if patience.is_some_and(|p| joined.elapsed() >= p) {
            // The page is closed: no more polls, no DELETE.
            visit.outcome = "abandoned_waiting";
            return visit;
        }
        let Some(next) = api
            .poll_when_asked(&queue_id, &body, plan.max_poll_ms)
            .await
        else {
            visit.outcome = "lost";
            return visit;
        };
        body = next;
    }
    visit.admitted = true;
    if never_books {
        visit.outcome = "admitted_never_booked";
        return visit;
    }
    // A few seconds on the booking form.
    let think = Duration::from_secs_f64(rand::thread_rng().gen_range(1.0..5.0));
    tokio::time::sleep(think).await;
    visit.tried_to_book = true;
    let token = body["token"].as_str().unwrap_or_default().to_string();
    let request = json!({"event_id": event, "tiers": order, "buyer_email": "buyer@example.com"});
    visit.outcome = match api.book_as_a_page(&token, &request).await {
        Booked::Yes => "booked",
        Booked::RefusedForStock => {
            // The page says so; the booking service gave the admission back already.
            visit.refused_for_stock = true;
            visit.refused_at = Some(since(opening));
            "refused_for_stock"
        }
        Booked::Failed => "booking_failed",
    };
    visit
}

/// The wait range of a waiting answer, seconds from now.
fn range(body: &Value) -> Option<[f64; 2]> {
    let range = body["estimated_wait_range_s"].as_array()?;
    Some([range.first()?.as_f64()?, range.get(1)?.as_f64()?])
}
