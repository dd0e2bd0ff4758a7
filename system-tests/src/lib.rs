//! A harness that runs the gateway, booking service and queue-worker in process, on real ports,
//! against a test's own Postgres database and the machine's Redis (or a private Redis the test
//! starts when it means to flush or kill it).

pub mod ledger;
pub mod private_redis;
pub mod processes;
pub mod redis_cluster;
pub mod sale;
pub mod sse;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gateway::config::Rate;
pub use gateway::line::status::{QueueState, QueueStatus};
use serde_json::{json, Value};
use sqlx::{ConnectOptions, PgPool};
use ticketing::config::{StoreConfig, Vars};
use ticketing::redis_client::RedisClient;
use ticketing::token::{EntryClaims, EntrySigner, EntryVerifier};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The place-receipt keys every gateway of a test system shares.
pub const RECEIPT_KEYS: &str = "test:test-receipt-secret-0123";
/// The gateways' `PROOF_SECRET` in tests, so a test can sign a challenge of its own.
pub const PROOF_SECRET: &str = "test-proof-of-work-secret";

/// The machine's shared Redis (tests keep apart by using their own events).
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A fresh entry-token key pair in its own directory.
pub struct Keys {
    pub dir: PathBuf,
    pub signer: Arc<EntrySigner>,
    pub verifier: EntryVerifier,
}

impl Keys {
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("ticketing-keys-{}", Uuid::new_v4()));
        ticketing::token::ensure_key_pair(&dir, "test").expect("writing a test key pair");
        let pem = std::fs::read(dir.join("test.key.pem")).expect("reading the test key");
        Self {
            signer: Arc::new(EntrySigner::from_pem("test", &pem).expect("parsing the test key")),
            verifier: EntryVerifier::from_dir(&dir).expect("reading the test public key"),
            dir,
        }
    }

    /// A token for `event_id` as the gateway would sign it.
    pub fn token(&self, event_id: Uuid, max: u32, ttl_s: i64) -> (String, EntryClaims) {
        let now = chrono::Utc::now().timestamp();
        let claims = EntryClaims {
            sub: ticketing::queue::QueueId(Uuid::new_v4()),
            evt: event_id,
            jti: ticketing::token::TokenId::new_v4(),
            iat: now,
            exp: now + ttl_s,
            max,
        };
        (self.signer.sign(&claims).expect("signing"), claims)
    }
}

/// How to start the system.
#[derive(Clone)]
pub struct Options {
    pub redis_url: String,
    /// Redis Cluster seed nodes; when set, every service talks to the cluster.
    pub redis_cluster: Vec<String>,
    pub gateways: usize,
    pub bookings: usize,
    pub workers: usize,
    pub join_per_second: u64,
    pub join_burst: u32,
    /// The gateways' per-address poll ceiling: (per second, burst).
    pub poll_per_address: (u32, u32),
    pub admit_interval: Duration,
    pub reconcile_interval: Duration,
    pub sweep_interval: Duration,
    pub hold_ttl: Duration,
    /// How long each booking service reuses a sold-out answer.
    pub sold_out_memory: Duration,
    /// Each booking service's group-commit writers and the orders that may wait for them.
    pub writers: usize,
    pub write_queue: usize,
    /// How long the workers look after an event with no activity and nothing in Redis.
    pub hot_quiet: Duration,
    /// Quiet events each reconciler pass visits.
    pub reconcile_quiet_per_pass: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redis_url: redis_url(),
            redis_cluster: Vec::new(),
            gateways: 1,
            bookings: 1,
            workers: 1,
            join_per_second: 10_000,
            join_burst: 10_000,
            poll_per_address: (10_000, 10_000),
            admit_interval: Duration::from_millis(50),
            reconcile_interval: Duration::from_millis(500),
            sweep_interval: Duration::from_millis(500),
            hold_ttl: Duration::from_secs(30),
            sold_out_memory: Duration::from_millis(250),
            writers: 4,
            write_queue: 1024,
            hot_quiet: Duration::from_secs(300),
            reconcile_quiet_per_pass: 20,
        }
    }
}

