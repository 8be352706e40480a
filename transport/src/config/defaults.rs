//! The resolved policies the server runs with (file value, or default), and the defaults of
//! the settings without a range (the others are in `settings`, with their ranges).
use super::settings::*;
use super::{
    AcceptedDomain, ByteSize, DaneMode, ExpirationSettings, MtaStsMode, OrgSettings, OutboundTls, ReceiveSettings,
    RetrySettings, Role, TransportFile,
};
use crate::address::{Address, ConfiguredAddressError};
use std::time::Duration;

// Send connectors.
pub const SEND_PORT: u16 = 25;
/// MTA-STS on DNS-routed connectors: honoured by default, as Exchange Online and Postfix's
/// MTA-STS resolvers do.
pub const SEND_MTA_STS: MtaStsMode = MtaStsMode::AsPublished;
pub const SEND_DANE: DaneMode = DaneMode::AsPublished;

/// Every §4 retry row, resolved (file value or role default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub queue_glitch_retry_count: u32,
    pub queue_glitch_retry_interval: Duration,
    pub transient_failure_retry_count: u32,
    pub transient_failure_retry_interval: Duration,
    pub outbound_connection_failure_retry_interval: Duration,
    pub message_retry_interval: Duration,
    pub mailbox_delivery_queue_retry_interval: Duration,
    pub max_idle_time_before_resubmit: Duration,
    pub queue_max_idle_time: Duration,
    pub poison_threshold: u32,
}

/// The §4 expiration rows, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpirationPolicy {
    pub delay_notification_time_out: Duration,
    pub message_expiration_time_out: Duration,
}

/// A receive connector's limits, resolved (connector value, organisation limit,
/// Exchange default; the smallest size limit wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveLimits {
    pub max_message_size: u64,
    pub max_recipients_per_message: u32,
    pub connection_inactivity_timeout: Duration,
    pub connection_timeout: Duration,
    pub max_inbound_connection: u32,
    pub max_inbound_connection_per_source: u32,
    pub max_protocol_errors: u32,
    pub max_header_size: u64,
    pub max_hop_count: u32,
}

impl RetryPolicy {
    /// The §4 defaults of a role.
    pub fn defaults(role: Role) -> Self {
        Self::resolve(role, &RetrySettings::default())
    }

    pub fn resolve(role: Role, s: &RetrySettings) -> Self {
        RetryPolicy {
            queue_glitch_retry_count: QUEUE_GLITCH_RETRY_COUNT.resolve(role, s.queue_glitch_retry_count),
            queue_glitch_retry_interval: QUEUE_GLITCH_RETRY_INTERVAL.resolve(role, s.queue_glitch_retry_interval).0,
            transient_failure_retry_count: TRANSIENT_FAILURE_RETRY_COUNT.resolve(role, s.transient_failure_retry_count),
            transient_failure_retry_interval: TRANSIENT_FAILURE_RETRY_INTERVAL
                .resolve(role, s.transient_failure_retry_interval)
                .0,
            outbound_connection_failure_retry_interval: OUTBOUND_CONNECTION_FAILURE_RETRY_INTERVAL
                .resolve(role, s.outbound_connection_failure_retry_interval)
                .0,
            message_retry_interval: MESSAGE_RETRY_INTERVAL.resolve(role, s.message_retry_interval).0,
            mailbox_delivery_queue_retry_interval: MAILBOX_DELIVERY_QUEUE_RETRY_INTERVAL
                .resolve(role, s.mailbox_delivery_queue_retry_interval)
                .0,
            max_idle_time_before_resubmit: MAX_IDLE_TIME_BEFORE_RESUBMIT
                .resolve(role, s.max_idle_time_before_resubmit)
                .0,
            queue_max_idle_time: QUEUE_MAX_IDLE_TIME.resolve(role, s.queue_max_idle_time).0,
            poison_threshold: POISON_THRESHOLD.resolve(role, s.poison_threshold),
        }
    }
}

impl ExpirationPolicy {
    /// The §4 defaults of a role.
    pub fn defaults(role: Role) -> Self {
        Self::resolve(role, &ExpirationSettings::default())
    }

