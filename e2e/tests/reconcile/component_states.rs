//! Maintenance through ServerComponentState objects, the PodDisruptionBudget and node
//! drains, against the real API server and the fake admin API (see `harness`).
use crate::harness::{condition, scs, Harness};
use k8s_openapi::api::core::v1::{Node, NodeSpec, Pod, Taint};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use operator::crd::ServerComponentState;
use serde_json::json;
use std::time::Duration;
use transport::config::{Component, ComponentState, Requester};

const FINALIZER: &str = "kubetransport.io/component-state";

/// One polling pass as the driver does it: the service (its files), the pods, the request.
async fn pass(h: &Harness, service: &str, request: &str) -> Option<Action> {
    h.reconcile(service).await;
    h.kubelet().await;
    match h.scs(request).await {
        Some(_) => Some(h.reconcile_scs(request).await),
        None => None,
    }
}

fn maintenance(server: &str, state: ComponentState) -> ServerComponentState {
    scs(&format!("{server}-maintenance"), "mail", server, Component::HubTransport, Requester::Maintenance, state)
}

fn file_components(h_data: &std::collections::BTreeMap<String, String>, server: &str) -> serde_yaml::Value {
    let file: serde_yaml::Value = serde_yaml::from_str(&h_data[&format!("{server}.yaml")]).unwrap();
    file.get("components").cloned().unwrap_or(serde_yaml::Value::Null)
}

#[tokio::test]
async fn an_inactive_request_reaches_the_pod_and_its_file_and_status_shows_what_the_server_confirms() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.create_scs(maintenance("mail-1", ComponentState::Inactive)).await;

    // The request alone: pushed to the pod at once, before the file is written.
    h.reconcile_scs("mail-1-maintenance").await;
    assert_eq!(h.admin.wish("mail-1", Component::HubTransport, Requester::Maintenance), Some(ComponentState::Inactive));
    assert_eq!(h.admin.effective("mail-1", Component::HubTransport), Some(ComponentState::Inactive));
    assert_eq!(h.admin.wish("mail-0", Component::HubTransport, Requester::Maintenance), None, "aimed at mail-1 only");
    let obj = h.scs("mail-1-maintenance").await.unwrap();
    assert_eq!(obj.finalizers(), [FINALIZER]);
    let status = obj.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Applying"), "not in the file yet");
    assert!(ready.message.contains("ConfigMap mail-config"), "{}", ready.message);

    // The service writes the file; the request is confirmed by the pod and its file.
    pass(&h, "mail", "mail-1-maintenance").await;
    let data = h.config_map("mail").await.data.unwrap();
    assert_eq!(file_components(&data, "mail-1")["HubTransport"]["Maintenance"], "Inactive");
    let obj = h.scs("mail-1-maintenance").await.unwrap();
    let status = obj.status.unwrap();
    assert_eq!(status.observed_generation, obj.metadata.generation);
    let ready = condition(&status.conditions, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Confirmed"), "{}", ready.message);
    assert_eq!(status.requested_state, Some(ComponentState::Inactive));
    assert_eq!(status.effective_state, Some(ComponentState::Inactive));
    assert_eq!(status.server_state.as_deref(), Some("Started"));
    assert_eq!(status.messages_to_drain, Some(0));
    assert!(status.last_confirmed_time.is_some());
    let s1 = &status.servers[0];
    assert_eq!((s1.name.as_str(), s1.server_state.map(|s| s.code)), ("mail-1", Some(2)));
    assert_eq!(s1.effective_state, Some(ComponentState::Inactive));
    let drained = condition(&status.conditions, "Drained");
    assert_eq!((drained.status.as_str(), drained.reason.as_str()), ("True", "QueueEmpty"));
    assert!(h.event_reasons().await.contains(&"ComponentStateSet".to_string()));

    // The pod is not ready: the Service sends it nothing; the service's status shows why.
    let pod = h.api::<Pod>().get("mail-1").await.unwrap();
    let ready = pod.status.unwrap().conditions.unwrap().into_iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
    let ts = h.service("mail").await.status.unwrap();
    let hub = ts.servers[1].components.iter().find(|c| c.component == Component::HubTransport).unwrap();
    assert_eq!(hub.state, ComponentState::Inactive);

    // Nothing new: nothing written.
    let mark = h.writes.count();
    h.reconcile_scs("mail-1-maintenance").await;
    assert_eq!(h.writes.since(mark), Vec::<String>::new());
}

