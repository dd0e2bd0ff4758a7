//! Property tests of the inventory scripts: random sequences of reserve (fresh, reused and retried
//! tokens), release, confirm, restock, rebuilds under a new epoch and rebuilds that fail half-way
//! run against a real Redis and must agree, step by step, with a small in-memory model of an
//! event's tickets. Each case uses its own event id, so cases never share keys and the
//! shared Redis stays usable by everyone else; each case deletes its keys when it ends.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::Index;
use redis::RedisError;
use ticketing::inventory::{
    self, Confirmation, Confirmed, Epoch, HoldFor, Numbers, ReleaseMode, Released, Reservation,
    Shortfall, TierLoad,
};
use ticketing::keys::EventKeys;
use ticketing::redis_client::RedisClient;
use ticketing::tier::TierCode;
use ticketing::token::TokenId;
use uuid::Uuid;

/// The epoch of the first load; every rebuild, failed or not, takes the next one (as the
/// Postgres sequence does).
const FIRST_EPOCH: i64 = 7;
// Longer than any generated code, so it is never one of the event's tiers.
const UNKNOWN_TIER: &str = "NOT_A_TIER_OF_THIS_EVENT";

/// One tier as loaded: capacity, and the numbers Postgres had already issued.
#[derive(Debug, Clone)]
struct TierSpec {
    code: TierCode,
    capacity: u32,
    issued: BTreeSet<u32>,
}

/// Whose reservation a release or confirmation names.
#[derive(Debug, Clone)]
enum Pick {
    /// A token holding numbers (any token when none does).
    Holding(Index),
    /// Any token that tried to reserve.
    Tried(Index),
    /// A token never seen.
    Fresh,
}

#[derive(Debug, Clone)]
enum Op {
    /// A fresh token reserves these (tier index, quantity) pairs.
    Reserve(Vec<(usize, u32)>),
    /// A token that tried before reserves again.
    ReuseToken(Index, Vec<(usize, u32)>),
    /// A token holding numbers sends its request again (its answer was lost): it continues its
    /// hold.
    Retry(Index),
    /// The inventory is rebuilt from what Postgres has, under a new epoch.
    Rebuild,
    /// A rebuild stages its new epoch and dies before the switch; with `switch_anyway` the
    /// switch runs after a staged set expired, and must refuse.
    FailedRebuild { switch_anyway: bool },
    /// A fresh token asks for a tier the event does not have, at this place in its request.
    ReserveUnknownTier(Index, Vec<(usize, u32)>),
    /// Ends a reservation that did not become a booking.
    Release(Pick, ReleaseMode),
    /// Release under an epoch the inventory no longer has.
    ReleaseStale(Index),
    /// An earlier attempt of a token whose hold a retry continued tries to release it.
    ReleaseSuperseded(Index),
    /// A reservation became a booking.
    Confirm(Pick),
    /// The token's booking in Postgres has other numbers than its hold (it reserved afresh after
    /// its booking was written): the hold's numbers go back on sale, and the token stays used.
    ConfirmOther(Pick),
    /// A writer's batch of bookings confirmed in one call, each as `Confirm` (false) or
    /// `ConfirmOther` (true); a token books once, so a token picked twice counts once.
    ConfirmBatch(Vec<(Pick, bool)>),
    /// A booking is cancelled; `twice` restocks it again right away (a retried cancellation).
    Restock { pick: Index, twice: bool },
    /// Restock under an epoch the inventory no longer has.
    RestockStale(Index),
}

/// A booking as the model sees it: numbers sold until it is cancelled (restocked).
#[derive(Debug, Clone)]
struct Booked {
    numbers: Numbers,
    restocked: bool,
}

/// What the scripts promise, in plain collections.
#[derive(Debug, Default)]
struct Model {
    /// Per tier code: capacity.
    capacity: BTreeMap<TierCode, u32>,
    /// Tier codes in load order.
    codes: Vec<TierCode>,
    sold: BTreeMap<TierCode, BTreeSet<u32>>,
    /// Numbers dropped by a discarding release: off sale until a rebuild.
    discarded: BTreeMap<TierCode, BTreeSet<u32>>,
    holds: BTreeMap<TokenId, Numbers>,
    bookings: Vec<Booked>,
    /// Tokens whose reservation is held or booked. A release frees its token again, so a buyer
    /// whose booking failed after reserving can retry with the same token.
    used: BTreeSet<TokenId>,
    /// Every token that ever tried to reserve, in order.
    tokens: Vec<TokenId>,
    /// The request each hold was made for.
    requests: BTreeMap<TokenId, Vec<(TierCode, u32)>>,
    /// The attempt that owns each hold: the last to make or continue it.
    attempts: BTreeMap<TokenId, String>,
    booked_total: i64,
    /// The live epoch, and the last one handed out.
    epoch: i64,
    last_epoch: i64,
}

