//! The server's HTTPS client: one request over a new connection, for the MTA-STS policy
//! fetch (GET, RFC 8461 §3.3) and TLS reports posted to an `https:` rua (POST, RFC 8460
//! §5.3). The host is resolved by the server's resolver (as the MX hosts are), its
//! certificate checked by delivery/tls.rs against the send connector's CAs (else the
//! system's) and for its name; HTTP/1.1 by hyper over that TLS stream. No proxy, no
//! redirect, no connection kept: both uses make a request or two a day per domain.
use crate::delivery::tls;
use crate::routing::mx::Resolver;
use hyper::body::{Body, Incoming};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum HttpsError {
    /// The CA bundle cannot be read (the configuration's fault, not the peer's).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The host's certificate does not pass (or the TLS handshake failed).
    #[error("TLS: {0}")]
    Certificate(String),
    /// The host cannot be reached, or HTTP failed.
    #[error("{0}")]
    Failed(String),
}

/// Sends `request` to `host:port` (the request's own path; its Host header is set here)
/// and returns the response, its body still to be read.
pub async fn send<B>(
    resolver: &Resolver,
    host: &str,
    port: u16,
    roots: Option<&Path>,
    mut request: hyper::Request<B>,
) -> Result<hyper::Response<Incoming>, HttpsError>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let failed = |reason: String| HttpsError::Failed(reason);
    let name = ServerName::try_from(host.to_string()).map_err(|e| failed(e.to_string()))?;
    let connector = TlsConnector::from(tls::verifying_config(roots).map_err(HttpsError::Config)?);
    let tcp = connect(resolver, host, port).await.map_err(failed)?;
    let stream = connector.connect(name, tcp).await.map_err(|e| HttpsError::Certificate(e.to_string()))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| failed(e.to_string()))?;
    // Drives the connection until the response is read (or the request is dropped).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let authority = if port == 443 { host.to_string() } else { format!("{host}:{port}") };
    let headers = request.headers_mut();
    headers.insert(hyper::header::HOST, authority.parse().map_err(|_| failed(format!("bad host {authority:?}")))?);
    headers.insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    sender.send_request(request).await.map_err(|e| failed(e.to_string()))
}

/// The first address of `host` that takes a connection.
async fn connect(resolver: &Resolver, host: &str, port: u16) -> Result<TcpStream, String> {
    let targets = resolver.host_targets(host, port).await.map_err(|e| e.to_string())?;
    let mut failures = Vec::new();
    for target in targets {
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target.addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(e)) => failures.push(format!("{}: {e}", target.addr)),
            Err(_) => failures.push(format!("{}: no connection within {} s", target.addr, CONNECT_TIMEOUT.as_secs())),
        }
    }
    if failures.is_empty() {
        failures.push(format!("no address for {host}"));
    }
    Err(failures.join("; "))
}
