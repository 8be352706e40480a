//! Accept loop of one receive connector: remote IP ranges, connection limits
//! (per connector and per source), Paused/Stopped refusals, then a session.
use super::session::{self, SessionCtx};
use super::{SessionEvents, SessionSettings, Submit};
use crate::control::Gate;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::Instrument;

/// Session ids are unique in the process (all connectors), for logs.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A bound receive connector.
pub struct Listener {
    socket: tokio::net::TcpListener,
}

/// Open sessions of this connector, in total and per client address.
#[derive(Default)]
struct Counts {
    total: u32,
    per_source: HashMap<IpAddr, u32>,
}

/// A counted session; dropping it (also when the session panics) frees the
/// slot and reports the session closed.
pub(crate) struct Slot {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
    events: Arc<dyn SessionEvents>,
    connector: String,
    session: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_source.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_source.remove(&self.ip);
            }
        }
        drop(c);
        self.events.session_closed(&self.connector, self.session);
    }
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
    ///
    /// On shutdown the socket is closed at once (no new connections); open
    /// sessions end after their current transaction with `421 4.3.2`, and
    /// this returns once they all have.
    pub async fn run(
        self,
        settings: watch::Receiver<Arc<SessionSettings>>,
        gate: Gate,
        submit: Arc<dyn Submit>,
        events: Arc<dyn SessionEvents>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let mut tasks = JoinSet::new();
        let mut shutdown_live = true;
        let local = self.local_addr();
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            tokio::select! {
                accepted = self.socket.accept() => match accepted {
                    Ok((stream, remote)) => {
                        let current = settings.borrow().clone();
                        let admit = Admit { settings: current, gate: &gate, counts: &counts, events: &events };
                        match admit.check(remote) {
                            Ok(slot) => {
                                let ctx = SessionCtx {
                                    id: slot.session,
                                    settings: admit.settings.clone(),
                                    gate: gate.clone(),
                                    submit: submit.clone(),
                                    events: events.clone(),
                                    shutdown: shutdown.clone(),
                                    remote,
                                    slot: Some(slot),
                                };
                                let span = tracing::info_span!(
                                    "smtp_session",
                                    connector = %ctx.settings.connector,
                                    session = ctx.id,
                                    remote = %remote,
                                );
                                events.session_opened(&ctx.settings.connector, ctx.id, local, remote);
                                let _ = stream.set_nodelay(true);
                                tasks.spawn(
                                    async move {
                                        session::run(ctx, stream).await;
                                    }
                                    .instrument(span),
                                );
                            }
                            Err(reply) => {
                                tasks.spawn(refuse(stream, reply));
                            }
                        }
                    }
                    Err(e) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, address = %local, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                changed = shutdown.changed(), if shutdown_live => shutdown_live = changed.is_ok(),
                Some(done) = tasks.join_next(), if !tasks.is_empty() => reap(done),
            }
        }
        drop(self.socket);
        tracing::info!(address = %local, sessions = tasks.len(), "receive connector stopped accepting");
        while let Some(done) = tasks.join_next().await {
            reap(done);
        }
    }
}

fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!("an SMTP session panicked; other sessions are not affected");
        }
    }
}

struct Admit<'a> {
    settings: Arc<SessionSettings>,
    gate: &'a Gate,
    counts: &'a Arc<Mutex<Counts>>,
    events: &'a Arc<dyn SessionEvents>,
}

impl Admit<'_> {
    /// A slot for the new session, or the reply that refuses it.
    fn check(&self, remote: SocketAddr) -> Result<Slot, &'static str> {
        let s = &self.settings;
        let ip = remote.ip().to_canonical();
        let refuse = |reason: &str, reply: &'static str| {
            tracing::info!(connector = %s.connector, %remote, reason, "connection refused");
            self.events.connection_refused(&s.connector, remote, reason);
            Err(reply)
        };
        if !s.settings.remote_ip_ranges.is_empty() && !s.settings.remote_ip_ranges.iter().any(|n| n.contains(&ip)) {
            return refuse("remote address not in remoteIPRanges", "554 5.7.1 Access denied");
        }
        if !self.gate.now().connections {
            return refuse(
                "server not accepting connections",
                "421 4.3.2 Service not available, closing transmission channel",
            );
        }
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let from_source = c.per_source.get(&ip).copied().unwrap_or(0);
        if c.total >= s.limits.max_inbound_connection || from_source >= s.limits.max_inbound_connection_per_source {
            drop(c);
            let reason = if from_source >= s.limits.max_inbound_connection_per_source {
                "maxInboundConnectionPerSource reached"
            } else {
                "maxInboundConnection reached"
            };
            return refuse(
                reason,
                "421 4.3.2 The maximum number of concurrent connections has exceeded a limit, closing transmission channel",
            );
        }
        c.total += 1;
        *c.per_source.entry(ip).or_insert(0) += 1;
        drop(c);
        Ok(Slot {
            counts: self.counts.clone(),
            ip,
            events: self.events.clone(),
            connector: s.connector.clone(),
            session: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        })
    }
}

/// Say why and close, bounded in time so refused clients cost little.
async fn refuse(mut stream: TcpStream, reply: &'static str) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        stream.write_all(reply.as_bytes()).await?;
        stream.write_all(b"\r\n").await?;
        stream.shutdown().await
    })
    .await;
    // Read what the client still sends until it closes, so it sees the reply
    // rather than a reset.
    let mut sink = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_secs(1), async { while let Ok(1..) = stream.read(&mut sink).await {} })
        .await;
}
