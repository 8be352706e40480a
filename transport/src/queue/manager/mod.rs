//! The queue manager: owns every queued message between acceptance and removal.
//!
//! Messages enter the Submission queue; the categorizer ([`categorize`]) splits
//! their recipients by next hop into one delivery queue per hop (or the
//! Unreachable queue); connection workers ([`worker`]) drain delivery queues;
//! timers ([`timers`]) drive retries, delay DSNs, expiry, idle queues and
//! auto-resubmit; [`actions`] are the administrator's levers; [`view`] renders
//! Get-Queue and Get-Message; [`notify`] builds and submits DSNs; [`tracking`]
//! writes the message tracking log's records of intake and transmission.
//!
//! Ownership of decisions: the [`Router`](crate::routing::Router) decides the
//! next hop, [`retry`](super::retry) decides when a failed hop is tried again,
//! this module decides what happens to each message and when it is persisted.
//! A message leaves the store only once no recipient is pending: delivery is at
//! least once, never zero times. Every change is made in memory under one lock
//! and persisted by enqueuing the message's latest envelope while still holding
//! it, so the store sees changes in the order they were made.
mod actions;
mod categorize;
mod notify;
mod policy_refresh;
mod safety_net;
mod state;
mod timers;
mod tls_reports;
mod tracking;
mod view;
mod worker;

pub use actions::ActionError;
pub use safety_net::ResubmitWindow;
pub use state::QueueId;
pub use view::{MessagePage, QueueGauge, QueueSnapshot};
pub use worker::MAX_UNCONFIRMED_DELIVERIES;

use self::state::{QueueKey, QueueRecord, QueueState, Timer};
use super::store::{Recovered, Store, StoreError};
use crate::address::ConfiguredAddressError;
use crate::clock::{from_millis, to_millis, SharedClock};
use crate::config::{ExpirationPolicy, OrgSettings, RetryPolicy, TransportFile};
use crate::control::Gate;
use crate::delivery::dane::Dane;
use crate::delivery::mta_sts::MtaSts;
use crate::delivery::tls_report::TlsReports;
use crate::envelope::{Address, Envelope, MessageId, RecipientStatus};
use crate::logs::{ConnectivityLog, ProtocolLog, TrackingLog};
use crate::routing::mx::{MxError, Resolver};
use crate::routing::{NextHop, Router};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::SystemTime;
use tokio::sync::{watch, Notify};
use tracing::warn;

/// What the queue side needs from the configuration; swapped as a whole on reload.
pub struct RuntimeConfig {
    pub server_name: String,
    pub fqdn: String,
    pub router: Router,
    pub resolver: Resolver,
    /// DANE's DNSSEC-validating lookups (RFC 7672).
    pub dane: Dane,
    /// Recipient domains' MTA-STS policies: one for the server's life, kept across reloads.
    pub mta_sts: Arc<MtaSts>,
    /// TLS session counts and daily reports (RFC 8460): one for the server's life.
    pub tls_reports: Arc<TlsReports>,
    pub retry: RetryPolicy,
    pub expiration: ExpirationPolicy,
    pub org: OrgSettings,
    /// From: of DSNs and contact of TLS reports.
    pub postmaster: Address,
    /// Outbound connections over every delivery queue.
    pub max_outbound_connections: u32,
}

