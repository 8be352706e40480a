//! The Exchange maintenance sequence from kubectl alone (README, Maintenance runbook).
//! HubTransport Draining by Maintenance with redirectTo → the queue, held for a dead next
//! hop, moves to the other server → ServerWideOffline Inactive → the pod is not Ready and
//! refuses mail → maintenance done, both objects deleted → Active and Ready again.
use e2e::scenario::flow::{
    condition, hold_on, mail_with_dead_hop, retry_until, wait_component_state, wait_pod_ready, wait_queued,
    wait_service_ready,
};
use e2e::scenario::sink::Sink;
use e2e::scenario::smtp;
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use operator::crd::ServerComponentState;
use std::sync::Arc;
use std::time::Duration;
use testkit::AsyncSmtpClient;
use transport::config::{Component, ComponentState};

fn request(name: &str, component: &str, state: &str, redirect: Option<&str>) -> String {
    let redirect = redirect.map(|r| format!(", redirectTo: {r}")).unwrap_or_default();
    format!(
        "apiVersion: kubetransport.io/v1alpha1\nkind: ServerComponentState\nmetadata: {{name: {name}}}\n\
         spec: {{server: mail-1, transportServiceRef: {{name: mail}}, component: {component}, requester: Maintenance, state: {state}{redirect}}}\n"
    )
}

pub fn exchange_sequence(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("runbook").await.expect("namespace");
        let (_sink, dead) = mail_with_dead_hop(&env, 2).await;
        let ids: Vec<String> = (0..3).map(|i| format!("stuck-{i}")).collect();
        let mail1 = hold_on(&env, "mail-1", &ids, "dave@later.test").await;

        // 1. Set-ServerComponentState mail-1 HubTransport Draining -Requester Maintenance, and
        //    Redirect-Message to mail-0: the queue does not wait for the dead next hop.
        env.apply_yaml(&request("mail-1-hub", "HubTransport", "Draining", Some("mail-0"))).unwrap();
        let status = wait_component_state(&env, "mail-1-hub", "mail-1 draining and drained", |s| {
            condition(&s.conditions, "Drained").is_some_and(|c| c.status == "True")
                && condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
        assert_eq!(status.effective_state, Some(ComponentState::Draining));
        assert_eq!(status.messages_to_drain, Some(0));
        wait_queued(&env, "mail", Duration::from_secs(120), "mail-0 holds the 3 messages", |q| {
            q.get("mail-0") == Some(&3) && q.get("mail-1") == Some(&0)
        })
        .await;
        wait_pod_ready(&env, "mail-1", false).await;

        // 2. ServerWideOffline Inactive: every component off.
        env.apply_yaml(&request("mail-1-offline", "ServerWideOffline", "Inactive", None)).unwrap();
        let status = wait_component_state(&env, "mail-1-offline", "mail-1 offline", |s| {
            condition(&s.conditions, "Ready").is_some_and(|c| c.status == "True")
        })
        .await;
        assert_eq!(status.effective_state, Some(ComponentState::Inactive));
        let ts = env.service("mail").await.unwrap();
        let comps = &ts.status.unwrap().servers[1].components;
        assert!(comps.iter().all(|c| c.state == ComponentState::Inactive), "{comps:?}");
        let (mut c, _) = AsyncSmtpClient::connect(mail1).await.unwrap();
        c.cmd("EHLO client.e2e.test").await.unwrap();
        let reply = c.cmd("MAIL FROM:<alice@example.org>").await.unwrap();
        assert!(reply.starts_with("421 4.3.2"), "{reply}");

        // 3. Maintenance done: kubectl delete scs mail-1-offline mail-1-hub (it waits for the
        //    operator's finalizer to withdraw each wish).
        env.kubectl(&["delete", "scs", "mail-1-offline", "mail-1-hub"]).unwrap();
        assert!(env.api::<ServerComponentState>().list(&Default::default()).await.unwrap().items.is_empty());
        wait_pod_ready(&env, "mail-1", true).await;
        let ts = wait_service_ready(&env, "mail", 2).await;
        let hub =
            ts.status.unwrap().servers[1].components.iter().find(|c| c.component == Component::HubTransport).cloned();
        assert_eq!(hub.map(|h| h.state), Some(ComponentState::Active));
        assert!(smtp::send_one(mail1, "back", "bob@example.net").await.unwrap().starts_with("250"));

        // The next hop comes back: the redirected messages arrive from mail-0.
        let later = Sink::at(env.cluster(), dead).expect("smtp-sink at the next hop");
        retry_until(&env, "mail", &["mail-0"], "the redirected messages at the next hop", || later.missing(&ids)).await;
        env.finish().await.unwrap();
    }
    .boxed()
}
