//! The admin HTTP API (docs/design.md §8, axum): server and component state, Get-Queue,
//! Get-Message and every queue and message action, Redirect-Message,
//! Get-MessageTrackingLog, the TLS reporting counts (RFC 8460); plus
//! `/metrics`, `/healthz` and `/readyz`, which kubelet and Prometheus reach
//! without a token. Everything under `/v1` needs `Authorization: Bearer
//! <token>` when a token is configured (the config refuses a non-loopback
//! bind without one). A refused action answers 409 with a sentence.
mod auth;

pub use auth::bearer_refusal;

use crate::api::{
    ApiError, MessageQuery, QueueTotals, RedirectInfo, RedirectRequest, ServerInfo, SetComponentState, SetServerState,
    NEXT_BOOKMARK_HEADER,
};
use crate::config::{Component, ServerStateSetting};
use crate::control::{Activity, Control};
use crate::metrics::Telemetry;
use crate::queue::manager::{ActionError, QueueManager};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use std::sync::{Arc, RwLock};

/// What the admin API reads and acts on.
#[derive(Clone)]
pub struct AdminContext {
    pub server_name: String,
    pub control: Control,
    pub manager: QueueManager,
    pub telemetry: Arc<Telemetry>,
    pub activity: Arc<dyn Activity>,
    /// Revision of the config in effect and whether the file on disk needs a restart.
    pub status: Arc<RwLock<ConfigStatus>>,
    /// The bearer token (None: no token required, loopback only).
    pub token: Arc<RwLock<Option<String>>>,
    /// The shadow copies this server holds for its peers.
    pub shadows: Arc<crate::shadow::Holder>,
    /// The shadow settings in effect and the client that reaches peers (a heartbeat on request).
    pub shadow_config: crate::shadow::SharedShadowConfig,
    pub peers: crate::shadow::PeerClient,
    /// Each receive connector's certificate in use, and a renewal it could not use.
    pub certificates: Arc<crate::server::Certificates>,
}

#[derive(Debug, Clone, Default)]
pub struct ConfigStatus {
    pub revision: String,
    pub restart_required: bool,
}

impl AdminContext {
    /// `GET /v1/server`.
    pub fn server_info(&self) -> ServerInfo {
        let status = self.status.read().unwrap_or_else(|e| e.into_inner()).clone();
        let redirect = self.manager.redirect_remaining().map(|(target, remaining)| RedirectInfo {
            target,
            remaining,
            done: remaining == 0,
        });
        ServerInfo {
            server_name: self.server_name.clone(),
            server_state: self.control.server_state(),
            components: self.control.components(),
            config_revision: status.revision,
            restart_required: status.restart_required,
            accepting_mail: self.control.availability().ready(),
            totals: QueueTotals {
                shadow_messages: self.shadows.len() as u64,
                safety_net_messages: self.manager.store().retired_len() as u64,
                ..self.manager.totals()
            },
            redirect,
            certificates: self.certificates.list(),
        }
    }

    /// `GET /v1/queues`: the delivery queues, then the shadow queues.
    pub fn queues(&self) -> Vec<crate::api::QueueInfo> {
        let mut queues = self.manager.queues();
        queues.extend(self.shadows.queues(&self.server_name));
        queues
    }
}

