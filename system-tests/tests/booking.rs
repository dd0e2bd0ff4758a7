//! Booking: the token gate, all-or-nothing reservation, the Postgres write and its failures,
//! idempotent retries and cancellation.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::{eventually, room_off, writes_waiting, Keys, Options, System};
use ticketing::keys::EventKeys;
use ticketing::tier::TierCode;
use uuid::Uuid;

fn order(event: Uuid, tiers: Value) -> Value {
    json!({"event_id": event, "tiers": tiers, "buyer_email": "buyer@example.com"})
}

#[sqlx::test(migrations = "../migrations")]
async fn hundreds_of_concurrent_bookings_sell_exactly_the_capacity(db: PgPool) {
    let system = System::start(db).await;
    let capacity = [("VIP", 5), ("FrontRow", 7), ("GA", 20)];
    let event = system.create_event(&capacity, room_off()).await;
    let requests: Vec<Value> = (0..300)
        .map(|i| match i % 4 {
            0 => json!({"VIP": 1, "GA": 1}),
            1 => json!({"FrontRow": 2}),
            2 => json!({"GA": 2, "FrontRow": 1}),
            _ => json!({"VIP": 1}),
        })
        .collect();
    let answers = futures::future::join_all(requests.iter().map(|tiers| async {
        let (token, _) = system.keys.token(event, 6, 60);
        let (status, body) = system
            .book(&token, &order(event, tiers.clone()), None)
            .await;
        (status, body)
    }))
    .await;
    let mut sold: HashMap<String, HashSet<i64>> = HashMap::new();
    for (status, body) in &answers {
        match status {
            201 => {
                for ticket in body["tickets"].as_array().unwrap() {
                    let fresh = sold
                        .entry(ticket["tier"].as_str().unwrap().to_string())
                        .or_default()
                        .insert(ticket["number"].as_i64().unwrap());
                    assert!(fresh, "a ticket number was sold twice: {ticket}");
                }
            }
            409 => assert_eq!(body["error"]["code"], "insufficient_inventory", "{body}"),
            other => panic!("unexpected answer {other}: {body}"),
        }
    }
    // Top up with single tickets until every tier is at zero.
    for (code, _) in capacity {
        loop {
            let (token, _) = system.keys.token(event, 6, 60);
            let (status, body) = system
                .book(&token, &order(event, json!({ code: 1 })), None)
                .await;
            if status == 409 {
                break;
            }
            assert_eq!(status, 201, "{body}");
            sold.entry(code.to_string())
                .or_default()
                .insert(body["tickets"][0]["number"].as_i64().unwrap());
        }
    }
    let issued = system.issued(event).await;
    for (code, cap) in capacity {
        assert_eq!(issued[code], i64::from(cap), "{code}");
        let numbers = &sold[code];
        assert_eq!(numbers.len() as i32, cap);
        assert!(numbers.iter().all(|n| (1..=i64::from(cap)).contains(n)));
    }
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_multi_tier_booking_is_all_or_nothing(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("VIP", 1), ("GA", 5)], room_off())
        .await;
    let (token, _) = system.keys.token(event, 6, 60);
    let (status, body) = system
        .book(&token, &order(event, json!({"VIP": 2, "GA": 1})), None)
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "insufficient_inventory");
    assert_eq!(
        body["error"]["shortfall"],
        json!([{"tier": "VIP", "requested": 2, "available": 1}])
    );
    assert_eq!(
        system.availability(event).await,
        json!({"VIP": 1, "GA": 5}),
        "nothing was reserved"
    );
    // The refused token is not spent.
    let (status, body) = system
        .book(&token, &order(event, json!({"VIP": 1, "GA": 1})), None)
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(system.availability(event).await, json!({"VIP": 0, "GA": 4}));
}

