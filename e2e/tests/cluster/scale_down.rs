//! Scaling 3 → 2 while the removed server holds mail for a dead next hop. The operator
//! drains it and redirects its queue to a remaining server before the pod and its volume
//! go; once the next hop is back, every message arrives, once: the shadow copies the
//! remaining servers held of its messages are dropped before it goes.
use e2e::scenario::flow::{hold_on, mail_with_dead_hop, queued, retry_until, shadow_copies, wait_service_ready};
use e2e::scenario::sink::Sink;
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use std::sync::Arc;
use std::time::Duration;

pub fn redirects_before_removal(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("scale-down").await.expect("namespace");
        let (_sink, dead) = mail_with_dead_hop(&env, 3).await;
        let ids: Vec<String> = (0..5).map(|i| format!("held-{i}")).collect();
        hold_on(&env, "mail-2", &ids, "carol@later.test").await;
        let peers = ["mail-0", "mail-1"];
        env.wait_for(Duration::from_secs(60), "shadow copies of mail-2's messages on mail-0/mail-1", || async {
            let held = shadow_copies(&env, "mail", &peers, "mail-2").await?;
            (held.iter().sum::<u64>() == 5).then_some(()).ok_or(format!("{held:?}"))
        })
        .await;

        env.kubectl(&["patch", "ts", "mail", "--type", "merge", "-p", r#"{"spec":{"servers":2}}"#]).unwrap();
        env.wait_for(Duration::from_secs(180), "mail-2 removed, its 5 messages on mail-0/mail-1", || async {
            let pods = env.pod_names().await.map_err(|e| e.to_string())?;
            let pvc = env.api::<PersistentVolumeClaim>().get_opt("mail-2-queue").await.map_err(|e| e.to_string())?;
            let q = queued(&env, "mail").await;
            let held: u64 = q.values().sum();
            if pods == ["mail-0", "mail-1"] && pvc.is_none() && held == 5 && !q.contains_key("mail-2") {
                Ok(())
            } else {
                Err(format!("pods {pods:?}, pvc {}, queues {q:?}", pvc.is_some()))
            }
        })
        .await;
        wait_service_ready(&env, "mail", 2).await;
        // Left behind, they would be delivered again once the peers stop hearing from mail-2.
        let held = shadow_copies(&env, "mail", &peers, "mail-2").await.unwrap();
        assert_eq!(held, [0, 0], "shadow copies of the removed server's messages");
        let events = env.api::<Event>().list(&ListParams::default()).await.unwrap().items;
        let mut reasons: Vec<(String, String)> = events
            .iter()
            .filter(|e| e.note.as_deref().is_some_and(|n| n.contains("mail-2")))
            .map(|e| {
                (
                    e.event_time.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                )
            })
            .collect();
        reasons.sort();
        let order: Vec<&str> = reasons.iter().map(|(_, r)| r.as_str()).collect();
        let pos = |r: &str| order.iter().position(|x| *x == r).unwrap_or_else(|| panic!("no {r} event: {order:?}"));
        assert!(
            pos("ServerDraining") < pos("RedirectingQueue") && pos("RedirectingQueue") < pos("ServerRemoved"),
            "{order:?}"
        );

        // The next hop comes back: every message arrives.
        let later = Sink::at(env.cluster(), dead).expect("smtp-sink at the next hop");
        retry_until(&env, "mail", &peers, "the held messages at the next hop", || later.missing(&ids)).await;
        assert_eq!(later.twice(), [], "delivered more than once");
        env.finish().await.unwrap();
    }
    .boxed()
}
