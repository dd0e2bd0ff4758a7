//! `GET /api/queue/{queue_id}/events`: the waiting room pushed to the page (Server-Sent Events).
//!
//! Each message is the `QueueStatus` a poll would answer (event `status`), sent when it changed:
//! the stream checks its entry at the `poll_after_ms` cadence (each check also keeps the entry
//! alive, as a poll does) and at once when a notice concerns it (admitted, sold out; see
//! `crate::notices`). The `id` of each message is the place receipt in force, so the browser's
//! automatic reconnect presents it as `Last-Event-ID` and the place survives the reconnect.
//! An entry that is gone gets `event: problem` (the poll's 404 envelope) and the stream ends; so
//! it does after `expired` and `sold_out`. Heartbeat comments every 15 s keep proxies from
//! closing an idle stream; a gateway shutting down sends a jittered `retry:` and ends every
//! stream, so the page reconnects elsewhere and graceful shutdown completes.
//!
//! The stream holds no task of its own: its state lives in the response body, so a client that
//! goes away drops it, and with it its place in the registry. What a check does is the poll's
//! work (one atomic script, then signing a token once), so cutting it short loses nothing.

use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use ticketing::failure::{Failure, Path};
use ticketing::queue::{QueueId, Receipt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::line::{entry_of, state_label, status_of, QueueState, QueueStatus};
use crate::notices::{shut_down, Refused, StreamSlot};
use crate::presented::presented_receipt;
use crate::state::AppState;
use crate::takeover::HandOver;
use ticketing::event;

/// Checks of a stream never come closer than this (a notice is checked at once).
const MIN_CHECK_MS: u64 = 1_000;
/// Nor further apart: the entry must stay alive (two liveness windows) and its stock current.
const MAX_CHECK_MS: u64 = 20_000;
/// A check that failed (Redis or Postgres unavailable) is tried again after this, plus up to as
/// much again at random: the streams whose checks failed together do not retry together.
const RETRY_CHECK: Duration = Duration::from_secs(2);
/// Checks a second that a re-check of every stream (after a resubscribe: a Redis reconnect or
/// failover) is spread to, within [`MIN_RECHECK_SPREAD`]..[`MAX_RECHECK_SPREAD`].
const RECHECKS_PER_SECOND: u64 = 5_000;
const MIN_RECHECK_SPREAD: Duration = Duration::from_secs(1);
const MAX_RECHECK_SPREAD: Duration = Duration::from_secs(10);
/// How often a heartbeat comment is sent on an otherwise quiet stream.
const HEARTBEAT: Duration = Duration::from_secs(15);

#[utoipa::path(get, path = "/api/queue/{queue_id}/events",
    params(("queue_id" = Uuid, Path),
        ("receipt" = Option<String>, Query, description = "The latest place receipt"),
        ("last-event-id" = Option<String>, Header, description = "Set by the browser on a reconnect: the last message's id, the receipt in force")),
    responses(
        (status = 200, content_type = "text/event-stream",
            description = "Events `status` (data: QueueStatus, id: the place receipt) on change and at once on admission or sell-out; `problem` (data: the error envelope) when the entry is gone; heartbeat comments. Over HTTP/1.1 the connection ends with the stream (`connection: close`)"),
        (status = 400, body = ticketing::envelope::ErrorEnvelope,
            description = "The client's address cannot be told"),
        (status = 404, body = ticketing::envelope::ErrorEnvelope),
        (status = 429, body = ticketing::envelope::ErrorEnvelope,
            description = "`rate_limited`, or `too_many_streams` for this entry or address: poll instead",
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, body = ticketing::envelope::ErrorEnvelope,
            description = "Redis or Postgres cannot answer now, or the gateway holds its most streams: poll instead")))]