fn forge(header: Value, claims: &ticketing::token::EntryClaims, signature: &[u8]) -> String {
    let part = |v: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap());
    format!(
        "{}.{}.{}",
        part(&header),
        part(&serde_json::to_value(claims).unwrap()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

#[sqlx::test(migrations = "../migrations")]
async fn forged_expired_and_misused_tokens_are_refused(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let other_event = system.create_event(&[("GA", 10)], room_off()).await;
    let body = order(event, json!({"GA": 1}));
    let (valid, claims) = system.keys.token(event, 4, 60);

    let stranger = Keys::generate();
    let (foreign, _) = stranger.token(event, 4, 60);
    let none = forge(
        json!({"alg": "none", "typ": "JWT", "kid": "test"}),
        &claims,
        b"",
    );
    let public_pem = std::fs::read(system.keys.dir.join("test.pub.pem")).unwrap();
    let mut hmac_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hmac_header.kid = Some("test".into());
    let hmac = jsonwebtoken::encode(
        &hmac_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    let mut greedy = claims.clone();
    greedy.max = 100;
    let parts: Vec<&str> = valid.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&greedy).unwrap()),
        parts[2]
    );
    let (expired, _) = system.keys.token(event, 4, -120);
    let _ = std::fs::remove_dir_all(&stranger.dir);

    for (what, token, code) in [
        ("signed by another key", foreign.as_str(), "invalid_token"),
        ("alg none", none.as_str(), "invalid_token"),
        ("HMAC with the public key", hmac.as_str(), "invalid_token"),
        ("tampered claims", tampered.as_str(), "invalid_token"),
        ("garbage", "not.a.token", "invalid_token"),
        ("expired", expired.as_str(), "token_expired"),
    ] {
        let (status, answer) = system.book(token, &body, None).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (401, Some(code)),
            "{what}: {answer}"
        );
    }
    let response = system
        .http
        .post(format!("{}/api/bookings", system.booking))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401, "no token at all");

    let (status, answer) = system
        .book(&valid, &order(other_event, json!({"GA": 1})), None)
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (403, Some("token_event_mismatch"))
    );

    assert_eq!(
        system.availability(event).await,
        json!({"GA": 10}),
        "no refused token reserved anything"
    );
    let (status, _) = system.book(&valid, &body, None).await;
    assert_eq!(status, 201);
    let (status, answer) = system.book(&valid, &body, None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("token_used")),
        "a replayed token"
    );
    assert_eq!(system.issued(event).await["GA"], 1);
}

