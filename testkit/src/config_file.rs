//! The config file of a test server: a [`TransportFile`] built from [`TransportSetup`],
//! written by serializing it (never YAML joined from strings).
//!
//! The setup's knobs give what most test servers share (a relay from loopback to a smart
//! host or by MX, a mailbox hop, the admin API); a test's own settings are typed changes
//! to the file (`edit`), so a setting in the wrong place does not compile, and a value
//! out of range fails validation naming its field.
use serde_json::json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use transport::config::{AcceptedDomain, AcceptedDomainType, ReceiveConnector, ReceiveSettings, TransportFile};

/// Knobs for the config file a test server gets.
#[derive(Default)]
pub struct TransportSetup {
    /// The Outbound send connector's smart host. Without a smart host or `dns_routing`,
    /// the server has no send connector: it takes mail for its accepted domains only (an
    /// MX host of a test).
    pub smart_host: Option<SocketAddr>,
    pub dns_routing: bool,
    /// The send connector's port (for MX hosts and smart hosts without one).
    pub connector_port: Option<u16>,
    pub nameserver: Option<SocketAddr>,
    pub mailbox: Option<SocketAddr>,
    /// The queue directory, instead of `queue` in the server's folder.
    pub queue_directory: Option<PathBuf>,
    /// Serve the admin API on a free loopback port, with this token if given.
    pub admin: bool,
    pub token: Option<String>,
    /// `serverName` (default `test-0`).
    pub server_name: Option<String>,
    /// `fqdn`, the name of the banner, EHLO and Received headers (default `relay.test.invalid`).
    pub fqdn: Option<String>,
    /// Typed changes to the file, made last (see [`edit`]); the file is validated again
    /// after them.
    pub edit: Option<Edit>,
}

/// A typed change to a test server's file.
pub type Edit = Box<dyn Fn(&mut TransportFile) + Send + Sync>;

/// `change` as a [`TransportSetup::edit`]: `edit: edit(|f| f.max_outbound_connections = Some(4))`.
pub fn edit(change: impl Fn(&mut TransportFile) + Send + Sync + 'static) -> Option<Edit> {
    Some(Box::new(change))
}

/// Where a server of a [`TransportSetup`] lives: its folder and its addresses.
pub struct Placement<'a> {
    pub dir: &'a Path,
    pub smtp: SocketAddr,
    pub admin: Option<SocketAddr>,
    /// The admin token's file, when the setup has a token.
    pub token_file: Option<&'a Path>,
}

impl TransportSetup {
    /// The config file of a server of this setup placed at `at`; panics naming the field
    /// that is wrong (a test's own mistake).
    pub fn config_file(&self, at: &Placement) -> TransportFile {
        let mut file = json!({
            "serverName": self.server_name.as_deref().unwrap_or("test-0"),
            "fqdn": self.fqdn.as_deref().unwrap_or("relay.test.invalid"),
            "queueDirectory": self.queue_directory.clone().unwrap_or_else(|| at.dir.join("queue")),
            "logDirectory": at.dir.join("log"),
            "receiveConnectors": [{
                "name": "Default", "bind": at.smtp.to_string(), "remoteIPRanges": ["127.0.0.0/8"], "allowRelay": true,
            }],
        });
        if self.smart_host.is_some() || self.dns_routing {
            let mut outbound = json!({"name": "Outbound", "addressSpaces": [{"domain": "*", "cost": 1}]});
            if let Some(h) = self.smart_host {
                outbound["smartHosts"] = json!([h.to_string()]);
            }
            if self.dns_routing {
                outbound["dnsRouting"] = json!(true);
            }
            if let Some(port) = self.connector_port {
                outbound["port"] = json!(port);
            }
            file["sendConnectors"] = json!([outbound]);
        }
        if let Some(ns) = self.nameserver {
            file["dns"] = json!({"nameservers": [ns.to_string()]});
        }
        if let Some(m) = self.mailbox {
            file["mailboxDelivery"] = json!({"host": m.to_string()});
            file["transportConfig"] =
                json!({"acceptedDomains": authoritative(&["local.test"]), "postmaster": "postmaster@local.test"});
        }
        if let Some(a) = at.admin {
            file["admin"] = json!({"bind": a.to_string()});
            if let Some(token_file) = at.token_file {
                file["admin"]["tokenFile"] = json!(token_file);
            }
        }
        // Read as a user's file is (YAML text), so the checks are the server's own.
        let text = serde_yaml::to_string(&file).expect("YAML of JSON");
        let mut file = TransportFile::from_yaml_str(&text)
            .unwrap_or_else(|e| panic!("the test's config is invalid:\n{e}\n{text}"));
        if let Some(change) = &self.edit {
            change(&mut file);
            file.validate().unwrap_or_else(|e| panic!("the test's edited config is invalid:\n{e}\n{file:#?}"));
        }
        file
    }
}

/// `domains` as Authoritative accepted domains: their mail goes to the mailbox hop.
pub fn authoritative(domains: &[&str]) -> Vec<AcceptedDomain> {
    domains
        .iter()
        .map(|d| AcceptedDomain { domain: d.to_string(), domain_type: AcceptedDomainType::Authoritative })
        .collect()
}

/// A receive connector `name` on `bind` with `settings`, without STARTTLS.
pub fn receive_connector(name: &str, bind: SocketAddr, settings: ReceiveSettings) -> ReceiveConnector {
    ReceiveConnector { name: name.into(), bind, settings, tls: None }
}