/// The outcome the model expects from `reserve`; `Held` numbers are checked separately.
#[derive(Debug, PartialEq)]
enum Expected {
    Held,
    /// The token's hold goes on with the same numbers.
    Continued,
    OtherRequest,
    TokenUsed,
    UnknownTier(TierCode),
    /// The tiers that fall short, and whether no tier of the event has anything left.
    Short(Vec<Shortfall>, bool),
}

impl Model {
    fn load(tiers: &[TierSpec]) -> Self {
        let mut model = Model {
            epoch: FIRST_EPOCH,
            last_epoch: FIRST_EPOCH,
            ..Model::default()
        };
        let mut presold = Numbers::new();
        for tier in tiers {
            model.codes.push(tier.code.clone());
            model.capacity.insert(tier.code.clone(), tier.capacity);
            model.sold.insert(tier.code.clone(), tier.issued.clone());
            model.discarded.insert(tier.code.clone(), BTreeSet::new());
            if !tier.issued.is_empty() {
                presold.insert(tier.code.clone(), to_i32(&tier.issued));
            }
        }
        // Tickets sold before the rebuild can be cancelled like any other booking.
        if !presold.is_empty() {
            model.bookings.push(Booked {
                numbers: presold,
                restocked: false,
            });
        }
        model
    }

    fn held(&self, code: &str) -> BTreeSet<u32> {
        self.holds
            .values()
            .filter_map(|numbers| numbers.get(code))
            .flatten()
            .map(|&n| to_u32(n))
            .collect()
    }

    /// Numbers of `code` nobody may be handed: sold, held or discarded.
    fn taken(&self, code: &str) -> BTreeSet<u32> {
        let mut taken = self.held(code);
        taken.extend(&self.sold[code]);
        taken.extend(&self.discarded[code]);
        taken
    }

    fn available(&self, code: &str) -> i64 {
        i64::from(self.capacity[code]) - self.taken(code).len() as i64
    }

    fn expect_reserve(&self, jti: TokenId, request: &[(TierCode, u32)]) -> Expected {
        if self.used.contains(&jti) {
            return match self.requests.get(&jti) {
                Some(held_for) if self.holds.contains_key(&jti) && held_for == request => {
                    Expected::Continued
                }
                _ if self.holds.contains_key(&jti) => Expected::OtherRequest,
                _ => Expected::TokenUsed,
            };
        }
        let mut short = Vec::new();
        for (code, want) in request {
            if !self.capacity.contains_key(code) {
                return Expected::UnknownTier(code.clone());
            }
            let available = self.available(code);
            if available < i64::from(*want) {
                short.push(Shortfall {
                    tier: code.clone(),
                    requested: i64::from(*want),
                    available,
                });
            }
        }
        if short.is_empty() {
            Expected::Held
        } else {
            // Sold out: nothing on sale nor held (held numbers may come back).
            let sold_out = self
                .capacity
                .keys()
                .all(|code| self.available(code) == 0 && self.held(code).is_empty());
            Expected::Short(short, sold_out)
        }
    }

    /// A hold's `numbers` became a booking: sold, and counted.
    fn book(&mut self, numbers: Numbers) {
        for (code, list) in &numbers {
            let sold = self.sold.entry(code.clone()).or_default();
            sold.extend(list.iter().map(|&n| to_u32(n)));
        }
        self.bookings.push(Booked {
            numbers,
            restocked: false,
        });
        self.booked_total += 1;
    }

    fn pick_token(&self, pick: &Index) -> Option<TokenId> {
        (!self.tokens.is_empty()).then(|| self.tokens[pick.index(self.tokens.len())])
    }

