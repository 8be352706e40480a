//! The transport server's configuration file (docs/design.md §8): YAML, camelCase, the
//! same field names as the CRDs. This module is the one definition of it; the
//! operator renders it through these types (feature `config`) and embeds the
//! shared pieces (retry, expiration, send connectors, receive limits,
//! organisation settings, logging) in its CRDs, so nothing is declared twice.
//!
//! - [`timespan`]: Exchange time spans `[d.]hh:mm:ss` and `90s/15m/4h/2d`
//! - [`size`]: byte sizes such as `36MB`
//! - [`defaults`]: the docs/design.md §4 role defaults and ranges, resolved policies
//! - [`validate`]: parsing and every check, each error naming its field path
//!
//! Defaults live in code (never in the CRD schema): an absent optional field
//! takes the default documented on it.
pub mod defaults;
pub mod domain_pattern;
pub mod host_port;
pub mod settings;
pub mod size;
pub mod timespan;
pub mod validate;

use domain_pattern::DomainPattern;
use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use defaults::{ExpirationPolicy, ReceiveLimits, RetryPolicy, ShadowPolicy};
pub use size::ByteSize;
pub use timespan::TimeSpan;
pub use validate::{ConfigError, ConfigErrors};

/// Root of the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransportFile {
    /// Server name: queue identities (`server\queue`), Reporting-MTA, logs.
    /// Letters, digits, `-`, `_` and `.`.
    #[schemars(pattern(validate::SERVER_NAME_PATTERN))]
    pub server_name: String,
    /// Selects the docs/design.md §4 defaults.
    #[serde(default)]
    pub role: Role,
    /// Name used in the banner, EHLO and Received headers: a host name.
    pub fqdn: String,
    /// Where the durable queue lives.
    pub queue_directory: PathBuf,
    /// Connectivity and protocol logs (CSV). Absent: no transport logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_directory: Option<PathBuf>,
    /// `.eml` files with X-Sender/X-Receiver headers dropped here are submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_directory: Option<PathBuf>,
    /// The ServerState the server starts in.
    #[serde(default)]
    pub server_state: ServerStateSetting,
    #[serde(default)]
    pub receive_connectors: Vec<ReceiveConnector>,
    #[serde(default)]
    pub send_connectors: Vec<SendConnector>,
    /// Next hop for recipients in Authoritative accepted domains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_delivery: Option<MailboxDelivery>,
    #[serde(default)]
    pub retry: RetrySettings,
    #[serde(default)]
    pub expiration: ExpirationSettings,
    #[serde(default)]
    pub transport_config: OrgSettings,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsSettings>,
    /// Outbound connections open at once, over every next hop (Exchange's
    /// MaxOutboundConnections). At least 1. Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_outbound_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSettings>,
    /// The channel to the other servers of the TransportService that holds
    /// shadow copies (shadow redundancy). Absent: messages are not shadowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow: Option<ShadowChannel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingSettings>,
    /// component → requester → state, e.g. `{HubTransport: {Maintenance: Active}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<Component, BTreeMap<Requester, ComponentState>>,
}

/// Selects the docs/design.md §4 defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Role {
    #[default]
    Mailbox,
    Edge,
}

/// Desired ServerState (the states a server can be asked to be in).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ServerStateSetting {
    #[default]
    Started,
    Paused,
    Stopped,
}

/// A server component whose state requesters set (Set-ServerComponentState).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Component {
    HubTransport,
    FrontendTransport,
    ServerWideOffline,
}

impl Component {
    pub const ALL: [Component; 3] =
        [Component::HubTransport, Component::FrontendTransport, Component::ServerWideOffline];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::HubTransport => "HubTransport",
            Component::FrontendTransport => "FrontendTransport",
            Component::ServerWideOffline => "ServerWideOffline",
        }
    }
}

/// Who asked for a component state. Each requester's wish is kept separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Requester {
    Functional,
    Maintenance,
    Sidelined,
    Deployment,
    #[serde(rename = "HealthAPI")]
    HealthApi,
}

