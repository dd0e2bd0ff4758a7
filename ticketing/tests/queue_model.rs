//! Property tests of the queue scripts: random sequences of joins, polls, the opening, bounded
//! admission steps, operator toggles (pause, resume, room off and on) and Redis losing the line
//! (then polls with receipts bringing entries back) run against a real Redis and must agree, step
//! by step, with a small model of the line. What the model pins down: the line is ordered by
//! place and nothing but a join (or a receipt's restore) writes a place; every admission step
//! takes exactly the head of the line and never more than its bound; nobody is admitted before
//! the opening, while paused with the room on, or during the grace after a loss (a room turned
//! off drains even when paused); every join after the opening
//! stands behind every earlier entry; after a loss each waiting entry comes back at its own place,
//! once, and an entry that already reached the head does not come back.

mod support;

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;
use redis::RedisError;
use ticketing::keys::EventKeys;
use ticketing::queue::{
    self, place, Generation, Place, QueueId, QueueMarks, Receipt, Standing, Sync, WaitingRoom,
};
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use uuid::Uuid;

const VISITORS: usize = 12;

#[derive(Debug, Clone)]
enum Op {
    Join(usize),
    Poll(usize),
    /// A poll presenting the latest receipt this visitor was given.
    PollWithReceipt(usize),
    /// The clock passes `on_sale_at`.
    Open,
    /// One admission step taking at most this many off the head.
    Admit(u32),
    /// The operator sets the room (on/off, paused).
    SetRoom {
        enabled: bool,
        paused: bool,
    },
    /// Redis loses every key of the event; the settings come back with the saved marks.
    Loss,
    /// The grace after a loss runs out.
    GraceEnds,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    InLine(Place),
    Admitted,
    /// Gone from Redis (admitted before a loss, or never restored).
    Unknown,
}

#[derive(Default)]
struct Model {
    visitors: HashMap<usize, Where>,
    /// The line: place → visitor.
    line: BTreeMap<Place, usize>,
    /// The latest receipt each visitor holds: its place and generation.
    receipts: HashMap<usize, (Place, Generation)>,
    /// Visitors already put back from a receipt in this generation.
    restored: Vec<usize>,
    opened: bool,
    room: Option<WaitingRoom>,
    grace: bool,
    admitted_through: Place,
    generation: Option<Generation>,
}

impl Model {
    fn position(&self, place: Place) -> u64 {
        self.line.range(..place).count() as u64 + 1
    }
}

struct Case {
    redis: RedisClient,
    event_id: Uuid,
    keys: EventKeys,
    ids: Vec<QueueId>,
    model: Model,
    on_sale_ms: i64,
}

fn fail(e: RedisError) -> TestCaseError {
    TestCaseError::fail(format!("redis: {e}"))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..VISITORS).prop_map(Op::Join),
        2 => (0..VISITORS).prop_map(Op::Poll),
        2 => (0..VISITORS).prop_map(Op::PollWithReceipt),
        1 => Just(Op::Open),
        3 => (1u32..5).prop_map(Op::Admit),
        1 => (any::<bool>(), any::<bool>()).prop_map(|(enabled, paused)| Op::SetRoom { enabled, paused }),
        1 => Just(Op::Loss),
        1 => Just(Op::GraceEnds),
    ]
}

fn room(enabled: bool, paused: bool) -> WaitingRoom {
    WaitingRoom {
        enabled,
        // So fast that the bucket never holds the step back by much; the bound does.
        admission_per_minute: 1_000_000,
        max_active: 1_000_000,
        paused,
        token_ttl_s: 600,
        drain_per_minute: 0,
        ..WaitingRoom::default()
    }
}

/// This model is about order and receipts: one tier with more stock than the line could want.
fn tiers() -> Vec<TierCode> {
    vec![TierCode::known("GA")]
}

