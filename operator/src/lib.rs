//! The kube-transport operator: TransportService, TransportConfig and
//! ServerComponentState custom resources, reconciled into transport servers.
//!
//! Module map:
//! - [`crd`]        the custom resources and the CRD documents generated from them
//! - [`names`]      names, labels, annotations and paths shared by every object
//! - [`build`]      pure builders: rendered config, ConfigMap, Secret, Services, Pod, PVC
//! - [`validation`] the rendered config checked like `transport check-config`, errors mapped to CRD fields
//! - [`conditions`] status conditions (metav1.Condition) and ServerState summaries
//! - [`admin`]      reaching a server's admin API (production: pod IP + token)
//! - [`backoff`]    growing retry delays while servers do not answer
//! - [`apply`]      server-side apply of children, writing only what differs
//! - [`reconcile`]  the TransportService, TransportConfig and ServerComponentState reconcilers
//! - [`context`]    what reconcilers share: client, admin connector, metrics, events
//! - [`metrics`]    Prometheus metrics of the reconcilers
//! - [`http`]       `/metrics`, `/healthz`, `/readyz` of the operator
//! - [`leader`]     leader election on a Lease (a leader that cannot renew stops in time)
//! - [`run`]        kube-runtime Controllers and what triggers a reconcile
//! - [`status_write`] when a status is worth writing (counters at most every 10 s)
//! - [`token`]      the admin API tokens, derived from the operator's key
//! - [`plugin`]     `kubectl transport`: the kubectl plugin's verbs, through the API server's pod proxy
pub mod admin;
pub mod apply;
pub mod backoff;
pub mod build;
pub mod conditions;
pub mod context;
pub mod crd;
mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod plugin;
pub mod reconcile;
pub mod run;
pub mod status_write;
pub mod token;
pub mod validation;

pub use context::Context;
pub use error::{Error, Result};
pub use reconcile::{reconcile_server_component_state, reconcile_transport_config, reconcile_transport_service};
pub use transport::config::TransportFile;
