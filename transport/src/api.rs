//! JSON types of the admin HTTP API (docs/design.md §8). The server produces them,
//! `transportctl` and the operator read them: one definition for all three.
use crate::config::{Component, ComponentState, Requester};
use serde::{Deserialize, Serialize};

/// ServerState with its IIS/Exchange code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ServerStateName {
    Starting,
    Started,
    Stopping,
    Stopped,
    Pausing,
    Paused,
    Continuing,
}

impl ServerStateName {
    pub fn code(self) -> u8 {
        match self {
            ServerStateName::Starting => 1,
            ServerStateName::Started => 2,
            ServerStateName::Stopping => 3,
            ServerStateName::Stopped => 4,
            ServerStateName::Pausing => 5,
            ServerStateName::Paused => 6,
            ServerStateName::Continuing => 7,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServerStateName::Starting => "Starting",
            ServerStateName::Started => "Started",
            ServerStateName::Stopping => "Stopping",
            ServerStateName::Stopped => "Stopped",
            ServerStateName::Pausing => "Pausing",
            ServerStateName::Paused => "Paused",
            ServerStateName::Continuing => "Continuing",
        }
    }
}

/// `{name, code}` as every status and `GET /v1/server` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServerStateInfo {
    pub name: ServerStateName,
    pub code: u8,
}

impl From<ServerStateName> for ServerStateInfo {
    fn from(name: ServerStateName) -> Self {
        ServerStateInfo { name, code: name.code() }
    }
}

/// One requester's wish for a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequesterState {
    pub requester: Requester,
    pub state: ComponentState,
    /// RFC 3339 time the requester set it.
    pub since: String,
}

/// A component's combined state and the wishes it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    pub component: Component,
    pub state: ComponentState,
    pub requesters: Vec<RequesterState>,
}

/// Message totals of a server (for status and metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueTotals {
    pub messages: u64,
    pub in_retry: u64,
    pub suspended: u64,
    pub poison: u64,
    /// Shadow copies held for other servers (not counted in `messages`).
    #[serde(default)]
    pub shadow_messages: u64,
    /// Delivered messages kept in the Safety Net (not counted in `messages`).
    #[serde(default)]
    pub safety_net_messages: u64,
}

impl QueueTotals {
    /// What Redirect-Message hands over: the queued messages that are neither suspended
    /// nor poison (the one definition the operator's drains use too).
    pub fn redirectable(&self) -> u64 {
        self.messages.saturating_sub(self.poison + self.suspended)
    }
}

/// `POST /v1/resubmit` (Add-ResubmitRequest): queue again what the Safety Net
/// holds of the messages delivered from `startTime` to `endTime` (RFC 3339),
/// to the recipients routed to `destination` (a NextHopDomain) when given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResubmitRequest {
    pub start_time: String,
    pub end_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Answer of `POST /v1/resubmit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResubmitInfo {
    /// Messages queued again.
    pub resubmitted: u64,
}

/// Answer of `POST /v1/shadow/{primary}/takeover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TakeoverInfo {
    pub primary: String,
    /// Messages queued on this server from the copies.
    pub resubmitted: u64,
}

/// Answer of `POST /v1/shadow/{primary}/heartbeat`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowCheckInfo {
    pub primary: String,
    /// Copies of the primary's messages this server still holds after asking it.
    pub held_copies: u64,
}

/// Progress of a Redirect-Message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedirectInfo {
    pub target: String,
    /// Messages still to hand over.
    pub remaining: u64,
    pub done: bool,
}

/// `GET /v1/server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    pub server_name: String,
    pub server_state: ServerStateInfo,
    pub components: Vec<ComponentInfo>,
    /// [`crate::config::revision`] of the configuration file in effect.
    pub config_revision: String,
    /// The file on disk changed in a way only a restart applies (a listener's address).
    #[serde(default)]
    pub restart_required: bool,
    /// Whether the server takes new mail now (what `/readyz` answers).
    #[serde(default)]
    pub accepting_mail: bool,
    #[serde(default)]
    pub totals: QueueTotals,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<RedirectInfo>,
    /// The certificate of each receive connector with STARTTLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificates: Vec<CertificateInfo>,
}