/// Why a configuration that passed validation cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeConfigError {
    #[error(transparent)]
    Dns(#[from] MxError),
    /// Validation checks a configured postmaster; this is the default one
    /// (`postmaster@<accepted domain or fqdn>`) when it is not an address.
    #[error("transportConfig.postmaster: {0}")]
    Postmaster(#[from] ConfiguredAddressError),
}

impl RuntimeConfig {
    pub fn from_file(
        file: &TransportFile,
        mta_sts: Arc<MtaSts>,
        tls_reports: Arc<TlsReports>,
    ) -> Result<Self, RuntimeConfigError> {
        Ok(Self {
            server_name: file.server_name.clone(),
            fqdn: file.fqdn.clone(),
            router: Router::new(&file.send_connectors, &file.transport_config, file.mailbox_delivery.as_ref()),
            resolver: Resolver::new(file.dns.as_ref())?,
            dane: Dane::new(file.dns.as_ref(), file.transport_config.dnssec_trust_anchor_file.as_deref())?,
            mta_sts,
            tls_reports,
            retry: file.retry_policy(),
            expiration: file.expiration_policy(),
            org: file.transport_config.clone(),
            postmaster: file.postmaster()?,
            max_outbound_connections: file.max_outbound_connections_or_default(),
        })
    }
}

/// What the queue side reports (metrics; tests observe the retry schedule
/// through it). Every method has a no-op default.
pub trait QueueEvents: Send + Sync + 'static {
    /// A connection attempt to a next hop ended (`Err` with the reason when it failed).
    fn connection_attempt(&self, _hop: &NextHop, _at: SystemTime, _outcome: Result<(), &str>) {}
    fn delivered(&self, _hop: &NextHop, _recipients: usize) {}
    /// A TLS session under a policy ended (RFC 8460): `result` `success` or a result-type.
    fn tls_session(&self, _policy_type: &str, _result: &str) {}
    /// A message-level retry (4xx on a working connection).
    fn deferred(&self, _hop: &NextHop, _recipients: usize) {}
    /// Recipients failed for good (NDR or not); `hop` is the next hop they were queued
    /// for (None: they had none, e.g. no route).
    fn failed(&self, _hop: Option<&NextHop>, _recipients: usize) {}
    /// A DSN was generated (`failed`, `delayed`, `delivered`, `relayed`).
    fn dsn(&self, _action: &'static str) {}
}

/// Events that go nowhere.
pub struct NoQueueEvents;
impl QueueEvents for NoQueueEvents {}

/// Logs the queue side writes.
#[derive(Clone)]
pub struct QueueLogs {
    pub connectivity: ConnectivityLog,
    pub send_protocol: ProtocolLog,
    /// Every event of a message's life, from acceptance to removal.
    pub tracking: TrackingLog,
}

impl QueueLogs {
    /// No log at all (tests, benchmarks of the queue alone).
    pub fn disabled() -> QueueLogs {
        QueueLogs {
            connectivity: ConnectivityLog::disabled(),
            send_protocol: ProtocolLog::disabled(),
            tracking: TrackingLog::disabled(),
        }
    }
}

pub(crate) struct ManagerCore {
    store: Store,
    clock: SharedClock,
    config: RwLock<Arc<RuntimeConfig>>,
    state: Mutex<QueueState>,
    /// Wakes the timer loop (a new earliest timer, delivery re-enabled).
    wake: Notify,
    /// A queue waits for an outbound connection: an idle one closes for it.
    slot_wanted: Notify,
    gate: Gate,
    events: Arc<dyn QueueEvents>,
    logs: QueueLogs,
    /// True while a Redirect-Message is in progress.
    redirecting: watch::Sender<bool>,
}

/// Owns every queued message between acceptance and removal. Cheap to clone.
#[derive(Clone)]
pub struct QueueManager {
    inner: Arc<ManagerCore>,
}

impl QueueManager {
    pub fn new(
        store: Store,
        clock: SharedClock,
        config: RuntimeConfig,
        gate: Gate,
        events: Arc<dyn QueueEvents>,
        logs: QueueLogs,
    ) -> Self {
        let now = to_millis(clock.now());
        QueueManager {
            inner: Arc::new(ManagerCore {
                store,
                clock,
                config: RwLock::new(Arc::new(config)),
                state: Mutex::new(QueueState::new(now)),
                wake: Notify::new(),
                slot_wanted: Notify::new(),
                gate,
                events,
                logs,
                redirecting: watch::channel(false).0,
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The message tracking log: intake, the shadow side and the admin API write and
    /// read the same one.
    pub fn tracking(&self) -> &TrackingLog {
        &self.inner.logs.tracking
    }

    /// Restores what [`Store::open`] found: queue states first (retry counters
    /// and times, suspension), then every message, each back in the queue its
    /// state says (Poison, suspended, in Retry) and with its timers.
    pub fn recover(&self, recovered: Recovered) {
        {
            let mut state = self.state();
            for (key, value) in recovered.queues {
                let (Ok(key), Ok(record)) =
                    (serde_json::from_str::<QueueKey>(&key), serde_json::from_slice::<QueueRecord>(&value))
                else {
                    warn!(%key, "ignoring an unreadable persisted queue state");
                    continue;
                };
                match key {
                    QueueKey::Submission => set_suspended(&mut state, QueueId::Submission, record.suspended),
                    QueueKey::Unreachable => set_suspended(&mut state, QueueId::Unreachable, record.suspended),
                    QueueKey::Hop(hop) => {
                        state.next_number = state.next_number.max(record.number + 1);
                        state.records.insert(hop, record);
                    }
                }
            }
        }
        for envelope in recovered.messages {
            self.enqueue(envelope);
        }
    }

    /// A message that is already durable (new, or recovered) enters the
    /// Submission queue and is categorized (unless Submission is suspended).
    pub fn enqueue(&self, envelope: impl Into<Box<Envelope>>) {
        let mut envelope = envelope.into();
        envelope.shrink_to_fit();
        let id = envelope.id;
        let poisoned = envelope.state.poisoned;
        {
            let mut state = self.state();
            state.messages.insert(id, state::Msg { env: envelope, queues: Vec::new(), pending: None });
            self.arm_message_timer(&mut state, id, None);
            if poisoned {
                let pending = pending_indexes(&state, id);
                let now = self.now_ms();
                state.add_item(QueueId::Poison, id, pending, now);
                return;
            }
        }
        self.categorize(id, None);
    }

    /// Which of `ids` are queued here (in any queue, suspended or poison
    /// included): what a shadow server asks before it drops its copies.
    pub fn holds(&self, ids: &[u64]) -> Vec<u64> {
        let state = self.state();
        ids.iter().copied().filter(|id| state.messages.contains_key(&MessageId(*id))).collect()
    }

    /// Runs the timers until the process ends.
    pub async fn run(self) {
        let mut gate = self.inner.gate.watch();
        let mut delivery = gate.borrow().delivery;
        loop {
            let next = self.fire_due_timers();
            let sleep = match next {
                Some(t) => self.inner.clock.sleep_until(from_millis(t)),
                None => Box::pin(futures::future::pending()),
            };
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = sleep => {}
                changed = gate.changed() => {
                    if changed.is_err() {
                        // The control side is gone: only the timers remain.
                        gate = self.inner.gate.watch();
                    }
                    let now = gate.borrow().delivery;
                    if now && !delivery {
                        self.kick_all();
                    }
                    delivery = now;
                }
            }
        }
    }

    /// Applies a new configuration. Queues in Retry get their next attempt
    /// recomputed with the new intervals; the Unreachable queue is resubmitted
    /// when routing changed (unless it is suspended).
    pub fn reload(&self, config: RuntimeConfig, routing_changed: bool) {
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.reschedule_after_reload();
        if routing_changed {
            let suspended = self.state().queues.get(&QueueId::Unreachable).is_some_and(|q| q.suspended);
            if !suspended {
                self.resubmit_queue(QueueId::Unreachable);
            }
        }
        self.inner.wake.notify_one();
    }

    /// Watch this to learn when a Redirect-Message starts and ends.
    pub fn redirecting(&self) -> watch::Receiver<bool> {
        self.inner.redirecting.subscribe()
    }

    /// The MTA-STS policies in use (a reload hands them to the new configuration).
    pub fn mta_sts(&self) -> Arc<MtaSts> {
        self.config().mta_sts.clone()
    }

    /// The TLS session counts (a reload hands them to the new configuration; the admin API reads them).
    pub fn tls_reports(&self) -> Arc<TlsReports> {
        self.config().tls_reports.clone()
    }

    fn config(&self) -> Arc<RuntimeConfig> {
        self.inner.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn state(&self) -> StateGuard<'_> {
        StateGuard { guard: self.inner.state.lock().unwrap_or_else(|e| e.into_inner()), wake: &self.inner.wake }
    }

    fn now_ms(&self) -> u64 {
        to_millis(self.inner.clock.now())
    }

    /// Registers the message's timer at its next time-driven event: the delay
    /// DSN, then expiry. One timer per message, not one per event: at a
    /// million queued messages each timer costs about 60 bytes. `after: None`
    /// counts an event already due too (a message resumed after its expiry
    /// expires now); `Some(t)` only events due later than `t` (re-arming after
    /// the timer fired: an event that was due and did nothing, as for a held
    /// message, waits for the action that releases it).
    fn arm_message_timer(&self, state: &mut QueueState, id: MessageId, after: Option<u64>) {
        let config = self.config();
        let Some(msg) = state.messages.get(&id) else { return };
        let arrival = msg.env.arrival_ms;
        let delay = (!msg.env.state.delay_dsn_done)
            .then(|| arrival + config.expiration.delay_notification_time_out.as_millis() as u64);
        let expire = arrival + config.expiration.message_expiration_time_out.as_millis() as u64;
        let next = [delay, Some(expire)].into_iter().flatten().filter(|at| after.is_none_or(|after| *at > after)).min();
        if let Some(at) = next {
            state.add_timer(at, Timer::Message(id));
        }
    }

    /// Enqueues the message's latest state to the store, under the lock (so
    /// writes keep their order): removal once nothing is pending and no queue
    /// holds it, else an update. Returns the future of that write.
    fn persist_locked(
        &self,
        state: &mut QueueState,
        id: MessageId,
    ) -> Option<impl Future<Output = Result<(), StoreError>> + Send + 'static> {
        use futures::future::Either;
        let msg = state.messages.get(&id)?;
        let done = msg.env.is_finished() && msg.queues.is_empty();
        if done {
            let msg = state.messages.remove(&id)?;
            // Delivered to at least one recipient: kept in the Safety Net.
            let delivered = msg.env.recipients.iter().any(|r| r.status == RecipientStatus::Delivered);
            if delivered && !self.config().org.safety_net_hold_time().is_zero() {
                Some(Either::Left(Either::Left(self.inner.store.retire(&msg.env, self.now_ms()))))
            } else {
                Some(Either::Left(Either::Right(self.inner.store.remove(id))))
            }
        } else {
            Some(Either::Right(self.inner.store.update(&msg.env)))
        }
    }

    /// Persists a message's latest state and waits for it.
    async fn persist(&self, id: MessageId) {
        let write = {
            let mut state = self.state();
            self.persist_locked(&mut state, id)
        };
        if let Some(write) = write {
            if let Err(e) = write.await {
                // The previous state stays on disk: after a restart the message is
                // delivered again to recipients not recorded (a duplicate, never a loss).
                warn!(message = %id, error = %e, "could not record the message's queue state");
            }
        }
        self.check_redirect_done();
    }

    /// Persists a message's latest state without waiting for the commit: the
    /// write is queued now, in order; a delivery connection goes on with its
    /// next message instead of waiting (removals are lazy, see the store).
    /// Returns the task waiting for that commit.
    fn persist_detached(&self, id: MessageId) -> Option<tokio::task::JoinHandle<()>> {
        let write = {
            let mut state = self.state();
            self.persist_locked(&mut state, id)
        };
        let task = write.map(|write| {
            tokio::spawn(async move {
                if let Err(e) = write.await {
                    // As in `persist`: the previous state stays on disk (a duplicate, never a loss).
                    warn!(message = %id, error = %e, "could not record the message's queue state");
                }
            })
        });
        self.check_redirect_done();
        task
    }

    /// Persists a queue's state (retry counters, suspension) or forgets it.
    fn persist_queue_locked(&self, state: &QueueState, qid: QueueId) {
        let Some(queue) = state.queues.get(&qid) else { return };
        let key = match (qid, &queue.hop) {
            (QueueId::Submission, _) => QueueKey::Submission,
            (QueueId::Unreachable, _) => QueueKey::Unreachable,
            (_, Some(hop)) => QueueKey::Hop(hop.clone()),
            _ => return,
        };
        let record = QueueRecord { number: queue_number(qid), suspended: queue.suspended, retry: queue.retry.clone() };
        let write = if record.suspended || record.retry.in_retry() {
            let value = serde_json::to_vec(&record).unwrap_or_default();
            futures::future::Either::Left(self.inner.store.put_queue(&key.encode(), value))
        } else {
            futures::future::Either::Right(self.inner.store.delete_queue(&key.encode()))
        };
        tokio::spawn(async move {
            if let Err(e) = write.await {
                warn!(queue = %qid, error = %e, "could not record the queue's state");
            }
        });
    }
}

/// The lock on the queue state. When released, it wakes the timer loop if a
/// timer was added meanwhile, so no code path can add a timer the loop misses.
struct StateGuard<'a> {
    guard: MutexGuard<'a, QueueState>,
    wake: &'a Notify,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = QueueState;
    fn deref(&self) -> &QueueState {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut QueueState {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if std::mem::take(&mut self.guard.timers_added) {
            self.wake.notify_one();
        }
    }
}

fn queue_number(qid: QueueId) -> u64 {
    match qid {
        QueueId::Delivery(n) => n,
        _ => 0,
    }
}

fn set_suspended(state: &mut QueueState, qid: QueueId, suspended: bool) {
    if let Some(q) = state.queues.get_mut(&qid) {
        q.suspended = suspended;
    }
}

/// Indexes of a message's recipients that still wait for delivery.
fn pending_indexes(state: &QueueState, id: MessageId) -> Vec<usize> {
    state
        .messages
        .get(&id)
        .map(|m| {
            m.env
                .recipients
                .iter()
                .enumerate()
                .filter(|(_, r)| r.status == crate::envelope::RecipientStatus::Pending)
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default()
}
