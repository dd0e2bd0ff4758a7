//! The catalog and the admin API for events, and Postgres's own refusal to oversell.

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::System;
use uuid::Uuid;

fn event_body(name: &str, starts_at: &str) -> Value {
    json!({
        "name": name,
        "venue_name": "The Forum",
        "starts_at": starts_at,
        "tiers": [
            {"code": "VIP", "name": "VIP", "price_cents": 10000, "capacity": 5},
            {"code": "GA", "name": "General", "price_cents": 1000, "capacity": 10}
        ]
    })
}

#[sqlx::test(migrations = "../migrations")]
async fn lists_events_by_start_time_with_paging(db: PgPool) {
    let system = System::start(db).await;
    for (name, day) in [
        ("Third", "2031-01-03"),
        ("First", "2031-01-01"),
        ("Second", "2031-01-02"),
    ] {
        system
            .create_event_from(event_body(name, &format!("{day}T20:00:00Z")))
            .await;
    }
    let (status, page1) = system
        .get_json(&format!("{}/api/events?page=1&limit=2", system.gateway))
        .await;
    assert_eq!(status, 200);
    let names: Vec<&str> = page1["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["First", "Second"]);
    assert_eq!(page1["has_next"], true);
    assert_eq!(
        (page1["page"].as_i64(), page1["limit"].as_i64()),
        (Some(1), Some(2))
    );

    let (_, page2) = system
        .get_json(&format!("{}/api/events?page=2&limit=2", system.gateway))
        .await;
    assert_eq!(page2["events"][0]["name"], "Third");
    assert_eq!(page2["has_next"], false);

    let (_, beyond) = system
        .get_json(&format!("{}/api/events?page=9&limit=2", system.gateway))
        .await;
    assert_eq!(beyond["events"], json!([]));
    assert_eq!(beyond["has_next"], false);

    let (_, default) = system
        .get_json(&format!("{}/api/events", system.gateway))
        .await;
    assert_eq!(
        (default["page"].as_i64(), default["limit"].as_i64()),
        (Some(1), Some(10))
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn bad_paging_is_a_400_in_the_error_envelope(db: PgPool) {
    let system = System::start(db).await;
    for query in [
        "page=0",
        "limit=0",
        "limit=101",
        "page=-3",
        "page=abc",
        "limit=1.5",
    ] {
        let (status, body) = system
            .get_json(&format!("{}/api/events?{query}", system.gateway))
            .await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"]["code"], "invalid_request", "{query}: {body}");
        assert!(body["error"]["message"].is_string());
    }
}

#[sqlx::test(migrations = "../migrations")]
async fn an_event_shows_its_tiers_prices_and_live_availability(db: PgPool) {
    let system = System::start(db).await;
    let id = system
        .create_event_from(event_body("Show", "2031-02-01T20:00:00Z"))
        .await;
    let (status, event) = system
        .get_json(&format!("{}/api/events/{id}", system.gateway))
        .await;
    assert_eq!(status, 200);
    assert_eq!(event["venue"]["name"], "The Forum");
    assert_eq!(event["waiting_room"]["enabled"], false);
    assert_eq!(
        event["tiers"][0],
        json!({"code": "VIP", "name": "VIP", "price_cents": 10000, "capacity": 5, "available": 5})
    );

    let (token, _) = system.keys.token(id, 4, 60);
    let (status, _) = system
        .book(
            &token,
            &json!({"event_id": id, "tiers": {"VIP": 2}, "buyer_email": "ada@example.com"}),
            None,
        )
        .await;
    assert_eq!(status, 201);
    let (_, event) = system
        .get_json(&format!("{}/api/events/{id}", system.gateway))
        .await;
    assert_eq!(event["tiers"][0]["available"], 3);
}

#[sqlx::test(migrations = "../migrations")]
async fn unknown_events_are_404(db: PgPool) {
    let system = System::start(db).await;
    let (status, body) = system
        .get_json(&format!("{}/api/events/{}", system.gateway, Uuid::new_v4()))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("event_not_found"))
    );
    let (status, body) = system
        .get_json(&format!("{}/api/events/not-a-uuid", system.gateway))
        .await;
    assert_eq!(status, 404);
    assert!(body["error"]["code"].is_string());
    let (status, body) = system
        .get_json(&format!("{}/api/nothing-here", system.gateway))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn admin_creates_an_event_with_its_tiers(db: PgPool) {
    let system = System::start(db).await;
    let mut body = event_body("Created", "2031-03-01T20:00:00Z");
    body["on_sale_at"] = json!("2031-02-01T10:00:00Z");
    body["waiting_room"] = json!({"enabled": true, "admission_per_minute": 120, "max_active": 50, "paused": false, "token_ttl_s": 300});
    let response = system
        .admin(
            system
                .http
                .post(format!("{}/api/admin/events", system.gateway)),
        )
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["name"], "Created");
    assert_eq!(event["on_sale_at"], "2031-02-01T10:00:00Z");
    assert_eq!(event["waiting_room"]["enabled"], true);
    assert_eq!(event["tiers"].as_array().unwrap().len(), 2);
    assert_eq!(event["tiers"][1]["available"], 10);
    let id = event["id"].as_str().unwrap();
    let room = system.waiting_room(id.parse().unwrap()).await;
    assert_eq!(
        (
            room["admission_per_minute"].as_i64(),
            room["max_active"].as_i64(),
            room["token_ttl_s"].as_i64()
        ),
        (Some(120), Some(50), Some(300))
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn admin_refuses_bad_event_bodies_with_422(db: PgPool) {
    let system = System::start(db).await;
    let good = event_body("Valid", "2031-03-01T20:00:00Z");
    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut with = |what: &'static str, change: &dyn Fn(&mut Value)| {
        let mut body = good.clone();
        change(&mut body);
        cases.push((what, body));
    };
    with("empty name", &|b| b["name"] = json!("  "));
    with("no tiers", &|b| b["tiers"] = json!([]));
    with("duplicate codes", &|b| b["tiers"][1]["code"] = json!("VIP"));
    with("bad code", &|b| b["tiers"][0]["code"] = json!("V I P"));
    with("negative price", &|b| {
        b["tiers"][0]["price_cents"] = json!(-1)
    });
    with("zero capacity", &|b| b["tiers"][0]["capacity"] = json!(0));
    with("float capacity", &|b| {
        b["tiers"][0]["capacity"] = json!(2.5)
    });
    with("bad date", &|b| b["starts_at"] = json!("tomorrow"));
    with("on sale after start", &|b| {
        b["on_sale_at"] = json!("2032-01-01T00:00:00Z")
    });
    with("unknown field", &|b| b["surprise"] = json!(1));
    with("missing venue", &|b| {
        b.as_object_mut().unwrap().remove("venue_name");
    });
    with(
        "bad waiting room",
        &|b| b["waiting_room"] = json!({"enabled": true, "admission_per_minute": 0, "max_active": 1, "paused": false, "token_ttl_s": 60}),
    );
    with("sql in name", &|b| {
        b["name"] = json!("x'); DROP TABLE events;--\u{0007}")
    });
    for (what, body) in cases {
        let response = system
            .admin(
                system
                    .http
                    .post(format!("{}/api/admin/events", system.gateway)),
            )
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{what}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_request", "{what}");
    }
    let response = system
        .admin(
            system
                .http
                .post(format!("{}/api/admin/events", system.gateway)),
        )
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let response = system
        .admin(
            system
                .http
                .post(format!("{}/api/admin/events", system.gateway)),
        )
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{}\"}}", "x".repeat(64 * 1024)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let (_, list) = system
        .get_json(&format!("{}/api/events", system.gateway))
        .await;
    assert_eq!(
        list["events"],
        json!([]),
        "no refused body created an event"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn admin_calls_need_the_admin_token(db: PgPool) {
    let system = System::start(db).await;
    let url = format!("{}/api/admin/events", system.gateway);
    let body = event_body("Nope", "2031-03-01T20:00:00Z");
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Bearer "),
        Some("test-admin-token"),
        Some("Basic dGVzdA=="),
    ] {
        let mut request = system.http.post(&url).json(&body);
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{auth:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    let (status, _) = system
        .get_json(&format!(
            "{}/api/admin/events/{}/waiting-room",
            system.gateway,
            Uuid::new_v4()
        ))
        .await;
    assert_eq!(status, 401);
}

#[sqlx::test(migrations = "../migrations")]
async fn postgres_refuses_oversold_or_duplicate_ticket_numbers(db: PgPool) {
    let system = System::start(db.clone()).await;
    let event = system
        .create_event_from(event_body("Guarded", "2031-04-01T20:00:00Z"))
        .await;
    let (tier, capacity): (Uuid, i32) = sqlx::query_as(
        "SELECT id, capacity FROM ticket_tiers WHERE event_id = $1 AND code = 'VIP'",
    )
    .bind(event)
    .fetch_one(&db)
    .await
    .unwrap();
    let booking = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id, request_hash, total_cents)
         VALUES ($1, $2, 'a@b.co', 'confirmed', gen_random_uuid(), gen_random_uuid(), '\\x00', 0)",
    )
    .bind(booking)
    .bind(event)
    .execute(&db)
    .await
    .unwrap();
    let insert = |number: i32, claimed_capacity: i32| {
        sqlx::query("INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, $3, $4)")
            .bind(booking)
            .bind(tier)
            .bind(claimed_capacity)
            .bind(number)
            .execute(&db)
    };
    insert(1, capacity)
        .await
        .expect("a free number within capacity is accepted");
    let constraint = |e: sqlx::Error| {
        e.into_database_error()
            .and_then(|d| d.constraint().map(str::to_owned))
    };
    assert_eq!(
        constraint(insert(1, capacity).await.unwrap_err()).as_deref(),
        Some("tickets_tier_number_key")
    );
    assert_eq!(
        constraint(insert(capacity + 1, capacity).await.unwrap_err()).as_deref(),
        Some("tickets_number_in_range")
    );
    assert_eq!(
        constraint(insert(0, capacity).await.unwrap_err()).as_deref(),
        Some("tickets_number_in_range")
    );
    // Claiming a larger capacity than the tier's does not get around the range check.
    assert_eq!(
        constraint(insert(capacity + 1, capacity + 100).await.unwrap_err()).as_deref(),
        Some("tickets_tier_fkey")
    );
    // A void ticket frees its number for a new sale.
    sqlx::query("UPDATE tickets SET status = 'void' WHERE tier_id = $1 AND number = 1")
        .bind(tier)
        .execute(&db)
        .await
        .unwrap();
    insert(1, capacity)
        .await
        .expect("a voided number can be sold again");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_gateway_serves_its_openapi_document_health_and_metrics(db: PgPool) {
    let system = System::start(db).await;
    let (status, doc) = system
        .get_json(&format!("{}/api/openapi.json", system.gateway))
        .await;
    assert_eq!(status, 200);
    for path in [
        "/api/events",
        "/api/events/{event_id}",
        "/api/events/{event_id}/queue",
        "/api/queue/{queue_id}",
        "/api/config",
        "/api/admin/events",
        "/api/admin/events/{event_id}/waiting-room",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    let (status, _) = system
        .get_json(&format!("{}/healthz", system.gateway))
        .await;
    assert_eq!(status, 200);
    let (status, _) = system.get_json(&format!("{}/readyz", system.gateway)).await;
    assert_eq!(status, 200);
    let (_, config) = system
        .get_json(&format!("{}/api/config", system.gateway))
        .await;
    assert_eq!(config["booking_url"], system.booking.as_str());
    let response = system
        .http
        .get(format!("{}/api/events", system.gateway))
        .send()
        .await
        .unwrap();
    assert!(
        response.headers().get("x-request-id").is_some(),
        "every answer echoes a request id"
    );
    let metrics = system
        .http
        .get(format!("{}/metrics", system.gateway))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
}

#[sqlx::test(migrations = "../migrations")]
async fn the_frontend_is_served_and_path_traversal_is_refused(db: PgPool) {
    let system = System::start(db).await;
    let response = system
        .http
        .get(format!("{}/", system.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age"));
    assert!(response.text().await.unwrap().contains("<html"));
    for path in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/..%2fCargo.toml",
        "/js/../../Cargo.toml",
    ] {
        let response = system
            .http
            .get(format!("{}{path}", system.gateway))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("[workspace]"),
            "{path} leaked a file outside the frontend"
        );
        assert!(status == 404 || status == 400, "{path}: {status}");
    }
}

/// Postgres alone keeps a sale from being oversold, whatever path a writer holding the
/// application's role takes (issue 25; any change to the guard must keep this passing): not by
/// direct inserts or updates of tickets with a made-up capacity or tier, not by raising a sold
/// tier's capacity, not by deleting what was sold, and not by a delete or a capacity cut racing
/// a sale in flight. Since migration 20261207000003 these are per-statement checks, not foreign
/// keys; they keep the foreign keys' names.
#[sqlx::test(migrations = "../migrations")]
async fn no_writer_oversells_through_any_path(db: PgPool) {
    let event: Uuid = sqlx::query_scalar(
        "WITH v AS (INSERT INTO venues (name) VALUES ('Guard Hall') RETURNING id)
         INSERT INTO events (name, venue_id, starts_at, on_sale_at)
         SELECT 'Guarded', id, now() + interval '30 days', now() FROM v RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let tier = |code: &'static str, capacity: i32, position: i32| {
        sqlx::query_scalar::<_, Uuid>(
            "INSERT INTO ticket_tiers (event_id, code, name, price_cents, capacity, position)
             VALUES ($1, $2, $2, 100, $3, $4) RETURNING id",
        )
        .bind(event)
        .bind(code)
        .bind(capacity)
        .bind(position)
        .fetch_one(&db)
    };
    let vip = tier("VIP", 2, 0).await.unwrap();
    let ga = tier("GA", 50, 1).await.unwrap();
    let booking = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id, request_hash, total_cents)
         VALUES ($1, $2, 'a@b.co', 'confirmed', gen_random_uuid(), gen_random_uuid(), '\\x00', 0)",
    )
    .bind(booking)
    .bind(event)
    .execute(&db)
    .await
    .unwrap();
    let constraint = |result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>| {
        result
            .expect_err("refused")
            .into_database_error()
            .and_then(|d| d.constraint().map(str::to_owned))
    };
    let sql = |statement: &'static str| sqlx::query(statement);

    // Both VIP numbers sold, within the capacity.
    for number in [1, 2] {
        sql("INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, 2, $3)")
            .bind(booking)
            .bind(vip)
            .bind(number)
            .execute(&db)
            .await
            .expect("a free number within the capacity");
    }
    // A third VIP: beyond the capacity, whatever capacity the row claims, in a batch or alone.
    let third = |claimed: i32| {
        sql("INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, $3, 3)")
            .bind(booking)
            .bind(vip)
            .bind(claimed)
            .execute(&db)
    };
    assert_eq!(
        constraint(third(2).await).as_deref(),
        Some("tickets_number_in_range")
    );
    assert_eq!(
        constraint(third(100).await).as_deref(),
        Some("tickets_tier_fkey")
    );
    assert_eq!(
        constraint(
            sql(
                "INSERT INTO tickets (booking_id, tier_id, tier_capacity, number)
                 VALUES ($1, $2, 50, 1), ($1, $3, 100, 3)"
            )
            .bind(booking)
            .bind(ga)
            .bind(vip)
            .execute(&db)
            .await
        )
        .as_deref(),
        Some("tickets_tier_fkey"),
        "one bad row fails the whole statement"
    );
    assert_eq!(
        constraint(
            sql("INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, 2, 1)")
                .bind(booking)
                .bind(Uuid::new_v4())
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("tickets_tier_fkey"),
        "a tier that does not exist"
    );
    // Updates: a sold ticket moved beyond the capacity, or to another tier under a made-up one.
    assert_eq!(
        constraint(
            sql("UPDATE tickets SET tier_capacity = 100, number = 3 WHERE tier_id = $1 AND number = 2")
                .bind(vip)
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("tickets_tier_fkey")
    );
    assert_eq!(
        constraint(
            sql("UPDATE tickets SET tier_id = $2 WHERE tier_id = $1 AND number = 2")
                .bind(vip)
                .bind(ga)
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("tickets_tier_fkey"),
        "GA's capacity is not the 2 the row carries"
    );
    // A sold tier's capacity cannot be raised under its tickets (they carry it).
    assert_eq!(
        constraint(
            sql("UPDATE ticket_tiers SET capacity = 3 WHERE id = $1")
                .bind(vip)
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("tickets_tier_fkey")
    );
    sql("UPDATE ticket_tiers SET name = 'Very Important' WHERE id = $1")
        .bind(vip)
        .execute(&db)
        .await
        .expect("the rest of a tier may change");
    // What was sold cannot be deleted away (and its numbers sold again).
    assert_eq!(
        constraint(
            sql("DELETE FROM ticket_tiers WHERE id = $1")
                .bind(vip)
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("tickets_tier_fkey")
    );
    // The event's delete cascades to its tiers: whichever refuses first, it is refused.
    let refused = constraint(
        sql("DELETE FROM events WHERE id = $1")
            .bind(event)
            .execute(&db)
            .await,
    );
    assert!(
        matches!(
            refused.as_deref(),
            Some("bookings_event_id_fkey" | "tickets_tier_fkey")
        ),
        "{refused:?}"
    );
    assert_eq!(
        constraint(
            sql("INSERT INTO bookings (id, event_id, buyer_email, status, token_jti, queue_id, request_hash, total_cents)
                 VALUES (gen_random_uuid(), gen_random_uuid(), 'a@b.co', 'confirmed', gen_random_uuid(), gen_random_uuid(), '\\x00', 0)")
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("bookings_event_id_fkey"),
        "a booking for an event that does not exist"
    );

    // A delete racing a sale in flight: the delete waits for the sale, then sees its ticket.
    let mut sale = db.begin().await.unwrap();
    sql("INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, 50, 1)")
        .bind(booking)
        .bind(ga)
        .execute(&mut *sale)
        .await
        .expect("a GA sale");
    let deleting = tokio::spawn({
        let db = db.clone();
        async move {
            sqlx::query("DELETE FROM ticket_tiers WHERE id = $1")
                .bind(ga)
                .execute(&db)
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!deleting.is_finished(), "the delete waits for the sale");
    sale.commit().await.unwrap();
    assert_eq!(
        constraint(deleting.await.unwrap()).as_deref(),
        Some("tickets_tier_fkey")
    );

    // A capacity cut racing a sale in flight: the cut waits for the sale, then sees its ticket
    // (a cut beneath what was sold would oversell).
    let floor = tier("Floor", 5, 2).await.unwrap();
    let mut sale = db.begin().await.unwrap();
    sql("INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, 5, 5)")
        .bind(booking)
        .bind(floor)
        .execute(&mut *sale)
        .await
        .expect("a Floor sale");
    let cutting = tokio::spawn({
        let db = db.clone();
        async move {
            sqlx::query("UPDATE ticket_tiers SET capacity = 1 WHERE id = $1")
                .bind(floor)
                .execute(&db)
                .await
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!cutting.is_finished(), "the cut waits for the sale");
    sale.commit().await.unwrap();
    assert_eq!(
        constraint(cutting.await.unwrap()).as_deref(),
        Some("tickets_tier_fkey")
    );

    // Tickets belong to a booking that exists, and a booking with tickets stays.
    assert_eq!(
        constraint(
            sql("INSERT INTO tickets (booking_id, tier_id, tier_capacity, number) VALUES ($1, $2, 50, 2)")
                .bind(Uuid::new_v4())
                .bind(ga)
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("tickets_booking_id_fkey"),
        "a ticket of a booking that does not exist"
    );
    for statement in [
        "DELETE FROM bookings WHERE id = $1",
        "UPDATE bookings SET id = gen_random_uuid() WHERE id = $1",
    ] {
        assert_eq!(
            constraint(sql(statement).bind(booking).execute(&db).await).as_deref(),
            Some("tickets_booking_id_fkey"),
            "{statement}"
        );
    }
    assert_eq!(
        constraint(
            sql("UPDATE events SET id = gen_random_uuid() WHERE id = $1")
                .bind(event)
                .execute(&db)
                .await
        )
        .as_deref(),
        Some("bookings_event_id_fkey"),
        "an event with bookings keeps its id"
    );

    let sold: i64 = sqlx::query_scalar("SELECT count(*) FROM tickets WHERE status = 'issued'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(sold, 4, "two VIP, one GA and one Floor, nothing else");
}

/// `book_orders` keeps its generic plans (migration 20261207000002): a later `CREATE OR REPLACE`
/// of it that forgets the setting brings back a re-plan of its batch insert on every call (7 % of
/// Postgres's CPU at the booking ceiling, BENCHMARKS.md).
#[sqlx::test(migrations = "../migrations")]
async fn book_orders_plans_once_per_connection(db: PgPool) {
    let settings: Vec<Option<Vec<String>>> =
        sqlx::query_scalar("SELECT proconfig FROM pg_proc WHERE proname = 'book_orders'")
            .fetch_all(&db)
            .await
            .expect("book_orders");
    assert_eq!(
        settings,
        vec![Some(vec!["plan_cache_mode=force_generic_plan".to_string()])]
    );
}
