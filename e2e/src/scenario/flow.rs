//! Mail and status helpers the scenarios share: the objects they apply, a continuous mail
//! flow through a Service, and the waits on what `kubectl get ts -o yaml` shows.
use super::sink::{Outside, Sink};
use super::{pod_ready, smtp, smtp_address, Env};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use operator::crd::{
    ServerComponentState, ServerComponentStateStatus, TransportConfig, TransportConfigSpec, TransportService,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The TransportConfig `default`: organisation `example.com`, postmaster there.
pub fn transport_config() -> TransportConfig {
    let spec: TransportConfigSpec = serde_json::from_value(serde_json::json!({
        "acceptedDomains": [{"domain": "example.com", "type": "Authoritative"}],
        "postmaster": "postmaster@example.com",
    }))
    .expect("TransportConfig spec");
    TransportConfig::new("default", spec)
}

/// [`transport_config`] with shadow heartbeats every 5 s: a shadow copy left behind by a
/// drain or a removal would be delivered a second time within the scenario, not hours later.
pub fn fast_shadow_heartbeats() -> TransportConfig {
    let mut tc = transport_config();
    tc.spec.settings.shadow_heartbeat_frequency = Some("00:00:05".parse().expect("a TimeSpan"));
    tc
}

/// How many shadow copies of `primary`'s messages each of `servers` of `service` holds
/// (its `ShadowRedundancy` queues whose next hop is `primary`).
pub async fn shadow_copies(env: &Env<'_>, service: &str, servers: &[&str], primary: &str) -> Result<Vec<u64>, String> {
    let mut held = Vec::new();
    for server in servers {
        let admin = env.admin(service, server).await.map_err(|e| e.to_string())?;
        let queues = admin.queues().await.map_err(|e| e.to_string())?;
        let shadows = queues.iter().filter(|q| q.delivery_type == transport::api::DeliveryType::ShadowRedundancy);
        held.push(shadows.filter(|q| q.next_hop_domain == primary).map(|q| q.message_count).sum());
    }
    Ok(held)
}

/// A TransportService `name` of `servers` servers: receive connector `Default` on port
/// 2525 (anonymous relay from the pod network), every domain relayed to the smart host
/// `next_hop`, plus `extra` merged into the spec.
pub fn mail_service(name: &str, servers: u32, next_hop: SocketAddr, extra: serde_json::Value) -> TransportService {
    let mut spec = serde_json::json!({
        "servers": servers,
        "receiveConnectors": [{"name": "Default", "port": 2525, "remoteIPRanges": ["10.0.0.0/8"], "allowRelay": true}],
        "sendConnectors": [{"name": "Outbound", "addressSpaces": [{"domain": "*"}], "smartHosts": [next_hop.to_string()]}],
    });
    if let (Some(base), Some(more)) = (spec.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            base.insert(k.clone(), v.clone());
        }
    }
    TransportService::new(name, serde_json::from_value(spec).expect("TransportService spec"))
}

/// The server that answered `250 2.6.0 <id@<server>.<service>-headless...> Queued`.
pub fn server_of(reply: &str) -> Option<String> {
    let at = reply.find('@')?;
    let rest = &reply[at + 1..];
    Some(rest.split(['.', '>']).next()?.to_string())
}

/// What a mail flow sent.
#[derive(Debug, Default, Clone)]
pub struct FlowReport {
    /// Message-ID (`<id@e2e.test>`) → the server that answered 250.
    pub accepted: BTreeMap<String, String>,
    /// Every refusal or failed connection (not accepted, so not owed).
    pub refused: Vec<String>,
}

/// Mail sent continuously to a Service, one message at a time: the Service's proxy picks
/// a ready server for each connection, as kube-proxy does. Each message goes to the
/// Service's (first) port as it is at that moment, as a client reconfigured with it would.
pub struct MailFlow {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<FlowReport>,
}

