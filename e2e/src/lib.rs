//! End-to-end suites of kube-transport.
//!
//! - [`local`]: the cluster-free e2e (DESIGN §7): the operator's reconcile loop
//!   against an in-memory API, with a harness that plays the kubelet and runs
//!   each Pod the operator creates as a real `transport` process on 127.x.y.z.
//! - [`kind`]: the suite for a real cluster (kind, or the current kubeconfig),
//!   gated by `KUBE_TRANSPORT_E2E=1`.
pub mod kind;
pub mod local;
