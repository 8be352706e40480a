//! What `kubectl transport` can fail at, each error saying what to do about it. A refusal
//! by RBAC names the permission the user lacks, read from the API server's 403 message.
use thiserror::Error;

/// Where a user finds the Role the plugin needs.
pub const ROLE_HINT: &str =
    "a Role like examples/rbac/transport-admin-role.yaml bound to you (README, \"kubectl transport\")";

#[derive(Debug, Error)]
pub enum PluginError {
    #[error("cannot load the kubeconfig: {0} (`kubectl config view` shows it; --kubeconfig and --context choose one)")]
    Config(String),
    #[error("cannot reach the Kubernetes API server: {0}")]
    ApiServer(String),
    #[error(
        "no TransportService {name} in namespace {namespace} (`kubectl get transportservices -n {namespace}` lists them; -n chooses the namespace)"
    )]
    NoSuchService { name: String, namespace: String },
    #[error("{server} is not a server of TransportService {service} (its servers: {known})")]
    NoSuchServer { server: String, service: String, known: String },
    #[error("server {server} cannot be reached: it has no pod (the operator creates it; `kubectl transport status` says why not)")]
    NoPod { server: String },
    #[error("server {server} cannot be reached: its pod is {phase}, not Running")]
    PodNotRunning { server: String, phase: String },
    #[error("server {server} is not reachable through the API server (pod {pod}): {message}")]
    Unreachable { server: String, pod: String, message: String },
    #[error("{}", forbidden_text(.verb, .message))]
    Forbidden { verb: String, message: String },
    #[error("cannot read the servers' admin token from Secret {secret}: {reason}")]
    Token { secret: String, reason: String },
    #[error(
        "server {server} refused the admin token of Secret {secret} (401): the Secret and the server disagree; the pod reads a renewed Secret within a minute, try again"
    )]
    TokenRefused { server: String, secret: String },
    #[error("server {server} does not serve {path} (404): its transport image is older than this plugin")]
    NotServed { server: String, path: String },
    #[error("server {server}: {message}")]
    Admin { server: String, status: u16, message: String },
    #[error("server {server}: cannot read the answer to {path}: {reason}")]
    Decode { server: String, path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("Kubernetes API: {0}")]
    Kube(String),
    #[error("timed out after {after} waiting for {what}; last seen: {last}")]
    Timeout { after: String, what: String, last: String },
}

pub type Result<T, E = PluginError> = std::result::Result<T, E>;

/// A request RBAC refused, as the API server's 403 message tells it: `pods "mail-0" is
/// forbidden: User "u" cannot get resource "pods/proxy" in API group "" in the namespace "ns"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub verb: String,
    /// `resource[/subresource]`.
    pub resource: String,
    pub group: String,
    pub namespace: Option<String>,
    /// The object asked for, when the message names one.
    pub name: Option<String>,
}

impl Refusal {
    /// What to grant, in the words of a Role's rule.
    pub fn need(&self) -> String {
        let group = if self.group.is_empty() { "core".to_string() } else { self.group.clone() };
        let mut need = format!("verb `{}` on resource `{}` (apiGroup {group})", self.verb, self.resource);
        // A Secret is granted by name: the plugin reads only the admin token's.
        if self.resource == "secrets" {
            if let Some(name) = &self.name {
                need.push_str(&format!(" with resourceNames [{name}]"));
            }
        }
        if let Some(ns) = &self.namespace {
            need.push_str(&format!(" in namespace {ns}"));
        }
        need
    }
}

/// The refusal a 403 message describes, if it is RBAC's.
pub fn parse_refusal(message: &str) -> Option<Refusal> {
    let quoted = |text: &str, after: &str| -> Option<String> {
        let start = text.find(after)? + after.len();
        let rest = &text[start..];
        Some(rest[..rest.find('"')?].to_string())
    };
    let name = message.split_once(" is forbidden").and_then(|(head, _)| {
        let (_, quoted_name) = head.split_once(" \"")?;
        quoted_name.strip_suffix('"').map(str::to_string)
    });
    let (_, cannot) = message.split_once(" cannot ")?;
    let verb = cannot.split_whitespace().next()?.to_string();
    let resource = quoted(cannot, "resource \"")?;
    let group = quoted(cannot, "in API group \"").unwrap_or_default();
    let namespace = quoted(cannot, "in the namespace \"");
    Some(Refusal { verb, resource, group, namespace, name })
}