impl Requester {
    pub const ALL: [Requester; 5] = [
        Requester::Functional,
        Requester::Maintenance,
        Requester::Sidelined,
        Requester::Deployment,
        Requester::HealthApi,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Requester::Functional => "Functional",
            Requester::Maintenance => "Maintenance",
            Requester::Sidelined => "Sidelined",
            Requester::Deployment => "Deployment",
            Requester::HealthApi => "HealthAPI",
        }
    }
}

/// State of a server component. Ordered so that the combined state is the
/// maximum: Inactive wins over Draining, which wins over Active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ComponentState {
    #[default]
    Active,
    Draining,
    Inactive,
}

impl ComponentState {
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Active => "Active",
            ComponentState::Draining => "Draining",
            ComponentState::Inactive => "Inactive",
        }
    }

    /// The strongest of several requesters' wishes for one component (Active when none).
    pub fn strongest(wishes: impl IntoIterator<Item = ComponentState>) -> ComponentState {
        wishes.into_iter().max().unwrap_or_default()
    }
}

/// The combined state of `component` (docs/design.md §2, Set-ServerComponentState): the strongest
/// wish for it, except that ServerWideOffline Inactive makes every component Inactive.
/// `strongest_of` gives the strongest wish of each component ([`ComponentState::strongest`]).
/// The one rule the server (its component table) and the operator (status of
/// ServerComponentState objects) both apply.
pub fn combined_component_state(
    component: Component,
    strongest_of: impl Fn(Component) -> ComponentState,
) -> ComponentState {
    if strongest_of(Component::ServerWideOffline) == ComponentState::Inactive {
        ComponentState::Inactive
    } else {
        strongest_of(component)
    }
}

/// Limits and behaviour of a receive connector that the file and the CRD
/// share (the CRD adds a port and a certificate Secret instead of files).
/// Every absent field takes the Exchange default written on it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiveSettings {
    /// Clients allowed to connect; empty means everyone.
    #[serde(default, rename = "remoteIPRanges", skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<String>")]
    pub remote_ip_ranges: Vec<IpNet>,
    /// Clients in `remoteIPRanges` may relay to domains that are not accepted
    /// (anonymous relay). Accepted domains are always accepted.
    #[serde(default)]
    pub allow_relay: bool,
    /// Largest message this connector takes; the organisation's maxReceiveSize also applies.
    /// 64KB – 2GB. Default 36MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<ByteSize>,
    /// Recipients per message; more get `452 4.5.3`. 1–512000. Default 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 512_000))]
    pub max_recipients_per_message: Option<u32>,
    /// Refuse MAIL before STARTTLS (`530 5.7.0`). Needs TLS on the connector.
    // docs/design.md §2 spells it requireTLS; the camelCase form is accepted too.
    #[serde(default, rename = "requireTLS", alias = "requireTls")]
    pub require_tls: bool,
    /// Idle time allowed between commands, below connectionTimeout (RFC 5321 §4.5.3.2.7 asks
    /// for at least 5 minutes). 1 s – 1 day. Default 00:05:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_inactivity_timeout: Option<TimeSpan>,
    /// Longest a session may last. 1 s – 1 day. Default 00:10:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<TimeSpan>,
    /// Concurrent sessions on this connector. At least 1. Default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_inbound_connection: Option<u32>,
    /// Concurrent sessions from one IP address. 1–10000. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub max_inbound_connection_per_source: Option<u32>,
    /// Protocol errors before the session is closed. Default 5.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_protocol_errors: Option<u32>,
    /// Size of the message header. At least 1KB. Default 256KB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_header_size: Option<ByteSize>,
    /// Received headers allowed before the message is refused as a loop. 1–500. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 500))]
    pub max_hop_count: Option<u32>,
    /// SMTP AUTH (PLAIN, LOGIN), offered only after STARTTLS (so it needs TLS on the connector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<ReceiveAuth>,
    /// Write this connector's sessions to the protocol log.
    #[serde(default)]
    pub protocol_logging: bool,
    /// Offer CHUNKING (RFC 3030 BDAT), as Exchange's ChunkingEnabled. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunking_enabled: Option<bool>,
    /// Offer BINARYMIME (RFC 3030; only with CHUNKING), as Exchange's BinaryMimeEnabled.
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary_mime_enabled: Option<bool>,
    /// Offer SMTPUTF8 (RFC 6531: UTF-8 addresses and headers), as Postfix's
    /// smtputf8_enable and Exchange Online. Default true.
    #[serde(default, rename = "smtpUtf8Enabled", alias = "smtputf8Enabled", skip_serializing_if = "Option::is_none")]
    pub smtp_utf8_enabled: Option<bool>,
    /// Offer REQUIRETLS (RFC 8689) after STARTTLS. Default false (neither Exchange nor
    /// Postfix offers it): messages that ask for it are relayed only over TLS with a
    /// verified certificate name (send connector tlsAuthLevel: DomainValidation) to a
    /// hop that offers it too, else returned with 5.7.10.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offer_require_tls: bool,
}

