//! Running the reconcilers: kube-runtime Controllers (production), or a polling driver
//! that lists every object and reconciles it (API servers without watch, such as
//! kube-fake-client in the cluster-free local e2e).
use crate::context::Context;
use crate::crd::{ServerComponentState, TransportConfig, TransportService};
use crate::names;
use crate::reconcile::{reconcile_server_component_state, reconcile_transport_config, reconcile_transport_service};
use crate::{Error, Result};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
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
/// SIGTERM or Ctrl-C (each finishes the reconciles under way). A change of a TransportConfig
/// requeues every TransportService that references it, a ServerComponentState the service
/// it names, and a Node cordoned, uncordoned or (un)tainted every TransportService (its
/// servers may have to be drained before their eviction).
pub async fn run_controllers(ctx: Arc<Context>) {
    let all = watcher::Config::default();
    // Only the operator's own children are watched.
    let children = watcher::Config::default().labels(&format!("{}={}", names::LABEL_NAME, names::APP_NAME));

    let services = Controller::new(api::<TransportService>(&ctx), all.clone());
    let store = services.store();
    let by_config = store.clone();
    let by_node = store.clone();
    // Nodes change their status all the time; only a change of what announces a drain
    // (spec.unschedulable, taints) requeues the services (the stream filter that would do
    // this is behind an unstable kube-runtime feature, so the mapper remembers each node's).
    let seen_nodes: std::sync::Mutex<std::collections::HashMap<String, u64>> = Default::default();
    let services = services
        .owns(api::<Pod>(&ctx), children.clone())
        .owns(api::<PersistentVolumeClaim>(&ctx), children.clone())
        .owns(api::<ConfigMap>(&ctx), children.clone())
        .owns(api::<Secret>(&ctx), children.clone())
        .owns(api::<Service>(&ctx), children.clone())
        .owns(api::<PodDisruptionBudget>(&ctx), children)
        .watches(api::<TransportConfig>(&ctx), all.clone(), move |tc| {
            let (name, ns) = (tc.name_any(), tc.namespace());
            by_config
                .state()
                .into_iter()
                .filter(|ts| ts.namespace() == ns && ts.spec.transport_config_name() == name)
                .map(|ts| ObjectRef::from_obj(ts.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(api::<ServerComponentState>(&ctx), all.clone(), |scs| {
            let ns = scs.namespace().unwrap_or_default();
            Some(ObjectRef::new(&scs.spec.transport_service_ref.name).within(&ns))
        })
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

    let component_states = Controller::new(api::<ServerComponentState>(&ctx), all.clone());
    let by_service = component_states.store();
    let component_states = component_states
        .watches(api::<TransportService>(&ctx), all.clone(), move |ts| {
            let (name, ns) = (ts.name_any(), ts.namespace());
            by_service
                .state()
                .into_iter()
                .filter(|o| o.namespace() == ns && o.spec.transport_service_ref.name == name)
                .map(|o| ObjectRef::from_obj(o.as_ref()))
                .collect::<Vec<_>>()
        })
        .shutdown_on_signal()
        .run(reconcile_server_component_state, error_policy, ctx.clone())
        .for_each(|result| async move { log_result("ServerComponentState", result) });

    let configs = Controller::new(api::<TransportConfig>(&ctx), all.clone())
        .watches(api::<TransportService>(&ctx), all, |ts| {
            let ns = ts.namespace().unwrap_or_default();
            Some(ObjectRef::new(ts.spec.transport_config_name()).within(&ns))
        })
        .shutdown_on_signal()
        .run(reconcile_transport_config, error_policy, ctx.clone())
        .for_each(|result| async move { log_result("TransportConfig", result) });

    futures::join!(services, configs, component_states);
}

/// What of a Node announces a drain.
fn node_drain_hash(node: &Node) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let spec = node.spec.as_ref();
    spec.and_then(|s| s.unschedulable).hash(&mut hasher);
    for t in spec.and_then(|s| s.taints.as_ref()).into_iter().flatten() {
        (&t.key, &t.effect, &t.value).hash(&mut hasher);
    }
    hasher.finish()
}

fn log_result<K: Resource, E: std::fmt::Display>(kind: &str, result: std::result::Result<(ObjectRef<K>, Action), E>) {
    match result {
        Ok((obj, _)) => tracing::debug!(kind, object = %obj.name, "reconciled"),
        Err(e) => tracing::warn!(kind, error = %e, "controller"),
    }
}

/// What one polling pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub reconciled: usize,
    /// `kind namespace/name: error` of each failed reconcile.
    pub errors: Vec<String>,
}

/// Lists every TransportConfig, then every TransportService, then every
/// ServerComponentState, and reconciles each once (the services first, so that a wish is in
/// the servers' files before it is confirmed).
pub async fn poll_once(ctx: &Arc<Context>) -> Result<PollReport> {
    let mut report = PollReport::default();
    for tc in api::<TransportConfig>(ctx).list(&ListParams::default()).await?.items {
        let id = format!("TransportConfig {}/{}", tc.namespace().unwrap_or_default(), tc.name_any());
        match reconcile_transport_config(Arc::new(tc), ctx.clone()).await {
            Ok(_) => report.reconciled += 1,
            Err(e) => report.errors.push(format!("{id}: {e}")),
        }
    }
    for ts in api::<TransportService>(ctx).list(&ListParams::default()).await?.items {
        let id = format!("TransportService {}/{}", ts.namespace().unwrap_or_default(), ts.name_any());
        match reconcile_transport_service(Arc::new(ts), ctx.clone()).await {
            Ok(_) => report.reconciled += 1,
            Err(e) => report.errors.push(format!("{id}: {e}")),
        }
    }
    for scs in api::<ServerComponentState>(ctx).list(&ListParams::default()).await?.items {
        let id = format!("ServerComponentState {}/{}", scs.namespace().unwrap_or_default(), scs.name_any());
        match reconcile_server_component_state(Arc::new(scs), ctx.clone()).await {
            Ok(_) => report.reconciled += 1,
            Err(e) => report.errors.push(format!("{id}: {e}")),
        }
    }
    Ok(report)
}

/// Reconciles everything every `interval`, forever (drop the future to stop it).
pub async fn run_polling(ctx: Arc<Context>, interval: Duration) {
    loop {
        match poll_once(&ctx).await {
            Ok(report) => {
                for e in &report.errors {
                    tracing::warn!(error = %e, "reconcile failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list the custom resources"),
        }
        tokio::time::sleep(interval).await;
    }
}
