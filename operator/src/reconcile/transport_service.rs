//! Reconciles a TransportService into running servers.
//!
//! Each reconcile: read the TransportConfig and ServerComponentStates, render and check
//! every server's configuration (an invalid spec is reported and nothing is applied), apply
//! the token Secret, the ConfigMap, the Services and the PodDisruptionBudget, create missing
//! queue volumes and pods, look at the pods' nodes, read every server's admin API, push the
//! wanted ServerState, then take one step of any node drain (drain the servers of a cordoned
//! or drain-tainted node, redirect their queues to a sibling elsewhere, and let the eviction
//! through once they are empty), of any scale-down (drain, redirect, remove when empty) and
//! of any rolling restart (one server at a time: drain, empty or redirect, delete, wait for
//! the new pod to be Ready), and write status. A reconcile never waits: a step under way is
//! picked up by the next one.
use super::servers::Server;
use super::service_status::{service_status, without_counters, UnderWay};
use super::{announce_transition, set_all};
use crate::apply::{self, Outcome};
use crate::build;
use crate::conditions::{self, Wanted};
use crate::context::{pod_ref, Context};
use crate::crd::{ServerComponentState, TransportConfig, TransportService, TransportServiceStatus};
use crate::names;
use crate::status_write::{sooner, Decision};
use crate::validation;
use crate::{Error, Result};
use futures::future::join_all;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use transport::client::ClientError;
use transport::config::{ComponentState, ServerStateSetting};

const KIND: &str = "TransportService";
/// Next look when the TransportConfig is missing.
const MISSING_REFERENCE_REQUEUE: Duration = Duration::from_secs(30);

/// Reconciles one TransportService (see the module documentation).
pub async fn reconcile_transport_service(ts: Arc<TransportService>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let span = tracing::info_span!("reconcile", kind = KIND, namespace = ts.namespace().unwrap_or_default(), name = %ts.name_any());
    let result = reconcile(&ts, &ctx).instrument(span).await;
    if let Err(e) = &result {
        ctx.metrics.error(KIND, e);
    }
    result
}

/// One reconcile's view of the service.
struct Run<'a> {
    ts: &'a TransportService,
    ctx: &'a Context,
    ns: String,
    name: String,
    regarding: ObjectReference,
    pods: Api<Pod>,
    pvcs: Api<PersistentVolumeClaim>,
}

async fn reconcile(ts: &TransportService, ctx: &Context) -> Result<Action> {
    let name = ts.name_any();
    let ns = ts.namespace().ok_or_else(|| Error::NoNamespace { kind: KIND, name: name.clone() })?;
    if ts.metadata.deletion_timestamp.is_some() {
        // Children carry owner references: Kubernetes deletes them with the service.
        return Ok(Action::await_change());
    }
    let run = Run {
        ts,
        ctx,
        regarding: ts.object_ref(&()),
        pods: Api::namespaced(ctx.client.clone(), &ns),
        pvcs: Api::namespaced(ctx.client.clone(), &ns),
        ns,
        name,
    };
    run.reconcile().await
}