impl ReceiveSettings {
    /// CHUNKING is offered.
    pub fn chunking(&self) -> bool {
        settings::RECEIVE_CHUNKING_ENABLED.or_default(self.chunking_enabled)
    }

    /// SMTPUTF8 is offered.
    pub fn smtputf8(&self) -> bool {
        settings::RECEIVE_SMTP_UTF8_ENABLED.or_default(self.smtp_utf8_enabled)
    }

    /// BINARYMIME is offered (never without CHUNKING: its data can only come with BDAT).
    pub fn binary_mime(&self) -> bool {
        self.chunking() && settings::RECEIVE_BINARY_MIME_ENABLED.or_default(self.binary_mime_enabled)
    }
}

/// SMTP AUTH on a receive connector. Authenticated clients may relay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiveAuth {
    /// File of `user:password` lines (in the cluster: a mounted Secret).
    pub users_file: PathBuf,
}

/// A receive connector of the file: where it listens, and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiveConnector {
    /// Unique among the receive connectors.
    #[schemars(length(min = 1))]
    pub name: String,
    /// `ip:port` to listen on.
    #[schemars(with = "String")]
    pub bind: SocketAddr,
    #[serde(flatten)]
    pub settings: ReceiveSettings,
    /// Certificate and key (PEM) for STARTTLS; absent: STARTTLS is not offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    pub certificate_file: PathBuf,
    pub key_file: PathBuf,
}

/// A send connector: which recipient domains it serves and how it reaches them.
// Default is no connector anyone would configure (no name, no address space): it lets a
// literal name only the settings it sets, the others absent as in a file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendConnector {
    /// Unique among the send connectors.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Domains served; the most specific match wins, then the lowest cost. At least one.
    #[schemars(length(min = 1))]
    pub address_spaces: Vec<AddressSpace>,
    /// `host:port` or `host` (port `port`, default 25). Exclusive with dnsRouting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub smart_hosts: Vec<String>,
    /// Route by the recipient domain's MX records (implicit MX fallback, null MX).
    #[serde(default)]
    pub dns_routing: bool,
    /// Port for smart hosts without one and for MX hosts. Default 25.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: OutboundTls,
    /// How the next hop's certificate is checked (Exchange's TlsAuthLevel): absent or
    /// `EncryptionOnly` not at all; `CertificateValidation` it must chain to a trusted
    /// CA; `DomainValidation` it must also name `tlsDomain` (or the smart host or MX
    /// host). Anything above EncryptionOnly needs `tls: Required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_auth_level: Option<TlsAuthLevel>,
    /// The name a DomainValidation certificate must carry (Exchange's TlsDomain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_domain: Option<String>,
    /// PEM file of the CAs certificates must chain to; absent: the system's (/etc/ssl/certs).
    /// MTA-STS trusts the same CAs, for the policy host and the MX hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_certificate_authorities: Option<PathBuf>,
    /// MTA-STS (RFC 8461), with dnsRouting only: `AsPublished` (the default) applies each
    /// recipient domain's policy in the mode it publishes. `enforce`: only the MX hosts the
    /// policy names, only over TLS with a certificate that chains to a trusted CA and names
    /// the MX host; anything else is a connection failure (the queue waits in Retry, never
    /// clear text). `testing`: mail goes as before, what would have failed is logged.
    /// `TestingOnly` treats every policy as `testing`; `Disabled` does not look policies up.
    /// Default `AsPublished`, `Disabled` with `tls: None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mta_sts: Option<MtaStsMode>,
    /// DANE for SMTP (RFC 7672), with dnsRouting only: `AsPublished` (the default) looks up
    /// the DNSSEC-signed TLSA records `_25._tcp.<mx host>` of each MX host; where they are
    /// published (and the host's addresses are signed too) mail goes to that host only
    /// over TLS with a certificate they match (DANE-EE: the certificate or its key; DANE-TA:
    /// a chain to the CA they name, for the MX host's name), taking precedence over
    /// MTA-STS; anything else is a connection failure (Retry, never clear text). A DNSSEC
    /// failure (bogus or unanswered) is a temporary failure of that host. `Disabled` does
    /// not look TLSA records up. Default `AsPublished`, `Disabled` with `tls: None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dane: Option<DaneMode>,
    /// Time allowed to connect and get the banner. 1 s – 1 day. Default 00:01:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<TimeSpan>,
    /// Time allowed for each reply of the next hop once connected, the reply
    /// after the final dot included (Exchange's ConnectionInactivityTimeOut;
    /// RFC 5321 §4.5.3.2 asks for 5 minutes, 10 after the data). A hop that
    /// stays silent longer is given up and its queue goes in Retry.
    /// 1 s – 1 day. Default 00:10:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_inactivity_timeout: Option<TimeSpan>,
    /// Messages larger than this are refused for this connector (NDR 5.3.4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<ByteSize>,
    /// Simultaneous connections to one next hop. At least 1. Default 20.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_concurrent_connections: Option<u32>,
    /// Write this connector's sessions to the protocol log.
    #[serde(default)]
    pub protocol_logging: bool,
}