/// A receive connector's certificate as the server uses it, and a renewed one it could
/// not use (cert-manager rotates the Secret; the server takes the new pair for new
/// sessions when it loads, and keeps the old one when it does not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateInfo {
    /// The receive connector.
    pub connector: String,
    /// SHA-256 of the certificate in use (DER), lower-case hex.
    pub fingerprint: String,
    /// When the certificate in use expires (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<String>,
    /// When the server took it into use (RFC 3339).
    pub loaded_at: String,
    /// Why the certificate and key now on disk cannot be used (the one above stays in use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `PUT /v1/server/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetServerState {
    pub state: crate::config::ServerStateSetting,
}

/// `PUT /v1/components/{component}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetComponentState {
    pub requester: Requester,
    pub state: ComponentState,
}

/// Queue status as Get-Queue shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QueueStatus {
    Active,
    Ready,
    Retry,
    Suspended,
    Connecting,
}

/// Exchange DeliveryType of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum DeliveryType {
    /// Submission and Poison.
    Undefined,
    DnsConnectorDelivery,
    SmartHostConnectorDelivery,
    SmtpDeliveryToMailbox,
    Unreachable,
    /// Copies held for another server of the service (`server\Shadow\<n>`).
    ShadowRedundancy,
}

/// A row of `GET /v1/queues` (Get-Queue).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    /// `server\Submission`, `server\Unreachable`, `server\Poison`, `server\<number>`.
    pub identity: String,
    /// What the API paths take: `Submission`, `Unreachable`, `Poison` or the number.
    pub id: String,
    pub delivery_type: DeliveryType,
    pub next_hop_domain: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop_connector: Option<String>,
    pub status: QueueStatus,
    pub message_count: u64,
    pub last_error: Option<String>,
    /// RFC 3339.
    pub last_retry_time: Option<String>,
    /// RFC 3339.
    pub next_retry_time: Option<String>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_retry_time: Option<String>,
    pub retry_count: u32,
}

/// Message status as Get-Message shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MessageStatus {
    Active,
    Ready,
    Retry,
    Suspended,
    PendingSuspend,
    PendingRemove,
}

impl MessageStatus {
    pub const ALL: [MessageStatus; 6] = [
        MessageStatus::Active,
        MessageStatus::Ready,
        MessageStatus::Retry,
        MessageStatus::Suspended,
        MessageStatus::PendingSuspend,
        MessageStatus::PendingRemove,
    ];
}

impl std::str::FromStr for MessageStatus {
    type Err = String;

    /// The status's name, without regard to case (as Exchange takes it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageStatus::ALL.into_iter().find(|st| format!("{st:?}").eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<String> = MessageStatus::ALL.iter().map(|st| format!("{st:?}")).collect();
            format!("message status {s:?} is none of {}", names.join(", "))
        })
    }
}

/// A recipient of a message row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecipientInfo {
    pub address: String,
    /// `Ready`, `Retry`, `Complete` or `Failed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// A row of `GET /v1/messages` (Get-Message): one message in one queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageInfo {
    /// `server\queue\message`.
    pub identity: String,
    /// The message number the API paths take.
    pub id: u64,
    /// The queue's id (`Submission`, `Unreachable`, `Poison` or its number).
    pub queue: String,
    pub status: MessageStatus,
    /// Empty for the null sender.
    pub from_address: String,
    pub recipients: Vec<RecipientInfo>,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
    /// `SMTP:<connector>`, `DSN`, `Replay`, ...
    pub message_source_name: String,
    /// RFC 3339.
    pub date_received: String,
    /// RFC 3339; absent for poison messages (they never expire).
    pub expiration_time: Option<String>,
    pub last_error: Option<String>,
    pub retry_count: u32,
}

/// Get-Message's default `-ResultSize`.
pub const DEFAULT_RESULT_SIZE: u32 = 1000;

/// Query of `GET /v1/messages`: Get-Message's filters and paging. Every filter
/// is optional; rows come in queue order, then message number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageQuery {
    /// Only the messages of this queue (`Submission`, `Poison`, a number, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Only this message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<MessageStatus>,
    /// FromAddress, compared without regard to case (`<>` is the null sender).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Messages with a recipient in this domain (in this queue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_domain: Option<String>,
    /// Rows per answer: a number or `Unlimited`; [`DEFAULT_RESULT_SIZE`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_size: Option<ResultSize>,
    /// The identity of the last row of the previous page: rows after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bookmark: Option<String>,
}

/// Header of a `GET /v1/messages` answer that has more rows: the bookmark
/// (identity of its last row) to ask for the next page with.
pub const NEXT_BOOKMARK_HEADER: &str = "x-next-bookmark";

/// Get-Message's `-ResultSize`: a number of rows, or `Unlimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ResultSize {
    Rows(u32),
    Unlimited,
}

