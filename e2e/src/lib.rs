//! End-to-end suites of kube-transport.
//!
//! - [`local`]: the cluster-free e2e (DESIGN §7): the operator's reconcile loop
//!   against an in-memory API, with a harness that plays the kubelet and runs
//!   each Pod the operator creates as a real `transport` process on 127.x.y.z.
//! - [`kind`]: the suite for a real cluster (kind, or the current kubeconfig),
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