#[tokio::test]
async fn draining_with_redirect_to_hands_the_queue_over_and_drained_follows_the_queue() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.admin.set_messages("mail-1", 5);
    let mut obj = maintenance("mail-1", ComponentState::Draining);
    obj.spec.redirect_to = Some("mail-0".into());
    h.create_scs(obj).await;

    pass(&h, "mail", "mail-1-maintenance").await;
    assert_eq!(h.admin.effective("mail-1", Component::HubTransport), Some(ComponentState::Draining));
    assert_eq!(h.admin.server("mail-1").unwrap().redirects, vec!["127.0.0.1:2527"], "mail-0's Intra connector");
    assert_eq!(h.admin.server("mail-0").unwrap().redirects, Vec::<String>::new());
    let status = h.scs("mail-1-maintenance").await.unwrap().status.unwrap();
    let drained = condition(&status.conditions, "Drained");
    assert_eq!((drained.status.as_str(), drained.reason.as_str()), ("False", "MessagesQueued"));
    assert!(drained.message.contains("mail-1: 5 message(s)"), "{}", drained.message);
    assert_eq!(status.messages_to_drain, Some(5));
    assert!(h.event_reasons().await.contains(&"RedirectingQueue".to_string()));

    // Under way: not asked twice.
    pass(&h, "mail", "mail-1-maintenance").await;
    assert_eq!(h.admin.server("mail-1").unwrap().redirects.len(), 1);

    h.admin.set_messages("mail-1", 0);
    h.reconcile_scs("mail-1-maintenance").await;
    let status = h.scs("mail-1-maintenance").await.unwrap().status.unwrap();
    let drained = condition(&status.conditions, "Drained");
    assert_eq!((drained.status.as_str(), drained.reason.as_str()), ("True", "QueueEmpty"));
    assert_eq!(status.messages_to_drain, Some(0));
    assert!(h.event_reasons().await.contains(&"Drained".to_string()));
}

#[tokio::test]
async fn deleting_the_request_brings_the_requester_back_to_active_before_the_object_goes() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.create_scs(maintenance("mail-1", ComponentState::Inactive)).await;
    pass(&h, "mail", "mail-1-maintenance").await;
    pass(&h, "mail", "mail-1-maintenance").await;
    assert_eq!(h.admin.effective("mail-1", Component::HubTransport), Some(ComponentState::Inactive));

    // While the pod does not answer, the finalizer holds the object, with a growing delay.
    h.delete_scs("mail-1-maintenance").await;
    let deleting = h.scs("mail-1-maintenance").await.expect("held by its finalizer");
    assert!(deleting.metadata.deletion_timestamp.is_some());
    let saved = h.admin.servers.lock().unwrap().remove("mail-1").unwrap();
    h.reconcile("mail").await;
    let data = h.config_map("mail").await.data.unwrap();
    assert_eq!(
        file_components(&data, "mail-1")["HubTransport"]["Maintenance"],
        "Active",
        "the file withdraws the wish while the object goes"
    );
    let first = h.reconcile_scs("mail-1-maintenance").await;
    let second = h.reconcile_scs("mail-1-maintenance").await;
    assert_eq!((first, second), (Action::requeue(Duration::from_secs(1)), Action::requeue(Duration::from_secs(2))));
    let obj = h.scs("mail-1-maintenance").await.expect("still there: mail-1 has not confirmed");
    let ready = condition(&obj.status.as_ref().unwrap().conditions, "Ready").clone();
    assert_eq!(ready.reason, "Withdrawing");

    // The pod answers again: Active is pushed; the object goes once the server has also
    // loaded the file that says Active (an older file arriving later would bring the wish
    // back).
    h.admin.servers.lock().unwrap().insert("mail-1".into(), saved);
    h.reconcile_scs("mail-1-maintenance").await;
    assert_eq!(h.admin.wish("mail-1", Component::HubTransport, Requester::Maintenance), Some(ComponentState::Active));
    assert_eq!(h.admin.effective("mail-1", Component::HubTransport), Some(ComponentState::Active));
    let waiting = h.scs("mail-1-maintenance").await.expect("held until the server runs its new file");
    let message = waiting.status.unwrap().servers[0].message.clone().unwrap_or_default();
    assert!(message.contains("waiting for the server to load its file"), "{message}");
    h.kubelet().await;
    h.reconcile_scs("mail-1-maintenance").await;
    assert!(h.scs("mail-1-maintenance").await.is_none(), "finalizer removed, object gone");
    assert!(h.event_reasons().await.contains(&"ComponentStateWithdrawn".to_string()));

    // And the file forgets the requester.
    pass(&h, "mail", "none").await;
    h.reconcile("mail").await;
    let data = h.config_map("mail").await.data.unwrap();
    assert!(file_components(&data, "mail-1").is_null(), "{:?}", file_components(&data, "mail-1"));
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready").status, "True", "{:?}", status.conditions);
}

