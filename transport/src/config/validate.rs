//! Parsing and validation of the configuration file. Every error names its field
//! path (`receiveConnectors[1].maxMessageSize`), and all errors are reported at
//! once. `transport check-config`, the server at start and reload, and the
//! operator (before it renders a ConfigMap) all run these same checks.
use super::domain_pattern::DomainPattern;
use super::host_port::HostPort;
use super::settings::{self, Bounded, Setting};
use super::{
    ByteSize, DaneMode, MtaStsMode, OutboundTls, ReceiveConnector, ReceiveSettings, SendConnector, TimeSpan,
    TlsAuthLevel, TransportFile,
};
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// One problem, with the field path it concerns (e.g. `retry.queueGlitchRetryCount`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// Every problem found in one file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One DNS label: letters, digits and inner hyphens, 1 to 63 characters.
macro_rules! label {
    () => {
        r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    };
}
/// Schema pattern of an address space: `*`, `example.com` or `*.example.com`.
pub const ADDRESS_SPACE_PATTERN: &str = concat!(r"^(\*|(\*\.)?", label!(), r"(\.", label!(), r")*)$");
/// Schema pattern of an accepted domain: `example.com` or `*.example.com`.
pub const ACCEPTED_DOMAIN_PATTERN: &str = concat!(r"^(\*\.)?", label!(), r"(\.", label!(), r")*$");
/// Schema pattern of a server name.
pub const SERVER_NAME_PATTERN: &str = r"^[A-Za-z0-9._-]+$";

/// Path of an error about the file as a whole (unreadable, not YAML, not a mapping).
pub const FILE_PATH: &str = "<file>";

impl TransportFile {
    /// Parse YAML text and validate it; all errors at once.
    pub fn from_yaml_str(text: &str) -> Result<Self, ConfigErrors> {
        let file = parse(text)?;
        file.validate()?;
        Ok(file)
    }

    /// Read, parse and validate a file, then check that the files it names
    /// (certificates, keys, users and token files) can be read.
    pub fn load(path: &Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: FILE_PATH.to_string(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let file = Self::from_yaml_str(&text)?;
        file.check_files()?;
        Ok(file)
    }

    /// Every semantic check (ranges, references, cross-field rules). Does not
    /// touch the file system (see [`TransportFile::check_files`]), so the
    /// operator can validate configurations for pods whose files it cannot see.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let mut c = Checker::default();
        self.check_top(&mut c);
        for (i, rc) in self.receive_connectors.iter().enumerate() {
            check_receive_connector(&mut c, i, rc);
        }
        check_receive_uniqueness(&mut c, &self.receive_connectors);
        for (i, sc) in self.send_connectors.iter().enumerate() {
            check_send_connector(&mut c, i, sc);
        }
        check_unique_names(&mut c, "sendConnectors", self.send_connectors.iter().map(|s| s.name.as_str()));
        if let Some(mb) = &self.mailbox_delivery {
            match HostPort::parse(&mb.host) {
                Ok(HostPort { port: Some(_), .. }) => {}
                Ok(_) => c.push("mailboxDelivery.host", format!("\"{}\" has no port: write host:port", mb.host)),
                Err(e) => c.push("mailboxDelivery.host", e),
            }
        }
        self.check_retry(&mut c);
        self.check_org(&mut c);
        self.check_admin_dns_logging(&mut c);
        self.check_shadow(&mut c);
        c.finish()
    }

    /// The files the configuration names can be opened for reading: TLS
    /// certificates and keys, SMTP AUTH users files, the admin token file.
    pub fn check_files(&self) -> Result<(), ConfigErrors> {
        let mut c = Checker::default();
        for (i, rc) in self.receive_connectors.iter().enumerate() {
            if let Some(tls) = &rc.tls {
                c.readable(&format!("receiveConnectors[{i}].tls.certificateFile"), &tls.certificate_file);
                c.readable(&format!("receiveConnectors[{i}].tls.keyFile"), &tls.key_file);
            }
            if let Some(auth) = &rc.settings.auth {
                c.readable(&format!("receiveConnectors[{i}].auth.usersFile"), &auth.users_file);
            }
        }
        if let Some(token) = self.admin.as_ref().and_then(|a| a.token_file.as_ref()) {
            c.token_file("admin.tokenFile", token);
        }
        if let Some(shadow) = &self.shadow {
            c.token_file("shadow.tokenFile", &shadow.token_file);
        }
        if let Some(anchors) = &self.transport_config.dnssec_trust_anchor_file {
            c.readable("transportConfig.dnssecTrustAnchorFile", anchors);
        }
        for (i, sc) in self.send_connectors.iter().enumerate() {
            if let Some(cas) = &sc.tls_certificate_authorities {
                c.readable(&format!("sendConnectors[{i}].tlsCertificateAuthorities"), cas);
            }
        }
        c.finish()
    }

    fn check_top(&self, c: &mut Checker) {
        if let Err(e) = check_server_name(&self.server_name) {
            c.push("serverName", e);
        }
        if !is_host_name(&self.fqdn) {
            c.push("fqdn", format!("\"{}\" is not a valid host name (e.g. mail.example.com)", self.fqdn));
        }
        c.non_empty_path("queueDirectory", &self.queue_directory);
        if let Some(p) = &self.log_directory {
            c.non_empty_path("logDirectory", p);
        }
        if let Some(p) = &self.replay_directory {
            c.non_empty_path("replayDirectory", p);
        }
    }

    fn check_retry(&self, c: &mut Checker) {
        use settings::*;
        let (r, e) = (&self.retry, &self.expiration);
        for (s, v) in [
            (&QUEUE_GLITCH_RETRY_COUNT, r.queue_glitch_retry_count),
            (&TRANSIENT_FAILURE_RETRY_COUNT, r.transient_failure_retry_count),
            (&POISON_THRESHOLD, r.poison_threshold),
        ] {
            c.setting(s, &[], v);
        }
        for (s, v) in [
            (&QUEUE_GLITCH_RETRY_INTERVAL, r.queue_glitch_retry_interval),
            (&TRANSIENT_FAILURE_RETRY_INTERVAL, r.transient_failure_retry_interval),
            (&OUTBOUND_CONNECTION_FAILURE_RETRY_INTERVAL, r.outbound_connection_failure_retry_interval),
            (&MESSAGE_RETRY_INTERVAL, r.message_retry_interval),
            (&MAILBOX_DELIVERY_QUEUE_RETRY_INTERVAL, r.mailbox_delivery_queue_retry_interval),
            (&MAX_IDLE_TIME_BEFORE_RESUBMIT, r.max_idle_time_before_resubmit),
            (&QUEUE_MAX_IDLE_TIME, r.queue_max_idle_time),
            (&DELAY_NOTIFICATION_TIME_OUT, e.delay_notification_time_out),
            (&MESSAGE_EXPIRATION_TIME_OUT, e.message_expiration_time_out),
        ] {
            c.setting(s, &[], v);
        }

        // Cross rules on the values in force (given or role default), skipped
        // for a value already reported out of range: one error per mistake.
        if !e.delay_notification_time_out.is_none_or(|v| DELAY_NOTIFICATION_TIME_OUT.contains(v))
            || !e.message_expiration_time_out.is_none_or(|v| MESSAGE_EXPIRATION_TIME_OUT.contains(v))
        {
            return;
        }
        let retry = self.retry_policy();
        let exp = self.expiration_policy();
        let delay = show(exp.delay_notification_time_out, e.delay_notification_time_out.is_none());
        let count = retry.transient_failure_retry_count;
        let interval = retry.transient_failure_retry_interval;
        let product = interval.checked_mul(count);
        if product.is_none_or(|p| exp.delay_notification_time_out <= p) {
            let product = product.map_or("too large".to_string(), |p| TimeSpan(p).to_string());
            c.push(
                "expiration.delayNotificationTimeOut",
                format!(
                    "{delay} must be more than transientFailureRetryCount × transientFailureRetryInterval \
                     ({count} × {} = {product})",
                    TimeSpan(interval)
                ),
            );
        }
        if exp.delay_notification_time_out >= exp.message_expiration_time_out {
            let expiry = show(exp.message_expiration_time_out, e.message_expiration_time_out.is_none());
            // Report it on the value that was written (when only the expiry was shortened, that is the culprit).
            if e.delay_notification_time_out.is_none() && e.message_expiration_time_out.is_some() {
                c.push(
                    "expiration.messageExpirationTimeOut",
                    format!("{expiry} must be more than delayNotificationTimeOut ({delay})"),
                );
            } else {
                c.push(
                    "expiration.delayNotificationTimeOut",
                    format!("{delay} must be less than messageExpirationTimeOut ({expiry})"),
                );
            }
        }
    }