impl MailFlow {
    pub fn start(env: &Env<'_>, service: &str, prefix: &str, gap: Duration) -> MailFlow {
        let prefix = prefix.to_string();
        let table = env.cluster().proxy.clone();
        let key = format!("{}/{service}", env.ns);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut report = FlowReport::default();
            let mut n = 0usize;
            while !*stopped.borrow() {
                let port = table.ports(&key).first().copied();
                let Some(target) = table.address(&key).zip(port).map(SocketAddr::from) else {
                    tokio::time::sleep(gap).await;
                    continue;
                };
                let id = format!("{prefix}-{n}");
                n += 1;
                match smtp::send_one(target, &id, "bob@example.net").await {
                    Ok(reply) if reply.starts_with("250") => {
                        let server = server_of(&reply).unwrap_or_default();
                        report.accepted.insert(smtp::message_id(&id), server);
                    }
                    Ok(reply) => report.refused.push(reply),
                    Err(e) => report.refused.push(e.to_string()),
                }
                tokio::select! {
                    _ = tokio::time::sleep(gap) => {}
                    _ = stopped.changed() => {}
                }
            }
            report
        });
        MailFlow { stop, task }
    }

    pub async fn stop(self) -> FlowReport {
        let _ = self.stop.send(true);
        tokio::time::timeout(Duration::from_secs(60), self.task)
            .await
            .expect("the mail flow stops within a minute")
            .expect("mail flow task")
    }
}

/// Counts, every 50 ms, how many of a service's `servers` are out of service (not Ready,
/// or being deleted); [`OutOfService::stop`] gives the worst count seen.
pub struct OutOfService {
    stop: tokio::sync::watch::Sender<bool>,
    task: JoinHandle<usize>,
}

impl OutOfService {
    pub fn start(env: &Env<'_>, servers: usize) -> OutOfService {
        let pods = env.api::<k8s_openapi::api::core::v1::Pod>();
        let selector = format!("{}={}", operator::names::LABEL_NAME, operator::names::APP_NAME);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(async move {
            let mut worst = 0;
            while !*stopped.borrow() {
                if let Ok(list) = pods.list(&kube::api::ListParams::default().labels(&selector)).await {
                    let up =
                        list.items.iter().filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none()).count();
                    worst = worst.max(servers.saturating_sub(up));
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.changed() => {}
                }
            }
            worst
        });
        OutOfService { stop, task }
    }

    pub async fn stop(self) -> usize {
        let _ = self.stop.send(true);
        self.task.await.expect("the sampler")
    }
}

/// What a user expects of servers rolling one at a time (a port change, an upgrade): mail
/// sent through the Service all along, at most one server out of service at once.
pub struct Roll {
    flow: MailFlow,
    sampler: OutOfService,
}

impl Roll {
    /// Starts sending through `service` (message ids prefixed `prefix`) and sampling its
    /// `servers`.
    pub fn start(env: &Env<'_>, service: &str, prefix: &str, servers: usize) -> Roll {
        Roll {
            flow: MailFlow::start(env, service, prefix, Duration::from_millis(40)),
            sampler: OutOfService::start(env, servers),
        }
    }

    /// Once the roll is over: never more than one server out of service, mail kept flowing
    /// during `what`, every accepted message at `sink`.
    pub async fn finish(self, env: &Env<'_>, sink: &Sink, what: &str) {
        let worst = self.sampler.stop().await;
        let report = self.flow.stop().await;
        assert!(worst <= 1, "{worst} servers were out of service at once during {what}");
        assert!(report.accepted.len() >= 20, "mail kept flowing during {what}: {report:?}");
        assert_all_delivered(env, sink, &report.accepted).await;
    }
}

/// Asserts that every accepted message reached the sink at least once (a hand-over retried
/// after a lost answer may deliver one twice; never none).
pub async fn assert_all_delivered(env: &Env<'_>, sink: &Sink, accepted: &BTreeMap<String, String>) {
    env.wait_for(Duration::from_secs(120), "every accepted message at the sink", || async {
        let got = sink.message_ids();
        let missing: Vec<&String> = accepted.keys().filter(|id| !got.contains_key(*id)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("{} of {} missing, e.g. {:?}", missing.len(), accepted.len(), &missing[..missing.len().min(5)]))
        }
    })
    .await;
}

