//! Wires a transport server together: the durable store (recovered on start),
//! the queue manager and its scheduler, and one SMTP listener per receive
//! connector, whose sessions hand accepted messages to [`Intake`].
use crate::clock::{to_millis, SharedClock};
use crate::config::TransportFile;
use crate::queue::manager::{QueueManager, RuntimeConfig};
use crate::queue::{Envelope, MessageId, Store};
use crate::smtp::{self, Incoming, Submit, SubmitError};
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the queue in {dir}: {source}")]
    Queue { dir: String, source: crate::queue::StoreError },
    #[error("receive connector {connector}: cannot listen on {bind}: {source}")]
    Listen { connector: String, bind: SocketAddr, source: std::io::Error },
    #[error("receive connector {connector}: TLS: {source}")]
    Tls { connector: String, source: smtp::TlsError },
    #[error("DNS resolver: {0}")]
    Dns(#[from] crate::routing::mx::MxError),
}

/// Hands messages from SMTP sessions to the store, then to the categorizer.
struct Intake {
    store: Store,
    manager: QueueManager,
    clock: SharedClock,
}

impl Submit for Intake {
    fn next_id(&self) -> MessageId {
        self.store.next_id()
    }

    fn submit(&self, msg: Incoming) -> BoxFuture<'_, Result<(), SubmitError>> {
        Box::pin(async move {
            let envelope = Envelope {
                id: msg.id,
                mail_from: msg.mail_from,
                recipients: msg.recipients,
                size: msg.data.len() as u64,
                body_8bit: msg.body_8bit,
                ret: msg.ret,
                envid: msg.envid,
                arrival_ms: to_millis(self.clock.now()),
                origin: msg.origin,
            };
            self.store.insert(&envelope, &msg.data).await.map_err(SubmitError::from_store)?;
            self.manager.enqueue(envelope);
            Ok(())
        })
    }
}

/// A running transport server.
pub struct Server {
    manager: QueueManager,
    listeners: Vec<(String, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens (and recovers) the queue, starts delivery, then the listeners.
    pub async fn start(file: TransportFile, clock: SharedClock) -> Result<Server, ServerError> {
        let (store, recovered) = Store::open(&file.queue_directory)
            .map_err(|source| ServerError::Queue { dir: file.queue_directory.display().to_string(), source })?;
        let manager = QueueManager::new(store.clone(), clock.clone(), RuntimeConfig::from_file(&file)?);
        info!(server = %file.server_name, recovered = recovered.len(), "queue opened");
        for envelope in recovered {
            manager.enqueue(envelope);
        }
        let mut tasks = vec![tokio::spawn(manager.clone().run())];
        let intake: Arc<dyn Submit> = Arc::new(Intake { store, manager: manager.clone(), clock });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut listeners = Vec::new();
        for connector in &file.receive_connectors {
            let tls = match &connector.tls {
                Some(files) => Some(
                    smtp::load_tls_acceptor(files)
                        .map_err(|source| ServerError::Tls { connector: connector.name.clone(), source })?,
                ),
                None => None,
            };
            let settings = Arc::new(smtp::SessionSettings {
                connector: connector.clone(),
                max_message_size: connector.effective_max_message_size(&file.transport_config),
                max_recipients: connector.effective_max_recipients(&file.transport_config),
                fqdn: file.fqdn.clone(),
                accepted_domains: file.transport_config.accepted_domains.clone(),
                timeouts: smtp::Timeouts {
                    command: connector
                        .connection_inactivity_timeout
                        .map(|t| t.as_duration())
                        .unwrap_or(smtp::Timeouts::default().command),
                    ..smtp::Timeouts::default()
                },
                limits: smtp::Limits::default(),
            });
            let listener = smtp::Listener::bind(settings, tls, intake.clone()).await.map_err(|source| {
                ServerError::Listen { connector: connector.name.clone(), bind: connector.bind, source }
            })?;
            let addr = listener.local_addr();
            info!(connector = %connector.name, %addr, "receive connector listening");
            listeners.push((connector.name.clone(), addr));
            tasks.push(tokio::spawn(listener.run(shutdown_rx.clone())));
        }
        Ok(Server { manager, listeners, shutdown, tasks })
    }

    /// Where each receive connector listens (name, address).
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    pub fn queue_manager(&self) -> &QueueManager {
        &self.manager
    }

    /// Stops accepting, gives open sessions a moment, then stops. Everything
    /// acknowledged is already on disk, so nothing depends on this running.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        tokio::time::sleep(Duration::from_millis(200)).await;
        for t in self.tasks {
            t.abort();
        }
    }
}
