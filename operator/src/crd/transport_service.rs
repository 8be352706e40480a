//! TransportService: a set of transport servers (like Set-TransportService).
//!
//! The spec embeds the transport crate's own configuration types (retry,
//! expiration, send connectors, receive-connector settings, logging, DNS), so a
//! field means the same thing in the CRD and in the server's file. Defaults
//! live in code: an absent field takes the default written in its description.
use super::{ServerStatus, TransportConfigRef};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ProjectedVolumeSource, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use transport::config::{
    DnsSettings, ExpirationSettings, LoggingSettings, MailboxDelivery, ReceiveSettings, RetrySettings, Role,
    SendConnector, ServerStateSetting,
};

/// Port of the `Intra` receive connector when `intraOrg.port` is absent.
pub const DEFAULT_INTRA_PORT: u16 = 2527;
/// Who may use the `Intra` connector when `intraOrg.remoteIPRanges` is absent.
pub const DEFAULT_INTRA_RANGES: [&str; 4] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"];
/// Name of the receive connector the operator adds for sibling servers.
pub const INTRA_CONNECTOR: &str = "Intra";
/// Queue volume size when `storage.size` is absent.
pub const DEFAULT_STORAGE_SIZE: &str = "1Gi";
/// Servers when `servers` is absent.
pub const DEFAULT_SERVERS: u32 = 1;
/// TransportConfig used when `transportConfigRef` is absent.
pub const DEFAULT_TRANSPORT_CONFIG: &str = "default";

/// A set of SMTP transport servers: pods `<name>-0` … `<name>-<servers-1>`, each with its
/// own queue volume, rendered configuration and admin API, managed like Exchange transport
/// services (ServerState, component states, drain before removal or restart).
// kube-derive's `printcolumn(...)` repeats `type_` in each column, which clippy takes for
// a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "kubetransport.io",
    version = "v1alpha1",
    kind = "TransportService",
    plural = "transportservices",
    namespaced,
    status = "TransportServiceStatus",
    shortname = "ts",
    derive = "PartialEq",
    derive = "Default",
    doc = "A set of SMTP transport servers (like Set-TransportService): pods `<name>-<i>`, their queue volumes, connectors, retry and expiration settings and ServerState.",
    printcolumn(
        name = "Servers",
        type_ = "string",
        json_path = ".status.serversReady",
        description = "Servers ready / servers wanted"
    ),
    printcolumn(
        name = "ServerState",
        type_ = "string",
        json_path = ".status.serverState",
        description = "ServerState of the servers"
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
#[serde(rename_all = "camelCase")]
pub struct TransportServiceSpec {
    /// `Mailbox` or `Edge`: selects the default retry and expiration intervals. Default `Mailbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,

    /// How many transport servers to run (pods `<name>-0` … `<name>-<servers-1>`). Default 1.
    /// Scaling down drains a removed server and redirects its queue to a remaining server
    /// before its pod and queue volume are deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 64))]
    pub servers: Option<u32>,

    /// Container image of the transport server. Default: the image released with this operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// CPU and memory of each server's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// The queue volume of each server (a PersistentVolumeClaim `<name>-<i>-queue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// Secrets and ConfigMaps projected read-only into every server at `/projected`
    /// (CloudNativePG's projectedVolumeTemplate): a CA bundle for a send connector's
    /// `tlsCertificateAuthorities` (e.g. trust-manager's ConfigMap, or the `ca.crt` of a
    /// cert-manager Secret at `path: ca/ca.crt` → `/projected/ca/ca.crt`). Changes of their
    /// content reach the servers without a restart; a change of this template restarts
    /// them one at a time, drained first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected_volume_template: Option<ProjectedVolumeSource>,

    /// Where the servers accept mail. Each connector listens on every server; the Service
    /// `<name>` exposes their ports. The name `Intra` is reserved (see `intraOrg`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub receive_connectors: Vec<ReceiveConnectorSpec>,

    /// How the servers send mail: address spaces, then smart hosts or DNS MX routing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[schemars(extend(
        "x-kubernetes-list-type" = "map",
        "x-kubernetes-list-map-keys" = ["name"],
        "x-kubernetes-validations" = [{
            "rule": "self.all(c, (has(c.smartHosts) && size(c.smartHosts) > 0) != (has(c.dnsRouting) && c.dnsRouting))",
            "message": "each send connector needs either smartHosts or dnsRouting: true (not both)"
        }]
    ))]
    pub send_connectors: Vec<SendConnector>,

    /// Next hop for recipients in Authoritative accepted domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_delivery: Option<MailboxDelivery>,

    /// Retry and resubmit intervals (Set-TransportService). Each absent setting takes the role default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySettings>,

    /// Delay notification and message expiration time-outs. Each absent setting takes the role default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<ExpirationSettings>,

    /// ServerState wanted for every server: `Started`, `Paused` (no new connections, queued mail
    /// still delivered) or `Stopped` (no connections, no delivery). Default `Started`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<ServerStateSetting>,

    /// ServerState for single servers, by server name (`<name>-<i>`); wins over `serverState`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server_state_overrides: BTreeMap<String, ServerStateSetting>,

    /// Connectivity and protocol logs (written under the queue volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSettings>,

    /// Resolvers for MX lookups. Default: the pod's resolver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSettings>,

    /// Outbound connections each server opens at once over every next hop
    /// (MaxOutboundConnections). Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_outbound_connections: Option<u32>,

    /// Name used in the banner, EHLO and Received headers. Default
    /// `<server>.<name>-headless.<namespace>.svc.cluster.local` for each server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub fqdn: Option<String>,

    /// The receive connector `Intra` that sibling servers hand mail to (Redirect-Message when a
    /// server is drained for removal or restart). It allows relay from `remoteIPRanges`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intra_org: Option<IntraOrgSpec>,

    /// The TransportConfig (organisation settings) in this namespace. Default `{name: default}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport_config_ref: Option<TransportConfigRef>,
}

