//! The transport configuration file of one server, rendered from the TransportService,
//! its TransportConfig and the ServerComponentState objects aimed at the server.
use crate::crd::{ServerComponentState, TransportService, INTRA_CONNECTOR};
use crate::names;
use crate::validation::{FieldError, FieldOwner};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use transport::config::{
    AdminSettings, Component, ComponentState, OrgSettings, ReceiveAuth, ReceiveConnector, ReceiveSettings, Requester,
    ShadowChannel, ShadowPeer, TlsFiles, TransportFile,
};

/// A server's file, its YAML text and the revision of that text.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedServer {
    pub name: String,
    pub index: u32,
    pub file: TransportFile,
    pub text: String,
    /// `transport::config::revision(text)`: what the pod reports as `configRevision`.
    pub revision: String,
}

/// Every component state wished for `server`: `component → requester → state`. Two
/// objects with the same requester (one for the server, one for `*`) combine to the more
/// restrictive state. An object being deleted (its finalizer still on) withdraws its wish:
/// its requester is written `Active` until the object is gone, so that a server restarted
/// in between comes back Active for that requester instead of with the old wish.
pub fn component_states(
    service: &str,
    server: &str,
    objects: &[ServerComponentState],
) -> BTreeMap<Component, BTreeMap<Requester, ComponentState>> {
    let mut states: BTreeMap<Component, BTreeMap<Requester, ComponentState>> = BTreeMap::new();
    for obj in objects {
        if !obj.spec.targets(service, server) {
            continue;
        }
        let state = if obj.metadata.deletion_timestamp.is_some() { ComponentState::Active } else { obj.spec.state };
        let slot = states.entry(obj.spec.component).or_default().entry(obj.spec.requester).or_insert(state);
        *slot = (*slot).max(state);
    }
    states
}

/// What `requester` wishes for `component` on `server`, over every object (Active when none).
pub fn requester_wish(
    service: &str,
    server: &str,
    component: Component,
    requester: Requester,
    objects: &[ServerComponentState],
) -> ComponentState {
    component_states(service, server, objects)
        .get(&component)
        .and_then(|r| r.get(&requester))
        .copied()
        .unwrap_or_default()
}

/// The configuration file of server `index` of `ts`. Fails only on what the file cannot
/// express (an unparsable bind address); every other check is `TransportFile::validate`.
pub fn transport_file(
    ts: &TransportService,
    namespace: &str,
    index: u32,
    org: &OrgSettings,
    components: BTreeMap<Component, BTreeMap<Requester, ComponentState>>,
    leaving: &[u32],
) -> Result<TransportFile, Vec<FieldError>> {
    let name = ts.metadata.name.as_deref().unwrap_or_default();
    let server = names::server_name(name, index);
    let spec = &ts.spec;
    let mut errors = Vec::new();

    let mut receive_connectors = Vec::with_capacity(spec.receive_connectors.len() + 1);
    for (i, c) in spec.receive_connectors.iter().enumerate() {
        let ip = match c.bind.as_deref().map(str::parse::<IpAddr>) {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(Ok(ip)) => ip,
            Some(Err(_)) => {
                errors.push(FieldError::service(
                    format!("spec.receiveConnectors[{i}].bind"),
                    format!("\"{}\" is not an IP address", c.bind.as_deref().unwrap_or_default()),
                ));
                continue;
            }
        };
        let mut settings = c.settings.clone();
        settings.auth = c.auth.as_ref().map(|_| ReceiveAuth { users_file: auth_file(&c.name) });
        receive_connectors.push(ReceiveConnector {
            name: c.name.clone(),
            bind: SocketAddr::new(ip, c.port),
            settings,
            tls: c.tls.as_ref().map(|_| tls_files(&c.name)),
        });
    }
    receive_connectors.push(ReceiveConnector {
        name: INTRA_CONNECTOR.to_string(),
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), spec.intra_port()),
        settings: ReceiveSettings { remote_ip_ranges: spec.intra_ranges(), allow_relay: true, ..Default::default() },
        tls: None,
    });
    if !errors.is_empty() {
        return Err(errors);
    }

    Ok(TransportFile {
        server_name: server.clone(),
        role: spec.role(),
        fqdn: spec.fqdn.clone().unwrap_or_else(|| names::default_fqdn(name, &server, namespace)),
        queue_directory: PathBuf::from(names::QUEUE_DIR),
        log_directory: Some(PathBuf::from(names::LOG_DIR)),
        replay_directory: Some(PathBuf::from(names::REPLAY_DIR)),
        server_state: spec.server_state_for(&server),
        receive_connectors,
        send_connectors: spec.send_connectors.clone(),
        mailbox_delivery: spec.mailbox_delivery.clone(),
        retry: spec.retry.clone().unwrap_or_default(),
        expiration: spec.expiration.clone().unwrap_or_default(),
        transport_config: org.clone(),
        dns: spec.dns.clone(),
        max_outbound_connections: spec.max_outbound_connections,
        admin: Some(AdminSettings {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), names::ADMIN_PORT),
            token_file: Some(PathBuf::from(names::TOKEN_FILE)),
        }),
        logging: spec.logging.clone(),
        shadow: Some(shadow_channel(name, namespace, index, spec.servers(), leaving)),
        components,
    })
}

