//! Wires a transport server together and runs it: the durable store (recovered
//! on start), the control side (ServerState, component states), the queue
//! manager and its timers, one SMTP listener per receive connector, the admin
//! API, the replay directory and configuration reloads.
mod certificates;
mod intake;
mod reload;
pub mod replay;

use crate::admin::{AdminContext, ConfigStatus};
use crate::clock::SharedClock;
use crate::config::{ReceiveConnector, ReceiveLimits, TransportFile};
use crate::control::{Activity, Control};
use crate::delivery::mta_sts::MtaSts;
use crate::delivery::tls_report::TlsReports;
use crate::logs::{ConnectivityLog, LogSettings, ProtocolKind, ProtocolLog, TrackingLog, TrackingSettings};
use crate::metrics::Telemetry;
use crate::queue::manager::{QueueLogs, QueueManager, RuntimeConfig};
use crate::queue::Store;
use crate::shadow::{ChannelState, Holder, PeerClient, Primary, ShadowConfig, SharedShadowConfig};
use crate::smtp::{self, SessionSettings};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub use certificates::Certificates;
pub use intake::Intake;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the queue in {dir}: {source}")]
    Queue { dir: String, source: crate::queue::StoreError },
    #[error("receive connector {connector}: cannot listen on {bind}: {source}")]
    Listen { connector: String, bind: SocketAddr, source: std::io::Error },
    #[error("receive connector {connector}: TLS: {source}")]
    Tls { connector: String, source: smtp::TlsError },
    #[error("admin API: cannot listen on {bind}: {source}")]
    Admin { bind: SocketAddr, source: std::io::Error },
    #[error("cannot open the shadow copies in {dir}: {source}")]
    ShadowLog { dir: String, source: std::io::Error },
    #[error("shadow channel: cannot listen on {bind}: {source}")]
    ShadowChannel { bind: SocketAddr, source: std::io::Error },
    #[error("cannot read the token file {path}: {source}")]
    Token { path: String, source: std::io::Error },
    #[error("cannot open the transport logs in {dir}: {source}")]
    Logs { dir: String, source: std::io::Error },
    #[error("{0}")]
    Runtime(#[from] crate::queue::manager::RuntimeConfigError),
}

/// How a server is started (the binary uses the system clock and its file).
pub struct StartOptions {
    pub clock: SharedClock,
    /// The file to watch for reloads (SIGHUP, or its content changing).
    pub config_path: Option<PathBuf>,
    /// The file's text, for `configRevision`.
    pub config_text: String,
}

/// Sessions open and deliveries in flight (what Stopping waits for).
struct ServerActivity {
    telemetry: Arc<Telemetry>,
    manager: QueueManager,
}

impl Activity for ServerActivity {
    fn open_sessions(&self) -> usize {
        self.telemetry.open_sessions()
    }
    fn active_deliveries(&self) -> usize {
        self.manager.active_deliveries()
    }
}