/// The routes, ready to serve.
pub fn router(ctx: AdminContext) -> Router {
    let v1 = Router::new()
        .route("/v1/server", get(get_server))
        .route("/v1/server/state", put(put_server_state))
        .route("/v1/components/{component}", put(put_component))
        .route("/v1/queues", get(get_queues))
        .route("/v1/queues/{id}/retry", post(retry_queue))
        .route("/v1/queues/{id}/suspend", post(suspend_queue))
        .route("/v1/queues/{id}/resume", post(resume_queue))
        .route("/v1/messages", get(get_messages))
        .route("/v1/messages/{id}", delete(remove_message))
        .route("/v1/messages/{id}/suspend", post(suspend_message))
        .route("/v1/messages/{id}/resume", post(resume_message))
        .route("/v1/messages/{id}/export", get(export_message))
        .route("/v1/messagetracking", get(get_message_tracking))
        .route("/v1/tlsrpt", get(get_tls_reports))
        .route("/v1/redirect", post(redirect))
        .route("/v1/shadow/{primary}/takeover", post(take_over_shadows))
        .route("/v1/shadow/{primary}/heartbeat", post(check_shadows))
        .route("/v1/resubmit", post(resubmit))
        .route_layer(axum::middleware::from_fn_with_state(ctx.clone(), auth::require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(v1)
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such path".into()) })
        .with_state(ctx)
}

/// Serves the API on `listener` until `shutdown` fires.
pub async fn serve(listener: tokio::net::TcpListener, ctx: AdminContext, shutdown: tokio::sync::watch::Receiver<bool>) {
    serve_until(listener, router(ctx), shutdown, "admin API").await;
}

/// Serves `app` on `listener` until `shutdown` fires (the admin API, the shadow channel).
pub(crate) async fn serve_until(
    listener: tokio::net::TcpListener,
    app: Router,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    what: &str,
) {
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stop).await {
        tracing::error!(error = %e, "{what} stopped");
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(ApiError { error: message })).into_response()
}

impl IntoResponse for ActionError {
    fn into_response(self) -> Response {
        match self {
            ActionError::NotFound(m) => error(StatusCode::NOT_FOUND, m),
            ActionError::Refused(m) => error(StatusCode::CONFLICT, m),
            ActionError::Invalid(m) => error(StatusCode::BAD_REQUEST, m),
        }
    }
}

async fn readyz(State(ctx): State<AdminContext>) -> Response {
    // A server that cannot store mail (disk full) answers 452 to every message:
    // take it out of the Service until its storage has recovered.
    if let Some(reason) = ctx.manager.store().failure() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("queue storage failing: {reason}")).into_response();
    }
    if ctx.control.availability().ready() {
        (StatusCode::OK, "ready").into_response()
    } else {
        let state = ctx.control.server_state();
        let reason = format!("not taking new mail (ServerState {} ({}))", state.name.as_str(), state.code);
        (StatusCode::SERVICE_UNAVAILABLE, reason).into_response()
    }
}

async fn metrics(State(ctx): State<AdminContext>) -> Response {
    let components: Vec<_> = Component::ALL.into_iter().map(|c| (c, ctx.control.effective(c))).collect();
    let body = ctx.telemetry.render(
        ctx.control.server_state().code,
        &components,
        &ctx.manager.queue_status_counts(),
        ctx.manager.store().len(),
        ctx.shadows.len(),
        ctx.manager.store().retired_len(),
    );
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body).into_response()
}

async fn get_server(State(ctx): State<AdminContext>) -> Json<ServerInfo> {
    Json(ctx.server_info())
}

async fn put_server_state(State(ctx): State<AdminContext>, Json(req): Json<SetServerState>) -> Json<ServerInfo> {
    // The transition runs on: Stopping lasts until open transactions end, and
    // the caller sees the transitional state meanwhile.
    let (control, activity) = (ctx.control.clone(), ctx.activity.clone());
    let task = tokio::spawn(async move { control.set_server_state(req.state, activity.as_ref()).await });
    if req.state != ServerStateSetting::Stopped {
        let _ = task.await;
    } else {
        tokio::task::yield_now().await;
    }
    Json(ctx.server_info())
}

