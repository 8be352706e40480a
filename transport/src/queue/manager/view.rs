//! Get-Queue and Get-Message rows, and the totals status and metrics report.
use super::state::{item_status, Item, Msg, Queue, QueueId};
use super::{ActionError, QueueManager};
use crate::api::{
    DeliveryType, MessageInfo, MessageQuery, MessageStatus, QueueInfo, QueueStatus, QueueTotals, RecipientInfo,
    DEFAULT_RESULT_SIZE,
};
use crate::clock::{from_millis, rfc3339};
use crate::envelope::{routed_domain, Address, MessageId, RecipientStatus, Source};
use std::ops::Bound;

/// A page of Get-Message rows.
#[derive(Debug, Clone, Default)]
pub struct MessagePage {
    pub rows: Vec<MessageInfo>,
    /// The bookmark of the next page (the identity of the last row) when more rows match.
    pub next: Option<String>,
}

/// A bookmark is a row's identity, `server\queue\message` (the server part
/// may be left out): the queue and message the next page starts after.
fn parse_bookmark(bookmark: &str) -> Result<(QueueId, MessageId), ActionError> {
    let invalid =
        || ActionError::Invalid(format!("Bookmark {bookmark:?} is not a message identity (server\\queue\\number)."));
    let mut parts = bookmark.rsplit('\\');
    let id = parts.next().and_then(|n| n.parse().ok()).ok_or_else(invalid)?;
    let queue = parts.next().and_then(QueueId::parse).ok_or_else(invalid)?;
    Ok((queue, MessageId(id)))
}

fn time(ms: Option<u64>) -> Option<String> {
    ms.map(|ms| rfc3339(from_millis(ms)))
}

impl QueueManager {
    /// Get-Queue: Submission always; Unreachable and Poison when they hold
    /// messages (or Unreachable is suspended); every delivery queue.
    pub fn queues(&self) -> Vec<QueueInfo> {
        let config = self.config();
        let state = self.state();
        state
            .queues
            .iter()
            .filter(|(qid, q)| listed(**qid, q))
            .map(|(qid, q)| QueueInfo {
                identity: format!("{}\\{qid}", config.server_name),
                id: qid.to_string(),
                delivery_type: q.delivery_type(*qid),
                next_hop_domain: next_hop_domain(*qid, q),
                next_hop_connector: q.hop.as_ref().and_then(|h| h.connector.clone()),
                status: q.status(),
                message_count: q.items.len() as u64,
                last_error: q.retry.last_error.clone(),
                last_retry_time: time(q.retry.last_retry_ms),
                next_retry_time: time(q.retry.next_retry_ms),
                first_retry_time: time(q.retry.first_retry_ms),
                retry_count: q.retry.failures,
            })
            .collect()
    }

