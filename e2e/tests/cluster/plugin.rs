//! `kubectl transport` as README tells a user to install and use it: the real kubectl, the
//! plugin on the user's PATH, and a user who holds nothing but the Role of
//! examples/rbac/transport-admin-role.yaml (a ServiceAccount bound to it, its token from the
//! TokenRequest API, a kubeconfig of its own). Two servers hold mail for a next hop that is
//! down; the user reads status, queues, the queue digest and the messages across both
//! servers through the API server's pod proxy, puts mail-1 into maintenance with its queue
//! redirected to mail-0 and takes it out again. A user without `pods/proxy` is told which
//! permission is missing, a TransportService that does not exist is named, and the audit
//! log shows that the Role is exactly what the plugin needs: nothing refused, all used.
use e2e::cluster::audit::{self, Grant};
use e2e::scenario::flow::{hold_on, mail_with_dead_hop, wait_pod_ready};
use e2e::scenario::smtp;
use e2e::scenario::user::User;
use e2e::scenario::Suite;
use futures::future::BoxFuture;
use futures::FutureExt;
use operator::crd::ServerComponentState;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

const ROLE_FILE: &str = "examples/rbac/transport-admin-role.yaml";

/// Messages per server of get-queue's rows, shadow copies left out.
fn queued_by_server(rows: &Value) -> BTreeMap<String, u64> {
    let mut by = BTreeMap::new();
    for q in rows.as_array().expect("get-queue -o json is an array") {
        let server = q["server"].as_str().expect("each row names its server").to_string();
        let identity = q["identity"].as_str().unwrap_or_default();
        assert!(identity.starts_with(&format!("{server}\\")), "{identity} is not one of {server}'s queues");
        if q["deliveryType"] != "ShadowRedundancy" {
            *by.entry(server).or_default() += q["messageCount"].as_u64().unwrap_or_default();
        }
    }
    by
}

