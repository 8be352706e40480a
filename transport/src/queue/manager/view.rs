//! Get-Queue and Get-Message rows, and the totals status and metrics report.
use super::state::{item_status, QueueId};
use super::{ActionError, QueueManager};
use crate::api::{MessageInfo, MessageStatus, QueueInfo, QueueStatus, QueueTotals, RecipientInfo};
use crate::clock::{from_millis, rfc3339};
use crate::queue::message::{RecipientStatus, Source};

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
            .filter(|(qid, q)| match qid {
                QueueId::Unreachable => !q.items.is_empty() || q.suspended,
                QueueId::Poison => !q.items.is_empty(),
                _ => true,
            })
            .map(|(qid, q)| {
                let next_hop_domain = match (qid, &q.hop) {
                    (_, Some(hop)) => hop.next_hop_domain.clone(),
                    (QueueId::Unreachable, None) => "Unreachable Domain".to_string(),
                    (QueueId::Poison, None) => "Poison Message".to_string(),
                    _ => "Submission".to_string(),
                };
                QueueInfo {
                    identity: format!("{}\\{qid}", config.server_name),
                    id: qid.to_string(),
                    delivery_type: q.delivery_type(*qid),
                    next_hop_domain,
                    next_hop_connector: q.hop.as_ref().and_then(|h| h.connector.clone()),
                    status: q.status(),
                    message_count: q.items.len() as u64,
                    last_error: q.retry.last_error.clone(),
                    last_retry_time: time(q.retry.last_retry_ms),
                    next_retry_time: time(q.retry.next_retry_ms),
                    first_retry_time: time(q.retry.first_retry_ms),
                    retry_count: q.retry.failures,
                }
            })
            .collect()
    }

    /// Get-Message: one row per message per queue, optionally of one queue.
    pub fn messages(&self, queue: Option<&str>) -> Result<Vec<MessageInfo>, ActionError> {
        let filter = match queue {
            Some(q) => Some(QueueId::parse(q).ok_or_else(|| ActionError::NotFound(format!("There is no queue {q}.")))?),
            None => None,
        };
        let config = self.config();
        let expiry = config.expiration.message_expiration_time_out.as_millis() as u64;
        let state = self.state();
        if let Some(qid) = filter {
            if !state.queues.contains_key(&qid) {
                return Err(ActionError::NotFound(format!("There is no queue {qid}.")));
            }
        }
        let mut rows = Vec::new();
        for (qid, q) in state.queues.iter().filter(|(qid, _)| filter.is_none_or(|f| f == **qid)) {
            for (id, item) in &q.items {
                let Some(msg) = state.messages.get(id) else { continue };
                let env = &msg.env;
                let status = item_status(msg, item, q);
                let recipients = item
                    .recipients
                    .iter()
                    .filter_map(|&i| env.recipients.get(i))
                    .map(|r| RecipientInfo {
                        address: r.address.clone(),
                        status: match (&r.status, status) {
                            (RecipientStatus::Delivered, _) => "Complete".into(),
                            (RecipientStatus::Failed { .. }, _) => "Failed".into(),
                            (RecipientStatus::Pending, MessageStatus::Retry) => "Retry".into(),
                            (RecipientStatus::Pending, _) => "Ready".into(),
                        },
                        last_error: r.last_error.clone(),
                    })
                    .collect();
                let source = match env.origin.source {
                    Source::Smtp => format!("SMTP:{}", env.origin.connector),
                    Source::Dsn => "DSN".into(),
                    Source::Replay => "Replay".into(),
                };
                rows.push(MessageInfo {
                    identity: format!("{}\\{qid}\\{id}", config.server_name),
                    id: id.0,
                    queue: qid.to_string(),
                    status,
                    from_address: env.mail_from.clone().unwrap_or_default(),
                    recipients,
                    size: env.size,
                    subject: env.subject.clone(),
                    internet_message_id: env.internet_message_id.clone(),
                    message_source_name: source,
                    date_received: rfc3339(from_millis(env.arrival_ms)),
                    expiration_time: if env.state.poisoned { None } else { time(Some(env.arrival_ms + expiry)) },
                    last_error: env.state.last_error.clone(),
                    retry_count: env.state.retry_count.max(q.retry.failures),
                });
            }
        }
        Ok(rows)
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

    /// Message count per queue status (for metrics).
    pub fn queue_status_counts(&self) -> Vec<(QueueStatus, u64)> {
        let state = self.state();
        let mut counts: Vec<(QueueStatus, u64)> = Vec::new();
        for q in state.queues.values() {
            let status = q.status();
            match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, n)) => *n += q.items.len() as u64,
                None => counts.push((status, q.items.len() as u64)),
            }
        }
        counts
    }
}
