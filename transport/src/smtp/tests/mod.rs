//! The receive side driven by real clients over loopback: the test kit's async SMTP
//! client for exact replies, rustls for STARTTLS, and swaks.
//!
//! The test kit depends on the transport library, so these tests link a second build of
//! it (a dev-dependency cycle Cargo allows): only std and tokio types (streams, strings)
//! pass between the two, never this crate's own types.
use super::{Incoming, Listener, SessionEvents, SessionSettings, Submit, SubmitError};
use crate::clock::ManualClock;
use crate::config::domain_pattern::DomainPattern;
use crate::config::{ReceiveLimits, ReceiveSettings};
use crate::control::{Availability, Gate};
use crate::envelope::MessageId;
use crate::logs::LogEvent;
use crate::queue::body::BodyWriter;
use futures::future::BoxFuture;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};
pub use testkit::async_smtp_client::{AsyncSmtpClient, WAIT};
pub use testkit::smtp_client::data_block;
use tokio::net::TcpStream;
use tokio::sync::watch;

mod chunking;
mod commands;
mod control;
mod data;
mod limits;
mod swaks;
mod tls_auth;
mod utf8;

pub const FQDN: &str = "mail.local.test";
/// 2023-11-14 22:13:20 UTC, the test clock's time.
pub const DATE: &str = "Tue, 14 Nov 2023 22:13:20 +0000";

pub fn limits() -> ReceiveLimits {
    ReceiveLimits {
        max_message_size: 10_000,
        max_recipients_per_message: 3,
        connection_inactivity_timeout: Duration::from_secs(30),
        connection_timeout: Duration::from_secs(60),
        max_inbound_connection: 50,
        max_inbound_connection_per_source: 20,
        max_protocol_errors: 5,
        max_header_size: 2_000,
        max_hop_count: 5,
    }
}

pub fn settings() -> SessionSettings {
    let accepted = |d: &str| DomainPattern::parse(d, false).expect("a domain pattern");
    SessionSettings {
        connector: "Default".into(),
        settings: ReceiveSettings { protocol_logging: true, ..Default::default() },
        limits: limits(),
        fqdn: FQDN.into(),
        accepted_domains: vec![accepted("local.test"), accepted("*.corp.test")],
        tls: None,
        clock: Arc::new(ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))),
    }
}

/// What the test intake does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Store,
    Storage,
    Unavailable,
    Panic,
}

/// Keeps accepted messages in memory.
pub struct MemSubmit {
    next: AtomicU64,
    pub mode: Mutex<Mode>,
    messages: Mutex<Vec<Incoming>>,
}

impl MemSubmit {
    pub fn new(mode: Mode) -> Arc<Self> {
        Arc::new(MemSubmit { next: AtomicU64::new(1), mode: Mutex::new(mode), messages: Mutex::new(Vec::new()) })
    }

    pub fn messages(&self) -> Vec<Incoming> {
        self.messages.lock().unwrap().clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
}

impl Submit for MemSubmit {
    fn next_id(&self) -> MessageId {
        MessageId(self.next.fetch_add(1, Ordering::SeqCst))
    }

    fn body_writer(&self, _id: MessageId, _head_keep: usize) -> BodyWriter {
        BodyWriter::in_memory()
    }

    fn submit(&self, msg: Incoming) -> BoxFuture<'_, Result<(), SubmitError>> {
        let mode = *self.mode.lock().unwrap();
        Box::pin(async move {
            match mode {
                Mode::Store => {
                    self.messages.lock().unwrap().push(msg);
                    Ok(())
                }
                Mode::Storage => Err(SubmitError::Storage("disk full (test)".into())),
                Mode::Unavailable => Err(SubmitError::Unavailable("HubTransport Inactive (test)".into())),
                Mode::Panic => panic!("test intake panics on purpose"),
            }
        })
    }
}

