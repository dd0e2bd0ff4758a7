//! An on-sale replay for the inventory-aware room: two tiers that sell out at different times,
//! buyers who choose a wish while waiting, one in ten who books something else once admitted.
//! The same crowd is replayed against three rooms in one run: stock-aware admission with a hold
//! on admission, stock-aware admission alone, and a room whose headroom (1000 %) lets the rate
//! decide, as admission did before the stock gate. Reported per room: admitted buyers refused for
//! stock, and how long a buyer who gets nothing waits before the line tells them.

use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::{Api, Booked};

#[derive(Debug, Clone)]
pub struct Plan {
    pub visitors: usize,
    /// Joins per second.
    pub arrival_rate: f64,
    pub ga: i64,
    pub vip: i64,
    pub admission_per_minute: u32,
    pub max_active: u32,
    /// Share of admitted buyers who book something other than their wish.
    pub switch_fraction: f64,
    /// The longest a page waits between polls (the server asks up to 20 s).
    pub max_poll_ms: u64,
    pub max_duration: Duration,
}

/// One room of the run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Room {
    pub name: &'static str,
    pub headroom_pct: u32,
    pub hold_on_admission: bool,
}

pub const ROOMS: [Room; 3] = [
    Room {
        name: "stock-aware, hold on admission",
        headroom_pct: 10,
        hold_on_admission: true,
    },
    Room {
        name: "stock-aware",
        headroom_pct: 10,
        hold_on_admission: false,
    },
    Room {
        name: "rate only (headroom 1000 %)",
        headroom_pct: 1000,
        hold_on_admission: false,
    },
];

#[derive(Debug, Clone, Serialize)]
pub struct RoomResult {
    pub room: Room,
    pub event_id: Uuid,
    pub admitted: usize,
    pub booked: usize,
    /// Admitted buyers whose booking of their wish was refused for stock.
    pub refused_for_stock_wish: usize,
    /// Admitted buyers who booked something else than their wish and were refused for stock.
    pub refused_for_stock_switched: usize,
    /// refused (both) / admitted.
    pub refused_share: f64,
    /// Buyers who got nothing, and the median and p90 seconds from joining to being told (a
    /// wish that cannot be met, sold out, or refused at booking).
    pub got_nothing: usize,
    pub told_median_s: Option<f64>,
    pub told_p90_s: Option<f64>,
    /// Buyers who changed their wish when told theirs could not be met, and of them booked.
    pub changed_wish: usize,
    pub changed_then_booked: usize,
    pub sold_out_s: Option<f64>,
    pub outcomes: std::collections::BTreeMap<String, usize>,
}

#[derive(Default)]
struct Visit {
    outcome: &'static str,
    admitted: bool,
    switched: bool,
    refused_for_stock: bool,
    changed_wish: bool,
    /// Seconds from joining until the line (or the booking) told this buyer there was nothing
    /// for them.
    told_after: Option<f64>,
}

pub async fn run(api: &Api, event: Uuid, plan: &Plan, room: Room) -> anyhow::Result<RoomResult> {
    let started = Instant::now();
    let deadline = started + plan.max_duration;
    let visits = (0..plan.visitors).map(|i| {
        let (api, plan) = (api.clone(), plan.clone());
        let arrival = started + Duration::from_secs_f64(i as f64 / plan.arrival_rate);
        tokio::spawn(async move {
            tokio::time::sleep_until(arrival.into()).await;
            visit(&api, event, i, &plan, deadline).await
        })
    });
    let mut results = Vec::with_capacity(plan.visitors);
    for v in visits.collect::<Vec<_>>() {
        results.push(v.await?);
    }
    let sold_out_s = Some(started.elapsed().as_secs_f64());
    let mut outcomes = std::collections::BTreeMap::new();
    for v in &results {
        *outcomes.entry(v.outcome.to_string()).or_insert(0) += 1;
    }
    let admitted = results.iter().filter(|v| v.admitted).count();
    let refused = |switched: bool| {
        results
            .iter()
            .filter(|v| v.refused_for_stock && v.switched == switched)
            .count()
    };
    let mut told: Vec<f64> = results
        .iter()
        .filter(|v| v.outcome != "booked")
        .filter_map(|v| v.told_after)
        .collect();
    told.sort_by(f64::total_cmp);
    let quantile =
        |q: f64| (!told.is_empty()).then(|| told[((told.len() - 1) as f64 * q) as usize]);
    let (wish, switched) = (refused(false), refused(true));
    Ok(RoomResult {
        room,
        event_id: event,
        admitted,
        booked: results.iter().filter(|v| v.outcome == "booked").count(),
        refused_for_stock_wish: wish,
        refused_for_stock_switched: switched,
        refused_share: if admitted == 0 {
            0.0
        } else {
            (wish + switched) as f64 / admitted as f64
        },
        got_nothing: results.iter().filter(|v| v.outcome != "booked").count(),
        told_median_s: quantile(0.5),
        told_p90_s: quantile(0.9),
        changed_wish: results.iter().filter(|v| v.changed_wish).count(),
        changed_then_booked: results
            .iter()
            .filter(|v| v.changed_wish && v.outcome == "booked")
            .count(),
        sold_out_s,
        outcomes,
    })
}