impl ResultSize {
    /// The number of rows, `None` for no limit.
    pub fn limit(self) -> Option<usize> {
        match self {
            ResultSize::Rows(n) => Some(n as usize),
            ResultSize::Unlimited => None,
        }
    }
}

impl std::str::FromStr for ResultSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("unlimited") {
            return Ok(ResultSize::Unlimited);
        }
        match s.parse::<u32>() {
            Ok(n) if n > 0 => Ok(ResultSize::Rows(n)),
            _ => Err(format!("ResultSize {s:?} is neither a positive number nor Unlimited")),
        }
    }
}

impl TryFrom<String> for ResultSize {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ResultSize> for String {
    fn from(r: ResultSize) -> String {
        match r {
            ResultSize::Rows(n) => n.to_string(),
            ResultSize::Unlimited => "Unlimited".to_string(),
        }
    }
}

/// `POST /v1/redirect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedirectRequest {
    /// `host:port` of the SMTP receive connector of the server to hand mail to.
    pub target: String,
}

/// Body of every error answer (401, 404, 409, 400).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// Header that carries the admin token where `Authorization` cannot: the Kubernetes API
/// server takes the caller's own `Authorization` header for itself, so a request through
/// a pod's `proxy` subresource (`kubectl transport`) sends the server's token here.
pub const TOKEN_HEADER: &str = "x-transport-token";

/// `event-id` of a message tracking record (Get-MessageTrackingLog `-EventId`).
/// Exchange's names; this server writes the events docs/design.md §8 lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TrackingEvent {
    /// Accepted and durable (source SMTP, or ADMIN from the replay directory).
    Receive,
    /// Handed to another server by SMTP.
    Send,
    /// Handed to the mailbox hop (a send connector of delivery type SmtpDeliveryToMailbox).
    Deliver,
    /// Delivery attempt failed temporarily; the recipients stay queued.
    Defer,
    /// Delivery failed permanently for the recipients named.
    Fail,
    /// A delivery status notification was generated (reference: the original's message id).
    Dsn,
    /// The message expired in its queue before it could be delivered.
    Expire,
    /// Queued again by a resubmit request (Safety Net) or Retry-Queue -Resubmit.
    Resubmit,
    /// Handed to another server by Redirect-Message (maintenance drain).
    Redirect,
    /// Moved to the poison message queue.
    PoisonMessage,
    /// Removed by an administrator without a report.
    Drop,
    /// A shadow copy of another server's message was received.
    HaReceive,
    /// A shadow copy of this message was made on a peer.
    HaRedirect,
    /// A shadow copy was discarded (its primary delivered the message).
    HaDiscard,
    /// A shadow copy was queued for delivery because its primary is gone.
    HaResubmit,
}

impl TrackingEvent {
    pub const ALL: [TrackingEvent; 15] = [
        TrackingEvent::Receive,
        TrackingEvent::Send,
        TrackingEvent::Deliver,
        TrackingEvent::Defer,
        TrackingEvent::Fail,
        TrackingEvent::Dsn,
        TrackingEvent::Expire,
        TrackingEvent::Resubmit,
        TrackingEvent::Redirect,
        TrackingEvent::PoisonMessage,
        TrackingEvent::Drop,
        TrackingEvent::HaReceive,
        TrackingEvent::HaRedirect,
        TrackingEvent::HaDiscard,
        TrackingEvent::HaResubmit,
    ];

    /// The name written in the log and taken by `-EventId`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackingEvent::Receive => "RECEIVE",
            TrackingEvent::Send => "SEND",
            TrackingEvent::Deliver => "DELIVER",
            TrackingEvent::Defer => "DEFER",
            TrackingEvent::Fail => "FAIL",
            TrackingEvent::Dsn => "DSN",
            TrackingEvent::Expire => "EXPIRE",
            TrackingEvent::Resubmit => "RESUBMIT",
            TrackingEvent::Redirect => "REDIRECT",
            TrackingEvent::PoisonMessage => "POISONMESSAGE",
            TrackingEvent::Drop => "DROP",
            TrackingEvent::HaReceive => "HARECEIVE",
            TrackingEvent::HaRedirect => "HAREDIRECT",
            TrackingEvent::HaDiscard => "HADISCARD",
            TrackingEvent::HaResubmit => "HARESUBMIT",
        }
    }
}

impl std::str::FromStr for TrackingEvent {
    type Err = String;