    /// Get-Message: one row per message per queue, in queue order then message
    /// number, filtered by `query`, at most its result size (1000 by default)
    /// from after its bookmark. The page's `next` is set when more rows match.
    pub fn messages(&self, query: &MessageQuery) -> Result<MessagePage, ActionError> {
        let filter = match query.queue.as_deref() {
            Some(q) => Some(QueueId::parse(q).ok_or_else(|| ActionError::NotFound(format!("There is no queue {q}.")))?),
            None => None,
        };
        let after = query.bookmark.as_deref().map(parse_bookmark).transpose()?;
        let limit = query.result_size.map_or(Some(DEFAULT_RESULT_SIZE as usize), |r| r.limit());
        let sender = query.sender.as_deref().map(|s| s.trim().trim_start_matches('<').trim_end_matches('>'));
        let domain = query.recipient_domain.as_deref().map(routed_domain);
        let config = self.config();
        let expiry = config.expiration.message_expiration_time_out.as_millis() as u64;
        let state = self.state();
        if let Some(qid) = filter {
            if !state.queues.contains_key(&qid) {
                return Err(ActionError::NotFound(format!("There is no queue {qid}.")));
            }
        }
        // Queues from the bookmark's on; inside its queue, messages after it.
        let first = match (filter, after) {
            (Some(q), _) => Bound::Included(q),
            (None, Some((q, _))) => Bound::Included(q),
            (None, None) => Bound::Unbounded,
        };
        let mut rows = Vec::new();
        let mut next = None;
        'queues: for (qid, q) in state.queues.range((first, Bound::Unbounded)) {
            if filter.is_some_and(|f| f != *qid) {
                break;
            }
            let items = match after {
                Some((bq, bid)) if bq == *qid => q.items.range((Bound::Excluded(bid), Bound::Unbounded)),
                Some((bq, _)) if bq > *qid => continue,
                _ => q.items.range(..),
            };
            for (id, item) in items {
                if query.id.is_some_and(|want| want != id.0) {
                    continue;
                }
                let Some(msg) = state.messages.get(id) else { continue };
                let env = &msg.env;
                let status = item_status(msg, item, q);
                if query.status.is_some_and(|want| want != status)
                    || sender.is_some_and(|want| {
                        !env.mail_from.as_ref().map_or("", Address::as_str).eq_ignore_ascii_case(want)
                    })
                    || domain.as_deref().is_some_and(|want| {
                        !item
                            .recipients
                            .iter()
                            .filter_map(|&i| env.recipients.get(i))
                            .any(|r| r.address.routed_domain() == want)
                    })
                {
                    continue;
                }
                if limit.is_some_and(|l| rows.len() >= l) {
                    // One more matches: the page ends at the last row taken.
                    next = rows.last().map(|r: &MessageInfo| r.identity.clone());
                    break 'queues;
                }
                rows.push(message_row(&config.server_name, expiry, (*qid, q), (*id, msg, item), status));
            }
        }
        Ok(MessagePage { rows, next })
    }

    /// Totals for status and metrics: messages queued, in Retry, suspended, poison.
    pub fn totals(&self) -> QueueTotals {
        let state = self.state();
        let mut totals = QueueTotals { messages: state.messages.len() as u64, ..QueueTotals::default() };
        for msg in state.messages.values() {
            if msg.env.state.poisoned {
                totals.poison += 1;
            } else if msg.env.state.suspended {
                totals.suspended += 1;
            } else if msg.env.state.retry_at_ms.is_some()
                || msg.queues.iter().any(|q| state.queues.get(q).is_some_and(|q| q.retry.in_retry()))
            {
                totals.in_retry += 1;
            }
        }
        totals
    }

    /// Messages being transmitted right now.
    pub fn active_deliveries(&self) -> usize {
        let state = self.state();
        state.queues.values().map(|q| q.items.values().filter(|i| i.active).count()).sum()
    }

    /// What `/metrics` reports of the queues (the admin API's handler calls it by the name
    /// it had when it returned only the message count per status): every queue Get-Queue
    /// lists, how long each queue in Retry has been there, and the age of the oldest
    /// message that can expire, all under one lock. Walks every message, as
    /// [`Self::totals`] does: a scrape every few seconds at most.
    pub fn queue_status_counts(&self) -> QueueSnapshot {
        let expiration_ms = self.config().expiration.message_expiration_time_out.as_millis() as u64;
        let storage_failing = self.store().failure().is_some();
        let now = self.now_ms();
        let state = self.state();
        let queues = state
            .queues
            .iter()
            .filter(|(qid, q)| listed(**qid, q))
            .map(|(qid, q)| QueueGauge {
                queue: qid.to_string(),
                next_hop_domain: next_hop_domain(*qid, q),
                delivery_type: q.delivery_type(*qid),
                status: q.status(),
                messages: q.items.len() as u64,
                // A record from before firstRetryTime was kept counts from its last attempt.
                in_retry_ms: q
                    .retry
                    .in_retry()
                    .then(|| now.saturating_sub(q.retry.first_retry_ms.or(q.retry.last_retry_ms).unwrap_or(now))),
            })
            .collect();
        // Suspended and poison messages never expire (an administrator holds them).
        let oldest = state.messages.values().filter(|m| !m.held()).map(|m| m.env.arrival_ms).min();
        QueueSnapshot {
            queues,
            oldest_message_ms: oldest.map_or(0, |arrival| now.saturating_sub(arrival)),
            expiration_ms,
            storage_failing,
        }
    }
}

