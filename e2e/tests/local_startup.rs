//! Local e2e: a TransportService of 3 servers and a TransportConfig become 3 running
//! `transport` processes; mail flows through each to smtp-sink; every resource's status
//! shows ServerState Started (2) for each server.
use e2e::local::sink::Sink;
use e2e::local::{assert_all_delivered, mail_service, smtp, transport_config, LocalCluster};
use operator::crd::{TransportConfig, TransportService};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_start_take_mail_and_report_started() {
    let sink = Sink::start(0);
    let cluster = LocalCluster::start().await;
    cluster.apply(transport_config()).await;
    cluster.apply(mail_service("mail", 3, sink.addr.port(), serde_json::json!({}))).await;

    // kubectl get ts mail -o yaml: Ready, 3/3, every server Started (2) on the config rendered for it.
    cluster
        .wait_for(Duration::from_secs(60), "TransportService mail Ready with 3 servers Started", || async {
            let ts = cluster.service("mail").await;
            let status = ts.status.clone().ok_or("no status")?;
            let ready = status.conditions.iter().find(|c| c.type_ == "Ready").ok_or("no Ready")?;
            let started: Vec<(String, Option<u8>)> =
                status.servers.iter().map(|s| (s.name.clone(), s.server_state.map(|x| x.code))).collect();
            let revisions_ok = status.servers.iter().all(|s| s.config_revision.is_some());
            if ready.status == "True"
                && status.servers_ready.as_deref() == Some("3/3")
                && status.server_state.as_deref() == Some("Started")
                && started == [("mail-0".into(), Some(2)), ("mail-1".into(), Some(2)), ("mail-2".into(), Some(2))]
                && revisions_ok
                && status.observed_generation == ts.metadata.generation
            {
                Ok(())
            } else {
                Err(format!("{:?} {:?} {started:?} {}", ready.reason, status.servers_ready, ready.message))
            }
        })
        .await;
    assert_eq!(cluster.pod_names().await, vec!["mail-0", "mail-1", "mail-2"]);

    // kubectl get tc default -o yaml: the service and its servers' ServerState.
    cluster
        .wait_for(Duration::from_secs(30), "TransportConfig default lists mail's servers Started", || async {
            let tc = cluster.api::<TransportConfig>().get("default").await.map_err(|e| e.to_string())?;
            let status = tc.status.ok_or("no status")?;
            let codes: Vec<Option<u8>> = status
                .services
                .iter()
                .filter(|u| u.name == "mail")
                .flat_map(|u| u.servers.iter().map(|s| s.server_state.map(|x| x.code)))
                .collect();
            if codes == [Some(2), Some(2), Some(2)] && status.server_state.as_deref() == Some("Started") {
                Ok(())
            } else {
                Err(format!("{codes:?} {:?}", status.server_state))
            }
        })
        .await;

    // Mail through every server reaches the next hop, once per message.
    let endpoints = cluster.ready_endpoints("mail").await;
    assert_eq!(endpoints.len(), 3, "{endpoints:?}");
    let mut accepted = BTreeMap::new();
    for (i, (server, addr)) in endpoints.iter().enumerate() {
        for j in 0..3 {
            let id = format!("start-{i}-{j}");
            let reply = smtp::send_one(*addr, &id, "bob@example.net").await.expect("SMTP session");
            assert!(reply.starts_with("250"), "{server}: {reply}");
            accepted.insert(smtp::message_id(&id), server.clone());
        }
    }
    assert_all_delivered(&cluster, &sink, &accepted).await;
    let ids = sink.message_ids();
    assert!(accepted.keys().all(|id| ids[id] == 1), "each message once: {ids:?}");

    // Each pod runs its own process with the file rendered for it (its own name and address).
    let admin = cluster.admin("mail", "mail-1").await;
    let info = admin.server().await.expect("GET /v1/server");
    assert_eq!(info.server_name, "mail-1");
    assert_eq!(info.server_state.code, 2);
    let ts: TransportService = cluster.service("mail").await;
    assert_eq!(ts.status.unwrap().servers[1].config_revision.as_deref(), Some(info.config_revision.as_str()));
}