/// Outbound TLS: `Opportunistic` uses STARTTLS when offered (certificate not
/// verified, as MTAs do), `Required` refuses to send in clear, `None` never tries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum OutboundTls {
    #[default]
    Opportunistic,
    Required,
    None,
}

/// How a DNS-routed send connector honours recipient domains' MTA-STS policies (RFC 8461).
// Plain comments on the variants: doc comments would replace the field's description in
// the CRD schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum MtaStsMode {
    // A policy applies in the mode the domain publishes (`enforce`, `testing`, `none`).
    AsPublished,
    // Every policy is only tested: failures are logged, mail goes as without a policy.
    TestingOnly,
    // Policies are not looked up. (Not `Off`: YAML 1.1, which kubectl reads, takes an
    // unquoted Off for the boolean false.)
    Disabled,
}

/// Whether a DNS-routed send connector applies the DANE TLSA records of MX hosts (RFC 7672).
// Plain comments on the variants, as MtaStsMode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DaneMode {
    // TLSA records published in DNSSEC-signed zones are applied.
    AsPublished,
    // TLSA records are not looked up. (Not `Off`: YAML 1.1 reads it as false.)
    Disabled,
}

/// Exchange's send connector TlsAuthLevel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TlsAuthLevel {
    EncryptionOnly,
    CertificateValidation,
    DomainValidation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddressSpace {
    /// `*`, `example.com` (that domain only) or `*.example.com` (it and its subdomains).
    #[schemars(pattern(validate::ADDRESS_SPACE_PATTERN))]
    pub domain: String,
    /// Lower is preferred. 1–100. Default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub cost: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailboxDelivery {
    /// `host:port` of the mailbox hop that Authoritative accepted domains go to.
    pub host: String,
}

/// Every §4 retry row; absent ones take the role default (see [`RetryPolicy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySettings {
    /// 0–15. Default 4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 15))]
    pub queue_glitch_retry_count: Option<u32>,
    /// 1 s – 1 h. Default 00:01:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_glitch_retry_interval: Option<TimeSpan>,
    /// 0–15. Default 6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 15))]
    pub transient_failure_retry_count: Option<u32>,
    /// 1 s – 12 h. Default 00:05:00 (Mailbox), 00:10:00 (Edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient_failure_retry_interval: Option<TimeSpan>,
    /// 1 s – 20 days. Default 00:10:00 (Mailbox), 00:30:00 (Edge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_connection_failure_retry_interval: Option<TimeSpan>,
    /// 1 s – 1 day. Default 00:15:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_retry_interval: Option<TimeSpan>,
    /// 1 s – 1 day. Default 00:05:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_delivery_queue_retry_interval: Option<TimeSpan>,
    /// 1 s – 30 days. Default 12:00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_time_before_resubmit: Option<TimeSpan>,
    /// 5 s – 1 h. Default 00:03:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_max_idle_time: Option<TimeSpan>,
    /// 1–10. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub poison_threshold: Option<u32>,
}

