//! What every reconcile shares.
use crate::admin::AdminConnector;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::names;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::Client;
use std::sync::Arc;
use std::time::Duration;

/// Name the operator reports Events under.
pub const REPORTING_CONTROLLER: &str = "kube-transport-operator";

pub struct Context {
    pub client: Client,
    /// How to reach a server's admin API.
    pub admin: Arc<dyn AdminConnector>,
    /// The one field manager of every server-side apply (`kube-transport`).
    pub field_manager: String,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Namespace watched; None: every namespace.
    pub namespace: Option<String>,
    /// Image of servers whose TransportService names none.
    pub default_image: String,
    /// Next look while something is under way (servers starting, draining, rolling).
    pub requeue_busy: Duration,
    /// Next look when everything is as wanted (refreshes queue totals in status).
    pub requeue_idle: Duration,
    /// Retry delays per object while its servers do not answer.
    pub backoff: Backoff,
}

impl Context {
    pub fn new(client: Client, admin: Arc<dyn AdminConnector>) -> Self {
        install_crypto_provider();
        let reporter = Reporter { controller: REPORTING_CONTROLLER.into(), instance: std::env::var("POD_NAME").ok() };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            admin,
            field_manager: names::FIELD_MANAGER.to_string(),
            metrics: Arc::new(Metrics::default()),
            namespace: None,
            default_image: names::DEFAULT_IMAGE.to_string(),
            requeue_busy: Duration::from_secs(5),
            requeue_idle: Duration::from_secs(60),
            backoff: Backoff::default(),
        }
    }

    pub fn with_namespace(mut self, namespace: Option<String>) -> Self {
        self.namespace = namespace;
        self
    }

    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn with_default_image(mut self, image: impl Into<String>) -> Self {
        self.default_image = image.into();
        self
    }

    /// Publishes an Event about `regarding` (and `related`, e.g. the pod of the server it
    /// concerns: the recorder folds repeats of one reason into a series per related object).
    /// A failure is logged, never fatal: Events inform, the reconcile must go on.
    pub async fn event(
        &self,
        regarding: &ObjectReference,
        related: Option<ObjectReference>,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        tracing::info!(reason, action, note = %note, object = ?regarding.name, "event");
        let event = Event {
            type_,
            reason: reason.to_string(),
            note: Some(note.chars().take(1024).collect()),
            action: action.to_string(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// A server's pod as the related object of an Event.
pub fn pod_ref(namespace: &str, pod: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.to_string()),
        namespace: Some(namespace.to_string()),
        ..Default::default()
    }
}

/// rustls needs one process-wide crypto provider when more than one is compiled in (feature
/// unification brings aws-lc-rs next to ring); install ring before the first TLS use. An
/// error only means one is installed already. (`transport::client::AdminClient::new` does
/// the same for the admin API client.)
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
