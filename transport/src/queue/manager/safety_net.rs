//! Safety Net (Exchange): messages delivered to at least one recipient stay in
//! the store, out of the queue, for safetyNetHoldTime (the store's `retired`
//! table, see `store`). A resubmit request (Add-ResubmitRequest) queues again,
//! as new messages, those retired within a time window, to their delivered
//! recipients, optionally only those routed to one next hop: what a mailbox
//! server restored from an old backup lost since then. The sweep drops what
//! is older than the hold time.
use super::QueueManager;
use crate::api::TrackingEvent;
use crate::envelope::{Envelope, MessageId, RecipientStatus, Source};
use crate::logs::TrackingSource;
use crate::queue::body::StagedBody;
use crate::queue::{Store, StoreError};
use crate::routing::Route;
use std::time::Duration;
use tracing::{info, warn};

/// How often the Safety Net is swept (at most; a shorter hold time sweeps more often).
const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// A resubmit request: messages retired from `start_ms` to `end_ms` (ms since
/// the epoch, inclusive), to recipients routed to `destination` when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResubmitWindow {
    pub start_ms: u64,
    pub end_ms: u64,
    /// A next hop domain as Get-Queue shows it (`NextHopDomain`).
    pub destination: Option<String>,
}

impl QueueManager {
    /// Drops what has been in the Safety Net longer than safetyNetHoldTime
    /// (everything when it is off). Returns how many went.
    pub fn sweep_safety_net(&self) -> Result<usize, StoreError> {
        let hold = self.config().org.safety_net_hold_time();
        let cutoff = self.now_ms().saturating_sub(hold.as_millis() as u64);
        let store = self.store();
        let expired: Vec<_> =
            store.retired()?.into_iter().filter(|(_, at)| hold.is_zero() || *at < cutoff).map(|(id, _)| id).collect();
        for id in &expired {
            // Lazy: a removal lost in a crash is swept again next time.
            drop(store.remove(*id));
        }
        Ok(expired.len())
    }

    /// Queues again what the Safety Net holds from the window's messages:
    /// each one as a new message (new id, arrival now) to its delivered
    /// recipients that match. Returns how many messages were queued.
    pub async fn resubmit_safety_net(&self, window: &ResubmitWindow) -> Result<u64, StoreError> {
        let store = self.store().clone();
        let router = self.config().router.clone();
        let wanted = |domain: &str| match (&window.destination, router.route(domain)) {
            (None, _) => true,
            (Some(d), Route::Hop(hop)) => hop.next_hop_domain.eq_ignore_ascii_case(d),
            (Some(_), Route::Unreachable(_)) => false,
        };
        let mut queued = 0;
        for (id, at) in off_runtime(&store, Store::retired).await? {
            if at < window.start_ms || at > window.end_ms {
                continue;
            }
            let mut envelope = match off_runtime(&store, move |s| s.read_envelope(id)).await {
                Ok(e) => e,
                // Swept meanwhile.
                Err(StoreError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            };
            envelope
                .recipients
                .retain(|r| r.status == RecipientStatus::Delivered && wanted(&r.address.routed_domain()));
            if envelope.recipients.is_empty() {
                continue;
            }
            for r in &mut envelope.recipients {
                r.status = RecipientStatus::Pending;
                r.last_error = None;
            }
            let data = off_runtime(&store, move |s| s.read_data(id)).await?;
            envelope.arrival_ms = self.now_ms();
            envelope.origin.source = Source::Resubmit;
            let recipients = envelope.recipients.len();
            let context = format!("Safety Net message {id}");
            let why = (TrackingEvent::Resubmit, TrackingSource::SafetyNet, context.as_str());
            let new_id = self.requeue(envelope, data, why).await?;
            info!(from = %id, id = %new_id, recipients, "resubmitted from the Safety Net");
            queued += 1;
        }
        Ok(queued)
    }

    /// Stores and queues a message again as a new one (a new id, no queue state):
    /// what a resubmit request and a shadow takeover do with what they kept.
    /// `why`: the tracking event, its source and where the message came from.
    pub async fn requeue(
        &self,
        mut envelope: Envelope,
        data: Vec<u8>,
        why: (TrackingEvent, TrackingSource, &str),
    ) -> Result<MessageId, StoreError> {
        let store = self.store();
        envelope.id = store.next_id();
        envelope.state = Default::default();
        store.insert_body(&envelope, StagedBody::Inline(data)).await?;
        let (event, source, context) = why;
        self.tracking().record(event, source, &envelope).all_recipients().source_context(context).write();
        let id = envelope.id;
        self.enqueue(envelope);
        Ok(id)
    }

    /// Sweeps the Safety Net on the server's clock until the process ends.
    pub async fn sweep_safety_net_forever(self) {
        loop {
            let hold = self.config().org.safety_net_hold_time();
            let every = if hold.is_zero() { SWEEP_EVERY } else { SWEEP_EVERY.min(hold / 4) };
            let wake = self.inner.clock.now() + every.max(Duration::from_secs(1));
            self.inner.clock.sleep_until(wake).await;
            let manager = self.clone();
            let swept = tokio::task::spawn_blocking(move || manager.sweep_safety_net()).await;
            match swept.unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e)))) {
                Ok(0) => {}
                Ok(n) => info!(messages = n, "Safety Net: messages older than safetyNetHoldTime dropped"),
                Err(e) => warn!(error = %e, "Safety Net: cannot sweep now; trying again later"),
            }
        }
    }
}

/// Runs a read of the store (a database transaction, a spool file) off the
/// runtime's threads: a resubmit request may read many thousand messages.
async fn off_runtime<T: Send + 'static>(
    store: &Store,
    read: impl FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read(&store))
        .await
        .unwrap_or_else(|e| Err(StoreError::Io(std::io::Error::other(e))))
}
