//! A waiting room's settings, how they reach Redis, and the queue's durable high-water marks.

use rand::Rng;
use redis::RedisResult;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Place, ALIVE_WINDOW_S, LONGEST_POLL_MS};
use crate::keys::EventKeys;
use crate::redis_client::RedisClient;

/// A waiting room's settings, as the admin API reads and writes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WaitingRoom {
    pub enabled: bool,
    #[schema(minimum = 1, maximum = 1000000)]
    pub admission_per_minute: u32,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_active: u32,
    pub paused: bool,
    #[schema(minimum = 30, maximum = 86400)]
    pub token_ttl_s: u32,
    /// With the room turned off, how fast the people still in line are let in, in order
    /// (per minute); 0 lets them all in at once.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1000000)]
    pub drain_per_minute: u32,
    /// Admission is a ceiling per tier: buyers are admitted while the tickets the active ones
    /// want stay within what is left plus this percentage (some admitted buyers book nothing).
    #[serde(default = "default_headroom_pct")]
    #[schema(minimum = 0, maximum = 1000)]
    pub headroom_pct: u32,
    /// Admission reserves the buyer's wish at once, held until the entry token expires or the
    /// buyer leaves; booking claims the hold, so an admitted buyer never finds the wish sold out.
    #[serde(default)]
    pub hold_on_admission: bool,
    /// Adaptive admission (off when null): the worker holds the booking p95 and the share of
    /// 503s under these targets by moving the admission rate between the floor and
    /// `admission_per_minute`, which stays the ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<Adaptive>,
}

/// The targets of adaptive admission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Adaptive {
    /// The booking p95 to stay under (ms).
    #[schema(minimum = 1, maximum = 600000)]
    pub target_p95_ms: u32,
    /// The share of booking answers that may be 503 (percent).
    #[schema(minimum = 0, maximum = 100)]
    pub max_503_pct: u32,
    /// The lowest admission rate (per minute) it may set.
    #[schema(minimum = 1, maximum = 1000000)]
    pub floor_per_minute: u32,
}

fn default_headroom_pct() -> u32 {
    DEFAULT_HEADROOM_PCT
}

/// 10 %: the default, and what the rehearsal's refusals suggest is enough.
pub const DEFAULT_HEADROOM_PCT: u32 = 10;

/// A waiting room as the `events` row stores it (the `wr_*`-era column names kept).
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct RoomColumns {
    pub wr_enabled: bool,
    pub admission_per_minute: i32,
    pub max_active: i32,
    pub paused: bool,
    pub token_ttl_s: i32,
    pub drain_per_minute: i32,
    pub headroom_pct: i32,
    pub hold_on_admission: bool,
    pub adaptive_target_p95_ms: Option<i32>,
    pub adaptive_max_503_pct: Option<i32>,
    pub adaptive_floor_per_minute: Option<i32>,
}

/// The columns of [`RoomColumns`], for a `SELECT` list (of `events`, aliased `e` or not).
pub const ROOM_COLUMNS: &str = "wr_enabled, admission_per_minute, max_active, paused, \
    token_ttl_s, drain_per_minute, headroom_pct, hold_on_admission, adaptive_target_p95_ms, \
    adaptive_max_503_pct, adaptive_floor_per_minute";

impl WaitingRoom {
    /// The settings as the `events` row stores them; a non-positive rate or size (which the admin
    /// API refuses, but a hand-edited row might hold) counts as 1, a negative drain rate or
    /// headroom as 0.
    pub fn from_columns(c: RoomColumns) -> Self {
        let positive = |n: i32| n.max(1) as u32;
        Self {
            enabled: c.wr_enabled,
            admission_per_minute: positive(c.admission_per_minute),
            max_active: positive(c.max_active),
            paused: c.paused,
            token_ttl_s: positive(c.token_ttl_s),
            drain_per_minute: c.drain_per_minute.max(0) as u32,
            headroom_pct: c.headroom_pct.max(0) as u32,
            hold_on_admission: c.hold_on_admission,
            adaptive: match (
                c.adaptive_target_p95_ms,
                c.adaptive_max_503_pct,
                c.adaptive_floor_per_minute,
            ) {
                (Some(p95), Some(share), Some(floor)) => Some(Adaptive {
                    target_p95_ms: positive(p95),
                    max_503_pct: share.clamp(0, 100) as u32,
                    floor_per_minute: positive(floor),
                }),
                _ => None,
            },
        }
    }

