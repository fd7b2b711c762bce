//! The Redis Cluster that scripts/test.sh starts on loopback (3 masters,
//! each with a replica): its seeds come in `TEST_REDIS_CLUSTER_NODES`.
//! With `TEST_REDIS_CLUSTER=1` every app of the run uses it for all of
//! Redis (`REDIS_CLUSTER_NODES`); tests that need it whatever the mode ask
//! [`require`].

use std::process::Command;
use std::time::{Duration, Instant};

/// `host:port,...` of the test cluster, if one was started.
pub fn nodes() -> Option<String> {
    std::env::var("TEST_REDIS_CLUSTER_NODES")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Whether this run puts every app on the cluster.
pub fn every_app() -> bool {
    std::env::var("TEST_REDIS_CLUSTER").is_ok_and(|v| v == "1")
}

/// The cluster's seeds, or None after saying why the test is skipped (a
/// developer's plain `cargo test`). scripts/test.sh always starts one, and
/// sets `TEST_REQUIRE_REDIS_CLUSTER=1` so a missing one fails instead.
pub fn require(test: &str) -> Option<String> {
    let found = nodes();
    if found.is_none() {
        assert!(
            !std::env::var("TEST_REQUIRE_REDIS_CLUSTER").is_ok_and(|v| v == "1"),
            "{test}: TEST_REDIS_CLUSTER_NODES is not set"
        );
        eprintln!(
            "SKIPPED {test}: needs a Redis Cluster in TEST_REDIS_CLUSTER_NODES (scripts/test.sh starts one)"
        );
    }
    found
}

/// Ports of the seed nodes.
pub fn ports(seeds: &str) -> Vec<u16> {
    seeds
        .split(',')
        .filter_map(|a| a.trim().rsplit(':').next()?.parse().ok())
        .collect()
}

/// `redis-cli -p port args...` on loopback; its stdout.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line of `CLUSTER NODES`.
#[derive(Debug, Clone)]
pub struct Node {
    pub id: String,
    pub port: u16,
    pub master: bool,
    /// A replica's master id.
    pub of: Option<String>,
    /// A master's slot ranges.
    pub slots: Vec<(u16, u16)>,
}

/// The cluster as `port` sees it.
pub fn topology(port: u16) -> Vec<Node> {
    cli(port, &["CLUSTER", "NODES"])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 8 || f[2].contains("fail") {
                return None;
            }
            let addr = f[1].split('@').next()?;
            Some(Node {
                id: f[0].to_string(),
                port: addr.rsplit(':').next()?.parse().ok()?,
                master: f[2].contains("master"),
                of: (f[3] != "-").then(|| f[3].to_string()),
                slots: f[8..]
                    .iter()
                    .filter(|s| !s.starts_with('['))
                    .filter_map(|s| match s.split_once('-') {
                        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
                        None => s.parse().ok().map(|n| (n, n)),
                    })
                    .collect(),
            })
        })
        .collect()
}

/// The slot of a key or channel name.
pub fn slot(port: u16, name: &str) -> u16 {
    cli(port, &["CLUSTER", "KEYSLOT", name])
        .trim()
        .parse()
        .expect("CLUSTER KEYSLOT answers a number")
}

/// (master, one of its replicas) serving `slot`.
pub fn shard_of(port: u16, slot: u16) -> (Node, Node) {
    let nodes = topology(port);
    let master = nodes
        .iter()
        .find(|n| n.master && n.slots.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
        .expect("a master serves the slot")
        .clone();
    let replica = nodes
        .iter()
        .find(|n| n.of.as_deref() == Some(master.id.as_str()))
        .expect("the cluster was made with --cluster-replicas 1")
        .clone();
    (master, replica)
}

/// Waits until every seed reports `cluster_state:ok` and `port` is a
/// master (after a failover to it).
pub async fn wait_master(seeds: &str, port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let ok = ports(seeds)
            .iter()
            .all(|p| cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
        let promoted = topology(port).iter().any(|n| n.port == port && n.master);
        if ok && promoted {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle with {port} as a master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
