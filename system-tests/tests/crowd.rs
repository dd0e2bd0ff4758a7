//! Fair to crowds, costly for bots: the real gateway binary's join and poll limits, its reading of
//! `X-Forwarded-For`, and the proof-of-work exchange, against the real Redis and Postgres.
//!
//! Test clients bind different loopback source addresses (127.0.0.2, .3, …), so each test speaks
//! as the addresses it means to, and the gateway sees them as its TCP peers. Run alone with
//! `cargo build -p gateway && cargo test -p system-tests --test crowd`.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use gateway::config::ProofSettings;
use gateway::proof::{solve, zero_bits, ProofOfWork};
use serde_json::{json, Value};
use sqlx::{ConnectOptions, PgPool};
use system_tests::processes::GatewayProcess;
use system_tests::PROOF_SECRET;
use ticketing::config::Secret;
use uuid::Uuid;

/// A client whose requests come from `source` (any address of 127.0.0.0/8 on Linux).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().expect("a loopback address"))
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client")
}

async fn start_gateway(db: &PgPool, settings: &[(&str, &str)]) -> GatewayProcess {
    let url = db.connect_options().to_url_lossy().to_string();
    GatewayProcess::start(&url, settings).await
}

/// A paused waiting room, so every join stands in line.
async fn create_event(gateway: &GatewayProcess) -> Uuid {
    let body = json!({
        "name": format!("Crowd {}", Uuid::new_v4()),
        "venue_name": "Crowd Hall",
        "starts_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
        "on_sale_at": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
        "waiting_room": {"enabled": true, "admission_per_minute": 60, "max_active": 10,
                         "paused": true, "token_ttl_s": 300},
        "tiers": [{"code": "GA", "name": "General", "price_cents": 1000, "capacity": 100}],
    });
    system_tests::create_event_at(&reqwest::Client::new(), &gateway.url, &body).await
}

struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

async fn join(
    http: &reqwest::Client,
    gateway: &str,
    event: Uuid,
    body: Value,
    forwarded_for: Option<&str>,
) -> Answer {
    let mut request = http
        .post(format!("{gateway}/api/events/{event}/queue"))
        .json(&body);
    if let Some(hops) = forwarded_for {
        request = request.header("X-Forwarded-For", hops);
    }
    let response = request.send().await.expect("join");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    Answer {
        status,
        body: response.json().await.unwrap_or(Value::Null),
        retry_after,
    }
}

/// The challenge and difficulty of a 428, checking its shape on the way.
fn challenge_of(answer: &Answer) -> (String, u8) {
    assert_eq!(answer.status, 428, "{}", answer.body);
    let error = &answer.body["error"];
    assert_eq!(error["code"], "proof_required");
    assert!(
        answer.retry_after.is_none(),
        "a 428 asks for work, not time"
    );
    (
        error["challenge"]
            .as_str()
            .expect("a challenge")
            .to_string(),
        error["difficulty"].as_u64().expect("a difficulty") as u8,
    )
}

/// Solves off the async threads: it is the one CPU-heavy thing a test client does.
async fn solved(challenge: String, difficulty: u8) -> Value {
    let nonce = tokio::task::spawn_blocking({
        let challenge = challenge.clone();
        move || solve(&challenge, difficulty)
    })
    .await
    .expect("solving");
    json!({"challenge": challenge, "nonce": nonce})
}

