//! The kind suite: scenarios against a real cluster with kube-transport installed by the
//! chart (`make e2e` creates a kind cluster, loads the images, `helm install`s and runs
//! these with KUBE_TRANSPORT_E2E=1; any cluster works through the current kubeconfig).
//! Without KUBE_TRANSPORT_E2E=1 each scenario says it is skipped and returns.
//!
//! Each applies the example manifests of examples/ into a namespace of its own, edited as a
//! user would for this cluster: the send connector's smart host and the mailbox hop point
//! at an in-cluster Postfix smtp-sink, and the receive connector also accepts 127.0.0.0/8,
//! where connections through `kubectl port-forward` come from inside the pod.
use e2e::kind::cluster::{self, at, example, send, skip, uuid_like, wait_queued, Env, PortForward, SinkRecipients};
use operator::crd::{ServerComponentState, TransportService};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::Duration;
use transport::config::{Component, ComponentState};

const FROM: &str = "alice@example.org";

/// examples/transportconfig-default.yaml and examples/transportservice-mail.yaml, pointed
/// at this namespace's sink, with retry intervals short enough for a test.
fn mail_manifests(env: &Env) -> (Value, Value) {
    let tc = example("transportconfig-default.yaml");
    let mut ts = example("transportservice-mail.yaml");
    assert_eq!(ts["metadata"]["name"], "mail");
    at(&mut ts, "/spec/receiveConnectors/0/remoteIPRanges").as_array_mut().unwrap().push(json!("127.0.0.0/8"));
    *at(&mut ts, "/spec/sendConnectors/0/smartHosts") = json!([env.sink_host()]);
    *at(&mut ts, "/spec/sendConnectors/0/tls") = json!("None");
    *at(&mut ts, "/spec/mailboxDelivery/host") = json!(env.sink_host());
    *at(&mut ts, "/spec/retry") = json!({
        "queueGlitchRetryInterval": "5s",
        "transientFailureRetryInterval": "5s",
        "outboundConnectionFailureRetryInterval": "10s",
        "messageRetryInterval": "10s"
    });
    (tc, ts)
}

/// A namespace of its own with the sink deployed and [`mail_manifests`] applied, every
/// server Ready; the manifests are returned for the scenario to edit and apply again.
struct Deployed {
    env: Env,
    sink: SinkRecipients,
    tc: Value,
    ts: Value,
    ready: TransportService,
}

async fn deploy_mail(namespace: &str) -> Deployed {
    let env = Env::new(namespace).await;
    let sink = env.deploy_sink().await;
    let (tc, ts) = mail_manifests(&env);
    env.apply(&tc).await;
    env.apply(&ts).await;
    let ready = env.wait_service_ready("mail", 3).await;
    Deployed { env, sink, tc, ts, ready }
}

fn recipients(token: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{token}-{i}@sink.test")).collect()
}

