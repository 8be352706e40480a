//! The TransportService and TransportConfig reconcilers, one reconcile at a time, against
//! the real API server and a fake admin API on 127.0.0.1 (see `harness`).
use crate::harness::{condition, service, started, Harness};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use operator::crd::{TransportConfig, TransportConfigRef, TransportService};
use std::collections::BTreeMap;
use transport::api::ServerStateName;
use transport::config::{ComponentState, RetrySettings, ServerStateSetting};

fn owned_by(obj: &impl ResourceExt, service: &TransportService) -> bool {
    obj.owner_references().iter().any(|o| {
        o.kind == "TransportService"
            && o.name == service.name_any()
            && o.uid == service.uid().unwrap()
            && o.controller == Some(true)
    })
}

#[tokio::test]
async fn creates_every_object_from_nothing() {
    let h = Harness::new().await;
    h.create_config("default").await;
    let ts = h.create_service(service("mail", 3)).await;
    h.reconcile("mail").await;

    let cm = h.config_map("mail").await;
    let data = cm.data.clone().unwrap();
    assert_eq!(data.keys().cloned().collect::<Vec<_>>(), vec!["mail-0.yaml", "mail-1.yaml", "mail-2.yaml"]);
    let file: serde_yaml::Value = serde_yaml::from_str(&data["mail-1.yaml"]).unwrap();
    assert_eq!(file["serverName"], "mail-1");
    assert_eq!(file["fqdn"], format!("mail-1.mail-headless.{}.svc.cluster.local", h.ns));
    assert_eq!(file["transportConfig"]["postmaster"], "postmaster@example.com");
    let annotations = cm.annotations();
    assert_eq!(annotations["config.kubetransport.io/mail-1"], transport::config::revision(&data["mail-1.yaml"]));

    let secret = h.api::<Secret>().get("mail-admin-token").await.unwrap();
    assert!(secret.data.unwrap()["token"].0.len() >= 32);

    let services: Vec<String> =
        h.api::<Service>().list(&ListParams::default()).await.unwrap().items.iter().map(|s| s.name_any()).collect();
    assert!(services.contains(&"mail".to_string()) && services.contains(&"mail-headless".to_string()), "{services:?}");

    assert_eq!(h.pod_names().await, vec!["mail-0", "mail-1", "mail-2"]);
    let pvcs: Vec<String> = h
        .api::<PersistentVolumeClaim>()
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(pvcs.len(), 3);
    assert!(pvcs.contains(&"mail-2-queue".to_string()));

    for pod in h.pods().await {
        assert!(owned_by(&pod, &ts), "{} has no controller owner reference", pod.name_any());
    }
    assert!(owned_by(&cm, &ts));
    let volume = h.api::<PersistentVolumeClaim>().get("mail-0-queue").await.unwrap();
    assert!(volume.owner_references().is_empty(), "a queue volume outlives its TransportService");

    let status = h.service("mail").await.status.unwrap();
    assert_eq!(status.observed_generation, ts.metadata.generation);
    assert_eq!(status.servers_ready.as_deref(), Some("0/3"));
    assert_eq!(condition(&status.conditions, "Ready").status, "False");
    assert_eq!(condition(&status.conditions, "Progressing").reason, "ServersStarting");
    assert_eq!(h.event_reasons().await.iter().filter(|r| *r == "ServerCreated").count(), 3);
}

#[tokio::test]
async fn a_second_reconcile_with_nothing_changed_writes_nothing() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    let mark = h.writes.count();
    h.reconcile("mail").await;
    assert_eq!(h.writes.since(mark), Vec::<String>::new(), "an idle reconcile must not write");
    // And the admin API was used with the Secret's token.
    let secret = h.api::<Secret>().get("mail-admin-token").await.unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    let seen = h.admin.server("mail-0").unwrap().tokens;
    assert!(!seen.is_empty() && seen.iter().all(|t| t.as_deref() == Some(token.as_str())), "{seen:?}");
}

