//! The in-memory queue model over the durable [`Store`]: submission → categorizer
//! → one delivery queue per next hop (plus Unreachable), and the delivery
//! workers that drain them.
//!
//! Ownership of decisions: the [`Router`] decides the next hop, [`retry`] decides
//! when a failed hop is tried again, this module decides what happens to each
//! message (who holds it, when it is persisted, when it is removed). A message is
//! removed from the store only once no recipient is pending any more: delivery is
//! at least once, never zero times.
use super::message::{Envelope, MessageId, RecipientStatus};
use super::retry::connection_retry_interval;
use super::store::Store;
use crate::clock::SharedClock;
use crate::config::{OutboundTls, RetryPolicy, SendConnector, TransportFile};
use crate::delivery::{self, ConnectOptions, OutboundSession, RecipientOutcome};
use crate::routing::mx::Resolver;
use crate::routing::{DeliveryType, NextHop, Router};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tracing::{debug, info, warn, Instrument};

/// Exchange's default limit of simultaneous connections to one next hop.
const DEFAULT_MAX_CONNECTIONS_PER_HOP: usize = 20;
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// What the delivery side needs from the configuration; swapped as a whole on reload.
pub struct RuntimeConfig {
    pub server_name: String,
    pub fqdn: String,
    pub router: Router,
    pub resolver: Resolver,
    pub retry: RetryPolicy,
    pub send_connectors: Vec<SendConnector>,
}

impl RuntimeConfig {
    pub fn from_file(file: &TransportFile) -> Result<Self, crate::routing::mx::MxError> {
        Ok(Self {
            server_name: file.server_name.clone(),
            fqdn: file.fqdn.clone(),
            router: Router::new(
                file.send_connectors.clone(),
                file.transport_config.clone(),
                file.mailbox_delivery.clone(),
            ),
            resolver: Resolver::new(file.dns.as_ref())?,
            retry: file.retry_policy(),
            send_connectors: file.send_connectors.clone(),
        })
    }

    fn connector(&self, name: Option<&str>) -> Option<&SendConnector> {
        name.and_then(|n| self.send_connectors.iter().find(|c| c.name == n))
    }
}

/// Get-Queue status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum QueueStatus {
    Active,
    Ready,
    Retry,
    Suspended,
    Connecting,
}

/// Part of a message waiting in one delivery queue: which of its recipients.
#[derive(Debug, Clone)]
struct Item {
    id: MessageId,
    recipients: Vec<usize>,
    /// A message-level retry (4xx on a working connection) holds it until then.
    not_before: Option<SystemTime>,
}

struct HopQueue {
    number: u64,
    ready: VecDeque<Item>,
    deferred: Vec<Item>,
    /// Connections open or opening.
    connections: usize,
    /// Consecutive connection failures (0 once a connection succeeds).
    failures: u32,
    next_retry: Option<SystemTime>,
    last_retry: Option<SystemTime>,
    last_error: Option<String>,
    last_activity: SystemTime,
}

impl HopQueue {
    fn message_count(&self) -> usize {
        self.ready.len() + self.deferred.len()
    }

    fn status(&self) -> QueueStatus {
        if self.next_retry.is_some() {
            QueueStatus::Retry
        } else if self.connections > 0 {
            QueueStatus::Active
        } else {
            QueueStatus::Ready
        }
    }
}

struct Tracked {
    envelope: Envelope,
    /// Delivery queues (and Unreachable) still holding part of this message.
    holders: usize,
}

#[derive(Default)]
struct State {
    messages: HashMap<MessageId, Tracked>,
    queues: BTreeMap<NextHop, HopQueue>,
    next_queue_number: u64,
}

/// A row of Get-Queue.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    pub identity: String,
    pub id: String,
    pub delivery_type: DeliveryType,
    pub next_hop_domain: String,
    pub status: QueueStatus,
    pub message_count: usize,
    pub last_error: Option<String>,
    pub retry_count: u32,
}

struct Inner {
    store: Store,
    clock: SharedClock,
    config: RwLock<Arc<RuntimeConfig>>,
    state: Mutex<State>,
    wake: Notify,
}

/// Owns every queued message between acceptance and removal. Cheap to clone.
#[derive(Clone)]
pub struct QueueManager {
    inner: Arc<Inner>,
}

