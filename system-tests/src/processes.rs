//! Real processes for the fault suite: a private PostgreSQL (initdb into a temp dir), and the
//! gateway, booking service and queue-worker binaries, each on free ports, each one killable.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::private_redis::free_port;

/// How long a reservation holds its numbers (`HOLD_TTL_MS`) in the services started here.
pub const HOLD_TTL: Duration = Duration::from_millis(4_000);
/// How often the queue-worker releases overdue holds (`SWEEP_INTERVAL_MS`).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// `DATABASE_STATEMENT_TIMEOUT_MS`.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

fn postgres_bin(tool: &str) -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| d.ok())
                .map(|d| d.path().join("bin").join(tool))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions.pop().unwrap_or_else(|| PathBuf::from(tool))
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (the server refuses root).
fn pg_command(tool: &str, args: &[&str]) -> Command {
    let bin = postgres_bin(tool);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(bin).args(args);
        command
    } else {
        let mut command = Command::new(bin);
        command.args(args);
        command
    }
}

/// A fresh temp dir the PostgreSQL tools may write to.
fn postgres_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    if is_root() {
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("chown");
    }
    dir
}

pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
}

impl PrivatePostgres {
    pub fn start() -> Self {
        let dir = postgres_dir("ticketing-pg");
        let data = dir.join("data");
        let status = pg_command(
            "initdb",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running initdb");
        assert!(status.success(), "initdb failed");
        let postgres = Self {
            port: free_port(),
            dir,
        };
        postgres.start_server();
        let status = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &postgres.port.to_string(),
                "-U",
                "postgres",
                "-qc",
                "create database ticket_booking",
            ])
            .status()
            .expect("psql");
        assert!(status.success(), "creating the database failed");
        postgres
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/ticket_booking", self.port)
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    pub fn start_server(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("postgres.log");
        let status = pg_command(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "start",
            ],
        )
        .stdout(Stdio::null())
        .status()
        .expect("pg_ctl start");
        assert!(status.success(), "postgres did not start");
    }

    pub fn stop_server(&self) {
        let _ = pg_command(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where `cargo build` put the service binaries.
fn binary(name: &str) -> PathBuf {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p gateway -p booking -p queue-worker` first",
        path.display()
    );
    path
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Gateway,
    Booking,
    Worker,
}

/// The three services as real processes.
pub struct Services {
    pub gateway: String,
    pub booking: String,
    pub worker: String,
    pub keys_dir: PathBuf,
    env: Vec<(String, String)>,
    children: HashMap<Service, Child>,
    logs: PathBuf,
}

impl Services {
    pub async fn start(database_url: &str, redis_url: &str, logs: &Path) -> Self {
        Self::start_with(database_url, redis_url, logs, &[]).await
    }

    /// Starts them with the settings every test needs, then `settings` on top.
    pub async fn start_with(
        database_url: &str,
        redis_url: &str,
        logs: &Path,
        settings: &[(&str, &str)],
    ) -> Self {
        std::fs::create_dir_all(logs).expect("log dir");
        let keys_dir = logs.join("keys");
        ticketing::token::ensure_key_pair(&keys_dir, "fault").expect("keys");
        let (gateway, booking, worker) = (free_port(), free_port(), free_port());
        let keys = keys_dir.to_string_lossy().into_owned();
        let env: Vec<(String, String)> = [
            ("DATABASE_URL", database_url.to_string()),
            ("REDIS_URL", redis_url.to_string()),
            ("ADMIN_TOKEN", crate::ADMIN_TOKEN.to_string()),
            ("ENTRY_KEYS_DIR", keys.clone()),
            ("ENTRY_PUBLIC_KEYS_DIR", keys),
            ("ENTRY_SIGNING_KID", "fault".into()),
            ("GATEWAY_ADDR", format!("127.0.0.1:{gateway}")),
            ("BOOKING_ADDR", format!("127.0.0.1:{booking}")),
            ("WORKER_ADDR", format!("127.0.0.1:{worker}")),
            ("BOOKING_URL", format!("http://127.0.0.1:{booking}")),
            // Every buyer of the fault tests shares one address and joins once.
            ("JOIN_PER_ADDRESS_PER_SECOND", "100000".into()),
            ("POLL_PER_QUEUE_ID_PER_SECOND", "100000".into()),
            ("POLL_PER_ADDRESS_PER_SECOND", "100000".into()),
            ("PROOF_ADDRESS_JOINS_PER_SECOND", "100000".into()),
            ("PROOF_JOINS_PER_SECOND", "100000".into()),
            ("QUEUE_ID_SECRET", "fault-test-queue-id-secret".into()),
            ("QUEUE_RECEIPT_KEYS", crate::RECEIPT_KEYS.into()),
            ("PROOF_SECRET", crate::PROOF_SECRET.into()),
            ("ACCESS_CODE_SECRET", "fault-test-access-code-secret".into()),
            // A short hold, so the sweeper acts within the test; the booking service refuses
            // to start unless twice the longest write (queue wait + acquire + statement +
            // commit wait) fits.
            ("HOLD_TTL_MS", HOLD_TTL.as_millis().to_string()),
            (
                "DATABASE_STATEMENT_TIMEOUT_MS",
                STATEMENT_TIMEOUT.as_millis().to_string(),
            ),
            ("BOOKING_WRITE_QUEUE_WAIT_MS", "300".into()),
            ("DATABASE_COMMIT_WAIT_MS", "200".into()),
            ("RECONCILE_INTERVAL_MS", "1000".into()),
            ("SWEEP_INTERVAL_MS", SWEEP_INTERVAL.as_millis().to_string()),
            ("LOG_LEVEL", "info".into()),
            (
                "FRONTEND_DIR",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../frontend").into(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
        let mut services = Self {
            gateway: format!("http://127.0.0.1:{gateway}"),
            booking: format!("http://127.0.0.1:{booking}"),
            worker: format!("http://127.0.0.1:{worker}"),
            keys_dir,
            env,
            children: HashMap::new(),
            logs: logs.to_path_buf(),
        };
        for service in [Service::Gateway, Service::Booking, Service::Worker] {
            services.spawn(service);
        }
        services.wait_ready().await;
        services
    }

    fn spawn(&mut self, service: Service) {
        let (name, args): (&str, &[&str]) = match service {
            Service::Gateway => ("gateway", &["serve"]),
            Service::Booking => ("booking", &[]),
            Service::Worker => ("queue-worker", &[]),
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{name}.log")))
            .expect("log file");
        let child = Command::new(binary(name))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting a service");
        self.children.insert(service, child);
    }

    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for url in [&self.gateway, &self.booking, &self.worker] {
            let mut ready = false;
            for _ in 0..300 {
                if http
                    .get(format!("{url}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
                {
                    ready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(ready, "{url} did not become ready");
        }
    }

    /// Creates an event through the gateway's admin API (`body` as `POST /api/admin/events`
    /// takes it); panics unless it is created.
    pub async fn create_event(
        &self,
        http: &reqwest::Client,
        body: serde_json::Value,
    ) -> uuid::Uuid {
        let created = http
            .post(format!("{}/api/admin/events", self.gateway))
            .bearer_auth(crate::ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .expect("creating an event");
        assert_eq!(created.status(), 201);
        let created: serde_json::Value = created.json().await.expect("json");
        created["id"]
            .as_str()
            .and_then(|id| id.parse().ok())
            .expect("event id")
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self, service: Service) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn terminate(&mut self, service: Service) {
        if let Some(mut child) = self.children.remove(&service) {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait up to `limit` for the exit; false (and a SIGKILL) when it did not
    /// come in time.
    pub fn terminate_within(&mut self, service: Service, limit: Duration) -> bool {
        let Some(mut child) = self.children.remove(&service) else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn restart(&mut self, service: Service) {
        self.kill(service);
        self.spawn(service);
    }

    pub fn start_again(&mut self, service: Service) {
        self.spawn(service);
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for service in [Service::Gateway, Service::Booking, Service::Worker] {
            self.kill(service);
        }
    }
}

impl PrivatePostgres {
    /// A streaming replica of `primary` (`pg_basebackup -R`), started on its own port.
    pub fn replica_of(primary: &PrivatePostgres) -> Self {
        let dir = postgres_dir("ticketing-replica");
        let data = dir.join("data");
        let status = pg_command(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
                "-D",
                data.to_str().expect("utf-8"),
                "-R",
                "-X",
                "stream",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("pg_basebackup");
        assert!(status.success(), "pg_basebackup failed");
        let replica = Self {
            port: free_port(),
            dir,
        };
        replica.start_server();
        replica
    }
}

/// The gateway binary alone, on a free port, against the test's database and the machine's
/// Redis: enough for the waiting room's joins and polls (no worker admits anyone).
pub struct GatewayProcess {
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl GatewayProcess {
    /// Starts it with the settings every test needs, then `settings` on top.
    pub async fn start(database_url: &str, settings: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("ticketing-gw-{}", uuid::Uuid::new_v4()));
        let keys = dir.join("keys");
        ticketing::token::ensure_key_pair(&keys, "gw").expect("keys");
        let port = free_port();
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
        let child = Command::new(binary("gateway"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(Self::settings(database_url, &keys, port))
            .envs(settings.iter().copied())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("starting the gateway");
        let mut gateway = Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            dir,
        };
        gateway.wait_ready().await;
        gateway
    }

    /// Starts it with the settings every test needs, then `settings` on top, expecting it to
    /// refuse to start: returns what it logged before exiting.
    pub fn refuses(database_url: &str, settings: &[(&str, &str)]) -> String {
        let dir = std::env::temp_dir().join(format!("ticketing-gw-{}", uuid::Uuid::new_v4()));
        let keys = dir.join("keys");
        ticketing::token::ensure_key_pair(&keys, "gw").expect("keys");
        let output = Command::new(binary("gateway"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(Self::settings(database_url, &keys, free_port()))
            .envs(settings.iter().copied())
            .output()
            .expect("running the gateway");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            !output.status.success(),
            "the gateway exited successfully with {settings:?}"
        );
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    fn settings(database_url: &str, keys: &Path, port: u16) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", database_url.to_string()),
            ("REDIS_URL", crate::redis_url()),
            ("ADMIN_TOKEN", crate::ADMIN_TOKEN.to_string()),
            ("QUEUE_ID_SECRET", "gateway-test-queue-id-secret".into()),
            ("PROOF_SECRET", crate::PROOF_SECRET.into()),
            ("QUEUE_RECEIPT_KEYS", crate::RECEIPT_KEYS.into()),
            ("ENTRY_KEYS_DIR", keys.to_string_lossy().into_owned()),
            ("ENTRY_SIGNING_KID", "gw".into()),
            ("GATEWAY_ADDR", format!("127.0.0.1:{port}")),
            ("LOG_LEVEL", "warn".into()),
            // Every test address is in 127.0.0.0/24: a test that means the per-network
            // threshold sets it.
            ("PROOF_NETWORK_JOINS_PER_SECOND", "0".into()),
        ]
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the gateway exited ({status}): {}", self.log());
            }
            let ready = http.get(format!("{}/readyz", self.url)).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the gateway did not become ready: {}", self.log());
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("gateway.log")).unwrap_or_default()
    }

    /// Its resident memory now, in KiB (`VmRSS`).
    pub fn resident_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the gateway's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS")
    }

    /// Sends SIGTERM, as a deploy does.
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits up to `limit` for it to exit; whether it did.
    pub fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
