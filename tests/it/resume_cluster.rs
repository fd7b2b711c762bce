//! The resume scenarios of `resume.rs` with the store alone on the Redis
//! Cluster that scripts/test.sh starts (`RESUME_REDIS_CLUSTER_NODES`, the
//! rest on the single node), next to their single-node runs; the cluster
//! pass of the script runs `resume::` with everything on the cluster.

use crate::harness::cluster;

#[tokio::test]
async fn resume_works_with_the_store_on_a_redis_cluster() {
    let Some(seeds) = cluster::require("resume_works_with_the_store_on_a_redis_cluster") else {
        return;
    };
    let seeds = Some(seeds.as_str());
    crate::resume::replay_across_instances(seeds).await;
    crate::resume::flushed_store(seeds).await;
    crate::resume::retention_and_garbage(seeds).await;
    crate::resume::time_retention(seeds).await;
    crate::resume::shared_bodies(seeds).await;
}
