//! The waiting room: joins, polls, admission at the configured rate, tokens, admin tuning.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::{eventually, room_on, Options, QueueState, System};
use ticketing::keys::EventKeys;
use uuid::Uuid;

async fn join_many(system: &System, event: Uuid, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..count {
        ids.push(system.join_line(event, &format!("visitor-{i}")).await);
    }
    ids
}

/// Where `queue_id` stands now.
async fn state_of(system: &System, queue_id: &str) -> QueueState {
    system.status(queue_id).await.state
}

#[sqlx::test(migrations = "../migrations")]
async fn joining_twice_returns_the_same_entry_and_place(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 10)], room_on(60, 10, true))
        .await;
    let first = system.enter(event, "same-visitor").await;
    assert_eq!(first.state, QueueState::Waiting);
    assert_eq!(first.position, Some(1));
    system.enter(event, "someone-else").await;
    let again = system.enter(event, "same-visitor").await;
    assert_eq!(again.queue_id, first.queue_id);
    assert_eq!(again.position, Some(1));
    assert!(again.poll_after_ms >= 500);
    assert!(again.estimated_wait_s.is_some());
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_joins_and_polls_get_clean_errors(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 10)], room_on(60, 10, true))
        .await;
    for visitor in [
        json!(""),
        json!("x".repeat(65)),
        json!("a b"),
        json!("x'; DROP TABLE events;--"),
        json!(42),
    ] {
        let response = system
            .http
            .post(format!("{}/api/events/{event}/queue", system.gateway))
            .json(&json!({ "visitor_id": visitor }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{visitor}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request");
    }
    let response = system
        .http
        .post(format!("{}/api/events/{event}/queue", system.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        202,
        "a join without a body gets a fresh visitor id"
    );
    let (status, body) = system.join(Uuid::new_v4(), "visitor").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("event_not_found"))
    );
    for queue_id in [
        Uuid::new_v4().to_string(),
        "nonsense".to_string(),
        Uuid::nil().to_string(),
    ] {
        let (status, body) = system.poll(&queue_id).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (404, Some("queue_entry_not_found")),
            "{queue_id}"
        );
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn admits_in_join_order(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 100)], room_on(1200, 1000, true))
        .await;
    let ids = join_many(&system, event, 30).await;
    system
        .change_waiting_room(event, json!({"paused": false}))
        .await;
    let admitted_seen = eventually(Duration::from_secs(20), "everyone admitted", || async {
        // Read from the back: admission goes on while the states are read one by one, and an
        // entry read admitted means every earlier one was admitted before that read, so reading
        // the earlier ones after it cannot see an admission the later read missed.
        let mut admitted = Vec::new();
        for id in ids.iter().rev() {
            admitted.push(state_of(&system, id).await == QueueState::Admitted);
        }
        admitted.reverse();
        // At every observation the admitted entries are a prefix of the join order.
        let prefix = admitted.iter().take_while(|a| **a).count();
        assert!(
            admitted[prefix..].iter().all(|a| !a),
            "admission out of join order: {admitted:?}"
        );
        (prefix == ids.len()).then_some(prefix)
    })
    .await;
    assert_eq!(admitted_seen, 30);
}