    fn check_org(&self, c: &mut Checker) {
        let org = &self.transport_config;
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, d) in org.accepted_domains.iter().enumerate() {
            let path = format!("transportConfig.acceptedDomains[{i}].domain");
            if let Err(e) = DomainPattern::parse(&d.domain, false) {
                c.push(&path, e);
            } else if let Some(first) = seen.get(&d.domain.to_ascii_lowercase()) {
                c.push(
                    &path,
                    format!("\"{}\" is already listed at transportConfig.acceptedDomains[{first}]", d.domain),
                );
            } else {
                seen.insert(d.domain.to_ascii_lowercase(), i);
            }
        }
        if let Some(p) = &org.postmaster {
            if let Err(e) = crate::address::Address::parse_configured(p) {
                c.push("transportConfig.postmaster", e.to_string());
            }
        }
        c.setting(&settings::MAX_RECIPIENT_ENVELOPE_LIMIT, &[], org.max_recipient_envelope_limit);
        c.setting(&settings::SHADOW_HEARTBEAT_FREQUENCY, &[], org.shadow_heartbeat_frequency);
        c.setting(&settings::SHADOW_RESUBMIT_TIME_SPAN, &[], org.shadow_resubmit_time_span);
        c.setting(&settings::SHADOW_MESSAGE_AUTO_DISCARD_INTERVAL, &[], org.shadow_message_auto_discard_interval);
        c.setting(&settings::SAFETY_NET_HOLD_TIME, &[], org.safety_net_hold_time);
        if let Some(name) = &org.tls_report_organization_name {
            // It goes into a JSON report and the Subject and TLS-Report-Submitter headers.
            if name.trim().is_empty() || name.len() > 200 || !name.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                c.push("transportConfig.tlsReportOrganizationName", "must be 1 to 200 printable ASCII characters");
            }
        }
    }

    fn check_shadow(&self, c: &mut Checker) {
        let Some(shadow) = &self.shadow else { return };
        c.non_empty_path("shadow.tokenFile", &shadow.token_file);
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, peer) in shadow.peers.iter().enumerate() {
            let at = format!("shadow.peers[{i}]");
            if let Err(e) = check_server_name(&peer.name) {
                c.push(format!("{at}.name"), e);
            } else if peer.name == self.server_name {
                c.push(format!("{at}.name"), format!("\"{}\" is this server itself", peer.name));
            } else if let Some(first) = seen.insert(&peer.name, i) {
                c.push(format!("{at}.name"), format!("\"{}\" is already listed at shadow.peers[{first}]", peer.name));
            }
            match HostPort::parse(&peer.address) {
                Ok(HostPort { port: Some(_), .. }) => {}
                Ok(_) => c.push(format!("{at}.address"), format!("\"{}\" needs a port", peer.address)),
                Err(e) => c.push(format!("{at}.address"), e),
            }
        }
    }

    fn check_admin_dns_logging(&self, c: &mut Checker) {
        if let Some(admin) = &self.admin {
            match &admin.token_file {
                Some(p) => c.non_empty_path("admin.tokenFile", p),
                None if !admin.bind.ip().is_loopback() => c.push(
                    "admin.tokenFile",
                    format!("required when admin.bind ({}) is not a loopback address", admin.bind),
                ),
                None => {}
            }
        }
        c.setting(&settings::MAX_OUTBOUND_CONNECTIONS, &[], self.max_outbound_connections);
        if let Some(dns) = &self.dns {
            for (i, ns) in dns.nameservers.iter().enumerate() {
                if ns.port() == 0 {
                    c.push(format!("dns.nameservers[{i}]"), format!("{ns} has port 0: give the resolver's port"));
                }
            }
        }
        if let Some(log) = &self.logging {
            c.retention(
                (&settings::LOG_MAX_AGE, &settings::LOG_MAX_DIRECTORY_SIZE, &settings::LOG_MAX_FILE_SIZE),
                Retention {
                    max_age: log.max_age,
                    max_directory_size: log.max_directory_size,
                    max_file_size: log.max_file_size,
                },
            );
            c.retention(
                (
                    &settings::TRACKING_LOG_MAX_AGE,
                    &settings::TRACKING_LOG_MAX_DIRECTORY_SIZE,
                    &settings::TRACKING_LOG_MAX_FILE_SIZE,
                ),
                Retention {
                    max_age: log.message_tracking_log_max_age,
                    max_directory_size: log.message_tracking_log_max_directory_size,
                    max_file_size: log.message_tracking_log_max_file_size,
                },
            );
        }
    }
}

fn check_receive_connector(c: &mut Checker, i: usize, rc: &ReceiveConnector) {
    use settings::*;
    let at = format!("receiveConnectors[{i}]");
    if rc.name.trim().is_empty() {
        c.push(format!("{at}.name"), "must not be empty");
    }
    let s: &ReceiveSettings = &rc.settings;
    c.setting(&RECEIVE_MAX_MESSAGE_SIZE, &[i], s.max_message_size);
    c.setting(&RECEIVE_MAX_RECIPIENTS_PER_MESSAGE, &[i], s.max_recipients_per_message);
    c.setting(&RECEIVE_CONNECTION_INACTIVITY_TIMEOUT, &[i], s.connection_inactivity_timeout);
    c.setting(&RECEIVE_CONNECTION_TIMEOUT, &[i], s.connection_timeout);
    let inactivity = RECEIVE_CONNECTION_INACTIVITY_TIMEOUT.or_default(s.connection_inactivity_timeout).0;
    let session = RECEIVE_CONNECTION_TIMEOUT.or_default(s.connection_timeout).0;
    if inactivity >= session {
        let inactivity = show(inactivity, s.connection_inactivity_timeout.is_none());
        let session = show(session, s.connection_timeout.is_none());
        if s.connection_inactivity_timeout.is_some() {
            c.push(
                format!("{at}.connectionInactivityTimeout"),
                format!("{inactivity} must be shorter than connectionTimeout ({session})"),
            );
        } else {
            c.push(
                format!("{at}.connectionTimeout"),
                format!("{session} must be longer than connectionInactivityTimeout ({inactivity})"),
            );
        }
    }
    c.setting(&RECEIVE_MAX_INBOUND_CONNECTION, &[i], s.max_inbound_connection);
    c.setting(&RECEIVE_MAX_INBOUND_CONNECTION_PER_SOURCE, &[i], s.max_inbound_connection_per_source);
    c.setting(&RECEIVE_MAX_PROTOCOL_ERRORS, &[i], s.max_protocol_errors);
    c.setting(&RECEIVE_MAX_HOP_COUNT, &[i], s.max_hop_count);
    c.setting(&RECEIVE_MAX_HEADER_SIZE, &[i], s.max_header_size);
    if s.require_tls && rc.tls.is_none() {
        c.push(format!("{at}.requireTLS"), "needs tls (certificateFile and keyFile) on this connector");
    }
    if let Some(auth) = &s.auth {
        if rc.tls.is_none() {
            c.push(
                format!("{at}.auth"),
                "needs tls (certificateFile and keyFile) on this connector: AUTH is offered only after STARTTLS",
            );
        }
        c.non_empty_path(format!("{at}.auth.usersFile"), &auth.users_file);
    }
    if let Some(tls) = &rc.tls {
        c.non_empty_path(format!("{at}.tls.certificateFile"), &tls.certificate_file);
        c.non_empty_path(format!("{at}.tls.keyFile"), &tls.key_file);
    }
}

/// Names and listening addresses are unique. Port 0 (an ephemeral port, as tests
/// use) never conflicts; an unspecified address (0.0.0.0, ::) conflicts with
/// every address on the same port, as the kernel would refuse the second bind.
fn check_receive_uniqueness(c: &mut Checker, connectors: &[ReceiveConnector]) {
    check_unique_names(c, "receiveConnectors", connectors.iter().map(|r| r.name.as_str()));
    for (i, rc) in connectors.iter().enumerate() {
        let clash = connectors[..i].iter().position(|other| {
            let (a, b) = (rc.bind, other.bind);
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        });
        if let Some(j) = clash {
            c.push(
                format!("receiveConnectors[{i}].bind"),
                format!(
                    "{} conflicts with receiveConnectors[{j}] ({}, bound to {})",
                    rc.bind, connectors[j].name, connectors[j].bind
                ),
            );
        }
    }
}

fn check_unique_names<'a>(c: &mut Checker, list: &str, names: impl Iterator<Item = &'a str>) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, name) in names.enumerate() {
        if name.trim().is_empty() {
            continue;
        }
        if let Some(first) = seen.get(name) {
            c.push(format!("{list}[{i}].name"), format!("\"{name}\" is already used by {list}[{first}]"));
        } else {
            seen.insert(name, i);
        }
    }
}

fn check_send_connector(c: &mut Checker, index: usize, sc: &SendConnector) {
    let at = &format!("sendConnectors[{index}]");
    if sc.name.trim().is_empty() {
        c.push(format!("{at}.name"), "must not be empty");
    }
    if sc.address_spaces.is_empty() {
        c.push(format!("{at}.addressSpaces"), "must list at least one domain (* for every domain)");
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, space) in sc.address_spaces.iter().enumerate() {
        let path = format!("{at}.addressSpaces[{i}]");
        if let Err(e) = DomainPattern::parse(&space.domain, true) {
            c.push(format!("{path}.domain"), e);
        } else if let Some(first) = seen.get(&space.domain.to_ascii_lowercase()) {
            c.push(
                format!("{path}.domain"),
                format!("\"{}\" is already listed at {at}.addressSpaces[{first}]", space.domain),
            );
        } else {
            seen.insert(space.domain.to_ascii_lowercase(), i);
        }
        c.setting(&settings::ADDRESS_SPACE_COST, &[index, i], space.cost);
    }
    match (sc.smart_hosts.is_empty(), sc.dns_routing) {
        (true, false) => {
            c.push(format!("{at}.smartHosts"), "give smartHosts, or set dnsRouting: true to route by MX records")
        }
        (false, true) => c.push(format!("{at}.dnsRouting"), "cannot be used together with smartHosts: choose one"),
        _ => {}
    }
    for (i, host) in sc.smart_hosts.iter().enumerate() {
        if let Err(e) = HostPort::parse(host) {
            c.push(format!("{at}.smartHosts[{i}]"), e);
        }
    }
    if sc.port == Some(0) {
        c.push(format!("{at}.port"), "0 is out of range (1 to 65535)");
    }
    c.setting(&settings::SEND_CONNECTION_TIMEOUT, &[index], sc.connection_timeout);
    c.setting(&settings::SEND_CONNECTION_INACTIVITY_TIMEOUT, &[index], sc.connection_inactivity_timeout);
    c.setting(&settings::SEND_MAX_CONCURRENT_CONNECTIONS, &[index], sc.max_concurrent_connections);
    let checked =
        matches!(sc.tls_auth_level, Some(TlsAuthLevel::CertificateValidation | TlsAuthLevel::DomainValidation));
    if checked && sc.tls != OutboundTls::Required {
        c.push(
            format!("{at}.tlsAuthLevel"),
            "checks the next hop's certificate, so it needs TLS: set tls: Required (as Exchange's RequireTLS)",
        );
    }
    if let Some(domain) = &sc.tls_domain {
        if sc.tls_auth_level != Some(TlsAuthLevel::DomainValidation) {
            c.push(format!("{at}.tlsDomain"), "is only used with tlsAuthLevel: DomainValidation");
        } else if !is_host_name(domain) {
            c.push(format!("{at}.tlsDomain"), format!("\"{domain}\" is not a valid host name"));
        }
    }
    match sc.mta_sts {
        Some(_) if !sc.dns_routing => c.push(
            format!("{at}.mtaSts"),
            "is only used with dnsRouting: true (MTA-STS checks the MX hosts of recipient domains, not smart hosts)",
        ),
        Some(MtaStsMode::AsPublished | MtaStsMode::TestingOnly) if sc.tls == OutboundTls::None => c.push(
            format!("{at}.mtaSts"),
            "needs TLS, which tls: None never starts: set tls: Opportunistic or Required, or mtaSts: Disabled",
        ),
        _ => {}
    }
    match sc.dane {
        Some(_) if !sc.dns_routing => c.push(
            format!("{at}.dane"),
            "is only used with dnsRouting: true (DANE checks the TLSA records of MX hosts, not smart hosts)",
        ),
        Some(DaneMode::AsPublished) if sc.tls == OutboundTls::None => c.push(
            format!("{at}.dane"),
            "needs TLS, which tls: None never starts: set tls: Opportunistic or Required, or dane: Disabled",
        ),
        _ => {}
    }
}

