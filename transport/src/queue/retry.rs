//! When a delivery queue tries its next hop again after connection failures
//! (docs/design.md §4, seed 002): `queueGlitchRetryCount` quick retries
//! `queueGlitchRetryInterval` apart, then `transientFailureRetryCount` retries
//! `transientFailureRetryInterval` apart, then every
//! `outboundConnectionFailureRetryInterval` until the messages expire. Queues to
//! the local mailbox hop always use `mailboxDeliveryQueueRetryInterval`.
use crate::config::RetryPolicy;
use std::time::Duration;

/// The gap after the `failures`-th consecutive connection failure (1-based).
pub fn connection_retry_interval(policy: &RetryPolicy, failures: u32, mailbox_hop: bool) -> Duration {
    if mailbox_hop {
        return policy.mailbox_delivery_queue_retry_interval;
    }
    let glitch = policy.queue_glitch_retry_count;
    let transient = policy.transient_failure_retry_count;
    if failures <= glitch {
        policy.queue_glitch_retry_interval
    } else if failures <= glitch + transient {
        policy.transient_failure_retry_interval
    } else {
        policy.outbound_connection_failure_retry_interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(glitch: u32, transient: u32) -> RetryPolicy {
        RetryPolicy {
            queue_glitch_retry_count: glitch,
            queue_glitch_retry_interval: Duration::from_secs(60),
            transient_failure_retry_count: transient,
            transient_failure_retry_interval: Duration::from_secs(300),
            outbound_connection_failure_retry_interval: Duration::from_secs(600),
            message_retry_interval: Duration::from_secs(900),
            mailbox_delivery_queue_retry_interval: Duration::from_secs(301),
            max_idle_time_before_resubmit: Duration::from_secs(12 * 3600),
            queue_max_idle_time: Duration::from_secs(180),
            poison_threshold: 2,
        }
    }

    #[test]
    fn tiers_follow_each_other() {
        let p = policy(4, 6);
        let gaps: Vec<u64> = (1..=12).map(|n| connection_retry_interval(&p, n, false).as_secs()).collect();
        assert_eq!(gaps, [60, 60, 60, 60, 300, 300, 300, 300, 300, 300, 600, 600]);
    }

    #[test]
    fn zero_counts_skip_tiers() {
        let p = policy(0, 0);
        assert_eq!(connection_retry_interval(&p, 1, false).as_secs(), 600);
        let p = policy(2, 0);
        assert_eq!(connection_retry_interval(&p, 3, false).as_secs(), 600);
    }

    #[test]
    fn mailbox_hops_use_their_own_interval() {
        let p = policy(4, 6);
        assert_eq!(connection_retry_interval(&p, 1, true).as_secs(), 301);
        assert_eq!(connection_retry_interval(&p, 50, true).as_secs(), 301);
    }
}
