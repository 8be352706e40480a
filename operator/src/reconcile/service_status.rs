//! The status of a TransportService, computed from what one reconcile saw of its servers
//! (a pure function: no I/O, the time passed in), and what a status write may skip.
use super::servers::Server;
use crate::conditions::{self, Wanted};
use crate::crd::{ServerStatus, TransportServiceStatus};
use crate::status_write::{mask_condition_counts, mask_counts};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::collections::BTreeMap;

/// What a reconcile is in the middle of: servers being removed, restarted, or drained for
/// their node's drain.
#[derive(Debug, Default)]
pub(super) struct UnderWay {
    pub removing: Vec<String>,
    pub rolling: Vec<String>,
    pub node_drains: Vec<String>,
}

/// The status: `wanted` servers (spec.servers) of `generation`, the `servers` as observed,
/// what is `under_way`; conditions keep their transition times from `old` unless they
/// change (then `now`).
pub(super) fn service_status(
    old: &TransportServiceStatus,
    generation: Option<i64>,
    wanted: u32,
    servers: &BTreeMap<u32, Server>,
    under_way: UnderWay,
    now: &Time,
) -> TransportServiceStatus {
    let UnderWay { removing, rolling, node_drains } = under_way;
    let desired: Vec<&Server> = servers.values().filter(|s| s.desired).collect();
    let ready = desired.iter().filter(|s| s.pod_ready()).count();
    let entries: Vec<ServerStatus> = servers.values().map(server_status).collect();

    let mut stopped = None;
    let mut paused = None;
    for s in &desired {
        if let Some((reason, message)) =
            s.info.as_ref().and_then(|i| conditions::server_state_problem(&s.name, i.server_state.name))
        {
            let slot = if reason == "ServerStopped" { &mut stopped } else { &mut paused };
            slot.get_or_insert(message);
        }
    }
    let unreachable: Vec<String> =
        desired.iter().filter(|s| s.pod_ready() && s.info.is_none()).map(|s| s.name.clone()).collect();
    let certificate_problems: Vec<String> =
        desired.iter().filter_map(|s| s.info.as_ref()).flat_map(conditions::certificate_problems).collect();
    let pending_config: Vec<String> = desired
        .iter()
        .filter(|s| match (&s.info, &s.rendered) {
            (Some(i), Some(r)) => i.config_revision != r.revision,
            _ => false,
        })
        .map(|s| s.name.clone())
        .collect();

    let progressing: Option<(&str, String)> = if !rolling.is_empty() {
        Some((
            "RollingRestart",
            format!("restarting one at a time for a change they cannot reload: {}", rolling.join(", ")),
        ))
    } else if !removing.is_empty() {
        Some(("ScalingDown", format!("draining before removal: {}", removing.join(", "))))
    } else if !node_drains.is_empty() {
        Some((
            "NodeDrain",
            format!("draining before eviction, their nodes are being drained: {}", node_drains.join(", ")),
        ))
    } else if desired.iter().any(|s| !s.settled()) {
        Some(("ServersStarting", format!("{ready}/{wanted} servers ready")))
    } else if !pending_config.is_empty() {
        Some(("ConfigPending", format!("not running the latest configuration yet: {}", pending_config.join(", "))))
    } else {
        None
    };

    let progressing_cond = match &progressing {
        Some((reason, message)) => Wanted::new(conditions::PROGRESSING, true, *reason, message.clone()),
        None => Wanted::new(
            conditions::PROGRESSING,
            false,
            "Reconciled",
            format!("every server runs the configuration of generation {}", generation.unwrap_or_default()),
        ),
    };
    let degraded_cond = if let Some(message) = &paused {
        Wanted::new(conditions::DEGRADED, true, "ServerPaused", message.clone())
    } else if !unreachable.is_empty() {
        Wanted::new(
            conditions::DEGRADED,
            true,
            "ServerUnreachable",
            format!("admin API not answering: {}", unreachable.join(", ")),
        )
    } else if !certificate_problems.is_empty() {
        Wanted::new(conditions::DEGRADED, true, conditions::CERTIFICATE_NOT_LOADED, certificate_problems.join("; "))
    } else {
        Wanted::new(conditions::DEGRADED, false, "AsExpected", "no problem found")
    };
    let ready_cond = if let Some(message) = stopped {
        Wanted::new(conditions::READY, false, "ServerStopped", message)
    } else if let Some(message) = paused {
        Wanted::new(conditions::READY, false, "ServerPaused", message)
    } else if !unreachable.is_empty() {
        Wanted::new(conditions::READY, false, "ServerUnreachable", degraded_cond.message.clone())
    } else if let Some((reason, message)) = progressing {
        Wanted::new(conditions::READY, false, reason, message)
    } else {
        Wanted::new(conditions::READY, true, "ServersReady", format!("{ready}/{wanted} servers ready and Started"))
    };

    let mut status = TransportServiceStatus {
        observed_generation: generation,
        conditions: old.conditions.clone(),
        servers_ready: Some(format!("{ready}/{wanted}")),
        server_state: conditions::server_state_summary(
            desired.iter().map(|s| s.info.as_ref().map(|i| &i.server_state)),
        ),
        servers: entries,
    };
    for w in [ready_cond, progressing_cond, degraded_cond] {
        conditions::set(&mut status.conditions, w, generation, now);
    }
    status
}

