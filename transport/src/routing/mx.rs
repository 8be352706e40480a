//! DNS for outbound delivery (hickory-resolver): MX lookup with implicit MX
//! fallback (RFC 5321 §5.1), null MX (RFC 7505), and A/AAAA of hosts.
use crate::config::DnsSettings;
use std::net::SocketAddr;

/// One address to try, with the host name it came from (SNI, logs, Remote-MTA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
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
        matches!(self, ResolveError::NullMx { .. } | ResolveError::NoSuchDomain { .. })
    }

    /// The reply text an NDR shows for a permanent failure.
    pub fn reply(&self) -> String {
        match self {
            ResolveError::NullMx { .. } => format!("556 5.1.10 {self}"),
            ResolveError::NoSuchDomain { .. } => format!("550 5.4.4 {self}"),
            _ => format!("451 4.4.0 {self}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("DNS resolver: {0}")]
pub struct MxError(pub String);

/// The resolver the server uses (configured nameservers, else the system's).
#[derive(Clone)]
pub struct Resolver {
    _private: (),
}

impl Resolver {
    pub fn new(_dns: Option<&DnsSettings>) -> Result<Self, MxError> {
        todo!("routing helper")
    }

    /// The MX hosts of `domain` in preference order, each resolved to its
    /// addresses (`port` appended); the domain itself when it has no MX.
    pub async fn mx_targets(&self, _domain: &str, _port: u16) -> Result<Vec<Target>, ResolveError> {
        todo!("routing helper")
    }

    /// Addresses of a host name or IP literal (`[10.0.0.1]` too).
    pub async fn host_targets(&self, _host: &str, _port: u16) -> Result<Vec<Target>, ResolveError> {
        todo!("routing helper")
    }
}
