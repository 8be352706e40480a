//! The reconcilers: plain async functions over a [`Context`](crate::context::Context), so
//! the kube-runtime Controllers and the tests call the same code.
//!
//! - [`transport_service`]: a TransportService into its ConfigMap, Secret, Services, Pods
//!   and PVCs, with the servers driven through their admin API ([`servers`])
//! - [`transport_config`]: validation of a TransportConfig, and the services using it
//! - [`server_component_state`]: one requester's wish pushed to the servers, its queue
//!   redirected, what the servers confirm, and its withdrawal when the object is deleted
pub mod server_component_state;
mod servers;
mod service_status;
pub mod transport_config;
pub mod transport_service;

pub use server_component_state::reconcile_server_component_state;
pub use transport_config::reconcile_transport_config;
pub use transport_service::reconcile_transport_service;

use crate::conditions::{self, Wanted};
use crate::context::Context;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::EventType;

/// Ready reasons that call for an administrator: published as Warning Events.
const WARNING_REASONS: [&str; 5] =
    ["InvalidSpec", "TransportConfigNotFound", "ServerPaused", "ServerStopped", "ServerUnreachable"];

/// Degraded reasons that leave Ready alone (the servers take mail) but still deserve a
/// Warning Event when they appear.
const DEGRADED_ONLY_REASONS: [&str; 1] = [conditions::CERTIFICATE_NOT_LOADED];

/// Publishes an Event when the Ready condition changes reason (a transition), so every
/// transition shows in `kubectl describe` without repeating on each reconcile; and a
/// Warning when Degraded turns to a reason Ready does not show.
async fn announce_transition(ctx: &Context, regarding: &ObjectReference, old: &[Condition], new: &[Condition]) {
    if let Some(now) = transition(old, new, conditions::READY) {
        let type_ = if WARNING_REASONS.contains(&now.reason.as_str()) { EventType::Warning } else { EventType::Normal };
        ctx.event(regarding, None, type_, &now.reason, "Reconcile", now.message.clone()).await;
    }
    if let Some(now) = transition(old, new, conditions::DEGRADED) {
        if now.status == "True" && DEGRADED_ONLY_REASONS.contains(&now.reason.as_str()) {
            ctx.event(regarding, None, EventType::Warning, &now.reason, "Reconcile", now.message.clone()).await;
        }
    }
}

/// The condition `type_` of `new` when its reason or status differs from `old`'s.
fn transition<'a>(old: &[Condition], new: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    let now = conditions::find(new, type_)?;
    let before = conditions::find(old, type_);
    (!before.is_some_and(|b| b.reason == now.reason && b.status == now.status)).then_some(now)
}

/// Sets the three conditions of a status.
fn set_all(conds: &mut Vec<Condition>, wanted: [Wanted; 3], generation: Option<i64>) {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now());
    for w in wanted {
        conditions::set(conds, w, generation, &now);
    }
}