/// Records what sessions report.
#[derive(Default)]
pub struct Recorder {
    pub lines: Mutex<Vec<(LogEvent, String)>>,
    pub refused: Mutex<Vec<String>>,
    pub connection_refused: Mutex<Vec<String>>,
    pub opened: AtomicUsize,
    pub closed: AtomicUsize,
    pub received: AtomicUsize,
}

impl SessionEvents for Recorder {
    fn session_opened(&self, _: &str, _: u64, _: SocketAddr, _: SocketAddr) {
        self.opened.fetch_add(1, Ordering::SeqCst);
    }
    fn session_closed(&self, _: &str, _: u64) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
    fn connection_refused(&self, _: &str, _: SocketAddr, reason: &str) {
        self.connection_refused.lock().unwrap().push(reason.into());
    }
    fn protocol(&self, _: &str, _: u64, event: LogEvent, data: &str) {
        self.lines.lock().unwrap().push((event, data.into()));
    }
    fn message_received(&self, _: &str, _: u64, _: usize) {
        self.received.fetch_add(1, Ordering::SeqCst);
    }
    fn refused(&self, _: &str, code: &str) {
        self.refused.lock().unwrap().push(code.into());
    }
}

/// A listener on 127.0.0.1 with its controls.
pub struct Server {
    pub addr: SocketAddr,
    pub submit: Arc<MemSubmit>,
    pub events: Arc<Recorder>,
    pub gate: watch::Sender<Availability>,
    pub shutdown: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

pub async fn start(settings: SessionSettings) -> Server {
    start_with(settings, MemSubmit::new(Mode::Store)).await
}

pub async fn start_with(settings: SessionSettings, submit: Arc<MemSubmit>) -> Server {
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr();
    let (gate, gate_rx) = watch::channel(Availability::OPEN);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let (_settings_tx, settings_rx) = watch::channel(Arc::new(settings));
    let events = Arc::new(Recorder::default());
    let task = tokio::spawn(listener.run(
        settings_rx,
        Gate::new(gate_rx),
        submit.clone(),
        events.clone() as Arc<dyn SessionEvents>,
        shutdown_rx,
    ));
    Server { addr, submit, events, gate, shutdown, task }
}

impl Server {
    /// A session past the banner and `EHLO client.test`.
    pub async fn session(&self) -> AsyncSmtpClient<TcpStream> {
        let (mut c, banner) = AsyncSmtpClient::connect(self.addr).await.unwrap();
        expect(&banner, "220 ");
        expect(&c.cmd("EHLO client.test").await.unwrap(), "250-");
        c
    }

    /// A good message on a new session is accepted (after some abuse).
    pub async fn good_message_still_accepted(&self, tag: &str) {
        let before = self.submit.messages().len();
        let mut c = self.session().await;
        expect(&c.send_message("alice@example.org", &["bob@local.test"], &message(tag)).await.unwrap(), "250 2.6.0");
        expect(&c.cmd("QUIT").await.unwrap(), "221 2.0.0");
        let all = self.submit.messages();
        assert_eq!(all.len(), before + 1);
        assert!(all.last().unwrap().data.inline().unwrap().ends_with(message(tag).as_bytes()));
    }
}

pub fn expect(reply: &str, prefix: &str) {
    assert!(reply.starts_with(prefix), "expected `{prefix}...`, got `{reply}`");
}

/// A small message with CRLF line ends, a leading-dot line and a `.`-only line.
pub fn message(tag: &str) -> String {
    format!(
        "From: alice@example.org\r\nTo: bob@local.test\r\nSubject: test {tag}\r\nMessage-ID: <{tag}@test.invalid>\r\n\
         \r\nHello.\r\n.leading dot\r\n.\r\n..two dots\r\nlast line\r\n"
    )
}

/// Our Received header for a plain ESMTP session from client.test.
pub fn received(id: u64, with: &str) -> String {
    format!("Received: from client.test ([127.0.0.1])\r\n\tby {FQDN} with {with} id {id};\r\n\t{DATE}\r\n")
}
