//! Local e2e: a ServerComponentState HubTransport Inactive for mail-1 while mail flows.
//! mail-1 answers MAIL with `421 4.3.2` and is not Ready, its queue drains, the two others
//! keep accepting, and smtp-sink receives every accepted message (by Message-ID), none lost.
//! Deleting the object brings mail-1 back.
use e2e::local::sink::Sink;
use e2e::local::smtp::Smtp;
use e2e::local::{
    assert_all_delivered, condition, mail_service, smtp_address, transport_config, wait_component_state,
    wait_pod_ready, wait_service_ready, LocalCluster, MailFlow,
};
use operator::crd::ServerComponentState;
use std::time::Duration;
use transport::config::{Component, ComponentState};

fn inactive(server: &str) -> ServerComponentState {
    serde_yaml::from_str(&format!(
        "apiVersion: kubetransport.io/v1alpha1\nkind: ServerComponentState\nmetadata: {{name: {server}-maintenance}}\n\
         spec: {{server: {server}, transportServiceRef: {{name: mail}}, component: HubTransport, requester: Maintenance, state: Inactive}}\n"
    ))
    .expect("ServerComponentState")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inactive_server_refuses_mail_and_drains_while_the_others_take_it_and_nothing_is_lost() {
    let sink = Sink::start(0);
    let cluster = LocalCluster::start().await;
    cluster.apply(transport_config()).await;
    cluster.apply(mail_service("mail", 3, sink.addr.port(), serde_json::json!({}))).await;
    wait_service_ready(&cluster, "mail", 3).await;
    let mail1 = smtp_address(&cluster.pod("mail-1").await.unwrap()).expect("mail-1's address");

    let flow = MailFlow::start(&cluster, "mail", "flow", Duration::from_millis(40));
    cluster
        .wait_for(Duration::from_secs(30), "mail flowing to the sink", || async {
            let n = sink.message_ids().len();
            if n >= 15 {
                Ok(())
            } else {
                Err(format!("{n} messages"))
            }
        })
        .await;

    // kubectl apply -f mail-1-maintenance.yaml
    cluster.apply(inactive("mail-1")).await;
    let status = wait_component_state(&cluster, "mail-1-maintenance", "mail-1 confirmed Inactive and drained", |s| {
        condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
            && condition(&s.conditions, "Drained").is_some_and(|c| c.status == "True")
    })
    .await;
    assert_eq!(status.effective_state, Some(ComponentState::Inactive));
    assert_eq!(status.requested_state, Some(ComponentState::Inactive));
    assert_eq!(status.messages_to_drain, Some(0));
    assert_eq!(status.servers[0].server_state.map(|s| s.code), Some(2), "still Started: only the component is off");
    assert!(status.last_confirmed_time.is_some());
    wait_pod_ready(&cluster, "mail-1", false).await;

    // The banner and EHLO still work; MAIL is refused with the Exchange reply.
    let (mut c, banner) = Smtp::connect(mail1).await.expect("connect to mail-1");
    assert!(banner.starts_with("220"), "{banner}");
    assert!(c.cmd("EHLO client.e2e.test").await.unwrap().starts_with("250"));
    let reply = c.cmd("MAIL FROM:<alice@example.org>").await.unwrap();
    assert!(reply.starts_with("421 4.3.2"), "{reply}");

    // The two others keep taking mail meanwhile.
    let before = sink.message_ids().len();
    cluster
        .wait_for(Duration::from_secs(30), "more mail through mail-0 and mail-2", || async {
            let n = sink.message_ids().len();
            if n >= before + 15 {
                Ok(())
            } else {
                Err(format!("{n} messages, {before} before"))
            }
        })
        .await;
    let ts = cluster.service("mail").await.status.unwrap();
    let hub = ts.servers[1].components.iter().find(|c| c.component == Component::HubTransport).unwrap();
    assert_eq!(hub.state, ComponentState::Inactive, "kubectl get ts mail -o yaml shows it too");
    assert_eq!(ts.servers_ready.as_deref(), Some("2/3"));

    let report = flow.stop().await;
    let by_server = |s: &str| report.accepted.values().filter(|v| *v == s).count();
    assert!(by_server("mail-0") > 0 && by_server("mail-2") > 0, "{report:?}");
    assert_all_delivered(&cluster, &sink, &report.accepted).await;
    let ids = sink.message_ids();
    let accepted_at_sink = report.accepted.keys().filter(|id| ids.contains_key(*id)).count();
    assert_eq!(accepted_at_sink, report.accepted.len(), "every accepted message arrived");

    // Maintenance over: kubectl delete servercomponentstate mail-1-maintenance.
    cluster.delete::<ServerComponentState>("mail-1-maintenance").await;
    cluster
        .wait_for(Duration::from_secs(60), "the request withdrawn and gone", || async {
            match cluster.api::<ServerComponentState>().get_opt("mail-1-maintenance").await {
                Ok(None) => Ok(()),
                other => Err(format!("{:?}", other.map(|o| o.map(|o| o.status)))),
            }
        })
        .await;
    wait_pod_ready(&cluster, "mail-1", true).await;
    let reply = e2e::local::smtp::send_one(mail1, "after-maintenance", "bob@example.net").await.unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    wait_service_ready(&cluster, "mail", 3).await;
}
