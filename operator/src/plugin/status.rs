//! `status`: the TransportService as its status says (conditions, servers ready,
//! ServerState), then each server as its admin API says now (`GET /v1/server`: ServerState,
//! component states, queue totals, configuration revision, redirect progress), and the
//! ServerComponentStates aimed at it. A server that cannot be asked shows what the
//! operator last saw of it, and why it could not be asked.
use super::error::Result;
use super::servers::Server;
use super::session::Session;
use super::table::{emit, one_line, or_none, render, Output};
use super::Rendered;
use crate::crd::{ServerComponentState, ServerStatus, TransportService};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;
use transport::api::{ComponentInfo, QueueTotals, RedirectInfo, ServerInfo, ServerStateInfo};
use transport::client::paths;
use transport::config::ComponentState;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    pub transport_service: String,
    pub namespace: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub servers_ready: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_state: Option<String>,
    /// The status describes this generation of the spec.
    pub up_to_date: bool,
    pub conditions: Vec<Condition>,
    pub servers: Vec<ServerReport>,
    /// The ServerComponentStates aimed at this TransportService's servers.
    pub component_requests: Vec<ComponentRequest>,
    /// What could not be read (the servers' own errors are in `servers[].error`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerReport {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_phase: Option<String>,
    pub ready: bool,
    pub terminating: bool,
    /// `server`: its admin API answered now; `operator`: what the TransportService's
    /// status last said (the server could not be asked).
    pub source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_state: Option<ServerStateInfo>,
    pub components: Vec<ComponentInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_totals: Option<QueueTotals>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_config_revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepting_mail: Option<bool>,
    pub restart_required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectInfo>,
    /// What the operator is doing with the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator_message: Option<String>,
    /// Why the server could not be asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentRequest {
    pub name: String,
    pub server: String,
    pub component: String,
    pub requester: String,
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_to_drain: Option<u64>,
    /// The `Drained` condition's status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drained: Option<String>,
    pub deleting: bool,
}

/// The report from what was read: `live` is each server's `GET /v1/server` or why not.
pub fn report(
    ts: &TransportService,
    servers: &[Server],
    live: Vec<(String, std::result::Result<ServerInfo, String>)>,
    requests: &[ServerComponentState],
    problems: Vec<String>,
) -> StatusReport {
    let name = ts.name_any();
    let status = ts.status.clone().unwrap_or_default();
    let servers = servers
        .iter()
        .map(|s| {
            let seen = status.servers.iter().find(|e| e.name == s.name);
            let answer = live.iter().find(|(n, _)| *n == s.name).map(|(_, a)| a);
            server_report(s, seen, answer)
        })
        .collect();
    let component_requests = requests
        .iter()
        .filter(|r| r.spec.transport_service_ref.name == name)
        .map(|r| {
            let st = r.status.clone().unwrap_or_default();
            ComponentRequest {
                name: r.name_any(),
                server: r.spec.server.clone(),
                component: r.spec.component.as_str().into(),
                requester: r.spec.requester.as_str().into(),
                state: r.spec.state.as_str().into(),
                redirect_to: r.spec.redirect_to.clone(),
                effective_state: st.effective_state.map(|s| s.as_str().to_string()),
                messages_to_drain: st.messages_to_drain,
                drained: st.conditions.iter().find(|c| c.type_ == "Drained").map(|c| c.status.clone()),
                deleting: r.metadata.deletion_timestamp.is_some(),
            }
        })
        .collect();
    StatusReport {
        transport_service: name,
        namespace: ts.namespace().unwrap_or_default(),
        servers_ready: status.servers_ready.clone(),
        server_state: status.server_state.clone(),
        up_to_date: status.observed_generation.is_some() && status.observed_generation == ts.metadata.generation,
        conditions: status.conditions.clone(),
        servers,
        component_requests,
        problems,
    }
}