#[sqlx::test(migrations = "../migrations")]
async fn forged_tokens_sent_at_once_among_good_ones_are_refused_and_the_good_ones_book(db: PgPool) {
    // Signatures arriving together are checked in batches (ticketing::signatures): a forged one
    // fails its batch, whose good tokens must still book, and must not book itself.
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 100)], room_off()).await;
    let body = order(event, json!({"GA": 1}));
    let stranger = Keys::generate();
    let mut tokens = Vec::new();
    for i in 0..48 {
        let (token, claims) = system.keys.token(event, 4, 60);
        let token = match i % 4 {
            // Signed by another key under the same key id.
            1 => stranger.token(event, 4, 60).0,
            // A good signature over other claims.
            2 => {
                let mut greedy = claims;
                greedy.max = 100;
                let parts: Vec<&str> = token.split('.').collect();
                format!(
                    "{}.{}.{}",
                    parts[0],
                    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&greedy).unwrap()),
                    parts[2]
                )
            }
            _ => token,
        };
        tokens.push((i % 4 == 1 || i % 4 == 2, token));
    }
    let _ = std::fs::remove_dir_all(&stranger.dir);
    let answers = futures::future::join_all(tokens.iter().map(|(forged, token)| {
        let (system, body) = (&system, &body);
        async move { (*forged, system.book(token, body, None).await) }
    }))
    .await;
    for (forged, (status, answer)) in &answers {
        let expected = if *forged { 401 } else { 201 };
        assert_eq!(*status, expected, "forged {forged}: {answer}");
    }
    assert_eq!(system.availability(event).await, json!({"GA": 76}));
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_quantities_and_bodies_are_422(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("VIP", 5), ("GA", 10)], room_off())
        .await;
    let (token, _) = system.keys.token(event, 3, 60);
    for (what, body) in [
        ("zero in total", order(event, json!({"GA": 0}))),
        ("empty", order(event, json!({}))),
        ("negative", order(event, json!({"GA": -1}))),
        (
            "above the token's max",
            order(event, json!({"GA": 2, "VIP": 2})),
        ),
        ("unknown tier", order(event, json!({"Balcony": 1}))),
        ("fractional", order(event, json!({"GA": 1.5}))),
        ("string quantity", order(event, json!({"GA": "1"}))),
        ("huge", order(event, json!({"GA": 1e20}))),
        (
            "bad email",
            json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": "not-an-email"}),
        ),
        (
            "missing email",
            json!({"event_id": event, "tiers": {"GA": 1}}),
        ),
        ("sql in tier", order(event, json!({"GA' OR '1'='1": 1}))),
        (
            "unknown field",
            json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": "a@b.co", "price": 0}),
        ),
        (
            "deeply nested",
            serde_json::from_str(&format!("{}{}", "[".repeat(64), "]".repeat(64))).unwrap(),
        ),
    ] {
        let (status, answer) = system.book(&token, &body, None).await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("invalid_request")),
            "{what}: {answer}"
        );
    }
    let response = system
        .http
        .post(format!("{}/api/bookings", system.booking))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x7b])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "non-UTF-8 body");
    let response = system
        .http
        .post(format!("{}/api/bookings", system.booking))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"buyer_email\": \"{}\"}}", "a".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413, "oversized body");
    assert_eq!(
        system.availability(event).await,
        json!({"VIP": 5, "GA": 10})
    );
    let (status, _) = system
        .book(&token, &order(event, json!({"GA": 3})), None)
        .await;
    assert_eq!(
        status, 201,
        "the token is still good after refused attempts"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn an_idempotent_retry_returns_the_first_answer(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let (token, _) = system.keys.token(event, 4, 60);
    let body = order(event, json!({"GA": 2}));
    let (status, first) = system.book(&token, &body, Some("retry-1")).await;
    assert_eq!(status, 201);
    let (status, again) = system.book(&token, &body, Some("retry-1")).await;
    assert_eq!(status, 201);
    assert_eq!(again["booking_id"], first["booking_id"]);
    assert_eq!(again["access_code"], first["access_code"]);
    assert_eq!(again["tickets"], first["tickets"]);
    let (status, other) = system
        .book(&token, &order(event, json!({"GA": 3})), Some("retry-1"))
        .await;
    assert_eq!(
        (status, other["error"]["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    let (status, used) = system.book(&token, &body, None).await;
    assert_eq!(
        (status, used["error"]["code"].as_str()),
        (409, Some("token_used"))
    );
    assert_eq!(
        system.issued(event).await["GA"],
        2,
        "one booking however often retried"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn a_booking_is_read_and_cancelled_once_with_its_access_code(db: PgPool) {
    let system = System::start(db).await;
    let event = system
        .create_event(&[("VIP", 2), ("GA", 10)], room_off())
        .await;
    let (token, _) = system.keys.token(event, 4, 60);
    let (status, booking) = system
        .book(&token, &order(event, json!({"VIP": 1, "GA": 2})), None)
        .await;
    assert_eq!(status, 201);
    assert_eq!(booking["total_cents"], 3000);
    let id = booking["booking_id"].as_str().unwrap();
    let code = booking["access_code"].as_str().unwrap();
    let url = format!("{}/api/bookings/{id}", system.booking);

    let read = |bearer: String| {
        let request = system.http.get(&url).bearer_auth(bearer);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, shown) = read(code.to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(shown["tickets"], booking["tickets"]);
    assert!(
        shown.get("access_code").is_none(),
        "the access code is only in the 201 answer"
    );
    assert_eq!(
        read(token.clone()).await.0,
        200,
        "the entry token that made it reads it too"
    );
    assert_eq!(read("wrong-code".into()).await.0, 401);
    let (other, _) = system.keys.token(event, 4, 60);
    assert_eq!(read(other).await.0, 404, "another token does not see it");
    let (status, _) = system.get_json(&url).await;
    assert_eq!(status, 401);
    let (status, body) = system
        .get_json(&format!(
            "{}/api/bookings/{}",
            system.booking,
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, 401, "{body}");

    assert_eq!(system.availability(event).await, json!({"VIP": 1, "GA": 8}));
    for _ in 0..3 {
        let response = system
            .http
            .delete(&url)
            .bearer_auth(code)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let cancelled: Value = response.json().await.unwrap();
        assert_eq!(cancelled["status"], "cancelled");
        assert_eq!(
            system.availability(event).await,
            json!({"VIP": 2, "GA": 10}),
            "tickets return to sale exactly once"
        );
    }
    system.assert_inventory_agrees(event).await;
    // The returned numbers sell again.
    let (token, _) = system.keys.token(event, 4, 60);
    let (status, _) = system
        .book(&token, &order(event, json!({"VIP": 2})), None)
        .await;
    assert_eq!(status, 201);
    system.assert_inventory_agrees(event).await;
}

/// Promise: once an event is sold out, each booking service answers the storm that follows by
/// itself for a moment, saying what Redis would say; tickets returned through the same instance
/// sell at once, and through another instance once that moment has passed.
#[sqlx::test(migrations = "../migrations")]
async fn sold_out_answers_are_reused_briefly_and_returned_tickets_sell_again(db: PgPool) {
    let options = Options {
        bookings: 2,
        sold_out_memory: Duration::from_secs(3),
        ..Options::default()
    };
    let system = &System::start_with(db, options).await;
    let event = system.create_event(&[("GA", 1)], room_off()).await;
    let (first, second) = (&system.bookings[0], &system.bookings[1]);
    let one = order(event, json!({"GA": 1}));
    let book = |base: &str| {
        let (token, _) = system.keys.token(event, 2, 60);
        let (base, one) = (base.to_string(), one.clone());
        async move { system.book_at(&base, &token, &one, None).await }
    };
    let cancel = |base: &str, booking: &Value| {
        let url = format!(
            "{base}/api/bookings/{}",
            booking["booking_id"].as_str().unwrap()
        );
        let code = booking["access_code"].as_str().unwrap().to_string();
        let request = system.http.delete(url).bearer_auth(code);
        async move { assert_eq!(request.send().await.unwrap().status(), 200) }
    };
    let sold_out = json!({"code": "insufficient_inventory"});

    let (status, booking) = book(first).await;
    assert_eq!(status, 201, "{booking}");
    for base in [first, second] {
        let (status, body) = book(base).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], sold_out["code"]);
        assert_eq!(
            body["error"]["shortfall"],
            json!([{"tier": "GA", "requested": 1, "available": 0}]),
            "the same answer as the reservation script's"
        );
    }

    cancel(first, &booking).await;
    assert_eq!(system.availability(event).await, json!({"GA": 1}));
    let (status, body) = book(second).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &sold_out["code"]),
        "the other instance still remembers the sale as sold out: {body}"
    );
    let (status, again) = book(first).await;
    assert_eq!(
        status, 201,
        "the instance that restocked forgot at once: {again}"
    );

    cancel(first, &again).await;
    eventually(
        Duration::from_secs(10),
        "the other instance to sell again",
        || async { (book(second).await.0 == 201).then_some(()) },
    )
    .await;
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_failed_postgres_write_releases_its_reservation(db: PgPool) {
    let system = System::start(db.clone()).await;
    let event = system.create_event(&[("GA", 3)], room_off()).await;
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_bookings() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'bookings are refused for this test'; END $$;
         CREATE TRIGGER refuse BEFORE INSERT ON bookings FOR EACH ROW EXECUTE FUNCTION refuse_bookings();",
    )
    .execute(&db)
    .await
    .unwrap();
    let (token, _) = system.keys.token(event, 4, 60);
    let body = order(event, json!({"GA": 2}));
    let (status, answer) = system.book(&token, &body, None).await;
    assert_eq!(status, 500, "{answer}");
    assert_eq!(answer["error"]["code"], "internal");
    assert!(
        !answer.to_string().contains("refused for this test"),
        "internal errors do not leak"
    );
    assert_eq!(
        system.availability(event).await,
        json!({"GA": 3}),
        "the reservation was released"
    );
    sqlx::raw_sql("DROP TRIGGER refuse ON bookings")
        .execute(&db)
        .await
        .unwrap();
    let (status, _) = system.book(&token, &body, None).await;
    assert_eq!(status, 201, "the token was not spent by the failed write");
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_write_fenced_by_a_rebuild_is_undone_and_the_retry_succeeds(db: PgPool) {
    let system = System::start(db.clone()).await;
    let event = system.create_event(&[("GA", 3)], room_off()).await;
    // As if another process rebuilt the inventory after this booking reserved.
    sqlx::query("UPDATE events SET inventory_epoch = inventory_epoch + 1 WHERE id = $1")
        .bind(event)
        .execute(&db)
        .await
        .unwrap();
    let (token, _) = system.keys.token(event, 4, 60);
    let body = order(event, json!({"GA": 2}));
    let (status, answer) = system.book(&token, &body, None).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (503, Some("unavailable"))
    );
    assert_eq!(system.issued(event).await["GA"], 0);
    let (status, _) = system.book(&token, &body, None).await;
    assert_eq!(status, 201);
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn a_reservation_that_never_became_a_booking_is_released(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 5)], room_off()).await;
    // A booking process that reserved and died before writing; its hold ends now.
    let held = ticketing::inventory::reserve(
        &system.redis,
        event,
        ticketing::token::TokenId::new_v4(),
        0,
        ticketing::inventory::HoldFor {
            fingerprint: "fingerprint",
            attempt: "attempt",
            claim: None,
        },
        &[(TierCode::known("GA"), 3)],
    )
    .await
    .unwrap();
    assert!(matches!(
        held,
        ticketing::inventory::Reservation::Held { .. }
    ));
    assert_eq!(system.availability(event).await, json!({"GA": 2}));
    eventually(
        Duration::from_secs(5),
        "the sweeper to release the hold",
        || async { (system.availability(event).await == json!({"GA": 5})).then_some(()) },
    )
    .await;
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn drift_between_redis_and_postgres_is_found_and_repaired(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 5)], room_off()).await;
    let (token, _) = system.keys.token(event, 4, 60);
    assert_eq!(
        system
            .book(&token, &order(event, json!({"GA": 1})), None)
            .await
            .0,
        201
    );
    let _: i64 = redis::cmd("HINCRBY")
        .arg(EventKeys::new(event).inventory())
        .arg("GA:avail")
        .arg(-3)
        .query_async(&mut system.redis.clone())
        .await
        .unwrap();
    assert_eq!(system.availability(event).await, json!({"GA": 1}));
    eventually(
        Duration::from_secs(10),
        "the reconciler to repair the drift",
        || async { (system.availability(event).await == json!({"GA": 4})).then_some(()) },
    )
    .await;
    system.assert_inventory_agrees(event).await;
}

