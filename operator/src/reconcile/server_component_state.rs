//! Reconciles a ServerComponentState: one requester's wish for one component of one server,
//! or of every server of its TransportService (`server: "*"`), like Set-ServerComponentState.
//!
//! The TransportService reconciler writes every wish into the servers' files (the ConfigMap:
//! a restarted pod comes back in that state). This one pushes the requester's wish to each
//! server's admin API at once (retrying with backoff while a pod does not answer), hands the
//! queue to `redirectTo` once the server refuses new mail, and reports what the servers
//! confirm: this request's state, the combined effective state, ServerState, messages left,
//! `Ready` (confirmed by the pod and present in its file) and `Drained` (queue empty).
//!
//! Its finalizer withdraws the wish when the object is deleted: the file then says `Active`
//! for that requester (unless another object of the same requester still asks more), the
//! operator pushes the same to the pods, and only once every pod and file agree does the
//! finalizer go, and the object with it.
use super::servers::Server;
use crate::build::{self};
use crate::conditions::{self, Wanted};
use crate::context::{pod_ref, Context};
use crate::crd::{
    ComponentServerStatus, ServerComponentState, ServerComponentStateStatus, TransportService, ALL_SERVERS,
};
use crate::names;
use crate::status_write::{mask_condition_counts, mask_counts, sooner, Decision};
use crate::{Error, Result};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use transport::api::ServerInfo;
use transport::config::{combined_component_state, Component, ComponentState, Requester, TransportFile};

const KIND: &str = "ServerComponentState";
/// The `Drained` condition: no message left on the servers the request drains.
pub const DRAINED: &str = "Drained";
/// Next look when the TransportService does not exist.
const MISSING_REFERENCE_REQUEUE: Duration = Duration::from_secs(30);

/// Reconciles one ServerComponentState (see the module documentation).
pub async fn reconcile_server_component_state(obj: Arc<ServerComponentState>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let span = tracing::info_span!("reconcile", kind = KIND, namespace = obj.namespace().unwrap_or_default(), name = %obj.name_any());
    let result = reconcile(&obj, &ctx).instrument(span).await;
    if let Err(e) = &result {
        ctx.metrics.error(KIND, e);
    }
    result
}

/// One server the request is aimed at, as this reconcile saw it.
struct AimedServer {
    server: Server,
    /// What the requester wishes on this server over every object (this one included, or
    /// withdrawn while it is being deleted).
    wanted: ComponentState,
    /// The requester's entry in the server's file in the ConfigMap.
    in_file: Option<ComponentState>,
    /// Every wish in the server's file (component → requester → state).
    file_components: BTreeMap<Component, BTreeMap<Requester, ComponentState>>,
    /// `configRevision` of that file: the server runs it once it reports this revision.
    file_revision: Option<String>,
}

impl AimedServer {
    /// The requester's wish as the server reports it (none: Active).
    fn reported(&self, component: Component, requester: Requester) -> Option<ComponentState> {
        let info = self.server.info.as_ref()?;
        Some(requester_entry(info, component, requester).map(|(state, _)| state).unwrap_or_default())
    }

    /// The pod holds the wish, its file says the same, and the pod has loaded that file: a
    /// restart keeps the wish, and no older file the kubelet has yet to deliver can bring an
    /// earlier one back (the ConfigMap reaches a pod with a delay of its own).
    fn confirmed(&self, component: Component, requester: Requester) -> bool {
        let file_agrees = match self.in_file {
            Some(state) => state == self.wanted,
            None => self.wanted == ComponentState::Active,
        };
        let file_loaded = match (&self.file_revision, &self.server.info) {
            (Some(file), Some(info)) => *file == info.config_revision,
            _ => false,
        };
        self.reported(component, requester) == Some(self.wanted) && file_agrees && file_loaded
    }
}