fn server<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["servers"]
        .as_array()
        .and_then(|s| s.iter().find(|x| x["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

fn hub_state(server: &Value) -> String {
    server["components"]
        .as_array()
        .and_then(|c| c.iter().find(|x| x["component"] == "HubTransport"))
        .and_then(|c| c["state"].as_str())
        .unwrap_or_default()
        .to_string()
}

pub fn as_a_user(suite: Arc<Suite>) -> BoxFuture<'static, ()> {
    async move {
        let env = suite.env("plugin").await.expect("namespace");
        let (_sink, _dead) = mail_with_dead_hop(&env, 2).await;
        let on0: Vec<String> = (0..2).map(|i| format!("plugin-a{i}")).collect();
        let on1: Vec<String> = (0..3).map(|i| format!("plugin-b{i}")).collect();
        hold_on(&env, "mail-0", &on0, "dave@later.test").await;
        hold_on(&env, "mail-1", &on1, "dave@later.test").await;

        // The administrator grants the README's Role, and a second user that Role without
        // pods/proxy.
        env.kubectl(&["apply", "-f", ROLE_FILE]).expect("kubectl apply of the README's Role");
        let role: Value =
            serde_yaml::from_str(&std::fs::read_to_string(e2e::kind::tools::repo_root().join(ROLE_FILE)).unwrap())
                .expect("the Role file is YAML");
        let mut no_proxy = role.clone();
        no_proxy["metadata"]["name"] = "transport-no-proxy".into();
        if let Some(rules) = no_proxy["rules"].as_array_mut() {
            rules.retain(|r| r["resources"][0] != "pods/proxy");
        }
        env.apply_yaml(&serde_yaml::to_string(&no_proxy).unwrap()).unwrap();
        let admin = User::bound_to(&env, "transport-admin", "transport-admin").expect("the admin user");
        let viewer = User::bound_to(&env, "no-proxy", "transport-no-proxy").expect("the user without pods/proxy");

        // status: the TransportService's status, then each server as its admin API says now.
        let status = admin.kubectl(&["transport", "status", "mail", "-o", "json"]).json();
        assert_eq!(status["transportService"], "mail");
        assert_eq!(status["namespace"], "plugin", "the namespace of the kubeconfig's context");
        for (name, held) in [("mail-0", 2), ("mail-1", 3)] {
            let s = server(&status, name);
            assert_eq!(s["source"], "server", "{name} answered through the proxy: {s}");
            assert_eq!(s["serverState"]["code"], 2, "{s}");
            assert_eq!(s["serverState"]["name"], "Started", "{s}");
            assert_eq!(s["queueTotals"]["messages"], held, "{s}");
            assert_eq!(hub_state(s), "Active");
        }
        let ready = status["conditions"].as_array().and_then(|c| c.iter().find(|c| c["type"] == "Ready")).cloned();
        assert_eq!(ready.map(|c| c["status"].clone()), Some("True".into()), "{status}");
        let table = admin.kubectl(&["transport", "status", "mail"]).ok().to_string();
        assert!(table.contains("Servers ready:  2/2") && table.contains("Started (2)"), "{table}");
        println!("kubectl transport status mail\n{table}");

        // get-queue on both servers, and on one with Exchange's -Filter.
        let queues = admin.kubectl(&["transport", "get-queue", "mail", "-o", "json"]).json();
        let by = queued_by_server(&queues);
        assert_eq!(by, BTreeMap::from([("mail-0".to_string(), 2), ("mail-1".to_string(), 3)]), "{queues}");
        let filter = "MessageCount -gt 0 -and DeliveryType -ne ShadowRedundancy";
        let one = admin
            .kubectl(&["transport", "get-queue", "mail", "--server", "mail-1", "--filter", filter, "-o", "json"])
            .json();
        assert_eq!(queued_by_server(&one), BTreeMap::from([("mail-1".to_string(), 3)]), "{one}");
        let table = admin.kubectl(&["transport", "get-queue", "mail"]).ok().to_string();
        assert!(table.starts_with("IDENTITY") && table.contains("mail-0\\") && table.contains("mail-1\\"), "{table}");

        // get-queuedigest: the dead next hop's queues of both servers in one group.
        let digest = admin.kubectl(&["transport", "get-queuedigest", "mail", "-o", "json"]).json();
        let groups = digest.as_array().expect("an array");
        let held: Vec<&Value> = groups.iter().filter(|g| g["messageCount"] == 5).collect();
        assert_eq!(held.len(), 1, "one group holds the 5 messages: {digest}");
        assert_eq!(held[0]["servers"], serde_json::json!(["mail-0", "mail-1"]), "{digest}");
        assert_eq!(groups.iter().map(|g| g["messageCount"].as_u64().unwrap_or_default()).sum::<u64>(), 5, "{digest}");
        let table =
            admin.kubectl(&["transport", "get-queuedigest", "mail", "--group-by", "ServerName"]).ok().to_string();
        assert!(table.starts_with("SERVERNAME"), "{table}");
        println!(
            "kubectl transport get-queuedigest mail\n{}",
            admin.kubectl(&["transport", "get-queuedigest", "mail"]).ok()
        );

        // get-message: every held message, on the server that took it.
        let messages = admin.kubectl(&["transport", "get-message", "mail", "-o", "json"]).json();
        let rows = messages.as_array().expect("an array");
        let seen: BTreeMap<String, String> = rows
            .iter()
            .map(|m| {
                (
                    m["internetMessageId"].as_str().unwrap_or_default().to_string(),
                    m["server"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let sent: BTreeMap<String, String> = on0
            .iter()
            .map(|id| (smtp::message_id(id), "mail-0".to_string()))
            .chain(on1.iter().map(|id| (smtp::message_id(id), "mail-1".to_string())))
            .collect();
        assert_eq!(seen, sent, "{messages}");
        let two = admin.kubectl(&["transport", "get-message", "mail", "--result-size", "2", "-o", "json"]);
        assert_eq!(two.json().as_array().map(Vec::len), Some(2));
        assert!(two.stderr.contains("more messages match"), "{}", two.stderr);

        // maintenance start: the ServerComponentState a user would write, mail-1 drained to mail-0.
        let started =
            admin.kubectl(&["transport", "maintenance", "start", "mail-1", "--redirect-to", "mail-0", "--wait"]);
        assert!(started.ok().contains("mail-1 drained"), "{}", started.stdout);
        let scs = env.api::<ServerComponentState>().get("mail-1-maintenance").await.expect("the maintenance request");
        assert_eq!(
            serde_json::to_value(&scs.spec).unwrap(),
            serde_json::json!({"server": "mail-1", "transportServiceRef": {"name": "mail"}, "component": "HubTransport",
                               "requester": "Maintenance", "state": "Draining", "redirectTo": "mail-0"})
        );
        let managers: Vec<String> =
            scs.metadata.managed_fields.iter().flatten().filter_map(|m| m.manager.clone()).collect();
        assert!(managers.contains(&"kubectl-transport".to_string()), "{managers:?}");
        wait_pod_ready(&env, "mail-1", false).await;
        let status = admin.kubectl(&["transport", "status", "mail", "-o", "json"]).json();
        let (mail0, mail1) = (server(&status, "mail-0"), server(&status, "mail-1"));
        assert_eq!(hub_state(mail1), "Draining", "{mail1}");
        assert_eq!(mail1["source"], "server", "a draining (not Ready) server still answers through the proxy: {mail1}");
        assert_eq!(mail1["queueTotals"]["messages"], 0, "{mail1}");
        assert_eq!(mail0["queueTotals"]["messages"], 5, "{mail0}");
        let requests = status["componentRequests"].as_array().cloned().unwrap_or_default();
        assert!(requests.iter().any(|r| r["name"] == "mail-1-maintenance" && r["state"] == "Draining"), "{status}");
        let queues = admin.kubectl(&["transport", "get-queue", "mail", "-o", "json"]).json();
        assert_eq!(queued_by_server(&queues).get("mail-0"), Some(&5), "{queues}");

        // Message tracking follows a redirected message from mail-1 to mail-0.
        let id = smtp::message_id(&on1[0]);
        let records =
            admin.kubectl(&["transport", "get-messagetrackinglog", "mail", "--message-id", &id, "-o", "json"]).json();
        let rows = records.as_array().expect("an array");
        let seen: Vec<(String, String)> = rows
            .iter()
            .map(|r| {
                (r["server"].as_str().unwrap_or_default().into(), r["eventId"].as_str().unwrap_or_default().into())
            })
            .collect();
        let at = |server: &str, event: &str| {
            seen.iter()
                .position(|(s, e)| s == server && e == event)
                .unwrap_or_else(|| panic!("no {event} on {server}: {seen:?}"))
        };
        assert!(at("mail-1", "RECEIVE") < at("mail-1", "REDIRECT"), "{seen:?}");
        // mail-0 logs its RECEIVE before mail-1 its REDIRECT (the hand-over is done on 250).
        assert!(at("mail-1", "RECEIVE") < at("mail-0", "RECEIVE"), "redirected to mail-0: {seen:?}");
        println!("{}", admin.kubectl(&["transport", "get-messagetrackinglog", "mail", "--message-id", &id]).ok());

        // maintenance stop: the request withdrawn, mail-1 Ready again.
        let stopped = admin.kubectl(&["transport", "maintenance", "stop", "mail-1", "--wait"]);
        assert!(stopped.ok().contains("withdrawn"), "{}", stopped.stdout);
        assert!(env.api::<ServerComponentState>().get_opt("mail-1-maintenance").await.unwrap().is_none());
        wait_pod_ready(&env, "mail-1", true).await;
        let again = admin.kubectl(&["transport", "maintenance", "stop", "mail-1"]);
        assert!(again.failed(1).contains("is not in maintenance"), "{}", again.stderr);

        // What else the Role lets the user see.
        let listed = admin.kubectl(&["get", "ts,scs"]).ok().to_string();
        assert!(listed.contains("mail"), "{listed}");

        // Errors that say what to do.
        let missing = admin.kubectl(&["transport", "status", "nosuch"]);
        let why = missing.failed(1);
        assert!(why.contains("no TransportService nosuch in namespace plugin"), "{why}");
        let refused = viewer.kubectl(&["transport", "get-queue", "mail"]);
        let why = refused.failed(1);
        assert!(why.contains("cannot get resource \"pods/proxy\""), "{why}");
        assert!(why.contains("kubectl transport get-queue needs RBAC verb `get` on resource `pods/proxy`"), "{why}");
        assert!(why.contains(ROLE_FILE), "{why}");
        assert_eq!(why.matches("needs RBAC").count(), 1, "told once, not per server: {why}");
        println!("kubectl transport get-queue mail (without pods/proxy)\n{why}");
        let partial = viewer.kubectl(&["transport", "status", "mail", "-o", "json"]).json();
        assert!(server(&partial, "mail-0")["error"].as_str().unwrap_or_default().contains("pods/proxy"), "{partial}");

        // The audit log: the Role is what the plugin needs, no more, no less.
        let entries = suite.cluster.audit();
        let mine: Vec<&audit::Entry> = audit::by_user(&entries, &admin.username).collect();
        assert!(!mine.is_empty(), "the audit log has the user's requests");
        let refused: Vec<String> =
            mine.iter().filter(|e| e.forbidden_by_rbac()).map(|e| format!("{} {}", e.verb, e.request_uri)).collect();
        assert!(refused.is_empty(), "requests of the README's Role refused: {refused:#?}");
        let grants = Grant::from_rules(&role["rules"]);
        let used = audit::used_permissions(mine.iter().copied());
        let unused: Vec<String> =
            grants.iter().filter(|g| !used.iter().any(|p| g.covers(p))).map(|g| g.to_string()).collect();
        assert!(unused.is_empty(), "the Role grants what kubectl transport never used: {unused:#?}");
        let uncovered: Vec<String> =
            used.iter().filter(|p| !grants.iter().any(|g| g.covers(p))).map(|p| p.to_string()).collect();
        assert!(uncovered.is_empty(), "used without a rule of the Role: {uncovered:#?}");
        env.finish().await.unwrap();
    }
    .boxed()
}
