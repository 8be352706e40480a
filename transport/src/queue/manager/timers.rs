//! Everything time-driven (docs/design.md §4): a queue's next connection attempt,
//! message-level retries, the delay DSN, expiry with NDR, removal of idle empty
//! queues and auto-resubmit of queues stuck in Retry. Timers are checked again
//! when they fire, against the configuration in force then.
use super::state::Timer;
use super::QueueManager;
use crate::api::TrackingEvent;
use crate::envelope::{MessageId, RecipientStatus};
use crate::logs::TrackingSource;
use crate::queue::retry::connection_retry_interval;
use crate::routing::DeliveryType;
use tracing::{debug, info};

/// What an expired message's recipients fail with (Exchange's wording).
pub(super) const EXPIRED_REPLY: &str = "550 4.4.7 QUEUE.Expired; message expired";

impl QueueManager {
    /// Fires every due timer; returns when the next one is due.
    pub(super) fn fire_due_timers(&self) -> Option<u64> {
        let now = self.now_ms();
        let due: Vec<Timer> = {
            let mut state = self.state();
            let mut due = Vec::new();
            while let Some(&(at, timer)) = state.timers.first() {
                if at > now {
                    break;
                }
                state.timers.pop_first();
                due.push(timer);
            }
            due
        };
        for timer in due {
            self.fire(timer, now);
        }
        self.state().timers.first().map(|(at, _)| *at)
    }

    fn fire(&self, timer: Timer, now: u64) {
        let config = self.config();
        match timer {
            Timer::QueueRetry(qid) => {
                let mut state = self.state();
                let Some(q) = state.queues.get_mut(&qid) else { return };
                if q.retry.next_retry_ms.is_none_or(|t| t > now) {
                    return;
                }
                if q.items.is_empty() {
                    // Nothing left to deliver (expired, removed): the queue leaves Retry.
                    q.retry = Default::default();
                    self.persist_queue_locked(&state, qid);
                    self.note_idle_locked(&mut state, qid);
                    return;
                }
                // Every item waits for this attempt: make them eligible again.
                let ids: Vec<MessageId> = q.items.iter().filter(|(_, i)| !i.active).map(|(id, _)| *id).collect();
                q.ready = ids.into_iter().collect();
                self.kick_locked(&mut state, qid);
            }
            Timer::QueueIdle(qid) => {
                let idle = config.retry.queue_max_idle_time.as_millis() as u64;
                let mut state = self.state();
                let Some(q) = state.queues.get(&qid) else { return };
                let empty = q.items.is_empty() && q.connections == 0 && !q.retry.in_retry() && !q.suspended;
                if !empty || q.hop.is_none() || now < q.last_activity_ms + idle {
                    return;
                }
                if let Some(q) = state.queues.remove(&qid) {
                    if let Some(hop) = q.hop {
                        debug!(queue = %qid, next_hop = %hop, "empty delivery queue removed after queueMaxIdleTime");
                        state.by_hop.remove(&hop);
                    }
                }
            }
            Timer::Resubmit(qid) => {
                let limit = config.retry.max_idle_time_before_resubmit.as_millis() as u64;
                let due = {
                    let mut state = self.state();
                    let Some(q) = state.queues.get(&qid) else { return };
                    let Some(since) = q.retry.idle_since_ms.filter(|_| q.retry.in_retry()) else { return };
                    if now < since + limit {
                        state.add_timer(since + limit, Timer::Resubmit(qid));
                        return;
                    }
                    !q.suspended
                };
                if due {
                    let n = self.resubmit_queue(qid);
                    info!(queue = %qid, messages = n, "queue in Retry delivered nothing for maxIdleTimeBeforeResubmit: resubmitted");
                }
            }
            Timer::ItemRetry(qid, id) => {
                let mut state = self.state();
                if let Some(m) = state.messages.get_mut(&id) {
                    if m.env.state.retry_at_ms.is_some_and(|t| t <= now) {
                        m.env.state.retry_at_ms = None;
                    }
                }
                let Some(q) = state.queues.get_mut(&qid) else { return };
                let Some(item) = q.items.get_mut(&id) else { return };
                if item.active || item.retry_at_ms.is_none_or(|t| t > now) {
                    return;
                }
                item.retry_at_ms = None;
                q.make_ready(id);
                self.kick_locked(&mut state, qid);
            }
            Timer::Message(id) => {
                // Each step does nothing unless it is due now.
                let this = self.clone();
                tokio::spawn(async move {
                    this.delay_dsn(id).await;
                    this.expire(id).await;
                    let mut state = this.state();
                    this.arm_message_timer(&mut state, id, Some(now));
                });
            }
        }
    }

