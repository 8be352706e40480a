//! A typed client of the admin HTTP API (docs/design.md §8), used by `transportctl` and
//! the operator. Every call maps to one documented path; a refused action comes
//! back as [`ClientError::Refused`] with the server's sentence.
use crate::api::{
    ApiError, MessageInfo, MessageQuery, QueueInfo, RedirectRequest, ResubmitInfo, ResubmitRequest, ResultSize,
    ServerInfo, SetComponentState, SetServerState, ShadowCheckInfo, TakeoverInfo, TrackingQuery, TrackingRecord,
    NEXT_BOOKMARK_HEADER,
};
use crate::config::{Component, ComponentState, Requester, ServerStateSetting};
use serde::de::DeserializeOwned;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the admin API at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the admin API refused the token (401): check --token-file")]
    Unauthorized,
    #[error("not found: {0}")]
    NotFound(String),
    /// 409: the action is not allowed now; the sentence says why.
    #[error("{0}")]
    Refused(String),
    #[error("the admin API answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
}

/// A queue action of `POST /v1/queues/{id}/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    Retry,
    /// Retry-Queue -Resubmit.
    Resubmit,
    Suspend,
    Resume,
}

/// A message action of `POST /v1/messages/{id}/...` / `DELETE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAction {
    Suspend,
    Resume,
    Remove { with_ndr: bool },
}