/// A receive connector as the CRD writes it: a port (and optional address) instead of a
/// socket address, and Secrets instead of files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiveConnectorSpec {
    /// Unique name: appears in logs, and in the certificate path
    /// `/etc/kube-transport/tls/<name>/`. Letters, digits, `-`, `_` and `.`.
    #[schemars(length(min = 1, max = 63), pattern(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"))]
    pub name: String,

    /// TCP port to listen on. Must differ from the admin API (8025) and `intraOrg.port`.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// IP address to listen on. Default every IPv4 address (`0.0.0.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "isIP(self)", "message": "must be an IP address"}]))]
    pub bind: Option<String>,

    #[serde(flatten)]
    pub settings: ReceiveSettings,

    /// STARTTLS certificate: a `kubernetes.io/tls` Secret (keys `tls.crt`, `tls.key`).
    /// Absent: STARTTLS is not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSecretRef>,

    /// SMTP AUTH (PLAIN, LOGIN) against a Secret of `user:password` lines; authenticated
    /// clients may relay. Offered only after STARTTLS, so it needs `tls`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSecretRef>,
}

/// A `kubernetes.io/tls` Secret in the TransportService's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// A Secret holding SMTP AUTH users, one `user:password` per line.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Key of the Secret that holds the lines. Default `users`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), pattern(r"^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
}

/// The queue volume of each server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of each server's queue volume. Default `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// StorageClass of the queue volumes. Default: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// The `Intra` receive connector that servers of one TransportService hand mail to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntraOrgSpec {
    /// Port of the `Intra` connector. Default 2527.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    /// Clients allowed to use it (it allows relay, so never empty). Default
    /// 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16 and 127.0.0.0/8.
    #[serde(default, rename = "remoteIPRanges", skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Vec<String>>", length(min = 1))]
    pub remote_ip_ranges: Option<Vec<IpNet>>,
}

/// What the operator observed: conditions `Ready`, `Progressing`, `Degraded`, and one entry per server.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransportServiceStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Servers ready / servers wanted, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_ready: Option<String>,
    /// ServerState of the servers: one name when they agree (`Started`), else each state
    /// with its count (`Started 2, Paused 1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_state: Option<String>,
    /// One entry per server, including servers being drained for removal.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub servers: Vec<ServerStatus>,
}

impl TransportServiceSpec {
    pub fn servers(&self) -> u32 {
        self.servers.unwrap_or(DEFAULT_SERVERS)
    }

    pub fn role(&self) -> Role {
        self.role.unwrap_or_default()
    }

    pub fn transport_config_name(&self) -> &str {
        self.transport_config_ref.as_ref().map(|r| r.name.as_str()).unwrap_or(DEFAULT_TRANSPORT_CONFIG)
    }

    /// The ServerState wanted for one server: its override, else `serverState`, else Started.
    pub fn server_state_for(&self, server: &str) -> ServerStateSetting {
        self.server_state_overrides.get(server).copied().or(self.server_state).unwrap_or_default()
    }

    pub fn intra_port(&self) -> u16 {
        self.intra_org.as_ref().and_then(|i| i.port).unwrap_or(DEFAULT_INTRA_PORT)
    }

    /// `intraOrg.remoteIPRanges`, or the private ranges.
    pub fn intra_ranges(&self) -> Vec<IpNet> {
        match self.intra_org.as_ref().and_then(|i| i.remote_ip_ranges.clone()) {
            Some(ranges) => ranges,
            // The defaults are constants that parse; filter_map keeps this free of unwrap.
            None => DEFAULT_INTRA_RANGES.iter().filter_map(|r| r.parse().ok()).collect(),
        }
    }
}

impl AuthSecretRef {
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or("users")
    }
}