async fn put_component(
    State(ctx): State<AdminContext>,
    Path(component): Path<String>,
    Json(req): Json<SetComponentState>,
) -> Response {
    let Ok(component) = serde_json::from_value::<Component>(serde_json::Value::String(component.clone())) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("There is no component {component}; use HubTransport, FrontendTransport or ServerWideOffline."),
        );
    };
    match ctx.control.set_component(component, req.requester, req.state) {
        Ok(()) => Json(ctx.server_info()).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn get_queues(State(ctx): State<AdminContext>) -> Response {
    Json(ctx.queues()).into_response()
}

/// Add-ResubmitRequest: queue again what the Safety Net holds of a time window.
async fn resubmit(State(ctx): State<AdminContext>, Json(req): Json<crate::api::ResubmitRequest>) -> Response {
    use crate::clock::parse_rfc3339;
    use crate::queue::manager::ResubmitWindow;
    let (start_ms, end_ms) = match (parse_rfc3339(&req.start_time), parse_rfc3339(&req.end_time)) {
        (Ok(s), Ok(e)) if s <= e => (s, e),
        (Ok(_), Ok(_)) => return error(StatusCode::BAD_REQUEST, "endTime is before startTime".into()),
        (Err(e), _) => return error(StatusCode::BAD_REQUEST, format!("startTime: {e}")),
        (_, Err(e)) => return error(StatusCode::BAD_REQUEST, format!("endTime: {e}")),
    };
    let window = ResubmitWindow { start_ms, end_ms, destination: req.destination };
    match ctx.manager.resubmit_safety_net(&window).await {
        Ok(n) => {
            tracing::warn!(start = %req.start_time, end = %req.end_time, destination = ?window.destination, messages = n, "resubmit request from the Safety Net");
            Json(crate::api::ResubmitInfo { resubmitted: n }).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("the resubmit request stopped: {e}")),
    }
}

/// The primary is gone for good (its pod and volume deleted): deliver the
/// copies held for it from here now, without waiting for shadowResubmitTimeSpan.
async fn take_over_shadows(State(ctx): State<AdminContext>, Path(primary): Path<String>) -> Response {
    // In a task of its own: a client that gives up (the operator's timeout) must
    // not cut a takeover off between queueing a message and dropping its copy.
    let (shadows, manager, who) = (ctx.shadows.clone(), ctx.manager.clone(), primary.clone());
    let done = tokio::spawn(async move { shadows.take_over(&who, &manager).await }).await;
    match done.unwrap_or_else(|e| Err(crate::shadow::HolderError::Log(std::io::Error::other(e)))) {
        Ok(n) => {
            tracing::warn!(%primary, messages = n, "shadow copies taken over on request");
            Json(crate::api::TakeoverInfo { primary, resubmitted: n as u64 }).into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("the takeover stopped: {e}")),
    }
}

/// Heartbeats `primary` now: the copies it has finished are dropped. The
/// operator asks this before it removes a drained server, and waits for 0.
async fn check_shadows(State(ctx): State<AdminContext>, Path(primary): Path<String>) -> Response {
    let config = ctx.shadow_config.read().unwrap_or_else(|e| e.into_inner()).clone();
    let (shadows, manager, who) = (ctx.shadows.clone(), ctx.manager.clone(), primary.clone());
    // In a task of its own, as a takeover: it may become one (another incarnation).
    let server = ctx.server_name.clone();
    let done = tokio::spawn(async move { shadows.check_now(&config, &ctx.peers, &server, &who, &manager).await }).await;
    match done.unwrap_or_else(|e| Err(e.to_string())) {
        Ok(held) => Json(crate::api::ShadowCheckInfo { primary, held_copies: held as u64 }).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot ask {primary} which of its messages it still holds: {e}"),
        ),
    }
}

#[derive(Deserialize)]
struct RetryQuery {
    #[serde(default)]
    resubmit: bool,
}

