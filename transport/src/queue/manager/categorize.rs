//! The Submission queue and the categorizer: each pending recipient goes to
//! the delivery queue of its next hop (or Unreachable), after the
//! organisation's recipient limit and the send size limits are checked.
use super::state::{QueueId, QueueState};
use super::{pending_indexes, QueueManager, RuntimeConfig};
use crate::api::TrackingEvent;
use crate::envelope::{Envelope, MessageId, Source};
use crate::logs::TrackingSource;
use crate::routing::{NextHop, Route};
use std::panic::AssertUnwindSafe;
use tracing::{debug, warn};

/// Exchange's categorizer refusal for too many recipients.
const RECIPIENT_LIMIT_REPLY: &str = "550 5.5.3 RESOLVER.ADR.RecipLimit; too many recipients";

impl QueueManager {
    /// Routes a message's pending recipients (or only `only`, e.g. the part a
    /// resubmitted queue held) to delivery queues. While Submission is
    /// suspended the message waits there instead.
    pub(super) fn categorize(&self, id: MessageId, only: Option<Vec<usize>>) {
        let config = self.config();
        let now = self.now_ms();
        let (env, wanted, redirect) = {
            let mut state = self.state();
            let wanted = match only {
                Some(w) => w,
                None => pending_indexes(&state, id),
            };
            if !state.messages.contains_key(&id) {
                return;
            }
            if state.queues.get(&QueueId::Submission).is_some_and(|q| q.suspended) {
                state.add_item(QueueId::Submission, id, wanted, now);
                return;
            }
            let redirect = state.redirect.as_ref().map(|r| r.hop.clone());
            let env = state.messages.get(&id).map(|m| m.env.clone());
            match env {
                Some(env) => (env, wanted, redirect),
                None => return,
            }
        };
        // Routing is pure, but a panic in it must cost this message a crash
        // count, not the session or the server.
        let routed = std::panic::catch_unwind(AssertUnwindSafe(|| route(&config, &env, &wanted, redirect.as_ref())));
        let (routes, refusals) = match routed {
            Ok(r) => r,
            Err(_) => {
                self.crashed(id, "categorizing");
                return;
            }
        };
        let mut kicked = Vec::new();
        let finished = {
            let mut state = self.state();
            // Leaving Submission (if it was waiting there).
            let _ = state.take_item(QueueId::Submission, id);
            for (route, recipients) in routes {
                let qid = match route {
                    Route::Hop(hop) => state.queue_for_hop(&hop, now),
                    Route::Unreachable(reason) => {
                        if let Some(msg) = state.messages.get_mut(&id) {
                            for &i in &recipients {
                                if let Some(r) = msg.env.recipients.get_mut(i) {
                                    r.last_error = Some(reason.as_str().into());
                                }
                            }
                            msg.env.state.last_error = Some(reason.as_str().into());
                        }
                        debug!(message = %id, %reason, "no route: Unreachable queue");
                        QueueId::Unreachable
                    }
                };
                if state.add_item(qid, id, recipients, now) {
                    kicked.push(qid);
                }
            }
            for qid in kicked {
                self.kick_locked(&mut state, qid);
            }
            state.messages.get(&id).is_some_and(|m| m.queues.is_empty())
        };
        if !refusals.is_empty() {
            let this = self.clone();
            let why = (TrackingEvent::Fail, TrackingSource::Routing);
            tokio::spawn(async move { this.fail_recipients(id, refusals, None, None, why).await });
        } else if finished {
            // Nothing left to route (every recipient already done): forget it.
            let this = self.clone();
            tokio::spawn(async move { this.persist(id).await });
        }
    }