#[sqlx::test(migrations = "../migrations")]
async fn the_pre_queue_is_shuffled_at_the_opening_and_placed_ahead(db: PgPool) {
    let system = System::start(db).await;
    let opens = chrono::Utc::now() + chrono::Duration::seconds(3);
    let event = system
        .create_event_from(json!({
            "name": "Opening", "venue_name": "Hall", "starts_at": "2031-01-01T20:00:00Z",
            "on_sale_at": opens.to_rfc3339(),
            "waiting_room": room_on(1, 1000, false),
            "tiers": [{"code": "GA", "name": "GA", "price_cents": 100, "capacity": 100}]
        }))
        .await;
    let early = join_many(&system, event, 40).await;
    let status = system.status(&early[0]).await;
    assert_eq!(status.state, QueueState::PreQueue);
    assert_eq!(status.position, None);

    // Everyone keeps polling, as browsers do, until the sale opens.
    eventually(Duration::from_secs(10), "the opening", || async {
        (state_of(&system, &early[0]).await != QueueState::PreQueue).then_some(())
    })
    .await;
    let late = system.enter(event, "late-visitor").await;

    let mut positions = Vec::new();
    for id in &early {
        positions.push(system.status(id).await.position.unwrap_or(0));
    }
    // The first one may have been admitted (rate 1/min); everyone else is in 1..=40.
    let placed: Vec<u64> = positions.iter().copied().filter(|p| *p > 0).collect();
    assert!(placed.len() >= 39);
    assert!(placed.iter().all(|p| *p <= 40), "{positions:?}");
    let distinct: HashSet<u64> = placed.iter().copied().collect();
    assert_eq!(distinct.len(), placed.len(), "every place is drawn once");
    let mut sorted = placed.clone();
    sorted.sort_unstable();
    assert_ne!(
        placed, sorted,
        "the pre-queue kept join order: no shuffle happened"
    );
    let late_position = late.position.expect("a place in line");
    assert!(
        late_position > *placed.iter().max().unwrap(),
        "a later joiner went ahead of the pre-queue"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn admission_holds_the_configured_rate_within_two_percent(db: PgPool) {
    let system = System::start(db).await;
    // 3000 per minute is 50 per second: over a 20 s window, 1000 ± 20.
    let event = system
        // Stock for every admission: the rate, not the stock, is what this measures.
        .create_event(&[("GA", 100_000)], room_on(3000, 100_000, true))
        .await;
    let keys = EventKeys::new(event);
    system.fill_queue(event, 1600).await;
    system
        .change_waiting_room(event, json!({"paused": false}))
        .await;
    let admitted = || async {
        let stats: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(keys.stats())
            .arg("admitted_total")
            .query_async(&mut system.redis.clone())
            .await
            .unwrap();
        stats[0].unwrap_or(0)
    };
    // Let the first second's burst pass, then measure a steady window.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let start = admitted().await;
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    let end = admitted().await;
    let seconds = started.elapsed().as_secs_f64();
    let per_minute = (end - start) as f64 / seconds * 60.0;
    assert!(
        (per_minute - 3000.0).abs() <= 60.0,
        "admitted {} in {seconds:.2}s = {per_minute:.0}/min, configured 3000/min",
        end - start
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn never_more_than_max_active_admitted_but_unfinished(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 100)], room_on(6000, 5, false))
        .await;
    let ids = join_many(&system, event, 20).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = system.waiting_room(event).await["stats"].clone();
    assert_eq!(stats["active"], 5, "{stats}");
    assert_eq!(stats["waiting"], 15, "{stats}");
    // A booking finishes one admitted buyer, which frees a slot for the next in line.
    let status = system.status(&ids[0]).await;
    assert_eq!(status.state, QueueState::Admitted);
    let token = status.token.as_deref().expect("a token");
    let (code, body) = system
        .book(
            token,
            &json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": "a@b.co"}),
            None,
        )
        .await;
    assert_eq!(code, 201, "{body}");
    eventually(
        Duration::from_secs(5),
        "the freed slot to be refilled",
        || async {
            let stats = system.waiting_room(event).await["stats"].clone();
            (stats["active"] == 5 && stats["waiting"] == 14 && stats["booked_total"] == 1)
                .then_some(())
        },
    )
    .await;
}

#[sqlx::test(migrations = "../migrations")]
async fn pause_stops_admission_and_resume_restarts_it(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 100)], room_on(6000, 1000, true))
        .await;
    let ids = join_many(&system, event, 10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        system.waiting_room(event).await["stats"]["admitted_total"],
        0
    );
    let (status, changed) = system
        .change_waiting_room(event, json!({"paused": false}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(changed["paused"], false);
    eventually(Duration::from_secs(5), "admission after resume", || async {
        (state_of(&system, &ids[9]).await == QueueState::Admitted).then_some(())
    })
    .await;
    system
        .change_waiting_room(event, json!({"paused": true}))
        .await;
    let more = join_many(&system, event, 1).await;
    let fresh = system.join_line(event, "after-pause").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(state_of(&system, &fresh).await, QueueState::Waiting);
    assert_eq!(
        state_of(&system, &more[0]).await,
        QueueState::Admitted,
        "visitor-0 was admitted before the pause"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn entries_that_stop_polling_lose_their_place(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 100)], room_on(6000, 1000, true))
        .await;
    // Windows of 3 s: "leaves" is silent for two whole windows before the room opens, and
    // "stays" would have to go unheard for 3 s to be dropped. "stays" polls from a future of its
    // own for the whole test, as its page would, so no step of the test (the unpausing, a slow
    // answer on a loaded CI machine) leaves a gap in its signs of life: with 2 s windows and the
    // polls in line with those steps, a loaded CI run once lost it.
    system.shorten_liveness_window(event, 3).await;
    let gone = system.join_line(event, "leaves").await;
    let stays_id = system.join_line(event, "stays").await;
    let keeps_polling = async {
        loop {
            system.status(&stays_id).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let opens_and_admits = async {
        tokio::time::sleep(Duration::from_secs(7)).await;
        system
            .change_waiting_room(event, json!({"paused": false}))
            .await;
        // Up to 10 s, saying where the live entry stood if it never got in.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let now = system.status(&stays_id).await;
            if now.state == QueueState::Admitted {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the live entry was never admitted: {now:?}, room {}",
                system.waiting_room(event).await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        () = keeps_polling => unreachable!("the poller never ends"),
        () = opens_and_admits => {}
    }
    assert_eq!(state_of(&system, &gone).await, QueueState::Expired);
    let stats = system.waiting_room(event).await["stats"].clone();
    assert_eq!(
        stats["admitted_total"], 1,
        "no admission was spent on the one who left: {stats}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn an_unused_token_that_expires_frees_its_slot(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 100)], json!({"enabled": true, "admission_per_minute": 6000, "max_active": 1, "paused": false, "token_ttl_s": 30}))
        .await;
    let ids = join_many(&system, event, 2).await;
    eventually(Duration::from_secs(5), "the first admitted", || async {
        (state_of(&system, &ids[0]).await == QueueState::Admitted).then_some(())
    })
    .await;
    assert_eq!(state_of(&system, &ids[1]).await, QueueState::Waiting);
    // Age the first admission past its token's expiry.
    let keys = EventKeys::new(event);
    let _: () = redis::cmd("ZADD")
        .arg(keys.admitted())
        .arg(1)
        .arg(ids[0].parse::<Uuid>().unwrap().as_bytes().as_slice())
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(keys.entry_token(ids[0].parse().unwrap()))
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "the second admitted", || async {
        (state_of(&system, &ids[1]).await == QueueState::Admitted).then_some(())
    })
    .await;
    assert_eq!(state_of(&system, &ids[0]).await, QueueState::Expired);
}

#[sqlx::test(migrations = "../migrations")]
async fn waiting_buyers_learn_of_a_sell_out_at_their_next_poll(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 1)], room_on(60, 10, true))
        .await;
    let ids = join_many(&system, event, 3).await;
    assert_eq!(state_of(&system, &ids[2]).await, QueueState::Waiting);
    let (token, _) = system.keys.token(event, 1, 60);
    let (status, _) = system
        .book(
            &token,
            &json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": "a@b.co"}),
            None,
        )
        .await;
    assert_eq!(status, 201);
    for id in &ids {
        assert_eq!(state_of(&system, id).await, QueueState::SoldOut);
    }
    let late = system.enter(event, "too-late").await;
    assert_eq!(late.state, QueueState::SoldOut);
}

