use anyhow::bail;
use gateway::config::GatewayConfig;
use gateway::AppState;
use ticketing::config::{env_or, StoreConfig};
use ticketing::{db, http, telemetry, token};

// Every request allocates many short-lived buffers: under a poll storm glibc's allocator took a
// fifth of the gateway's CPU (perf); with mimalloc polls and sold-out refusals rose ~10 % (wrk).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `gateway [serve]` runs the service; `gateway migrate`, `gateway seed` and `gateway keygen`
/// prepare a machine (the README's run command calls them).
fn main() -> anyhow::Result<()> {
    ticketing::allocator::run(run())
}

async fn run() -> anyhow::Result<()> {
    telemetry::init("gateway");
    let command = std::env::args().nth(1).unwrap_or_else(|| "serve".into());
    match command.as_str() {
        "serve" => serve().await,
        "migrate" | "seed" => {
            let store = StoreConfig::from_env()?;
            let pool = db::connect(
                &store.database_url,
                db::PoolLimits {
                    max_connections: 2,
                    ..db::PoolLimits::of(&store)
                },
            )
            .await?;
            db::migrate(&pool).await?;
            if command == "seed" {
                let inserted = gateway::seed::seed(&pool).await?;
                println!("seed: {inserted} events inserted");
            } else {
                println!("migrations applied");
            }
            Ok(())
        }
        "keygen" => {
            let dir: std::path::PathBuf = env_or("ENTRY_KEYS_DIR", ".run/keys".into())?;
            let kid: String = env_or("ENTRY_SIGNING_KID", "dev".to_string())?;
            if token::ensure_key_pair(&dir, &kid)? {
                println!("wrote {}/{kid}.key.pem and {kid}.pub.pem", dir.display());
            } else {
                println!("{}/{kid}.key.pem exists; kept", dir.display());
            }
            Ok(())
        }
        other => bail!("unknown command {other:?}: use serve, migrate, seed or keygen"),
    }
}

async fn serve() -> anyhow::Result<()> {
    let config = GatewayConfig::from_env()?;
    let addr = config.addr;
    let state = AppState::connect(config).await?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "gateway listening");
    gateway::run(listener, state, http::shutdown_signal()).await
}