/// The shadow channel of server `index`: its peers are the other wanted servers, each by
/// its headless DNS name (published before it is ready: a draining server still answers
/// heartbeats), listed from the next index round, so that copies spread over the service.
/// A server above the wanted count (being scaled down) still lists them all but takes no
/// new copies: the others list it (like every other server in `leaving`) as a leaving
/// peer, one they only heartbeat, so that the copies they hold for it are dropped once
/// its queue is drained (and not delivered again after it is gone).
pub fn shadow_channel(ts: &str, namespace: &str, index: u32, servers: u32, leaving: &[u32]) -> ShadowChannel {
    let order: Vec<u32> = if index < servers {
        (1..servers).map(|step| (index + step) % servers).collect()
    } else {
        (0..servers).collect()
    };
    let peer = |i: u32, leaving: bool| {
        let name = names::server_name(ts, i);
        let address = format!("{}:{}", names::default_fqdn(ts, &name, namespace), names::SHADOW_PORT);
        ShadowPeer { name, address, leaving }
    };
    let going = leaving.iter().copied().filter(|&i| i >= servers && i != index);
    let peers = order.into_iter().map(|i| peer(i, false)).chain(going.map(|i| peer(i, true))).collect();
    ShadowChannel {
        bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), names::SHADOW_PORT),
        token_file: PathBuf::from(names::SHADOW_TOKEN_FILE),
        peers,
    }
}

/// The file as YAML, with its revision.
pub fn rendered(index: u32, file: TransportFile) -> Result<RenderedServer, FieldError> {
    let text = serde_yaml::to_string(&file)
        .map_err(|e| FieldError::new(FieldOwner::Generated, "spec", format!("cannot write the configuration: {e}")))?;
    let revision = transport::config::revision(&text);
    Ok(RenderedServer { name: file.server_name.clone(), index, file, text, revision })
}

pub fn tls_files(connector: &str) -> TlsFiles {
    TlsFiles {
        certificate_file: PathBuf::from(format!("{}/{connector}/tls.crt", names::TLS_DIR)),
        key_file: PathBuf::from(format!("{}/{connector}/tls.key", names::TLS_DIR)),
    }
}