impl QueueManager {
    pub fn new(store: Store, clock: SharedClock, config: RuntimeConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                clock,
                config: RwLock::new(Arc::new(config)),
                state: Mutex::new(State { next_queue_number: 1, ..State::default() }),
                wake: Notify::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    fn config(&self) -> Arc<RuntimeConfig> {
        self.inner.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Categorize a message that is already durable (new, or recovered at start).
    pub fn enqueue(&self, envelope: Envelope) {
        let config = self.config();
        let now = self.inner.clock.now();
        let split = config.router.split(&envelope);
        let mut state = self.state();
        let id = envelope.id;
        if split.is_empty() {
            return;
        }
        state.messages.insert(id, Tracked { envelope, holders: split.len() });
        for (hop, recipients) in split {
            let queue = state_queue(&mut state, hop, now);
            queue.ready.push_back(Item { id, recipients, not_before: None });
            queue.last_activity = now;
        }
        drop(state);
        self.inner.wake.notify_one();
    }

    /// Get-Queue.
    pub fn queues(&self) -> Vec<QueueInfo> {
        let config = self.config();
        let state = self.state();
        state
            .queues
            .iter()
            .map(|(hop, q)| {
                let id = if hop.delivery_type == DeliveryType::Unreachable {
                    "Unreachable".to_string()
                } else {
                    q.number.to_string()
                };
                QueueInfo {
                    identity: format!("{}\\{}", config.server_name, id),
                    id,
                    delivery_type: hop.delivery_type,
                    next_hop_domain: hop.next_hop_domain.clone(),
                    status: q.status(),
                    message_count: q.message_count(),
                    last_error: q.last_error.clone(),
                    retry_count: q.failures,
                }
            })
            .collect()
    }

    /// Messages held in memory (each counted once, however many queues hold it).
    pub fn message_count(&self) -> usize {
        self.state().messages.len()
    }

    /// Runs the scheduler until the process ends: promotes due retries, opens
    /// connections where a queue has work, drops idle empty queues.
    pub async fn run(self) {
        loop {
            let next_deadline = self.schedule();
            let sleep = match next_deadline {
                Some(t) => self.inner.clock.sleep_until(t),
                None => Box::pin(futures::future::pending()),
            };
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = sleep => {}
            }
        }
    }

    /// One scheduling pass; returns the earliest time something becomes due.
    fn schedule(&self) -> Option<SystemTime> {
        let config = self.config();
        let now = self.inner.clock.now();
        let mut to_start: Vec<NextHop> = Vec::new();
        let mut earliest: Option<SystemTime> = None;
        let mut note = |t: SystemTime| earliest = Some(earliest.map_or(t, |e: SystemTime| e.min(t)));
        let mut state = self.state();
        let idle = config.retry.queue_max_idle_time;
        state.queues.retain(|hop, q| {
            let empty = q.message_count() == 0 && q.connections == 0;
            if empty && q.next_retry.is_none() {
                let idle_until = q.last_activity + idle;
                if now >= idle_until {
                    debug!(queue = %hop, "empty delivery queue removed after queueMaxIdleTime");
                    return false;
                }
                note(idle_until);
            }
            true
        });
        for (hop, q) in state.queues.iter_mut() {
            // Message-level retries that are due go back to the ready list.
            let mut i = 0;
            while i < q.deferred.len() {
                match q.deferred[i].not_before {
                    Some(t) if t > now => {
                        note(t);
                        i += 1;
                    }
                    _ => {
                        let mut item = q.deferred.swap_remove(i);
                        item.not_before = None;
                        q.ready.push_back(item);
                    }
                }
            }
            if hop.delivery_type == DeliveryType::Unreachable || q.ready.is_empty() {
                continue;
            }
            if let Some(t) = q.next_retry {
                if t > now {
                    note(t);
                    continue;
                }
                // The scheduled retry is due: one connection tries the hop again.
                q.next_retry = None;
                q.last_retry = Some(now);
            }
            let limit = config
                .connector(hop.connector.as_deref())
                .and_then(|c| c.max_concurrent_connections)
                .map(|n| n as usize)
                .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_HOP);
            // After failures, probe with one connection before opening many.
            let limit = if q.failures > 0 { 1 } else { limit };
            while q.connections < limit && q.connections < q.ready.len() {
                q.connections += 1;
                to_start.push(hop.clone());
            }
        }
        drop(state);
        for hop in to_start {
            let this = self.clone();
            let span = tracing::info_span!("delivery", queue = %hop);
            tokio::spawn(async move { this.deliver_hop(hop).await }.instrument(span));
        }
        earliest
    }

