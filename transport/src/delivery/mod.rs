//! Outbound SMTP to a next hop with lettre's low-level connection
//! (`AsyncSmtpConnection`): STARTTLS when offered (or required), MAIL/RCPT with
//! DSN parameters when the hop supports DSN, and an outcome per recipient (a
//! 5xx for one recipient does not fail the others). lettre's high-level `send`
//! stops at the first refused recipient, which is why this module drives the
//! commands itself.
use crate::config::{OutboundTls, SendConnector};
use crate::logs::LogEvent;
use crate::queue::Envelope;
use crate::routing::mx::{ResolveError, Resolver, Target};
use crate::routing::NextHop;
use std::sync::Arc;
use std::time::Duration;

/// Receives each protocol line of an outbound session (the Send protocol log).
pub trait ProtocolTap: Send + Sync {
    fn line(&self, event: LogEvent, data: &str);
}

#[derive(Clone)]
pub struct ConnectOptions {
    /// Our EHLO name.
    pub helo_name: String,
    pub tls: OutboundTls,
    /// Time to connect and read the banner.
    pub connect_timeout: Duration,
    /// Time allowed for each command's reply (RFC 5321 §4.5.3.2 gives the
    /// minimums; DATA's final reply gets 10 minutes).
    pub command_timeout: Duration,
    pub tap: Option<Arc<dyn ProtocolTap>>,
}

/// A failure that ends the connection; no recipient of the current
/// transaction was accepted by it.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("{addr} did not answer in time ({stage})")]
    Timeout { addr: String, stage: &'static str },
    /// A refusal of the session itself (banner 4xx/5xx, EHLO refused, 421).
    #[error("{addr} refused the session: {reply}")]
    Refused { addr: String, reply: String },
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("connection to {addr} broke: {reason}")]
    Broken { addr: String, reason: String },
}

/// What the next hop said about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// Accepted after DATA.
    Delivered { reply: String },
    /// 4xx at MAIL, RCPT or DATA: try this recipient again later.
    Transient { reply: String },
    /// 5xx: NDR for this recipient.
    Permanent { reply: String },
}

/// Outcome of one message over an open session.
#[derive(Debug, Clone)]
pub struct SendOutcome {
    /// (recipient index, outcome) for every recipient asked for.
    pub recipients: Vec<(usize, RecipientOutcome)>,
    /// The hop advertised DSN, so NOTIFY/ORCPT went with the message and the
    /// hop now owns success notifications (RFC 3461 "relayed" otherwise).
    pub dsn_passed: bool,
}

/// An open, greeted (and possibly TLS) session to a next hop.
pub struct OutboundSession {
    _private: (),
}

impl OutboundSession {
    pub async fn connect(_target: &Target, _opts: &ConnectOptions) -> Result<OutboundSession, DeliveryError> {
        todo!("delivery helper")
    }

    /// `host [addr]` of the peer, for logs and Remote-MTA.
    pub fn remote(&self) -> &str {
        todo!("delivery helper")
    }

    /// Send one message to the given recipients (indexes into the envelope).
    pub async fn send(
        &mut self,
        _envelope: &Envelope,
        _recipients: &[usize],
        _data: &[u8],
    ) -> Result<SendOutcome, DeliveryError> {
        todo!("delivery helper")
    }

    /// False once the peer closed, said 421, or a transaction broke.
    pub fn is_reusable(&self) -> bool {
        todo!("delivery helper")
    }

    /// QUIT and close (errors ignored: the work is done).
    pub async fn quit(self) {
        todo!("delivery helper")
    }
}

/// The addresses to try for a next hop, in order: the smart hosts of its
/// connector, the MX hosts of its domain, or the mailbox hop.
pub async fn resolve_targets(
    _resolver: &Resolver,
    _hop: &NextHop,
    _connector: Option<&SendConnector>,
) -> Result<Vec<Target>, ResolveError> {
    todo!("delivery helper")
}
