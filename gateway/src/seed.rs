//! The sample data: the original app's venues, events and tiers, plus one hot on-sale event with a
//! waiting room. Idempotent: an event that exists (same name and venue) is left alone.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::db::events;
use crate::domain::{EventDraft, TierDraft, WaitingRoomChange};

fn tier(code: &str, name: &str, price_cents: i64, capacity: i32) -> TierDraft {
    TierDraft {
        code: code.into(),
        name: name.into(),
        price_cents,
        capacity,
    }
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .expect("seed dates are valid RFC 3339")
        .with_timezone(&Utc)
}

/// Every event of the sample data.
pub fn sample_events() -> Vec<EventDraft> {
    let small_tiers = || {
        vec![
            tier("VIP", "VIP", 10_000, 5),
            tier("FrontRow", "Front Row", 5_000, 5),
            tier("GA", "General Admission", 1_000, 10),
        ]
    };
    let mut drafts = Vec::new();
    for (venue, rock, jazz) in [
        (
            "Madison Square Garden",
            "2027-03-12T01:00:00Z",
            "2027-03-19T01:00:00Z",
        ),
        ("The Forum", "2027-04-09T03:00:00Z", "2027-04-16T03:00:00Z"),
    ] {
        for (name, starts) in [("Rock Concert", rock), ("Jazz Night", jazz)] {
            drafts.push(EventDraft {
                name: name.into(),
                venue_name: venue.into(),
                starts_at: at(starts),
                on_sale_at: Some(at("2026-01-01T00:00:00Z")),
                waiting_room: None,
                max_per_booking: None,
                tiers: small_tiers(),
            });
        }
    }
    drafts.push(EventDraft {
        name: "Stadium Tour: Opening Night".into(),
        venue_name: "Madison Square Garden".into(),
        starts_at: at("2027-02-20T01:00:00Z"),
        on_sale_at: Some(at("2026-01-01T00:00:00Z")),
        waiting_room: Some(WaitingRoomChange {
            enabled: Some(true),
            admission_per_minute: Some(600),
            max_active: Some(2_000),
            ..WaitingRoomChange::default()
        }),
        max_per_booking: Some(6),
        tiers: vec![
            tier("VIP", "VIP", 25_000, 2_000),
            tier("FrontRow", "Front Row", 12_000, 5_000),
            tier("GA", "General Admission", 4_500, 50_000),
        ],
    });
    drafts
}

/// Inserts the sample events that are missing; returns how many it inserted.
pub async fn seed(db: &PgPool) -> anyhow::Result<usize> {
    let mut inserted = 0;
    for draft in sample_events() {
        if events::exists_named(db, &draft.name, &draft.venue_name).await? {
            continue;
        }
        let mut tx = db.begin().await?;
        events::insert(&mut tx, &draft).await?;
        tx.commit().await?;
        inserted += 1;
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_events_are_valid() {
        for draft in sample_events() {
            assert_eq!(draft.problems(), Vec::<String>::new(), "{}", draft.name);
        }
    }
}
