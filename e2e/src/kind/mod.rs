//! The kind suite and the packaging checks.
//!
//! - [`tools`]: finding and running `helm`, `kubectl` and `lua5.4`.
//! - [`manifests`]: reading rendered manifests and checking kube-transport custom resources
//!   the way the API server and the operator would (used by the chart and GitOps tests).
//! - [`cluster`]: the scenarios' helpers against a real cluster (the current kubeconfig),
//!   gated by `KUBE_TRANSPORT_E2E=1`: namespaces, server-side apply, waits, port-forwards,
//!   an in-cluster smtp-sink, SMTP submission and the servers' admin API.
pub mod cluster;
pub mod manifests;
pub mod tools;
