//! End-to-end suites of kube-transport (docs/design.md §7, docs/e2e.md).
//!
//! - [`cluster`]: a real Kubernetes control plane (etcd, kube-apiserver,
//!   kube-controller-manager, kube-scheduler built from the Go module proxy) with nodes
//!   whose pods are processes, a pod network of namespaces, volumes and Services: what the
//!   e2e suite (`tests/cluster`), the reconcile tests (`tests/reconcile`) and
//!   `make dev-cluster` run on.
//! - [`scenario`]: what the scenarios share: the suite (cluster, kubectl, helm, the
//!   operator installed by the chart), a namespace per scenario, smtp-sink outside the
//!   cluster, mail flows and the waits on what kubectl shows.
//! - [`kind`]: the suite for a cluster with Docker and kind (or the current kubeconfig),
//!   gated by `KUBE_TRANSPORT_E2E=1`.
pub mod cluster;
pub mod kind;
pub mod scenario;

/// Logs of the harness to stderr: warnings by default, `E2E_LOG` (an EnvFilter) for more.
pub fn init_test_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("E2E_LOG").unwrap_or_else(|_| EnvFilter::new("warn,kube_client=off"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
