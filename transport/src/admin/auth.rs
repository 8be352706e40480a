//! Bearer-token check for `/v1`: constant-time comparison (subtle), 401 with
//! `WWW-Authenticate: Bearer` when the token is missing or wrong. The token comes as
//! `Authorization: Bearer` or, through the Kubernetes API server's pod proxy, in
//! [`TOKEN_HEADER`].
use super::{error, AdminContext};
use crate::api::TOKEN_HEADER;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

pub(super) async fn require_token(State(ctx): State<AdminContext>, request: Request, next: Next) -> Response {
    let expected = ctx.token.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(refusal) = bearer_refusal(request.headers(), expected.as_deref()) {
        return refusal;
    }
    next.run(request).await
}

/// The `401` to answer unless `headers` carry `Authorization: Bearer <expected>`
/// (`None` when they do, or nothing is expected). Shared by the admin API and
/// the shadow channel.
pub fn bearer_refusal(headers: &HeaderMap, expected: Option<&str>) -> Option<Response> {
    let expected = expected?;
    // Through a pod's proxy subresource the API server keeps `Authorization` for itself,
    // so the token may come in TOKEN_HEADER instead.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok()))
        .map(str::trim);
    if given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes()))) {
        return None;
    }
    let message = match given {
        None => "a bearer token is required (Authorization: Bearer <token>, or X-Transport-Token: <token>)",
        Some(_) => "the bearer token is not valid",
    };
    let mut response = error(StatusCode::UNAUTHORIZED, message.to_string());
    response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    Some(response.into_response())
}