    /// The settings as the event's Redis config hash holds them, field by field: what
    /// [`sync_config`] writes and the reconciler compares.
    pub fn redis_fields(&self) -> [(&'static str, String); 8] {
        let flag = |b: bool| if b { "1" } else { "0" }.to_string();
        [
            ("enabled", flag(self.enabled)),
            (
                "admission_per_minute",
                self.admission_per_minute.to_string(),
            ),
            ("max_active", self.max_active.to_string()),
            ("paused", flag(self.paused)),
            ("token_ttl_s", self.token_ttl_s.to_string()),
            ("drain_per_minute", self.drain_per_minute.to_string()),
            ("headroom_pct", self.headroom_pct.to_string()),
            ("hold_on_admission", flag(self.hold_on_admission)),
        ]
    }
}

impl Default for WaitingRoom {
    fn default() -> Self {
        Self {
            enabled: false,
            admission_per_minute: 600,
            max_active: 1000,
            paused: false,
            token_ttl_s: 600,
            drain_per_minute: 0,
            headroom_pct: DEFAULT_HEADROOM_PCT,
            hold_on_admission: false,
            adaptive: None,
        }
    }
}

/// Which incarnation of an event's line Redis holds: drawn when its settings first reach a Redis
/// that lacks them, so a new one after a flush, restart or failover that lost the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Generation(pub u64);

impl redis::ToRedisArgs for Generation {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        out.write_arg(self.0.to_string().as_bytes())
    }
}

/// What Postgres remembers of a line, saved by the worker about once a second: how many arrivals
/// it gave and the highest place taken off its head. After a loss, new arrivals are numbered above
/// the first (plus a margin for the arrivals since the last save), and no receipt at or below the
/// second is put back in line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueMarks {
    pub arrivals: i64,
    pub admitted_through: Place,
}

/// Arrivals a line may have given since the worker last saved its marks (a second at 50,000
/// joins/s, twenty times over); costs 125 KB of liveness bitmap per loss.
pub const ARRIVAL_MARGIN: i64 = 1_000_000;

impl QueueMarks {
    pub async fn load(db: &PgPool, event_id: Uuid) -> sqlx::Result<Self> {
        let (arrivals, admitted_through): (i64, Place) = sqlx::query_as(
            "SELECT queue_arrivals, queue_admitted_through FROM events WHERE id = $1",
        )
        .bind(event_id)
        .fetch_optional(db)
        .await?
        .unwrap_or_default();
        Ok(Self {
            arrivals,
            admitted_through,
        })
    }

    /// Raises the saved marks to these (they never go down).
    pub async fn save(&self, db: &PgPool, event_id: Uuid) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE events
                SET queue_arrivals = GREATEST(queue_arrivals, $2),
                    queue_admitted_through = GREATEST(queue_admitted_through, $3)
              WHERE id = $1",
        )
        .bind(event_id)
        .bind(self.arrivals)
        .bind(self.admitted_through)
        .execute(db)
        .await?;
        Ok(())
    }
}

/// Why settings are written to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Created or changed by the operator (or found different from Postgres).
    Settings,
    /// Redis lost the event's line: restore it with these marks.
    AfterLoss(QueueMarks),
}

/// Whether Redis holds the event's settings: when it does not, settings written now are a
/// restore ([`Sync::AfterLoss`]), so an operator's change arriving first after a loss still
/// numbers new arrivals above everyone who was in line.
pub async fn config_exists(redis: &RedisClient, event_id: Uuid) -> RedisResult<bool> {
    redis::cmd("EXISTS")
        .arg(EventKeys::new(event_id).queue_config())
        .query_async(&mut redis.clone())
        .await
}