    /// messageExpirationTimeOut reached: every pending recipient fails with
    /// 4.4.7 and an NDR, and the message leaves every queue. Poison and
    /// suspended messages do not expire (an administrator holds them).
    async fn expire(&self, id: MessageId) {
        let config = self.config();
        let now = self.now_ms();
        let (hop, failures) = {
            let mut state = self.state();
            let Some(msg) = state.messages.get(&id) else { return };
            let due = msg.env.arrival_ms + config.expiration.message_expiration_time_out.as_millis() as u64;
            if now < due || msg.held() {
                return;
            }
            let queues = msg.queues.clone();
            let active =
                queues.iter().any(|q| state.queues.get(q).and_then(|q| q.items.get(&id)).is_some_and(|i| i.active));
            if active {
                // Being transmitted: look again in a minute.
                state.add_timer(now + 60_000, Timer::Message(id));
                return;
            }
            // The next hop it waited for, for the metrics (None in Unreachable).
            let hop = queues.iter().find_map(|q| state.queues.get(q)?.hop.clone());
            let hop_error = state.hop_error(id);
            for qid in queues {
                let _ = state.take_item(qid, id);
                self.note_idle_locked(&mut state, qid);
            }
            let Some(msg) = state.messages.get(&id) else { return };
            let failures = msg
                .env
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| r.status == RecipientStatus::Pending)
                .map(|(i, r)| {
                    let reply = match r.last_error.as_deref().or(hop_error.as_deref()) {
                        Some(last) => format!("{EXPIRED_REPLY} (last error: {last})"),
                        None => EXPIRED_REPLY.to_string(),
                    };
                    (i, reply)
                })
                .collect::<Vec<_>>();
            (hop, failures)
        };
        info!(message = %id, recipients = failures.len(), "message expired");
        let why = (TrackingEvent::Expire, TrackingSource::Queue);
        self.fail_recipients(id, failures, None, hop.as_ref(), why).await;
    }

    /// After a reload: queues in Retry get their next attempt from the new
    /// intervals (counted from the last attempt); message timers are added
    /// again for the new timeouts (stale ones find nothing due and do nothing).
    pub(super) fn reschedule_after_reload(&self) {
        let config = self.config();
        let mut state = self.state();
        let mut changed = Vec::new();
        for (qid, q) in state.queues.iter_mut() {
            if !q.retry.in_retry() {
                continue;
            }
            let (Some(last), Some(_)) = (q.retry.last_retry_ms, q.retry.next_retry_ms) else { continue };
            let mailbox = q.hop.as_ref().is_some_and(|h| h.delivery_type == DeliveryType::SmtpDeliveryToMailbox);
            let gap = connection_retry_interval(&config.retry, q.retry.failures, mailbox);
            q.retry.next_retry_ms = Some(last + gap.as_millis() as u64);
            changed.push((*qid, last + gap.as_millis() as u64));
        }
        for (qid, at) in changed {
            state.add_timer(at, Timer::QueueRetry(qid));
            self.persist_queue_locked(&state, qid);
        }
        let ids: Vec<MessageId> = state.messages.keys().copied().collect();
        for id in ids {
            self.arm_message_timer(&mut state, id, None);
        }
        // maxOutboundConnections may have grown.
        self.admit_waiting_locked(&mut state);
    }
}
