//! The plugin's Kubernetes side, all with the user's own credentials and RBAC: the client
//! (kubeconfig, `--context`, `--namespace`), the TransportService, its servers' pods, the
//! admin token (Secret `<ts>-admin-token`), and GET requests to a server's admin API
//! through the API server's pod proxy, the token in [`TOKEN_HEADER`] (the API server keeps
//! `Authorization` for itself).
use super::error::{forbidden_text, from_kube, PluginError, Result};
use super::proxy::{check_answer, pod_proxy_path, Asked};
use super::servers::{servers_of, Server};
use crate::crd::TransportService;
use crate::names;
use futures::future::join_all;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;
use transport::api::{NEXT_BOOKMARK_HEADER, TOKEN_HEADER};

/// How to reach the cluster: kubectl's flags of the same names.
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    /// Absent: the namespace of the kubeconfig's context.
    pub namespace: Option<String>,
}

/// A request to the API server that waits longer than this is given up (a server's
/// answer through the proxy takes milliseconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Session {
    pub client: kube::Client,
    pub namespace: String,
    /// The plugin verb running (errors say which verb needs what).
    pub verb: &'static str,
}

/// One answer of a server's admin API.
#[derive(Debug, Clone)]
pub struct Answer<T> {
    pub value: T,
    /// `X-Next-Bookmark`: more rows match than were asked for.
    pub next_bookmark: Option<String>,
}

impl Session {
    pub async fn connect(options: &ConnectOptions, verb: &'static str) -> Result<Session> {
        crate::context::install_crypto_provider();
        let kube_options = KubeConfigOptions { context: options.context.clone(), ..Default::default() };
        let mut config = match (&options.kubeconfig, &options.context) {
            (Some(path), _) => {
                let file =
                    Kubeconfig::read_from(path).map_err(|e| PluginError::Config(format!("{}: {e}", path.display())))?;
                kube::Config::from_custom_kubeconfig(file, &kube_options)
                    .await
                    .map_err(|e| PluginError::Config(e.to_string()))?
            }
            (None, Some(_)) => {
                kube::Config::from_kubeconfig(&kube_options).await.map_err(|e| PluginError::Config(e.to_string()))?
            }
            (None, None) => kube::Config::infer().await.map_err(|e| PluginError::Config(e.to_string()))?,
        };
        config.read_timeout = Some(REQUEST_TIMEOUT);
        config.connect_timeout = Some(Duration::from_secs(10));
        let namespace = options.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).map_err(|e| PluginError::Config(e.to_string()))?;
        Ok(Session { client, namespace, verb })
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    fn kube_error(&self, error: kube::Error) -> PluginError {
        from_kube(self.verb, error)
    }

    /// The TransportService, or an error that says it is not in this namespace.
    pub async fn transport_service(&self, name: &str) -> Result<TransportService> {
        match self.api::<TransportService>().get_opt(name).await {
            Ok(Some(ts)) => Ok(ts),
            Ok(None) => Err(PluginError::NoSuchService { name: name.to_string(), namespace: self.namespace.clone() }),
            Err(e) => Err(self.kube_error(e)),
        }
    }

    /// The servers of `ts` and their pods (`only`: one server, its pod read alone).
    pub async fn servers(&self, ts: &TransportService, only: Option<&str>) -> Result<Vec<Server>> {
        let pods: Vec<Pod> = match only {
            Some(server) => {
                self.api::<Pod>().get_opt(server).await.map_err(|e| self.kube_error(e))?.into_iter().collect()
            }
            None => {
                let name = kube::ResourceExt::name_any(ts);
                let params = ListParams::default().labels(&names::pod_selector_string(&name));
                self.api::<Pod>().list(&params).await.map_err(|e| self.kube_error(e))?.items
            }
        };
        servers_of(ts, &pods, only)
    }

    /// The admin API token of the TransportService's servers, from its Secret.
    pub async fn admin_token(&self, service: &str) -> Result<Token> {
        let secret = names::admin_secret_name(service);
        let unreadable = |reason: String| PluginError::Token { secret: secret.clone(), reason };
        let found = self.api::<Secret>().get_opt(&secret).await.map_err(|e| match self.kube_error(e) {
            PluginError::Forbidden { message, .. } => unreadable(forbidden_text(self.verb, &message)),
            other => unreadable(other.to_string()),
        })?;
        let Some(found) = found else {
            return Err(unreadable(format!(
                "it does not exist in namespace {} (the operator writes it for each TransportService: is the operator running?)",
                self.namespace
            )));
        };
        let bytes = found
            .data
            .and_then(|d| d.get(names::TOKEN_KEY).map(|b| b.0.clone()))
            .ok_or_else(|| unreadable(format!("it has no key {:?}", names::TOKEN_KEY)))?;
        let value = String::from_utf8(bytes).map_err(|_| unreadable("the token is not UTF-8".into()))?;
        Ok(Token { secret, value: value.trim().to_string() })
    }

    /// `GET path_and_query` on a server's admin API through its pod's proxy.
    pub async fn admin_get<T: DeserializeOwned>(
        &self,
        server: &Server,
        token: &Token,
        path: &str,
        path_and_query: &str,
    ) -> Result<Answer<T>> {
        let pod = server.reachable()?;
        let asked = Asked { server: &server.name, path, pod_ready: pod.ready, secret: &token.secret };
        let uri = pod_proxy_path(&self.namespace, &server.name, names::ADMIN_PORT, path_and_query);
        let request = http::Request::get(uri)
            .header(TOKEN_HEADER, token.value.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(kube::client::Body::empty())
            .map_err(|e| PluginError::Token { secret: token.secret.clone(), reason: format!("cannot send it: {e}") })?;
        let response = self.client.send(request).await.map_err(|e| self.kube_error(e))?;
        let status = response.status().as_u16();
        let next_bookmark =
            response.headers().get(NEXT_BOOKMARK_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.into_body().collect_bytes().await.map_err(|e| PluginError::Unreachable {
            server: server.name.clone(),
            pod: pod.describe(),
            message: e.to_string(),
        })?;
        check_answer(asked, self.verb, status, &body)?;
        let value = serde_json::from_slice(&body).map_err(|e| PluginError::Decode {
            server: server.name.clone(),
            path: path.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Answer { value, next_bookmark })
    }

    /// The same GET on every server at once; each server's answer or error, in server order.
    pub async fn admin_get_all<T: DeserializeOwned>(
        &self,
        servers: &[Server],
        token: &Token,
        path: &str,
        path_and_query: &str,
    ) -> Vec<(String, Result<Answer<T>>)> {
        let asks = servers
            .iter()
            .map(|s| async move { (s.name.clone(), self.admin_get::<T>(s, token, path, path_and_query).await) });
        join_all(asks).await
    }
}

/// The admin token and the Secret it came from.
#[derive(Debug, Clone)]
pub struct Token {
    pub secret: String,
    pub value: String,
}
