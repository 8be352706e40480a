//! DESIGN §4 defaults. STUB: the config helper replaces this file.
use super::{ExpirationSettings, RetrySettings, Role};
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

impl RetryPolicy {
    pub fn resolve(_role: Role, _s: &RetrySettings) -> Self {
        unimplemented!()
    }
}

impl ExpirationPolicy {
    pub fn resolve(_role: Role, _s: &ExpirationSettings) -> Self {
        unimplemented!()
    }
}