fn component_state(ts: &TransportService, server: &str, component: Component) -> Option<ComponentState> {
    let entry = ts.status.as_ref()?.servers.iter().find(|s| s.name == server)?;
    entry.components.iter().find(|c| c.component == component).map(|c| c.state)
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_reaches_the_sink_and_applying_the_same_manifests_again_changes_nothing() {
    if skip("mail_reaches_the_sink_and_applying_the_same_manifests_again_changes_nothing") {
        return;
    }
    let Deployed { env, mut sink, tc, ts, .. } = deploy_mail("mail").await;

    // Through the Service, as a client in the cluster would.
    let forward = PortForward::start(&env.namespace, "service/mail", 2525).await;
    let token = uuid_like();
    let to = recipients(&token, 5);
    for rcpt in &to {
        send(forward.addr, FROM, std::slice::from_ref(rcpt), &format!("e2e {token}")).await.expect("accepted");
    }
    env.wait_sink_has(&mut sink, &to.iter().cloned().collect()).await;
    // Delivered, so no server holds them any more.
    let ts_now = env
        .wait_for::<TransportService>("mail", "every queue empty", cluster::STEP, |ts| {
            ts.status.as_ref().is_some_and(|s| {
                s.servers.len() == 3 && s.servers.iter().all(|e| e.queue_totals.is_some_and(|q| q.messages == 0))
            })
        })
        .await;

    // GitOps: the same manifests again change nothing, neither the objects nor what the
    // operator made from them.
    let generation = ts_now.metadata.generation;
    let config = env.config_map("mail").await.metadata.resource_version;
    let pods = env.pod_uids("mail").await;
    let pvcs = env.pvc_uids().await;
    let tc_again = env.apply(&tc).await;
    let ts_again = env.apply(&ts).await;
    assert_eq!(ts_again.metadata.generation, generation, "re-applying changed the TransportService's spec");
    assert_eq!(tc_again.metadata.generation, Some(1), "re-applying changed the TransportConfig's spec");
    // Give the operator time to react to the applies (it is woken by them), then look.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let after = env.wait_service_ready("mail", 3).await;
    assert_eq!(after.metadata.generation, generation);
    assert_eq!(after.status.as_ref().unwrap().observed_generation, generation);
    assert_eq!(env.config_map("mail").await.metadata.resource_version, config, "the rendered ConfigMap was rewritten");
    assert_eq!(env.pod_uids("mail").await, pods, "servers were restarted");
    assert_eq!(env.pvc_uids().await, pvcs);
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_drains_a_server_takes_it_offline_and_brings_it_back() {
    if skip("maintenance_drains_a_server_takes_it_offline_and_brings_it_back") {
        return;
    }
    let Deployed { env, mut sink, .. } = deploy_mail("maint").await;

    // Mail waits on mail-1 while the next hop is down.
    env.scale_sink(0).await;
    let smtp1 = PortForward::start(&env.namespace, "pod/mail-1", 2525).await;
    let token = uuid_like();
    let queued_on_1 = recipients(&token, 3);
    for rcpt in &queued_on_1 {
        send(smtp1.addr, FROM, std::slice::from_ref(rcpt), "queued on mail-1").await.expect("accepted by mail-1");
    }
    let (_admin_forward, admin1) = env.admin("mail", "mail-1").await;
    wait_queued(&admin1, "mail-1 holds the messages", |n| n >= 3).await;

    // 1. Set-ServerComponentState mail-1 HubTransport Draining (requester Maintenance),
    //    redirecting to mail-0: examples/maintenance/mail-1-maintenance.yaml as it is.
    let draining = example("maintenance/mail-1-maintenance.yaml");
    env.apply(&draining).await;
    env.wait_pod_ready("mail-1", false).await;
    let scs = env
        .wait_for::<ServerComponentState>("mail-1-maintenance", "mail-1 drained", cluster::STEP, |s| {
            s.status.as_ref().is_some_and(|st| {
                st.observed_generation == s.metadata.generation
                    && st.effective_state == Some(ComponentState::Draining)
                    && st.conditions.iter().any(|c| c.type_ == "Drained" && c.status == "True")
            })
        })
        .await;
    let entry = &scs.status.as_ref().unwrap().servers;
    assert_eq!(entry.iter().find(|s| s.name == "mail-1").and_then(|s| s.messages_to_drain), Some(0));
    assert_eq!(cluster::queued(&admin1).await, 0, "mail-1 handed its queue to mail-0");
    let (_admin0_forward, admin0) = env.admin("mail", "mail-0").await;
    assert!(cluster::queued(&admin0).await >= 3, "mail-0 holds what mail-1 had");
    // New mail is refused by the drained server, the SMTP way.
    let refused = send(smtp1.addr, FROM, &recipients(&format!("{token}-late"), 1), "to a drained server").await;
    let e = refused.expect_err("a draining server refuses new mail");
    assert_eq!(e.status().map(|c| c.to_string()).as_deref(), Some("421"), "{e}");
    assert!(e.to_string().contains("4.3.2"), "{e}");

    // 2. ServerWideOffline Inactive on top (another object, the same requester).
    let mut offline = draining.clone();
    *at(&mut offline, "/metadata/name") = json!("mail-1-offline");
    *at(&mut offline, "/spec/component") = json!("ServerWideOffline");
    *at(&mut offline, "/spec/state") = json!("Inactive");
    offline["spec"].as_object_mut().unwrap().remove("redirectTo");
    env.apply(&offline).await;
    env.wait_for::<TransportService>("mail", "mail-1 ServerWideOffline Inactive in status", cluster::STEP, |ts| {
        component_state(ts, "mail-1", Component::ServerWideOffline) == Some(ComponentState::Inactive)
    })
    .await;
    let info = admin1.server().await.expect("GET /v1/server");
    let offline_state = info.components.iter().find(|c| c.component == Component::ServerWideOffline).map(|c| c.state);
    assert_eq!(offline_state, Some(ComponentState::Inactive), "{info:?}");
    assert_eq!(env.pod_ready("mail-1").await, Some(false));
    let e = send(smtp1.addr, FROM, &recipients(&format!("{token}-offline"), 1), "to an offline server")
        .await
        .expect_err("an offline server refuses mail");
    assert_eq!(e.status().map(|c| c.to_string()).as_deref(), Some("421"), "{e}");
    assert_eq!(cluster::queued(&admin1).await, 0, "the queue stays empty");

    // 3. The next hop comes back: what mail-1 handed over is delivered by mail-0.
    env.scale_sink(1).await;
    env.wait_sink_has(&mut sink, &queued_on_1.iter().cloned().collect()).await;

    // 4. End of maintenance: deleting the requests withdraws them.
    env.delete::<ServerComponentState>("mail-1-offline").await;
    env.delete::<ServerComponentState>("mail-1-maintenance").await;
    env.wait_pod_ready("mail-1", true).await;
    let ts = env.wait_service_ready("mail", 3).await;
    for component in [Component::HubTransport, Component::ServerWideOffline] {
        assert_eq!(component_state(&ts, "mail-1", component), Some(ComponentState::Active), "{component:?}");
    }
    let back = recipients(&format!("{token}-back"), 1);
    send(smtp1.addr, FROM, &back, "mail-1 is back").await.expect("mail-1 takes mail again");
    env.wait_sink_has(&mut sink, &back.into_iter().collect()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn config_change_by_reapplying_edited_manifests_reaches_running_servers() {
    if skip("config_change_by_reapplying_edited_manifests_reaches_running_servers") {
        return;
    }
    let Deployed { env, mut sink, mut tc, mut ts, ready: before } = deploy_mail("config").await;
    let old: Vec<(String, String)> = before
        .status
        .unwrap()
        .servers
        .into_iter()
        .map(|s| (s.name, s.config_revision.expect("each server reports its config revision")))
        .collect();
    assert_eq!(old.len(), 3);
    let pods = env.pod_uids("mail").await;
    let forward = PortForward::start(&env.namespace, "service/mail", 2525).await;
    let token = uuid_like();
    let three = recipients(&token, 3);
    send(forward.addr, FROM, &three, "three recipients").await.expect("200 recipients allowed");
    env.wait_sink_has(&mut sink, &three.iter().cloned().collect()).await;

    // Edit the manifests (a commit in a GitOps repository) and apply them again.
    *at(&mut ts, "/spec/receiveConnectors/0/maxRecipientsPerMessage") = json!(2);
    *at(&mut ts, "/spec/retry/messageRetryInterval") = json!("00:07:00");
    *at(&mut tc, "/spec/maxRecipientEnvelopeLimit") = json!(300);
    let applied = env.apply(&ts).await;
    env.apply(&tc).await;
    let generation = applied.metadata.generation;
    let after = env
        .wait_for::<TransportService>("mail", "every server on the new configuration", cluster::STEP, |t| {
            t.status.as_ref().is_some_and(|s| {
                s.observed_generation == generation
                    && s.servers.len() == 3
                    && s.servers.iter().all(|e| {
                        let was = old.iter().find(|(n, _)| *n == e.name).map(|(_, r)| r);
                        e.config_revision.is_some()
                            && e.config_revision == e.desired_config_revision
                            && e.config_revision.as_ref() != was
                    })
            })
        })
        .await;
    // The revision the servers report is the one the operator rendered into the ConfigMap.
    let annotations = env.config_map("mail").await.metadata.annotations.unwrap_or_default();
    for entry in &after.status.as_ref().unwrap().servers {
        assert_eq!(
            annotations.get(&operator::names::config_revision_annotation(&entry.name)),
            entry.config_revision.as_ref(),
            "{}",
            entry.name
        );
    }
    assert_eq!(env.pod_uids("mail").await, pods, "a reloadable change must not restart the servers");
    // And the servers behave by it: a third recipient is now refused.
    let forward = PortForward::start(&env.namespace, "service/mail", 2525).await;
    let e = send(forward.addr, FROM, &recipients(&format!("{token}-limit"), 3), "three again")
        .await
        .expect_err("maxRecipientsPerMessage is 2 now");
    assert_eq!(e.status().map(|c| c.to_string()).as_deref(), Some("452"), "{e}");
    assert!(e.to_string().contains("4.5.3"), "{e}");
    let two: BTreeSet<String> = recipients(&format!("{token}-two"), 2).into_iter().collect();
    send(forward.addr, FROM, &two.iter().cloned().collect::<Vec<_>>(), "two").await.expect("two recipients are fine");
    env.wait_sink_has(&mut sink, &two).await;
}
