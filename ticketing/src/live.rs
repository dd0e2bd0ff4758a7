//! The sale as the operator watches it live: one sample per second per event, written by the
//! queue-worker into a capped Redis stream (`lua/live_sample.lua`) and read by any gateway; and
//! the booking services' recent p95, which each instance publishes for the sampler to fold in.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use redis::{RedisResult, Script, Value};
use serde::Serialize;
use uuid::Uuid;

use crate::keys::{EventKeys, BOOKING_LATENCY};
use crate::lua_reply::{array, malformed};
use crate::redis_client::RedisClient;
use crate::tier::TierCode;

static SAMPLE: LazyLock<Script> = crate::lua_script!("live_sample.lua");

/// Samples kept per event: the last 30 minutes at one a second.
pub const SAMPLES_KEPT: usize = 1_800;

/// A booking instance's figure counts while it is this fresh (it publishes every second).
const FRESH_MS: i64 = 5_000;

/// One second of a sale.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Sample {
    /// The stream id (`<ms>-0`): pass the last one seen as `since`.
    pub id: String,
    /// When it was taken (ms, Redis's clock).
    pub t_ms: i64,
    pub waiting: i64,
    /// Admitted buyers whose time to book runs.
    pub active: i64,
    pub admitted_total: i64,
    pub booked_total: i64,
    /// Admitted buyers refused for stock (each counted once: its first refusal gives back its
    /// admission slot).
    pub refused_total: i64,
    /// The stall running now: seconds with the room open, stock on sale, people waiting and
    /// nobody admitted (0 when someone was admitted since the last sample).
    pub stall_s: i64,
    /// Every stalled second of the sale so far.
    pub stalled_total_s: i64,
    /// Tickets issued in all tiers (sum of `sold`).
    pub tickets_sold: i64,
    /// The set rate.
    pub admission_per_minute: i64,
    pub paused: bool,
    pub enabled: bool,
    /// The slowest booking instance's p95 over its last 10 s (ms); none without bookings.
    pub booking_p95_ms: Option<f64>,
    pub tiers: Vec<TierSample>,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct TierSample {
    pub code: String,
    pub available: i64,
    pub held: i64,
    pub sold: i64,
    /// Bookings that took this tier (the conversion per tier counts them against admissions).
    pub buyers_total: i64,
}

/// Writes this second's sample of `event_id`, unless another worker did. `booking_p95_us`: what
/// [`booking_p95_us`] read.
pub async fn record_sample(
    redis: &RedisClient,
    event_id: Uuid,
    tiers: &[TierCode],
    booking_p95_us: Option<u64>,
) -> RedisResult<bool> {
    let keys = EventKeys::new(event_id);
    let mut invocation = SAMPLE.prepare_invoke();
    invocation
        .key(keys.live())
        .key(keys.queue_config())
        .key(keys.waiting())
        .key(keys.admitted())
        .key(keys.stats())
        .key(keys.inventory())
        .arg(booking_p95_us.map(|us| us.to_string()).unwrap_or_default())
        .arg(SAMPLES_KEPT);
    for code in tiers {
        invocation.arg(code);
    }
    let written: Value = invocation.invoke_async(&mut redis.clone()).await?;
    Ok(!matches!(written, Value::Nil | Value::Boolean(false)))
}

/// The samples after `since` (all kept when `None`), oldest first.
pub async fn samples(
    redis: &RedisClient,
    event_id: Uuid,
    since: Option<&str>,
) -> RedisResult<Vec<Sample>> {
    let start = since.map_or_else(|| "-".to_string(), |id| format!("({id}"));
    let reply: Value = redis::cmd("XRANGE")
        .arg(EventKeys::new(event_id).live())
        .arg(start)
        .arg("+")
        .arg("COUNT")
        .arg(SAMPLES_KEPT)
        .query_async(&mut redis.clone())
        .await?;
    array(&reply).iter().map(parse_entry).collect()
}

/// The last `count` samples, oldest first.
pub async fn latest(redis: &RedisClient, event_id: Uuid, count: usize) -> RedisResult<Vec<Sample>> {
    let reply: Value = redis::cmd("XREVRANGE")
        .arg(EventKeys::new(event_id).live())
        .arg("+")
        .arg("-")
        .arg("COUNT")
        .arg(count)
        .query_async(&mut redis.clone())
        .await?;
    let mut samples = array(&reply)
        .iter()
        .map(parse_entry)
        .collect::<RedisResult<Vec<_>>>()?;
    samples.reverse();
    Ok(samples)
}

