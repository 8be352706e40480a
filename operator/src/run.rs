//! Running the reconcilers: kube-runtime Controllers, each triggered by what changes the
//! work (see [`run_controllers`]).
use crate::context::Context;
use crate::crd::{ServerComponentState, TransportConfig, TransportService};
use crate::names;
use crate::reconcile::{reconcile_server_component_state, reconcile_transport_config, reconcile_transport_service};
use crate::{Error, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// Next try after a failed reconcile.
const ERROR_REQUEUE: Duration = Duration::from_secs(30);

fn api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    }
}

fn error_policy<K: ResourceExt>(obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(name = %obj.name_any(), namespace = ?obj.namespace(), %error, "reconcile failed; retrying");
    Action::requeue(ERROR_REQUEUE)
}

/// Runs the TransportService, TransportConfig and ServerComponentState controllers until
/// SIGTERM or Ctrl-C (each finishes the reconciles under way); `on_synced` runs once the
/// three resources have been listed (what the operator's `/readyz` waits for).
///
/// What triggers a reconcile is chosen per source ([`Trigger`]): a change of a resource's
/// spec (its generation), deletion or finalizers, never a status write, so a status the
/// operator writes does not come back as work for the three controllers. A change of a
/// TransportConfig's spec requeues every TransportService that references it, of a
/// ServerComponentState the service it names, a Node cordoned, uncordoned or (un)tainted
/// every TransportService (its servers may have to be drained before their eviction), and a
/// change of what a server reports (its ServerState, readiness) the TransportConfig whose
/// status lists it. Pods trigger on every change (their readiness is what the reconciler
/// waits for); the PodDisruptionBudget's status, rewritten by the disruption controller on
/// each pod change, does not.
pub async fn run_controllers(ctx: Arc<Context>, on_synced: impl FnOnce() + Send + 'static) {
    let all = watcher::Config::default();
    // Only the operator's own children are watched.
    let children = watcher::Config::default().labels(&format!("{}={}", names::LABEL_NAME, names::APP_NAME));

    let (ts_store, ts_writer) = reflector::store::<TransportService>();
    let ts_stream = Trigger::spec()
        .filter(watcher(api::<TransportService>(&ctx), all.clone()).default_backoff().reflect(ts_writer));
    let by_config = ts_store.clone();
    let by_node = ts_store.clone();
    // Nodes change their status all the time; only a change of what announces a drain
    // (spec.unschedulable, taints) requeues the services.
    let seen_nodes: std::sync::Mutex<std::collections::HashMap<String, u64>> = Default::default();
    let services = Controller::for_stream(ts_stream, ts_store.clone())
        .owns(api::<Pod>(&ctx), children.clone())
        .owns(api::<PersistentVolumeClaim>(&ctx), children.clone())
        .owns(api::<ConfigMap>(&ctx), children.clone())
        .owns(api::<Service>(&ctx), children.clone())
        .owns_stream(Trigger::spec().filter(watcher(api::<PodDisruptionBudget>(&ctx), children).default_backoff()))
        .watches_stream(
            Trigger::spec().filter(watcher(api::<TransportConfig>(&ctx), all.clone()).default_backoff()),
            move |tc| {
                let (name, ns) = (tc.name_any(), tc.namespace());
                by_config
                    .state()
                    .into_iter()
                    .filter(|ts| ts.namespace() == ns && ts.spec.transport_config_name() == name)
                    .map(|ts| ObjectRef::from_obj(ts.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .watches_stream(
            Trigger::spec().filter(watcher(api::<ServerComponentState>(&ctx), all.clone()).default_backoff()),
            |scs| {
                let ns = scs.namespace().unwrap_or_default();
                Some(ObjectRef::new(&scs.spec.transport_service_ref.name).within(&ns))
            },
        )
        .watches(Api::<Node>::all(ctx.client.clone()), all.clone(), move |node| {
            let hash = node_drain_hash(&node);
            let changed =
                seen_nodes.lock().unwrap_or_else(|e| e.into_inner()).insert(node.name_any(), hash) != Some(hash);
            let services = if changed { by_node.state() } else { Vec::new() };
            services.into_iter().map(|ts| ObjectRef::from_obj(ts.as_ref())).collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile_transport_service, error_policy, ctx.clone())
        .for_each(|result| async move { log_result("TransportService", result) });

    let (scs_store, scs_writer) = reflector::store::<ServerComponentState>();
    let scs_stream = Trigger::spec()
        .filter(watcher(api::<ServerComponentState>(&ctx), all.clone()).default_backoff().reflect(scs_writer));
    let by_service = scs_store.clone();
    let component_states = Controller::for_stream(scs_stream, scs_store.clone())
        .watches_stream(
            Trigger::spec().filter(watcher(api::<TransportService>(&ctx), all.clone()).default_backoff()),
            move |ts| {
                let (name, ns) = (ts.name_any(), ts.namespace());
                by_service
                    .state()
                    .into_iter()
                    .filter(|o| o.namespace() == ns && o.spec.transport_service_ref.name == name)
                    .map(|o| ObjectRef::from_obj(o.as_ref()))
                    .collect::<Vec<_>>()
            },
        )
        .shutdown_on_signal()
        .run(reconcile_server_component_state, error_policy, ctx.clone())
        .for_each(|result| async move { log_result("ServerComponentState", result) });

    let (tc_store, tc_writer) = reflector::store::<TransportConfig>();
    let tc_stream =
        Trigger::spec().filter(watcher(api::<TransportConfig>(&ctx), all.clone()).default_backoff().reflect(tc_writer));
    let configs = Controller::for_stream(tc_stream, tc_store.clone())
        .watches_stream(
            Trigger::new(servers_reported).filter(watcher(api::<TransportService>(&ctx), all).default_backoff()),
            |ts| {
                let ns = ts.namespace().unwrap_or_default();
                Some(ObjectRef::new(ts.spec.transport_config_name()).within(&ns))
            },
        )
        .shutdown_on_signal()
        .run(reconcile_transport_config, error_policy, ctx.clone())
        .for_each(|result| async move { log_result("TransportConfig", result) });

    let synced = async move {
        let (a, b, c) =
            futures::join!(ts_store.wait_until_ready(), scs_store.wait_until_ready(), tc_store.wait_until_ready());
        if a.is_ok() && b.is_ok() && c.is_ok() {
            tracing::info!("watches synced");
            on_synced();
        }
    };
    futures::join!(services, configs, component_states, synced);
}

/// Which watch events of a resource are worth a reconcile: deletions always, other events
/// when `key` of the object differs from the last one seen for it.
pub struct Trigger<K> {
    key: fn(&K) -> u64,
}

impl<K: Resource + Clone + Send + 'static> Trigger<K> {
    pub fn new(key: fn(&K) -> u64) -> Self {
        Trigger { key }
    }

    /// Spec (generation), deletion and finalizers: not status.
    pub fn spec() -> Self {
        Trigger { key: spec_key::<K> }
    }

    /// The objects of `events` worth a reconcile.
    pub fn filter<S>(self, events: S) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        let mut seen: std::collections::HashMap<String, u64> = Default::default();
        events.flat_map(move |event| {
            let out: Vec<Result<K, watcher::Error>> = match event {
                Ok(watcher::Event::Apply(obj)) | Ok(watcher::Event::InitApply(obj)) => {
                    let id = object_id(&obj);
                    let key = (self.key)(&obj);
                    if seen.insert(id, key) == Some(key) {
                        vec![]
                    } else {
                        vec![Ok(obj)]
                    }
                }
                Ok(watcher::Event::Delete(obj)) => {
                    seen.remove(&object_id(&obj));
                    vec![Ok(obj)]
                }
                Ok(watcher::Event::Init) | Ok(watcher::Event::InitDone) => vec![],
                Err(e) => vec![Err(e)],
            };
            futures::stream::iter(out)
        })
    }
}

fn object_id<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    meta.uid.clone().unwrap_or_else(|| format!("{:?}/{:?}", meta.namespace, meta.name))
}

fn hash_of(value: impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// Generation, deletion and finalizers of any object.
fn spec_key<K: Resource>(obj: &K) -> u64 {
    let meta = obj.meta();
    hash_of((meta.generation, meta.deletion_timestamp.is_some(), &meta.finalizers))
}

/// What a TransportConfig's status shows of a TransportService: its spec and, per server,
/// its ServerState and readiness.
fn servers_reported(ts: &TransportService) -> u64 {
    let servers: Vec<(String, Option<u8>, bool)> = ts
        .status
        .iter()
        .flat_map(|s| s.servers.iter())
        .map(|s| (s.name.clone(), s.server_state.map(|x| x.code), s.ready))
        .collect();
    hash_of((spec_key(ts), servers, ts.status.as_ref().and_then(|s| s.servers_ready.clone())))
}

/// What of a Node announces a drain.
fn node_drain_hash(node: &Node) -> u64 {
    let spec = node.spec.as_ref();
    let taints: Vec<(&String, &String, &Option<String>)> =
        spec.and_then(|s| s.taints.as_ref()).into_iter().flatten().map(|t| (&t.key, &t.effect, &t.value)).collect();
    hash_of((spec.and_then(|s| s.unschedulable), taints))
}

fn log_result<K: Resource, E: std::fmt::Display>(kind: &str, result: std::result::Result<(ObjectRef<K>, Action), E>) {
    match result {
        Ok((obj, _)) => tracing::debug!(kind, object = %obj.name, "reconciled"),
        Err(e) => tracing::warn!(kind, error = %e, "controller"),
    }
}
