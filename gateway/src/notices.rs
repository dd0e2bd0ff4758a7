//! Notices to this gateway's open queue streams (`GET /api/queue/{id}/events`).
//!
//! The worker's admission step publishes the queue ids it admitted, and the booking service the
//! moment an event sells out, on the event's sharded Pub/Sub channel (`ev:{E}:notices`, in the
//! event's slot, so it works unchanged on Redis Cluster). Each gateway keeps one dedicated RESP3
//! subscriber connection (per shard on a cluster), subscribed to the events it has streams for,
//! and wakes exactly the streams a notice concerns; a woken stream reads its entry again, as a
//! poll would. Pub/Sub may drop messages (a reconnect, a slot moving, a node lost): every
//! subscription Redis confirms (ours, or one the cluster client makes again by itself after a
//! node is lost) wakes the streams of its event to check again, each at a random moment of a
//! window, so nothing relies on a notice arriving, only on it arriving fast.
//!
//! Message format: `a|<Redis ms>|<raw 16-byte queue ids…>` (admitted, lua/admit.lua) and
//! `s|<Redis ms>` (sold out, lua/confirm.lua and lua/release.lua).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{PushInfo, PushKind, Value};
use ticketing::config::StoreConfig;
use ticketing::keys::EventKeys;
use ticketing::queue::QueueId;
use ticketing::redis_client::Subscriber;
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

/// Caps on open streams. A crowd behind one carrier address is normal, so the per-address cap is
/// generous; the cap per queue id allows a second tab and a reconnect racing the old stream.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    pub per_queue_id: usize,
    pub per_address: usize,
    pub total: usize,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_queue_id: 3,
            per_address: 5_000,
            total: 100_000,
        }
    }
}

/// Why a stream could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too many streams for this queue id or this address: poll instead.
    TooMany,
    /// The gateway holds its most streams, or is shutting down: poll instead.
    Full,
}

/// What wakes one stream: a notice's Redis time (0 for "check again", no notice) and a permit.
#[derive(Default)]
pub struct Signal {
    notify: Notify,
    notice_ms: AtomicI64,
}

impl Signal {
    fn wake(&self, notice_ms: i64) {
        self.notice_ms.fetch_max(notice_ms, Ordering::Relaxed);
        // A stored permit: a notice arriving while the stream is busy is not lost.
        self.notify.notify_one();
    }

    /// Waits for the next wake-up; returns the latest notice's Redis time, if one caused it.
    pub async fn woken(&self) -> Option<i64> {
        self.notify.notified().await;
        let ms = self.notice_ms.swap(0, Ordering::Relaxed);
        (ms > 0).then_some(ms)
    }
}

#[derive(Default)]
struct Registry {
    events: HashMap<Uuid, HashMap<QueueId, Vec<Arc<Signal>>>>,
    per_address: HashMap<IpAddr, usize>,
    total: usize,
}

struct Inner {
    registry: Mutex<Registry>,
    limits: StreamLimits,
    /// Events whose subscription may need to change, and reconnect requests.
    commands: mpsc::UnboundedSender<Command>,
    shutdown: watch::Sender<bool>,
}

enum Command {
    /// Subscribe or unsubscribe the event's channel, whichever its streams now call for.
    Sync(Uuid),
    /// Redis told us a channel is no longer subscribed (its slot moved): subscribe again.
    Lost(Uuid),
    /// Connection number `n` dropped: reconnect, subscribe again, wake everyone. (Dropping an
    /// old connection on purpose reports its own disconnection; the number tells it apart.)
    Reconnect(u64),
}

/// The gateway's open streams and its subscriber.
#[derive(Clone)]
pub struct Notices(Arc<Inner>);

/// One open stream's place in the registry; dropping it (the client went away, the stream
/// ended) takes it out.
pub struct StreamSlot {
    notices: Notices,
    event_id: Uuid,
    queue_id: QueueId,
    address: IpAddr,
    pub signal: Arc<Signal>,
}

impl Notices {
    /// Starts the subscriber in the background on `store`'s Redis (single or cluster).
    pub fn start(store: StoreConfig, limits: StreamLimits) -> Self {
        let (commands, receiver) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let notices = Self(Arc::new(Inner {
            registry: Mutex::default(),
            limits,
            commands,
            shutdown,
        }));
        tokio::spawn(subscribe_loop(notices.clone(), store, receiver));
        notices
    }