#[sqlx::test(migrations = "../migrations")]
async fn availability_cors_and_metrics_behave(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 5)], room_off()).await;
    let (status, body) = system
        .get_json(&format!(
            "{}/api/events/{}/availability",
            system.booking,
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("event_not_found"))
    );
    let preflight = |origin: &str| {
        system
            .http
            .request(
                reqwest::Method::OPTIONS,
                format!("{}/api/bookings", system.booking),
            )
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type,idempotency-key",
            )
            .send()
    };
    let allowed = preflight(&system.gateway).await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        system.gateway.as_str()
    );
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let (token, _) = system.keys.token(event, 4, 60);
    system
        .book(&token, &order(event, json!({"GA": 1})), None)
        .await;
    let metrics = system
        .http
        .get(format!("{}/metrics", system.booking))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("booking_duration_seconds_bucket"),
        "booking latency is a histogram"
    );
    let (status, doc) = system
        .get_json(&format!("{}/api/openapi.json", system.booking))
        .await;
    assert_eq!(status, 200);
    assert!(doc["paths"].get("/api/bookings").is_some());
}

/// One group commit with every kind of order in it: the good ones are stored, each bad one gets
/// its own outcome, and none fails the others (the batch falls back to one subtransaction per
/// order only when the two-statement write of the whole batch breaks a constraint).
#[sqlx::test(migrations = "../migrations")]
async fn one_bad_order_never_fails_its_batch(db: PgPool) {
    use booking::db::bookings::Written;
    use booking::db::bookings::{insert_batch, NewBooking};
    use ticketing::inventory::Epoch;
    use ticketing::token::TokenId;

    let system = System::start(db.clone()).await;
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let (tier, epoch): (Uuid, i64) = sqlx::query_as(
        "SELECT t.id, e.inventory_epoch FROM ticket_tiers t JOIN events e ON e.id = t.event_id
          WHERE e.id = $1",
    )
    .bind(event)
    .fetch_one(&db)
    .await
    .unwrap();
    let order = |numbers: &[i32], epoch: i64, jti: TokenId| NewBooking {
        id: Uuid::new_v4(),
        event_id: event,
        buyer_email: "batch@example.com".into(),
        token_jti: jti,
        queue_id: ticketing::queue::QueueId(Uuid::new_v4()),
        idempotency_key: None,
        request_hash: vec![0],
        total_cents: 1000 * numbers.len() as i64,
        epoch: Epoch(epoch),
        tickets: numbers.iter().map(|n| (tier, 10, *n)).collect(),
    };
    // A clean batch takes the two-statement path.
    let first = order(&[1, 2], epoch, TokenId::new_v4());
    let clean = insert_batch(&db, &[&first, &order(&[3], epoch, TokenId::new_v4())])
        .await
        .unwrap();
    assert!(clean
        .values()
        .all(|w| matches!(w, Written::Booked { tickets, .. } if !tickets.is_empty())));

    let good = order(&[4, 5], epoch, TokenId::new_v4());
    let orders = [
        order(&[2], epoch, TokenId::new_v4()), // number sold already
        order(&[6], epoch, first.token_jti),   // token booked already
        good.clone(),                          // fine
        order(&[7], epoch + 1, TokenId::new_v4()), // reserved under another epoch
        order(&[11], epoch, TokenId::new_v4()), // beyond the capacity
    ];
    let refs: Vec<&NewBooking> = orders.iter().collect();
    let outcomes = insert_batch(&db, &refs).await.unwrap();
    assert!(
        matches!(outcomes[&0], Written::NumberTaken),
        "{:?}",
        outcomes[&0]
    );
    assert!(
        matches!(outcomes[&1], Written::TokenTaken),
        "{:?}",
        outcomes[&1]
    );
    match &outcomes[&2] {
        Written::Booked { tickets, .. } => {
            let mut numbers: Vec<i32> = tickets.iter().map(|t| t.number).collect();
            numbers.sort_unstable();
            assert_eq!(numbers, [4, 5]);
        }
        other => panic!("the good order was not booked: {other:?}"),
    }
    assert!(
        matches!(outcomes[&3], Written::Fenced),
        "{:?}",
        outcomes[&3]
    );
    assert!(
        matches!(outcomes[&4], Written::NumberTaken),
        "{:?}",
        outcomes[&4]
    );
    let stored: Vec<i32> = sqlx::query_scalar(
        "SELECT k.number FROM tickets k JOIN bookings b ON b.id = k.booking_id
          WHERE b.event_id = $1 ORDER BY k.number",
    )
    .bind(event)
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(stored, [1, 2, 3, 4, 5], "exactly the good orders' tickets");
}

