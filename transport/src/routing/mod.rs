//! The categorizer: which next hop each recipient goes to.
//!
//! Accepted domains of type Authoritative go to the mailbox hop; every other
//! domain goes to the send connector whose address space matches it most
//! specifically (then lowest cost). No match, or a mailbox domain with no
//! mailbox hop configured: Unreachable. One delivery queue exists per distinct
//! [`NextHop`] (Exchange's NextHopSolutionKey).
pub mod mx;

pub use crate::api::DeliveryType;
use crate::config::{AcceptedDomainType, MailboxDelivery, OrgSettings, SendConnector};
use crate::queue::Envelope;
use serde::{Deserialize, Serialize};

/// Exchange's NextHopSolutionKey: delivery type, next hop domain, connector.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NextHop {
    pub delivery_type: DeliveryType,
    /// DNS routing: the recipient domain. Smart hosts: the host list as
    /// configured, comma-separated. Mailbox: the mailbox hop's `host:port`.
    pub next_hop_domain: String,
    /// The send connector used (None for the mailbox hop).
    pub connector: Option<String>,
}

impl std::fmt::Display for NextHop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.connector {
            Some(c) => write!(f, "{} ({c})", self.next_hop_domain),
            None => write!(f, "{}", self.next_hop_domain),
        }
    }
}

/// Where a recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Hop(NextHop),
    /// No route; the sentence says why (Get-Queue's LastError of Unreachable).
    Unreachable(String),
}

/// Routing table built from the configuration; replaced as a whole on reload.
#[derive(Debug, Clone)]
pub struct Router {
    _send_connectors: Vec<SendConnector>,
    _org: OrgSettings,
    _mailbox: Option<MailboxDelivery>,
}

impl Router {
    pub fn new(send_connectors: &[SendConnector], org: &OrgSettings, mailbox: Option<&MailboxDelivery>) -> Self {
        Router { _send_connectors: send_connectors.to_vec(), _org: org.clone(), _mailbox: mailbox.cloned() }
    }

    /// The accepted domain type of `domain` (exact or `*.parent` match), if any.
    pub fn accepted(&self, _domain: &str) -> Option<AcceptedDomainType> {
        todo!("routing helper")
    }

    /// True when the sender's domain is an accepted domain (internal sender).
    pub fn is_internal_sender(&self, _mail_from: Option<&str>) -> bool {
        todo!("routing helper")
    }

    /// Route one recipient domain.
    pub fn route(&self, _domain: &str) -> Route {
        todo!("routing helper")
    }

    /// Groups the pending recipients (by index) of a message by route, in a
    /// stable order.
    pub fn split(&self, _envelope: &Envelope) -> Vec<(Route, Vec<usize>)> {
        todo!("routing helper")
    }

    /// The send connector by name.
    pub fn connector(&self, _name: &str) -> Option<&SendConnector> {
        todo!("routing helper")
    }
}
