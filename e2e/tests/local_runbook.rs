//! Local e2e: the Exchange maintenance sequence from kubectl alone (README, Maintenance
//! runbook). HubTransport Draining by Maintenance with redirectTo → the queue, held for a
//! dead next hop, moves to the other server → ServerWideOffline Inactive → the pod is not
//! Ready and refuses mail → maintenance done, both objects deleted → Active and Ready again.
use e2e::local::sink::Sink;
use e2e::local::smtp::{self, Smtp};
use e2e::local::{
    condition, hold_on, mail_with_dead_hop, retry_until, wait_component_state, wait_pod_ready, wait_queued,
    wait_service_ready, DeadHopCluster,
};
use operator::crd::{ServerComponentState, TransportService};
use std::time::Duration;
use transport::config::{Component, ComponentState};

fn request(name: &str, component: &str, state: &str, redirect: Option<&str>) -> ServerComponentState {
    let redirect = redirect.map(|r| format!(", redirectTo: {r}")).unwrap_or_default();
    serde_yaml::from_str(&format!(
        "apiVersion: kubetransport.io/v1alpha1\nkind: ServerComponentState\nmetadata: {{name: {name}}}\n\
         spec: {{server: mail-1, transportServiceRef: {{name: mail}}, component: {component}, requester: Maintenance, state: {state}{redirect}}}\n"
    ))
    .expect("ServerComponentState")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_maintenance_sequence_from_kubectl() {
    let DeadHopCluster { cluster, sink: _sink, dead_port } = mail_with_dead_hop(2).await;
    let ids: Vec<String> = (0..3).map(|i| format!("stuck-{i}")).collect();
    let mail1 = hold_on(&cluster, "mail-1", &ids, "dave@later.test").await;

    // 1. Set-ServerComponentState mail-1 HubTransport Draining -Requester Maintenance, and
    //    Redirect-Message to mail-0: the queue does not wait for the dead next hop.
    cluster.apply(request("mail-1-hub", "HubTransport", "Draining", Some("mail-0"))).await;
    let status = wait_component_state(&cluster, "mail-1-hub", "mail-1 draining and drained", |s| {
        condition(&s.conditions, "Drained").is_some_and(|c| c.status == "True")
            && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(status.effective_state, Some(ComponentState::Draining));
    assert_eq!(status.messages_to_drain, Some(0));
    wait_queued(&cluster, "mail", Duration::from_secs(30), "mail-0 holds the 3 messages", |q| {
        q.get("mail-0") == Some(&3) && q.get("mail-1") == Some(&0)
    })
    .await;
    wait_pod_ready(&cluster, "mail-1", false).await;

    // 2. ServerWideOffline Inactive: every component off.
    cluster.apply(request("mail-1-offline", "ServerWideOffline", "Inactive", None)).await;
    let status = wait_component_state(&cluster, "mail-1-offline", "mail-1 offline", |s| {
        condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(status.effective_state, Some(ComponentState::Inactive));
    let ts: TransportService = cluster.service("mail").await;
    let comps = &ts.status.unwrap().servers[1].components;
    assert!(comps.iter().all(|c| c.state == ComponentState::Inactive), "{comps:?}");
    let (mut c, _) = Smtp::connect(mail1).await.unwrap();
    c.cmd("EHLO client.e2e.test").await.unwrap();
    let reply = c.cmd("MAIL FROM:<alice@example.org>").await.unwrap();
    assert!(reply.starts_with("421 4.3.2"), "{reply}");

    // 3. Maintenance done: delete both requests (kubectl delete scs mail-1-offline mail-1-hub).
    cluster.delete::<ServerComponentState>("mail-1-offline").await;
    cluster.delete::<ServerComponentState>("mail-1-hub").await;
    cluster
        .wait_for(Duration::from_secs(60), "both requests withdrawn", || async {
            let left =
                cluster.api::<ServerComponentState>().list(&Default::default()).await.map_err(|e| e.to_string())?;
            if left.items.is_empty() {
                Ok(())
            } else {
                Err(format!("{} left", left.items.len()))
            }
        })
        .await;
    wait_pod_ready(&cluster, "mail-1", true).await;
    let ts = wait_service_ready(&cluster, "mail", 2).await;
    let hub = ts.status.unwrap().servers[1].components.iter().find(|c| c.component == Component::HubTransport).cloned();
    assert_eq!(hub.map(|h| h.state), Some(ComponentState::Active));
    assert!(smtp::send_one(mail1, "back", "bob@example.net").await.unwrap().starts_with("250"));

    // The next hop comes back: the redirected messages arrive from mail-0.
    let later = Sink::start(dead_port);
    retry_until(&cluster, "mail", &["mail-0"], "the redirected messages at the next hop", || later.missing(&ids)).await;
}