pub fn auth_file(connector: &str) -> PathBuf {
    PathBuf::from(format!("{}/{connector}/users", names::AUTH_DIR))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::tests::{org, scs, service};
    use crate::crd::{AuthSecretRef, IntraOrgSpec, ReceiveConnectorSpec, TlsSecretRef};
    use transport::config::{Role, ServerStateSetting};

    #[test]
    fn renders_the_paths_names_and_admin_of_a_pod() {
        let ts = service("mail", 3);
        let file = transport_file(&ts, "prod", 1, &org(), BTreeMap::new(), &[]).unwrap();
        assert_eq!(file.server_name, "mail-1");
        assert_eq!(file.fqdn, "mail-1.mail-headless.prod.svc.cluster.local");
        assert_eq!(file.queue_directory, PathBuf::from("/var/lib/kube-transport/queue"));
        assert_eq!(file.log_directory, Some(PathBuf::from("/var/lib/kube-transport/log")));
        assert_eq!(file.replay_directory, Some(PathBuf::from("/var/lib/kube-transport/replay")));
        let admin = file.admin.unwrap();
        assert_eq!(admin.bind.to_string(), "0.0.0.0:8025");
        assert_eq!(admin.token_file, Some(PathBuf::from("/etc/kube-transport/admin/token")));
        assert_eq!(file.transport_config, org());
        assert_eq!(file.send_connectors, ts.spec.send_connectors);
    }

    #[test]
    fn each_server_lists_the_other_wanted_servers_as_shadow_peers_from_the_next_one_round() {
        let names = |index: u32, servers: u32| -> Vec<String> {
            shadow_channel("mail", "prod", index, servers, &[]).peers.into_iter().map(|p| p.name).collect()
        };
        assert_eq!(names(1, 3), ["mail-2", "mail-0"]);
        assert_eq!(names(2, 3), ["mail-0", "mail-1"]);
        assert_eq!(names(0, 1), Vec::<String>::new(), "a lone server has no peer");
        // Being scaled down: it may still hand out copies, but no one gives it any.
        assert_eq!(names(3, 3), ["mail-0", "mail-1", "mail-2"]);
        assert!(!names(0, 3).contains(&"mail-3".to_string()));

        // Scaled from 5 to 3: servers 3 and 4 are leaving. Every other server heartbeats
        // them (for the copies it holds of their messages) but offers them none.
        let peers = |index: u32| -> Vec<(String, bool)> {
            let channel = shadow_channel("mail", "prod", index, 3, &[3, 4]);
            channel.peers.into_iter().map(|p| (p.name, p.leaving)).collect()
        };
        let p = |name: &str, leaving: bool| (name.to_string(), leaving);
        assert_eq!(peers(0), [p("mail-1", false), p("mail-2", false), p("mail-3", true), p("mail-4", true)]);
        assert_eq!(peers(3), [p("mail-0", false), p("mail-1", false), p("mail-2", false), p("mail-4", true)]);

        let file = transport_file(&service("mail", 3), "prod", 0, &org(), BTreeMap::new(), &[]).unwrap();
        let channel = file.shadow.unwrap();
        assert_eq!(channel.bind.to_string(), "0.0.0.0:2528");
        assert_eq!(channel.token_file, PathBuf::from("/etc/kube-transport/admin/shadow-token"));
        assert_eq!(channel.peers[0].address, "mail-1.mail-headless.prod.svc.cluster.local:2528");
    }

    #[test]
    fn receive_connectors_bind_on_their_port_and_intra_comes_last() {
        let mut ts = service("mail", 1);
        ts.spec.receive_connectors.push(ReceiveConnectorSpec {
            name: "Submission".into(),
            port: 587,
            bind: Some("10.1.2.3".into()),
            tls: Some(TlsSecretRef { secret_name: "mail-tls".into() }),
            auth: Some(AuthSecretRef { secret_name: "mail-users".into(), key: None }),
            ..Default::default()
        });
        ts.spec.intra_org =
            Some(IntraOrgSpec { port: Some(2600), remote_ip_ranges: Some(vec!["10.8.0.0/16".parse().unwrap()]) });
        let file = transport_file(&ts, "prod", 0, &org(), BTreeMap::new(), &[]).unwrap();
        let binds: Vec<_> = file.receive_connectors.iter().map(|c| (c.name.as_str(), c.bind.to_string())).collect();
        assert_eq!(
            binds,
            vec![
                ("Default", "0.0.0.0:2525".into()),
                ("Submission", "10.1.2.3:587".into()),
                ("Intra", "0.0.0.0:2600".into())
            ]
        );
        let sub = &file.receive_connectors[1];
        let tls = sub.tls.as_ref().unwrap();
        assert_eq!(tls.certificate_file, PathBuf::from("/etc/kube-transport/tls/Submission/tls.crt"));
        assert_eq!(tls.key_file, PathBuf::from("/etc/kube-transport/tls/Submission/tls.key"));
        assert_eq!(
            sub.settings.auth.as_ref().unwrap().users_file,
            PathBuf::from("/etc/kube-transport/auth/Submission/users")
        );
        let intra = &file.receive_connectors[2];
        assert!(intra.settings.allow_relay);
        assert_eq!(intra.settings.remote_ip_ranges, vec!["10.8.0.0/16".parse::<ipnet::IpNet>().unwrap()]);
    }

    #[test]
    fn intra_defaults_to_port_2527_and_private_ranges() {
        let file = transport_file(&service("mail", 1), "prod", 0, &org(), BTreeMap::new(), &[]).unwrap();
        let intra = file.receive_connectors.last().unwrap();
        assert_eq!(intra.name, "Intra");
        assert_eq!(intra.bind.port(), 2527);
        let ranges: Vec<String> = intra.settings.remote_ip_ranges.iter().map(|r| r.to_string()).collect();
        assert_eq!(ranges, vec!["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"]);
    }

    #[test]
    fn fqdn_role_and_server_state_overrides_come_from_the_spec() {
        let mut ts = service("edge", 2);
        ts.spec.fqdn = Some("mx.example.com".into());
        ts.spec.role = Some(Role::Edge);
        ts.spec.server_state = Some(ServerStateSetting::Paused);
        ts.spec.server_state_overrides.insert("edge-1".into(), ServerStateSetting::Started);
        let f0 = transport_file(&ts, "prod", 0, &org(), BTreeMap::new(), &[]).unwrap();
        let f1 = transport_file(&ts, "prod", 1, &org(), BTreeMap::new(), &[]).unwrap();
        assert_eq!((f0.fqdn.as_str(), f0.role), ("mx.example.com", Role::Edge));
        assert_eq!(f0.server_state, ServerStateSetting::Paused);
        assert_eq!(f1.server_state, ServerStateSetting::Started);
    }

    #[test]
    fn a_bind_that_is_not_an_ip_names_the_field() {
        let mut ts = service("mail", 1);
        ts.spec.receive_connectors[0].bind = Some("eth0".into());
        let errors = transport_file(&ts, "prod", 0, &org(), BTreeMap::new(), &[]).unwrap_err();
        assert_eq!(errors[0].path, "spec.receiveConnectors[0].bind");
    }

    #[test]
    fn component_states_combine_the_objects_aimed_at_the_server() {
        let objects = vec![
            scs("a", "mail", "mail-0", Component::HubTransport, Requester::Maintenance, ComponentState::Draining),
            scs("b", "mail", "*", Component::HubTransport, Requester::Maintenance, ComponentState::Inactive),
            scs("c", "mail", "mail-1", Component::FrontendTransport, Requester::Functional, ComponentState::Inactive),
            scs("d", "other", "*", Component::ServerWideOffline, Requester::Sidelined, ComponentState::Inactive),
            scs("e", "mail", "*", Component::HubTransport, Requester::Deployment, ComponentState::Active),
        ];
        let states = component_states("mail", "mail-0", &objects);
        assert_eq!(
            states,
            BTreeMap::from([(
                Component::HubTransport,
                BTreeMap::from([
                    (Requester::Maintenance, ComponentState::Inactive),
                    (Requester::Deployment, ComponentState::Active)
                ])
            )])
        );
        let mut deleting = objects[0].clone();
        deleting.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()));
        assert_eq!(
            component_states("mail", "mail-0", &[deleting.clone()]),
            BTreeMap::from([(
                Component::HubTransport,
                BTreeMap::from([(Requester::Maintenance, ComponentState::Active)])
            )]),
            "an object being deleted withdraws its wish: Active until it is gone"
        );
        let objects = vec![deleting, objects[1].clone()];
        assert_eq!(
            requester_wish("mail", "mail-0", Component::HubTransport, Requester::Maintenance, &objects),
            ComponentState::Inactive,
            "another object of the same requester still holds its wish"
        );
    }

    #[test]
    fn rendered_text_round_trips_and_its_revision_is_the_servers() {
        let mut comps = BTreeMap::new();
        comps.insert(Component::HubTransport, BTreeMap::from([(Requester::Maintenance, ComponentState::Draining)]));
        let file = transport_file(&service("mail", 1), "prod", 0, &org(), comps, &[]).unwrap();
        let r = rendered(0, file.clone()).unwrap();
        assert_eq!(r.revision, transport::config::revision(&r.text));
        let back: TransportFile = serde_yaml::from_str(&r.text).unwrap();
        assert_eq!(back, file);
        assert!(r.text.contains("components:"), "{}", r.text);
    }
}
