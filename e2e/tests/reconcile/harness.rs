//! Test harness of the reconcile tests: the real API server of the process's shared control
//! plane (`e2e::cluster::shared`: etcd, kube-apiserver, kube-controller-manager, the CRDs;
//! no nodes, no scheduler), a namespace per test, every write the operator's client makes
//! recorded (a tower layer on the client), a fake admin API of the transport servers (an
//! axum server on 127.0.0.1:0 answering `GET /v1/server`, `PUT /v1/server/state`,
//! `PUT /v1/components/{c}` and `POST /v1/redirect` per server), and a "kubelet" that starts
//! the fake servers for the pods the operator creates and reports them Ready.
//!
//! The tests call the reconcilers directly and move pods along with [`Harness::kubelet`]
//! and [`Harness::schedule`] (a binding, as the scheduler makes): what each reconcile
//! writes and decides is checked step by step, against what a real API server accepts.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use k8s_openapi::api::core::v1::{Binding, ConfigMap, Namespace, ObjectReference, Pod, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use operator::admin::{AdminConnector, ServerEndpoint};
use operator::crd::{
    ServerComponentState, ServerComponentStateSpec, TransportConfig, TransportConfigSpec, TransportService,
    TransportServiceRef,
};
use operator::Context;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use transport::api::{
    ComponentInfo, QueueTotals, RedirectInfo, RedirectRequest, RequesterState, ServerInfo, ServerStateInfo,
    ServerStateName, SetComponentState, SetServerState, ShadowCheckInfo,
};
use transport::client::{AdminClient, ClientError};
use transport::config::{
    combined_component_state, AcceptedDomain, AcceptedDomainType, Component, ComponentState, OrgSettings, Requester,
    ServerStateSetting, TransportFile,
};

/// Bound on every wait of a test.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Every write the operator's client sent to the API server (`verb Kind/name`).
#[derive(Clone, Default)]
pub struct Writes {
    count: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Writes {
    fn record(&self, what: String) {
        self.count.fetch_add(1, Ordering::SeqCst);
        self.log.lock().unwrap().push(what);
    }

    pub fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// The writes after mark `from` (a previous `count()`).
    pub fn since(&self, from: usize) -> Vec<String> {
        self.log.lock().unwrap()[from..].to_vec()
    }
}

/// `create Pod/mail-0`, `patch-status TransportService/mail`, `delete Pod/mail-0` for a
/// request; None for reads.
fn describe(method: &http::Method, path: &str) -> Option<String> {
    let verb = match *method {
        http::Method::POST => "create",
        http::Method::PATCH => "patch",
        http::Method::PUT => "replace",
        http::Method::DELETE => "delete",
        _ => return None,
    };
    // /api/v1/namespaces/<ns>/<plural>[/<name>[/<sub>]] or /apis/<g>/<v>/namespaces/...
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let group_version = if parts.first() == Some(&"api") { 2 } else { 3 };
    let rest = match parts.iter().position(|p| *p == "namespaces").and_then(|i| parts.get(i + 2..)) {
        Some(rest) if !rest.is_empty() => rest,
        _ => parts.get(group_version..).unwrap_or_default(),
    };
    let plural = rest.first().copied().unwrap_or("?");
    let kind = match plural {
        "pods" => "Pod",
        "configmaps" => "ConfigMap",
        "services" => "Service",
        "secrets" => "Secret",
        "persistentvolumeclaims" => "PersistentVolumeClaim",
        "poddisruptionbudgets" => "PodDisruptionBudget",
        "events" => "Event",
        "transportservices" => "TransportService",
        "transportconfigs" => "TransportConfig",
        "servercomponentstates" => "ServerComponentState",
        "nodes" => "Node",
        other => other,
    };
    let name = rest.get(1).copied().unwrap_or("?");
    let verb = match (verb, rest.get(2).copied()) {
        ("patch", Some("status")) => "patch-status",
        ("replace", Some("status")) => "replace-status",
        (v, _) => v,
    };
    Some(format!("{verb} {kind}/{name}"))
}

/// One transport server behind the fake admin API.
#[derive(Debug, Clone)]
pub struct FakeServer {
    pub info: ServerInfo,
    /// uid of the pod it runs in: a new pod is a new process.
    pub pod_uid: String,
    /// uid of its queue volume's claim: a new process on the same volume finds its queue.
    pub volume_uid: String,
    pub redirects: Vec<String>,
    pub tokens: Vec<Option<String>>,
    /// Component wishes set through `PUT /v1/components` (requester, state), in order.
    pub component_calls: Vec<(Component, Requester, ComponentState)>,
    /// Shadow copies it holds, by primary, as `POST /v1/shadow/{primary}/heartbeat` reports them.
    pub shadow_copies: BTreeMap<String, u64>,
}

type Servers = Arc<Mutex<BTreeMap<String, FakeServer>>>;

/// Fixed time for requester wishes, so status stays the same from one poll to the next.
const SINCE: &str = "2026-01-01T00:00:00Z";

fn new_info(server: &str, revision: &str, totals: QueueTotals) -> ServerInfo {
    ServerInfo {
        server_name: server.to_string(),
        server_state: ServerStateName::Started.into(),
        components: Component::ALL
            .iter()
            .map(|c| ComponentInfo { component: *c, state: ComponentState::Active, requesters: Vec::new() })
            .collect(),
        config_revision: revision.to_string(),
        restart_required: false,
        accepting_mail: true,
        totals,
        redirect: None,
        certificates: Vec::new(),
    }
}

/// Recomputes each component's combined state (the server's rule) and whether it takes mail.
fn refresh_accepting(info: &mut ServerInfo) {
    let strongest: BTreeMap<Component, ComponentState> = info
        .components
        .iter()
        .map(|c| (c.component, ComponentState::strongest(c.requesters.iter().map(|r| r.state))))
        .collect();
    for c in &mut info.components {
        c.state = combined_component_state(c.component, |x| strongest.get(&x).copied().unwrap_or_default());
    }
    let hub_active = info
        .components
        .iter()
        .all(|c| c.state == ComponentState::Active || c.component == Component::FrontendTransport);
    info.accepting_mail = hub_active && info.server_state.name == ServerStateName::Started;
}

/// Records one requester's wish, as `PUT /v1/components/{c}` and a file (re)load do.
fn set_wish(info: &mut ServerInfo, component: Component, requester: Requester, state: ComponentState) {
    let entry = info.components.iter_mut().find(|c| c.component == component).expect("every component listed");
    match entry.requesters.iter_mut().find(|r| r.requester == requester) {
        Some(r) => r.state = state,
        None => entry.requesters.push(RequesterState { requester, state, since: SINCE.into() }),
    }
    refresh_accepting(info);
}

fn token(headers: &HeaderMap) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
}

