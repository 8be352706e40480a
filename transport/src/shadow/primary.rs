//! The receiving (primary) server's side of shadow redundancy: one copy of
//! each message to one peer, and the answer to the peers' heartbeats.
use super::channel::{frame, PeerClient, Route, Shipper};
use super::SharedShadowConfig;
use crate::envelope::Envelope;
use crate::metrics::Telemetry;
use crate::queue::body::StagedBody;
use crate::queue::manager::QueueManager;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What became of the copy of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyOutcome {
    /// Shadowing is off or the server has no peers.
    NotWanted,
    /// `peer` holds the copy durably.
    Shadowed { peer: String },
    /// No peer took it; the sentence names each peer's reason.
    Failed { reason: String },
}

pub struct Primary {
    server_name: String,
    incarnation: u64,
    config: SharedShadowConfig,
    /// Messages whose copy may already be with a shadow while they are not
    /// queued here yet (or are being refused): a heartbeat must not call them
    /// finished.
    in_flight: Arc<Mutex<HashSet<u64>>>,
    /// Round robin over the peers, so copies spread.
    next_peer: AtomicUsize,
    client: PeerClient,
    /// One batching sender per peer (by name), for the route it was made for.
    shippers: Mutex<HashMap<String, (Route, Shipper)>>,
    telemetry: Arc<Telemetry>,
}

/// Keeps a message "held" for heartbeats until dropped.
pub struct InFlight {
    id: u64,
    set: Arc<Mutex<HashSet<u64>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.id);
    }
}

impl Primary {
    pub fn new(
        server_name: String,
        incarnation: u64,
        config: SharedShadowConfig,
        client: PeerClient,
        telemetry: Arc<Telemetry>,
    ) -> Primary {
        Primary {
            server_name,
            incarnation,
            config,
            in_flight: Arc::default(),
            next_peer: AtomicUsize::new(0),
            client,
            shippers: Mutex::default(),
            telemetry,
        }
    }

    /// The incarnation of this server's queue.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether a message received now gets a copy; the whole intake of the
    /// message is then inside [`Primary::begin`]'s guard.
    pub fn wanted(&self) -> bool {
        self.config.read().unwrap_or_else(|e| e.into_inner()).shadowing()
    }

    /// RejectMessageOnShadowFailure.
    pub fn reject_on_failure(&self) -> bool {
        self.config.read().unwrap_or_else(|e| e.into_inner()).policy.reject_on_failure
    }

    pub fn begin(&self, id: u64) -> InFlight {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(id);
        InFlight { id, set: self.in_flight.clone() }
    }

    /// Hands a copy of the message to one peer (trying each in turn) and
    /// returns once one holds it durably, or every one refused.
    pub async fn copy(&self, envelope: &Envelope, body: &StagedBody) -> CopyOutcome {
        let (peers, token) = {
            let config = self.config.read().unwrap_or_else(|e| e.into_inner());
            if !config.shadowing() {
                return CopyOutcome::NotWanted;
            }
            (config.copy_targets(), config.token.clone().unwrap_or_default())
        };
        let outcome = match frame(envelope, body).await {
            Err(e) => CopyOutcome::Failed { reason: format!("cannot read the message to copy it: {e}") },
            Ok(bytes) => {
                let bytes = bytes::Bytes::from(bytes);
                let start = self.next_peer.fetch_add(1, Ordering::Relaxed);
                let mut reasons = Vec::new();
                let mut shadowed = None;
                for i in 0..peers.len() {
                    let peer = &peers[(start + i) % peers.len()];
                    let route = Route {
                        address: peer.address.clone(),
                        token: token.clone(),
                        primary: self.server_name.clone(),
                        incarnation: self.incarnation,
                    };
                    match self.shipper(&peer.name, route).ship(bytes.clone(), &peer.address).await {
                        Ok(()) => {
                            shadowed = Some(peer.name.clone());
                            break;
                        }
                        Err(e) => reasons.push(format!("{}: {e}", peer.name)),
                    }
                }
                match shadowed {
                    Some(peer) => CopyOutcome::Shadowed { peer },
                    None => CopyOutcome::Failed { reason: reasons.join("; ") },
                }
            }
        };
        self.telemetry.shadow_copy(match &outcome {
            CopyOutcome::NotWanted => "not_wanted",
            CopyOutcome::Shadowed { .. } => "shadowed",
            CopyOutcome::Failed { .. } => "failed",
        });
        outcome
    }

    /// The batching sender to `peer` (a new one when its address or the credential changed).
    fn shipper(&self, peer: &str, route: Route) -> Shipper {
        let mut shippers = self.shippers.lock().unwrap_or_else(|e| e.into_inner());
        match shippers.get(peer) {
            Some((r, s)) if *r == route => s.clone(),
            _ => {
                let s = Shipper::start(self.client.clone(), route.clone());
                shippers.insert(peer.to_string(), (route, s.clone()));
                s
            }
        }
    }

    /// The heartbeat's answer: which of `ids` this server still holds (queued,
    /// or being stored right now).
    pub fn held(&self, manager: &QueueManager, ids: &[u64]) -> Vec<u64> {
        // In-flight first, and kept locked while the queue is asked: intake
        // enqueues before it lets go of the id, so no message falls between the two.
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let mut held = manager.holds(ids);
        held.extend(ids.iter().filter(|id| in_flight.contains(id)));
        held
    }
}
