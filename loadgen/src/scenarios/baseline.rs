//! The original app's booking algorithm, run at the same concurrency as a baseline: per-ticket
//! rows, one `SELECT … FOR UPDATE SKIP LOCKED` per tier, then one `UPDATE`, in one transaction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::postgres::PgPoolOptions;

use crate::stats::Recorder;

const TIERS: [&str; 3] = ["VIP", "FrontRow", "GA"];

pub async fn run(
    db_url: &str,
    concurrency: usize,
    duration: Duration,
    rows_per_tier: i64,
    recorder: &Recorder,
) -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(concurrency as u32 + 1)
        .connect(db_url)
        .await?;
    sqlx::raw_sql(
        "DROP SCHEMA IF EXISTS original_app CASCADE;
         CREATE SCHEMA original_app;
         CREATE TABLE original_app.tickets (
             id bigserial PRIMARY KEY, event_id int NOT NULL, tier text NOT NULL,
             status text NOT NULL DEFAULT 'available', booking_id bigint);
         CREATE INDEX ON original_app.tickets (event_id, tier, status);",
    )
    .execute(&db)
    .await?;
    for tier in TIERS {
        sqlx::query("INSERT INTO original_app.tickets (event_id, tier) SELECT 1, $1 FROM generate_series(1, $2)")
            .bind(tier)
            .bind(rows_per_tier)
            .execute(&db)
            .await?;
    }
    sqlx::query("ANALYZE original_app.tickets")
        .execute(&db)
        .await?;
    let db = Arc::new(db);
    let deadline = Instant::now() + duration;
    let workers = (0..concurrency).map(|_| {
        let (db, recorder) = (db.clone(), recorder.clone());
        tokio::spawn(async move {
            while Instant::now() < deadline {
                let wants: Vec<i64> = {
                    let mut rng = rand::thread_rng();
                    let mut wants: Vec<i64> = TIERS.iter().map(|_| rng.gen_range(0..=1)).collect();
                    if wants.iter().all(|w| *w == 0) {
                        wants[2] = 1;
                    }
                    wants
                };
                let started = Instant::now();
                let outcome = match book_original(&db, &wants).await {
                    Ok(true) => "booked",
                    Ok(false) => "short",
                    Err(_) => "error",
                };
                recorder.record(
                    "original algorithm (SKIP LOCKED)",
                    started.elapsed(),
                    outcome,
                );
            }
        })
    });
    for worker in workers.collect::<Vec<_>>() {
        worker.await?;
    }
    Ok(())
}

async fn book_original(db: &sqlx::PgPool, wants: &[i64]) -> sqlx::Result<bool> {
    let mut tx = db.begin().await?;
    let mut ids: Vec<i64> = Vec::new();
    for (tier, want) in TIERS.iter().zip(wants) {
        let locked: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM original_app.tickets WHERE event_id = 1 AND tier = $1 AND status = 'available'
              LIMIT $2 FOR UPDATE SKIP LOCKED",
        )
        .bind(tier)
        .bind(*want)
        .fetch_all(&mut *tx)
        .await?;
        if (locked.len() as i64) < *want {
            tx.rollback().await?;
            return Ok(false);
        }
        ids.extend(locked);
    }
    let booking: i64 = rand::thread_rng().gen_range(1..i64::MAX);
    sqlx::query(
        "UPDATE original_app.tickets SET status = 'sold', booking_id = $1 WHERE id = ANY($2)",
    )
    .bind(booking)
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