/// Client of one server's admin API.
#[derive(Clone)]
pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// rustls needs one process-wide crypto provider when more than one is compiled in
/// (feature unification in the workspace brings aws-lc-rs next to ring): installs ring
/// before the first TLS use. An error only means one is installed already. Every
/// binary and client of the workspace calls this one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl AdminClient {
    /// `base` like `http://127.0.0.1:8025`; `token` is sent as a bearer token.
    pub fn new(base: &str, token: Option<String>) -> Result<AdminClient, ClientError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| ClientError::Unreachable { url: base.to_string(), reason: e.to_string() })?;
        Ok(AdminClient { base: base.trim_end_matches('/').to_string(), token, http })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET /v1/server`.
    pub async fn server(&self) -> Result<ServerInfo, ClientError> {
        self.json(self.request(reqwest::Method::GET, paths::SERVER)).await
    }

    /// `PUT /v1/server/state`.
    pub async fn set_server_state(&self, state: ServerStateSetting) -> Result<ServerInfo, ClientError> {
        let req = self.request(reqwest::Method::PUT, paths::SERVER_STATE).json(&SetServerState { state });
        self.json(req).await
    }

    /// `PUT /v1/components/{component}`.
    pub async fn set_component(
        &self,
        component: Component,
        requester: Requester,
        state: ComponentState,
    ) -> Result<ServerInfo, ClientError> {
        let req = self
            .request(reqwest::Method::PUT, &paths::component(component))
            .json(&SetComponentState { requester, state });
        self.json(req).await
    }

    /// `GET /v1/queues`.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, ClientError> {
        self.json(self.request(reqwest::Method::GET, paths::QUEUES)).await
    }

    /// Every message, optionally of one queue (`GET /v1/messages?resultSize=Unlimited`).
    pub async fn messages(&self, queue: Option<&str>) -> Result<Vec<MessageInfo>, ClientError> {
        let query = MessageQuery {
            queue: queue.map(str::to_string),
            result_size: Some(ResultSize::Unlimited),
            ..Default::default()
        };
        Ok(self.message_page(&query).await?.0)
    }

    /// One page of `GET /v1/messages` (Get-Message with its filters), and the
    /// bookmark of the next page when more rows match.
    pub async fn message_page(&self, query: &MessageQuery) -> Result<(Vec<MessageInfo>, Option<String>), ClientError> {
        let resp = self.send(self.request(reqwest::Method::GET, paths::MESSAGES).query(query)).await?;
        let next = resp.headers().get(NEXT_BOOKMARK_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok((Self::decode(resp).await?, next))
    }

    /// `GET /v1/messagetracking` (Get-MessageTrackingLog with its filters), oldest first.
    pub async fn message_tracking(&self, query: &TrackingQuery) -> Result<Vec<TrackingRecord>, ClientError> {
        self.json(self.request(reqwest::Method::GET, paths::MESSAGE_TRACKING).query(query)).await
    }

    /// `GET /v1/tlsrpt`: the TLS reporting counts, newest day first (one day with `date`).
    pub async fn tls_reports(
        &self,
        query: &crate::api::TlsReportQuery,
    ) -> Result<Vec<crate::api::TlsReportDay>, ClientError> {
        self.json(self.request(reqwest::Method::GET, paths::TLS_REPORTS).query(query)).await
    }

    pub async fn queue_action(&self, queue: &str, action: QueueAction) -> Result<(), ClientError> {
        let (verb, query) = match action {
            QueueAction::Retry => ("retry", None),
            QueueAction::Resubmit => ("retry", Some(("resubmit", "true"))),
            QueueAction::Suspend => ("suspend", None),
            QueueAction::Resume => ("resume", None),
        };
        let mut req = self.request(reqwest::Method::POST, &paths::queue_action(queue, verb));
        if let Some(q) = query {
            req = req.query(&[q]);
        }
        self.empty(req).await
    }

    pub async fn message_action(&self, id: u64, action: MessageAction) -> Result<(), ClientError> {
        let req = match action {
            MessageAction::Suspend => self.request(reqwest::Method::POST, &paths::message_action(id, "suspend")),
            MessageAction::Resume => self.request(reqwest::Method::POST, &paths::message_action(id, "resume")),
            MessageAction::Remove { with_ndr } => self
                .request(reqwest::Method::DELETE, &paths::message(id))
                .query(&[("withNdr", if with_ndr { "true" } else { "false" })]),
        };
        self.empty(req).await
    }

    /// `GET /v1/messages/{id}/export`: the message as message/rfc822 bytes.
    pub async fn export_message(&self, id: u64) -> Result<Vec<u8>, ClientError> {
        let resp = self.send(self.request(reqwest::Method::GET, &paths::message_export(id))).await?;
        let url = resp.url().to_string();
        resp.bytes().await.map(|b| b.to_vec()).map_err(|e| ClientError::Decode { url, reason: e.to_string() })
    }

    /// `POST /v1/redirect` (Redirect-Message).
    pub async fn redirect(&self, target: &str) -> Result<ServerInfo, ClientError> {
        let req = self.request(reqwest::Method::POST, paths::REDIRECT).json(&RedirectRequest { target: target.into() });
        self.json(req).await
    }

    /// `POST /v1/resubmit` (Add-ResubmitRequest).
    pub async fn resubmit(&self, request: &ResubmitRequest) -> Result<ResubmitInfo, ClientError> {
        let req = self.request(reqwest::Method::POST, paths::RESUBMIT).json(request);
        self.json(req).await
    }

    /// `POST /v1/shadow/{primary}/takeover`: deliver the copies held for `primary` from
    /// this server now (the primary is gone for good).
    pub async fn take_over_shadows(&self, primary: &str) -> Result<TakeoverInfo, ClientError> {
        let req = self.request(reqwest::Method::POST, &paths::shadow_takeover(primary));
        self.json(req).await
    }

    /// `POST /v1/shadow/{primary}/heartbeat`: this server asks `primary` now which of its
    /// shadow copies are finished, drops those, and says how many it still holds.
    pub async fn check_shadows(&self, primary: &str) -> Result<ShadowCheckInfo, ClientError> {
        let req = self.request(reqwest::Method::POST, &paths::shadow_heartbeat(primary));
        self.json(req).await
    }

    /// `GET /readyz`: true when the server takes new mail.
    pub async fn ready(&self) -> Result<bool, ClientError> {
        let url = format!("{}{}", self.base, paths::READYZ);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: url.clone(), reason: e.to_string() })?;
        Ok(resp.status().is_success())
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: e.url().map(|u| u.to_string()).unwrap_or_else(|| self.base.clone()),
            reason: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        // Every error answer is `{"error": "<sentence>"}`; fall back to the raw text.
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&text).map(|e| e.error).unwrap_or(text);
        Err(match status {
            401 => ClientError::Unauthorized,
            404 => ClientError::NotFound(message),
            409 => ClientError::Refused(message),
            _ => ClientError::Status { status, message },
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<T, ClientError> {
        Self::decode(self.send(req).await?).await
    }

    async fn decode<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, ClientError> {
        let url = resp.url().to_string();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Decode { url: url.clone(), reason: e.to_string() })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode { url, reason: e.to_string() })
    }

    async fn empty(&self, req: reqwest::RequestBuilder) -> Result<(), ClientError> {
        self.send(req).await.map(|_| ())
    }
}

/// The admin API's paths (docs/design.md §8), written once: for [`AdminClient`] and for what
/// reaches a server another way (`kubectl transport`, through the Kubernetes API server's
/// pod proxy). Query strings are the query types of [`crate::api`] serialized as
/// `application/x-www-form-urlencoded`.
pub mod paths {
    use crate::config::Component;

    pub const SERVER: &str = "/v1/server";
    pub const SERVER_STATE: &str = "/v1/server/state";
    pub const QUEUES: &str = "/v1/queues";
    /// Query: [`crate::api::MessageQuery`].
    pub const MESSAGES: &str = "/v1/messages";
    /// Query: [`crate::api::TrackingQuery`].
    pub const MESSAGE_TRACKING: &str = "/v1/messagetracking";
    /// Query: [`crate::api::TlsReportQuery`].
    pub const TLS_REPORTS: &str = "/v1/tlsrpt";
    pub const REDIRECT: &str = "/v1/redirect";
    pub const RESUBMIT: &str = "/v1/resubmit";
    pub const READYZ: &str = "/readyz";

    /// `PUT /v1/components/{component}`.
    pub fn component(component: Component) -> String {
        format!("/v1/components/{}", component.as_str())
    }

    /// `POST /v1/queues/{id}/{action}` (`retry`, `suspend`, `resume`).
    pub fn queue_action(queue: &str, action: &str) -> String {
        format!("/v1/queues/{}/{action}", segment(queue))
    }

    /// `DELETE /v1/messages/{id}`.
    pub fn message(id: u64) -> String {
        format!("/v1/messages/{id}")
    }

    /// `POST /v1/messages/{id}/{action}` (`suspend`, `resume`).
    pub fn message_action(id: u64, action: &str) -> String {
        format!("/v1/messages/{id}/{action}")
    }

    /// `GET /v1/messages/{id}/export`.
    pub fn message_export(id: u64) -> String {
        format!("/v1/messages/{id}/export")
    }

    /// `POST /v1/shadow/{primary}/takeover`.
    pub fn shadow_takeover(primary: &str) -> String {
        format!("/v1/shadow/{}/takeover", segment(primary))
    }

    /// `POST /v1/shadow/{primary}/heartbeat`.
    pub fn shadow_heartbeat(primary: &str) -> String {
        format!("/v1/shadow/{}/heartbeat", segment(primary))
    }

    /// A queue id or server name as a path segment (ids are `Submission`, `Unreachable`,
    /// `Poison` or digits; anything else is percent-encoded so it cannot change the path).
    fn segment(id: &str) -> String {
        id.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn paths_are_those_of_the_design_and_segments_cannot_change_them() {
            assert_eq!(super::queue_action("3", "retry"), "/v1/queues/3/retry");
            assert_eq!(super::queue_action("../server", "resume"), "/v1/queues/%2E%2E%2Fserver/resume");
            assert_eq!(super::component(crate::config::Component::HubTransport), "/v1/components/HubTransport");
            assert_eq!(super::message_action(17, "suspend"), "/v1/messages/17/suspend");
            assert_eq!(super::shadow_heartbeat("mail-2"), "/v1/shadow/mail%2D2/heartbeat");
        }
    }
}
