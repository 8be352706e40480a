//! Deleting what holds mail:
//! - `kubectl delete ts` of a service whose server holds mail: the pods go, the queue
//!   volumes stay (as a StatefulSet's claims do), and the same TransportService applied
//!   again finds them and delivers that mail;
//! - `kubectl delete namespace` of a namespace with a TransportService and a
//!   ServerComponentState (whose finalizer the operator holds) completes while the operator
//!   runs.
use e2e::scenario::flow::{
    drain_for_maintenance, hold_on, mail_with_dead_hop, retry_until, service_with_dead_hop, transport_config,
    wait_queued, wait_service_ready,
};
use e2e::scenario::sink::Sink;
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams};
use kube::ResourceExt;
use std::sync::Arc;
use std::time::Duration;

pub fn service_with_mail(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("deletion").await.expect("namespace");
        let (sink, dead) = mail_with_dead_hop(&env, 2).await;
        let ids: Vec<String> = (0..3).map(|i| format!("kept-{i}")).collect();
        hold_on(&env, "mail-1", &ids, "frank@later.test").await;

        env.kubectl(&["delete", "ts", "mail"]).unwrap();
        env.wait_for(Duration::from_secs(120), "the servers' pods gone, their volumes kept", || async {
            let pods = env.api::<Pod>().list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
            let pvcs =
                env.api::<PersistentVolumeClaim>().list(&ListParams::default()).await.map_err(|e| e.to_string())?.items;
            let bound: Vec<String> = pvcs
                .iter()
                .filter(|p| {
                    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
                        && p.metadata.deletion_timestamp.is_none()
                })
                .map(|p| p.name_any())
                .collect();
            if pods.is_empty() && bound == ["mail-0-queue", "mail-1-queue"] {
                Ok(())
            } else {
                Err(format!("{} pods, volumes {bound:?}", pods.len()))
            }
        })
        .await;

        // The same TransportService again: the queue comes back with it.
        env.apply(&service_with_dead_hop("mail", 2, sink.addr, dead)).await.unwrap();
        wait_service_ready(&env, "mail", 2).await;
        wait_queued(&env, "mail", Duration::from_secs(120), "mail-1 holds its 3 messages again", |q| {
            q.get("mail-1") == Some(&3)
        })
        .await;
        let later = Sink::at(env.cluster(), dead).expect("smtp-sink at the next hop");
        retry_until(&env, "mail", &["mail-1"], "the kept messages at the next hop", || later.missing(&ids)).await;
        env.finish().await.unwrap();
    }
    .boxed()
}

pub fn namespace_with_component_states(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("ns-deletion").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        let dead = e2e::scenario::sink::Outside::reserve(&suite.cluster, 2526).unwrap();
        env.apply(&transport_config()).await.unwrap();
        env.apply(&service_with_dead_hop("mail", 2, sink.addr, dead)).await.unwrap();
        wait_service_ready(&env, "mail", 2).await;
        drain_for_maintenance(&env, "mail", "mail-1").await;
        let ns = env.ns.clone();
        let namespaces: Api<Namespace> = Api::all(env.client());
        env.finish().await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(180);
        loop {
            match namespaces.get_opt(&ns).await.unwrap() {
                None => break,
                Some(n) => {
                    let conditions = n.status.and_then(|s| s.conditions).unwrap_or_default();
                    let why: Vec<String> = conditions
                        .iter()
                        .filter(|c| c.status == "True")
                        .map(|c| format!("{}: {}", c.type_, c.message.clone().unwrap_or_default()))
                        .collect();
                    assert!(std::time::Instant::now() < deadline, "namespace {ns} still there after 180 s: {why:?}");
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    .boxed()
}
