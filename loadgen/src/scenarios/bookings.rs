//! Booking ceiling and sold-out storm: bookings straight at the booking service with tokens
//! minted for the run. Open loop sends at a fixed rate and measures latency from each request's
//! intended send time; closed loop keeps `concurrency` requests in flight to find the ceiling.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::client::Api;
use crate::tokens::Minter;

#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// Requests per second, sent on schedule whatever the answers.
    Open { rate: f64 },
    /// Requests in flight at all times.
    Closed { concurrency: usize },
}

/// A random mix of tiers, one to three tickets.
pub fn random_order(event: Uuid, tiers: &[String]) -> Value {
    let mut rng = rand::thread_rng();
    let mut chosen = serde_json::Map::new();
    let kinds = rng.gen_range(1..=2.min(tiers.len()));
    for _ in 0..kinds {
        let tier = &tiers[rng.gen_range(0..tiers.len())];
        chosen.insert(tier.clone(), json!(rng.gen_range(1..=2)));
    }
    json!({"event_id": event, "tiers": chosen, "buyer_email": "load@example.com"})
}

/// What each booking of a run asks for.
#[derive(Clone, Debug)]
pub enum Orders {
    /// `random_order` over these tiers.
    Random(Vec<String>),
    /// The same tiers and quantities every time, e.g. the 1 VIP + 1 FrontRow + 2 GA: the
    /// rows pgbench's baselines write per booking (`loadgen/bench/*.sql`).
    Fixed(serde_json::Map<String, Value>),
}

impl Orders {
    /// `--order VIP=1,FrontRow=1,GA=2`: fixed; none: random over `tiers`.
    pub fn parse(order: Option<&str>, tiers: &[String]) -> anyhow::Result<Self> {
        let Some(order) = order else {
            return Ok(Self::Random(tiers.to_vec()));
        };
        let mut fixed = serde_json::Map::new();
        for part in order.split(',') {
            let (code, quantity) = part
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--order {order}: use CODE=N,CODE=N"))?;
            if !tiers.iter().any(|t| t == code) {
                anyhow::bail!("--order {order}: no tier {code} (the event has {tiers:?})");
            }
            let quantity: u32 = quantity
                .parse()
                .map_err(|_| anyhow::anyhow!("--order {order}: {quantity} is no quantity"))?;
            fixed.insert(code.to_string(), json!(quantity));
        }
        Ok(Self::Fixed(fixed))
    }

    fn next(&self, event: Uuid) -> Value {
        match self {
            Self::Random(tiers) => random_order(event, tiers),
            Self::Fixed(tiers) => {
                json!({"event_id": event, "tiers": tiers, "buyer_email": "load@example.com"})
            }
        }
    }
}

/// Entry tokens for a run: enough for `load` over `duration`, or, with `reuse`, a handful that
/// serve every request (a sold-out event never spends them).
pub fn mint(
    minter: &Minter,
    event: Uuid,
    load: Load,
    duration: Duration,
    reuse: bool,
) -> anyhow::Result<Vec<String>> {
    let count = match (reuse, load) {
        (true, _) => 64,
        (false, Load::Open { rate }) => (rate * duration.as_secs_f64()).ceil() as usize + 1,
        // Closed loop: enough for 8,000 bookings a second (500 a client), twice what the booking
        // ceiling reaches on two cores: a run that spends them all ends early and says nothing of
        // its last seconds.
        (false, Load::Closed { concurrency }) => {
            (concurrency * 500).max(8000) * duration.as_secs().max(1) as usize
        }
    };
    eprintln!("minting {count} entry tokens…");
    (0..count).map(|_| minter.mint(event, 3600)).collect()
}

/// Runs bookings against `event` for `duration` with `tokens`; with `reuse` they cycle.
pub async fn run(
    api: &Api,
    tokens: Vec<String>,
    event: Uuid,
    orders: &Orders,
    load: Load,
    duration: Duration,
    reuse: bool,
) -> anyhow::Result<()> {
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let take = move |next: &AtomicUsize| {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if reuse {
            Some(i % tokens.len())
        } else {
            (i < tokens.len()).then_some(i)
        }
        .map(|i| tokens[i].clone())
    };
    let started = Instant::now();
    match load {
        Load::Open { rate } => {
            paced(rate, duration, |_, intended| {
                let token = take(&next)?;
                let (api, body) = (api.clone(), orders.next(event));
                Some(async move { api.book(&token, &body, intended).await })
            })
            .await;
        }
        Load::Closed { concurrency } => {
            let deadline = started + duration;
            let take = Arc::new(take);
            let workers = (0..concurrency).map(|_| {
                let (api, next, take, orders) =
                    (api.clone(), next.clone(), take.clone(), orders.clone());
                tokio::spawn(async move {
                    while Instant::now() < deadline {
                        let Some(token) = take(&next) else { break };
                        api.book(&token, &orders.next(event), Instant::now()).await;
                    }
                })
            });
            for worker in workers.collect::<Vec<_>>() {
                worker.await?;
            }
        }
    }
    Ok(())
}

/// Which event ids a look-up flood names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloodIds {
    /// Made-up ids, half sharing the real event's first 8 bytes (the prefix the advisory lock key
    /// was once taken from): what an attacker or a broken client sends.
    Unknown,
    /// The event on sale itself, answered from the service's caches and Redis: the crowd
    /// refreshing a hot event's availability. The baseline an unknown-id flood is held to.
    Known,
}

