//! One booking, as a small state machine: reserved (Redis) → written (Postgres, by the group
//! commit writers) → confirmed, or released.
//!
//! Every step runs in a task of its own (`ticketing::detached`): a client that goes away, or the
//! request timeout, drops only the handler's wait for the answer, never a step half-done. The
//! rules each step keeps:
//! - a hold is continued, not refused, when the same token retries the same request (the
//!   reservation id is the token's `jti`): a lost answer never burns a token;
//! - a write is never started after half the hold, and lasts at most the pool's acquire timeout
//!   plus the statement timeout, so a hold's deadline outlives any write of its numbers (the
//!   service refuses to start with settings that break this, see `config`);
//! - what Postgres has, or may yet have, is never put back on sale: when a write's outcome is
//!   unknown, Postgres is asked by the token's `jti`; if it cannot yet say, the hold is kept and
//!   the sweeper decides after the deadline; a `jti` conflict never releases the hold;
//! - a failing attempt returns a hold to sale only when no other attempt ever had it: a hold it
//!   continued may be in the write queue, in a batch or committing under the attempt that made
//!   it, so it is looked up and otherwise left to the sweeper (which waits for in-flight writes);
//! - a hold is confirmed with the booking's numbers as Postgres has them: a hold of other
//!   numbers (the token reserved afresh after its booking was written) goes back on sale;
//! - a ticket-number conflict (Redis drifted) rebuilds the event only while Redis still holds the
//!   epoch the conflict was found in: one rebuild per wave of conflicts, not one per order.

use std::sync::Arc;

use ticketing::inventory::{self, Confirmation, Epoch, HoldFor, Numbers, ReleaseMode, Reservation};
use ticketing::queue;
use ticketing::rebuild::{self, When};
use ticketing::token::{EntryClaims, TokenId};
use tokio::time::Instant;
use uuid::Uuid;

use crate::db::bookings::{self, BookingRow, NewBooking, StoredBooking, Written};
use crate::domain::{BookingStatus, Order};
use crate::error::ApiError;
use crate::state::AppState;
use crate::tiers::EventTiers;
use crate::writer::Rejected;

/// A parsed, authorised booking request, ready to reserve.
pub struct Checkout {
    pub order: Order,
    pub claims: EntryClaims,
    pub idempotency_key: Option<String>,
    pub fingerprint: Vec<u8>,
    pub tiers: Arc<EventTiers>,
}

/// Numbers held in Redis for this checkout. `attempt` names this checkout to the hold: a retry
/// with the same token that continues the hold takes it over, and this checkout then no longer
/// releases it. `continued`: the hold was another attempt's before (whose write may be in flight).
struct Reserved {
    attempt: String,
    epoch: Epoch,
    numbers: Numbers,
    continued: bool,
    at: Instant,
}

impl Checkout {
    /// Runs the checkout to its end in a task of its own and returns the stored booking.
    pub async fn run(self, state: AppState) -> Result<StoredBooking, ApiError> {
        ticketing::detached::finish(async move { self.complete(&state).await }).await
    }

    async fn complete(&self, state: &AppState) -> Result<StoredBooking, ApiError> {
        let reserved = self.reserve(state).await?;
        let new = match self.new_booking(&reserved) {
            Ok(new) => new,
            Err(e) => return self.give_back(state, &reserved, e).await,
        };
        let booking_id = new.id;
        let written = self.write(state, &reserved, new).await;
        self.settle(state, &reserved, booking_id, written).await
    }