    pub fn resolve(role: Role, s: &ExpirationSettings) -> Self {
        ExpirationPolicy {
            delay_notification_time_out: DELAY_NOTIFICATION_TIME_OUT.resolve(role, s.delay_notification_time_out).0,
            message_expiration_time_out: MESSAGE_EXPIRATION_TIME_OUT.resolve(role, s.message_expiration_time_out).0,
        }
    }
}

impl ReceiveLimits {
    pub fn resolve(s: &ReceiveSettings, org: &OrgSettings) -> Self {
        let connector = RECEIVE_MAX_MESSAGE_SIZE.or_default(s.max_message_size);
        // `unlimited` is u64::MAX, so the smaller of the two is the limit in force.
        let max_message_size = connector.min(org.max_receive_size()).bytes();
        ReceiveLimits {
            max_message_size,
            max_recipients_per_message: RECEIVE_MAX_RECIPIENTS_PER_MESSAGE.or_default(s.max_recipients_per_message),
            connection_inactivity_timeout: RECEIVE_CONNECTION_INACTIVITY_TIMEOUT
                .or_default(s.connection_inactivity_timeout)
                .0,
            connection_timeout: RECEIVE_CONNECTION_TIMEOUT.or_default(s.connection_timeout).0,
            max_inbound_connection: RECEIVE_MAX_INBOUND_CONNECTION.or_default(s.max_inbound_connection),
            max_inbound_connection_per_source: RECEIVE_MAX_INBOUND_CONNECTION_PER_SOURCE
                .or_default(s.max_inbound_connection_per_source),
            max_protocol_errors: RECEIVE_MAX_PROTOCOL_ERRORS.or_default(s.max_protocol_errors),
            max_header_size: RECEIVE_MAX_HEADER_SIZE.or_default(s.max_header_size).bytes(),
            max_hop_count: RECEIVE_MAX_HOP_COUNT.or_default(s.max_hop_count),
        }
    }
}

impl OrgSettings {
    /// tlsReportingEnabled.
    pub fn tls_reporting(&self) -> bool {
        TLS_REPORTING_ENABLED.or_default(self.tls_reporting_enabled)
    }
    /// internalDelayDSNEnabled.
    pub fn internal_delay_dsn(&self) -> bool {
        INTERNAL_DELAY_DSN_ENABLED.or_default(self.internal_delay_dsn_enabled)
    }
    /// externalDelayDSNEnabled.
    pub fn external_delay_dsn(&self) -> bool {
        EXTERNAL_DELAY_DSN_ENABLED.or_default(self.external_delay_dsn_enabled)
    }
    /// maxSendSize; `unlimited` is [`ByteSize::UNLIMITED`].
    pub fn max_send_size(&self) -> ByteSize {
        MAX_SEND_SIZE.or_default(self.max_send_size)
    }
    /// maxReceiveSize; `unlimited` is [`ByteSize::UNLIMITED`].
    pub fn max_receive_size(&self) -> ByteSize {
        MAX_RECEIVE_SIZE.or_default(self.max_receive_size)
    }
    pub fn max_recipient_envelope_limit(&self) -> u32 {
        MAX_RECIPIENT_ENVELOPE_LIMIT.or_default(self.max_recipient_envelope_limit)
    }
    pub fn dsn_max_message_attach_size(&self) -> ByteSize {
        DSN_MAX_MESSAGE_ATTACH_SIZE.or_default(self.dsn_max_message_attach_size)
    }
    /// safetyNetHoldTime; zero: the Safety Net is off.
    pub fn safety_net_hold_time(&self) -> Duration {
        SAFETY_NET_HOLD_TIME.or_default(self.safety_net_hold_time).0
    }

    /// The shadow redundancy settings, resolved.
    pub fn shadow_policy(&self) -> ShadowPolicy {
        ShadowPolicy {
            enabled: SHADOW_REDUNDANCY_ENABLED.or_default(self.shadow_redundancy_enabled),
            heartbeat_frequency: SHADOW_HEARTBEAT_FREQUENCY.or_default(self.shadow_heartbeat_frequency).0,
            resubmit_time_span: SHADOW_RESUBMIT_TIME_SPAN.or_default(self.shadow_resubmit_time_span).0,
            auto_discard_interval: SHADOW_MESSAGE_AUTO_DISCARD_INTERVAL
                .or_default(self.shadow_message_auto_discard_interval)
                .0,
            reject_on_failure: REJECT_MESSAGE_ON_SHADOW_FAILURE.or_default(self.reject_message_on_shadow_failure),
        }
    }
}