/// The condition `type_` of a status's conditions.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Waits until `kubectl get ts <name>` shows Ready True, every server Started (2) and
/// running the configuration rendered for it (Progressing False), for this generation.
pub async fn wait_service_ready(env: &Env<'_>, name: &str, servers: usize) -> TransportService {
    let what = format!("TransportService {name} Ready with {servers} servers Started");
    env.wait_for(Duration::from_secs(180), &what, || async {
        let ts = env.service(name).await.map_err(|e| e.to_string())?;
        let status = ts.status.clone().ok_or("no status")?;
        let ready = condition(&status.conditions, "Ready").cloned().ok_or("no Ready")?;
        let progressing = condition(&status.conditions, "Progressing").cloned().ok_or("no Progressing")?;
        let started = status.servers.iter().filter(|s| s.server_state.map(|x| x.code) == Some(2)).count();
        if ready.status == "True"
            && progressing.status == "False"
            && status.servers.len() == servers
            && started == servers
            && status.observed_generation == ts.metadata.generation
        {
            Ok(ts)
        } else {
            Err(format!(
                "Ready {} {}: {}; Progressing {}: {}",
                ready.status, ready.reason, ready.message, progressing.reason, progressing.message
            ))
        }
    })
    .await
}

/// Takes `server` of `service` into maintenance as a user would, with `kubectl apply` of a
/// ServerComponentState `<server>-maintenance` (HubTransport Draining by Maintenance), and
/// waits until it reports the server drained.
pub async fn drain_for_maintenance(env: &Env<'_>, service: &str, server: &str) {
    let name = operator::names::maintenance_name(server);
    env.apply_yaml(&format!(
        "apiVersion: kubetransport.io/v1alpha1\nkind: ServerComponentState\nmetadata: {{name: {name}}}\n\
         spec: {{server: {server}, transportServiceRef: {{name: {service}}}, component: HubTransport, \
         requester: Maintenance, state: Draining}}\n"
    ))
    .expect("kubectl apply of the ServerComponentState");
    wait_component_state(env, &name, &format!("{server} drained"), |s| {
        condition(&s.conditions, "Drained").is_some_and(|c| c.status == "True")
    })
    .await;
}

