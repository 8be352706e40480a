//! Shadow redundancy (docs/design.md §9; Exchange's shadow redundancy): a
//! message received from outside is held durably on two servers of the
//! TransportService before the client gets `250`, so that losing one server
//! together with its disk loses no acknowledged mail.
//!
//! - [`primary`]: the receiving server's side: offer a copy to a peer while the
//!   message is stored here (both in parallel: one round trip, overlapping
//!   fsyncs), and tell the shadows which of their copies it still holds.
//! - [`holder`]: the copies this server keeps for its peers (a store of its own
//!   under `<queueDirectory>/shadow`), the heartbeat that drops copies whose
//!   message the primary has finished, and the takeover that delivers them
//!   from here when the primary is gone (unreachable for
//!   ShadowResubmitTimeSpan, its queue created afresh, or the operator says so).
//! - [`channel`]: the HTTP channel between peers, open only to a bearer
//!   credential that every server of the service shares.
//!
//! Discard is a question, not a notice: the shadow sends the ids it holds and
//! the primary answers with those it still has queued (or is storing right
//! now). A lost answer only delays a discard; a primary that restarted on the
//! same disk answers from its recovered queue; one whose queue is new answers
//! with a different incarnation and the shadow takes over at once. Delivery is
//! at least once: a takeover while the primary still delivers duplicates, it
//! never loses.
mod channel;
mod holder;
mod log;
mod primary;

pub use channel::{serve, ChannelState, PeerClient, PeerError};
pub use holder::{Holder, HolderError, SHADOW_DIR};
pub use primary::{CopyOutcome, InFlight, Primary};

use crate::config::{ShadowPeer, ShadowPolicy, TransportFile};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, RwLock};

/// The shadow settings in effect: the organisation's policy, the peers and the
/// shared credential. Replaced as a whole on a reload.
#[derive(Debug, Clone)]
pub struct ShadowConfig {
    pub policy: ShadowPolicy,
    /// The other servers, in the order copies are offered (rotated per message),
    /// then those being removed (heartbeats only).
    pub peers: Vec<ShadowPeer>,
    /// The credential peers present; `None` when the server has no channel.
    pub token: Option<String>,
}

impl ShadowConfig {
    /// From the file; `token` is the content of `shadow.tokenFile`.
    pub fn from_file(file: &TransportFile, token: Option<String>) -> ShadowConfig {
        ShadowConfig {
            policy: file.transport_config.shadow_policy(),
            peers: file.shadow.as_ref().map(|s| s.peers.clone()).unwrap_or_default(),
            token,
        }
    }

    /// The address of `peer`'s channel, if it is (still) a peer.
    pub fn address_of(&self, peer: &str) -> Option<&str> {
        self.peers.iter().find(|p| p.name == peer).map(|p| p.address.as_str())
    }

    /// The peers a copy may go to: every one but those being removed.
    pub fn copy_targets(&self) -> Vec<ShadowPeer> {
        self.peers.iter().filter(|p| !p.leaving).cloned().collect()
    }

    /// Whether messages received now get a shadow copy.
    pub fn shadowing(&self) -> bool {
        self.policy.enabled && self.peers.iter().any(|p| !p.leaving) && self.token.is_some()
    }
}

pub type SharedShadowConfig = Arc<RwLock<ShadowConfig>>;

/// `POST /v1/shadow/heartbeat`: a shadow asks the primary which of these
/// message ids (the primary's) it still holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    /// The asking (shadow) server.
    pub shadow: String,
    pub ids: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatReply {
    /// The incarnation of the primary's queue (see `Recovered::incarnation`).
    pub incarnation: u64,
    /// The asked ids the primary still holds; the shadow drops the others.
    pub held: Vec<u64>,
}

/// At most this many ids per heartbeat request (a primary with a million
/// queued messages is asked in pages).
pub const HEARTBEAT_PAGE: usize = 10_000;