/// Writes an event's waiting-room settings to Redis, where every gateway and worker reads them on
/// its next request or tick. After a loss it also numbers new arrivals above the saved marks and,
/// if anyone was in line, holds admission for one longest poll interval so receipts bring them
/// back first. All in one transaction: no join can take an arrival number before the floor is
/// set, and several gateways restoring at once agree (first write wins).
pub async fn sync_config(
    redis: &RedisClient,
    event_id: Uuid,
    room: &WaitingRoom,
    on_sale_ms: i64,
    sync: Sync,
) -> RedisResult<()> {
    let keys = EventKeys::new(event_id);
    let mut pipe = redis::pipe();
    pipe.atomic();
    if let Sync::AfterLoss(marks) = sync {
        if marks.arrivals > 0 {
            // Redis's clock decides admission; the gateway's is close enough for a 22 s pause.
            let admit_after = chrono::Utc::now().timestamp_millis() + LONGEST_POLL_MS as i64;
            pipe.cmd("SET")
                .arg(keys.sequence())
                .arg(marks.arrivals + ARRIVAL_MARGIN)
                .arg("NX")
                .ignore()
                .cmd("HSETNX")
                .arg(keys.queue_config())
                .arg("admitted_through")
                .arg(marks.admitted_through)
                .ignore()
                .cmd("HSETNX")
                .arg(keys.queue_config())
                .arg("admit_after_ms")
                .arg(admit_after)
                .ignore();
        }
    }
    if room.adaptive.is_none() {
        // Adaptive admission turned off (or never on): the set rate applies again at once.
        pipe.cmd("HDEL")
            .arg(keys.queue_config())
            .arg(
                &[
                    "effective_per_minute",
                    "adaptive_reason",
                    "adapted_s",
                    "cut_s",
                ][..],
            )
            .ignore();
    }
    pipe.cmd("HSET")
        .arg(keys.queue_config())
        .arg(&room.redis_fields()[..])
        .arg("on_sale_ms")
        .arg(on_sale_ms)
        .arg("delivery_window_ms")
        .arg(super::DELIVERY_WINDOW_MS)
        .arg("page_gone_ms")
        .arg(super::PAGE_GONE_MS)
        .arg("fresh_undelivered_ms")
        .arg(super::FRESH_UNDELIVERED_MS)
        .arg("fresh_after_delivery_ms")
        .arg(super::FRESH_AFTER_DELIVERY_MS)
        .ignore()
        // A sale keeps the liveness window it started with: the windows are numbered by it, and
        // renumbering them mid-sale (a release with another window, or a test's shorter one
        // undone by an operator's change) makes every entry look silent until it polls again,
        // so the next admission step drops the head of the line.
        .cmd("HSETNX")
        .arg(keys.queue_config())
        .arg("alive_window_s")
        .arg(ALIVE_WINDOW_S)
        .ignore()
        .cmd("HSETNX")
        .arg(keys.queue_config())
        .arg("gen")
        .arg(Generation(rand::thread_rng().gen()))
        .ignore();
    pipe.query_async::<()>(&mut redis.clone()).await
}

static ADAPT: std::sync::LazyLock<redis::Script> = crate::lua_script!("adapt_rate.lua");