#[sqlx::test(migrations = "../migrations")]
async fn a_hundred_visitors_behind_one_address_all_get_in_after_at_most_one_proof_each(db: PgPool) {
    // More than 20 joins a second from one address must prove work; the address's join ceiling
    // is 50/s with a burst of 100: exactly the hundred joins, so it would refuse some of them if
    // the ~80 answers 428 were counted against it.
    let gateway = start_gateway(
        &db,
        &[
            ("PROOF_ADDRESS_JOINS_PER_SECOND", "20"),
            ("PROOF_JOINS_PER_SECOND", "100000"),
            ("PROOF_DIFFICULTY", "10"),
            ("JOIN_PER_ADDRESS_PER_SECOND", "50"),
        ],
    )
    .await;
    let event = create_event(&gateway).await;
    let nat = client_from("127.0.0.2");
    let started = Instant::now();
    let visitors = (0..100).map(|i| {
        let (nat, url) = (nat.clone(), gateway.url.clone());
        tokio::spawn(async move {
            let visitor = format!("crowd-{i}");
            let first = join(&nat, &url, event, json!({"visitor_id": visitor}), None).await;
            let first_answered = started.elapsed();
            if first.status != 428 {
                return (first, 0, first_answered);
            }
            assert_eq!(first.body["error"]["reason"], "missing");
            let (challenge, difficulty) = challenge_of(&first);
            let proof = solved(challenge, difficulty).await;
            let again = json!({"visitor_id": visitor, "proof": proof});
            (
                join(&nat, &url, event, again, None).await,
                1,
                first_answered,
            )
        })
    });
    let mut queue_ids = std::collections::HashSet::new();
    let (mut proofs, mut slowest_first_answer) = (0, Duration::ZERO);
    for visitor in futures::future::join_all(visitors).await {
        let (answer, solved, first_answered) = visitor.expect("a visitor task");
        assert_eq!(answer.status, 202, "{}", answer.body);
        queue_ids.insert(answer.body["queue_id"].as_str().unwrap().to_string());
        proofs += solved;
        slowest_first_answer = slowest_first_answer.max(first_answered);
    }
    assert!(
        slowest_first_answer < Duration::from_secs(1),
        "the hundred joins were all answered within a second ({slowest_first_answer:?})"
    );
    assert_eq!(queue_ids.len(), 100, "a hundred places in line");
    // The first 20 (plus what the threshold refilled meanwhile) got in without work.
    assert!(
        (40..=80).contains(&proofs),
        "{proofs} of 100 proved work: the threshold was not applied"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn one_visitor_id_flooding_gets_429_while_its_neighbours_get_in(db: PgPool) {
    let gateway = start_gateway(&db, &[("JOIN_PER_VISITOR_PER_SECOND", "1")]).await;
    let event = create_event(&gateway).await;
    let home = client_from("127.0.0.3");
    let mut answers = Vec::new();
    for _ in 0..10 {
        answers.push(
            join(
                &home,
                &gateway.url,
                event,
                json!({"visitor_id": "flood"}),
                None,
            )
            .await,
        );
    }
    let accepted: Vec<&Answer> = answers.iter().filter(|a| a.status == 202).collect();
    let limited: Vec<&Answer> = answers.iter().filter(|a| a.status == 429).collect();
    assert_eq!(
        (accepted.len(), limited.len()),
        (2, 8),
        "a burst of two, then 429: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(
        accepted[0].body["queue_id"], accepted[1].body["queue_id"],
        "joining again is the same place"
    );
    for answer in limited {
        assert_eq!(answer.body["error"]["code"], "rate_limited");
        let seconds: u64 = answer.retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=2).contains(&seconds), "Retry-After {seconds}");
    }
    let neighbour = join(
        &home,
        &gateway.url,
        event,
        json!({"visitor_id": "neighbour"}),
        None,
    )
    .await;
    assert_eq!(neighbour.status, 202, "{}", neighbour.body);
}

#[sqlx::test(migrations = "../migrations")]
async fn a_forged_forwarded_for_from_an_untrusted_peer_changes_nothing(db: PgPool) {
    let gateway = start_gateway(
        &db,
        &[
            ("TRUSTED_PROXIES", "127.0.0.5/32"),
            ("PROOF_ADDRESS_JOINS_PER_SECOND", "5"),
            ("PROOF_DIFFICULTY", "10"),
        ],
    )
    .await;
    let event = create_event(&gateway).await;
    // A new made-up address on every join: were it believed, each join would be a new client,
    // under the threshold.
    let untrusted = client_from("127.0.0.3");
    let mut asked = 0;
    for i in 0..12 {
        let forged = format!("203.0.113.{i}");
        let answer = join(
            &untrusted,
            &gateway.url,
            event,
            json!({"visitor_id": format!("u{i}")}),
            Some(&forged),
        )
        .await;
        assert!([202, 428].contains(&answer.status), "{}", answer.body);
        asked += usize::from(answer.status == 428);
    }
    assert!(
        asked >= 6,
        "only {asked} of 12 joins were asked for work: the forged header was believed"
    );
}

#[sqlx::test(migrations = "../migrations")]
async fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client(db: PgPool) {
    let gateway = start_gateway(
        &db,
        &[
            ("TRUSTED_PROXIES", "127.0.0.5/32, 10.0.0.0/8"),
            ("PROOF_ADDRESS_JOINS_PER_SECOND", "5"),
            ("PROOF_DIFFICULTY", "10"),
        ],
    )
    .await;
    let event = create_event(&gateway).await;
    let proxy = client_from("127.0.0.5");
    let statuses = |answers: &[Answer]| answers.iter().map(|a| a.status).collect::<Vec<_>>();
    // Twelve people behind the proxy (and an inner trusted proxy), each with a forged hop on the
    // left: each is a client of its own, none over the threshold.
    let mut distinct = Vec::new();
    for i in 0..12 {
        let hops = format!("6.6.6.6, 198.51.100.{i}, 10.1.2.3");
        distinct.push(
            join(
                &proxy,
                &gateway.url,
                event,
                json!({"visitor_id": format!("d{i}")}),
                Some(&hops),
            )
            .await,
        );
    }
    assert!(
        distinct.iter().all(|a| a.status == 202),
        "{:?}",
        statuses(&distinct)
    );
    // One person forging a new leftmost hop each time is still one client.
    let mut one = Vec::new();
    for i in 0..12 {
        let hops = format!("203.0.113.{i}, 192.0.2.77");
        one.push(
            join(
                &proxy,
                &gateway.url,
                event,
                json!({"visitor_id": format!("o{i}")}),
                Some(&hops),
            )
            .await,
        );
    }
    let asked = one.iter().filter(|a| a.status == 428).count();
    assert!(asked >= 6, "{:?}", statuses(&one));
}

