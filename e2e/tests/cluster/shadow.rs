//! Shadow redundancy on the real control plane: a server's pod and its queue volume are
//! deleted at once (a node lost with its local disk) while the server holds mail for a next
//! hop that is down. The other servers hold shadow copies of that mail (their pods find the
//! server by its headless DNS name, on the shadow port), the operator tells them the queue is
//! lost, and every message arrives once the hop is back.
use e2e::scenario::flow::wait_service_ready;
use e2e::scenario::flow::{fast_shadow_heartbeats, hold_on, retry_until, service_with_dead_hop, shadow_copies};
use e2e::scenario::sink::{Outside, Sink};
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;

pub fn node_and_disk_lost(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("shadow").await.expect("namespace");
        let _sink = Sink::start(env.cluster()).expect("smtp-sink");
        let dead = Outside::reserve(env.cluster(), 2526).expect("an outside address");
        // Heartbeats every 5 s: the shadows find out by themselves too, should the operator
        // see the claim only once it is gone.
        env.apply(&fast_shadow_heartbeats()).await.expect("apply TransportConfig");
        env.apply(&service_with_dead_hop("mail", 3, _sink.addr, dead)).await.expect("apply TransportService");
        wait_service_ready(&env, "mail", 3).await;
        let ids: Vec<String> = (0..8).map(|i| format!("shadowed-{i}")).collect();
        hold_on(&env, "mail-0", &ids, "frank@later.test").await;

        // Every acknowledged message has a copy on mail-1 or mail-2, both used.
        env.wait_for(Duration::from_secs(60), "shadow copies of mail-0's messages on its peers", || async {
            let held = shadow_copies(&env, "mail", &["mail-1", "mail-2"], "mail-0").await?;
            if held.iter().sum::<u64>() == ids.len() as u64 && held.iter().all(|n| *n > 0) {
                Ok(())
            } else {
                Err(format!("copies on mail-1, mail-2: {held:?}"))
            }
        })
        .await;

        // The node is gone with its disk: the claim and the pod are deleted at once.
        env.kubectl(&["delete", "pvc", "mail-0-queue", "--wait=false"]).unwrap();
        env.kubectl(&["delete", "pod", "mail-0", "--grace-period=0", "--force"]).unwrap();

        // The next hop comes back: every message mail-0 acknowledged arrives, once.
        let later = Sink::at(env.cluster(), dead).expect("smtp-sink at the next hop");
        retry_until(&env, "mail", &["mail-1", "mail-2"], "mail-0's messages at the next hop", || later.missing(&ids))
            .await;
        assert_eq!(later.twice(), [], "delivered more than once");
        env.finish().await.unwrap();
    }
    .boxed()
}