fn parse_entry(entry: &Value) -> RedisResult<Sample> {
    let [id, fields] = array(entry) else {
        return Err(malformed("live sample"));
    };
    let text = |v: &Value| match v {
        Value::BulkString(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        Value::SimpleString(s) => s.clone(),
        _ => String::new(),
    };
    let fields = array(fields);
    let mut map = BTreeMap::new();
    for pair in fields.chunks_exact(2) {
        map.insert(text(&pair[0]), text(&pair[1]));
    }
    let number = |name: &str| {
        map.get(name)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(0)
    };
    let tiers: Vec<TierSample> = map
        .iter()
        .filter_map(|(field, value)| {
            let code = field.strip_prefix("tier:")?;
            let mut parts = value.split(',').map(|n| n.parse::<i64>().unwrap_or(0));
            Some(TierSample {
                code: code.to_string(),
                available: parts.next()?,
                held: parts.next()?,
                sold: parts.next()?,
                // Samples written before buyers were counted have three parts.
                buyers_total: parts.next().unwrap_or(0),
            })
        })
        .collect();
    Ok(Sample {
        id: text(id),
        t_ms: number("t"),
        waiting: number("waiting"),
        active: number("active"),
        admitted_total: number("admitted"),
        booked_total: number("booked"),
        refused_total: number("refused"),
        stall_s: number("stall_s"),
        stalled_total_s: number("stalled_s"),
        tickets_sold: tiers.iter().map(|t| t.sold).sum(),
        admission_per_minute: number("rate"),
        paused: number("paused") == 1,
        enabled: number("enabled") == 1,
        booking_p95_ms: map
            .get("p95_us")
            .and_then(|v| v.parse::<f64>().ok())
            .map(|us| us / 1000.0),
        tiers,
    })
}

/// The booking fleet's health over the last [`LatencyWindow::SPAN`], as its instances published
/// it: what adaptive admission holds under its targets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BookingHealth {
    /// The slowest fresh p95 (µs): a conservative figure for the whole fleet without merging
    /// histograms across processes.
    pub p95_us: Option<u64>,
    /// The same over the last [`LatencyWindow::RECENT`] only (None from an instance of a release
    /// before it, or with nothing booked in those seconds).
    pub recent_p95_us: Option<u64>,
    /// Booking answers, and how many were 503.
    pub answers: u64,
    pub unavailable: u64,
    /// The busiest instance's writers over the last [`LatencyWindow::RECENT`]: the share of
    /// their time spent writing (permille). It leads the p95: it rises as soon as admissions pass
    /// what the writers take, while the p95 waits for the queue that builds behind them.
    pub writers_busy_permille: Option<u32>,
}

/// The slowest fresh p95 the booking instances published (µs).
pub async fn booking_p95_us(redis: &RedisClient, now_ms: i64) -> RedisResult<Option<u64>> {
    Ok(booking_health(redis, now_ms).await?.p95_us)
}

/// What the booking instances published in the last seconds, summed; a stopped instance's
/// figures are dropped after a minute.
pub async fn booking_health(redis: &RedisClient, now_ms: i64) -> RedisResult<BookingHealth> {
    let published: BTreeMap<String, String> = redis::cmd("HGETALL")
        .arg(BOOKING_LATENCY)
        .query_async(&mut redis.clone())
        .await?;
    let mut health = BookingHealth::default();
    let mut stale = Vec::new();
    for (instance, value) in published {
        let mut parts = value.split('|');
        let p95: Option<u64> = parts.next().and_then(|v| v.parse().ok());
        let at: Option<i64> = parts.next().and_then(|v| v.parse().ok());
        let answers: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let unavailable: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let recent: Option<u64> = parts.next().and_then(|v| v.parse().ok());
        let busy: Option<u32> = parts.next().and_then(|v| v.parse().ok());
        match at {
            Some(at) if now_ms - at <= FRESH_MS => {
                health.p95_us = health.p95_us.max(p95);
                health.recent_p95_us = health.recent_p95_us.max(recent);
                health.writers_busy_permille = health.writers_busy_permille.max(busy);
                health.answers += answers;
                health.unavailable += unavailable;
            }
            // A stopped instance's last word: gone after a minute.
            Some(at) if now_ms - at <= 60_000 => {}
            _ => stale.push(instance),
        }
    }
    if !stale.is_empty() {
        let _: () = redis::cmd("HDEL")
            .arg(BOOKING_LATENCY)
            .arg(stale)
            .query_async(&mut redis.clone())
            .await?;
    }
    Ok(health)
}

