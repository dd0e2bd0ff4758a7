//! The operator's live view (`GET /api/admin/events/{id}/live`): one sample per second written by
//! the queue-workers (two of them never write the same second twice), the numbers the sale
//! drove, the booking services' p95, and projections from them.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};
use sqlx::PgPool;
use system_tests::{eventually, Options, System};
use uuid::Uuid;

async fn live(system: &System, event: Uuid, since: Option<&str>) -> (u16, Value) {
    let mut url = format!("{}/api/admin/events/{event}/live", system.gateway);
    if let Some(since) = since {
        url.push_str(&format!("?since={since}"));
    }
    let response = system.admin(system.http.get(url)).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[sqlx::test(migrations = "../migrations")]
async fn the_live_view_samples_every_second_what_the_sale_did(db: PgPool) {
    let system = System::start_with(
        db,
        Options {
            workers: 2,
            ..Options::default()
        },
    )
    .await;
    let event = system
        .create_event(
            &[("VIP", 5), ("GA", 100)],
            json!({"enabled": true, "admission_per_minute": 6000, "max_active": 3, "paused": false, "token_ttl_s": 600}),
        )
        .await;
    let mut tokens = Vec::new();
    let mut queue_ids = Vec::new();
    for i in 0..8 {
        let (status, body) = system.join(event, &format!("live-{i}")).await;
        assert_eq!(status, 202, "{body}");
        queue_ids.push(body["queue_id"].as_str().unwrap().to_string());
    }
    // Three admitted (max_active), two of them book: 2 GA and 1 VIP + 1 GA.
    for queue_id in &queue_ids[..3] {
        let token = eventually(Duration::from_secs(10), "admission", || async {
            let (_, body) = system.poll(queue_id).await;
            body["token"].as_str().map(str::to_string)
        })
        .await;
        tokens.push(token);
    }
    for (token, tiers) in tokens
        .iter()
        .zip([json!({"GA": 2}), json!({"VIP": 1, "GA": 1})])
    {
        let (status, body) = system
            .book(
                token,
                &json!({"event_id": event, "tiers": tiers, "buyer_email": "l@example.com"}),
                None,
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    // Two more are admitted in their place; five wait. Let a few seconds be sampled.
    let view = eventually(
        Duration::from_secs(15),
        "samples of the settled sale",
        || async {
            let (status, view) = live(&system, event, None).await;
            assert_eq!(status, 200, "{view}");
            let last = view["samples"].as_array()?.last()?.clone();
            let settled = last["booked_total"] == 2
                && last["active"] == 3
                && last["waiting"] == 3
                && last["booking_p95_ms"].is_number();
            (settled && view["samples"].as_array()?.len() >= 3).then_some(view)
        },
    )
    .await;
    let samples = view["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    assert_eq!(last["admitted_total"], 5, "{last}");
    assert_eq!(last["tickets_sold"], 4, "{last}");
    assert_eq!(last["admission_per_minute"], 6000);
    let tiers: Vec<(String, i64, i64, i64)> = last["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["code"].as_str().unwrap().to_string(),
                t["available"].as_i64().unwrap(),
                t["held"].as_i64().unwrap(),
                t["sold"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(tiers.contains(&("GA".into(), 97, 0, 3)), "{tiers:?}");
    assert!(tiers.contains(&("VIP".into(), 4, 0, 1)), "{tiers:?}");
    // One sample per second between the two workers: ids are seconds, strictly rising.
    let ids: Vec<i64> = samples
        .iter()
        .map(|s| {
            s["id"]
                .as_str()
                .unwrap()
                .trim_end_matches("-0")
                .parse()
                .unwrap()
        })
        .collect();
    assert!(
        ids.windows(2)
            .all(|w| w[1] > w[0] && (w[1] - w[0]) % 1000 == 0),
        "{ids:?}"
    );
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
    let projections = &view["projections"];
    assert_eq!(projections["tickets_per_booking"], 2.0, "{projections}");
    // 101 tickets left at 2 a booking serve everyone: nobody in line goes without.
    assert_eq!(projections["likely_unserved"], 0, "{projections}");

    // Three active buyers fill max_active while GA is on sale and three wait: the line stalls,
    // and the live view counts it.
    let stalled = eventually(Duration::from_secs(10), "a stall counted", || async {
        let (_, view) = live(&system, event, None).await;
        let last = view["samples"].as_array()?.last()?.clone();
        (last["stall_s"].as_i64()? >= 2).then_some(last)
    })
    .await;
    assert!(
        stalled["stalled_total_s"].as_i64() >= stalled["stall_s"].as_i64(),
        "{stalled}"
    );
    // The third buyer asks for more VIP than is left: refused, it gives back its slot, and the
    // next in line is admitted; the view counts the refusal and the conversion per tier.
    let (status, body) = system
        .book(
            &tokens[2],
            &json!({"event_id": event, "tiers": {"VIP": 5}, "buyer_email": "l@example.com"}),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    let view = eventually(Duration::from_secs(10), "the refusal sampled", || async {
        let (_, view) = live(&system, event, None).await;
        let last = view["samples"].as_array()?.last()?.clone();
        (last["refused_total"] == 1 && last["admitted_total"] == 6).then_some(view)
    })
    .await;
    let projections = &view["projections"];
    let share = |value: &Value| (value.as_f64().unwrap() * 1000.0).round() / 1000.0;
    assert_eq!(share(&projections["refused_share"]), 0.167, "{projections}");
    let conversion: Vec<(String, f64)> = projections["tiers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["code"].as_str().unwrap().to_string(),
                share(&t["conversion"]),
            )
        })
        .collect();
    assert!(conversion.contains(&("GA".into(), 0.333)), "{conversion:?}");
    assert!(
        conversion.contains(&("VIP".into(), 0.167)),
        "{conversion:?}"
    );

    // `since` returns only what is newer.
    let newest = last["id"].as_str().unwrap().to_string();
    let (status, later) = eventually(Duration::from_secs(5), "a newer sample", || async {
        let (status, later) = live(&system, event, Some(&newest)).await;
        (!later["samples"].as_array()?.is_empty()).then_some((status, later))
    })
    .await;
    assert_eq!(status, 200);
    assert!(later["samples"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["id"].as_str().unwrap() > newest.as_str()));

    let (status, body) = live(&system, event, Some("yesterday")).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = live(&system, Uuid::new_v4(), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("event_not_found"))
    );
    let response = system
        .http
        .get(format!("{}/api/admin/events/{event}/live", system.gateway))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
