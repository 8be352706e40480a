//! A real Kubernetes control plane on this machine, with nodes whose pods are processes.
//!
//! [`Cluster::start`] brings up, under one folder:
//! - [`controlplane`]: etcd, kube-apiserver, kube-controller-manager and kube-scheduler (the
//!   release of `e2e/controlplane/VERSION`, built from the Go module proxy) on a loopback
//!   address of the cluster's own, with RBAC, Node authorization, ServiceAccount tokens and
//!   an [`audit`] log;
//! - [`network`]: a pod network of namespaces the harness creates (a bridge, a namespace
//!   and address per pod, Service addresses, an "outside" namespace for next hops);
//! - [`node`]: several process nodes (Node objects with Lease heartbeats) that run each
//!   bound Pod ([`pod`]: volumes, sandboxed processes, probes, restarts, graceful
//!   deletion);
//! - [`provisioner`]: the default StorageClass and its local-path provisioner;
//! - [`proxy`]: Services that send connections only to ready endpoints.
//!
//! Tests and `make dev-cluster` drive it as a user would: `kubectl` and `helm` with the
//! administrator's kubeconfig ([`Cluster::kubectl`], [`Cluster::helm`]), kube clients, SMTP
//! to Service addresses. Dropping the cluster stops every process and removes the network.
pub mod audit;
pub mod controlplane;
pub mod daemon;
pub mod dns;
pub mod downward;
pub mod images;
pub mod network;
pub mod node;
pub mod pki;
pub mod pod;
pub mod probe;
pub mod provisioner;
pub mod proxy;
pub mod sandbox;
pub mod shared;
pub mod volumes;

use anyhow::{Context as _, Result};
use controlplane::ControlPlane;
use network::{Network, Slot};
use node::ProcessNode;
use pod::NodeContext;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Where temporary clusters live.
pub(crate) const TEMP_BASE: &str = "/var/lib/kube-transport-e2e";

/// What to start.
#[derive(Debug, Clone)]
pub struct Options {
    /// Process nodes (`node-1` … `node-<n>`).
    pub nodes: usize,
    /// Where everything is written; None: a temporary folder removed on drop.
    pub root: Option<PathBuf>,
}

impl Default for Options {
    /// Three nodes; the folder is kept where `E2E_KEEP` says (logs, audit log, volumes
    /// stay for a look after a failure), else removed.
    fn default() -> Self {
        Options { nodes: 3, root: std::env::var_os("E2E_KEEP").map(PathBuf::from) }
    }
}

enum Root {
    Temp(tempfile::TempDir),
    Kept(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temp(t) => t.path(),
            Root::Kept(p) => p,
        }
    }
}

pub struct Cluster {
    pub client: kube::Client,
    pub proxy: Arc<proxy::Table>,
    pub net: Arc<Network>,
    nodes: Mutex<Vec<ProcessNode>>,
    node_contexts: Vec<Arc<NodeContext>>,
    tasks: Vec<JoinHandle<()>>,
    plane: ControlPlane,
    root: Root,
}

impl Cluster {
    pub async fn start(options: Options) -> Result<Cluster> {
        install_crypto_provider();
        let root = match options.root {
            Some(p) => {
                std::fs::create_dir_all(&p)?;
                Root::Kept(std::fs::canonicalize(&p)?)
            }
            // Not under /tmp: pods mount an emptyDir there, which would hide their volumes'
            // folders from the process that mounts them.
            None => {
                std::fs::create_dir_all(TEMP_BASE)?;
                Root::Temp(tempfile::Builder::new().prefix("cluster-").tempdir_in(TEMP_BASE)?)
            }
        };
        let dir = root.path().to_path_buf();
        let slot = Slot::acquire()?;
        let ip = slot.control_plane_ip();
        let host_ip = slot.address(1);
        let net = Network::create(slot)?;
        let pki = pki::Pki::create(&dir.join("pki"), ip.into(), controlplane::SERVICE_IP.into())?;
        tracing::info!(root = %dir.display(), %ip, "starting the control plane");
        let plane = ControlPlane::start(&dir, ip, &pki, true).await?;
        let client = plane.admin_client().await?;
        provisioner::install(&client).await?;

        let proxy_table = Arc::new(proxy::Table::default());
        // The cluster DNS: the first address of the Services' namespace, UDP port 53.
        let cluster_dns = net.service_address()?;
        let dns_socket = net.services.run(move || {
            let s = std::net::UdpSocket::bind((cluster_dns, 53))?;
            s.set_nonblocking(true)?;
            Ok(s)
        })?;
        let mut tasks = vec![
            tokio::spawn(provisioner::run(client.clone(), dir.clone())),
            tokio::spawn(proxy::run(client.clone(), net.clone(), proxy_table.clone())),
            tokio::spawn(dns::serve(tokio::net::UdpSocket::from_std(dns_socket)?, proxy_table.records.clone())),
        ];
        let mut nodes = Vec::new();
        let mut node_contexts = Vec::new();
        for i in 1..=options.nodes {
            let name = format!("node-{i}");
            let cert = pki.client(&format!("node-{i}"), &format!("system:node:{name}"), &["system:nodes"])?;
            let kubeconfig = dir.join(format!("{name}.kubeconfig"));
            pki::kubeconfig(&kubeconfig, &plane.url, &pki.ca_file, &cert, &format!("system:node:{name}"))?;
            let ctx = Arc::new(NodeContext {
                node: name.clone(),
                client: controlplane::client_from(&kubeconfig).await?,
                net: net.clone(),
                dir: dir.join("nodes").join(&name),
                api: SocketAddr::from((ip, controlplane::API_PORT)),
                host_ip,
                cluster_dns,
                pids: Default::default(),
            });
            nodes.push(ProcessNode::start(ctx.clone(), controlplane::VERSION).await?);
            node_contexts.push(ctx);
        }
        tasks.shrink_to_fit();
        let cluster =
            Cluster { client, proxy: proxy_table, net, nodes: Mutex::new(nodes), node_contexts, tasks, plane, root };
        cluster.wait_nodes_ready(options.nodes).await?;
        Ok(cluster)
    }

