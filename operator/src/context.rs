//! What every reconcile shares.
use crate::admin::AdminConnector;
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::names;
use crate::token::TokenKey;
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
    /// Derives each TransportService's admin token.
    pub token_key: TokenKey,
    /// `namespace/name token` of each admin token Secret this process wrote: written once
    /// per process, and again before each pod it creates (a pod mounts it).
    pub written_tokens: std::sync::Mutex<std::collections::HashSet<String>>,
    /// When this process last wrote each object's status (`kind/namespace/name`).
    pub status_writes: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
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
            token_key: TokenKey::random(),
            written_tokens: Default::default(),
            status_writes: Default::default(),
        }
    }

    /// Whether to write a status now ([`crate::status_write::decide`]), for the object `key`.
    pub fn status_decision<S: serde::Serialize>(
        &self,
        key: &str,
        current: Option<&S>,
        new: &S,
        without_counters: impl Fn(&S) -> S,
    ) -> crate::status_write::Decision {
        let last = self.status_writes.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied();
        crate::status_write::decide(current, new, without_counters, last, std::time::Instant::now())
    }

    /// Notes that the status of `key` was just written (and logs what changed in it).
    pub fn status_written<S: serde::Serialize>(&self, key: &str, old: Option<&S>, new: &S) {
        let (old, new) = (serde_json::to_value(old).unwrap_or_default(), serde_json::to_value(new).unwrap_or_default());
        let changed = crate::status_write::changed_paths(&old, &new, 8);
        tracing::info!(object = %key, changed = ?changed, "status written");
        self.status_writes.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), std::time::Instant::now());
    }

    pub fn with_token_key(mut self, key: TokenKey) -> Self {
        self.token_key = key;
        self
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
            note: Some(truncate_note(note)),
            action: action.to_string(),
            secondary: related,
        };
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// The API server refuses an Event whose note is over 1024 *bytes*: a longer note is cut at
/// the last character boundary that fits, and ends with `…` to show it was cut.
pub fn truncate_note(mut note: String) -> String {
    const MAX: usize = 1024;
    if note.len() <= MAX {
        return note;
    }
    let ellipsis = "…";
    let mut end = MAX - ellipsis.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    note.truncate(end);
    note.push_str(ellipsis);
    note
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

pub use transport::client::install_crypto_provider;

#[cfg(test)]
mod tests {
    use super::truncate_note;

    #[test]
    fn notes_are_cut_to_1024_bytes_at_a_character_boundary() {
        assert_eq!(truncate_note("short".into()), "short");
        let exact = "a".repeat(1024);
        assert_eq!(truncate_note(exact.clone()), exact);
        // 600 two-byte characters: 1200 bytes, 600 characters (a character count would keep it all).
        let cut = truncate_note("é".repeat(600));
        assert!(cut.len() <= 1024, "{} bytes", cut.len());
        assert!(cut.ends_with('…'));
        assert!(cut.len() > 1015, "nothing more cut than needed: {}", cut.len());
        let four = truncate_note("𝄞".repeat(300));
        assert!(four.len() <= 1024 && four.ends_with('…'));
    }
}
