//! One Redis handle for a single server or a Redis Cluster.
//!
//! Both variants are multiplexed, cloneable connections that reconnect on their own: concurrent
//! requests share a socket and are pipelined, so there is no per-request checkout (a pool that
//! PINGs on every checkout would add a round trip to every poll and booking).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::config::StoreConfig;

/// How long one command may take before the caller gets an error instead of a hang.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

#[derive(Clone)]
pub enum RedisClient {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisClient {
    /// Connects to the cluster when seed nodes are configured, otherwise to the single URL.
    pub async fn connect(config: &StoreConfig) -> anyhow::Result<Self> {
        if config.redis_cluster_nodes.is_empty() {
            Self::connect_single(&config.redis_url).await
        } else {
            Self::connect_cluster(&config.redis_cluster_nodes).await
        }
    }

    pub async fn connect_single(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_number_of_retries(2)
            .set_max_delay(500);
        Ok(Self::Single(
            ConnectionManager::new_with_config(client, config).await?,
        ))
    }

    pub async fn connect_cluster(nodes: &[String]) -> anyhow::Result<Self> {
        let client = ClusterClientBuilder::new(nodes.to_vec())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(3)
            .build()?;
        Ok(Self::Cluster(client.get_async_connection().await?))
    }

    /// Same as [`RedisClient::connect`], retrying for up to `patience` while Redis starts.
    pub async fn connect_patiently(
        config: &StoreConfig,
        patience: Duration,
    ) -> anyhow::Result<Self> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match Self::connect(config).await {
                Ok(client) => return Ok(client),
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "redis not reachable yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// True when Redis answers a PING.
    pub async fn ping(&self) -> bool {
        let mut conn = self.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }
}

impl ConnectionLike for RedisClient {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

/// A dedicated RESP3 connection for sharded Pub/Sub (`SSUBSCRIBE`), apart from the multiplexed
/// command connection: subscribed messages arrive as pushes on `push`, never interleaved with
/// the replies other requests wait for. On a cluster each shard's messages come over that
/// shard's own connection, and the client follows slots that move. The owner reconnects it on a
/// `Disconnection` push (messages published meanwhile are lost: check what they would have told).
pub enum Subscriber {
    Single(redis::aio::MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Subscriber {
    pub async fn connect(
        config: &StoreConfig,
        push: impl redis::aio::AsyncPushSender + Clone,
    ) -> anyhow::Result<Self> {
        if config.redis_cluster_nodes.is_empty() {
            let mut info: redis::ConnectionInfo = config.redis_url.parse()?;
            info.redis.protocol = redis::ProtocolVersion::RESP3;
            let client = redis::Client::open(info)?;
            let settings = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(CONNECT_TIMEOUT)
                .set_response_timeout(RESPONSE_TIMEOUT)
                .set_push_sender(push);
            Ok(Self::Single(
                client
                    .get_multiplexed_async_connection_with_config(&settings)
                    .await?,
            ))
        } else {
            let client = ClusterClientBuilder::new(config.redis_cluster_nodes.clone())
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(RESPONSE_TIMEOUT)
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push)
                .build()?;
            Ok(Self::Cluster(client.get_async_connection().await?))
        }
    }

    pub async fn ssubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Self::Single(c) => redis::cmd("SSUBSCRIBE").arg(channel).exec_async(c).await,
            Self::Cluster(c) => c.ssubscribe(channel).await,
        }
    }

    pub async fn sunsubscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Self::Single(c) => redis::cmd("SUNSUBSCRIBE").arg(channel).exec_async(c).await,
            Self::Cluster(c) => c.sunsubscribe(channel).await,
        }
    }
}
