//! The custom resources (`kubetransport.io/v1alpha1`, all namespaced) and the CRD
//! documents generated from them.
//!
//! - [`TransportService`]: a set of transport servers (Set-TransportService)
//! - [`TransportConfig`]: organisation-wide settings (Set-TransportConfig)
//! - [`ServerComponentState`]: one requester's wish for one component of one server
//! - [`generate`]: the CRD documents `crdgen` writes into `crds/`
mod generate;
mod server_component_state;
mod transport_config;
mod transport_service;

pub use generate::{crd_files, crds, CrdFile, MAX_SERVICE_NAME};
pub use server_component_state::*;
pub use transport_config::*;
pub use transport_service::*;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use transport::api::{CertificateInfo, ComponentInfo, QueueTotals, ServerStateInfo};

/// API group of every kube-transport resource.
pub const GROUP: &str = "kubetransport.io";
/// API version of every kube-transport resource.
pub const VERSION: &str = "v1alpha1";

/// Reference to a TransportConfig in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransportConfigRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Reference to a TransportService in the same namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransportServiceRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// One server as the operator last saw it (its pod, and its admin API's `GET /v1/server`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    /// Server (and pod) name, `<transportservice>-<i>`.
    pub name: String,
    /// Phase of the server's pod (`Pending`, `Running`, ...); absent while it has no pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_phase: Option<String>,
    /// The pod is Ready: it takes connections through the Service.
    #[serde(default)]
    pub ready: bool,
    /// ServerState reported by the server (`{name, code}`), e.g. `{name: Started, code: 2}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<ServerStateInfo>,
    /// Component states reported by the server, with the requesters' wishes.
    #[serde(default)]
    pub components: Vec<ComponentInfo>,
    /// Messages in the server's queues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_totals: Option<QueueTotals>,
    /// Revision of the configuration file the server runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_revision: Option<String>,
    /// Revision of the configuration the operator rendered for it (ConfigMap `<name>-config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_config_revision: Option<String>,
    /// Each receive connector's certificate in use (fingerprint, expiry), and a renewed
    /// one in its Secret the server could not use, with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateInfo>,
    /// What the operator is doing with this server, or why it cannot read it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A server's ServerState, as listed in TransportConfig and ServerComponentState statuses.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerStateEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<ServerStateInfo>,
}