    /// Waits until the nodes are Ready and the `default` ServiceAccount exists (pods can be
    /// created), as `kubectl wait --for=condition=Ready node --all` would.
    async fn wait_nodes_ready(&self, count: usize) -> Result<()> {
        use k8s_openapi::api::core::v1::{Node, ServiceAccount};
        let nodes: kube::Api<Node> = kube::Api::all(self.client.clone());
        let accounts: kube::Api<ServiceAccount> = kube::Api::namespaced(self.client.clone(), "default");
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let ready = nodes
                .list(&Default::default())
                .await?
                .items
                .iter()
                .filter(|n| {
                    n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            let account = accounts.get_opt("default").await?.is_some();
            if ready == count && account {
                return Ok(());
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "nodes not Ready after 120 s ({ready}/{count})");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The administrator's kubeconfig (group `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.plane.admin_kubeconfig
    }

    pub fn api_url(&self) -> &str {
        &self.plane.url
    }

    /// Every audit entry so far.
    pub fn audit(&self) -> Vec<audit::Entry> {
        audit::read(&self.plane.audit_log)
    }

    /// `ip:port` of a Service's port, once the proxy serves it.
    pub async fn service_address(&self, namespace: &str, name: &str, port: u16) -> Result<SocketAddr> {
        let key = format!("{namespace}/{name}");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(ip) = self.proxy.address(&key) {
                return Ok(SocketAddr::from((ip, port)));
            }
            anyhow::ensure!(std::time::Instant::now() < deadline, "Service {key} has no address after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Names of the process nodes still running.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|n| n.name.clone()).collect()
    }

    /// The node's processes are killed and its heartbeat stops at once: a node lost with
    /// everything on it (its local volumes' folders are removed too).
    pub fn lose_node(&self, name: &str) -> Result<()> {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let i = nodes.iter().position(|n| n.name == name).with_context(|| format!("no running node {name}"))?;
        drop(nodes.remove(i));
        let _ = std::fs::remove_dir_all(self.root().join("nodes").join(name).join("volumes"));
        Ok(())
    }

    /// The folder of a pod on its node (logs under `logs/<container>/<restart>.log`).
    pub fn pod_dir(&self, namespace: &str, pod: &str) -> Option<PathBuf> {
        for ctx in &self.node_contexts {
            let pods = ctx.dir.join("pods");
            let prefix = format!("{namespace}_{pod}_");
            let Ok(entries) = std::fs::read_dir(&pods) else { continue };
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                .map(|e| e.path())
                .collect();
            found.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
            if let Some(p) = found.pop() {
                return Some(p);
            }
        }
        None
    }

    /// The last `lines` lines of a container's current log (`kubectl logs`).
    pub fn logs(&self, namespace: &str, pod: &str, container: &str, lines: usize) -> String {
        self.pod_dir(namespace, pod)
            .and_then(|d| pod::latest_log(&d, container))
            .map(|p| daemon::tail(&p, lines))
            .unwrap_or_default()
    }

    /// A component of the control plane that exited, with its log's end.
    pub fn control_plane_failure(&mut self) -> Option<String> {
        self.plane.failed()
    }

    /// The end of each control plane component's log (for a failed test's output).
    pub fn control_plane_logs(&self, lines: usize) -> String {
        self.plane.daemons.iter().map(|d| format!("--- {}\n{}\n", d.name, d.log_tail(lines))).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.nodes.lock().unwrap_or_else(|e| e.into_inner()).clear();
        // The control plane stops in ControlPlane's Drop, the network in Network's.
    }
}

pub use transport::client::install_crypto_provider;

#[cfg(test)]
mod tests {
    /// docs/e2e.md's table of this folder names every module once, and only modules that
    /// exist: a newcomer reads the cluster's architecture there.
    #[test]
    fn docs_e2e_lists_every_module_of_the_cluster() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        let doc = std::fs::read_to_string(format!("{root}/docs/e2e.md")).expect("docs/e2e.md");
        let table = doc.split("## The cluster (`e2e/src/cluster/`)").nth(1).expect("the cluster's section");
        let mut listed: Vec<String> = testkit::doc_table::rows(table, "| module |")
            .iter()
            .flat_map(|row| row[0].split('`').skip(1).step_by(2).map(str::to_string).collect::<Vec<_>>())
            .collect();
        listed.sort();
        let mut modules: Vec<String> = std::fs::read_dir(format!("{root}/e2e/src/cluster"))
            .expect("e2e/src/cluster")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter_map(|f| f.strip_suffix(".rs").map(str::to_string))
            .filter(|m| m != "mod")
            .collect();
        modules.sort();
        assert_eq!(listed, modules, "docs/e2e.md's module table against e2e/src/cluster/");
    }
}
