//! `make dev-cluster`: try everything without Docker (README, "Try everything without
//! Docker"). A real Kubernetes control plane with three process nodes, the operator
//! installed by `helm install` of charts/kube-transport, and Postfix's smtp-sink outside the
//! cluster as the next hop; it prints the kubeconfig and where things are, then runs until
//! Ctrl-C, which stops and removes everything.
use anyhow::{Context as _, Result};
use e2e::cluster::Options;
use e2e::scenario::sink::Sink;
use e2e::scenario::{Suite, OPERATOR_NS};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

#[tokio::main]
async fn main() -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("E2E_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,kube_client=off"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let root = PathBuf::from(std::env::var("DEV_CLUSTER_DIR").unwrap_or_else(|_| "var/dev-cluster".into()));
    // A fresh cluster each time: the previous one's state is not carried over.
    if root.exists() {
        std::fs::remove_dir_all(&root).with_context(|| format!("cannot remove {}", root.display()))?;
    }
    println!("starting the control plane and three nodes in {} ...", root.display());
    let suite = Suite::start(Options { nodes: 3, root: Some(root.clone()) }).await?;
    println!("installing the operator: helm install kube-transport charts/kube-transport -n {OPERATOR_NS}");
    suite.install_operator(&[])?;
    let sink = Sink::start(&suite.cluster)?;
    let root = suite.cluster.root().to_path_buf();
    let bin = e2e::kind::tools::cache_bin_dir().map(|d| d.display().to_string()).unwrap_or_default();
    println!(
        "\nReady.\n\n  export KUBECONFIG={kubeconfig}\n  export PATH={bin}:$PATH    # kubectl and helm\n\n\
         The outside world: smtp-sink at {sink}, messages written to {root}/outside/\n\
         Nodes: {nodes}. Pods' logs: {root}/nodes/<node>/pods/<ns>_<pod>_<uid>/logs/\n\
         Services are reachable at addresses printed below as they appear.\n\
         Ctrl-C stops and removes everything.\n",
        kubeconfig = suite.cluster.kubeconfig().display(),
        sink = sink.addr,
        root = root.display(),
        nodes = suite.cluster.node_names().join(", "),
    );

    let mut shown = BTreeSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                for (key, ip) in suite.cluster.proxy.all() {
                    for port in suite.cluster.proxy.ports(&key) {
                        if shown.insert((key.clone(), port)) {
                            println!("Service {key}: {ip}:{port}");
                        }
                    }
                }
            }
            _ = shutdown() => break,
        }
    }
    println!("stopping ...");
    drop(sink);
    drop(suite);
    Ok(())
}

async fn shutdown() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
