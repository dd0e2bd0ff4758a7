//! A `BEGIN` whose future is dropped while its reply is in flight (a client disconnect, the
//! request timeout) must never leave a pooled connection inside a transaction.
//!
//! sqlx 0.8.6 does (launchbadge/sqlx#4385, #4393): its drop guard keys on a transaction depth it
//! raises only after the reply. The case is made deterministic with a TCP proxy between the pool
//! and the real Postgres that holds back the server's bytes while the future is dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use ticketing::db::PoolLimits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Forwards connections to Postgres. Once `armed`, the first `BEGIN` the client sends stalls
/// the server's replies (the pool's own health-check ping goes through first), until
/// `stalled` is cleared.
struct StallingProxy {
    port: u16,
    armed: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start() -> Self {
        let target = url_host_port(&database_url());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let stalled = Arc::new(AtomicBool::new(false));
        let armed = Arc::new(AtomicBool::new(false));
        let (flag, trigger) = (stalled.clone(), armed.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&target)
                    .await
                    .expect("reaching postgres");
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let (stall, trigger) = (flag.clone(), trigger.clone());
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        let chunk = &buffer[..n];
                        if chunk.windows(5).any(|w| w == b"BEGIN")
                            && trigger.swap(false, Ordering::SeqCst)
                        {
                            stall.store(true, Ordering::SeqCst);
                        }
                        if server_write.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                });
                let flag = flag.clone();
                tokio::spawn(async move {
                    let mut buffer = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        while flag.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if client_write.write_all(&buffer[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self {
            port,
            armed,
            stalled,
        }
    }

    fn url(&self) -> String {
        let url = database_url();
        let target = url_host_port(&url);
        url.replacen(&target, &format!("127.0.0.1:{}", self.port), 1)
    }
}

fn url_host_port(url: &str) -> String {
    let after_at = url.rsplit_once('@').map_or(url, |(_, rest)| rest);
    let host_port = after_at.split('/').next().unwrap_or(after_at);
    if host_port.contains(':') {
        host_port.to_string()
    } else {
        format!("{host_port}:5432")
    }
}

/// Starts a `BEGIN`, holds back its reply, drops the future, then lets the reply through.
async fn cancel_a_begin(pool: &PgPool, proxy: &StallingProxy) {
    // Warm the only connection so the next checkout reuses it.
    sqlx::query("SELECT 1")
        .execute(pool)
        .await
        .expect("warm-up");
    proxy.armed.store(true, Ordering::SeqCst);
    let begin = tokio::time::timeout(Duration::from_millis(200), pool.begin()).await;
    assert!(
        begin.is_err(),
        "the BEGIN should still be waiting for its reply"
    );
    assert!(
        proxy.stalled.load(Ordering::SeqCst),
        "the BEGIN never reached the proxy"
    );
    proxy.stalled.store(false, Ordering::SeqCst);
    // The connection goes back to the pool in the background.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Whether the next statement on a pooled connection runs inside a transaction someone else
/// opened.
async fn next_borrower_is_in_a_transaction(pool: &PgPool) -> bool {
    let mut conn = pool.acquire().await.expect("a connection");
    !ticketing::db::outside_transaction(&mut conn)
        .await
        .unwrap_or(false)
}

#[tokio::test]
async fn sqlx_alone_lends_a_connection_inside_a_transaction() {
    // Documents the upstream bug this project guards against. When a sqlx release fixes it this
    // test fails: then the guard in `ticketing::db::connect` may go, and this test with it.
    let proxy = StallingProxy::start().await;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&proxy.url())
        .await
        .expect("connecting through the proxy");
    cancel_a_begin(&pool, &proxy).await;
    assert!(
        next_borrower_is_in_a_transaction(&pool).await,
        "sqlx returned the connection outside a transaction: the upstream bug is fixed"
    );
}

#[tokio::test]
async fn our_pool_never_lends_a_connection_inside_a_transaction() {
    let proxy = StallingProxy::start().await;
    let pool = ticketing::db::connect(
        &proxy.url(),
        PoolLimits {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
        },
    )
    .await
    .expect("connecting through the proxy");
    for _ in 0..3 {
        cancel_a_begin(&pool, &proxy).await;
        assert!(
            !next_borrower_is_in_a_transaction(&pool).await,
            "a connection came back from the pool inside a cancelled BEGIN's transaction"
        );
    }
    // And the work that follows commits for real.
    let committed: i32 = sqlx::query_scalar("SELECT 41 + 1")
        .fetch_one(&pool)
        .await
        .expect("a query after the cancelled BEGINs");
    assert_eq!(committed, 42);
}
