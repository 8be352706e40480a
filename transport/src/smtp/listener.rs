//! Accept loop of one receive connector: remote IP ranges, connection limits
//! (per connector and per source), Paused/Stopped refusals, then a session.
use super::{SessionEvents, SessionSettings, Submit};
use crate::control::Gate;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// A bound receive connector.
pub struct Listener {
    socket: tokio::net::TcpListener,
}

impl Listener {
    /// Bind the connector's address (port 0 picks one; see [`Listener::local_addr`]).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Listener> {
        Ok(Listener { socket: tokio::net::TcpListener::bind(addr).await? })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serve until `shutdown` becomes true. New sessions take the settings
    /// current when they start.
    pub async fn run(
        self,
        _settings: watch::Receiver<Arc<SessionSettings>>,
        _gate: Gate,
        _submit: Arc<dyn Submit>,
        _events: Arc<dyn SessionEvents>,
        _shutdown: watch::Receiver<bool>,
    ) {
        let _ = &self.socket;
        todo!("smtp helper")
    }
}
