//! Local e2e: scaling 3 → 2 while the removed server holds mail for a dead next hop. The
//! operator drains it and redirects its queue to a remaining server before the pod and its
//! volume go; once the next hop is back, every message arrives.
use e2e::local::sink::Sink;
use e2e::local::{hold_on, mail_with_dead_hop, queued, retry_until, wait_service_ready, DeadHopCluster};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use operator::crd::TransportService;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_of_a_removed_server_is_redirected_before_its_pod_goes() {
    let DeadHopCluster { cluster, sink: _sink, dead_port } = mail_with_dead_hop(3).await;
    let ids: Vec<String> = (0..5).map(|i| format!("held-{i}")).collect();
    hold_on(&cluster, "mail-2", &ids, "carol@later.test").await;

    // kubectl patch ts mail --type merge -p '{"spec":{"servers":2}}'
    cluster.edit::<TransportService>("mail", |ts| ts.spec.servers = Some(2)).await;
    cluster
        .wait_for(Duration::from_secs(120), "mail-2 removed, its 5 messages on mail-0/mail-1", || async {
            let pods = cluster.pod_names().await;
            let pvc =
                cluster.api::<PersistentVolumeClaim>().get_opt("mail-2-queue").await.map_err(|e| e.to_string())?;
            let q = queued(&cluster, "mail").await;
            let held: u64 = q.values().sum();
            if pods == ["mail-0", "mail-1"] && pvc.is_none() && held == 5 && !q.contains_key("mail-2") {
                Ok(())
            } else {
                Err(format!("pods {pods:?}, pvc {}, queues {q:?}", pvc.is_some()))
            }
        })
        .await;
    wait_service_ready(&cluster, "mail", 2).await;
    let events = cluster.api::<Event>().list(&ListParams::default()).await.unwrap().items;
    let mut reasons: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.note.as_deref().is_some_and(|n| n.contains("mail-2")))
        .map(|e| {
            (e.event_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(), e.reason.clone().unwrap_or_default())
        })
        .collect();
    reasons.sort();
    let order: Vec<&str> = reasons.iter().map(|(_, r)| r.as_str()).collect();
    let pos = |r: &str| order.iter().position(|x| *x == r).unwrap_or_else(|| panic!("no {r} event: {order:?}"));
    assert!(
        pos("ServerDraining") < pos("RedirectingQueue") && pos("RedirectingQueue") < pos("ServerRemoved"),
        "{order:?}"
    );

    // The next hop comes back: every message arrives.
    let later = Sink::start(dead_port);
    retry_until(&cluster, "mail", &["mail-0", "mail-1"], "the held messages at the next hop", || later.missing(&ids))
        .await;
}
