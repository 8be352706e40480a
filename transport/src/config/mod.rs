//! The transport server's configuration file (DESIGN §8): YAML, camelCase, the
//! same field names as the CRDs. This module is the one definition of it; the
//! operator renders it through these types (feature `config`).
//!
//! - [`timespan`]: Exchange time spans `[d.]hh:mm:ss` and `90s/15m/4h/2d`
//! - [`size`]: byte sizes such as `36MB`
//! - [`defaults`]: the DESIGN §4 role defaults and ranges
//! - [`validate`]: every check, each error naming its field path
pub mod defaults;
pub mod size;
pub mod timespan;
pub mod validate;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

pub use defaults::{ExpirationPolicy, RetryPolicy};
pub use size::ByteSize;
pub use timespan::TimeSpan;
pub use validate::{ConfigError, ConfigErrors};

/// Root of the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransportFile {
    /// Server name: queue identities (`server\queue`), Reporting-MTA, logs.
    pub server_name: String,
    #[serde(default)]
    pub role: Role,
    /// Name used in EHLO, banners and Received headers.
    pub fqdn: String,
    pub queue_directory: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_directory: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_directory: Option<PathBuf>,
    #[serde(default)]
    pub server_state: ServerStateSetting,
    #[serde(default)]
    pub receive_connectors: Vec<ReceiveConnector>,
    #[serde(default)]
    pub send_connectors: Vec<SendConnector>,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminSettings>,
    /// component → requester → state, e.g. `{HubTransport: {Maintenance: Active}}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, BTreeMap<String, String>>,
}

/// Selects the DESIGN §4 defaults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    #[default]
    Mailbox,
    Edge,
}

/// Desired ServerState in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerStateSetting {
    #[default]
    Started,
    Paused,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReceiveConnector {
    pub name: String,
    pub bind: SocketAddr,
    /// Clients allowed to connect; empty means everyone.
    #[serde(default, rename = "remoteIPRanges")]
    pub remote_ip_ranges: Vec<IpNet>,
    /// Clients in `remoteIPRanges` may relay to domains that are not accepted.
    #[serde(default)]
    pub allow_relay: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recipients_per_message: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Refuse MAIL before STARTTLS (`530 5.7.0`).
    #[serde(default)]
    pub require_tls: bool,
    /// Idle time allowed between commands (Exchange ConnectionInactivityTimeout;
    /// RFC 5321 §4.5.3.2.7 asks for at least 5 minutes, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_inactivity_timeout: Option<TimeSpan>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsFiles {
    pub certificate_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SendConnector {
    pub name: String,
    pub address_spaces: Vec<AddressSpace>,
    /// `host:port` or `host` (port 25 unless `port` says otherwise).
    #[serde(default)]
    pub smart_hosts: Vec<String>,
    /// Route by DNS MX of the recipient domain instead of smart hosts.
    #[serde(default)]
    pub dns_routing: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: OutboundTls,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_connections: Option<u32>,
}

/// Outbound TLS: `Opportunistic` uses STARTTLS when offered (certificate not
/// verified, as MTAs do), `Required` refuses to send in clear, `None` never tries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutboundTls {
    #[default]
    Opportunistic,
    Required,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddressSpace {
    /// `*`, `example.com` or `*.example.com`.
    pub domain: String,
    #[serde(default = "default_cost")]
    pub cost: u32,
}

fn default_cost() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MailboxDelivery {
    /// `host:port` of the mailbox hop that accepted (Authoritative) domains go to.
    pub host: String,
}

/// Every §4 retry row; absent ones take the role default (see [`RetryPolicy`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_glitch_retry_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_glitch_retry_interval: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient_failure_retry_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transient_failure_retry_interval: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_connection_failure_retry_interval: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_retry_interval: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mailbox_delivery_queue_retry_interval: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_idle_time_before_resubmit: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_max_idle_time: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poison_threshold: Option<u32>,
}

/// The §4 expiration rows; absent ones take the role default (see [`ExpirationPolicy`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpirationSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_notification_time_out: Option<TimeSpan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_expiration_time_out: Option<TimeSpan>,
}

/// Organisation-wide settings (Set-TransportConfig).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OrgSettings {
    #[serde(default)]
    pub accepted_domains: Vec<AcceptedDomain>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_delay_dsn_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_delay_dsn_enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_send_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_receive_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recipient_envelope_limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postmaster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptedDomain {
    pub domain: String,
    #[serde(rename = "type", default)]
    pub domain_type: AcceptedDomainType,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum AcceptedDomainType {
    #[default]
    Authoritative,
    InternalRelay,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DnsSettings {
    /// `ip:port` of resolvers to ask (UDP and TCP); empty = the system resolver.
    #[serde(default)]
    pub nameservers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdminSettings {
    pub bind: SocketAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}
