//! Local e2e: pausing a server through TransportService.spec.serverStateOverrides shows
//! Paused (6) and a Degraded condition saying how to start it again; starting it again
//! shows Started (2).
use e2e::local::sink::Sink;
use e2e::local::{condition, mail_service, smtp, smtp_address, transport_config, wait_service_ready, LocalCluster};
use operator::crd::TransportService;
use std::time::Duration;
use transport::config::ServerStateSetting;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_is_degraded_and_started_again() {
    let sink = Sink::start(0);
    let cluster = LocalCluster::start().await;
    cluster.apply(transport_config()).await;
    cluster.apply(mail_service("mail", 2, sink.addr.port(), serde_json::json!({}))).await;
    wait_service_ready(&cluster, "mail", 2).await;
    let mail1 = smtp_address(&cluster.pod("mail-1").await.unwrap()).unwrap();

    // kubectl edit ts mail: spec.serverStateOverrides: {mail-1: Paused}
    cluster
        .edit::<TransportService>("mail", |ts| {
            ts.spec.server_state_overrides.insert("mail-1".into(), ServerStateSetting::Paused);
        })
        .await;
    let status = cluster
        .wait_for(Duration::from_secs(60), "mail-1 Paused (6) and mail Degraded", || async {
            let ts = cluster.service("mail").await;
            let status = ts.status.clone().ok_or("no status")?;
            let code = status.servers.iter().find(|s| s.name == "mail-1").and_then(|s| s.server_state).map(|s| s.code);
            let degraded = condition(&status.conditions, "Degraded").cloned().ok_or("no Degraded")?;
            if code == Some(6) && degraded.status == "True" && status.observed_generation == ts.metadata.generation {
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
    // Paused: no new connections; the other server still takes mail.
    let refused = smtp::send_one(mail1, "paused", "bob@example.net").await;
    assert!(refused.as_ref().map_or(true, |r| !r.starts_with("250")), "{refused:?}");
    let mail0 = smtp_address(&cluster.pod("mail-0").await.unwrap()).unwrap();
    assert!(smtp::send_one(mail0, "while-paused", "bob@example.net").await.unwrap().starts_with("250"));

    // Started again: the override goes.
    cluster.edit::<TransportService>("mail", |ts| ts.spec.server_state_overrides.clear()).await;
    let ts = wait_service_ready(&cluster, "mail", 2).await;
    let status = ts.status.unwrap();
    assert_eq!(
        status.servers[1].server_state.map(|s| (s.name, s.code)),
        Some((transport::api::ServerStateName::Started, 2))
    );
    assert_eq!(condition(&status.conditions, "Degraded").unwrap().status, "False");
    assert!(smtp::send_one(mail1, "started-again", "bob@example.net").await.unwrap().starts_with("250"));
}