type Reply = Result<Json<ServerInfo>, (StatusCode, Json<Value>)>;

fn not_found(server: &str) -> (StatusCode, Json<Value>) {
    (StatusCode::NOT_FOUND, Json(json!({"error": format!("no server {server}")})))
}

async fn get_server(State(s): State<Servers>, Path(server): Path<String>, headers: HeaderMap) -> Reply {
    let mut all = s.lock().unwrap();
    let fake = all.get_mut(&server).ok_or_else(|| not_found(&server))?;
    fake.tokens.push(token(&headers));
    Ok(Json(fake.info.clone()))
}

async fn put_state(
    State(s): State<Servers>,
    Path(server): Path<String>,
    headers: HeaderMap,
    Json(body): Json<SetServerState>,
) -> Reply {
    let mut all = s.lock().unwrap();
    let fake = all.get_mut(&server).ok_or_else(|| not_found(&server))?;
    fake.tokens.push(token(&headers));
    fake.info.server_state = match body.state {
        ServerStateSetting::Started => ServerStateName::Started,
        ServerStateSetting::Paused => ServerStateName::Paused,
        ServerStateSetting::Stopped => ServerStateName::Stopped,
    }
    .into();
    refresh_accepting(&mut fake.info);
    Ok(Json(fake.info.clone()))
}

