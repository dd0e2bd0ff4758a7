//! The line against adversaries: a bot that re-rolls its pre-queue lot gains nothing, made-up
//! queue and event ids cost Postgres nothing each, and the admin API is not left open with the
//! example's placeholder token.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::processes::GatewayProcess;
use system_tests::{Options, System};
use ticketing::keys::EventKeys;
use uuid::Uuid;

/// A bot with 300 identities joins the pre-queue 30 s before the opening. Each identity reads
/// every answer it gets (the cadence `poll_after_ms`, the estimate, the line) to infer where its
/// lot fell, and leaves and joins again with the same visitor id, up to 5 times, until the
/// inference says it is near the front. Among 700 honest visitors who join once, the bot's
/// identities must stand where chance puts them: mean percentile 0.45-0.55.
#[sqlx::test(migrations = "../migrations")]
async fn re_rolling_the_pre_queue_lot_gains_a_bot_nothing(db: PgPool) {
    let system = System::start_with(db, Options::default()).await;
    let on_sale_at = chrono::Utc::now() + chrono::Duration::seconds(30);
    let event = system
        .create_event_from(json!({
            "name": format!("lottery {}", Uuid::new_v4()),
            "venue_name": "Lottery Hall",
            "starts_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
            "on_sale_at": on_sale_at.to_rfc3339(),
            "waiting_room": {"enabled": true, "admission_per_minute": 60, "max_active": 10, "paused": true, "token_ttl_s": 600},
            "tiers": [{"code": "GA", "name": "GA", "price_cents": 1000, "capacity": 100}],
        }))
        .await;

    let honest = futures::stream::iter(0..700)
        .map(|i| {
            let system = &system;
            async move { system.join_line(event, &format!("honest-{i}")).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    assert_eq!(honest.len(), 700);

    let bots = futures::stream::iter(0..300)
        .map(|i| {
            let system = &system;
            async move { re_roll(system, event, on_sale_at, &format!("bot-{i}")).await }
        })
        .buffer_unordered(32)
        .collect::<Vec<String>>()
        .await;

    let waiting = EventKeys::new(event).waiting();
    let mut redis = system.redis.clone();
    let total: i64 = redis::cmd("ZCARD")
        .arg(&waiting)
        .query_async(&mut redis)
        .await
        .expect("line length");
    assert_eq!(total, 1000, "every visitor in line once");
    let mut percentiles = Vec::new();
    for queue_id in &bots {
        let id: Uuid = queue_id.parse().expect("queue id");
        let rank: i64 = redis::cmd("ZRANK")
            .arg(&waiting)
            .arg(id.as_bytes().as_slice())
            .query_async(&mut redis)
            .await
            .expect("rank");
        percentiles.push(rank as f64 / total as f64);
    }
    let mean = percentiles.iter().sum::<f64>() / percentiles.len() as f64;
    assert!(
        (0.45..=0.55).contains(&mean),
        "the bot's identities stand at mean percentile {mean:.3} of the line (0 = front)"
    );
}

/// One bot identity: joins, infers its lot's share of the line from the answer, and leaves and
/// joins again (up to 5 times) while that says it is behind the front fifth. Returns the queue
/// id it ends with.
async fn re_roll(
    system: &System,
    event: Uuid,
    on_sale_at: chrono::DateTime<chrono::Utc>,
    visitor: &str,
) -> String {
    let mut rerolls = 0;
    loop {
        let (status, joined) = system.join(event, visitor).await;
        assert_eq!(status, 202, "{joined}");
        let queue_id = joined["queue_id"].as_str().expect("queue id").to_string();
        let (_, polled) = system.poll(&queue_id).await;
        let share = inferred_share(&polled, on_sale_at);
        if share < 0.2 || rerolls == 5 {
            return queue_id;
        }
        let left = system
            .http
            .delete(format!("{}/api/queue/{queue_id}", system.gateway))
            .send()
            .await
            .expect("leave");
        assert!(left.status().is_success(), "leaving: {}", left.status());
        rerolls += 1;
    }
}

/// Where an answer puts the entry's lot, as a share of the line (0 front, 1 back), by every
/// sign a pre-queue answer could carry: the cadence beyond the time to the opening (which the
/// release before this one spread by the lot), else 0.5.
fn inferred_share(status: &Value, on_sale_at: chrono::DateTime<chrono::Utc>) -> f64 {
    let until_open = (on_sale_at - chrono::Utc::now()).num_milliseconds() as f64;
    match status["poll_after_ms"].as_f64() {
        Some(after) => ((after - until_open - 500.0) / 20_000.0).clamp(0.0, 1.0),
        None => 0.5,
    }
}

/// 5,000 polls of made-up queue ids (random ones, and ones carrying a real event's short id)
/// and look-ups of made-up event ids: every answer 404, and Postgres sees fewer than 50
/// transactions from all of them (the set of known events answers; it refreshes at most ten
/// times a second).
#[sqlx::test(migrations = "../migrations")]
async fn made_up_ids_cost_postgres_nothing_each(db: PgPool) {
    let system = System::start_with(
        db.clone(),
        Options {
            workers: 0,
            ..Options::default()
        },
    )
    .await;
    let event = system
        .create_event(
            &[("GA", 10)],
            json!({"enabled": true, "admission_per_minute": 60, "max_active": 10, "paused": true, "token_ttl_s": 600}),
        )
        .await;
    let real = system.join_line(event, "a-real-visitor").await;
    let prefix = &real[..8];
    let transactions = || async {
        // Statistics reach pg_stat_database when a session's transaction ends, at most once a
        // second for a busy one: wait them out.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        sqlx::query_scalar::<_, i64>(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&db)
        .await
        .expect("transactions")
    };
    let before = transactions().await;
    let statuses = futures::stream::iter(0..5000)
        .map(|i| {
            let system = &system;
            async move {
                let made_up = Uuid::new_v4().to_string();
                let url = match i % 3 {
                    0 => format!("{}/api/queue/{made_up}", system.gateway),
                    1 => format!("{}/api/queue/{prefix}{}", system.gateway, &made_up[8..]),
                    _ => format!("{}/api/events/{made_up}", system.gateway),
                };
                system.get_json(&url).await.0
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<u16>>()
        .await;
    let after = transactions().await;
    assert!(
        statuses.iter().all(|s| *s == 404),
        "answers: {:?}",
        statuses
            .iter()
            .filter(|s| **s != 404)
            .take(5)
            .collect::<Vec<_>>()
    );
    // Two of the transactions are this test's own reads of the counter.
    assert!(
        after - before < 50,
        "{} Postgres transactions for 5,000 made-up ids",
        after - before
    );
}

/// The admin API can pause or retune every sale: a gateway given the example's placeholder (or a
/// short token) refuses to start, and says why.
#[test]
fn the_placeholder_admin_token_refuses_to_start() {
    for token in ["change-me", "short-token"] {
        let log = GatewayProcess::refuses(
            "postgres://postgres@127.0.0.1:5432/postgres",
            &[("ADMIN_TOKEN", token)],
        );
        assert!(log.contains("ADMIN_TOKEN"), "{token}: {log}");
    }
}

/// Entries whose page went silent (a bot's dead identities, a closed tab) leave the count of
/// those ahead, and each mechanism they meet keeps its promise: a poll brings one back to its
/// place, a wish too, a leave still leaves, and one the head passed while silent is dropped as
/// abandoned (its visitor joins again at the back). Liveness windows of 1 s stand in for 60 s.
#[sqlx::test(migrations = "../migrations")]
async fn silent_entries_leave_the_count_of_those_ahead_and_come_back_when_they_poll(db: PgPool) {
    let system = System::start_with(db, Options::default()).await;
    let event = system
        .create_event(
            &[("GA", 100)],
            json!({"enabled": true, "admission_per_minute": 600, "max_active": 100, "paused": true}),
        )
        .await;
    let keys = EventKeys::new(event);
    let mut redis = system.redis.clone();
    let _: () = redis::cmd("HSET")
        .arg(keys.queue_config())
        .arg("alive_window_s")
        .arg(1)
        .query_async(&mut redis)
        .await
        .expect("short windows");
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(system.join_line(event, &format!("silent-{i}")).await);
    }
    // Entries 5-9 keep polling; 0-4 fall silent. Alone this takes 2-3 s; a loaded CI run, with
    // the other tests of this file joining thousands beside it, took over 15.
    let deadline = std::time::Instant::now() + Duration::from_secs(45);
    let position_of_last = loop {
        for id in &ids[5..] {
            assert_eq!(system.poll(id).await.0, 200);
        }
        let (_, last) = system.poll(&ids[9]).await;
        if last["position"] == 5 || std::time::Instant::now() > deadline {
            break last["position"].clone();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(position_of_last, 5, "only the live entries are ahead");
    let dormant: i64 = redis::cmd("ZCARD")
        .arg(keys.dormant())
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(dormant, 5);

    // A poll brings one back at its place.
    let (status, first) = system.poll(&ids[0]).await;
    assert_eq!(
        (status, first["position"].clone()),
        (200, json!(1)),
        "{first}"
    );
    assert_eq!(system.poll(&ids[9]).await.1["position"], 6);
    // A wish is a sign of life too.
    let wished = system
        .http
        .put(format!("{}/api/queue/{}/wish", system.gateway, ids[2]))
        .json(&json!({"tiers": {"GA": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(wished.status(), 200, "{}", wished.text().await.unwrap());
    assert_eq!(system.poll(&ids[2]).await.1["position"], 2);
    // A leave leaves from among the dormant.
    let left = system
        .http
        .delete(format!("{}/api/queue/{}", system.gateway, ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(left.status(), 204);
    assert_eq!(system.poll(&ids[1]).await.0, 404);

    // The head passes 3 and 4 while they are silent: dropped as abandoned.
    let opened = system
        .admin(system.http.put(format!(
            "{}/api/admin/events/{event}/waiting-room",
            system.gateway
        )))
        .json(&json!({"paused": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(opened.status(), 200);
    let mut states = Vec::new();
    for _ in 0..100 {
        let (_, last) = system.poll(&ids[9]).await;
        let gone: Option<String> = redis::cmd("HGET")
            .arg(keys.gone())
            .arg(Uuid::parse_str(&ids[3]).unwrap().as_bytes().as_slice())
            .query_async(&mut redis)
            .await
            .unwrap();
        if last["state"] == "admitted" && gone.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids[3..5] {
        let (status, answer) = system.poll(id).await;
        states.push((status, answer["state"].clone()));
    }
    assert_eq!(
        states,
        vec![(200, json!("expired")), (200, json!("expired"))],
        "passed while silent"
    );
    let (status, again) = system.join(event, "silent-3").await;
    assert_eq!(status, 202);
    assert!(
        again["state"] == "waiting" || again["state"] == "admitted",
        "{again}"
    );
}