/// The running system.
pub struct System {
    /// The first gateway and booking service; all of them in `gateways` and `bookings`.
    pub gateway: String,
    pub booking: String,
    pub gateways: Vec<String>,
    pub bookings: Vec<String>,
    pub db: PgPool,
    pub redis: RedisClient,
    pub keys: Keys,
    pub http: reqwest::Client,
    cancel: CancellationToken,
    workers: Vec<CancellationToken>,
    worker_handles: Vec<queue_worker::Worker>,
    instances: Vec<CancellationToken>,
    options: Options,
}

/// How a booking write's longest time under a hold is shared out: the booking service refuses
/// to start unless twice the sum (with the pool's acquire timeout), plus a second, fits in the
/// hold.
struct WriteBudget {
    statement: Duration,
    queue_wait: Duration,
    commit_wait: Duration,
}

/// The pool's acquire timeout in every test system.
const ACQUIRE_TIMEOUT: Duration = Duration::from_millis(500);

fn write_budget(hold_ttl: Duration) -> WriteBudget {
    let budget = hold_ttl.saturating_sub(Duration::from_secs(1)) / 2;
    let commit_wait = Duration::from_secs(2).min(budget / 10);
    let statement = Duration::from_secs(5)
        .min(budget.saturating_sub(ACQUIRE_TIMEOUT + commit_wait + Duration::from_millis(500)));
    let queue_wait = Duration::from_secs(2)
        .min(budget.saturating_sub(ACQUIRE_TIMEOUT + commit_wait + statement));
    WriteBudget {
        statement,
        queue_wait,
        commit_wait,
    }
}

/// The settings every service of a test system reads, as a deployment would set them in the
/// environment: the test's database and Redis, its secrets and keys, its timings. Each service
/// reads them through its production `from_vars` (every default and every check), and a test
/// changes only what it means to.
fn settings(db_url: &str, options: &Options) -> Vars {
    let millis = |d: Duration| d.as_millis().to_string();
    let budget = write_budget(options.hold_ttl);
    Vars::of([
        ("DATABASE_URL", db_url.to_string()),
        ("DATABASE_MAX_CONNECTIONS", "10".into()),
        ("DATABASE_ACQUIRE_TIMEOUT_MS", millis(ACQUIRE_TIMEOUT)),
        ("DATABASE_STATEMENT_TIMEOUT_MS", millis(budget.statement)),
        ("DATABASE_COMMIT_WAIT_MS", millis(budget.commit_wait)),
        ("REDIS_URL", options.redis_url.clone()),
        ("REDIS_CLUSTER_NODES", options.redis_cluster.join(",")),
    ])
}

fn store(db_url: &str, options: &Options) -> StoreConfig {
    StoreConfig::from_vars(&settings(db_url, options)).expect("the store settings")
}

async fn connect_redis(options: &Options) -> RedisClient {
    let store = store("", options);
    RedisClient::connect(&store)
        .await
        .expect("connecting to redis")
}

async fn listen() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binding a free port");
    let url = format!("http://{}", listener.local_addr().expect("local address"));
    (listener, url)
}

impl System {
    pub async fn start(db: PgPool) -> Self {
        Self::start_with(db, Options::default()).await
    }

    pub async fn start_with(db: PgPool, options: Options) -> Self {
        Self::start_with_read_db(db.clone(), db, options).await
    }

