//! Outbound SMTP to a next hop with lettre's low-level connection
//! (`AsyncSmtpConnection`): STARTTLS when offered (or required), MAIL/RCPT with
//! DSN parameters when the hop supports DSN, and an outcome per recipient (a
//! 5xx for one recipient does not fail the others). lettre's high-level `send`
//! stops at the first refused recipient, which is why this module drives the
//! commands itself.
//!
//! - [`session`]: the session (greeting, STARTTLS, transactions)
//! - `stream`: the byte stream under lettre (TCP, then TLS) and the protocol tap
//! - `tls`: opportunistic TLS (certificates not verified), or the tlsAuthLevel checks
//! - [`dane`]: DANE TLSA records of MX hosts (RFC 7672) and their certificate check
//! - [`mta_sts`]: MTA-STS policies of recipient domains (RFC 8461) and their enforcement
//! - [`tls_report`]: SMTP TLS Reporting (RFC 8460): session counts and daily reports
//! - `commands`, `reply`: MAIL/RCPT with DSN parameters, reply text, EHLO keywords
//! - `framing`: dot-stuffing of the message data, a chunk at a time
mod commands;
pub mod dane;
mod framing;
pub mod https;

/// The reason a TLS policy (MTA-STS `enforce`, DANE) was not met, as Exchange's LastError
/// starts: RFC 3463 X.7.5 (cryptographic failure), temporary. The queue retries and looks
/// the policy up again each time; delay DSNs carry the status, the NDR at expiry the text.
pub(crate) const POLICY_NOT_MET: &str = "451 4.7.5";
pub mod mta_sts;
mod reply;
pub mod session;
mod stream;
mod tls;
pub mod tls_report;
mod txt_record;

pub use session::OutboundSession;
pub use tls::CertificateCheck;
pub use tls_report::result::{ResultType, TlsFailure};

use crate::api::DeliveryType;
use crate::config::host_port::HostPort;
use crate::config::{OutboundTls, SendConnector};
use crate::logs::LogEvent;
use crate::routing::mx::{HostAddress, ResolveError, Resolver};
use crate::routing::NextHop;
use std::sync::Arc;
use std::time::Duration;

/// SMTP's port when a connector or host names none.
const DEFAULT_PORT: u16 = 25;

/// Receives each protocol line of an outbound session (the Send protocol log).
pub trait ProtocolTap: Send + Sync {
    fn line(&self, event: LogEvent, data: &str);
}

#[derive(Clone)]
pub struct ConnectOptions {
    /// Our EHLO name.
    pub helo_name: String,
    pub tls: OutboundTls,
    /// How the peer's certificate is checked once TLS is up.
    pub certificate_check: CertificateCheck,
    /// A check the session is measured against without being failed by it (MTA-STS
    /// `testing`, RFC 8461 §5): STARTTLS offered and taken, and a certificate that passes
    /// this check; what falls short is [`OutboundSession::policy_shortfall`].
    pub policy_audit: Option<CertificateCheck>,
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
    #[error("TLS with {addr} failed: {failure}")]
    Tls {
        addr: String,
        /// Why, and what RFC 8460 calls it (decided where it happened).
        failure: TlsFailure,
        /// This server's address on the connection (RFC 8460 sending-mta-ip).
        local: Option<std::net::IpAddr>,
    },
    #[error("connection to {addr} broke: {reason}")]
    Broken { addr: String, reason: String },
}

impl DeliveryError {
    /// The failed TLS session this error ended, for RFC 8460, with this server's address
    /// when known: a TLS failure, or a handshake that timed out. None for an error before
    /// TLS was tried (a refused connection, a timeout before STARTTLS).
    pub fn tls_session(&self) -> Option<(TlsFailure, Option<std::net::IpAddr>)> {
        match self {
            DeliveryError::Tls { failure, local, .. } => Some((failure.clone(), *local)),
            DeliveryError::Timeout { stage: session::TLS_HANDSHAKE, .. } => {
                Some((TlsFailure::new(ResultType::ValidationFailure, self.to_string()), None))
            }
            _ => None,
        }
    }
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

/// The host and port of a smart host, the mailbox hop or a Redirect-Message target.
fn host_and_port(spec: &str, default_port: u16) -> Result<(String, u16), String> {
    let parsed = HostPort::parse(spec)?;
    Ok((parsed.host_text(), parsed.port_or(default_port)))
}

/// The addresses to try for a next hop, in order: the smart hosts of its
/// connector, the MX hosts of its domain, or the mailbox hop.
///
/// Smart hosts are resolved in the configured order; one that does not
/// resolve is skipped, and only when none resolves is its error returned.
/// Without a connector, a smart-host hop's `next_hop_domain` is itself the
/// comma-separated host list (Redirect-Message uses this).
pub async fn resolve_targets(
    resolver: &Resolver,
    hop: &NextHop,
    connector: Option<&SendConnector>,
) -> Result<Vec<HostAddress>, ResolveError> {
    let port = connector.and_then(|c| c.port).unwrap_or(DEFAULT_PORT);
    match hop.delivery_type {
        DeliveryType::SmartHostConnectorDelivery => {
            let hosts: Vec<String> = match connector {
                Some(c) => c.smart_hosts.clone(),
                None => hop.next_hop_domain.split(',').map(str::to_string).filter(|h| !h.trim().is_empty()).collect(),
            };
            let mut targets = Vec::new();
            let mut first_error = None;
            for spec in &hosts {
                let result = match host_and_port(spec, port) {
                    Ok((host, port)) => resolver.host_targets(&host, port).await,
                    Err(reason) => Err(ResolveError::Temporary { name: spec.clone(), reason }),
                };
                match result {
                    Ok(found) => targets.extend(found),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            if targets.is_empty() {
                return Err(first_error.unwrap_or_else(|| ResolveError::Temporary {
                    name: hop.next_hop_domain.clone(),
                    reason: "no smart host is configured".to_string(),
                }));
            }
            Ok(targets)
        }
        DeliveryType::DnsConnectorDelivery => resolver.mx_targets(&hop.next_hop_domain, port).await,
        DeliveryType::SmtpDeliveryToMailbox => {
            let (host, port) = host_and_port(&hop.next_hop_domain, DEFAULT_PORT)
                .map_err(|reason| ResolveError::Temporary { name: hop.next_hop_domain.clone(), reason })?;
            resolver.host_targets(&host, port).await
        }
        DeliveryType::Unreachable | DeliveryType::Undefined | DeliveryType::ShadowRedundancy => {
            Err(ResolveError::Temporary {
                name: hop.next_hop_domain.clone(),
                reason: format!("a {:?} queue has no next hop to deliver to", hop.delivery_type),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_and_port;

    #[test]
    fn a_next_hop_takes_the_default_port_unless_it_names_one() {
        assert_eq!(host_and_port("relay.test", 25), Ok(("relay.test".into(), 25)));
        assert_eq!(host_and_port("relay.test:2525", 25), Ok(("relay.test".into(), 2525)));
        assert_eq!(host_and_port("[10.0.0.1]", 587), Ok(("10.0.0.1".into(), 587)));
        assert_eq!(host_and_port("[::1]:26", 25), Ok(("::1".into(), 26)));
        assert!(host_and_port("relay.test:x", 25).is_err());
        assert!(host_and_port("2001:db8::1", 25).is_err(), "bare IPv6: its colons are not a port");
    }
}