/// A running transport server.
pub struct Server {
    shared: Arc<Shared>,
    listeners: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the running server and its reloads share.
pub(crate) struct Shared {
    file: RwLock<TransportFile>,
    clock: SharedClock,
    control: Control,
    manager: QueueManager,
    admin: AdminContext,
    /// Per receive connector (by name): the settings new sessions take.
    sessions: HashMap<String, watch::Sender<Arc<SessionSettings>>>,
    shadow: SharedShadowConfig,
}

impl Server {
    /// Opens (and recovers) the queue, starts delivery, the listeners and the
    /// admin API, then moves to the ServerState the file asks for.
    pub async fn start(file: TransportFile, options: StartOptions) -> Result<Server, ServerError> {
        let clock = options.clock.clone();
        let (store, recovered) = Store::open(&file.queue_directory)
            .map_err(|source| ServerError::Queue { dir: file.queue_directory.display().to_string(), source })?;
        let control = Control::new(&file.queue_directory, &file.components, clock.clone());
        let (logs, receive_protocol) = open_logs(&file, &clock)?;
        let telemetry = Arc::new(Telemetry::new(receive_protocol));
        // Policies fetched before a restart still apply (RFC 8461 §5.1).
        let mta_sts = Arc::new(MtaSts::open(&file.queue_directory, clock.clone()));
        // The day's TLS session counts survive a restart (RFC 8460 reports a whole day).
        let tls_reports = Arc::new(TlsReports::open(&file.queue_directory, clock.clone()));
        let manager = QueueManager::new(
            store.clone(),
            clock.clone(),
            RuntimeConfig::from_file(&file, mta_sts, tls_reports)?,
            control.gate(),
            telemetry.clone(),
            logs,
        );
        let recovered_count = recovered.messages.len();
        let incarnation = recovered.incarnation;
        manager.recover(recovered);
        info!(server = %file.server_name, recovered = recovered_count, "queue opened");

        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks =
            vec![tokio::spawn(manager.clone().run()), tokio::spawn(manager.clone().sweep_safety_net_forever())];
        tasks.push(tokio::spawn(manager.clone().send_tls_reports_forever()));
        tasks.push(tokio::spawn(manager.clone().refresh_mta_sts_forever()));
        tasks.push(tokio::spawn(follow_redirects(manager.clone(), control.clone())));

        let shadow: SharedShadowConfig =
            Arc::new(RwLock::new(ShadowConfig::from_file(&file, read_shadow_token(&file)?)));
        let shadow_dir = file.queue_directory.join(crate::shadow::SHADOW_DIR);
        let holder = Holder::open(&file.queue_directory, clock.clone(), telemetry.clone(), manager.tracking().clone())
            .map_err(|source| ServerError::ShadowLog { dir: shadow_dir.display().to_string(), source })?;
        let holder = Arc::new(holder);
        let peers = PeerClient::default();
        let primary = Arc::new(Primary::new(
            file.server_name.clone(),
            incarnation,
            shadow.clone(),
            peers.clone(),
            telemetry.clone(),
        ));
        tasks.push(tokio::spawn(holder.clone().run(
            shadow.clone(),
            peers.clone(),
            file.server_name.clone(),
            manager.clone(),
            shutdown_rx.clone(),
        )));
        // Only after the queue is recovered: a heartbeat answered before would
        // call every queued message finished.
        if let Some(channel) = &file.shadow {
            let socket = tokio::net::TcpListener::bind(channel.bind)
                .await
                .map_err(|source| ServerError::ShadowChannel { bind: channel.bind, source })?;
            info!(addr = %socket.local_addr().unwrap_or(channel.bind), "shadow channel listening");
            let state = ChannelState {
                server_name: file.server_name.clone(),
                config: shadow.clone(),
                holder: holder.clone(),
                primary: primary.clone(),
                manager: manager.clone(),
                gate: control.gate(),
            };
            tasks.push(tokio::spawn(crate::shadow::serve(socket, state, shutdown_rx.clone())));
        }

        let intake: Arc<dyn smtp::Submit> = Arc::new(Intake::new(
            store.clone(),
            manager.clone(),
            clock.clone(),
            control.gate(),
            primary,
            telemetry.clone(),
        ));
        let mut listeners = Vec::new();
        let mut sessions = HashMap::new();
        let certificates = Arc::new(Certificates::default());
        for connector in &file.receive_connectors {
            let (settings, certificate) = session_settings(&file, connector, &clock)?;
            if let Some(c) = &certificate {
                certificates.loaded(&connector.name, c, clock.now());
            }
            let (tx, rx) = watch::channel(Arc::new(settings));
            let listener = smtp::Listener::bind(connector.bind).await.map_err(|source| ServerError::Listen {
                connector: connector.name.clone(),
                bind: connector.bind,
                source,
            })?;
            let addr = listener.local_addr();
            info!(connector = %connector.name, %addr, "receive connector listening");
            listeners.push((connector.name.clone(), addr));
            sessions.insert(connector.name.clone(), tx);
            let events: Arc<dyn smtp::SessionEvents> = telemetry.clone();
            tasks.push(tokio::spawn(listener.run(rx, control.gate(), intake.clone(), events, shutdown_rx.clone())));
        }

        let activity: Arc<dyn Activity> =
            Arc::new(ServerActivity { telemetry: telemetry.clone(), manager: manager.clone() });
        let admin_ctx = AdminContext {
            server_name: file.server_name.clone(),
            control: control.clone(),
            manager: manager.clone(),
            telemetry,
            activity: activity.clone(),
            status: Arc::new(RwLock::new(ConfigStatus {
                revision: crate::config::revision(&options.config_text),
                restart_required: false,
            })),
            token: Arc::new(RwLock::new(read_token(&file)?)),
            shadows: holder,
            shadow_config: shadow.clone(),
            peers,
            certificates,
        };
        let mut admin = None;
        if let Some(settings) = &file.admin {
            let socket = tokio::net::TcpListener::bind(settings.bind)
                .await
                .map_err(|source| ServerError::Admin { bind: settings.bind, source })?;
            let addr = socket.local_addr().unwrap_or(settings.bind);
            info!(%addr, "admin API listening");
            admin = Some(addr);
            tasks.push(tokio::spawn(crate::admin::serve(socket, admin_ctx.clone(), shutdown_rx.clone())));
        }
        if let Some(dir) = &file.replay_directory {
            tasks.push(tokio::spawn(replay::watch(dir.clone(), intake.clone(), shutdown_rx.clone())));
        }

        let initial_state = file.server_state;
        let shared = Arc::new(Shared {
            file: RwLock::new(file),
            clock,
            control: control.clone(),
            manager,
            admin: admin_ctx,
            sessions,
            shadow,
        });
        if let Some(path) = options.config_path {
            tasks.push(tokio::spawn(reload::watch(shared.clone(), path, shutdown_rx.clone())));
        }
        control.set_server_state(initial_state, activity.as_ref()).await;
        Ok(Server { shared, listeners, admin, shutdown, tasks })
    }

