//! Names, labels, annotations, ports and paths of the objects made for a TransportService.
//! These are part of the product's interface (scripts select pods by these labels).
use std::collections::BTreeMap;

/// The one field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "kube-transport";
/// Field manager of what `kubectl transport` applies for a user (a maintenance request).
pub const PLUGIN_FIELD_MANAGER: &str = "kubectl-transport";

pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_SERVER: &str = "kubetransport.io/server";
pub const APP_NAME: &str = "kube-transport";
pub const MANAGED_BY: &str = "kube-transport-operator";

/// On a pod: revision of the configuration it was created with.
pub const ANNOTATION_CONFIG_REVISION: &str = "kubetransport.io/config-revision";
/// On a pod: hash of what only a restart applies (pod spec, listen addresses); a different
/// hash means the server must be drained and restarted.
pub const ANNOTATION_RESTART_HASH: &str = "kubetransport.io/restart-hash";
/// On a queue PVC: the server was drained for removal, the volume may go.
pub const ANNOTATION_DRAINED: &str = "kubetransport.io/drained";
/// Prefix of the ConfigMap annotations `config.kubetransport.io/<server>: <revision>`.
pub const CONFIG_REVISION_PREFIX: &str = "config.kubetransport.io/";
/// On a pod: its server was drained for the drain of its node and holds no message any
/// more; the PodDisruptionBudget no longer covers it, so the eviction may go ahead.
pub const LABEL_EVICTABLE: &str = "kubetransport.io/evictable";
/// Finalizer of ServerComponentState objects: deleting one sets its requester back to
/// Active on the servers (and in their files) before the object goes.
pub const COMPONENT_STATE_FINALIZER: &str = "kubetransport.io/component-state";
/// Node taints that announce a drain (CloudNativePG's list): the operator drains the
/// servers on such a node, as it does on a cordoned (`spec.unschedulable`) one.
pub const DRAIN_TAINTS: [&str; 4] = [
    "node.kubernetes.io/unschedulable",
    "ToBeDeletedByClusterAutoscaler",
    "karpenter.sh/disrupted",
    "karpenter.sh/disruption",
];

/// Admin API port of every server (docs/design.md §8).
pub const ADMIN_PORT: u16 = 8025;

pub const CONFIG_DIR: &str = "/etc/kube-transport/config";
pub const ADMIN_DIR: &str = "/etc/kube-transport/admin";
pub const TLS_DIR: &str = "/etc/kube-transport/tls";
/// Where `spec.projectedVolumeTemplate` is mounted (read-only).
pub const PROJECTED_DIR: &str = "/projected";
pub const AUTH_DIR: &str = "/etc/kube-transport/auth";
pub const DATA_DIR: &str = "/var/lib/kube-transport";
pub const QUEUE_DIR: &str = "/var/lib/kube-transport/queue";
pub const LOG_DIR: &str = "/var/lib/kube-transport/log";
pub const REPLAY_DIR: &str = "/var/lib/kube-transport/replay";
pub const TOKEN_FILE: &str = "/etc/kube-transport/admin/token";
/// Key of the token in the admin Secret.
pub const TOKEN_KEY: &str = "token";
/// Key of the peers' shadow-channel credential in the same Secret, and its file.
pub const SHADOW_TOKEN_KEY: &str = "shadow-token";
pub const SHADOW_TOKEN_FILE: &str = "/etc/kube-transport/admin/shadow-token";
/// Port of the shadow channel between the servers of a TransportService.
pub const SHADOW_PORT: u16 = 2528;

/// Image used when `spec.image` is absent: the transport server of this operator's release.
pub const DEFAULT_IMAGE: &str = concat!("ghcr.io/kube-transport/transport:", env!("CARGO_PKG_VERSION"));

/// Server `i` of TransportService `ts` (also its pod name).
pub fn server_name(ts: &str, index: u32) -> String {
    format!("{ts}-{index}")
}

