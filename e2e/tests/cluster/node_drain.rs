//! `kubectl drain` of the node of a server that holds mail: the API server refuses the
//! eviction (429, the PodDisruptionBudget) until the operator has drained the server and
//! redirected its queue to a sibling on another node; then the pod is evicted and its
//! server starts again on another node (its empty queue volume, bound to the drained node,
//! is replaced). Nothing is lost: once the next hop is back, every message arrives, once:
//! mail-1 drops its shadow copies of mail-0's messages before the pod goes, so it does not
//! take them over when mail-0 is back with a new queue.
use e2e::scenario::flow::wait_service_ready;
use e2e::scenario::flow::{hold_on, mail_with_dead_hop, retry_until, shadow_copies, transport_config, wait_queued};
use e2e::scenario::sink::Sink;
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;

fn node_of(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default()
}

pub fn drain_node_with_mail(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("node-drain").await.expect("namespace");
        let (_sink, dead) = mail_with_dead_hop(&env, 2).await;
        // Heartbeats back to every 2 minutes: the copies must go because the operator has
        // mail-1 ask mail-0 before its pod goes, not because a heartbeat came first.
        env.apply(&transport_config()).await.expect("apply TransportConfig");
        let ids: Vec<String> = (0..4).map(|i| format!("drain-{i}")).collect();
        hold_on(&env, "mail-0", &ids, "erin@later.test").await;
        env.wait_for(Duration::from_secs(60), "shadow copies of mail-0's messages on mail-1", || async {
            let held = shadow_copies(&env, "mail", &["mail-1"], "mail-0").await?;
            (held == [4]).then_some(()).ok_or(format!("{held:?}"))
        })
        .await;
        let node = node_of(&env.pod("mail-0").await.unwrap().unwrap());
        let other = node_of(&env.pod("mail-1").await.unwrap().unwrap());
        assert!(!node.is_empty());

        let started = jiff::Timestamp::now();
        let drain = {
            let suite = suite.clone();
            let node = node.clone();
            tokio::task::spawn_blocking(move || {
                suite.kubectl(&["drain", &node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=240s"])
            })
        };
        // The operator drains mail-0 and hands its queue over (the PDB holds the eviction).
        if node != other {
            wait_queued(&env, "mail", Duration::from_secs(120), "mail-0's messages handed to mail-1", |q| {
                q.get("mail-1") == Some(&4)
            })
            .await;
        }
        let out = drain.await.unwrap().expect("kubectl drain");
        assert!(out.contains("drained"), "{out}");

        // The API server refused at least one eviction of mail-0 before it was drained.
        let refused = suite.cluster.audit().into_iter().any(|e| {
            e.time().is_some_and(|t| t >= started)
                && e.object_ref.as_ref().is_some_and(|o| {
                    o.name.as_deref() == Some("mail-0") && o.subresource.as_deref() == Some("eviction")
                })
                && e.code() == 429
        });
        assert!(refused, "kubectl drain was never held back by the PodDisruptionBudget");

        // mail-0 runs again, elsewhere; the service is whole.
        let ts = wait_service_ready(&env, "mail", 2).await;
        let pod = env.pod("mail-0").await.unwrap().unwrap();
        assert_ne!(node_of(&pod), node, "mail-0 left the drained node");
        assert!(ts.status.unwrap().servers.iter().all(|s| s.ready));
        let held = shadow_copies(&env, "mail", &["mail-1"], "mail-0").await.unwrap();
        assert_eq!(held, [0], "shadow copies of mail-0's messages left on mail-1");
        suite.kubectl(&["uncordon", &node]).unwrap();

        // The next hop comes back: every message arrives.
        let later = Sink::at(env.cluster(), dead).expect("smtp-sink at the next hop");
        retry_until(&env, "mail", &["mail-0", "mail-1"], "the held messages at the next hop", || later.missing(&ids))
            .await;
        assert_eq!(later.twice(), [], "delivered more than once");
        env.finish().await.unwrap();
    }
    .boxed()
}