    /// Registers a stream for `queue_id` from `address`, within the caps.
    pub fn open(
        &self,
        event_id: Uuid,
        queue_id: QueueId,
        address: IpAddr,
    ) -> Result<StreamSlot, Refused> {
        if *self.0.shutdown.borrow() {
            return Err(Refused::Full);
        }
        let signal = Arc::new(Signal::default());
        let first_of_event = {
            let mut registry = self.0.registry.lock().expect("registry lock");
            if registry.total >= self.0.limits.total {
                return Err(Refused::Full);
            }
            if registry.per_address.get(&address).copied().unwrap_or(0) >= self.0.limits.per_address
            {
                return Err(Refused::TooMany);
            }
            let event = registry.events.entry(event_id).or_default();
            let first_of_event = event.is_empty();
            let streams = event.entry(queue_id).or_default();
            if streams.len() >= self.0.limits.per_queue_id {
                return Err(Refused::TooMany);
            }
            streams.push(Arc::clone(&signal));
            *registry.per_address.entry(address).or_default() += 1;
            registry.total += 1;
            first_of_event
        };
        if first_of_event {
            let _ = self.0.commands.send(Command::Sync(event_id));
        }
        metrics::gauge!("queue_streams_open").increment(1.0);
        Ok(StreamSlot {
            notices: self.clone(),
            event_id,
            queue_id,
            address,
            signal,
        })
    }

    /// Open streams now.
    pub fn open_streams(&self) -> usize {
        self.0.registry.lock().expect("registry lock").total
    }

    /// Tells every stream to close (graceful shutdown): they send a jittered `retry:` and end.
    pub fn shut(&self) {
        self.0.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.0.shutdown.subscribe()
    }

    fn close(&self, slot: &StreamSlot) {
        let last_of_event = {
            let mut registry = self.0.registry.lock().expect("registry lock");
            let Registry {
                events,
                per_address,
                total,
            } = &mut *registry;
            *total -= 1;
            if let Some(count) = per_address.get_mut(&slot.address) {
                *count -= 1;
                if *count == 0 {
                    per_address.remove(&slot.address);
                }
            }
            let Some(event) = events.get_mut(&slot.event_id) else {
                return;
            };
            if let Some(streams) = event.get_mut(&slot.queue_id) {
                streams.retain(|s| !Arc::ptr_eq(s, &slot.signal));
                if streams.is_empty() {
                    event.remove(&slot.queue_id);
                }
            }
            let last = event.is_empty();
            if last {
                events.remove(&slot.event_id);
            }
            last
        };
        if last_of_event {
            let _ = self.0.commands.send(Command::Sync(slot.event_id));
        }
        metrics::gauge!("queue_streams_open").decrement(1.0);
    }

    /// Wakes the streams a published message concerns (runs on the connection's reader: no I/O).
    fn dispatch(&self, push: PushInfo, connection: u64) {
        match push.kind {
            PushKind::SMessage | PushKind::Message => {
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(message))) =
                    (push.data.first(), push.data.get(1))
                else {
                    return;
                };
                let Some(event_id) = event_of_channel(channel) else {
                    return;
                };
                let Some(notice) = Notice::parse(message) else {
                    tracing::warn!(%event_id, "unreadable notice");
                    return;
                };
                self.deliver(event_id, &notice);
            }
            PushKind::SSubscribe => {
                // Redis confirms a subscription: ours, or one the cluster client made again by
                // itself after losing a node (it says nothing else). Whatever was published
                // before it took effect is checked for.
                if let Some(event_id) = channel_in(&push) {
                    self.recheck(Some(event_id));
                }
            }
            PushKind::SUnsubscribe => {
                // Also the answer to our own SUNSUBSCRIBE: Sync checks whether it is wanted.
                if let Some(event_id) = channel_in(&push) {
                    let _ = self.0.commands.send(Command::Lost(event_id));
                }
            }
            PushKind::Disconnection => {
                let _ = self.0.commands.send(Command::Reconnect(connection));
            }
            _ => {}
        }
    }

    fn deliver(&self, event_id: Uuid, notice: &Notice<'_>) {
        let registry = self.0.registry.lock().expect("registry lock");
        let Some(event) = registry.events.get(&event_id) else {
            return;
        };
        match notice {
            Notice::Admitted { at_ms, queue_ids } => {
                for raw in queue_ids.chunks_exact(16) {
                    let queue_id = QueueId(Uuid::from_bytes(raw.try_into().expect("16 bytes")));
                    for signal in event.get(&queue_id).into_iter().flatten() {
                        signal.wake(*at_ms);
                    }
                }
            }
            Notice::SoldOut { at_ms } => {
                for signal in event.values().flatten() {
                    signal.wake(*at_ms);
                }
            }
        }
    }

    /// Wakes every stream of `event_id` (or of every event) to check its entry again.
    fn recheck(&self, event_id: Option<Uuid>) {
        let registry = self.0.registry.lock().expect("registry lock");
        for (id, event) in &registry.events {
            if event_id.is_none_or(|wanted| wanted == *id) {
                for signal in event.values().flatten() {
                    signal.wake(0);
                }
            }
        }
    }

    fn is_watched(&self, event_id: Uuid) -> bool {
        self.0
            .registry
            .lock()
            .expect("registry lock")
            .events
            .contains_key(&event_id)
    }

    fn watched(&self) -> Vec<Uuid> {
        let registry = self.0.registry.lock().expect("registry lock");
        registry.events.keys().copied().collect()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.notices.close(self);
    }
}