fn server_report(
    s: &Server,
    seen: Option<&ServerStatus>,
    answer: Option<&std::result::Result<ServerInfo, String>>,
) -> ServerReport {
    let mut r = ServerReport {
        name: s.name.clone(),
        pod_phase: s.pod.as_ref().map(|p| p.phase.clone()),
        ready: s.pod.as_ref().is_some_and(|p| p.ready),
        terminating: s.pod.as_ref().is_some_and(|p| p.terminating),
        source: "operator",
        server_state: seen.and_then(|e| e.server_state),
        components: seen.map(|e| e.components.clone()).unwrap_or_default(),
        queue_totals: seen.and_then(|e| e.queue_totals),
        config_revision: seen.and_then(|e| e.config_revision.clone()),
        desired_config_revision: seen.and_then(|e| e.desired_config_revision.clone()),
        accepting_mail: None,
        restart_required: false,
        redirect: None,
        operator_message: seen.and_then(|e| e.message.clone()),
        error: None,
    };
    match answer {
        Some(Ok(info)) => {
            r.source = "server";
            r.server_state = Some(info.server_state);
            r.components = info.components.clone();
            r.queue_totals = Some(info.totals);
            r.config_revision = Some(info.config_revision.clone());
            r.accepting_mail = Some(info.accepting_mail);
            r.restart_required = info.restart_required;
            r.redirect = info.redirect.clone();
        }
        Some(Err(e)) => r.error = Some(e.clone()),
        None => {}
    }
    r
}

/// `Active` when every component is; else each other one with the requesters that hold it there.
pub fn components_cell(components: &[ComponentInfo]) -> String {
    if components.is_empty() {
        return "<unknown>".into();
    }
    let off: Vec<String> = components
        .iter()
        .filter(|c| c.state != ComponentState::Active)
        .map(|c| {
            let by: Vec<&str> = c
                .requesters
                .iter()
                .filter(|w| w.state != ComponentState::Active)
                .map(|w| w.requester.as_str())
                .collect();
            if by.is_empty() {
                format!("{}={}", c.component.as_str(), c.state.as_str())
            } else {
                format!("{}={}({})", c.component.as_str(), c.state.as_str(), by.join(","))
            }
        })
        .collect();
    if off.is_empty() {
        "Active".into()
    } else {
        off.join(" ")
    }
}

fn config_cell(r: &ServerReport) -> String {
    match (&r.config_revision, &r.desired_config_revision) {
        (Some(running), Some(wanted)) if running != wanted => format!("{running} (wanted {wanted})"),
        (Some(running), _) => running.clone(),
        (None, _) => "<unknown>".into(),
    }
}

fn redirect_cell(redirect: Option<&RedirectInfo>) -> String {
    match redirect {
        None => "<none>".into(),
        Some(r) if r.done => format!("to {}: done", r.target),
        Some(r) => format!("to {}: {} left", r.target, r.remaining),
    }
}

