//! Values parsed at the edge, so invalid ones cannot reach the database or Redis.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use ticketing::queue::{Adaptive, WaitingRoom};
use ticketing::tier::TierCode;

/// A new event's tier, as the admin API receives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierDraft {
    /// 1–32 of `A-Z a-z 0-9 _ -`, unique within the event.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,32}$")]
    pub code: String,
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    #[schema(minimum = 0, maximum = 100000000)]
    pub price_cents: i64,
    #[schema(minimum = 1, maximum = 1000000)]
    pub capacity: i32,
}

/// The admin API's body for a new event.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventDraft {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(min_length = 1, max_length = 200)]
    pub venue_name: String,
    pub starts_at: DateTime<Utc>,
    /// Defaults to now.
    pub on_sale_at: Option<DateTime<Utc>>,
    /// Any fields of the waiting room; the rest take `WaitingRoom`'s defaults (off, 600
    /// admissions per minute, 1000 active, not paused, 600 s tokens, drain at once).
    pub waiting_room: Option<WaitingRoomChange>,
    /// Most tickets one booking may hold (default 8).
    #[schema(minimum = 1, maximum = 100)]
    pub max_per_booking: Option<i32>,
    #[schema(min_items = 1, max_items = 20)]
    pub tiers: Vec<TierDraft>,
}

pub const MAX_TIERS: usize = 20;

/// Any fields of a waiting room; the others keep their value (or, for a new event, the default).
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitingRoomChange {
    pub enabled: Option<bool>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub admission_per_minute: Option<u32>,
    #[schema(minimum = 1, maximum = 1000000)]
    pub max_active: Option<u32>,
    pub paused: Option<bool>,
    #[schema(minimum = 30, maximum = 86400)]
    pub token_ttl_s: Option<u32>,
    /// With the room off, how fast those still in line are let in (per minute); 0 = at once.
    #[schema(minimum = 0, maximum = 1000000)]
    pub drain_per_minute: Option<u32>,
    /// How far (percent) the tickets active buyers want may exceed what is left.
    #[schema(minimum = 0, maximum = 1000)]
    pub headroom_pct: Option<u32>,
    /// Reserve each buyer's wish at admission.
    pub hold_on_admission: Option<bool>,
    /// Adaptive admission's targets; `null` turns it off, absent keeps it as it is.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Adaptive>, nullable)]
    pub adaptive: Option<Option<Adaptive>>,
}

/// A field that may be absent (None), `null` (Some(None)) or a value.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

impl WaitingRoomChange {
    pub fn apply(&self, room: &mut WaitingRoom) {
        room.enabled = self.enabled.unwrap_or(room.enabled);
        room.admission_per_minute = self
            .admission_per_minute
            .unwrap_or(room.admission_per_minute);
        room.max_active = self.max_active.unwrap_or(room.max_active);
        room.paused = self.paused.unwrap_or(room.paused);
        room.token_ttl_s = self.token_ttl_s.unwrap_or(room.token_ttl_s);
        room.drain_per_minute = self.drain_per_minute.unwrap_or(room.drain_per_minute);
        room.headroom_pct = self.headroom_pct.unwrap_or(room.headroom_pct);
        room.hold_on_admission = self.hold_on_admission.unwrap_or(room.hold_on_admission);
        if let Some(adaptive) = self.adaptive {
            room.adaptive = adaptive;
        }
    }
}

/// A visitor id: 1–64 of `A-Z a-z 0-9 _ - . :`.
pub fn is_visitor_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn text_ok(s: &str, max: usize) -> bool {
    let trimmed = s.trim();
    !trimmed.is_empty() && trimmed.chars().count() <= max && !trimmed.chars().any(char::is_control)
}

impl EventDraft {
    /// The waiting room the draft asks for: the fields it names over the defaults.
    pub fn waiting_room(&self) -> WaitingRoom {
        let mut room = WaitingRoom::default();
        if let Some(change) = &self.waiting_room {
            change.apply(&mut room);
        }
        room
    }

    /// Every problem with the draft, or none.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if !text_ok(&self.name, 200) {
            problems.push("name must be 1-200 printable characters".into());
        }
        if !text_ok(&self.venue_name, 200) {
            problems.push("venue_name must be 1-200 printable characters".into());
        }
        if let Some(on_sale) = self.on_sale_at {
            if on_sale > self.starts_at {
                problems.push("on_sale_at must not be after starts_at".into());
            }
        }
        if let Some(max) = self.max_per_booking {
            if !(1..=100).contains(&max) {
                problems.push("max_per_booking must be 1-100".into());
            }
        }
        if self.waiting_room.is_some() {
            problems.extend(room_problems(&self.waiting_room()));
        }
        if self.tiers.is_empty() || self.tiers.len() > MAX_TIERS {
            problems.push(format!("an event needs 1-{MAX_TIERS} tiers"));
        }
        let mut codes = HashSet::new();
        for tier in &self.tiers {
            if TierCode::parse(&tier.code).is_none() {
                problems.push(format!(
                    "tier code {:?} must be 1-32 of A-Z a-z 0-9 _ -",
                    tier.code
                ));
            } else if !codes.insert(tier.code.as_str()) {
                problems.push(format!("tier code {:?} appears twice", tier.code));
            }
            if !text_ok(&tier.name, 100) {
                problems.push(format!(
                    "tier {:?}: name must be 1-100 printable characters",
                    tier.code
                ));
            }
            if !(0..=100_000_000).contains(&tier.price_cents) {
                problems.push(format!(
                    "tier {:?}: price_cents must be 0-100000000",
                    tier.code
                ));
            }
            if !(1..=1_000_000).contains(&tier.capacity) {
                problems.push(format!("tier {:?}: capacity must be 1-1000000", tier.code));
            }
        }
        problems
    }
}

/// Problems with waiting-room settings.
pub fn room_problems(room: &WaitingRoom) -> Vec<String> {
    let mut problems = Vec::new();
    if !(1..=1_000_000).contains(&room.admission_per_minute) {
        problems.push("admission_per_minute must be 1-1000000".into());
    }
    if !(1..=1_000_000).contains(&room.max_active) {
        problems.push("max_active must be 1-1000000".into());
    }
    if !(30..=86_400).contains(&room.token_ttl_s) {
        problems.push("token_ttl_s must be 30-86400".into());
    }
    if room.drain_per_minute > 1_000_000 {
        problems.push("drain_per_minute must be 0-1000000".into());
    }
    if room.headroom_pct > 1_000 {
        problems.push("headroom_pct must be 0-1000".into());
    }
    if let Some(adaptive) = room.adaptive {
        if !(1..=600_000).contains(&adaptive.target_p95_ms) {
            problems.push("adaptive.target_p95_ms must be 1-600000".into());
        }
        if adaptive.max_503_pct > 100 {
            problems.push("adaptive.max_503_pct must be 0-100".into());
        }
        if !(1..=1_000_000).contains(&adaptive.floor_per_minute) {
            problems.push("adaptive.floor_per_minute must be 1-1000000".into());
        } else if adaptive.floor_per_minute > room.admission_per_minute {
            problems.push("adaptive.floor_per_minute must not exceed admission_per_minute".into());
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visitor_ids_are_short_plain_strings() {
        assert!(is_visitor_id("3f6c1a52-0d4e-4a4b-9d0e-1c2b3a4d5e6f"));
        assert!(!is_visitor_id(""));
        assert!(!is_visitor_id(&"a".repeat(65)));
        assert!(!is_visitor_id("robert'); DROP TABLE events;--"));
        assert!(!is_visitor_id("../../etc/passwd"));
    }
}