/// One published message.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice<'a> {
    Admitted { at_ms: i64, queue_ids: &'a [u8] },
    SoldOut { at_ms: i64 },
}

impl<'a> Notice<'a> {
    pub fn parse(message: &'a [u8]) -> Option<Self> {
        let mut parts = message.splitn(3, |b| *b == b'|');
        let kind = parts.next()?;
        let at_ms = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
        match kind {
            b"a" => {
                let queue_ids = parts.next()?;
                (queue_ids.len() % 16 == 0).then_some(Self::Admitted { at_ms, queue_ids })
            }
            b"s" => Some(Self::SoldOut { at_ms }),
            _ => None,
        }
    }
}

/// Resolves once `shutdown` says so (or its sender is gone).
pub async fn shut_down(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|shut| *shut).await;
}

/// The event of a channel named `ev:{<event id>}:notices`.
fn event_of_channel(channel: &[u8]) -> Option<Uuid> {
    let text = std::str::from_utf8(channel).ok()?;
    let inner = text.strip_prefix("ev:{")?.strip_suffix("}:notices")?;
    inner.parse().ok()
}

/// The event whose channel a subscribe or unsubscribe push names.
fn channel_in(push: &PushInfo) -> Option<Uuid> {
    match push.data.first()? {
        Value::BulkString(channel) => event_of_channel(channel),
        _ => None,
    }
}

fn channel_of(event_id: Uuid) -> String {
    EventKeys::new(event_id).notices()
}

/// The subscriber: (re)connects and keeps the channels of watched events subscribed (their
/// confirmations wake the streams, in `dispatch`).
async fn subscribe_loop(
    notices: Notices,
    store: StoreConfig,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut shutdown = notices.shutdown_signal();
    let mut backoff = Duration::from_millis(100);
    let mut number = 0;
    loop {
        number += 1;
        let push = {
            let notices = notices.clone();
            move |push: PushInfo| -> Result<(), std::convert::Infallible> {
                notices.dispatch(push, number);
                Ok(())
            }
        };
        let mut connection = tokio::select! {
            connected = Subscriber::connect(&store, push) => match connected {
                Ok(connection) => connection,
                Err(error) => {
                    tracing::warn!(%error, "notice subscriber cannot connect; streams check on their own cadence");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            },
            _ = shut_down(&mut shutdown) => return,
        };
        let mut subscribed = std::collections::HashSet::new();
        let mut healthy = true;
        for event_id in notices.watched() {
            if connection.ssubscribe(&channel_of(event_id)).await.is_err() {
                healthy = false;
                break;
            }
            subscribed.insert(event_id);
        }
        if !healthy {
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        // Each confirmation has the event's streams check for what was published meanwhile.
        metrics::counter!("queue_notice_subscriptions_total").increment(1);
        while healthy {
            let command = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => command,
                    None => return,
                },
                _ = shut_down(&mut shutdown) => return,
            };
            let outcome = match command {
                Command::Reconnect(dropped) => {
                    healthy = dropped != number;
                    Ok(())
                }
                Command::Sync(event_id) | Command::Lost(event_id) => {
                    let lost = matches!(command, Command::Lost(_));
                    let wanted = notices.is_watched(event_id);
                    if wanted && (lost || !subscribed.contains(&event_id)) {
                        let result = connection.ssubscribe(&channel_of(event_id)).await;
                        if result.is_ok() {
                            subscribed.insert(event_id);
                        }
                        result
                    } else if !wanted && subscribed.remove(&event_id) {
                        connection.sunsubscribe(&channel_of(event_id)).await
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(error) = outcome {
                tracing::warn!(%error, "notice subscription failed; reconnecting");
                healthy = false;
            }
        }
        metrics::counter!("queue_notice_reconnects_total").increment(1);
        tokio::time::sleep(backoff).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_and_refuse_what_is_not_one() {
        let mut message = b"a|1700000000123|".to_vec();
        message.extend_from_slice(&[7u8; 32]);
        assert_eq!(
            Notice::parse(&message),
            Some(Notice::Admitted {
                at_ms: 1_700_000_000_123,
                queue_ids: &[7u8; 32]
            })
        );
        assert_eq!(Notice::parse(b"s|5"), Some(Notice::SoldOut { at_ms: 5 }));
        assert_eq!(Notice::parse(b"a|5|short"), None);
        assert_eq!(Notice::parse(b"x|5"), None);
        assert_eq!(Notice::parse(b"s|soon"), None);
        let id = Uuid::new_v4();
        assert_eq!(event_of_channel(channel_of(id).as_bytes()), Some(id));
        assert_eq!(event_of_channel(b"ev:{nope}:notices"), None);
    }
}