/// The status with its queue counters blanked (see [`crate::status_write`]).
pub(super) fn without_counters(status: &TransportServiceStatus) -> TransportServiceStatus {
    let mut s = status.clone();
    mask_condition_counts(&mut s.conditions);
    for server in &mut s.servers {
        server.queue_totals = None;
        server.message = server.message.as_deref().map(mask_counts);
    }
    s
}

fn server_status(s: &Server) -> ServerStatus {
    let note = s.note.clone().or_else(|| s.admin_error.as_ref().map(|e| format!("admin API: {e}")));
    ServerStatus {
        name: s.name.clone(),
        pod_phase: s.pod_phase(),
        ready: s.pod_ready(),
        server_state: s.info.as_ref().map(|i| i.server_state),
        components: s.info.as_ref().map(|i| i.components.clone()).unwrap_or_default(),
        queue_totals: s.info.as_ref().map(|i| i.totals),
        config_revision: s.info.as_ref().map(|i| i.config_revision.clone()),
        desired_config_revision: s.rendered.as_ref().map(|r| r.revision.clone()),
        certificates: s.info.as_ref().map(|i| i.certificates.clone()).unwrap_or_default(),
        message: note,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::RenderedServer;
    use k8s_openapi::api::core::v1::Pod;
    use transport::api::{ServerInfo, ServerStateName};

    fn now() -> Time {
        Time("2026-12-06T12:00:00Z".parse().unwrap())
    }

    /// Server `mail-<i>`: its pod Ready or not, its admin API answering with `state` (None:
    /// not answering), running `revision` where the operator rendered `wanted_revision`.
    fn server(i: u32, ready: bool, state: Option<ServerStateName>, revision: &str, wanted_revision: &str) -> Server {
        let mut s = Server::new("mail", i, true);
        s.pod = Some(
            serde_json::from_value::<Pod>(serde_json::json!({
                "metadata": {"name": format!("mail-{i}")},
                "status": {"phase": "Running", "podIP": "10.0.0.1",
                           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        );
        s.info = state.map(|name| ServerInfo {
            server_name: s.name.clone(),
            server_state: name.into(),
            components: vec![],
            config_revision: revision.into(),
            restart_required: false,
            accepting_mail: ready,
            totals: Default::default(),
            redirect: None,
            certificates: Vec::new(),
        });
        s.rendered = Some(RenderedServer {
            name: s.name.clone(),
            index: i,
            file: serde_yaml::from_str("serverName: x\nfqdn: x.test\nqueueDirectory: /q\n").unwrap(),
            text: String::new(),
            revision: wanted_revision.into(),
        });
        s
    }

    fn servers(list: Vec<Server>) -> BTreeMap<u32, Server> {
        list.into_iter().map(|s| (s.index, s)).collect()
    }

    fn cond<'a>(s: &'a TransportServiceStatus, t: &str) -> (&'a str, &'a str, &'a str) {
        let c = conditions::find(&s.conditions, t).unwrap();
        (c.status.as_str(), c.reason.as_str(), c.message.as_str())
    }

    #[test]
    fn every_server_ready_started_and_current_is_ready() {
        let all = servers(vec![
            server(0, true, Some(ServerStateName::Started), "r", "r"),
            server(1, true, Some(ServerStateName::Started), "r", "r"),
        ]);
        let s = service_status(&Default::default(), Some(3), 2, &all, UnderWay::default(), &now());
        assert_eq!(cond(&s, "Ready").0, "True");
        assert_eq!(cond(&s, "Ready").1, "ServersReady");
        assert_eq!(cond(&s, "Progressing").0, "False");
        assert_eq!(cond(&s, "Degraded").0, "False");
        assert_eq!((s.servers_ready.as_deref(), s.server_state.as_deref()), (Some("2/2"), Some("Started")));
        assert_eq!(s.observed_generation, Some(3));
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(3) && c.last_transition_time == now()));
    }

    #[test]
    fn paused_unreachable_pending_and_rolling_servers_say_so() {
        let paused = servers(vec![
            server(0, true, Some(ServerStateName::Started), "r", "r"),
            server(1, false, Some(ServerStateName::Paused), "r", "r"),
        ]);
        let s = service_status(&Default::default(), Some(1), 2, &paused, UnderWay::default(), &now());
        assert_eq!(cond(&s, "Degraded").1, "ServerPaused");
        assert!(cond(&s, "Degraded").2.contains("Paused (6)"), "{}", cond(&s, "Degraded").2);
        assert_eq!(cond(&s, "Ready").1, "ServerPaused");

        let unreachable = servers(vec![server(0, true, None, "", "r")]);
        let s = service_status(&Default::default(), Some(1), 1, &unreachable, UnderWay::default(), &now());
        assert_eq!((cond(&s, "Degraded").0, cond(&s, "Degraded").1), ("True", "ServerUnreachable"));
        assert!(cond(&s, "Degraded").2.contains("mail-0"));

        let pending = servers(vec![server(0, true, Some(ServerStateName::Started), "old", "new")]);
        let s = service_status(&Default::default(), Some(1), 1, &pending, UnderWay::default(), &now());
        assert_eq!((cond(&s, "Progressing").0, cond(&s, "Progressing").1), ("True", "ConfigPending"));
        assert_eq!(cond(&s, "Ready").1, "ConfigPending");

        let all = servers(vec![server(0, true, Some(ServerStateName::Started), "r", "r")]);
        let rolling = UnderWay { rolling: vec!["mail-0".into()], ..Default::default() };
        let s = service_status(&Default::default(), Some(1), 1, &all, rolling, &now());
        assert_eq!(cond(&s, "Progressing").1, "RollingRestart");
        let starting = servers(vec![server(0, false, None, "", "r")]);
        let s = service_status(&Default::default(), Some(1), 1, &starting, UnderWay::default(), &now());
        assert_eq!((cond(&s, "Progressing").1, cond(&s, "Progressing").2), ("ServersStarting", "0/1 servers ready"));
    }

    #[test]
    fn a_refused_certificate_renewal_is_degraded_but_ready() {
        let mut all = servers(vec![server(0, true, Some(ServerStateName::Started), "r", "r")]);
        let certificate = transport::api::CertificateInfo {
            connector: "Submission".into(),
            fingerprint: "ab12".into(),
            not_after: Some("2027-03-01T00:00:00.000Z".into()),
            loaded_at: "2026-12-01T00:00:00.000Z".into(),
            error: None,
        };
        let info = all.get_mut(&0).and_then(|s| s.info.as_mut()).unwrap();
        info.certificates = vec![certificate.clone()];
        let s = service_status(&Default::default(), Some(1), 1, &all, UnderWay::default(), &now());
        assert_eq!(cond(&s, "Degraded").0, "False", "a certificate in use is no problem");
        assert_eq!(s.servers[0].certificates, std::slice::from_ref(&certificate), "the status shows it");

        let info = all.get_mut(&0).and_then(|s| s.info.as_mut()).unwrap();
        info.certificates[0].error = Some("certificate and key do not fit together".into());
        let s = service_status(&Default::default(), Some(1), 1, &all, UnderWay::default(), &now());
        let (status, reason, message) = cond(&s, "Degraded");
        assert_eq!((status, reason), ("True", conditions::CERTIFICATE_NOT_LOADED));
        for part in ["mail-0", "Submission", "do not fit together", "sha256 ab12", "2027-03-01", "fix the Secret"] {
            assert!(message.contains(part), "{message} lacks {part}");
        }
        assert_eq!(cond(&s, "Ready").0, "True", "the old certificate serves: mail flows");
    }

    #[test]
    fn a_condition_keeps_its_transition_time_while_it_holds() {
        let all = servers(vec![server(0, true, Some(ServerStateName::Started), "r", "r")]);
        let first = service_status(&Default::default(), Some(1), 1, &all, UnderWay::default(), &now());
        let later = Time("2026-12-06T13:00:00Z".parse().unwrap());
        let again = service_status(&first, Some(1), 1, &all, UnderWay::default(), &later);
        assert_eq!(again, first, "nothing changed, nothing to write");
    }
}
