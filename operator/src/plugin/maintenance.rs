//! `maintenance start|stop`: the Exchange maintenance runbook's first and last step as
//! commands. Start applies (server-side, field manager `kubectl-transport`) the
//! ServerComponentState a user would write by hand, `<server>-maintenance`: HubTransport
//! Draining by requester Maintenance, with `redirectTo` when asked. Stop deletes it; the
//! operator's finalizer sets Maintenance back to Active on the server before it goes.
//!
//! Without `--redirect-to` the server still refuses new mail and delivers its queue
//! itself (to the next hops, as usual): the drain ends when the queue is empty.
use super::error::{from_kube, PluginError, Result};
use super::session::Session;
use super::table::{emit, Output};
use super::Rendered;
use crate::crd::{ServerComponentState, ServerComponentStateSpec, TransportServiceRef};
use crate::names;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::ResourceExt;
use std::time::{Duration, Instant};
use transport::config::{Component, ComponentState, Requester};

/// What `maintenance start|stop` was asked.
#[derive(Debug, Clone)]
pub struct MaintenanceArgs {
    pub server: String,
    /// `-t`; absent: the server's name without its `-<index>`.
    pub service: Option<String>,
    pub redirect_to: Option<String>,
    /// Wait until the server is drained (start) or the request is withdrawn (stop).
    pub wait: Option<Duration>,
}

/// How often `--wait` looks.
const POLL: Duration = Duration::from_secs(2);

/// The TransportService of the request: `-t`, else the one the server's name says.
pub fn service_for(args: &MaintenanceArgs) -> Result<String> {
    match &args.service {
        Some(s) => Ok(s.clone()),
        None => names::service_of_server(&args.server).map(str::to_string).ok_or_else(|| {
            PluginError::Invalid(format!(
                "{} is not a server name (<transportservice>-<index>): name its TransportService with -t",
                args.server
            ))
        }),
    }
}

/// The ServerComponentState `<server>-maintenance`, once the names are those of servers of
/// `service` (`known`: the servers it has).
pub fn request(
    service: &str,
    server: &str,
    redirect_to: Option<&str>,
    known: &[String],
) -> Result<ServerComponentState> {
    let not_a_server = |name: &str| PluginError::NoSuchServer {
        server: name.to_string(),
        service: service.to_string(),
        known: if known.is_empty() { "none".into() } else { known.join(", ") },
    };
    if names::server_index(service, server).is_none() || !known.iter().any(|k| k == server) {
        return Err(not_a_server(server));
    }
    if let Some(to) = redirect_to {
        if to == server {
            return Err(PluginError::Invalid(format!(
                "--redirect-to {to} is the server going into maintenance itself"
            )));
        }
        if !known.iter().any(|k| k == to) {
            return Err(not_a_server(to));
        }
    }
    let spec = ServerComponentStateSpec {
        server: server.to_string(),
        transport_service_ref: TransportServiceRef { name: service.to_string() },
        component: Component::HubTransport,
        requester: Requester::Maintenance,
        state: ComponentState::Draining,
        redirect_to: redirect_to.map(str::to_string),
    };
    Ok(ServerComponentState::new(&names::maintenance_name(server), spec))
}

/// Drained and confirmed by the servers, for the spec as it is now; or what it waits for.
pub fn drained(scs: &ServerComponentState) -> std::result::Result<(), String> {
    let Some(status) = &scs.status else { return Err("no status yet (is the operator running?)".into()) };
    if status.observed_generation != scs.metadata.generation {
        return Err("the operator has not seen the request yet".into());
    }
    let condition = |t: &str| status.conditions.iter().find(|c| c.type_ == t);
    let ready = condition("Ready").is_some_and(|c| c.status == "True");
    let drained = condition("Drained").is_some_and(|c| c.status == "True");
    if ready && drained {
        return Ok(());
    }
    let mut why = Vec::new();
    for c in [condition("Ready"), condition("Drained")].into_iter().flatten().filter(|c| c.status != "True") {
        why.push(format!("{} {}: {}", c.type_, c.status, c.message));
    }
    if let Some(m) = status.messages_to_drain {
        why.push(format!("{m} message(s) to drain"));
    }
    Err(why.join("; "))
}

fn describe(scs: &ServerComponentState) -> String {
    let s = &scs.spec;
    let mut text = format!("{} HubTransport Draining (requester Maintenance)", s.server);
    match &s.redirect_to {
        Some(to) => text.push_str(&format!(", its queue handed to {to}")),
        None => text.push_str(", its queue delivered from there"),
    }
    text
}