impl FloodIds {
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        match value {
            "unknown" => Ok(Self::Unknown),
            "known" => Ok(Self::Known),
            other => anyhow::bail!("--flood-ids {other}: use unknown or known"),
        }
    }

    fn endpoint(self) -> &'static str {
        match self {
            Self::Unknown => "GET /api/events/{unknown}/availability",
            Self::Known => "GET /api/events/{known}/availability",
        }
    }

    fn id(self, event: Uuid, i: u32) -> Uuid {
        match self {
            Self::Known => event,
            Self::Unknown => {
                let mut bytes = *Uuid::new_v4().as_bytes();
                if i % 2 == 0 {
                    bytes[..8].copy_from_slice(&event.as_bytes()[..8]);
                }
                Uuid::from_bytes(bytes)
            }
        }
    }
}

/// Availability look-ups of `ids` at a fixed `rate`, pipelined over a few keep-alive HTTP/1.1
/// connections written by hand, each answer's status and error code counted. The flood stands for
/// other people's machines: through reqwest it cost this process about 70 µs a request on the same
/// two cores as the service (a tenth of the machine at 2,000/s), which measured the load
/// generator as much as the service; this way it costs a few µs.
pub async fn lookup_flood(api: Api, event: Uuid, ids: FloodIds, rate: f64, duration: Duration) {
    const CONNECTIONS: usize = 4;
    let Ok(url) = reqwest::Url::parse(&api.booking) else {
        return;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return;
    };
    let address = format!("{host}:{port}");
    let senders: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (address, host) = (address.clone(), host.to_string());
            let recorder = api.recorder.clone();
            tokio::spawn(async move {
                if let Err(error) = flood_connection(
                    &address,
                    &host,
                    recorder,
                    event,
                    ids,
                    rate / CONNECTIONS as f64,
                    duration,
                )
                .await
                {
                    eprintln!("flood connection: {error}");
                }
            })
        })
        .collect();
    for sender in senders {
        let _ = sender.await;
    }
}

async fn flood_connection(
    address: &str,
    host: &str,
    recorder: crate::stats::Recorder,
    event: Uuid,
    ids: FloodIds,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let stream = tokio::net::TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    let (reader, mut writer) = stream.into_split();
    let (sent, mut answered) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let host = host.to_string();
    let writing = tokio::spawn(async move {
        let gap = Duration::from_secs_f64(1.0 / rate);
        let started = Instant::now();
        for i in 0u32.. {
            let intended = started + gap * i;
            if intended.duration_since(started) >= duration {
                break;
            }
            tokio::time::sleep_until(intended.into()).await;
            let request = format!(
                "GET /api/events/{}/availability HTTP/1.1\r\nHost: {host}\r\n\r\n",
                ids.id(event, i)
            );
            if writer.write_all(request.as_bytes()).await.is_err() || sent.send(intended).is_err() {
                break;
            }
        }
        // Kept open until every answer is read: dropping it would half-close the socket, and the
        // server may close before it answers what is still in the pipe.
        writer
    });
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    let mut body = Vec::new();
    while let Some(intended) = answered.recv().await {
        // Answers come back in the order the requests went (HTTP/1.1 pipelining).
        line.clear();
        if reader.read_line(&mut line).await? == 0 {
            recorder.record(ids.endpoint(), intended.elapsed(), "transport_error");
            break;
        }
        let status = line.split_whitespace().nth(1).unwrap_or("0").to_string();
        let mut length = 0usize;
        loop {
            line.clear();
            reader.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        body.resize(length, 0);
        reader.read_exact(&mut body).await?;
        let text = String::from_utf8_lossy(&body);
        let code = text
            .split_once("\"code\":\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(code, _)| code);
        let outcome = match code {
            Some(code) => format!("{status} {code}"),
            None => status,
        };
        recorder.record(ids.endpoint(), intended.elapsed(), &outcome);
    }
    drop(writing.await);
    Ok(())
}

/// Open loop: starts `send(i, intended)` at a fixed `rate` for `duration`, each in a task of its
/// own (latency counts from the intended time, so a slow answer never delays the next send), and
/// waits for them all. Stops early when `send` has nothing more to send.
async fn paced<F, Fut>(rate: f64, duration: Duration, mut send: F)
where
    F: FnMut(u32, Instant) -> Option<Fut>,
    Fut: std::future::Future + Send + 'static,
    Fut::Output: Send + 'static,
{
    let gap = Duration::from_secs_f64(1.0 / rate);
    let started = Instant::now();
    let mut sends = Vec::new();
    let mut i = 0u32;
    loop {
        let intended = started + gap * i;
        if intended.duration_since(started) >= duration {
            break;
        }
        tokio::time::sleep_until(intended.into()).await;
        let Some(request) = send(i, intended) else {
            break;
        };
        sends.push(tokio::spawn(request));
        i += 1;
    }
    for sent in sends {
        let _ = sent.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes() -> Vec<String> {
        ["VIP", "FrontRow", "GA"].map(String::from).to_vec()
    }

    #[test]
    fn a_fixed_order_books_the_same_tiers_every_time() {
        let orders = Orders::parse(Some("VIP=1,FrontRow=1,GA=2"), &codes()).unwrap();
        let event = Uuid::new_v4();
        for _ in 0..3 {
            assert_eq!(
                orders.next(event)["tiers"],
                json!({"VIP": 1, "FrontRow": 1, "GA": 2})
            );
        }
    }

    #[test]
    fn an_order_naming_a_tier_the_event_lacks_or_no_quantity_is_refused() {
        assert!(Orders::parse(Some("Balcony=1"), &codes()).is_err());
        assert!(Orders::parse(Some("GA=two"), &codes()).is_err());
        assert!(Orders::parse(Some("GA"), &codes()).is_err());
        assert!(matches!(
            Orders::parse(None, &codes()).unwrap(),
            Orders::Random(_)
        ));
    }
}
