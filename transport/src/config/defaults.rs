//! DESIGN §4 defaults per role, the Exchange receive-connector defaults, and the
//! resolved policies the server runs with (file value, or default).
use super::{ByteSize, ExpirationSettings, OrgSettings, ReceiveSettings, RetrySettings, Role, TransportFile};
use std::time::Duration;

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
    pub fn resolve(_role: Role, _s: &RetrySettings) -> Self {
        todo!("config helper")
    }
}

impl ExpirationPolicy {
    pub fn resolve(_role: Role, _s: &ExpirationSettings) -> Self {
        todo!("config helper")
    }
}

impl ReceiveLimits {
    pub fn resolve(_s: &ReceiveSettings, _org: &OrgSettings) -> Self {
        todo!("config helper")
    }
}

impl OrgSettings {
    /// internalDelayDSNEnabled, default true.
    pub fn internal_delay_dsn(&self) -> bool {
        todo!("config helper")
    }
    /// externalDelayDSNEnabled, default true.
    pub fn external_delay_dsn(&self) -> bool {
        todo!("config helper")
    }
    pub fn max_send_size(&self) -> ByteSize {
        todo!("config helper")
    }
    pub fn max_recipient_envelope_limit(&self) -> u32 {
        todo!("config helper")
    }
    pub fn dsn_max_message_attach_size(&self) -> ByteSize {
        todo!("config helper")
    }
}

impl TransportFile {
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::resolve(self.role, &self.retry)
    }

    pub fn expiration_policy(&self) -> ExpirationPolicy {
        ExpirationPolicy::resolve(self.role, &self.expiration)
    }

    /// The postmaster address: configured, else `postmaster@<first accepted
    /// domain>`, else `postmaster@<fqdn>`.
    pub fn postmaster(&self) -> String {
        todo!("config helper")
    }
}