#[sqlx::test(migrations = "../migrations")]
async fn proofs_are_refused_when_missing_wrong_expired_or_reused_and_accepted_when_solved(
    db: PgPool,
) {
    // A threshold of 0: every join without a proof is asked for one.
    let gateway = start_gateway(
        &db,
        &[
            ("PROOF_ADDRESS_JOINS_PER_SECOND", "0"),
            ("PROOF_DIFFICULTY", "10"),
            ("PROOF_TTL_S", "60"),
        ],
    )
    .await;
    let (event, other_event) = (create_event(&gateway).await, create_event(&gateway).await);
    let http = client_from("127.0.0.4");
    let url = gateway.url.as_str();
    let with_proof = |visitor: &str, challenge: &str, nonce: &str| json!({"visitor_id": visitor, "proof": {"challenge": challenge, "nonce": nonce}});

    let missing = join(&http, url, event, json!({"visitor_id": "v1"}), None).await;
    let (challenge, difficulty) = challenge_of(&missing);
    assert_eq!(missing.body["error"]["reason"], "missing");
    assert_eq!(difficulty, 10);
    let nonce = solve(&challenge, difficulty);

    let unsolved = (0u64..)
        .map(|n| n.to_string())
        .find(|n| zero_bits(&challenge, n) < 10)
        .unwrap();
    let wrong = [
        with_proof("v1", &challenge, &unsolved),
        with_proof("v1", &challenge, "not-a-number"),
        with_proof("v1", &challenge[..challenge.len() - 1], &nonce),
        with_proof("v1", &challenge.replace(&challenge[..4], "AAAA"), &nonce),
    ];
    let mut challenges = std::collections::HashSet::from([challenge.clone()]);
    for body in wrong {
        let answer = join(&http, url, event, body.clone(), None).await;
        let (fresh, _) = challenge_of(&answer);
        assert_eq!(answer.body["error"]["reason"], "wrong", "{body}");
        assert!(
            challenges.insert(fresh),
            "each 428 carries a fresh challenge"
        );
    }
    let elsewhere = join(
        &http,
        url,
        other_event,
        with_proof("v1", &challenge, &nonce),
        None,
    )
    .await;
    challenge_of(&elsewhere);
    assert_eq!(
        elsewhere.body["error"]["reason"], "wrong",
        "a challenge is for one event"
    );

    // Signed with the gateways' secret, but issued 61 s ago with a 60 s life.
    let signer = ProofOfWork::new(
        &ProofSettings {
            secret: Secret::new(PROOF_SECRET),
            address_joins_per_second: 0,
            joins_per_second: 0,
            network_joins_per_second: 0,
            event_joins_per_second: 500,
            max_difficulty: 10,
            difficulty: 10,
            ttl: Duration::from_secs(60),
        },
        10,
    );
    let me = gateway::client_addr::ClientAddr("127.0.0.4".parse().unwrap());
    let old = signer.issue_at(
        event,
        me,
        chrono::Utc::now().timestamp_millis() - 61_000,
        10,
    );
    let expired = join(
        &http,
        url,
        event,
        with_proof("v1", &old, &solve(&old, 10)),
        None,
    )
    .await;
    challenge_of(&expired);
    assert_eq!(expired.body["error"]["reason"], "expired");
    // Signed with another secret, asking no work at all.
    let forged = ProofOfWork::new(
        &ProofSettings {
            secret: Secret::new("somebody-else's-secret"),
            address_joins_per_second: 0,
            joins_per_second: 0,
            network_joins_per_second: 0,
            event_joins_per_second: 500,
            max_difficulty: 0,
            difficulty: 0,
            ttl: Duration::from_secs(60),
        },
        10,
    )
    .issue(event, me);
    let answer = join(&http, url, event, with_proof("v1", &forged, "0"), None).await;
    challenge_of(&answer);
    assert_eq!(answer.body["error"]["reason"], "wrong");

    let accepted = join(
        &http,
        url,
        event,
        with_proof("v1", &challenge, &nonce),
        None,
    )
    .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["state"], "waiting");

    for visitor in ["v1", "v2"] {
        let reused = join(
            &http,
            url,
            event,
            with_proof(visitor, &challenge, &nonce),
            None,
        )
        .await;
        challenge_of(&reused);
        assert_eq!(reused.body["error"]["reason"], "reused", "as {visitor}");
    }

    let malformed = join(
        &http,
        url,
        event,
        json!({"visitor_id": "v3", "proof": {"challenge": challenge, "nonce": 7}}),
        None,
    )
    .await;
    assert_eq!(malformed.status, 422, "{}", malformed.body);
    assert_eq!(malformed.body["error"]["code"], "invalid_request");
}