/// The answer to a reservation was lost (a timeout, a killed process): the buyer's retry with the
/// same token continues that hold — the same numbers, not `token_used` — and the lost attempt can
/// no longer release what the retry took over.
#[sqlx::test(migrations = "../migrations")]
async fn a_retry_after_a_lost_reservation_continues_its_hold(db: PgPool) {
    use ticketing::inventory::{self, HoldFor, ReleaseMode, Released, Reservation};

    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 10)], room_off()).await;
    let (token, claims) = system.keys.token(event, 4, 60);
    // The fingerprint the booking service keeps with the hold for this very request.
    let fingerprint: String = booking::domain::Order {
        event_id: event,
        quantities: vec![(TierCode::known("GA"), 2)],
        buyer_email: "buyer@example.com".into(),
        total_cents: 2000,
    }
    .fingerprint()
    .iter()
    .map(|b| format!("{b:02x}"))
    .collect();
    let lost = HoldFor {
        fingerprint: &fingerprint,
        attempt: "the-attempt-whose-answer-was-lost",
        claim: None,
    };
    let Reservation::Held { numbers, epoch, .. } = inventory::reserve(
        &system.redis,
        event,
        claims.jti,
        30_000,
        lost,
        &[(TierCode::known("GA"), 2)],
    )
    .await
    .unwrap() else {
        panic!("not held");
    };

    let (status, body) = system
        .book(&token, &order(event, json!({"GA": 2})), None)
        .await;
    assert_eq!(status, 201, "{body}");
    let mut booked: Vec<i64> = body["tickets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["number"].as_i64().unwrap())
        .collect();
    booked.sort_unstable();
    let mut held: Vec<i64> = numbers["GA"].iter().map(|n| i64::from(*n)).collect();
    held.sort_unstable();
    assert_eq!(
        booked, held,
        "the retry booked the numbers its lost attempt held"
    );

    // The lost attempt wakes up and tries to release: the hold is no longer its own (or is
    // already confirmed), so nothing goes back on sale.
    let released = inventory::release(
        &system.redis,
        event,
        epoch,
        claims.jti,
        Some(lost.attempt),
        ReleaseMode::Return,
        &[TierCode::known("GA")],
    )
    .await
    .unwrap();
    assert!(
        matches!(released, Released::Superseded | Released::NoHold),
        "{released:?}"
    );
    // A different request with the same token, after the booking: the token is used.
    let (status, body) = system
        .book(&token, &order(event, json!({"GA": 1})), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("token_used"))
    );
    eventually(Duration::from_secs(5), "availability 8", || async {
        (system.availability(event).await == json!({"GA": 8})).then_some(())
    })
    .await;
    system.assert_inventory_agrees(event).await;
}

