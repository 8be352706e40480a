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