/// Shadow redundancy (Set-TransportConfig's Shadow* settings), resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShadowPolicy {
    pub enabled: bool,
    pub heartbeat_frequency: Duration,
    pub resubmit_time_span: Duration,
    pub auto_discard_interval: Duration,
    pub reject_on_failure: bool,
}

impl super::SendConnector {
    /// Port for smart hosts without one and for MX hosts.
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(SEND_PORT)
    }
    pub fn connection_timeout_or_default(&self) -> Duration {
        SEND_CONNECTION_TIMEOUT.or_default(self.connection_timeout).0
    }
    pub fn connection_inactivity_timeout_or_default(&self) -> Duration {
        SEND_CONNECTION_INACTIVITY_TIMEOUT.or_default(self.connection_inactivity_timeout).0
    }
    pub fn max_concurrent_connections_or_default(&self) -> u32 {
        SEND_MAX_CONCURRENT_CONNECTIONS.or_default(self.max_concurrent_connections)
    }
    /// Disabled for smart hosts (no MX lookup to protect) and, unless set, with `tls: None`.
    pub fn mta_sts_or_default(&self) -> MtaStsMode {
        if !self.dns_routing {
            return MtaStsMode::Disabled;
        }
        let default = if self.tls == OutboundTls::None { MtaStsMode::Disabled } else { SEND_MTA_STS };
        self.mta_sts.unwrap_or(default)
    }
    /// Disabled for smart hosts (their names are configuration, not MX records) and, unless
    /// set, with `tls: None`.
    pub fn dane_or_default(&self) -> DaneMode {
        if !self.dns_routing {
            return DaneMode::Disabled;
        }
        let default = if self.tls == OutboundTls::None { DaneMode::Disabled } else { SEND_DANE };
        self.dane.unwrap_or(default)
    }
}

impl super::AddressSpace {
    pub fn cost_or_default(&self) -> u32 {
        ADDRESS_SPACE_COST.or_default(self.cost)
    }
}

impl super::LoggingSettings {
    pub fn connectivity_log_enabled(&self) -> bool {
        LOG_CONNECTIVITY.or_default(self.connectivity_log)
    }
    pub fn protocol_log_enabled(&self) -> bool {
        LOG_PROTOCOL.or_default(self.protocol_log)
    }
    /// `None` when files are never deleted by age (`00:00:00`).
    pub fn max_age_or_default(&self) -> Option<Duration> {
        Some(LOG_MAX_AGE.or_default(self.max_age).0).filter(|d| !d.is_zero())
    }
    pub fn max_directory_size_or_default(&self) -> ByteSize {
        LOG_MAX_DIRECTORY_SIZE.or_default(self.max_directory_size)
    }
    pub fn max_file_size_or_default(&self) -> ByteSize {
        LOG_MAX_FILE_SIZE.or_default(self.max_file_size)
    }
    pub fn message_tracking_log_enabled_or_default(&self) -> bool {
        TRACKING_LOG_ENABLED.or_default(self.message_tracking_log_enabled)
    }
    /// `None` when files are never deleted by age (`00:00:00`).
    pub fn message_tracking_log_max_age_or_default(&self) -> Option<Duration> {
        Some(TRACKING_LOG_MAX_AGE.or_default(self.message_tracking_log_max_age).0).filter(|d| !d.is_zero())
    }
    pub fn message_tracking_log_max_directory_size_or_default(&self) -> ByteSize {
        TRACKING_LOG_MAX_DIRECTORY_SIZE.or_default(self.message_tracking_log_max_directory_size)
    }
    pub fn message_tracking_log_max_file_size_or_default(&self) -> ByteSize {
        TRACKING_LOG_MAX_FILE_SIZE.or_default(self.message_tracking_log_max_file_size)
    }
    pub fn message_tracking_log_subject_logging_enabled_or_default(&self) -> bool {
        TRACKING_LOG_SUBJECT_LOGGING_ENABLED.or_default(self.message_tracking_log_subject_logging_enabled)
    }
}