    /// Catalog reads go to `read_db` (a replica), everything else to `db`.
    pub async fn start_with_read_db(db: PgPool, read_db: PgPool, options: Options) -> Self {
        // Services log only when asked (`TEST_LOG=1`, filtered by `RUST_LOG`).
        if std::env::var_os("TEST_LOG").is_some() {
            ticketing::telemetry::init("system-tests");
        }
        let redis = connect_redis(&options).await;
        let keys = Keys::generate();
        let mut system = Self {
            gateway: String::new(),
            booking: String::new(),
            gateways: Vec::new(),
            bookings: Vec::new(),
            db,
            redis,
            keys,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("http client"),
            cancel: CancellationToken::new(),
            workers: Vec::new(),
            worker_handles: Vec::new(),
            instances: Vec::new(),
            options,
        };
        // Gateways' addresses first (the booking services admit them as CORS origins), booking
        // services next (the gateways tell browsers where the first one is).
        let mut listeners = Vec::new();
        for _ in 0..system.options.gateways.max(1) {
            let (listener, url) = listen().await;
            system.gateways.push(url);
            listeners.push(listener);
        }
        for _ in 0..system.options.bookings.max(1) {
            system.start_booking().await;
        }
        for listener in listeners {
            system.start_gateway(listener, read_db.clone()).await;
        }
        system.gateway = system.gateways[0].clone();
        system.booking = system.bookings[0].clone();
        for _ in 0..system.options.workers {
            system.start_worker().await;
        }
        system
    }

    fn db_url(&self) -> String {
        self.db.connect_options().to_url_lossy().to_string()
    }

