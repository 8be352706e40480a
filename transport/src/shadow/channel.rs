//! The HTTP channel between the servers of one TransportService (axum
//! server, reqwest client):
//!
//! - `PUT /v1/shadow/copies` (headers `X-Shadow-Primary`, `X-Shadow-Incarnation`):
//!   the body is a copy ([`frame`]); `204` once it is durable here, `503` when
//!   this server takes no copies now (the primary tries its next peer).
//! - `POST /v1/shadow/heartbeat`: [`HeartbeatRequest`] → [`HeartbeatReply`].
//!
//! Every request must carry `Authorization: Bearer <shared credential>`; a
//! stranger gets `401` and can neither read, add nor drop a copy.
use super::{HeartbeatReply, HeartbeatRequest, Holder, Primary, SharedShadowConfig};
use crate::api::ApiError;
use crate::control::Gate;
use crate::queue::body::StagedBody;
use crate::queue::manager::QueueManager;
use crate::queue::Envelope;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;

const PRIMARY_HEADER: &str = "x-shadow-primary";
const INCARNATION_HEADER: &str = "x-shadow-incarnation";

/// A copy on the wire: the envelope's JSON length (4 bytes, big endian), the
/// envelope as JSON, then the message as stored.
pub(super) async fn frame(envelope: &Envelope, body: &StagedBody) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(envelope)?;
    let len = u32::try_from(json.len()).map_err(|_| std::io::Error::other("envelope too large"))?;
    let mut out = Vec::with_capacity(4 + json.len() + body.len() as usize);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&json);
    match body {
        StagedBody::Inline(data) => out.extend_from_slice(data),
        StagedBody::Spooled { file, .. } => {
            tokio::fs::File::open(file.path()).await?.read_to_end(&mut out).await?;
        }
    }
    Ok(out)
}

/// The envelope and the message of a [`frame`].
pub(super) fn unframe(bytes: &[u8]) -> Result<(Envelope, &[u8]), String> {
    let (len, rest) = bytes.split_first_chunk::<4>().ok_or("the copy is shorter than its header")?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return Err(format!("the copy says its envelope has {len} bytes but {} follow", rest.len()));
    }
    let (json, data) = rest.split_at(len);
    let envelope = serde_json::from_slice(json).map_err(|e| format!("the envelope does not parse: {e}"))?;
    Ok((envelope, data))
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("cannot reach {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("{address} answered {status}: {message}")]
    Refused { address: String, status: u16, message: String },
    #[error("unexpected answer from {address}: {reason}")]
    Decode { address: String, reason: String },
}

/// Client side of the channel.
#[derive(Clone)]
pub struct PeerClient {
    http: reqwest::Client,
}

impl Default for PeerClient {
    fn default() -> Self {
        // reqwest may be built with rustls through feature unification: it
        // then needs a process-wide provider; an error only means one is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        PeerClient { http }
    }
}

impl PeerClient {
    /// Hands a [`frame`]d copy of `primary`'s message to the peer at `address`.
    pub async fn put_copy(
        &self,
        address: &str,
        token: &str,
        primary: &str,
        incarnation: u64,
        copy: bytes::Bytes,
        timeout: Duration,
    ) -> Result<(), PeerError> {
        let request = self
            .http
            .put(format!("http://{address}/v1/shadow/copies"))
            .bearer_auth(token)
            .header(PRIMARY_HEADER, primary)
            .header(INCARNATION_HEADER, incarnation.to_string())
            .timeout(timeout)
            .body(copy);
        let response = send(address, request).await?;
        let _ = response.bytes().await;
        Ok(())
    }

