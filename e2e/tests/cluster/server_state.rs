//! Pausing a server through TransportService.spec.serverStateOverrides shows Paused (6) and
//! a Degraded condition saying how to start it again; starting it again shows Started (2).
use e2e::scenario::flow::{condition, mail_service, transport_config, wait_service_ready};
use e2e::scenario::sink::Sink;
use e2e::scenario::{smtp, smtp_address, Suite};
use futures::future::BoxFuture;
use futures::FutureExt;
use operator::crd::TransportService;
use std::sync::Arc;
use std::time::Duration;

pub fn paused_and_started(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("server-state").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.unwrap();
        env.apply(&mail_service("mail", 2, sink.addr, serde_json::json!({}))).await.unwrap();
        wait_service_ready(&env, "mail", 2).await;
        let mail1 = smtp_address(&env.pod("mail-1").await.unwrap().unwrap()).unwrap();

        // kubectl patch ts mail --type merge -p '{"spec":{"serverStateOverrides":{"mail-1":"Paused"}}}'
        env.kubectl(&[
            "patch",
            "ts",
            "mail",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"serverStateOverrides":{"mail-1":"Paused"}}}"#,
        ])
        .unwrap();
        let status = env
            .wait_for(Duration::from_secs(60), "mail-1 Paused (6) and mail Degraded", || async {
                let ts = env.service("mail").await.map_err(|e| e.to_string())?;
                let status = ts.status.clone().ok_or("no status")?;
                let code =
                    status.servers.iter().find(|s| s.name == "mail-1").and_then(|s| s.server_state).map(|s| s.code);
                let degraded = condition(&status.conditions, "Degraded").cloned().ok_or("no Degraded")?;
                if code == Some(6) && degraded.status == "True" && status.observed_generation == ts.metadata.generation
                {
                    Ok(status)
                } else {
                    Err(format!("mail-1 {code:?}, Degraded {} {}", degraded.status, degraded.reason))
                }
            })
            .await;
        let degraded = condition(&status.conditions, "Degraded").unwrap();
        assert_eq!(degraded.reason, "ServerPaused");
        assert!(
            degraded.message.contains("Paused (6)") && degraded.message.contains("spec.serverState"),
            "{}",
            degraded.message
        );
        assert_eq!(status.server_state.as_deref(), Some("Started 1, Paused 1"));
        assert_eq!(status.servers[0].server_state.map(|s| s.code), Some(2), "mail-0 untouched");
        let shown = env.kubectl(&["get", "ts", "mail"]).unwrap();
        assert!(shown.contains("Started 1, Paused 1"), "{shown}");
        // Paused: no new connections; the other server still takes mail.
        let refused = smtp::send_one(mail1, "paused", "bob@example.net").await;
        assert!(refused.as_ref().map_or(true, |r| !r.starts_with("250")), "{refused:?}");
        let mail0 = smtp_address(&env.pod("mail-0").await.unwrap().unwrap()).unwrap();
        assert!(smtp::send_one(mail0, "while-paused", "bob@example.net").await.unwrap().starts_with("250"));

        // Started again: the override goes.
        env.edit::<TransportService>("mail", |ts| ts.spec.server_state_overrides.clear()).await.unwrap();
        let ts = wait_service_ready(&env, "mail", 2).await;
        let status = ts.status.unwrap();
        assert_eq!(
            status.servers[1].server_state.map(|s| (s.name, s.code)),
            Some((transport::api::ServerStateName::Started, 2))
        );
        assert_eq!(condition(&status.conditions, "Degraded").unwrap().status, "False");
        let reply = smtp::send_one(mail1, "started-again", "bob@example.net").await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        env.finish().await.unwrap();
    }
    .boxed()
}