/// Group commit writes one batch at a time while that keeps up (`booking/src/writer.rs`), so a
/// write that stalls must hold the others up only for the writers' patience: here a write
/// waits on its event's lock, held as a rebuild holds it, and another event's booking is
/// written beside it while the lock is still held.
#[sqlx::test(migrations = "../migrations")]
async fn a_stalled_write_holds_up_other_bookings_only_for_the_writers_patience(db: PgPool) {
    let system = System::start(db.clone()).await;
    let stalled = system.create_event(&[("GA", 10)], room_off()).await;
    let other = system.create_event(&[("GA", 10)], room_off()).await;
    let mut rebuild = db.begin().await.unwrap();
    let locked: bool = sqlx::query_scalar("SELECT lock_event($1, true)")
        .bind(stalled)
        .fetch_one(&mut *rebuild)
        .await
        .unwrap();
    assert!(locked);
    let (token, _) = system.keys.token(stalled, 6, 60);
    let stuck = tokio::spawn({
        let booking = system.booking.clone();
        let body = order(stalled, json!({"GA": 1}));
        async move {
            reqwest::Client::new()
                .post(format!("{booking}/api/bookings"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        }
    });
    writes_waiting(&db, 1).await;

    let (token, _) = system.keys.token(other, 6, 60);
    let beside = tokio::time::timeout(
        Duration::from_secs(30),
        system.book(&token, &order(other, json!({"GA": 2})), None),
    )
    .await
    .expect("the other booking was held up by the stalled write");
    assert_eq!(beside.0, 201, "{}", beside.1);
    assert!(!stuck.is_finished(), "the stalled write still waits");

    rebuild.rollback().await.unwrap();
    assert_eq!(stuck.await.unwrap().unwrap(), 201);
    for event in [stalled, other] {
        system.assert_inventory_agrees(event).await;
    }
}

/// Each group-commit writer keeps a connection of its own (`booking/src/writer/connection.rs`).
/// One that died while idle (Postgres restarted, a backend terminated) must be found dead
/// before a batch is sent on it: sent on a dead socket, the batch's outcome would be unknown
/// and its buyers answered 503. Here every writer's backend is terminated between two rounds
/// of bookings, and the second round still books.
#[sqlx::test(migrations = "../migrations")]
async fn a_writer_connection_that_died_while_idle_is_replaced_before_its_next_batch(db: PgPool) {
    let system = System::start(db.clone()).await;
    let event = system.create_event(&[("GA", 20)], room_off()).await;
    let book_one_at_a_time = |round: &'static str| {
        let system = &system;
        async move {
            // One at a time: the writers take the queue in turn, so each writes some of them.
            for _ in 0..6 {
                let (token, _) = system.keys.token(event, 6, 60);
                let (status, body) = system
                    .book(&token, &order(event, json!({"GA": 1})), None)
                    .await;
                assert_eq!(status, 201, "{round}: {body}");
            }
        }
    };
    book_one_at_a_time("before").await;
    let writers: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
          WHERE datname = current_database() AND pid <> pg_backend_pid()
            AND query LIKE '%FROM book_orders(%'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let mut terminated = 0;
    for pid in writers {
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&db)
            .await
            .unwrap();
        terminated += i32::from(ended);
    }
    assert!(
        terminated > 0,
        "no writer connection was found to terminate"
    );
    // Past the idle time after which a writer pings its connection before sending on it.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    book_one_at_a_time("after the writers' backends were terminated").await;
    system.assert_inventory_agrees(event).await;
}