impl Run<'_> {
    async fn reconcile(&self) -> Result<Action> {
        let ts = self.ts;
        let client = self.ctx.client.clone();
        let old = ts.status.clone().unwrap_or_default();

        let tc_name = ts.spec.transport_config_name().to_string();
        let Some(tc) = Api::<TransportConfig>::namespaced(client.clone(), &self.ns).get_opt(&tc_name).await? else {
            let message = format!(
                "TransportConfig {tc_name} does not exist in namespace {}: create it, or set spec.transportConfigRef to one that does; the servers keep their last configuration",
                self.ns
            );
            self.write_status(&old, self.blocked(&old, "TransportConfigNotFound", message)).await?;
            return Ok(Action::requeue(MISSING_REFERENCE_REQUEUE));
        };
        let component_objects =
            Api::<ServerComponentState>::namespaced(client.clone(), &self.ns).list(&ListParams::default()).await?.items;

        let mut servers = self.observe().await?;
        // Before a new volume replaces a lost one.
        let lost = lost_queues(&servers);
        let indices: Vec<u32> = servers.values().filter(|s| keeps_config(s)).map(|s| s.index).collect();
        let rendered = match validation::render_service(ts, &tc.spec.settings, &tc_name, &component_objects, &indices) {
            Ok(r) => r,
            Err(errors) => {
                let message = format!(
                    "invalid spec, nothing was applied (the servers keep their last good configuration): {}",
                    validation::describe(&errors)
                );
                self.write_status(&old, self.blocked(&old, "InvalidSpec", message)).await?;
                return Ok(Action::await_change());
            }
        };

        let token = self.admin_token(false).await?;
        self.ensure_config_map(&rendered).await?;
        self.ensure_services().await?;
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), &self.ns);
        apply::ensure(&pdbs, &build::disruption_budget(ts), &self.ctx.field_manager).await?;

        let image = ts.spec.image.clone().unwrap_or_else(|| self.ctx.default_image.clone());
        for r in rendered {
            if let Some(s) = servers.get_mut(&r.index) {
                s.desired_pod = Some(build::server_pod(ts, &image, &r));
                s.rendered = Some(r);
            }
        }
        self.ensure_volumes_and_pods(&mut servers).await?;
        self.observe_nodes(&mut servers).await;

        let connector = self.ctx.admin.clone();
        join_all(servers.values_mut().map(|s| {
            let endpoint = s.endpoint(&self.ns, &self.name, &token);
            let connector = connector.clone();
            async move { s.poll(connector.as_ref(), endpoint).await }
        }))
        .await;

        self.take_over_lost_queues(&mut servers, &lost).await;
        self.push_server_states(&mut servers).await;
        self.withdraw_stale_drains(&mut servers).await;
        let node_drains = self.step_node_drains(&mut servers, &token).await?;
        let removing = self.step_scale_down(&mut servers, &token).await?;
        let rolling = self.step_roll(&mut servers, &token).await?;

        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
        let under_way = UnderWay { removing, rolling, node_drains };
        let status = service_status(&old, ts.metadata.generation, ts.spec.servers(), &servers, under_way, &now);
        let busy = conditions::find(&status.conditions, conditions::PROGRESSING).is_some_and(|c| c.status == "True");
        let later = self.write_status(&old, status).await?;
        // Queued mail moves the counters a user reads: look again as often as they are
        // written, rather than at the idle pace.
        let queued = servers.values().any(|s| s.messages().unwrap_or_default() > 0);
        let next = if busy {
            self.ctx.requeue_busy
        } else if queued {
            crate::status_write::COUNTER_INTERVAL
        } else {
            self.ctx.requeue_idle
        };
        Ok(Action::requeue(sooner(next, later)))
    }

    /// The servers: those wanted, and those that still have a pod or a volume.
    async fn observe(&self) -> Result<BTreeMap<u32, Server>> {
        let wanted = self.ts.spec.servers();
        let selector = ListParams::default().labels(&names::pod_selector_string(&self.name));
        let mut servers: BTreeMap<u32, Server> = (0..wanted).map(|i| (i, Server::new(&self.name, i, true))).collect();
        for pod in self.pods.list(&selector).await?.items {
            if let Some(i) = names::server_index(&self.name, &pod.name_any()) {
                servers.entry(i).or_insert_with(|| Server::new(&self.name, i, false)).pod = Some(pod);
            }
        }
        for pvc in self.pvcs.list(&selector).await?.items {
            let index = pvc.name_any().strip_suffix("-queue").and_then(|s| names::server_index(&self.name, s));
            if let Some(i) = index {
                servers.entry(i).or_insert_with(|| Server::new(&self.name, i, false)).pvc = Some(pvc);
            }
        }
        Ok(servers)
    }

    /// Status when nothing could be applied: the servers are left as they are.
    fn blocked(&self, old: &TransportServiceStatus, reason: &str, message: String) -> TransportServiceStatus {
        let mut status = old.clone();
        status.observed_generation = self.ts.metadata.generation;
        set_all(
            &mut status.conditions,
            [
                Wanted::new(conditions::READY, false, reason, message.clone()),
                Wanted::new(conditions::PROGRESSING, false, reason, "waiting for the spec to be corrected"),
                Wanted::new(conditions::DEGRADED, true, reason, message),
            ],
            self.ts.metadata.generation,
        );
        status
    }

    /// Writes the status unless only queue counters changed within the last 10 s; then
    /// returns when to come back for them.
    async fn write_status(
        &self,
        old: &TransportServiceStatus,
        status: TransportServiceStatus,
    ) -> Result<Option<Duration>> {
        announce_transition(self.ctx, &self.regarding, &old.conditions, &status.conditions).await;
        let key = format!("{KIND}/{}/{}", self.ns, self.name);
        match self.ctx.status_decision(&key, self.ts.status.as_ref(), &status, without_counters) {
            Decision::Unchanged => return Ok(None),
            Decision::Later(after) => return Ok(Some(after)),
            Decision::Write => {}
        }
        let api: Api<TransportService> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let body = json!({
            "apiVersion": TransportService::api_version(&()),
            "kind": KIND,
            "status": status,
        });
        api.patch_status(&self.name, &PatchParams::apply(&self.ctx.field_manager).force(), &Patch::Apply(&body))
            .await?;
        self.ctx.status_written(&key, self.ts.status.as_ref(), &status);
        Ok(None)
    }

    /// The admin API token (derived from the operator's key, see [`crate::token`]). Its
    /// Secret is written (server-side apply, never read back) the first time this process
    /// sees the service, and again with `before_pod`: a pod about to be created mounts it.
    async fn admin_token(&self, before_pod: bool) -> Result<String> {
        let uid = self.ts.metadata.uid.clone().unwrap_or_default();
        let token = self.ctx.token_key.token(&self.ns, &self.name, &uid);
        let written = format!("{}/{} {token}", self.ns, self.name);
        let known = self.ctx.written_tokens.lock().unwrap_or_else(|e| e.into_inner()).contains(&written);
        if before_pod || !known {
            let api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &self.ns);
            // The peers' credential: derived like the admin token, for another purpose.
            let shadow_token = self.ctx.token_key.token(&self.ns, &self.name, &format!("{uid}/shadow"));
            let secret = build::admin_token_secret(self.ts, &token, &shadow_token);
            let params = PatchParams::apply(&self.ctx.field_manager).force();
            api.patch(&names::admin_secret_name(&self.name), &params, &Patch::Apply(&secret)).await?;
            self.ctx.written_tokens.lock().unwrap_or_else(|e| e.into_inner()).insert(written);
        }
        Ok(token)
    }

    async fn ensure_config_map(&self, rendered: &[build::RenderedServer]) -> Result<()> {
        let api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        let desired = build::config_map(self.ts, rendered);
        let existing = api.get_opt(&names::config_map_name(&self.name)).await?;
        let before = existing.as_ref().map(revisions).unwrap_or_default();
        let wanted = revisions(&desired);
        let outcome = if existing.as_ref().is_some_and(|e| !stale_keys(e, &desired).is_empty()) {
            // A server is gone: its key must go too, which `ensure` (a superset test) misses.
            // Server-side apply removes the keys this manager no longer applies.
            api.patch(
                &names::config_map_name(&self.name),
                &PatchParams::apply(&self.ctx.field_manager).force(),
                &Patch::Apply(&desired),
            )
            .await?;
            Outcome::Updated
        } else {
            apply::ensure(&api, &desired, &self.ctx.field_manager).await?.0
        };
        if outcome == Outcome::Updated {
            let changed: Vec<String> = wanted
                .iter()
                .filter(|(server, rev)| before.get(*server) != Some(rev))
                .map(|(server, rev)| format!("{server} (revision {rev})"))
                .collect();
            if !changed.is_empty() {
                self.ctx
                    .event(
                        &self.regarding,
                        None,
                        EventType::Normal,
                        "ConfigUpdated",
                        "UpdateConfigMap",
                        format!("new configuration for {}; the servers reload it", changed.join(", ")),
                    )
                    .await;
            }
        }
        Ok(())
    }

    async fn ensure_services(&self) -> Result<()> {
        let api: Api<Service> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        if let Some(smtp) = build::smtp_service(self.ts) {
            apply::ensure(&api, &smtp, &self.ctx.field_manager).await?;
        }
        apply::ensure(&api, &build::headless_service(self.ts), &self.ctx.field_manager).await?;
        Ok(())
    }

    /// Queue volumes and pods of the wanted servers, and the pod of a removed server whose
    /// queue was not drained yet (it must run to hand its mail over).
    async fn ensure_volumes_and_pods(&self, servers: &mut BTreeMap<u32, Server>) -> Result<()> {
        let fm = self.ctx.field_manager.clone();
        let mut token_written = false;
        for s in servers.values_mut() {
            if !keeps_config(s) {
                continue;
            }
            if s.desired && s.pvc.is_none() {
                let (_, pvc) = apply::create_if_missing(&self.pvcs, &build::queue_pvc(self.ts, &s.name), &fm).await?;
                s.pvc = Some(pvc);
            }
            if s.pod.is_none() && s.pvc.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_some()) {
                s.note = Some("waiting for its old queue volume (empty) to be deleted".into());
                continue;
            }
            if s.pod.is_none() && (s.desired || s.pvc.is_some()) {
                let Some(pod) = &s.desired_pod else { continue };
                if !token_written {
                    self.admin_token(true).await?;
                    token_written = true;
                }
                let (outcome, pod) = apply::create_if_missing(&self.pods, pod, &fm).await?;
                if outcome == Outcome::Created {
                    let why = if s.desired { "" } else { " to drain the queue it still holds" };
                    let revision = s.rendered.as_ref().map(|r| r.revision.clone()).unwrap_or_default();
                    self.server_event(
                        &s.name,
                        "ServerCreated",
                        "CreatePod",
                        format!("created pod {}{why} (configuration revision {revision})", s.name),
                    )
                    .await;
                }
                s.pod = Some(pod);
            }
        }
        Ok(())
    }

    /// Asks each server for the ServerState the spec wants, when it reports another one.
    async fn push_server_states(&self, servers: &mut BTreeMap<u32, Server>) {
        for s in servers.values_mut() {
            let (Some(info), Some(client)) = (&s.info, &s.admin) else { continue };
            let wanted = self.ts.spec.server_state_for(&s.name);
            if state_matches(wanted, info.server_state.name) {
                continue;
            }
            let from = info.server_state.name;
            match client.set_server_state(wanted).await {
                Ok(info) => {
                    s.info = Some(info);
                    self.server_event(
                        &s.name,
                        "ServerStateChanged",
                        "SetServerState",
                        format!("asked server {} to go from {} to {wanted:?}", s.name, from.as_str()),
                    )
                    .await;
                }
                Err(e) => s.note = Some(format!("cannot set ServerState {wanted:?}: {e}")),
            }
        }
    }

    /// A wanted server that is up to date but still drained by the operator (a scale-down
    /// undone, a restart that did not happen, a node drain cancelled, a pod that came back
    /// on another node) gets HubTransport back, and loses its `evictable` label. A
    /// ServerComponentState of requester Deployment owns that wish instead when one exists.
    async fn withdraw_stale_drains(&self, servers: &mut BTreeMap<u32, Server>) {
        for s in servers.values_mut() {
            if s.node_drain.is_some() {
                continue;
            }
            // Drained for an eviction that did not come, its (empty) volume already on its
            // way out: it must not take mail onto that volume again. It restarts (on a new
            // volume) instead of being undrained.
            if s.pvc.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_some())
                && s.pod.is_some()
                && !s.terminating()
            {
                match delete_ignoring_missing(&self.pods, &s.name).await {
                    Ok(()) => {
                        s.note =
                            Some("restarting on a new queue volume (its old one was released for a node drain)".into())
                    }
                    Err(e) => s.note = Some(format!("cannot restart it on a new queue volume: {e}")),
                }
                continue;
            }
            if s.evictable() && !s.terminating() {
                let patch = json!({"metadata": {"labels": {names::LABEL_EVICTABLE: null}}});
                match self.pods.patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(pod) => s.pod = Some(pod),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return tracing::warn!(error = %e, server = %s.name, "cannot remove the evictable label"),
                }
            }
            if !s.desired || s.needs_restart() || s.deployment_state() == ComponentState::Active {
                continue;
            }
            let wished = s.rendered.as_ref().is_some_and(|r| {
                r.file
                    .components
                    .get(&transport::config::Component::HubTransport)
                    .and_then(|m| m.get(&transport::config::Requester::Deployment))
                    .is_some_and(|state| *state > ComponentState::Active)
            });
            if wished {
                continue;
            }
            if let Err(e) = s.undrain().await {
                s.note = Some(format!("cannot end the operator's drain: {e}"));
            }
        }
    }

    /// Which pods sit on a node being drained: cordoned (`spec.unschedulable`) or carrying
    /// a drain taint. A node that cannot be read counts as not draining (and is logged).
    async fn observe_nodes(&self, servers: &mut BTreeMap<u32, Server>) {
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        let names: BTreeSet<String> = servers.values().filter_map(|s| s.node_name().map(str::to_string)).collect();
        let mut draining = BTreeMap::new();
        for name in names {
            match nodes.get_opt(&name).await {
                Ok(Some(node)) => {
                    if let Some(why) = node_drain_reason(&node) {
                        draining.insert(name, why);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(node = %name, error = %e, "cannot read the node of a server"),
            }
        }
        for s in servers.values_mut() {
            s.node_drain = s
                .node_name()
                .and_then(|n| draining.get(n))
                .map(|why| format!("node {} is {why}", s.node_name().unwrap_or_default()));
        }
    }

    /// One step for each server whose node is being drained: HubTransport Draining by
    /// Deployment, its queue redirected to a sibling on a node that is not draining, and once
    /// it holds no message, the `evictable` label that takes its pod out of the
    /// PodDisruptionBudget so the eviction goes ahead. Returns those servers.
    async fn step_node_drains(&self, servers: &mut BTreeMap<u32, Server>, token: &str) -> Result<Vec<String>> {
        let draining: Vec<u32> = servers
            .values()
            .filter(|s| s.pod.is_some() && !s.terminating() && s.node_drain.is_some())
            .map(|s| s.index)
            .collect();
        let mut names_left = Vec::new();
        for index in draining {
            let target = servers.get(&index).and_then(|s| self.redirect_target(servers, &s.name, token));
            let others = shadow_holders(servers, index);
            let Some(s) = servers.get_mut(&index) else { continue };
            let why = s.node_drain.clone().unwrap_or_default();
            names_left.push(s.name.clone());
            if s.info.is_none() {
                let detail = s.admin_error.clone().unwrap_or_else(|| "the pod is not running yet".into());
                s.note = Some(format!("{why}: waiting for its admin API to drain it ({detail})"));
                continue;
            }
            let note = format!(
                "{why}: draining server {} before its pod is evicted (HubTransport Draining by Deployment)",
                s.name
            );
            if let Err(e) = self.start_draining(s, "NodeDraining", "DrainServer", note).await {
                s.note = Some(format!("{why}: cannot drain the server: {e}"));
                continue;
            }
            if s.messages().unwrap_or_default() > 0 {
                s.note = Some(format!("{why}: {}", self.hand_over(s, target, "the drain of its node").await));
                continue;
            }
            if !s.evictable() {
                // It comes back with a new queue: its peers would take its copies over.
                if let Some(wait) = shadows_released(&others, &s.name).await {
                    s.note = Some(format!("{why}: drained; {wait}"));
                    continue;
                }
                // The empty queue's volume goes with the pod: a volume bound to the node
                // (local storage) would keep the new pod from starting anywhere else.
                // Marked drained even when someone deleted it already: its queue is empty,
                // so its peers must not take its old shadow copies over (see lost_queues).
                self.mark_drained(s).await?;
                if s.pvc.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_none()) {
                    self.delete_pvc(&s.name).await?;
                }
                let patch = json!({"metadata": {"labels": {names::LABEL_EVICTABLE: "true"}}});
                let pod = self.pods.patch(&s.name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                s.pod = Some(pod);
                let note = format!(
                    "{why}: server {} holds no mail any more; its pod may be evicted, and it starts again elsewhere with a new queue volume",
                    s.name
                );
                self.server_event(&s.name, "ServerEvictable", "DrainServer", note).await;
            }
            s.note = Some(format!("{why}: drained, its queue is empty; the pod may be evicted"));
        }
        Ok(names_left)
    }

    /// Where a drained server hands its queue: the Intra connector of the first wanted
    /// server that is ready, taking mail, and not `except` (one still to restart is fine:
    /// its queue outlives the restart on its volume).
    fn redirect_target(&self, servers: &BTreeMap<u32, Server>, except: &str, token: &str) -> Option<String> {
        servers
            .values()
            .filter(|s| s.desired && s.name != except && s.pod_ready() && s.node_drain.is_none())
            .filter(|s| s.info.is_some() && s.deployment_state() == ComponentState::Active)
            .find_map(|s| {
                // The port its running pod listens on (the spec may have moved it since).
                let port = s.running_intra_port().unwrap_or_else(|| self.ts.spec.intra_port());
                self.ctx.admin.smtp_address(&s.endpoint(&self.ns, &self.name, token), port)
            })
    }

    /// One step for each server beyond `spec.servers`: drain it, redirect its queue, and
    /// remove its pod and volume once the queue is empty. Returns the servers still going.
    async fn step_scale_down(&self, servers: &mut BTreeMap<u32, Server>, token: &str) -> Result<Vec<String>> {
        let removed: Vec<u32> = servers.values().filter(|s| !s.desired).map(|s| s.index).collect();
        let mut going = Vec::new();
        for index in removed {
            let target = servers.get(&index).and_then(|s| self.redirect_target(servers, &s.name, token));
            let others = shadow_holders(servers, index);
            let Some(s) = servers.get_mut(&index) else { continue };
            if self.step_removal(s, target, &others).await? {
                servers.remove(&index);
            } else {
                going.push(servers.get(&index).map(|s| s.name.clone()).unwrap_or_default());
            }
        }
        Ok(going)
    }

    /// Ok(true) once the server is gone.
    async fn step_removal(&self, s: &mut Server, target: Option<String>, others: &[ShadowHolder]) -> Result<bool> {
        if s.pod.is_none() {
            // No pod: a drained volume goes; an undrained one got its pod back above.
            if let Some(pvc) = &s.pvc {
                if drained(pvc) {
                    self.delete_pvc(&s.name).await?;
                    return Ok(true);
                }
                s.note = Some("starting the server again to drain the queue it still holds".into());
                return Ok(false);
            }
            return Ok(true);
        }
        if s.terminating() {
            s.note = Some("waiting for the pod to terminate".into());
            return Ok(false);
        }
        if s.info.is_none() {
            let why = s.admin_error.clone().unwrap_or_else(|| "the pod is not running yet".into());
            s.note = Some(format!("to be removed once drained; waiting for its admin API ({why})"));
            return Ok(false);
        }
        let note = format!(
            "draining server {} before removing it (spec.servers is {}): HubTransport Draining by Deployment",
            s.name,
            self.ts.spec.servers()
        );
        if let Err(e) = self.start_draining(s, "ServerDraining", "ScaleDown", note).await {
            s.note = Some(format!("cannot drain: {e}"));
            return Ok(false);
        }
        if s.messages().unwrap_or_default() == 0 {
            if let Some(wait) = shadows_released(others, &s.name).await {
                s.note = Some(format!("to be removed: drained; {wait}"));
                return Ok(false);
            }
            self.remove(s).await?;
            return Ok(true);
        }
        s.note = Some(self.hand_over(s, target, "removal").await);
        Ok(false)
    }

    /// Redirects the queue of a draining server; returns its status note.
    async fn hand_over(&self, s: &mut Server, target: Option<String>, purpose: &str) -> String {
        let totals = s.info.as_ref().map(|i| i.totals).unwrap_or_default();
        if totals.redirectable() == 0 {
            return format!(
                "draining for {purpose}: only {} poison and {} suspended message(s) left; resume, export or remove them \
                 (transportctl) to finish",
                totals.poison, totals.suspended
            );
        }
        let Some(target) = target else {
            return format!(
                "draining for {purpose}: {} message(s) left, delivered from here (no other ready server to redirect them to)",
                totals.messages
            );
        };
        match s.redirect(&target).await {
            Ok(true) => {
                let note = format!(
                    "handing {} queued message(s) of {} to {target} (Redirect-Message)",
                    totals.messages, s.name
                );
                self.server_event(&s.name, "RedirectingQueue", "RedirectMessage", note).await;
                format!("draining for {purpose}: {} message(s) left, redirected to {target}", totals.messages)
            }
            Ok(false) => {
                format!("draining for {purpose}: {} message(s) left, redirect to {target} under way", totals.messages)
            }
            Err(e) => format!(
                "draining for {purpose}: {} message(s) left; redirect to {target} refused: {e}",
                totals.messages
            ),
        }
    }

    /// Marks a drained server's volume so: its deletion is then not a lost queue (see
    /// [`lost_queues`]), and a server that must start again knows it holds nothing.
    async fn mark_drained(&self, s: &Server) -> Result<()> {
        if let Some(pvc) = &s.pvc {
            if !drained(pvc) {
                // A merge patch, not an apply: an apply of only this annotation would give up
                // the fields this manager applied when it created the claim.
                let patch = json!({"metadata": {"annotations": {names::ANNOTATION_DRAINED: "true"}}});
                self.pvcs.patch(&names::pvc_name(&s.name), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
        }
        Ok(())
    }

    /// Removes a drained server: marks its volume, deletes its pod, then its volume.
    async fn remove(&self, s: &mut Server) -> Result<()> {
        self.mark_drained(s).await?;
        delete_ignoring_missing(&self.pods, &s.name).await?;
        if s.pvc.is_some() {
            self.delete_pvc(&s.name).await?;
        }
        let note = format!("removed server {}: its queue was empty; pod and queue volume deleted", s.name);
        self.server_event(&s.name, "ServerRemoved", "ScaleDown", note).await;
        Ok(())
    }

    /// Asks every running server to deliver the shadow copies it holds for a server whose
    /// queue is lost (see [`lost_queues`]) now, instead of after shadowResubmitTimeSpan.
    async fn take_over_lost_queues(&self, servers: &mut BTreeMap<u32, Server>, lost: &[String]) {
        for primary in lost {
            for s in servers.values_mut().filter(|s| &s.name != primary && s.pod_ready()) {
                let Some(client) = s.admin.clone() else { continue };
                match client.take_over_shadows(primary).await {
                    Ok(t) if t.resubmitted > 0 => {
                        let note = format!(
                            "the queue of {primary} is lost (its pod and volume are gone): {} delivers the {} \
                             message(s) it held as shadow copies",
                            s.name, t.resubmitted
                        );
                        self.server_event(&s.name, "ShadowTakeover", "TakeOverShadows", note).await;
                    }
                    Ok(_) => {}
                    Err(e) => s.note = Some(format!("cannot take over the shadow copies of {primary}: {e}")),
                }
            }
        }
    }

    /// A Normal Event about one server, with its pod as the related object.
    async fn server_event(&self, server: &str, reason: &str, action: &str, note: String) {
        let related = Some(pod_ref(&self.ns, server));
        self.ctx.event(&self.regarding, related, EventType::Normal, reason, action, note).await;
    }

    /// Sets HubTransport Draining (requester Deployment) on `s`; the first time, an Event
    /// with `reason` and `note` says why.
    async fn start_draining(
        &self,
        s: &mut Server,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), ClientError> {
        if s.drain().await? {
            self.server_event(&s.name, reason, action, note).await;
        }
        Ok(())
    }

    async fn delete_pvc(&self, server: &str) -> Result<()> {
        delete_ignoring_missing(&self.pvcs, &names::pvc_name(server)).await
    }

    /// One step of a rolling restart: at most one server at a time is drained, emptied or
    /// redirected, and deleted; its new pod must be Ready before the next one starts.
    /// Returns the servers still to restart.
    async fn step_roll(&self, servers: &mut BTreeMap<u32, Server>, token: &str) -> Result<Vec<String>> {
        let outdated: Vec<u32> = servers.values().filter(|s| s.desired && s.needs_restart()).map(|s| s.index).collect();
        let names_left: Vec<String> = outdated.iter().filter_map(|i| servers.get(i)).map(|s| s.name.clone()).collect();
        let Some(&first) = outdated.first() else {
            return Ok(names_left);
        };
        // A server already drained for its restart goes on; else the first outdated one, once
        // every other wanted server is up and Ready.
        let under_way = outdated
            .iter()
            .copied()
            .find(|i| servers.get(i).is_some_and(|s| s.deployment_state() != ComponentState::Active));
        let candidate = match under_way {
            Some(i) => i,
            None => {
                let others_ready = servers.values().filter(|s| s.desired && s.index != first).all(Server::settled);
                if !others_ready {
                    if let Some(s) = servers.get_mut(&first) {
                        s.note = Some("restart pending: waiting for the other servers to be Ready".into());
                    }
                    return Ok(names_left);
                }
                first
            }
        };
        let target = servers.get(&candidate).and_then(|s| self.redirect_target(servers, &s.name, token));
        let Some(s) = servers.get_mut(&candidate) else { return Ok(names_left) };
        let reason = s.restart_reason();

        if s.info.is_none() {
            if s.pod_ready() {
                s.note = Some("restart pending: waiting for its admin API to drain it first".into());
                return Ok(names_left);
            }
            // Not ready and not answering: it serves nobody, there is nothing to drain first.
            delete_ignoring_missing(&self.pods, &s.name).await?;
            let note =
                format!("restarting server {} ({reason}); it was not ready and its admin API did not answer", s.name);
            self.server_event(&s.name, "ConfigChangeRequiresRestart", "RestartServer", note).await;
            s.pod = None;
            return Ok(names_left);
        }
        let note = format!("restarting server {} because {reason}: draining it first", s.name);
        if let Err(e) = self.start_draining(s, "ConfigChangeRequiresRestart", "RestartServer", note).await {
            s.note = Some(format!("restart pending: cannot drain it: {e}"));
            return Ok(names_left);
        }
        let messages = s.messages().unwrap_or_default();
        // With no other server to take the queue, restart once drained: the queue is on the
        // volume, which the new pod mounts again.
        if messages == 0 || target.is_none() {
            delete_ignoring_missing(&self.pods, &s.name).await?;
            let kept = if messages == 0 {
                String::new()
            } else {
                format!(" ({messages} message(s) stay queued on its volume)")
            };
            let note = format!("deleted pod {} to restart it{kept}; its new pod starts with the new settings", s.name);
            self.server_event(&s.name, "ServerRestarting", "RestartServer", note).await;
            s.pod = None;
            s.info = None;
            return Ok(names_left);
        }
        s.note = Some(self.hand_over(s, target, "restart").await);
        Ok(names_left)
    }
}

/// A running server that may hold shadow copies of another's messages.
type ShadowHolder = (String, transport::client::AdminClient);

/// Every ready server but `index`, with its admin client.
fn shadow_holders(servers: &BTreeMap<u32, Server>, index: u32) -> Vec<ShadowHolder> {
    let ready = servers.values().filter(|o| o.index != index && o.pod_ready());
    ready.filter_map(|o| o.admin.clone().map(|a| (o.name.clone(), a))).collect()
}

/// Asks every server in `holders` to heartbeat `primary` now (it is drained, so they drop
/// their copies of its messages). `None` once none holds a copy; else what is awaited.
/// Without this, a removed server's copies would be delivered again after
/// shadowResubmitTimeSpan, and a server back on a new volume would see them taken over.
async fn shadows_released(holders: &[ShadowHolder], primary: &str) -> Option<String> {
    let answers = join_all(holders.iter().map(|(name, client)| async move {
        let answer = match client.check_shadows(primary).await {
            Ok(info) => Ok(info.held_copies),
            // A server from before this check holds no copy it could be asked about.
            Err(ClientError::NotFound(_)) => Ok(0),
            Err(e) => Err(e.to_string()),
        };
        (name.clone(), answer)
    }))
    .await;
    shadow_wait(primary, &answers)
}

/// What a drained server's removal waits for, given each peer's answer: `None` when every
/// peer holds no copy of its messages any more.
fn shadow_wait(primary: &str, answers: &[(String, Result<u64, String>)]) -> Option<String> {
    let waits: Vec<String> = answers
        .iter()
        .filter_map(|(peer, answer)| match answer {
            Ok(0) => None,
            Ok(n) => Some(format!("{peer} still holds {n} shadow copies of its messages")),
            Err(e) => Some(format!("{peer} cannot say which shadow copies of its messages it holds ({e})")),
        })
        .collect();
    if waits.is_empty() {
        return None;
    }
    Some(format!("waiting until its peers let go of its shadow copies ({primary}): {}", waits.join("; ")))
}

/// A server needs its configuration while it is wanted, or still has a pod or an undrained
/// queue volume.
fn keeps_config(s: &Server) -> bool {
    s.desired || s.pod.is_some() || s.pvc.as_ref().is_some_and(|p| !drained(p))
}

/// Servers whose queue is gone for good: no pod, and the queue volume being deleted
/// without the operator having drained it first (a user deleted the claim, or a node's
/// local volume went with the node). Their mail survives only as the shadow copies the
/// other servers hold. A volume the operator deleted after a drain is marked drained: its
/// messages were handed over, and taking over their old copies would deliver them twice.
/// A claim already gone is not listed: its server comes back on a new volume, whose new
/// incarnation the shadows notice at their next heartbeat.
fn lost_queues(servers: &BTreeMap<u32, Server>) -> Vec<String> {
    servers
        .values()
        .filter(|s| s.pod.is_none())
        .filter(|s| s.pvc.as_ref().is_some_and(|p| p.metadata.deletion_timestamp.is_some() && !drained(p)))
        .map(|s| s.name.clone())
        .collect()
}

fn drained(pvc: &PersistentVolumeClaim) -> bool {
    pvc.metadata.annotations.as_ref().and_then(|a| a.get(names::ANNOTATION_DRAINED)).is_some_and(|v| v == "true")
}

/// The server is in, or on its way to, the wanted ServerState.
fn state_matches(wanted: ServerStateSetting, reported: transport::api::ServerStateName) -> bool {
    use transport::api::ServerStateName as N;
    matches!(
        (wanted, reported),
        (ServerStateSetting::Started, N::Started | N::Starting | N::Continuing)
            | (ServerStateSetting::Paused, N::Paused | N::Pausing)
            | (ServerStateSetting::Stopped, N::Stopped | N::Stopping)
    )
}

/// `config.kubetransport.io/<server>` → revision.
fn revisions(cm: &ConfigMap) -> BTreeMap<String, String> {
    cm.metadata
        .annotations
        .iter()
        .flatten()
        .filter_map(|(k, v)| k.strip_prefix(names::CONFIG_REVISION_PREFIX).map(|s| (s.to_string(), v.clone())))
        .collect()
}

/// Data keys and revision annotations of `existing` that `desired` no longer has.
fn stale_keys(existing: &ConfigMap, desired: &ConfigMap) -> BTreeSet<String> {
    let want_data: BTreeSet<&String> = desired.data.iter().flatten().map(|(k, _)| k).collect();
    let want_ann: BTreeSet<&String> = desired.metadata.annotations.iter().flatten().map(|(k, _)| k).collect();
    let data = existing.data.iter().flatten().map(|(k, _)| k).filter(|k| !want_data.contains(k));
    let ann = existing
        .metadata
        .annotations
        .iter()
        .flatten()
        .map(|(k, _)| k)
        .filter(|k| k.starts_with(names::CONFIG_REVISION_PREFIX) && !want_ann.contains(k));
    data.chain(ann).cloned().collect()
}

async fn delete_ignoring_missing<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Why `node` is being drained: cordoned, or a taint that announces a drain.
fn node_drain_reason(node: &Node) -> Option<String> {
    let spec = node.spec.as_ref()?;
    if spec.unschedulable == Some(true) {
        return Some("cordoned (spec.unschedulable)".into());
    }
    spec.taints
        .iter()
        .flatten()
        .find(|t| names::DRAIN_TAINTS.contains(&t.key.as_str()))
        .map(|t| format!("tainted {}:{}", t.key, t.effect))
}

#[cfg(test)]
mod tests {
    use super::shadow_wait;

    #[test]
    fn a_drained_server_goes_only_once_no_peer_holds_a_copy_of_its_messages() {
        let answer = |peer: &str, a: Result<u64, &str>| (peer.to_string(), a.map_err(str::to_string));
        assert_eq!(shadow_wait("mail-2", &[answer("mail-0", Ok(0)), answer("mail-1", Ok(0))]), None);
        assert_eq!(shadow_wait("mail-2", &[]), None, "a lone server has no peer to wait for");

        let wait = shadow_wait("mail-2", &[answer("mail-0", Ok(3)), answer("mail-1", Err("timed out"))]).unwrap();
        assert!(wait.contains("mail-0 still holds 3 shadow copies"), "{wait}");
        assert!(wait.contains("mail-1 cannot say which shadow copies of its messages it holds (timed out)"), "{wait}");
        assert!(wait.contains("(mail-2)"), "{wait}");
    }
}
