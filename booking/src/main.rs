use booking::config::BookingConfig;
use booking::AppState;
use ticketing::{http, telemetry};

// Every request allocates many short-lived buffers: under a poll storm glibc's allocator took a
// fifth of the gateway's CPU (perf); with mimalloc polls and sold-out refusals rose ~10 % (wrk).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    ticketing::allocator::run(serve())
}

async fn serve() -> anyhow::Result<()> {
    telemetry::init("booking");
    let config = BookingConfig::from_env()?;
    let addr = config.addr;
    let state = AppState::build(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "booking service listening");
    booking::run(listener, state, http::shutdown_signal()).await
}
