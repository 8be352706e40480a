//! The HTTP channel between the servers of one TransportService (axum
//! server, reqwest client):
//!
//! - `PUT /v1/shadow/copies` (headers `X-Shadow-Primary`, `X-Shadow-Incarnation`):
//!   the body is one or more copies ([`frame`]); `204` once all are durable here,
//!   `503` when this server takes no copies now (the primary tries its next peer).
//!   A primary sends its copies to one peer in batches ([`Shipper`]): copies that
//!   arrive while a request is on the wire go together in the next one, as the
//!   store's group commit does with fsyncs, so a busy primary pays one request
//!   for many messages.
//! - `POST /v1/shadow/heartbeat`: [`HeartbeatRequest`] → [`HeartbeatReply`].
//!
//! Every request must carry `Authorization: Bearer <shared credential>`; a
//! stranger gets `401` and can neither read, add nor drop a copy.
use super::{HeartbeatReply, HeartbeatRequest, Holder, Primary, SharedShadowConfig};
use crate::api::ApiError;
use crate::control::Gate;
use crate::envelope::Envelope;
use crate::queue::body::StagedBody;
use crate::queue::manager::QueueManager;
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

/// Copies in one request, at most (and about this many bytes).
const BATCH_COPIES: usize = 64;
const BATCH_BYTES: usize = 16 << 20;

/// A copy on the wire: the envelope's JSON length (4 bytes, big endian), the
/// message's length (8 bytes, big endian), the envelope as JSON, the message as
/// stored. A request's body is one or more of these.
pub(super) async fn frame(envelope: &Envelope, body: &StagedBody) -> std::io::Result<Vec<u8>> {
    let json = serde_json::to_vec(envelope)?;
    let len = u32::try_from(json.len()).map_err(|_| std::io::Error::other("envelope too large"))?;
    let mut out = Vec::with_capacity(12 + json.len() + body.len() as usize);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body.len().to_be_bytes());
    out.extend_from_slice(&json);
    match body {
        StagedBody::Inline(data) => out.extend_from_slice(data),
        StagedBody::Spooled { file, .. } => {
            tokio::fs::File::open(file.path()).await?.read_to_end(&mut out).await?;
        }
    }
    if out.len() as u64 != 12 + json.len() as u64 + body.len() {
        return Err(std::io::Error::other("the message changed size while it was read"));
    }
    Ok(out)
}

/// One copy of a request body.
#[derive(Debug)]
pub(super) struct Unframed<'a> {
    pub envelope: Envelope,
    /// The message as stored.
    pub data: &'a [u8],
    /// The whole [`frame`] (what the shadow keeps).
    pub raw: &'a [u8],
}

/// Each [`frame`] of a request body.
pub(super) fn unframe(mut bytes: &[u8]) -> Result<Vec<Unframed<'_>>, String> {
    let mut copies = Vec::new();
    while !bytes.is_empty() {
        let n = copies.len();
        let (json_len, rest) = bytes.split_first_chunk::<4>().ok_or(format!("copy {n} is shorter than its header"))?;
        let (data_len, rest) = rest.split_first_chunk::<8>().ok_or(format!("copy {n} is shorter than its header"))?;
        let (json_len, data_len) = (u32::from_be_bytes(*json_len) as u64, u64::from_be_bytes(*data_len));
        let want = json_len.saturating_add(data_len);
        if (rest.len() as u64) < want {
            return Err(format!("copy {n} says it has {want} bytes but {} follow", rest.len()));
        }
        let (json, rest) = rest.split_at(json_len as usize);
        let (data, rest) = rest.split_at(data_len as usize);
        let envelope =
            serde_json::from_slice(json).map_err(|e| format!("the envelope of copy {n} does not parse: {e}"))?;
        let raw = &bytes[..bytes.len() - rest.len()];
        copies.push(Unframed { envelope, data, raw });
        bytes = rest;
    }
    if copies.is_empty() {
        return Err("the request holds no copy".into());
    }
    Ok(copies)
}

/// The one copy of a [`frame`] (as the shadow's log keeps it).
pub(super) fn unframe_one(frame: &[u8]) -> Result<Unframed<'_>, String> {
    let mut copies = unframe(frame)?;
    if copies.len() != 1 {
        return Err(format!("{} copies where one was kept", copies.len()));
    }
    Ok(copies.swap_remove(0))
}

/// Sends one primary's copies to one peer in batches (see the module docs).
/// Cheap to clone; the task ends when the last clone is dropped.
#[derive(Clone)]
pub struct Shipper {
    tx: tokio::sync::mpsc::UnboundedSender<Shipment>,
}

struct Shipment {
    copy: bytes::Bytes,
    reply: tokio::sync::oneshot::Sender<Result<(), PeerError>>,
}

