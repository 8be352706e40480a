//! Who may connect, submit and deliver: ServerState (Started, Paused, Stopped
//! and the transitions between them) and the server component states
//! (HubTransport, FrontendTransport, ServerWideOffline, one wish per requester).
//!
//! The rest of the server never reads those states directly: it reads an
//! [`Availability`] through a [`Gate`], which this module derives, so the rules
//! of docs/design.md §3 live in one place:
//! - Paused: no new connections; open sessions go on and may submit; delivery goes on.
//! - Stopped: no connections, no delivery; open sessions end after their current transaction.
//! - A component not Active (HubTransport, FrontendTransport, or ServerWideOffline
//!   Inactive): banner and EHLO work, MAIL FROM gets `421 4.3.2 Service not active`.
//!   Draining still delivers the queue; ServerWideOffline Inactive stops delivery too.
//! - A Redirect-Message in progress refuses new mail.
mod components;

pub use components::ComponentTable;

use crate::api::{ComponentInfo, ServerStateInfo, ServerStateName};
use crate::clock::SharedClock;
use crate::config::{Component, ComponentState, Requester, ServerStateSetting};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::watch;
use tracing::info;

/// What the server allows right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Availability {
    /// Listeners take new sessions (false while Paused or Stopped: a new
    /// connection gets `421 4.3.2` and is closed).
    pub connections: bool,
    /// MAIL FROM is accepted (false while a component is not Active, the
    /// server is stopping or redirecting: `421 4.3.2 Service not active`).
    pub mail: bool,
    /// Delivery queues are worked (false while Stopped or offline).
    pub delivery: bool,
    /// Open sessions end after their current transaction (Stopping/Stopped).
    pub end_sessions: bool,
}

impl Availability {
    pub const OPEN: Availability = Availability { connections: true, mail: true, delivery: true, end_sessions: false };

    /// What `/readyz` answers: the server takes new mail.
    pub fn ready(&self) -> bool {
        self.connections && self.mail
    }
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

    pub fn now(&self) -> Availability {
        *self.rx.borrow()
    }

    /// A receiver to await changes on.
    pub fn watch(&self) -> watch::Receiver<Availability> {
        self.rx.clone()
    }
}

/// How busy the server is, for the Stopping transition (it ends when nothing
/// is in progress).
pub trait Activity: Send + Sync + 'static {
    /// SMTP sessions open now.
    fn open_sessions(&self) -> usize;
    /// Messages being transmitted now.
    fn active_deliveries(&self) -> usize;
}

struct Wishes {
    server_state: ServerStateName,
    components: ComponentTable,
    redirecting: bool,
    /// Bumped by every server-state request, so a slow transition that was
    /// overtaken by a newer request does not finish on top of it.
    generation: u64,
}

struct ControlCore {
    state: Mutex<Wishes>,
    tx: watch::Sender<Availability>,
    /// `components.json` in the queue directory.
    persist_path: PathBuf,
    clock: SharedClock,
}

/// Owner of ServerState and component states. Cheap to clone.
#[derive(Clone)]
pub struct Control {
    inner: Arc<ControlCore>,
}

/// The longest Stopping waits for open transactions and deliveries.
const STOP_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
#[error("cannot persist component states to {path}: {source}")]
pub struct PersistError {
    path: String,
    source: std::io::Error,
}

impl Control {
    /// Starts in Starting (1). Component states come from `components.json` in
    /// `queue_dir` (what requesters set before a restart), then the config
    /// file's entries, which win for the requesters they name.
    pub fn new(
        queue_dir: &Path,
        file_components: &BTreeMap<Component, BTreeMap<Requester, ComponentState>>,
        clock: SharedClock,
    ) -> Control {
        let persist_path = queue_dir.join("components.json");
        let mut components = ComponentTable::load(&persist_path);
        components.apply_file(file_components, clock.now());
        let state = Wishes { server_state: ServerStateName::Starting, components, redirecting: false, generation: 0 };
        let (tx, _) = watch::channel(derive(&state));
        Control { inner: Arc::new(ControlCore { state: Mutex::new(state), tx, persist_path, clock }) }
    }

    pub fn gate(&self) -> Gate {
        Gate::new(self.inner.tx.subscribe())
    }

    pub fn availability(&self) -> Availability {
        *self.inner.tx.borrow()
    }

    pub fn server_state(&self) -> ServerStateInfo {
        self.lock().server_state.into()
    }

    pub fn components(&self) -> Vec<ComponentInfo> {
        self.lock().components.infos()
    }