#[tokio::test]
async fn another_request_of_the_same_requester_keeps_the_wish_when_one_is_deleted() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.create_scs(maintenance("mail-1", ComponentState::Inactive)).await;
    h.create_scs(scs(
        "all-draining",
        "mail",
        "*",
        Component::HubTransport,
        Requester::Maintenance,
        ComponentState::Draining,
    ))
    .await;
    for _ in 0..2 {
        pass(&h, "mail", "mail-1-maintenance").await;
        h.reconcile_scs("all-draining").await;
    }
    assert_eq!(h.admin.effective("mail-0", Component::HubTransport), Some(ComponentState::Draining), "`*`");
    assert_eq!(h.admin.effective("mail-1", Component::HubTransport), Some(ComponentState::Inactive));

    h.delete_scs("mail-1-maintenance").await;
    pass(&h, "mail", "mail-1-maintenance").await;
    assert!(h.scs("mail-1-maintenance").await.is_none());
    assert_eq!(
        h.admin.wish("mail-1", Component::HubTransport, Requester::Maintenance),
        Some(ComponentState::Draining),
        "the `*` request of the same requester still asks Draining"
    );
    h.reconcile_scs("all-draining").await;
    let status = h.scs("all-draining").await.unwrap().status.unwrap();
    assert_eq!(status.servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["mail-0", "mail-1"]);
    assert_eq!(status.effective_state, Some(ComponentState::Draining));
}

#[tokio::test]
async fn server_wide_offline_takes_every_component_down_by_the_servers_rule() {
    let h = Harness::new().await;
    h.running("mail", 1).await;
    h.create_scs(scs(
        "off",
        "mail",
        "mail-0",
        Component::ServerWideOffline,
        Requester::Maintenance,
        ComponentState::Inactive,
    ))
    .await;
    pass(&h, "mail", "off").await;
    pass(&h, "mail", "off").await;
    assert_eq!(h.admin.effective("mail-0", Component::HubTransport), Some(ComponentState::Inactive));
    let status = h.scs("off").await.unwrap().status.unwrap();
    assert_eq!(status.effective_state, Some(ComponentState::Inactive));
    h.admin.set_messages("mail-0", 2);
    h.reconcile_scs("off").await;
    let drained = condition(&h.scs("off").await.unwrap().status.unwrap().conditions, "Drained").clone();
    assert_eq!(drained.status, "False");
    assert!(drained.message.contains("ServerWideOffline Inactive stops delivery"), "{}", drained.message);
}

#[tokio::test]
async fn requests_for_unknown_servers_or_services_are_reported_not_applied() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.create_scs(maintenance("mail-7", ComponentState::Inactive)).await;
    h.reconcile_scs("mail-7-maintenance").await;
    let ready = condition(&h.scs("mail-7-maintenance").await.unwrap().status.unwrap().conditions, "Ready").clone();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ServerNotFound"));

    let mut star = scs("star", "mail", "*", Component::HubTransport, Requester::Maintenance, ComponentState::Draining);
    star.spec.redirect_to = Some("mail-0".into());
    h.create_scs(star).await;
    h.reconcile_scs("star").await;
    let ready = condition(&h.scs("star").await.unwrap().status.unwrap().conditions, "Ready").clone();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("spec.redirectTo"), "{}", ready.message);
    assert_eq!(h.admin.wish("mail-0", Component::HubTransport, Requester::Maintenance), None, "nothing applied");

    h.create_scs(scs(
        "other",
        "edge",
        "edge-0",
        Component::HubTransport,
        Requester::Maintenance,
        ComponentState::Inactive,
    ))
    .await;
    let action = h.reconcile_scs("other").await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
    let ready = condition(&h.scs("other").await.unwrap().status.unwrap().conditions, "Ready").clone();
    assert_eq!(ready.reason, "TransportServiceNotFound");
    // A request that was never applied goes at once.
    h.delete_scs("other").await;
    h.reconcile_scs("other").await;
    assert!(h.scs("other").await.is_none());
}

#[tokio::test]
async fn the_disruption_budget_covers_every_server_not_yet_drained_for_its_node() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    let pdb = h.api::<PodDisruptionBudget>().get("mail").await.expect("PodDisruptionBudget mail");
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(0)));
    let selector = spec.selector.unwrap();
    assert_eq!(selector.match_labels.unwrap()["app.kubernetes.io/instance"], "mail");
    assert_eq!(selector.match_expressions.unwrap()[0].key, "kubetransport.io/evictable");
    assert_eq!(pdb.metadata.owner_references.unwrap()[0].name, "mail");
}

async fn node(h: &Harness, name: &str) {
    let node =
        Node { metadata: ObjectMeta { name: Some(h.node_name(name)), ..Default::default() }, ..Default::default() };
    Api::<Node>::all(h.client.clone()).create(&PostParams::default(), &node).await.expect("create Node");
}