async fn put_component(
    State(s): State<Servers>,
    Path((server, component)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<SetComponentState>,
) -> Reply {
    let mut all = s.lock().unwrap();
    let fake = all.get_mut(&server).ok_or_else(|| not_found(&server))?;
    fake.tokens.push(token(&headers));
    let component: Component = serde_json::from_value(json!(component))
        .map_err(|e| (StatusCode::BAD_REQUEST, Json(json!({"error": e.to_string()}))))?;
    fake.component_calls.push((component, body.requester, body.state));
    set_wish(&mut fake.info, component, body.requester, body.state);
    Ok(Json(fake.info.clone()))
}

async fn post_redirect(
    State(s): State<Servers>,
    Path(server): Path<String>,
    headers: HeaderMap,
    Json(body): Json<RedirectRequest>,
) -> Reply {
    let mut all = s.lock().unwrap();
    let fake = all.get_mut(&server).ok_or_else(|| not_found(&server))?;
    fake.tokens.push(token(&headers));
    fake.redirects.push(body.target.clone());
    fake.info.redirect = Some(RedirectInfo { target: body.target, remaining: fake.info.totals.messages, done: false });
    Ok(Json(fake.info.clone()))
}

async fn post_shadow_heartbeat(
    State(s): State<Servers>,
    Path((server, primary)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<ShadowCheckInfo>, (StatusCode, Json<Value>)> {
    let mut all = s.lock().unwrap();
    let fake = all.get_mut(&server).ok_or_else(|| not_found(&server))?;
    fake.tokens.push(token(&headers));
    let held_copies = fake.shadow_copies.get(&primary).copied().unwrap_or(0);
    Ok(Json(ShadowCheckInfo { primary, held_copies }))
}

/// The fake admin API of every server, on 127.0.0.1.
#[derive(Clone)]
pub struct FakeAdmin {
    pub servers: Servers,
    pub addr: SocketAddr,
}

impl FakeAdmin {
    pub async fn start() -> FakeAdmin {
        let servers: Servers = Arc::default();
        let app = Router::new()
            .route("/{server}/v1/server", get(get_server))
            .route("/{server}/v1/server/state", put(put_state))
            .route("/{server}/v1/components/{component}", put(put_component))
            .route("/{server}/v1/redirect", post(post_redirect))
            .route("/{server}/v1/shadow/{primary}/heartbeat", post(post_shadow_heartbeat))
            .with_state(servers.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeAdmin { servers, addr }
    }

    pub fn server(&self, name: &str) -> Option<FakeServer> {
        self.servers.lock().unwrap().get(name).cloned()
    }

    /// Changes a running fake server.
    pub fn edit(&self, name: &str, f: impl FnOnce(&mut FakeServer)) {
        let mut all = self.servers.lock().unwrap();
        let fake = all.get_mut(name).unwrap_or_else(|| panic!("no fake server {name}"));
        f(fake);
        refresh_accepting(&mut fake.info);
    }

    pub fn set_messages(&self, name: &str, messages: u64) {
        self.edit(name, |s| {
            s.info.totals.messages = messages;
            if let Some(r) = &mut s.info.redirect {
                r.remaining = messages;
                r.done = messages == 0;
            }
        });
    }

    pub fn deployment_state(&self, name: &str) -> Option<ComponentState> {
        self.wish(name, Component::HubTransport, Requester::Deployment)
    }

    /// A requester's wish as the fake server holds it.
    pub fn wish(&self, name: &str, component: Component, requester: Requester) -> Option<ComponentState> {
        let s = self.server(name)?;
        let c = s.info.components.iter().find(|c| c.component == component)?;
        c.requesters.iter().find(|r| r.requester == requester).map(|r| r.state)
    }

    /// A component's combined state on the fake server.
    pub fn effective(&self, name: &str, component: Component) -> Option<ComponentState> {
        let s = self.server(name)?;
        s.info.components.iter().find(|c| c.component == component).map(|c| c.state)
    }
}

/// Connects to the fake admin API: `http://127.0.0.1:<port>/<server>`.
pub struct TestConnector {
    pub addr: SocketAddr,
}

impl AdminConnector for TestConnector {
    fn client(&self, endpoint: &ServerEndpoint) -> Result<AdminClient, ClientError> {
        AdminClient::new(&format!("http://{}/{}", self.addr, endpoint.server), endpoint.token.clone())
    }
}

pub struct Harness {
    pub client: Client,
    pub ns: String,
    pub writes: Writes,
    pub admin: FakeAdmin,
    pub ctx: Arc<Context>,
}

/// A namespace of its own for each test of this process.
fn next_namespace() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("rt-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

impl Harness {
    pub async fn new() -> Harness {
        e2e::cluster::install_crypto_provider();
        let plane =
            tokio::task::spawn_blocking(e2e::cluster::shared::shared_control_plane).await.expect("control plane");
        let writes = Writes::default();
        let recorder = writes.clone();
        let kubeconfig = kube::config::Kubeconfig::read_from(&plane.kubeconfig).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.expect("config");
        let layer = tower::ServiceBuilder::new().map_request(move |req: http::Request<kube::client::Body>| {
            if let Some(what) = describe(req.method(), req.uri().path()) {
                recorder.record(what);
            }
            req
        });
        let client = kube::client::ClientBuilder::try_from(config).expect("client").with_layer(&layer).build();
        let ns = next_namespace();
        let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.expect("namespace");
        // Pods need the `default` ServiceAccount, which the controller-manager makes.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &ns);
        let deadline = std::time::Instant::now() + TIMEOUT;
        while accounts.get_opt("default").await.expect("get ServiceAccount").is_none() {
            assert!(std::time::Instant::now() < deadline, "no default ServiceAccount in {ns}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mark = writes.count();
        let admin = FakeAdmin::start().await;
        let ctx = Arc::new(
            Context::new(client.clone(), Arc::new(TestConnector { addr: admin.addr }))
                .with_default_image("transport:test"),
        );
        let h = Harness { client, ns, writes, admin, ctx };
        assert_eq!(h.writes.since(mark), Vec::<String>::new());
        h
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A Node of this test (Nodes are cluster-wide: the name carries the namespace's).
    pub fn node_name(&self, short: &str) -> String {
        format!("{}-{short}", self.ns)
    }

    /// A service of `servers` servers (and the TransportConfig `default`), reconciled until
    /// every server is Ready and Started.
    pub async fn running(&self, name: &str, servers: u32) {
        self.create_config("default").await;
        self.create_service(service(name, servers)).await;
        self.reconcile(name).await;
        self.kubelet().await;
        self.reconcile(name).await;
        let status = self.service(name).await.status.expect("status");
        assert_eq!(condition(&status.conditions, "Ready").status, "True", "{:?}", status.conditions);
    }

    pub async fn create_config(&self, name: &str) -> TransportConfig {
        let tc = TransportConfig::new(name, TransportConfigSpec { settings: org() });
        self.api::<TransportConfig>().create(&PostParams::default(), &tc).await.expect("create TransportConfig")
    }

    pub async fn create_service(&self, ts: TransportService) -> TransportService {
        self.api::<TransportService>().create(&PostParams::default(), &ts).await.expect("create TransportService")
    }

    pub async fn service(&self, name: &str) -> TransportService {
        self.api::<TransportService>().get(name).await.expect("get TransportService")
    }

    /// Changes the spec the way `kubectl apply` would (a new generation).
    pub async fn edit_spec(&self, name: &str, f: impl FnOnce(&mut TransportService)) {
        let mut ts = self.service(name).await;
        f(&mut ts);
        self.api::<TransportService>().replace(name, &PostParams::default(), &ts).await.expect("replace spec");
    }

    /// Reconciles the TransportService as it is now in the API server.
    pub async fn reconcile(&self, name: &str) -> kube::runtime::controller::Action {
        let ts = self.service(name).await;
        tokio::time::timeout(TIMEOUT, operator::reconcile_transport_service(Arc::new(ts), self.ctx.clone()))
            .await
            .expect("reconcile within the time limit")
            .expect("reconcile")
    }

    /// Reconciles every TransportConfig, TransportService and ServerComponentState of the
    /// test's namespace once, in that order; how many.
    pub async fn reconcile_all(&self) -> usize {
        let mut n = 0;
        for tc in self.api::<TransportConfig>().list(&ListParams::default()).await.unwrap().items {
            self.reconcile_config(&tc.name_any()).await;
            n += 1;
        }
        for ts in self.api::<TransportService>().list(&ListParams::default()).await.unwrap().items {
            self.reconcile(&ts.name_any()).await;
            n += 1;
        }
        for scs in self.api::<ServerComponentState>().list(&ListParams::default()).await.unwrap().items {
            self.reconcile_scs(&scs.name_any()).await;
            n += 1;
        }
        n
    }

    /// Waits until the object is gone from the API server (finalizers done).
    pub async fn wait_gone<K>(&self, name: &str)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while let Some(obj) = self.api::<K>().get_opt(name).await.unwrap() {
            assert!(obj.meta().deletion_timestamp.is_some(), "{name} was not deleted");
            assert!(std::time::Instant::now() < deadline, "{name} still there after {TIMEOUT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Server → uid of its queue volume's claim.
    pub async fn volume_uids(&self) -> BTreeMap<String, String> {
        let claims = self.api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>();
        let list = claims.list(&ListParams::default()).await.unwrap().items;
        list.into_iter()
            .filter(|c| c.metadata.deletion_timestamp.is_none())
            .filter_map(|c| Some((c.name_any().strip_suffix("-queue")?.to_string(), c.uid()?)))
            .collect()
    }

    /// Reconcile and kubelet in turn (the controller-manager doing its part meanwhile) until
    /// `done` holds for the pods; panics after [`TIMEOUT`].
    pub async fn settle_until(&self, service: &str, what: &str, done: impl Fn(&[Pod]) -> bool) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            self.reconcile(service).await;
            self.kubelet().await;
            if done(&self.pods().await) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "not settled within {TIMEOUT:?}: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// [`Harness::settle_until`] the service is Ready.
    pub async fn settle(&self, service: &str) {
        let deadline = std::time::Instant::now() + TIMEOUT;
        loop {
            self.reconcile(service).await;
            self.kubelet().await;
            self.reconcile(service).await;
            let status = self.service(service).await.status.unwrap_or_default();
            if status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{service} not Ready within {TIMEOUT:?}: {:?}",
                status.conditions
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// As if 10 s had passed since every status write: queue counters may be written again.
    pub fn counters_due(&self) {
        self.ctx.status_writes.lock().unwrap().clear();
    }

    /// Reconciles the ServerComponentState as it is now in the API server.
    pub async fn reconcile_scs(&self, name: &str) -> kube::runtime::controller::Action {
        let scs = self.scs(name).await.unwrap_or_else(|| panic!("no ServerComponentState {name}"));
        tokio::time::timeout(TIMEOUT, operator::reconcile_server_component_state(Arc::new(scs), self.ctx.clone()))
            .await
            .expect("reconcile within the time limit")
            .expect("reconcile")
    }

    pub async fn scs(&self, name: &str) -> Option<ServerComponentState> {
        self.api::<ServerComponentState>().get_opt(name).await.expect("get ServerComponentState")
    }

    pub async fn create_scs(&self, scs: ServerComponentState) {
        self.api::<ServerComponentState>()
            .create(&PostParams::default(), &scs)
            .await
            .expect("create ServerComponentState");
    }

    /// `kubectl delete servercomponentstate NAME` (returns at once, finalizers or not).
    pub async fn delete_scs(&self, name: &str) {
        self.api::<ServerComponentState>()
            .delete(name, &Default::default())
            .await
            .expect("delete ServerComponentState");
    }

    /// The scheduler's part: binds the pod to the test's node `node`.
    pub async fn schedule(&self, pod: &str, node: &str) {
        let binding = Binding {
            metadata: kube::api::ObjectMeta { name: Some(pod.to_string()), ..Default::default() },
            target: ObjectReference {
                kind: Some("Node".into()),
                name: Some(self.node_name(node)),
                ..Default::default()
            },
        };
        self.api::<Pod>()
            .create_subresource::<Binding, Value>("binding", pod, &PostParams::default(), &binding)
            .await
            .expect("bind pod");
    }

    pub async fn reconcile_config(&self, name: &str) {
        let tc = self.api::<TransportConfig>().get(name).await.expect("get TransportConfig");
        tokio::time::timeout(TIMEOUT, operator::reconcile_transport_config(Arc::new(tc), self.ctx.clone()))
            .await
            .expect("reconcile within the time limit")
            .expect("reconcile");
    }

    pub async fn pods(&self) -> Vec<Pod> {
        let mut pods = self.api::<Pod>().list(&ListParams::default()).await.unwrap().items;
        pods.sort_by_key(|p| p.name_any());
        pods
    }

    pub async fn pod_names(&self) -> Vec<String> {
        self.pods().await.iter().map(|p| p.name_any()).collect()
    }

    pub async fn config_map(&self, service: &str) -> ConfigMap {
        self.api::<ConfigMap>().get(&format!("{service}-config")).await.expect("ConfigMap")
    }

    /// Reasons of the Events published so far.
    pub async fn event_reasons(&self) -> Vec<String> {
        let events: Api<Event> = self.api();
        let mut list = events.list(&ListParams::default()).await.unwrap().items;
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter().filter_map(|e| e.reason).collect()
    }

    pub async fn event_notes(&self, reason: &str) -> Vec<String> {
        let events: Api<Event> = self.api();
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some(reason))
            .filter_map(|e| e.note)
            .collect()
    }

    /// What a kubelet and the transport processes would do: every pod runs a server that
    /// has loaded its file from the ConfigMap (a new pod is a new process, keeping only its
    /// queue), has the IP 127.0.0.1 and is Ready while it takes mail.
    pub async fn kubelet(&self) {
        let pods: Api<Pod> = self.api();
        let cms: Api<ConfigMap> = self.api();
        let claims: Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> = self.api();
        let mut seen = Vec::new();
        for pod in pods.list(&ListParams::default()).await.unwrap().items {
            let name = pod.name_any();
            if pod.metadata.deletion_timestamp.is_some() {
                // The process stops; the pod object goes once it has (the final delete).
                let params = kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
                let _ = pods.delete(&name, &params).await;
                continue;
            }
            // What the process finds on its queue volume depends on which volume it is.
            let volume =
                claims.get_opt(&format!("{name}-queue")).await.unwrap().and_then(|c| c.uid()).unwrap_or_default();
            let instance = pod.labels().get("app.kubernetes.io/instance").cloned().unwrap_or_default();
            let revision = cms
                .get_opt(&format!("{instance}-config"))
                .await
                .unwrap()
                .and_then(|cm| cm.metadata.annotations)
                .and_then(|a| a.get(&format!("config.kubetransport.io/{name}")).cloned())
                .unwrap_or_default();
            let file: Option<TransportFile> = cms
                .get_opt(&format!("{instance}-config"))
                .await
                .unwrap()
                .and_then(|cm| cm.data)
                .and_then(|d| d.get(&format!("{name}.yaml")).cloned())
                .and_then(|text| serde_yaml::from_str(&text).ok());
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let ready = {
                let mut all = self.admin.servers.lock().unwrap();
                let fresh = all.get(&name).is_none_or(|s| s.pod_uid != uid);
                if fresh {
                    // A new process: its queue and its wishes (components.json) are on the
                    // volume, if it is the same volume.
                    let old = all
                        .get(&name)
                        .filter(|s| s.volume_uid == volume)
                        .map(|s| (s.info.totals, s.info.components.clone()));
                    let mut info = new_info(&name, "", old.as_ref().map(|o| o.0).unwrap_or_default());
                    if let Some((_, components)) = old {
                        info.components = components;
                    }
                    all.insert(
                        name.clone(),
                        FakeServer {
                            info,
                            pod_uid: uid,
                            volume_uid: volume,
                            redirects: Vec::new(),
                            tokens: Vec::new(),
                            component_calls: Vec::new(),
                            shadow_copies: BTreeMap::new(),
                        },
                    );
                }
                let s = all.get_mut(&name).unwrap();
                if s.info.config_revision != revision {
                    // A (re)loaded file: its component entries win for the requesters they name.
                    for (component, requesters) in file.map(|f| f.components).unwrap_or_default() {
                        for (requester, state) in requesters {
                            set_wish(&mut s.info, component, requester, state);
                        }
                    }
                }
                s.info.config_revision = revision;
                refresh_accepting(&mut s.info);
                s.info.accepting_mail
            };
            let status = json!({"status": {
                "phase": "Running",
                "podIP": "127.0.0.1",
                "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            }});
            pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
            seen.push(name);
        }
        self.admin.servers.lock().unwrap().retain(|name, _| seen.contains(name));
    }
}

pub fn org() -> OrgSettings {
    OrgSettings {
        accepted_domains: vec![AcceptedDomain {
            domain: "example.com".into(),
            domain_type: AcceptedDomainType::Authoritative,
        }],
        postmaster: Some("postmaster@example.com".into()),
        ..Default::default()
    }
}

/// A TransportService `name` with one receive connector (Default, 2525) and a smart host.
pub fn service(name: &str, servers: u32) -> TransportService {
    let spec = serde_json::from_value(json!({
        "servers": servers,
        "receiveConnectors": [{"name": "Default", "port": 2525, "remoteIPRanges": ["10.0.0.0/8"]}],
        "sendConnectors": [{"name": "Outbound", "addressSpaces": [{"domain": "*"}], "smartHosts": ["relay.example.net:25"]}],
    }))
    .expect("spec");
    TransportService::new(name, spec)
}

pub fn started() -> ServerStateInfo {
    ServerStateName::Started.into()
}

pub fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition in {conditions:?}"))
}

/// One requester's wish for one component of `server` (`*`: every server of `service`).
pub fn scs(
    name: &str,
    service: &str,
    server: &str,
    component: Component,
    requester: Requester,
    state: ComponentState,
) -> ServerComponentState {
    ServerComponentState::new(
        name,
        ServerComponentStateSpec {
            server: server.into(),
            transport_service_ref: TransportServiceRef { name: service.into() },
            component,
            requester,
            state,
            redirect_to: None,
        },
    )
}
