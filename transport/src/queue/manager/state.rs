//! The in-memory queue model: messages, queues, items (a message's recipients
//! waiting in one queue) and timers. Owned by [`super::QueueManager`] under one
//! lock; nothing in here awaits.
use crate::api::{DeliveryType, MessageStatus, QueueStatus};
use crate::envelope::{Envelope, MessageId};
use crate::routing::NextHop;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use tokio::sync::Notify;

/// A queue's identity: what the admin API paths take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueId {
    Submission,
    Unreachable,
    Poison,
    /// A delivery queue, by its number.
    Delivery(u64),
}

impl QueueId {
    /// `Submission`, `Unreachable`, `Poison` or a number (case-insensitive names).
    pub fn parse(s: &str) -> Option<QueueId> {
        match s.to_ascii_lowercase().as_str() {
            "submission" => Some(QueueId::Submission),
            "unreachable" => Some(QueueId::Unreachable),
            "poison" => Some(QueueId::Poison),
            n => n.parse().ok().map(QueueId::Delivery),
        }
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueId::Submission => f.write_str("Submission"),
            QueueId::Unreachable => f.write_str("Unreachable"),
            QueueId::Poison => f.write_str("Poison"),
            QueueId::Delivery(n) => write!(f, "{n}"),
        }
    }
}

/// Key under which a queue's persistent state is stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(super) enum QueueKey {
    Submission,
    Unreachable,
    Hop(NextHop),
}

impl QueueKey {
    pub(super) fn encode(&self) -> String {
        // Serializing a plain enum of strings cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// What survives a restart of a queue (docs/design.md §4: retry counts and times).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QueueRecord {
    #[serde(default)]
    pub number: u64,
    #[serde(default)]
    pub suspended: bool,
    #[serde(default)]
    pub retry: RetryState,
}

/// The connection-failure state of a delivery queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RetryState {
    /// Consecutive failed connection attempts (0: the queue is not in Retry).
    #[serde(default)]
    pub failures: u32,
    /// When the next automatic attempt is due (ms since the epoch).
    #[serde(default)]
    pub next_retry_ms: Option<u64>,
    #[serde(default)]
    pub first_retry_ms: Option<u64>,
    #[serde(default)]
    pub last_retry_ms: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Last time this queue delivered something (or entered Retry): the clock
    /// of maxIdleTimeBeforeResubmit.
    #[serde(default)]
    pub idle_since_ms: Option<u64>,
}

impl RetryState {
    pub(super) fn in_retry(&self) -> bool {
        self.failures > 0
    }
}

/// Part of a message waiting in one queue: which of its recipients.
#[derive(Debug, Clone)]
pub(super) struct Item {
    /// Indexes into the envelope's recipients.
    pub recipients: Vec<usize>,
    /// Being transmitted by a connection now.
    pub active: bool,
    /// A message-level retry (4xx on a working connection) holds it until then.
    pub retry_at_ms: Option<u64>,
}

/// An admin action that arrived while the message was being transmitted; it
/// applies if the transmission leaves the message in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pending {
    Suspend,
    Remove { with_ndr: bool },
}

/// A queued message as the queue holds it. The envelope is boxed so that the
/// map of messages holds small slots (a hash map keeps up to half its slots
/// empty, and a million slots of a whole envelope are 600 MB).
pub(super) struct Msg {
    pub env: Box<Envelope>,
    /// Queues holding an item of this message.
    pub queues: Vec<QueueId>,
    pub pending: Option<Pending>,
}

impl Msg {
    pub(super) fn held(&self) -> bool {
        self.env.state.suspended || self.env.state.poisoned
    }
}

pub(super) struct Queue {
    /// The next hop of a delivery queue (None for the special queues).
    pub hop: Option<NextHop>,
    pub items: BTreeMap<MessageId, Item>,
    /// Ids of items that may be picked up (checked again when taken).
    pub ready: VecDeque<MessageId>,
    pub suspended: bool,
    /// Connections open or opening, and of those, still opening.
    pub connections: u32,
    pub connecting: u32,
    /// A connection to the next hop worked since the queue was created or
    /// last failed. Until then one connection probes it: a dead destination
    /// holds one outbound connection, not its whole share.
    pub proven: bool,
    /// In [`QueueState::outbound_waiting`]: wants connections the server-wide
    /// limit does not give it now.
    pub waiting_outbound: bool,
    pub retry: RetryState,
    /// Last time something happened (the clock of queueMaxIdleTime).
    pub last_activity_ms: u64,
    /// Wakes idle connections of this queue when an item becomes ready.
    pub work: Arc<Notify>,
}

