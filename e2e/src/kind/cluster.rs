//! Helpers of the scenarios that run against a real cluster: the current kubeconfig
//! (`kube::Client::try_default`, the same context `kubectl` uses), with the operator
//! installed by the chart (`make e2e` does it on kind). Each scenario works in a namespace
//! of its own, deleted when it ends (also when it fails).
//!
//! Gated by `KUBE_TRANSPORT_E2E=1`: without it, [`skip`] prints why and the scenario returns.
//! `KUBE_TRANSPORT_E2E_MAILTOOLS_IMAGE` names the image with Postfix's smtp-sink
//! (images/Dockerfile target `mailtools`), `KUBE_TRANSPORT_E2E_CLUSTER_DOMAIN` the cluster's
//! DNS domain (default `cluster.local`).
use super::tools;
use crate::scenario::pod_ready;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use lettre::message::{Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use operator::crd::{ServerComponentState, TransportConfig, TransportService};
use operator::names;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use transport::client::AdminClient;

/// The variable that turns the scenarios on.
pub const ENV: &str = "KUBE_TRANSPORT_E2E";
/// Field manager of everything the scenarios apply (what `kubectl apply --server-side`
/// of the example files would do, under a name of its own).
pub const FIELD_MANAGER: &str = "kube-transport-e2e";
/// Port of the in-cluster sink (Postfix's smtp-sink).
pub const SINK_PORT: u16 = 2526;
/// Every wait is bounded; a scenario step that takes longer fails with what it saw.
pub const STEP: Duration = Duration::from_secs(180);

/// Whether `KUBE_TRANSPORT_E2E=1`.
pub fn enabled() -> bool {
    std::env::var(ENV).is_ok_and(|v| v == "1")
}

/// True, after saying so, when the scenario must not run (no cluster configured for it).
/// These are the only tests of the project that skip.
pub fn skip(test: &str) -> bool {
    if enabled() {
        return false;
    }
    eprintln!(
        "SKIPPED {test}: it needs a Kubernetes cluster with kube-transport installed. Run `make e2e` \
         (kind), or set {ENV}=1 to run it against the current kubeconfig."
    );
    true
}

fn mailtools_image() -> String {
    std::env::var("KUBE_TRANSPORT_E2E_MAILTOOLS_IMAGE")
        .unwrap_or_else(|_| format!("ghcr.io/kube-transport/mailtools:{}", env!("CARGO_PKG_VERSION")))
}

fn cluster_domain() -> String {
    std::env::var("KUBE_TRANSPORT_E2E_CLUSTER_DOMAIN").unwrap_or_else(|_| "cluster.local".into())
}

/// An example manifest of examples/ (one document), as written.
pub fn example(file: &str) -> Value {
    let path = tools::repo_root().join("examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `doc` at a JSON pointer, created (as objects) along the way if missing.
pub fn at<'a>(doc: &'a mut Value, pointer: &str) -> &'a mut Value {
    let mut cur = doc;
    for part in pointer.split('/').skip(1) {
        cur = match cur {
            Value::Array(items) => &mut items[part.parse::<usize>().expect("array index")],
            other => {
                if !other.is_object() {
                    *other = json!({});
                }
                other.as_object_mut().expect("object").entry(part.to_string()).or_insert(Value::Null)
            }
        };
    }
    cur
}

/// One scenario's namespace and client. Dropping it deletes the namespace.
pub struct Env {
    pub client: Client,
    pub namespace: String,
}

impl Env {
    /// A new namespace `kt-e2e-<name>-<random>` on the current kubeconfig's cluster.
    pub async fn new(name: &str) -> Env {
        // kube's TLS needs a process-wide rustls crypto provider, as in the operator.
        operator::context::install_crypto_provider();
        let client = Client::try_default().await.expect("no usable kubeconfig (KUBECONFIG or ~/.kube/config)");
        let suffix: String = uuid_like();
        let namespace = format!("kt-e2e-{name}-{suffix}");
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": {"name": namespace, "labels": {"kubetransport.io/e2e": "true"}}
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &ns).await.expect("create the namespace");
        eprintln!("namespace {namespace}");
        Env { client, namespace }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Server-side applies one manifest (a TransportService, TransportConfig or
    /// ServerComponentState as a YAML/JSON value) into this namespace, as `kubectl apply
    /// --server-side -f` does; returns the object as stored.
    pub async fn apply(&self, manifest: &Value) -> DynamicObject {
        let resource = match manifest["kind"].as_str() {
            Some("TransportService") => ApiResource::erase::<TransportService>(&()),
            Some("TransportConfig") => ApiResource::erase::<TransportConfig>(&()),
            Some("ServerComponentState") => ApiResource::erase::<ServerComponentState>(&()),
            other => panic!("apply: unexpected kind {other:?}"),
        };
        let name = manifest["metadata"]["name"].as_str().expect("metadata.name");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &self.namespace, &resource);
        api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(manifest))
            .await
            .unwrap_or_else(|e| panic!("apply {} {name}: {e}", resource.kind))
    }

    /// Deletes a namespaced object (ignoring one already gone).
    pub async fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        match self.api::<K>().delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => panic!("delete {name}: {e}"),
        }
    }

    /// Polls `name` until `done` holds (every 2 s, at most `limit`); panics with `what`
    /// and the last object seen.
    pub async fn wait_for<K>(&self, name: &str, what: &str, limit: Duration, done: impl Fn(&K) -> bool) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let api = self.api::<K>();
        let started = Instant::now();
        let mut last = None;
        loop {
            match api.get_opt(name).await {
                Ok(Some(obj)) if done(&obj) => return obj,
                Ok(found) => last = found,
                Err(e) => eprintln!("get {name}: {e} (retrying)"),
            }
            assert!(started.elapsed() < limit, "{what}: not within {limit:?}; last seen: {last:#?}");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Waits until TransportService `name` reports Ready=True for its current generation
    /// with `servers` servers ready, and returns it.
    pub async fn wait_service_ready(&self, name: &str, servers: u32) -> TransportService {
        let want = format!("{servers}/{servers}");
        self.wait_for::<TransportService>(name, &format!("TransportService {name} Ready {want}"), STEP, |ts| {
            let Some(status) = &ts.status else { return false };
            status.observed_generation == ts.metadata.generation
                && status.servers_ready.as_deref() == Some(want.as_str())
                && status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .await
    }

    /// Whether pod `name` is Ready (takes connections through the Service).
    pub async fn pod_ready(&self, name: &str) -> Option<bool> {
        let pod = self.api::<Pod>().get_opt(name).await.ok().flatten()?;
        Some(pod_ready(&pod))
    }

    pub async fn wait_pod_ready(&self, name: &str, ready: bool) -> Pod {
        let what = format!("pod {name} {}", if ready { "Ready" } else { "not Ready" });
        self.wait_for::<Pod>(name, &what, STEP, |p| pod_ready(p) == ready).await
    }

    /// The admin API token of a TransportService's servers (Secret `<ts>-admin-token`).
    pub async fn admin_token(&self, ts: &str) -> String {
        let secret = self.api::<Secret>().get(&names::admin_secret_name(ts)).await.expect("the admin token Secret");
        let bytes = secret.data.and_then(|d| d.get(names::TOKEN_KEY).cloned()).expect("key token");
        String::from_utf8(bytes.0).expect("UTF-8 token").trim().to_string()
    }

    /// A port-forward to `server`'s admin API and a client of it.
    pub async fn admin(&self, ts: &str, server: &str) -> (PortForward, AdminClient) {
        let forward = PortForward::start(&self.namespace, &format!("pod/{server}"), names::ADMIN_PORT).await;
        let client = AdminClient::new(&format!("http://{}", forward.addr), Some(self.admin_token(ts).await))
            .expect("admin client");
        (forward, client)
    }

    /// The ConfigMap `<ts>-config` (rendered configuration, revision annotations).
    pub async fn config_map(&self, ts: &str) -> ConfigMap {
        self.api::<ConfigMap>().get(&names::config_map_name(ts)).await.expect("the rendered ConfigMap")
    }

    /// UID of each pod of a TransportService, by name.
    pub async fn pod_uids(&self, ts: &str) -> BTreeMap<String, String> {
        let selector = names::pod_selector_string(ts);
        let pods = self.api::<Pod>().list(&ListParams::default().labels(&selector)).await.expect("list pods");
        pods.items
            .into_iter()
            .map(|p| (p.metadata.name.unwrap_or_default(), p.metadata.uid.unwrap_or_default()))
            .collect()
    }

    /// The uids of the namespace's PersistentVolumeClaims (the servers' queue volumes).
    pub async fn pvc_uids(&self) -> Vec<String> {
        let pvcs = self.api::<PersistentVolumeClaim>().list(&ListParams::default()).await.expect("list PVCs");
        pvcs.items.into_iter().filter_map(|p| p.metadata.uid).collect()
    }

    /// `host:port` of the in-cluster sink's Service.
    pub fn sink_host(&self) -> String {
        format!("sink.{}.svc.{}:{SINK_PORT}", self.namespace, cluster_domain())
    }

    /// A Deployment `sink` running Postfix's smtp-sink (every message accepted, each
    /// envelope logged) behind a Service `sink`; returns once it is available.
    pub async fn deploy_sink(&self) -> SinkRecipients {
        let labels = json!({"app.kubernetes.io/name": "e2e-sink"});
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "sink"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532,
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "sink",
                            "image": mailtools_image(),
                            "imagePullPolicy": "IfNotPresent",
                            // -v logs every command, so the pod's log lists each RCPT TO.
                            "command": ["/usr/sbin/smtp-sink", "-v", format!("0.0.0.0:{SINK_PORT}"), "256"],
                            "ports": [{"name": "smtp", "containerPort": SINK_PORT}],
                            "readinessProbe": {"tcpSocket": {"port": "smtp"}, "periodSeconds": 2},
                            "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true,
                                                "capabilities": {"drop": ["ALL"]}}
                        }]
                    }
                }
            }
        }))
        .unwrap();
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "sink"},
            "spec": {"selector": labels, "ports": [{"name": "smtp", "port": SINK_PORT, "targetPort": "smtp"}]}
        }))
        .unwrap();
        let pp = PatchParams::apply(FIELD_MANAGER).force();
        self.api::<Deployment>().patch("sink", &pp, &Patch::Apply(&deployment)).await.expect("sink Deployment");
        self.api::<Service>().patch("sink", &pp, &Patch::Apply(&service)).await.expect("sink Service");
        let sink = SinkRecipients { seen: BTreeSet::new() };
        self.scale_sink(1).await;
        sink
    }

    /// Scales the sink (0: the next hop is down, mail waits in the servers' queues).
    pub async fn scale_sink(&self, replicas: i32) {
        let patch = json!({"spec": {"replicas": replicas}});
        self.api::<Deployment>()
            .patch("sink", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("scale the sink");
        let pods = self.api::<Pod>();
        let started = Instant::now();
        loop {
            let list = pods.list(&ListParams::default().labels("app.kubernetes.io/name=e2e-sink")).await.expect("list");
            let ready = list.items.iter().filter(|p| pod_ready(p)).count() as i32;
            if ready == replicas && list.items.len() as i32 == replicas {
                return;
            }
            assert!(started.elapsed() < STEP, "the sink did not reach {replicas} ready pods");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Recipients the sink has received so far (from the logs of its current pods).
    pub async fn sink_recipients(&self, sink: &mut SinkRecipients) -> BTreeSet<String> {
        let pods = self.api::<Pod>();
        let list = pods.list(&ListParams::default().labels("app.kubernetes.io/name=e2e-sink")).await.expect("list");
        for pod in list.items {
            let name = pod.metadata.name.unwrap_or_default();
            if let Ok(log) = pods.logs(&name, &LogParams::default()).await {
                sink.seen.extend(log.lines().filter_map(rcpt_address));
            }
        }
        sink.seen.clone()
    }

    /// Waits until the sink has received every address of `expected`.
    pub async fn wait_sink_has(&self, sink: &mut SinkRecipients, expected: &BTreeSet<String>) {
        let started = Instant::now();
        loop {
            let seen = self.sink_recipients(sink).await;
            let missing: Vec<&String> = expected.difference(&seen).collect();
            if missing.is_empty() {
                return;
            }
            assert!(started.elapsed() < STEP, "the sink never received {missing:?}");
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Synchronous and best effort, so that a failed scenario cleans up too; deleting the
        // namespace deletes the TransportServices and, through their owner references,
        // their pods and volumes.
        if let Some(kubectl) = tools::find("kubectl") {
            let _ = std::process::Command::new(kubectl)
                .args(["delete", "namespace", &self.namespace, "--wait=false", "--ignore-not-found"])
                .stdout(std::process::Stdio::null())
                .status();
        }
    }
}

/// The recipients the in-cluster smtp-sink has been seen to receive (its pods come and go
/// when it is scaled, so what their logs showed is kept here).
pub struct SinkRecipients {
    seen: BTreeSet<String>,
}

/// The address of a `RCPT TO:<address>` line of smtp-sink's verbose log.
fn rcpt_address(line: &str) -> Option<String> {
    let rest = &line[line.find("RCPT TO:<")? + "RCPT TO:<".len()..];
    Some(rest[..rest.find('>')?].to_ascii_lowercase())
}

/// A short random suffix for names (namespaces, message tokens).
pub fn uuid_like() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    h.write_u128(now.as_nanos() ^ u128::from(std::process::id()));
    format!("{:08x}", h.finish() as u32)
}

/// `kubectl port-forward` to a pod or Service, on a free local port of 127.0.0.1; stopped
/// when dropped. (kube's own port-forward needs its websocket feature, which the workspace
/// does not build; kubectl is there wherever the suite runs.)
pub struct PortForward {
    pub addr: SocketAddr,
    _child: tokio::process::Child,
}

impl PortForward {
    pub async fn start(namespace: &str, target: &str, port: u16) -> PortForward {
        let mut child = tokio::process::Command::new(tools::kubectl())
            .args(["-n", namespace, "port-forward", "--address", "127.0.0.1", target, &format!(":{port}")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("run kubectl port-forward");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        // "Forwarding from 127.0.0.1:41234 -> 2525"
        let local = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                    return rest.split_whitespace().next().and_then(|p| p.parse::<u16>().ok());
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("kubectl port-forward {target} :{port} did not start"));
        // Keep reading ("Handling connection for ...") so kubectl never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        PortForward { addr: SocketAddr::from(([127, 0, 0, 1], local)), _child: child }
    }
}

/// Submits one message to `addr` (plain SMTP, as a client inside the cluster's networks
/// would); the error carries the server's reply code and text.
pub async fn send(
    addr: SocketAddr,
    from: &str,
    to: &[String],
    subject: &str,
) -> Result<(), lettre::transport::smtp::Error> {
    let mut builder = Message::builder().from(from.parse::<Mailbox>().expect("from")).subject(subject);
    for rcpt in to {
        builder = builder.to(rcpt.parse::<Mailbox>().expect("to"));
    }
    let message = builder.body(format!("kube-transport e2e: {subject}\r\n")).expect("message");
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(addr.ip().to_string())
        .port(addr.port())
        .timeout(Some(Duration::from_secs(30)))
        .build();
    transport.send(message).await.map(|_| ())
}

/// Total messages in every queue of a server, from its admin API.
pub async fn queued(admin: &AdminClient) -> u64 {
    admin.queues().await.expect("GET /v1/queues").iter().map(|q| q.message_count).sum()
}

/// Polls a server's admin API until `done(queued messages)` holds.
pub async fn wait_queued(admin: &AdminClient, what: &str, done: impl Fn(u64) -> bool) -> u64 {
    let started = Instant::now();
    loop {
        let n = queued(admin).await;
        if done(n) {
            return n;
        }
        assert!(started.elapsed() < STEP, "{what}: {n} messages queued after {STEP:?}");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sink check of the scenarios, against a real smtp-sink on loopback: what `send`
    /// submits is what `rcpt_address` reads back from smtp-sink's verbose log.
    #[tokio::test]
    async fn recipients_sent_are_read_back_from_smtp_sink_log() {
        let sink = std::path::Path::new("/usr/sbin/smtp-sink");
        assert!(sink.is_file(), "smtp-sink is missing: apt-get install postfix");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = std::process::Command::new(sink);
        // smtp-sink refuses to run as root unless told which user to become.
        let root = std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")));
        if root {
            command.args(["-u", "nobody"]);
        }
        let mut child = command
            .args(["-v", &format!("127.0.0.1:{port}"), "16"])
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let to = vec!["One-abc@sink.test".to_string(), "two-abc@sink.test".to_string()];
        let mut result = Err(None);
        for _ in 0..50 {
            match send(addr, "alice@example.org", &to, "e2e helper").await {
                Ok(()) => {
                    result = Ok(());
                    break;
                }
                Err(e) => result = Err(Some(e)),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut seen = BTreeSet::new();
        for _ in 0..50 {
            seen = std::fs::read_to_string(log.path()).unwrap().lines().filter_map(rcpt_address).collect();
            if seen.len() == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        result.unwrap_or_else(|e| panic!("smtp-sink refused the message: {e:?}"));
        assert_eq!(seen, BTreeSet::from(["one-abc@sink.test".to_string(), "two-abc@sink.test".to_string()]));
    }

    #[test]
    fn at_creates_the_path_it_sets() {
        let mut doc = json!({"spec": {"sendConnectors": [{"name": "a"}]}});
        *at(&mut doc, "/spec/sendConnectors/0/tls") = json!("None");
        *at(&mut doc, "/spec/retry/messageRetryInterval") = json!("10s");
        assert_eq!(
            doc,
            json!({"spec": {"sendConnectors": [{"name": "a", "tls": "None"}], "retry": {"messageRetryInterval": "10s"}}})
        );
    }
}
