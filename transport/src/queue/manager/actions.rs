//! The administrator's levers (docs/design.md §4, reference/exchange.md §2.6), each
//! with Exchange's preconditions: a refused action says why in a sentence (the
//! admin API answers 409 with it). Also the poison rule: a message whose
//! processing panicked `poisonThreshold` times goes to the Poison queue.
use super::state::{Pending, QueueId, Redirect, Timer};
use super::QueueManager;
use crate::api::TrackingEvent;
use crate::config::host_port::HostPort;
use crate::envelope::{MessageId, RecipientStatus};
use crate::logs::TrackingSource;
use crate::queue::body::BodyReader;
use crate::routing::{DeliveryType, NextHop};
use tracing::{error, info, warn};

/// Exchange's wording for recipients of a message an administrator removed.
const REMOVED_REPLY: &str = "550 4.3.2 QUEUE.Admin; message deleted by administrative action";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionError {
    /// No such queue or message (404).
    #[error("{0}")]
    NotFound(String),
    /// Not allowed in the current state (409); the sentence says why.
    #[error("{0}")]
    Refused(String),
    /// The request itself is malformed (400).
    #[error("{0}")]
    Invalid(String),
}

impl QueueManager {
    fn queue_id(&self, id: &str) -> Result<QueueId, ActionError> {
        let qid = QueueId::parse(id).ok_or_else(|| ActionError::NotFound(format!("There is no queue {id}.")))?;
        if self.state().queues.contains_key(&qid) {
            Ok(qid)
        } else {
            Err(ActionError::NotFound(format!("There is no queue {id}.")))
        }
    }

    /// Retry-Queue: an immediate connection attempt for a queue in Retry (a
    /// failure starts a new interval). With `resubmit`, the queue's messages
    /// go back through the categorizer (a queue in Retry, or Unreachable).
    pub fn retry_queue(&self, id: &str, resubmit: bool) -> Result<usize, ActionError> {
        let qid = self.queue_id(id)?;
        let (in_retry, status) = {
            let state = self.state();
            let q = &state.queues[&qid];
            (q.retry.in_retry(), q.status())
        };
        match (qid, resubmit) {
            (QueueId::Poison, _) => Err(ActionError::Refused(
                "The Poison queue cannot be retried or resubmitted; use resume-message on each message.".into(),
            )),
            (QueueId::Submission, _) => Err(ActionError::Refused(
                "The Submission queue cannot be retried; it is processed continuously.".into(),
            )),
            (QueueId::Unreachable, true) => Ok(self.resubmit_queue(qid)),
            (QueueId::Unreachable, false) => Err(ActionError::Refused(
                "The Unreachable queue can only be retried with --resubmit (Retry-Queue -Resubmit).".into(),
            )),
            (_, _) if !in_retry => Err(ActionError::Refused(format!(
                "Queue {qid} is {status:?}, not in Retry; Retry-Queue applies only to a queue in Retry."
            ))),
            (_, true) => Ok(self.resubmit_queue(qid)),
            (_, false) => {
                let now = self.now_ms();
                let mut state = self.state();
                let count = {
                    let Some(q) = state.queues.get_mut(&qid) else { return Ok(0) };
                    // Replaces the scheduled attempt; a failure restarts the interval.
                    q.retry.next_retry_ms = Some(now);
                    q.items.len()
                };
                state.add_timer(now, Timer::QueueRetry(qid));
                Ok(count)
            }
        }
    }

    /// Suspend-Queue: nothing leaves the queue (new messages still enter;
    /// transmissions in flight finish).
    pub fn suspend_queue(&self, id: &str) -> Result<(), ActionError> {
        let qid = self.queue_id(id)?;
        if qid == QueueId::Poison {
            return Err(ActionError::Refused("The Poison queue is always suspended.".into()));
        }
        let mut state = self.state();
        let Some(q) = state.queues.get_mut(&qid) else { return Ok(()) };
        if q.suspended {
            return Err(ActionError::Refused(format!("Queue {qid} is already suspended.")));
        }
        q.suspended = true;
        self.persist_queue_locked(&state, qid);
        info!(queue = %qid, "queue suspended");
        Ok(())
    }