    /// Sends the items of a queue back through the categorizer (Retry-Queue
    /// -Resubmit, maxIdleTimeBeforeResubmit, routing changes for Unreachable).
    /// Items being transmitted and suspended messages stay.
    pub(super) fn resubmit_queue(&self, qid: QueueId) -> usize {
        // A Redirect-Message moves queues this way too; its REDIRECT records tell that.
        let (redirecting, taken): (bool, Vec<(MessageId, Vec<usize>)>) = {
            let mut state = self.state();
            let ids: Vec<MessageId> = match state.queues.get(&qid) {
                Some(q) => q.items.iter().filter(|(_, i)| !i.active).map(|(id, _)| *id).collect(),
                None => return 0,
            };
            let mut taken = Vec::new();
            for id in ids {
                if state.messages.get(&id).is_some_and(|m| m.held()) {
                    continue;
                }
                if let Some(item) = state.take_item(qid, id) {
                    taken.push((id, item.recipients));
                }
            }
            if let Some(q) = state.queues.get_mut(&qid) {
                // The queue keeps its retry schedule (what comes back to it waits
                // for the next attempt); the idle clock of the next resubmit restarts.
                q.ready.clear();
                if q.retry.in_retry() {
                    q.retry.idle_since_ms = Some(self.now_ms());
                }
            }
            self.persist_queue_locked(&state, qid);
            self.note_idle_locked(&mut state, qid);
            (state.redirect.is_some(), taken)
        };
        let count = taken.len();
        for (id, recipients) in taken {
            if let Some(env) = self.envelope(id).filter(|_| !redirecting) {
                let context = format!("resubmitted from queue {qid}");
                self.tracking()
                    .record(TrackingEvent::Resubmit, TrackingSource::Queue, &env)
                    .recipients(recipients.iter().map(|i| (*i, "".into())))
                    .source_context(&context)
                    .write();
            }
            self.categorize(id, Some(recipients));
        }
        if count > 0 {
            debug!(queue = %qid, messages = count, "resubmitted to the categorizer");
        }
        count
    }

    /// Registers the idle timer of a queue that just became empty.
    pub(super) fn note_idle_locked(&self, state: &mut QueueState, qid: QueueId) {
        let idle = self.config().retry.queue_max_idle_time.as_millis() as u64;
        let now = self.now_ms();
        if let Some(q) = state.queues.get_mut(&qid) {
            if q.items.is_empty() && q.connections == 0 && q.hop.is_some() {
                q.last_activity_ms = now;
                state.add_timer(now + idle, super::state::Timer::QueueIdle(qid));
            }
        }
    }
}

type Routed = (Vec<(Route, Vec<usize>)>, Vec<(usize, String)>);

/// Groups the wanted recipients by route (first-appearance order) and collects
/// the ones refused by the organisation's limits.
fn route(config: &RuntimeConfig, env: &Envelope, wanted: &[usize], redirect: Option<&NextHop>) -> Routed {
    let mut routes: Vec<(Route, Vec<usize>)> = Vec::new();
    let mut refused = Vec::new();
    let is_dsn = env.origin.source == Source::Dsn;
    // DSNs are exempt from the size limits, not from the recipient limit.
    if env.recipients.len() as u64 > u64::from(config.org.max_recipient_envelope_limit()) {
        refused.extend(wanted.iter().map(|&i| (i, RECIPIENT_LIMIT_REPLY.to_string())));
        return (routes, refused);
    }
    let org_limit = config.org.max_send_size().bytes();
    for &i in wanted {
        let Some(rcpt) = env.recipients.get(i) else { continue };
        let route = match redirect {
            Some(hop) => Route::Hop(hop.clone()),
            None => config.router.route(&rcpt.address.routed_domain()),
        };
        if !is_dsn {
            let connector_limit = match &route {
                Route::Hop(hop) => hop
                    .connector
                    .as_deref()
                    .and_then(|c| config.router.connector(c))
                    .and_then(|c| c.max_message_size)
                    .map(|s| s.bytes()),
                Route::Unreachable(_) => None,
            };
            let limit = connector_limit.map_or(org_limit, |c| c.min(org_limit));
            if env.size > limit {
                warn!(message = %env.id, size = env.size, limit, "message larger than the send limit");
                refused.push((i, format!("552 5.3.4 Message size exceeds fixed maximum message size ({limit} bytes)")));
                continue;
            }
        }
        match routes.iter_mut().find(|(r, _)| *r == route) {
            Some((_, list)) => list.push(i),
            None => routes.push((route, vec![i])),
        }
    }
    (routes, refused)
}
