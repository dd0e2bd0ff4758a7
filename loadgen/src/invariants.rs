//! The ledger checked after a run: every booking answered 201 is in Postgres with exactly its
//! tickets, Postgres never above capacity, Redis and Postgres agree (sold = capacity -
//! available, so no hold was left behind either), no booking without tickets, no number sold
//! twice, and no database session left idle inside a transaction.

use serde::Serialize;
use uuid::Uuid;

use crate::client::Api;

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub promise: String,
    pub holds: bool,
    pub detail: String,
}

/// The checks of one room of a run, each promise named after the room, once holds given back by
/// leaving buyers have returned (the sweeper's next pass).
pub async fn check_room(
    db_url: &str,
    api: &Api,
    event: Uuid,
    room: &str,
) -> anyhow::Result<Vec<Check>> {
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut checks = check(db_url, api, event).await?;
    for check in &mut checks {
        check.promise = format!("{room}: {}", check.promise);
    }
    Ok(checks)
}

/// Prints each check, held or broken.
pub fn print(checks: &[Check]) {
    for c in checks {
        println!(
            "  [{}] {} ({})",
            if c.holds { "ok" } else { "BROKEN" },
            c.promise,
            c.detail
        );
    }
}

pub async fn check(db_url: &str, api: &Api, event: Uuid) -> anyhow::Result<Vec<Check>> {
    let db = sqlx::PgPool::connect(db_url).await?;
    // A run has just written tens of thousands of rows that autovacuum may not have counted yet;
    // without fresh statistics the planner can pick a nested loop over every ticket per booking
    // for the anti-join below, which took minutes on a 55,000-booking run.
    sqlx::raw_sql("ANALYZE bookings, tickets")
        .execute(&db)
        .await?;
    let tiers: Vec<(String, i32, i64, i64)> = sqlx::query_as(
        "SELECT t.code, t.capacity, count(k.id), count(DISTINCT k.number)
           FROM ticket_tiers t
           LEFT JOIN tickets k ON k.tier_id = t.id AND k.status = 'issued'
          WHERE t.event_id = $1 GROUP BY t.id ORDER BY t.position",
    )
    .bind(event)
    .fetch_all(&db)
    .await?;
    let available = api.availability(event).await?;
    let mut checks = Vec::new();
    for (code, capacity, sold, distinct) in tiers {
        let left = available[&code].as_i64();
        checks.push(Check {
            promise: format!("{code}: tickets in postgres = capacity - availability"),
            holds: left == Some(i64::from(capacity) - sold),
            detail: format!("capacity {capacity}, sold {sold}, redis available {left:?}"),
        });
        checks.push(Check {
            promise: format!("{code}: never above capacity, no number twice"),
            holds: sold <= i64::from(capacity) && distinct == sold,
            detail: format!("{sold} sold, {distinct} distinct numbers, capacity {capacity}"),
        });
    }
    let empty: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings b WHERE b.event_id = $1 AND b.status = 'confirmed'
            AND NOT EXISTS (SELECT 1 FROM tickets k WHERE k.booking_id = b.id AND k.status = 'issued')",
    )
    .bind(event)
    .fetch_one(&db)
    .await?;
    checks.push(Check {
        promise: "no booking without its tickets".into(),
        holds: empty == 0,
        detail: format!("{empty} confirmed bookings without tickets"),
    });

    let answered = api.answered.lock().expect("answered lock").clone();
    let ids: Vec<Uuid> = answered.iter().map(|(id, _)| *id).collect();
    let stored: Vec<(Uuid, i64)> = sqlx::query_as(
        "SELECT b.id, count(k.id) FROM bookings b
           LEFT JOIN tickets k ON k.booking_id = b.id
          WHERE b.id = ANY($1) GROUP BY b.id",
    )
    .bind(&ids)
    .fetch_all(&db)
    .await?;
    let stored: std::collections::HashMap<Uuid, i64> = stored.into_iter().collect();
    let missing = answered
        .iter()
        .filter(|(id, tickets)| stored.get(id) != Some(&(*tickets as i64)))
        .count();
    checks.push(Check {
        promise: "every booking answered 201 is in postgres with its tickets".into(),
        holds: missing == 0,
        detail: format!(
            "{} answered 201, {missing} missing or with other tickets",
            answered.len()
        ),
    });

    // The sessions of the services under test: none may sit inside a transaction nobody ends
    // (the statement timeout is 5 s; a booking's transaction lasts milliseconds).
    let stuck: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
          WHERE datname = current_database() AND state LIKE 'idle in transaction%'
            AND now() - state_change > interval '5 seconds'",
    )
    .fetch_one(&db)
    .await?;
    checks.push(Check {
        promise: "no database session idle in a transaction".into(),
        holds: stuck == 0,
        detail: format!("{stuck} sessions idle in a transaction for over 5 s"),
    });
    Ok(checks)
}
