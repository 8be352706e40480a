//! The categorizer: which next hop each recipient goes to.
//!
//! Accepted domains of type Authoritative go to the mailbox hop; every other
//! domain goes to the send connector whose address space matches it most
//! specifically (then lowest cost). No match, or a mailbox domain with no
//! mailbox hop configured: Unreachable. One delivery queue exists per distinct
//! [`NextHop`] (Exchange's NextHopSolutionKey).
pub mod dnssec;
pub mod mx;

pub use crate::api::DeliveryType;
use crate::config::domain_pattern::{DomainPattern, Specificity};
use crate::config::{AcceptedDomainType, AddressSpace, MailboxDelivery, OrgSettings, SendConnector};
use crate::envelope::{Address, Envelope, RecipientStatus};
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
    send_connectors: Vec<SendConnector>,
    /// The address spaces of each connector (same order), parsed: (pattern, cost).
    address_spaces: Vec<Vec<(DomainPattern, u32)>>,
    /// The accepted domains, parsed, with their types.
    accepted: Vec<(DomainPattern, AcceptedDomainType)>,
    mailbox: Option<MailboxDelivery>,
}

/// The form every comparison uses: the routed form of recipient domains.
fn normalize(domain: &str) -> String {
    crate::address::routed_domain(domain.trim())
}

impl Router {
    pub fn new(send_connectors: &[SendConnector], org: &OrgSettings, mailbox: Option<&MailboxDelivery>) -> Self {
        let address_spaces = send_connectors
            .iter()
            .map(|c| {
                let space =
                    |a: &AddressSpace| Some((DomainPattern::parse_or_log(&a.domain, true)?, a.cost.unwrap_or(1)));
                c.address_spaces.iter().filter_map(space).collect()
            })
            .collect();
        Router {
            send_connectors: send_connectors.to_vec(),
            address_spaces,
            accepted: org.accepted_patterns(),
            mailbox: mailbox.cloned(),
        }
    }

    /// The accepted domain type of `domain` (exact or `*.parent` match), if any.
    /// `*.parent` covers the parent and all its subdomains; the most specific
    /// accepted domain decides.
    pub fn accepted(&self, domain: &str) -> Option<AcceptedDomainType> {
        let domain = normalize(domain);
        self.accepted
            .iter()
            .filter_map(|(pattern, kind)| pattern.specificity(&domain).map(|s| (s, *kind)))
            .max_by_key(|(s, _)| *s)
            .map(|(_, t)| t)
    }

    /// True when the sender's domain is an accepted domain (internal sender).
    /// ExternalRelay domains belong to systems outside the organisation, so
    /// their senders are external, as in Exchange.
    pub fn is_internal_sender(&self, mail_from: Option<&Address>) -> bool {
        let Some(from) = mail_from else { return false };
        let domain = from.routed_domain();
        !domain.is_empty()
            && matches!(
                self.accepted(&domain),
                Some(AcceptedDomainType::Authoritative | AcceptedDomainType::InternalRelay)
            )
    }

    /// Route one recipient domain.
    pub fn route(&self, domain: &str) -> Route {
        let domain = normalize(domain);
        if domain.is_empty() {
            return Route::Unreachable("the recipient address has no domain".to_string());
        }
        if self.accepted(&domain) == Some(AcceptedDomainType::Authoritative) {
            return match &self.mailbox {
                Some(m) => Route::Hop(NextHop {
                    delivery_type: DeliveryType::SmtpDeliveryToMailbox,
                    next_hop_domain: m.host.clone(),
                    connector: None,
                }),
                None => Route::Unreachable(format!(
                    "{domain} is an authoritative accepted domain but no mailbox delivery hop is configured"
                )),
            };
        }
        let Some(connector) = self.best_connector(&domain) else {
            return Route::Unreachable(format!("no send connector has an address space matching {domain}"));
        };
        if connector.dns_routing {
            Route::Hop(NextHop {
                delivery_type: DeliveryType::DnsConnectorDelivery,
                next_hop_domain: domain,
                connector: Some(connector.name.clone()),
            })
        } else if !connector.smart_hosts.is_empty() {
            Route::Hop(NextHop {
                delivery_type: DeliveryType::SmartHostConnectorDelivery,
                next_hop_domain: connector.smart_hosts.join(","),
                connector: Some(connector.name.clone()),
            })
        } else {
            Route::Unreachable(format!(
                "send connector {} serves {domain} but has neither smart hosts nor DNS routing",
                connector.name
            ))
        }
    }

    /// The connector whose address space matches `domain` most specifically,
    /// then with the lowest cost, then the first configured.
    fn best_connector(&self, domain: &str) -> Option<&SendConnector> {
        let mut best: Option<(Specificity, u32, usize)> = None;
        for (index, spaces) in self.address_spaces.iter().enumerate() {
            for (pattern, cost) in spaces {
                let Some(spec) = pattern.specificity(domain) else { continue };
                let cost = *cost;
                // Greater specificity wins, then lower cost, then earlier connector.
                let better = match best {
                    None => true,
                    Some((s, c, i)) => {
                        (spec, std::cmp::Reverse(cost), std::cmp::Reverse(index))
                            > (s, std::cmp::Reverse(c), std::cmp::Reverse(i))
                    }
                };
                if better {
                    best = Some((spec, cost, index));
                }
            }
        }
        best.map(|(_, _, index)| &self.send_connectors[index])
    }

    /// Groups the pending recipients (by index) of a message by route, in a
    /// stable order: groups in order of their first recipient, indexes
    /// ascending within a group.
    pub fn split(&self, envelope: &Envelope) -> Vec<(Route, Vec<usize>)> {
        let mut groups: Vec<(Route, Vec<usize>)> = Vec::new();
        let mut by_domain: std::collections::HashMap<String, Route> = std::collections::HashMap::new();
        for (index, recipient) in envelope.recipients.iter().enumerate() {
            if recipient.status != RecipientStatus::Pending {
                continue;
            }
            let domain = recipient.address.routed_domain();
            let route = if domain.is_empty() {
                Route::Unreachable(format!("recipient {} has no domain", recipient.address))
            } else {
                by_domain.entry(domain).or_insert_with_key(|d| self.route(d)).clone()
            };
            match groups.iter_mut().find(|(r, _)| *r == route) {
                Some((_, indexes)) => indexes.push(index),
                None => groups.push((route, vec![index])),
            }
        }
        groups
    }

    /// The send connector by name.
    pub fn connector(&self, name: &str) -> Option<&SendConnector> {
        self.send_connectors.iter().find(|c| c.name == name)
    }
}
