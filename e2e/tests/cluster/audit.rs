//! What the operator asked of the API server, from the API server's audit log:
//! - idle: once nothing changes, no write at all for 60 s (status is written only when
//!   something a user reads changed; queue counters at most every 10 s), and how many
//!   requests a minute it makes then;
//! - RBAC, over the whole run: no request refused, and every permission the chart grants
//!   used by some request (no excess), with the request rate under load.
use e2e::cluster::audit::{self, Entry, Grant};
use e2e::kind::manifests::parse_docs;
use e2e::scenario::flow::{drain_for_maintenance, mail_service, transport_config, wait_service_ready};
use e2e::scenario::sink::Sink;
use e2e::scenario::{Suite, OPERATOR_NS, OPERATOR_USER, RELEASE};
use futures::future::BoxFuture;
use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;

fn operator_entries(suite: &Suite) -> Vec<Entry> {
    let entries = suite.cluster.audit();
    audit::by_user(&entries, OPERATOR_USER).cloned().collect()
}

fn describe(entries: &[&Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| format!("{} {} {} {}", e.request_received_timestamp, e.verb, e.request_uri, e.code()))
        .collect()
}

/// A service of 3 servers, one of them in maintenance (a ServerComponentState), everything
/// settled: then 60 s without a single write by the operator.
pub fn idle(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("idle").await.expect("namespace");
        let sink = Sink::start(&suite.cluster).expect("smtp-sink");
        env.apply(&transport_config()).await.unwrap();
        env.apply(&mail_service("mail", 3, sink.addr, serde_json::json!({}))).await.unwrap();
        wait_service_ready(&env, "mail", 3).await;
        drain_for_maintenance(&env, "mail", "mail-2").await;

        // Settled: 20 s without a write (at most two minutes to get there).
        let quiet = Duration::from_secs(20);
        let writes = |since: jiff::Timestamp| -> Vec<Entry> {
            operator_entries(&suite).into_iter().filter(|e| e.is_write() && e.time().is_some_and(|t| t >= since)).collect()
        };
        env.wait_for(Duration::from_secs(120), "20 s without a write by the operator", || async {
            tokio::time::sleep(quiet).await;
            let since = jiff::Timestamp::now() - jiff::SignedDuration::try_from(quiet).unwrap();
            let w = writes(since);
            if w.is_empty() { Ok(()) } else { Err(describe(&w.iter().collect::<Vec<_>>()).join("\n")) }
        })
        .await;

        let start = jiff::Timestamp::now();
        tokio::time::sleep(Duration::from_secs(60)).await;
        let end = jiff::Timestamp::now();
        let window: Vec<Entry> =
            operator_entries(&suite).into_iter().filter(|e| e.time().is_some_and(|t| t >= start && t < end)).collect();
        let writes: Vec<&Entry> = window.iter().filter(|e| e.is_write()).collect();
        assert!(writes.is_empty(), "the operator wrote while nothing changed:\n{}", describe(&writes).join("\n"));
        let watches = window.iter().filter(|e| e.verb == "watch").count();
        println!(
            "operator idle (1 service of 3 servers, 1 ServerComponentState): {} requests in 60 s ({} of them watches), 0 writes",
            window.len(),
            watches
        );
        env.finish().await.unwrap();
    }
    .boxed()
}

/// The operator's requests over the whole run against the rules the chart gave it.
pub fn rbac(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let operator = operator_entries(&suite);
        assert!(!operator.is_empty(), "the audit log has the operator's requests");
        let refused: Vec<&Entry> = operator.iter().filter(|e| e.forbidden_by_rbac()).collect();
        assert!(refused.is_empty(), "requests of the operator refused by RBAC:\n{}", describe(&refused).join("\n"));

        let manifest = suite.helm(&["get", "manifest", RELEASE, "-n", OPERATOR_NS]).expect("helm get manifest");
        let docs = parse_docs(&manifest);
        let grants: Vec<Grant> = docs
            .iter()
            .filter(|d| matches!(d["kind"].as_str(), Some("Role" | "ClusterRole")))
            .flat_map(|d| Grant::from_rules(&d["rules"]))
            .collect();
        assert!(!grants.is_empty(), "the chart granted the operator nothing?");
        let used = audit::used_permissions(operator.iter());
        let unused: Vec<String> =
            grants.iter().filter(|g| !used.iter().any(|p| g.covers(p))).map(|g| g.to_string()).collect();
        assert!(unused.is_empty(), "the chart grants what the operator never used: {unused:#?}");
        let uncovered: Vec<String> =
            used.iter().filter(|p| !grants.iter().any(|g| g.covers(p))).map(|p| p.to_string()).collect();
        assert!(uncovered.is_empty(), "used without a rule of the chart: {uncovered:#?}");

        let span = |es: &[Entry]| -> f64 {
            let times: Vec<jiff::Timestamp> = es.iter().filter_map(Entry::time).collect();
            match (times.iter().min(), times.iter().max()) {
                (Some(a), Some(b)) => (*b - *a).total(jiff::Unit::Second).unwrap_or(0.0).max(1.0),
                _ => 1.0,
            }
        };
        let (all, writes) = (operator.len(), operator.iter().filter(|e| e.is_write()).count());
        let minutes = span(&operator) / 60.0;
        println!(
            "operator over the run: {all} requests ({writes} writes) in {minutes:.1} min: {:.0} requests/min, {:.0} writes/min; {} permissions, all used",
            all as f64 / minutes,
            writes as f64 / minutes,
            grants.len()
        );
    }
    .boxed()
}
