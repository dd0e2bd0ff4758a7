//! Hostile input: SQL metacharacters in every parameter, garbage bodies and headers. Each gets
//! its clean error, and no data changes.

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::System;

const NASTY: [&str; 6] = [
    "' OR '1'='1",
    "1; DROP TABLE bookings;--",
    "\" OR \"\"=\"",
    "%27%20OR%201%3D1--",
    "${jndi:ldap://x}",
    "../../../../etc/passwd",
];

async fn row_counts(db: &PgPool) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in ["venues", "events", "ticket_tiers", "bookings", "tickets"] {
        counts.push(
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(db)
                .await
                .unwrap(),
        );
    }
    counts
}

fn assert_clean_refusal(what: &str, status: u16, body: &Value) {
    assert!(
        (400..500).contains(&status),
        "{what}: answered {status}: {body}"
    );
    assert!(
        body["error"]["code"].is_string(),
        "{what}: not the error envelope: {body}"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn sql_metacharacters_in_every_parameter_change_nothing(db: PgPool) {
    let system = System::start(db.clone()).await;
    let event = system.create_event(&[("GA", 10)], json!({"enabled": true, "admission_per_minute": 60, "max_active": 10, "paused": true, "token_ttl_s": 600})).await;
    let (token, _) = system.keys.token(event, 4, 60);
    let before = row_counts(&db).await;
    for nasty in NASTY {
        let encoded: String = nasty.bytes().map(|b| format!("%{b:02X}")).collect();
        for url in [
            format!("{}/api/events/{encoded}", system.gateway),
            format!("{}/api/queue/{encoded}", system.gateway),
            format!("{}/api/events?page={encoded}", system.gateway),
            format!("{}/api/events?limit={encoded}", system.gateway),
            format!("{}/api/bookings/{encoded}", system.booking),
            format!("{}/api/events/{encoded}/availability", system.booking),
        ] {
            let response = system
                .http
                .get(&url)
                .bearer_auth(nasty.replace(['\n', '\r'], ""))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_clean_refusal(&url, status, &body);
        }
        let (status, body) = system.join(event, nasty).await;
        assert_clean_refusal("visitor_id", status, &body);
        let response = system
            .http
            .post(format!("{}/api/events/{encoded}/queue", system.gateway))
            .json(&json!({"visitor_id": "ok"}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_clean_refusal(
            "event id in path",
            status,
            &response.json().await.unwrap_or(Value::Null),
        );
        for body in [
            json!({"event_id": event, "tiers": {nasty: 1}, "buyer_email": "a@b.co"}),
            json!({"event_id": event, "tiers": {"GA": 1}, "buyer_email": nasty}),
            json!({"event_id": nasty, "tiers": {"GA": 1}, "buyer_email": "a@b.co"}),
        ] {
            let (status, answer) = system.book(&token, &body, None).await;
            assert_clean_refusal("booking body", status, &answer);
        }
        let (status, answer) = system
            .book(
                &token,
                &json!({"event_id": event, "tiers": {"GA": 0}, "buyer_email": "a@b.co"}),
                Some(nasty),
            )
            .await;
        assert_clean_refusal("idempotency key", status, &answer);
        let response = system
            .admin(system.http.put(format!(
                "{}/api/admin/events/{event}/waiting-room",
                system.gateway
            )))
            .json(&json!({"admission_per_minute": nasty}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert_clean_refusal(
            "waiting room",
            status,
            &response.json().await.unwrap_or(Value::Null),
        );
    }
    assert_eq!(row_counts(&db).await, before, "hostile input changed data");
    assert_eq!(system.availability(event).await, json!({"GA": 10}));
}

#[sqlx::test(migrations = "../migrations")]
async fn garbage_headers_and_content_types_get_clean_errors(db: PgPool) {
    let system = System::start(db).await;
    let event = system.create_event(&[("GA", 10)], json!({"enabled": false, "admission_per_minute": 60, "max_active": 10, "paused": false, "token_ttl_s": 600})).await;
    let (token, _) = system.keys.token(event, 4, 60);
    let url = format!("{}/api/bookings", system.booking);
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "no content type",
            system.http.post(&url).bearer_auth(&token).body("{}"),
        ),
        (
            "form body",
            system
                .http
                .post(&url)
                .bearer_auth(&token)
                .form(&[("event_id", "x")]),
        ),
        (
            "empty json",
            system
                .http
                .post(&url)
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(""),
        ),
        (
            "json null",
            system
                .http
                .post(&url)
                .bearer_auth(&token)
                .json(&Value::Null),
        ),
        (
            "basic auth",
            system
                .http
                .post(&url)
                .basic_auth("a", Some("b"))
                .json(&json!({})),
        ),
    ];
    for (what, request) in cases {
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_clean_refusal(what, status, &body);
    }
    assert_eq!(system.availability(event).await, json!({"GA": 10}));
}