pub fn status_text(r: &StatusReport) -> String {
    let mut out = format!("TransportService {} (namespace {})\n", r.transport_service, r.namespace);
    out.push_str(&format!("Servers ready:  {}\n", or_none(r.servers_ready.as_deref())));
    out.push_str(&format!("ServerState:    {}\n", or_none(r.server_state.as_deref())));
    if !r.up_to_date {
        out.push_str("(the operator has not yet reported on the latest spec)\n");
    }
    let conditions: Vec<Vec<String>> = r
        .conditions
        .iter()
        .map(|c| vec![c.type_.clone(), c.status.clone(), c.reason.clone(), one_line(&c.message)])
        .collect();
    out.push('\n');
    out.push_str(&render(&["CONDITION", "STATUS", "REASON", "MESSAGE"], &conditions));

    let rows: Vec<Vec<String>> = r
        .servers
        .iter()
        .map(|s| {
            let t = s.queue_totals;
            let count = |f: fn(&QueueTotals) -> u64| t.as_ref().map(|t| f(t).to_string()).unwrap_or_else(|| "?".into());
            let mut pod = s.pod_phase.clone().unwrap_or_else(|| "<no pod>".into());
            if s.terminating {
                pod.push_str(",Terminating");
            }
            vec![
                s.name.clone(),
                pod,
                if s.ready { "True" } else { "False" }.into(),
                s.server_state
                    .map(|x| format!("{} ({})", x.name.as_str(), x.code))
                    .unwrap_or_else(|| "<unknown>".into()),
                components_cell(&s.components),
                count(|t| t.messages),
                count(|t| t.in_retry),
                count(|t| t.suspended),
                count(|t| t.poison),
                count(|t| t.shadow_messages),
                config_cell(s),
                redirect_cell(s.redirect.as_ref()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&render(
        &[
            "SERVER",
            "POD",
            "READY",
            "SERVERSTATE",
            "COMPONENTS",
            "MESSAGES",
            "RETRY",
            "SUSPENDED",
            "POISON",
            "SHADOW",
            "CONFIG",
            "REDIRECT",
        ],
        &rows,
    ));

    if !r.component_requests.is_empty() {
        let rows: Vec<Vec<String>> = r
            .component_requests
            .iter()
            .map(|c| {
                let mut name = c.name.clone();
                if c.deleting {
                    name.push_str(" (withdrawing)");
                }
                vec![
                    name,
                    c.server.clone(),
                    c.component.clone(),
                    c.requester.clone(),
                    c.state.clone(),
                    or_none(c.redirect_to.as_deref()),
                    or_none(c.effective_state.as_deref()),
                    c.messages_to_drain.map(|m| m.to_string()).unwrap_or_else(|| "?".into()),
                    or_none(c.drained.as_deref()),
                ]
            })
            .collect();
        out.push('\n');
        out.push_str(&render(
            &[
                "COMPONENTSTATE",
                "SERVER",
                "COMPONENT",
                "REQUESTER",
                "STATE",
                "REDIRECTTO",
                "EFFECTIVE",
                "MESSAGES",
                "DRAINED",
            ],
            &rows,
        ));
    }

    let mut notes = Vec::new();
    for s in &r.servers {
        if let Some(m) = &s.operator_message {
            notes.push(format!("{}: operator: {}", s.name, one_line(m)));
        }
        if s.restart_required {
            notes.push(format!("{}: its configuration changed in a way only a restart applies", s.name));
        }
        if let Some(e) = &s.error {
            notes.push(format!("{}: not asked now, figures as the operator last saw them: {}", s.name, one_line(e)));
        }
    }
    notes.extend(r.problems.iter().map(|p| one_line(p)));
    if !notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in notes {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out
}

/// What `status` was asked.
#[derive(Debug, Clone, Default)]
pub struct StatusArgs {
    pub service: String,
}

/// Exits well whenever the TransportService could be read: what else could not be read is
/// part of the report.
pub async fn status(session: &Session, args: &StatusArgs, output: Output) -> Result<Rendered> {
    let ts = session.transport_service(&args.service).await?;
    let servers = session.servers(&ts, None).await?;
    let mut problems = Vec::new();
    let live = match session.admin_token(&args.service).await {
        Ok(token) => session
            .admin_get_all::<ServerInfo>(&servers, &token, paths::SERVER, paths::SERVER)
            .await
            .into_iter()
            .map(|(n, a)| (n, a.map(|a| a.value).map_err(|e| e.to_string())))
            .collect(),
        Err(e) => {
            problems.push(e.to_string());
            Vec::new()
        }
    };
    let requests = match session.api::<ServerComponentState>().list(&Default::default()).await {
        Ok(list) => list.items,
        Err(e) => {
            problems.push(format!("ServerComponentStates not listed: {}", super::error::from_kube(session.verb, e)));
            Vec::new()
        }
    };
    let report = report(&ts, &servers, live, &requests, problems);
    let text = emit(output, &report, || status_text(&report))?;
    Ok(Rendered { text, warnings: Vec::new(), failures: Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::servers::servers_of;
    use crate::plugin::servers::tests::{pod, service};
    use transport::api::ServerStateName;
    use transport::config::{Component, Requester};

    /// A `GET /v1/server` answer as the server sends it (fields added later take their defaults).
    fn info(name: &str, messages: u64, hub: ComponentState) -> ServerInfo {
        let draining = hub == ComponentState::Draining;
        let redirect =
            draining.then(|| serde_json::json!({"target": "10.244.1.5:2527", "remaining": 2, "done": false}));
        serde_json::from_value(serde_json::json!({
            "serverName": name,
            "serverState": ServerStateInfo::from(ServerStateName::Started),
            "components": [{
                "component": Component::HubTransport,
                "state": hub,
                "requesters": [{"requester": Requester::Maintenance, "state": hub, "since": "t"}],
            }],
            "configRevision": "0123abcd",
            "acceptingMail": !draining,
            "totals": QueueTotals { messages, ..Default::default() },
            "redirect": redirect,
        }))
        .expect("a ServerInfo")
    }

    #[test]
    fn live_figures_where_the_server_answered_the_operators_elsewhere() {
        let mut ts = service(3, &["mail-0", "mail-1", "mail-2"]);
        if let Some(st) = ts.status.as_mut() {
            st.servers_ready = Some("1/3".into());
            st.servers[2].queue_totals = Some(QueueTotals { messages: 4, ..Default::default() });
            st.servers[2].message = Some("pod pending".into());
            st.servers[0].desired_config_revision = Some("0123abcd".into());
            st.servers[1].desired_config_revision = Some("ffff0000".into());
        }
        let pods = [pod("mail-0", "Running", true), pod("mail-1", "Running", false), pod("mail-2", "Pending", false)];
        let servers = servers_of(&ts, &pods, None).unwrap();
        let live = vec![
            ("mail-0".to_string(), Ok(info("mail-0", 3, ComponentState::Active))),
            ("mail-1".to_string(), Ok(info("mail-1", 2, ComponentState::Draining))),
            ("mail-2".to_string(), Err("server mail-2 cannot be reached: its pod is Pending, not Running".to_string())),
        ];
        let r = report(&ts, &servers, live, &[], vec![]);
        assert_eq!(r.servers[0].source, "server");
        assert_eq!(r.servers[2].source, "operator");
        assert_eq!(r.servers[2].queue_totals.map(|t| t.messages), Some(4));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["servers"][1]["serverState"]["code"], 2);
        assert_eq!(json["servers"][1]["queueTotals"]["messages"], 2);
        let text = status_text(&r);
        assert!(text.starts_with("TransportService mail (namespace )\nServers ready:  1/3\n"), "{text}");
        let line = |server: &str| text.lines().find(|l| l.starts_with(&format!("{server} "))).unwrap().to_string();
        let mail1 = line("mail-1");
        assert!(mail1.contains("Running   False   Started (2)   HubTransport=Draining(Maintenance)   2"), "{text}");
        assert!(mail1.contains("0123abcd (wanted ffff0000)   to 10.244.1.5:2527: 2 left"), "{text}");
        assert!(line("mail-0").contains("Active"), "{text}");
        assert!(text.contains("mail-2: operator: pod pending"), "{text}");
        assert!(
            text.contains(
                "mail-2: not asked now, figures as the operator last saw them: server mail-2 cannot be reached"
            ),
            "{text}"
        );
    }

    #[test]
    fn component_cells() {
        assert_eq!(components_cell(&[]), "<unknown>");
        let draining = info("x", 0, ComponentState::Draining).components;
        assert_eq!(components_cell(&draining), "HubTransport=Draining(Maintenance)");
        assert_eq!(components_cell(&info("x", 0, ComponentState::Active).components), "Active");
    }
}