    fn token(&self, pick: &Pick) -> TokenId {
        let holding = match pick {
            Pick::Holding(i) if !self.holds.is_empty() => {
                self.holds.keys().nth(i.index(self.holds.len()))
            }
            _ => None,
        };
        let tried = match pick {
            Pick::Holding(i) | Pick::Tried(i) => self.pick_token(i),
            Pick::Fresh => None,
        };
        holding.copied().or(tried).unwrap_or_else(TokenId::new_v4)
    }

    /// What a rebuild reads from Postgres: per tier, the numbers sold (not cancelled).
    fn postgres(&self) -> Vec<TierLoad> {
        self.codes
            .iter()
            .map(|code| TierLoad {
                code: code.clone(),
                capacity: i32::try_from(self.capacity[code]).expect("tiny capacities"),
                issued: to_i32(&self.sold[code]).into_iter().collect(),
            })
            .collect()
    }

    /// After a rebuild: holds, used tokens and discarded numbers are gone (Postgres has none of
    /// them); sold numbers stay sold.
    fn rebuilt(&mut self, epoch: i64) {
        self.epoch = epoch;
        self.holds.clear();
        self.requests.clear();
        self.attempts.clear();
        self.used.clear();
        for discarded in self.discarded.values_mut() {
            discarded.clear();
        }
    }
}