    /// Asks the primary at `address` which of `request.ids` it still holds.
    pub async fn heartbeat(
        &self,
        address: &str,
        token: &str,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatReply, PeerError> {
        let call = self
            .http
            .post(format!("http://{address}/v1/shadow/heartbeat"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(30))
            .json(request);
        let response = send(address, call).await?;
        response.json().await.map_err(|e| PeerError::Decode { address: address.to_string(), reason: e.to_string() })
    }
}

async fn send(address: &str, request: reqwest::RequestBuilder) -> Result<reqwest::Response, PeerError> {
    let response = request
        .send()
        .await
        .map_err(|e| PeerError::Unreachable { address: address.to_string(), reason: error_chain(&e) })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let message = match response.json::<ApiError>().await {
        Ok(e) => e.error,
        Err(_) => status.canonical_reason().unwrap_or("").to_string(),
    };
    Err(PeerError::Refused { address: address.to_string(), status: status.as_u16(), message })
}

/// reqwest's top-level message says little ("error sending request"): the
/// causes say why (connection refused, timed out).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// What the channel's handlers work with.
#[derive(Clone)]
pub struct ChannelState {
    pub server_name: String,
    pub config: SharedShadowConfig,
    pub holder: Arc<Holder>,
    pub primary: Arc<Primary>,
    pub manager: QueueManager,
    pub gate: Gate,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ApiError { error: message.into() })).into_response()
}

/// Serves the channel on `listener` until `shutdown` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ChannelState,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/v1/shadow/copies", put(put_copy))
        .route("/v1/shadow/heartbeat", post(heartbeat))
        // A copy is as large as the message; only peers get this far.
        .layer(DefaultBodyLimit::disable())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_peer))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path") })
        .with_state(state);
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "shadow channel stopped");
    }
}

async fn require_peer(State(state): State<ChannelState>, request: Request, next: Next) -> Response {
    let expected = state.config.read().unwrap_or_else(|e| e.into_inner()).token.clone();
    if let Some(refusal) = crate::admin::bearer_refusal(request.headers(), expected.as_deref()) {
        tracing::warn!(path = %request.uri().path(), "shadow channel: a request without the peers' credential was refused");
        return refusal;
    }
    next.run(request).await
}

async fn put_copy(State(state): State<ChannelState>, headers: HeaderMap, body: bytes::Bytes) -> Response {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let Some(primary) = text(PRIMARY_HEADER).filter(|p| crate::config::validate::check_server_name(p).is_ok()) else {
        return error(StatusCode::BAD_REQUEST, format!("{PRIMARY_HEADER} must name the primary server"));
    };
    let Some(incarnation) = text(INCARNATION_HEADER).and_then(|i| i.parse::<u64>().ok()) else {
        return error(StatusCode::BAD_REQUEST, format!("{INCARNATION_HEADER} must be a number"));
    };
    if primary == state.server_name {
        return error(StatusCode::BAD_REQUEST, "a server does not shadow its own messages");
    }
    // A server that does not take mail (maintenance, Stopped) is on its way
    // out: the primary should pick another peer.
    if !state.gate.now().mail {
        return error(StatusCode::SERVICE_UNAVAILABLE, "this server does not take mail now, nor shadow copies");
    }
    let (envelope, data) = match unframe(&body) {
        Ok(parts) => parts,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.holder.accept(&primary, incarnation, envelope, data.to_vec()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => {
            tracing::warn!(%primary, error = %e, "cannot store a shadow copy");
            error(StatusCode::SERVICE_UNAVAILABLE, format!("cannot store the copy: {e}"))
        }
    }
}

async fn heartbeat(State(state): State<ChannelState>, Json(request): Json<HeartbeatRequest>) -> Response {
    let held = state.primary.held(&state.manager, &request.ids);
    tracing::debug!(shadow = %request.shadow, asked = request.ids.len(), held = held.len(), "shadow heartbeat");
    Json(HeartbeatReply { incarnation: state.primary.incarnation(), held }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_gives_back_its_envelope_and_message() {
        let envelope = crate::queue::store::tests::envelope(crate::queue::MessageId(7));
        let bytes = frame(&envelope, &StagedBody::Inline(b"Subject: hi\r\n\r\nbody\r\n".to_vec())).await.unwrap();
        let (back, data) = unframe(&bytes).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(data, b"Subject: hi\r\n\r\nbody\r\n");
    }

    #[test]
    fn a_damaged_frame_is_refused_with_a_reason() {
        assert!(unframe(b"\x00\x00").unwrap_err().contains("shorter"));
        assert!(unframe(b"\x00\x00\x00\x10{}").unwrap_err().contains("16 bytes but 2 follow"));
        assert!(unframe(b"\x00\x00\x00\x02{}").unwrap_err().contains("does not parse"));
    }
}
