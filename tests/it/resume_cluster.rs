//! The resume scenarios of `resume.rs` with the store on a 3-node Redis
//! Cluster that this test starts on loopback (`redis-server` in cluster
//! mode + `redis-cli --cluster create`), next to their single-node runs.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::ChildGuard;

/// A port whose cluster bus port (+10000) is free too.
fn cluster_port() -> u16 {
    loop {
        let p = crate::harness::free_port();
        if p < 50_000 && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok() {
            return p;
        }
    }
}

fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Cluster {
    _nodes: Vec<ChildGuard>,
    seeds: String,
    dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_cluster() -> Cluster {
    let dir = std::env::temp_dir().join(format!(
        "atoitalk-cluster-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ports: Vec<u16> = (0..3).map(|_| cluster_port()).collect();
    let mut nodes = Vec::new();
    for p in &ports {
        nodes.push(ChildGuard::spawn(
            Command::new("redis-server")
                .args(["--port", &p.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .args(["--cluster-config-file", &format!("nodes-{p}.conf")])
                .arg("--dir")
                .arg(&dir),
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in &ports {
        while !cli(*p, &["PING"]).contains("PONG") {
            assert!(
                Instant::now() < deadline,
                "redis-server on {p} did not start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let out = Command::new("redis-cli")
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = ports
            .iter()
            .all(|p| cli(*p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster never became ok");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Cluster {
        _nodes: nodes,
        seeds: addrs.join(","),
        dir,
    }
}

#[tokio::test]
async fn resume_works_with_the_store_on_a_three_node_redis_cluster() {
    let cluster = start_cluster().await;
    let seeds = Some(cluster.seeds.as_str());
    crate::resume::replay_across_instances(seeds).await;
    crate::resume::flushed_store(seeds).await;
    crate::resume::retention_and_garbage(seeds).await;
    // The users' keys really are spread over the nodes.
    let keys: usize = cluster
        .seeds
        .split(',')
        .map(|a| {
            let port: u16 = a.rsplit(':').next().unwrap().parse().unwrap();
            cli(port, &["DBSIZE"]).trim().parse::<usize>().unwrap_or(0)
        })
        .filter(|n| *n > 0)
        .count();
    assert!(keys >= 2, "store keys on {keys} node(s) only");
}