/// Booking latencies of the last [`LatencyWindow::SPAN`] in one process, kept as a histogram per
/// second (log-spaced buckets, ~10 % wide), so recording is a lock and an increment and the p95
/// never needs the samples themselves.
pub struct LatencyWindow {
    started: Instant,
    seconds: Mutex<Vec<(u64, [u32; BUCKETS])>>,
    /// Per second: booking answers, and how many of them were 503.
    answers: Mutex<Vec<(u64, u32, u32)>>,
    /// Per second: the writers' time spent writing (µs), counted in the second a write ends.
    writing: Mutex<Vec<(u64, u64)>>,
    /// Writes still running: an id and when each began. They count as busy so far, or writers
    /// stuck on a stalled Postgres (no write ending) would read as idle.
    in_flight: Mutex<Vec<(u64, Instant)>>,
    next_write: std::sync::atomic::AtomicU64,
    /// How many writers share that time (0: none measured, no figure published).
    writers: u32,
}

const BUCKETS: usize = 160;
/// Bucket `b` holds latencies up to `FIRST_US * GROWTH^b` µs: 50 µs to ~200 s.
const FIRST_US: f64 = 50.0;
const GROWTH: f64 = 1.1;

impl Default for LatencyWindow {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            seconds: Mutex::new(Vec::new()),
            answers: Mutex::new(Vec::new()),
            writing: Mutex::new(Vec::new()),
            in_flight: Mutex::new(Vec::new()),
            next_write: std::sync::atomic::AtomicU64::new(0),
            writers: 0,
        }
    }
}

impl LatencyWindow {
    pub const SPAN: Duration = Duration::from_secs(10);
    /// The last seconds adaptive admission reads (this one and the two before).
    pub const RECENT: Duration = Duration::from_secs(3);
    /// The fewest bookings the recent p95 is published over.
    pub const RECENT_AT_LEAST: u64 = 20;

    /// A window that also measures how busy `writers` writers are ([`Self::start_writing`]).
    pub fn for_writers(writers: usize) -> Self {
        Self {
            writers: u32::try_from(writers).unwrap_or(u32::MAX),
            ..Self::default()
        }
    }