#[tokio::test]
async fn status_reports_each_servers_state_from_its_admin_api() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(status.servers_ready.as_deref(), Some("2/2"));
    assert_eq!(status.server_state.as_deref(), Some("Started"));
    let s0 = &status.servers[0];
    assert_eq!((s0.name.as_str(), s0.ready, s0.server_state), ("mail-0", true, Some(started())));
    assert_eq!(s0.server_state.unwrap().code, 2);
    assert_eq!(s0.config_revision, s0.desired_config_revision);
    assert_eq!(s0.pod_phase.as_deref(), Some("Running"));

    h.admin.edit("mail-1", |s| {
        s.info.totals.messages = 7;
        s.info.totals.in_retry = 3;
    });
    // Counters alone are written at most every 10 s: right after a write, the reconcile
    // comes back for them instead.
    let mark = h.writes.count();
    h.reconcile("mail").await;
    assert_eq!(h.writes.since(mark), Vec::<String>::new(), "counters alone so soon after a write");
    h.counters_due();
    h.reconcile("mail").await;
    let status = h.service("mail").await.status.unwrap();
    let totals = status.servers[1].queue_totals.unwrap();
    assert_eq!((totals.messages, totals.in_retry), (7, 3));
}

#[tokio::test]
async fn paused_server_is_degraded_with_how_to_start_it_and_stopped_warns() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.edit_spec("mail", |ts| {
        ts.spec.server_state_overrides.insert("mail-1".into(), ServerStateSetting::Paused);
    })
    .await;
    h.reconcile("mail").await;
    assert_eq!(
        h.admin.server("mail-1").unwrap().info.server_state.name,
        ServerStateName::Paused,
        "state pushed to the server"
    );
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(status.server_state.as_deref(), Some("Started 1, Paused 1"));
    assert_eq!(status.servers[1].server_state.map(|s| s.code), Some(6));
    let degraded = condition(&status.conditions, "Degraded");
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "ServerPaused"));
    assert!(degraded.message.contains("spec.serverState: Started"), "{}", degraded.message);
    assert_eq!(condition(&status.conditions, "Ready").reason, "ServerPaused");

    h.edit_spec("mail", |ts| {
        ts.spec.server_state_overrides.insert("mail-1".into(), ServerStateSetting::Stopped);
    })
    .await;
    h.reconcile("mail").await;
    let status = h.service("mail").await.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "ServerStopped"));
    assert_eq!(condition(&status.conditions, "Degraded").status, "False", "Stopped is a warning, not an error");
    let events: Api<k8s_openapi::api::events::v1::Event> = h.api();
    let stopped: Vec<_> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ServerStopped"))
        .collect();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0].type_.as_deref(), Some("Warning"));
    assert!(stopped[0].note.as_deref().unwrap().contains("Stopped (4)"));
}

#[tokio::test]
async fn a_reloadable_change_updates_only_the_config_map() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    let uids: Vec<_> = h.pods().await.iter().map(|p| p.uid()).collect();
    let before = h.config_map("mail").await.annotations().clone();

    h.edit_spec("mail", |ts| {
        ts.spec.retry = Some(RetrySettings { poison_threshold: Some(3), ..Default::default() });
    })
    .await;
    let mark = h.writes.count();
    h.reconcile("mail").await;
    let writes = h.writes.since(mark);
    assert!(writes.iter().all(|w| !w.contains("Pod/") && !w.starts_with("delete")), "{writes:?}");
    let cm = h.config_map("mail").await;
    assert_ne!(cm.annotations()["config.kubetransport.io/mail-0"], before["config.kubetransport.io/mail-0"]);
    assert!(cm.data.unwrap()["mail-0.yaml"].contains("poisonThreshold: 3"));
    assert_eq!(h.pods().await.iter().map(|p| p.uid()).collect::<Vec<_>>(), uids, "no pod restarted");
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Progressing").reason, "ConfigPending");
    assert!(h.event_reasons().await.contains(&"ConfigUpdated".to_string()));

    // The pods reload their files.
    h.kubelet().await;
    h.reconcile("mail").await;
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready").status, "True");
    assert_eq!(status.observed_generation, h.service("mail").await.metadata.generation);
}

