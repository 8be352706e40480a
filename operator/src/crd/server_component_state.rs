//! ServerComponentState: one requester's wish for one component of one server
//! (Set-ServerComponentState). Every object aimed at the same server and component is
//! combined: Inactive if any says Inactive, else Draining if any says Draining, else Active.
use super::TransportServiceRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use transport::api::ServerStateInfo;
use transport::config::{Component, ComponentState, Requester};

/// Server value that aims a ServerComponentState at every server of its TransportService.
pub const ALL_SERVERS: &str = "*";

/// One requester's wish for one component of one server, like Set-ServerComponentState.
/// Deleting the object withdraws the wish.
// kube-derive's `printcolumn(...)` repeats `type_` in each column, which clippy takes for
// a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubetransport.io",
    version = "v1alpha1",
    kind = "ServerComponentState",
    plural = "servercomponentstates",
    namespaced,
    status = "ServerComponentStateStatus",
    shortname = "scs",
    derive = "PartialEq",
    derive = "Default",
    doc = "One requester's wish for one component of one transport server (like Set-ServerComponentState).",
    printcolumn(name = "Server", type_ = "string", json_path = ".spec.server"),
    printcolumn(name = "Component", type_ = "string", json_path = ".spec.component"),
    printcolumn(name = "Requester", type_ = "string", json_path = ".spec.requester"),
    printcolumn(name = "State", type_ = "string", json_path = ".spec.state"),
    printcolumn(
        name = "Effective",
        type_ = "string",
        json_path = ".status.effectiveState",
        description = "Combined state of the component over every requester"
    ),
    printcolumn(name = "ServerState", type_ = "string", json_path = ".status.serverState"),
    printcolumn(
        name = "Messages",
        type_ = "integer",
        json_path = ".status.messagesToDrain",
        description = "Messages still queued on the servers"
    ),
    printcolumn(name = "Drained", type_ = "string", json_path = ".status.conditions[?(@.type==\"Drained\")].status"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.redirectTo) || self.state == 'Draining'",
    "message": "redirectTo applies only to state Draining"
}]))]
pub struct ServerComponentStateSpec {
    /// Server name (`<transportservice>-<i>`, the pod name), or `*` for every server of the
    /// TransportService.
    #[schemars(length(min = 1, max = 63), pattern(r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"))]
    pub server: String,
    /// The TransportService the server belongs to.
    pub transport_service_ref: TransportServiceRef,
    /// `HubTransport`, `FrontendTransport` or `ServerWideOffline` (Inactive takes every
    /// component of the server offline).
    pub component: Component,
    /// Who asks: `Functional`, `Maintenance`, `Sidelined`, `Deployment` or `HealthAPI`.
    pub requester: Requester,
    /// `Active`, `Draining` (refuse new mail, deliver what is queued) or `Inactive`.
    pub state: ComponentState,
    /// With `Draining`: the server (`<transportservice>-<i>`) that receives every queued
    /// message (Redirect-Message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub redirect_to: Option<String>,
}

/// This request, the combined state it takes part in, and how far the server got.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerComponentStateStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (the servers confirmed the state) and `Drained` (no message left to deliver).
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// This request's state, as confirmed by the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_state: Option<ComponentState>,
    /// Combined state of the component over every requester (one value when the servers agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_state: Option<ComponentState>,
    /// ServerState of the servers (`Started`, or each state with its count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<String>,
    /// Messages still queued on the servers (what a drain waits for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_to_drain: Option<u64>,
    /// When the servers confirmed this request's state (the latest of their times: by then
    /// every server had it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_confirmed_time: Option<Time>,
    /// Each server the request is aimed at.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub servers: Vec<ComponentServerStatus>,
}

/// One server a ServerComponentState is aimed at.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentServerStatus {
    pub name: String,
    /// Combined state of the component on this server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effective_state: Option<ComponentState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<ServerStateInfo>,
    /// Messages still queued on the server (what a drain waits for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_to_drain: Option<u64>,
    /// Since when the server holds this request's state (as its admin API reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_time: Option<Time>,
    /// What the operator is doing with this server, or why it cannot reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An empty request (no server), HubTransport Active by Maintenance: kube-derive's
/// CustomResource needs a `Default` spec; never a schema default.
impl Default for ServerComponentStateSpec {
    fn default() -> Self {
        ServerComponentStateSpec {
            server: String::new(),
            transport_service_ref: TransportServiceRef::default(),
            component: Component::HubTransport,
            requester: Requester::Maintenance,
            state: ComponentState::Active,
            redirect_to: None,
        }
    }
}

impl ServerComponentStateSpec {
    /// Whether this wish concerns `server` of the TransportService `service`.
    pub fn targets(&self, service: &str, server: &str) -> bool {
        self.transport_service_ref.name == service && (self.server == ALL_SERVERS || self.server == server)
    }
}
