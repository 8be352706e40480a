//! GitOps-style changes of a TransportService. A retry interval reaches the running servers
//! without a restart (status shows the new config revision; the pods keep their uid); the
//! same file applied again writes nothing; a port change rolls the servers one at a time,
//! each drained first, with mail flowing through the Service and none lost.
use e2e::scenario::flow::{mail_service, transport_config, wait_service_ready, Roll};
use e2e::scenario::sink::Sink;
use e2e::scenario::{Env, Suite};
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::ResourceExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

async fn pod_uids(env: &Env<'_>) -> BTreeMap<String, String> {
    let pods = env.api::<Pod>().list(&ListParams::default()).await.unwrap().items;
    pods.iter().map(|p| (p.name_any(), p.uid().unwrap_or_default())).collect()
}

fn port(pod: &Pod) -> Option<i32> {
    pod.spec.as_ref()?.containers.first()?.ports.as_ref()?.first().map(|p| p.container_port)
}

pub fn reload_and_roll(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("config-change").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.unwrap();
        let spec = mail_service("mail", 3, sink.addr, serde_json::json!({}));
        env.apply(&spec).await.unwrap();
        let before = wait_service_ready(&env, "mail", 3).await;
        let old_revisions: Vec<Option<String>> =
            before.status.unwrap().servers.iter().map(|s| s.config_revision.clone()).collect();
        let uids = pod_uids(&env).await;

        // The same file with one interval changed, applied again (a GitOps commit).
        let mut changed = spec.clone();
        changed.spec.retry =
            Some(serde_json::from_value(serde_json::json!({"messageRetryInterval": "00:01:00"})).unwrap());
        env.apply(&changed).await.unwrap();
        let after = env
            .wait_for(Duration::from_secs(120), "every server on the new revision", || async {
                let ts = wait_service_ready(&env, "mail", 3).await;
                let status = ts.status.clone().unwrap();
                let moved = status.servers.iter().zip(&old_revisions).all(|(s, old)| &s.config_revision != old);
                if moved {
                    Ok(ts)
                } else {
                    Err("old revisions".to_string())
                }
            })
            .await;
        let status = after.status.unwrap();
        assert_eq!(status.observed_generation, after.metadata.generation);
        let file = &env.api::<ConfigMap>().get("mail-config").await.unwrap().data.unwrap()["mail-1.yaml"];
        assert!(file.contains("messageRetryInterval: 00:01:00"), "{file}");
        assert_eq!(pod_uids(&env).await, uids, "no pod was restarted");
        let info = env.admin("mail", "mail-1").await.unwrap().server().await.unwrap();
        assert_eq!(status.servers[1].config_revision.as_deref(), Some(info.config_revision.as_str()));

        // Applying the same file again changes nothing the servers see.
        let cm_version = env.api::<ConfigMap>().get("mail-config").await.unwrap().resource_version();
        let generation = env.service("mail").await.unwrap().metadata.generation;
        env.apply(&changed).await.unwrap();
        wait_service_ready(&env, "mail", 3).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cm = env.api::<ConfigMap>().get("mail-config").await.unwrap();
        assert_eq!(cm.resource_version(), cm_version, "the ConfigMap was not written again");
        assert_eq!(env.service("mail").await.unwrap().metadata.generation, generation, "no new generation");
        assert_eq!(pod_uids(&env).await, uids);

        // A port change, with mail flowing; a sampler counts servers out of service at once.
        env.smtp_service("mail", 2525).await.unwrap();
        env.wait_endpoints("mail", 2525, 3).await;
        let roll = Roll::start(&env, "mail", "roll", 3);
        let mut moved = changed.clone();
        moved.spec.receive_connectors[0].port = 2600;
        env.apply(&moved).await.unwrap();
        env.wait_for(Duration::from_secs(240), "every pod on port 2600", || async {
            let pods = env.api::<Pod>().list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
            let ports: Vec<Option<i32>> = pods.iter().map(port).collect();
            if ports.len() == 3 && ports.iter().all(|p| *p == Some(2600)) {
                Ok(())
            } else {
                Err(format!("{ports:?}"))
            }
        })
        .await;
        wait_service_ready(&env, "mail", 3).await;
        roll.finish(&env, &sink, "the roll").await;

        let new_uids = pod_uids(&env).await;
        assert!(uids.iter().all(|(name, uid)| new_uids.get(name) != Some(uid)), "every pod restarted");
        let events = env.api::<Event>().list(&ListParams::default()).await.unwrap().items;
        let mut restarts: Vec<(String, String)> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("ConfigChangeRequiresRestart"))
            .map(|e| {
                (e.event_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(), e.note.clone().unwrap_or_default())
            })
            .collect();
        restarts.sort();
        assert_eq!(restarts.len(), 3, "{restarts:?}");
        for ((_, note), server) in restarts.iter().zip(["mail-0", "mail-1", "mail-2"]) {
            assert!(note.contains(server) && note.contains("a receive connector's port changed"), "{note}");
        }
        // The Service follows the new port.
        let moved_service = env.smtp_service("mail", 2600).await.unwrap();
        env.wait_endpoints("mail", 2600, 3).await;
        let reply = e2e::scenario::smtp::send_one(moved_service, "after-roll", "bob@example.net").await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        env.finish().await.unwrap();
    }
    .boxed()
}