/// Collects errors; the range helpers skip absent (defaulted) values.
#[derive(Default)]
struct Checker {
    errors: Vec<ConfigError>,
}

/// A log's retention settings as given, and the (file, directory) sizes in effect.
struct Retention {
    max_age: Option<TimeSpan>,
    max_directory_size: Option<ByteSize>,
    max_file_size: Option<ByteSize>,
}

impl Checker {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }

    fn finish(self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(self.errors))
        }
    }

    /// A ranged setting at the occurrence `indices`; absent (defaulted) values are in range.
    fn setting<T: Bounded>(&mut self, s: &Setting<T>, indices: &[usize], v: Option<T>) {
        if let Some(why) = v.and_then(|v| s.refusal(v)) {
            self.push(s.at(indices), why);
        }
    }

    /// One log's retention settings: (max age, directory size, file size).
    fn retention(
        &mut self,
        (age, dir, file): (&Setting<TimeSpan>, &Setting<ByteSize>, &Setting<ByteSize>),
        r: Retention,
    ) {
        self.setting(age, &[], r.max_age);
        self.setting(dir, &[], r.max_directory_size);
        self.setting(file, &[], r.max_file_size);
        let (file_size, dir_size) = (file.or_default(r.max_file_size), dir.or_default(r.max_directory_size));
        if file_size > dir_size {
            self.push(
                if r.max_file_size.is_some() { file.path } else { dir.path },
                format!("{} ({file_size}) must not exceed {} ({dir_size})", file.field(), dir.field()),
            );
        }
    }

    fn non_empty_path(&mut self, path: impl Into<String>, p: &Path) {
        if p.as_os_str().is_empty() {
            self.push(path, "must not be empty");
        }
    }

    /// A bearer-token file: readable and not empty. An empty token would refuse
    /// every request (or, in a careless check, accept an empty one): say so
    /// before the server runs with it.
    fn token_file(&mut self, path: &str, p: &Path) {
        self.readable(path, p);
        if std::fs::read_to_string(p).is_ok_and(|t| t.trim().is_empty()) {
            self.push(path, format!("{} is empty: write the token into it", p.display()));
        }
    }

    fn readable(&mut self, path: &str, p: &Path) {
        let result = std::fs::metadata(p).and_then(|m| {
            if m.is_dir() {
                Err(std::io::Error::other("it is a directory"))
            } else {
                std::fs::File::open(p).map(drop)
            }
        });
        if let Err(e) = result {
            self.push(path, format!("cannot read {}: {e}", p.display()));
        }
    }
}

/// A value in force, marked when it is the default rather than written in the file.
fn show(d: Duration, is_default: bool) -> String {
    if is_default {
        format!("{} (the default)", TimeSpan(d))
    } else {
        TimeSpan(d).to_string()
    }
}

/// A DNS host name: dot-separated labels of letters, digits and inner hyphens,
/// each 1 to 63 characters, 253 in all.
pub fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A serverName: not empty; letters, digits, `-`, `_` and `.`.
pub fn check_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("must not be empty".into())
    } else if !name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')) {
        Err(format!("\"{name}\" may contain only letters, digits, '-', '_' and '.'"))
    } else {
        Ok(())
    }
}

/// Deserialize with field paths. serde_yaml already tracks where in the YAML an
/// error was raised, serde_path_to_error which field was being read; each knows
/// things the other does not (map keys that are enums; fields of a struct), so
/// the more precise of the two is kept.
fn parse(text: &str) -> Result<TransportFile, ConfigErrors> {
    if text.trim().is_empty() {
        return Err(one(FILE_PATH, "the file is empty: it needs at least serverName, fqdn and queueDirectory"));
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let err = match serde_path_to_error::deserialize::<_, TransportFile>(de) {
        Ok(file) => return Ok(file),
        Err(err) => err,
    };
    let tracked = err.path().to_string();
    let yaml_err = err.into_inner();
    let full = yaml_err.to_string();
    // serde_yaml writes "path: message at line L column C"; split that apart.
    let (yaml_path, message) = match full.split_once(": ") {
        Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) => (p.to_string(), m.to_string()),
        _ => (String::new(), full.clone()),
    };
    let mut path = [tracked, yaml_path]
        .into_iter()
        .filter(|p| !p.is_empty() && p != "." && !p.contains('?'))
        .max_by_key(|p| p.len())
        .unwrap_or_default();
    let mut message = message;

    // A receive connector's settings are flattened into it, and serde reads
    // flattened fields from a buffer that neither tracker sees into: read the
    // connector's settings again on their own to find the field.
    if let Some(index) = receive_connector_index(&path) {
        if let Some((inner_path, inner_message)) = reparse_receive_settings(text, index) {
            path = format!("{path}.{inner_path}");
            message = match yaml_err.location() {
                Some(l) => format!("{inner_message} (in the connector at line {} column {})", l.line(), l.column()),
                None => inner_message,
            };
        }
    }

    // "missing field `x`" is about the field, not its parent.
    if let Some(field) = message.strip_prefix("missing field `").and_then(|m| m.split('`').next()) {
        let field = field.to_string();
        path = if path.is_empty() { field } else { format!("{path}.{field}") };
        message = match yaml_err.location() {
            Some(l) => format!("is required (missing in the mapping at line {} column {})", l.line(), l.column()),
            None => "is required".to_string(),
        };
    }
    if path.is_empty() {
        path = FILE_PATH.to_string();
    }
    Err(one(path, message))
}

fn one(path: impl Into<String>, message: impl Into<String>) -> ConfigErrors {
    ConfigErrors(vec![ConfigError { path: path.into(), message: message.into() }])
}

/// `receiveConnectors[3]` → 3.
fn receive_connector_index(path: &str) -> Option<usize> {
    path.strip_prefix("receiveConnectors[")?.strip_suffix(']')?.parse().ok()
}

/// The path (relative to the connector) and message of the error in connector
/// `index`'s flattened settings, if that is where the error is.
fn reparse_receive_settings(text: &str, index: usize) -> Option<(String, String)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(text).ok()?;
    let mut connector = doc.get("receiveConnectors")?.get(index)?.as_mapping()?.clone();
    // The connector's own fields; the rest belongs to the settings.
    let own = connector_own_fields();
    for key in &own {
        connector.remove(key.as_str());
    }
    let err = serde_path_to_error::deserialize::<_, ReceiveSettings>(serde_yaml::Value::Mapping(connector)).err()?;
    let path = err.path().to_string();
    let message = err.into_inner().to_string();
    if let Some(unknown) = message.strip_prefix("unknown field `").and_then(|m| m.split('`').next()) {
        // Name every field a connector accepts, not only the settings' ones.
        let mut all = own;
        all.extend(settings_fields());
        all.sort();
        let list = all.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
        return Some((unknown.to_string(), format!("unknown field `{unknown}`, expected one of {list}")));
    }
    (path != ".").then_some((path, message))
}