/// Index of a server of `ts` from its name, if it is one (`mail-2` → 2).
pub fn server_index(ts: &str, server: &str) -> Option<u32> {
    let digits = server.strip_prefix(ts)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

pub fn config_map_name(ts: &str) -> String {
    format!("{ts}-config")
}

pub fn admin_secret_name(ts: &str) -> String {
    format!("{ts}-admin-token")
}

/// The ServerComponentState that puts `server` into maintenance (HubTransport Draining by
/// Maintenance): what `kubectl transport maintenance start` applies and
/// examples/maintenance/ holds.
pub fn maintenance_name(server: &str) -> String {
    format!("{server}-maintenance")
}

/// The TransportService a server name belongs to: everything before its last `-<index>`
/// (`mail-edge-1` → `mail-edge`).
pub fn service_of_server(server: &str) -> Option<&str> {
    let (service, _) = server.rsplit_once('-')?;
    server_index(service, server).map(|_| service).filter(|s| !s.is_empty())
}

pub fn headless_service_name(ts: &str) -> String {
    format!("{ts}-headless")
}

/// The PodDisruptionBudget of a TransportService.
pub fn disruption_budget_name(ts: &str) -> String {
    ts.to_string()
}

pub fn pvc_name(server: &str) -> String {
    format!("{server}-queue")
}

/// Key of a server's file in the ConfigMap.
pub fn config_key(server: &str) -> String {
    format!("{server}.yaml")
}

/// Path of a server's file inside its pod.
pub fn config_path(server: &str) -> String {
    format!("{CONFIG_DIR}/{}", config_key(server))
}

pub fn config_revision_annotation(server: &str) -> String {
    format!("{CONFIG_REVISION_PREFIX}{server}")
}

/// `<server>.<ts>-headless.<namespace>.svc.cluster.local`: the pod's own DNS name
/// (hostname + subdomain on the headless Service).
pub fn default_fqdn(ts: &str, server: &str, namespace: &str) -> String {
    format!("{server}.{}.{namespace}.svc.cluster.local", headless_service_name(ts))
}

/// Labels every object of a TransportService carries.
pub fn service_labels(ts: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), APP_NAME.to_string()),
        (LABEL_INSTANCE.to_string(), ts.to_string()),
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
    ])
}

/// Labels of one server's pod and volume.
pub fn server_labels(ts: &str, server: &str) -> BTreeMap<String, String> {
    let mut labels = service_labels(ts);
    labels.insert(LABEL_SERVER.to_string(), server.to_string());
    labels
}

/// Selects the pods of a TransportService.
pub fn pod_selector(ts: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_NAME.to_string(), APP_NAME.to_string()), (LABEL_INSTANCE.to_string(), ts.to_string())])
}

/// `pod_selector` as a label selector string for list calls.
pub fn pod_selector_string(ts: &str) -> String {
    pod_selector(ts).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Container and Service port names: IANA service names (at most 15 characters, lower-case
/// letters, digits and single hyphens), so connectors are named by position.
pub fn smtp_port_name(index: usize) -> String {
    format!("smtp-{index}")
}

pub const INTRA_PORT_NAME: &str = "intra";
pub const ADMIN_PORT_NAME: &str = "admin";
pub const SHADOW_PORT_NAME: &str = "shadow";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_index_parses_only_this_services_servers() {
        assert_eq!(server_index("mail", "mail-0"), Some(0));
        assert_eq!(server_index("mail", "mail-12"), Some(12));
        assert_eq!(server_index("mail", "mail-01"), None);
        assert_eq!(server_index("mail", "mail-x"), None);
        assert_eq!(server_index("mail", "mailer-1"), None);
        assert_eq!(server_index("mail", "mail-"), None);
        assert_eq!(server_index("mail-edge", "mail-edge-3"), Some(3));
    }

    #[test]
    fn a_server_names_its_service() {
        assert_eq!(service_of_server("mail-1"), Some("mail"));
        assert_eq!(service_of_server("mail-edge-12"), Some("mail-edge"));
        assert_eq!(service_of_server("mail-01"), None);
        assert_eq!(service_of_server("mail"), None);
        assert_eq!(service_of_server("-1"), None);
        assert_eq!(maintenance_name("mail-1"), "mail-1-maintenance");
    }

    #[test]
    fn fqdn_is_the_pods_headless_dns_name() {
        assert_eq!(default_fqdn("mail", "mail-1", "prod"), "mail-1.mail-headless.prod.svc.cluster.local");
    }
}
