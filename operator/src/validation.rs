//! A TransportService is checked the way `transport check-config` checks a file: the
//! operator renders each server's configuration and runs `TransportFile::validate` on it.
//! Each error's field path in the file is mapped back to the field a user wrote
//! (`retry.x` → `spec.retry.x`, `transportConfig.x` → the TransportConfig's `spec.x`), and a
//! few rules that only exist in a cluster (ports, reserved names, object names) are added.
//! An invalid spec is reported and nothing is applied for it.
use crate::build::{self, RenderedServer};
use crate::crd::{ServerComponentState, TransportService, TransportServiceSpec, INTRA_CONNECTOR, MAX_SERVICE_NAME};
use crate::names;
use std::fmt;
use transport::config::{ConfigError, OrgSettings, TransportFile};

/// Which object a field path belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FieldOwner {
    TransportService,
    /// The TransportConfig of that name.
    TransportConfig(String),
    /// The ServerComponentState objects aimed at the server.
    ServerComponentStates,
    /// A part of the file the operator writes itself (a bug if it is ever wrong).
    Generated,
}

/// One problem, with the field that causes it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldError {
    pub owner: FieldOwner,
    /// Path in the owner, e.g. `spec.receiveConnectors[0].maxMessageSize`.
    pub path: String,
    pub message: String,
}

impl FieldError {
    pub fn new(owner: FieldOwner, path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError { owner, path: path.into(), message: message.into() }
    }

    pub fn service(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError::new(FieldOwner::TransportService, path, message)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.owner {
            FieldOwner::TransportService => write!(f, "{}: {}", self.path, self.message),
            FieldOwner::TransportConfig(name) => write!(f, "TransportConfig {name}: {}: {}", self.path, self.message),
            FieldOwner::ServerComponentStates => {
                write!(f, "ServerComponentState objects: {}: {}", self.path, self.message)
            }
            FieldOwner::Generated => write!(f, "{} (written by the operator): {}", self.path, self.message),
        }
    }
}