async fn retry_queue(State(ctx): State<AdminContext>, Path(id): Path<String>, Query(q): Query<RetryQuery>) -> Response {
    match ctx.manager.retry_queue(&id, q.resubmit) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

async fn suspend_queue(State(ctx): State<AdminContext>, Path(id): Path<String>) -> Response {
    done(ctx.manager.suspend_queue(&id))
}

async fn resume_queue(State(ctx): State<AdminContext>, Path(id): Path<String>) -> Response {
    done(ctx.manager.resume_queue(&id))
}

async fn get_messages(State(ctx): State<AdminContext>, query: Result<Query<MessageQuery>, QueryRejection>) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        // Say which parameter is wrong (a status that does not exist, a bad ResultSize).
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match ctx.manager.messages(&query) {
        Ok(page) => {
            let mut response = Json(page.rows).into_response();
            if let Some(next) = page.next.and_then(|n| header::HeaderValue::from_str(&n).ok()) {
                response.headers_mut().insert(NEXT_BOOKMARK_HEADER, next);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Get-MessageTrackingLog: the log is read off the runtime's threads (a search may
/// read every file of the log).
async fn get_message_tracking(
    State(ctx): State<AdminContext>,
    query: Result<Query<crate::api::TrackingQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let tracking = ctx.manager.tracking().clone();
    match tokio::task::spawn_blocking(move || tracking.search(&query)).await {
        Ok(Ok(records)) => Json(records).into_response(),
        Ok(Err(e @ crate::logs::tracking::SearchError::Query { .. })) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("the search stopped: {e}")),
    }
}

/// The TLS session counts (RFC 8460): every day kept, newest first, or the one `date`.
async fn get_tls_reports(
    State(ctx): State<AdminContext>,
    query: Result<Query<crate::api::TlsReportQuery>, QueryRejection>,
) -> Response {
    let query = match query {
        Ok(Query(q)) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let reports = ctx.manager.tls_reports();
    match query.date.as_deref() {
        None => Json(reports.all()).into_response(),
        Some(date) if is_date(date) => Json(vec![reports.day(Some(date))]).into_response(),
        Some(date) => error(StatusCode::BAD_REQUEST, format!("date: {date:?} is not YYYY-MM-DD")),
    }
}

/// `YYYY-MM-DD` with a real month and day.
fn is_date(text: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    text.len() == 10 && time::Date::parse(text, format).is_ok()
}

fn message_id(id: &str) -> Result<u64, ActionError> {
    id.parse().map_err(|_| ActionError::NotFound(format!("There is no message {id}.")))
}

async fn suspend_message(State(ctx): State<AdminContext>, Path(id): Path<String>) -> Response {
    done(message_id(&id).and_then(|id| ctx.manager.suspend_message(id)))
}

async fn resume_message(State(ctx): State<AdminContext>, Path(id): Path<String>) -> Response {
    done(message_id(&id).and_then(|id| ctx.manager.resume_message(id)))
}

#[derive(Deserialize)]
struct RemoveQuery {
    #[serde(default, rename = "withNdr")]
    with_ndr: bool,
}

async fn remove_message(
    State(ctx): State<AdminContext>,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Response {
    match message_id(&id) {
        Ok(id) => done(ctx.manager.remove_message(id, q.with_ndr).await),
        Err(e) => e.into_response(),
    }
}

async fn export_message(State(ctx): State<AdminContext>, Path(id): Path<String>) -> Response {
    match message_id(&id).and_then(|n| ctx.manager.export_message(n)) {
        Ok(reader) => {
            let len = reader.len();
            // Streamed a chunk at a time: a large message is never in memory whole.
            let chunks = futures::stream::try_unfold(reader, |mut reader| async move {
                Ok::<_, std::io::Error>(reader.next_chunk().await?.map(|chunk| (chunk, reader)))
            });
            (
                [
                    (header::CONTENT_TYPE, "message/rfc822".to_string()),
                    (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{id}.eml\"")),
                    (header::CONTENT_LENGTH, len.to_string()),
                ],
                axum::body::Body::from_stream(chunks),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn redirect(State(ctx): State<AdminContext>, Json(req): Json<RedirectRequest>) -> Response {
    match ctx.manager.redirect(&req.target) {
        Ok(_) => {
            // The answer must already show mail refused: do not wait for the
            // follower task to mirror the redirect into the control side.
            ctx.control.sync_redirecting(&ctx.manager.redirecting());
            Json(ctx.server_info()).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn done(result: Result<(), ActionError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}
