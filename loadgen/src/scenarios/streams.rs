//! Open queue streams against polling, on one gateway: `--counts` streams held open from
//! `--sources` loopback addresses (127.0.0.1, .2, …), the gateway's resident memory after each
//! step (per stream: the slope), its CPU and Redis's commands over `--window` seconds against the
//! same number of browsers polling at the cadence the gateway asks, and how long after the
//! worker's decision (the notice's Redis time) each stream heard its admission.
//!
//! Needs the gateway's pid (`--gateway-pid`, to read /proc) and the Redis it uses
//! (`--redis-url`, for its command counter); the file limit must allow two sockets per stream.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::args::Args;

/// Streams per HTTP/2 connection (below the server's limit on concurrent streams, 200).
const PER_H2_CONNECTION: usize = 150;

struct Gateway {
    url: String,
    pid: u32,
}

impl Gateway {
    /// Resident memory (KiB).
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .context("VmRSS")
    }

    /// CPU time used so far (user + system, seconds).
    fn cpu_s(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = stat.rsplit_once(')').context("stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
        Ok(ticks / 100.0)
    }
}

async fn redis_commands(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("stats").query_async(redis).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .context("total_commands_processed")
}

/// The entry checks the gateway made so far: polls answered and stream checks (its /metrics).
async fn entry_checks(gateway: &Gateway) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{}/metrics", gateway.url))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("queue_polls_total") || l.starts_with("queue_stream_checks_total")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// What one measuring window cost the gateway and Redis.
async fn window(
    gateway: &Gateway,
    redis: &mut redis::aio::MultiplexedConnection,
    length: Duration,
) -> anyhow::Result<Value> {
    let (cpu0, cmd0, checks0) = (
        gateway.cpu_s()?,
        redis_commands(redis).await?,
        entry_checks(gateway).await?,
    );
    tokio::time::sleep(length).await;
    let (cpu1, cmd1, checks1) = (
        gateway.cpu_s()?,
        redis_commands(redis).await?,
        entry_checks(gateway).await?,
    );
    let secs = length.as_secs_f64();
    Ok(json!({
        "gateway_cpu_share": (cpu1 - cpu0) / secs,
        "redis_commands_per_s": (cmd1 - cmd0) as f64 / secs,
        "entry_checks_per_s": (checks1 - checks0) / secs,
    }))
}