/// The §4 expiration rows; absent ones take the role default (see [`ExpirationPolicy`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpirationSettings {
    /// 1 s – 30 days. Default 04:00:00. More than transientFailureRetryCount ×
    /// transientFailureRetryInterval, and less than messageExpirationTimeOut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_notification_time_out: Option<TimeSpan>,
    /// 5 s – 90 days. Default 2.00:00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expiration_time_out: Option<TimeSpan>,
}

/// Organisation-wide settings (Set-TransportConfig); the TransportConfig CRD's spec.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgSettings {
    /// Domains this organisation receives mail for. A sender in one of them is internal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted_domains: Vec<AcceptedDomain>,
    /// Delay DSNs to internal senders. Default true.
    // docs/design.md §2/§8 spell it with DSN in capitals; the camelCase form is accepted too.
    #[serde(
        default,
        rename = "internalDelayDSNEnabled",
        alias = "internalDelayDsnEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_delay_dsn_enabled: Option<bool>,
    /// Delay DSNs to external senders. Default true.
    #[serde(
        default,
        rename = "externalDelayDSNEnabled",
        alias = "externalDelayDsnEnabled",
        skip_serializing_if = "Option::is_none"
    )]
    pub external_delay_dsn_enabled: Option<bool>,
    /// Largest message sent. Default 10MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_send_size: Option<ByteSize>,
    /// Largest message received; `unlimited` leaves only the connectors' limits. Default 10MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_receive_size: Option<ByteSize>,
    /// Recipients per message (categorizer: NDR 5.5.3). At least 1. Default 500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_recipient_envelope_limit: Option<u32>,
    /// From address of DSNs. Default `postmaster@<first accepted domain>`, else `postmaster@<fqdn>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmaster: Option<String>,
    /// Originals larger than this are returned as headers only in DSNs. Default 10MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_max_message_attach_size: Option<ByteSize>,
    /// Human-readable text of DSNs; absent parts use the built-in text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dsn_text: Option<DsnText>,
    /// Keep a copy of every message received from outside on a second server
    /// before answering `250` (shadow redundancy); takes effect on servers that have a
    /// shadow channel. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_redundancy_enabled: Option<bool>,
    /// How often a shadow server asks each primary about its copies. 1 s – 1 day. Default 00:02:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_heartbeat_frequency: Option<TimeSpan>,
    /// A shadow server that cannot reach the primary this long delivers the
    /// primary's messages itself. 1 s – 1 day. Default 03:00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_resubmit_time_span: Option<TimeSpan>,
    /// Shadow copies older than this are dropped whatever the primary says.
    /// 5 s – 90 days. Default 2.00:00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_message_auto_discard_interval: Option<TimeSpan>,
    /// No shadow server took a copy: refuse the message with `450 4.5.1`
    /// (true) or accept it unshadowed (false, counted and logged). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_message_on_shadow_failure: Option<bool>,
    /// How long delivered messages are kept (Safety Net) for a resubmit request,
    /// e.g. after a mailbox server was restored from a backup; 00:00:00 turns it off.
    /// 0 – 90 days. Default 2.00:00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_net_hold_time: Option<TimeSpan>,
    /// Send the daily SMTP TLS reports (RFC 8460) to the recipient domains that ask for
    /// them (`_smtp._tls` TXT record, `mailto:` rua); counting and the admin API's view go
    /// on when false. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_reporting_enabled: Option<bool>,
    /// organization-name of those reports (and their submitter). Default the server's fqdn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_report_organization_name: Option<String>,
    /// The DNSSEC trust anchors DANE's lookups validate against: a file of DNSKEY records in
    /// zone-file form (`<zone> <ttl> IN DNSKEY <flags> 3 <algorithm> <key>`), e.g. a private
    /// root's key; read when the configuration is loaded. Absent: the IANA root keys built
    /// into the resolver (hickory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dnssec_trust_anchor_file: Option<PathBuf>,
}