    /// Resume-Queue: only a suspended queue; its suspended messages stay suspended.
    pub fn resume_queue(&self, id: &str) -> Result<(), ActionError> {
        let qid = self.queue_id(id)?;
        let waiting: Vec<(MessageId, Vec<usize>)> = {
            let mut state = self.state();
            let Some(q) = state.queues.get_mut(&qid) else { return Ok(()) };
            if !q.suspended {
                return Err(ActionError::Refused(format!(
                    "Queue {qid} is not suspended; Resume-Queue applies only to a suspended queue."
                )));
            }
            q.suspended = false;
            self.persist_queue_locked(&state, qid);
            self.kick_locked(&mut state, qid);
            info!(queue = %qid, "queue resumed");
            if qid != QueueId::Submission {
                return Ok(());
            }
            let ids: Vec<MessageId> = state.queues[&qid].items.keys().copied().collect();
            ids.into_iter().filter_map(|id| state.take_item(qid, id).map(|i| (id, i.recipients))).collect()
        };
        // The categorizer picks up what waited in Submission.
        for (id, recipients) in waiting {
            self.categorize(id, Some(recipients));
        }
        Ok(())
    }

    /// Suspend-Message: the message stays in its queues but is not sent. In
    /// flight: PendingSuspend, applied if the transmission leaves it queued.
    pub fn suspend_message(&self, id: u64) -> Result<(), ActionError> {
        let id = MessageId(id);
        let write = {
            let mut state = self.state();
            let active = self.is_active(&state, id);
            let Some(msg) = state.messages.get_mut(&id) else { return Err(not_found(id)) };
            if msg.env.state.poisoned {
                return Err(ActionError::Refused(format!(
                    "Message {id} is in the Poison queue, where every message is already suspended."
                )));
            }
            if msg.env.state.suspended {
                return Err(ActionError::Refused(format!("Message {id} is already suspended.")));
            }
            if active {
                msg.pending = Some(Pending::Suspend);
                return Ok(());
            }
            msg.env.state.suspended = true;
            self.persist_locked(&mut state, id)
        };
        info!(message = %id, "message suspended");
        spawn_write(write);
        Ok(())
    }

    /// Resume-Message: only a suspended message; a poison message is
    /// resubmitted to the categorizer.
    pub fn resume_message(&self, id: u64) -> Result<(), ActionError> {
        let id = MessageId(id);
        let poisoned = {
            let mut state = self.state();
            let Some(msg) = state.messages.get_mut(&id) else { return Err(not_found(id)) };
            if !msg.held() {
                return Err(ActionError::Refused(format!(
                    "Message {id} is not suspended; Resume-Message applies only to a suspended message."
                )));
            }
            let poisoned = msg.env.state.poisoned;
            msg.env.state.suspended = false;
            msg.env.state.poisoned = false;
            msg.env.state.crash_count = 0;
            if poisoned {
                let _ = state.take_item(QueueId::Poison, id);
            } else {
                let queues = msg.queues.clone();
                for qid in queues {
                    if let Some(q) = state.queues.get_mut(&qid) {
                        if q.items.contains_key(&id) {
                            q.make_ready(id);
                        }
                    }
                    self.kick_locked(&mut state, qid);
                }
            }
            // It may have passed its expiry while held.
            self.arm_message_timer(&mut state, id, None);
            spawn_write(self.persist_locked(&mut state, id));
            poisoned
        };
        info!(message = %id, poisoned, "message resumed");
        if poisoned {
            self.categorize(id, None);
        }
        Ok(())
    }

    /// Remove-Message, with or without an NDR; not from the Submission queue.
    /// In flight: PendingRemove, applied if the transmission fails.
    pub async fn remove_message(&self, id: u64, with_ndr: bool) -> Result<(), ActionError> {
        let id = MessageId(id);
        {
            let mut state = self.state();
            let active = self.is_active(&state, id);
            let Some(msg) = state.messages.get_mut(&id) else { return Err(not_found(id)) };
            if msg.queues.contains(&QueueId::Submission) {
                return Err(ActionError::Refused(format!(
                    "Message {id} is in the Submission queue; Remove-Message is not allowed there."
                )));
            }
            if active {
                msg.pending = Some(Pending::Remove { with_ndr });
                return Ok(());
            }
        }
        self.remove_now(id, with_ndr).await;
        Ok(())
    }