    /// The combined state of a component (ServerWideOffline Inactive included).
    pub fn effective(&self, component: Component) -> ComponentState {
        self.lock().components.effective(component)
    }

    /// Moves to the state the server was asked to be in; transitional states
    /// (Pausing, Continuing, Stopping, Starting) are visible while they last.
    /// Returns once the transition finished (Stopping waits for open
    /// transactions and deliveries, at most a minute).
    pub async fn set_server_state(&self, target: ServerStateSetting, activity: &dyn Activity) {
        let (transitional, final_state, generation) = {
            let mut state = self.lock();
            let from = state.server_state;
            let (transitional, final_state) = match target {
                ServerStateSetting::Started => match from {
                    ServerStateName::Started => (None, ServerStateName::Started),
                    ServerStateName::Paused | ServerStateName::Pausing => {
                        (Some(ServerStateName::Continuing), ServerStateName::Started)
                    }
                    _ => (Some(ServerStateName::Starting), ServerStateName::Started),
                },
                ServerStateSetting::Paused => match from {
                    ServerStateName::Paused => (None, ServerStateName::Paused),
                    _ => (Some(ServerStateName::Pausing), ServerStateName::Paused),
                },
                ServerStateSetting::Stopped => match from {
                    ServerStateName::Stopped => (None, ServerStateName::Stopped),
                    _ => (Some(ServerStateName::Stopping), ServerStateName::Stopped),
                },
            };
            state.generation += 1;
            // Already in the transitional state (a server that is Starting): nothing to show.
            let transitional = transitional.filter(|t| *t != from);
            if let Some(t) = transitional {
                info!(from = from.as_str(), to = t.as_str(), code = t.code(), "ServerState");
                state.server_state = t;
                self.publish(&state);
            }
            (transitional, final_state, state.generation)
        };
        if transitional == Some(ServerStateName::Stopping) {
            // Open sessions end after their transaction; deliveries in flight finish.
            let deadline = tokio::time::Instant::now() + STOP_GRACE;
            while (activity.open_sessions() > 0 || activity.active_deliveries() > 0)
                && tokio::time::Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut state = self.lock();
        if state.generation != generation {
            return; // a newer request took over
        }
        if state.server_state != final_state {
            info!(to = final_state.as_str(), code = final_state.code(), "ServerState");
            state.server_state = final_state;
            self.publish(&state);
        }
    }

    /// Records one requester's wish for a component and persists every wish.
    pub fn set_component(
        &self,
        component: Component,
        requester: Requester,
        value: ComponentState,
    ) -> Result<(), PersistError> {
        let mut state = self.lock();
        state.components.set(component, requester, value, self.inner.clock.now());
        info!(
            component = component.as_str(),
            requester = requester.as_str(),
            state = value.as_str(),
            effective = state.components.effective(component).as_str(),
            "ServerComponentState"
        );
        self.publish(&state);
        state
            .components
            .save(&self.inner.persist_path)
            .map_err(|source| PersistError { path: self.inner.persist_path.display().to_string(), source })
    }

    /// A reloaded config file's `components` entries (they win for the
    /// requesters they name).
    pub fn apply_file_components(&self, file: &BTreeMap<Component, BTreeMap<Requester, ComponentState>>) {
        let mut state = self.lock();
        if state.components.apply_file(file, self.inner.clock.now()) {
            self.publish(&state);
            if let Err(e) = state.components.save(&self.inner.persist_path) {
                tracing::warn!(error = %e, "cannot persist component states");
            }
        }
    }

    /// Mirrors whether a Redirect-Message is in progress. The flag is read
    /// from the queue manager's channel under this lock, so callers racing
    /// each other (the follower task, the admin handler answering the
    /// redirect request) can only ever leave the latest value behind.
    pub fn sync_redirecting(&self, redirecting: &watch::Receiver<bool>) {
        let mut state = self.lock();
        let on = *redirecting.borrow();
        if state.redirecting != on {
            state.redirecting = on;
            self.publish(&state);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Wishes> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, state: &Wishes) {
        self.inner.tx.send_replace(derive(state));
    }
}

/// The rules of docs/design.md §3, in one place.
fn derive(state: &Wishes) -> Availability {
    use ServerStateName as S;
    let running = !matches!(state.server_state, S::Stopping | S::Stopped);
    let mail_component = [Component::HubTransport, Component::FrontendTransport, Component::ServerWideOffline]
        .into_iter()
        .map(|c| state.components.effective(c))
        .max()
        .unwrap_or_default();
    let offline = state.components.effective(Component::ServerWideOffline) == ComponentState::Inactive;
    Availability {
        connections: matches!(state.server_state, S::Started | S::Continuing),
        mail: running && mail_component == ComponentState::Active && !state.redirecting,
        delivery: running && !offline,
        end_sessions: !running,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::UNIX_EPOCH;

    struct Busy(AtomicUsize);
    impl Activity for Busy {
        fn open_sessions(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
        fn active_deliveries(&self) -> usize {
            0
        }
    }

    fn control(dir: &Path) -> Control {
        Control::new(dir, &BTreeMap::new(), Arc::new(ManualClock::new(UNIX_EPOCH)))
    }

    #[tokio::test]
    async fn pause_keeps_sessions_and_delivery_stop_ends_them() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path());
        let idle = Busy(AtomicUsize::new(0));
        assert_eq!(c.server_state().code, 1, "Starting until the server says otherwise");
        c.set_server_state(ServerStateSetting::Started, &idle).await;
        assert_eq!(c.server_state().code, 2);
        assert!(c.availability().ready());

        c.set_server_state(ServerStateSetting::Paused, &idle).await;
        let a = c.availability();
        assert_eq!(c.server_state().code, 6);
        assert!(!a.connections && a.mail && a.delivery && !a.end_sessions);
        assert!(!a.ready());

        c.set_server_state(ServerStateSetting::Started, &idle).await;
        assert_eq!(c.server_state().code, 2);

        c.set_server_state(ServerStateSetting::Stopped, &idle).await;
        let a = c.availability();
        assert_eq!(c.server_state().code, 4);
        assert!(!a.connections && !a.mail && !a.delivery && a.end_sessions);
    }

    #[tokio::test]
    async fn stopping_is_visible_while_a_session_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path());
        let busy = Arc::new(Busy(AtomicUsize::new(1)));
        c.set_server_state(ServerStateSetting::Started, busy.as_ref()).await;
        let stopper = {
            let (c, busy) = (c.clone(), busy.clone());
            tokio::spawn(async move { c.set_server_state(ServerStateSetting::Stopped, busy.as_ref()).await })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(c.server_state().name, ServerStateName::Stopping);
        assert_eq!(c.server_state().code, 3);
        busy.0.store(0, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(5), stopper).await.unwrap().unwrap();
        assert_eq!(c.server_state().code, 4);
    }

    #[tokio::test]
    async fn components_refuse_mail_and_persist_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let idle = Busy(AtomicUsize::new(0));
        let c = control(dir.path());
        c.set_server_state(ServerStateSetting::Started, &idle).await;
        c.set_component(Component::HubTransport, Requester::Maintenance, ComponentState::Draining).unwrap();
        let a = c.availability();
        assert!(a.connections && !a.mail && a.delivery, "Draining: no new mail, queue still delivered");
        c.set_component(Component::ServerWideOffline, Requester::Maintenance, ComponentState::Inactive).unwrap();
        assert!(!c.availability().delivery, "ServerWideOffline Inactive stops delivery");
        drop(c);

        let c = control(dir.path());
        assert_eq!(c.effective(Component::ServerWideOffline), ComponentState::Inactive);
        assert_eq!(c.effective(Component::HubTransport), ComponentState::Inactive, "offline takes it down");
        // Functional cannot clear what Maintenance set.
        c.set_component(Component::ServerWideOffline, Requester::Functional, ComponentState::Active).unwrap();
        assert_eq!(c.effective(Component::ServerWideOffline), ComponentState::Inactive);
        c.set_component(Component::ServerWideOffline, Requester::Maintenance, ComponentState::Active).unwrap();
        assert_eq!(c.effective(Component::HubTransport), ComponentState::Draining, "its own wish survived the restart");
        c.set_component(Component::HubTransport, Requester::Maintenance, ComponentState::Active).unwrap();
        c.set_server_state(ServerStateSetting::Started, &idle).await;
        assert!(c.availability().ready());
    }

    #[tokio::test]
    async fn redirect_refuses_mail() {
        let dir = tempfile::tempdir().unwrap();
        let c = control(dir.path());
        c.set_server_state(ServerStateSetting::Started, &Busy(AtomicUsize::new(0))).await;
        let (tx, rx) = watch::channel(false);
        tx.send_replace(true);
        c.sync_redirecting(&rx);
        assert!(!c.availability().mail);
        tx.send_replace(false);
        c.sync_redirecting(&rx);
        assert!(c.availability().mail);
    }
}
