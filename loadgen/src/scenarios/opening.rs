//! The opening of a hot sale: `--count` visitors pre-queued through the join script (not over
//! HTTP, which would take longer than the benchmark), visitors still arriving over HTTP at
//! `--arrivals-per-second` across `on_sale_at`, and then what matters: how long after
//! `on_sale_at` the first admission came, whether every later joiner stands behind the whole
//! pre-queue, what the line costs Redis per visitor, and whether any command blocked Redis
//! (its SLOWLOG, threshold 10 ms).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::Utc;
use futures::StreamExt;
use serde_json::{json, Value};
use ticketing::keys::EventKeys;
use ticketing::queue::{self, admit::STEP_BOUND, place, QueueId};
use ticketing::redis_client::RedisClient;
use uuid::Uuid;

use crate::args::Args;

pub async fn run(args: &Args) -> anyhow::Result<Value> {
    let count: usize = args.get("count", 1_000_000)?;
    let arrivals_per_s: f64 = args.get("arrivals-per-second", 300.0)?;
    // The pre-queue joins within a minute of the opening, so every seeded visitor still counts as
    // alive there (a page polls every 20 s at most; nobody polls for the million here).
    let lead = Duration::from_secs(args.get("lead", 45)?);
    let gateway = args.text("gateway", "http://127.0.0.1:3000");
    let admin_token = args.admin_token();
    let redis_url = args.redis_url();
    let redis = RedisClient::connect_single(&redis_url).await?;
    let http = reqwest::Client::new();

    let on_sale_at = Utc::now() + chrono::Duration::from_std(lead)?;
    let response = http
        .post(format!("{gateway}/api/admin/events"))
        .bearer_auth(&admin_token)
        .json(&json!({
            "name": format!("loadgen opening {}", &Uuid::new_v4().simple().to_string()[..8]),
            "venue_name": "Load Test Arena",
            "starts_at": (Utc::now() + chrono::Duration::days(60)).to_rfc3339(),
            "on_sale_at": on_sale_at.to_rfc3339(),
            "waiting_room": {"enabled": true, "admission_per_minute": 60000, "max_active": 1000000},
            "tiers": [{"code": "GA", "name": "GA", "price_cents": 5000, "capacity": 100000}],
        }))
        .send()
        .await?;
    let created: Value = response.json().await?;
    let event: Uuid = created["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("creating the event: {created}"))?;

    let command = |name: &str| redis::cmd(name);
    command("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(10_000)
        .query_async::<()>(&mut redis.clone())
        .await?;
    command("SLOWLOG")
        .arg("RESET")
        .query_async::<()>(&mut redis.clone())
        .await?;
    let used_memory = || async {
        let info: String = command("INFO")
            .arg("memory")
            .query_async(&mut redis.clone())
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .context("INFO memory has no used_memory")
    };

    let memory_before = used_memory().await?;
    let seeding = Instant::now();
    futures::stream::iter(0..count)
        .map(|_| {
            let redis = redis.clone();
            async move {
                queue::join(
                    &redis,
                    event,
                    QueueId(Uuid::new_v4()),
                    place::draw_lot(),
                    &[],
                )
                .await
            }
        })
        .buffer_unordered(512)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let seeding = seeding.elapsed();
    let bytes_per_visitor = (used_memory().await? - memory_before) / count.max(1) as i64;
    eprintln!("pre-queued {count} in {seeding:.1?}; {bytes_per_visitor} bytes per visitor");
    if Utc::now() + chrono::Duration::seconds(10) > on_sale_at {
        bail!("seeding took {seeding:?}: raise --lead above it plus 10 s");
    }

    // Arrivals over HTTP from ten seconds before the opening to five after, paced.
    let arrivals_end = on_sale_at + chrono::Duration::seconds(5);
    let wait = (on_sale_at - Utc::now() - chrono::Duration::seconds(10)).to_std()?;
    tokio::time::sleep(wait).await;
    let arrivals = {
        let (http, gateway) = (http.clone(), gateway.clone());
        tokio::spawn(async move {
            let gap = Duration::from_secs_f64(1.0 / arrivals_per_s.max(1.0));
            let mut next = tokio::time::Instant::now();
            let mut i = 0u64;
            let mut pending = Vec::new();
            while Utc::now() < arrivals_end {
                tokio::time::sleep_until(next).await;
                next += gap;
                let request = http
                    .post(format!("{gateway}/api/events/{event}/queue"))
                    .json(&json!({"visitor_id": format!("arrival-{i}")}))
                    .send();
                i += 1;
                // Its own task: the request runs whatever the pace of the others.
                pending.push(tokio::spawn(async move {
                    let answer: Value = match request.await {
                        Ok(response) => response.json().await.unwrap_or(Value::Null),
                        Err(_) => Value::Null,
                    };
                    (Utc::now(), answer)
                }));
            }
            let mut answers = Vec::with_capacity(pending.len());
            for request in pending {
                answers.extend(request.await.ok());
            }
            answers
        })
    };

    let stats_key = EventKeys::new(event).stats();
    let first_admission = loop {
        let admitted: Option<i64> = command("HGET")
            .arg(&stats_key)
            .arg("admitted_total")
            .query_async(&mut redis.clone())
            .await?;
        if admitted.unwrap_or(0) > 0 {
            break Utc::now();
        }
        if Utc::now() > on_sale_at + chrono::Duration::seconds(30) {
            bail!("nobody admitted 30 s after on_sale_at");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let arrivals = arrivals.await?;
    // Paused, places hold still while they are compared.
    http.put(format!("{gateway}/api/admin/events/{event}/waiting-room"))
        .bearer_auth(&admin_token)
        .json(&json!({"paused": true}))
        .send()
        .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pre_queue_left: i64 = command("ZCOUNT")
        .arg(EventKeys::new(event).waiting())
        .arg(0)
        .arg(format!("({}", place::OPENED))
        .query_async(&mut redis.clone())
        .await?;
    let mut before = 0;
    let mut after = Vec::new();
    for (_, answer) in &arrivals {
        match answer["state"].as_str() {
            Some("pre_queue") => before += 1,
            Some("waiting") => after.push(answer["queue_id"].as_str().unwrap_or_default()),
            _ => {}
        }
    }
    // Requests sent a few milliseconds apart may reach Redis out of order, so arrival order among
    // them is the system test's to check; here, every one must stand behind the pre-queue.
    let mut later_behind = true;
    for id in &after {
        let now: Value = http
            .get(format!("{gateway}/api/queue/{id}"))
            .send()
            .await?
            .json()
            .await?;
        // One admitted already came after the whole pre-queue (admission takes the head only).
        if now["state"] == "waiting" {
            later_behind &= now["position"].as_u64().unwrap_or(0) > pre_queue_left as u64;
        }
    }
    let counted: Vec<Option<i64>> = command("HMGET")
        .arg(&stats_key)
        .arg("admitted_total")
        .arg("dropped_total")
        .query_async(&mut redis.clone())
        .await?;
    let slow: Vec<(i64, i64, i64, Vec<redis::Value>)> = command("SLOWLOG")
        .arg("GET")
        .arg(128)
        .query_async(&mut redis.clone())
        .await
        .unwrap_or_default();
    let slowest_us = slow.iter().map(|entry| entry.2).max().unwrap_or(0);
    Ok(json!({
        "event_id": event,
        "pre_queued": count,
        "seeding_s": seeding.as_secs_f64(),
        "seeded_per_s": count as f64 / seeding.as_secs_f64(),
        "bytes_per_visitor": bytes_per_visitor,
        "first_admission_after_on_sale_ms": (first_admission - on_sale_at).num_milliseconds(),
        "arrivals_before_opening": before,
        "arrivals_after_opening": after.len(),
        "pre_queue_left_when_compared": pre_queue_left,
        "every_later_joiner_behind_the_pre_queue": later_behind && !after.is_empty(),
        "admitted_by_then": counted[0].unwrap_or(0),
        "dropped_as_gone_by_then": counted[1].unwrap_or(0),
        "slowlog_entries_over_10ms": slow.len(),
        "slowest_command_us": slowest_us,
        "admission_step_bound": STEP_BOUND,
    }))
}