    fn take_ready(&self, hop: &NextHop) -> Option<(Item, Envelope)> {
        let mut state = self.state();
        let state = &mut *state;
        let queue = state.queues.get_mut(hop)?;
        while let Some(item) = queue.ready.pop_front() {
            if let Some(tracked) = state.messages.get(&item.id) {
                return Some((item, tracked.envelope.clone()));
            }
        }
        None
    }

    fn put_back(&self, hop: &NextHop, item: Item) {
        if let Some(q) = self.state().queues.get_mut(hop) {
            q.ready.push_front(item);
        }
    }

    /// One connection to a next hop: connect, then send every ready item over it.
    async fn deliver_hop(&self, hop: NextHop) {
        let config = self.config();
        let connector = config.connector(hop.connector.as_deref()).cloned();
        let mut session = match self.connect(&config, &hop, connector.as_ref()).await {
            Ok(s) => s,
            Err(ConnectFailure::Permanent(reason)) => {
                self.fail_queue_permanently(&hop, &reason).await;
                self.connection_closed(&hop, None);
                return;
            }
            Err(ConnectFailure::Transient(reason)) => {
                self.connection_closed(&hop, Some(reason));
                return;
            }
        };
        if let Some(q) = self.state().queues.get_mut(&hop) {
            q.failures = 0;
            q.last_error = None;
        }
        let mut broken: Option<String> = None;
        while let Some((item, envelope)) = self.take_ready(&hop) {
            let data = match self.inner.store.read_data(item.id) {
                Ok(d) => d,
                Err(e) => {
                    warn!(message = %item.id, error = %e, "cannot read queued message data; left in queue");
                    self.defer(&hop, item, &config);
                    continue;
                }
            };
            match session.send(&envelope, &item.recipients, &data).await {
                Ok(outcome) => self.apply_outcome(&hop, item, outcome.recipients, &config).await,
                Err(e) => {
                    // The connection broke mid-transaction: nothing was confirmed,
                    // so the whole item stays queued (at least once).
                    self.put_back(&hop, item);
                    broken = Some(e.to_string());
                    break;
                }
            }
            if !session.is_reusable() {
                break;
            }
        }
        if broken.is_none() {
            session.quit().await;
        }
        self.connection_closed(&hop, broken);
    }

    async fn connect(
        &self,
        config: &RuntimeConfig,
        hop: &NextHop,
        connector: Option<&SendConnector>,
    ) -> Result<OutboundSession, ConnectFailure> {
        let targets = delivery::resolve_targets(&config.resolver, hop, &config.send_connectors)
            .await
            .map_err(|e| {
                if e.is_permanent() {
                    ConnectFailure::Permanent(e.to_string())
                } else {
                    ConnectFailure::Transient(e.to_string())
                }
            })?;
        let mut last_error = String::from("no address to connect to");
        for (host, addr) in targets {
            let opts = ConnectOptions {
                helo_name: config.fqdn.clone(),
                tls: connector.map(|c| c.tls).unwrap_or(OutboundTls::Opportunistic),
                timeout: connector
                    .and_then(|c| c.connection_timeout)
                    .map(|t| t.as_duration())
                    .unwrap_or(DEFAULT_CONNECTION_TIMEOUT),
                sni_name: host.clone(),
            };
            match OutboundSession::connect(addr, opts).await {
                Ok(session) => {
                    info!(%host, %addr, "established connection to next hop");
                    return Ok(session);
                }
                Err(e) => {
                    warn!(%host, %addr, error = %e, "connection to next hop failed");
                    last_error = format!("{addr}: {e}");
                }
            }
        }
        Err(ConnectFailure::Transient(last_error))
    }