/// `file` as the YAML text of a config file.
pub fn config_text(file: &TransportFile) -> String {
    serde_yaml::to_string(file).expect("a TransportFile serializes")
}

/// Writes `file` to `path` as YAML.
pub fn write_config_file(path: &Path, file: &TransportFile) {
    std::fs::write(path, config_text(file)).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every test server has a next hop: a smart host here.
    fn relaying() -> TransportSetup {
        TransportSetup { smart_host: Some("127.0.0.1:2526".parse().unwrap()), ..Default::default() }
    }

    fn placed(setup: &TransportSetup) -> TransportFile {
        let dir = Path::new("/srv/t");
        let at = Placement { dir, smtp: "127.0.0.1:2525".parse().unwrap(), admin: None, token_file: None };
        setup.config_file(&at)
    }

    #[test]
    fn a_relay_setup_relays_from_loopback_to_its_smart_host() {
        let f = placed(&relaying());
        assert_eq!(f.server_name, "test-0");
        assert_eq!(f.queue_directory, Path::new("/srv/t/queue"));
        assert_eq!(f.receive_connectors.len(), 1);
        assert_eq!(f.receive_connectors[0].bind.to_string(), "127.0.0.1:2525");
        assert_eq!(f.send_connectors.len(), 1);
        assert_eq!(f.send_connectors[0].smart_hosts, ["127.0.0.1:2526"]);
        assert!(f.admin.is_none() && f.mailbox_delivery.is_none());
    }

    #[test]
    fn the_file_written_reads_back_the_same() {
        let setup = TransportSetup { mailbox: Some("127.0.0.1:2527".parse().unwrap()), ..relaying() };
        let f = placed(&setup);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("transport.yaml");
        write_config_file(&path, &f);
        let again = TransportFile::from_yaml_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(serde_yaml::to_string(&again).unwrap(), serde_yaml::to_string(&f).unwrap());
        assert_eq!(again.mailbox_delivery.map(|m| m.host).as_deref(), Some("127.0.0.1:2527"));
    }

    #[test]
    fn a_receive_connector_is_added_as_built() {
        let bind = "127.0.0.1:2600".parse().unwrap();
        let settings = ReceiveSettings { allow_relay: true, max_protocol_errors: Some(3), ..Default::default() };
        let f = placed(&TransportSetup {
            edit: edit(move |f| f.receive_connectors.push(receive_connector("Tight", bind, settings.clone()))),
            ..relaying()
        });
        let tight = &f.receive_connectors[1];
        assert_eq!((tight.name.as_str(), tight.bind, tight.tls.is_none()), ("Tight", bind, true));
        assert_eq!(tight.settings.max_protocol_errors, Some(3));
        assert!(tight.settings.remote_ip_ranges.is_empty(), "everyone may connect");
        let ranges =
            f.receive_connectors[0].settings.remote_ip_ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>();
        assert_eq!(ranges, ["127.0.0.0/8"], "the Default connector's");
    }

    #[test]
    fn an_edit_is_typed_made_last_and_checked() {
        let f = placed(&TransportSetup {
            edit: edit(|f| {
                f.send_connectors[0].smart_hosts = vec!["127.0.0.1:2700".into()];
                f.receive_connectors[0].settings.protocol_logging = true;
                f.role = transport::config::Role::Edge;
            }),
            ..relaying()
        });
        assert_eq!(f.send_connectors[0].smart_hosts, ["127.0.0.1:2700"], "the edit wins over the knob");
        assert!(f.receive_connectors[0].settings.protocol_logging);
        assert_eq!(f.role, transport::config::Role::Edge);
    }

    #[test]
    #[should_panic(expected = "receiveConnectors[0].maxRecipientsPerMessage")]
    fn an_edit_that_breaks_the_file_names_the_field() {
        placed(&TransportSetup {
            edit: edit(|f| f.receive_connectors[0].settings.max_recipients_per_message = Some(0)),
            ..relaying()
        });
    }

    #[test]
    fn without_a_next_hop_there_is_no_send_connector() {
        let f = placed(&TransportSetup {
            fqdn: Some("mx1.secure.test".into()),
            mailbox: Some("127.0.0.1:2527".parse().unwrap()),
            ..Default::default()
        });
        assert!(f.send_connectors.is_empty(), "{:?}", f.send_connectors);
        assert_eq!(f.fqdn, "mx1.secure.test");
        let dns = placed(&TransportSetup { dns_routing: true, connector_port: Some(2600), ..Default::default() });
        assert_eq!((dns.send_connectors[0].dns_routing, dns.send_connectors[0].port), (true, Some(2600)));
        assert_eq!(dns.fqdn, "relay.test.invalid", "the default");
    }

    #[test]
    fn authoritative_domains_go_to_the_mailbox_hop() {
        let f = placed(&TransportSetup { mailbox: Some("127.0.0.1:2527".parse().unwrap()), ..relaying() });
        assert_eq!(f.transport_config.accepted_domains, authoritative(&["local.test"]));
        let two = authoritative(&["a.test", "*.b.test"]);
        assert_eq!(two.iter().map(|d| d.domain.as_str()).collect::<Vec<_>>(), ["a.test", "*.b.test"]);
        assert!(two.iter().all(|d| d.domain_type == AcceptedDomainType::Authoritative));
    }
}