/// Where a [`Shipper`] sends, as who.
#[derive(Clone, PartialEq, Eq)]
pub struct Route {
    pub address: String,
    pub token: String,
    pub primary: String,
    pub incarnation: u64,
}

impl Shipper {
    pub fn start(client: PeerClient, route: Route) -> Shipper {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(ship_batches(rx, client, route));
        Shipper { tx }
    }

    /// Returns once the peer holds the copy durably (or refused it).
    pub async fn ship(&self, copy: bytes::Bytes, address: &str) -> Result<(), PeerError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || PeerError::Unreachable { address: address.to_string(), reason: "the sender stopped".into() };
        self.tx.send(Shipment { copy, reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn ship_batches(mut rx: tokio::sync::mpsc::UnboundedReceiver<Shipment>, client: PeerClient, route: Route) {
    while let Some(first) = rx.recv().await {
        let mut bytes = first.copy.len();
        let mut batch = vec![first];
        while batch.len() < BATCH_COPIES && bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(s) => {
                    bytes += s.copy.len();
                    batch.push(s);
                }
                Err(_) => break,
            }
        }
        let mut body = Vec::with_capacity(bytes);
        for s in &batch {
            body.extend_from_slice(&s.copy);
        }
        // A generous bound: a hung peer must not hold the clients past their own
        // patience, a large batch needs time on the wire.
        let timeout = Duration::from_secs(10 + bytes as u64 / 1_000_000);
        let result = client.put_copies(&route, body, timeout).await;
        for s in batch {
            let _ = s.reply.send(result.clone());
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
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
        crate::client::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        PeerClient { http }
    }
}

impl PeerClient {
    /// Hands [`frame`]d copies of the route's primary's messages to its peer.
    pub async fn put_copies(&self, route: &Route, copies: Vec<u8>, timeout: Duration) -> Result<(), PeerError> {
        let request = self
            .http
            .put(format!("http://{}/v1/shadow/copies", route.address))
            .bearer_auth(&route.token)
            .header(PRIMARY_HEADER, &route.primary)
            .header(INCARNATION_HEADER, route.incarnation.to_string())
            .timeout(timeout)
            .body(copies);
        let response = send(&route.address, request).await?;
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
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/v1/shadow/copies", put(put_copy))
        .route("/v1/shadow/heartbeat", post(heartbeat))
        // A copy is as large as the message; only peers get this far.
        .layer(DefaultBodyLimit::disable())
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), require_peer))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path") })
        .with_state(state);
    crate::admin::serve_until(listener, app, shutdown, "shadow channel").await;
}

async fn require_peer(State(state): State<ChannelState>, request: Request, next: Next) -> Response {
    let expected = state.config.read().unwrap_or_else(|e| e.into_inner()).token.clone();
    // The shadow section was removed by a reload: no credential, no peers.
    let Some(expected) = expected else {
        return error(StatusCode::SERVICE_UNAVAILABLE, "this server has no shadow channel any more");
    };
    if let Some(refusal) = crate::admin::bearer_refusal(request.headers(), Some(&expected)) {
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
    let copies = match unframe(&body) {
        Ok(copies) => copies,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    match state.holder.accept(&primary, incarnation, &copies).await {
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
        let envelope = crate::queue::store::tests::envelope(crate::envelope::MessageId(7));
        let mut bytes = frame(&envelope, &StagedBody::Inline(b"Subject: hi\r\n\r\nbody\r\n".to_vec())).await.unwrap();
        let second = crate::queue::store::tests::envelope(crate::envelope::MessageId(8));
        bytes.extend(frame(&second, &StagedBody::Inline(Vec::new())).await.unwrap());
        let copies = unframe(&bytes).unwrap();
        assert_eq!(copies.len(), 2);
        assert_eq!((&copies[0].envelope, copies[0].data), (&envelope, &b"Subject: hi\r\n\r\nbody\r\n"[..]));
        assert_eq!((&copies[1].envelope, copies[1].data), (&second, &b""[..]));
        assert_eq!([copies[0].raw, copies[1].raw].concat(), bytes, "each copy's frame, whole");
    }

    #[test]
    fn a_damaged_frame_is_refused_with_a_reason() {
        assert!(unframe(b"").unwrap_err().contains("no copy"));
        assert!(unframe(b"\x00\x00").unwrap_err().contains("copy 0 is shorter"));
        let lying = b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x10{}";
        assert!(unframe(lying).unwrap_err().contains("copy 0 says it has 18 bytes but 2 follow"));
        let garbage = b"\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\x00{]";
        assert!(unframe(garbage).unwrap_err().contains("does not parse"));
        let huge = b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
        assert!(unframe(huge).unwrap_err().contains("follow"), "lengths near the limits do not overflow");
    }
}