    /// Export-Message: a copy of a suspended (or poison) message as .eml bytes,
    /// to be read a chunk at a time.
    pub fn export_message(&self, id: u64) -> Result<BodyReader, ActionError> {
        let id = MessageId(id);
        {
            let state = self.state();
            let Some(msg) = state.messages.get(&id) else { return Err(not_found(id)) };
            if !msg.held() {
                return Err(ActionError::Refused(format!(
                    "Message {id} is not suspended; suspend it before exporting it."
                )));
            }
        }
        self.inner.store.open_body(id).map_err(|e| ActionError::NotFound(format!("Message {id}: {e}")))
    }

    /// Redirect-Message: every queued message that is not suspended or poison
    /// is handed over SMTP to `target` (`host:port`), and removed here only
    /// after the target's 250. New mail is refused meanwhile (the control side
    /// watches [`QueueManager::redirecting`]).
    pub fn redirect(&self, target: &str) -> Result<usize, ActionError> {
        let target = match HostPort::parse(target) {
            Ok(parsed) if parsed.port.is_some() => parsed,
            Ok(_) => {
                return Err(ActionError::Invalid(format!("Redirect target {target:?} has no port: write host:port.")))
            }
            Err(e) => return Err(ActionError::Invalid(format!("Redirect target {e}."))),
        };
        let hop = NextHop {
            delivery_type: DeliveryType::SmartHostConnectorDelivery,
            next_hop_domain: target.to_string(),
            connector: None,
        };
        let queues: Vec<QueueId> = {
            let mut state = self.state();
            if let Some(r) = &state.redirect {
                if r.hop != hop {
                    return Err(ActionError::Refused(format!(
                        "A redirect to {} is in progress; wait for it to finish.",
                        r.hop.next_hop_domain
                    )));
                }
            }
            state.redirect = Some(Redirect { hop });
            state.queues.keys().copied().filter(|q| !matches!(q, QueueId::Poison)).collect()
        };
        self.inner.redirecting.send_replace(true);
        info!(%target, "Redirect-Message started");
        let mut moved = 0;
        for qid in queues {
            if qid == QueueId::Submission {
                continue;
            }
            moved += self.resubmit_queue(qid);
        }
        self.check_redirect_done();
        Ok(moved)
    }

    /// Messages a redirect still has to hand over, when one is in progress.
    pub fn redirect_remaining(&self) -> Option<(String, u64)> {
        let state = self.state();
        let r = state.redirect.as_ref()?;
        let remaining = state.messages.values().filter(|m| !m.held() && !m.queues.is_empty()).count();
        Some((r.hop.next_hop_domain.clone(), remaining as u64))
    }

    /// Ends the redirect once nothing movable is left.
    pub(super) fn check_redirect_done(&self) {
        let done = {
            let mut state = self.state();
            if state.redirect.is_none() {
                return;
            }
            let remaining = state.messages.values().any(|m| !m.held() && !m.queues.is_empty());
            if !remaining {
                state.redirect = None;
            }
            !remaining
        };
        if done {
            info!("Redirect-Message finished: no movable message left");
            self.inner.redirecting.send_replace(false);
        }
    }

    /// Applies an admin action that waited for a transmission to end.
    pub(super) fn apply_pending(&self, id: MessageId, pending: Pending) {
        match pending {
            Pending::Suspend => {
                let write = {
                    let mut state = self.state();
                    let Some(msg) = state.messages.get_mut(&id) else { return };
                    if msg.queues.is_empty() {
                        return;
                    }
                    msg.env.state.suspended = true;
                    self.persist_locked(&mut state, id)
                };
                spawn_write(write);
            }
            Pending::Remove { with_ndr } => {
                let this = self.clone();
                tokio::spawn(async move { this.remove_now(id, with_ndr).await });
            }
        }
    }