pub async fn run(args: &Args) -> anyhow::Result<Value> {
    let mut counts: Vec<usize> = args
        .text("counts", "5000,10000,20000")
        .split(',')
        .map(|c| c.trim().parse())
        .collect::<Result<_, _>>()?;
    counts.sort_unstable();
    let most = *counts.last().context("--counts")?;
    let sources: u8 = args.get("sources", 10)?;
    let window_len = Duration::from_secs(args.get("window", 20)?);
    let admit: usize = args.get("admit", 2000)?;
    let gateway = Gateway {
        url: args.text("gateway", "http://127.0.0.1:3000"),
        pid: args
            .optional("gateway-pid")
            .context("--gateway-pid (to read its memory and CPU)")?
            .parse()?,
    };
    let admin_token = args.admin_token();
    let redis_url = args.redis_url();
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    // HTTP/1.1: one connection per page, as browsers reach a gateway directly. HTTP/2: as a
    // proxy in front multiplexes them, one connection per `PER_H2_CONNECTION` pages.
    let http2 = args.get("http2", false)?;
    let client_for = |i: usize| -> reqwest::Result<reqwest::Client> {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % sources as usize) as u8));
        let builder = reqwest::Client::builder()
            .local_address(source)
            .pool_max_idle_per_host(usize::MAX);
        if http2 {
            builder.http2_prior_knowledge().build()
        } else {
            builder.build()
        }
    };
    let clients_needed = if http2 {
        most.div_ceil(PER_H2_CONNECTION)
    } else {
        sources as usize
    };
    let clients = || -> reqwest::Result<Vec<reqwest::Client>> {
        (0..clients_needed).map(client_for).collect()
    };
    let stream_clients = clients()?;
    let admin = reqwest::Client::new();

    // A paused room at a slow rate: nobody is admitted until the latency phase, and pages far
    // back poll (and streams check) at the longest cadence, as most of a real line does.
    let created: Value = admin
        .post(format!("{}/api/admin/events", gateway.url))
        .bearer_auth(&admin_token)
        .json(&json!({
            "name": format!("loadgen streams {}", &Uuid::new_v4().simple().to_string()[..8]),
            "venue_name": "Load Test Arena",
            "starts_at": (chrono::Utc::now() + chrono::Duration::days(60)).to_rfc3339(),
            "waiting_room": {"enabled": true, "admission_per_minute": 1, "max_active": 1_000_000,
                             "paused": true, "token_ttl_s": 600},
            "tiers": [{"code": "GA", "name": "GA", "price_cents": 5000, "capacity": 1_000_000}],
        }))
        .send()
        .await?
        .json()
        .await?;
    let event: Uuid = created["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("creating the event: {created}"))?;

    eprintln!("joining {most} visitors");
    let joiners = clients()?;
    let queue_ids: Vec<String> = futures::stream::iter(0..most)
        .map(|i| {
            let client = joiners[i % joiners.len()].clone();
            let url = format!("{}/api/events/{event}/queue", gateway.url);
            async move {
                let body: Value = client
                    .post(url)
                    .json(&json!({"visitor_id": format!("stream-{i}")}))
                    .send()
                    .await?
                    .json()
                    .await?;
                body["queue_id"]
                    .as_str()
                    .map(str::to_string)
                    .with_context(|| format!("join: {body}"))
            }
        })
        .buffered(64)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;

    // What the system costs with nobody watching (the worker's ticks, the samples): the windows
    // below are read against it.
    let quiet = window(&gateway, &mut redis, window_len).await?;

    drop(joiners);
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Streams, step by step.
    let rss_before = gateway.rss_kib()?;
    let ready = Arc::new(AtomicUsize::new(0));
    let heard = Arc::new(Mutex::new(Vec::<i64>::new()));
    let unnoticed = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    let mut steps = Vec::new();
    for &count in &counts {
        eprintln!("{count} streams open");
        while readers.len() < count {
            let i = readers.len();
            let client = stream_clients[i % stream_clients.len()].clone();
            let url = format!("{}/api/queue/{}/events", gateway.url, queue_ids[i]);
            readers.push(tokio::spawn(read_stream(
                client,
                url,
                Arc::clone(&ready),
                Arc::clone(&heard),
                Arc::clone(&unnoticed),
            )));
            if i % 200 == 199 {
                // Open at a browser-like pace, not in one burst.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        while ready.load(Ordering::Relaxed) < count {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {count} streams opened",
                    ready.load(Ordering::Relaxed)
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        steps.push(json!({"streams": count, "gateway_rss_kib": gateway.rss_kib()?}));
    }
    let streaming = window(&gateway, &mut redis, window_len).await?;

    // Admission notices to the open streams: the first `admit` of the line.
    eprintln!("admitting {admit}");
    let per_minute = (admit as u64 * 6).max(60);
    admin
        .put(format!(
            "{}/api/admin/events/{event}/waiting-room",
            gateway.url
        ))
        .bearer_auth(&admin_token)
        .json(&json!({"paused": false, "admission_per_minute": per_minute}))
        .send()
        .await?
        .error_for_status()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let admitted = || heard.lock().expect("lock").len() + unnoticed.load(Ordering::Relaxed);
    while admitted() < admit.min(most) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin
        .put(format!(
            "{}/api/admin/events/{event}/waiting-room",
            gateway.url
        ))
        .bearer_auth(&admin_token)
        // Back as it was, so the pages poll at the cadence the streams checked at.
        .json(&json!({"paused": true, "admission_per_minute": 1}))
        .send()
        .await?;
    for reader in &readers {
        reader.abort();
    }
    drop(stream_clients);
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The same line polling at the cadence the gateway asks (after the streams: a process's
    // allocator keeps what it freed, so memory is measured on streams only, from a fresh start;
    // the entries admitted above poll too, at the admitted cadence).
    eprintln!("{most} pages polling");
    let polls = Arc::new(AtomicUsize::new(0));
    let poll_clients = clients()?;
    let pollers: Vec<_> = queue_ids
        .iter()
        .enumerate()
        .map(|(i, queue_id)| {
            let client = poll_clients[i % poll_clients.len()].clone();
            let url = format!("{}/api/queue/{queue_id}", gateway.url);
            let polls = Arc::clone(&polls);
            // Pages joined over a while: their first polls are spread over the longest interval.
            let offset = Duration::from_millis((i as u64 * 20_000) / most as u64);
            tokio::spawn(async move {
                tokio::time::sleep(offset).await;
                loop {
                    let after = match client.get(&url).send().await {
                        Ok(r) => r
                            .json::<Value>()
                            .await
                            .ok()
                            .and_then(|b| b["poll_after_ms"].as_u64())
                            .unwrap_or(5_000),
                        Err(_) => 5_000,
                    };
                    polls.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(after)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(22)).await;
    let polled_before = polls.load(Ordering::Relaxed);
    let polling = window(&gateway, &mut redis, window_len).await?;
    let polls_per_s =
        (polls.load(Ordering::Relaxed) - polled_before) as f64 / window_len.as_secs_f64();
    for poller in pollers {
        poller.abort();
    }
    drop(poll_clients);

    let mut latencies = heard.lock().expect("lock").clone();
    latencies.sort_unstable();
    let quantile = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1))
            .copied()
    };
    let (first, last) = (&steps[0], steps.last().expect("a step"));
    let slope = |a: &Value, b: &Value| {
        let kib = b["gateway_rss_kib"].as_f64().unwrap_or(0.0)
            - a["gateway_rss_kib"].as_f64().unwrap_or(0.0);
        let n = b["streams"].as_f64().unwrap_or(0.0) - a["streams"].as_f64().unwrap_or(0.0);
        (n > 0.0).then(|| kib / n)
    };
    let baseline = json!({"streams": 0, "gateway_rss_kib": rss_before});
    Ok(json!({
        "event_id": event,
        "sources": sources,
        "quiet": quiet,
        "http2": http2,
        "polling": {"pages": most, "polls_per_s": polls_per_s, "cost": polling},
        "streaming": {"streams": most, "cost": streaming, "rss_steps": steps,
                      "rss_before_kib": rss_before,
                      "kib_per_stream_from_first_step": slope(first, last),
                      "kib_per_stream_from_none": slope(&baseline, last)},
        "admission_notice_ms": {"heard": latencies.len(), "asked": admit,
                                "found_by_a_check_first": unnoticed.load(Ordering::Relaxed),
                                "p50": quantile(0.5), "p99": quantile(0.99),
                                "max": latencies.last()},
    }))
}

/// Holds one stream open: counts it ready at its first message, records how long after the
/// notice's Redis time the admission arrived (loopback: the same clock).
async fn read_stream(
    client: reqwest::Client,
    url: String,
    ready: Arc<AtomicUsize>,
    heard: Arc<Mutex<Vec<i64>>>,
    unnoticed: Arc<AtomicUsize>,
) {
    let Ok(mut response) = client.get(&url).send().await else {
        return;
    };
    if !response.status().is_success() {
        return;
    }
    let mut buffer = Vec::new();
    let mut counted = false;
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let Some(data) = text.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            if !counted {
                counted = true;
                ready.fetch_add(1, Ordering::Relaxed);
            }
            let status: Value = serde_json::from_str(data).unwrap_or(Value::Null);
            if status["state"] == "admitted" {
                match status["notice_ms"].as_i64() {
                    Some(notice) => {
                        let now = chrono::Utc::now().timestamp_millis();
                        heard.lock().expect("lock").push(now - notice);
                    }
                    // The stream's own check saw it before the notice came.
                    None => {
                        unnoticed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                return;
            }
        }
    }
}