    async fn start_gateway(&mut self, listener: tokio::net::TcpListener, read_db: PgPool) {
        let vars = settings(&self.db_url(), &self.options)
            .with("ADMIN_TOKEN", ADMIN_TOKEN)
            .with("QUEUE_ID_SECRET", "test-queue-secret")
            .with("QUEUE_RECEIPT_KEYS", RECEIPT_KEYS)
            .with("ENTRY_KEYS_DIR", self.keys.dir.to_string_lossy())
            .with("ENTRY_SIGNING_KID", "test")
            .with("BOOKING_URL", self.bookings[0].as_str())
            .with(
                "FRONTEND_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend"),
            )
            .with("PROOF_SECRET", PROOF_SECRET)
            .with("PROOF_DIFFICULTY", "8")
            .with("PROOF_MAX_DIFFICULTY", "8")
            .with("PROOF_TTL_S", "60")
            .with("PROOF_NETWORK_JOINS_PER_SECOND", "0")
            // A stopped test gateway stops at once: no load balancer to drain from.
            .with("SHUTDOWN_DRAIN_MS", "0");
        let mut config =
            gateway::config::GatewayConfig::from_vars(&vars).expect("the gateway settings");
        config.addr = listener.local_addr().expect("address");
        // Every test client shares one address: only the per-address join and poll ceilings
        // are set by the test; the rest never get in the way.
        let unlimited = Rate::new(10_000, 10_000);
        config.limits = gateway::config::LimitSettings {
            join_per_visitor: unlimited,
            join_per_address: Rate::new(
                u32::try_from(self.options.join_per_second).unwrap_or(u32::MAX),
                self.options.join_burst,
            ),
            poll_per_queue_id: unlimited,
            poll_per_address: Rate::new(
                self.options.poll_per_address.0,
                self.options.poll_per_address.1,
            ),
            admin_per_address: unlimited,
            ..config.limits
        };
        // Proofs are asked for only when a test lowers these.
        config.proof.address_joins_per_second = u32::MAX;
        config.proof.joins_per_second = u32::MAX;
        config.proof.event_joins_per_second = u32::MAX;
        let state = gateway::AppState::with_stores(
            config,
            self.db.clone(),
            read_db,
            connect_redis(&self.options).await,
            self.keys.signer.clone(),
        );
        let stop = self.cancel.child_token();
        self.instances.push(stop.clone());
        tokio::spawn(gateway::run(listener, state, async move {
            stop.cancelled().await
        }));
    }

    async fn start_booking(&mut self) {
        let (listener, url) = listen().await;
        let millis = |d: Duration| d.as_millis().to_string();
        let vars = settings(&self.db_url(), &self.options)
            .with("ENTRY_PUBLIC_KEYS_DIR", self.keys.dir.to_string_lossy())
            .with("ACCESS_CODE_SECRET", "test-access-secret")
            .with("CORS_ORIGINS", self.gateways.join(","))
            .with("HOLD_TTL_MS", millis(self.options.hold_ttl))
            .with("SOLD_OUT_MEMORY_MS", millis(self.options.sold_out_memory))
            .with("BOOKING_WRITERS", self.options.writers.to_string())
            .with("BOOKING_WRITE_QUEUE", self.options.write_queue.to_string())
            .with(
                "BOOKING_WRITE_QUEUE_WAIT_MS",
                millis(write_budget(self.options.hold_ttl).queue_wait),
            );
        let mut config =
            booking::config::BookingConfig::from_vars(&vars).expect("the booking settings");
        config.addr = listener.local_addr().expect("address");
        config.check().expect("booking settings");
        let state = booking::AppState::with_stores(
            config,
            self.db.clone(),
            connect_redis(&self.options).await,
            self.keys.verifier.clone(),
        );
        let stop = self.cancel.child_token();
        self.instances.push(stop.clone());
        tokio::spawn(booking::run(listener, state, async move {
            stop.cancelled().await
        }));
        self.bookings.push(url);
    }

    /// Stops the gateway or booking service at `url` (gracefully, as on SIGTERM).
    pub fn stop_instance(&self, url: &str) {
        let index = self
            .bookings
            .iter()
            .chain(self.gateways.iter())
            .position(|u| u == url)
            .expect("a running instance");
        self.instances[index].cancel();
    }

    /// Starts one more queue-worker process (in this process), returning its index.
    pub async fn start_worker(&mut self) -> usize {
        let millis = |d: Duration| d.as_millis().to_string();
        let vars = settings(&self.db_url(), &self.options)
            .with("WORKER_ADDR", "127.0.0.1:0")
            .with("ADMIT_INTERVAL_MS", millis(self.options.admit_interval))
            .with("SWEEP_INTERVAL_MS", millis(self.options.sweep_interval))
            .with(
                "RECONCILE_INTERVAL_MS",
                millis(self.options.reconcile_interval),
            )
            .with("SHUTDOWN_GRACE_MS", "2000")
            .with(
                "RECONCILE_QUIET_PER_PASS",
                self.options.reconcile_quiet_per_pass.to_string(),
            );
        let mut config =
            queue_worker::config::WorkerConfig::from_vars(&vars).expect("the worker settings");
        // Sub-second quiet times, which the variable (in seconds) cannot say.
        config.hot.quiet = self.options.hot_quiet;
        let redis = connect_redis(&self.options).await;
        let worker = queue_worker::Worker::new(self.db.clone(), redis, config);
        let cancel = self.cancel.child_token();
        self.worker_handles.push(worker.clone());
        tokio::spawn(worker.run(cancel.clone()));
        self.workers.push(cancel);
        self.workers.len() - 1
    }

    /// The events the worker `index` looks after now (its hot set).
    pub fn hot_events(&self, index: usize) -> Vec<Uuid> {
        self.worker_handles[index].hot_events()
    }

    pub fn stop_worker(&self, index: usize) {
        self.workers[index].cancel();
    }

    pub fn admin(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request.bearer_auth(ADMIN_TOKEN)
    }

    /// Creates an event through the admin API; `tiers` as (code, capacity) at 10 dollars each.
    pub async fn create_event(&self, tiers: &[(&str, i32)], waiting_room: Value) -> Uuid {
        self.create_event_from(event_body(tiers, waiting_room))
            .await
    }

    pub async fn create_event_from(&self, body: Value) -> Uuid {
        create_event_at(&self.http, &self.gateway, &body).await
    }

    /// POST /api/bookings with `token`, to the first booking service.
    pub async fn book(
        &self,
        token: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> (u16, Value) {
        self.book_at(&self.booking, token, body, idempotency_key)
            .await
    }

    /// POST /api/bookings with `token`, to the booking service at `base`.
    pub async fn book_at(
        &self,
        base: &str,
        token: &str,
        body: &Value,
        idempotency_key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{base}/api/bookings"))
            .bearer_auth(token)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("booking request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_json(&self, url: &str) -> (u16, Value) {
        let response = self.http.get(url).send().await.expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Live availability per tier from the booking service.
    pub async fn availability(&self, event_id: Uuid) -> Value {
        let (status, body) = self
            .get_json(&format!(
                "{}/api/events/{event_id}/availability",
                self.booking
            ))
            .await;
        assert_eq!(status, 200, "{body}");
        body["tiers"].clone()
    }

    /// Tickets issued in Postgres per tier code.
    pub async fn issued(&self, event_id: Uuid) -> std::collections::HashMap<String, i64> {
        sqlx::query_as::<_, (String, i64)>(
            "SELECT t.code, count(k.id) FROM ticket_tiers t
               LEFT JOIN tickets k ON k.tier_id = t.id AND k.status = 'issued'
              WHERE t.event_id = $1 GROUP BY t.code",
        )
        .bind(event_id)
        .fetch_all(&self.db)
        .await
        .expect("counting tickets")
        .into_iter()
        .collect()
    }

    /// Asserts the promises that hold after any sale: Postgres never above capacity, Redis and
    /// Postgres agree (sold = capacity - available), and no booking without its tickets.
    pub async fn assert_inventory_agrees(&self, event_id: Uuid) {
        let capacities: Vec<(String, i32)> =
            sqlx::query_as("SELECT code, capacity FROM ticket_tiers WHERE event_id = $1")
                .bind(event_id)
                .fetch_all(&self.db)
                .await
                .expect("tiers");
        let issued = self.issued(event_id).await;
        let available = self.availability(event_id).await;
        for (code, capacity) in capacities {
            let sold = issued.get(&code).copied().unwrap_or(0);
            assert!(
                sold <= i64::from(capacity),
                "{code}: {sold} sold of {capacity}"
            );
            assert_eq!(
                available[&code].as_i64(),
                Some(i64::from(capacity) - sold),
                "{code}: redis availability disagrees with postgres ({sold} sold of {capacity})"
            );
        }
        let empty = ledger::bookings_without_tickets(&self.db, event_id)
            .await
            .expect("bookings without tickets");
        assert_eq!(empty, 0, "bookings without tickets");
    }

    /// Shortens the event's liveness window from a minute to `seconds` (until its settings are
    /// next written), so a test sees entries that stop polling count as gone within seconds.
    pub async fn shorten_liveness_window(&self, event: Uuid, seconds: u32) {
        let _: () = redis::cmd("HSET")
            .arg(ticketing::keys::EventKeys::new(event).queue_config())
            .arg("alive_window_s")
            .arg(seconds)
            .query_async(&mut self.redis.clone())
            .await
            .expect("shortening the liveness window");
    }

    /// Puts `count` fresh entries in the event's line straight through the join script, which is
    /// faster than joining over HTTP.
    pub async fn fill_queue(&self, event: Uuid, count: usize) {
        for _ in 0..count {
            ticketing::queue::join(
                &self.redis,
                event,
                ticketing::queue::QueueId(Uuid::new_v4()),
                ticketing::queue::place::draw_lot(),
                &[],
            )
            .await
            .expect("joining through the script");
        }
    }

    /// Joins the event's queue as `visitor`.
    pub async fn join(&self, event_id: Uuid, visitor: &str) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}/api/events/{event_id}/queue", self.gateway))
            .json(&json!({ "visitor_id": visitor }))
            .send()
            .await
            .expect("join");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Joins as `visitor`, expecting 202, and returns the queue id.
    pub async fn join_line(&self, event_id: Uuid, visitor: &str) -> String {
        self.enter(event_id, visitor).await.queue_id.to_string()
    }

    /// Joins as `visitor`, expecting 202: the entry's status, typed as the gateway answers it.
    pub async fn enter(&self, event_id: Uuid, visitor: &str) -> QueueStatus {
        let (status, body) = self.join(event_id, visitor).await;
        assert_eq!(status, 202, "{body}");
        serde_json::from_value(body).expect("a queue status")
    }

    /// Polls `queue_id`, expecting 200: its status, typed as the gateway answers it.
    pub async fn status(&self, queue_id: &str) -> QueueStatus {
        let (status, body) = self.poll(queue_id).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_value(body).expect("a queue status")
    }

    pub async fn poll(&self, queue_id: &str) -> (u16, Value) {
        self.get_json(&format!("{}/api/queue/{queue_id}", self.gateway))
            .await
    }

    pub async fn waiting_room(&self, event_id: Uuid) -> Value {
        let response = self
            .admin(self.http.get(format!(
                "{}/api/admin/events/{event_id}/waiting-room",
                self.gateway
            )))
            .send()
            .await
            .expect("waiting room");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    pub async fn change_waiting_room(&self, event_id: Uuid, change: Value) -> (u16, Value) {
        let response = self
            .admin(self.http.put(format!(
                "{}/api/admin/events/{event_id}/waiting-room",
                self.gateway
            )))
            .json(&change)
            .send()
            .await
            .expect("change waiting room");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.cancel.cancel();
        let _ = std::fs::remove_dir_all(&self.keys.dir);
    }
}

/// A paused room at a slow rate: nothing is admitted until the test opens the tap, and streams
/// check on their own only every several seconds, so what reaches them at once was pushed.
pub fn paused_room() -> Value {
    json!({"enabled": true, "admission_per_minute": 1, "max_active": 100, "paused": true, "token_ttl_s": 600})
}

/// A waiting room turned off: a buyer books straight away.
pub fn room_off() -> Value {
    json!({"enabled": false, "admission_per_minute": 600, "max_active": 1000, "paused": false, "token_ttl_s": 600})
}

/// A waiting room on, admitting `rate` a minute, at most `max_active` at once.
pub fn room_on(rate: u32, max_active: u32, paused: bool) -> Value {
    json!({"enabled": true, "admission_per_minute": rate, "max_active": max_active, "paused": paused, "token_ttl_s": 600})
}

/// An event body for the admin API: on sale since a minute, starting in 30 days, `tiers` as
/// (code, capacity) at 10 dollars each.
pub fn event_body(tiers: &[(&str, i32)], waiting_room: Value) -> Value {
    json!({
        "name": format!("Test event {}", Uuid::new_v4()),
        "venue_name": "Test Hall",
        "starts_at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339(),
        "on_sale_at": (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339(),
        "waiting_room": waiting_room,
        "tiers": tiers.iter().map(|(code, capacity)| json!({
            "code": code, "name": format!("{code} tier"), "price_cents": 1000, "capacity": capacity
        })).collect::<Vec<_>>(),
    })
}

/// Creates an event through the admin API of the gateway at `gateway` (in-process or a real
/// binary); its id.
pub async fn create_event_at(http: &reqwest::Client, gateway: &str, body: &Value) -> Uuid {
    let response = http
        .post(format!("{gateway}/api/admin/events"))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .expect("creating an event");
    let status = response.status();
    let event: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "creating an event: {event}");
    event["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .expect("event id")
}

/// Waits until `n` booking writes (`book_orders`) of this test's database wait for a lock.
pub async fn writes_waiting(db: &PgPool, n: i64) {
    eventually(
        Duration::from_secs(10),
        "booking writes waiting",
        || async {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
              WHERE datname = current_database() AND wait_event_type = 'Lock'
                AND query LIKE '%book_orders%'",
            )
            .fetch_one(db)
            .await
            .ok()?;
            (waiting >= n).then_some(())
        },
    )
    .await;
}

/// Polls `check` every 50 ms until it returns Some, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
