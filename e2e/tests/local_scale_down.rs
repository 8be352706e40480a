//! Local e2e: scaling 3 → 2 while the removed server holds mail for a dead next hop. The
//! operator drains it and redirects its queue to a remaining server before the pod and its
//! volume go; once the next hop is back, every message arrives.
use e2e::local::sink::{free_port, Sink};
use e2e::local::{
    queued, retry_until, service_with_dead_hop, smtp, smtp_address, transport_config, wait_service_ready, LocalCluster,
};
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use operator::crd::TransportService;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_of_a_removed_server_is_redirected_before_its_pod_goes() {
    let sink = Sink::start(0);
    let dead_port = free_port();
    let cluster = LocalCluster::start().await;
    cluster.apply(transport_config()).await;
    cluster.apply(service_with_dead_hop("mail", 3, sink.addr.port(), dead_port)).await;
    wait_service_ready(&cluster, "mail", 3).await;

    let mail2 = smtp_address(&cluster.pod("mail-2").await.unwrap()).unwrap();
    let ids: Vec<String> = (0..5).map(|i| format!("held-{i}")).collect();
    for id in &ids {
        let reply = smtp::send_one(mail2, id, "carol@later.test").await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
    }
    cluster
        .wait_for(Duration::from_secs(60), "5 messages queued on mail-2", || async {
            let q = queued(&cluster, "mail").await;
            if q.get("mail-2") == Some(&5) {
                Ok(())
            } else {
                Err(format!("{q:?}"))
            }
        })
        .await;

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
    retry_until(&cluster, "mail", &["mail-0", "mail-1"], "the held messages at the next hop", || {
        let got = later.message_ids();
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(&format!("<{id}@e2e.test>"))).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    })
    .await;
}
