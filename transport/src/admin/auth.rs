//! Bearer-token check for `/v1`: constant-time comparison (subtle), 401 with
//! `WWW-Authenticate: Bearer` when the token is missing or wrong.
use super::{error, AdminContext};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

pub(super) async fn require_token(State(ctx): State<AdminContext>, request: Request, next: Next) -> Response {
    let expected = ctx.token.read().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(expected) = expected {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let ok = given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(expected.as_bytes())));
        if !ok {
            let message = match given {
                None => "a bearer token is required (Authorization: Bearer <token>)",
                Some(_) => "the bearer token is not valid",
            };
            let mut response = error(StatusCode::UNAUTHORIZED, message.to_string());
            response.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
            return response.into_response();
        }
    }
    next.run(request).await
}
