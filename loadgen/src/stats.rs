//! What a run measured: per endpoint, an HDR latency histogram, answers by status and error
//! code, and per-second series for the charts.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Mutex<Inner>>,
    started: Instant,
}

struct Inner {
    endpoints: BTreeMap<String, Endpoint>,
    samples: Vec<Sample>,
}

struct Endpoint {
    latency_us: Histogram<u64>,
    outcomes: BTreeMap<String, u64>,
    /// Per second since the start: (answers, latency histogram of that second).
    per_second: BTreeMap<u64, (u64, Histogram<u64>)>,
}

/// A gauge sampled during the run (queue length, admissions).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub at_s: f64,
    pub name: String,
    pub value: f64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

impl Recorder {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                endpoints: BTreeMap::new(),
                samples: Vec::new(),
            })),
            started: Instant::now(),
        }
    }

    /// One answer: `outcome` is the status and, for errors, the contract's code (`409 token_used`).
    pub fn record(&self, endpoint: &str, latency: Duration, outcome: &str) {
        let second = self.started.elapsed().as_secs();
        let micros = (latency.as_micros() as u64).clamp(1, 120_000_000);
        let mut inner = self.inner.lock().expect("recorder lock");
        let entry = inner
            .endpoints
            .entry(endpoint.to_string())
            .or_insert_with(|| Endpoint {
                latency_us: histogram(),
                outcomes: BTreeMap::new(),
                per_second: BTreeMap::new(),
            });
        entry.latency_us.saturating_record(micros);
        *entry.outcomes.entry(outcome.to_string()).or_insert(0) += 1;
        let (count, per_second) = entry
            .per_second
            .entry(second)
            .or_insert_with(|| (0, histogram()));
        *count += 1;
        per_second.saturating_record(micros);
    }

    pub fn sample(&self, name: &str, value: f64) {
        let at_s = self.started.elapsed().as_secs_f64();
        self.inner
            .lock()
            .expect("recorder lock")
            .samples
            .push(Sample {
                at_s,
                name: name.to_string(),
                value,
            });
    }

    pub fn total(&self) -> u64 {
        let inner = self.inner.lock().expect("recorder lock");
        inner.endpoints.values().map(|e| e.latency_us.len()).sum()
    }

    /// The summary over `window` (the measured part of the run).
    pub fn summary(&self, window: Duration) -> Vec<EndpointSummary> {
        let inner = self.inner.lock().expect("recorder lock");
        let seconds = window.as_secs_f64().max(0.001);
        inner
            .endpoints
            .iter()
            .map(|(name, e)| {
                let ms = |q: f64| e.latency_us.value_at_quantile(q) as f64 / 1000.0;
                EndpointSummary {
                    endpoint: name.clone(),
                    requests: e.latency_us.len(),
                    throughput_per_s: e.latency_us.len() as f64 / seconds,
                    p50_ms: ms(0.5),
                    p95_ms: ms(0.95),
                    p99_ms: ms(0.99),
                    p999_ms: ms(0.999),
                    max_ms: e.latency_us.max() as f64 / 1000.0,
                    outcomes: e.outcomes.clone(),
                    series: e
                        .per_second
                        .iter()
                        .map(|(second, (count, h))| SecondPoint {
                            second: *second,
                            requests: *count,
                            p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
                        })
                        .collect(),
                }
            })
            .collect()
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.inner.lock().expect("recorder lock").samples.clone()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecondPoint {
    pub second: u64,
    pub requests: u64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EndpointSummary {
    pub endpoint: String,
    pub requests: u64,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub outcomes: BTreeMap<String, u64>,
    pub series: Vec<SecondPoint>,
}

/// Shows the run's progress on stderr until the task is aborted: a bar (indicatif) on a
/// terminal; a plain line every 5 s where stderr is not one or `CI` is set, so logs stay
/// readable.
pub fn progress(
    recorder: Recorder,
    total: Duration,
    label: &'static str,
) -> tokio::task::JoinHandle<()> {
    use std::io::IsTerminal;
    let live = std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
    let begun = Instant::now();
    tokio::spawn(async move {
        let bar = live.then(|| {
            let bar = indicatif::ProgressBar::new(total.as_millis() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {percent:>3}% {msg}")
                    .expect("a valid template")
                    .progress_chars("#>-"),
            );
            bar.set_prefix(label);
            bar
        });
        let every = if live { 1 } else { 5 };
        let mut last = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(every)).await;
            let elapsed = begun.elapsed();
            let count = recorder.total();
            let rate = (count - last) / every;
            last = count;
            match &bar {
                Some(bar) => {
                    bar.set_position(elapsed.as_millis().min(total.as_millis()) as u64);
                    bar.set_message(format!("{count:>8} requests {rate:>7}/s"));
                }
                None => eprintln!(
                    "{label}: {:.0} s of {:.0} s, {count} requests, {rate}/s",
                    elapsed.as_secs_f64(),
                    total.as_secs_f64()
                ),
            }
        }
    })
}

/// The nearest-rank `share` percentile of `values` (None when there are none).
pub fn percentile(mut values: Vec<f64>, share: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() as f64 * share).ceil() as usize).clamp(1, values.len());
    Some(values[rank - 1])
}