/// One queue as `/metrics` shows it: a Get-Queue row's numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueGauge {
    /// Get-Queue's id: `Submission`, `Unreachable`, `Poison` or the delivery queue's number.
    pub queue: String,
    pub next_hop_domain: String,
    pub delivery_type: DeliveryType,
    pub status: QueueStatus,
    pub messages: u64,
    /// How long the queue has been in Retry (since the first failed connection attempt
    /// of this Retry), when it is in Retry, even while a retry attempt is connecting.
    pub in_retry_ms: Option<u64>,
}

/// The queues as `/metrics` reports them ([`QueueManager::queue_status_counts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueSnapshot {
    pub queues: Vec<QueueGauge>,
    /// Age of the oldest queued message that can expire (neither suspended nor poison);
    /// 0 when there is none.
    pub oldest_message_ms: u64,
    /// messageExpirationTimeOut: the age at which a message is bounced with an NDR.
    pub expiration_ms: u64,
    /// The store refuses writes (disk full, I/O error): every message is answered 452.
    pub storage_failing: bool,
}

/// Get-Queue lists Submission always, Unreachable and Poison when they hold messages (or
/// Unreachable is suspended), and every delivery queue.
fn listed(qid: QueueId, q: &Queue) -> bool {
    match qid {
        QueueId::Unreachable => !q.items.is_empty() || q.suspended,
        QueueId::Poison => !q.items.is_empty(),
        _ => true,
    }
}

/// Get-Queue's NextHopDomain.
fn next_hop_domain(qid: QueueId, q: &Queue) -> String {
    match (qid, &q.hop) {
        (_, Some(hop)) => hop.next_hop_domain.clone(),
        (QueueId::Unreachable, None) => "Unreachable Domain".to_string(),
        (QueueId::Poison, None) => "Poison Message".to_string(),
        _ => "Submission".to_string(),
    }
}

/// One Get-Message row: message `id` in queue `qid`, with its `status` there.
fn message_row(
    server: &str,
    expiry: u64,
    (qid, q): (QueueId, &Queue),
    (id, msg, item): (MessageId, &Msg, &Item),
    status: MessageStatus,
) -> MessageInfo {
    let env = &msg.env;
    let recipients = item
        .recipients
        .iter()
        .filter_map(|&i| env.recipients.get(i))
        .map(|r| RecipientInfo {
            address: r.address.to_string(),
            status: match (&r.status, status) {
                (RecipientStatus::Delivered, _) => "Complete".into(),
                (RecipientStatus::Failed { .. }, _) => "Failed".into(),
                (RecipientStatus::Pending, MessageStatus::Retry) => "Retry".into(),
                (RecipientStatus::Pending, _) => "Ready".into(),
            },
            last_error: r.last_error.as_deref().map(str::to_string),
        })
        .collect();
    let source = match env.origin.source {
        Source::Smtp => format!("SMTP:{}", env.origin.connector),
        Source::Dsn => "DSN".into(),
        Source::Replay => "Replay".into(),
        Source::Resubmit => "Resubmit".into(),
    };
    MessageInfo {
        identity: format!("{server}\\{qid}\\{id}"),
        id: id.0,
        queue: qid.to_string(),
        status,
        from_address: env.mail_from.as_ref().map(Address::to_string).unwrap_or_default(),
        recipients,
        size: env.size,
        subject: env.subject.as_deref().map(str::to_string),
        internet_message_id: env.internet_message_id.as_deref().map(str::to_string),
        message_source_name: source,
        date_received: rfc3339(from_millis(env.arrival_ms)),
        expiration_time: if env.state.poisoned { None } else { time(Some(env.arrival_ms + expiry)) },
        // While the queue is in Retry its connection error is the newest.
        last_error: q
            .retry
            .last_error
            .as_deref()
            .filter(|_| q.retry.in_retry())
            .or(env.state.last_error.as_deref())
            .map(str::to_string),
        retry_count: env.state.retry_count.max(q.retry.failures),
    }
}