pub async fn events(
    State(state): State<AppState>,
    client: ClientAddr,
    Path(queue_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (queue_id, event) = entry_of(&state, &queue_id).await?;
    // A reconnect names the receipt of the last message it got, newer than the one in its URL.
    let presented = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .filter(|text| !text.is_empty())
        .or_else(|| presented_receipt(&headers, query.as_deref()));
    let receipt = presented.and_then(|text| {
        let verified = state.config.receipt_keys.verify(text)?;
        Some((text.to_string(), verified))
    });
    let slot = state
        .notices
        .open(event.id, queue_id, client.limit_key())
        .map_err(|refused| match refused {
            Refused::TooMany => ApiError::TooManyStreams,
            Refused::Full => {
                Failure::Unavailable("this gateway holds all the streams it can; poll instead")
                    .into()
            }
        })?;
    let mut watch = Watch {
        shutdown: state.notices.shutdown_signal(),
        state,
        event,
        queue_id,
        slot,
        receipt,
        last: None,
        next_check: Instant::now(),
        recheck_asked: None,
        ended: false,
    };
    // The first check answers before the stream starts: an unknown entry is a plain 404.
    let status = watch.check(None).await?;
    let first = watch.message(status);
    metrics::counter!("queue_streams_opened_total").increment(1);
    let stream = futures::stream::unfold((watch, first), |(mut watch, pending)| async move {
        let message = match pending {
            Some(message) => message,
            None => watch.next_message().await?,
        };
        Some((Ok::<_, Infallible>(message), (watch, None)))
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(HEARTBEAT).text("hb"))
        .into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies such as nginx would otherwise buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    // Over HTTP/1.1 the stream is written by a task of its own, without hyper's buffers.
    response.extensions_mut().insert(HandOver);
    Ok(response)
}

/// When a stream re-checks after a resubscribe: at random within a window long enough for all
/// `open_streams` of the gateway to check at [`RECHECKS_PER_SECOND`].
fn recheck_delay(open_streams: usize, rng: &mut impl Rng) -> Duration {
    let window = Duration::from_millis(open_streams as u64 * 1_000 / RECHECKS_PER_SECOND)
        .clamp(MIN_RECHECK_SPREAD, MAX_RECHECK_SPREAD);
    rng.gen_range(Duration::ZERO..window)
}

/// One open stream.
struct Watch {
    state: AppState,
    event: Arc<event::Event>,
    queue_id: QueueId,
    slot: StreamSlot,
    /// The receipt in force (its text, for the message ids) and what it says.
    receipt: Option<(String, Receipt)>,
    /// A digest of the last status sent, less what changes without news (the receipt, the
    /// jittered cadence): a check that finds nothing new sends nothing.
    last: Option<u64>,
    next_check: Instant,
    /// When a (re)subscription asked for the re-check still to come: how long after it the
    /// check starts is measured (`queue_stream_recheck_delay_seconds`, to see the spread).
    recheck_asked: Option<Instant>,
    shutdown: watch::Receiver<bool>,
    ended: bool,
}

impl Watch {
    /// Waits for the next message worth sending; `None` ends the stream.
    async fn next_message(&mut self) -> Option<Event> {
        loop {
            if self.ended {
                return None;
            }
            let notice_ms = tokio::select! {
                biased;
                _ = shut_down(&mut self.shutdown) => {
                    self.ended = true;
                    // Spread the reconnects of every page this gateway held over 1-5 s.
                    let retry = rand::thread_rng().gen_range(1_000..5_000);
                    metrics::counter!("queue_streams_closed_total", "why" => "shutdown").increment(1);
                    return Some(Event::default().retry(Duration::from_millis(retry)).comment("closing"));
                }
                notice = self.slot.signal.woken() => match notice {
                    Some(at_ms) => {
                        self.recheck_asked = None;
                        Some(at_ms)
                    }
                    None => {
                        // A re-check, told to every stream of the gateway at once: this one's
                        // falls somewhere in the window. One already drawn stands: a failover
                        // confirms subscriptions several times, and taking the earliest of many
                        // draws would crowd the re-checks back toward the moment they were asked
                        // (the check reads the state when it runs, so it answers them all).
                        if self.recheck_asked.is_none() {
                            let delay = recheck_delay(self.state.notices.open_streams(), &mut rand::thread_rng());
                            self.next_check = self.next_check.min(Instant::now() + delay);
                            self.recheck_asked = Some(Instant::now());
                        }
                        continue;
                    }
                },
                _ = tokio::time::sleep_until(self.next_check) => {
                    if let Some(asked) = self.recheck_asked.take() {
                        metrics::histogram!("queue_stream_recheck_delay_seconds")
                            .record(asked.elapsed().as_secs_f64());
                    }
                    None
                }
            };
            match self.check(notice_ms).await {
                Ok(status) => {
                    if let Some(message) = self.message(status) {
                        return Some(message);
                    }
                }
                Err(ApiError::QueueEntryNotFound) => {
                    self.ended = true;
                    let body = ApiError::QueueEntryNotFound.body().json();
                    return Some(Event::default().event("problem").data(body.to_string()));
                }
                Err(error) => {
                    tracing::debug!(%error, "stream check failed; trying again");
                    metrics::counter!("queue_stream_checks_total", "state" => "failed")
                        .increment(1);
                    let jitter = rand::thread_rng().gen_range(Duration::ZERO..RETRY_CHECK);
                    self.next_check = Instant::now() + RETRY_CHECK + jitter;
                }
            }
        }
    }

    /// Reads the entry as a poll does (the check is boxed: a stream at rest holds only its
    /// state, not the space of a check in flight).
    async fn check(&mut self, notice_ms: Option<i64>) -> Result<QueueStatus, ApiError> {
        let receipt = self.receipt.as_ref().map(|(_, r)| r);
        let mut status =
            Box::pin(status_of(&self.state, &self.event, self.queue_id, receipt)).await?;
        let after = status.poll_after_ms.clamp(MIN_CHECK_MS, MAX_CHECK_MS);
        self.next_check = Instant::now() + Duration::from_millis(after);
        status.notice_ms = notice_ms;
        metrics::counter!("queue_stream_checks_total", "state" => state_label(status.state))
            .increment(1);
        Ok(status)
    }

    /// The message for `status`, or `None` when it says nothing new.
    fn message(&mut self, mut status: QueueStatus) -> Option<Event> {
        if let Some(text) = &status.receipt {
            if let Some(verified) = self.state.config.receipt_keys.verify(text) {
                self.receipt = Some((text.clone(), verified));
            }
        }
        let digest = {
            let (receipt, cadence, notice) = (
                status.receipt.take(),
                std::mem::take(&mut status.poll_after_ms),
                status.notice_ms.take(),
            );
            let bytes = serde_json::to_vec(&status).unwrap_or_default();
            (status.receipt, status.poll_after_ms, status.notice_ms) = (receipt, cadence, notice);
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut hasher);
            hasher.finish()
        };
        if matches!(status.state, QueueState::Expired | QueueState::SoldOut) {
            self.ended = true;
        } else if self.last == Some(digest) {
            return None;
        }
        self.last = Some(digest);
        let id = self.receipt.as_ref().map_or("", |(text, _)| text.as_str());
        let data = serde_json::to_string(&status).ok()?;
        Some(Event::default().event("status").id(id).data(data))
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// The share of `delays` in each tenth of `window`.
    fn spread(delays: &[Duration], window: Duration) -> Vec<f64> {
        let mut tenths = vec![0usize; 10];
        for delay in delays {
            assert!(*delay < window, "{delay:?} within {window:?}");
            tenths[(delay.as_secs_f64() / window.as_secs_f64() * 10.0) as usize] += 1;
        }
        tenths
            .into_iter()
            .map(|n| n as f64 / delays.len() as f64)
            .collect()
    }

    #[test]
    fn rechecks_spread_evenly_over_a_window_that_grows_with_the_streams() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for (streams, window) in [
            (100, MIN_RECHECK_SPREAD),
            (20_000, Duration::from_secs(4)),
            (1_000_000, MAX_RECHECK_SPREAD),
        ] {
            let delays: Vec<Duration> = (0..20_000)
                .map(|_| recheck_delay(streams, &mut rng))
                .collect();
            for share in spread(&delays, window) {
                assert!(
                    (0.08..0.12).contains(&share),
                    "{streams} streams: each tenth of {window:?} holds a tenth of the rechecks"
                );
            }
        }
    }
}
