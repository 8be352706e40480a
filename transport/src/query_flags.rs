//! The filter flags of Get-Message and Get-MessageTrackingLog, one definition for both
//! command lines that ask them: `transportctl` (one server) and `kubectl transport` (every
//! server of a TransportService). Each turns into the admin API's query type.
use crate::api::{MessageQuery, MessageStatus, ResultSize, TrackingEvent, TrackingQuery};

/// Get-Message's filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct MessageFilters {
    /// Only the messages of this queue (`Submission`, `Unreachable`, `Poison` or its number).
    #[arg(long)]
    pub queue: Option<String>,
    /// Only messages in this status (Active, Ready, Retry, Suspended, PendingSuspend,
    /// PendingRemove).
    #[arg(long)]
    pub status: Option<MessageStatus>,
    /// Only messages from this sender (`<>` for the null sender).
    #[arg(long)]
    pub sender: Option<String>,
    /// Only messages with a recipient in this domain.
    #[arg(long)]
    pub recipient_domain: Option<String>,
    /// Rows to show: a number or Unlimited (default 1000, as Get-Message's -ResultSize).
    #[arg(long)]
    pub result_size: Option<ResultSize>,
}

impl MessageFilters {
    pub fn query(&self) -> MessageQuery {
        MessageQuery {
            queue: self.queue.clone(),
            status: self.status,
            sender: self.sender.clone(),
            recipient_domain: self.recipient_domain.clone(),
            result_size: self.result_size,
            ..MessageQuery::default()
        }
    }
}

/// Get-MessageTrackingLog's filters: every one given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TrackingFilters {
    /// The envelope sender.
    #[arg(long)]
    pub sender: Option<String>,
    /// Records naming any of these recipients (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub recipients: Vec<String>,
    /// The Message-ID header, with or without angle brackets (a DSN about it is found by
    /// it too).
    #[arg(long)]
    pub message_id: Option<String>,
    /// RECEIVE, SEND, DELIVER, DEFER, FAIL, DSN, EXPIRE, RESUBMIT, REDIRECT, POISONMESSAGE,
    /// DROP, HARECEIVE, HAREDIRECT, HADISCARD, HARESUBMIT.
    #[arg(long)]
    pub event_id: Option<TrackingEvent>,
    /// Records at or after this time (RFC 3339; the server refuses another form, naming it).
    #[arg(long)]
    pub start: Option<String>,
    /// Records before this time (RFC 3339).
    #[arg(long)]
    pub end: Option<String>,
    /// Records to show: a number or Unlimited (default 1000, the oldest).
    #[arg(long)]
    pub result_size: Option<ResultSize>,
}

impl TrackingFilters {
    pub fn query(&self) -> TrackingQuery {
        TrackingQuery {
            sender: self.sender.clone(),
            recipients: self.recipients.clone(),
            message_id: self.message_id.clone(),
            event_id: self.event_id,
            start: self.start.clone(),
            end: self.end.clone(),
            result_size: self.result_size,
            ..TrackingQuery::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Line {
        #[command(flatten)]
        tracking: TrackingFilters,
    }

    #[test]
    fn flags_become_the_admin_api_query() {
        let line = Line::try_parse_from([
            "x",
            "--sender",
            "a@x.test",
            "--recipients",
            "b@y.test,c@y.test",
            "--event-id",
            "FAIL",
            "--start",
            "2026-12-07T08:00:00Z",
            "--result-size",
            "Unlimited",
        ])
        .unwrap();
        let q = line.tracking.query();
        assert_eq!(q.sender.as_deref(), Some("a@x.test"));
        assert_eq!(q.recipients, ["b@y.test", "c@y.test"]);
        assert_eq!(q.event_id, Some(TrackingEvent::Fail));
        assert_eq!(q.start.as_deref(), Some("2026-12-07T08:00:00Z"));
        assert_eq!(q.result_size, Some(ResultSize::Unlimited));
        assert_eq!(q.internal_message_id, None);
        let bad = Line::try_parse_from(["x", "--event-id", "LOST"]).err().unwrap().to_string();
        assert!(bad.contains("--event-id"), "{bad}");
    }
}
