//! DNS for outbound delivery (hickory-resolver): MX lookup with implicit MX
//! fallback (RFC 5321 §5.1), null MX (RFC 7505), and A/AAAA of hosts.
//!
//! Every name is looked up as an absolute name (no search-domain expansion):
//! a recipient domain is never relative to the server's own domain.
use crate::config::DnsSettings;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, ResolverBuilder, TokioResolver};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// One address to try, with the host name it came from (SNI, logs, Remote-MTA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    pub host: String,
    pub addr: SocketAddr,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// RFC 7505: the domain accepts no mail. Permanent (`556 5.1.10`).
    #[error("{domain} publishes a null MX: it accepts no mail")]
    NullMx { domain: String },
    /// NXDOMAIN. Permanent (`5.4.4`).
    #[error("domain {domain} does not exist")]
    NoSuchDomain { domain: String },
    /// The domain exists but has neither MX nor A/AAAA records: there is no
    /// host to deliver to (RFC 5321 §5.1). Permanent (`5.4.4`).
    #[error("domain {domain} has no MX and no A/AAAA record: it has no mail server")]
    NoMailServer { domain: String },
    /// A name resolved to no usable address.
    #[error("no address found for {host}")]
    NoAddress { host: String },
    /// Timeouts, SERVFAIL, unreachable resolvers: try again later.
    #[error("DNS lookup for {name} failed: {reason}")]
    Temporary { name: String, reason: String },
}