#[tokio::test]
async fn a_port_change_rolls_the_servers_one_at_a_time_each_drained_first() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.admin.set_messages("mail-0", 5);
    h.edit_spec("mail", |ts| ts.spec.receive_connectors[0].port = 2600).await;

    // mail-0 first: drained, its queue redirected to mail-1's Intra connector; not deleted yet.
    h.reconcile("mail").await;
    assert_eq!(h.admin.deployment_state("mail-0"), Some(ComponentState::Draining));
    assert_eq!(h.admin.deployment_state("mail-1"), None, "one server at a time");
    assert_eq!(h.admin.server("mail-0").unwrap().redirects, vec!["127.0.0.1:2527"]);
    assert_eq!(h.pod_names().await, vec!["mail-0", "mail-1"]);
    assert_eq!(h.event_reasons().await.iter().filter(|r| *r == "ConfigChangeRequiresRestart").count(), 1);
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Progressing").reason, "RollingRestart");

    // Queue empty: the pod goes, and comes back with the new port.
    h.admin.set_messages("mail-0", 0);
    h.kubelet().await;
    h.reconcile("mail").await;
    assert_eq!(h.pod_names().await, vec!["mail-1"]);
    h.reconcile("mail").await;
    let pods = h.pods().await;
    assert_eq!(pods.len(), 2);
    let port = |p: &Pod| p.spec.as_ref().unwrap().containers[0].ports.as_ref().unwrap()[0].container_port;
    assert_eq!((port(&pods[0]), port(&pods[1])), (2600, 2525));
    // mail-1 waits until the new mail-0 is Ready.
    h.reconcile("mail").await;
    assert_eq!(h.admin.deployment_state("mail-1"), None);
    // The new process of mail-0 comes back drained (its wishes are on its volume): the
    // operator ends that drain, and mail-1 still waits for mail-0 to be Ready.
    h.kubelet().await;
    assert_eq!(h.admin.deployment_state("mail-0"), Some(ComponentState::Draining));
    h.reconcile("mail").await;
    assert_eq!(h.admin.deployment_state("mail-0"), Some(ComponentState::Active));
    assert_eq!(h.admin.deployment_state("mail-1"), None);

    h.kubelet().await;
    h.reconcile("mail").await;
    assert_eq!(h.admin.deployment_state("mail-1"), Some(ComponentState::Draining));
    assert_eq!(h.pod_names().await, vec!["mail-0"], "empty queue: deleted at once");
    h.reconcile("mail").await;
    h.kubelet().await;
    h.reconcile("mail").await;
    h.kubelet().await;
    h.reconcile("mail").await;
    let pods = h.pods().await;
    assert_eq!((port(&pods[0]), port(&pods[1])), (2600, 2600));
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready").status, "True", "{:?}", status.conditions);
    assert_eq!(h.event_reasons().await.iter().filter(|r| *r == "ConfigChangeRequiresRestart").count(), 2);
    let notes = h.event_notes("ConfigChangeRequiresRestart").await;
    assert!(notes.iter().all(|n| n.contains("a receive connector's port changed")), "{notes:?}");
    assert!(notes.iter().any(|n| n.contains("mail-0")) && notes.iter().any(|n| n.contains("mail-1")), "{notes:?}");
}

#[tokio::test]
async fn scaling_up_creates_the_new_servers() {
    let h = Harness::new().await;
    h.running("mail", 1).await;
    h.edit_spec("mail", |ts| ts.spec.servers = Some(3)).await;
    h.reconcile("mail").await;
    assert_eq!(h.pod_names().await, vec!["mail-0", "mail-1", "mail-2"]);
    assert_eq!(h.config_map("mail").await.data.unwrap().len(), 3);
    h.kubelet().await;
    h.reconcile("mail").await;
    assert_eq!(h.service("mail").await.status.unwrap().servers_ready.as_deref(), Some("3/3"));
}