impl Case {
    async fn sync(&mut self, sync: Sync) -> Result<(), TestCaseError> {
        let room = self.model.room.expect("a room");
        queue::sync_config(&self.redis, self.event_id, &room, self.on_sale_ms, sync)
            .await
            .map_err(fail)?;
        redis::cmd("HSETNX")
            .arg(self.keys.inventory())
            .arg("GA:avail")
            .arg(1_000_000)
            .query_async::<i64>(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        Ok(())
    }

    /// Checks a standing against the model and learns the generation and receipt it carries.
    fn observe(&mut self, visitor: usize, standing: &Standing) -> Result<(), TestCaseError> {
        let expected = self.model.visitors.get(&visitor).copied();
        match (standing, expected) {
            (
                Standing::PreQueue {
                    place, generation, ..
                },
                Some(Where::InLine(at)),
            ) => {
                prop_assert!(!self.model.opened, "pre_queue after the opening");
                prop_assert_eq!(*place, at);
                self.learn(visitor, *place, *generation)?;
            }
            (
                Standing::Waiting {
                    position,
                    place,
                    generation,
                    ..
                },
                Some(Where::InLine(at)),
            ) => {
                prop_assert!(self.model.opened, "waiting before the opening");
                prop_assert_eq!(*place, at);
                prop_assert_eq!(*position, self.model.position(at), "position of {:?}", at);
                self.learn(visitor, *place, *generation)?;
            }
            (Standing::Admitted { .. }, Some(Where::Admitted)) => {}
            (Standing::NotFound, None | Some(Where::Unknown)) => {}
            (standing, expected) => {
                return Err(TestCaseError::fail(format!(
                    "visitor {visitor}: redis says {standing:?}, the model {expected:?}"
                )))
            }
        }
        Ok(())
    }

    fn learn(
        &mut self,
        visitor: usize,
        place: Place,
        generation: Generation,
    ) -> Result<(), TestCaseError> {
        if let Some(known) = self.model.generation {
            prop_assert_eq!(known, generation, "the generation changed without a loss");
        }
        self.model.generation = Some(generation);
        self.model.receipts.insert(visitor, (place, generation));
        Ok(())
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Join(v) => {
                let standing = queue::join(
                    &self.redis,
                    self.event_id,
                    self.ids[v],
                    place::draw_lot(),
                    &tiers(),
                )
                .await
                .map_err(fail)?;
                let room = self.model.room.expect("a room");
                match self.model.visitors.get(&v) {
                    Some(Where::InLine(_) | Where::Admitted) => {}
                    None | Some(Where::Unknown) => {
                        // Not during the grace after a loss: the line may yet come back.
                        let walks_in = !room.enabled
                            && self.model.opened
                            && !self.model.grace
                            && self.model.line.is_empty();
                        if walks_in {
                            self.model.visitors.insert(v, Where::Admitted);
                        } else {
                            let place = match &standing {
                                Standing::PreQueue { place, .. }
                                | Standing::Waiting { place, .. } => *place,
                                other => {
                                    return Err(TestCaseError::fail(format!(
                                        "a new join answered {other:?}"
                                    )))
                                }
                            };
                            prop_assert_eq!(
                                place.is_pre_queue(),
                                !self.model.opened,
                                "{:?}",
                                place
                            );
                            if self.model.opened {
                                prop_assert!(
                                    self.model.line.keys().all(|p| *p < place),
                                    "a join after the opening went ahead of someone"
                                );
                            }
                            prop_assert!(
                                !self.model.line.contains_key(&place),
                                "a place given twice"
                            );
                            self.model.line.insert(place, v);
                            self.model.visitors.insert(v, Where::InLine(place));
                        }
                    }
                }
                self.observe(v, &standing)
            }
            Op::Poll(v) => {
                let standing = queue::poll(&self.redis, self.event_id, self.ids[v], None, &tiers())
                    .await
                    .map_err(fail)?;
                self.observe(v, &standing)
            }
            Op::PollWithReceipt(v) => {
                let Some((place, generation)) = self.model.receipts.get(&v).copied() else {
                    return Ok(());
                };
                let receipt = Receipt {
                    event_id: self.event_id,
                    queue_id: self.ids[v],
                    place,
                    generation,
                    issued_ms: 0,
                    wait: None,
                };
                let standing = queue::poll(
                    &self.redis,
                    self.event_id,
                    self.ids[v],
                    Some(&receipt),
                    &tiers(),
                )
                .await
                .map_err(fail)?;
                let comes_back = self.model.visitors.get(&v) == Some(&Where::Unknown)
                    && Some(generation) != self.model.generation
                    && place > self.model.admitted_through
                    && !self.model.restored.contains(&v);
                if comes_back {
                    self.model.restored.push(v);
                    self.model.line.insert(place, v);
                    self.model.visitors.insert(v, Where::InLine(place));
                }
                self.observe(v, &standing)
            }
            Op::Open => {
                self.model.opened = true;
                self.on_sale_ms = 0;
                self.sync(Sync::Settings).await
            }
            Op::SetRoom { enabled, paused } => {
                self.model.room = Some(room(enabled, paused));
                self.sync(Sync::Settings).await
            }
            Op::GraceEnds => {
                self.model.grace = false;
                redis::cmd("HDEL")
                    .arg(self.keys.queue_config())
                    .arg("admit_after_ms")
                    .query_async::<i64>(&mut self.redis.clone())
                    .await
                    .map_err(fail)?;
                Ok(())
            }
            Op::Admit(bound) => self.admit(bound).await,
            Op::Loss => self.loss().await,
        }
    }

