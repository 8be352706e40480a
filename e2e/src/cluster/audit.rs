//! The API server's audit log: what every ServiceAccount and the administrator asked, with
//! the answer's code. Tests read it to prove what the operator does against a real API
//! server: no request refused (403), every permission the chart grants used, no writes
//! while nothing changes, and how many requests a minute it makes.
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// Metadata (no bodies) of the requests of every ServiceAccount and of the administrator;
/// the control plane's own components and the nodes are left out.
pub const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
  - level: Metadata
    userGroups: [\"system:serviceaccounts\"]
  - level: Metadata
    users: [\"kubernetes-admin\"]
  - level: None
";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub verb: String,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub user: User,
    #[serde(default)]
    pub object_ref: Option<ObjectRef>,
    #[serde(default)]
    pub response_status: Option<ResponseStatus>,
    /// `authorization.k8s.io/decision` (`allow`, `forbid`) and `.../reason`, among others.
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    /// RFC 3339 with microseconds.
    pub request_received_timestamp: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub username: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub api_group: Option<String>,
    #[serde(default)]
    pub subresource: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ResponseStatus {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub message: Option<String>,
}

/// A permission as RBAC names it: API group, `resource[/subresource]`, verb.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {group}/{}", self.verb, self.resource)
    }
}

impl Entry {
    pub fn code(&self) -> u16 {
        self.response_status.as_ref().map(|s| s.code).unwrap_or_default()
    }

    /// Refused by the authorizer (RBAC, Node), not by admission (a namespace being deleted
    /// also answers 403).
    pub fn forbidden_by_rbac(&self) -> bool {
        self.annotations.get("authorization.k8s.io/decision").map(String::as_str) == Some("forbid")
    }

    /// Writes change something; reads and watches do not.
    pub fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection")
    }

    /// The RBAC permission this request needed (None for non-resource URLs such as /readyz).
    pub fn permission(&self) -> Option<Permission> {
        let o = self.object_ref.as_ref().filter(|o| !o.resource.is_empty())?;
        let resource = match o.subresource.as_deref() {
            Some(sub) if !sub.is_empty() => format!("{}/{sub}", o.resource),
            _ => o.resource.clone(),
        };
        Some(Permission { group: o.api_group.clone().unwrap_or_default(), resource, verb: self.verb.clone() })
    }

    /// When the request arrived.
    pub fn time(&self) -> Option<jiff::Timestamp> {
        self.request_received_timestamp.parse().ok()
    }
}

/// Every entry of the log so far (lines that do not parse, such as one being written, are
/// skipped).
pub fn read(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// The entries of `user` (e.g. `system:serviceaccount:<ns>:<name>`).
pub fn by_user<'a>(entries: &'a [Entry], user: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
    entries.iter().filter(move |e| e.user.username == user)
}

/// The permissions the entries used (those the authorizer allowed).
pub fn used_permissions<'a>(entries: impl Iterator<Item = &'a Entry>) -> BTreeSet<Permission> {
    entries.filter(|e| !e.forbidden_by_rbac()).filter_map(Entry::permission).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_names_the_permission_it_needed() {
        let line = r#"{"kind":"Event","level":"Metadata","stage":"ResponseComplete","requestURI":"/apis/kubetransport.io/v1alpha1/namespaces/a/transportservices/mail/status?fieldManager=x","verb":"patch","user":{"username":"system:serviceaccount:ops:kt","groups":["system:serviceaccounts"]},"objectRef":{"resource":"transportservices","namespace":"a","name":"mail","apiGroup":"kubetransport.io","apiVersion":"v1alpha1","subresource":"status"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-06T10:00:00.123456Z","stageTimestamp":"2026-12-06T10:00:00.125Z"}"#;
        let e: Entry = serde_json::from_str(line).unwrap();
        assert!(e.is_write());
        assert_eq!(e.code(), 200);
        assert_eq!(e.permission().unwrap().to_string(), "patch kubetransport.io/transportservices/status");
        assert!(e.time().is_some());
        assert!(!e.forbidden_by_rbac());
        let denied = r#"{"verb":"get","requestURI":"/api/v1/secrets","user":{"username":"x"},"requestReceivedTimestamp":"2026-12-06T10:00:00Z","annotations":{"authorization.k8s.io/decision":"forbid"},"responseStatus":{"code":403}}"#;
        assert!(serde_json::from_str::<Entry>(denied).unwrap().forbidden_by_rbac());
        let readyz = r#"{"verb":"get","requestURI":"/readyz","user":{"username":"x"},"requestReceivedTimestamp":"2026-12-06T10:00:00Z"}"#;
        assert_eq!(serde_json::from_str::<Entry>(readyz).unwrap().permission(), None);
    }
}