#[tokio::test]
async fn scaling_down_drains_redirects_and_removes_only_an_empty_server() {
    let h = Harness::new().await;
    h.running("mail", 3).await;
    h.admin.set_messages("mail-2", 4);
    h.edit_spec("mail", |ts| ts.spec.servers = Some(2)).await;

    h.reconcile("mail").await;
    assert_eq!(h.admin.deployment_state("mail-2"), Some(ComponentState::Draining));
    assert_eq!(h.admin.server("mail-2").unwrap().redirects, vec!["127.0.0.1:2527"]);
    assert_eq!(h.pod_names().await, vec!["mail-0", "mail-1", "mail-2"], "not removed while its queue holds mail");
    assert!(h.api::<PersistentVolumeClaim>().get_opt("mail-2-queue").await.unwrap().is_some());
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Progressing").reason, "ScalingDown");
    assert_eq!(status.servers_ready.as_deref(), Some("2/2"));
    let entry = status.servers.iter().find(|s| s.name == "mail-2").unwrap();
    assert!(entry.message.as_deref().unwrap().contains("4 message(s) left"), "{:?}", entry.message);

    h.kubelet().await;
    h.reconcile("mail").await;
    assert_eq!(h.pod_names().await.len(), 3, "still holding mail");
    assert_eq!(h.admin.server("mail-2").unwrap().redirects.len(), 1, "one redirect while it is under way");

    // Drained, but mail-1 still holds shadow copies of its messages: they would be
    // delivered a second time once mail-2 is gone. The operator waits for mail-1 to let go.
    h.admin.edit("mail-1", |s| {
        s.shadow_copies.insert("mail-2".into(), 3);
    });
    h.admin.set_messages("mail-2", 0);
    h.reconcile("mail").await;
    assert_eq!(h.pod_names().await.len(), 3, "not removed while a peer holds copies of its mail");
    let status = h.service("mail").await.status.unwrap();
    let entry = status.servers.iter().find(|s| s.name == "mail-2").unwrap();
    let note = entry.message.as_deref().unwrap_or_default();
    assert!(note.contains("mail-1 still holds 3 shadow copies"), "{note}");

    h.admin.edit("mail-1", |s| {
        s.shadow_copies.remove("mail-2");
    });
    h.reconcile("mail").await;
    assert_eq!(h.pod_names().await, vec!["mail-0", "mail-1"]);
    // Deleted; the PVC protection (kube-controller-manager) lets it go once no pod uses it.
    h.wait_gone::<PersistentVolumeClaim>("mail-2-queue").await;
    assert!(h.event_reasons().await.contains(&"ServerRemoved".to_string()));

    // The others drop mail-2 from their shadow peers (listed as leaving until now): a
    // reload, once the files reach them.
    h.kubelet().await;
    h.reconcile("mail").await;
    h.kubelet().await;
    h.reconcile("mail").await;
    let cm = h.config_map("mail").await;
    assert_eq!(cm.data.clone().unwrap().keys().cloned().collect::<Vec<_>>(), vec!["mail-0.yaml", "mail-1.yaml"]);
    assert!(!cm.annotations().contains_key("config.kubetransport.io/mail-2"));
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(status.servers.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), vec!["mail-0", "mail-1"]);
    assert_eq!(condition(&status.conditions, "Ready").status, "True");
    let mark = h.writes.count();
    h.reconcile("mail").await;
    assert_eq!(h.writes.since(mark), Vec::<String>::new());
}

#[tokio::test]
async fn a_missing_transport_config_is_a_condition_and_a_requeue() {
    let h = Harness::new().await;
    let mut ts = service("mail", 1);
    ts.spec.transport_config_ref = Some(TransportConfigRef { name: "org".into() });
    h.create_service(ts).await;
    let action = h.reconcile("mail").await;
    assert_eq!(action, kube::runtime::controller::Action::requeue(std::time::Duration::from_secs(30)));
    assert!(h.pods().await.is_empty());
    let status = h.service("mail").await.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "TransportConfigNotFound"));
    assert!(ready.message.contains("TransportConfig org"), "{}", ready.message);
    assert!(h.event_reasons().await.contains(&"TransportConfigNotFound".to_string()));

    h.create_config("org").await;
    h.reconcile("mail").await;
    assert_eq!(h.pod_names().await, vec!["mail-0"]);
}

/// A spec the CRD schema lets through (the API server refuses what it can check itself)
/// but the operator's checks refuse: a receive connector on the admin API's port.
#[tokio::test]
async fn an_invalid_spec_is_reported_naming_the_field_and_nothing_is_applied() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    let cm_before = h.config_map("mail").await;
    h.edit_spec("mail", |ts| {
        ts.spec.receive_connectors[0].port = 8025;
        ts.spec.servers = Some(4);
    })
    .await;
    let mark = h.writes.count();
    h.reconcile("mail").await;
    let writes = h.writes.since(mark);
    assert!(
        writes.iter().all(|w| w.starts_with("patch-status TransportService/") || w.starts_with("create Event/")),
        "only status and an Event may be written: {writes:?}"
    );
    assert_eq!(h.config_map("mail").await.data, cm_before.data, "the servers keep their last good configuration");
    assert_eq!(h.pod_names().await.len(), 2, "no scale-up from an invalid spec");
    let status = h.service("mail").await.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "InvalidSpec"));
    assert!(ready.message.contains("spec.receiveConnectors[0].port"), "{}", ready.message);
    assert_eq!(condition(&status.conditions, "Degraded").reason, "InvalidSpec");
    assert_eq!(status.observed_generation, h.service("mail").await.metadata.generation);
}

#[tokio::test]
async fn a_cluster_rule_violation_names_the_field() {
    let h = Harness::new().await;
    h.create_config("default").await;
    let mut ts = service("mail", 1);
    ts.spec.receive_connectors[0].port = 8025;
    h.create_service(ts).await;
    h.reconcile("mail").await;
    assert!(h.pods().await.is_empty());
    let status = h.service("mail").await.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(
        ready.message.contains("spec.receiveConnectors[0].port: 8025 is the admin API's port"),
        "{}",
        ready.message
    );
}

