//! Reaching a server's admin API through the API server's pod proxy, as pure functions:
//! the path of a request, and what an answer means. An answer comes either from the API
//! server itself (a `Status` object: RBAC refused, no such pod, the pod did not answer) or
//! from the transport server behind it (`{"error": ...}`, docs/design.md §8).
use super::error::PluginError;
use serde::Serialize;
use transport::api::ApiError;

/// `/api/v1/namespaces/{ns}/pods/{pod}:{port}/proxy{path}`: `path` is the admin API's,
/// with its query.
pub fn pod_proxy_path(namespace: &str, pod: &str, port: u16, path: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy{path}")
}

/// `path?query` with the query type serialized as a form (what the admin API reads);
/// the bare path when no field is set.
pub fn with_query<Q: Serialize>(path: &str, query: &Q) -> Result<String, PluginError> {
    let query =
        serde_urlencoded::to_string(query).map_err(|e| PluginError::Invalid(format!("query of {path}: {e}")))?;
    Ok(if query.is_empty() { path.to_string() } else { format!("{path}?{query}") })
}

/// The request an answer belongs to, for its errors.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub server: &'a str,
    /// The admin API path, without the query.
    pub path: &'a str,
    /// Whether the server's pod is Ready (a not-Ready pod still serves its admin API while
    /// it drains; one that does not answer is named with its state).
    pub pod_ready: bool,
    /// The Secret the token came from.
    pub secret: &'a str,
}

/// Ok for a 2xx answer; otherwise the error it means.
pub fn check_answer(asked: Asked<'_>, verb: &str, status: u16, body: &[u8]) -> Result<(), PluginError> {
    if (200..300).contains(&status) {
        return Ok(());
    }
    let server = asked.server.to_string();
    if let Some(message) = api_server_status(body) {
        return Err(match status {
            403 => PluginError::Forbidden { verb: verb.to_string(), message },
            404 => PluginError::NoPod { server },
            401 => PluginError::ApiServer(format!("the API server did not accept your credentials (401): {message}")),
            _ => PluginError::Unreachable {
                server,
                pod: if asked.pod_ready { "Running, Ready".into() } else { "Running, not Ready".into() },
                message,
            },
        });
    }
    let text = String::from_utf8_lossy(body).trim().to_string();
    let message = serde_json::from_str::<ApiError>(&text).map(|e| e.error).unwrap_or(text);
    Err(match status {
        401 => PluginError::TokenRefused { server, secret: asked.secret.to_string() },
        // An unknown route answers an empty 404; a known one says what it did not find.
        404 if message.is_empty() => PluginError::NotServed { server, path: asked.path.to_string() },
        _ => PluginError::Admin {
            server,
            status,
            message: if message.is_empty() { format!("answered {status}") } else { message },
        },
    })
}

/// The message of a Kubernetes `Status` object: an answer of the API server itself, not
/// of the server behind the proxy.
fn api_server_status(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    if value["kind"] != "Status" {
        return None;
    }
    Some(value["message"].as_str().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use transport::api::{MessageQuery, ResultSize, TrackingEvent, TrackingQuery};
    use transport::client::paths;

    fn asked() -> Asked<'static> {
        Asked { server: "mail-1", path: paths::MESSAGE_TRACKING, pod_ready: false, secret: "mail-admin-token" }
    }

    #[test]
    fn paths_go_through_the_pods_proxy_with_the_admin_apis_query() {
        assert_eq!(
            pod_proxy_path("ops", "mail-0", 8025, paths::QUEUES),
            "/api/v1/namespaces/ops/pods/mail-0:8025/proxy/v1/queues"
        );
        let query = MessageQuery {
            queue: Some("3".into()),
            sender: Some("a@b.c".into()),
            result_size: Some(ResultSize::Unlimited),
            ..Default::default()
        };
        assert_eq!(
            with_query(paths::MESSAGES, &query).unwrap(),
            "/v1/messages?queue=3&sender=a%40b.c&resultSize=Unlimited"
        );
        assert_eq!(with_query(paths::MESSAGES, &MessageQuery::default()).unwrap(), "/v1/messages");
        let tracking = TrackingQuery {
            recipients: vec!["x@y.z".into(), "v@w.z".into()],
            message_id: Some("<1@e2e.test>".into()),
            event_id: Some(TrackingEvent::Redirect),
            ..Default::default()
        };
        assert_eq!(
            with_query(paths::MESSAGE_TRACKING, &tracking).unwrap(),
            "/v1/messagetracking?recipients=x%40y.z%2Cv%40w.z&messageId=%3C1%40e2e.test%3E&eventId=REDIRECT"
        );
    }

    #[test]
    fn answers_of_the_api_server_and_of_the_server_behind_it_are_told_apart() {
        assert!(check_answer(asked(), "get-queue", 200, b"[]").is_ok());
        let forbidden = br#"{"kind":"Status","apiVersion":"v1","status":"Failure","message":"pods \"mail-1\" is forbidden: User \"u\" cannot get resource \"pods/proxy\" in API group \"\" in the namespace \"ops\"","reason":"Forbidden","code":403}"#;
        let e = check_answer(asked(), "get-queue", 403, forbidden).unwrap_err();
        assert!(e.to_string().contains("get-queue needs RBAC verb `get` on resource `pods/proxy`"), "{e}");
        let dial = br#"{"kind":"Status","message":"error trying to reach service: dial tcp 10.244.1.5:8025: connect: connection refused","reason":"ServiceUnavailable","code":503}"#;
        let e = check_answer(asked(), "get-queue", 503, dial).unwrap_err();
        assert_eq!(
            e.to_string(),
            "server mail-1 is not reachable through the API server (pod Running, not Ready): error trying to reach service: dial tcp 10.244.1.5:8025: connect: connection refused"
        );
        let e = check_answer(asked(), "get-queue", 401, br#"{"error":"the bearer token is not valid"}"#).unwrap_err();
        assert!(matches!(e, PluginError::TokenRefused { .. }), "{e}");
        let e = check_answer(asked(), "get-messagetrackinglog", 404, b"").unwrap_err();
        assert_eq!(
            e.to_string(),
            "server mail-1 does not serve /v1/messagetracking (404): its transport image is older than this plugin"
        );
        let e = check_answer(asked(), "get-message", 404, br#"{"error":"There is no queue 7."}"#).unwrap_err();
        assert_eq!(e.to_string(), "server mail-1: There is no queue 7.");
        let e = check_answer(asked(), "get-message", 400, b"resultSize: bad").unwrap_err();
        assert_eq!(e.to_string(), "server mail-1: resultSize: bad");
    }
}
