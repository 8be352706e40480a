//! Errors of a reconcile: only what stops it. Problems of a server (admin API unreachable,
//! a refused action) are reported in status instead.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{kind} {name} has no namespace")]
    NoNamespace { kind: &'static str, name: String },
}

impl Error {
    /// Label of the `errors` metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::NoNamespace { .. } => "no_namespace",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