/// Why adaptive admission moves the rate (`adaptive_reason` in the admin view).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Cut to `keep_permille` of the rate: 70 %, less the further the p95 is over (its share
    /// of it), down to half.
    BookingP95AboveTarget {
        keep_permille: u32,
    },
    TooMany503s,
    /// Climb by `step_permille` of the set rate: 5 % while the slower of the 3 s and the 10 s
    /// p95 is at most half the target and the writers are under half busy, 1 % up to 80 % of
    /// either, nothing beyond (the edge is near, and the p95 lags it by the seconds a buyer
    /// takes from admission to booking).
    WithinTargets {
        step_permille: u32,
    },
    /// Within the targets, but the busiest instance's writers spend 80 % of their time writing
    /// or more: held where it is. Past all of their time, the queue behind them grows and the
    /// p95 follows seconds later, too late to stop a climb that was already past the edge.
    WritersNearFull,
    NothingMeasured,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookingP95AboveTarget { .. } => "booking_p95_above_target",
            Self::TooMany503s => "too_many_503s",
            Self::WithinTargets { .. } => "within_targets",
            Self::WritersNearFull => "writers_near_full",
            Self::NothingMeasured => "nothing_measured",
        }
    }

    /// The share of the rate a cut keeps (permille), or 1000.
    pub fn keep_permille(self) -> u32 {
        match self {
            Self::BookingP95AboveTarget { keep_permille } => keep_permille,
            Self::TooMany503s => 700,
            Self::WithinTargets { .. } | Self::WritersNearFull | Self::NothingMeasured => 1000,
        }
    }

    /// What a climb adds, in permille of the set rate (0 unless within the targets).
    pub fn step_permille(self) -> u32 {
        match self {
            Self::WithinTargets { step_permille } => step_permille,
            _ => 0,
        }
    }

    /// What the booking fleet's last seconds say against `targets`. The share of 503s is judged
    /// on at least 20 answers; the p95 on any booking made, over the last three seconds when
    /// the fleet publishes them (the ten-second figure lags a cut by ten seconds).
    pub fn of(targets: &Adaptive, health: &crate::live::BookingHealth) -> Self {
        let target_us = u64::from(targets.target_p95_ms) * 1000;
        let p95 = health.recent_p95_us.or(health.p95_us);
        if let Some(p95) = p95.filter(|p95| *p95 > target_us) {
            // At twice the target or more, half: the seconds of a 30 % cut and its wait to show
            // are seconds of bookings over the target.
            let keep_permille = (target_us * 1000 / p95).clamp(500, 700) as u32;
            return Self::BookingP95AboveTarget { keep_permille };
        }
        if health.answers >= 20
            && health.unavailable * 100 > health.answers * u64::from(targets.max_503_pct)
        {
            return Self::TooMany503s;
        }
        if health.p95_us.is_none() && health.answers < 20 {
            return Self::NothingMeasured;
        }
        // Climb by how far below the target the bookings are: a climb at one pace meets the edge
        // by surprise and overshoots it by the seconds the verdict lags (a memory of where the
        // last cut came from measured no better: BENCHMARKS.md).
        // The pace reads the slower of the last three seconds and the last ten: a few fast
        // seconds right after a cut are not yet room to climb fast.
        let steady = health.p95_us.max(health.recent_p95_us);
        let by_p95 = match steady {
            Some(p95) if p95 * 5 > target_us * 4 => 0,
            Some(p95) if p95 * 2 > target_us => 10,
            _ => 50,
        };
        // The writers' busy share leads the p95 (BENCHMARKS.md, the slowed backend): bookings
        // stay fast while the writers fill, so a climb read from the p95 alone went from a
        // fifth of what the writers take to past all of it inside the seconds the p95 lags.
        // From half busy the climb slows; from 80 % it stops.
        let by_writers = match health.writers_busy_permille {
            Some(busy) if busy >= 800 => return Self::WritersNearFull,
            Some(busy) if busy >= 500 => 10,
            _ => 50,
        };
        Self::WithinTargets {
            step_permille: by_p95.min(by_writers),
        }
    }
}

/// Adaptive admission's step for this second (`lua/adapt_rate.lua`): the effective rate now.
pub async fn adapt(
    redis: &RedisClient,
    event_id: Uuid,
    room: &WaitingRoom,
    targets: &Adaptive,
    verdict: Verdict,
) -> RedisResult<u32> {
    ADAPT
        .key(EventKeys::new(event_id).queue_config())
        .arg(room.admission_per_minute)
        .arg(targets.floor_per_minute.min(room.admission_per_minute))
        .arg(verdict.as_str())
        .arg(verdict.keep_permille())
        .arg(verdict.step_permille())
        .invoke_async(&mut redis.clone())
        .await
}

