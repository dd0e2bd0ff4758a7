//! A sale driver for fault and scale tests: buyers that join, poll until admitted and book, over
//! and over, spreading their requests over every gateway and booking instance the way a load
//! balancer would (an instance that refuses the connection is skipped), recording every answer,
//! and every booking outcome in a [`Ledger`] for the ledger check.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use uuid::Uuid;

use crate::ledger::{Ledger, Outcome};

/// No request may take longer than this, whatever is down.
pub const ANSWER_BOUND: Duration = Duration::from_secs(12);

#[derive(Debug, Clone)]
pub struct Answer {
    pub what: &'static str,
    /// 0: connection refused or reset; 999: no answer within [`ANSWER_BOUND`].
    pub status: u16,
    pub code: Option<String>,
    pub took: Duration,
    pub at: Instant,
}

pub struct Sale {
    http: reqwest::Client,
    gateways: Vec<String>,
    bookings: Vec<String>,
    events: Vec<Uuid>,
    answers: Mutex<Vec<Answer>>,
    stop: AtomicBool,
    turn: AtomicUsize,
    ledger: Ledger,
}

impl Sale {
    pub fn new(gateways: Vec<String>, bookings: Vec<String>, events: Vec<Uuid>) -> Arc<Self> {
        Arc::new(Self {
            http: reqwest::Client::builder()
                .timeout(ANSWER_BOUND)
                .build()
                .expect("http client"),
            gateways,
            bookings,
            events,
            answers: Mutex::default(),
            stop: AtomicBool::new(false),
            turn: AtomicUsize::new(0),
            ledger: Ledger::new(
                crate::processes::SWEEP_INTERVAL,
                crate::processes::STATEMENT_TIMEOUT,
            ),
        })
    }

    /// Every booking outcome the buyers saw.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Starts `buyers` buyers; `stop` ends them.
    pub fn start(self: &Arc<Self>, buyers: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..buyers)
            .map(|n| tokio::spawn(self.clone().buyer(n)))
            .collect()
    }

    pub async fn stop(&self, buyers: Vec<tokio::task::JoinHandle<()>>) {
        self.stop.store(true, Ordering::Relaxed);
        for buyer in buyers {
            buyer.await.expect("a buyer panicked");
        }
    }

    pub fn answers(&self) -> Vec<Answer> {
        self.answers.lock().expect("answers lock").clone()
    }

    /// Answers counted by kind, status and code, for failure messages.
    pub fn tally(&self) -> std::collections::BTreeMap<String, usize> {
        let mut tally = std::collections::BTreeMap::new();
        for a in self.answers() {
            *tally
                .entry(format!(
                    "{} {} {}",
                    a.what,
                    a.status,
                    a.code.unwrap_or_default()
                ))
                .or_insert(0) += 1;
        }
        tally
    }

    /// Successful bookings after `since`.
    pub fn booked_since(&self, since: Instant) -> usize {
        self.answers()
            .iter()
            .filter(|a| a.what == "book" && a.status == 201 && a.at > since)
            .count()
    }

    /// Waits until a booking succeeds after `since`; false after `limit`.
    pub async fn resumes_after(&self, since: Instant, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.booked_since(since) > 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Sends to one instance after another (starting with the next in turn) until one takes
    /// the connection. A booking (`booking`: its event and token) is recorded in the ledger.
    async fn call(
        &self,
        what: &'static str,
        bases: &[String],
        booking: Option<(Uuid, &str)>,
        build: impl Fn(&str) -> reqwest::RequestBuilder,
    ) -> (u16, Value) {
        let first = self.turn.fetch_add(1, Ordering::Relaxed);
        let mut last = (0, Value::Null);
        for i in 0..bases.len() {
            let base = &bases[(first + i) % bases.len()];
            let started = Instant::now();
            let (status, body) = match build(base).send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    (
                        status,
                        response.json::<Value>().await.unwrap_or(Value::Null),
                    )
                }
                Err(e) if e.is_timeout() => (999, Value::Null),
                Err(_) => (0, Value::Null),
            };
            self.answers.lock().expect("answers lock").push(Answer {
                what,
                status,
                code: body["error"]["code"].as_str().map(str::to_owned),
                took: started.elapsed(),
                at: Instant::now(),
            });
            if let Some((event, token)) = booking {
                self.ledger
                    .record_token(event, token, Outcome::from_status(status, body.clone()));
            }
            if status != 0 {
                return (status, body);
            }
            last = (status, body);
        }
        last
    }

    async fn buyer(self: Arc<Self>, n: usize) {
        let mut round = 0;
        while !self.stop.load(Ordering::Relaxed) {
            round += 1;
            let event = self.events[(n + round) % self.events.len()];
            let visitor = format!("buyer-{n}-{round}");
            let (status, mut body) = self
                .call("join", &self.gateways, None, |base| {
                    self.http
                        .post(format!("{base}/api/events/{event}/queue"))
                        .json(&json!({"visitor_id": visitor}))
                })
                .await;
            if status != 202 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            let queue_id = body["queue_id"].as_str().unwrap_or_default().to_string();
            let deadline = Instant::now() + Duration::from_secs(15);
            while body["state"] != "admitted"
                && Instant::now() < deadline
                && !self.stop.load(Ordering::Relaxed)
            {
                let wait = body["poll_after_ms"].as_u64().unwrap_or(300).min(300);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let (status, polled) = self
                    .call("poll", &self.gateways, None, |base| {
                        self.http.get(format!("{base}/api/queue/{queue_id}"))
                    })
                    .await;
                match status {
                    200 => body = polled,
                    404 => break, // the place was lost with Redis's data: join again
                    _ => {}
                }
            }
            let Some(token) = body["token"].as_str().map(str::to_owned) else {
                continue;
            };
            let tiers = if round % 2 == 0 {
                json!({"VIP": 1, "GA": 1})
            } else {
                json!({"GA": 2})
            };
            let order =
                json!({"event_id": event, "tiers": tiers, "buyer_email": "buyer@example.com"});
            for _ in 0..3 {
                let (status, _) = self
                    .call("book", &self.bookings, Some((event, &token)), |base| {
                        self.http
                            .post(format!("{base}/api/bookings"))
                            .bearer_auth(&token)
                            .json(&order)
                    })
                    .await;
                if status != 503 && status != 0 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}

/// Every answer was clean and in time: a success, the contract's JSON error (409, 503, 429, a 404
/// for a place lost with Redis's data, an expired token), or, only from an instance that was down
/// (`refusals_from` onwards), a connection refused at once.
pub fn assert_clean(name: &str, answers: &[Answer], refusals_from: Option<Instant>) {
    for answer in answers {
        assert!(
            answer.took <= ANSWER_BOUND && answer.status != 999,
            "{name}: a request hung: {answer:?}"
        );
        let clean = matches!(answer.status, 200 | 201 | 202 | 409 | 429 | 503)
            || (answer.status == 404
                && answer.what == "poll"
                && answer.code.as_deref() == Some("queue_entry_not_found"))
            || (answer.status == 401 && answer.code.as_deref() == Some("token_expired"));
        let refused = answer.status == 0
            && refusals_from.is_some_and(|from| answer.at >= from)
            && answer.took < Duration::from_secs(2);
        assert!(clean || refused, "{name}: not a clean answer: {answer:?}");
        if matches!(answer.status, 409 | 503 | 429) {
            assert!(
                answer.code.is_some(),
                "{name}: an error without the JSON envelope: {answer:?}"
            );
        }
    }
}