    async fn remove_now(&self, id: MessageId, with_ndr: bool) {
        let failures: Vec<(usize, String)> = {
            let mut state = self.state();
            let Some(msg) = state.messages.get(&id) else { return };
            let queues = msg.queues.clone();
            for qid in queues {
                let _ = state.take_item(qid, id);
                self.note_idle_locked(&mut state, qid);
            }
            let Some(msg) = state.messages.get_mut(&id) else { return };
            let pending: Vec<usize> = msg
                .env
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| r.status == RecipientStatus::Pending)
                .map(|(i, _)| i)
                .collect();
            for &i in &pending {
                msg.env.recipients[i].status = RecipientStatus::Failed { reply: REMOVED_REPLY.into() };
            }
            pending.into_iter().map(|i| (i, REMOVED_REPLY.to_string())).collect()
        };
        info!(message = %id, with_ndr, "message removed by an administrator");
        if let Some(env) = self.envelope(id) {
            // With a report the recipients failed; without one the message was dropped.
            let event = if with_ndr { TrackingEvent::Fail } else { TrackingEvent::Drop };
            let statuses = failures.iter().map(|(i, reply)| (*i, reply.as_str().into()));
            self.tracking().record(event, TrackingSource::Admin, &env).recipients(statuses).write();
        }
        if with_ndr && !failures.is_empty() {
            self.send_failure_dsn(id, &failures, None).await;
        }
        self.persist(id).await;
        self.check_redirect_done();
    }

    /// Processing message `id` panicked: one more crash; at poisonThreshold it
    /// goes to the Poison queue (suspended, never expired), else it is retried
    /// after messageRetryInterval.
    pub(super) fn crashed(&self, id: MessageId, doing: &str) {
        let config = self.config();
        let now = self.now_ms();
        let write = {
            let mut state = self.state();
            let Some(msg) = state.messages.get_mut(&id) else { return };
            msg.env.state.crash_count += 1;
            let count = msg.env.state.crash_count;
            error!(message = %id, count, "processing the message crashed while {doing}");
            if count >= config.retry.poison_threshold {
                msg.env.state.poisoned = true;
                msg.pending = None;
                let queues = msg.queues.clone();
                for qid in queues {
                    if let Some(q) = state.queues.get_mut(&qid) {
                        q.items.remove(&id);
                    }
                    if let Some(m) = state.messages.get_mut(&id) {
                        m.queues.retain(|x| *x != qid);
                    }
                    self.note_idle_locked(&mut state, qid);
                }
                let pending = super::pending_indexes(&state, id);
                if let Some(msg) = state.messages.get(&id) {
                    let reason = format!("processing the message crashed {count} times, last while {doing}");
                    let pending = pending.iter().map(|i| (*i, reason.as_str().into()));
                    self.tracking()
                        .record(TrackingEvent::PoisonMessage, TrackingSource::Queue, &msg.env)
                        .recipients(pending)
                        .write();
                }
                state.add_item(QueueId::Poison, id, pending, now);
                error!(event_id = 10001, message = %id, "PoisonMessage: message moved to the Poison queue");
            } else {
                let at = now + config.retry.message_retry_interval.as_millis() as u64;
                msg.env.state.retry_at_ms = Some(at);
                let queues = msg.queues.clone();
                for qid in queues {
                    if let Some(item) = state.queues.get_mut(&qid).and_then(|q| q.items.get_mut(&id)) {
                        item.active = false;
                        item.retry_at_ms = Some(at);
                        state.add_timer(at, Timer::ItemRetry(qid, id));
                    }
                }
            }
            self.persist_locked(&mut state, id)
        };
        spawn_write(write);
    }

    fn is_active(&self, state: &super::state::QueueState, id: MessageId) -> bool {
        state.messages.get(&id).is_some_and(|m| {
            m.queues.iter().any(|q| state.queues.get(q).and_then(|q| q.items.get(&id)).is_some_and(|i| i.active))
        })
    }
}

fn not_found(id: MessageId) -> ActionError {
    ActionError::NotFound(format!("There is no message {id}."))
}

/// Waits for a store write in the background (its failure is logged).
fn spawn_write(
    write: Option<impl std::future::Future<Output = Result<(), crate::queue::StoreError>> + Send + 'static>,
) {
    if let Some(write) = write {
        tokio::spawn(async move {
            if let Err(e) = write.await {
                warn!(error = %e, "could not record a message's queue state");
            }
        });
    }
}