#[sqlx::test(migrations = "../migrations")]
async fn two_workers_never_admit_anyone_twice_nor_beat_the_rate(db: PgPool) {
    let system = System::start_with(
        db,
        Options {
            workers: 2,
            ..Options::default()
        },
    )
    .await;
    let event = system
        // Stock for every admission: the rate, not the stock, is what this measures.
        .create_event(&[("GA", 100_000)], room_on(1200, 100_000, true))
        .await;
    system.fill_queue(event, 400).await;
    system
        .change_waiting_room(event, json!({"paused": false}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let first = system.waiting_room(event).await["stats"].clone();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stats = system.waiting_room(event).await["stats"].clone();
    // The counter and the admitted set are compared at rest: read one after the other while the
    // workers admit 20 a second, they could differ by the admissions between the two reads.
    system
        .change_waiting_room(event, json!({"paused": true}))
        .await;
    let at_rest = eventually(Duration::from_secs(10), "admission to stop", || async {
        let before = system.waiting_room(event).await["stats"].clone();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = system.waiting_room(event).await["stats"].clone();
        let still = |field: &str| before[field] == after[field];
        (still("admitted_total") && still("waiting")).then_some(after)
    })
    .await;
    let keys = EventKeys::new(event);
    let admitted_now: i64 = redis::cmd("ZCARD")
        .arg(keys.admitted())
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    assert_eq!(
        at_rest["admitted_total"].as_i64(),
        Some(admitted_now),
        "each admission is one distinct entry"
    );
    assert_eq!(
        at_rest["waiting"].as_i64().unwrap() + admitted_now,
        400,
        "nobody lost or counted twice"
    );
    // 20 per second with two workers ticking: 120 ± 2% over 6 s, plus at most one tick of slack.
    let in_window =
        stats["admitted_total"].as_i64().unwrap() - first["admitted_total"].as_i64().unwrap();
    assert!(
        (115..=125).contains(&in_window),
        "{in_window} admitted in 6 s at 20/s"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn an_event_without_waiting_room_admits_at_once_with_a_verifiable_token(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 10)], json!({"enabled": false, "admission_per_minute": 60, "max_active": 10, "paused": false, "token_ttl_s": 300}))
        .await;
    let entry = system.enter(event, "instant").await;
    assert_eq!(entry.state, QueueState::Admitted);
    let token = entry.token.as_deref().expect("a token");
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), Some("test"));
    let claims = system
        .keys
        .verifier
        .verify(token)
        .expect("verifies with the public key");
    assert_eq!(claims.sub, entry.queue_id);
    assert_eq!(claims.evt, event);
    assert_eq!(claims.max, 8);
    let now = chrono::Utc::now().timestamp();
    assert!(
        (claims.exp - (now + 300)).abs() <= 2,
        "exp is the waiting room's token_ttl_s"
    );
    assert!((claims.iat - now).abs() <= 2);
    let expires = entry.token_expires_at.expect("an expiry");
    assert!((expires.timestamp() - claims.exp).abs() <= 1);
    // Polling again returns the same token: it is signed once per admission.
    let again = system.status(&entry.queue_id.to_string()).await;
    assert_eq!(again.token, entry.token);
}

