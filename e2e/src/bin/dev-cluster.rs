//! `make dev-cluster`: a real Kubernetes control plane with three process nodes (see the
//! README, "Try everything without Docker"). Ctrl-C tears everything down.
use anyhow::Result;
use e2e::cluster::{Cluster, Options};

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("E2E_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let cluster = Cluster::start(Options { nodes: 3, root: Some("var/dev-cluster".into()) }).await?;
    println!("export KUBECONFIG={}", cluster.kubeconfig().display());
    tokio::signal::ctrl_c().await?;
    drop(cluster);
    Ok(())
}
