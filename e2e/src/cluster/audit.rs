//! The API server's audit log: what every ServiceAccount and the administrator asked, with
//! the answer's code. Tests read it to prove what the operator does against a real API
//! server: no request refused (403), every permission the chart grants used, no writes
//! while nothing changes, and how many requests a minute it makes.
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::Path;

/// Metadata (no bodies) of the requests of every ServiceAccount and of the administrator;
/// the control plane's own components and the nodes are left out. A watch is logged when it
/// starts (ResponseStarted) as well as when it ends: most never end while a test looks.
pub const POLICY: &str = "apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
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
    /// One per request (a watch has two entries: started and complete).
    #[serde(rename = "auditID", default)]
    pub audit_id: String,
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
    /// For a ServiceAccount token bound to a pod: `authentication.kubernetes.io/pod-name`.
    #[serde(default)]
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl User {
    /// The pod whose bound token made the request.
    pub fn pod(&self) -> Option<&str> {
        self.extra.get("authentication.kubernetes.io/pod-name").and_then(|v| v.first()).map(String::as_str)
    }
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

/// A permission as RBAC names it: API group, `resource[/subresource]`, verb, and the
/// object's name (what a rule with resourceNames is about).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
    pub name: Option<String>,
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if let Some(name) = &self.name {
            write!(f, " {name}")?;
        }
        Ok(())
    }
}

/// One verb of one RBAC rule: what a Role grants, to compare with what was used.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub group: String,
    pub resource: String,
    pub verb: String,
    /// resourceNames; empty: every object.
    pub names: Vec<String>,
}

impl Grant {
    pub fn covers(&self, p: &Permission) -> bool {
        self.group == p.group
            && self.resource == p.resource
            && self.verb == p.verb
            && (self.names.is_empty() || p.name.as_ref().is_some_and(|n| self.names.contains(n)))
    }

    /// Every verb of the rules of a Role or ClusterRole (as JSON), one Grant each.
    pub fn from_rules(rules: &serde_json::Value) -> Vec<Grant> {
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect()
        };
        let mut out = Vec::new();
        for rule in rules.as_array().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        out.push(Grant {
                            group: group.clone(),
                            resource: resource.clone(),
                            verb,
                            names: strings(&rule["resourceNames"]),
                        });
                    }
                }
            }
        }
        out
    }
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {group}/{}", self.verb, self.resource)?;
        if !self.names.is_empty() {
            write!(f, " {:?}", self.names)?;
        }
        Ok(())
    }
}

impl Entry {
    pub fn code(&self) -> u16 {
        self.response_status.as_ref().map(|s| s.code).unwrap_or_default()
    }

    /// Refused by the authorizer (RBAC, Node): the request's own check, or the one a
    /// server-side apply that creates its object makes for `create` (a 403 whose message
    /// says which verb the user "cannot" use). Not admission: a namespace being deleted
    /// also answers 403.
    pub fn forbidden_by_rbac(&self) -> bool {
        let denied = self.annotations.get("authorization.k8s.io/decision").map(String::as_str) == Some("forbid");
        let message = self.response_status.as_ref().and_then(|s| s.message.as_deref()).unwrap_or_default();
        denied || (self.code() == 403 && message.contains(" cannot "))
    }

    /// Writes change something; reads and watches do not.
    pub fn is_write(&self) -> bool {
        matches!(self.verb.as_str(), "create" | "update" | "patch" | "delete" | "deletecollection")
    }

    /// The RBAC permissions this request needed: its verb on its resource, and `create` too
    /// for a server-side apply that created its object (201). None for non-resource URLs.
    pub fn permissions(&self) -> Vec<Permission> {
        let Some(o) = self.object_ref.as_ref().filter(|o| !o.resource.is_empty()) else { return vec![] };
        let resource = match o.subresource.as_deref() {
            Some(sub) if !sub.is_empty() => format!("{}/{sub}", o.resource),
            _ => o.resource.clone(),
        };
        let permission = |verb: &str| Permission {
            group: o.api_group.clone().unwrap_or_default(),
            resource: resource.clone(),
            verb: verb.to_string(),
            name: o.name.clone(),
        };
        let mut out = vec![permission(&self.verb)];
        if self.verb == "patch" && self.code() == 201 {
            out.push(permission("create"));
        }
        out
    }

    /// When the request arrived.
    pub fn time(&self) -> Option<jiff::Timestamp> {
        self.request_received_timestamp.parse().ok()
    }
}

/// Every request of the log so far, once each (the first entry of a watch); lines that do
/// not parse, such as one being written, are skipped.
pub fn read(path: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        .filter(|e| e.audit_id.is_empty() || seen.insert(e.audit_id.clone()))
        .collect()
}

/// The entries of `user` (e.g. `system:serviceaccount:<ns>:<name>`).
pub fn by_user<'a>(entries: &'a [Entry], user: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
    entries.iter().filter(move |e| e.user.username == user)
}

/// The permissions the entries used (those the authorizer allowed).
pub fn used_permissions<'a>(entries: impl Iterator<Item = &'a Entry>) -> BTreeSet<Permission> {
    entries.filter(|e| !e.forbidden_by_rbac()).flat_map(Entry::permissions).collect()
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
        assert_eq!(e.permissions()[0].to_string(), "patch kubetransport.io/transportservices/status mail");
        assert!(e.time().is_some());
        assert!(!e.forbidden_by_rbac());
        let denied = r#"{"verb":"get","requestURI":"/api/v1/secrets","user":{"username":"x"},"requestReceivedTimestamp":"2026-12-06T10:00:00Z","annotations":{"authorization.k8s.io/decision":"forbid"},"responseStatus":{"code":403}}"#;
        assert!(serde_json::from_str::<Entry>(denied).unwrap().forbidden_by_rbac());
        let readyz = r#"{"verb":"get","requestURI":"/readyz","user":{"username":"x"},"requestReceivedTimestamp":"2026-12-06T10:00:00Z"}"#;
        assert!(serde_json::from_str::<Entry>(readyz).unwrap().permissions().is_empty());
        let created = r#"{"verb":"patch","requestURI":"/api/v1/namespaces/a/pods/p","user":{"username":"x"},"objectRef":{"resource":"pods","namespace":"a","name":"p"},"responseStatus":{"code":201},"requestReceivedTimestamp":"2026-12-06T10:00:00Z"}"#;
        let verbs: Vec<String> =
            serde_json::from_str::<Entry>(created).unwrap().permissions().into_iter().map(|p| p.verb).collect();
        assert_eq!(verbs, ["patch", "create"], "an apply that creates needs create too");
        let rules = serde_json::json!([{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["key"], "verbs": ["get"]}]);
        let grants = Grant::from_rules(&rules);
        let get = |name: &str| Permission {
            group: "".into(),
            resource: "secrets".into(),
            verb: "get".into(),
            name: Some(name.into()),
        };
        assert!(grants[0].covers(&get("key")) && !grants[0].covers(&get("other")));
    }
}