impl TransportFile {
    pub fn max_outbound_connections_or_default(&self) -> u32 {
        MAX_OUTBOUND_CONNECTIONS.or_default(self.max_outbound_connections)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::resolve(self.role, &self.retry)
    }

    pub fn expiration_policy(&self) -> ExpirationPolicy {
        ExpirationPolicy::resolve(self.role, &self.expiration)
    }

    /// The postmaster address: configured, else `postmaster@<first accepted
    /// domain>` (the first that is not a wildcard), else `postmaster@<fqdn>`.
    /// The configured one goes through the same parser validation uses.
    pub fn postmaster(&self) -> Result<Address, ConfiguredAddressError> {
        if let Some(p) = &self.transport_config.postmaster {
            return Address::parse_configured(p);
        }
        let domain = self
            .transport_config
            .accepted_domains
            .iter()
            .map(|d: &AcceptedDomain| d.domain.as_str())
            .find(|d| !d.contains('*'))
            .unwrap_or(&self.fqdn);
        Address::parse_configured(&format!("postmaster@{domain}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AcceptedDomainType, TimeSpan};

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn mailbox_role_defaults_are_the_design_table() {
        let p = RetryPolicy::resolve(Role::Mailbox, &RetrySettings::default());
        assert_eq!(p.queue_glitch_retry_count, 4);
        assert_eq!(p.queue_glitch_retry_interval, s(60));
        assert_eq!(p.transient_failure_retry_count, 6);
        assert_eq!(p.transient_failure_retry_interval, s(5 * 60));
        assert_eq!(p.outbound_connection_failure_retry_interval, s(10 * 60));
        assert_eq!(p.message_retry_interval, s(15 * 60));
        assert_eq!(p.mailbox_delivery_queue_retry_interval, s(5 * 60));
        assert_eq!(p.max_idle_time_before_resubmit, s(12 * 3600));
        assert_eq!(p.queue_max_idle_time, s(3 * 60));
        assert_eq!(p.poison_threshold, 2);
        let e = ExpirationPolicy::resolve(Role::Mailbox, &ExpirationSettings::default());
        assert_eq!(e.delay_notification_time_out, s(4 * 3600));
        assert_eq!(e.message_expiration_time_out, s(2 * 86400));
    }

    #[test]
    fn edge_role_defaults_are_the_design_table() {
        let p = RetryPolicy::resolve(Role::Edge, &RetrySettings::default());
        assert_eq!(p.queue_glitch_retry_count, 4);
        assert_eq!(p.queue_glitch_retry_interval, s(60));
        assert_eq!(p.transient_failure_retry_count, 6);
        assert_eq!(p.transient_failure_retry_interval, s(10 * 60));
        assert_eq!(p.outbound_connection_failure_retry_interval, s(30 * 60));
        assert_eq!(p.message_retry_interval, s(15 * 60));
        assert_eq!(p.mailbox_delivery_queue_retry_interval, s(5 * 60));
        assert_eq!(p.max_idle_time_before_resubmit, s(12 * 3600));
        assert_eq!(p.queue_max_idle_time, s(3 * 60));
        assert_eq!(p.poison_threshold, 2);
        let e = ExpirationPolicy::resolve(Role::Edge, &ExpirationSettings::default());
        assert_eq!(e.delay_notification_time_out, s(4 * 3600));
        assert_eq!(e.message_expiration_time_out, s(2 * 86400));
    }

    #[test]
    fn given_values_win_over_role_defaults_row_by_row() {
        let given = RetrySettings {
            queue_glitch_retry_count: Some(0),
            queue_glitch_retry_interval: Some(TimeSpan::from_secs(7)),
            transient_failure_retry_count: Some(15),
            transient_failure_retry_interval: Some(TimeSpan::from_secs(11)),
            outbound_connection_failure_retry_interval: Some(TimeSpan::from_secs(13)),
            message_retry_interval: Some(TimeSpan::from_secs(17)),
            mailbox_delivery_queue_retry_interval: Some(TimeSpan::from_secs(19)),
            max_idle_time_before_resubmit: Some(TimeSpan::from_secs(23)),
            queue_max_idle_time: Some(TimeSpan::from_secs(29)),
            poison_threshold: Some(9),
        };
        let expected = RetryPolicy {
            queue_glitch_retry_count: 0,
            queue_glitch_retry_interval: s(7),
            transient_failure_retry_count: 15,
            transient_failure_retry_interval: s(11),
            outbound_connection_failure_retry_interval: s(13),
            message_retry_interval: s(17),
            mailbox_delivery_queue_retry_interval: s(19),
            max_idle_time_before_resubmit: s(23),
            queue_max_idle_time: s(29),
            poison_threshold: 9,
        };
        assert_eq!(RetryPolicy::resolve(Role::Mailbox, &given), expected);
        assert_eq!(RetryPolicy::resolve(Role::Edge, &given), expected);

        // One row given, every other row keeps the role default.
        let one =
            RetrySettings { transient_failure_retry_interval: Some(TimeSpan::from_secs(42)), ..Default::default() };
        let edge = RetryPolicy::resolve(Role::Edge, &one);
        assert_eq!(edge, RetryPolicy { transient_failure_retry_interval: s(42), ..RetryPolicy::defaults(Role::Edge) });

        let e = ExpirationPolicy::resolve(
            Role::Edge,
            &ExpirationSettings { message_expiration_time_out: Some(TimeSpan::from_days(7)), ..Default::default() },
        );
        assert_eq!(
            e,
            ExpirationPolicy { delay_notification_time_out: s(4 * 3600), message_expiration_time_out: s(7 * 86400) }
        );
    }

    #[test]
    fn receive_limits_default_to_exchange_values_and_the_org_limit() {
        let l = ReceiveLimits::resolve(&ReceiveSettings::default(), &OrgSettings::default());
        assert_eq!(
            l,
            ReceiveLimits {
                // The connector says 36MB but the organisation's maxReceiveSize (10MB) is smaller.
                max_message_size: 10 << 20,
                max_recipients_per_message: 200,
                connection_inactivity_timeout: s(5 * 60),
                connection_timeout: s(10 * 60),
                max_inbound_connection: 5000,
                max_inbound_connection_per_source: 20,
                max_protocol_errors: 5,
                max_header_size: 256 << 10,
                max_hop_count: 30,
            }
        );
    }

    #[test]
    fn receive_message_size_is_the_smaller_of_connector_and_org() {
        let unlimited_org = OrgSettings { max_receive_size: Some(ByteSize::UNLIMITED), ..Default::default() };
        let l = ReceiveLimits::resolve(&ReceiveSettings::default(), &unlimited_org);
        assert_eq!(l.max_message_size, 36 << 20, "unlimited org: the connector default applies");

        let small = ReceiveSettings { max_message_size: Some(ByteSize::mb(5)), ..Default::default() };
        assert_eq!(ReceiveLimits::resolve(&small, &OrgSettings::default()).max_message_size, 5 << 20);

        let big_org = OrgSettings { max_receive_size: Some(ByteSize::mb(100)), ..Default::default() };
        let big = ReceiveSettings { max_message_size: Some(ByteSize::mb(50)), ..Default::default() };
        assert_eq!(ReceiveLimits::resolve(&big, &big_org).max_message_size, 50 << 20);
        assert_eq!(ReceiveLimits::resolve(&big, &OrgSettings::default()).max_message_size, 10 << 20);
    }

    #[test]
    fn receive_limits_take_given_values() {
        let given = ReceiveSettings {
            max_recipients_per_message: Some(3),
            connection_inactivity_timeout: Some(TimeSpan::from_secs(30)),
            connection_timeout: Some(TimeSpan::from_secs(60)),
            max_inbound_connection: Some(7),
            max_inbound_connection_per_source: Some(2),
            max_protocol_errors: Some(1),
            max_header_size: Some(ByteSize::kb(8)),
            max_hop_count: Some(4),
            ..Default::default()
        };
        let l = ReceiveLimits::resolve(&given, &OrgSettings::default());
        assert_eq!(
            (l.max_recipients_per_message, l.connection_inactivity_timeout, l.connection_timeout),
            (3, s(30), s(60))
        );
        assert_eq!((l.max_inbound_connection, l.max_inbound_connection_per_source, l.max_protocol_errors), (7, 2, 1));
        assert_eq!((l.max_header_size, l.max_hop_count), (8 << 10, 4));
    }

    #[test]
    fn org_settings_defaults_and_given_values() {
        let d = OrgSettings::default();
        assert!(d.internal_delay_dsn() && d.external_delay_dsn());
        assert_eq!(d.max_send_size(), ByteSize::mb(10));
        assert_eq!(d.max_receive_size(), ByteSize::mb(10));
        assert_eq!(d.max_recipient_envelope_limit(), 500);
        assert_eq!(d.dsn_max_message_attach_size(), ByteSize::mb(10));

        let g = OrgSettings {
            internal_delay_dsn_enabled: Some(false),
            external_delay_dsn_enabled: Some(false),
            max_send_size: Some(ByteSize::UNLIMITED),
            max_receive_size: Some(ByteSize::mb(1)),
            max_recipient_envelope_limit: Some(12),
            dsn_max_message_attach_size: Some(ByteSize::kb(64)),
            ..Default::default()
        };
        assert!(!g.internal_delay_dsn() && !g.external_delay_dsn());
        assert_eq!(g.max_send_size(), ByteSize::UNLIMITED);
        assert_eq!(g.max_receive_size(), ByteSize::mb(1));
        assert_eq!(g.max_recipient_envelope_limit(), 12);
        assert_eq!(g.dsn_max_message_attach_size(), ByteSize::kb(64));
    }

    fn file(accepted: &[&str], postmaster: Option<&str>) -> TransportFile {
        let mut f: TransportFile =
            serde_yaml::from_str("{serverName: s, fqdn: mail.example.net, queueDirectory: q}").unwrap();
        f.transport_config.accepted_domains = accepted
            .iter()
            .map(|d| AcceptedDomain { domain: d.to_string(), domain_type: AcceptedDomainType::Authoritative })
            .collect();
        f.transport_config.postmaster = postmaster.map(str::to_string);
        f
    }

    #[test]
    fn postmaster_is_configured_else_first_plain_accepted_domain_else_fqdn() {
        let postmaster = |domains: &[&str], configured| file(domains, configured).postmaster().unwrap();
        assert_eq!(postmaster(&["a.test"], Some("pm@b.test")).as_str(), "pm@b.test");
        assert_eq!(postmaster(&["*.wild.test", "a.test", "b.test"], None).as_str(), "postmaster@a.test");
        assert_eq!(postmaster(&["*.wild.test"], None).as_str(), "postmaster@mail.example.net");
        assert_eq!(postmaster(&[], None).as_str(), "postmaster@mail.example.net");
        assert!(file(&[], Some("nobody")).postmaster().is_err());
    }

    #[test]
    fn send_connector_and_logging_defaults() {
        let c: crate::config::SendConnector =
            serde_yaml::from_str("{name: x, addressSpaces: [{domain: '*'}], dnsRouting: true}").unwrap();
        assert_eq!(c.port_or_default(), 25);
        assert_eq!(c.connection_timeout_or_default(), s(60));
        assert_eq!(c.max_concurrent_connections_or_default(), 20);
        assert_eq!(c.address_spaces[0].cost_or_default(), 1);

        let l = crate::config::LoggingSettings::default();
        assert!(l.connectivity_log_enabled() && l.protocol_log_enabled());
        assert_eq!(l.max_age_or_default(), Some(s(30 * 86400)));
        assert_eq!(l.max_directory_size_or_default(), ByteSize::mb(250));
        assert_eq!(l.max_file_size_or_default(), ByteSize::mb(10));
        let never = crate::config::LoggingSettings { max_age: Some(TimeSpan::from_secs(0)), ..Default::default() };
        assert_eq!(never.max_age_or_default(), None);
    }
}