#[sqlx::test(migrations = "../migrations")]
async fn admin_reads_and_tunes_the_waiting_room_with_validation(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 10)], room_on(60, 10, false))
        .await;
    let view = system.waiting_room(event).await;
    assert_eq!(view["admission_per_minute"], 60);
    for key in [
        "waiting",
        "admitted_total",
        "active",
        "booked_total",
        "admitted_last_minute",
    ] {
        assert!(view["stats"][key].is_i64(), "stats lack {key}: {view}");
    }
    let (status, changed) = system
        .change_waiting_room(
            event,
            json!({"admission_per_minute": 600, "max_active": 20}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        changed,
        json!({"enabled": true, "admission_per_minute": 600, "max_active": 20, "paused": false, "token_ttl_s": 600, "drain_per_minute": 0,
               "headroom_pct": 10, "hold_on_admission": false})
    );
    let cfg: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(EventKeys::new(event).queue_config())
        .arg(&["admission_per_minute", "max_active"])
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    assert_eq!(
        cfg,
        vec![Some("600".to_string()), Some("20".to_string())],
        "the change is live in redis at once"
    );
    for bad in [
        json!({"admission_per_minute": 0}),
        json!({"max_active": -1}),
        json!({"token_ttl_s": 5}),
        json!({"drain_per_minute": 1_000_001}),
        json!({"headroom_pct": 1001}),
        json!({"hold_on_admission": "yes"}),
        json!({"paused": "yes"}),
        json!({"colour": "red"}),
    ] {
        let (status, body) = system.change_waiting_room(event, bad.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("invalid_request")),
            "{bad}"
        );
    }
    let (status, _) = system
        .change_waiting_room(Uuid::new_v4(), json!({"paused": true}))
        .await;
    assert_eq!(status, 404);
    let response = system
        .http
        .put(format!(
            "{}/api/admin/events/{event}/waiting-room",
            system.gateway
        ))
        .bearer_auth("wrong")
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        system.waiting_room(event).await["paused"],
        false,
        "refused changes change nothing"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_client_over_its_join_rate_gets_429_with_retry_after(db: PgPool) {
    let system = System::start_with(
        db,
        Options {
            join_per_second: 1,
            join_burst: 3,
            ..Options::default()
        },
    )
    .await;
    let event = system
        .create_event(&[("GA", 10)], room_on(60, 10, true))
        .await;
    let mut limited = None;
    for i in 0..10 {
        let response = system
            .http
            .post(format!("{}/api/events/{event}/queue", system.gateway))
            .json(&json!({"visitor_id": format!("v{i}")}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
    }
    let response = limited.expect("the fourth join within a second is limited");
    assert!(response.headers().get("retry-after").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_gateway_publishes_queue_metrics(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("GA", 10)], room_on(60, 10, true))
        .await;
    let ids = join_many(&system, event, 2).await;
    state_of(&system, &ids[0]).await;
    let metrics = eventually(Duration::from_secs(10), "queue gauges", || async {
        let text = system
            .http
            .get(format!("{}/metrics", system.gateway))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains(&format!("queue_waiting{{event=\"{event}\"}} 2"))
            .then_some(text)
    })
    .await;
    assert!(metrics.contains("queue_joins_total"));
    assert!(metrics.contains("queue_polls_total"));
    assert!(metrics.contains("queue_admitted_total"));
}

/// The admin view of a room.
async fn room_view(system: &System, event: Uuid) -> Value {
    system
        .admin(system.http.get(format!(
            "{}/api/admin/events/{event}/waiting-room",
            system.gateway
        )))
        .send()
        .await
        .expect("the admin view")
        .json()
        .await
        .expect("json")
}

async fn change_room(system: &System, event: Uuid, change: Value) -> (u16, Value) {
    let response = system
        .admin(system.http.put(format!(
            "{}/api/admin/events/{event}/waiting-room",
            system.gateway
        )))
        .json(&change)
        .send()
        .await
        .expect("a room change");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Adaptive admission: with the booking p95 over its target the worker cuts the rate to the floor
/// (quickly), and admission follows it; within the targets it raises it again (gently), never
/// above the set rate; turned off, the set rate applies at once. A floor above the set rate is
/// refused.
#[sqlx::test(migrations = "../migrations")]
async fn adaptive_admission_cuts_to_the_floor_when_bookings_slow_and_recovers(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(
            &[("GA", 1000)],
            json!({"enabled": true, "admission_per_minute": 600, "max_active": 1000,
                   "paused": true, "token_ttl_s": 600,
                   "adaptive": {"target_p95_ms": 1, "max_503_pct": 100, "floor_per_minute": 120}}),
        )
        .await;
    let (status, refused) = change_room(
        &system,
        event,
        json!({"adaptive": {"target_p95_ms": 1, "max_503_pct": 5, "floor_per_minute": 601}}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    // Bookings slower than 1 ms (any booking is), two a second until the floor: the p95 stays
    // over its target, and the rate is cut every three seconds (600, 420, 294, 205, 143, 120).
    let keeps_booking = async {
        loop {
            let (token, _) = system.keys.token(event, 4, 60);
            let body = json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": "a@b.co"});
            assert_eq!(system.book(&token, &body, None).await.0, 201);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let floor = eventually(Duration::from_secs(30), "cut to the floor", || async {
        let view = room_view(&system, event).await;
        (view["effective_per_minute"] == 120).then_some(view)
    });
    let view = tokio::select! {
        () = keeps_booking => unreachable!("the booker never ends"),
        view = floor => view,
    };
    assert_eq!(
        view["adaptive_reason"], "booking_p95_above_target",
        "{view}"
    );
    assert_eq!(
        view["admission_per_minute"], 600,
        "the set rate is kept: {view}"
    );

    // Admission follows the effective rate: about two a second, not ten.
    change_room(&system, event, json!({"paused": false})).await;
    join_many(&system, event, 30).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let admitted = ticketing::queue::stats(&system.redis, event)
        .await
        .expect("stats")
        .admitted_total;
    assert!(admitted <= 8, "at the floor's pace: {admitted} admitted");

    // Within the targets: it climbs back, a step a second.
    let (status, _) = change_room(
        &system,
        event,
        json!({"adaptive": {"target_p95_ms": 600000, "max_503_pct": 100, "floor_per_minute": 120}}),
    )
    .await;
    assert_eq!(status, 200);
    let view = eventually(Duration::from_secs(10), "climbing again", || async {
        let view = room_view(&system, event).await;
        (view["effective_per_minute"].as_u64()? > 120).then_some(view)
    })
    .await;
    assert!(
        ["within_targets", "at_set_rate"].contains(&view["adaptive_reason"].as_str().unwrap()),
        "{view}"
    );
    // Off: the set rate again, and nothing adaptive in the view.
    let (status, room) = change_room(&system, event, json!({"adaptive": null})).await;
    assert_eq!((status, room["adaptive"].clone()), (200, Value::Null));
    let view = room_view(&system, event).await;
    assert!(view.get("effective_per_minute").is_none(), "{view}");
}

/// Adaptive admission meets the booking writers' busy share: bookings well within the p95 target,
/// but the one writer busy all the time (each booking row costs Postgres 200 ms, four buyers book
/// without pause). The p95 alone would let the rate climb; the worker holds it
/// (`writers_near_full`), as the booking instance publishes that its writers are full.
#[sqlx::test(migrations = "../migrations")]
async fn busy_writers_hold_adaptive_admission_while_the_p95_is_within_its_target(db: PgPool) {
    sqlx::query(
        "CREATE FUNCTION slow_booking() RETURNS trigger LANGUAGE plpgsql
         AS $$ BEGIN PERFORM pg_sleep(0.2); RETURN NEW; END $$",
    )
    .execute(&db)
    .await
    .expect("the slow function");
    sqlx::query(
        "CREATE TRIGGER slow_booking BEFORE INSERT ON bookings
         FOR EACH ROW EXECUTE FUNCTION slow_booking()",
    )
    .execute(&db)
    .await
    .expect("the slow trigger");
    let system = System::start_with(
        db,
        Options {
            writers: 1,
            ..Options::default()
        },
    )
    .await;
    let event = system
        .create_event(
            &[("GA", 10_000)],
            json!({"enabled": true, "admission_per_minute": 600, "max_active": 1000,
                   "paused": true, "token_ttl_s": 600,
                   "adaptive": {"target_p95_ms": 600000, "max_503_pct": 100,
                                "floor_per_minute": 120}}),
        )
        .await;
    let booker = || async {
        loop {
            let (token, _) = system.keys.token(event, 4, 60);
            let body = json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": "a@b.co"});
            assert_eq!(system.book(&token, &body, None).await.0, 201);
        }
    };
    let held = eventually(Duration::from_secs(30), "held for busy writers", || async {
        let view = room_view(&system, event).await;
        (view["adaptive_reason"] == "writers_near_full").then_some(view)
    });
    let view = tokio::select! {
        () = booker() => unreachable!("the bookers never end"),
        () = booker() => unreachable!("the bookers never end"),
        () = booker() => unreachable!("the bookers never end"),
        () = booker() => unreachable!("the bookers never end"),
        view = held => view,
    };
    // Held where it was: never above the set rate, never cut (nothing was over a target).
    assert_eq!(view["effective_per_minute"], 600, "{view}");
}