/// The API server's refusal, and what `kubectl transport <verb>` needs granted.
pub fn forbidden_text(verb: &str, message: &str) -> String {
    match parse_refusal(message) {
        Some(r) => format!("{message}\nkubectl transport {verb} needs RBAC {}: {ROLE_HINT}", r.need()),
        None => format!("{message}\nkubectl transport {verb} was refused by the API server: {ROLE_HINT}"),
    }
}

/// A Kubernetes API error as the plugin reports it: RBAC refusals with what to grant.
pub fn from_kube(verb: &str, error: kube::Error) -> PluginError {
    match error {
        kube::Error::Api(status) if status.code == 403 => {
            PluginError::Forbidden { verb: verb.to_string(), message: status.message.clone() }
        }
        kube::Error::Api(status) => PluginError::Kube(status.message.clone()),
        kube::Error::HyperError(e) => PluginError::ApiServer(e.to_string()),
        kube::Error::Service(e) => PluginError::ApiServer(e.to_string()),
        other => PluginError::Kube(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROXY: &str = r#"pods "mail-0" is forbidden: User "system:serviceaccount:ops:viewer" cannot get resource "pods/proxy" in API group "" in the namespace "ops""#;

    #[test]
    fn a_403_message_names_what_to_grant() {
        let r = parse_refusal(PROXY).unwrap();
        assert_eq!(
            r,
            Refusal {
                verb: "get".into(),
                resource: "pods/proxy".into(),
                group: "".into(),
                namespace: Some("ops".into()),
                name: Some("mail-0".into()),
            }
        );
        assert_eq!(r.need(), "verb `get` on resource `pods/proxy` (apiGroup core) in namespace ops");
        let secret = r#"secrets "mail-admin-token" is forbidden: User "u" cannot get resource "secrets" in API group "" in the namespace "ops""#;
        assert_eq!(
            parse_refusal(secret).unwrap().need(),
            "verb `get` on resource `secrets` (apiGroup core) with resourceNames [mail-admin-token] in namespace ops"
        );
        let create = r#"servercomponentstates.kubetransport.io "mail-1-maintenance" is forbidden: User "u" cannot create resource "servercomponentstates" in API group "kubetransport.io" in the namespace "ops""#;
        let r = parse_refusal(create).unwrap();
        assert_eq!((r.verb.as_str(), r.group.as_str()), ("create", "kubetransport.io"));
        let list = r#"pods is forbidden: User "u" cannot list resource "pods" in API group "" in the namespace "ops""#;
        assert_eq!(parse_refusal(list).unwrap().name, None);
        assert_eq!(parse_refusal("namespace ops is being terminated"), None);
    }

    #[test]
    fn the_forbidden_error_says_which_verb_needs_what_and_where_the_role_is() {
        let e = PluginError::Forbidden { verb: "get-queue".into(), message: PROXY.into() };
        let text = e.to_string();
        assert!(text.starts_with(PROXY), "{text}");
        assert!(text.contains("kubectl transport get-queue needs RBAC verb `get` on resource `pods/proxy`"), "{text}");
        assert!(text.contains("examples/rbac/transport-admin-role.yaml"), "{text}");
        let other = PluginError::Forbidden { verb: "status".into(), message: "no".into() }.to_string();
        assert!(other.contains("kubectl transport status was refused"), "{other}");
    }

    #[test]
    fn errors_name_what_is_missing_and_where() {
        let e = PluginError::NoSuchService { name: "nosuch".into(), namespace: "ops".into() };
        assert!(e.to_string().starts_with("no TransportService nosuch in namespace ops"), "{e}");
        let e = PluginError::PodNotRunning { server: "mail-1".into(), phase: "Pending".into() };
        assert_eq!(e.to_string(), "server mail-1 cannot be reached: its pod is Pending, not Running");
    }
}
