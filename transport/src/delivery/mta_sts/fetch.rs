//! The HTTPS fetch of a policy (RFC 8461 §3.3): `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`.
//! Through the server's HTTPS client (delivery/https.rs: its resolver, the send
//! connector's CAs, the name checked). No redirect is followed, no HTTP cache used; only
//! `200` with `text/plain` counts; the body may be 64 KB at most, the whole exchange one
//! minute.
use crate::delivery::https::{self, HttpsError};
use crate::routing::mx::Resolver;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use std::path::Path;
use std::time::Duration;

/// §3.3 suggests limits of this size and time.
const MAX_BODY: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);
const PATH: &str = "/.well-known/mta-sts.txt";
/// The port of the policy host (tests move it with a test hook, see `MtaSts`).
pub(super) const HTTPS_PORT: u16 = 443;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("TLS configuration: {0}")]
    Tls(String),
    #[error("cannot fetch {url}: {reason}")]
    Http { url: String, reason: String },
    #[error("cannot fetch {url}: the policy host's certificate does not pass: {reason}")]
    Certificate { url: String, reason: String },
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
    let request = hyper::Request::get(PATH).body(Empty::<Bytes>::new()).map_err(|e| http(e.to_string()))?;
    let response =
        https::send(resolver, &format!("mta-sts.{domain}"), port, roots, request).await.map_err(|e| match e {
            HttpsError::Config(reason) => FetchError::Tls(reason),
            HttpsError::Certificate(reason) => FetchError::Certificate { url: url.to_string(), reason },
            HttpsError::Failed(reason) => http(reason),
        })?;
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
