//! The cluster-free local e2e (DESIGN §7): the operator's reconcile loop
//! ([`operator::run::run_polling`]) against an in-memory API server (kube-fake-client, with
//! finalizers: [`fake_api`]), a harness that plays the kubelet and runs each Pod the
//! operator creates as a real `transport` process on its own loopback address
//! ([`kubelet`], [`layout`]), Postfix's `smtp-sink` as the next hop ([`sink`]) and a small
//! SMTP client ([`smtp`]). Scenarios (`e2e/tests/local_*.rs`, `make e2e-local`) assert what a
//! user would check with kubectl (status, conditions, Events) and what arrived at the sink.
//!
//! Each [`LocalCluster`] takes a /24 of 127.0.0.0/8 of its own (pods get `.2`, `.3`, …), so
//! scenarios and concurrent runs never share an address; the admin API listens on the pod's
//! address at port 8025 as in a cluster. Every process is killed when the cluster is
//! dropped, on panic too.
pub mod fake_api;
pub mod kubelet;
pub mod layout;
pub mod sink;
pub mod smtp;

use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams, PostParams};
use kube::{Resource, ResourceExt};
use kube_fake_client::ClientBuilder;
use layout::PodLayout;
use operator::admin::{AdminConnector, ServerEndpoint};
use operator::build::RenderedServer;
use operator::crd::{ServerComponentState, TransportConfig, TransportConfigSpec, TransportService};
use operator::names;
use operator::Context;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use transport::client::{AdminClient, ClientError};

/// Namespace of every object of a local e2e.
pub const NS: &str = "e2e";
/// How often the operator's polling driver reconciles everything.
pub const POLL: Duration = Duration::from_millis(500);

/// The admin API of a local pod: `http://<podIP>:8025`, and the `configRevision` of the file
/// the kubelet writes for it.
struct LocalConnector {
    root: PathBuf,
}

impl AdminConnector for LocalConnector {
    fn client(&self, endpoint: &ServerEndpoint) -> Result<AdminClient, ClientError> {
        let ip = endpoint.pod_ip.as_deref().ok_or_else(|| ClientError::Unreachable {
            url: format!("pod {}", endpoint.server),
            reason: "no pod IP yet".into(),
        })?;
        AdminClient::new(&format!("http://{ip}:{}", names::ADMIN_PORT), endpoint.token.clone())
    }

    fn expected_revision(&self, endpoint: &ServerEndpoint, rendered: &RenderedServer) -> String {
        let Some(ip) = endpoint.pod_ip.as_deref().and_then(|ip| ip.parse::<IpAddr>().ok()) else {
            return rendered.revision.clone();
        };
        let layout = PodLayout { root: self.root.clone(), server: endpoint.server.clone(), ip };
        match layout.local_file(&rendered.text) {
            Ok(text) => transport::config::revision(&text),
            Err(_) => rendered.revision.clone(),
        }
    }
}

