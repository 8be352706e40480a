//! Status conditions (metav1.Condition, a list keyed by `type`) and ServerState summaries.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use transport::api::{ServerInfo, ServerStateInfo, ServerStateName};

pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
/// Degraded reason: a renewed certificate in a receive connector's Secret cannot be used.
pub const CERTIFICATE_NOT_LOADED: &str = "CertificateNotLoaded";

/// One condition as a reconciler decides it (the transition time is kept by [`set`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Wanted {
    pub fn new(type_: &'static str, status: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        Wanted { type_, status, reason: reason.into(), message: message.into() }
    }
}

/// Sets a condition, keeping its `lastTransitionTime` while its status does not change (so
/// a reconcile that finds nothing new writes an identical status).
pub fn set(conditions: &mut Vec<Condition>, wanted: Wanted, generation: Option<i64>, now: &Time) {
    let status = if wanted.status { "True" } else { "False" }.to_string();
    let existing = conditions.iter_mut().find(|c| c.type_ == wanted.type_);
    match existing {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status;
            c.reason = wanted.reason;
            c.message = wanted.message;
            c.observed_generation = generation;
        }
        None => conditions.push(Condition {
            type_: wanted.type_.to_string(),
            status,
            reason: wanted.reason,
            message: wanted.message,
            observed_generation: generation,
            last_transition_time: now.clone(),
        }),
    }
}

/// The condition of that type, if set.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// `Started` when every server agrees, else each state with its count in code order
/// (`Started 2, Paused 1`); servers not heard from count as `Unknown`. None without servers.
pub fn server_state_summary<'a>(states: impl IntoIterator<Item = Option<&'a ServerStateInfo>>) -> Option<String> {
    let mut counts: Vec<(u8, &'static str, usize)> = Vec::new();
    for state in states {
        let (code, name) = match state {
            Some(s) => (s.code, s.name.as_str()),
            None => (u8::MAX, "Unknown"),
        };
        match counts.iter_mut().find(|(c, _, _)| *c == code) {
            Some(entry) => entry.2 += 1,
            None => counts.push((code, name, 1)),
        }
    }
    counts.sort();
    match counts.as_slice() {
        [] => None,
        [(_, name, _)] => Some(name.to_string()),
        many => Some(many.iter().map(|(_, name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")),
    }
}

/// What a ServerState means for an administrator, and how to return the server to Started
/// (the Exchange analyser's rule: Paused is an error, Stopped a warning).
pub fn server_state_problem(server: &str, state: ServerStateName) -> Option<(&'static str, String)> {
    let fix =
        "set spec.serverState: Started (or remove the server's entry in spec.serverStateOverrides) to start it again";
    match state {
        ServerStateName::Paused | ServerStateName::Pausing => {
            Some(("ServerPaused", format!("server {server} is Paused (6): it accepts no new connections; {fix}")))
        }
        ServerStateName::Stopped | ServerStateName::Stopping => Some((
            "ServerStopped",
            format!("server {server} is Stopped (4): it takes no connections and delivers nothing; {fix}"),
        )),
        _ => None,
    }
}

/// One sentence per receive connector of `info` whose renewed certificate the server
/// refused, saying which certificate still serves and what to fix.
pub fn certificate_problems(info: &ServerInfo) -> Vec<String> {
    info.certificates
        .iter()
        .filter_map(|c| {
            let error = c.error.as_ref()?;
            let until = c.not_after.as_deref().map(|t| format!(", valid until {t}")).unwrap_or_default();
            Some(format!(
                "server {}: receive connector {}: the certificate and key in its Secret cannot be used ({error}); \
                 the previous certificate (sha256 {}{until}) still serves: fix the Secret",
                info.server_name, c.connector, c.fingerprint
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(secs: i64) -> Time {
        Time(jiff::Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_moves_only_when_the_status_changes() {
        let mut conds = Vec::new();
        set(&mut conds, Wanted::new(READY, false, "ServersNotReady", "0/3"), Some(1), &time(10));
        set(&mut conds, Wanted::new(READY, false, "ServersNotReady", "1/3"), Some(1), &time(20));
        assert_eq!(conds[0].last_transition_time, time(10));
        assert_eq!(conds[0].message, "1/3");
        set(&mut conds, Wanted::new(READY, true, "ServersReady", "3/3"), Some(2), &time(30));
        assert_eq!((conds[0].status.as_str(), conds[0].last_transition_time.clone()), ("True", time(30)));
        assert_eq!(conds[0].observed_generation, Some(2));
        assert_eq!(conds.len(), 1);
    }

    #[test]
    fn summary_names_one_state_or_counts_each() {
        let started = ServerStateInfo::from(ServerStateName::Started);
        let paused = ServerStateInfo::from(ServerStateName::Paused);
        assert_eq!(server_state_summary([Some(&started), Some(&started)]), Some("Started".into()));
        assert_eq!(
            server_state_summary([Some(&paused), Some(&started), None, Some(&started)]),
            Some("Started 2, Paused 1, Unknown 1".into())
        );
        assert_eq!(server_state_summary([]), None);
    }

    #[test]
    fn paused_and_stopped_say_how_to_start_again() {
        let (reason, msg) = server_state_problem("mail-1", ServerStateName::Paused).unwrap();
        assert_eq!(reason, "ServerPaused");
        assert!(msg.contains("spec.serverState: Started"), "{msg}");
        assert_eq!(server_state_problem("mail-1", ServerStateName::Stopped).unwrap().0, "ServerStopped");
        assert!(server_state_problem("mail-1", ServerStateName::Started).is_none());
    }
}
