//! Reaching one server's admin API. Production connects to `http://<podIP>:8025` with the
//! token of its TransportService (crate::token); the reconcile tests substitute their own
//! [`AdminConnector`] (servers on loopback ports, processes instead of pods).
use crate::names;
use std::net::IpAddr;
use transport::client::{AdminClient, ClientError};

/// One server the operator wants to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEndpoint {
    pub namespace: String,
    /// The TransportService.
    pub service: String,
    /// The server (and pod) name.
    pub server: String,
    pub pod_ip: Option<String>,
    /// The admin API bearer token.
    pub token: Option<String>,
}

/// Gives an admin API client for a server, and the address its SMTP connectors listen on.
pub trait AdminConnector: Send + Sync + 'static {
    fn client(&self, endpoint: &ServerEndpoint) -> Result<AdminClient, ClientError>;

    /// `host:port` where sibling servers reach `endpoint`'s connector on `port` (the target
    /// of Redirect-Message). Default: the pod IP.
    fn smtp_address(&self, endpoint: &ServerEndpoint, port: u16) -> Option<String> {
        endpoint.pod_ip.as_deref().map(|ip| host_port(ip, port))
    }
}

/// `ip:port`, with brackets for IPv6.
pub fn host_port(ip: &str, port: u16) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    }
}

/// Production: `http://<podIP>:8025`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodIpConnector;

impl AdminConnector for PodIpConnector {
    fn client(&self, endpoint: &ServerEndpoint) -> Result<AdminClient, ClientError> {
        let ip = endpoint.pod_ip.as_deref().ok_or_else(|| ClientError::Unreachable {
            url: format!("pod {}", endpoint.server),
            reason: "the pod has no IP address yet".into(),
        })?;
        AdminClient::new(&format!("http://{}", host_port(ip, names::ADMIN_PORT)), endpoint.token.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(ip: Option<&str>) -> ServerEndpoint {
        ServerEndpoint {
            namespace: "prod".into(),
            service: "mail".into(),
            server: "mail-0".into(),
            pod_ip: ip.map(Into::into),
            token: Some("t".into()),
        }
    }

    #[test]
    fn production_connector_uses_the_pod_ip_and_admin_port() {
        let c = PodIpConnector.client(&endpoint(Some("10.1.2.3"))).unwrap();
        assert_eq!(c.base(), "http://10.1.2.3:8025");
        let c = PodIpConnector.client(&endpoint(Some("fd00::5"))).unwrap();
        assert_eq!(c.base(), "http://[fd00::5]:8025");
        assert!(PodIpConnector.client(&endpoint(None)).is_err());
        assert_eq!(PodIpConnector.smtp_address(&endpoint(Some("10.1.2.3")), 2527).as_deref(), Some("10.1.2.3:2527"));
    }
}