    async fn admit(&mut self, bound: u32) -> Result<(), TestCaseError> {
        let step = queue::admit(&self.redis, self.event_id, bound, &tiers())
            .await
            .map_err(fail)?;
        let room = self.model.room.expect("a room");
        // A room turned off drains even when paused: off wins (`paused` is kept for when it
        // is turned on again).
        let closed = !self.model.opened || (room.enabled && room.paused) || self.model.grace;
        let taken = (step.admitted + step.dropped) as usize;
        prop_assert!(
            taken <= bound as usize,
            "a step took {} over its bound {}",
            taken,
            bound
        );
        prop_assert_eq!(
            step.dropped,
            0,
            "everyone polled within the liveness window"
        );
        if closed {
            prop_assert_eq!(taken, 0, "admitted while closed: {:?}", step);
        }
        if !room.enabled && !closed {
            // Drained at once: as many as the bound allows.
            prop_assert_eq!(taken, self.model.line.len().min(bound as usize));
            prop_assert_eq!(step.more, self.model.line.len() > bound as usize);
        }
        // Exactly the head, in place order.
        for _ in 0..taken {
            let (place, visitor) = self.model.line.pop_first().expect("the model's head");
            self.model.visitors.insert(visitor, Where::Admitted);
            self.model.admitted_through = self.model.admitted_through.max(place);
        }
        prop_assert_eq!(step.marks.admitted_through, self.model.admitted_through);
        Ok(())
    }

    async fn loss(&mut self) -> Result<(), TestCaseError> {
        // What the worker saved: the marks as they stand (the margin covers any lag).
        let mut conn = self.redis.clone();
        let arrivals: Option<i64> = redis::cmd("GET")
            .arg(self.keys.sequence())
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        let marks = QueueMarks {
            arrivals: arrivals.unwrap_or(0),
            admitted_through: self.model.admitted_through,
        };
        self.delete_keys().await.map_err(fail)?;
        self.sync(Sync::AfterLoss(marks)).await?;
        self.model.line.clear();
        for state in self.model.visitors.values_mut() {
            *state = Where::Unknown;
        }
        self.model.restored.clear();
        self.model.grace = marks.arrivals > 0;
        self.model.generation = None;
        Ok(())
    }

    /// Compares the sorted set with the model's line.
    async fn check(&self) -> Result<(), TestCaseError> {
        let members: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
            .arg(self.keys.waiting())
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut self.redis.clone())
            .await
            .map_err(fail)?;
        let actual: Vec<(usize, i64)> = members
            .iter()
            .map(|(id, score)| {
                let visitor = self
                    .ids
                    .iter()
                    .position(|q| q.as_bytes().as_slice() == id.as_slice())
                    .unwrap_or(usize::MAX);
                (visitor, *score as i64)
            })
            .collect();
        let expected: Vec<(usize, i64)> = self.model.line.iter().map(|(p, v)| (*v, p.0)).collect();
        prop_assert_eq!(actual, expected, "the line");
        Ok(())
    }

    /// Everything the event has in Redis, as a data loss takes it.
    async fn delete_keys(&self) -> Result<(), RedisError> {
        support::delete_event_keys(&self.redis, self.event_id).await
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .map_err(|e| TestCaseError::fail(format!("connecting to redis: {e}")))?;
    let event_id = Uuid::new_v4();
    let mut case = Case {
        redis,
        event_id,
        keys: EventKeys::new(event_id),
        ids: (0..VISITORS).map(|_| QueueId(Uuid::new_v4())).collect(),
        model: Model {
            room: Some(room(true, false)),
            ..Model::default()
        },
        on_sale_ms: chrono::Utc::now().timestamp_millis() + 86_400_000,
    };
    let outcome = async {
        case.sync(Sync::Settings).await?;
        for (step, op) in ops.iter().enumerate() {
            let applied = async {
                case.apply(op).await?;
                case.check().await
            };
            applied
                .await
                .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
        }
        Ok(())
    }
    .await;
    case.delete_keys().await.map_err(fail)?;
    outcome
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn the_line_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for one case");
        runtime.block_on(run(ops))?;
    }
}
