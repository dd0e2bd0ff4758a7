use queue_worker::config::WorkerConfig;
use queue_worker::Worker;
use ticketing::{db, http, telemetry};
use tokio_util::sync::CancellationToken;

// Every request allocates many short-lived buffers: under a poll storm glibc's allocator took a
// fifth of the gateway's CPU (perf); with mimalloc polls and sold-out refusals rose ~10 % (wrk).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("queue-worker");
    let config = WorkerConfig::from_env()?;
    let (pool, redis) = db::connect_stores(&config.store).await?;
    let listener = tokio::net::TcpListener::bind(config.addr).await?;
    tracing::info!(addr = %config.addr, "queue-worker started");
    let worker = Worker::new(pool, redis, config);
    let cancel = CancellationToken::new();
    let health = tokio::spawn({
        let worker = worker.clone();
        let cancel = cancel.clone();
        async move {
            worker
                .serve_health(listener, async move { cancel.cancelled().await })
                .await
        }
    });
    let running = tokio::spawn(worker.run(cancel.clone()));
    http::shutdown_signal().await;
    cancel.cancel();
    running.await?;
    health.await??;
    Ok(())
}