    /// A connection ended; on failure the queue goes into Retry on the §4 schedule.
    fn connection_closed(&self, hop: &NextHop, failure: Option<String>) {
        let config = self.config();
        let now = self.inner.clock.now();
        let mut state = self.state();
        if let Some(q) = state.queues.get_mut(hop) {
            q.connections = q.connections.saturating_sub(1);
            q.last_activity = now;
            if let Some(reason) = failure {
                if q.next_retry.is_none() {
                    q.failures += 1;
                    let mailbox = hop.delivery_type == DeliveryType::SmtpDeliveryToMailbox;
                    let gap = connection_retry_interval(&config.retry, q.failures, mailbox);
                    q.next_retry = Some(now + gap);
                    info!(failures = q.failures, retry_in = ?gap, error = %reason, "queue in Retry");
                }
                q.last_error = Some(reason);
            }
        }
        drop(state);
        self.inner.wake.notify_one();
    }

    fn defer(&self, hop: &NextHop, mut item: Item, config: &RuntimeConfig) {
        item.not_before = Some(self.inner.clock.now() + config.retry.message_retry_interval);
        if let Some(q) = self.state().queues.get_mut(hop) {
            q.deferred.push(item);
        }
    }

    /// Record what the next hop said for each recipient, then persist or remove.
    async fn apply_outcome(
        &self,
        hop: &NextHop,
        item: Item,
        outcomes: Vec<(usize, RecipientOutcome)>,
        config: &RuntimeConfig,
    ) {
        let mut retry_later = Vec::new();
        let persist = {
            let mut state = self.state();
            let Some(tracked) = state.messages.get_mut(&item.id) else { return };
            for (index, outcome) in outcomes {
                let Some(rcpt) = tracked.envelope.recipients.get_mut(index) else { continue };
                match outcome {
                    RecipientOutcome::Delivered { reply } => {
                        debug!(message = %item.id, recipient = %rcpt.address, %reply, "delivered");
                        rcpt.status = RecipientStatus::Delivered;
                    }
                    RecipientOutcome::Permanent { reply } => {
                        warn!(message = %item.id, recipient = %rcpt.address, %reply, "permanently refused");
                        rcpt.status = RecipientStatus::Failed { reply };
                    }
                    RecipientOutcome::Transient { reply } => {
                        debug!(message = %item.id, recipient = %rcpt.address, %reply, "temporarily refused");
                        retry_later.push(index);
                    }
                }
            }
            let done_here = retry_later.is_empty();
            if done_here {
                tracked.holders = tracked.holders.saturating_sub(1);
            }
            if tracked.holders == 0 {
                state.messages.remove(&item.id);
                Persist::Remove
            } else {
                Persist::Update(Box::new(tracked.envelope.clone()))
            }
        };
        if !retry_later.is_empty() {
            self.defer(hop, Item { id: item.id, recipients: retry_later, not_before: None }, config);
        }
        let result = match persist {
            Persist::Remove => self.inner.store.remove(item.id).await,
            Persist::Update(envelope) => self.inner.store.update(&envelope).await,
        };
        if let Err(e) = result {
            // The message stays on disk in its previous state: after a restart it
            // is delivered again to the recipients not recorded (a duplicate, never a loss).
            warn!(message = %item.id, error = %e, "could not record delivery outcome");
        }
    }

    /// The hop can never be reached (null MX, NXDOMAIN): every recipient queued
    /// for it fails permanently.
    async fn fail_queue_permanently(&self, hop: &NextHop, reason: &str) {
        let items: Vec<Item> = {
            let mut state = self.state();
            let Some(q) = state.queues.get_mut(hop) else { return };
            let mut items: Vec<Item> = q.ready.drain(..).collect();
            items.append(&mut q.deferred);
            items
        };
        for item in items {
            let outcomes = item
                .recipients
                .iter()
                .map(|&i| (i, RecipientOutcome::Permanent { reply: reason.to_string() }))
                .collect();
            let config = self.config();
            self.apply_outcome(hop, item, outcomes, &config).await;
        }
    }
}

enum Persist {
    Remove,
    Update(Box<Envelope>),
}

enum ConnectFailure {
    Permanent(String),
    Transient(String),
}

fn state_queue(state: &mut State, hop: NextHop, now: SystemTime) -> &mut HopQueue {
    let number = &mut state.next_queue_number;
    state.queues.entry(hop).or_insert_with(|| {
        let n = *number;
        *number += 1;
        HopQueue {
            number: n,
            ready: VecDeque::new(),
            deferred: Vec::new(),
            connections: 0,
            failures: 0,
            next_retry: None,
            last_retry: None,
            last_error: None,
            last_activity: now,
        }
    })
}
