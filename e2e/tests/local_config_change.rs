//! Local e2e: GitOps-style changes of a TransportService. A retry interval reaches the
//! running servers without a restart (status shows the new config revision); a port change
//! rolls the servers one at a time, each drained first, with mail flowing and none lost.
use e2e::local::sink::Sink;
use e2e::local::{
    assert_all_delivered, mail_service, pod_ready, transport_config, wait_service_ready, LocalCluster, MailFlow, NS,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use operator::crd::TransportService;
use std::collections::BTreeMap;
use std::time::Duration;

async fn pod_uids(cluster: &LocalCluster) -> BTreeMap<String, String> {
    let pods = cluster.api::<Pod>().list(&ListParams::default()).await.unwrap().items;
    pods.iter().map(|p| (p.name_any(), p.uid().unwrap_or_default())).collect()
}

fn port(pod: &Pod) -> Option<i32> {
    pod.spec.as_ref()?.containers.first()?.ports.as_ref()?.first().map(|p| p.container_port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloadable_change_needs_no_restart_and_a_port_change_rolls_one_server_at_a_time() {
    let sink = Sink::start(0);
    let cluster = LocalCluster::start().await;
    cluster.apply(transport_config()).await;
    let spec = mail_service("mail", 3, sink.addr.port(), serde_json::json!({}));
    cluster.apply(spec.clone()).await;
    let before = wait_service_ready(&cluster, "mail", 3).await;
    let old_revisions: Vec<Option<String>> =
        before.status.unwrap().servers.iter().map(|s| s.config_revision.clone()).collect();
    let uids = pod_uids(&cluster).await;

    // The same file as before with one interval changed, applied again (a GitOps commit).
    let mut changed = spec.clone();
    changed.spec.retry = Some(serde_json::from_value(serde_json::json!({"messageRetryInterval": "00:01:00"})).unwrap());
    cluster.apply(changed.clone()).await;
    let after = wait_service_ready(&cluster, "mail", 3).await;
    let status = after.status.unwrap();
    for (s, old) in status.servers.iter().zip(&old_revisions) {
        assert_ne!(&s.config_revision, old, "{} reports the new configuration", s.name);
    }
    assert_eq!(status.observed_generation, after.metadata.generation);
    let file = &cluster.api::<k8s_openapi::api::core::v1::ConfigMap>().get("mail-config").await.unwrap().data.unwrap()
        ["mail-1.yaml"];
    assert!(file.contains("messageRetryInterval: 00:01:00"), "{file}");
    assert_eq!(pod_uids(&cluster).await, uids, "no pod was restarted");
    let info = cluster.admin("mail", "mail-1").await.server().await.unwrap();
    assert_eq!(status.servers[1].config_revision.as_deref(), Some(info.config_revision.as_str()));

    // Applying the same file again changes nothing the servers see.
    let cm_version =
        cluster.api::<k8s_openapi::api::core::v1::ConfigMap>().get("mail-config").await.unwrap().resource_version();
    cluster.apply(changed.clone()).await;
    wait_service_ready(&cluster, "mail", 3).await;
    let cm = cluster.api::<k8s_openapi::api::core::v1::ConfigMap>().get("mail-config").await.unwrap();
    assert_eq!(cm.resource_version(), cm_version, "the ConfigMap was not written again");
    assert_eq!(pod_uids(&cluster).await, uids);

    // A port change, with mail flowing; a sampler counts servers out of service at once.
    let flow = MailFlow::start(&cluster, "mail", "roll", Duration::from_millis(40));
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let pods_api: Api<Pod> = Api::namespaced(cluster.client.clone(), NS);
    let sampler = tokio::spawn(async move {
        let mut worst = 0;
        while !*stopped.borrow() {
            if let Ok(list) = pods_api.list(&ListParams::default()).await {
                let up = list.items.iter().filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none()).count();
                worst = worst.max(3usize.saturating_sub(up));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = stopped.changed() => {}
            }
        }
        worst
    });
    let mut moved = changed.clone();
    moved.spec.receive_connectors[0].port = 2600;
    cluster.apply(moved).await;
    cluster
        .wait_for(Duration::from_secs(150), "every pod on port 2600", || async {
            let pods = cluster.api::<Pod>().list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
            let ports: Vec<Option<i32>> = pods.iter().map(port).collect();
            if ports.len() == 3 && ports.iter().all(|p| *p == Some(2600)) {
                Ok(())
            } else {
                Err(format!("{ports:?}"))
            }
        })
        .await;
    wait_service_ready(&cluster, "mail", 3).await;
    let _ = stop.send(true);
    let worst = sampler.await.unwrap();
    let report = flow.stop().await;
    assert!(worst <= 1, "{worst} servers were out of service at once");
    assert!(report.accepted.len() >= 20, "mail kept flowing during the roll: {report:?}");
    assert_all_delivered(&cluster, &sink, &report.accepted).await;

    let new_uids = pod_uids(&cluster).await;
    assert!(uids.iter().all(|(name, uid)| new_uids.get(name) != Some(uid)), "every pod restarted");
    let events = cluster.api::<Event>().list(&ListParams::default()).await.unwrap().items;
    let mut restarts: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.reason.as_deref() == Some("ConfigChangeRequiresRestart"))
        .map(|e| {
            (e.event_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(), e.note.clone().unwrap_or_default())
        })
        .collect();
    restarts.sort();
    assert_eq!(restarts.len(), 3, "{restarts:?}");
    for ((_, note), server) in restarts.iter().zip(["mail-0", "mail-1", "mail-2"]) {
        assert!(note.contains(server) && note.contains("a receive connector's port changed"), "{note}");
    }
    let ts: TransportService = cluster.service("mail").await;
    assert_eq!(ts.spec.receive_connectors[0].port, 2600);
}
