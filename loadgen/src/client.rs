//! The system's HTTP API as the load generator uses it; every call records its answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::stats::Recorder;

#[derive(Clone)]
pub struct Api {
    pub gateway: String,
    pub booking: String,
    pub admin_token: String,
    pub http: reqwest::Client,
    pub recorder: Recorder,
    /// Caps requests in flight (and so sockets) from this one process; time spent waiting here
    /// counts in the latency, measured from the intended send time.
    in_flight: Arc<Semaphore>,
    /// Every booking answered 201: its id and how many tickets the answer listed, for the
    /// ledger check after the run.
    pub answered: Arc<std::sync::Mutex<Vec<(Uuid, usize)>>>,
}

/// Most requests in flight at once from the load generator.
const MAX_IN_FLIGHT: usize = 2048;

/// An answer: status and body (Null when not JSON or on a transport error, status 0).
pub type Answer = (u16, Value);

impl Api {
    pub fn new(
        gateway: String,
        booking: String,
        admin_token: String,
        recorder: Recorder,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(4096)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            gateway,
            booking,
            admin_token,
            http,
            recorder,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            answered: Arc::default(),
        })
    }

    /// Sends and records `request` under `endpoint`; latency counts from `intended` (the time the
    /// request was meant to go out, so a stalled system cannot hide queueing delay).
    pub async fn send(
        &self,
        endpoint: &str,
        request: reqwest::RequestBuilder,
        intended: Instant,
    ) -> Answer {
        let _slot = self
            .in_flight
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                let body = response.json::<Value>().await.unwrap_or(Value::Null);
                (status, body)
            }
            Err(_) => (0, Value::Null),
        };
        let outcome = match (&answer.0, answer.1["error"]["code"].as_str()) {
            (0, _) => "transport_error".to_string(),
            (status, Some(code)) => format!("{status} {code}"),
            (status, None) => status.to_string(),
        };
        self.recorder.record(endpoint, intended.elapsed(), &outcome);
        answer
    }

    pub async fn join(&self, event: Uuid, visitor: &str) -> Answer {
        let request = self
            .http
            .post(format!("{}/api/events/{event}/queue", self.gateway))
            .json(&json!({ "visitor_id": visitor }));
        self.send("POST /api/events/{id}/queue", request, Instant::now())
            .await
    }

    /// A join with any body, recorded under `endpoint`.
    pub async fn join_with(&self, endpoint: &str, event: Uuid, body: Value) -> Answer {
        let request = self
            .http
            .post(format!("{}/api/events/{event}/queue", self.gateway))
            .json(&body);
        self.send(endpoint, request, Instant::now()).await
    }

    pub async fn poll(&self, queue_id: &str) -> Answer {
        self.poll_with(queue_id, None).await
    }

    /// A poll presenting the place receipt in force, as a page does (`X-Queue-Receipt`).
    pub async fn poll_with(&self, queue_id: &str, receipt: Option<&str>) -> Answer {
        let mut request = self
            .http
            .get(format!("{}/api/queue/{queue_id}", self.gateway));
        if let Some(receipt) = receipt {
            request = request.header("x-queue-receipt", receipt);
        }
        self.send("GET /api/queue/{id}", request, Instant::now())
            .await
    }

    pub async fn set_wish(&self, queue_id: &str, tiers: &Value) -> Answer {
        let request = self
            .http
            .put(format!("{}/api/queue/{queue_id}/wish", self.gateway))
            .json(&json!({ "tiers": tiers }));
        self.send("PUT /api/queue/{id}/wish", request, Instant::now())
            .await
    }

    pub async fn leave(&self, queue_id: &str) -> Answer {
        let request = self
            .http
            .delete(format!("{}/api/queue/{queue_id}", self.gateway));
        self.send("DELETE /api/queue/{id}", request, Instant::now())
            .await
    }

    pub async fn book(&self, token: &str, body: &Value, intended: Instant) -> Answer {
        let request = self
            .http
            .post(format!("{}/api/bookings", self.booking))
            .bearer_auth(token)
            .json(body);
        let answer = self.send("POST /api/bookings", request, intended).await;
        if answer.0 == 201 {
            let id = answer.1["booking_id"]
                .as_str()
                .and_then(|id| id.parse().ok());
            let tickets = answer.1["tickets"].as_array().map_or(0, Vec::len);
            if let Some(id) = id {
                self.answered
                    .lock()
                    .expect("answered lock")
                    .push((id, tickets));
            }
        }
        answer
    }

    /// Polls as a page does: after the cadence the last answer asked for (at most `max_ms`), the
    /// entry's next answer; the last one again when the poll failed, None when the entry is gone
    /// (404).
    pub async fn poll_when_asked(
        &self,
        queue_id: &str,
        last: &Value,
        max_ms: u64,
    ) -> Option<Value> {
        let wait = last["poll_after_ms"].as_u64().unwrap_or(2000).min(max_ms);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        // As a page: the receipt goes back on every poll, and stays in force until an answer
        // brings a new one (an answer whose receipt would say nothing new carries none).
        let receipt = last["receipt"].as_str();
        match self.poll_with(queue_id, receipt).await {
            (200, mut answer) => {
                if answer["receipt"].is_null() {
                    if let Some(receipt) = receipt {
                        answer["receipt"] = Value::from(receipt);
                    }
                }
                Some(answer)
            }
            (404, _) => None,
            _ => Some(last.clone()),
        }
    }

    /// Books as a page does: up to three tries, 300 ms apart while the service answers 503.
    pub async fn book_as_a_page(&self, token: &str, request: &Value) -> Booked {
        for _ in 0..3 {
            let (status, answer) = self.book(token, request, Instant::now()).await;
            match (status, answer["error"]["code"].as_str()) {
                (201, _) => return Booked::Yes,
                (409, Some("insufficient_inventory")) => return Booked::RefusedForStock,
                (503, _) => tokio::time::sleep(std::time::Duration::from_millis(300)).await,
                _ => break,
            }
        }
        Booked::Failed
    }

    /// Creates an event on sale already through the admin API (not recorded).
    pub async fn create_event(
        &self,
        name: &str,
        tiers: &[(String, i64)],
        waiting_room: Value,
    ) -> anyhow::Result<Uuid> {
        let on_sale_at = chrono::Utc::now() - chrono::Duration::seconds(5);
        self.create_event_opening(name, tiers, waiting_room, on_sale_at)
            .await
    }

    /// Creates an event that goes on sale at `on_sale_at` (not recorded).
    pub async fn create_event_opening(
        &self,
        name: &str,
        tiers: &[(String, i64)],
        waiting_room: Value,
        on_sale_at: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Uuid> {
        let body = json!({
            "name": name,
            "venue_name": "Load Test Arena",
            "starts_at": (chrono::Utc::now() + chrono::Duration::days(60)).to_rfc3339(),
            "on_sale_at": on_sale_at.to_rfc3339(),
            "waiting_room": waiting_room,
            "max_per_booking": 8,
            "tiers": tiers.iter().map(|(code, capacity)| json!({
                "code": code, "name": code, "price_cents": 5000, "capacity": capacity
            })).collect::<Vec<_>>(),
        });
        let response = self
            .http
            .post(format!("{}/api/admin/events", self.gateway))
            .bearer_auth(&self.admin_token)
            .json(&body)
            .send()
            .await
            .context("creating the load-test event")?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != 201 {
            bail!("creating the event answered {status}: {body}");
        }
        body["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .context("event id")
    }

    /// The admin view of a waiting room (not recorded).
    pub async fn waiting_room(&self, event: Uuid) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!(
                "{}/api/admin/events/{event}/waiting-room",
                self.gateway
            ))
            .bearer_auth(&self.admin_token)
            .send()
            .await?
            .json()
            .await?)
    }

    pub async fn availability(&self, event: Uuid) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(format!("{}/api/events/{event}/availability", self.booking))
            .send()
            .await?
            .json::<Value>()
            .await?["tiers"]
            .clone())
    }
}

/// How a page's booking ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booked {
    Yes,
    RefusedForStock,
    Failed,
}
