//! A TransportService of 3 servers and a TransportConfig become 3 running `transport` pods;
//! mail through the Service reaches the next hop once per message; every resource's status
//! shows ServerState Started (2) for each server.
use e2e::scenario::flow::{assert_all_delivered, mail_service, transport_config, wait_service_ready};
use e2e::scenario::sink::Sink;
use e2e::scenario::{smtp, Suite};
use futures::future::BoxFuture;
use futures::FutureExt;
use operator::crd::TransportConfig;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub fn three_servers(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("startup").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.expect("apply");
        env.apply(&mail_service("mail", 3, sink.addr, serde_json::json!({}))).await.expect("apply");

        // kubectl get ts mail -o yaml: Ready, 3/3, every server Started (2) on the config rendered for it.
        let ts = wait_service_ready(&env, "mail", 3).await;
        let status = ts.status.clone().unwrap();
        assert_eq!(status.servers_ready.as_deref(), Some("3/3"));
        assert_eq!(status.server_state.as_deref(), Some("Started"));
        let names: Vec<&str> = status.servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["mail-0", "mail-1", "mail-2"]);
        assert!(status
            .servers
            .iter()
            .all(|s| s.config_revision.is_some() && s.config_revision == s.desired_config_revision));
        assert_eq!(env.pod_names().await.unwrap(), vec!["mail-0", "mail-1", "mail-2"]);
        let printed = env.kubectl(&["get", "ts", "mail"]).unwrap();
        assert!(printed.contains("3/3") && printed.contains("Started") && printed.contains("True"), "{printed}");

        // kubectl get tc default -o yaml: the service and its servers' ServerState.
        env.wait_for(Duration::from_secs(60), "TransportConfig default lists mail's servers Started", || async {
            let tc = env.api::<TransportConfig>().get("default").await.map_err(|e| e.to_string())?;
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

        // Mail through the Service reaches the next hop, once per message, and each server
        // gets some (the Service spreads connections over the ready pods).
        let service = env.smtp_service("mail", 2525).await.expect("Service address");
        env.wait_endpoints("mail", 2525, 3).await;
        let mut accepted = BTreeMap::new();
        for i in 0..12 {
            let id = format!("start-{i}");
            let reply = smtp::send_one(service, &id, "bob@example.net").await.expect("SMTP session");
            assert!(reply.starts_with("250"), "{reply}");
            accepted.insert(smtp::message_id(&id), e2e::scenario::flow::server_of(&reply).unwrap_or_default());
        }
        let servers: std::collections::BTreeSet<&String> = accepted.values().collect();
        assert_eq!(servers.len(), 3, "{accepted:?}");
        assert_all_delivered(&env, &sink, &accepted).await;
        let ids = sink.message_ids();
        assert!(accepted.keys().all(|id| ids[id] == 1), "each message once: {ids:?}");

        // Each pod runs its own process with the file rendered for it (its own name).
        let admin = env.admin("mail", "mail-1").await.unwrap();
        let info = admin.server().await.expect("GET /v1/server");
        assert_eq!(info.server_name, "mail-1");
        assert_eq!(info.server_state.code, 2);
        let ts = env.service("mail").await.unwrap();
        assert_eq!(ts.status.unwrap().servers[1].config_revision.as_deref(), Some(info.config_revision.as_str()));
        env.finish().await.unwrap();
    }
    .boxed()
}