/// 70 % want GA (1–3), 30 % VIP (1–2).
fn draw_wish() -> Value {
    let mut rng = rand::thread_rng();
    if rng.gen_bool(0.7) {
        json!({"GA": rng.gen_range(1..=3)})
    } else {
        json!({"VIP": rng.gen_range(1..=2)})
    }
}

fn other_tier(wish: &Value) -> &'static str {
    if wish.get("GA").is_some() {
        "VIP"
    } else {
        "GA"
    }
}

fn available(status: &Value, code: &str) -> i64 {
    status["tiers"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["code"] == code))
        .map_or(0, |t| {
            t["available"].as_i64().unwrap_or(0) + t["held"].as_i64().unwrap_or(0)
        })
}

async fn visit(api: &Api, event: Uuid, i: usize, plan: &Plan, deadline: Instant) -> Visit {
    let joined = Instant::now();
    let mut visit = Visit {
        outcome: "gave_up",
        ..Visit::default()
    };
    let told = |visit: &mut Visit| {
        visit
            .told_after
            .get_or_insert(joined.elapsed().as_secs_f64());
    };
    let visitor = format!("stock-{i}-{}", Uuid::new_v4().simple());
    let (status, mut body) = api.join(event, &visitor).await;
    if status != 202 {
        visit.outcome = "join_failed";
        return visit;
    }
    let queue_id = body["queue_id"].as_str().unwrap_or_default().to_string();
    let mut wish = draw_wish();
    let (status, answer) = api.set_wish(&queue_id, &wish).await;
    match status {
        200 => body = answer,
        409 => {
            // Already short at join: told at once.
            told(&mut visit);
            visit.outcome = "told_at_join";
            api.leave(&queue_id).await;
            return visit;
        }
        _ => {}
    }
    loop {
        if Instant::now() > deadline {
            visit.outcome = "still_waiting_at_deadline";
            api.leave(&queue_id).await;
            return visit;
        }
        match body["state"].as_str() {
            Some("admitted") => break,
            Some("sold_out") => {
                told(&mut visit);
                visit.outcome = "sold_out";
                return visit;
            }
            Some("expired") => {
                visit.outcome = "expired";
                return visit;
            }
            _ => {}
        }
        if body["wish_shortfall"].is_array() && !visit.changed_wish {
            // Told their wish cannot be met: half change to the other tier if it has some left,
            // the rest leave the line.
            told(&mut visit);
            let other = other_tier(&wish);
            if rand::thread_rng().gen_bool(0.5) && available(&body, other) > 0 {
                let candidate = json!({ other: 1 });
                if api.set_wish(&queue_id, &candidate).await.0 == 200 {
                    wish = candidate;
                    visit.changed_wish = true;
                    visit.told_after = None;
                }
            }
            if !visit.changed_wish {
                visit.outcome = "left_when_told";
                api.leave(&queue_id).await;
                return visit;
            }
        } else if body["wish_shortfall"].is_array() {
            told(&mut visit);
            visit.outcome = "left_when_told";
            api.leave(&queue_id).await;
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
    let token = body["token"].as_str().unwrap_or_default().to_string();
    // One in ten books another tier than the wish, as a buyer changing their mind on the form
    // does: one that the form shows on sale.
    let other = other_tier(&wish);
    visit.switched = rand::thread_rng().gen_bool(plan.switch_fraction)
        && api
            .availability(event)
            .await
            .is_ok_and(|left| left[other].as_i64().unwrap_or(0) > 0);
    let order = if visit.switched {
        json!({ other: 1 })
    } else {
        wish.clone()
    };
    let request = json!({"event_id": event, "tiers": order, "buyer_email": "buyer@example.com"});
    match api.book_as_a_page(&token, &request).await {
        Booked::Yes => visit.outcome = "booked",
        Booked::RefusedForStock => {
            visit.refused_for_stock = true;
            told(&mut visit);
            visit.outcome = "refused_for_stock";
            // Gives back the admission (and any hold) at once, as the page does.
            api.leave(&queue_id).await;
        }
        Booked::Failed => {
            visit.outcome = "booking_failed";
            api.leave(&queue_id).await;
        }
    }
    visit
}