    /// The event's name, without regard to case (as Exchange takes it).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TrackingEvent::ALL.into_iter().find(|e| e.as_str().eq_ignore_ascii_case(s)).ok_or_else(|| {
            let names: Vec<&str> = TrackingEvent::ALL.iter().map(|e| e.as_str()).collect();
            format!("event id {s:?} is none of {}", names.join(", "))
        })
    }
}

/// Query of `GET /v1/messagetracking` (Get-MessageTrackingLog's filters). Every filter is
/// optional and all given must match; rows come oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingQuery {
    /// `sender-address`, without regard to case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Records naming any of these recipients, without regard to case (comma-separated
    /// in the query string).
    #[serde(default, with = "comma_list", skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
    /// `message-id` (the Message-ID header), with or without its angle brackets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internal_message_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<TrackingEvent>,
    /// RFC 3339: records at or after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// RFC 3339: records before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// The first rows to answer (a number or `Unlimited`); [`DEFAULT_RESULT_SIZE`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_size: Option<ResultSize>,
}

/// A comma-separated list in a query string, a list in Rust.
mod comma_list {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(list: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&list.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let text = String::deserialize(d)?;
        Ok(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
    }
}

/// One record of the message tracking log, as `GET /v1/messagetracking` answers it:
/// Get-MessageTrackingLog's properties. Empty CSV fields are absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrackingRecord {
    /// RFC 3339 with milliseconds, UTC (`date-time`).
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_context: Option<String>,
    /// The receive or send connector (`SMTP:<name>` is not used: the bare name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector_id: Option<String>,
    /// `SMTP`, `ADMIN`, `DSN`, `QUEUE`, `SHADOW`.
    pub source: String,
    pub event_id: TrackingEvent,
    /// The message's number on the server that wrote the record (the API paths take it).
    pub internal_message_id: u64,
    /// The Message-ID header, as in the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub recipients: Vec<String>,
    /// One per recipient, in the same order (the SMTP reply, or the reason).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipient_status: Vec<String>,
    pub total_bytes: u64,
    pub recipient_count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub related_recipient_address: Option<String>,
    /// DSN: the Message-ID of the message reported on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Only with `logging.messageTrackingSubject` on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_subject: Option<String>,
    /// The envelope sender (empty for the null sender).
    pub sender: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_info: Option<String>,
}

/// The query of `GET /v1/tlsrpt`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsReportQuery {
    /// `YYYY-MM-DD`: that day only; else every day kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

/// `GET /v1/tlsrpt`: the TLS reporting aggregates (RFC 8460) of one UTC day, per policy
/// domain. Today's counts grow until the day ends; past days are kept a week.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsReportDay {
    /// `YYYY-MM-DD`, UTC on the server's clock.
    pub date: String,
    pub domains: Vec<TlsReportDomain>,
}

/// The sessions of one day to one policy domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsReportDomain {
    pub domain: String,
    /// RFC 8460 §4.4 policy-type: `sts`, `tlsa` or `no-policy-found`.
    pub policy_type: String,
    /// The policy's lines as last applied (RFC 8460 policy-string).
    pub policy_string: Vec<String>,
    /// The policy's `mx:` patterns.
    pub mx_host: Vec<String>,
    pub successful_session_count: u64,
    pub failed_session_count: u64,
    pub failure_details: Vec<TlsFailureDetail>,
    /// What became of the day's report once the day ended: `sent to <rua>`, `no TLSRPT
    /// record`, `sending is off`, or why it could not be sent. None while the day runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// Failed sessions of one kind to one MX host (RFC 8460 §4.3 failure-details).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsFailureDetail {
    /// RFC 8460 §4.3 result-type, e.g. `starttls-not-supported`.
    pub result_type: String,
    pub receiving_mx_hostname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receiving_ip: Option<String>,
    /// This server's address on the failed connections (RFC 8460 sending-mta-ip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sending_mta_ip: Option<String>,
    pub failed_session_count: u64,
    /// The first reason seen, as the connectivity log has it (RFC 8460 failure-reason-code).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason_code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspended_and_poison_messages_are_not_redirected() {
        let totals = QueueTotals { messages: 10, in_retry: 4, suspended: 2, poison: 3, ..QueueTotals::default() };
        assert_eq!(totals.redirectable(), 5, "messages in Retry go, suspended and poison stay");
        let left = QueueTotals { messages: 2, suspended: 1, poison: 1, ..QueueTotals::default() };
        assert_eq!(left.redirectable(), 0);
    }
}