async fn set_node_spec(h: &Harness, name: &str, spec: NodeSpec) {
    let patch = json!({"spec": spec});
    let nodes = Api::<Node>::all(h.client.clone());
    nodes.patch(&h.node_name(name), &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

fn evictable(pod: &Pod) -> bool {
    pod.labels().get("kubetransport.io/evictable").is_some_and(|v| v == "true")
}

#[tokio::test]
async fn a_cordoned_node_drains_its_server_to_a_sibling_before_the_eviction_is_let_through() {
    let h = Harness::new().await;
    h.running("mail", 3).await;
    node(&h, "n1").await;
    node(&h, "n2").await;
    for (pod, n) in [("mail-0", "n1"), ("mail-1", "n2"), ("mail-2", "n2")] {
        h.schedule(pod, n).await;
    }
    h.admin.set_messages("mail-1", 3);

    // `kubectl drain n2` cordons it first.
    set_node_spec(&h, "n2", NodeSpec { unschedulable: Some(true), ..Default::default() }).await;
    h.reconcile("mail").await;
    for s in ["mail-1", "mail-2"] {
        assert_eq!(h.admin.deployment_state(s), Some(ComponentState::Draining), "{s}");
    }
    assert_eq!(h.admin.deployment_state("mail-0"), None, "n1 is not being drained");
    assert_eq!(
        h.admin.server("mail-1").unwrap().redirects,
        vec!["127.0.0.1:2527"],
        "to mail-0, the one sibling on a node that stays"
    );
    let pods = h.pods().await;
    assert!(!evictable(&pods[1]), "mail-1 still holds mail: the budget keeps covering it");
    assert!(evictable(&pods[2]), "mail-2 is empty: its eviction may go ahead");
    let status = h.service("mail").await.status.unwrap();
    let progressing = condition(&status.conditions, "Progressing");
    assert_eq!(progressing.reason, "NodeDrain");
    assert!(progressing.message.contains("mail-1"), "{}", progressing.message);
    let m1 = status.servers[1].message.clone().unwrap();
    assert!(
        m1.contains(&format!("node {} is cordoned", h.node_name("n2"))) && m1.contains("3 message(s) left"),
        "{m1}"
    );
    let notes = h.event_notes("NodeDraining").await;
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(h.event_reasons().await.contains(&"ServerEvictable".to_string()));

    h.admin.set_messages("mail-1", 0);
    h.kubelet().await;
    h.reconcile("mail").await;
    assert!(evictable(&h.pods().await[1]), "drained: out of the budget");

    // The drain is called off: the servers drained for it had their (empty) volumes
    // released, so they start again on new ones, Active, back under the budget.
    let volumes = h.volume_uids().await;
    set_node_spec(&h, "n2", NodeSpec { unschedulable: Some(false), ..Default::default() }).await;
    h.settle("mail").await;
    let now = h.volume_uids().await;
    for s in ["mail-1", "mail-2"] {
        assert_ne!(h.admin.deployment_state(s), Some(ComponentState::Draining), "{s}");
        assert_ne!(now.get(s), volumes.get(s), "{s} runs on a new queue volume");
    }
    assert_eq!(now.get("mail-0"), volumes.get("mail-0"), "mail-0 kept its volume");
    assert!(h.pods().await.iter().all(|p| !evictable(p)));
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready").status, "True", "{:?}", status.conditions);
}

#[tokio::test]
async fn an_autoscaler_drain_taint_drains_the_server_too() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    node(&h, "n1").await;
    node(&h, "n2").await;
    h.schedule("mail-0", "n1").await;
    h.schedule("mail-1", "n2").await;
    let taint =
        Taint { key: "ToBeDeletedByClusterAutoscaler".into(), effect: "NoSchedule".into(), ..Default::default() };
    set_node_spec(&h, "n2", NodeSpec { taints: Some(vec![taint]), ..Default::default() }).await;
    h.reconcile("mail").await;
    assert_eq!(h.admin.deployment_state("mail-1"), Some(ComponentState::Draining));
    assert!(evictable(&h.pods().await[1]));
    let note = &h.event_notes("NodeDraining").await[0];
    assert!(note.contains("tainted ToBeDeletedByClusterAutoscaler"), "{note}");

    // The pod is evicted and comes back on n1, on a new (empty) queue volume: no drain.
    let volumes = h.volume_uids().await;
    h.api::<Pod>().delete("mail-1", &Default::default()).await.unwrap();
    h.kubelet().await;
    h.settle_until("mail", "mail-1 created again", |pods| pods.iter().any(|p| p.name_any() == "mail-1")).await;
    h.schedule("mail-1", "n1").await;
    h.settle("mail").await;
    assert_ne!(h.volume_uids().await.get("mail-1"), volumes.get("mail-1"), "a new queue volume");
    assert_ne!(h.admin.deployment_state("mail-1"), Some(ComponentState::Draining));
}
