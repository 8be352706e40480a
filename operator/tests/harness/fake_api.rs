//! Finalizers on top of kube-fake-client, whose DELETE removes an object at once.
//!
//! [`with_finalizers`] wraps a fake client so that deletion behaves as on an API server: an
//! object that still has finalizers gets `metadata.deletionTimestamp` and stays (in every
//! GET, LIST, PATCH and PUT answer) until a write leaves its finalizer list empty; then it is
//! deleted for real. The fake store cannot hold a deletionTimestamp written through the API
//! (it treats the field as immutable), so the wrapper keeps the objects being deleted itself
//! and adds the field to the answers.
//!
//! This file is shared by the local e2e (module `e2e::local::fake_api`) and the operator's
//! reconcile tests (included by path): it depends only on kube, http, tower and serde_json.
use kube::client::Body;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// A fake client where finalizers hold deletion, as on a real API server.
pub fn with_finalizers(inner: kube::Client) -> kube::Client {
    let service = Finalizers { inner, deleting: Arc::default() };
    kube::Client::new(service, "default")
}

/// Identity of one object: API prefix, namespace (empty when cluster-scoped), plural, name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    prefix: String,
    namespace: String,
    plural: String,
    name: String,
}

/// What a request path names.
enum Target {
    /// `.../<plural>/<name>[/<subresource>]`
    Object(Key),
    /// `.../<plural>` (LIST, across namespaces when `namespace` is None).
    Collection { prefix: String, namespace: Option<String>, plural: String },
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", v, rest @ ..] => (format!("/api/{v}"), rest),
        ["apis", g, v, rest @ ..] => (format!("/apis/{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
        _ => (None, rest),
    };
    match rest {
        [plural] => Some(Target::Collection { prefix, namespace, plural: plural.to_string() }),
        [plural, name] | [plural, name, _] => Some(Target::Object(Key {
            prefix,
            namespace: namespace.unwrap_or_default(),
            plural: plural.to_string(),
            name: name.to_string(),
        })),
        _ => None,
    }
}

#[derive(Clone)]
struct Finalizers {
    inner: kube::Client,
    /// Objects being deleted → their deletionTimestamp.
    deleting: Arc<Mutex<HashMap<Key, serde_json::Value>>>,
}

type Reply = Result<http::Response<Body>, kube::Error>;

impl tower::Service<http::Request<Body>> for Finalizers {
    type Response = http::Response<Body>;
    type Error = kube::Error;
    type Future = Pin<Box<dyn Future<Output = Reply> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.handle(req).await })
    }
}

fn json_reply(status: http::StatusCode, value: &serde_json::Value) -> Reply {
    let bytes = serde_json::to_vec(value).map_err(kube::Error::SerdeError)?;
    let resp = http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .map_err(kube::Error::HttpError)?;
    Ok(resp)
}

fn has_finalizers(obj: &serde_json::Value) -> bool {
    obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty())
}

impl Finalizers {
    fn marked(&self, key: &Key) -> Option<serde_json::Value> {
        self.deleting.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn unmark(&self, key: &Key) {
        self.deleting.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    async fn handle(&self, req: http::Request<Body>) -> Reply {
        let method = req.method().clone();
        let target = parse_path(req.uri().path());
        let is_watch = req.uri().query().is_some_and(|q| q.contains("watch=true") || q.contains("watch=1"));
        match target {
            Some(Target::Object(key)) if method == http::Method::DELETE => self.delete(key, req).await,
            Some(Target::Object(key)) if self.marked(&key).is_some() => self.on_marked(key, req).await,
            Some(Target::Collection { prefix, namespace, plural }) if method == http::Method::GET && !is_watch => {
                self.list(prefix, namespace, plural, req).await
            }
            _ => self.inner.send(req).await,
        }
    }

    /// DELETE of an object with finalizers marks it instead.
    async fn delete(&self, key: Key, req: http::Request<Body>) -> Reply {
        let get = http::Request::get(req.uri().clone()).body(Body::empty()).map_err(kube::Error::HttpError)?;
        let current = self.inner.send(get).await?;
        if !current.status().is_success() {
            return self.inner.send(req).await;
        }
        let bytes = current.into_body().collect_bytes().await?;
        let mut obj: serde_json::Value = serde_json::from_slice(&bytes).map_err(kube::Error::SerdeError)?;
        if !has_finalizers(&obj) {
            self.unmark(&key);
            return self.inner.send(req).await;
        }
        let stamp = {
            let mut deleting = self.deleting.lock().unwrap_or_else(|e| e.into_inner());
            deleting
                .entry(key)
                .or_insert_with(|| {
                    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
                    serde_json::to_value(now).unwrap_or_default()
                })
                .clone()
        };
        obj["metadata"]["deletionTimestamp"] = stamp;
        json_reply(http::StatusCode::OK, &obj)
    }

    /// Any other request on an object being deleted: answered with its deletionTimestamp;
    /// a write that leaves no finalizer deletes it for real.
    async fn on_marked(&self, key: Key, req: http::Request<Body>) -> Reply {
        let writes = req.method() == http::Method::PATCH || req.method() == http::Method::PUT;
        let resp = self.inner.send(req).await?;
        let status = resp.status();
        if status == http::StatusCode::NOT_FOUND {
            self.unmark(&key);
            return Ok(resp);
        }
        if !status.is_success() {
            return Ok(resp);
        }
        let bytes = resp.into_body().collect_bytes().await?;
        let mut obj: serde_json::Value = serde_json::from_slice(&bytes).map_err(kube::Error::SerdeError)?;
        let stamp = self.marked(&key).unwrap_or_default();
        if writes && !has_finalizers(&obj) {
            // The last finalizer is gone: the object goes (the subresource, if any, is
            // dropped from the path).
            let path = format!(
                "{}{}/{}/{}",
                key.prefix,
                if key.namespace.is_empty() { String::new() } else { format!("/namespaces/{}", key.namespace) },
                key.plural,
                key.name
            );
            let delete = http::Request::delete(path).body(Body::empty()).map_err(kube::Error::HttpError)?;
            let _ = self.inner.send(delete).await?;
            self.unmark(&key);
        }
        obj["metadata"]["deletionTimestamp"] = stamp;
        json_reply(status, &obj)
    }

    /// LIST: the objects being deleted carry their deletionTimestamp.
    async fn list(&self, prefix: String, namespace: Option<String>, plural: String, req: http::Request<Body>) -> Reply {
        let any_marked = {
            let deleting = self.deleting.lock().unwrap_or_else(|e| e.into_inner());
            deleting.keys().any(|k| k.prefix == prefix && k.plural == plural)
        };
        let resp = self.inner.send(req).await?;
        if !any_marked || !resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let bytes = resp.into_body().collect_bytes().await?;
        let mut list: serde_json::Value = serde_json::from_slice(&bytes).map_err(kube::Error::SerdeError)?;
        if let Some(items) = list["items"].as_array_mut() {
            for item in items {
                let key = Key {
                    prefix: prefix.clone(),
                    namespace: item["metadata"]["namespace"]
                        .as_str()
                        .map(str::to_string)
                        .or_else(|| namespace.clone())
                        .unwrap_or_default(),
                    plural: plural.clone(),
                    name: item["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                };
                if let Some(stamp) = self.marked(&key) {
                    item["metadata"]["deletionTimestamp"] = stamp;
                }
            }
        }
        json_reply(status, &list)
    }
}