/// The fingerprint a request is held under: any text without `|` names it uniquely.
fn fingerprint(request: &[(TierCode, u32)]) -> String {
    request
        .iter()
        .map(|(code, quantity)| format!("{code}={quantity}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn to_i32(numbers: &BTreeSet<u32>) -> Vec<i32> {
    numbers
        .iter()
        .map(|&n| i32::try_from(n).expect("capacities in these tests are tiny"))
        .collect()
}

fn to_u32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn fail(e: RedisError) -> TestCaseError {
    TestCaseError::fail(format!("redis: {e}"))
}

fn tier_specs() -> impl Strategy<Value = Vec<TierSpec>> {
    btree_set("[A-Za-z0-9_-]{1,8}", 1..=4).prop_flat_map(|codes| {
        codes
            .into_iter()
            .map(|code| {
                // Half the events start untouched, the others with about a quarter of their
                // numbers already issued.
                let issued = prop_oneof![
                    Just(0u8),
                    (any::<u8>(), any::<u8>()).prop_map(|(a, b)| a & b)
                ];
                (1u32..=8, issued).prop_map(move |(capacity, mask)| {
                    let issued = (1..=capacity).filter(|n| mask & (1 << (n - 1)) != 0);
                    TierSpec {
                        code: TierCode::known(&code),
                        capacity,
                        issued: issued.collect(),
                    }
                })
            })
            .collect::<Vec<_>>()
    })
}

/// Distinct tiers with quantities 1-3, in random order.
fn request(tiers: usize) -> impl Strategy<Value = Vec<(usize, u32)>> {
    vec((0..tiers, 1u32..=3), 1..=tiers).prop_map(|pairs| {
        let mut seen = BTreeSet::new();
        pairs
            .into_iter()
            .filter(|(tier, _)| seen.insert(*tier))
            .collect()
    })
}

fn op(tiers: usize) -> impl Strategy<Value = Op> {
    let mode = prop_oneof![Just(ReleaseMode::Return), Just(ReleaseMode::Discard)];
    let pick = || {
        prop_oneof![
            6 => any::<Index>().prop_map(Pick::Holding),
            3 => any::<Index>().prop_map(Pick::Tried),
            1 => Just(Pick::Fresh),
        ]
    };
    prop_oneof![
        6 => request(tiers).prop_map(Op::Reserve),
        1 => (any::<Index>(), request(tiers)).prop_map(|(i, r)| Op::ReuseToken(i, r)),
        2 => any::<Index>().prop_map(Op::Retry),
        1 => Just(Op::Rebuild),
        1 => any::<bool>().prop_map(|switch_anyway| Op::FailedRebuild { switch_anyway }),
        1 => (any::<Index>(), request(tiers)).prop_map(|(i, r)| Op::ReserveUnknownTier(i, r)),
        3 => (pick(), mode).prop_map(|(p, m)| Op::Release(p, m)),
        1 => any::<Index>().prop_map(Op::ReleaseStale),
        1 => any::<Index>().prop_map(Op::ReleaseSuperseded),
        3 => pick().prop_map(Op::Confirm),
        1 => pick().prop_map(Op::ConfirmOther),
        2 => vec((pick(), prop::bool::weighted(0.2)), 1..6).prop_map(Op::ConfirmBatch),
        2 => (any::<Index>(), any::<bool>()).prop_map(|(pick, twice)| Op::Restock { pick, twice }),
        1 => any::<Index>().prop_map(Op::RestockStale),
    ]
}

fn scenario() -> impl Strategy<Value = (Vec<TierSpec>, Vec<Op>)> {
    tier_specs().prop_flat_map(|tiers| {
        let n = tiers.len();
        (Just(tiers), vec(op(n), 1..40))
    })
}

struct Case {
    redis: RedisClient,
    event_id: Uuid,
    keys: EventKeys,
    model: Model,
}

impl Case {
    async fn load(&mut self, tiers: &[TierSpec]) -> Result<(), TestCaseError> {
        // The real stage-and-switch rather than HSETs copying its layout: a rebuild is how every
        // inventory reaches Redis, so the model starts from exactly what a rebuild writes.
        let model = Model::load(tiers);
        inventory::load(
            &self.redis,
            self.event_id,
            Epoch(model.epoch),
            &model.postgres(),
        )
        .await
        .map_err(fail)?;
        self.model = model;
        Ok(())
    }

    async fn rebuild(&mut self) -> Result<(), TestCaseError> {
        self.model.last_epoch += 1;
        let epoch = self.model.last_epoch;
        inventory::load(
            &self.redis,
            self.event_id,
            Epoch(epoch),
            &self.model.postgres(),
        )
        .await
        .map_err(fail)?;
        self.model.rebuilt(epoch);
        Ok(())
    }

    async fn failed_rebuild(&mut self, switch_anyway: bool) -> Result<(), TestCaseError> {
        self.model.last_epoch += 1;
        let epoch = Epoch(self.model.last_epoch);
        let tiers = self.model.postgres();
        inventory::stage(&self.redis, self.event_id, epoch, &tiers)
            .await
            .map_err(fail)?;
        // A staged set that expired (or a load that died before it) leaves the stage
        // incomplete; the switch must see it and change nothing.
        let expired = tiers
            .iter()
            .find(|t| (1..=t.issued.last().copied().unwrap_or(0)).any(|n| !t.issued.contains(&n)));
        if let Some(tier) = expired {
            let _: i64 = redis::cmd("DEL")
                .arg(self.keys.staged_free_numbers(epoch.0, &tier.code))
                .query_async(&mut self.redis.clone())
                .await
                .map_err(fail)?;
            if switch_anyway {
                let switched = inventory::switch(&self.redis, self.event_id, epoch, &tiers).await;
                prop_assert!(
                    switched.is_err(),
                    "a switch with an incomplete stage went through"
                );
            }
        }
        for tier in &tiers {
            let _: i64 = redis::cmd("DEL")
                .arg(self.keys.staged_free_numbers(epoch.0, &tier.code))
                .query_async(&mut self.redis.clone())
                .await
                .map_err(fail)?;
        }
        Ok(())
    }

    async fn release_superseded(&mut self, pick: &Index) -> Result<(), TestCaseError> {
        let Some(jti) = self.model.pick_token(pick) else {
            return Ok(());
        };
        let got = inventory::release(
            &self.redis,
            self.event_id,
            Epoch(self.model.epoch),
            jti,
            Some("an-attempt-the-hold-no-longer-belongs-to"),
            ReleaseMode::Return,
            &self.model.codes,
        )
        .await
        .map_err(fail)?;
        let expected = if self.model.holds.contains_key(&jti) {
            Released::Superseded
        } else {
            Released::NoHold
        };
        prop_assert_eq!(got, expected);
        Ok(())
    }

    async fn retry(&mut self, pick: &Index) -> Result<(), TestCaseError> {
        let Some((&jti, _)) = (!self.model.holds.is_empty())
            .then(|| {
                self.model
                    .holds
                    .iter()
                    .nth(pick.index(self.model.holds.len()))
            })
            .flatten()
        else {
            return Ok(());
        };
        let request = self.model.requests[&jti].clone();
        self.reserve(jti, &request).await
    }

    fn codes_of(&self, request: &[(usize, u32)]) -> Vec<(TierCode, u32)> {
        request
            .iter()
            .map(|&(tier, quantity)| (self.model.codes[tier].clone(), quantity))
            .collect()
    }

    async fn reserve(
        &mut self,
        jti: TokenId,
        request: &[(TierCode, u32)],
    ) -> Result<(), TestCaseError> {
        let expected = self.model.expect_reserve(jti, request);
        if !self.model.tokens.contains(&jti) {
            self.model.tokens.push(jti);
        }
        let attempt = TokenId::new_v4().to_string();
        let got = inventory::reserve(
            &self.redis,
            self.event_id,
            jti,
            3_600_000,
            HoldFor {
                fingerprint: &fingerprint(request),
                attempt: &attempt,
                claim: None,
            },
            request,
        )
        .await
        .map_err(fail)?;
        if matches!(got, Reservation::Held { .. }) {
            self.model.attempts.insert(jti, attempt);
        }
        match (expected, got) {
            (
                Expected::Continued,
                Reservation::Held {
                    epoch,
                    numbers,
                    continued: true,
                },
            ) => {
                prop_assert_eq!(epoch, Epoch(self.model.epoch));
                prop_assert_eq!(sorted(numbers), sorted(self.model.holds[&jti].clone()));
            }
            (Expected::OtherRequest, Reservation::OtherRequest) => {}
            (
                Expected::Held,
                Reservation::Held {
                    epoch,
                    numbers,
                    continued: false,
                },
            ) => {
                prop_assert_eq!(epoch, Epoch(self.model.epoch));
                let asked: BTreeSet<&str> = request.iter().map(|(c, _)| c.as_str()).collect();
                let given: BTreeSet<&str> = numbers.keys().map(TierCode::as_str).collect();
                prop_assert_eq!(given, asked, "numbers for exactly the requested tiers");
                for (code, want) in request {
                    let list = &numbers[code];
                    let distinct: BTreeSet<u32> = list.iter().map(|&n| to_u32(n)).collect();
                    prop_assert_eq!(list.len(), *want as usize, "quantity of {}", code);
                    prop_assert_eq!(distinct.len(), list.len(), "{} repeats a number", code);
                    let capacity = self.model.capacity[code];
                    prop_assert!(
                        distinct.iter().all(|n| (1..=capacity).contains(n)),
                        "{code} handed out {list:?}, outside 1..={capacity}"
                    );
                    let taken = self.model.taken(code);
                    prop_assert!(
                        distinct.is_disjoint(&taken),
                        "{code} handed out {list:?} while {taken:?} were sold, held or discarded"
                    );
                }
                self.model.used.insert(jti);
                self.model.holds.insert(jti, numbers);
                self.model.requests.insert(jti, request.to_vec());
            }
            (Expected::TokenUsed, Reservation::TokenUsed) => {}
            (Expected::UnknownTier(want), Reservation::UnknownTier(got)) => {
                prop_assert_eq!(got, want);
            }
            (
                Expected::Short(want, want_sold_out),
                Reservation::Short {
                    shortfall,
                    sold_out,
                },
            ) => {
                prop_assert_eq!(shortfall, want);
                prop_assert_eq!(sold_out, want_sold_out, "sold out");
            }
            (expected, got) => {
                return Err(TestCaseError::fail(format!(
                    "expected {expected:?}, got {got:?} for {request:?}"
                )));
            }
        }
        Ok(())
    }

    async fn release(
        &mut self,
        jti: TokenId,
        epoch: Epoch,
        mode: ReleaseMode,
    ) -> Result<(), TestCaseError> {
        // The owning attempt, or (for a token holding nothing) the sweeper's "any attempt".
        let attempt = self.model.attempts.get(&jti).cloned();
        let got = inventory::release(
            &self.redis,
            self.event_id,
            epoch,
            jti,
            attempt.as_deref(),
            mode,
            &self.model.codes,
        )
        .await
        .map_err(fail)?;
        if epoch != Epoch(self.model.epoch) {
            prop_assert_eq!(got, Released::Stale);
            return Ok(());
        }
        self.model.requests.remove(&jti);
        self.model.attempts.remove(&jti);
        let Some(numbers) = self.model.holds.remove(&jti) else {
            prop_assert_eq!(got, Released::NoHold);
            return Ok(());
        };
        prop_assert_eq!(got, Released::Released);
        self.model.used.remove(&jti);
        if mode == ReleaseMode::Discard {
            for (code, list) in numbers {
                let discarded = self.model.discarded.entry(code).or_default();
                discarded.extend(list.into_iter().map(to_u32));
            }
        }
        Ok(())
    }

    async fn confirm(&mut self, jti: TokenId) -> Result<(), TestCaseError> {
        let booked = self.model.holds.get(&jti).cloned().unwrap_or_default();
        let got = inventory::confirm(
            &self.redis,
            self.event_id,
            jti,
            ticketing::queue::QueueId(Uuid::new_v4()),
            &booked,
            &self.model.codes,
        )
        .await
        .map_err(fail)?;
        let expected = if self.model.holds.contains_key(&jti) {
            Confirmed::Sold
        } else {
            Confirmed::NoHold
        };
        prop_assert_eq!(got, expected);
        self.model.requests.remove(&jti);
        self.model.attempts.remove(&jti);
        if let Some(numbers) = self.model.holds.remove(&jti) {
            self.model.book(numbers);
        }
        Ok(())
    }

    /// The numbers a booking other than `jti`'s hold has: the hold's but its last one (a booking
    /// of a strict subset is not the hold's either), in another order.
    fn other_numbers(&self, jti: TokenId) -> Numbers {
        let mut booked = self.model.holds.get(&jti).cloned().unwrap_or_default();
        if let Some(mut last) = booked.last_entry() {
            last.get_mut().pop();
        }
        for list in booked.values_mut() {
            list.reverse();
        }
        booked
    }

    async fn confirm_batch(&mut self, picks: &[(Pick, bool)]) -> Result<(), TestCaseError> {
        let mut batch = Vec::new();
        let mut expected = Vec::new();
        for (pick, other) in picks {
            // A reservation named twice in one batch: the second finds its hold gone, as a
            // second call would (the script reads the batch's holds in one command first).
            let jti = self.model.token(pick);
            let booked = if *other {
                self.other_numbers(jti)
            } else {
                self.model.holds.get(&jti).cloned().unwrap_or_default()
            };
            batch.push(Confirmation {
                jti,
                queue_id: ticketing::queue::QueueId(Uuid::new_v4()),
                booked,
            });
            self.model.requests.remove(&jti);
            self.model.attempts.remove(&jti);
            expected.push(match self.model.holds.remove(&jti) {
                None => Confirmed::NoHold,
                Some(_) if *other => Confirmed::Returned,
                Some(numbers) => {
                    self.model.book(numbers);
                    Confirmed::Sold
                }
            });
        }
        let got = inventory::confirm_all(&self.redis, self.event_id, &self.model.codes, &batch)
            .await
            .map_err(fail)?;
        prop_assert_eq!(got, expected);
        Ok(())
    }

    async fn confirm_other(&mut self, jti: TokenId) -> Result<(), TestCaseError> {
        let booked = self.other_numbers(jti);
        let got = inventory::confirm(
            &self.redis,
            self.event_id,
            jti,
            ticketing::queue::QueueId(Uuid::new_v4()),
            &booked,
            &self.model.codes,
        )
        .await
        .map_err(fail)?;
        self.model.requests.remove(&jti);
        self.model.attempts.remove(&jti);
        let expected = if self.model.holds.remove(&jti).is_some() {
            Confirmed::Returned
        } else {
            Confirmed::NoHold
        };
        prop_assert_eq!(got, expected);
        Ok(())
    }

    async fn restock(&mut self, pick: &Index, twice: bool) -> Result<(), TestCaseError> {
        if self.model.bookings.is_empty() {
            return Ok(());
        }
        let booking = pick.index(self.model.bookings.len());
        // A cancellation restocks once (Postgres changes the booking's status once); restocking
        // again after its numbers were sold anew is not a promise of the script.
        if self.model.bookings[booking].restocked {
            return Ok(());
        }
        let numbers = self.model.bookings[booking].numbers.clone();
        let count: usize = numbers.values().map(Vec::len).sum();
        let back = inventory::restock(
            &self.redis,
            self.event_id,
            Epoch(self.model.epoch),
            &numbers,
        )
        .await
        .map_err(fail)?;
        prop_assert_eq!(back, Some(count as i64));
        self.model.bookings[booking].restocked = true;
        for (code, list) in &numbers {
            let sold = self.model.sold.entry(code.clone()).or_default();
            for n in list {
                sold.remove(&to_u32(*n));
            }
        }
        if twice {
            self.check().await?;
            let again = inventory::restock(
                &self.redis,
                self.event_id,
                Epoch(self.model.epoch),
                &numbers,
            )
            .await
            .map_err(fail)?;
            prop_assert_eq!(again, Some(0), "a second restock of the same numbers");
        }
        Ok(())
    }

    async fn restock_stale(&mut self, pick: &Index) -> Result<(), TestCaseError> {
        let numbers = match self.model.bookings.len() {
            0 => Numbers::from([(self.model.codes[0].clone(), vec![1])]),
            len => self.model.bookings[pick.index(len)].numbers.clone(),
        };
        let back = inventory::restock(&self.redis, self.event_id, self.other_epoch(), &numbers)
            .await
            .map_err(fail)?;
        prop_assert_eq!(back, None);
        Ok(())
    }

    /// An epoch the inventory does not have: the one before it, or one never handed out.
    fn other_epoch(&self) -> Epoch {
        Epoch(self.model.epoch - 1)
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Reserve(request) => {
                let request = self.codes_of(request);
                self.reserve(TokenId::new_v4(), &request).await
            }
            Op::ReuseToken(pick, request) => {
                let request = self.codes_of(request);
                let jti = self.model.pick_token(pick).unwrap_or_else(TokenId::new_v4);
                self.reserve(jti, &request).await
            }
            Op::ReserveUnknownTier(place, request) => {
                let mut request = self.codes_of(request);
                let at = place.index(request.len() + 1);
                request.insert(at, (TierCode::known(UNKNOWN_TIER), 1));
                self.reserve(TokenId::new_v4(), &request).await
            }
            Op::Retry(pick) => self.retry(pick).await,
            Op::Rebuild => self.rebuild().await,
            Op::FailedRebuild { switch_anyway } => self.failed_rebuild(*switch_anyway).await,
            Op::Release(pick, mode) => {
                let epoch = Epoch(self.model.epoch);
                self.release(self.model.token(pick), epoch, *mode).await
            }
            Op::ReleaseSuperseded(pick) => self.release_superseded(pick).await,
            Op::ReleaseStale(pick) => {
                let jti = self.model.pick_token(pick).unwrap_or_else(TokenId::new_v4);
                self.release(jti, self.other_epoch(), ReleaseMode::Return)
                    .await
            }
            Op::Confirm(pick) => self.confirm(self.model.token(pick)).await,
            Op::ConfirmOther(pick) => self.confirm_other(self.model.token(pick)).await,
            Op::ConfirmBatch(picks) => self.confirm_batch(picks).await,
            Op::Restock { pick, twice } => self.restock(pick, *twice).await,
            Op::RestockStale(pick) => self.restock_stale(pick).await,
        }
    }

    /// Compares everything Redis holds for the event with the model.
    async fn check(&self) -> Result<(), TestCaseError> {
        let snapshot = inventory::snapshot(&self.redis, self.event_id)
            .await
            .map_err(fail)?;
        prop_assert_eq!(snapshot.epoch, Some(Epoch(self.model.epoch)));
        let codes: BTreeSet<&TierCode> = snapshot.tiers.keys().collect();
        let expected: BTreeSet<&TierCode> = self.model.codes.iter().collect();
        prop_assert_eq!(codes, expected, "tiers in the inventory hash");

        let mut conn = self.redis.clone();
        let mut left = 0;
        for code in &self.model.codes {
            let stock = &snapshot.tiers[code];
            let capacity = self.model.capacity[code];
            let available = self.model.available(code);
            prop_assert_eq!(stock.capacity, i64::from(capacity), "capacity of {}", code);
            prop_assert!(stock.available >= 0, "{code} went negative: {stock:?}");
            prop_assert_eq!(
                stock.available,
                available,
                "{} available: capacity {} - sold {:?} - held {:?} - discarded {:?}",
                code,
                capacity,
                &self.model.sold[code],
                self.model.held(code),
                &self.model.discarded[code]
            );
            prop_assert!(
                (0..=i64::from(capacity)).contains(&stock.next),
                "{code}: next {} outside 0..={capacity}",
                stock.next
            );
            // The numbers below `next` that are free are exactly those nobody has: a free number
            // that is also sold or held would be handed out twice.
            let free: BTreeSet<u32> = redis::cmd("SMEMBERS")
                .arg(self.keys.free_numbers(code))
                .query_async(&mut conn)
                .await
                .map_err(fail)?;
            let taken = self.model.taken(code);
            let next = u32::try_from(stock.next).unwrap_or(0);
            let expected_free: BTreeSet<u32> = (1..=next).filter(|n| !taken.contains(n)).collect();
            prop_assert_eq!(free, expected_free, "free numbers of {}", code);
            let held = self.model.held(code).len() as i64;
            prop_assert_eq!(stock.held, held, "{} held", code);
            left += available + held;
        }

        let held: BTreeMap<String, Numbers> = snapshot
            .holds
            .into_iter()
            .map(|(jti, numbers)| (jti.to_string(), sorted(numbers)))
            .collect();
        let expected_held: BTreeMap<String, Numbers> = self
            .model
            .holds
            .iter()
            .map(|(jti, numbers)| (jti.to_string(), sorted(numbers.clone())))
            .collect();
        prop_assert_eq!(held, expected_held, "open holds");

        let deadlines: BTreeSet<String> = redis::cmd("ZRANGE")
            .arg(self.keys.holds())
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        let expected_deadlines: BTreeSet<String> =
            self.model.holds.keys().map(TokenId::to_string).collect();
        prop_assert_eq!(deadlines, expected_deadlines, "hold deadlines");

        let used: BTreeSet<String> = redis::cmd("SMEMBERS")
            .arg(self.keys.used_tokens())
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        let expected_used: BTreeSet<String> =
            self.model.used.iter().map(TokenId::to_string).collect();
        prop_assert_eq!(used, expected_used, "used tokens");

        let soldout: Option<String> = redis::cmd("HGET")
            .arg(self.keys.inventory())
            .arg("soldout")
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        let expected_soldout = if left == 0 { "1" } else { "0" };
        prop_assert_eq!(
            soldout.as_deref(),
            Some(expected_soldout),
            "soldout with {} left",
            left
        );

        let booked: Option<i64> = redis::cmd("HGET")
            .arg(self.keys.stats())
            .arg("booked_total")
            .query_async(&mut conn)
            .await
            .map_err(fail)?;
        prop_assert_eq!(booked.unwrap_or(0), self.model.booked_total, "booked_total");
        Ok(())
    }

    async fn delete_keys(&self) -> Result<(), RedisError> {
        support::delete_event_keys(&self.redis, self.event_id).await
    }
}

fn sorted(mut numbers: Numbers) -> Numbers {
    numbers.values_mut().for_each(|list| list.sort_unstable());
    numbers
}

async fn run(tiers: Vec<TierSpec>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let redis = RedisClient::connect_single(&support::redis_url())
        .await
        .map_err(|e| TestCaseError::fail(format!("connecting to redis: {e}")))?;
    let event_id = Uuid::new_v4();
    let mut case = Case {
        redis,
        event_id,
        keys: EventKeys::new(event_id),
        model: Model::default(),
    };
    let outcome = async {
        let first = TokenId::new_v4();
        let holder = HoldFor {
            fingerprint: "x",
            attempt: "x",
            claim: None,
        };
        let before = inventory::reserve(
            &case.redis,
            event_id,
            first,
            0,
            holder,
            &[(TierCode::known("x"), 1)],
        )
        .await
        .map_err(fail)?;
        prop_assert_eq!(before, Reservation::NotLoaded, "before the load");
        case.load(&tiers).await?;
        case.check().await?;
        for (step, op) in ops.iter().enumerate() {
            case.apply(op).await?;
            case.check()
                .await
                .map_err(|e| TestCaseError::fail(format!("after step {step} {op:?}: {e}")))?;
        }
        Ok(())
    }
    .await;
    // Codes are only known once loaded; on an early failure the model may be empty, so also
    // delete by the specs.
    case.model.codes = tiers.iter().map(|t| t.code.clone()).collect();
    case.delete_keys().await.map_err(fail)?;
    outcome
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reservations_match_the_model((tiers, ops) in scenario()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for one case");
        runtime.block_on(run(tiers, ops))?;
    }
}
