//! The HTTPS fetch of a policy (RFC 8461 §3.3): `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`.
//! The policy host is resolved by the server's resolver (as the MX hosts are), its
//! certificate checked by delivery/tls.rs against the send connector's CAs (else the
//! system's) and for its name; HTTP/1.1 by hyper over that TLS stream. No redirect is
//! followed, no proxy or HTTP cache used; only `200` with `text/plain` counts; the body
//! may be 64 KB at most, the whole exchange one minute.
use crate::delivery::tls;
use crate::routing::mx::Resolver;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// §3.3 suggests limits of this size and time.
const MAX_BODY: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const PATH: &str = "/.well-known/mta-sts.txt";
/// The port of the policy host (tests move it with a test hook, see `MtaSts`).
pub(super) const HTTPS_PORT: u16 = 443;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot fetch {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("{url} answered {status} (a policy needs 200; redirects are not followed)")]
    Status { url: String, status: u16 },
    #[error("{url} is {content_type:?}, not text/plain")]
    ContentType { url: String, content_type: String },
    #[error("{url} is larger than {MAX_BODY} bytes")]
    TooLarge { url: String },
    #[error("{url} is not UTF-8 text")]
    NotText { url: String },
}

/// Where the policy of `domain` is published.
pub(super) fn policy_url(domain: &str, port: u16) -> String {
    match port {
        HTTPS_PORT => format!("https://mta-sts.{domain}{PATH}"),
        port => format!("https://mta-sts.{domain}:{port}{PATH}"),
    }
}

/// Fetches the policy text of `domain` (not parsed yet).
pub(super) async fn fetch(
    resolver: &Resolver,
    domain: &str,
    roots: Option<&Path>,
    port: u16,
) -> Result<String, FetchError> {
    let url = policy_url(domain, port);
    match tokio::time::timeout(TIMEOUT, get(resolver, domain, roots, port, &url)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Http { url, reason: format!("no answer within {} s", TIMEOUT.as_secs()) }),
    }
}

async fn get(
    resolver: &Resolver,
    domain: &str,
    roots: Option<&Path>,
    port: u16,
    url: &str,
) -> Result<String, FetchError> {
    let http = |reason: String| FetchError::Http { url: url.to_string(), reason };
    let host = format!("mta-sts.{domain}");
    let name = ServerName::try_from(host.clone()).map_err(|e| http(e.to_string()))?;
    let connector = TlsConnector::from(tls::verifying_config(roots).map_err(FetchError::Tls)?);
    let tcp = connect(resolver, &host, port).await.map_err(http)?;
    let stream = connector.connect(name, tcp).await.map_err(|e| http(format!("TLS: {e}")))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| http(e.to_string()))?;
    // Drives the connection until the response is read (or this fetch is dropped).
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let authority = if port == HTTPS_PORT { host } else { format!("{host}:{port}") };
    let request = hyper::Request::get(PATH)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(|e| http(e.to_string()))?;
    if response.status() != hyper::StatusCode::OK {
        return Err(FetchError::Status { url: url.to_string(), status: response.status().as_u16() });
    }
    let content_type = response
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if !is_text_plain(&content_type) {
        return Err(FetchError::ContentType { url: url.to_string(), content_type });
    }
    let body = match Limited::new(response.into_body(), MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(FetchError::TooLarge { url: url.to_string() })
        }
        Err(e) => return Err(http(e.to_string())),
    };
    String::from_utf8(body.to_vec()).map_err(|_| FetchError::NotText { url: url.to_string() })
}

/// The first address of the policy host that takes a connection.
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

/// `text/plain`, with or without parameters (`; charset=utf-8`), in any case.
fn is_text_plain(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    media_type.eq_ignore_ascii_case("text/plain")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_url_and_its_media_type() {
        assert_eq!(policy_url("example.com", 443), "https://mta-sts.example.com/.well-known/mta-sts.txt");
        assert_eq!(policy_url("example.com", 8443), "https://mta-sts.example.com:8443/.well-known/mta-sts.txt");
        for good in ["text/plain", "text/plain; charset=utf-8", "Text/Plain;charset=\"UTF-8\"", " text/plain "] {
            assert!(is_text_plain(good), "{good}");
        }
        for bad in ["", "text/html", "application/octet-stream", "text/plainx", "text/plain2; x=1"] {
            assert!(!is_text_plain(bad), "{bad}");
        }
    }
}