/// `(state, since)` of `requester`'s wish for `component` in a server's answer.
fn requester_entry(info: &ServerInfo, component: Component, requester: Requester) -> Option<(ComponentState, &str)> {
    info.components
        .iter()
        .find(|c| c.component == component)?
        .requesters
        .iter()
        .find(|r| r.requester == requester)
        .map(|r| (r.state, r.since.as_str()))
}

struct Run<'a> {
    obj: &'a ServerComponentState,
    ctx: &'a Context,
    ns: String,
    name: String,
    key: String,
    regarding: ObjectReference,
    api: Api<ServerComponentState>,
}

async fn reconcile(obj: &ServerComponentState, ctx: &Context) -> Result<Action> {
    let name = obj.name_any();
    let ns = obj.namespace().ok_or_else(|| Error::NoNamespace { kind: KIND, name: name.clone() })?;
    let run = Run {
        obj,
        ctx,
        api: Api::namespaced(ctx.client.clone(), &ns),
        key: format!("{ns}/{name}"),
        regarding: obj.object_ref(&()),
        ns,
        name,
    };
    run.reconcile().await
}

impl Run<'_> {
    fn deleting(&self) -> bool {
        self.obj.metadata.deletion_timestamp.is_some()
    }

    fn has_finalizer(&self) -> bool {
        self.obj.finalizers().iter().any(|f| f == names::COMPONENT_STATE_FINALIZER)
    }

    async fn reconcile(&self) -> Result<Action> {
        if self.deleting() && !self.has_finalizer() {
            return Ok(Action::await_change());
        }
        if !self.deleting() && !self.has_finalizer() {
            let mut finalizers = self.obj.finalizers().to_vec();
            finalizers.push(names::COMPONENT_STATE_FINALIZER.to_string());
            self.set_finalizers(finalizers).await?;
        }
        let spec = &self.obj.spec;
        let service = spec.transport_service_ref.name.clone();
        let client = self.ctx.client.clone();
        let Some(ts) = Api::<TransportService>::namespaced(client.clone(), &self.ns).get_opt(&service).await? else {
            if self.deleting() {
                return self.release("its TransportService is gone: there is nothing to withdraw").await;
            }
            let message = format!(
                "TransportService {service} does not exist in namespace {}: create it, or fix spec.transportServiceRef",
                self.ns
            );
            self.write_status(self.blocked("TransportServiceNotFound", message)).await?;
            return Ok(Action::requeue(MISSING_REFERENCE_REQUEUE));
        };
        if let Err(message) = check(spec, &service, &ts) {
            if self.deleting() {
                return self.release("it was never applied (invalid spec)").await;
            }
            self.write_status(self.blocked("InvalidSpec", message)).await?;
            return Ok(Action::await_change());
        }

        let mut targets = self.targets(&ts, &service).await?;
        self.push(&mut targets).await;
        let all_confirmed = targets.iter().all(|t| t.confirmed(spec.component, spec.requester));
        let unreachable = targets.iter().any(|t| t.server.info.is_none());

        if self.deleting() {
            if all_confirmed {
                let names: Vec<&str> = targets.iter().map(|t| t.server.name.as_str()).collect();
                let detail = if names.is_empty() {
                    "no server to withdraw it from".to_string()
                } else {
                    format!("{} back to {:?} on {}", spec.requester.as_str(), targets[0].wanted, names.join(", "))
                };
                return self.release(&detail).await;
            }
            let later = self.write_status(self.status(&targets)).await?;
            return Ok(Action::requeue(sooner(self.next_look(unreachable, true), later)));
        }

        if spec.state == ComponentState::Draining {
            if let Some(to) = &spec.redirect_to {
                self.redirect(&mut targets, &ts, &service, to).await?;
            }
        }
        let status = self.status(&targets);
        let busy = !all_confirmed
            || (spec.state != ComponentState::Active
                && conditions::find(&status.conditions, DRAINED).is_some_and(|c| c.status != "True"));
        let later = self.write_status(status).await?;
        Ok(Action::requeue(sooner(self.next_look(unreachable, busy), later)))
    }

    /// Backoff while a server does not answer, a short look while something is under way.
    fn next_look(&self, unreachable: bool, busy: bool) -> Duration {
        if unreachable {
            return self.ctx.backoff.next(&self.key);
        }
        self.ctx.backoff.reset(&self.key);
        if busy {
            self.ctx.requeue_busy
        } else {
            self.ctx.requeue_idle
        }
    }

    /// The servers the request is aimed at, their pods, admin API answers and file entries.
    async fn targets(&self, ts: &TransportService, service: &str) -> Result<Vec<AimedServer>> {
        let spec = &self.obj.spec;
        let client = self.ctx.client.clone();
        let pods: BTreeMap<String, Pod> = Api::<Pod>::namespaced(client.clone(), &self.ns)
            .list(&ListParams::default().labels(&names::pod_selector_string(service)))
            .await?
            .items
            .into_iter()
            .map(|p| (p.name_any(), p))
            .collect();
        let wanted_servers = ts.spec.servers();
        let indices: BTreeSet<u32> = if spec.server == ALL_SERVERS {
            (0..wanted_servers).chain(pods.keys().filter_map(|p| names::server_index(service, p))).collect()
        } else {
            names::server_index(service, &spec.server).into_iter().collect()
        };
        let token = self.ctx.token_key.token(&self.ns, service, ts.metadata.uid.as_deref().unwrap_or_default());
        let files: BTreeMap<String, String> = Api::<ConfigMap>::namespaced(client.clone(), &self.ns)
            .get_opt(&names::config_map_name(service))
            .await?
            .and_then(|cm| cm.data)
            .unwrap_or_default()
            .into_iter()
            .collect();
        let objects =
            Api::<ServerComponentState>::namespaced(client, &self.ns).list(&ListParams::default()).await?.items;

        let mut targets = Vec::new();
        for index in indices {
            let mut server = Server::new(service, index, index < wanted_servers);
            server.pod = pods.get(&server.name).cloned();
            if !server.desired && server.pod.is_none() {
                continue; // a removed server: nothing runs there any more
            }
            let endpoint = server.endpoint(&self.ns, service, &token);
            server.poll(self.ctx.admin.as_ref(), endpoint).await;
            let wanted = build::requester_wish(service, &server.name, spec.component, spec.requester, &objects);
            let text = files.get(&names::config_key(&server.name));
            let file_revision = text.map(|t| transport::config::revision(t));
            let file_components = text
                .and_then(|text| serde_yaml::from_str::<TransportFile>(text).ok())
                .map(|f| f.components)
                .unwrap_or_default();
            let in_file = file_components.get(&spec.component).and_then(|r| r.get(&spec.requester)).copied();
            targets.push(AimedServer { server, wanted, in_file, file_components, file_revision });
        }
        Ok(targets)
    }

    /// Sends the requester's wish to each server that reports another one.
    async fn push(&self, targets: &mut [AimedServer]) {
        let spec = &self.obj.spec;
        for t in targets.iter_mut() {
            let Some(reported) = t.reported(spec.component, spec.requester) else { continue };
            if reported == t.wanted {
                continue;
            }
            // Requester Deployment is also the operator's own (rolling restarts, scale-down,
            // node drains): an object only ever raises it; the TransportService reconciler
            // lowers it once neither it nor an object needs it.
            if spec.requester == Requester::Deployment && t.wanted < reported {
                continue;
            }
            let Some(client) = t.server.admin.clone() else { continue };
            match client.set_component(spec.component, spec.requester, t.wanted).await {
                Ok(info) => {
                    let effective = info.components.iter().find(|c| c.component == spec.component).map(|c| c.state);
                    t.server.info = Some(info);
                    let note = format!(
                        "{} of {}: {} {:?} (was {:?}); effective state {}",
                        spec.component.as_str(),
                        t.server.name,
                        spec.requester.as_str(),
                        t.wanted,
                        reported,
                        effective.map(|e| e.as_str()).unwrap_or("unknown")
                    );
                    self.event(
                        Some(&t.server.name),
                        EventType::Normal,
                        "ComponentStateSet",
                        "SetServerComponentState",
                        note,
                    )
                    .await;
                }
                Err(e) => {
                    t.server.note = Some(format!("cannot set {}: {e}", spec.component.as_str()));
                }
            }
        }
    }

    /// Hands the queue of every target that refuses new mail to the `redirectTo` server.
    async fn redirect(
        &self,
        targets: &mut [AimedServer],
        ts: &TransportService,
        service: &str,
        to: &str,
    ) -> Result<()> {
        let spec = &self.obj.spec;
        let pod = Api::<Pod>::namespaced(self.ctx.client.clone(), &self.ns).get_opt(to).await?;
        let mut target_server = Server::new(service, names::server_index(service, to).unwrap_or_default(), true);
        target_server.pod = pod;
        let port = target_server.running_intra_port().unwrap_or_else(|| ts.spec.intra_port());
        let address = self.ctx.admin.smtp_address(&target_server.endpoint(&self.ns, service, ""), port);
        for t in targets.iter_mut() {
            let Some(info) = &t.server.info else { continue };
            let effective = info.components.iter().find(|c| c.component == spec.component).map(|c| c.state);
            if effective == Some(ComponentState::Active) {
                continue; // still taking mail: moving its queue now would only chase new mail
            }
            let movable = info.totals.redirectable();
            if movable == 0 {
                continue;
            }
            let (Some(address), true) = (&address, target_server.pod_ready()) else {
                t.server.note = Some(format!(
                    "{} message(s) to hand over, but {to} is not Ready to take them; they stay queued here meanwhile",
                    info.totals.messages
                ));
                continue;
            };
            match t.server.redirect(address).await {
                Ok(true) => {
                    let note = format!(
                        "handing {movable} queued message(s) of {} to {to} ({address}, Redirect-Message)",
                        t.server.name
                    );
                    self.event(Some(&t.server.name), EventType::Normal, "RedirectingQueue", "RedirectMessage", note)
                        .await;
                }
                Ok(false) => {}
                Err(e) => t.server.note = Some(format!("redirect to {to} refused: {e}")),
            }
        }
        Ok(())
    }

    /// Removes the finalizer: the object goes.
    async fn release(&self, detail: &str) -> Result<Action> {
        let finalizers: Vec<String> =
            self.obj.finalizers().iter().filter(|f| *f != names::COMPONENT_STATE_FINALIZER).cloned().collect();
        self.set_finalizers(finalizers).await?;
        self.ctx.backoff.reset(&self.key);
        let spec = &self.obj.spec;
        let note =
            format!("withdrew {} {} of {}: {detail}", spec.requester.as_str(), spec.component.as_str(), spec.server);
        self.event(None, EventType::Normal, "ComponentStateWithdrawn", "RemoveFinalizer", note).await;
        Ok(Action::await_change())
    }

    async fn set_finalizers(&self, finalizers: Vec<String>) -> Result<()> {
        // The resourceVersion makes the write fail rather than drop a finalizer someone else
        // added meanwhile; the next reconcile starts from the fresh object.
        let patch = json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": self.obj.metadata.resource_version,
        }});
        match self.api.patch(&self.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Status when nothing can be applied.
    fn blocked(&self, reason: &str, message: String) -> ServerComponentStateStatus {
        let old = self.obj.status.clone().unwrap_or_default();
        let mut status = ServerComponentStateStatus {
            observed_generation: self.obj.metadata.generation,
            conditions: old.conditions,
            ..Default::default()
        };
        self.set_conditions(
            &mut status.conditions,
            Wanted::new(conditions::READY, false, reason, message.clone()),
            Wanted::new(DRAINED, false, reason, message),
        );
        status
    }

    fn set_conditions(&self, conds: &mut Vec<Condition>, ready: Wanted, drained: Wanted) {
        let now = Time(jiff::Timestamp::now());
        let generation = self.obj.metadata.generation;
        conditions::set(conds, ready, generation, &now);
        conditions::set(conds, drained, generation, &now);
    }

    fn status(&self, targets: &[AimedServer]) -> ServerComponentStateStatus {
        let spec = &self.obj.spec;
        let old = self.obj.status.clone().unwrap_or_default();
        let (component, requester) = (spec.component, spec.requester);
        let objects_rule = |t: &AimedServer| {
            // Not heard from: what the wishes known to the operator (the server's file, and
            // this requester's) combine to, by the server's own rule.
            combined_component_state(component, |c| {
                let mut wishes: Vec<ComponentState> =
                    t.file_components.get(&c).map(|r| r.values().copied().collect()).unwrap_or_default();
                if c == component {
                    wishes.push(t.wanted);
                }
                ComponentState::strongest(wishes)
            })
        };

        let mut servers = Vec::new();
        for t in targets {
            let info = t.server.info.as_ref();
            let effective = match info {
                Some(i) => i.components.iter().find(|c| c.component == component).map(|c| c.state),
                None => Some(objects_rule(t)),
            };
            let confirmed_time = info
                .filter(|_| t.confirmed(component, requester))
                .and_then(|i| requester_entry(i, component, requester))
                .and_then(|(_, since)| since.parse::<jiff::Timestamp>().ok())
                .map(Time);
            let message = t.server.note.clone().or_else(|| match (&t.server.pod, info) {
                (None, _) => Some("no pod: the server is not running".into()),
                (Some(_), None) => Some(format!(
                    "admin API not answering: {}",
                    t.server.admin_error.clone().unwrap_or_else(|| "the pod has no address yet".into())
                )),
                (Some(_), Some(_)) if !t.confirmed(component, requester) => Some(self.pending_detail(t)),
                _ => info
                    .and_then(|i| i.redirect.as_ref())
                    .filter(|r| !r.done)
                    .map(|r| format!("redirecting to {}: {} message(s) to hand over", r.target, r.remaining)),
            });
            servers.push(ComponentServerStatus {
                name: t.server.name.clone(),
                effective_state: effective,
                server_state: info.map(|i| i.server_state),
                messages_to_drain: info.map(|i| i.totals.messages),
                confirmed_time,
                message,
            });
        }

        let all_confirmed = targets.iter().all(|t| t.confirmed(component, requester));
        let agree = |values: Vec<Option<ComponentState>>| {
            let first = values.first().copied().flatten();
            (first.is_some() && values.iter().all(|v| *v == first)).then_some(first).flatten()
        };
        let requested_state = agree(targets.iter().map(|t| t.reported(component, requester)).collect());
        let effective_state = agree(servers.iter().map(|s| s.effective_state).collect());
        let reachable: Vec<&ComponentServerStatus> = servers.iter().filter(|s| s.server_state.is_some()).collect();
        let messages_to_drain =
            (!reachable.is_empty()).then(|| reachable.iter().filter_map(|s| s.messages_to_drain).sum::<u64>());
        let last_confirmed_time = if all_confirmed && !servers.is_empty() {
            servers.iter().filter_map(|s| s.confirmed_time.clone()).max_by_key(|t| t.0)
        } else {
            None
        };

        let ready = self.ready_condition(targets, &servers, all_confirmed);
        let drained = self.drained_condition(targets, &servers);
        let mut status = ServerComponentStateStatus {
            observed_generation: self.obj.metadata.generation,
            conditions: old.conditions,
            requested_state,
            effective_state,
            server_state: conditions::server_state_summary(
                targets.iter().map(|t| t.server.info.as_ref().map(|i| &i.server_state)),
            ),
            messages_to_drain,
            last_confirmed_time,
            servers,
        };
        self.set_conditions(&mut status.conditions, ready, drained);
        status
    }

    /// Why a server that answers does not hold the wish yet.
    fn pending_detail(&self, t: &AimedServer) -> String {
        let spec = &self.obj.spec;
        let reported = t.reported(spec.component, spec.requester).unwrap_or_default();
        let in_file = match t.in_file {
            Some(state) => state == t.wanted,
            None => t.wanted == ComponentState::Active,
        };
        if reported != t.wanted {
            format!("the server reports {} {reported:?}, {:?} is wanted", spec.requester.as_str(), t.wanted)
        } else if !in_file {
            format!(
                "its file in ConfigMap {} does not hold {} {:?} yet",
                names::config_map_name(&spec.transport_service_ref.name),
                spec.requester.as_str(),
                t.wanted
            )
        } else {
            let running = t.server.info.as_ref().map(|i| i.config_revision.as_str()).unwrap_or("unknown");
            format!(
                "waiting for the server to load its file (revision {}, it runs {running})",
                t.file_revision.as_deref().unwrap_or("unknown")
            )
        }
    }

    fn ready_condition(
        &self,
        targets: &[AimedServer],
        servers: &[ComponentServerStatus],
        all_confirmed: bool,
    ) -> Wanted {
        let spec = &self.obj.spec;
        let what = format!("{} {} by {}", spec.component.as_str(), spec.state.as_str(), spec.requester.as_str());
        if self.deleting() {
            let left: Vec<String> = servers.iter().map(|s| s.name.clone()).collect();
            return Wanted::new(
                conditions::READY,
                false,
                "Withdrawing",
                format!("withdrawing {what}: waiting for {} to confirm", left.join(", ")),
            );
        }
        if targets.is_empty() {
            return Wanted::new(
                conditions::READY,
                false,
                "ServerNotFound",
                format!("TransportService {} runs no server {}", spec.transport_service_ref.name, spec.server),
            );
        }
        if all_confirmed {
            let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
            return Wanted::new(
                conditions::READY,
                true,
                "Confirmed",
                format!("{} hold {what}, in the running server and in its file", names.join(", ")),
            );
        }
        let pending = |s: &&ComponentServerStatus| s.confirmed_time.is_none();
        let detail: Vec<String> = servers
            .iter()
            .filter(pending)
            .map(|s| format!("{}: {}", s.name, s.message.clone().unwrap_or_else(|| "not confirmed yet".into())))
            .collect();
        let reason = if targets.iter().any(|t| t.server.pod.is_none()) {
            "ServerNotRunning"
        } else if targets.iter().any(|t| t.server.info.is_none()) {
            "ServerUnreachable"
        } else {
            "Applying"
        };
        Wanted::new(conditions::READY, false, reason, detail.join("; "))
    }

    fn drained_condition(&self, targets: &[AimedServer], servers: &[ComponentServerStatus]) -> Wanted {
        let spec = &self.obj.spec;
        if self.deleting() {
            return Wanted::new(DRAINED, false, "Withdrawing", "the request is being withdrawn");
        }
        if spec.state == ComponentState::Active {
            return Wanted::new(DRAINED, false, "NotDraining", "the request is Active: the component takes mail");
        }
        if targets.is_empty() || targets.iter().any(|t| t.server.info.is_none()) {
            return Wanted::new(DRAINED, false, "ServerUnreachable", "the queue of every server is not known yet");
        }
        let left: Vec<String> = servers
            .iter()
            .filter(|s| s.messages_to_drain.unwrap_or_default() > 0)
            .map(|s| format!("{}: {} message(s)", s.name, s.messages_to_drain.unwrap_or_default()))
            .collect();
        if left.is_empty() {
            let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
            return Wanted::new(DRAINED, true, "QueueEmpty", format!("no message left on {}", names.join(", ")));
        }
        let mut message = format!("messages left: {}", left.join(", "));
        if spec.component == Component::ServerWideOffline && spec.state == ComponentState::Inactive {
            message.push_str(
                "; ServerWideOffline Inactive stops delivery: drain with HubTransport Draining (and redirectTo) first",
            );
        } else if spec.redirect_to.is_none() {
            message.push_str("; they are delivered from here (set redirectTo to hand them to another server)");
        }
        Wanted::new(DRAINED, false, "MessagesQueued", message)
    }

    /// Writes the status unless only queue counters changed within the last 10 s; then
    /// returns when to come back for them.
    async fn write_status(&self, status: ServerComponentStateStatus) -> Result<Option<Duration>> {
        let old = self.obj.status.clone().unwrap_or_default();
        self.announce(&old.conditions, &status.conditions).await;
        let key = format!("{KIND}/{}", self.key);
        match self.ctx.status_decision(&key, self.obj.status.as_ref(), &status, without_counters) {
            Decision::Unchanged => return Ok(None),
            Decision::Later(after) => return Ok(Some(after)),
            Decision::Write => {}
        }
        let body = json!({
            "apiVersion": ServerComponentState::api_version(&()),
            "kind": KIND,
            "status": status,
        });
        match self
            .api
            .patch_status(&self.name, &PatchParams::apply(&self.ctx.field_manager).force(), &Patch::Apply(&body))
            .await
        {
            Ok(_) => {
                self.ctx.status_written(&key, self.obj.status.as_ref(), &status);
                Ok(None)
            }
            // Deleted meanwhile: nothing left to report on.
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// An Event for each transition of Ready or Drained (not on every reconcile).
    async fn announce(&self, old: &[Condition], new: &[Condition]) {
        for type_ in [conditions::READY, DRAINED] {
            let Some(now) = super::transition(old, new, type_) else { continue };
            let warning = ["ServerUnreachable", "InvalidSpec", "TransportServiceNotFound", "ServerNotFound"];
            let event_type =
                if warning.contains(&now.reason.as_str()) { EventType::Warning } else { EventType::Normal };
            let reason = match (type_, now.reason.as_str()) {
                (DRAINED, "QueueEmpty") => "Drained",
                (_, r) => r,
            };
            if type_ == DRAINED && now.status != "True" && reason != "MessagesQueued" {
                continue; // Drained False for a reason Ready already announces
            }
            self.event(None, event_type, reason, "Reconcile", now.message.clone()).await;
        }
    }

    async fn event(&self, server: Option<&str>, type_: EventType, reason: &str, action: &str, note: String) {
        let related = server.map(|s| pod_ref(&self.ns, s));
        self.ctx.event(&self.regarding, related, type_, reason, action, note).await;
    }
}

/// The status with its queue counters blanked (see [`crate::status_write`]).
fn without_counters(status: &ServerComponentStateStatus) -> ServerComponentStateStatus {
    let mut s = status.clone();
    s.messages_to_drain = None;
    mask_condition_counts(&mut s.conditions);
    for server in &mut s.servers {
        server.messages_to_drain = None;
        server.message = server.message.as_deref().map(mask_counts);
    }
    s
}

/// The rules a cluster cannot check with the schema: the server and `redirectTo` belong to
/// the TransportService, and a redirect needs one server other than the target.
fn check(spec: &crate::crd::ServerComponentStateSpec, service: &str, ts: &TransportService) -> Result<(), String> {
    if spec.server != ALL_SERVERS && names::server_index(service, &spec.server).is_none() {
        return Err(format!(
            "spec.server: {} is not a server of TransportService {service} (its servers are {service}-0 … {service}-{})",
            spec.server,
            ts.spec.servers().saturating_sub(1)
        ));
    }
    if let Some(to) = &spec.redirect_to {
        if spec.server == ALL_SERVERS {
            return Err("spec.redirectTo needs a single spec.server: with \"*\" the target would drain too".into());
        }
        if names::server_index(service, to).is_none_or(|i| i >= ts.spec.servers()) {
            return Err(format!("spec.redirectTo: {to} is not a running server of TransportService {service}"));
        }
        if *to == spec.server {
            return Err(format!("spec.redirectTo: {to} is the server being drained itself"));
        }
    }
    Ok(())
}
