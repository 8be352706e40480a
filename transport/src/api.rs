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