#[sqlx::test(migrations = "../migrations")]
async fn polls_are_limited_per_queue_id_so_neighbours_behind_one_address_keep_polling(db: PgPool) {
    let gateway = start_gateway(&db, &[("POLL_PER_QUEUE_ID_PER_SECOND", "1")]).await;
    let event = create_event(&gateway).await;
    let nat = client_from("127.0.0.6");
    let mut ids = Vec::new();
    for visitor in ["busy", "quiet"] {
        let answer = join(
            &nat,
            &gateway.url,
            event,
            json!({"visitor_id": visitor}),
            None,
        )
        .await;
        assert_eq!(answer.status, 202, "{}", answer.body);
        ids.push(answer.body["queue_id"].as_str().unwrap().to_string());
    }
    let poll = |id: &str| {
        let (nat, url) = (nat.clone(), format!("{}/api/queue/{id}", gateway.url));
        async move { nat.get(url).send().await.expect("poll") }
    };
    let mut statuses = Vec::new();
    let mut refusal = None;
    for _ in 0..5 {
        let response = poll(&ids[0]).await;
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            refusal = Some(response);
        }
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    let refusal = refusal.unwrap();
    assert!(refusal.headers().get("retry-after").is_some());
    let body: Value = refusal.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert_eq!(
        poll(&ids[1]).await.status(),
        200,
        "the neighbour still polls"
    );
}

/// A bot farm's two levers: many addresses of one network, each under the per-address
/// threshold, and proofs solved in one place handed to bots elsewhere. The first is asked for
/// proofs by its network; the second is refused as `wrong` outside the network it was issued to.
#[sqlx::test(migrations = "../migrations")]
async fn a_networks_many_addresses_are_asked_for_proofs_and_proofs_stay_in_their_network(
    db: PgPool,
) {
    let gateway = start_gateway(
        &db,
        &[
            ("TRUSTED_PROXIES", "127.0.0.0/8"),
            ("PROOF_NETWORK_JOINS_PER_SECOND", "5"),
            ("PROOF_DIFFICULTY", "8"),
        ],
    )
    .await;
    let event = create_event(&gateway).await;
    let http = client_from("127.0.0.5");
    let url = gateway.url.as_str();
    let mut statuses = Vec::new();
    for host in 1..=12 {
        let answer = join(
            &http,
            url,
            event,
            json!({"visitor_id": format!("farm-{host}")}),
            Some(&format!("192.0.2.{host}")),
        )
        .await;
        statuses.push(answer.status);
    }
    assert!(
        statuses[..5].iter().all(|s| *s == 202),
        "the network's first five pass: {statuses:?}"
    );
    assert!(
        statuses[5..].iter().filter(|s| **s == 428).count() >= 6,
        "then its addresses are asked for work, each under its own threshold: {statuses:?}"
    );

    // A proof for a client of 192.0.2.0/24, presented from another network whose own joins
    // are over the threshold too (else it would pass without any proof).
    for host in 1..=6 {
        join(
            &http,
            url,
            event,
            json!({"visitor_id": format!("other-{host}")}),
            Some(&format!("203.0.113.{host}")),
        )
        .await;
    }
    let asked = join(
        &http,
        url,
        event,
        json!({"visitor_id": "farm-x"}),
        Some("192.0.2.50"),
    )
    .await;
    let (challenge, difficulty) = challenge_of(&asked);
    let nonce = solve(&challenge, difficulty);
    let proof = json!({"visitor_id": "farm-x", "proof": {"challenge": challenge, "nonce": nonce}});
    let elsewhere = join(&http, url, event, proof.clone(), Some("203.0.113.50")).await;
    assert_eq!(elsewhere.status, 428, "{}", elsewhere.body);
    assert_eq!(elsewhere.body["error"]["reason"], "wrong");
    let at_home = join(&http, url, event, proof, Some("192.0.2.51")).await;
    assert_eq!(at_home.status, 202, "{}", at_home.body);
}
