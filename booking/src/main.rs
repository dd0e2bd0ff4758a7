use booking::config::BookingConfig;
use booking::AppState;
use ticketing::{http, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init("booking");
    let config = BookingConfig::from_env()?;
    let addr = config.addr;
    let state = AppState::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "booking service listening");
    booking::run(listener, state, http::shutdown_signal()).await
}