impl Queue {
    pub(super) fn new(hop: Option<NextHop>, now_ms: u64) -> Queue {
        Queue {
            hop,
            items: BTreeMap::new(),
            ready: VecDeque::new(),
            suspended: false,
            connections: 0,
            connecting: 0,
            proven: false,
            waiting_outbound: false,
            retry: RetryState::default(),
            last_activity_ms: now_ms,
            work: Arc::new(Notify::new()),
        }
    }

    pub(super) fn status(&self) -> QueueStatus {
        if self.suspended {
            QueueStatus::Suspended
        } else if self.connecting > 0 && self.connecting == self.connections {
            QueueStatus::Connecting
        } else if self.connections > 0 {
            QueueStatus::Active
        } else if self.retry.in_retry() {
            QueueStatus::Retry
        } else {
            QueueStatus::Ready
        }
    }

    pub(super) fn delivery_type(&self, id: QueueId) -> DeliveryType {
        match (&self.hop, id) {
            (Some(hop), _) => hop.delivery_type,
            (None, QueueId::Unreachable) => DeliveryType::Unreachable,
            (None, _) => DeliveryType::Undefined,
        }
    }

    /// Makes an item eligible for pickup.
    pub(super) fn make_ready(&mut self, id: MessageId) {
        self.ready.push_back(id);
        self.work.notify_one();
    }
}

/// Status of one item as Get-Message shows it.
pub(super) fn item_status(msg: &Msg, item: &Item, queue: &Queue) -> MessageStatus {
    match (item.active, msg.pending) {
        (true, Some(Pending::Remove { .. })) => MessageStatus::PendingRemove,
        (true, Some(Pending::Suspend)) => MessageStatus::PendingSuspend,
        (true, None) => MessageStatus::Active,
        _ if msg.held() => MessageStatus::Suspended,
        _ if item.retry_at_ms.is_some() || queue.retry.in_retry() => MessageStatus::Retry,
        _ => MessageStatus::Ready,
    }
}

/// Something due at a time. Checked again when it fires: a timer whose
/// reason went away (message delivered, queue left Retry) does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    /// A delivery queue's next connection attempt.
    QueueRetry(QueueId),
    /// An empty queue disappears (queueMaxIdleTime).
    QueueIdle(QueueId),
    /// A queue stuck in Retry goes back to Submission (maxIdleTimeBeforeResubmit).
    Resubmit(QueueId),
    /// A message-level retry of an item.
    ItemRetry(QueueId, MessageId),
    /// A message's next time-driven event: the delay DSN
    /// (delayNotificationTimeOut), then expiry with NDR (messageExpirationTimeOut).
    Message(MessageId),
}

/// Progress of Redirect-Message.
pub(super) struct Redirect {
    pub hop: NextHop,
}

pub(super) struct QueueState {
    pub messages: HashMap<MessageId, Msg>,
    pub queues: BTreeMap<QueueId, Queue>,
    pub by_hop: HashMap<NextHop, u64>,
    pub next_number: u64,
    /// (due ms, timer). A set, so the same timer registered twice fires once.
    pub timers: BTreeSet<(u64, Timer)>,
    pub redirect: Option<Redirect>,
    /// Persisted states of hops that have no queue yet (restored when one is created).
    pub records: HashMap<NextHop, QueueRecord>,
    /// Outbound connections open or opening over every queue (maxOutboundConnections).
    pub outbound: u32,
    /// Queues that want more connections than the server-wide limit left
    /// them, served in turn as connections end (so no queue starves another).
    pub outbound_waiting: VecDeque<QueueId>,
    /// A timer was added since the timer loop last looked: it must recompute
    /// when it next wakes (the manager's lock guard acts on this when released).
    pub timers_added: bool,
}