/// The effective rate and why, as adaptive admission last set them (None when it is off).
pub async fn adapted(
    redis: &RedisClient,
    event_id: Uuid,
) -> RedisResult<(Option<u32>, Option<String>)> {
    redis::cmd("HMGET")
        .arg(EventKeys::new(event_id).queue_config())
        .arg("effective_per_minute")
        .arg("adaptive_reason")
        .query_async(&mut redis.clone())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::BookingHealth;

    const TARGETS: Adaptive = Adaptive {
        target_p95_ms: 500,
        max_503_pct: 5,
        floor_per_minute: 60,
    };

    fn health(p95_ms: Option<u64>, recent_ms: Option<u64>) -> BookingHealth {
        BookingHealth {
            p95_us: p95_ms.map(|ms| ms * 1000),
            recent_p95_us: recent_ms.map(|ms| ms * 1000),
            answers: 100,
            unavailable: 0,
            writers_busy_permille: None,
        }
    }

    #[test]
    fn the_verdict_reads_the_last_seconds_and_moves_by_how_far_off_the_target_it_is() {
        // Ten seconds still over from before a cut, the last three within: within, but no
        // climb yet; once the ten are at 60 % of the target, a slow one.
        let verdict = Verdict::of(&TARGETS, &health(Some(900), Some(300)));
        assert_eq!(verdict, Verdict::WithinTargets { step_permille: 0 });
        let verdict = Verdict::of(&TARGETS, &health(Some(300), Some(200)));
        assert_eq!(verdict, Verdict::WithinTargets { step_permille: 10 });
        // Far below it, fast; close to it (over 80 %), not at all.
        assert_eq!(
            Verdict::of(&TARGETS, &health(None, Some(100))).step_permille(),
            50
        );
        assert_eq!(
            Verdict::of(&TARGETS, &health(None, Some(450))).step_permille(),
            0
        );
        assert_eq!(verdict.keep_permille(), 1000);
        // A fleet that does not publish the last seconds is judged on its ten.
        let verdict = Verdict::of(&TARGETS, &health(Some(600), None));
        assert_eq!(verdict.keep_permille(), 700);
        // Just over: 70 %. At 1.6 times the target, 62.5 %. At twice or more, half.
        assert_eq!(
            Verdict::of(&TARGETS, &health(None, Some(510))).keep_permille(),
            700
        );
        assert_eq!(
            Verdict::of(&TARGETS, &health(None, Some(800))).keep_permille(),
            625
        );
        assert_eq!(
            Verdict::of(&TARGETS, &health(None, Some(4000))).keep_permille(),
            500
        );
        let shed = BookingHealth {
            unavailable: 10,
            ..health(Some(100), Some(100))
        };
        assert_eq!(Verdict::of(&TARGETS, &shed), Verdict::TooMany503s);
        assert_eq!(Verdict::TooMany503s.keep_permille(), 700);
    }

    #[test]
    fn busy_writers_slow_the_climb_before_the_p95_shows_it() {
        let busy = |permille| BookingHealth {
            writers_busy_permille: Some(permille),
            ..health(Some(50), Some(50))
        };
        // Bookings far below the target: the writers' share decides.
        assert_eq!(Verdict::of(&TARGETS, &busy(200)).step_permille(), 50);
        assert_eq!(Verdict::of(&TARGETS, &busy(500)).step_permille(), 10);
        assert_eq!(Verdict::of(&TARGETS, &busy(800)), Verdict::WritersNearFull);
        assert_eq!(Verdict::WritersNearFull.step_permille(), 0);
        assert_eq!(Verdict::WritersNearFull.keep_permille(), 1000);
        // The slower of the two signals wins.
        let close = BookingHealth {
            writers_busy_permille: Some(100),
            ..health(Some(300), Some(300))
        };
        assert_eq!(Verdict::of(&TARGETS, &close).step_permille(), 10);
        // Over the target, busy or not: cut.
        let over = BookingHealth {
            writers_busy_permille: Some(900),
            ..health(None, Some(600))
        };
        assert!(matches!(
            Verdict::of(&TARGETS, &over),
            Verdict::BookingP95AboveTarget { .. }
        ));
    }
}