pub async fn start(
    session: &Session,
    args: &MaintenanceArgs,
    output: Output,
    progress: &dyn Fn(&str),
) -> Result<Rendered> {
    let service = service_for(args)?;
    let ts = session.transport_service(&service).await?;
    let known: Vec<String> = super::servers::servers_of(&ts, &[], None)?.into_iter().map(|s| s.name).collect();
    let wanted = request(&service, &args.server, args.redirect_to.as_deref(), &known)?;
    let name = wanted.name_any();
    let api = session.api::<ServerComponentState>();
    let params = PatchParams::apply(names::PLUGIN_FIELD_MANAGER);
    let mut applied =
        api.patch(&name, &params, &Patch::Apply(&wanted)).await.map_err(|e| from_kube(session.verb, e))?;
    let mut sentence = format!("servercomponentstate.kubetransport.io/{name} applied: {}", describe(&applied));
    if let Some(within) = args.wait {
        progress(&format!("waiting up to {} for {} to be drained", span(within), args.server));
        let deadline = Instant::now() + within;
        let mut last = String::new();
        loop {
            applied = api.get(&name).await.map_err(|e| from_kube(session.verb, e))?;
            match drained(&applied) {
                Ok(()) => break,
                Err(why) => {
                    if why != last {
                        progress(&format!("{}: {why}", args.server));
                        last = why;
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(PluginError::Timeout {
                    after: span(within),
                    what: format!("{} to be drained", args.server),
                    last,
                });
            }
            tokio::time::sleep(POLL).await;
        }
        sentence = format!(
            "{} drained: no message left, new mail refused (`kubectl transport maintenance stop {}` ends the maintenance)",
            args.server, args.server
        );
    }
    let text = emit(output, &applied, || format!("{sentence}\n"))?;
    Ok(Rendered { text, warnings: Vec::new(), failures: Vec::new() })
}

pub async fn stop(
    session: &Session,
    args: &MaintenanceArgs,
    output: Output,
    progress: &dyn Fn(&str),
) -> Result<Rendered> {
    let service = service_for(args)?;
    let name = names::maintenance_name(&args.server);
    let api = session.api::<ServerComponentState>();
    let existing = api.get_opt(&name).await.map_err(|e| from_kube(session.verb, e))?;
    let Some(existing) = existing.filter(|e| e.spec.transport_service_ref.name == service) else {
        return Err(PluginError::Invalid(format!(
            "{} of TransportService {service} is not in maintenance by kubectl transport: no ServerComponentState {name} in namespace {} (`kubectl get scs` lists the requests)",
            args.server, session.namespace
        )));
    };
    api.delete(&name, &DeleteParams::default()).await.map_err(|e| from_kube(session.verb, e))?;
    let mut sentence = format!(
        "servercomponentstate.kubetransport.io/{name} deleted: the operator sets Maintenance back to Active on {}",
        args.server
    );
    if let Some(within) = args.wait {
        progress(&format!("waiting up to {} for the operator to withdraw {name}", span(within)));
        let deadline = Instant::now() + within;
        while api.get_opt(&name).await.map_err(|e| from_kube(session.verb, e))?.is_some() {
            if Instant::now() >= deadline {
                return Err(PluginError::Timeout {
                    after: span(within),
                    what: format!("{name} to be withdrawn"),
                    last: "its finalizer is still there (is the operator running?)".into(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
        sentence = format!("{name} withdrawn: HubTransport of {} is Active again for Maintenance", args.server);
    }
    let text = emit(output, &existing, || format!("{sentence}\n"))?;
    Ok(Rendered { text, warnings: Vec::new(), failures: Vec::new() })
}

/// A duration as the time spans elsewhere (`00:30:00`).
fn span(d: Duration) -> String {
    transport::config::TimeSpan(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn known() -> Vec<String> {
        vec!["mail-0".into(), "mail-1".into()]
    }

    #[test]
    fn the_request_is_the_one_a_user_writes_by_hand() {
        let scs = request("mail", "mail-1", Some("mail-0"), &known()).unwrap();
        let written: ServerComponentState = serde_yaml::from_str(
            "apiVersion: kubetransport.io/v1alpha1\nkind: ServerComponentState\nmetadata: {name: mail-1-maintenance}\n\
             spec: {server: mail-1, transportServiceRef: {name: mail}, component: HubTransport, requester: Maintenance, \
             state: Draining, redirectTo: mail-0}\n",
        )
        .unwrap();
        assert_eq!(serde_json::to_value(&scs).unwrap(), serde_json::to_value(&written).unwrap());
        let plain = request("mail", "mail-1", None, &known()).unwrap();
        assert_eq!(plain.spec.redirect_to, None);
        assert!(describe(&plain).ends_with("its queue delivered from there"));
    }

    #[test]
    fn names_that_are_not_servers_are_refused() {
        let e = request("mail", "mail-7", None, &known()).unwrap_err();
        assert_eq!(e.to_string(), "mail-7 is not a server of TransportService mail (its servers: mail-0, mail-1)");
        let e = request("mail", "mail-1", Some("mail-1"), &known()).unwrap_err();
        assert!(e.to_string().contains("is the server going into maintenance itself"), "{e}");
        assert!(request("mail", "mail-1", Some("edge-0"), &known()).is_err());
        let args = |server: &str, service: Option<&str>| MaintenanceArgs {
            server: server.into(),
            service: service.map(str::to_string),
            redirect_to: None,
            wait: None,
        };
        assert_eq!(service_for(&args("mail-edge-1", None)).unwrap(), "mail-edge");
        assert_eq!(service_for(&args("x", Some("mail"))).unwrap(), "mail");
        assert!(service_for(&args("mail", None)).unwrap_err().to_string().contains("-t"));
    }

    #[test]
    fn drained_means_drained_and_confirmed_for_this_generation() {
        let mut scs = request("mail", "mail-1", Some("mail-0"), &known()).unwrap();
        scs.metadata.generation = Some(1);
        assert!(drained(&scs).unwrap_err().contains("no status yet"));
        let condition = |t: &str, s: &str| Condition {
            type_: t.into(),
            status: s.into(),
            reason: "R".into(),
            message: format!("{t} says {s}"),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        };
        let mut status = crate::crd::ServerComponentStateStatus {
            observed_generation: Some(1),
            conditions: vec![condition("Ready", "True"), condition("Drained", "False")],
            messages_to_drain: Some(3),
            ..Default::default()
        };
        scs.status = Some(status.clone());
        assert_eq!(drained(&scs).unwrap_err(), "Drained False: Drained says False; 3 message(s) to drain");
        status.conditions[1] = condition("Drained", "True");
        scs.status = Some(status.clone());
        assert_eq!(drained(&scs), Ok(()));
        scs.metadata.generation = Some(2);
        assert!(drained(&scs).unwrap_err().contains("not seen"));
    }
}
