//! The operator's own life, as an administrator drives it with helm:
//! - `helm upgrade` with a new transport image rolls every server, one at a time, each
//!   drained before its pod is replaced, with mail flowing through the Service and none lost;
//! - `helm upgrade --set replicas=2`: leader election; the leader's pod deleted, the other
//!   replica takes the Lease and acts, and the two never write at the same time;
//! - `helm uninstall` leaves the CRDs, the servers, their Services and their mail.
use e2e::cluster::audit;
use e2e::scenario::flow::{mail_service, transport_config, wait_service_ready, Roll};
use e2e::scenario::sink::Sink;
use e2e::scenario::{smtp, Suite, OPERATOR_NS, OPERATOR_USER, RELEASE};
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams};
use std::sync::Arc;
use std::time::Duration;

fn upgrade(suite: &Suite, set: &[&str]) -> String {
    let chart = e2e::scenario::chart();
    let chart = chart.to_string_lossy();
    let mut args = vec!["upgrade", RELEASE, &chart, "-n", OPERATOR_NS, "--reuse-values", "--wait", "--timeout", "180s"];
    for s in set {
        args.extend(["--set", s]);
    }
    suite.helm(&args).expect("helm upgrade")
}

pub fn new_transport_image(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("upgrade").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.unwrap();
        env.apply(&mail_service("mail", 3, sink.addr, serde_json::json!({}))).await.unwrap();
        wait_service_ready(&env, "mail", 3).await;
        env.wait_endpoints("mail", 2525, 3).await;
        let roll = Roll::start(&env, "mail", "upgrade", 3);

        upgrade(&suite, &["transportImage.tag=0.1.1"]);
        env.wait_for(Duration::from_secs(300), "every server on transport:0.1.1", || async {
            let pods = env.api::<Pod>().list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
            let images: Vec<String> = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.spec.as_ref()?.containers.first()?.image.clone())
                .collect();
            if images.len() == 3 && images.iter().all(|i| i.ends_with(":0.1.1")) {
                Ok(())
            } else {
                Err(format!("{images:?}"))
            }
        })
        .await;
        wait_service_ready(&env, "mail", 3).await;
        roll.finish(&env, &sink, "the upgrade").await;
        let events = env.api::<Event>().list(&ListParams::default()).await.unwrap().items;
        let restarts: Vec<String> = events
            .iter()
            .filter(|e| e.reason.as_deref() == Some("ConfigChangeRequiresRestart"))
            .filter_map(|e| e.note.clone())
            .collect();
        assert_eq!(restarts.len(), 3, "{restarts:?}");
        assert!(
            restarts.iter().all(|n| n.contains("the image changed to ghcr.io/kube-transport/transport:0.1.1")),
            "{restarts:?}"
        );
        env.finish().await.unwrap();
    }
    .boxed()
}

pub fn leader_failover(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        upgrade(&suite, &["replicas=2"]);
        let leases: Api<Lease> = Api::namespaced(suite.cluster.client.clone(), OPERATOR_NS);
        let lease_name = "kube-transport";
        let env = suite.env("leader").await.expect("namespace");
        let holder = env
            .wait_for(Duration::from_secs(60), "one replica holding the Lease", || async {
                let lease = leases.get_opt(lease_name).await.map_err(|e| e.to_string())?.ok_or("no Lease")?;
                lease.spec.and_then(|s| s.holder_identity).ok_or_else(|| "no holder".to_string())
            })
            .await;
        // The leader acts: a service becomes Ready.
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.unwrap();
        env.apply(&mail_service("mail", 1, sink.addr, serde_json::json!({}))).await.unwrap();
        wait_service_ready(&env, "mail", 1).await;

        // The leader's pod goes: the standby takes the Lease and acts.
        let deleted_at = jiff::Timestamp::now();
        suite.kubectl(&["delete", "pod", "-n", OPERATOR_NS, &holder, "--wait=false"]).unwrap();
        let new_holder = env
            .wait_for(Duration::from_secs(90), "the other replica holding the Lease", || async {
                let lease = leases.get_opt(lease_name).await.map_err(|e| e.to_string())?.ok_or("no Lease")?;
                let h = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
                if !h.is_empty() && h != holder {
                    Ok(h)
                } else {
                    Err(h)
                }
            })
            .await;
        env.kubectl(&["patch", "ts", "mail", "--type", "merge", "-p", r#"{"spec":{"servers":2}}"#]).unwrap();
        wait_service_ready(&env, "mail", 2).await;

        // Never two leaders: after the new leader's first write, none from the old one.
        let entries = suite.cluster.audit();
        let writes: Vec<&audit::Entry> = audit::by_user(&entries, OPERATOR_USER)
            .filter(|e| e.is_write() && e.time().is_some_and(|t| t >= deleted_at))
            .filter(|e| e.object_ref.as_ref().is_none_or(|o| o.resource != "leases"))
            .collect();
        let first_new = writes.iter().position(|e| e.user.pod() == Some(new_holder.as_str()));
        let first_new = first_new.expect("the new leader wrote");
        let late_old: Vec<&&audit::Entry> =
            writes[first_new..].iter().filter(|e| e.user.pod() == Some(holder.as_str())).collect();
        assert!(late_old.is_empty(), "the old leader wrote after the new one took over: {late_old:?}");
        env.finish().await.unwrap();
    }
    .boxed()
}

pub fn uninstall_keeps_mail(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("uninstall").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.unwrap();
        env.apply(&mail_service("mail", 2, sink.addr, serde_json::json!({}))).await.unwrap();
        wait_service_ready(&env, "mail", 2).await;

        let out = suite.helm(&["uninstall", RELEASE, "-n", OPERATOR_NS, "--wait"]).expect("helm uninstall");
        assert!(out.contains("uninstalled"), "{out}");
        for crd in ["transportservices", "transportconfigs", "servercomponentstates"] {
            suite.kubectl(&["get", "crd", &format!("{crd}.kubetransport.io")]).expect("the CRD stays");
        }
        let operator_pods = suite.kubectl(&["get", "pods", "-n", OPERATOR_NS, "-o", "name"]).unwrap();
        assert!(operator_pods.trim().is_empty(), "{operator_pods}");
        // The servers run on without the operator and take mail through their Service.
        assert_eq!(env.pod_names().await.unwrap(), ["mail-0", "mail-1"]);
        env.wait_endpoints("mail", 2525, 2).await;
        let service = env.smtp_service("mail", 2525).await.unwrap();
        let reply = smtp::send_one(service, "after-uninstall", "bob@example.net").await.unwrap();
        assert!(reply.starts_with("250"), "{reply}");
        env.wait_for(Duration::from_secs(60), "the message at the sink", || async {
            sink.missing(&["after-uninstall".to_string()])
        })
        .await;
        let pvcs = env.kubectl(&["get", "pvc", "-o", "name"]).unwrap();
        assert_eq!(pvcs.lines().count(), 2, "{pvcs}");
    }
    .boxed()
}