impl QueueState {
    /// Why a message's recipients without a reply of their own still wait: the connection
    /// error of a queue of it in Retry (Get-Queue's LastError; an MTA-STS refusal among
    /// them). Delay DSNs and NDRs at expiry carry it.
    pub(super) fn hop_error(&self, id: MessageId) -> Option<String> {
        let msg = self.messages.get(&id)?;
        msg.queues.iter().find_map(|q| {
            let q = self.queues.get(q).filter(|q| q.retry.in_retry())?;
            q.retry.last_error.clone()
        })
    }

    pub(super) fn new(now_ms: u64) -> QueueState {
        let mut queues = BTreeMap::new();
        queues.insert(QueueId::Submission, Queue::new(None, now_ms));
        queues.insert(QueueId::Unreachable, Queue::new(None, now_ms));
        queues.insert(QueueId::Poison, Queue::new(None, now_ms));
        QueueState {
            messages: HashMap::new(),
            queues,
            by_hop: HashMap::new(),
            next_number: 1,
            timers: BTreeSet::new(),
            redirect: None,
            records: HashMap::new(),
            outbound: 0,
            outbound_waiting: VecDeque::new(),
            timers_added: false,
        }
    }

    /// Every timer goes through here, so the timer loop always learns of it.
    pub(super) fn add_timer(&mut self, at_ms: u64, timer: Timer) {
        self.timers.insert((at_ms, timer));
        self.timers_added = true;
    }

    /// The delivery queue of a next hop, created (with any persisted state) on demand.
    pub(super) fn queue_for_hop(&mut self, hop: &NextHop, now_ms: u64) -> QueueId {
        if let Some(n) = self.by_hop.get(hop) {
            return QueueId::Delivery(*n);
        }
        let record = self.records.remove(hop);
        let number = match &record {
            Some(r) if r.number > 0 && !self.queues.contains_key(&QueueId::Delivery(r.number)) => r.number,
            _ => self.next_number,
        };
        self.next_number = self.next_number.max(number + 1);
        let mut queue = Queue::new(Some(hop.clone()), now_ms);
        if let Some(r) = record {
            queue.suspended = r.suspended;
            queue.retry = r.retry;
            if let Some(t) = queue.retry.next_retry_ms {
                self.add_timer(t, Timer::QueueRetry(QueueId::Delivery(number)));
            }
        }
        self.by_hop.insert(hop.clone(), number);
        self.queues.insert(QueueId::Delivery(number), queue);
        QueueId::Delivery(number)
    }

    /// Adds (or extends) a message's item in a queue. Returns true when the item
    /// may be picked up now.
    pub(super) fn add_item(&mut self, qid: QueueId, id: MessageId, recipients: Vec<usize>, now_ms: u64) -> bool {
        let Some(msg) = self.messages.get_mut(&id) else { return false };
        let held = msg.held();
        let retry_at = msg.env.state.retry_at_ms.filter(|t| *t > now_ms);
        if !msg.queues.contains(&qid) {
            // Most messages sit in one queue: room for one, not the default four.
            msg.queues.reserve_exact(1);
            msg.queues.push(qid);
        }
        let Some(queue) = self.queues.get_mut(&qid) else { return false };
        queue.last_activity_ms = now_ms;
        match queue.items.get_mut(&id) {
            Some(item) => {
                for r in recipients {
                    if !item.recipients.contains(&r) {
                        item.recipients.push(r);
                    }
                }
                false
            }
            None => {
                queue.items.insert(id, Item { recipients, active: false, retry_at_ms: retry_at });
                if let Some(t) = retry_at {
                    self.add_timer(t, Timer::ItemRetry(qid, id));
                    false
                } else if !held {
                    queue.make_ready(id);
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Takes a message's item out of a queue (not if it is being transmitted).
    pub(super) fn take_item(&mut self, qid: QueueId, id: MessageId) -> Option<Item> {
        let queue = self.queues.get_mut(&qid)?;
        if queue.items.get(&id).is_some_and(|i| i.active) {
            return None;
        }
        let item = queue.items.remove(&id)?;
        if let Some(msg) = self.messages.get_mut(&id) {
            msg.queues.retain(|q| *q != qid);
        }
        Some(item)
    }
}