/// Property names of a type's schema (serde names, flattened fields included).
fn schema_properties<T: schemars::JsonSchema>() -> Vec<String> {
    let schema = schemars::schema_for!(T);
    schema.get("properties").and_then(|p| p.as_object()).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

fn settings_fields() -> Vec<String> {
    schema_properties::<ReceiveSettings>()
}

fn connector_own_fields() -> Vec<String> {
    let settings = settings_fields();
    schema_properties::<ReceiveConnector>().into_iter().filter(|f| !settings.contains(f)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        AcceptedDomain, AcceptedDomainType, AddressSpace, AdminSettings, DnsSettings, LoggingSettings, MailboxDelivery,
        ReceiveAuth, Role, TlsFiles,
    };
    use std::path::PathBuf;

    const MINIMAL: &str = "
serverName: test-0
fqdn: mail.example.test
queueDirectory: /var/queue
receiveConnectors:
  - {name: Default, bind: '127.0.0.1:2525'}
sendConnectors:
  - {name: Outbound, addressSpaces: [{domain: '*'}], smartHosts: ['127.0.0.1:2526']}
";

    fn base() -> TransportFile {
        TransportFile::from_yaml_str(MINIMAL).expect("the minimal file is valid")
    }

    /// The (path, message) pairs of every error.
    fn errors(f: &TransportFile) -> Vec<(String, String)> {
        match f.validate() {
            Ok(()) => vec![],
            Err(ConfigErrors(v)) => v.into_iter().map(|e| (e.path, e.message)).collect(),
        }
    }

    /// Exactly one error, at `path`, whose message contains every fragment.
    #[track_caller]
    fn assert_one(f: &TransportFile, path: &str, fragments: &[&str]) {
        let errs = errors(f);
        assert_eq!(errs.len(), 1, "expected one error at {path}, got {errs:?}");
        assert_eq!(errs[0].0, path, "{errs:?}");
        for frag in fragments {
            assert!(errs[0].1.contains(frag), "{:?} lacks {frag:?}", errs[0].1);
        }
    }

    #[track_caller]
    fn assert_valid(f: &TransportFile) {
        assert_eq!(errors(f), vec![], "expected no error");
    }

    fn parse_err(text: &str) -> Vec<(String, String)> {
        match TransportFile::from_yaml_str(text) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(ConfigErrors(v)) => v.into_iter().map(|e| (e.path, e.message)).collect(),
        }
    }

    /// One change to a part of a valid file, in a table of cases.
    type Edit<T> = Box<dyn Fn(&mut T)>;

    fn ts(s: &str) -> Option<TimeSpan> {
        Some(s.parse().unwrap())
    }

    fn size(s: &str) -> Option<ByteSize> {
        Some(s.parse().unwrap())
    }

    // ---- the shipped example and the example of docs/design.md §8 ----

    #[test]
    fn example_local_yaml_loads_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/local.yaml");
        let f = TransportFile::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.server_name, "local-0");
        assert_eq!(f.fqdn, "mail.local.test");
        assert_eq!(f.queue_directory, PathBuf::from("./var/queue"));
        assert_eq!(f.log_directory, Some(PathBuf::from("./var/log")));
        let rc = &f.receive_connectors[0];
        assert_eq!((rc.name.as_str(), rc.bind.to_string().as_str()), ("Default", "127.0.0.1:2525"));
        assert!(rc.settings.allow_relay);
        assert_eq!(rc.settings.remote_ip_ranges, vec!["127.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
        assert_eq!(rc.settings.max_message_size, Some(ByteSize::mb(36)));
        assert_eq!(rc.settings.max_recipients_per_message, Some(200));
        let sc = &f.send_connectors[0];
        assert_eq!((sc.name.as_str(), sc.address_spaces[0].domain.as_str()), ("Outbound", "*"));
        assert_eq!(sc.smart_hosts, ["127.0.0.1:2526"]);
        assert_eq!(f.mailbox_delivery.as_ref().unwrap().host, "127.0.0.1:2424");
        assert_eq!(f.postmaster().unwrap().as_str(), "postmaster@local.test");
        assert_eq!(f.transport_config.accepted_domains[0].domain_type, AcceptedDomainType::Authoritative);
        let admin = f.admin.as_ref().unwrap();
        assert_eq!((admin.bind.to_string().as_str(), admin.token_file.is_none()), ("127.0.0.1:8025", true));
        assert_eq!(f.retry_policy(), crate::config::RetryPolicy::defaults(Role::Mailbox));
    }

    #[test]
    fn design_section_8_example_parses_and_validates() {
        let text = r#"
serverName: local-0            # queue identities, Reporting-MTA, logs
role: Mailbox                  # Mailbox | Edge: selects §4 defaults
fqdn: mail.local.test          # EHLO name
queueDirectory: ./var/queue
logDirectory: ./var/log        # connectivity and protocol logs (CSV)
replayDirectory: ./var/replay  # optional
serverState: Started           # Started | Paused | Stopped
receiveConnectors:
  - name: Default
    bind: 127.0.0.1:2525
    remoteIPRanges: ["127.0.0.0/8"]
    allowRelay: true           # may relay to non-accepted domains
    maxMessageSize: 36MB
    maxRecipientsPerMessage: 200
sendConnectors:
  - name: Outbound
    addressSpaces: [{domain: "*", cost: 1}]
    smartHosts: ["127.0.0.1:2526"]   # or dnsRouting: true
mailboxDelivery: {host: "127.0.0.1:2424"}   # next hop for accepted domains
retry: {queueGlitchRetryCount: 4, queueGlitchRetryInterval: "00:01:00"}  # any §4 row
expiration: {delayNotificationTimeOut: "04:00:00", messageExpirationTimeOut: "2.00:00:00"}
transportConfig:
  acceptedDomains: [{domain: local.test, type: Authoritative}]
  internalDelayDSNEnabled: true
  externalDelayDSNEnabled: false
  postmaster: postmaster@local.test
dns: {nameservers: ["127.0.0.1:5353"]}   # optional, else the system resolver
admin: {bind: "127.0.0.1:8025", tokenFile: /etc/transport/token}
components: {HubTransport: {Maintenance: Active}}
"#;
        let f = TransportFile::from_yaml_str(text).unwrap_or_else(|e| panic!("{e}"));
        assert!(f.transport_config.internal_delay_dsn() && !f.transport_config.external_delay_dsn());
        assert_eq!(f.replay_directory, Some(PathBuf::from("./var/replay")));
        // Written back and read again, it is the same configuration.
        let again = TransportFile::from_yaml_str(&serde_yaml::to_string(&f).unwrap()).unwrap();
        assert_eq!(again, f);
    }

    // ---- parse errors carry their path ----

    #[test]
    fn unknown_fields_report_their_path() {
        let e = parse_err("{serverName: s, fqdn: f, queueDirectory: q, retry: {queueGlitchRetryCont: 3}}");
        assert_eq!(e[0].0, "retry.queueGlitchRetryCont");
        assert!(e[0].1.contains("unknown field `queueGlitchRetryCont`") && e[0].1.contains("queueGlitchRetryCount"));

        let e = parse_err("{serverName: s, fqdn: f, queueDirectory: q, bogus: 1}");
        assert_eq!(e[0].0, "bogus");
        assert!(e[0].1.contains("unknown field `bogus`"), "{e:?}");

        // Inside a receive connector, whose settings are flattened into it.
        let e = parse_err(
            "{serverName: s, fqdn: f, queueDirectory: q, receiveConnectors: [{name: a, bind: '127.0.0.1:1'}, \
             {name: b, bind: '127.0.0.1:2', maxMesageSize: 1MB}]}",
        );
        assert_eq!(e[0].0, "receiveConnectors[1].maxMesageSize");
        assert!(e[0].1.contains("unknown field `maxMesageSize`"), "{e:?}");
        assert!(e[0].1.contains("`bind`") && e[0].1.contains("`maxMessageSize`"), "{e:?}");
    }

    #[test]
    fn type_errors_report_their_path() {
        let e = parse_err(
            "{serverName: s, fqdn: f, queueDirectory: q, receiveConnectors: [{name: a, bind: '127.0.0.1:1', \
             maxMessageSize: 36XB}]}",
        );
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, "receiveConnectors[0].maxMessageSize");
        assert!(e[0].1.contains("\"36XB\" is not a size"), "{e:?}");
        assert!(e[0].1.ends_with("(in the connector at line 1 column 65)"), "{e:?}");

        let e = parse_err(
            "{serverName: s, fqdn: f, queueDirectory: q, receiveConnectors: [{name: a, bind: '127.0.0.1:1', \
             auth: {usersFile: [x]}}]}",
        );
        assert_eq!(e[0].0, "receiveConnectors[0].auth.usersFile");

        let e = parse_err("{serverName: s, fqdn: f, queueDirectory: q, receiveConnectors: [{name: a, bind: 'nope'}]}");
        assert_eq!(e[0].0, "receiveConnectors[0].bind");

        let e = parse_err("{serverName: s, fqdn: f, queueDirectory: q, retry: {queueMaxIdleTime: 5x}}");
        assert_eq!(e[0].0, "retry.queueMaxIdleTime");
        assert!(e[0].1.contains("\"5x\" is not a time span"), "{e:?}");

        let e = parse_err("{serverName: s, fqdn: f, queueDirectory: q, retry: {poisonThreshold: -1}}");
        assert_eq!(e[0].0, "retry.poisonThreshold");

        let e = parse_err(
            "{serverName: s, fqdn: f, queueDirectory: q, sendConnectors: [{name: a, addressSpaces: [{domain: x, \
             cost: cheap}]}]}",
        );
        assert_eq!(e[0].0, "sendConnectors[0].addressSpaces[0].cost");

        let e =
            parse_err("{serverName: s, fqdn: f, queueDirectory: q, components: {HubTransport: {Maintenance: Off}}}");
        assert_eq!(e[0].0, "components.HubTransport.Maintenance");
        assert!(e[0].1.contains("unknown variant `Off`"), "{e:?}");

        let e = parse_err("{serverName: s, fqdn: f, queueDirectory: q, role: Hub}");
        assert_eq!(e[0].0, "role");
    }

    #[test]
    fn missing_fields_syntax_errors_and_empty_files() {
        let e = parse_err("serverName: s\nfqdn: f\n");
        assert_eq!(e[0].0, "queueDirectory");
        assert!(e[0].1.starts_with("is required"), "{e:?}");

        let e = parse_err("{serverName: s, fqdn: f, queueDirectory: q, receiveConnectors: [{name: a}]}");
        assert_eq!(e[0].0, "receiveConnectors[0].bind");
        assert!(e[0].1.starts_with("is required"), "{e:?}");

        let e = parse_err("serverName: [\n");
        assert_eq!(e[0].0, "serverName");
        assert!(e[0].1.contains("line"), "{e:?}");

        let e = parse_err("  \n");
        assert_eq!(e, [(FILE_PATH.to_string(), e[0].1.clone())]);
        assert!(e[0].1.contains("empty"));

        let e = parse_err("[1, 2]");
        assert_eq!(e[0].0, FILE_PATH);
    }

    // ---- top level ----

    #[test]
    fn server_name_fqdn_and_directories() {
        let mut f = base();
        f.server_name = String::new();
        assert_one(&f, "serverName", &["must not be empty"]);
        f.server_name = "local 0".into();
        assert_one(&f, "serverName", &["\"local 0\"", "letters, digits, '-', '_' and '.'"]);
        f.server_name = "Ex_01.a-b".into();
        assert_valid(&f);

        for bad in ["", "mail..test", "-mail.test", "mail_x.test", "mail.test.", &"a".repeat(64)] {
            let mut f = base();
            f.fqdn = bad.to_string();
            assert_one(&f, "fqdn", &["is not a valid host name"]);
        }

        let mut f = base();
        f.queue_directory = PathBuf::new();
        f.log_directory = Some(PathBuf::new());
        f.replay_directory = Some(PathBuf::new());
        let paths: Vec<_> = errors(&f).into_iter().map(|e| e.0).collect();
        assert_eq!(paths, ["queueDirectory", "logDirectory", "replayDirectory"]);
    }

    // ---- receive connectors ----

    fn rc(f: &mut TransportFile) -> &mut ReceiveConnector {
        &mut f.receive_connectors[0]
    }

    #[test]
    fn receive_connector_names_and_binds() {
        let mut f = base();
        rc(&mut f).name = " ".into();
        assert_one(&f, "receiveConnectors[0].name", &["must not be empty"]);

        let mut f = base();
        let mut second = f.receive_connectors[0].clone();
        second.bind = "127.0.0.1:2600".parse().unwrap();
        f.receive_connectors.push(second);
        assert_one(&f, "receiveConnectors[1].name", &["\"Default\" is already used by receiveConnectors[0]"]);

        let mut f = base();
        let mut second = f.receive_connectors[0].clone();
        second.name = "Other".into();
        f.receive_connectors.push(second.clone());
        assert_one(&f, "receiveConnectors[1].bind", &["127.0.0.1:2525 conflicts with receiveConnectors[0] (Default"]);

        // 0.0.0.0 takes the port on every address.
        f.receive_connectors[1].bind = "0.0.0.0:2525".parse().unwrap();
        assert_one(&f, "receiveConnectors[1].bind", &["0.0.0.0:2525 conflicts"]);
        // Another address or port is fine, and so are ephemeral ports.
        f.receive_connectors[1].bind = "127.0.0.2:2525".parse().unwrap();
        assert_valid(&f);
        f.receive_connectors[0].bind = "127.0.0.1:0".parse().unwrap();
        f.receive_connectors[1].bind = "127.0.0.1:0".parse().unwrap();
        assert_valid(&f);
    }

    #[test]
    fn receive_connector_limits() {
        let at = "receiveConnectors[0]";
        let cases: Vec<(&str, Edit<ReceiveSettings>, &str)> = vec![
            ("maxMessageSize", Box::new(|s| s.max_message_size = size("63KB")), "63KB is out of range (64KB to 2GB)"),
            (
                "maxMessageSize",
                Box::new(|s| s.max_message_size = size("2049MB")),
                "2049MB is out of range (64KB to 2GB)",
            ),
            (
                "maxMessageSize",
                Box::new(|s| s.max_message_size = size("unlimited")),
                "unlimited is out of range (64KB to 2GB)",
            ),
            (
                "maxRecipientsPerMessage",
                Box::new(|s| s.max_recipients_per_message = Some(0)),
                "0 is out of range (1 to 512000)",
            ),
            (
                "maxRecipientsPerMessage",
                Box::new(|s| s.max_recipients_per_message = Some(512_001)),
                "512001 is out of range (1 to 512000)",
            ),
            (
                "connectionInactivityTimeout",
                Box::new(|s| s.connection_inactivity_timeout = ts("0s")),
                "00:00:00 is out of range (00:00:01 to 1.00:00:00)",
            ),
            (
                "connectionTimeout",
                Box::new(|s| {
                    s.connection_timeout = ts("1.00:00:01");
                    s.connection_inactivity_timeout = ts("1h");
                }),
                "1.00:00:01 is out of range (00:00:01 to 1.00:00:00)",
            ),
            (
                "connectionInactivityTimeout",
                Box::new(|s| s.connection_inactivity_timeout = ts("10m")),
                "00:10:00 must be shorter than connectionTimeout (00:10:00 (the default))",
            ),
            (
                "connectionTimeout",
                Box::new(|s| s.connection_timeout = ts("2m")),
                "00:02:00 must be longer than connectionInactivityTimeout (00:05:00 (the default))",
            ),
            (
                "maxInboundConnection",
                Box::new(|s| s.max_inbound_connection = Some(0)),
                "0 is out of range (at least 1)",
            ),
            (
                "maxInboundConnectionPerSource",
                Box::new(|s| s.max_inbound_connection_per_source = Some(10_001)),
                "10001 is out of range (1 to 10000)",
            ),
            (
                "maxInboundConnectionPerSource",
                Box::new(|s| s.max_inbound_connection_per_source = Some(0)),
                "0 is out of range (1 to 10000)",
            ),
            ("maxHopCount", Box::new(|s| s.max_hop_count = Some(0)), "0 is out of range (1 to 500)"),
            ("maxHopCount", Box::new(|s| s.max_hop_count = Some(501)), "501 is out of range (1 to 500)"),
            ("maxHeaderSize", Box::new(|s| s.max_header_size = size("1023")), "1023B is out of range (at least 1KB)"),
            (
                "requireTLS",
                Box::new(|s| s.require_tls = true),
                "needs tls (certificateFile and keyFile) on this connector",
            ),
            (
                "auth",
                Box::new(|s| s.auth = Some(ReceiveAuth { users_file: "/users".into() })),
                "needs tls (certificateFile and keyFile) on this connector: AUTH is offered only after STARTTLS",
            ),
        ];
        for (field, set, message) in cases {
            let mut f = base();
            set(&mut rc(&mut f).settings);
            let errs = errors(&f);
            assert_eq!(errs, [(format!("{at}.{field}"), message.to_string())], "{field}");
        }

        // The bounds themselves are allowed.
        let mut f = base();
        let s = &mut rc(&mut f).settings;
        s.max_message_size = size("64KB");
        s.max_recipients_per_message = Some(512_000);
        s.connection_inactivity_timeout = ts("00:00:01");
        s.connection_timeout = ts("1.00:00:00");
        s.max_inbound_connection_per_source = Some(10_000);
        s.max_hop_count = Some(500);
        s.max_header_size = size("1KB");
        assert_valid(&f);
        rc(&mut f).settings.max_message_size = size("2GB");
        assert_valid(&f);
    }

    #[test]
    fn receive_connector_tls_and_auth_files() {
        let mut f = base();
        let c = rc(&mut f);
        c.settings.require_tls = true;
        c.settings.auth = Some(ReceiveAuth { users_file: "/users".into() });
        c.tls = Some(TlsFiles { certificate_file: "/cert.pem".into(), key_file: "/key.pem".into() });
        assert_valid(&f);
        rc(&mut f).tls = Some(TlsFiles { certificate_file: PathBuf::new(), key_file: "/key.pem".into() });
        rc(&mut f).settings.auth = Some(ReceiveAuth { users_file: PathBuf::new() });
        let paths: Vec<_> = errors(&f).into_iter().map(|e| e.0).collect();
        assert_eq!(paths, ["receiveConnectors[0].auth.usersFile", "receiveConnectors[0].tls.certificateFile"]);
    }

    // ---- send connectors ----

    fn sc(f: &mut TransportFile) -> &mut SendConnector {
        &mut f.send_connectors[0]
    }

    #[test]
    fn send_connector_rules() {
        let at = "sendConnectors[0]";
        let cases: Vec<(String, Edit<SendConnector>, &str)> = vec![
            (format!("{at}.name"), Box::new(|s| s.name = String::new()), "must not be empty"),
            (format!("{at}.addressSpaces"), Box::new(|s| s.address_spaces.clear()), "must list at least one domain"),
            (
                format!("{at}.addressSpaces[0].domain"),
                Box::new(|s| s.address_spaces[0].domain = "exa mple.com".into()),
                "\"exa mple.com\" is not a domain pattern: write *, example.com or *.example.com",
            ),
            (
                format!("{at}.addressSpaces[0].domain"),
                Box::new(|s| s.address_spaces[0].domain = "*example.com".into()),
                "is not a domain pattern",
            ),
            (
                format!("{at}.addressSpaces[0].domain"),
                Box::new(|s| s.address_spaces[0].domain = "a.*.com".into()),
                "is not a domain pattern",
            ),
            (
                format!("{at}.addressSpaces[1].domain"),
                Box::new(|s| {
                    s.address_spaces = vec![
                        AddressSpace { domain: "Example.com".into(), cost: None },
                        AddressSpace { domain: "example.COM".into(), cost: None },
                    ]
                }),
                "is already listed at sendConnectors[0].addressSpaces[0]",
            ),
            (
                format!("{at}.addressSpaces[0].cost"),
                Box::new(|s| s.address_spaces[0].cost = Some(0)),
                "0 is out of range (1 to 100)",
            ),
            (
                format!("{at}.addressSpaces[0].cost"),
                Box::new(|s| s.address_spaces[0].cost = Some(101)),
                "101 is out of range (1 to 100)",
            ),
            (
                format!("{at}.smartHosts"),
                Box::new(|s| s.smart_hosts.clear()),
                "give smartHosts, or set dnsRouting: true",
            ),
            (format!("{at}.dnsRouting"), Box::new(|s| s.dns_routing = true), "cannot be used together with smartHosts"),
            (
                format!("{at}.smartHosts[0]"),
                Box::new(|s| s.smart_hosts = vec!["relay.test:0".into()]),
                "invalid port \"0\"",
            ),
            (
                format!("{at}.smartHosts[0]"),
                Box::new(|s| s.smart_hosts = vec!["relay.test:99999".into()]),
                "invalid port",
            ),
            (format!("{at}.smartHosts[0]"), Box::new(|s| s.smart_hosts = vec!["bad host".into()]), "is not a host"),
            (format!("{at}.smartHosts[0]"), Box::new(|s| s.smart_hosts = vec!["::1".into()]), "write it in brackets"),
            (
                format!("{at}.smartHosts[0]"),
                Box::new(|s| s.smart_hosts = vec!["[nope]:25".into()]),
                "is not an IP address",
            ),
            (format!("{at}.port"), Box::new(|s| s.port = Some(0)), "0 is out of range (1 to 65535)"),
            (
                format!("{at}.connectionTimeout"),
                Box::new(|s| s.connection_timeout = ts("2d")),
                "2.00:00:00 is out of range (00:00:01 to 1.00:00:00)",
            ),
            (
                format!("{at}.connectionInactivityTimeout"),
                Box::new(|s| s.connection_inactivity_timeout = ts("00:00:00")),
                "00:00:00 is out of range (00:00:01 to 1.00:00:00)",
            ),
            (
                format!("{at}.tlsAuthLevel"),
                Box::new(|s| s.tls_auth_level = Some(TlsAuthLevel::DomainValidation)),
                "needs TLS: set tls: Required",
            ),
            (
                format!("{at}.tlsDomain"),
                Box::new(|s| s.tls_domain = Some("mx.example.net".into())),
                "is only used with tlsAuthLevel: DomainValidation",
            ),
            (
                format!("{at}.tlsDomain"),
                Box::new(|s| {
                    s.tls = OutboundTls::Required;
                    s.tls_auth_level = Some(TlsAuthLevel::DomainValidation);
                    s.tls_domain = Some("mx example".into());
                }),
                "\"mx example\" is not a valid host name",
            ),
            (
                format!("{at}.maxConcurrentConnections"),
                Box::new(|s| s.max_concurrent_connections = Some(0)),
                "0 is out of range (at least 1)",
            ),
            (
                format!("{at}.mtaSts"),
                Box::new(|s| s.mta_sts = Some(MtaStsMode::AsPublished)),
                "is only used with dnsRouting: true",
            ),
            (
                format!("{at}.mtaSts"),
                Box::new(|s| s.mta_sts = Some(MtaStsMode::Disabled)),
                "is only used with dnsRouting: true",
            ),
            (
                format!("{at}.mtaSts"),
                Box::new(|s| {
                    s.smart_hosts.clear();
                    s.dns_routing = true;
                    s.tls = OutboundTls::None;
                    s.mta_sts = Some(MtaStsMode::TestingOnly);
                }),
                "needs TLS, which tls: None never starts",
            ),
            (
                format!("{at}.dane"),
                Box::new(|s| s.dane = Some(DaneMode::AsPublished)),
                "is only used with dnsRouting: true (DANE checks the TLSA records of MX hosts, not smart hosts)",
            ),
            (
                format!("{at}.dane"),
                Box::new(|s| s.dane = Some(DaneMode::Disabled)),
                "is only used with dnsRouting: true",
            ),
            (
                format!("{at}.dane"),
                Box::new(|s| {
                    s.smart_hosts.clear();
                    s.dns_routing = true;
                    s.tls = OutboundTls::None;
                    s.dane = Some(DaneMode::AsPublished);
                }),
                "needs TLS, which tls: None never starts: set tls: Opportunistic or Required, or dane: Disabled",
            ),
        ];
        for (path, set, message) in cases {
            let mut f = base();
            set(sc(&mut f));
            assert_one(&f, &path, &[message]);
        }

        let mut f = base();
        f.send_connectors.push(f.send_connectors[0].clone());
        assert_one(&f, "sendConnectors[1].name", &["\"Outbound\" is already used by sendConnectors[0]"]);

        // Every accepted smart host form, MX routing, and wildcard forms.
        let mut f = base();
        sc(&mut f).smart_hosts =
            ["relay.example.com", "relay.example.com:587", "[192.0.2.1]", "[2001:db8::1]:25", "192.0.2.1:2525"]
                .map(String::from)
                .to_vec();
        sc(&mut f).address_spaces = vec![
            AddressSpace { domain: "*".into(), cost: Some(1) },
            AddressSpace { domain: "*.example.com".into(), cost: Some(100) },
            AddressSpace { domain: "example.org".into(), cost: None },
        ];
        assert_valid(&f);
        sc(&mut f).smart_hosts.clear();
        sc(&mut f).dns_routing = true;
        assert_valid(&f);
        assert_eq!(sc(&mut f).mta_sts_or_default(), MtaStsMode::AsPublished);
        for mode in [MtaStsMode::AsPublished, MtaStsMode::TestingOnly, MtaStsMode::Disabled] {
            sc(&mut f).mta_sts = Some(mode);
            assert_valid(&f);
            assert_eq!(sc(&mut f).mta_sts_or_default(), mode);
        }
        // tls: None turns the default off; Disabled may still be written.
        sc(&mut f).tls = OutboundTls::None;
        assert_valid(&f);
        sc(&mut f).mta_sts = None;
        assert_eq!(sc(&mut f).mta_sts_or_default(), MtaStsMode::Disabled);
        assert_eq!(sc(&mut f).dane_or_default(), DaneMode::Disabled, "tls: None turns DANE's default off");
        sc(&mut f).dane = Some(DaneMode::Disabled);
        assert_valid(&f);
        sc(&mut f).tls = OutboundTls::Opportunistic;
        sc(&mut f).dane = None;
        assert_eq!(sc(&mut f).dane_or_default(), DaneMode::AsPublished, "DNS routing with TLS: DANE on");
        sc(&mut f).dns_routing = false;
        sc(&mut f).smart_hosts = vec!["relay.example.com".into()];
        assert_eq!(sc(&mut f).dane_or_default(), DaneMode::Disabled, "smart hosts: no DANE");
    }

    #[test]
    fn dane_parses_by_name_and_refuses_other_values() {
        let yaml = |mode: &str| {
            format!(
                "{{serverName: s, fqdn: f.test, queueDirectory: q, sendConnectors: [{{name: a, addressSpaces: \
                 [{{domain: \"*\"}}], dnsRouting: true, dane: {mode}}}]}}"
            )
        };
        let f = TransportFile::from_yaml_str(&yaml("Disabled")).expect("valid");
        assert_eq!(f.send_connectors[0].dane, Some(DaneMode::Disabled));
        let e = TransportFile::from_yaml_str(&yaml("Enforce")).expect_err("not a mode");
        assert!(e.0[0].path.contains("dane"), "{e}");
    }

    #[test]
    fn mta_sts_parses_by_name_and_refuses_other_values() {
        let yaml = |mode: &str| {
            format!(
                "{{serverName: s, fqdn: f.test, queueDirectory: q, sendConnectors: [{{name: a, addressSpaces: \
                 [{{domain: \"*\"}}], dnsRouting: true, mtaSts: {mode}}}]}}"
            )
        };
        let f = TransportFile::from_yaml_str(&yaml("TestingOnly")).expect("valid");
        assert_eq!(f.send_connectors[0].mta_sts, Some(MtaStsMode::TestingOnly));
        let e = TransportFile::from_yaml_str(&yaml("Enforce")).expect_err("not a mode");
        assert!(e.0[0].path.contains("mtaSts"), "{e}");
    }

    #[test]
    fn mailbox_delivery_needs_host_and_port() {
        let mut f = base();
        f.mailbox_delivery = Some(MailboxDelivery { host: "mailbox.test:2424".into() });
        assert_valid(&f);
        f.mailbox_delivery = Some(MailboxDelivery { host: "mailbox.test".into() });
        assert_one(&f, "mailboxDelivery.host", &["\"mailbox.test\" has no port: write host:port"]);
        f.mailbox_delivery = Some(MailboxDelivery { host: "mail box:25".into() });
        assert_one(&f, "mailboxDelivery.host", &["is not a host"]);
    }

    // ---- retry and expiration (docs/design.md §4) ----

    #[test]
    fn every_retry_row_is_range_checked() {
        type Set = fn(&mut TransportFile, &str);
        fn count(f: &mut TransportFile, field: &str, v: u32) {
            let r = &mut f.retry;
            match field {
                "queueGlitchRetryCount" => r.queue_glitch_retry_count = Some(v),
                "transientFailureRetryCount" => r.transient_failure_retry_count = Some(v),
                "poisonThreshold" => r.poison_threshold = Some(v),
                _ => unreachable!(),
            }
        }
        for (field, min, max) in
            [("queueGlitchRetryCount", 0, 15), ("transientFailureRetryCount", 0, 15), ("poisonThreshold", 1, 10)]
        {
            for ok in [min, max] {
                let mut f = base();
                count(&mut f, field, ok);
                assert_valid(&f);
            }
            let mut f = base();
            count(&mut f, field, max + 1);
            assert_one(&f, &format!("retry.{field}"), &[&format!("{} is out of range ({min} to {max})", max + 1)]);
            if min > 0 {
                let mut f = base();
                count(&mut f, field, min - 1);
                assert_one(&f, &format!("retry.{field}"), &[&format!("{} is out of range ({min} to {max})", min - 1)]);
            }
        }

        let spans: [(&str, &str, &str, Set); 9] = [
            ("retry.queueGlitchRetryInterval", "00:00:01", "01:00:00", |f, v| {
                f.retry.queue_glitch_retry_interval = ts(v)
            }),
            ("retry.transientFailureRetryInterval", "00:00:01", "12:00:00", |f, v| {
                // 6 × 12 h would pass the delay notification time-out (a cross rule tested below).
                f.retry.transient_failure_retry_count = Some(0);
                f.retry.transient_failure_retry_interval = ts(v)
            }),
            ("retry.outboundConnectionFailureRetryInterval", "00:00:01", "20.00:00:00", |f, v| {
                f.retry.outbound_connection_failure_retry_interval = ts(v)
            }),
            ("retry.messageRetryInterval", "00:00:01", "1.00:00:00", |f, v| f.retry.message_retry_interval = ts(v)),
            ("retry.mailboxDeliveryQueueRetryInterval", "00:00:01", "1.00:00:00", |f, v| {
                f.retry.mailbox_delivery_queue_retry_interval = ts(v)
            }),
            ("retry.maxIdleTimeBeforeResubmit", "00:00:01", "30.00:00:00", |f, v| {
                f.retry.max_idle_time_before_resubmit = ts(v)
            }),
            ("retry.queueMaxIdleTime", "00:00:05", "01:00:00", |f, v| f.retry.queue_max_idle_time = ts(v)),
            ("expiration.delayNotificationTimeOut", "00:00:01", "30.00:00:00", |f, v| {
                // Keep the cross rules out of the way: no transient retries, a long expiry.
                f.retry.transient_failure_retry_count = Some(0);
                f.expiration.message_expiration_time_out = ts("90d");
                f.expiration.delay_notification_time_out = ts(v)
            }),
            ("expiration.messageExpirationTimeOut", "00:00:05", "90.00:00:00", |f, v| {
                f.retry.transient_failure_retry_count = Some(0);
                f.expiration.delay_notification_time_out = ts("1s");
                f.expiration.message_expiration_time_out = ts(v)
            }),
        ];
        for (path, min, max, set) in spans {
            for ok in [min, max] {
                let mut f = base();
                set(&mut f, ok);
                assert_valid(&f);
            }
            let min_d = ts(min).unwrap().0;
            let max_d = ts(max).unwrap().0;
            for bad in [min_d - Duration::from_secs(1), max_d + Duration::from_secs(1)] {
                let mut f = base();
                set(&mut f, &TimeSpan(bad).to_string());
                assert_one(&f, path, &[&format!("{} is out of range ({min} to {max})", TimeSpan(bad))]);
            }
        }
    }

    #[test]
    fn the_brief_example_message_is_exact() {
        let mut f = base();
        f.retry.transient_failure_retry_interval = ts("13:00:00");
        f.retry.transient_failure_retry_count = Some(0);
        assert_eq!(
            f.validate().unwrap_err().to_string(),
            "retry.transientFailureRetryInterval: 13:00:00 is out of range (00:00:01 to 12:00:00)"
        );
    }

    #[test]
    fn delay_notification_must_exceed_the_transient_retries() {
        // 6 × 00:30:00 = 03:00:00 < 04:00:00: fine.
        let mut f = base();
        f.retry.transient_failure_retry_interval = ts("30m");
        assert_valid(&f);
        // 6 × 00:40:00 = 04:00:00, not more than the default 04:00:00.
        f.retry.transient_failure_retry_interval = ts("40m");
        assert_one(
            &f,
            "expiration.delayNotificationTimeOut",
            &["04:00:00 (the default) must be more than transientFailureRetryCount × transientFailureRetryInterval (6 × 00:40:00 = 04:00:00)"],
        );
        // Edge's default interval (10 min) with 15 retries is 02:30:00, above a 2 h delay.
        let mut f = base();
        f.role = Role::Edge;
        f.retry.transient_failure_retry_count = Some(15);
        f.expiration.delay_notification_time_out = ts("2h");
        assert_one(
            &f,
            "expiration.delayNotificationTimeOut",
            &["02:00:00 must be more than", "(15 × 00:10:00 = 02:30:00)"],
        );
        f.role = Role::Mailbox; // 15 × 00:05:00 = 01:15:00
        assert_valid(&f);
    }

    #[test]
    fn delay_notification_must_come_before_expiration() {
        let mut f = base();
        f.expiration.delay_notification_time_out = ts("3d");
        assert_one(
            &f,
            "expiration.delayNotificationTimeOut",
            &["3.00:00:00 must be less than messageExpirationTimeOut (2.00:00:00 (the default))"],
        );
        let mut f = base();
        f.expiration.message_expiration_time_out = ts("4h");
        assert_one(
            &f,
            "expiration.messageExpirationTimeOut",
            &["04:00:00 must be more than delayNotificationTimeOut (04:00:00 (the default))"],
        );
    }

    // ---- organisation, admin, dns, logging ----

    #[test]
    fn transport_config_rules() {
        let domain = |d: &str| AcceptedDomain { domain: d.into(), domain_type: AcceptedDomainType::Authoritative };
        let mut f = base();
        f.transport_config.accepted_domains = vec![domain("example.test"), domain("*.sub.example.test")];
        f.transport_config.postmaster = Some("postmaster@example.test".into());
        assert_valid(&f);

        for bad in ["*", "exa mple.test", "", "*.", "a..b"] {
            let mut f = base();
            f.transport_config.accepted_domains = vec![domain(bad)];
            assert_one(
                &f,
                "transportConfig.acceptedDomains[0].domain",
                &["is not a domain pattern: write example.com or *.example.com"],
            );
        }
        let mut f = base();
        f.transport_config.accepted_domains = vec![domain("a.test"), domain("b.test"), domain("A.TEST")];
        assert_one(
            &f,
            "transportConfig.acceptedDomains[2].domain",
            &["\"A.TEST\" is already listed at transportConfig.acceptedDomains[0]"],
        );

        for bad in ["postmaster", "@example.test", "post master@example.test", "pm@exa mple", "pm@"] {
            let mut f = base();
            f.transport_config.postmaster = Some(bad.into());
            assert_one(&f, "transportConfig.postmaster", &["is not an address: write local@domain"]);
        }

        let mut f = base();
        f.transport_config.max_recipient_envelope_limit = Some(0);
        assert_one(&f, "transportConfig.maxRecipientEnvelopeLimit", &["0 is out of range (at least 1)"]);

        for bad in ["", "  ", "mail\r\nBcc: x", "caf\u{e9}"] {
            let mut f = base();
            f.transport_config.tls_report_organization_name = Some(bad.into());
            assert_one(
                &f,
                "transportConfig.tlsReportOrganizationName",
                &["must be 1 to 200 printable ASCII characters"],
            );
        }
        let mut f = base();
        f.transport_config.tls_report_organization_name = Some("Example Org".into());
        f.transport_config.tls_reporting_enabled = Some(false);
        assert_valid(&f);
        assert!(!f.transport_config.tls_reporting());
    }

    #[test]
    fn shadow_settings_and_peers() {
        use crate::config::{OrgSettings, ShadowChannel, ShadowPeer};
        let span = |s: &str| Some(s.parse::<TimeSpan>().unwrap());
        let peer =
            |name: &str, address: &str| ShadowPeer { name: name.into(), address: address.into(), leaving: false };
        let channel = |peers| ShadowChannel { bind: "0.0.0.0:2528".parse().unwrap(), token_file: "/t".into(), peers };
        let mut f = base();
        f.transport_config.shadow_heartbeat_frequency = span("00:00:01");
        f.transport_config.shadow_resubmit_time_span = span("1.00:00:00");
        f.transport_config.shadow_message_auto_discard_interval = span("90.00:00:00");
        f.shadow = Some(channel(vec![peer("test-1", "test-1.mail-headless:2528"), peer("test-2", "[::1]:2528")]));
        assert_valid(&f);

        for (path, set, message) in [
            (
                "transportConfig.shadowHeartbeatFrequency",
                (|o: &mut OrgSettings| o.shadow_heartbeat_frequency = Some(TimeSpan(Duration::ZERO)))
                    as fn(&mut OrgSettings),
                "00:00:00 is out of range (00:00:01 to 1.00:00:00)",
            ),
            (
                "transportConfig.shadowResubmitTimeSpan",
                |o| o.shadow_resubmit_time_span = Some(TimeSpan(Duration::from_secs(2 * 86400))),
                "2.00:00:00 is out of range (00:00:01 to 1.00:00:00)",
            ),
            (
                "transportConfig.shadowMessageAutoDiscardInterval",
                |o| o.shadow_message_auto_discard_interval = Some(TimeSpan(Duration::from_secs(4))),
                "00:00:04 is out of range (00:00:05 to 90.00:00:00)",
            ),
            (
                "transportConfig.safetyNetHoldTime",
                |o| o.safety_net_hold_time = Some(TimeSpan(Duration::from_secs(91 * 86400))),
                "91.00:00:00 is out of range (00:00:00 to 90.00:00:00)",
            ),
        ] {
            let mut f = base();
            set(&mut f.transport_config);
            assert_one(&f, path, &[message]);
        }

        let mut f = base();
        f.shadow = Some(channel(vec![peer("test-0", "a:1")]));
        assert_one(&f, "shadow.peers[0].name", &["\"test-0\" is this server itself"]);
        f.shadow = Some(channel(vec![peer("b", "a:1"), peer("b", "c:1")]));
        assert_one(&f, "shadow.peers[1].name", &["\"b\" is already listed at shadow.peers[0]"]);
        f.shadow = Some(channel(vec![peer("b c", "a:1")]));
        assert_one(&f, "shadow.peers[0].name", &["may contain only letters"]);
        f.shadow = Some(channel(vec![peer("b", "peer.test")]));
        assert_one(&f, "shadow.peers[0].address", &["\"peer.test\" needs a port"]);
        f.shadow = Some(channel(vec![peer("b", "::1")]));
        assert_one(&f, "shadow.peers[0].address", &["brackets"]);
        f.shadow = Some(ShadowChannel { token_file: PathBuf::new(), ..channel(vec![]) });
        assert_one(&f, "shadow.tokenFile", &["must not be empty"]);
    }

    #[test]
    fn admin_token_is_required_off_loopback() {
        let mut f = base();
        f.admin = Some(AdminSettings { bind: "0.0.0.0:8025".parse().unwrap(), token_file: None });
        assert_eq!(
            f.validate().unwrap_err().to_string(),
            "admin.tokenFile: required when admin.bind (0.0.0.0:8025) is not a loopback address"
        );
        f.admin = Some(AdminSettings { bind: "0.0.0.0:8025".parse().unwrap(), token_file: Some("/token".into()) });
        assert_valid(&f);
        f.admin = Some(AdminSettings { bind: "[::1]:8025".parse().unwrap(), token_file: None });
        assert_valid(&f);
        f.admin = Some(AdminSettings { bind: "127.0.0.1:8025".parse().unwrap(), token_file: Some(PathBuf::new()) });
        assert_one(&f, "admin.tokenFile", &["must not be empty"]);
    }

    #[test]
    fn dns_nameservers_need_a_port() {
        let mut f = base();
        f.dns =
            Some(DnsSettings { nameservers: vec!["127.0.0.1:5353".parse().unwrap(), "127.0.0.1:0".parse().unwrap()] });
        assert_one(&f, "dns.nameservers[1]", &["port 0"]);
    }

    #[test]
    fn logging_rules() {
        let mut f = base();
        f.logging = Some(LoggingSettings { max_age: ts("0s"), ..Default::default() });
        assert_valid(&f);
        f.logging = Some(LoggingSettings { max_age: ts("24855d"), ..Default::default() });
        assert_valid(&f);
        f.logging = Some(LoggingSettings { max_age: ts("24856d"), ..Default::default() });
        assert_one(&f, "logging.maxAge", &["24856.00:00:00 is out of range (00:00:00 to 24855.00:00:00)"]);
        f.logging = Some(LoggingSettings {
            max_directory_size: size("1000"),
            max_file_size: size("512"),
            ..Default::default()
        });
        let errs = errors(&f);
        assert_eq!(
            errs,
            [
                ("logging.maxDirectorySize".to_string(), "1000B is out of range (at least 1KB)".to_string()),
                ("logging.maxFileSize".to_string(), "512B is out of range (at least 1KB)".to_string()),
            ]
        );
        f.logging = Some(LoggingSettings { max_file_size: size("300MB"), ..Default::default() });
        assert_one(&f, "logging.maxFileSize", &["maxFileSize (300MB) must not exceed maxDirectorySize (250MB)"]);
        // The tracking log's own limits, checked the same way under their own names.
        f.logging = Some(LoggingSettings { message_tracking_log_max_age: ts("24856d"), ..Default::default() });
        assert_one(&f, "logging.messageTrackingLogMaxAge", &["24856.00:00:00 is out of range"]);
        f.logging =
            Some(LoggingSettings { message_tracking_log_max_directory_size: size("5MB"), ..Default::default() });
        assert_one(
            &f,
            "logging.messageTrackingLogMaxDirectorySize",
            &["messageTrackingLogMaxFileSize (10MB) must not exceed messageTrackingLogMaxDirectorySize (5MB)"],
        );
        f.logging = Some(LoggingSettings {
            max_file_size: size("300MB"),
            message_tracking_log_max_file_size: size("300MB"),
            ..Default::default()
        });
        assert_one(&f, "logging.maxFileSize", &["must not exceed"]);
    }

    // ---- all at once ----

    #[test]
    fn every_error_is_reported_at_once() {
        let text = "
serverName: ''
fqdn: mail.example.test
queueDirectory: q
receiveConnectors:
  - {name: A, bind: '127.0.0.1:2525', maxHopCount: 0, requireTLS: true}
  - {name: A, bind: '127.0.0.1:2525'}
sendConnectors:
  - {name: Out, addressSpaces: [{domain: '*', cost: 500}]}
retry: {queueGlitchRetryCount: 16, transientFailureRetryInterval: '13:00:00'}
transportConfig: {postmaster: nobody}
admin: {bind: '0.0.0.0:8025'}
";
        let e = TransportFile::from_yaml_str(text).unwrap_err();
        let paths: Vec<&str> = e.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "serverName",
                "receiveConnectors[0].maxHopCount",
                "receiveConnectors[0].requireTLS",
                "receiveConnectors[1].name",
                "receiveConnectors[1].bind",
                "sendConnectors[0].addressSpaces[0].cost",
                "sendConnectors[0].smartHosts",
                "retry.queueGlitchRetryCount",
                "retry.transientFailureRetryInterval",
                "expiration.delayNotificationTimeOut",
                "transportConfig.postmaster",
                "admin.tokenFile",
            ],
            "{e}"
        );
        // One line per error, each "path: message".
        assert_eq!(e.to_string().lines().count(), paths.len());
        assert!(e.to_string().lines().all(|l| l.contains(": ")));
    }

    // ---- files ----

    #[test]
    fn load_reports_an_unreadable_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let e = TransportFile::load(&missing).unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].path, FILE_PATH);
        assert!(e.0[0].message.starts_with(&format!("cannot read {}", missing.display())), "{e}");
    }

    #[test]
    fn load_checks_the_files_the_config_names() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "x").unwrap();
        let config = dir.path().join("config.yaml");
        let mut f = base();
        f.receive_connectors.push(ReceiveConnector {
            name: "Tls".into(),
            bind: "127.0.0.1:2587".parse().unwrap(),
            settings: ReceiveSettings {
                require_tls: true,
                auth: Some(ReceiveAuth { users_file: dir.path().to_path_buf() }),
                ..Default::default()
            },
            tls: Some(TlsFiles { certificate_file: cert.clone(), key_file: dir.path().join("key.pem") }),
        });
        f.admin =
            Some(AdminSettings { bind: "127.0.0.1:8025".parse().unwrap(), token_file: Some(dir.path().join("token")) });
        std::fs::write(&config, serde_yaml::to_string(&f).unwrap()).unwrap();

        // validate() alone does not look at the file system.
        assert_valid(&f);
        let e = TransportFile::load(&config).unwrap_err();
        let got: Vec<(&str, &str)> = e.0.iter().map(|e| (e.path.as_str(), e.message.as_str())).collect();
        assert_eq!(got.len(), 3, "{e}");
        assert_eq!(got[0].0, "receiveConnectors[1].tls.keyFile");
        assert!(got[0].1.contains("key.pem") && got[0].1.contains("No such file"), "{e}");
        assert_eq!(got[1].0, "receiveConnectors[1].auth.usersFile");
        assert!(got[1].1.contains("is a directory"), "{e}");
        assert_eq!(got[2].0, "admin.tokenFile");

        std::fs::write(dir.path().join("key.pem"), "k").unwrap();
        std::fs::write(dir.path().join("token"), "t").unwrap();
        let users = dir.path().join("users");
        std::fs::write(&users, "u:p\n").unwrap();
        f.receive_connectors[1].settings.auth = Some(ReceiveAuth { users_file: users });
        std::fs::write(&config, serde_yaml::to_string(&f).unwrap()).unwrap();
        assert_eq!(TransportFile::load(&config).unwrap(), f);
    }

    // ---- the schema refuses what it can ----

    #[test]
    fn schema_carries_the_integer_ranges_and_patterns() {
        let schema = serde_json::to_value(schemars::schema_for!(TransportFile)).unwrap();
        let defs = &schema["$defs"];
        let prop = |def: &str, field: &str| defs[def]["properties"][field].clone();
        let range = |def: &str, field: &str| {
            let p = prop(def, field);
            (p["minimum"].as_u64(), p["maximum"].as_u64())
        };
        assert_eq!(range("RetrySettings", "queueGlitchRetryCount"), (Some(0), Some(15)));
        assert_eq!(range("RetrySettings", "transientFailureRetryCount"), (Some(0), Some(15)));
        assert_eq!(range("RetrySettings", "poisonThreshold"), (Some(1), Some(10)));
        assert_eq!(range("ReceiveConnector", "maxRecipientsPerMessage"), (Some(1), Some(512_000)));
        assert_eq!(range("ReceiveConnector", "maxInboundConnection").0, Some(1));
        assert_eq!(range("ReceiveConnector", "maxInboundConnectionPerSource"), (Some(1), Some(10_000)));
        assert_eq!(range("ReceiveConnector", "maxHopCount"), (Some(1), Some(500)));
        assert_eq!(range("SendConnector", "port"), (Some(1), Some(65535)));
        assert_eq!(range("SendConnector", "maxConcurrentConnections").0, Some(1));
        assert_eq!(range("AddressSpace", "cost"), (Some(1), Some(100)));
        assert_eq!(range("OrgSettings", "maxRecipientEnvelopeLimit").0, Some(1));
        assert_eq!(prop("SendConnector", "addressSpaces")["minItems"], 1);
        assert_eq!(prop("AddressSpace", "domain")["pattern"], ADDRESS_SPACE_PATTERN);
        assert_eq!(prop("AcceptedDomain", "domain")["pattern"], ACCEPTED_DOMAIN_PATTERN);
        assert_eq!(schema["properties"]["serverName"]["pattern"], SERVER_NAME_PATTERN);
        // The spellings of docs/design.md are the schema's.
        assert!(defs["OrgSettings"]["properties"].get("internalDelayDSNEnabled").is_some());
        assert!(defs["ReceiveConnector"]["properties"].get("requireTLS").is_some());
    }
}
