//! Reconciles a TransportConfig: checks its settings as the servers would, and lists the
//! TransportServices using it with their servers' ServerState in its status. A change
//! reaches every server's file through those services: their controller watches
//! TransportConfigs and requeues each service that references the one changed (the polling
//! driver reconciles every TransportConfig, then every TransportService, in each pass).
use super::{announce_transition, set_all};
use crate::conditions::{self, Wanted};
use crate::context::Context;
use crate::crd::{ServerStateEntry, ServiceUsage, TransportConfig, TransportConfigStatus, TransportService};
use crate::status_write::Decision;
use crate::validation;
use crate::{Error, Result};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use tracing::Instrument;

const KIND: &str = "TransportConfig";

pub async fn reconcile_transport_config(tc: Arc<TransportConfig>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let span = tracing::info_span!("reconcile", kind = KIND, namespace = tc.namespace().unwrap_or_default(), name = %tc.name_any());
    let result = reconcile(&tc, &ctx).instrument(span).await;
    if let Err(e) = &result {
        ctx.metrics.error(KIND, e);
    }
    result
}

async fn reconcile(tc: &TransportConfig, ctx: &Context) -> Result<Action> {
    let name = tc.name_any();
    let ns = tc.namespace().ok_or_else(|| Error::NoNamespace { kind: KIND, name: name.clone() })?;
    if tc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let old = tc.status.clone().unwrap_or_default();
    let generation = tc.metadata.generation;

    let services: Vec<TransportService> = Api::<TransportService>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|ts| ts.spec.transport_config_name() == name)
        .collect();

    let usages: Vec<ServiceUsage> = services
        .iter()
        .map(|ts| {
            let status = ts.status.clone().unwrap_or_default();
            ServiceUsage {
                name: ts.name_any(),
                servers_ready: status.servers_ready.clone(),
                servers: status
                    .servers
                    .iter()
                    .map(|s| ServerStateEntry { name: s.name.clone(), server_state: s.server_state })
                    .collect(),
            }
        })
        .collect();
    let (ready, wanted) = services.iter().fold((0, 0), |(r, w), ts| (r + ready_servers(ts), w + ts.spec.servers()));
    let states: Vec<_> = usages.iter().flat_map(|u| u.servers.iter().map(|s| s.server_state.as_ref())).collect();

    let mut problem = None;
    let mut paused = None;
    for usage in &usages {
        for s in &usage.servers {
            if let Some((reason, message)) =
                s.server_state.and_then(|st| conditions::server_state_problem(&s.name, st.name))
            {
                if reason == "ServerPaused" {
                    paused.get_or_insert(message.clone());
                }
                problem.get_or_insert((reason, format!("TransportService {}: {message}", usage.name)));
            }
        }
    }

    let (ready_cond, degraded_cond) = match validation::check_transport_config(&name, &tc.spec.settings) {
        Err(errors) => {
            let message = format!(
                "invalid settings; the TransportServices using it keep their last good configuration: {}",
                validation::describe(&errors)
            );
            (
                Wanted::new(conditions::READY, false, "InvalidSpec", message.clone()),
                Wanted::new(conditions::DEGRADED, true, "InvalidSpec", message),
            )
        }
        Ok(()) => {
            let degraded = match &paused {
                Some(message) => Wanted::new(conditions::DEGRADED, true, "ServerPaused", message.clone()),
                None => Wanted::new(conditions::DEGRADED, false, "AsExpected", "no problem found"),
            };
            let ready = match problem {
                Some((reason, message)) => Wanted::new(conditions::READY, false, reason, message),
                None => Wanted::new(
                    conditions::READY,
                    true,
                    "Valid",
                    format!("used by {} TransportService(s), {ready}/{wanted} servers ready", services.len()),
                ),
            };
            (ready, degraded)
        }
    };
    let progressing = Wanted::new(
        conditions::PROGRESSING,
        false,
        "Reconciled",
        "the TransportServices using it render their servers' files from it",
    );

    let mut status = TransportConfigStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        servers_ready: Some(format!("{ready}/{wanted}")),
        server_state: conditions::server_state_summary(states),
        services: usages,
    };
    set_all(&mut status.conditions, [ready_cond, progressing, degraded_cond], generation);

    announce_transition(ctx, &tc.object_ref(&()), &old.conditions, &status.conditions).await;
    let key = format!("{KIND}/{ns}/{name}");
    // No counters in this status: every change is written at once.
    if ctx.status_decision(&key, tc.status.as_ref(), &status, |s| s.clone()) == Decision::Write {
        let api: Api<TransportConfig> = Api::namespaced(ctx.client.clone(), &ns);
        let body = json!({"apiVersion": TransportConfig::api_version(&()), "kind": KIND, "status": status});
        api.patch_status(&name, &PatchParams::apply(&ctx.field_manager).force(), &Patch::Apply(&body)).await?;
        ctx.status_written(&key, tc.status.as_ref(), &status);
    }
    Ok(Action::requeue(ctx.requeue_idle))
}

/// The servers of `ts` within `spec.servers` whose pod is Ready, as its status reports them.
fn ready_servers(ts: &TransportService) -> u32 {
    let name = ts.name_any();
    let wanted = ts.spec.servers();
    let status = ts.status.as_ref();
    let ready = status.iter().flat_map(|s| s.servers.iter()).filter(|s| s.ready);
    ready.filter(|s| crate::names::server_index(&name, &s.name).is_some_and(|i| i < wanted)).count() as u32
}
