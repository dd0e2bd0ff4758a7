//! A private Redis Cluster on loopback: three masters with a replica each.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct RedisCluster {
    pub ports: Vec<u16>,
    children: Vec<Option<Child>>,
    dir: PathBuf,
}

/// A port whose cluster bus port (port + 10000) is free too.
fn cluster_port(taken: &[u16]) -> u16 {
    loop {
        let port = crate::private_redis::free_port();
        if port < 55_000
            && !taken.contains(&port)
            && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ticketing-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let mut ports = Vec::new();
        for _ in 0..6 {
            ports.push(cluster_port(&ports));
        }
        let mut cluster = Self {
            ports: ports.clone(),
            children: Vec::new(),
            dir,
        };
        for port in &ports {
            let child = cluster.spawn(*port);
            cluster.children.push(Some(child));
        }
        for port in &ports {
            for _ in 0..100 {
                if cli(*port, &["ping"]).trim() == "PONG" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let status = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli --cluster create");
        assert!(status.success(), "creating the cluster failed");
        cluster.wait_ok().await;
        cluster
    }

    fn spawn(&self, port: u16) -> Child {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &self
                    .dir
                    .join(format!("nodes-{port}.conf"))
                    .to_string_lossy(),
                "--cluster-node-timeout",
                "2000",
                // A replica takes over however long since it last heard from its master: killed
                // seconds after the cluster was made, a replica still in its first sync would
                // otherwise refuse ("disconnected from master for longer than allowed").
                "--cluster-replica-validity-factor",
                "0",
                // A replica's first sync starts at once rather than after the default 5 s wait
                // for more replicas to share it: on a loaded machine the wait plus the transfer
                // outran the tests' patience for a replica to catch up.
                "--repl-diskless-sync-delay",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &self.dir.to_string_lossy(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server")
    }

    /// Waits until every live node reports the cluster healthy.
    pub async fn wait_ok(&self) {
        for _ in 0..300 {
            let ok = self
                .ports
                .iter()
                .zip(&self.children)
                .filter(|(_, c)| c.is_some())
                .all(|(port, _)| cli(*port, &["cluster", "info"]).contains("cluster_state:ok"));
            if ok {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the cluster did not become healthy");
    }

    pub fn urls(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// (master port, replica port) of the slot that holds `key`, once that master has a replica
    /// attached again (after a failover, the old master takes a moment to follow the new one).
    pub async fn master_and_replica_of(&self, key: &str) -> (u16, u16) {
        for _ in 0..100 {
            if let Some(pair) = self.try_master_and_replica_of(key) {
                return pair;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no master with a live replica serves {key}");
    }

    fn try_master_and_replica_of(&self, key: &str) -> Option<(u16, u16)> {
        let alive = self.live_port();
        let slot = cli(alive, &["cluster", "keyslot", key]).trim().to_string();
        let nodes = cli(alive, &["cluster", "nodes"]);
        let slot: u32 = slot.parse().expect("slot");
        let mut master = None;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let serves = fields[8..].iter().any(|range| match range.split_once('-') {
                Some((a, b)) => {
                    a.parse::<u32>().is_ok_and(|a| a <= slot)
                        && b.parse::<u32>().is_ok_and(|b| slot <= b)
                }
                None => range.parse::<u32>() == Ok(slot),
            });
            if serves {
                master = Some((fields[0].to_string(), port_of(fields[1])));
            }
        }
        let (master_id, master_port) = master?;
        let replica = nodes
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|f| {
                f.len() > 3 && f[3] == master_id && f[2].contains("slave") && !f[2].contains("fail")
            })
            .map(|f| port_of(f[1]))?;
        Some((master_port, replica))
    }

    fn live_port(&self) -> u16 {
        self.ports
            .iter()
            .zip(&self.children)
            .find(|(_, c)| c.is_some())
            .map(|(p, _)| *p)
            .expect("a live node")
    }

    /// A manual failover: the replica takes over its master's slots, losing nothing.
    pub async fn failover(&self, replica: u16) {
        assert!(cli(replica, &["cluster", "failover"]).contains("OK"));
        for _ in 0..100 {
            if cli(replica, &["role"]).starts_with("master") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_ok().await;
    }

    /// Runs one command on one node; its reply as redis-cli prints it.
    pub fn command(&self, port: u16, args: &[&str]) -> String {
        cli(port, args)
    }

    /// Runs one read on one node, a replica included (`READONLY` first): the last line of its
    /// reply.
    pub fn read(&self, port: u16, args: &[&str]) -> String {
        use std::io::Write;
        let mut child = Command::new("redis-cli")
            .args(["-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "READONLY").expect("READONLY");
        writeln!(stdin, "{}", args.join(" ")).expect("the read");
        drop(stdin);
        let output = child.wait_with_output().expect("redis-cli");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_string()
    }

    /// Freezes a node (SIGSTOP) or lets it run again (SIGCONT): a frozen replica reads nothing
    /// its master sends, and cannot ask for what it missed.
    pub fn freeze(&self, port: u16, frozen: bool) {
        let index = self.index_of(port);
        let child = self.children[index].as_ref().expect("a live node");
        let signal = if frozen { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Kills a node outright without waiting for the cluster to heal (its replica may be
    /// frozen): call [`RedisCluster::wait_ok`] once it can.
    pub fn kill_now(&mut self, port: u16) {
        let index = self.index_of(port);
        if let Some(mut child) = self.children[index].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn index_of(&self, port: u16) -> usize {
        self.ports
            .iter()
            .position(|p| *p == port)
            .expect("a cluster port")
    }

    /// Kills a node outright and waits until its replica is promoted (the node timeout, then an
    /// election) and the cluster is whole again.
    pub async fn kill(&mut self, port: u16) {
        self.kill_now(port);
        let address = format!("127.0.0.1:{port}@");
        for _ in 0..300 {
            let nodes = cli(self.live_port(), &["cluster", "nodes"]);
            let still_serves = nodes.lines().any(|line| {
                let fields: Vec<&str> = line.split_whitespace().collect();
                fields.len() > 8 && fields[1].starts_with(&address)
            });
            if !still_serves {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_ok().await;
    }
}

fn port_of(address: &str) -> u16 {
    address
        .split('@')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .expect("a node address")
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