impl OrgSettings {
    /// The accepted domains, each parsed once, with its type (the router's and the SMTP
    /// session's view of them).
    pub fn accepted_patterns(&self) -> Vec<(DomainPattern, AcceptedDomainType)> {
        self.accepted_domains
            .iter()
            .filter_map(|a| Some((DomainPattern::parse_or_log(&a.domain, false)?, a.domain_type)))
            .collect()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DsnText {
    /// First paragraph of a non-delivery report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// First paragraph of a delay notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    /// First paragraph of a success (delivered/relayed) notification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptedDomain {
    /// `example.com` or `*.example.com`; unique.
    #[schemars(pattern(validate::ACCEPTED_DOMAIN_PATTERN))]
    pub domain: String,
    #[serde(rename = "type", default)]
    pub domain_type: AcceptedDomainType,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AcceptedDomainType {
    /// Every recipient is local: delivered to the mailbox hop.
    #[default]
    Authoritative,
    /// Accepted and internal, but routed by the send connectors.
    InternalRelay,
    /// Accepted for relay to a system outside the organisation.
    ExternalRelay,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsSettings {
    /// `ip:port` of resolvers to ask (UDP and TCP); empty = the system resolver.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub nameservers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminSettings {
    /// `ip:port` of the admin HTTP API.
    #[schemars(with = "String")]
    pub bind: SocketAddr,
    /// File holding the bearer token. May be absent only when bind is loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

/// Where this server takes shadow copies from its peers, and who its peers
/// are (the other servers of the same TransportService).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShadowChannel {
    /// `ip:port` of the shadow channel (HTTP); a change needs a restart.
    #[schemars(with = "String")]
    pub bind: SocketAddr,
    /// File holding the credential every server of the service shares; a
    /// request without it is refused.
    pub token_file: PathBuf,
    /// The other servers, in the order copies are offered to them (starting
    /// after this server's own place, so load spreads).
    #[serde(default)]
    pub peers: Vec<ShadowPeer>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShadowPeer {
    /// The peer's serverName.
    #[schemars(pattern(validate::SERVER_NAME_PATTERN))]
    pub name: String,
    /// `host:port` of the peer's shadow channel.
    pub address: String,
    /// A server being removed (scale-down): it gets no new copies, but the
    /// copies held for it are still checked against its queue (heartbeat)
    /// until it is gone, so that none is delivered a second time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub leaving: bool,
}

/// Connectivity, protocol and message tracking logs (Exchange transport logs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingSettings {
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connectivity_log: Option<bool>,
    /// Protocol log for connectors with protocolLogging. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_log: Option<bool>,
    /// Files older than this are deleted; 00:00:00 = never by age. 0 – 24855 days. Default
    /// 30.00:00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<TimeSpan>,
    /// Oldest files are deleted beyond this, per log. At least 1KB. Default 250MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_directory_size: Option<ByteSize>,
    /// A new file is started beyond this; at most maxDirectorySize. At least 1KB. Default 10MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_file_size: Option<ByteSize>,
    /// The message tracking log (`MessageTracking/MSGTRK*.log`, Get-MessageTrackingLog):
    /// one record per event of each message's life. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_tracking_log_enabled: Option<bool>,
    /// Tracking log files older than this are deleted; 00:00:00 = never by age. 0 – 24855
    /// days. Default 30.00:00:00.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_tracking_log_max_age: Option<TimeSpan>,
    /// Oldest tracking log files are deleted beyond this. At least 1KB. Default 1000MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_tracking_log_max_directory_size: Option<ByteSize>,
    /// A new tracking log file is started beyond this; at most
    /// messageTrackingLogMaxDirectorySize. At least 1KB. Default 10MB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_tracking_log_max_file_size: Option<ByteSize>,
    /// Write each message's Subject into its tracking records; subjects are personal data
    /// (Exchange's MessageTrackingLogSubjectLoggingEnabled). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_tracking_log_subject_logging_enabled: Option<bool>,
}

/// Content revision of a configuration text: what `GET /v1/server` reports as
/// `configRevision` and the operator writes into its ConfigMap annotation, so
/// both sides compare the same thing.
pub fn revision(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
