//! The servers of a TransportService as the plugin sees them: each server's name and the
//! state of its pod, from the pods (selected by the labels of crate::names) and the
//! servers the TransportService's status lists. Pure: the Kubernetes reads are in
//! [`super::session`].
use super::error::PluginError;
use crate::crd::TransportService;
use crate::names;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde::Serialize;

/// One server and its pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Server {
    pub name: String,
    /// Absent while the server has no pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodState>,
}

/// What a pod's status says about reaching the server in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodState {
    /// `Pending`, `Running`, ...
    pub phase: String,
    /// Ready: it takes connections through the Service (a draining server is not Ready,
    /// and still answers its admin API).
    pub ready: bool,
    /// Being deleted.
    pub terminating: bool,
}

impl PodState {
    pub fn of(pod: &Pod) -> PodState {
        let status = pod.status.as_ref();
        PodState {
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_else(|| "Unknown".into()),
            ready: status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
            terminating: pod.metadata.deletion_timestamp.is_some(),
        }
    }

    /// `Running, Ready`, `Running, not Ready, terminating`: how a row or an error names it.
    pub fn describe(&self) -> String {
        let mut text = format!("{}, {}", self.phase, if self.ready { "Ready" } else { "not Ready" });
        if self.terminating {
            text.push_str(", terminating");
        }
        text
    }
}

impl Server {
    /// Ok when its admin API can be asked: the pod runs (Ready or not).
    pub fn reachable(&self) -> Result<&PodState, PluginError> {
        match &self.pod {
            None => Err(PluginError::NoPod { server: self.name.clone() }),
            Some(p) if p.phase != "Running" => {
                Err(PluginError::PodNotRunning { server: self.name.clone(), phase: p.phase.clone() })
            }
            Some(p) => Ok(p),
        }
    }
}

/// The servers of `ts`: those it wants (`spec.servers`), those its status lists (a server
/// being drained for removal), and those with a pod; in index order. `only` keeps one, and
/// is refused when it is none of them.
pub fn servers_of(ts: &TransportService, pods: &[Pod], only: Option<&str>) -> Result<Vec<Server>, PluginError> {
    let service = ts.name_any();
    let mut indexes: Vec<u32> = (0..ts.spec.servers()).collect();
    let status_names = ts.status.iter().flat_map(|s| s.servers.iter().map(|e| e.name.as_str()));
    let pod_names = pods.iter().filter_map(|p| p.metadata.name.as_deref());
    indexes.extend(status_names.chain(pod_names).filter_map(|n| names::server_index(&service, n)));
    indexes.sort_unstable();
    indexes.dedup();
    let servers: Vec<Server> = indexes
        .into_iter()
        .map(|i| {
            let name = names::server_name(&service, i);
            let pod = pods.iter().find(|p| p.metadata.name.as_deref() == Some(name.as_str())).map(PodState::of);
            Server { name, pod }
        })
        .collect();
    match only {
        None => Ok(servers),
        Some(one) => match servers.iter().find(|s| s.name == one) {
            Some(s) => Ok(vec![s.clone()]),
            None => Err(PluginError::NoSuchServer { server: one.to_string(), service, known: known(&servers) }),
        },
    }
}

/// `mail-0, mail-1` (or `none`).
pub fn known(servers: &[Server]) -> String {
    if servers.is_empty() {
        return "none".into();
    }
    servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::crd::{ServerStatus, TransportServiceStatus};

    pub(crate) fn pod(name: &str, phase: &str, ready: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    pub(crate) fn service(servers: u32, listed: &[&str]) -> TransportService {
        let mut ts =
            TransportService::new("mail", serde_json::from_value(serde_json::json!({"servers": servers})).unwrap());
        ts.status = Some(TransportServiceStatus {
            servers: listed.iter().map(|n| ServerStatus { name: n.to_string(), ..Default::default() }).collect(),
            ..Default::default()
        });
        ts
    }

    #[test]
    fn wanted_listed_and_running_servers_in_index_order() {
        let ts = service(2, &["mail-0", "mail-1", "mail-10"]);
        let pods =
            vec![pod("mail-1", "Running", false), pod("mail-0", "Running", true), pod("mailer-0", "Running", true)];
        let servers = servers_of(&ts, &pods, None).unwrap();
        let names: Vec<&str> = servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mail-0", "mail-1", "mail-10"]);
        assert_eq!(servers[1].pod.as_ref().unwrap().describe(), "Running, not Ready");
        assert!(servers[1].reachable().is_ok(), "a draining (not Ready) server still answers its admin API");
        assert_eq!(
            servers[2].reachable().unwrap_err().to_string(),
            "server mail-10 cannot be reached: it has no pod (the operator creates it; `kubectl transport status` says why not)"
        );
        let pending = servers_of(&ts, &[pod("mail-0", "Pending", false)], Some("mail-0")).unwrap();
        assert!(matches!(pending[0].reachable(), Err(PluginError::PodNotRunning { .. })));
    }

    #[test]
    fn one_server_or_a_clear_refusal() {
        let ts = service(2, &[]);
        assert_eq!(servers_of(&ts, &[], Some("mail-1")).unwrap().len(), 1);
        let e = servers_of(&ts, &[], Some("mail-7")).unwrap_err();
        assert_eq!(e.to_string(), "mail-7 is not a server of TransportService mail (its servers: mail-0, mail-1)");
    }
}
