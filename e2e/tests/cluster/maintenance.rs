//! A ServerComponentState HubTransport Inactive for mail-1 while mail flows through the
//! Service: mail-1 answers MAIL with `421 4.3.2`, its pod is not Ready and its endpoint
//! leaves the Service (no new connections reach it), its queue drains, the two others keep
//! accepting, and the sink receives every accepted message (by Message-ID). Deleting the
//! object brings mail-1 back.
use e2e::scenario::flow::{
    assert_all_delivered, condition, mail_service, transport_config, wait_component_state, wait_pod_ready,
    wait_service_ready, MailFlow,
};
use e2e::scenario::sink::Sink;
use e2e::scenario::smtp;
use e2e::scenario::{smtp_address, Suite};
use futures::future::BoxFuture;
use futures::FutureExt;
use operator::crd::ServerComponentState;
use std::sync::Arc;
use std::time::Duration;
use testkit::AsyncSmtpClient;
use transport::config::{Component, ComponentState};

fn inactive(server: &str) -> String {
    format!(
        "apiVersion: kubetransport.io/v1alpha1\nkind: ServerComponentState\nmetadata: {{name: {server}-maintenance}}\n\
         spec: {{server: {server}, transportServiceRef: {{name: mail}}, component: HubTransport, requester: Maintenance, state: Inactive}}\n"
    )
}

pub fn inactive_server(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("maintenance").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.unwrap();
        env.apply(&mail_service("mail", 3, sink.addr, serde_json::json!({}))).await.unwrap();
        wait_service_ready(&env, "mail", 3).await;
        let mail1_pod = env.pod("mail-1").await.unwrap().unwrap();
        let mail1 = smtp_address(&mail1_pod).expect("mail-1's address");
        env.smtp_service("mail", 2525).await.unwrap();

        let flow = MailFlow::start(&env, "mail", "flow", Duration::from_millis(40));
        env.wait_for(Duration::from_secs(30), "mail flowing to the sink", || async {
            let n = sink.message_ids().len();
            if n >= 15 {
                Ok(())
            } else {
                Err(format!("{n} messages"))
            }
        })
        .await;

        // kubectl apply -f mail-1-maintenance.yaml
        env.apply_yaml(&inactive("mail-1")).unwrap();
        let status = wait_component_state(&env, "mail-1-maintenance", "mail-1 confirmed Inactive and drained", |s| {
            condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
                && condition(&s.conditions, "Drained").is_some_and(|c| c.status == "True")
        })
        .await;
        assert_eq!(status.effective_state, Some(ComponentState::Inactive));
        assert_eq!(status.requested_state, Some(ComponentState::Inactive));
        assert_eq!(status.messages_to_drain, Some(0));
        assert_eq!(status.servers[0].server_state.map(|s| s.code), Some(2), "still Started: only the component is off");
        assert!(status.last_confirmed_time.is_some());
        wait_pod_ready(&env, "mail-1", false).await;
        // The endpoint leaves the Service: the EndpointSlice shows mail-1 not ready, and the
        // Service's proxy sends it no new connection.
        let ip = mail1.ip().to_string();
        env.wait_for(Duration::from_secs(30), "mail-1 out of the Service's ready endpoints", || async {
            let ready = env.cluster().proxy.endpoints(&format!("{}/mail", env.ns), 2525);
            if ready.len() == 2 && ready.iter().all(|a| a.ip().to_string() != ip) {
                Ok(())
            } else {
                Err(format!("{ready:?}"))
            }
        })
        .await;

        // The banner and EHLO still work; MAIL is refused with the Exchange reply.
        let (mut c, banner) = AsyncSmtpClient::connect(mail1).await.expect("connect to mail-1");
        assert!(banner.starts_with("220"), "{banner}");
        assert!(c.cmd("EHLO client.e2e.test").await.unwrap().starts_with("250"));
        let reply = c.cmd("MAIL FROM:<alice@example.org>").await.unwrap();
        assert!(reply.starts_with("421 4.3.2"), "{reply}");

        // The two others keep taking mail meanwhile.
        let before = sink.message_ids().len();
        env.wait_for(Duration::from_secs(30), "more mail through mail-0 and mail-2", || async {
            let n = sink.message_ids().len();
            if n >= before + 15 {
                Ok(())
            } else {
                Err(format!("{n} messages, {before} before"))
            }
        })
        .await;
        let ts = env.service("mail").await.unwrap().status.unwrap();
        let hub = ts.servers[1].components.iter().find(|c| c.component == Component::HubTransport).unwrap();
        assert_eq!(hub.state, ComponentState::Inactive, "kubectl get ts mail -o yaml shows it too");
        assert_eq!(ts.servers_ready.as_deref(), Some("2/3"));

        let report = flow.stop().await;
        let by_server = |s: &str| report.accepted.values().filter(|v| *v == s).count();
        assert!(by_server("mail-0") > 0 && by_server("mail-2") > 0, "{report:?}");
        assert_all_delivered(&env, &sink, &report.accepted).await;

        // Maintenance over: kubectl delete servercomponentstate mail-1-maintenance.
        env.kubectl(&["delete", "servercomponentstate", "mail-1-maintenance", "--wait=true"]).unwrap();
        assert!(env.api::<ServerComponentState>().get_opt("mail-1-maintenance").await.unwrap().is_none());
        wait_pod_ready(&env, "mail-1", true).await;
        let reply = smtp::send_one(mail1, "after-maintenance", "bob@example.net").await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        wait_service_ready(&env, "mail", 3).await;
        env.finish().await.unwrap();
    }
    .boxed()
}
