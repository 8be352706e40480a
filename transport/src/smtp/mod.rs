//! ESMTP receive (RFC 5321): one [`Listener`] per receive connector, one
//! session per connection. A session checks limits and relay rights, reads
//! DATA (refusing bare CR/LF), adds a `Received:` header and hands the message
//! to [`Submit`]; it answers `250` only after `submit` returned, which means
//! the message is durable.
//!
//! The session reads the server's [`Gate`](crate::control::Gate) for what is
//! allowed (Paused, Stopped, HubTransport not Active) and reports what happens
//! through [`SessionEvents`] (metrics, protocol log), so it owns neither.
//!
//! - `listener`: accept loop, remote IP ranges, connection limits, refusals
//! - `session`: one connection: commands, transactions, timeouts, STARTTLS, AUTH
//! - `command`: strict parsing of command lines, paths and parameters
//! - `data`: DATA framing, dot-unstuffing, bare CR/LF and size checks
//! - `received`: our Received header, the client's header section
//! - `auth`: users file, PLAIN/LOGIN decoding; `tls`: the STARTTLS acceptor
use crate::config::domain_pattern::DomainPattern;
use crate::config::{ReceiveLimits, ReceiveSettings};
use crate::logs::LogEvent;
use crate::queue::body::{BodyWriter, StagedBody};
use crate::queue::message::Envelope;
use crate::queue::MessageId;
use futures::future::BoxFuture;
use std::net::SocketAddr;

mod auth;
pub(crate) mod command;
pub(crate) mod data;
mod listener;
mod received;
mod session;
mod tls;

#[cfg(test)]
mod tests;

pub use listener::Listener;

/// Everything a session needs to know about its connector. Replaced as a whole
/// on a config reload; sessions already open keep the one they started with.
#[derive(Clone)]
pub struct SessionSettings {
    pub connector: String,
    pub settings: ReceiveSettings,
    pub limits: ReceiveLimits,
    /// EHLO name, banner and Received headers.
    pub fqdn: String,
    /// The accepted domains (any type): RCPT TO outside them needs relay permission.
    pub accepted_domains: Vec<DomainPattern>,
    /// STARTTLS is offered when present.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// The server's clock: the date of the Received header.
    pub clock: crate::clock::SharedClock,
}

/// A message a session accepted, ready to be stored: its envelope as the queue keeps it
/// (the intake stamps its size and arrival time) and its data.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub envelope: Envelope,
    /// The message as stored: our Received header, then the client's bytes
    /// (dot-unstuffed, CRLF line ends), in memory or spooled when large.
    pub data: StagedBody,
}

/// Why a message could not be taken; the session maps it to a reply.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The queue cannot store it (disk full, I/O error): `452 4.3.1 Insufficient system storage`.
    #[error("insufficient system storage: {0}")]
    Storage(String),
    /// The server stopped taking mail meanwhile: `421 4.3.2 Service not active`.
    #[error("service not active: {0}")]
    Unavailable(String),
    /// No other server took a shadow copy and RejectMessageOnShadowFailure
    /// is set: `450 4.5.1` (Exchange's answer), the client tries again later.
    #[error("no shadow server took a copy: {0}")]
    ShadowFailed(String),
}

/// Where accepted messages go (the server's intake: store, then queue).
pub trait Submit: Send + Sync + 'static {
    /// A fresh message id (used in the Received header and the 250 reply).
    fn next_id(&self) -> MessageId;
    /// Where the body of message `id` is written while it arrives; the first
    /// `head_keep` bytes stay in memory for the session's header checks.
    fn body_writer(&self, id: MessageId, head_keep: usize) -> BodyWriter;
    /// Durably store the message; only then may the session answer 250.
    fn submit(&self, msg: Incoming) -> BoxFuture<'_, Result<(), SubmitError>>;
    /// Why messages cannot be stored right now (disk full, I/O error), if so:
    /// MAIL is then answered `452 4.3.1` before the client sends any data.
    fn storage_failure(&self) -> Option<String> {
        None
    }
}

/// What sessions report; the server implements it with metrics and the
/// protocol log. Every method has a no-op default.
pub trait SessionEvents: Send + Sync + 'static {
    /// A session opened (after the connection was allowed).
    fn session_opened(&self, _connector: &str, _session: u64, _local: SocketAddr, _remote: SocketAddr) {}
    fn session_closed(&self, _connector: &str, _session: u64) {}
    /// A connection refused before a session started (limits, Paused/Stopped).
    fn connection_refused(&self, _connector: &str, _remote: SocketAddr, _reason: &str) {}
    /// One protocol line, for the protocol log (only called when the
    /// connector has protocolLogging).
    fn protocol(&self, _connector: &str, _session: u64, _event: LogEvent, _data: &str) {}
    /// A message was stored.
    fn message_received(&self, _connector: &str, _bytes: u64, _recipients: usize) {}
    /// A command or message was refused (`code` like `552 5.3.4`).
    fn refused(&self, _connector: &str, _code: &str) {}
}

/// Events that go nowhere.
pub struct NoEvents;
impl SessionEvents for NoEvents {}

/// Errors loading a connector's certificate and key.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
    #[error("certificate and key do not fit together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A TLS acceptor from PEM certificate chain and key files.
/// Errors name the file; a key that does not match the certificate is
/// reported by rustls.
pub fn load_tls_acceptor(files: &crate::config::TlsFiles) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    tls::load_tls_acceptor(files)
}

pub use tls::{load_server_certificate, ServerCertificate};