    async fn reserve(&self, state: &AppState) -> Result<Reserved, ApiError> {
        let fingerprint = hex(&self.fingerprint);
        let attempt = Uuid::new_v4().simple().to_string();
        let mut holder = HoldFor {
            fingerprint: &fingerprint,
            attempt: &attempt,
            claim: Some(self.claims.sub),
        };
        let hold_ms = state.config.hold_ttl.as_millis() as u64;
        let event_id = self.order.event_id;
        let jti = self.claims.jti;
        let quantities = &self.order.quantities;
        let mut reservation =
            inventory::reserve(&state.redis, event_id, jti, hold_ms, holder, quantities).await?;
        if let Reservation::ClaimDiffers(epoch) = reservation {
            // The buyer books something else than the wish admission reserved: that hold goes
            // back on sale first (anyone may take it meanwhile: the buyer changed their mind).
            inventory::release(
                &state.redis,
                event_id,
                epoch,
                inventory::admission_hold_id(self.claims.sub),
                Some(inventory::ADMISSION_ATTEMPT),
                ReleaseMode::Return,
                &self.tiers.codes(),
            )
            .await?;
            holder.claim = None;
            reservation =
                inventory::reserve(&state.redis, event_id, jti, hold_ms, holder, quantities)
                    .await?;
        }
        if reservation == Reservation::NotLoaded {
            // Redis lost this event (restart, flush, failover): rebuild it from Postgres, fenced
            // against in-flight writes, then try once more.
            rebuild::rebuild_inventory(&state.db, &state.redis, event_id, When::Missing)
                .await
                .map_err(|e| {
                    tracing::warn!(error = ?e, "inventory rebuild failed");
                    ApiError::unavailable("ticket inventory is being restored; try again")
                })?;
            reservation =
                inventory::reserve(&state.redis, event_id, jti, hold_ms, holder, quantities)
                    .await?;
        }
        match reservation {
            Reservation::Held {
                epoch,
                numbers,
                continued,
            } => {
                if continued {
                    metrics::counter!("booking_holds_continued_total").increment(1);
                }
                Ok(Reserved {
                    attempt,
                    epoch,
                    numbers,
                    continued,
                    at: Instant::now(),
                })
            }
            Reservation::Short {
                shortfall,
                sold_out,
            } => {
                if sold_out {
                    state.sold_out.remember(event_id);
                }
                // Told no: its admission slot and counted demand go to the next in line, so
                // max_active never fills with buyers already refused. Its token stays valid for
                // what is left. A failure here costs only that slot's time, not the answer.
                match queue::give_back_admission(&state.redis, event_id, self.claims.sub).await {
                    Ok(given) => {
                        if given {
                            metrics::counter!("admission_slots_given_back_total").increment(1);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot give back the admission slot"),
                }
                Err(ApiError::InsufficientInventory(shortfall))
            }
            Reservation::UnknownTier(code) => {
                Err(ApiError::invalid(format!("unknown tier {code:?}")))
            }
            Reservation::DuplicateTier(code) => {
                Err(ApiError::invalid(format!("tier {code:?} listed twice")))
            }
            Reservation::NotLoaded => Err(ApiError::unavailable(
                "ticket inventory is being restored; try again",
            )),
            Reservation::ClaimDiffers(_) => Err(ApiError::unavailable(
                "your reserved tickets are being returned; try again",
            )),
            Reservation::TokenUsed => Err(ApiError::TokenUsed),
            // This token still holds numbers for an earlier, different request whose outcome is
            // not settled (its write may be in flight): not a reason to send the buyer to the
            // back. Once that hold is confirmed or released, the answer is final.
            Reservation::OtherRequest => Err(ApiError::unavailable(
                "your previous booking with this pass is still being settled; try again shortly",
            )),
        }
    }

    fn new_booking(&self, reserved: &Reserved) -> Result<NewBooking, ApiError> {
        let mut tickets = Vec::new();
        for (code, list) in &reserved.numbers {
            let tier = self.tiers.by_code(code).ok_or_else(|| {
                ApiError::from(anyhow::anyhow!("redis returned unknown tier {code}"))
            })?;
            tickets.extend(list.iter().map(|n| (tier.id, tier.capacity, *n)));
        }
        Ok(NewBooking {
            // Time first (UUIDv7): bookings' primary key and the tickets' (booking_id, id) take
            // new rows at their right edge, not on random pages (migrations/20261207*). Its 74
            // random bits keep it unguessable; reading a booking needs its token anyway.
            id: Uuid::now_v7(),
            event_id: self.order.event_id,
            buyer_email: self.order.buyer_email.clone(),
            token_jti: self.claims.jti,
            queue_id: self.claims.sub,
            idempotency_key: self.idempotency_key.clone(),
            request_hash: self.fingerprint.clone(),
            total_cents: self.order.total_cents,
            epoch: reserved.epoch,
            tickets,
        })
    }

    async fn write(
        &self,
        state: &AppState,
        reserved: &Reserved,
        new: NewBooking,
    ) -> Result<Written, ApiError> {
        // Past half the hold, the sweeper may be about to release these numbers: never start a
        // write then. Nor wait in the queue longer than the configured bound.
        let write_by = (reserved.at + state.config.hold_ttl / 2)
            .min(Instant::now() + state.config.write_queue_wait);
        state
            .writer
            .write(new, write_by)
            .await
            .map_err(|rejected| match rejected {
                Rejected::Busy => {
                    metrics::counter!("booking_writes_shed_total").increment(1);
                    ApiError::unavailable("too many bookings at once; try again")
                }
                Rejected::Closed => {
                    ApiError::unavailable("the booking service is shutting down; try again")
                }
            })
    }

    async fn settle(
        &self,
        state: &AppState,
        reserved: &Reserved,
        booking_id: Uuid,
        written: Result<Written, ApiError>,
    ) -> Result<StoredBooking, ApiError> {
        let written = match written {
            Ok(written) => written,
            // Never queued: nothing of this attempt can be in Postgres.
            Err(e) => return self.give_back(state, reserved, e).await,
        };
        match written {
            Written::Booked {
                created_at,
                tickets,
            } => {
                let stored = StoredBooking {
                    booking: BookingRow {
                        id: booking_id,
                        event_id: self.order.event_id,
                        status: BookingStatus::Confirmed,
                        buyer_email: self.order.buyer_email.clone(),
                        token_jti: self.claims.jti,
                        idempotency_key: self.idempotency_key.clone(),
                        request_hash: self.fingerprint.clone(),
                        total_cents: self.order.total_cents,
                        created_at,
                    },
                    tickets,
                };
                self.confirm(state, &stored);
                metrics::counter!("tickets_sold_total").increment(stored.tickets.len() as u64);
                Ok(stored)
            }
            Written::Fenced => {
                // Postgres's inventory epoch moved past the one these numbers came from. Undo the
                // hold, then bring Redis to the new epoch so a retry can succeed.
                self.release(state, reserved, ReleaseMode::Return).await;
                if let Err(e) = rebuild::rebuild_inventory(
                    &state.db,
                    &state.redis,
                    self.order.event_id,
                    When::Missing,
                )
                .await
                {
                    tracing::warn!(error = ?e, "rebuild after a fenced write failed; left to the reconciler");
                }
                Err(ApiError::unavailable(
                    "ticket inventory was restored meanwhile; try again",
                ))
            }
            Written::TokenTaken => {
                // Another write with this token landed first (a retry racing its first attempt).
                // Its numbers are these very ones: keep the hold, answer what Postgres has.
                self.resolve(state).await
            }
            Written::NumberTaken => {
                // Redis handed out a number Postgres has sold: Redis drifted. Keep the numbers
                // out of sale; rebuild the event from Postgres, unless another order that met the
                // same drift has already.
                metrics::counter!("inventory_conflicts_total").increment(1);
                tracing::error!("ticket number conflict: redis drifted from postgres");
                self.release(state, reserved, ReleaseMode::Discard).await;
                let _ = rebuild::rebuild_inventory(
                    &state.db,
                    &state.redis,
                    self.order.event_id,
                    When::DriftedAt(reserved.epoch),
                )
                .await;
                Err(ApiError::unavailable(
                    "ticket inventory is being repaired; try again",
                ))
            }
            Written::Refused(why) => {
                let error = ApiError::from(anyhow::anyhow!("postgres refused a booking: {why}"));
                self.give_back(state, reserved, error).await
            }
            Written::TooLate => {
                let error = ApiError::unavailable("the booking took too long; try again");
                self.give_back(state, reserved, error).await
            }
            Written::Failed { unavailable, error } => {
                let error = if unavailable {
                    tracing::warn!(%error, "booking write failed");
                    ApiError::unavailable("the database is busy or unreachable; try again")
                } else {
                    ApiError::from(anyhow::anyhow!("booking write failed: {error}"))
                };
                self.give_back(state, reserved, error).await
            }
            Written::Unknown(error) => {
                tracing::warn!(%error, "booking write outcome unknown; asking postgres");
                metrics::counter!("booking_writes_ambiguous_total").increment(1);
                self.resolve(state).await
            }
        }
    }

    /// This attempt's own write failed before anything of it was committed (or was never
    /// queued). A hold only this attempt ever had goes back on sale. A hold it continued from an
    /// earlier attempt of the same token may still become that attempt's booking (queued, in a
    /// batch, or committing): it is never returned from here. Postgres is asked; if it has the
    /// booking, that is the answer, otherwise the hold stays for the next retry (which continues
    /// it) or for the sweeper, which waits for in-flight writes before it releases anything.
    async fn give_back(
        &self,
        state: &AppState,
        reserved: &Reserved,
        error: ApiError,
    ) -> Result<StoredBooking, ApiError> {
        if !reserved.continued {
            self.release(state, reserved, ReleaseMode::Return).await;
            return Err(error);
        }
        metrics::counter!("booking_holds_kept_for_earlier_attempt_total").increment(1);
        match self.resolve(state).await {
            // Nothing in Postgres yet: the earlier attempt may still commit. This attempt's own
            // reason is the better answer (an overload says so), and it is retryable as well.
            Err(ref again) if again.is_unavailable() && error.is_unavailable() => Err(error),
            other => other,
        }
    }

    /// The outcome of a write Postgres may or may not have: asked by the token's `jti` (unique
    /// per booking). Found: the hold is confirmed with the booking's numbers (if it held other
    /// numbers, they go back on sale), and the booking is this checkout's answer when it is for
    /// the same request. Not found, or Postgres cannot answer: the write may still be in flight,
    /// so the hold is kept for the sweeper to decide after its deadline, and the buyer retries
    /// with the same token (continuing the hold).
    async fn resolve(&self, state: &AppState) -> Result<StoredBooking, ApiError> {
        match bookings::find_by_token(&state.db, self.claims.jti).await {
            Ok(Some(stored)) => {
                self.confirm(state, &stored);
                if stored.booking.request_hash == self.fingerprint {
                    Ok(stored)
                } else {
                    Err(ApiError::TokenUsed)
                }
            }
            Ok(None) | Err(_) => Err(ApiError::unavailable(
                "the booking's outcome is not known yet; try again with the same token",
            )),
        }
    }

    /// Ends the hold of a booking Postgres has, with the booking's numbers as Postgres has them.
    /// Off the answer's path: if it fails, the sweeper finds the booking and confirms the hold.
    fn confirm(&self, state: &AppState, stored: &StoredBooking) {
        let mut booked = Numbers::new();
        for ticket in &stored.tickets {
            if let Some(tier) = self.tiers.by_id(ticket.tier_id) {
                booked
                    .entry(tier.code.clone())
                    .or_default()
                    .push(ticket.number);
            }
        }
        state.confirmer.confirm(
            self.order.event_id,
            self.tiers.codes(),
            Confirmation {
                jti: self.claims.jti,
                queue_id: self.claims.sub,
                booked,
            },
        );
    }

    async fn release(&self, state: &AppState, reserved: &Reserved, mode: ReleaseMode) {
        if mode == ReleaseMode::Return {
            state.sold_out.forget(self.order.event_id);
        }
        let released = inventory::release(
            &state.redis,
            self.order.event_id,
            reserved.epoch,
            self.claims.jti,
            Some(&reserved.attempt),
            mode,
            &self.tiers.codes(),
        )
        .await;
        if let Err(e) = released {
            // The hold expires and the queue-worker releases it.
            tracing::warn!(error = %e, "release failed; left to the hold sweeper");
        }
    }
}

/// The first answer to a retried request with the same `Idempotency-Key`, or `token_used` for a
/// token that booked with another key (or none). None when the token has no booking.
pub async fn replay(
    state: &AppState,
    jti: TokenId,
    key: &str,
    fingerprint: &[u8],
) -> Result<Option<Result<StoredBooking, ApiError>>, ApiError> {
    let Some(stored) = bookings::find_by_token(&state.db, jti).await? else {
        return Ok(None);
    };
    let booking = &stored.booking;
    Ok(Some(if booking.idempotency_key.as_deref() != Some(key) {
        Err(ApiError::TokenUsed)
    } else if booking.request_hash != fingerprint {
        Err(ApiError::IdempotencyKeyReused)
    } else {
        Ok(stored)
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
