//! Who may connect, submit and deliver: ServerState (Started, Paused, Stopped
//! and the transitions) and the server component states (HubTransport,
//! FrontendTransport, ServerWideOffline with their requesters).
//!
//! The rest of the server never reads those states directly: it reads an
//! [`Availability`], which this module derives, so the rules of DESIGN §3 live
//! in one place.
use tokio::sync::watch;

/// What the server allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// Listeners take new sessions (false while Paused or Stopped: a new
    /// connection gets `421 4.3.2` and is closed).
    pub connections: bool,
    /// MAIL FROM is accepted (false while HubTransport is not Active, the
    /// server is offline or redirecting: `421 4.3.2 Service not active`).
    pub mail: bool,
    /// Delivery queues are worked (false while Stopped).
    pub delivery: bool,
    /// Open sessions end after their current transaction (Stopping/Stopped).
    pub end_sessions: bool,
}

impl Availability {
    pub const OPEN: Availability = Availability { connections: true, mail: true, delivery: true, end_sessions: false };
}

/// The handle the listeners, sessions and queue manager read availability from.
/// Cheap to clone.
#[derive(Clone)]
pub struct Gate {
    rx: watch::Receiver<Availability>,
}

impl Gate {
    pub fn new(rx: watch::Receiver<Availability>) -> Self {
        Gate { rx }
    }

    /// A gate that is always open (tests of the SMTP layer alone).
    pub fn always_open() -> Self {
        let (tx, rx) = watch::channel(Availability::OPEN);
        // Keep the sender alive for the life of the process: a closed channel
        // would read as "no more changes", which is what we want anyway.
        std::mem::forget(tx);
        Gate { rx }
    }

    pub fn now(&self) -> Availability {
        *self.rx.borrow()
    }

    /// A receiver to await changes on.
    pub fn watch(&self) -> watch::Receiver<Availability> {
        self.rx.clone()
    }
}
