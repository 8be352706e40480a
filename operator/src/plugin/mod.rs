//! `kubectl transport`, the kubectl plugin (binary `kubectl-transport`, docs/design.md §8):
//! Exchange's administration verbs over every server of a TransportService, each server
//! reached through the Kubernetes API server's pod proxy with the user's own credentials,
//! so the user's RBAC decides; the servers' admin token is read from the Secret
//! `<ts>-admin-token` with the same credentials.
//!
//! - [`session`]     the Kubernetes client, the TransportService, its pods, the token, GETs through the proxy
//! - [`servers`]     the servers of a TransportService and whether each can be asked (pure)
//! - [`proxy`]       proxy paths and what an answer through the proxy means (pure)
//! - [`error`]       the errors, each saying what to do; what RBAC refused, from its 403
//! - [`table`]       kubectl-style tables and `-o json|yaml`
//! - [`filter`]      Get-Queue's `-Filter` expressions
//! - [`status`], [`queues`], [`messages`], [`tracking`], [`maintenance`]: the verbs
pub mod error;
pub mod filter;
pub mod maintenance;
pub mod messages;
pub mod proxy;
pub mod queues;
pub mod servers;
pub mod session;
pub mod status;
pub mod table;
pub mod tracking;

pub use error::PluginError;
pub use session::{ConnectOptions, Session};
pub use table::Output;

use serde::Serialize;
use session::Answer;

/// A row of one server's answer, named by the server (`{"server": "mail-0", ...row}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerRow<T> {
    pub server: String,
    #[serde(flatten)]
    pub row: T,
}

impl<T> ServerRow<T> {
    pub fn new(server: &str, row: T) -> ServerRow<T> {
        ServerRow { server: server.to_string(), row }
    }
}

/// What a verb has to say: `text` for stdout; `warnings` and `failures` for stderr. Any
/// failure (a server that could not be asked) makes the answer incomplete: exit code 1.
#[derive(Debug, Default)]
pub struct Rendered {
    pub text: String,
    pub warnings: Vec<String>,
    pub failures: Vec<PluginError>,
}

impl Rendered {
    /// Rows of several servers. A table of none is kubectl's "No ... found." on stderr
    /// when nothing failed, nothing when every server failed; JSON and YAML always print.
    pub fn rows(output: Output, text: String, empty: bool, what: &str, failures: Vec<PluginError>) -> Rendered {
        let mut warnings = Vec::new();
        let text = match (output, empty, failures.is_empty()) {
            (Output::Table, true, true) => {
                warnings.push(format!("No {what} found."));
                String::new()
            }
            (Output::Table, true, false) => String::new(),
            _ => text,
        };
        Rendered { text, warnings, failures }
    }
}

/// Each server's answer apart from the errors. A refusal by RBAC is the same for every
/// server (the user lacks `pods/proxy`), so it is told once.
pub fn split<T>(answers: Vec<(String, error::Result<Answer<T>>)>) -> (Vec<(String, Answer<T>)>, Vec<PluginError>) {
    let mut ok = Vec::new();
    let mut failures: Vec<PluginError> = Vec::new();
    for (server, answer) in answers {
        match answer {
            Ok(a) => ok.push((server, a)),
            Err(PluginError::Forbidden { .. })
                if failures.iter().any(|f| matches!(f, PluginError::Forbidden { .. })) => {}
            Err(e) => failures.push(e),
        }
    }
    (ok, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_by_rbac_is_told_once_other_failures_each() {
        let forbidden = || PluginError::Forbidden { verb: "get-queue".into(), message: "no".into() };
        let answers: Vec<(String, error::Result<Answer<u8>>)> = vec![
            ("mail-0".into(), Err(forbidden())),
            ("mail-1".into(), Err(forbidden())),
            ("mail-2".into(), Err(PluginError::NoPod { server: "mail-2".into() })),
            ("mail-3".into(), Ok(Answer { value: 1, next_bookmark: None })),
        ];
        let (ok, failures) = split(answers);
        assert_eq!(ok.len(), 1);
        assert_eq!(failures.len(), 2);
    }

    #[test]
    fn empty_answers_read_like_kubectls() {
        let r = Rendered::rows(Output::Table, "IDENTITY\n".into(), true, "queues", vec![]);
        assert_eq!((r.text.as_str(), r.warnings), ("", vec!["No queues found.".to_string()]));
        let r = Rendered::rows(Output::Json, "[]\n".into(), true, "queues", vec![]);
        assert_eq!(r.text, "[]\n", "-o json always prints its array");
        let failed = vec![PluginError::NoPod { server: "mail-0".into() }];
        let r = Rendered::rows(Output::Table, "IDENTITY\n".into(), true, "queues", failed);
        assert!(r.text.is_empty() && r.warnings.is_empty());
        let json =
            serde_json::to_value(ServerRow::new("mail-0", serde_json::json!({"identity": "mail-0\\1"}))).unwrap();
        assert_eq!(json, serde_json::json!({"server": "mail-0", "identity": "mail-0\\1"}));
    }
}