#[tokio::test]
async fn the_admin_token_is_generated_once_and_never_rotated() {
    let h = Harness::new().await;
    h.running("mail", 1).await;
    let token = h.api::<Secret>().get("mail-admin-token").await.unwrap().data.unwrap()["token"].clone();
    h.edit_spec("mail", |ts| ts.spec.servers = Some(2)).await;
    h.reconcile("mail").await;
    h.reconcile("mail").await;
    assert_eq!(h.api::<Secret>().get("mail-admin-token").await.unwrap().data.unwrap()["token"], token);
}

#[tokio::test]
async fn transport_config_changes_reach_every_server_and_its_status_lists_the_services() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.create_service(service("edge", 1)).await;
    h.reconcile("edge").await;
    h.kubelet().await;
    h.reconcile("edge").await;
    h.reconcile_config("default").await;

    let tc = h.api::<TransportConfig>().get("default").await.unwrap();
    let status = tc.status.unwrap();
    let services: BTreeMap<String, Vec<(String, Option<ServerStateName>)>> = status
        .services
        .iter()
        .map(|u| (u.name.clone(), u.servers.iter().map(|s| (s.name.clone(), s.server_state.map(|x| x.name))).collect()))
        .collect();
    assert_eq!(
        services,
        BTreeMap::from([
            ("edge".into(), vec![("edge-0".into(), Some(ServerStateName::Started))]),
            (
                "mail".into(),
                vec![
                    ("mail-0".into(), Some(ServerStateName::Started)),
                    ("mail-1".into(), Some(ServerStateName::Started))
                ]
            ),
        ])
    );
    assert_eq!(status.server_state.as_deref(), Some("Started"));
    assert_eq!(status.servers_ready.as_deref(), Some("3/3"));
    assert_eq!(condition(&status.conditions, "Ready").status, "True");

    // A new setting reaches every server's file through one pass over every object.
    let mut tc = h.api::<TransportConfig>().get("default").await.unwrap();
    tc.spec.settings.max_recipient_envelope_limit = Some(100);
    h.api::<TransportConfig>().replace("default", &Default::default(), &tc).await.unwrap();
    assert_eq!(h.reconcile_all().await, 3);
    for (service, server) in [("mail", "mail-1"), ("edge", "edge-0")] {
        let data = h.config_map(service).await.data.unwrap();
        assert!(data[&format!("{server}.yaml")].contains("maxRecipientEnvelopeLimit: 100"), "{service}");
    }
}

#[tokio::test]
async fn component_states_from_server_component_state_objects_land_in_the_file() {
    use operator::crd::{ServerComponentState, ServerComponentStateSpec, TransportServiceRef};
    use transport::config::{Component, Requester};
    let h = Harness::new().await;
    h.running("mail", 2).await;
    let scs = ServerComponentState::new(
        "mail-1-maintenance",
        ServerComponentStateSpec {
            server: "mail-1".into(),
            transport_service_ref: TransportServiceRef { name: "mail".into() },
            component: Component::HubTransport,
            requester: Requester::Maintenance,
            state: ComponentState::Inactive,
            redirect_to: None,
        },
    );
    h.api::<ServerComponentState>().create(&Default::default(), &scs).await.unwrap();
    h.reconcile("mail").await;
    let data = h.config_map("mail").await.data.unwrap();
    let file: serde_yaml::Value = serde_yaml::from_str(&data["mail-1.yaml"]).unwrap();
    assert_eq!(file["components"]["HubTransport"]["Maintenance"], "Inactive");
    let file0: serde_yaml::Value = serde_yaml::from_str(&data["mail-0.yaml"]).unwrap();
    assert!(file0.get("components").is_none(), "aimed at mail-1 only");
}

