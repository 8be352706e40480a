//! A report POSTed to an `https:` rua (RFC 8460 §5.3): the gzipped JSON as
//! `application/tlsrpt+gzip`, through the server's HTTPS client (the certificate checked
//! for the rua's host). A 2xx answer is the report received; anything else is a failure
//! the caller decides about.
use super::record::HttpsRua;
use crate::delivery::https;
use crate::routing::mx::Resolver;
use bytes::Bytes;
use http_body_util::Full;
use std::path::Path;
use std::time::Duration;

/// The whole exchange, as the policy fetch.
const TIMEOUT: Duration = Duration::from_secs(60);
/// §5.3 media type of a gzipped report.
pub const CONTENT_TYPE: &str = "application/tlsrpt+gzip";

/// POSTs `body` to `rua`; `Err` says why it was not received.
pub async fn post(resolver: &Resolver, rua: &HttpsRua, roots: Option<&Path>, body: Vec<u8>) -> Result<(), String> {
    let request = hyper::Request::post(rua.path.as_str())
        .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
        .header(hyper::header::CONTENT_LENGTH, body.len())
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let sent = https::send(resolver, &rua.host, rua.port, roots, request);
    let response = match tokio::time::timeout(TIMEOUT, sent).await {
        Ok(result) => result.map_err(|e| e.to_string())?,
        Err(_) => return Err(format!("no answer within {} s", TIMEOUT.as_secs())),
    };
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("it answered {status}"))
    }
}