/// A /24 of 127.0.0.0/8 that nobody serves the admin port on: `127.<100+pid%100>.<n>`.
fn allocate_net() -> [u8; 3] {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let a = 100 + (std::process::id() % 100) as u8;
    for _ in 0..250 {
        let b = NEXT.fetch_add(1, Ordering::SeqCst).max(1);
        let probe = SocketAddr::new(IpAddr::from([127, a, b, 2]), names::ADMIN_PORT);
        if std::net::TcpListener::bind(probe).is_ok() {
            return [127, a, b];
        }
    }
    panic!("no free 127.{a}.x.0/24 for the local e2e");
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("E2E_LOG").unwrap_or_else(|_| EnvFilter::new("warn,operator=info,e2e=info"));
    // Test output is shown only for failing tests.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

/// The in-memory API server, the operator's loop and the kubelet.
pub struct LocalCluster {
    pub client: kube::Client,
    root: tempfile::TempDir,
    pub net: [u8; 3],
    tasks: Vec<JoinHandle<()>>,
    pids: kubelet::Pids,
}

impl LocalCluster {
    pub async fn start() -> LocalCluster {
        init_tracing();
        let root = tempfile::tempdir().expect("a folder for the pods");
        let client = ClientBuilder::new()
            .with_resource::<TransportService>()
            .with_resource::<TransportConfig>()
            .with_resource::<ServerComponentState>()
            .with_status_subresource::<TransportService>()
            .with_status_subresource::<TransportConfig>()
            .with_status_subresource::<ServerComponentState>()
            .with_status_subresource::<Pod>()
            .build()
            .await
            .expect("in-memory API server");
        let client = fake_api::with_finalizers(client);
        let net = allocate_net();
        // Build (or find) the server binary before anything waits on it.
        let bin = layout::transport_binary();
        tracing::info!(binary = %bin.display(), net = ?net, root = %root.path().display(), "local cluster");

        let connector = LocalConnector { root: root.path().to_path_buf() };
        let ctx = Arc::new(
            Context::new(client.clone(), Arc::new(connector))
                .with_namespace(Some(NS.to_string()))
                .with_default_image("transport:local"),
        );
        let pids: kubelet::Pids = Arc::new(Mutex::new(Default::default()));
        let kubelet = kubelet::Kubelet::new(client.clone(), NS, root.path(), net, pids.clone());
        let tasks = vec![tokio::spawn(operator::run::run_polling(ctx, POLL)), tokio::spawn(kubelet.run())];
        LocalCluster { client, root, net, tasks, pids }
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    /// `kubectl apply`: creates the object, or replaces the spec of the one there.
    pub async fn apply<K>(&self, mut obj: K) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>();
        let name = obj.name_any();
        obj.meta_mut().namespace = Some(NS.to_string());
        match api.get_opt(&name).await.expect("get") {
            Some(existing) => {
                obj.meta_mut().resource_version = existing.resource_version();
                obj.meta_mut().finalizers = existing.meta().finalizers.clone();
                api.replace(&name, &PostParams::default(), &obj).await.expect("replace")
            }
            None => api.create(&PostParams::default(), &obj).await.expect("create"),
        }
    }

    /// `kubectl edit`: changes an object as it is now (a new generation for a spec change).
    pub async fn edit<K>(&self, name: &str, f: impl FnOnce(&mut K)) -> K
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>();
        let mut obj = api.get(name).await.expect("get");
        f(&mut obj);
        api.replace(name, &PostParams::default(), &obj).await.expect("replace")
    }

    /// `kubectl delete` (returns at once; finalizers may hold the object).
    pub async fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        self.api::<K>().delete(name, &Default::default()).await.expect("delete");
    }

    pub async fn service(&self, name: &str) -> TransportService {
        self.api::<TransportService>().get(name).await.expect("get TransportService")
    }

    pub async fn pod(&self, name: &str) -> Option<Pod> {
        self.api::<Pod>().get_opt(name).await.expect("get Pod")
    }

    /// The pods' names, sorted.
    pub async fn pod_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .api::<Pod>()
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        names.sort();
        names
    }

    /// What the SMTP Service of `service` sends clients to: each Ready pod's address on the
    /// port of its first receive connector.
    pub async fn ready_endpoints(&self, service: &str) -> BTreeMap<String, SocketAddr> {
        let selector = names::pod_selector_string(service);
        let pods = self.api::<Pod>().list(&ListParams::default().labels(&selector)).await.expect("list pods").items;
        pods.into_iter()
            .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
            .filter_map(|p| Some((p.name_any(), smtp_address(&p)?)))
            .collect()
    }

    /// The admin API of a server, as `transportctl --admin http://<podIP>:8025 --token-file`.
    pub async fn admin(&self, service: &str, server: &str) -> AdminClient {
        let pod = self.pod(server).await.unwrap_or_else(|| panic!("no pod {server}"));
        let ip = pod.status.and_then(|s| s.pod_ip).unwrap_or_else(|| panic!("pod {server} has no IP"));
        let token = self
            .api::<Secret>()
            .get(&names::admin_secret_name(service))
            .await
            .expect("admin token Secret")
            .data
            .and_then(|d| d.get(names::TOKEN_KEY).map(|t| String::from_utf8_lossy(&t.0).into_owned()));
        AdminClient::new(&format!("http://{ip}:{}", names::ADMIN_PORT), token).expect("admin client")
    }

    /// Polls `check` every 200 ms until it gives a value; panics after `within` with `what`
    /// and the last thing `check` reported.
    pub async fn wait_for<T, F, Fut>(&self, within: Duration, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, String>>,
    {
        let deadline = Instant::now() + within;
        loop {
            match check().await {
                Ok(v) => return v,
                Err(last) if Instant::now() > deadline => {
                    panic!("timed out after {within:?} waiting for {what}; last seen: {last}\n{}", self.logs_tail())
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The last lines of every process log (printed when a wait times out).
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        let Ok(entries) = std::fs::read_dir(self.root.path().join("logs")) else { return out };
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last lines)\n", path.display()));
            for l in &lines[lines.len().saturating_sub(12)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        // The children are killed when their handles drop with the runtime; this makes sure
        // of it now, even if the runtime outlives the cluster.
        let pids: Vec<u32> = self.pids.lock().unwrap_or_else(|e| e.into_inner()).keys().copied().collect();
        for pid in pids {
            let _ = std::process::Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

/// The pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `podIP:port` of the pod's first receive connector (`smtp-0`).
pub fn smtp_address(pod: &Pod) -> Option<SocketAddr> {
    let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
    let port = pod
        .spec
        .as_ref()?
        .containers
        .first()?
        .ports
        .as_ref()?
        .iter()
        .find(|p| p.name.as_deref() == Some("smtp-0"))?
        .container_port;
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

/// The TransportConfig `default`: organisation `example.com`, postmaster there.
pub fn transport_config() -> TransportConfig {
    let spec: TransportConfigSpec = serde_json::from_value(serde_json::json!({
        "acceptedDomains": [{"domain": "example.com", "type": "Authoritative"}],
        "postmaster": "postmaster@example.com",
    }))
    .expect("TransportConfig spec");
    TransportConfig::new("default", spec)
}

/// A TransportService `name` of `servers` servers: receive connector `Default` on port
/// 2525 (anonymous relay from 127.0.0.0/8), every domain relayed to the smart host
/// `127.0.0.1:<sink_port>` (smtp-sink), plus `extra` merged into the spec.
pub fn mail_service(name: &str, servers: u32, sink_port: u16, extra: serde_json::Value) -> TransportService {
    let mut spec = serde_json::json!({
        "servers": servers,
        "receiveConnectors": [{"name": "Default", "port": 2525, "remoteIPRanges": ["127.0.0.0/8"], "allowRelay": true}],
        "sendConnectors": [{"name": "Outbound", "addressSpaces": [{"domain": "*"}], "smartHosts": [format!("127.0.0.1:{sink_port}")]}],
    });
    if let (Some(base), Some(more)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    TransportService::new(name, serde_json::from_value(spec).expect("TransportService spec"))
}

/// What a mail flow sent.
#[derive(Debug, Default, Clone)]
pub struct FlowReport {
    /// Message-ID (`<id@e2e.test>`) → the server that answered 250.
    pub accepted: BTreeMap<String, String>,
    /// `server: reply` of every refusal or failed connection (not accepted, so not owed).
    pub refused: Vec<String>,
}

/// Mail sent continuously to the Ready servers of a service, one message at a time, each
/// to the next Ready server in turn (what the Service's endpoints would give).
pub struct MailFlow {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<FlowReport>,
}

impl MailFlow {
    pub fn start(cluster: &LocalCluster, service: &str, prefix: &str, gap: Duration) -> MailFlow {
        let client = cluster.client.clone();
        let (service, prefix) = (service.to_string(), prefix.to_string());
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let api: Api<Pod> = Api::namespaced(client, NS);
            let selector = names::pod_selector_string(&service);
            let mut report = FlowReport::default();
            let mut n = 0usize;
            while !*stopped.borrow() {
                let pods =
                    api.list(&ListParams::default().labels(&selector)).await.map(|l| l.items).unwrap_or_default();
                let ready: Vec<(String, SocketAddr)> = pods
                    .iter()
                    .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
                    .filter_map(|p| Some((p.name_any(), smtp_address(p)?)))
                    .collect();
                if !ready.is_empty() {
                    let (server, addr) = &ready[n % ready.len()];
                    let id = format!("{prefix}-{n}");
                    n += 1;
                    match smtp::send_one(*addr, &id, "bob@example.net").await {
                        Ok(reply) if reply.starts_with("250") => {
                            report.accepted.insert(smtp::message_id(&id), server.clone());
                        }
                        Ok(reply) => report.refused.push(format!("{server}: {reply}")),
                        Err(e) => report.refused.push(format!("{server}: {e}")),
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(gap) => {}
                    _ = stopped.changed() => {}
                }
            }
            report
        });
        MailFlow { stop, task }
    }

    pub async fn stop(self) -> FlowReport {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the mail flow stops within a minute")
            .expect("mail flow task")
    }
}

/// Asserts that every accepted message reached the sink at least once (the sink may see one
/// twice: a hand-over retried after a lost answer delivers it again; never none).
pub async fn assert_all_delivered(cluster: &LocalCluster, sink: &sink::Sink, accepted: &BTreeMap<String, String>) {
    let within = Duration::from_secs(90);
    cluster
        .wait_for(within, "every accepted message at the sink", || async {
            let got = sink.message_ids();
            let missing: Vec<&String> = accepted.keys().filter(|id| !got.contains_key(*id)).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "{} of {} missing, e.g. {:?}",
                    missing.len(),
                    accepted.len(),
                    &missing[..missing.len().min(5)]
                ))
            }
        })
        .await;
}

/// Waits until `kubectl get ts <name>` shows Ready True, `servers`/`servers` ready, every
/// server Started (2) and running the configuration rendered for it (Progressing False).
pub async fn wait_service_ready(cluster: &LocalCluster, name: &str, servers: usize) -> TransportService {
    let what = format!("TransportService {name} Ready with {servers} servers Started");
    cluster
        .wait_for(Duration::from_secs(90), &what, || async {
            let ts = cluster.service(name).await;
            let status = ts.status.clone().ok_or("no status")?;
            let cond = |t: &str| status.conditions.iter().find(|c| c.type_ == t).cloned();
            let ready = cond("Ready").ok_or("no Ready")?;
            let progressing = cond("Progressing").ok_or("no Progressing")?;
            let started = status.servers.iter().filter(|s| s.server_state.map(|x| x.code) == Some(2)).count();
            if ready.status == "True"
                && progressing.status == "False"
                && status.servers.len() == servers
                && started == servers
                && status.observed_generation == ts.metadata.generation
            {
                Ok(ts)
            } else {
                Err(format!(
                    "Ready {} {}: {}; Progressing {}: {}",
                    ready.status, ready.reason, ready.message, progressing.reason, progressing.message
                ))
            }
        })
        .await
}

/// The status of a ServerComponentState, once `check` accepts it.
pub async fn wait_component_state(
    cluster: &LocalCluster,
    name: &str,
    what: &str,
    check: impl Fn(&operator::crd::ServerComponentStateStatus) -> bool,
) -> operator::crd::ServerComponentStateStatus {
    cluster
        .wait_for(Duration::from_secs(60), what, || async {
            let obj = cluster.api::<ServerComponentState>().get(name).await.map_err(|e| e.to_string())?;
            let status = obj.status.clone().ok_or("no status")?;
            if check(&status) && status.observed_generation == obj.metadata.generation {
                Ok(status)
            } else {
                Err(format!("{status:?}"))
            }
        })
        .await
}

/// The condition `type_` of a status's conditions.
pub fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// The pod of `server` is Ready (true) or not (false), as `kubectl get pod` shows it.
pub async fn wait_pod_ready(cluster: &LocalCluster, server: &str, ready: bool) {
    let what = format!("pod {server} Ready={ready}");
    cluster
        .wait_for(Duration::from_secs(60), &what, || async {
            let pod = cluster.pod(server).await.ok_or("no pod")?;
            if pod_ready(&pod) == ready && pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some() {
                Ok(())
            } else {
                Err(format!("{:?}", pod.status.and_then(|s| s.conditions)))
            }
        })
        .await
}

/// Retry-Queue on every queue in Retry of `servers` (what an administrator does once a dead
/// next hop is back), until `done` holds.
pub async fn retry_until(
    cluster: &LocalCluster,
    service: &str,
    servers: &[&str],
    what: &str,
    done: impl Fn() -> Result<(), String>,
) {
    cluster
        .wait_for(Duration::from_secs(90), what, || async {
            if let Ok(()) = done() {
                return Ok(());
            }
            for server in servers {
                let admin = cluster.admin(service, server).await;
                for q in admin.queues().await.map_err(|e| e.to_string())? {
                    if q.status == transport::api::QueueStatus::Retry {
                        let _ = admin.queue_action(&q.id, transport::client::QueueAction::Retry).await;
                    }
                }
            }
            done()
        })
        .await;
}

/// Messages in each server's queues as `kubectl get ts -o yaml` shows them.
pub async fn queued(cluster: &LocalCluster, service: &str) -> BTreeMap<String, u64> {
    let ts = cluster.service(service).await;
    ts.status
        .map(|s| {
            s.servers.iter().map(|e| (e.name.clone(), e.queue_totals.map(|t| t.messages).unwrap_or_default())).collect()
        })
        .unwrap_or_default()
}

/// Waits until the per-server message counts of `service` (see [`queued`]) satisfy `done`.
pub async fn wait_queued(
    cluster: &LocalCluster,
    service: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) {
    cluster
        .wait_for(within, what, || async {
            let q = queued(cluster, service).await;
            if done(&q) {
                Ok(())
            } else {
                Err(format!("{q:?}"))
            }
        })
        .await
}

/// A running cluster with the TransportService `mail` Ready: mail for `later.test` goes to
/// `127.0.0.1:<dead_port>`, down until a test starts a sink there; the rest goes to `sink`.
pub struct DeadHopCluster {
    pub cluster: LocalCluster,
    pub sink: sink::Sink,
    pub dead_port: u16,
}

/// Starts a [`DeadHopCluster`] whose `mail` has `servers` servers.
pub async fn mail_with_dead_hop(servers: u32) -> DeadHopCluster {
    let sink = sink::Sink::start(0);
    let dead_port = sink::free_port();
    let cluster = LocalCluster::start().await;
    cluster.apply(transport_config()).await;
    cluster.apply(service_with_dead_hop("mail", servers, sink.addr.port(), dead_port)).await;
    wait_service_ready(&cluster, "mail", servers as usize).await;
    DeadHopCluster { cluster, sink, dead_port }
}

/// Sends one message per id to `server` of `mail` for `rcpt` (a `later.test` address, so
/// it stays queued), each accepted, and waits until that server's queue holds them all.
/// Returns the server's SMTP address.
pub async fn hold_on(cluster: &LocalCluster, server: &str, ids: &[String], rcpt: &str) -> SocketAddr {
    let pod = cluster.pod(server).await.unwrap_or_else(|| panic!("no pod {server}"));
    let addr = smtp_address(&pod).unwrap_or_else(|| panic!("{server} has no SMTP address"));
    for id in ids {
        let reply = smtp::send_one(addr, id, rcpt).await.expect("SMTP session");
        assert!(reply.starts_with("250"), "{server} refused {id}: {reply}");
    }
    let what = format!("{} messages held on {server}", ids.len());
    wait_queued(cluster, "mail", Duration::from_secs(60), &what, |q| q.get(server) == Some(&(ids.len() as u64))).await;
    addr
}

/// A service whose `later.test` mail goes to `127.0.0.1:<dead_port>`, where nothing listens
/// yet: a next hop that is down.
pub fn service_with_dead_hop(name: &str, servers: u32, sink_port: u16, dead_port: u16) -> TransportService {
    mail_service(
        name,
        servers,
        sink_port,
        serde_json::json!({"sendConnectors": [
            {"name": "Outbound", "addressSpaces": [{"domain": "*"}], "smartHosts": [format!("127.0.0.1:{sink_port}")]},
            {"name": "Later", "addressSpaces": [{"domain": "later.test"}], "smartHosts": [format!("127.0.0.1:{dead_port}")]},
        ]}),
    )
}