impl ResolveError {
    /// Permanent failures fail the recipients at once (NDR); the others put
    /// the queue in Retry.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ResolveError::NullMx { .. } | ResolveError::NoSuchDomain { .. } | ResolveError::NoMailServer { .. }
        )
    }

    /// The reply text an NDR shows for a permanent failure.
    pub fn reply(&self) -> String {
        match self {
            ResolveError::NullMx { .. } => format!("556 5.1.10 {self}"),
            ResolveError::NoSuchDomain { .. } | ResolveError::NoMailServer { .. } => format!("550 5.4.4 {self}"),
            _ => format!("451 4.4.0 {self}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct MxError(pub String);

/// Time allowed for one DNS query, and how many times it is sent.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);
const QUERY_ATTEMPTS: usize = 2;

/// Answers kept (each for its TTL). hickory keeps 32 by default: a queue of
/// mail to a few thousand domains would ask the DNS again for every
/// connection. Two answers a domain (MX, then A or AAAA of its hosts), a few
/// hundred bytes each.
const CACHE_ENTRIES: usize = 16_384;

/// The resolver the server uses (configured nameservers, else the system's).
#[derive(Clone)]
pub struct Resolver {
    pub(super) inner: Arc<TokioResolver>,
}

/// What one A or AAAA query said about a name.
pub(super) enum Answer {
    Addresses(Vec<IpAddr>),
    /// NOERROR without records of the type.
    NoData,
    /// NXDOMAIN.
    NoSuchName,
    /// Timeout, SERVFAIL, REFUSED, no nameserver reachable...
    Failed(String),
}

/// Classifies a lookup error: NXDOMAIN, NODATA, or a failure worth retrying.
/// (hickory reports SERVFAIL and REFUSED as "no records found" too, with
/// their response code: only NXDOMAIN and NOERROR are answers.)
pub(super) fn classify(error: &hickory_resolver::ResolveError) -> Answer {
    if let Some(proto) = error.proto() {
        if let ProtoErrorKind::NoRecordsFound { response_code, .. } = proto.kind() {
            if *response_code == ResponseCode::NXDomain {
                return Answer::NoSuchName;
            }
            if *response_code == ResponseCode::NoError {
                return Answer::NoData;
            }
        }
    }
    Answer::Failed(error.to_string())
}

/// An IP address written as a domain literal (`[192.0.2.1]`, `[IPv6:2001:db8::1]`)
/// or bare (`192.0.2.1`, `2001:db8::1`).
fn ip_literal(host: &str) -> Option<IpAddr> {
    let inner = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let inner = match inner.get(..5) {
        Some(tag) if tag.eq_ignore_ascii_case("ipv6:") => &inner[5..],
        _ => inner,
    };
    inner.parse().ok()
}

/// The absolute DNS name of a host or domain (IDNs become A-labels).
pub(super) fn absolute_name(name: &str) -> Result<Name, String> {
    let mut name = Name::from_utf8(name.trim_end_matches('.')).map_err(|e| e.to_string())?;
    name.set_fqdn(true);
    Ok(name)
}

/// Lower case, without the trailing dot of an absolute name.
fn display_name(name: &Name) -> String {
    name.to_ascii().trim_end_matches('.').to_ascii_lowercase()
}

impl Resolver {
    pub fn new(dns: Option<&DnsSettings>) -> Result<Self, MxError> {
        Ok(Resolver { inner: Arc::new(Self::builder(dns)?.build()) })
    }

    /// The configured nameservers (else the system's) with this module's timeouts and cache.
    pub(super) fn builder(dns: Option<&DnsSettings>) -> Result<ResolverBuilder<TokioConnectionProvider>, MxError> {
        let nameservers = dns.map(|d| d.nameservers.as_slice()).unwrap_or_default();
        let mut builder = if nameservers.is_empty() {
            TokioResolver::builder_tokio()
                .map_err(|e| MxError(format!("cannot read the system resolver configuration: {e}")))?
        } else {
            let mut servers = Vec::with_capacity(nameservers.len() * 2);
            for addr in nameservers {
                servers.push(NameServerConfig::new(*addr, Protocol::Udp));
                servers.push(NameServerConfig::new(*addr, Protocol::Tcp));
            }
            let config = ResolverConfig::from_parts(None, vec![], servers);
            let mut builder = TokioResolver::builder_with_config(config, TokioConnectionProvider::default());
            // The configured nameservers are the whole truth: no /etc/hosts.
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = QUERY_ATTEMPTS;
        options.cache_size = CACHE_ENTRIES;
        Ok(builder)
    }

    /// The MX hosts of `domain` in preference order, each resolved to its
    /// addresses (`port` appended); the domain itself when it has no MX.
    ///
    /// A domain literal (`[192.0.2.1]`) is its own target. NXDOMAIN and a
    /// null MX are permanent; MX hosts without an address are skipped, and
    /// when none is left the failure is temporary (their DNS may be fixed).
    pub async fn mx_targets(&self, domain: &str, port: u16) -> Result<Vec<HostAddress>, ResolveError> {
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if let Some(ip) = ip_literal(&domain) {
            return Ok(vec![HostAddress { host: domain, addr: SocketAddr::new(ip, port) }]);
        }
        let name = absolute_name(&domain).map_err(|_| ResolveError::NoSuchDomain { domain: domain.clone() })?;
        let records = match self.inner.mx_lookup(name.clone()).await {
            Ok(lookup) => lookup.iter().map(|mx| (mx.preference(), mx.exchange().clone())).collect::<Vec<_>>(),
            Err(e) => match classify(&e) {
                Answer::NoSuchName => return Err(ResolveError::NoSuchDomain { domain }),
                Answer::NoData | Answer::Addresses(_) => Vec::new(),
                Answer::Failed(reason) => return Err(ResolveError::Temporary { name: domain, reason }),
            },
        };
        if records.is_empty() {
            return self.implicit_mx(&domain, name, port).await;
        }
        if let [(0, exchange)] = records.as_slice() {
            if exchange.is_root() {
                return Err(ResolveError::NullMx { domain });
            }
        }
        let mut records = records;
        // Stable: hosts of equal preference keep the order the DNS gave.
        records.sort_by_key(|(preference, _)| *preference);
        // "." among other MX records names no host: skip it.
        records.retain(|(_, exchange)| !exchange.is_root());

        let lookups = records.iter().map(|(_, exchange)| self.addresses(exchange.clone()));
        let answers = futures::future::join_all(lookups).await;
        let mut targets: Vec<HostAddress> = Vec::new();
        let mut skipped = Vec::new();
        for ((_, exchange), answer) in records.iter().zip(answers) {
            let host = display_name(exchange);
            match answer {
                Answer::Addresses(ips) => {
                    for ip in ips {
                        let addr = SocketAddr::new(ip, port);
                        if !targets.iter().any(|t| t.addr == addr) {
                            targets.push(HostAddress { host: host.clone(), addr });
                        }
                    }
                }
                Answer::NoData | Answer::NoSuchName => skipped.push(format!("{host}: no address")),
                Answer::Failed(reason) => skipped.push(format!("{host}: {reason}")),
            }
        }
        if targets.is_empty() {
            return Err(ResolveError::Temporary {
                name: domain,
                reason: format!("no MX host has an address ({})", skipped.join("; ")),
            });
        }
        Ok(targets)
    }

    /// RFC 5321 §5.1: without MX records the domain itself is the mail host.
    async fn implicit_mx(&self, domain: &str, name: Name, port: u16) -> Result<Vec<HostAddress>, ResolveError> {
        match self.addresses(name).await {
            Answer::Addresses(ips) => Ok(ips
                .into_iter()
                .map(|ip| HostAddress { host: domain.to_string(), addr: SocketAddr::new(ip, port) })
                .collect()),
            Answer::NoData => Err(ResolveError::NoMailServer { domain: domain.to_string() }),
            // The MX query said the name exists; a later NXDOMAIN means it
            // was just removed.
            Answer::NoSuchName => Err(ResolveError::NoSuchDomain { domain: domain.to_string() }),
            Answer::Failed(reason) => Err(ResolveError::Temporary { name: domain.to_string(), reason }),
        }
    }

    /// Addresses of a host name or IP literal (`[10.0.0.1]` too).
    ///
    /// A host that does not resolve is [`ResolveError::NoAddress`], which is
    /// temporary: smart hosts and the mailbox hop are configuration, not the
    /// recipient's fault.
    pub async fn host_targets(&self, host: &str, port: u16) -> Result<Vec<HostAddress>, ResolveError> {
        let host = host.trim();
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![HostAddress { host: ip.to_string(), addr: SocketAddr::new(ip, port) }]);
        }
        let shown = host.trim_end_matches('.').to_ascii_lowercase();
        let name = absolute_name(host).map_err(|_| ResolveError::NoAddress { host: shown.clone() })?;
        match self.addresses(name).await {
            Answer::Addresses(ips) => Ok(ips
                .into_iter()
                .map(|ip| HostAddress { host: shown.clone(), addr: SocketAddr::new(ip, port) })
                .collect()),
            Answer::NoData | Answer::NoSuchName => Err(ResolveError::NoAddress { host: shown }),
            Answer::Failed(reason) => Err(ResolveError::Temporary { name: shown, reason }),
        }
    }

    /// The TXT records of `name`, each record's strings joined without a separator (RFC 8461
    /// §3.1, as RFC 7208 §3.3 does for SPF); none when the name has no TXT record or does
    /// not exist. Timeouts and SERVFAIL are errors.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, ResolveError> {
        let shown = name.trim_end_matches('.').to_ascii_lowercase();
        let absolute = absolute_name(name).map_err(|reason| ResolveError::Temporary { name: shown.clone(), reason })?;
        match self.inner.txt_lookup(absolute).await {
            Ok(lookup) => Ok(lookup
                .iter()
                .map(|txt| {
                    let joined: Vec<u8> = txt.txt_data().iter().flat_map(|part| part.iter().copied()).collect();
                    String::from_utf8_lossy(&joined).into_owned()
                })
                .collect()),
            Err(e) => match classify(&e) {
                Answer::NoData | Answer::NoSuchName | Answer::Addresses(_) => Ok(Vec::new()),
                Answer::Failed(reason) => Err(ResolveError::Temporary { name: shown, reason }),
            },
        }
    }

    /// A and AAAA of a name, asked in parallel. Addresses from either answer
    /// count even when the other query failed; "no address" is only
    /// concluded when both queries got an answer.
    async fn addresses(&self, name: Name) -> Answer {
        let (v4, v6) = tokio::join!(self.inner.ipv4_lookup(name.clone()), self.inner.ipv6_lookup(name));
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut answers = Vec::new();
        match v4 {
            Ok(lookup) => ips.extend(lookup.iter().map(|a| IpAddr::V4(a.0))),
            Err(e) => answers.push(classify(&e)),
        }
        match v6 {
            Ok(lookup) => ips.extend(lookup.iter().map(|a| IpAddr::V6(a.0))),
            Err(e) => answers.push(classify(&e)),
        }
        if !ips.is_empty() {
            return Answer::Addresses(ips);
        }
        if let Some(reason) = answers.iter().find_map(|a| match a {
            Answer::Failed(reason) => Some(reason.clone()),
            _ => None,
        }) {
            return Answer::Failed(reason);
        }
        if answers.iter().any(|a| matches!(a, Answer::NoSuchName)) {
            Answer::NoSuchName
        } else {
            Answer::NoData
        }
    }
}