#[tokio::test]
async fn a_paused_server_does_not_hold_a_rolling_restart_back() {
    let h = Harness::new().await;
    h.running("mail", 2).await;
    h.edit_spec("mail", |ts| {
        ts.spec.server_state_overrides.insert("mail-1".into(), ServerStateSetting::Paused);
    })
    .await;
    h.reconcile("mail").await;
    h.kubelet().await;
    h.reconcile("mail").await;
    let status = h.service("mail").await.status.unwrap();
    assert_eq!(condition(&status.conditions, "Progressing").status, "False", "{:?}", status.conditions);

    h.edit_spec("mail", |ts| ts.spec.receive_connectors[0].port = 2600).await;
    h.reconcile("mail").await;
    assert_eq!(h.pod_names().await, vec!["mail-1"], "mail-0 restarts although mail-1 is not Ready (Paused)");
    for _ in 0..5 {
        h.reconcile("mail").await;
        h.kubelet().await;
    }
    h.reconcile("mail").await;
    let pods = h.pods().await;
    let port = |p: &Pod| p.spec.as_ref().unwrap().containers[0].ports.as_ref().unwrap()[0].container_port;
    assert_eq!(pods.iter().map(port).collect::<Vec<_>>(), vec![2600, 2600]);
    assert_eq!(
        h.admin.server("mail-1").unwrap().info.server_state.name,
        ServerStateName::Paused,
        "state pushed to the new process"
    );
}

/// Needs the config helper's `TransportFile::validate` (accepted domains listed once).
#[tokio::test]
async fn an_invalid_transport_config_is_named_in_both_statuses() {
    use transport::config::{AcceptedDomain, AcceptedDomainType};
    let h = Harness::new().await;
    h.running("mail", 1).await;
    let mut tc = h.api::<TransportConfig>().get("default").await.unwrap();
    tc.spec
        .settings
        .accepted_domains
        .push(AcceptedDomain { domain: "example.com".into(), domain_type: AcceptedDomainType::InternalRelay });
    h.api::<TransportConfig>().replace("default", &Default::default(), &tc).await.unwrap();
    let cm_before = h.config_map("mail").await.data;

    h.reconcile_config("default").await;
    let status = h.api::<TransportConfig>().get("default").await.unwrap().status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("spec.acceptedDomains[1].domain"), "{}", ready.message);

    h.reconcile("mail").await;
    let status = h.service("mail").await.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("TransportConfig default: spec.acceptedDomains[1].domain"), "{}", ready.message);
    assert_eq!(h.config_map("mail").await.data, cm_before);
}

/// A CA bundle for a send connector, from a ConfigMap projected into every server: the API
/// server takes the template, the pods mount it at /projected, the connector's file names
/// the path; a path under /projected without a template is refused, naming the field.
#[tokio::test]
async fn a_projected_ca_bundle_reaches_the_pods_and_a_missing_one_is_named() {
    let h = Harness::new().await;
    h.create_config("default").await;
    let mut ts = service("mail", 1);
    let outbound = &mut ts.spec.send_connectors[0];
    outbound.tls = transport::config::OutboundTls::Required;
    outbound.tls_auth_level = Some(transport::config::TlsAuthLevel::CertificateValidation);
    outbound.tls_certificate_authorities = Some("/projected/ca/ca.crt".into());
    h.create_service(ts.clone()).await;
    h.reconcile("mail").await;
    let status = h.service("mail").await.status.unwrap();
    let ready = condition(&status.conditions, "Ready");
    assert_eq!(ready.status, "False");
    assert!(ready.message.contains("spec.sendConnectors[0].tlsCertificateAuthorities"), "{}", ready.message);
    assert!(h.pods().await.is_empty(), "nothing applied");

    let template = serde_json::json!({"sources": [{"configMap": {
        "name": "corp-ca", "items": [{"key": "ca.crt", "path": "ca/ca.crt"}]}}]});
    let patch = serde_json::json!({"spec": {"projectedVolumeTemplate": template}});
    h.api::<TransportService>()
        .patch("mail", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("the API server takes the template");
    h.reconcile("mail").await;
    let pods = h.pods().await;
    assert_eq!(pods.len(), 1);
    let spec = pods[0].spec.clone().unwrap();
    let volume = spec.volumes.unwrap().into_iter().find(|v| v.projected.is_some()).expect("the projected volume");
    let source = &volume.projected.unwrap().sources.unwrap()[0];
    assert_eq!(source.config_map.as_ref().map(|c| c.name.as_str()), Some("corp-ca"));
    let mount = spec.containers[0].volume_mounts.clone().unwrap().into_iter().find(|m| m.name == volume.name).unwrap();
    assert_eq!((mount.mount_path.as_str(), mount.read_only), ("/projected", Some(true)));
    let file: serde_yaml::Value =
        serde_yaml::from_str(&h.config_map("mail").await.data.unwrap()["mail-0.yaml"]).unwrap();
    assert_eq!(file["sendConnectors"][0]["tlsCertificateAuthorities"], "/projected/ca/ca.crt");
}
