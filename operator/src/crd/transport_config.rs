//! TransportConfig: organisation-wide settings (like Set-TransportConfig). Its spec is the
//! transport crate's `OrgSettings`, the `transportConfig` section of every server's file.
use super::ServerStateEntry;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use transport::config::OrgSettings;

/// Organisation-wide transport settings shared by the TransportServices that reference it:
/// accepted domains, delay DSNs, size and recipient limits, postmaster, DSN text.
// kube-derive's `printcolumn(...)` repeats `type_` in each column, which clippy takes for
// a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubetransport.io",
    version = "v1alpha1",
    kind = "TransportConfig",
    plural = "transportconfigs",
    namespaced,
    status = "TransportConfigStatus",
    shortname = "tc",
    derive = "PartialEq",
    derive = "Default",
    doc = "Organisation-wide transport settings (like Set-TransportConfig), used by the TransportServices that reference it.",
    printcolumn(
        name = "Servers",
        type_ = "string",
        json_path = ".status.serversReady",
        description = "Servers ready / servers wanted, over every TransportService using it"
    ),
    printcolumn(
        name = "ServerState",
        type_ = "string",
        json_path = ".status.serverState",
        description = "ServerState of those servers"
    ),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
pub struct TransportConfigSpec {
    #[serde(flatten)]
    pub settings: OrgSettings,
}

/// The TransportServices using this TransportConfig, with their servers' ServerState.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransportConfigStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Servers ready / servers wanted, over every TransportService using it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_ready: Option<String>,
    /// ServerState of those servers (`Started`, or each state with its count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<String>,
    /// The TransportServices that reference this TransportConfig.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub services: Vec<ServiceUsage>,
}

/// A TransportService using the TransportConfig.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceUsage {
    pub name: String,
    /// Servers ready / servers wanted, as the TransportService reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_ready: Option<String>,
    #[serde(default)]
    pub servers: Vec<ServerStateEntry>,
}
