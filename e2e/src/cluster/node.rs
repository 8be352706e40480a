//! A node whose pods are processes (the kubelet's part): it registers its Node object with
//! its own credentials (`system:node:<name>`, so the Node authorizer and NodeRestriction
//! apply), renews its Lease in `kube-node-lease` every 10 s (the node lifecycle controller
//! marks a silent node NotReady, as in a cluster), and runs a [`super::pod`] worker for each
//! Pod the scheduler binds to it.
use super::pod::{self, NodeContext};
use anyhow::{Context as _, Result};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

const LEASE_RENEW: Duration = Duration::from_secs(10);
const LEASE_SECONDS: i32 = 40;
const POD_POLL: Duration = Duration::from_millis(300);

/// The Node object this node registers.
pub fn node_object(name: &str, host_ip: &str, version: &str) -> Node {
    let capacity = json!({"cpu": "4", "memory": "8Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/exclude-from-external-load-balancers": "true",
            },
        },
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": host_ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": name, "systemUUID": name, "bootID": name,
                "kernelVersion": "process", "osImage": "kube-transport e2e process node",
                "containerRuntimeVersion": "process://1", "kubeletVersion": version,
                "kubeProxyVersion": version, "operatingSystem": "linux", "architecture": "amd64",
            },
        },
    }))
    .expect("a Node object")
}

fn ready_condition() -> serde_json::Value {
    let now = jiff::Timestamp::now().round(jiff::Unit::Second).unwrap_or_else(|_| jiff::Timestamp::now()).to_string();
    let cond = |t: &str, s: &str, reason: &str, message: &str| json!({"type": t, "status": s, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now});
    json!({"status": {"conditions": [
        cond("Ready", "True", "KubeletReady", "the e2e kubelet is posting ready status"),
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "no memory pressure"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID", "no PID pressure"),
    ]}})
}

/// A running process node; dropping it stops its heartbeat and every pod process at once
/// (a node lost).
pub struct ProcessNode {
    pub name: String,
    tasks: Vec<JoinHandle<()>>,
    workers: Workers,
    heartbeat: Arc<AtomicBool>,
    ctx: Arc<NodeContext>,
}

impl ProcessNode {
    /// Registers the node and starts its heartbeat and pod loop.
    pub async fn start(ctx: Arc<NodeContext>, version: &str) -> Result<ProcessNode> {
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let node = node_object(&ctx.node, &ctx.host_ip.to_string(), version);
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("cannot register node {}", ctx.node)),
        }
        nodes
            .patch_status(&ctx.node, &PatchParams::default(), &Patch::Strategic(&ready_condition()))
            .await
            .with_context(|| format!("cannot report node {} Ready", ctx.node))?;
        let heartbeat = Arc::new(AtomicBool::new(true));
        let workers: Workers = Default::default();
        let tasks = vec![
            tokio::spawn(beat(ctx.clone(), heartbeat.clone())),
            tokio::spawn(pods_loop(ctx.clone(), workers.clone())),
        ];
        Ok(ProcessNode { name: ctx.node.clone(), tasks, workers, heartbeat, ctx })
    }

    /// Stops renewing the Lease and the Ready condition (the node looks dead to the control
    /// plane) while its processes keep running: a network partition.
    pub fn silence(&self) {
        self.heartbeat.store(false, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.heartbeat.store(true, Ordering::SeqCst);
    }
}

impl Drop for ProcessNode {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // Aborting a worker drops its processes (kill_on_drop) without a graceful stop.
        for (_, (_, task)) in self.workers.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            task.abort();
        }
        self.ctx.kill_all();
    }
}

async fn beat(ctx: Arc<NodeContext>, on: Arc<AtomicBool>) {
    let leases: Api<Lease> = Api::namespaced(ctx.client.clone(), "kube-node-lease");
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut ticks = 0u32;
    loop {
        if on.load(Ordering::SeqCst) {
            // A MicroTime: exactly six fractional digits.
            let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": ctx.node, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": ctx.node, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": now},
            });
            let params = PatchParams::apply("e2e-kubelet").force();
            if let Err(e) = leases.patch(&ctx.node, &params, &Patch::Apply(&lease)).await {
                tracing::warn!(node = %ctx.node, error = %e, "cannot renew the node's lease");
            }
            // The Ready condition is posted once a minute, as the kubelet does when nothing changes.
            if ticks.is_multiple_of(6) {
                let _ =
                    nodes.patch_status(&ctx.node, &PatchParams::default(), &Patch::Strategic(&ready_condition())).await;
            }
            ticks += 1;
        }
        tokio::time::sleep(LEASE_RENEW).await;
    }
}

type Workers = Arc<std::sync::Mutex<HashMap<String, (watch::Sender<Pod>, JoinHandle<()>)>>>;

/// Starts a worker for each new pod bound here, feeds the others their current object, and
/// drops the workers of pods that are gone.
async fn pods_loop(ctx: Arc<NodeContext>, workers: Workers) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let selector = ListParams::default().fields(&format!("spec.nodeName={}", ctx.node));
    loop {
        match pods.list(&selector).await {
            Ok(list) => {
                let mut workers = workers.lock().unwrap_or_else(|e| e.into_inner());
                let mut seen = Vec::new();
                for pod in list.items {
                    let uid = pod.uid().unwrap_or_default();
                    seen.push(uid.clone());
                    match workers.get(&uid) {
                        Some((tx, _)) => {
                            if tx.borrow().resource_version() != pod.resource_version() {
                                let _ = tx.send(pod);
                            }
                        }
                        None => {
                            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or_default();
                            let terminal = matches!(phase, "Succeeded" | "Failed");
                            if terminal && pod.metadata.deletion_timestamp.is_none() {
                                continue;
                            }
                            let (tx, rx) = watch::channel(pod);
                            let task = tokio::spawn(pod::run(ctx.clone(), rx));
                            workers.insert(uid, (tx, task));
                        }
                    }
                }
                // A pod no longer listed was deleted for good: its worker stops (dropping
                // the sender tells it), and finished workers are forgotten.
                workers.retain(|uid, (_, task)| seen.contains(uid) && !task.is_finished());
            }
            Err(e) => tracing::warn!(node = %ctx.node, error = %e, "cannot list the node's pods"),
        }
        tokio::time::sleep(POD_POLL).await;
    }
}