    /// Where each receive connector listens (name, address).
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// Where the admin API listens, if configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    pub fn queue_manager(&self) -> &QueueManager {
        &self.shared.manager
    }

    pub fn control(&self) -> &Control {
        &self.shared.control
    }

    /// `GET /v1/queues` without HTTP (shadow queues included).
    pub fn queues(&self) -> Vec<crate::api::QueueInfo> {
        self.shared.admin.queues()
    }

    /// `GET /v1/server` without HTTP.
    pub fn info(&self) -> crate::api::ServerInfo {
        self.shared.admin.server_info()
    }

    /// Applies a configuration now (what a file change or SIGHUP does).
    pub async fn reload(&self, file: TransportFile, text: &str) {
        reload::apply(&self.shared, file, text).await;
    }

    /// SIGTERM: no new connections, open sessions end after their current
    /// transaction, deliveries in flight finish (bounded), then everything
    /// stops. Everything acknowledged is already on disk, so nothing depends
    /// on this running to the end.
    pub async fn shutdown(self) {
        let activity =
            ServerActivity { telemetry: self.shared.admin.telemetry.clone(), manager: self.shared.manager.clone() };
        let _ = tokio::time::timeout(
            Duration::from_secs(30),
            self.shared.control.set_server_state(crate::config::ServerStateSetting::Stopped, &activity),
        )
        .await;
        let _ = self.shutdown.send(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for t in self.tasks {
            t.abort();
        }
        // The day's TLS session counts, as they are now (RFC 8460 reports whole days).
        self.shared.manager.tls_reports().save().await;
        self.shared.manager.store().close();
    }
}

/// Mirrors the queue's Redirect-Message progress into the control side, which
/// refuses new mail while it lasts.
async fn follow_redirects(manager: QueueManager, control: Control) {
    let mut rx = manager.redirecting();
    loop {
        rx.borrow_and_update();
        control.sync_redirecting(&rx);
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// What a session on `connector` works with, and the certificate it serves (with STARTTLS).
pub(crate) fn session_settings(
    file: &TransportFile,
    connector: &ReceiveConnector,
    clock: &SharedClock,
) -> Result<(SessionSettings, Option<smtp::ServerCertificate>), ServerError> {
    let certificate = match &connector.tls {
        Some(files) => Some(
            smtp::load_server_certificate(files)
                .map_err(|source| ServerError::Tls { connector: connector.name.clone(), source })?,
        ),
        None => None,
    };
    let settings = SessionSettings {
        connector: connector.name.clone(),
        settings: connector.settings.clone(),
        limits: ReceiveLimits::resolve(&connector.settings, &file.transport_config),
        fqdn: file.fqdn.clone(),
        accepted_domains: file.transport_config.accepted_patterns().into_iter().map(|(p, _)| p).collect(),
        tls: certificate.as_ref().map(|c| c.acceptor.clone()),
        clock: clock.clone(),
    };
    Ok((settings, certificate))
}

pub(crate) fn read_token(file: &TransportFile) -> Result<Option<String>, ServerError> {
    file.admin.as_ref().and_then(|a| a.token_file.as_deref()).map(read_token_file).transpose()
}

/// The peers' shared credential (`shadow.tokenFile`).
pub(crate) fn read_shadow_token(file: &TransportFile) -> Result<Option<String>, ServerError> {
    file.shadow.as_ref().map(|s| read_token_file(&s.token_file)).transpose()
}

fn read_token_file(path: &std::path::Path) -> Result<String, ServerError> {
    let token = std::fs::read_to_string(path)
        .map_err(|source| ServerError::Token { path: path.display().to_string(), source })?;
    let token = token.trim().to_string();
    if token.is_empty() {
        warn!(path = %path.display(), "the token file is empty: every request will be refused");
    }
    Ok(token)
}

/// The queue side's logs and the receive protocol log.
fn open_logs(file: &TransportFile, clock: &SharedClock) -> Result<(QueueLogs, ProtocolLog), ServerError> {
    let Some(dir) = &file.log_directory else {
        return Ok((QueueLogs::disabled(), ProtocolLog::disabled()));
    };
    let logging = file.logging.clone().unwrap_or_default();
    let settings = LogSettings {
        directory: dir.clone(),
        max_age: logging.max_age_or_default().unwrap_or(Duration::ZERO),
        max_directory_size: logging.max_directory_size_or_default().bytes(),
        max_file_size: logging.max_file_size_or_default().bytes(),
    };
    let err = |source| ServerError::Logs { dir: dir.display().to_string(), source };
    let connectivity = if logging.connectivity_log_enabled() {
        ConnectivityLog::open(&settings, clock.clone()).map_err(err)?
    } else {
        ConnectivityLog::disabled()
    };
    let (send, receive) = if logging.protocol_log_enabled() {
        (
            ProtocolLog::open(ProtocolKind::Send, &settings, clock.clone()).map_err(err)?,
            ProtocolLog::open(ProtocolKind::Receive, &settings, clock.clone()).map_err(err)?,
        )
    } else {
        (ProtocolLog::disabled(), ProtocolLog::disabled())
    };
    let tracking = if logging.message_tracking_log_enabled_or_default() {
        let settings = TrackingSettings {
            retention: LogSettings {
                directory: dir.clone(),
                max_age: logging.message_tracking_log_max_age_or_default().unwrap_or(Duration::ZERO),
                max_directory_size: logging.message_tracking_log_max_directory_size_or_default().bytes(),
                max_file_size: logging.message_tracking_log_max_file_size_or_default().bytes(),
            },
            subjects: logging.message_tracking_log_subject_logging_enabled_or_default(),
        };
        TrackingLog::open(&settings, clock.clone()).map_err(err)?
    } else {
        TrackingLog::disabled()
    };
    Ok((QueueLogs { connectivity, send_protocol: send, tracking }, receive))
}