    /// One writer begins a write: it counts as busy until the guard is dropped, when its whole
    /// time is recorded (a write cut short by a cancelled task counts too).
    pub fn start_writing(&self) -> Writing<'_> {
        let id = self
            .next_write
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let began = Instant::now();
        self.in_flight
            .lock()
            .expect("in-flight lock")
            .push((id, began));
        Writing {
            window: self,
            id,
            began,
        }
    }

    /// One writer spent `took` on a write that ended now.
    fn record_writing(&self, took: Duration) {
        let second = self.started.elapsed().as_secs();
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut writing = self.writing.lock().expect("writing lock");
        writing.retain(|(s, _)| s + Self::RECENT.as_secs() > second);
        match writing.iter_mut().find(|(s, _)| *s == second) {
            Some((_, busy)) => *busy = busy.saturating_add(us),
            None => writing.push((second, us)),
        }
    }

    /// The share of the writers' time spent writing over the last [`Self::RECENT`] (permille,
    /// at most 1000), or None when no writers are measured. The span is this second so far and
    /// the two before: a write is counted when it ends, so a long one may fill more than its
    /// share of the span, hence the cap.
    pub fn writers_busy_permille(&self) -> Option<u32> {
        if self.writers == 0 {
            return None;
        }
        let elapsed = self.started.elapsed();
        let second = elapsed.as_secs();
        let recent = Self::RECENT.as_secs();
        let span_us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .min((recent - 1) * 1_000_000 + u64::from(elapsed.subsec_micros()))
            .max(1);
        let busy: u64 = self
            .writing
            .lock()
            .expect("writing lock")
            .iter()
            .filter(|(s, _)| s + recent > second)
            .map(|(_, us)| us)
            .sum();
        // Writes still running, each up to the span.
        let running: u64 = self
            .in_flight
            .lock()
            .expect("in-flight lock")
            .iter()
            .map(|(_, began)| {
                u64::try_from(began.elapsed().as_micros())
                    .unwrap_or(u64::MAX)
                    .min(span_us)
            })
            .sum();
        let busy = busy.saturating_add(running);
        let permille = busy.saturating_mul(1000) / (span_us * u64::from(self.writers));
        Some(permille.min(1000) as u32)
    }

    pub fn record(&self, took: Duration) {
        let second = self.started.elapsed().as_secs();
        let us = took.as_micros() as f64;
        let bucket = if us <= FIRST_US {
            0
        } else {
            ((us / FIRST_US).ln() / GROWTH.ln()).ceil() as usize
        }
        .min(BUCKETS - 1);
        let mut seconds = self.seconds.lock().expect("latency lock");
        let span = Self::SPAN.as_secs();
        seconds.retain(|(s, _)| s + span > second);
        match seconds.iter_mut().find(|(s, _)| *s == second) {
            Some((_, counts)) => counts[bucket] += 1,
            None => {
                let mut counts = [0; BUCKETS];
                counts[bucket] = 1;
                seconds.push((second, counts));
            }
        }
    }

    /// Counts one booking answer, and whether it was a 503 (shed, or a dependency unavailable).
    pub fn record_answer(&self, unavailable: bool) {
        let second = self.started.elapsed().as_secs();
        let span = Self::SPAN.as_secs();
        let mut answers = self.answers.lock().expect("answers lock");
        answers.retain(|(s, _, _)| s + span > second);
        match answers.iter_mut().find(|(s, _, _)| *s == second) {
            Some((_, all, refused)) => {
                *all += 1;
                *refused += u32::from(unavailable);
            }
            None => answers.push((second, 1, u32::from(unavailable))),
        }
    }

    /// Booking answers over the span, and how many were 503.
    pub fn answers(&self) -> (u64, u64) {
        let second = self.started.elapsed().as_secs();
        let span = Self::SPAN.as_secs();
        let answers = self.answers.lock().expect("answers lock");
        answers
            .iter()
            .filter(|(s, _, _)| s + span > second)
            .fold((0, 0), |(all, refused), (_, a, r)| {
                (all + u64::from(*a), refused + u64::from(*r))
            })
    }

    /// The p95 (µs, the upper edge of its bucket) and the count over the span, if any.
    pub fn p95_us(&self) -> Option<(u64, u64)> {
        self.p95_over(Self::SPAN)
    }

    /// The p95 and the count over the last [`LatencyWindow::RECENT`]: what adaptive admission
    /// judges by. Over the whole span, slow bookings from before a cut kept the p95 over the
    /// target for ten seconds after the cut had worked, and every second of them cut again.
    pub fn recent_p95_us(&self) -> Option<(u64, u64)> {
        self.p95_over(Self::RECENT)
    }

    /// The recent p95 as published: only over [`LatencyWindow::RECENT_AT_LEAST`] bookings, or
    /// one slow booking among a handful (a checkpoint, a pause) would be the p95 and halve the
    /// admission rate; with fewer, adaptive admission reads the ten seconds.
    pub fn recent_figure(&self) -> Option<u64> {
        self.recent_p95_us()
            .filter(|(_, count)| *count >= Self::RECENT_AT_LEAST)
            .map(|(p95, _)| p95)
    }

    fn p95_over(&self, span: Duration) -> Option<(u64, u64)> {
        let second = self.started.elapsed().as_secs();
        let span = span.as_secs();
        let seconds = self.seconds.lock().expect("latency lock");
        let mut merged = [0u64; BUCKETS];
        for (_, counts) in seconds.iter().filter(|(s, _)| s + span > second) {
            for (m, c) in merged.iter_mut().zip(counts) {
                *m += u64::from(*c);
            }
        }
        let total: u64 = merged.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = (total * 95).div_ceil(100);
        let mut seen = 0;
        for (bucket, count) in merged.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some((
                    (FIRST_US * GROWTH.powi(bucket as i32)).round() as u64,
                    total,
                ));
            }
        }
        None
    }

    /// Publishes this instance's p95 every second while the process runs.
    pub fn publish_in_background(window: &std::sync::Arc<Self>, redis: RedisClient) {
        let window = std::sync::Arc::clone(window);
        let instance = Uuid::new_v4().simple().to_string();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let p95 = window.p95_us().map(|(p95, _)| p95);
                let recent = window.recent_figure();
                let (answers, unavailable) = window.answers();
                if p95.is_none() && answers == 0 {
                    continue;
                }
                // "p95|at|answers|503s|recent p95|writers busy"; a figure empty when there is
                // none. Readers of a release before a part ignore it, and read its absence as
                // None.
                let figure = |n: Option<u64>| n.map(|p| p.to_string()).unwrap_or_default();
                let value = format!(
                    "{}|{}|{answers}|{unavailable}|{}|{}",
                    figure(p95),
                    chrono::Utc::now().timestamp_millis(),
                    figure(recent),
                    figure(window.writers_busy_permille().map(u64::from))
                );
                let published: RedisResult<()> = redis::cmd("HSET")
                    .arg(BOOKING_LATENCY)
                    .arg(&instance)
                    .arg(value)
                    .query_async(&mut redis.clone())
                    .await;
                if let Err(error) = published {
                    tracing::debug!(%error, "cannot publish the booking p95");
                }
            }
        });
    }
}

