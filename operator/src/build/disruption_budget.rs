//! PodDisruptionBudget `<ts>`: no voluntary eviction (`kubectl drain`, cluster autoscaler,
//! Karpenter) of a server that still holds mail. It covers every pod of the service except
//! those the operator labelled `kubetransport.io/evictable=true` (drained for the drain of
//! their node, queue empty), with `maxUnavailable: 0`; an eviction of a covered pod is
//! refused (429) and retried by the drainer, and the operator, which watches Nodes, drains
//! the server (HubTransport Draining, queue redirected to a sibling on another node) and
//! then labels the pod, which lets the eviction through. The operator's own restarts and
//! removals delete pods directly after draining them, so the budget never holds them back.
use super::owner_references;
use crate::crd::TransportService;
use crate::names;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::ObjectMeta;

pub fn disruption_budget(ts: &TransportService) -> PodDisruptionBudget {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    PodDisruptionBudget {
        metadata: ObjectMeta {
            name: Some(names::disruption_budget_name(name)),
            namespace: ts.metadata.namespace.clone(),
            labels: Some(names::service_labels(name)),
            owner_references: owner_references(ts),
            ..Default::default()
        },
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(0)),
            selector: Some(LabelSelector {
                match_labels: Some(names::pod_selector(name)),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: names::LABEL_EVICTABLE.to_string(),
                    operator: "DoesNotExist".to_string(),
                    values: None,
                }]),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::service;

    #[test]
    fn covers_every_server_not_yet_drained_for_its_node() {
        let pdb = disruption_budget(&service("mail", 3));
        assert_eq!(pdb.metadata.name.as_deref(), Some("mail"));
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(spec.min_available, None);
        let selector = spec.selector.unwrap();
        assert_eq!(selector.match_labels.unwrap(), names::pod_selector("mail"));
        let exprs = selector.match_expressions.unwrap();
        assert_eq!((exprs[0].key.as_str(), exprs[0].operator.as_str()), ("kubetransport.io/evictable", "DoesNotExist"));
        assert_eq!(pdb.metadata.owner_references.unwrap()[0].kind, "TransportService");
    }
}