/// Every error on one line each, as a condition message shows them.
pub fn describe(errors: &[FieldError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Renders and checks the configuration of servers `indices` of `ts`. All errors at once,
/// each once (every server shares the spec, so they would repeat).
pub fn render_service(
    ts: &TransportService,
    org: &OrgSettings,
    transport_config: &str,
    component_objects: &[ServerComponentState],
    indices: &[u32],
) -> Result<Vec<RenderedServer>, Vec<FieldError>> {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let namespace = ts.metadata.namespace.as_deref().unwrap_or_default();
    let mut errors = cluster_rules(name, &ts.spec);
    let mut servers = Vec::with_capacity(indices.len());
    // Servers above the wanted count still configured: being removed.
    let leaving: Vec<u32> = indices.iter().copied().filter(|&i| i >= ts.spec.servers()).collect();
    for &index in indices {
        let server = names::server_name(name, index);
        let components = build::component_states(name, &server, component_objects);
        match build::transport_file(ts, namespace, index, org, components, &leaving) {
            Err(mut e) => errors.append(&mut e),
            Ok(file) => {
                if let Err(found) = file.validate() {
                    errors.extend(found.0.iter().map(|e| map_error(e, &ts.spec, transport_config)));
                }
                match build::rendered(index, file) {
                    Ok(r) => servers.push(r),
                    Err(e) => errors.push(e),
                }
            }
        }
    }
    if errors.is_empty() {
        return Ok(servers);
    }
    errors.sort();
    errors.dedup();
    Err(errors)
}

/// Checks a TransportConfig on its own: a file with only its settings, errors under
/// `transportConfig.` mapped to the TransportConfig's `spec.`.
pub fn check_transport_config(name: &str, org: &OrgSettings) -> Result<(), Vec<FieldError>> {
    let probe = TransportFile {
        server_name: "probe".into(),
        role: Default::default(),
        fqdn: "probe.invalid".into(),
        queue_directory: names::QUEUE_DIR.into(),
        log_directory: None,
        replay_directory: None,
        server_state: Default::default(),
        receive_connectors: Vec::new(),
        send_connectors: Vec::new(),
        mailbox_delivery: None,
        retry: Default::default(),
        expiration: Default::default(),
        transport_config: org.clone(),
        shadow: None,
        dns: None,
        max_outbound_connections: None,
        admin: None,
        logging: None,
        components: Default::default(),
    };
    let Err(found) = probe.validate() else {
        return Ok(());
    };
    let mut errors: Vec<FieldError> = found
        .0
        .iter()
        .filter(|e| head(&e.path).0 == "transportConfig")
        .map(|e| map_error(e, &TransportServiceSpec::default(), name))
        .collect();
    errors.sort();
    errors.dedup();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Rules of a cluster that a file does not have: object names, reserved connector names,
/// ports shared with the admin API, the Intra connector or a Service port.
fn cluster_rules(name: &str, spec: &TransportServiceSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let dns_label = name.len() <= MAX_SERVICE_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !dns_label {
        errors.push(FieldError::service(
            "metadata.name",
            format!(
                "\"{name}\" must be a DNS label of at most {MAX_SERVICE_NAME} characters (lower-case letters, digits, '-'): pods and Services are named after it"
            ),
        ));
    }
    let intra = spec.intra_port();
    if intra == names::ADMIN_PORT {
        errors.push(FieldError::service("spec.intraOrg.port", format!("{intra} is the admin API's port")));
    }
    if spec.intra_org.as_ref().and_then(|i| i.remote_ip_ranges.as_ref()).is_some_and(Vec::is_empty) {
        errors.push(FieldError::service(
            "spec.intraOrg.remoteIPRanges",
            "must not be empty: the Intra connector allows relay, an empty list would open it to everyone",
        ));
    }
    for (i, c) in spec.receive_connectors.iter().enumerate() {
        if c.name.eq_ignore_ascii_case(INTRA_CONNECTOR) {
            errors.push(FieldError::service(
                format!("spec.receiveConnectors[{i}].name"),
                format!("\"{}\" is reserved for the connector sibling servers use (see spec.intraOrg)", c.name),
            ));
        }
        let port = format!("spec.receiveConnectors[{i}].port");
        if c.port == names::ADMIN_PORT {
            errors.push(FieldError::service(&port, format!("{} is the admin API's port", c.port)));
        } else if c.port == intra {
            errors.push(FieldError::service(
                &port,
                format!("{} is the Intra connector's port (spec.intraOrg.port)", c.port),
            ));
        } else if let Some(j) = spec.receive_connectors[..i].iter().position(|o| o.port == c.port) {
            errors.push(FieldError::service(
                &port,
                format!(
                    "{} is already used by spec.receiveConnectors[{j}] (the Service exposes each port once)",
                    c.port
                ),
            ));
        }
    }
    // A CA bundle in the pod comes from spec.projectedVolumeTemplate: a path under its
    // mount without one names a file that will never be there.
    for (i, c) in spec.send_connectors.iter().enumerate() {
        let Some(path) = &c.tls_certificate_authorities else { continue };
        if path.starts_with(names::PROJECTED_DIR) && spec.projected_volume_template.is_none() {
            errors.push(FieldError::service(
                format!("spec.sendConnectors[{i}].tlsCertificateAuthorities"),
                format!(
                    "{} is under {}, which only spec.projectedVolumeTemplate fills: project the CA bundle's \
                     Secret or ConfigMap there",
                    path.display(),
                    names::PROJECTED_DIR
                ),
            ));
        }
    }
    errors
}

/// `receiveConnectors[1].maxMessageSize` → (`receiveConnectors`, `[1].maxMessageSize`).
fn head(path: &str) -> (&str, &str) {
    match path.find(['.', '[']) {
        Some(at) => (&path[..at], &path[at..]),
        None => (path, ""),
    }
}

/// `[3].tls.keyFile` → (3, `.tls.keyFile`).
fn index(rest: &str) -> Option<(usize, &str)> {
    let inner = rest.strip_prefix('[')?;
    let close = inner.find(']')?;
    Some((inner[..close].parse().ok()?, &inner[close + 1..]))
}

/// Maps a path of the rendered file to the field a user wrote.
pub fn map_error(e: &ConfigError, spec: &TransportServiceSpec, transport_config: &str) -> FieldError {
    let (owner, path) = map_path(&e.path, spec, transport_config);
    FieldError::new(owner, path, e.message.clone())
}

fn map_path(path: &str, spec: &TransportServiceSpec, transport_config: &str) -> (FieldOwner, String) {
    let (first, rest) = head(path);
    match first {
        "transportConfig" => (FieldOwner::TransportConfig(transport_config.to_string()), format!("spec{rest}")),
        "receiveConnectors" => match index(rest) {
            Some((i, after)) if i < spec.receive_connectors.len() => {
                let connector = &spec.receive_connectors[i];
                let field = head(after.trim_start_matches('.')).0;
                let after = match field {
                    "bind" if connector.bind.is_none() => ".port".to_string(),
                    "tls" => ".tls.secretName".to_string(),
                    "auth" => ".auth.secretName".to_string(),
                    _ => after.to_string(),
                };
                (FieldOwner::TransportService, format!("spec.receiveConnectors[{i}]{after}"))
            }
            Some((i, after)) if i == spec.receive_connectors.len() => {
                let field = head(after.trim_start_matches('.')).0;
                let to = match field {
                    "remoteIPRanges" => format!("spec.intraOrg{after}"),
                    "bind" => "spec.intraOrg.port".to_string(),
                    _ => "spec.intraOrg".to_string(),
                };
                (FieldOwner::TransportService, to)
            }
            _ => (FieldOwner::TransportService, format!("spec.{path}")),
        },
        "serverName" => (FieldOwner::TransportService, "metadata.name".to_string()),
        "components" => (FieldOwner::ServerComponentStates, path.to_string()),
        "queueDirectory" | "logDirectory" | "replayDirectory" | "admin" | "" => {
            (FieldOwner::Generated, path.to_string())
        }
        _ => (FieldOwner::TransportService, format!("spec.{path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{org, service};
    use crate::crd::ReceiveConnectorSpec;

    fn err(path: &str) -> ConfigError {
        ConfigError { path: path.into(), message: "bad".into() }
    }

    fn mapped(path: &str, spec: &TransportServiceSpec) -> String {
        map_error(&err(path), spec, "default").to_string()
    }

    #[test]
    fn file_paths_map_to_the_fields_users_wrote() {
        let mut spec = service("mail", 1).spec;
        spec.receive_connectors.push(ReceiveConnectorSpec {
            name: "Sub".into(),
            port: 587,
            bind: Some("10.0.0.1".into()),
            ..Default::default()
        });
        assert_eq!(mapped("retry.queueGlitchRetryCount", &spec), "spec.retry.queueGlitchRetryCount: bad");
        assert_eq!(
            mapped("expiration.messageExpirationTimeOut", &spec),
            "spec.expiration.messageExpirationTimeOut: bad"
        );
        assert_eq!(mapped("sendConnectors[0].smartHosts[1]", &spec), "spec.sendConnectors[0].smartHosts[1]: bad");
        assert_eq!(
            mapped("receiveConnectors[0].maxMessageSize", &spec),
            "spec.receiveConnectors[0].maxMessageSize: bad"
        );
        assert_eq!(mapped("receiveConnectors[0].bind", &spec), "spec.receiveConnectors[0].port: bad");
        assert_eq!(mapped("receiveConnectors[1].bind", &spec), "spec.receiveConnectors[1].bind: bad");
        assert_eq!(mapped("receiveConnectors[1].tls.keyFile", &spec), "spec.receiveConnectors[1].tls.secretName: bad");
        assert_eq!(mapped("receiveConnectors[2].remoteIPRanges[0]", &spec), "spec.intraOrg.remoteIPRanges[0]: bad");
        assert_eq!(mapped("receiveConnectors[2].bind", &spec), "spec.intraOrg.port: bad");
        assert_eq!(mapped("transportConfig.maxSendSize", &spec), "TransportConfig default: spec.maxSendSize: bad");
        assert_eq!(
            mapped("transportConfig.acceptedDomains[1].domain", &spec),
            "TransportConfig default: spec.acceptedDomains[1].domain: bad"
        );
        assert_eq!(mapped("serverName", &spec), "metadata.name: bad");
        assert_eq!(mapped("admin.tokenFile", &spec), "admin.tokenFile (written by the operator): bad");
        assert!(mapped("components", &spec).starts_with("ServerComponentState objects"));
    }

    #[test]
    fn cluster_rules_name_the_field() {
        let mut ts = service("mail", 1);
        ts.spec.receive_connectors.push(ReceiveConnectorSpec {
            name: "Intra".into(),
            port: 2600,
            ..Default::default()
        });
        ts.spec.receive_connectors.push(ReceiveConnectorSpec {
            name: "Admin".into(),
            port: 8025,
            ..Default::default()
        });
        ts.spec.receive_connectors.push(ReceiveConnectorSpec { name: "Twin".into(), port: 2525, ..Default::default() });
        let errors = cluster_rules("mail", &ts.spec);
        let paths: Vec<_> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec!["spec.receiveConnectors[1].name", "spec.receiveConnectors[2].port", "spec.receiveConnectors[3].port"]
        );
        assert!(errors[2].message.contains("spec.receiveConnectors[0]"), "{}", errors[2].message);
        assert_eq!(cluster_rules("Mail_Service", &ts.spec)[0].path, "metadata.name");

        // A CA bundle under /projected needs the template that puts it there.
        let mut ts = service("mail", 1);
        ts.spec.send_connectors[0].tls_certificate_authorities = Some("/projected/ca/ca.crt".into());
        let errors = cluster_rules("mail", &ts.spec);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "spec.sendConnectors[0].tlsCertificateAuthorities");
        assert!(errors[0].message.contains("spec.projectedVolumeTemplate"), "{}", errors[0].message);
        ts.spec.projected_volume_template = Some(Default::default());
        assert!(cluster_rules("mail", &ts.spec).is_empty());
    }

    #[test]
    fn a_valid_service_renders_every_server_asked_for() {
        let servers = render_service(&service("mail", 3), &org(), "default", &[], &[0, 1, 2]).unwrap();
        let names: Vec<_> = servers.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec!["mail-0", "mail-1", "mail-2"]);
    }

    /// Needs the config helper's `TransportFile::validate` (docs/design.md §4: 0–15).
    #[test]
    fn an_out_of_range_retry_count_is_reported_once_with_its_crd_path() {
        let mut ts = service("mail", 2);
        ts.spec.retry =
            Some(transport::config::RetrySettings { queue_glitch_retry_count: Some(99), ..Default::default() });
        let errors = render_service(&ts, &org(), "default", &[], &[0, 1]).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].path, "spec.retry.queueGlitchRetryCount");
        assert_eq!(errors[0].owner, FieldOwner::TransportService);
    }
}