/// A write in progress ([`LatencyWindow::start_writing`]).
pub struct Writing<'a> {
    window: &'a LatencyWindow,
    id: u64,
    began: Instant,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.window
            .in_flight
            .lock()
            .expect("in-flight lock")
            .retain(|(id, _)| *id != self.id);
        self.window.record_writing(self.began.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_p95_is_the_bucket_holding_the_95th_percentile() {
        let window = LatencyWindow::default();
        assert_eq!(window.p95_us(), None);
        for _ in 0..95 {
            window.record(Duration::from_millis(2));
        }
        for _ in 0..5 {
            window.record(Duration::from_millis(300));
        }
        let (p95, count) = window.p95_us().expect("a figure");
        assert_eq!(count, 100);
        // 2 ms, within a bucket's width.
        assert!((2_000..=2_200).contains(&p95), "{p95}");
        for _ in 0..10 {
            window.record(Duration::from_millis(300));
        }
        let (p95, _) = window.p95_us().expect("a figure");
        assert!((300_000..=330_000).contains(&p95), "{p95}");
        // All of it within the last seconds too.
        assert_eq!(window.recent_p95_us(), window.p95_us());
        assert_eq!(
            window.recent_figure(),
            window.recent_p95_us().map(|(p95, _)| p95)
        );
    }

    #[test]
    fn the_writers_busy_share_is_their_writing_time_over_the_recent_span() {
        assert_eq!(LatencyWindow::default().writers_busy_permille(), None);
        let window = LatencyWindow::for_writers(4);
        assert_eq!(window.writers_busy_permille(), Some(0));
        // Two of four writers busy all along: half their time, while they write and after.
        let first = window.start_writing();
        let second = window.start_writing();
        std::thread::sleep(Duration::from_millis(100));
        let running = window.writers_busy_permille().expect("a figure");
        assert!((400..=500).contains(&running), "{running} while writing");
        let elapsed = window.started.elapsed();
        drop(first);
        drop(second);
        let half = window.writers_busy_permille().expect("a figure");
        // The span grew between the writes' end and the reading: at least this share.
        let least = 500 * elapsed.as_micros() / window.started.elapsed().as_micros();
        assert!(
            (least as u32..=500).contains(&half),
            "{half}, at least {least}"
        );
        // More writing than the span holds (a write longer than it): capped.
        window.record_writing(Duration::from_secs(60));
        assert_eq!(window.writers_busy_permille(), Some(1000));
    }

    #[test]
    fn a_handful_of_recent_bookings_publishes_no_recent_figure() {
        // Six bookings, one slow: the slow one is their p95, and is not published.
        let sparse = LatencyWindow::default();
        for _ in 0..5 {
            sparse.record(Duration::from_millis(2));
        }
        sparse.record(Duration::from_secs(2));
        let (p95, _) = sparse.recent_p95_us().expect("a figure");
        assert!(p95 >= 2_000_000, "{p95}");
        assert_eq!(sparse.recent_figure(), None, "six bookings judged");
        // Enough of them: published.
        for _ in 0..LatencyWindow::RECENT_AT_LEAST {
            sparse.record(Duration::from_millis(2));
        }
        let (p95, _) = sparse.recent_p95_us().expect("a figure");
        assert!(p95 < 10_000, "{p95}");
        assert_eq!(sparse.recent_figure(), Some(p95));
    }
}