/// The status of a ServerComponentState, once `check` accepts it (for this generation).
pub async fn wait_component_state(
    env: &Env<'_>,
    name: &str,
    what: &str,
    check: impl Fn(&ServerComponentStateStatus) -> bool,
) -> ServerComponentStateStatus {
    env.wait_for(Duration::from_secs(90), what, || async {
        let obj = env.api::<ServerComponentState>().get(name).await.map_err(|e| e.to_string())?;
        let status = obj.status.clone().ok_or("no status")?;
        if check(&status) && status.observed_generation == obj.metadata.generation {
            Ok(status)
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await
}

/// The pod of `server` is Ready (true) or not (false), as `kubectl get pod` shows it.
pub async fn wait_pod_ready(env: &Env<'_>, server: &str, ready: bool) {
    let what = format!("pod {server} Ready={ready}");
    env.wait_for(Duration::from_secs(90), &what, || async {
        let pod = env.pod(server).await.map_err(|e| e.to_string())?.ok_or("no pod")?;
        if pod_ready(&pod) == ready && pod.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some() {
            Ok(())
        } else {
            Err(format!("{:?}", pod.status.and_then(|s| s.conditions)))
        }
    })
    .await
}

/// Retry-Queue on every queue in Retry of `servers` (what an administrator does once a dead
/// next hop is back), until `done` holds.
pub async fn retry_until(
    env: &Env<'_>,
    service: &str,
    servers: &[&str],
    what: &str,
    done: impl Fn() -> Result<(), String>,
) {
    env.wait_for(Duration::from_secs(120), what, || async {
        if let Ok(()) = done() {
            return Ok(());
        }
        for server in servers {
            let admin = env.admin(service, server).await.map_err(|e| e.to_string())?;
            for q in admin.queues().await.map_err(|e| e.to_string())? {
                if q.status == transport::api::QueueStatus::Retry {
                    let _ = admin.queue_action(&q.id, transport::client::QueueAction::Retry).await;
                }
            }
        }
        done()
    })
    .await;
}

/// Messages in each server's queues as `kubectl get ts -o yaml` shows them (a summary the
/// operator refreshes every 60 s when nothing is queued, every 10 s once mail is: waits on
/// it allow two minutes).
pub async fn queued(env: &Env<'_>, service: &str) -> BTreeMap<String, u64> {
    let Ok(ts) = env.service(service).await else { return BTreeMap::new() };
    ts.status
        .map(|s| {
            s.servers.iter().map(|e| (e.name.clone(), e.queue_totals.map(|t| t.messages).unwrap_or_default())).collect()
        })
        .unwrap_or_default()
}

/// Waits until the per-server message counts of `service` (see [`queued`]) satisfy `done`.
pub async fn wait_queued(
    env: &Env<'_>,
    service: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<String, u64>) -> bool,
) {
    env.wait_for(within, what, || async {
        let q = queued(env, service).await;
        if done(&q) {
            Ok(())
        } else {
            Err(format!("{q:?}"))
        }
    })
    .await
}

/// A service whose `later.test` mail goes to `dead`, where nothing listens yet.
pub fn service_with_dead_hop(name: &str, servers: u32, sink: SocketAddr, dead: Outside) -> TransportService {
    mail_service(
        name,
        servers,
        sink,
        serde_json::json!({"sendConnectors": [
            {"name": "Outbound", "addressSpaces": [{"domain": "*"}], "smartHosts": [sink.to_string()]},
            {"name": "Later", "addressSpaces": [{"domain": "later.test"}], "smartHosts": [dead.addr.to_string()]},
        ]}),
    )
}

/// `mail` (`servers` servers) Ready, with `later.test` mail going to a next hop that is
/// down until a test starts a sink at the returned address; the rest goes to the sink.
pub async fn mail_with_dead_hop(env: &Env<'_>, servers: u32) -> (Sink, Outside) {
    let sink = Sink::start(env.cluster()).expect("smtp-sink");
    let dead = Outside::reserve(env.cluster(), 2526).expect("an outside address");
    env.apply(&fast_shadow_heartbeats()).await.expect("apply TransportConfig");
    env.apply(&service_with_dead_hop("mail", servers, sink.addr, dead)).await.expect("apply TransportService");
    wait_service_ready(env, "mail", servers as usize).await;
    (sink, dead)
}

/// Sends one message per id straight to `server` of `mail` for `rcpt` (a `later.test`
/// address, so it stays queued), each accepted, and waits until that server's queue holds
/// them all. Returns the server's SMTP address.
pub async fn hold_on(env: &Env<'_>, server: &str, ids: &[String], rcpt: &str) -> SocketAddr {
    let pod = env.pod(server).await.expect("get pod").unwrap_or_else(|| panic!("no pod {server}"));
    let addr = smtp_address(&pod).unwrap_or_else(|| panic!("{server} has no SMTP address"));
    for id in ids {
        let reply = smtp::send_one(addr, id, rcpt).await.expect("SMTP session");
        assert!(reply.starts_with("250"), "{server} refused {id}: {reply}");
    }
    let what = format!("{} messages held on {server}", ids.len());
    wait_queued(env, "mail", Duration::from_secs(120), &what, |q| q.get(server) == Some(&(ids.len() as u64))).await;
    addr
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_server_is_read_from_the_queued_reply() {
        let reply = "250 2.6.0 <17@mail-1.mail-headless.ns.svc.cluster.local> Queued mail for delivery";
        assert_eq!(super::server_of(reply).as_deref(), Some("mail-1"));
    }
}
